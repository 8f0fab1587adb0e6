//! What the HTTP sinks share: reading `Retry-After` and quoting a body.

use std::time::{Duration, SystemTime};

/// Reads a `Retry-After` value, cut to `max`: delay-seconds (an integer, or a
/// decimal as some servers send) or an HTTP date (IMF-fixdate, or the obsolete
/// RFC 850 and asctime forms, parsed by `httpdate`). A date in the past is
/// zero; a delay too large for a [`Duration`] is `max`; a negative, `NaN`,
/// infinite or unreadable value is `None` (no advice). Never panics.
pub fn retry_after(value: &str, max: Duration) -> Option<Duration> {
    retry_after_at(value, max, SystemTime::now())
}

/// [`retry_after`] as seen at `now`.
pub fn retry_after_at(value: &str, max: Duration, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::try_from_secs_f64(secs).unwrap_or(max).min(max));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).min(max))
}

/// At most the first 512 bytes of a body (cut on a character boundary, marked
/// with `…`), for error messages that must not carry a whole large body.
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 512;
    if body.len() <= MAX {
        return body.to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(900);

    #[test]
    fn delay_seconds_are_read_and_cut_to_the_maximum() {
        assert_eq!(retry_after("120", MAX), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 1.5 ", MAX), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after("0", MAX), Some(Duration::ZERO));
        assert_eq!(retry_after("86400", MAX), Some(MAX));
        assert_eq!(retry_after("1e300", MAX), Some(MAX));
        assert_eq!(retry_after("-1", MAX), None);
        assert_eq!(retry_after("NaN", MAX), None);
        assert_eq!(retry_after("inf", MAX), None);
        assert_eq!(retry_after("soon", MAX), None);
        assert_eq!(retry_after("", MAX), None);
    }

    #[test]
    fn http_dates_are_a_wait_from_now() {
        // 2015-10-21T07:28:00Z, written the three ways HTTP allows.
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let before = date - Duration::from_secs(30);
        for v in [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Wednesday, 21-Oct-15 07:28:00 GMT",
            "Wed Oct 21 07:28:00 2015",
        ] {
            assert_eq!(
                retry_after_at(v, MAX, before),
                Some(Duration::from_secs(30)),
                "{v}"
            );
        }
        // In the past: come back now. Far away: the maximum.
        let after = date + Duration::from_secs(5);
        assert_eq!(
            retry_after_at("Wed, 21 Oct 2015 07:28:00 GMT", MAX, after),
            Some(Duration::ZERO)
        );
        let long_before = date - Duration::from_secs(86_400);
        assert_eq!(
            retry_after_at("Wed, 21 Oct 2015 07:28:00 GMT", MAX, long_before),
            Some(MAX)
        );
        assert_eq!(retry_after("Wed, 32 Oct 2015 07:28:00 GMT", MAX), None);
    }

    #[test]
    fn excerpts_stop_on_a_character_boundary() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(400);
        let e = excerpt(&long);
        assert!(e.ends_with('…'));
        assert!(e.len() <= 512 + '…'.len_utf8());
    }
}
