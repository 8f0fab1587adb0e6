//! Aggregates as join-semilattices.
//!
//! Webhooks arrive late, twice and out of order. Every stored aggregate here is a
//! join of the observations folded into it: maps keyed by the provider's own ids,
//! registers that keep the observation with the greatest stamp (a total order that
//! includes the event id as the last tie-breaker), and flags that only go one way.
//! Joining is commutative, associative and idempotent, so any arrival order of the
//! same events gives the same aggregate; the figures a CRM sees (revenue, counts,
//! segments) are computed from that state, never accumulated.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::*;
use crate::identity::{Identity, IdentityKey};
use crate::ledger::{Books, EntryKind, OrderFigures, ReportingRevenue};
use crate::limits::{Limits, TouchCounts};
use crate::money::{Currency, Money};

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

/// The providers whose word on money is final (the store's is kept but yields).
pub fn is_payment_provider(provider: &str) -> bool {
    matches!(provider, "stripe" | "adyen" | "paypal")
}

/// Every observation of one payment, by canonical event id: the ledger reads
/// them all (see `docs/books.md`), so nothing depends on which came first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    pub observations: BTreeMap<String, Payment>,
}

/// Every observation of one refund, by canonical event id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RefundRecord {
    pub observations: BTreeMap<String, Refund>,
}

/// Every observation of one dispute, by canonical event id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DisputeRecord {
    pub observations: BTreeMap<String, Dispute>,
}

/// State written before the ledger kept every observation held only the
/// dominant one (`{"state": {"stamp": .., "value": ..}, ..}`): it reads as a
/// record of that one observation. `storefold replay` rebuilds the rest.
#[derive(Deserialize)]
#[serde(untagged)]
enum RecordRepr<T> {
    Current { observations: BTreeMap<String, T> },
    Legacy { state: Reg<T> },
}

impl<T> RecordRepr<T> {
    fn into_map(self) -> BTreeMap<String, T> {
        match self {
            RecordRepr::Current { observations } => observations,
            RecordRepr::Legacy { state } => BTreeMap::from([(state.stamp.event_id, state.value)]),
        }
    }
}

macro_rules! record_deserialize {
    ($record:ident, $value:ty) => {
        impl<'de> Deserialize<'de> for $record {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                RecordRepr::<$value>::deserialize(d).map(|r| $record {
                    observations: r.into_map(),
                })
            }
        }
    };
}

record_deserialize!(PaymentRecord, Payment);
record_deserialize!(RefundRecord, Refund);
record_deserialize!(DisputeRecord, Dispute);

/// One shipment (a tracking number) with its merged timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentEntry {
    pub tracking_number: String,
    #[serde(default)]
    pub carrier: Option<Reg<String>>,
    #[serde(default)]
    pub fulfillment_id: Option<String>,
    #[serde(default)]
    pub checkpoints: BTreeSet<Checkpoint>,
    #[serde(default)]
    pub line_item_ids: BTreeSet<String>,
    #[serde(default)]
    pub estimated_delivery: Option<Reg<OffsetDateTime>>,
    #[serde(default)]
    pub providers: BTreeSet<String>,
}

impl ShipmentEntry {
    pub fn new(tracking_number: &str) -> Self {
        ShipmentEntry {
            tracking_number: tracking_number.to_string(),
            carrier: None,
            fulfillment_id: None,
            checkpoints: BTreeSet::new(),
            line_item_ids: BTreeSet::new(),
            estimated_delivery: None,
            providers: BTreeSet::new(),
        }
    }

    /// The status of the latest checkpoint (by time, then lifecycle order).
    pub fn status(&self) -> Option<ShipmentStatus> {
        self.checkpoints
            .iter()
            .max_by(|a, b| (a.at, a.status).cmp(&(b.at, b.status)))
            .map(|c| c.status)
    }

    /// Joins one tracking observation into the entry.
    pub fn absorb(&mut self, s: &Shipment, env: &Envelope) {
        let id = env.event_id.as_str();
        if let Some(c) = &s.carrier {
            Reg::join(
                &mut self.carrier,
                Stamp::new(0, env.occurred_at, id),
                c.clone(),
            );
        }
        if let Some(f) = &s.fulfillment_id {
            self.fulfillment_id = self.fulfillment_id.clone().max(Some(f.clone()));
        }
        if let Some(eta) = s.estimated_delivery {
            Reg::join(
                &mut self.estimated_delivery,
                Stamp::new(0, env.occurred_at, id),
                eta,
            );
        }
        self.providers.insert(s.provider.clone());
        self.line_item_ids.extend(s.line_item_ids.iter().cloned());
        self.checkpoints.extend(s.checkpoints.iter().cloned());
        let covered = s
            .checkpoints
            .iter()
            .any(|c| c.status == s.status && c.at >= s.at);
        if !covered {
            self.checkpoints.insert(Checkpoint {
                at: s.at,
                status: s.status,
                message: None,
                location: None,
            });
        }
    }

    /// The join of two entries of one parcel (a store's fulfillment and the
    /// carrier's tracking): commutative, so the view does not depend on which
    /// source spoke first.
    pub fn merge(&mut self, other: &ShipmentEntry) {
        if let Some(c) = &other.carrier {
            Reg::join(&mut self.carrier, c.stamp.clone(), c.value.clone());
        }
        self.fulfillment_id = self
            .fulfillment_id
            .clone()
            .max(other.fulfillment_id.clone());
        if let Some(e) = &other.estimated_delivery {
            Reg::join(&mut self.estimated_delivery, e.stamp.clone(), e.value);
        }
        self.providers.extend(other.providers.iter().cloned());
        self.line_item_ids
            .extend(other.line_item_ids.iter().cloned());
        self.checkpoints.extend(other.checkpoints.iter().cloned());
    }

    /// Keeps the first checkpoint and the newest `newest` (a join: see
    /// [`crate::limits::keep_first_and_newest`]); returns how many went.
    pub fn bound(&mut self, newest: usize) -> usize {
        crate::limits::keep_first_and_newest(&mut self.checkpoints, newest)
    }

    /// Removes what could identify a person (checkpoint locations).
    pub fn scrub(&mut self) {
        self.checkpoints = std::mem::take(&mut self.checkpoints)
            .into_iter()
            .map(|mut c| {
                c.location = None;
                c
            })
            .collect();
    }
}

/// A shipment as published: its merged timeline and current status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentView {
    pub tracking_number: String,
    pub carrier: Option<String>,
    pub status: Option<ShipmentStatus>,
    pub checkpoints: Vec<Checkpoint>,
    pub line_item_ids: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub estimated_delivery: Option<OffsetDateTime>,
}

impl ShipmentView {
    fn new(s: &ShipmentEntry) -> Self {
        let mut checkpoints: Vec<Checkpoint> = s.checkpoints.iter().cloned().collect();
        checkpoints.sort_by_key(|a| (a.at, a.status));
        ShipmentView {
            tracking_number: s.tracking_number.clone(),
            carrier: s.carrier.as_ref().map(|c| c.value.clone()),
            status: checkpoints.last().map(|c| c.status),
            checkpoints,
            line_item_ids: s.line_item_ids.iter().cloned().collect(),
            estimated_delivery: s.estimated_delivery.as_ref().map(|e| e.value),
        }
    }
}

/// One return.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnEntry {
    #[serde(default)]
    pub requested: Option<Reg<Return>>,
    #[serde(default)]
    pub resolved: Option<Reg<Return>>,
}

impl ReturnEntry {
    pub fn reason(&self) -> ReasonCode {
        self.resolved
            .as_ref()
            .or(self.requested.as_ref())
            .map(|r| r.value.reason)
            .unwrap_or(ReasonCode::Other)
    }
}

/// The Order aggregate: the store's snapshot, every money observation of its
/// providers (the ledger is computed from them), and its store shipments.
/// Carrier tracking lives in parcels of its own (see [`Parcel`]): an order
/// holds the tracking numbers of its parcels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    /// The newest store snapshot (by `updated_at`).
    #[serde(default)]
    pub snapshot: Option<Reg<Box<OrderUpserted>>>,
    /// By `provider:payment_id`.
    #[serde(default)]
    pub payments: BTreeMap<String, PaymentRecord>,
    /// By `provider:refund_id`.
    #[serde(default)]
    pub refunds: BTreeMap<String, RefundRecord>,
    /// By `provider:dispute_id`.
    #[serde(default)]
    pub disputes: BTreeMap<String, DisputeRecord>,
    /// The store's own shipment events (fulfillments), by tracking number
    /// (`fulfillment:<id>` for a fulfillment without one).
    #[serde(default)]
    pub shipments: BTreeMap<String, ShipmentEntry>,
    /// Every tracking number the order holds (its snapshot's, its store
    /// shipments', and those a carrier tied to its order number).
    #[serde(default)]
    pub parcels: BTreeSet<String>,
    #[serde(default)]
    pub returns: BTreeMap<String, ReturnEntry>,
    #[serde(default)]
    pub redacted: bool,
    /// The customer key kept when an erasure removed the snapshot's identity, so
    /// the (anonymous) figures stay with their customer.
    #[serde(default)]
    pub erased_customer: Option<IdentityKey>,
    #[serde(default)]
    pub seen: Seen,
    /// Newest event time folded in.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_event_at: Option<OffsetDateTime>,
}

/// A carrier's parcel, by tracking number: every tracking event that named it,
/// whichever order (or orders, for a combined parcel) holds the number, and
/// whenever that order learned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub entry: ShipmentEntry,
    #[serde(default)]
    pub seen: Seen,
    /// Personal data (checkpoint locations) removed: an order holding it was erased.
    #[serde(default)]
    pub redacted: bool,
}

impl Parcel {
    pub fn new(tracking_number: &str) -> Self {
        Parcel {
            entry: ShipmentEntry::new(tracking_number),
            seen: Seen::default(),
            redacted: false,
        }
    }

    /// Folds one tracking event; `false` for a duplicate.
    pub fn apply(&mut self, s: &Shipment, env: &Envelope) -> bool {
        if !self.seen.insert(&env.event_id) {
            return false;
        }
        self.entry.absorb(s, env);
        if self.redacted {
            self.entry.scrub();
        }
        true
    }
}

impl Order {
    pub fn new(order_id: &str) -> Self {
        Order {
            order_id: order_id.to_string(),
            snapshot: None,
            payments: BTreeMap::new(),
            refunds: BTreeMap::new(),
            disputes: BTreeMap::new(),
            shipments: BTreeMap::new(),
            parcels: BTreeSet::new(),
            returns: BTreeMap::new(),
            redacted: false,
            erased_customer: None,
            seen: Seen::default(),
            last_event_at: None,
        }
    }

    /// Folds one event into the order; `false` for a duplicate. Events that do
    /// not concern orders are ignored.
    pub fn apply(&mut self, env: &Envelope) -> bool {
        if !self.seen.insert(&env.event_id) {
            return false;
        }
        self.last_event_at = self.last_event_at.max(Some(env.occurred_at));
        let id = env.event_id.as_str();
        match &env.event {
            Event::OrderUpserted(o) => {
                let stamp = Stamp::new(0, o.updated_at, id);
                self.parcels.extend(o.tracking_numbers.iter().cloned());
                Reg::join(&mut self.snapshot, stamp, o.clone());
            }
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => {
                let key = format!("{}:{}", p.provider, p.payment_id);
                self.payments
                    .entry(key)
                    .or_default()
                    .observations
                    .insert(id.to_string(), p.clone());
            }
            Event::RefundIssued(r) => {
                let key = format!("{}:{}", r.provider, r.refund_id);
                self.refunds
                    .entry(key)
                    .or_default()
                    .observations
                    .insert(id.to_string(), r.clone());
            }
            Event::DisputeOpened(d) | Event::DisputeClosed(d) => {
                let key = format!("{}:{}", d.provider, d.dispute_id);
                self.disputes
                    .entry(key)
                    .or_default()
                    .observations
                    .insert(id.to_string(), d.clone());
            }
            Event::ShipmentUpdated(s) => {
                if !s.tracking_number.starts_with("fulfillment:") {
                    self.parcels.insert(s.tracking_number.clone());
                }
                self.shipments
                    .entry(s.tracking_number.clone())
                    .or_insert_with(|| ShipmentEntry::new(&s.tracking_number))
                    .absorb(s, env);
            }
            Event::ReturnRequested(r) | Event::ReturnResolved(r) => {
                let resolved = matches!(env.event, Event::ReturnResolved(_));
                let entry = self
                    .returns
                    .entry(r.return_id.clone())
                    .or_insert(ReturnEntry {
                        requested: None,
                        resolved: None,
                    });
                let stamp = Stamp::new(0, env.occurred_at, id);
                if resolved {
                    Reg::join(&mut entry.resolved, stamp, r.clone());
                } else {
                    Reg::join(&mut entry.requested, stamp, r.clone());
                }
            }
            Event::CustomerRedacted(_) => self.redacted = true,
            _ => {}
        }
        if self.redacted {
            self.scrub(&env.tenant);
        }
        true
    }

    /// Removes personal data, keeping the figures and the (hashed) customer key.
    pub fn scrub(&mut self, tenant: &str) {
        self.redacted = true;
        if let Some(k) = self
            .snapshot
            .as_ref()
            .and_then(|s| s.value.customer.primary_key(tenant))
        {
            self.erased_customer = Some(k);
        }
        if let Some(s) = &mut self.snapshot {
            let o = &mut s.value;
            o.customer = Identity::default();
            o.customer_name = None;
            o.shipping_address = None;
            o.billing_address = None;
            o.note = None;
            o.attribution.note_attributes.clear();
        }
        for rec in self.payments.values_mut() {
            for p in rec.observations.values_mut() {
                p.payer = Identity::default();
            }
        }
        for rec in self.refunds.values_mut() {
            for r in rec.observations.values_mut() {
                r.reason = None;
            }
        }
        for r in self.returns.values_mut() {
            for reg in [&mut r.requested, &mut r.resolved].into_iter().flatten() {
                reg.value.note = None;
            }
        }
        for s in self.shipments.values_mut() {
            s.scrub();
        }
    }

    /// Shipments as a customer should see them: one per tracking number, the
    /// store's fulfillment events merged with the carrier's parcel of the same
    /// number, and fulfillment events that name only a fulfillment (keyed
    /// `fulfillment:<id>`) merged into the tracked shipments of that
    /// fulfillment. Derived at read time, so arrival order does not matter.
    pub fn shipment_views(&self, parcels: &BTreeMap<String, &Parcel>) -> Vec<ShipmentView> {
        let pseudo = |k: &str| k.strip_prefix("fulfillment:").map(str::to_string);
        let mut numbers: BTreeSet<&str> = self.parcels.iter().map(String::as_str).collect();
        numbers.extend(
            self.shipments
                .keys()
                .filter(|k| pseudo(k).is_none())
                .map(String::as_str),
        );
        let mut claimed: BTreeSet<String> = BTreeSet::new();
        let mut views = Vec::new();
        for number in numbers {
            let mut entry = match self.shipments.get(number) {
                Some(s) => s.clone(),
                None => ShipmentEntry::new(number),
            };
            if let Some(p) = parcels.get(number) {
                entry.merge(&p.entry);
            }
            if let Some(fid) = &entry.fulfillment_id
                && let Some(p) = self.shipments.get(&format!("fulfillment:{fid}"))
            {
                entry.checkpoints.extend(p.checkpoints.iter().cloned());
                claimed.insert(fid.clone());
            }
            if entry.checkpoints.is_empty() {
                // A number the store recorded that nothing tracked yet.
                continue;
            }
            views.push(ShipmentView::new(&entry));
        }
        for (key, s) in &self.shipments {
            if let Some(fid) = pseudo(key)
                && !claimed.contains(&fid)
            {
                views.push(ShipmentView::new(s));
            }
        }
        views
    }

    /// The key of the customer the store says placed the order.
    pub fn customer_key(&self, tenant: &str) -> Option<IdentityKey> {
        self.snapshot
            .as_ref()
            .and_then(|s| s.value.customer.primary_key(tenant))
            .or_else(|| self.erased_customer.clone())
    }

    /// Whether the order counts as placed revenue-wise (a non-test snapshot).
    pub fn counts(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| !s.value.test)
    }

    pub fn created_at(&self) -> Option<OffsetDateTime> {
        self.snapshot.as_ref().map(|s| s.value.created_at)
    }

    /// The order's books (every entry) and the figures counted from them,
    /// without a reporting currency.
    pub fn books(&self) -> crate::ledger::Books {
        crate::ledger::books(self, None)
    }

    /// The figures of [`Order::books`].
    pub fn figures(&self) -> OrderFigures {
        self.books().figures
    }
}

/// Profile facts from a store's customer record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub addresses: Vec<Address>,
    #[serde(default)]
    pub consent: Consent,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub created_at: Option<OffsetDateTime>,
}

/// A touch, as a customer keeps it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TouchEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub touch_id: String,
    #[serde(default)]
    pub utm: Utm,
    #[serde(default)]
    pub landing_page: Option<String>,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub gclid: Option<String>,
    #[serde(default)]
    pub fbclid: Option<String>,
}

/// An identity value seen for a customer (personal data; erased on redaction).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityValue {
    /// `email`, `phone`, `anonymous_id`, or the external id's source.
    pub kind: String,
    pub value: String,
}

/// What one identity (an email, a phone, an external id, an anonymous id) knows
/// of a customer. A customer is the join of the fragments that resolve to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub key: IdentityKey,
    #[serde(default)]
    pub profile: Option<Reg<Profile>>,
    #[serde(default)]
    pub identities: BTreeSet<IdentityValue>,
    /// The newest touches by touch id (at most `Limits::touches`, see
    /// [`Fragment::bound`]).
    #[serde(default)]
    pub touches: BTreeMap<String, TouchEntry>,
    /// The newest tickets (at most `Limits::tickets`).
    #[serde(default)]
    pub tickets: BTreeMap<String, Reg<Ticket>>,
    /// The earliest touch ever folded in, kept whatever `touches` drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_touch: Option<TouchEntry>,
    /// Every touch id folded in (fingerprints), so touches are counted
    /// exactly while only the newest are kept.
    #[serde(default, skip_serializing_if = "Seen::is_empty")]
    pub touch_ids: Seen,
    /// Touch events by UTM source, medium and campaign.
    #[serde(default, skip_serializing_if = "TouchCounts::is_empty")]
    pub touch_counts: TouchCounts,
    /// Personal data removed (asked for, or claimed by an email that asked).
    #[serde(default)]
    pub redacted: bool,
    /// A redaction named this identity itself: its claims are erased too.
    #[serde(default)]
    pub erasure_requested: bool,
    #[serde(default)]
    pub seen: Seen,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_event_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_event_at: Option<OffsetDateTime>,
}

impl Fragment {
    pub fn new(key: IdentityKey) -> Self {
        Fragment {
            key,
            profile: None,
            identities: BTreeSet::new(),
            touches: BTreeMap::new(),
            tickets: BTreeMap::new(),
            first_touch: None,
            touch_ids: Seen::default(),
            touch_counts: TouchCounts::default(),
            redacted: false,
            erasure_requested: false,
            seen: Seen::default(),
            first_event_at: None,
            last_event_at: None,
        }
    }

    /// Remembers the identity values of an event (unless erased).
    pub fn add_identity(&mut self, id: &Identity) {
        if self.redacted {
            return;
        }
        if let Some(e) = &id.email {
            self.identities.insert(IdentityValue {
                kind: "email".into(),
                value: e.clone(),
            });
        }
        if let Some(p) = &id.phone {
            self.identities.insert(IdentityValue {
                kind: "phone".into(),
                value: p.clone(),
            });
        }
        for x in &id.external {
            self.identities.insert(IdentityValue {
                kind: x.source.clone(),
                value: x.id.clone(),
            });
        }
        if let Some(a) = &id.anonymous_id {
            self.identities.insert(IdentityValue {
                kind: "anonymous_id".into(),
                value: a.clone(),
            });
        }
    }

    /// Folds one event into the fragment; `false` for a duplicate.
    pub fn apply(&mut self, env: &Envelope) -> bool {
        if !self.seen.insert(&env.event_id) {
            return false;
        }
        self.first_event_at = Some(
            self.first_event_at
                .map_or(env.occurred_at, |t| t.min(env.occurred_at)),
        );
        self.last_event_at = self.last_event_at.max(Some(env.occurred_at));
        let id = env.event_id.as_str();
        match &env.event {
            Event::CustomerUpserted(c) => {
                self.add_identity(&c.identity);
                let profile = Profile {
                    first_name: c.first_name.clone(),
                    last_name: c.last_name.clone(),
                    addresses: c.addresses.clone(),
                    consent: c.consent.clone(),
                    tags: c.tags.clone(),
                    note: c.note.clone(),
                    deleted: c.deleted,
                    created_at: c.created_at,
                };
                Reg::join(&mut self.profile, Stamp::new(0, c.updated_at, id), profile);
            }
            Event::OrderUpserted(o) => self.add_identity(&o.customer),
            Event::Touch(t) => {
                self.add_identity(&t.identity);
                let entry = TouchEntry {
                    at: t.at,
                    touch_id: t.touch_id.clone(),
                    utm: t.utm.clone(),
                    landing_page: t.landing_page.clone(),
                    referrer: t.referrer.clone(),
                    gclid: t.gclid.clone(),
                    fbclid: t.fbclid.clone(),
                };
                self.touch_ids.insert(&t.touch_id);
                self.touch_counts.count(&t.utm);
                if self.first_touch.as_ref().is_none_or(|f| entry < *f) {
                    self.first_touch = Some(entry.clone());
                }
                // Two touches with one id: the later one (by its own time, then
                // content) is the touch, whichever arrived last.
                match self.touches.get(&t.touch_id) {
                    Some(cur) if *cur >= entry => {}
                    _ => {
                        self.touches.insert(t.touch_id.clone(), entry);
                    }
                }
            }
            Event::Identify(i) => self.add_identity(&i.identity),
            Event::TicketUpdated(t) => {
                self.add_identity(&t.requester);
                let key = format!("{}:{}", t.provider, t.ticket_id);
                let slot = self.tickets.entry(key);
                let stamp = Stamp::new(0, t.updated_at, id);
                match slot {
                    std::collections::btree_map::Entry::Occupied(mut e) => {
                        if e.get().stamp < stamp {
                            e.insert(Reg {
                                stamp,
                                value: t.clone(),
                            });
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(Reg {
                            stamp,
                            value: t.clone(),
                        });
                    }
                }
            }
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => self.add_identity(&p.payer),
            Event::CustomerRedacted(_) => {
                self.redacted = true;
                self.erasure_requested = true;
            }
            _ => {}
        }
        if self.redacted {
            self.scrub();
        }
        true
    }

    /// Removes personal data, keeping counts and dates.
    pub fn scrub(&mut self) {
        self.redacted = true;
        self.identities.clear();
        if let Some(p) = &mut self.profile {
            let v = &mut p.value;
            v.first_name = None;
            v.last_name = None;
            v.addresses.clear();
            v.note = None;
            v.tags.clear();
        }
        for t in self.tickets.values_mut() {
            t.value.requester = Identity::default();
            t.value.subject = None;
        }
        for t in self.touches.values_mut().chain(self.first_touch.as_mut()) {
            t.gclid = None;
            t.fbclid = None;
        }
    }

    /// Keeps the newest touches and tickets and bounds the touch counts. What
    /// stays depends only on the events folded in: the newest N of the
    /// newest observation per id (an older observation of a dropped id is
    /// older than everything kept and goes too), the earliest touch, counts.
    pub fn bound(&mut self, limits: &Limits) {
        let n = limits.touches.max(1);
        if self.touches.len() > n {
            let mut by_time: Vec<(&TouchEntry, &String)> =
                self.touches.iter().map(|(k, t)| (t, k)).collect();
            by_time.sort();
            let drop: Vec<String> = by_time[..by_time.len() - n]
                .iter()
                .map(|(_, k)| (*k).clone())
                .collect();
            for k in drop {
                self.touches.remove(&k);
            }
        }
        let n = limits.tickets.max(1);
        if self.tickets.len() > n {
            let mut by_stamp: Vec<(&Stamp, &String)> =
                self.tickets.iter().map(|(k, t)| (&t.stamp, k)).collect();
            by_stamp.sort();
            let drop: Vec<String> = by_stamp[..by_stamp.len() - n]
                .iter()
                .map(|(_, k)| (*k).clone())
                .collect();
            for k in drop {
                self.tickets.remove(&k);
            }
        }
        self.touch_counts.bound(limits.touch_values);
    }

    /// Touches folded in (distinct touch ids).
    pub fn touch_count(&self) -> u64 {
        // State written before the ids were kept counts what it holds.
        self.touch_ids.count().max(self.touches.len() as u64)
    }
}

/// Revenue figures of a customer in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyRevenue {
    pub currency: Currency,
    pub gross: i64,
    pub refunded: i64,
    pub chargeback_lost: i64,
    pub net: i64,
    /// Orders paid in this currency.
    pub orders: u64,
    /// Average order value (gross / orders), minor units, rounded down.
    pub aov: i64,
}

/// A merged-in customer: its former id and why it merged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MergeRecord {
    pub merged_id: String,
    pub reason: String,
}

/// One order in a customer's list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub status: OrderStatus,
    pub total: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A ticket in a customer's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSummary {
    pub provider: String,
    pub ticket_id: String,
    pub status: TicketStatus,
    pub reasons: Vec<ReasonCode>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Seconds to the first response, when answered.
    pub first_response_secs: Option<i64>,
    pub csat: Option<u8>,
}

/// The Customer 360: what the CRM sees. Stored with its customer (to publish
/// only changes), so every field may be missing in older state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Customer {
    pub tenant: String,
    pub customer_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub addresses: Vec<Address>,
    pub consent: Consent,
    pub tags: Vec<String>,
    pub identities: Vec<IdentityValue>,
    pub merged: Vec<MergeRecord>,
    pub first_touch: Option<TouchEntry>,
    pub last_touch: Option<TouchEntry>,
    pub touches: u64,
    /// Touch events by UTM source, medium and campaign.
    #[serde(default, skip_serializing_if = "TouchCounts::is_empty")]
    pub touch_counts: TouchCounts,
    pub orders_count: u64,
    pub orders: Vec<OrderSummary>,
    pub revenue: Vec<CurrencyRevenue>,
    /// Revenue in the tenant's reporting currency, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_reporting: Option<ReportingRevenue>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_order_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_order_at: Option<OffsetDateTime>,
    pub first_order_id: Option<String>,
    pub last_order_id: Option<String>,
    pub returns: u64,
    pub return_reasons: BTreeMap<String, u64>,
    pub tickets: Vec<TicketSummary>,
    pub open_tickets: u64,
    pub ticket_reasons: BTreeMap<String, u64>,
    /// Average CSAT ×100 (e.g. 450 = 4.5), when any rating exists.
    pub csat_avg_x100: Option<u32>,
    pub csat_count: u64,
    pub chargebacks: u64,
    pub chargebacks_lost: u64,
    pub segments: Vec<String>,
    pub redacted: bool,
    pub deleted_at_source: bool,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_seen_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_event_at: Option<OffsetDateTime>,
    /// Lists were cut to their newest entries (`orders`, `tickets`); the
    /// figures and counts above still cover everything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// How many entries each cut list left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub omitted: BTreeMap<String, u64>,
}

fn reason_name(r: ReasonCode) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".into())
}

impl Customer {
    /// Builds the 360 view from the fragments that resolve to one customer and
    /// the orders placed by it with their books. Pure and order-independent:
    /// inputs are sorted and joined.
    pub fn build(
        tenant: &str,
        anchor: &IdentityKey,
        fragments: &[&Fragment],
        orders: &[(&Order, &Books)],
        merged: Vec<MergeRecord>,
        limits: &Limits,
    ) -> Customer {
        // The customer is erased when its anchor is: a member erased on its own
        // (a phone named in a redaction) loses its data, not the customer's.
        let redacted = fragments.iter().any(|f| f.key == *anchor && f.redacted);
        let mut identities: BTreeSet<IdentityValue> = BTreeSet::new();
        let mut profile: Option<&Reg<Profile>> = None;
        let mut touches: BTreeMap<&str, &TouchEntry> = BTreeMap::new();
        let mut first_touch: Option<&TouchEntry> = None;
        let mut touch_ids: BTreeSet<u64> = BTreeSet::new();
        let mut touch_counts = TouchCounts::default();
        let mut tickets: BTreeMap<&str, &Reg<Ticket>> = BTreeMap::new();
        let mut first_seen: Option<OffsetDateTime> = None;
        let mut last_event: Option<OffsetDateTime> = None;
        for f in fragments {
            identities.extend(f.identities.iter().cloned());
            if let Some(p) = &f.profile
                && profile.is_none_or(|cur| cur.stamp < p.stamp)
            {
                profile = Some(p);
            }
            for t in f.first_touch.iter().chain(f.touches.values()) {
                if first_touch.is_none_or(|cur| t < cur) {
                    first_touch = Some(t);
                }
            }
            touch_ids.extend(f.touch_ids.0.iter().copied());
            touch_counts.absorb(&f.touch_counts, limits.touch_values);
            for (k, t) in &f.touches {
                match touches.get(k.as_str()) {
                    Some(cur) if *cur >= t => {}
                    _ => {
                        touches.insert(k, t);
                    }
                }
            }
            for (k, t) in &f.tickets {
                match tickets.get(k.as_str()) {
                    Some(cur) if cur.stamp >= t.stamp => {}
                    _ => {
                        tickets.insert(k, t);
                    }
                }
            }
            first_seen = match (first_seen, f.first_event_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last_event = last_event.max(f.last_event_at);
        }
        let mut sorted_orders: Vec<(&Order, &Books)> =
            orders.iter().copied().filter(|(o, _)| o.counts()).collect();
        sorted_orders.sort_by(|a, b| {
            (a.0.created_at(), &a.0.order_id).cmp(&(b.0.created_at(), &b.0.order_id))
        });
        let mut revenue: BTreeMap<Currency, CurrencyRevenue> = BTreeMap::new();
        let mut reporting: Option<ReportingRevenue> = None;
        let mut summaries = Vec::new();
        let mut counted: Vec<&Order> = Vec::new();
        let mut returns = 0u64;
        let mut return_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut chargebacks = 0u64;
        let mut chargebacks_lost = 0u64;
        for (o, books) in &sorted_orders {
            let Some(snap) = &o.snapshot else { continue };
            let s = &snap.value;
            last_event = last_event.max(o.last_event_at);
            let figures = &books.figures;
            summaries.push(OrderSummary {
                order_id: o.order_id.clone(),
                number: s.number.clone(),
                status: s.status,
                total: s.totals.total,
                created_at: s.created_at,
            });
            for r in o.returns.values() {
                returns += 1;
                *return_reasons.entry(reason_name(r.reason())).or_default() += 1;
            }
            for e in &books.entries {
                match e.kind {
                    EntryKind::DisputeOpened => chargebacks += 1,
                    EntryKind::DisputeLost => chargebacks_lost += 1,
                    _ => {}
                }
            }
            let cancelled_unpaid = matches!(s.status, OrderStatus::Cancelled | OrderStatus::Failed)
                && figures.paid.is_empty();
            if cancelled_unpaid {
                continue;
            }
            counted.push(o);
            fn slot(
                revenue: &mut BTreeMap<Currency, CurrencyRevenue>,
                c: Currency,
            ) -> &mut CurrencyRevenue {
                revenue.entry(c).or_insert(CurrencyRevenue {
                    currency: c,
                    gross: 0,
                    refunded: 0,
                    chargeback_lost: 0,
                    net: 0,
                    orders: 0,
                    aov: 0,
                })
            }
            for m in figures.paid.iter() {
                let e = slot(&mut revenue, m.currency);
                e.gross = e.gross.saturating_add(m.minor);
                if m.minor > 0 {
                    e.orders += 1;
                }
            }
            for m in figures.refunded.iter() {
                let e = slot(&mut revenue, m.currency);
                e.refunded = e.refunded.saturating_add(m.minor);
            }
            for m in figures.chargeback_lost.iter() {
                let e = slot(&mut revenue, m.currency);
                e.chargeback_lost = e.chargeback_lost.saturating_add(m.minor);
            }
            if let Some(rf) = &figures.reporting {
                let r = reporting.get_or_insert_with(|| ReportingRevenue {
                    currency: rf.currency,
                    gross: 0,
                    refunded: 0,
                    chargeback_lost: 0,
                    net: 0,
                    fees: 0,
                    unconverted: BTreeMap::new(),
                });
                r.gross = r.gross.saturating_add(rf.paid);
                r.refunded = r.refunded.saturating_add(rf.refunded);
                r.chargeback_lost = r.chargeback_lost.saturating_add(rf.chargeback_lost);
                r.fees = r.fees.saturating_add(rf.fees);
                for (fig, bag) in &rf.unconverted {
                    let slot = r.unconverted.entry(fig.clone()).or_default();
                    for m in bag.iter() {
                        slot.add(m);
                    }
                }
            }
        }
        if let Some(r) = &mut reporting {
            r.net = r.gross - r.refunded - r.chargeback_lost;
        }
        let revenue: Vec<CurrencyRevenue> = revenue
            .into_values()
            .map(|mut e| {
                e.net = e.gross - e.refunded - e.chargeback_lost;
                e.aov = if e.orders > 0 {
                    e.gross / e.orders as i64
                } else {
                    0
                };
                e
            })
            .collect();
        let first = counted.first();
        let last = counted.last();
        let mut ticket_list = Vec::new();
        let mut ticket_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut csat_sum = 0u32;
        let mut csat_count = 0u64;
        let mut open_tickets = 0u64;
        for t in tickets.values() {
            let v = &t.value;
            if v.status.is_open() {
                open_tickets += 1;
            }
            for r in &v.reasons {
                *ticket_reasons.entry(reason_name(*r)).or_default() += 1;
            }
            if let Some(c) = v.csat {
                csat_sum += u32::from(c.score);
                csat_count += 1;
            }
            ticket_list.push(TicketSummary {
                provider: v.provider.clone(),
                ticket_id: v.ticket_id.clone(),
                status: v.status,
                reasons: v.reasons.clone(),
                created_at: v.created_at,
                first_response_secs: v
                    .first_response_at
                    .map(|r| (r - v.created_at).whole_seconds()),
                csat: v.csat.map(|c| c.score),
            });
        }
        let touch_list: Vec<&TouchEntry> = {
            let mut v: Vec<&TouchEntry> = touches.values().copied().collect();
            v.sort();
            v
        };
        let touch_count = (touch_ids.len() as u64).max(touch_list.len() as u64);
        // Lists are cut to their newest entries; everything above counted all.
        let mut omitted: BTreeMap<String, u64> = BTreeMap::new();
        let listed = limits.listed_orders.max(1);
        if summaries.len() > listed {
            let cut = summaries.len() - listed;
            summaries.drain(..cut);
            omitted.insert("orders".into(), cut as u64);
        }
        let listed = limits.tickets.max(1);
        if ticket_list.len() > listed {
            ticket_list.sort_by(|a, b| {
                (a.created_at, &a.provider, &a.ticket_id).cmp(&(
                    b.created_at,
                    &b.provider,
                    &b.ticket_id,
                ))
            });
            let cut = ticket_list.len() - listed;
            ticket_list.drain(..cut);
            omitted.insert("tickets".into(), cut as u64);
        }
        let email = identities
            .iter()
            .find(|i| i.kind == "email")
            .map(|i| i.value.clone());
        let phone = identities
            .iter()
            .find(|i| i.kind == "phone")
            .map(|i| i.value.clone());
        let (first_name, last_name) = match profile {
            Some(p) => (p.value.first_name.clone(), p.value.last_name.clone()),
            None => {
                // Fall back on the name of the newest order.
                let name = sorted_orders
                    .iter()
                    .rev()
                    .find_map(|(o, _)| o.snapshot.as_ref()?.value.customer_name.clone());
                match name {
                    Some(n) => match n.split_once(' ') {
                        Some((f, l)) => (Some(f.to_string()), Some(l.to_string())),
                        None => (Some(n), None),
                    },
                    None => (None, None),
                }
            }
        };
        let mut c = Customer {
            tenant: tenant.to_string(),
            customer_id: anchor.customer_id().0,
            email,
            phone,
            first_name,
            last_name,
            addresses: profile
                .map(|p| p.value.addresses.clone())
                .unwrap_or_default(),
            consent: profile.map(|p| p.value.consent.clone()).unwrap_or_default(),
            tags: profile.map(|p| p.value.tags.clone()).unwrap_or_default(),
            identities: identities.into_iter().collect(),
            merged,
            first_touch: first_touch.cloned(),
            last_touch: touch_list.last().map(|t| (*t).clone()),
            touches: touch_count,
            touch_counts,
            orders_count: counted.len() as u64,
            orders: summaries,
            revenue,
            revenue_reporting: reporting,
            first_order_at: first.and_then(|o| o.created_at()),
            last_order_at: last.and_then(|o| o.created_at()),
            first_order_id: first.map(|o| o.order_id.clone()),
            last_order_id: last.map(|o| o.order_id.clone()),
            returns,
            return_reasons,
            tickets: ticket_list,
            open_tickets,
            ticket_reasons,
            csat_avg_x100: (csat_count > 0).then(|| csat_sum * 100 / csat_count as u32),
            csat_count,
            chargebacks,
            chargebacks_lost,
            segments: Vec::new(),
            redacted,
            deleted_at_source: profile.is_some_and(|p| p.value.deleted),
            first_seen_at: first_seen,
            last_event_at: last_event,
            truncated: !omitted.is_empty(),
            omitted,
        };
        if redacted {
            c.email = None;
            c.phone = None;
            c.first_name = None;
            c.last_name = None;
            c.addresses.clear();
            c.tags.clear();
            c.identities.clear();
        }
        c.segments = segments(&c);
        c
    }
}

/// Every segment [`segments`] can give, in the order it gives them (a CRM's
/// options for the segments property).
pub const SEGMENTS: [&str; 10] = [
    "prospect",
    "new",
    "repeat",
    "vip",
    "lapsed",
    "refund_heavy",
    "chargeback",
    "support_heavy",
    "unhappy",
    "engaged_prospect",
];

/// Segments from the customer's own figures and event times (never the clock).
pub fn segments(c: &Customer) -> Vec<String> {
    let mut s = Vec::new();
    match c.orders_count {
        0 => s.push("prospect"),
        1 => s.push("new"),
        _ => s.push("repeat"),
    }
    let vip_net = c.revenue.iter().any(|r| {
        let unit = 10i64.pow(u32::from(r.currency.exponent()));
        r.net >= 1000 * unit
    });
    if c.orders_count >= 5 || vip_net {
        s.push("vip");
    }
    if let (Some(last_order), Some(last_event)) = (c.last_order_at, c.last_event_at)
        && last_event - last_order >= time::Duration::days(120)
    {
        s.push("lapsed");
    }
    if c.revenue
        .iter()
        .any(|r| r.gross > 0 && r.refunded.saturating_mul(2) >= r.gross)
    {
        s.push("refund_heavy");
    }
    if c.chargebacks > 0 {
        s.push("chargeback");
    }
    if c.tickets.len() >= 3 {
        s.push("support_heavy");
    }
    if c.csat_avg_x100.is_some_and(|a| a <= 200) {
        s.push("unhappy");
    }
    if c.touches > 0 && c.orders_count == 0 {
        s.push("engaged_prospect");
    }
    debug_assert!(s.iter().all(|x| SEGMENTS.contains(x)), "{s:?}");
    s.into_iter().map(str::to_string).collect()
}
