//! The order aggregate: the store's snapshot, every money observation, shipments, parcels and returns.

use super::*;

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
                c.scrub();
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
    /// The unit cost of each SKU its lines name, as in force at the order's
    /// time (set by the fold from the SKU's cost history; a SKU without a cost
    /// then is absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub costs: BTreeMap<String, CostEntry>,
    /// The SKUs of its lines that were out of stock when it was placed, with
    /// the restock time promised then and the ETAs reported since (set by
    /// the fold from the SKU's stock and ETA reports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backorders: BTreeMap<String, Backorder>,
    /// The movements of its payments that payouts settled (charges, refunds,
    /// disputes, their fees), by `provider:line_id`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settlements: BTreeMap<String, Settlement>,
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
            costs: BTreeMap::new(),
            backorders: BTreeMap::new(),
            settlements: BTreeMap::new(),
            redacted: false,
            erased_customer: None,
            seen: Seen::default(),
            last_event_at: None,
        }
    }

    /// Folds one event into the order; `false` for a duplicate. Events that do
    /// not concern orders are ignored. `scope` keys the customer an erasure
    /// keeps ([`Order::scrub`]).
    pub fn apply<'a>(&mut self, env: &Envelope, scope: impl Into<KeyScope<'a>>) -> bool {
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
            Event::PayoutLine(l) => {
                let key = format!("{}:{}", l.provider, l.line_id);
                let keep = self
                    .settlements
                    .get(&key)
                    .is_some_and(|s| s.event_id.as_str() >= id);
                if !keep {
                    self.settlements.insert(
                        key,
                        Settlement {
                            line: l.clone(),
                            event_id: id.to_string(),
                        },
                    );
                }
            }
            Event::CustomerRedacted(_) => self.redacted = true,
            _ => {}
        }
        if self.redacted {
            self.scrub(scope);
        }
        true
    }

    /// Removes personal data, keeping the figures and the (hashed) customer key.
    pub fn scrub<'a>(&mut self, scope: impl Into<KeyScope<'a>>) {
        let scope = scope.into();
        self.redacted = true;
        if let Some(k) = self
            .snapshot
            .as_ref()
            .and_then(|s| s.value.customer.primary_key(scope))
        {
            self.erased_customer = Some(k);
        }
        if let Some(s) = &mut self.snapshot {
            s.value.scrub();
        }
        for rec in self.payments.values_mut() {
            for p in rec.observations.values_mut() {
                p.scrub();
            }
        }
        for rec in self.refunds.values_mut() {
            for r in rec.observations.values_mut() {
                r.scrub();
            }
        }
        for r in self.returns.values_mut() {
            for reg in [&mut r.requested, &mut r.resolved].into_iter().flatten() {
                reg.value.scrub();
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
    pub fn customer_key<'a>(&self, scope: impl Into<KeyScope<'a>>) -> Option<IdentityKey> {
        let scope = scope.into();
        self.snapshot
            .as_ref()
            .and_then(|s| s.value.customer.primary_key(scope))
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
