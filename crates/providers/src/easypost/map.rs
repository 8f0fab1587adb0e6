//! EasyPost `tracker.created` / `tracker.updated` -> `ShipmentUpdated`.
//!
//! | EasyPost status | status |
//! |---|---|
//! | pre_transit | label_created |
//! | in_transit | in_transit |
//! | out_for_delivery, available_for_pickup | out_for_delivery |
//! | delivered | delivered |
//! | return_to_sender | returned |
//! | failure, error, cancelled | exception |
//! | unknown (or anything new) | none of its own: latest detail, else label_created |
//!
//! `available_for_pickup` is not `delivered` for the same reason as AfterShip's
//! AvailableForPickup: the customer does not have the parcel yet. A cancelled
//! tracker will not be delivered, which the shop must hear about: `exception`.
//! EasyPost trackers do not name the store's order, so the only link is the
//! tracking number.

use storefold_core::Envelope;
use storefold_core::event::{Checkpoint, ShipmentStatus};

use super::model::{EventObject, Tracker};
use crate::tracking;
use crate::{MapContext, MapError, RawInput, lenient_time, non_empty};

/// The event descriptions mapped; every other description is unsupported.
pub(crate) const TRACKER_TOPICS: [&str; 2] = ["tracker.created", "tracker.updated"];

pub(crate) fn status_of(raw: Option<&str>) -> Option<ShipmentStatus> {
    let status = match raw?.trim() {
        "pre_transit" => ShipmentStatus::LabelCreated,
        "in_transit" => ShipmentStatus::InTransit,
        "out_for_delivery" | "available_for_pickup" => ShipmentStatus::OutForDelivery,
        "delivered" => ShipmentStatus::Delivered,
        "return_to_sender" => ShipmentStatus::Returned,
        "failure" | "error" | "cancelled" => ShipmentStatus::Exception,
        _ => return None,
    };
    Some(status)
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let event: EventObject = crate::parse_json(input.body)?;
    let description = event
        .description
        .as_deref()
        .ok_or_else(|| MapError::MissingField("description".into()))?;
    if !TRACKER_TOPICS.contains(&description) {
        return Err(MapError::UnsupportedTopic(description.to_string()));
    }
    let result = event
        .result
        .ok_or_else(|| MapError::MissingField("result".into()))?;
    let tracker: Tracker =
        crate::from_json_value("result", &result).map_err(|e| as_invalid("result", e))?;
    if let Some(object) = tracker.object.as_deref()
        && object != "Tracker"
    {
        return Err(MapError::InvalidField {
            field: "result.object".into(),
            reason: format!("expected Tracker, got {object:?}"),
        });
    }
    let fallback_at = tracker
        .updated_at
        .as_deref()
        .and_then(lenient_time)
        .or_else(|| event.created_at.as_deref().and_then(lenient_time))
        .unwrap_or(input.received_at);
    Ok(to_tracker(tracker, fallback_at)?.into_envelopes(ctx, input.event_id))
}

fn to_tracker(
    t: Tracker,
    fallback_at: time::OffsetDateTime,
) -> Result<tracking::Tracker, MapError> {
    let tracking_number = non_empty(t.tracking_code.as_deref())
        .ok_or_else(|| MapError::MissingField("result.tracking_code".into()))?;
    let status = status_of(t.status.as_deref());
    let checkpoints = t
        .tracking_details
        .iter()
        .filter_map(|d| {
            let at = lenient_time(d.datetime.as_deref()?)?;
            Some(Checkpoint {
                at,
                status: status_of(d.status.as_deref())
                    .or(status)
                    .unwrap_or(ShipmentStatus::InTransit),
                message: non_empty(d.message.as_deref()),
                location: d.tracking_location.as_ref().and_then(|l| l.joined()),
            })
        })
        .collect();
    Ok(tracking::Tracker {
        provider: super::NAME,
        tracking_number,
        carrier: non_empty(t.carrier.as_deref()),
        order_links: Vec::new(),
        status,
        checkpoints,
        estimated_delivery: t.est_delivery_date.as_deref().and_then(lenient_time),
        fallback_at,
    })
}

/// A part that does not read as its type is an invalid field (value-free text).
fn as_invalid(field: &str, e: MapError) -> MapError {
    match e {
        MapError::Json(reason) => MapError::InvalidField {
            field: field.into(),
            reason,
        },
        other => other,
    }
}
