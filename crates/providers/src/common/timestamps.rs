//! The times in payloads: strict RFC 3339 and Unix seconds for the providers
//! that document them, and [`lenient_time`] for the looser forms carriers and
//! helpdesks send.

use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::MapError;

/// Parses RFC 3339 (also `2024-01-01 10:00:00 +0000`-free forms are refused).
pub fn parse_time(field: &str, s: &str) -> Result<OffsetDateTime, MapError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

/// Unix seconds to a timestamp.
pub fn from_unix(field: &str, secs: i64) -> Result<OffsetDateTime, MapError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

/// Parses the timestamps carriers and helpdesks send: RFC 3339, ISO 8601 with a
/// `+0000` offset, a local date-time without offset (read as UTC, which is what
/// AfterShip documents for checkpoints without a zone), or a bare date (midnight
/// UTC). `None` for an empty string or anything else.
pub(crate) fn lenient_time(raw: &str) -> Option<OffsetDateTime> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let s = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&s, &Iso8601::DEFAULT) {
        return Some(t);
    }
    if let Ok(t) = PrimitiveDateTime::parse(&s, &Iso8601::DEFAULT) {
        return Some(t.assume_utc());
    }
    if let Ok(d) = Date::parse(&s, &Iso8601::DEFAULT) {
        return Some(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn lenient_times() {
        assert_eq!(
            lenient_time("2024-05-01T10:00:00Z"),
            Some(datetime!(2024-05-01 10:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01T10:00:00+02:00"),
            Some(datetime!(2024-05-01 8:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01T10:00:00"),
            Some(datetime!(2024-05-01 10:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01 10:00:00"),
            Some(datetime!(2024-05-01 10:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01"),
            Some(datetime!(2024-05-01 0:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-08-02T19:26:52.000Z"),
            Some(datetime!(2024-08-02 19:26:52 UTC))
        );
        assert_eq!(
            lenient_time("2019-12-10T13:47:31.564131+00:00"),
            Some(datetime!(2019-12-10 13:47:31.564131 UTC))
        );
        assert_eq!(lenient_time(""), None);
        assert_eq!(lenient_time("yesterday"), None);
    }
}
