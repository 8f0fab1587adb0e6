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
use crate::ledger::OrderFigures;
use crate::money::{Currency, Money, MoneyBag};

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
}

fn payment_rank(s: PaymentStatus) -> u8 {
    match s {
        PaymentStatus::Failed => 0,
        PaymentStatus::Authorized => 1,
        PaymentStatus::Cancelled => 2,
        PaymentStatus::Succeeded => 3,
        PaymentStatus::Reversed => 4,
    }
}

fn dispute_rank(s: DisputeStatus) -> u8 {
    match s {
        DisputeStatus::Inquiry => 0,
        DisputeStatus::NeedsResponse => 1,
        DisputeStatus::UnderReview => 2,
        DisputeStatus::WarningClosed => 3,
        DisputeStatus::Won => 4,
        DisputeStatus::Lost => 5,
        DisputeStatus::MerchantRefunded => 3,
    }
}

/// The providers whose word on money is final (the store's is kept but yields).
pub fn is_payment_provider(provider: &str) -> bool {
    matches!(provider, "stripe" | "adyen" | "paypal")
}

/// One payment in an order's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEntry {
    /// The dominant observation (succeeded beats failed; then the newest).
    pub state: Reg<Payment>,
    /// Fee and net as soon as any observation knows them.
    pub fee: Option<Reg<(Money, Option<Money>)>>,
    /// Largest cumulative refunded amount the provider reported.
    pub amount_refunded: Option<Money>,
}

/// One refund in an order's ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    pub state: Reg<Refund>,
}

/// One dispute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeEntry {
    pub state: Reg<Dispute>,
    pub funds_withdrawn: bool,
    pub funds_reinstated: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
}

/// One shipment (a tracking number) with its merged timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentEntry {
    pub tracking_number: String,
    pub carrier: Option<Reg<String>>,
    pub fulfillment_id: Option<String>,
    pub checkpoints: BTreeSet<Checkpoint>,
    pub line_item_ids: BTreeSet<String>,
    pub estimated_delivery: Option<Reg<OffsetDateTime>>,
    pub providers: BTreeSet<String>,
}

impl ShipmentEntry {
    /// The status of the latest checkpoint (by time, then lifecycle order).
    pub fn status(&self) -> Option<ShipmentStatus> {
        self.checkpoints
            .iter()
            .max_by(|a, b| (a.at, a.status).cmp(&(b.at, b.status)))
            .map(|c| c.status)
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
    fn new(s: &ShipmentEntry, checkpoints: BTreeSet<Checkpoint>) -> Self {
        let mut checkpoints: Vec<Checkpoint> = checkpoints.into_iter().collect();
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
    pub requested: Option<Reg<Return>>,
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

/// The Order aggregate: the store's snapshot and the providers' ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    /// The newest store snapshot (by `updated_at`).
    pub snapshot: Option<Reg<Box<OrderUpserted>>>,
    pub payments: BTreeMap<String, PaymentEntry>,
    pub refunds: BTreeMap<String, RefundEntry>,
    pub disputes: BTreeMap<String, DisputeEntry>,
    pub shipments: BTreeMap<String, ShipmentEntry>,
    pub returns: BTreeMap<String, ReturnEntry>,
    pub redacted: bool,
    /// The customer key kept when an erasure removed the snapshot's identity, so
    /// the (anonymous) figures stay with their customer.
    #[serde(default)]
    pub erased_customer: Option<IdentityKey>,
    pub seen: Seen,
    /// Newest event time folded in.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_event_at: Option<OffsetDateTime>,
}

/// What changed in an order that automations care about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderChange {
    Placed,
    ShipmentStatus {
        tracking_number: String,
        status: ShipmentStatus,
    },
    PaymentFailed {
        payment_id: String,
    },
    RefundIssued {
        refund_id: String,
        amount: Money,
    },
    DisputeOpened {
        dispute_id: String,
        amount: Money,
    },
    ReturnRequested {
        return_id: String,
    },
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
            returns: BTreeMap::new(),
            redacted: false,
            erased_customer: None,
            seen: Seen::default(),
            last_event_at: None,
        }
    }

    /// Folds one event into the order. Returns `None` for a duplicate (nothing
    /// changed), else the changes worth a trigger. Events that do not concern
    /// orders are refused by the caller, not here: they are ignored.
    pub fn apply(&mut self, env: &Envelope) -> Option<Vec<OrderChange>> {
        if !self.seen.insert(&env.event_id) {
            return None;
        }
        self.last_event_at = self.last_event_at.max(Some(env.occurred_at));
        let mut changes = Vec::new();
        let id = env.event_id.as_str();
        match &env.event {
            Event::OrderUpserted(o) => {
                let was_placed = self.snapshot.is_some();
                let stamp = Stamp::new(0, o.updated_at, id);
                Reg::join(&mut self.snapshot, stamp, o.clone());
                if !was_placed {
                    changes.push(OrderChange::Placed);
                }
            }
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => {
                let key = format!("{}:{}", p.provider, p.payment_id);
                let stamp = Stamp::new(payment_rank(p.status), env.occurred_at, id);
                let is_new = !self.payments.contains_key(&key);
                let entry = self.payments.entry(key).or_insert_with(|| PaymentEntry {
                    state: Reg {
                        stamp: stamp.clone(),
                        value: p.clone(),
                    },
                    fee: None,
                    amount_refunded: None,
                });
                if entry.state.stamp < stamp {
                    entry.state = Reg {
                        stamp: stamp.clone(),
                        value: p.clone(),
                    };
                }
                if let Some(fee) = p.fee {
                    Reg::join(
                        &mut entry.fee,
                        Stamp::new(0, env.occurred_at, id),
                        (fee, p.net),
                    );
                }
                if let Some(r) = p.amount_refunded {
                    // Cumulative: the largest report wins, whatever the arrival order.
                    entry.amount_refunded = entry.amount_refunded.max(Some(r));
                }
                if is_new && p.status == PaymentStatus::Failed {
                    changes.push(OrderChange::PaymentFailed {
                        payment_id: p.payment_id.clone(),
                    });
                }
            }
            Event::RefundIssued(r) => {
                let key = format!("{}:{}", r.provider, r.refund_id);
                let stamp = Stamp::new(0, env.occurred_at, id);
                let before = self.refunds.get(&key).map(|e| e.state.value.status);
                match self.refunds.get_mut(&key) {
                    Some(e) => {
                        if e.state.stamp < stamp {
                            e.state = Reg {
                                stamp,
                                value: r.clone(),
                            };
                        }
                    }
                    None => {
                        self.refunds.insert(
                            key.clone(),
                            RefundEntry {
                                state: Reg {
                                    stamp,
                                    value: r.clone(),
                                },
                            },
                        );
                    }
                }
                let after = self.refunds.get(&key).map(|e| e.state.value.status);
                if before != Some(RefundStatus::Succeeded) && after == Some(RefundStatus::Succeeded)
                {
                    changes.push(OrderChange::RefundIssued {
                        refund_id: r.refund_id.clone(),
                        amount: r.amount,
                    });
                }
            }
            Event::DisputeOpened(d) | Event::DisputeClosed(d) => {
                let key = format!("{}:{}", d.provider, d.dispute_id);
                let stamp = Stamp::new(dispute_rank(d.status), env.occurred_at, id);
                let is_new = !self.disputes.contains_key(&key);
                let entry = self.disputes.entry(key).or_insert_with(|| DisputeEntry {
                    state: Reg {
                        stamp: stamp.clone(),
                        value: d.clone(),
                    },
                    funds_withdrawn: false,
                    funds_reinstated: false,
                    opened_at: d.at,
                });
                if entry.state.stamp < stamp {
                    entry.state = Reg {
                        stamp,
                        value: d.clone(),
                    };
                }
                entry.funds_withdrawn |= d.funds_withdrawn;
                entry.funds_reinstated |= d.funds_reinstated;
                entry.opened_at = entry.opened_at.min(d.at);
                if is_new {
                    changes.push(OrderChange::DisputeOpened {
                        dispute_id: d.dispute_id.clone(),
                        amount: d.amount,
                    });
                }
            }
            Event::ShipmentUpdated(s) => {
                let entry = self
                    .shipments
                    .entry(s.tracking_number.clone())
                    .or_insert_with(|| ShipmentEntry {
                        tracking_number: s.tracking_number.clone(),
                        carrier: None,
                        fulfillment_id: None,
                        checkpoints: BTreeSet::new(),
                        line_item_ids: BTreeSet::new(),
                        estimated_delivery: None,
                        providers: BTreeSet::new(),
                    });
                let before = entry.status();
                if let Some(c) = &s.carrier {
                    Reg::join(
                        &mut entry.carrier,
                        Stamp::new(0, env.occurred_at, id),
                        c.clone(),
                    );
                }
                if let Some(f) = &s.fulfillment_id {
                    entry.fulfillment_id = entry.fulfillment_id.clone().max(Some(f.clone()));
                }
                if let Some(eta) = s.estimated_delivery {
                    Reg::join(
                        &mut entry.estimated_delivery,
                        Stamp::new(0, env.occurred_at, id),
                        eta,
                    );
                }
                entry.providers.insert(s.provider.clone());
                entry.line_item_ids.extend(s.line_item_ids.iter().cloned());
                entry.checkpoints.extend(s.checkpoints.iter().cloned());
                let covered = s
                    .checkpoints
                    .iter()
                    .any(|c| c.status == s.status && c.at >= s.at);
                if !covered {
                    entry.checkpoints.insert(Checkpoint {
                        at: s.at,
                        status: s.status,
                        message: None,
                        location: None,
                    });
                }
                let after = entry.status();
                if let Some(status) = after.filter(|a| Some(*a) != before) {
                    changes.push(OrderChange::ShipmentStatus {
                        tracking_number: s.tracking_number.clone(),
                        status,
                    });
                }
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
                let was_known = entry.requested.is_some() || entry.resolved.is_some();
                let stamp = Stamp::new(0, env.occurred_at, id);
                if resolved {
                    Reg::join(&mut entry.resolved, stamp, r.clone());
                } else {
                    Reg::join(&mut entry.requested, stamp, r.clone());
                }
                if !was_known {
                    changes.push(OrderChange::ReturnRequested {
                        return_id: r.return_id.clone(),
                    });
                }
            }
            Event::CustomerRedacted(_) => self.redacted = true,
            _ => {}
        }
        if self.redacted {
            self.scrub(&env.tenant);
        }
        Some(changes)
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
        for p in self.payments.values_mut() {
            p.state.value.payer = Identity::default();
        }
        for r in self.returns.values_mut() {
            for reg in [&mut r.requested, &mut r.resolved].into_iter().flatten() {
                reg.value.note = None;
            }
        }
    }

    /// Shipments as a customer should see them: one per tracking number, with the
    /// store's fulfillment events (which name only a fulfillment, keyed
    /// `fulfillment:<id>`) merged into the tracked shipments of that fulfillment.
    /// Derived at read time, so arrival order does not matter.
    pub fn shipment_views(&self) -> Vec<ShipmentView> {
        let pseudo = |k: &str| k.strip_prefix("fulfillment:").map(str::to_string);
        let mut claimed: BTreeSet<String> = BTreeSet::new();
        let mut views = Vec::new();
        for (key, s) in &self.shipments {
            if pseudo(key).is_some() {
                continue;
            }
            let mut checkpoints = s.checkpoints.clone();
            if let Some(fid) = &s.fulfillment_id
                && let Some(p) = self.shipments.get(&format!("fulfillment:{fid}"))
            {
                checkpoints.extend(p.checkpoints.iter().cloned());
                claimed.insert(fid.clone());
            }
            views.push(ShipmentView::new(s, checkpoints));
        }
        for (key, s) in &self.shipments {
            if let Some(fid) = pseudo(key)
                && !claimed.contains(&fid)
            {
                views.push(ShipmentView::new(s, s.checkpoints.clone()));
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

    /// Money figures, with the payment provider as the source of truth.
    pub fn figures(&self) -> OrderFigures {
        let mut f = OrderFigures::default();
        let test = self.snapshot.as_ref().is_some_and(|s| s.value.test);
        let provider_payments: Vec<&PaymentEntry> = self
            .payments
            .values()
            .filter(|p| is_payment_provider(&p.state.value.provider))
            .collect();
        let store_payments: Vec<&PaymentEntry> = self
            .payments
            .values()
            .filter(|p| !is_payment_provider(&p.state.value.provider))
            .collect();
        let ledger = if provider_payments.is_empty() {
            f.paid_source = "store".into();
            store_payments
        } else {
            f.paid_source = "provider".into();
            provider_payments
        };
        let mut fees_known = true;
        let mut any_succeeded = false;
        for p in &ledger {
            if p.state.value.status == PaymentStatus::Succeeded {
                any_succeeded = true;
                f.paid.add(p.state.value.amount);
                match &p.fee {
                    Some(fee) => {
                        f.fees.add(fee.value.0);
                    }
                    None => fees_known = false,
                }
            }
        }
        if ledger.is_empty() {
            // No payment observed at all: trust the store's own word that it was paid.
            if let Some(s) = &self.snapshot {
                let paid = match s.value.financial_status.as_deref() {
                    Some(fs) => matches!(
                        fs,
                        "paid" | "partially_refunded" | "refunded" | "partially_paid"
                    ),
                    None => matches!(
                        s.value.status,
                        OrderStatus::Open | OrderStatus::Completed | OrderStatus::Refunded
                    ),
                };
                if paid {
                    f.paid.add(s.value.totals.total);
                    f.paid_source = "store_status".into();
                }
            }
        }
        f.fees_known = fees_known && any_succeeded;
        // Refunds: the payment provider's if it reported any, else the store's.
        let mut provider_refunds = MoneyBag::new();
        let mut store_refunds = MoneyBag::new();
        let mut provider_reported = false;
        for r in self.refunds.values() {
            let v = &r.state.value;
            if is_payment_provider(&v.provider) {
                provider_reported = true;
                if v.status == RefundStatus::Succeeded {
                    provider_refunds.add(v.amount);
                }
            } else if v.status == RefundStatus::Succeeded {
                store_refunds.add(v.amount);
            }
        }
        let mut cumulative = MoneyBag::new();
        for p in self.payments.values() {
            if is_payment_provider(&p.state.value.provider)
                && let Some(r) = p.amount_refunded
            {
                provider_reported = true;
                cumulative.add(r);
            }
        }
        if provider_reported {
            for (c, m) in &cumulative.0 {
                let cur = provider_refunds.get(*c);
                if *m > cur {
                    provider_refunds.add(Money::new(m - cur, *c));
                }
            }
            f.refunded = provider_refunds;
        } else {
            f.refunded = store_refunds;
        }
        for d in self.disputes.values() {
            let v = &d.state.value;
            f.disputed.add(v.amount);
            if v.status == DisputeStatus::Lost {
                f.chargeback_lost.add(v.amount);
            }
        }
        if test {
            f.paid = MoneyBag::new();
            f.refunded = MoneyBag::new();
            f.chargeback_lost = MoneyBag::new();
        }
        f.net = f.paid.minus(&f.refunded).minus(&f.chargeback_lost);
        if f.paid_source.is_empty() {
            f.paid_source = "none".into();
        }
        if f.fees_known {
            f.net_after_fees = Some(f.net.minus(&f.fees));
        }
        f
    }
}

/// Profile facts from a store's customer record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub addresses: Vec<Address>,
    pub consent: Consent,
    pub tags: Vec<String>,
    pub note: Option<String>,
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
    pub utm: Utm,
    pub landing_page: Option<String>,
    pub referrer: Option<String>,
    pub gclid: Option<String>,
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
    pub profile: Option<Reg<Profile>>,
    pub identities: BTreeSet<IdentityValue>,
    pub touches: BTreeMap<String, TouchEntry>,
    pub tickets: BTreeMap<String, Reg<Ticket>>,
    pub redacted: bool,
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
            redacted: false,
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
                self.touches.insert(
                    t.touch_id.clone(),
                    TouchEntry {
                        at: t.at,
                        touch_id: t.touch_id.clone(),
                        utm: t.utm.clone(),
                        landing_page: t.landing_page.clone(),
                        referrer: t.referrer.clone(),
                        gclid: t.gclid.clone(),
                        fbclid: t.fbclid.clone(),
                    },
                );
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
            Event::CustomerRedacted(_) => self.redacted = true,
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
        for t in self.touches.values_mut() {
            t.gclid = None;
            t.fbclid = None;
        }
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

/// The Customer 360: what the CRM sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub orders_count: u64,
    pub orders: Vec<OrderSummary>,
    pub revenue: Vec<CurrencyRevenue>,
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
}

fn reason_name(r: ReasonCode) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".into())
}

impl Customer {
    /// Builds the 360 view from the fragments that resolve to one customer and
    /// the orders placed by it. Pure and order-independent: inputs are sorted.
    pub fn build(
        tenant: &str,
        anchor: &IdentityKey,
        fragments: &[&Fragment],
        orders: &[&Order],
        merged: Vec<MergeRecord>,
    ) -> Customer {
        let redacted = fragments.iter().any(|f| f.redacted);
        let mut identities: BTreeSet<IdentityValue> = BTreeSet::new();
        let mut profile: Option<&Reg<Profile>> = None;
        let mut touches: BTreeMap<&str, &TouchEntry> = BTreeMap::new();
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
            for (k, t) in &f.touches {
                touches.insert(k, t);
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
        let mut sorted_orders: Vec<&Order> =
            orders.iter().copied().filter(|o| o.counts()).collect();
        sorted_orders
            .sort_by(|a, b| (a.created_at(), &a.order_id).cmp(&(b.created_at(), &b.order_id)));
        let mut revenue: BTreeMap<Currency, CurrencyRevenue> = BTreeMap::new();
        let mut summaries = Vec::new();
        let mut counted: Vec<&Order> = Vec::new();
        let mut returns = 0u64;
        let mut return_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut chargebacks = 0u64;
        let mut chargebacks_lost = 0u64;
        for o in &sorted_orders {
            let Some(snap) = &o.snapshot else { continue };
            let s = &snap.value;
            last_event = last_event.max(o.last_event_at);
            let figures = o.figures();
            let cancelled_unpaid = matches!(s.status, OrderStatus::Cancelled | OrderStatus::Failed)
                && figures.paid.is_empty();
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
            for d in o.disputes.values() {
                chargebacks += 1;
                if d.state.value.status == DisputeStatus::Lost {
                    chargebacks_lost += 1;
                }
            }
            if cancelled_unpaid {
                continue;
            }
            counted.push(o);
            for m in figures.paid.iter() {
                let e = revenue.entry(m.currency).or_insert(CurrencyRevenue {
                    currency: m.currency,
                    gross: 0,
                    refunded: 0,
                    chargeback_lost: 0,
                    net: 0,
                    orders: 0,
                    aov: 0,
                });
                e.gross = e.gross.saturating_add(m.minor);
                if m.minor > 0 {
                    e.orders += 1;
                }
            }
            for m in figures.refunded.iter() {
                if let Some(e) = revenue.get_mut(&m.currency) {
                    e.refunded = e.refunded.saturating_add(m.minor);
                }
            }
            for m in figures.chargeback_lost.iter() {
                if let Some(e) = revenue.get_mut(&m.currency) {
                    e.chargeback_lost = e.chargeback_lost.saturating_add(m.minor);
                }
            }
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
                    .find_map(|o| o.snapshot.as_ref()?.value.customer_name.clone());
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
            first_touch: touch_list.first().map(|t| (*t).clone()),
            last_touch: touch_list.last().map(|t| (*t).clone()),
            touches: touch_list.len() as u64,
            orders_count: counted.len() as u64,
            orders: summaries,
            revenue,
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
