//! An ERP feed's JSON lines to `InventoryUpdated` events.
//!
//! Each non-blank line is one object:
//!
//! | field | |
//! |---|---|
//! | `sku` | required: the SKU as order lines carry it |
//! | `at` | required: from when the line holds; RFC 3339, or a date (`2026-11-01`, midnight UTC) |
//! | `unit_cost` | optional decimal string (a JSON number is read from its exact text): what one unit costs, exact in `currency`'s minor units (a digit beyond the currency's decimals that is not zero is refused); not negative |
//! | `currency` | ISO 4217 code; required with `unit_cost` |
//! | `available` | optional integer: units available, all locations together |
//! | `backorder` | optional boolean: whether the item keeps selling out of stock |
//! | `eta` | optional: when units out of stock are expected, RFC 3339 or a date |
//! | `item_id` | optional: the ERP's own id of the item (string or number) |
//!
//! The contract is storefold's own, so a field it does not have is refused
//! rather than ignored (a misspelt `unit_cost` must not drop a cost unseen).

use serde::Deserialize;
use storefold_core::event::InventoryUpdated;
use storefold_core::{Envelope, Event};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use super::{PROVIDER, TOPIC};
use crate::serde_util::{Amount, Id};
use crate::{MapContext, MapError, RawInput, currency_of, json_error_text, non_empty, unit_cost};

/// One line of the feed, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    sku: Option<String>,
    #[serde(default)]
    unit_cost: Option<Amount>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    available: Option<i64>,
    #[serde(default)]
    backorder: Option<bool>,
    #[serde(default)]
    eta: Option<String>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    item_id: Option<Id>,
}

/// Maps a verified feed: one event per non-blank line, or the first bad
/// line's error (nothing of a body with a bad line is mapped).
pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    if input.topic != TOPIC {
        return Err(MapError::UnsupportedTopic(input.topic.to_string()));
    }
    let text = std::str::from_utf8(input.body).map_err(|e| {
        let line = line_of(&input.body[..e.valid_up_to()]);
        MapError::Json(format!("line {line}: not UTF-8 text"))
    })?;
    let mut events = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let event = inventory(n, raw)?;
        events.push(Envelope {
            tenant: ctx.tenant.to_string(),
            provider: PROVIDER.to_string(),
            event_id: line_event_id(input.event_id, n),
            occurred_at: event.at,
            event: Event::InventoryUpdated(event),
        });
    }
    Ok(events)
}

/// The event id of line `n` of the body whose idempotency id is `body_id`.
pub(crate) fn line_event_id(body_id: &str, n: usize) -> String {
    format!("{body_id}#{n}")
}

/// The line (from 1) that the byte after `before` is on.
fn line_of(before: &[u8]) -> usize {
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// Line `n` read and checked.
fn inventory(n: usize, raw: &str) -> Result<InventoryUpdated, MapError> {
    let line = parse_line(n, raw)?;
    let missing = |field: &str| MapError::MissingField(format!("line {n}: {field}"));
    let invalid = |field: &str, reason: String| MapError::InvalidField {
        field: format!("line {n}: {field}"),
        reason,
    };
    // Every error below names the line and the field, never the value.
    let relabel = |e: MapError| match e {
        MapError::InvalidField { field, reason } => invalid(&field, reason),
        other => other,
    };
    let sku = non_empty(line.sku.as_deref()).ok_or_else(|| missing("sku"))?;
    let at = time_field("at", line.at.as_deref())
        .map_err(relabel)?
        .ok_or_else(|| missing("at"))?;
    let currency = line
        .currency
        .as_deref()
        .map(|c| currency_of("currency", c))
        .transpose()
        .map_err(relabel)?;
    let unit_cost = match (line.unit_cost, currency) {
        (None, _) => None,
        (Some(_), None) => return Err(missing("currency (unit_cost is in it)")),
        (Some(cost), Some(c)) => Some(unit_cost("unit_cost", &cost.0, c).map_err(relabel)?),
    };
    let eta = time_field("eta", line.eta.as_deref()).map_err(relabel)?;
    Ok(InventoryUpdated {
        sku,
        item_id: line.item_id.and_then(|id| non_empty(Some(&id.0))),
        unit_cost,
        available: line.available,
        backorder: line.backorder,
        eta,
        at,
    })
}

/// Line `n` as JSON, with an error naming the line, the field and the
/// column, never a value.
fn parse_line(n: usize, raw: &str) -> Result<Line, MapError> {
    serde_json::from_str::<Line>(raw).map_err(|e| {
        let mut de = serde_json::Deserializer::from_str(raw);
        let path = match serde_path_to_error::deserialize::<_, Line>(&mut de) {
            // `?`: no field was being read (the line ends too early).
            Err(traced) if traced.path().to_string() != "?" => traced.path().to_string(),
            _ => String::new(),
        };
        let text = json_error_text(&e, Some(&path));
        // The position inside the line replaces the one inside the "document".
        let text = text.rsplit_once(" (line ").map_or(text.as_str(), |(t, _)| t);
        MapError::Json(format!("line {n}, column {}: {text}", e.column()))
    })
}

/// A time field: RFC 3339, or a date alone (midnight UTC). `None` when absent
/// or blank.
fn time_field(field: &str, raw: Option<&str>) -> Result<Option<OffsetDateTime>, MapError> {
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(Some(t));
    }
    // A bare date only: `2026-11-01`, not a week or ordinal date.
    if s.len() == 10
        && let Ok(d) = Date::parse(s, &Iso8601::DATE)
    {
        return Ok(Some(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc()));
    }
    Err(MapError::InvalidField {
        field: field.to_string(),
        reason: "expected an RFC 3339 time or a date (YYYY-MM-DD)".into(),
    })
}
