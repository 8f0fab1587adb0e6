//! Property value checks, as HubSpot applies them per property type.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Object {
    Contact,
    Deal,
}

pub(super) fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.contains(char::is_whitespace)
        && !domain.contains('@')
}

pub(super) fn is_decimal(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// A value's problem: `Err((code, message, is_violation))`.
pub(super) fn check_value(
    name: &str,
    ty: &PropertyType,
    v: &str,
) -> Result<(), (String, String, bool)> {
    let bad = |code: &str, msg: String| Err((code.to_string(), msg, true));
    match ty {
        PropertyType::Text => Ok(()),
        PropertyType::Number => {
            if v.is_empty() || is_decimal(v) {
                Ok(())
            } else {
                bad(
                    "INVALID_DECIMAL",
                    format!("{v} was not a valid number for property {name}"),
                )
            }
        }
        PropertyType::Date => {
            if v.is_empty() {
                return Ok(());
            }
            if let Ok(ms) = v.parse::<i64>() {
                return if ms % 86_400_000 == 0 {
                    Ok(())
                } else {
                    bad(
                        "INVALID_DATE",
                        format!("{v} is not midnight UTC for date property {name}"),
                    )
                };
            }
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            if time::Date::parse(v, &fmt).is_ok() {
                Ok(())
            } else {
                bad(
                    "INVALID_DATE",
                    format!("{v} is not a valid date for {name}"),
                )
            }
        }
        PropertyType::DateTime => {
            if v.is_empty()
                || v.parse::<i64>().is_ok()
                || OffsetDateTime::parse(v, &Rfc3339).is_ok()
            {
                Ok(())
            } else {
                bad(
                    "INVALID_DATETIME",
                    format!("{v} is not a valid datetime for {name}"),
                )
            }
        }
        PropertyType::Enumeration { options, multi } => {
            if v.is_empty() {
                return Ok(());
            }
            let values: Vec<&str> = if *multi {
                v.split(';').collect()
            } else {
                vec![v]
            };
            for one in values {
                if !options.iter().any(|o| o == one) {
                    return Err((
                        "INVALID_OPTION".into(),
                        format!(
                            "{one} was not one of the allowed options: [{}]",
                            options.join(", ")
                        ),
                        false,
                    ));
                }
            }
            Ok(())
        }
    }
}

/// One input's failure.
pub(super) struct InputError {
    pub(super) index: usize,
    pub(super) trace: Option<String>,
    pub(super) id: String,
    pub(super) code: String,
    pub(super) message: String,
    pub(super) property: Option<String>,
}
