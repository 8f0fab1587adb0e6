//! The CSV the providers' report downloads are written in (RFC 4180): fields
//! separated by commas, a field in double quotes may hold commas, line breaks
//! and doubled quotes; lines end with `\n` or `\r\n`. Each record keeps the
//! line it starts on, which is how errors name it (a spreadsheet's row
//! number). Blank lines are skipped; a UTF-8 byte order mark is dropped.

/// One record, the line (from 1) it starts on and its bytes in the text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) line: usize,
    pub(crate) fields: Vec<String>,
    /// The line it ends on (a quoted field may hold line breaks).
    pub(crate) last_line: usize,
    /// Its bytes in the text given to [`records`], line break included.
    pub(crate) span: std::ops::Range<usize>,
}

/// Why the text is not CSV: the line it happened on and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CsvError {
    pub(crate) line: usize,
    pub(crate) reason: &'static str,
}

/// The records of `text`, blank lines left out.
pub(crate) fn records(text: &str) -> Result<Vec<Record>, CsvError> {
    let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut out = Vec::new();
    let mut line = 1;
    let mut start = 1;
    let mut start_byte = bom;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    // Whether the current field was quoted (and its closing quote seen).
    let mut quoted = false;
    let mut chars = text[bom..].chars().peekable();
    // Bytes read so far (from the start of `text`).
    let mut pos = bom;
    let end_record = |fields: &mut Vec<String>,
                      field: &mut String,
                      (first, last): (usize, usize),
                      span: std::ops::Range<usize>,
                      out: &mut Vec<Record>| {
        fields.push(std::mem::take(field));
        let blank = fields.len() == 1 && fields[0].trim().is_empty();
        let fields = std::mem::take(fields);
        if !blank {
            out.push(Record {
                line: first,
                fields,
                last_line: last,
                span,
            });
        }
    };
    while let Some(c) = chars.next() {
        pos += c.len_utf8();
        match c {
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                let opened = line;
                loop {
                    match chars.next() {
                        None => {
                            return Err(CsvError {
                                line: opened,
                                reason: "a quoted field is not closed",
                            });
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            pos += 2;
                            field.push('"');
                        }
                        Some('"') => {
                            pos += 1;
                            break;
                        }
                        Some(ch) => {
                            pos += ch.len_utf8();
                            if ch == '\n' {
                                line += 1;
                            }
                            field.push(ch);
                        }
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(_) => {
                        return Err(CsvError {
                            line,
                            reason: "text after a closing quote",
                        });
                    }
                }
            }
            '"' => {
                return Err(CsvError {
                    line,
                    reason: "a quote inside a field that is not quoted",
                });
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(
                    &mut fields,
                    &mut field,
                    (start, line),
                    start_byte..pos,
                    &mut out,
                );
                quoted = false;
                line += 1;
                start = line;
                start_byte = pos;
            }
            other => field.push(other),
        }
    }
    if !field.is_empty() || !fields.is_empty() || quoted {
        end_record(
            &mut fields,
            &mut field,
            (start, line),
            start_byte..pos,
            &mut out,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of each record with its first and last line and its text.
    fn read(text: &str) -> Vec<(usize, usize, Vec<String>, &str)> {
        records(text)
            .unwrap()
            .into_iter()
            .map(|r| (r.line, r.last_line, r.fields, &text[r.span]))
            .collect()
    }

    fn rec<'a>(
        line: usize,
        last: usize,
        fields: &[&str],
        raw: &'a str,
    ) -> (usize, usize, Vec<String>, &'a str) {
        (line, last, fields.iter().map(|f| f.to_string()).collect(), raw)
    }

    #[test]
    fn quoted_fields_line_breaks_and_blank_lines() {
        let text = "\u{feff}a,b,c\r\n1,\"x, \"\"y\"\"\",3\n\n\"multi\nline\",,\"\"\nlast,row,here";
        assert_eq!(
            read(text),
            vec![
                rec(1, 1, &["a", "b", "c"], "a,b,c\r\n"),
                rec(2, 2, &["1", "x, \"y\"", "3"], "1,\"x, \"\"y\"\"\",3\n"),
                // Starts on line 4, ends on line 5.
                rec(4, 5, &["multi\nline", "", ""], "\"multi\nline\",,\"\"\n"),
                rec(6, 6, &["last", "row", "here"], "last,row,here"),
            ]
        );
        assert_eq!(records("").unwrap(), vec![]);
        assert_eq!(read("a\n"), vec![rec(1, 1, &["a"], "a\n")]);
        assert_eq!(read("é,ü\n"), vec![rec(1, 1, &["é", "ü"], "é,ü\n")]);
    }

    #[test]
    fn broken_quoting_names_the_line() {
        assert_eq!(
            records("a,b\n1,\"open\n2,3\n").unwrap_err(),
            CsvError {
                line: 2,
                reason: "a quoted field is not closed"
            }
        );
        assert_eq!(
            records("a,b\n1,\"x\"y\n").unwrap_err(),
            CsvError {
                line: 2,
                reason: "text after a closing quote"
            }
        );
        assert_eq!(
            records("a,b\n\n1,x\"y\n").unwrap_err(),
            CsvError {
                line: 3,
                reason: "a quote inside a field that is not quoted"
            }
        );
    }
}
