//! AfterShip tracking object -> [`ShipmentUpdated`](storefold_core::Event::ShipmentUpdated).
//!
//! Tags map onto the one status set:
//!
//! | AfterShip tag | status |
//! |---|---|
//! | InfoReceived | label_created |
//! | Pending | none of its own (latest checkpoint, else label_created) |
//! | InTransit | in_transit |
//! | OutForDelivery, AvailableForPickup | out_for_delivery |
//! | Delivered | delivered |
//! | AttemptFail, Exception, Expired | exception |
//! | subtag Exception_010 / Exception_011, or `return_to_sender: true` | returned |
//!
//! AvailableForPickup is `out_for_delivery`, not `delivered`: the parcel waits at a
//! pickup point and is not yet in the customer's hands, so the `delivered` trigger
//! must not fire. AfterShip documents `return_to_sender` as true once any checkpoint
//! carries Exception_010 (returning to sender) or Exception_011 (returned to
//! sender); from then on the shipment is `returned`, whatever the tag (a "Delivered"
//! after that is the delivery back to the sender).

use storefold_core::Envelope;
use storefold_core::event::{Checkpoint, OrderLink, ShipmentStatus};

use super::model::{Tracking, Webhook};
use crate::tracking::{Tracker, join_location};
use crate::{MapContext, MapError, RawInput, from_unix, hash_number, lenient_time, non_empty};

/// The only event mapped; `edd_revise` and `tracking_pending_time` are not.
pub(crate) const TRACKING_UPDATE: &str = "tracking_update";

pub(crate) fn status_of(tag: Option<&str>, subtag: Option<&str>) -> Option<ShipmentStatus> {
    if let Some(sub) = subtag.map(str::trim)
        && (sub.eq_ignore_ascii_case("Exception_010") || sub.eq_ignore_ascii_case("Exception_011"))
    {
        return Some(ShipmentStatus::Returned);
    }
    let status = match tag?.trim() {
        "InfoReceived" => ShipmentStatus::LabelCreated,
        "InTransit" => ShipmentStatus::InTransit,
        "OutForDelivery" | "AvailableForPickup" => ShipmentStatus::OutForDelivery,
        "Delivered" => ShipmentStatus::Delivered,
        "AttemptFail" | "Exception" | "Expired" => ShipmentStatus::Exception,
        _ => return None,
    };
    Some(status)
}

/// `ts` as sent: unix seconds, as a number or a numeric string.
pub(crate) fn ts_of(
    ts: Option<&serde_json::Value>,
) -> Result<Option<time::OffsetDateTime>, MapError> {
    let secs = match ts {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match secs {
        Some(s) => from_unix("ts", s).map(Some),
        None => Err(MapError::InvalidField {
            field: "ts".into(),
            reason: "not unix seconds".into(),
        }),
    }
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let hook: Webhook = crate::parse_json(input.body)?;
    let event = hook
        .event
        .as_deref()
        .ok_or_else(|| MapError::MissingField("event".into()))?;
    if event != TRACKING_UPDATE {
        return Err(MapError::UnsupportedTopic(event.to_string()));
    }
    let msg = hook
        .msg
        .as_ref()
        .ok_or_else(|| MapError::MissingField("msg".into()))?;
    let ts = ts_of(hook.ts.as_ref())?;
    Ok(tracker(ctx, msg, ts.unwrap_or(input.received_at))?.into_envelopes(ctx, input.event_id))
}

fn tracker(
    ctx: &MapContext<'_>,
    msg: &Tracking,
    fallback_at: time::OffsetDateTime,
) -> Result<Tracker, MapError> {
    let tracking_number = non_empty(msg.tracking_number.as_deref())
        .ok_or_else(|| MapError::MissingField("msg.tracking_number".into()))?;
    let returned = msg.return_to_sender == Some(true);
    let status = if returned {
        Some(ShipmentStatus::Returned)
    } else {
        status_of(msg.tag.as_deref(), msg.subtag.as_deref())
    };
    let checkpoints = msg
        .checkpoints
        .iter()
        .filter_map(|c| {
            // A checkpoint without a readable time cannot be placed on the timeline;
            // AfterShip documents empty strings here.
            let at = lenient_time(c.checkpoint_time.as_deref()?)?;
            let status = status_of(c.tag.as_deref(), c.subtag.as_deref())
                .or(status)
                .unwrap_or(ShipmentStatus::InTransit);
            Some(Checkpoint {
                at,
                status,
                message: non_empty(c.message.as_deref()),
                location: non_empty(c.location.as_deref()).or_else(|| {
                    join_location([
                        c.city.as_deref(),
                        c.state.as_deref(),
                        c.country_name.as_deref(),
                    ])
                }),
            })
        })
        .collect();
    let mut order_links = Vec::new();
    if let Some(id) = non_empty(msg.order_id.as_deref()) {
        let order_id = if id.contains(':') {
            id
        } else {
            format!("{}:{id}", ctx.options.store_for("aftership"))
        };
        order_links.push(OrderLink::Order { order_id });
    }
    if let Some(number) = msg.order_number.as_deref().and_then(hash_number) {
        order_links.push(OrderLink::Number { number });
    }
    Ok(Tracker {
        provider: super::NAME,
        tracking_number,
        carrier: non_empty(msg.slug.as_deref()),
        order_links,
        status,
        checkpoints,
        estimated_delivery: msg.expected_delivery.as_deref().and_then(lenient_time),
        fallback_at,
    })
}
