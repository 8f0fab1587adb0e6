//! What every carrier tracker (AfterShip, EasyPost, Shippo) shares: the assembly
//! of a [`Shipment`] from a tracker snapshot, its envelope, and locations.

use serde::Deserialize;
use storefold_core::event::{Checkpoint, OrderLink, Shipment, ShipmentStatus};
use storefold_core::{Envelope, Event};
use time::OffsetDateTime;

use crate::MapContext;
use crate::serde_util::loose_string;

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

    /// The one `ShipmentUpdated` envelope of this snapshot, at the shipment's time.
    pub(crate) fn into_envelopes(self, ctx: &MapContext<'_>, event_id: &str) -> Vec<Envelope> {
        let provider = self.provider;
        let shipment = self.into_shipment();
        vec![Envelope {
            tenant: ctx.tenant.to_string(),
            provider: provider.to_string(),
            event_id: event_id.to_string(),
            occurred_at: shipment.at,
            event: Event::ShipmentUpdated(shipment),
        }]
    }
}

/// A carrier's `{city, state, country}` location (EasyPost, Shippo).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Location {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) city: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) state: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) country: Option<String>,
}

impl Location {
    /// `city, state, country` of the parts that are there.
    pub(crate) fn joined(&self) -> Option<String> {
        join_location([
            self.city.as_deref(),
            self.state.as_deref(),
            self.country.as_deref(),
        ])
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
