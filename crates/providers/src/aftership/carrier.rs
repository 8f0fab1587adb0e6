//! Helpers every carrier tracker (AfterShip, EasyPost, Shippo) shares: lenient
//! timestamps and the assembly of a [`Shipment`] from a tracker snapshot.
//!
//! They live here rather than in `common.rs` only because this module was written
//! alongside the three carrier adapters; `easypost` and `shippo` import them.

use storefold_core::event::{Checkpoint, OrderLink, Shipment, ShipmentStatus};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// Parses the timestamps carriers send: RFC 3339, ISO 8601 with a `+0000` offset,
/// a local date-time without offset (read as UTC, which is what AfterShip documents
/// for checkpoints without a zone), or a bare date (midnight UTC). `None` for an
/// empty string or anything else.
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

/// A tracker snapshot before it becomes a canonical [`Shipment`].
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) provider: &'static str,
    pub(crate) tracking_number: String,
    pub(crate) carrier: Option<String>,
    /// Order links besides the tracking number.
    pub(crate) order_links: Vec<OrderLink>,
    /// The tracker's own current status; `None` when the provider says "unknown".
    pub(crate) status: Option<ShipmentStatus>,
    pub(crate) checkpoints: Vec<Checkpoint>,
    pub(crate) estimated_delivery: Option<OffsetDateTime>,
    /// Event time to use when there is no checkpoint.
    pub(crate) fallback_at: OffsetDateTime,
}

impl Tracker {
    /// Sorts the checkpoints by time (stable, so same-time checkpoints keep the
    /// provider's order), drops exact duplicates, and picks the status: the
    /// tracker's own, else the latest checkpoint's, else `label_created`. `at` is the
    /// latest checkpoint's time, else the fallback.
    pub(crate) fn into_shipment(self) -> Shipment {
        let mut checkpoints = self.checkpoints;
        checkpoints.sort_by_key(|c| c.at);
        checkpoints.dedup();
        let latest = checkpoints.last();
        let status = self
            .status
            .or(latest.map(|c| c.status))
            .unwrap_or(ShipmentStatus::LabelCreated);
        let at = latest.map(|c| c.at).unwrap_or(self.fallback_at);
        let mut links = vec![OrderLink::Tracking {
            number: self.tracking_number.clone(),
        }];
        for l in self.order_links {
            if !links.contains(&l) {
                links.push(l);
            }
        }
        Shipment {
            provider: self.provider.to_string(),
            tracking_number: self.tracking_number,
            carrier: self.carrier,
            links,
            fulfillment_id: None,
            status,
            checkpoints,
            line_item_ids: Vec::new(),
            estimated_delivery: self.estimated_delivery,
            at,
        }
    }
}

/// Joins the non-empty parts of a location with ", ".
pub(crate) fn join_location<'a>(
    parts: impl IntoIterator<Item = Option<&'a str>>,
) -> Option<String> {
    let parts: Vec<&str> = parts
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// An order reference a shipper typed into free text (`Order #1001`, `#1001`,
/// `order 000123`) as an [`OrderLink::Number`] (`#1001`).
pub(crate) fn order_number_in_text(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    // `#1001` anywhere.
    if let Some(pos) = lower.find('#') {
        let digits: String = lower[pos + 1..]
            .chars()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if digits.chars().any(|c| c.is_ascii_digit()) {
            return Some(format!("#{}", digits.to_ascii_uppercase()));
        }
    }
    // `order 1001`, `order: 1001`, `order no. 1001`.
    let idx = lower.find("order")?;
    let rest = lower[idx + 5..].trim_start_matches(|c: char| {
        c.is_whitespace() || c == ':' || c == '.' || c == 'n' || c == 'o'
    });
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!("#{digits}"));
    }
    None
}

/// `#1001` from an order number written as `1001` or `#1001`.
pub(crate) fn hash_number(raw: &str) -> Option<String> {
    let n = raw.trim().trim_start_matches('#').trim();
    (!n.is_empty()).then(|| format!("#{n}"))
}

/// Deserialises a string, number or boolean into `Some(String)`; `null`, objects
/// and arrays into `None`. Providers send ids as numbers one month and strings the
/// next, and helpdesk templates send everything as strings.
pub(crate) fn loose_string<'de, D>(de: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(de)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// Deserialises a list leniently: `null` or a non-list is an empty list, and list
/// elements that do not fit `T` are dropped.
pub(crate) fn loose_vec<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(de)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
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

    #[test]
    fn order_numbers_in_text() {
        assert_eq!(
            order_number_in_text("Order #1001").as_deref(),
            Some("#1001")
        );
        assert_eq!(
            order_number_in_text("Order 000123").as_deref(),
            Some("#000123")
        );
        assert_eq!(order_number_in_text("order no. 42").as_deref(), Some("#42"));
        assert_eq!(
            order_number_in_text("Where is #A-1001?").as_deref(),
            Some("#A-1001")
        );
        assert_eq!(order_number_in_text("my order is late"), None);
        assert_eq!(order_number_in_text("#"), None);
        assert_eq!(hash_number(" 1001 ").as_deref(), Some("#1001"));
        assert_eq!(hash_number("#1001").as_deref(), Some("#1001"));
        assert_eq!(hash_number(" "), None);
    }
}
