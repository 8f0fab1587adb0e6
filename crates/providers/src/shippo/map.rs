//! Shippo `track_updated` -> `ShipmentUpdated`.
//!
//! | Shippo status (substatus code) | status |
//! |---|---|
//! | PRE_TRANSIT | label_created |
//! | TRANSIT | in_transit |
//! | TRANSIT (out_for_delivery, pickup_available) | out_for_delivery |
//! | TRANSIT (return_to_sender), RETURNED | returned |
//! | DELIVERED | delivered |
//! | FAILURE | exception |
//! | UNKNOWN | none of its own: latest history entry, else label_created |
//!
//! `metadata` is free text the shipper set when registering the tracker; an order
//! reference in it (`Order #1001`, `Order 000123`) becomes an
//! [`OrderLink::Number`].

use storefold_core::Envelope;
use storefold_core::event::{Checkpoint, OrderLink, ShipmentStatus};

use super::model::{Track, TrackingStatus, Webhook};
use crate::tracking;
use crate::{MapContext, MapError, RawInput, lenient_time, non_empty, order_number_in_text};

pub(crate) const TRACK_UPDATED: &str = "track_updated";

pub(crate) fn status_of(status: Option<&str>, substatus: Option<&str>) -> Option<ShipmentStatus> {
    let status = status?.trim().to_ascii_uppercase();
    let sub = substatus.unwrap_or("").trim().to_ascii_lowercase();
    let mapped = match status.as_str() {
        "PRE_TRANSIT" => ShipmentStatus::LabelCreated,
        "TRANSIT" => match sub.as_str() {
            "out_for_delivery" | "pickup_available" => ShipmentStatus::OutForDelivery,
            "return_to_sender" => ShipmentStatus::Returned,
            _ => ShipmentStatus::InTransit,
        },
        "DELIVERED" => ShipmentStatus::Delivered,
        "RETURNED" => ShipmentStatus::Returned,
        "FAILURE" => ShipmentStatus::Exception,
        _ => return None,
    };
    Some(mapped)
}

fn status_of_entry(s: &TrackingStatus) -> Option<ShipmentStatus> {
    status_of(
        s.status.as_deref(),
        s.substatus.as_ref().and_then(|x| x.code.as_deref()),
    )
}

pub(crate) fn track_of(hook: &Webhook) -> Result<Track, MapError> {
    let data = hook
        .data
        .clone()
        .ok_or_else(|| MapError::MissingField("data".into()))?;
    crate::from_json_value("data", &data).map_err(|e| match e {
        MapError::Json(reason) => MapError::InvalidField {
            field: "data".into(),
            reason,
        },
        other => other,
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let hook: Webhook = crate::parse_json(input.body)?;
    let event = hook
        .event
        .as_deref()
        .ok_or_else(|| MapError::MissingField("event".into()))?;
    if event != TRACK_UPDATED {
        return Err(MapError::UnsupportedTopic(event.to_string()));
    }
    let track = track_of(&hook)?;
    let tracking_number = non_empty(track.tracking_number.as_deref())
        .ok_or_else(|| MapError::MissingField("data.tracking_number".into()))?;
    let current = track.tracking_status.as_ref();
    let status = current.and_then(status_of_entry);
    let checkpoints = track
        .tracking_history
        .iter()
        .chain(current)
        .filter_map(|s| {
            let at = lenient_time(s.status_date.as_deref()?)?;
            Some(Checkpoint {
                at,
                status: status_of_entry(s)
                    .or(status)
                    .unwrap_or(ShipmentStatus::InTransit),
                message: non_empty(s.status_details.as_deref()),
                location: s.location.as_ref().and_then(|l| l.joined()),
            })
        })
        .collect();
    let order_links = track
        .metadata
        .as_deref()
        .and_then(order_number_in_text)
        .map(|number| vec![OrderLink::Number { number }])
        .unwrap_or_default();
    Ok(tracking::Tracker {
        provider: super::NAME,
        tracking_number,
        carrier: non_empty(track.carrier.as_deref()),
        order_links,
        status,
        checkpoints,
        estimated_delivery: track.eta.as_deref().and_then(lenient_time),
        fallback_at: input.received_at,
    }
    .into_envelopes(ctx, input.event_id))
}
