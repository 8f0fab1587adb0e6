//! The Rust side of every record in `schemas/`. Field names are the Avro field names;
//! timestamps are milliseconds since the Unix epoch (Avro `timestamp-millis`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::schema::RecordKind;

#[macro_use]
pub(crate) mod avro_type;
mod view;

pub use avro_type::{AvroJson, AvroType, EmptyDefault, Names, TimestampMillis};
pub use view::{
    AddressView, CheckpointView, ConsentView, ConvertedView, CurrencyRevenueView, CustomerView,
    IdentityValueView, LedgerEntryView, LineItemView, MergedView, MoneyView, OrderFiguresView,
    OrderSummaryView, OrderView, ReportingFiguresView, ReportingRevenueView, ReturnView,
    ShipmentView, TicketView, TotalsView, TouchCountsView, TouchView, UtmView, epoch_millis,
};

/// A record with a schema in `schemas/`, encodable by [`AvroCodec`](crate::AvroCodec).
///
/// Implemented for the records of this crate only: the schema of each is fixed by
/// [`RecordKind`].
pub trait AvroRecord: Serialize + for<'de> Deserialize<'de> + sealed::Sealed {
    /// Which schema the record is written with.
    const KIND: RecordKind;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! avro_record {
    ($ty:ty, $kind:expr) => {
        impl sealed::Sealed for $ty {}
        impl AvroRecord for $ty {
            const KIND: RecordKind = $kind;
        }
    };
}

avro_record!(RawEvent, RecordKind::RawEvent);
avro_record!(CustomerProjection, RecordKind::CustomerProjection);
avro_record!(OrderProjection, RecordKind::OrderProjection);
avro_record!(PayoutProjection, RecordKind::PayoutProjection);
avro_record!(Trigger, RecordKind::Trigger);
avro_record!(StateRecord, RecordKind::StateRecord);
avro_record!(CommitMarker, RecordKind::CommitMarker);

/// A provider webhook as received and verified by the ingest (`raw_event.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawEvent {
    /// The provider's idempotency id, else a content hash of the body.
    pub event_id: String,
    /// Tenant id (also the Kafka key).
    pub tenant: String,
    /// Provider name, e.g. `shopify`.
    pub provider: String,
    /// The provider's topic or event type, e.g. `orders/create`.
    pub topic: String,
    /// Receive time, milliseconds since the Unix epoch.
    pub received_at: i64,
    /// Selected provider headers, names lowercased. A `BTreeMap` so that the
    /// encoding is deterministic.
    pub headers: BTreeMap<String, String>,
    /// The exact request body.
    #[serde(with = "apache_avro::serde::bytes")]
    pub body: Vec<u8>,
    /// How the request was authenticated.
    pub verification: Verification,
    /// W3C `traceparent` of the ingest request.
    pub trace_context: Option<String>,
    /// How `body` is encrypted, when the tenant shreds its raw log.
    #[serde(default)]
    pub encryption: Option<RawEncryption>,
    /// With `encryption`: the body's canonical events scrubbed of personal
    /// data (JSON), folded once the body's key is shredded.
    #[serde(default)]
    pub residue: Option<String>,
}

impl RawEvent {
    /// `received_at` as a time (the epoch for a value out of range).
    pub fn received_time(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.received_at) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// How a raw event's body is encrypted (`raw_event.avsc`'s `RawEncryption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawEncryption {
    /// `aes-256-gcm`.
    pub scheme: String,
    /// The identity key of the body's subject, or the tenant for nobody.
    pub subject: String,
    /// The data key's id.
    pub key_id: String,
    /// The GCM nonce.
    #[serde(with = "apache_avro::serde::bytes")]
    pub nonce: Vec<u8>,
}

/// How the ingest authenticated a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Verified or unsigned.
    pub status: VerificationStatus,
    /// The scheme that was checked (e.g. `shopify-hmac-sha256`); `None` when unsigned.
    pub scheme: Option<String>,
}

impl Verification {
    /// A request whose signature was checked with `scheme` and matched.
    pub fn verified(scheme: impl Into<String>) -> Self {
        Self {
            status: VerificationStatus::Verified,
            scheme: Some(scheme.into()),
        }
    }

    /// A request from a source without signatures (e.g. browser touches).
    pub fn unsigned() -> Self {
        Self {
            status: VerificationStatus::Unsigned,
            scheme: None,
        }
    }
}

/// Avro enum `VerificationStatus`; unknown symbols from newer writers read as
/// `Unsigned` (the schema's enum default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationStatus {
    /// A provider signature or token was checked and matched.
    Verified,
    /// The source has no signature.
    Unsigned,
}

/// The Customer 360 projection (`customer_projection.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProjection {
    /// Tenant id.
    pub tenant: String,
    /// Customer id within the tenant.
    pub customer_id: String,
    /// Projection generation, bumped by `storefold replay`.
    pub generation: i64,
    /// Number of changes of the aggregate within the generation.
    pub version: i64,
    /// Primary email (lowercased), `None` when unknown or redacted.
    pub email: Option<String>,
    /// Primary phone in E.164, `None` when unknown or redacted.
    pub phone: Option<String>,
    /// The customer's personal data was redacted.
    pub redacted: bool,
    /// Survivor's customer id when this customer was merged into another.
    pub merged_into: Option<String>,
    /// Event time of the newest event folded in, milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The Customer 360 as JSON. Deprecated: read [`CustomerProjection::view`]
    /// (kept for one release for consumers that parse it).
    pub doc: String,
    /// The typed Customer 360; `None` for a merge notice and for records
    /// written before the field existed (see [`CustomerProjection::customer_view`]).
    #[serde(default)]
    pub view: Option<CustomerView>,
}

impl CustomerProjection {
    /// The typed Customer 360: the record's `view`, else (a record written
    /// before the typed view) its `doc` read as a Customer 360. `None` for a
    /// merge notice.
    pub fn customer_view(&self) -> Option<std::borrow::Cow<'_, CustomerView>> {
        match &self.view {
            Some(v) => Some(std::borrow::Cow::Borrowed(v)),
            None => CustomerView::from_doc(&self.doc).map(std::borrow::Cow::Owned),
        }
    }
}

/// The order projection (`order_projection.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProjection {
    /// Tenant id.
    pub tenant: String,
    /// Order id namespaced by store, e.g. `shopify:450789469`.
    pub order_id: String,
    /// The customer, once resolved.
    pub customer_id: Option<String>,
    /// Projection generation, bumped by `storefold replay`.
    pub generation: i64,
    /// Number of changes of the aggregate within the generation.
    pub version: i64,
    /// Current order status.
    pub status: String,
    /// Event time of the newest event folded in, milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The order as JSON. Deprecated: read [`OrderProjection::view`] (kept for
    /// one release for consumers that parse it).
    pub doc: String,
    /// The typed order view; `None` for records written before the field
    /// existed (see [`OrderProjection::order_view`]).
    #[serde(default)]
    pub view: Option<OrderView>,
}

impl OrderProjection {
    /// The typed order view: the record's `view`, else (a record written
    /// before the typed view) its `doc` read as an order view.
    pub fn order_view(&self) -> Option<std::borrow::Cow<'_, OrderView>> {
        match &self.view {
            Some(v) => Some(std::borrow::Cow::Borrowed(v)),
            None => OrderView::from_doc(&self.doc).map(std::borrow::Cow::Owned),
        }
    }
}

/// The payout projection (`payout_projection.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutProjection {
    /// Tenant id.
    pub tenant: String,
    /// `stripe`, `adyen`, `paypal`.
    pub provider: String,
    /// The provider's payout id.
    pub payout_id: String,
    /// Projection generation, bumped by `storefold replay`.
    pub generation: i64,
    /// Grows with every change of the payout within the generation.
    pub version: i64,
    /// `pending`, `in_transit`, `paid`, `failed`, `canceled`; `None` while
    /// only lines are known.
    pub status: Option<String>,
    /// ISO code of `amount`.
    pub currency: Option<String>,
    /// What reaches the bank, minor units.
    pub amount: Option<i64>,
    /// `amount − Σ net` of the lines in the payout currency, minor units.
    pub difference: Option<i64>,
    /// Paid, every line placed, the lines add up.
    pub reconciled: bool,
    /// Time of the newest report of the payout, milliseconds since the epoch.
    pub updated_at: i64,
    /// The payout view as JSON (lines, sums, orders, reasons).
    pub doc: String,
}

/// A lifecycle trigger for CRM automations (`trigger.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Deterministic id, identical across replays and redeliveries.
    pub trigger_id: String,
    /// Tenant id.
    pub tenant: String,
    /// The customer the trigger is about.
    pub customer_id: String,
    /// The order concerned, if any.
    pub order_id: Option<String>,
    /// What happened, e.g. `delivered`, `payment_failed` (an open set of strings).
    pub kind: String,
    /// Event time of the source event, milliseconds since the Unix epoch.
    pub occurred_at: i64,
    /// `event_id` of the raw event that caused the trigger.
    pub source_event_id: String,
    /// Kind-specific details as JSON.
    pub data: String,
}

/// One changelog record (`state_record.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The state key (also the Kafka key).
    pub key: String,
    /// What the record holds.
    pub kind: StateKind,
    /// Epoch of the writing task.
    pub epoch: i64,
    /// Batch sequence number within the epoch.
    pub sequence: i64,
    /// The value; `None` deletes the key.
    #[serde(with = "apache_avro::serde::bytes_opt")]
    pub value: Option<Vec<u8>>,
}

/// What a [`StateRecord`] holds. A string in Avro (`aggregate`, `index`, …) so that
/// new kinds stay backward compatible; a kind this build does not know is kept as
/// [`StateKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum StateKind {
    /// A customer or order aggregate.
    Aggregate,
    /// An index entry (identity → customer, order → customer, …).
    Index,
    /// A provider event id already applied.
    Idempotency,
    /// An event parked until what it refers to arrives.
    Parked,
    /// Task metadata.
    Meta,
    /// A commit marker (the value is an encoded [`CommitMarker`]).
    Marker,
    /// The fence record a task writes first in a new epoch.
    Fence,
    /// A kind written by a newer build.
    Other(String),
}

impl StateKind {
    /// The Avro string of the kind.
    pub fn as_str(&self) -> &str {
        match self {
            StateKind::Aggregate => "aggregate",
            StateKind::Index => "index",
            StateKind::Idempotency => "idempotency",
            StateKind::Parked => "parked",
            StateKind::Meta => "meta",
            StateKind::Marker => "marker",
            StateKind::Fence => "fence",
            StateKind::Other(s) => s,
        }
    }
}

impl From<String> for StateKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "aggregate" => StateKind::Aggregate,
            "index" => StateKind::Index,
            "idempotency" => StateKind::Idempotency,
            "parked" => StateKind::Parked,
            "meta" => StateKind::Meta,
            "marker" => StateKind::Marker,
            "fence" => StateKind::Fence,
            _ => StateKind::Other(s),
        }
    }
}

impl From<StateKind> for String {
    fn from(k: StateKind) -> Self {
        match k {
            StateKind::Other(s) => s,
            k => k.as_str().to_owned(),
        }
    }
}

impl FromStr for StateKind {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(StateKind::from(s.to_owned()))
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Commits one batch of changelog records (`commit_marker.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMarker {
    /// Epoch of the committing task.
    pub epoch: i64,
    /// Sequence of the committed batch.
    pub sequence: i64,
    /// Number of state records of the batch.
    pub record_count: i64,
    /// Next offset per raw topic partition reached by the batch.
    pub input_positions: Vec<InputPosition>,
    /// Newest batch whose projections and triggers were produced; -1 when none.
    pub flushed_batch: i64,
}

/// The next offset to consume of one raw topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InputPosition {
    /// Raw topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Next offset to consume.
    pub next_offset: i64,
}

/// Kafka header on projection and trigger records: the receive time (decimal
/// milliseconds since the Unix epoch) of the oldest raw event folded in the batch
/// that produced the record. Sinks measure the end-to-end latency from it.
pub const RECEIVED_AT_HEADER: &str = "storefold-received-at";
