//! Aggregates as join-semilattices.
//!
//! Webhooks arrive late, twice and out of order. Every stored aggregate here is a
//! join of the observations folded into it: maps keyed by the provider's own ids,
//! registers that keep the observation with the greatest stamp (a total order that
//! includes the event id as the last tie-breaker), and flags that only go one way.
//! Joining is commutative, associative and idempotent, so any arrival order of the
//! same events gives the same aggregate; the figures a CRM sees (revenue, counts,
//! segments) are computed from that state, never accumulated.
//!
//! The parts: orders with their money observations, shipments, parcels and
//! returns (`order`); what one identity knows of a customer (`fragment`); the
//! Customer 360 built from them and its segments (`customer`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::*;
use crate::identity::{Identity, IdentityKey, KeyScope};
use crate::ledger::{Books, EntryKind, OrderFigures, ReportingRevenue};
use crate::limits::{Limits, TouchCounts};
use crate::money::{Currency, Money};

mod customer;
mod fragment;
mod order;
mod payout;
mod sku;

pub use customer::*;
pub use fragment::*;
pub use order::*;
pub use payout::*;
pub use sku::*;

/// A total order over observations: rank first (a lifecycle position), then the
/// event time, then the event id, so two different observations never tie.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    pub rank: u8,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event_id: String,
}

impl Stamp {
    pub fn new(rank: u8, at: OffsetDateTime, event_id: &str) -> Self {
        Self {
            rank,
            at,
            event_id: event_id.to_string(),
        }
    }
}

/// A register that keeps the value with the greatest stamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reg<T> {
    pub stamp: Stamp,
    pub value: T,
}

impl<T> Reg<T> {
    /// Joins an observation into an optional register; returns whether it won.
    pub fn join(slot: &mut Option<Reg<T>>, stamp: Stamp, value: T) -> bool {
        match slot {
            Some(cur) if cur.stamp >= stamp => false,
            _ => {
                *slot = Some(Reg { stamp, value });
                true
            }
        }
    }
}

/// Deterministic 64-bit FNV-1a of an event id (stable across runs and machines,
/// unlike the std hasher).
pub fn event_fingerprint(event_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which events an aggregate has folded: makes a repeated event a no-op and gives
/// a version that depends on the set of events, not on arrival order or batching.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen(pub BTreeSet<u64>);

impl Seen {
    /// Records an event; false when it was already folded.
    pub fn insert(&mut self, event_id: &str) -> bool {
        self.0.insert(event_fingerprint(event_id))
    }

    pub fn count(&self) -> u64 {
        self.0.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The store platforms: their shipment events are their own fulfillments,
/// and their refunds list the lines they put back in stock.
pub fn is_store(provider: &str) -> bool {
    matches!(provider, "shopify" | "woocommerce")
}

/// The providers whose word on money is final (the store's is kept but yields).
pub fn is_payment_provider(provider: &str) -> bool {
    matches!(provider, "stripe" | "adyen" | "paypal")
}
