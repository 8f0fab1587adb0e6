//! Reading JSON payloads with errors that name the field and the position but
//! never quote a value of the payload (no personal data in dead letters or logs).

use crate::MapError;

/// Parses a JSON body into `T`, naming the failing field in the error. The
/// error text holds no value of the payload (see [`json_error_text`]).
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, MapError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        // Only a failed parse pays for tracking the path: read it again.
        Err(e) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let path = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(traced) => traced.path().to_string(),
                Ok(_) => String::new(),
            };
            Err(MapError::Json(json_error_text(&e, Some(&path))))
        }
    }
}

/// Deserialises a part of an already parsed payload (`field`: where it was,
/// e.g. `data.object`), with a value-free error naming the path inside it.
pub fn from_json_value<'de, T: serde::Deserialize<'de>>(
    field: &str,
    value: &'de serde_json::Value,
) -> Result<T, MapError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner.is_empty() || inner == "." {
            field.to_string()
        } else {
            format!("{field}.{inner}")
        };
        MapError::Json(json_error_text(e.inner(), Some(&path)))
    })
}

/// A serde_json error as text without the payload's values: serde's
/// `invalid type: string "jane@example.com", expected u64` becomes
/// `invalid type: string, expected u64 at customer.id (line 1, column 31)`.
/// What is left is the kind of error, what was expected (the schema's words),
/// the field path and the position; never the offending value.
pub fn json_error_text(e: &serde_json::Error, path: Option<&str>) -> String {
    use serde_json::error::Category;
    let mut msg = e.to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    let mut out = match e.classify() {
        Category::Data => scrub_serde_message(&msg),
        Category::Syntax => format!("not valid JSON: {}", scrub_serde_message(&msg)),
        Category::Eof => "the JSON ends too early".to_string(),
        Category::Io => "the body could not be read".to_string(),
    };
    if let Some(p) = path.filter(|p| !p.is_empty() && *p != ".") {
        out.push_str(" at ");
        out.push_str(p);
    }
    if e.line() > 0 {
        out.push_str(&format!(" (line {}, column {})", e.line(), e.column()));
    }
    out
}

/// A serde message without the values it quotes: the unexpected value of
/// `invalid type`/`invalid value` is reduced to its kind, the unknown variant
/// or field name is dropped, and any other quoted text is elided.
pub fn scrub_serde_message(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let (unexpected, expected) = match rest.split_once(", expected ") {
                Some((u, x)) => (u, Some(x)),
                None => (rest, None),
            };
            let kind = unexpected.split(['`', '"']).next().unwrap_or("").trim();
            let kind = if kind.is_empty() { "value" } else { kind };
            return match expected {
                Some(x) => format!("{prefix}{kind}, expected {}", elide_quoted(x)),
                None => format!("{prefix}{kind}"),
            };
        }
    }
    for prefix in ["unknown variant ", "unknown field "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let what = prefix.trim_end();
            return match rest.split_once(", expected ") {
                Some((_, x)) => format!("{what}, expected {x}"),
                None => what.to_string(),
            };
        }
    }
    elide_quoted(msg)
}

/// `"..."` segments replaced by `"…"` (custom messages may quote a value).
fn elide_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            out.push(c);
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Customer {
        id: u64,
        tags: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Hook {
        customer: Customer,
        kind: Kind,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Order,
    }

    const EMAIL: &str = "jane.doe@example.com";

    fn err(body: &str) -> String {
        match parse_json::<Hook>(body.as_bytes()) {
            Err(MapError::Json(text)) => text,
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_place_never_the_value() {
        let text = err(&format!(
            r#"{{"customer":{{"id":"{EMAIL}","tags":[]}},"kind":"order"}}"#
        ));
        assert!(!text.contains(EMAIL) && !text.contains("jane"), "{text}");
        assert!(
            text.contains("invalid type: string, expected u64"),
            "{text}"
        );
        assert!(text.contains("customer.id"), "{text}");
        assert!(text.contains("line 1"), "{text}");

        let text = err(&format!(
            r#"{{"customer":{{"id":1,"tags":[]}},"kind":"{EMAIL}"}}"#
        ));
        assert!(!text.contains(EMAIL), "{text}");
        assert!(text.starts_with("unknown variant, expected"), "{text}");

        let text = err(&format!(r#"{{"customer":{{"id":1,"tags":[{EMAIL}]}}}}"#));
        assert!(!text.contains("jane"), "{text}");
        assert!(text.starts_with("not valid JSON"), "{text}");

        let text = err(&format!(r#"{{"customer":{{"id":1,"tags":["{EMAIL}""#));
        assert!(!text.contains(EMAIL), "{text}");

        // A part of an already parsed payload, and the dead-letter reason the
        // processor writes (the error's Display).
        let v: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"id":1,"tags":[{{"email":"{EMAIL}"}}]}}"#)).unwrap();
        let e = from_json_value::<Customer>("data.object", &v).unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains(EMAIL), "{shown}");
        assert!(shown.contains("data.object.tags[0]"), "{shown}");
    }

    #[test]
    fn custom_messages_lose_their_quotes() {
        assert_eq!(
            scrub_serde_message(r#"bad thing "jane@example.com" here"#),
            r#"bad thing "…" here"#
        );
        assert_eq!(
            scrub_serde_message("missing field `id`"),
            "missing field `id`"
        );
        assert_eq!(
            scrub_serde_message("invalid value: integer `7`, expected a day"),
            "invalid value: integer, expected a day"
        );
    }
}
