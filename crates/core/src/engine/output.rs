//! What folding an event and a batch gives: outcomes, projections, merges, triggers.

use super::*;

/// How an event was handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Folded into state.
    Applied,
    /// Already folded before (same event id): nothing changed.
    Duplicate,
    /// Its order is not known yet: parked under these references.
    Parked(Vec<String>),
}

/// Why an event could not be folded at all (it goes to the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("event names no identity (no email, phone, external or anonymous id)")]
    NoIdentity,
    #[error("event names no order reference")]
    NoOrderLink,
    #[error("inventory event names no SKU")]
    NoSku,
}

/// A projection to publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Projection {
    Customer {
        version: u64,
        view: Arc<Customer>,
    },
    /// A customer id that now lives on as another (the CRM should merge it).
    CustomerMerged {
        tenant: String,
        customer_id: String,
        merged_into: String,
        reason: String,
        version: u64,
    },
    Order {
        version: u64,
        view: Box<OrderView>,
    },
    /// A payout with its lines and the orders they belong to.
    Payout {
        version: u64,
        view: Box<super::PayoutView>,
    },
}

impl Projection {
    /// `{tenant}/{id}`: the projection topic key.
    pub fn key(&self) -> String {
        match self {
            Projection::Customer { view, .. } => format!("{}/{}", view.tenant, view.customer_id),
            Projection::CustomerMerged {
                tenant,
                customer_id,
                ..
            } => format!("{tenant}/{customer_id}"),
            Projection::Order { view, .. } => format!("{}/{}", view.tenant, view.order_id),
            Projection::Payout { view, .. } => {
                format!("{}/{}:{}", view.tenant, view.provider, view.payout_id)
            }
        }
    }
}

/// The order as the CRM sees it: the aggregate plus its figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub tenant: String,
    pub order_id: OrderId,
    pub customer_id: Option<String>,
    pub figures: OrderFigures,
    /// The order's books: every amount, counted or not, and why.
    #[serde(default)]
    pub ledger: Vec<LedgerEntry>,
    /// Shipments with store fulfillment events merged into their tracked parcels.
    pub shipments: Vec<crate::aggregate::ShipmentView>,
    /// The customer's first and last touch as of the order's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touches: Option<Box<OrderTouches>>,
    pub order: Arc<Order>,
}

/// A merge decided by identity resolution.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Merge {
    pub tenant: String,
    pub survivor: String,
    pub merged: String,
    pub reason: String,
}

/// A lifecycle event for automations. Triggers are derived from state: each
/// has a stable id (the same fact gives the same id in any arrival order and
/// across a replay), and one is published again, with the same id, only when
/// its content changes (a correction: consumers keep the newest per id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Stable: derived from the fact (order, subject), never from arrival.
    pub trigger_id: String,
    pub tenant: String,
    pub kind: String,
    pub customer_id: Option<String>,
    pub order_id: Option<OrderId>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub source_event_id: String,
    pub data: serde_json::Value,
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct BatchOutput {
    /// Changed state records (`None` = delete), in key order.
    pub changes: Vec<(StateKey, Option<StateValue>)>,
    pub projections: Vec<Projection>,
    pub merges: Vec<Merge>,
    pub triggers: Vec<Trigger>,
    /// The erased identities the batch touched (tenant, key): the subjects
    /// whose raw-event data keys are to be shredded (see
    /// [`FoldConfig::subject`]). Listed again whenever a later batch touches
    /// one; shredding is idempotent.
    pub erased: Vec<(String, IdentityKey)>,
}
