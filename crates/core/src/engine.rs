//! The fold: routes canonical events to the aggregates they concern, resolves
//! identities and order references, parks what cannot be placed yet, and derives
//! the projections, merges and triggers the rest of storefold publishes.
//!
//! The engine works on a batch: [`Engine::apply`] folds events into an in-memory
//! working set read through from a [`Source`] (RocksDB in the processor, a map in
//! tests), and [`Engine::finish`] returns the changed state records and the outputs.
//! Nothing here does I/O or reads a clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aggregate::{Customer, Fragment, MergeRecord, Order, OrderChange};
use crate::event::*;
use crate::identity::{IdentityKey, IdentityKind, content_hash};
use crate::ledger::{LedgerEntry, OrderFigures};

/// Identity index entry: who claims this identity, what it claims, its orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexNode {
    /// Emails whose events carried this identity.
    pub claimed_by: BTreeSet<IdentityKey>,
    /// For an email: the identities its events carried.
    pub claims: BTreeSet<IdentityKey>,
    /// Orders placed under this identity.
    pub orders: BTreeSet<OrderId>,
    /// The customer this identity was last published as merged into.
    pub merged_into: Option<IdentityKey>,
}

/// A stored customer view with its published version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub version: u64,
    /// Shared with the batch's projection of it.
    pub view: Arc<Customer>,
}

/// Last published order projection state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMeta {
    pub version: u64,
    pub customer_id: Option<String>,
}

/// What a state record is about. `encode()` gives the byte key the processor
/// stores it under (tenant first, so a tenant's records are contiguous).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateKey {
    pub tenant: String,
    pub item: Item,
}

/// The kinds of state record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "k", content = "id", rename_all = "snake_case")]
pub enum Item {
    Order(OrderId),
    OrderMeta(OrderId),
    Fragment(IdentityKey),
    Index(IdentityKey),
    Customer(IdentityKey),
    /// Order reference (`payment:stripe:pi_1`, `tracking:1Z…`, `number:#1001`) → orders.
    Ref(String),
    /// A parked event, by event id.
    Parked(String),
    /// Event ids parked under one order reference.
    ParkedBy(String),
}

impl StateKey {
    pub fn new(tenant: &str, item: Item) -> Self {
        Self {
            tenant: tenant.to_string(),
            item,
        }
    }

    /// `tenant/kind/id`.
    pub fn encode(&self) -> String {
        let (kind, id) = match &self.item {
            Item::Order(o) => ("order", o.clone()),
            Item::OrderMeta(o) => ("ordermeta", o.clone()),
            Item::Fragment(k) => ("frag", k.to_string()),
            Item::Index(k) => ("idx", k.to_string()),
            Item::Customer(k) => ("cust", k.to_string()),
            Item::Ref(r) => ("ref", r.clone()),
            Item::Parked(e) => ("parked", e.clone()),
            Item::ParkedBy(r) => ("parkedby", r.clone()),
        };
        format!("{}/{}/{}", self.tenant, kind, id)
    }

    /// Inverse of [`StateKey::encode`].
    pub fn decode(s: &str) -> Option<StateKey> {
        let (tenant, rest) = s.split_once('/')?;
        let (kind, id) = rest.split_once('/')?;
        let item = match kind {
            "order" => Item::Order(id.to_string()),
            "ordermeta" => Item::OrderMeta(id.to_string()),
            "frag" => Item::Fragment(IdentityKey::parse(id)?),
            "idx" => Item::Index(IdentityKey::parse(id)?),
            "cust" => Item::Customer(IdentityKey::parse(id)?),
            "ref" => Item::Ref(id.to_string()),
            "parked" => Item::Parked(id.to_string()),
            "parkedby" => Item::ParkedBy(id.to_string()),
            _ => return None,
        };
        Some(StateKey::new(tenant, item))
    }
}

/// A state record's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum StateValue {
    /// Shared with the order projections of the batch, so publishing an order
    /// does not copy it; the next change copies only if a projection still holds it.
    Order(Arc<Order>),
    OrderMeta(OrderMeta),
    Fragment(Box<Fragment>),
    Index(IndexNode),
    Customer(Box<CustomerRecord>),
    Ref(BTreeSet<OrderId>),
    Parked(Box<Envelope>),
    ParkedBy(BTreeSet<String>),
}

/// Where the engine reads state it does not hold in its working set.
pub trait Source {
    fn load(&self, key: &StateKey) -> Option<StateValue>;
}

/// An in-memory [`Source`] (tests, benchmarks, `storefold normalize --fold`).
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    pub records: HashMap<StateKey, StateValue>,
}

impl Source for MemStore {
    fn load(&self, key: &StateKey) -> Option<StateValue> {
        self.records.get(key).cloned()
    }
}

impl MemStore {
    /// Applies a batch's changes.
    pub fn commit(&mut self, changes: Vec<(StateKey, Option<StateValue>)>) {
        for (k, v) in changes {
            match v {
                Some(v) => {
                    self.records.insert(k, v);
                }
                None => {
                    self.records.remove(&k);
                }
            }
        }
    }

    /// Every customer view, by customer id.
    pub fn customers(&self) -> BTreeMap<String, Customer> {
        self.records
            .values()
            .filter_map(|v| match v {
                StateValue::Customer(c) => Some((c.view.customer_id.clone(), (*c.view).clone())),
                _ => None,
            })
            .collect()
    }

    /// Every order aggregate, by order id.
    pub fn orders(&self) -> BTreeMap<String, Order> {
        self.records
            .values()
            .filter_map(|v| match v {
                StateValue::Order(o) => Some((o.order_id.clone(), (**o).clone())),
                _ => None,
            })
            .collect()
    }

    /// Every order as the CRM sees it (figures, ledger, shipments, customer id),
    /// by order id: what the newest order projection of each holds.
    pub fn order_views(&self) -> BTreeMap<String, OrderView> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.records {
            let (Item::Order(id), StateValue::Order(o)) = (&k.item, v) else {
                continue;
            };
            if o.snapshot.is_none() {
                continue;
            }
            let customer_id = match self
                .records
                .get(&StateKey::new(&k.tenant, Item::OrderMeta(id.clone())))
            {
                Some(StateValue::OrderMeta(m)) => m.customer_id.clone(),
                _ => None,
            };
            out.insert(
                id.clone(),
                OrderView {
                    tenant: k.tenant.clone(),
                    order_id: id.clone(),
                    customer_id,
                    figures: o.figures(),
                    ledger: Vec::new(),
                    shipments: o.shipment_views(),
                    order: Arc::clone(o),
                },
            );
        }
        out
    }
}

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

/// A lifecycle event for automations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Deterministic: the same source event gives the same id.
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
}

struct PendingTrigger {
    tenant: String,
    kind: &'static str,
    order_id: Option<OrderId>,
    customer: Option<IdentityKey>,
    at: OffsetDateTime,
    source_event_id: String,
    data: serde_json::Value,
}

/// A fast, deterministic hasher for the working set (keys are our own, not
/// attacker-chosen in a way that matters here: a slow bucket costs time, never
/// correctness). FxHash's multiply-rotate over 8-byte words.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

struct Slot {
    value: Option<StateValue>,
    dirty: bool,
}

/// The fold over one batch. See the module docs.
#[derive(Default)]
pub struct Engine {
    cache: HashMap<StateKey, Slot, FxBuild>,
    dirty_keys: BTreeSet<(String, IdentityKey)>,
    dirty_orders: BTreeSet<(String, OrderId)>,
    placed_orders: BTreeSet<(String, OrderId)>,
    triggers: Vec<PendingTrigger>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cached", &self.cache.len())
            .finish()
    }
}

fn ref_key(link: &OrderLink) -> Option<String> {
    match link {
        OrderLink::Order { .. } => None,
        OrderLink::Payment {
            provider,
            reference,
        } => Some(format!("payment:{provider}:{reference}")),
        OrderLink::Tracking { number } => Some(format!("tracking:{number}")),
        OrderLink::Number { number } => Some(format!("number:{number}")),
    }
}

fn trigger_id(kind: &str, subject: &str, source: &str) -> String {
    let h = content_hash(format!("{kind}\0{subject}\0{source}").as_bytes());
    format!("trg_{}", &h[..24])
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records in the working set.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn get<'a>(&'a mut self, src: &dyn Source, key: &StateKey) -> Option<&'a StateValue> {
        if !self.cache.contains_key(key) {
            let v = src.load(key);
            self.cache.insert(
                key.clone(),
                Slot {
                    value: v,
                    dirty: false,
                },
            );
        }
        self.cache.get(key).and_then(|s| s.value.as_ref())
    }

    fn get_mut<'a>(&'a mut self, src: &dyn Source, key: &StateKey) -> &'a mut Option<StateValue> {
        let slot = self.slot(src, key);
        slot.dirty = true;
        &mut slot.value
    }

    /// The working-set slot of `key`, loaded from `src` when absent; not marked
    /// changed.
    fn slot<'a>(&'a mut self, src: &dyn Source, key: &StateKey) -> &'a mut Slot {
        if !self.cache.contains_key(key) {
            let v = src.load(key);
            self.cache.insert(
                key.clone(),
                Slot {
                    value: v,
                    dirty: false,
                },
            );
        }
        self.cache.get_mut(key).expect("inserted above")
    }

    /// A record already in the working set (no loading).
    fn peek(&self, key: &StateKey) -> Option<&StateValue> {
        self.cache.get(key).and_then(|s| s.value.as_ref())
    }

    fn put(&mut self, key: StateKey, value: Option<StateValue>) {
        self.cache.insert(key, Slot { value, dirty: true });
    }

    fn index(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> IndexNode {
        match self.get(src, &StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) => n.clone(),
            _ => IndexNode::default(),
        }
    }

    fn update_index(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
        f: impl FnOnce(&mut IndexNode) -> bool,
    ) {
        // In place: the record is marked changed only when `f` changed it (most
        // claims repeat what the index already knows).
        let key = StateKey::new(tenant, Item::Index(k.clone()));
        let slot = self.slot(src, &key);
        let changed = match &mut slot.value {
            Some(StateValue::Index(n)) => f(n),
            other => {
                let mut n = IndexNode::default();
                let changed = f(&mut n);
                if changed {
                    *other = Some(StateValue::Index(n));
                }
                changed
            }
        };
        slot.dirty |= changed;
    }

    /// The identity a key resolves to: an email is its own root; another identity
    /// joins the one email that claims it, and stays on its own when no email or
    /// several emails claim it (an ambiguous phone merges nothing).
    fn root(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> IdentityKey {
        if k.kind == IdentityKind::Email {
            return k.clone();
        }
        match self.get(src, &StateKey::new(tenant, Item::Index(k.clone()))) {
            Some(StateValue::Index(n)) if n.claimed_by.len() == 1 => n
                .claimed_by
                .iter()
                .next()
                .cloned()
                .unwrap_or_else(|| k.clone()),
            _ => k.clone(),
        }
    }

    fn with_fragment(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
        env: &Envelope,
    ) -> bool {
        let slot = self.get_mut(src, &StateKey::new(tenant, Item::Fragment(k.clone())));
        let frag = match slot {
            Some(StateValue::Fragment(f)) => f,
            _ => {
                *slot = Some(StateValue::Fragment(Box::new(Fragment::new(k.clone()))));
                match slot {
                    Some(StateValue::Fragment(f)) => f,
                    _ => unreachable!("just set"),
                }
            }
        };
        let changed = frag.apply(env);
        self.dirty_keys.insert((tenant.to_string(), k.clone()));
        changed
    }

    /// Records that `email` claims the other identities of `id`.
    fn claim(&mut self, src: &dyn Source, tenant: &str, keys: &[IdentityKey]) {
        let Some(email) = keys.iter().find(|k| k.kind == IdentityKind::Email).cloned() else {
            return;
        };
        for other in keys.iter().filter(|k| k.kind != IdentityKind::Email) {
            self.update_index(src, tenant, other, |n| n.claimed_by.insert(email.clone()));
            self.update_index(src, tenant, &email, |n| n.claims.insert(other.clone()));
            self.dirty_keys.insert((tenant.to_string(), other.clone()));
        }
        self.dirty_keys.insert((tenant.to_string(), email));
    }

    /// Folds one event into the working set.
    pub fn apply(&mut self, src: &dyn Source, env: &Envelope) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        match &env.event {
            Event::CustomerUpserted(c) => self.apply_to_customer(src, env, &c.identity),
            Event::Touch(t) => {
                let mut id = t.identity.clone();
                if id.anonymous_id.is_none() {
                    id.anonymous_id = t.cart_token.clone();
                }
                self.apply_to_customer(src, env, &id)
            }
            Event::Identify(i) => self.apply_to_customer(src, env, &i.identity),
            Event::TicketUpdated(t) => self.apply_to_customer(src, env, &t.requester),
            Event::CustomerRedacted(r) => {
                let keys = r.identity.keys(tenant);
                if keys.is_empty() && r.orders.is_empty() {
                    return Err(FoldError::NoIdentity);
                }
                let mut any = false;
                for k in &keys {
                    any |= self.with_fragment(src, tenant, k, env);
                }
                for o in &r.orders {
                    any |= self.apply_to_order(src, env, o);
                }
                Ok(if any {
                    Outcome::Applied
                } else {
                    Outcome::Duplicate
                })
            }
            Event::OrderUpserted(o) => {
                let changed = self.apply_to_order(src, env, &o.order_id);
                // The order teaches the index its references, releasing parked events.
                let mut refs: Vec<String> = o
                    .payment_refs
                    .iter()
                    .map(|p| format!("payment:{}:{}", p.provider, p.reference))
                    .collect();
                refs.extend(o.tracking_numbers.iter().map(|t| format!("tracking:{t}")));
                if let Some(n) = &o.number {
                    refs.push(format!("number:{n}"));
                }
                for r in refs {
                    self.learn_ref(src, tenant, &r, &o.order_id);
                }
                // The customer side: identities, claims, and the order in the index.
                let mut id = o.customer.clone();
                if id.anonymous_id.is_none() {
                    id.anonymous_id = o.cart_token.clone();
                }
                let keys = id.keys(tenant);
                if let Some(primary) = o.customer.primary_key(tenant) {
                    self.with_fragment(src, tenant, &primary, env);
                    self.update_index(src, tenant, &primary, |n| {
                        n.orders.insert(o.order_id.clone())
                    });
                }
                self.claim(src, tenant, &keys);
                Ok(if changed {
                    Outcome::Applied
                } else {
                    Outcome::Duplicate
                })
            }
            Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => {
                // The order decides who the customer is; the payer's details stay
                // on the payment (a gift or a company card is not a new customer).
                self.apply_linked(src, env, &p.links)
            }
            Event::RefundIssued(r) => self.apply_linked(src, env, &r.links),
            Event::DisputeOpened(d) | Event::DisputeClosed(d) => {
                self.apply_linked(src, env, &d.links)
            }
            Event::ShipmentUpdated(s) => self.apply_linked(src, env, &s.links),
            Event::ReturnRequested(r) | Event::ReturnResolved(r) => {
                self.apply_linked(src, env, &r.links)
            }
        }
    }

    fn apply_to_customer(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        id: &crate::identity::Identity,
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        let keys = id.keys(tenant);
        let Some(primary) = keys.first().cloned() else {
            return Err(FoldError::NoIdentity);
        };
        let changed = self.with_fragment(src, tenant, &primary, env);
        self.claim(src, tenant, &keys);
        Ok(if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        })
    }

    /// Applies to the order; true when it changed.
    fn apply_to_order(&mut self, src: &dyn Source, env: &Envelope, order_id: &str) -> bool {
        let tenant = env.tenant.clone();
        let slot = self.get_mut(
            src,
            &StateKey::new(&tenant, Item::Order(order_id.to_string())),
        );
        let order = match slot {
            Some(StateValue::Order(o)) => Arc::make_mut(o),
            _ => {
                *slot = Some(StateValue::Order(Arc::new(Order::new(order_id))));
                match slot {
                    Some(StateValue::Order(o)) => Arc::make_mut(o),
                    _ => unreachable!("just set"),
                }
            }
        };
        let Some(changes) = order.apply(env) else {
            return false;
        };
        let customer = order.customer_key(&tenant);
        self.dirty_orders
            .insert((tenant.clone(), order_id.to_string()));
        for ch in changes {
            let (kind, data) = match ch {
                OrderChange::Placed => {
                    self.placed_orders
                        .insert((tenant.clone(), order_id.to_string()));
                    continue;
                }
                OrderChange::ShipmentStatus {
                    tracking_number,
                    status,
                } => {
                    let kind = match status {
                        ShipmentStatus::Delivered => "delivered",
                        ShipmentStatus::Exception => "shipment_exception",
                        ShipmentStatus::Returned => "returned",
                        _ => continue,
                    };
                    (
                        kind,
                        serde_json::json!({"tracking_number": tracking_number, "status": status.as_str()}),
                    )
                }
                OrderChange::PaymentFailed { payment_id } => (
                    "payment_failed",
                    serde_json::json!({"payment_id": payment_id}),
                ),
                OrderChange::RefundIssued { refund_id, amount } => (
                    "refund_issued",
                    serde_json::json!({"refund_id": refund_id, "amount": amount}),
                ),
                OrderChange::DisputeOpened { dispute_id, amount } => (
                    "chargeback_opened",
                    serde_json::json!({"dispute_id": dispute_id, "amount": amount}),
                ),
                OrderChange::ReturnRequested { return_id } => {
                    ("returned", serde_json::json!({"return_id": return_id}))
                }
            };
            self.triggers.push(PendingTrigger {
                tenant: tenant.clone(),
                kind,
                order_id: Some(order_id.to_string()),
                customer: customer.clone(),
                at: env.occurred_at,
                source_event_id: env.event_id.clone(),
                data,
            });
        }
        true
    }

    fn learn_ref(&mut self, src: &dyn Source, tenant: &str, reference: &str, order_id: &str) {
        let key = StateKey::new(tenant, Item::Ref(reference.to_string()));
        let mut set = match self.get(src, &key) {
            Some(StateValue::Ref(s)) => s.clone(),
            _ => BTreeSet::new(),
        };
        // Only a reference learned now can have events parked under it: an event
        // naming a known reference resolves instead of parking.
        if set.insert(order_id.to_string()) {
            self.put(key, Some(StateValue::Ref(set)));
            self.release(src, tenant, reference);
        }
    }

    fn resolve_ref(&mut self, src: &dyn Source, tenant: &str, reference: &str) -> Option<OrderId> {
        match self.get(
            src,
            &StateKey::new(tenant, Item::Ref(reference.to_string())),
        ) {
            Some(StateValue::Ref(s)) => s.iter().next().cloned(),
            _ => None,
        }
    }

    /// Applies an event that names its order through links: an explicit order id
    /// wins, else the first reference that resolves; every reference is learned
    /// for that order. With no resolvable link the event is parked under every
    /// reference it names.
    fn apply_linked(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        links: &[OrderLink],
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        if links.is_empty() {
            return Err(FoldError::NoOrderLink);
        }
        // An order the event names outright wins over any reference, whatever
        // the references resolve to by now: otherwise the target would depend on
        // which other events happened to arrive first.
        let refs: Vec<String> = links.iter().filter_map(ref_key).collect();
        let explicit = links.iter().find_map(|l| match l {
            OrderLink::Order { order_id } => Some(order_id.clone()),
            _ => None,
        });
        let target = match explicit {
            Some(o) => Some(o),
            None => refs.iter().find_map(|r| self.resolve_ref(src, tenant, r)),
        };
        let Some(order_id) = target else {
            return Ok(self.park(src, env, refs));
        };
        let changed = self.apply_to_order(src, env, &order_id);
        // Every reference the event names is learned for its order (a set per
        // reference), so the index holds the same entries in any arrival order.
        for r in refs {
            self.learn_ref(src, tenant, &r, &order_id);
        }
        Ok(if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        })
    }

    fn park(&mut self, src: &dyn Source, env: &Envelope, refs: Vec<String>) -> Outcome {
        let tenant = env.tenant.as_str();
        let pkey = StateKey::new(tenant, Item::Parked(env.event_id.clone()));
        if self.get(src, &pkey).is_some() {
            return Outcome::Duplicate;
        }
        self.put(pkey, Some(StateValue::Parked(Box::new(env.clone()))));
        for r in &refs {
            let key = StateKey::new(tenant, Item::ParkedBy(r.clone()));
            let mut set = match self.get(src, &key) {
                Some(StateValue::ParkedBy(s)) => s.clone(),
                _ => BTreeSet::new(),
            };
            set.insert(env.event_id.clone());
            self.put(key, Some(StateValue::ParkedBy(set)));
        }
        Outcome::Parked(refs)
    }

    /// Applies the events parked under a reference that just became known.
    fn release(&mut self, src: &dyn Source, tenant: &str, reference: &str) {
        let key = StateKey::new(tenant, Item::ParkedBy(reference.to_string()));
        let ids = match self.get(src, &key) {
            Some(StateValue::ParkedBy(s)) => s.clone(),
            _ => return,
        };
        self.put(key, None);
        for id in ids {
            let pkey = StateKey::new(tenant, Item::Parked(id));
            let env = match self.get(src, &pkey) {
                Some(StateValue::Parked(e)) => (**e).clone(),
                _ => continue, // released through another reference already
            };
            self.put(pkey, None);
            // It resolves now. It cannot fail: only events with links are parked,
            // and the link error is the only one `apply_linked` returns.
            let _ = self.apply(src, &env);
        }
    }

    fn has_fragment(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> bool {
        self.get(src, &StateKey::new(tenant, Item::Fragment(k.clone())))
            .is_some()
    }

    /// The customer key and creation time of an order, without copying it.
    fn order_facts(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        id: &str,
    ) -> Option<(Option<IdentityKey>, Option<OffsetDateTime>)> {
        match self.get(src, &StateKey::new(tenant, Item::Order(id.to_string()))) {
            Some(StateValue::Order(o)) => Some((o.customer_key(tenant), o.created_at())),
            _ => None,
        }
    }

    /// Members of the customer anchored at `root`: the root and every identity it
    /// claims that resolves to it.
    fn members(&mut self, src: &dyn Source, tenant: &str, root: &IdentityKey) -> Vec<IdentityKey> {
        let mut out = vec![root.clone()];
        if root.kind == IdentityKind::Email {
            let claims = self.index(src, tenant, root).claims;
            for k in claims {
                if self.root(src, tenant, &k) == *root {
                    out.push(k);
                }
            }
        }
        out
    }

    /// Ends the batch: recomputes the views touched by it and returns the changed
    /// records and the outputs. The working set is emptied.
    pub fn finish(&mut self, src: &dyn Source) -> BatchOutput {
        let mut out = self.settle(src);
        let mut changes: Vec<(StateKey, Option<StateValue>)> = self
            .cache
            .drain()
            .filter(|(_, s)| s.dirty)
            .map(|(k, s)| (k, s.value))
            .collect();
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        out.changes = changes;
        out
    }

    /// Ends the batch like [`Engine::finish`], but keeps the working set as a
    /// cache for the next batches and hands each changed record to `visit` by
    /// reference (in key order) instead of returning copies: the processor
    /// serialises them straight into its write batch. `BatchOutput::changes` is
    /// empty. Call [`Engine::trim`] to bound the cache.
    pub fn finish_retaining(
        &mut self,
        src: &dyn Source,
        mut visit: impl FnMut(&StateKey, Option<&StateValue>),
    ) -> BatchOutput {
        let out = self.settle(src);
        let mut dirty: Vec<&StateKey> = self
            .cache
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, _)| k)
            .collect();
        dirty.sort();
        for k in dirty {
            visit(k, self.cache.get(k).and_then(|s| s.value.as_ref()));
        }
        for slot in self.cache.values_mut() {
            slot.dirty = false;
        }
        out
    }

    /// Drops the cached (clean) working set when it holds more than `max` records.
    pub fn trim(&mut self, max: usize) {
        if self.cache.len() > max {
            self.cache.retain(|_, s| s.dirty);
        }
    }

    /// Recomputes the views touched by the batch and collects the outputs.
    fn settle(&mut self, src: &dyn Source) -> BatchOutput {
        let mut out = BatchOutput::default();
        // Orders whose customer may have changed mark their customers dirty.
        let dirty_orders: Vec<(String, OrderId)> =
            std::mem::take(&mut self.dirty_orders).into_iter().collect();
        for (tenant, oid) in &dirty_orders {
            if let Some((ck, _)) = self.order_facts(src, tenant, oid)
                && let Some(k) = ck
            {
                self.dirty_keys.insert((tenant.clone(), k));
            }
            if let Some(StateValue::OrderMeta(m)) =
                self.get(src, &StateKey::new(tenant, Item::OrderMeta(oid.clone())))
                && let Some(k) = m
                    .customer_id
                    .as_ref()
                    .and_then(|c| IdentityKey::from_customer_id(&crate::CustomerId(c.clone())))
            {
                self.dirty_keys.insert((tenant.clone(), k));
            }
        }
        // Which roots to recompute: the root of every dirty key, and the root it
        // was last published under (so a customer that lost a member is redone).
        let mut roots: BTreeSet<(String, IdentityKey)> = BTreeSet::new();
        let dirty: Vec<(String, IdentityKey)> =
            std::mem::take(&mut self.dirty_keys).into_iter().collect();
        for (tenant, k) in &dirty {
            let r = self.root(src, tenant, k);
            roots.insert((tenant.clone(), r));
            if let Some(prev) = self.index(src, tenant, k).merged_into {
                roots.insert((tenant.clone(), prev));
            }
            roots.insert((tenant.clone(), k.clone()));
        }
        let mut redacted_orders: Vec<(String, OrderId)> = Vec::new();
        for (tenant, root) in roots {
            let node = self.index(src, &tenant, &root);
            if node.merged_into.is_some() && self.root(src, &tenant, &root) == root {
                // It was merged and no longer is (its phone became ambiguous).
                self.update_index(src, &tenant, &root, |n| {
                    n.merged_into = None;
                    true
                });
            }
            if self.root(src, &tenant, &root) != root {
                // `root` is merged into another: publish it as merged, once.
                let survivor = self.root(src, &tenant, &root);
                let node = self.index(src, &tenant, &root);
                let has_data = self.has_fragment(src, &tenant, &root) || !node.orders.is_empty();
                // Published once, and only when there was a customer to merge: a
                // phone nobody used on its own merges nothing visible.
                if has_data && node.merged_into.as_ref() != Some(&survivor) {
                    self.update_index(src, &tenant, &root, |n| {
                        n.merged_into = Some(survivor.clone());
                        true
                    });
                    let merge = Merge {
                        tenant: tenant.clone(),
                        survivor: survivor.customer_id().0,
                        merged: root.customer_id().0,
                        reason: root.kind.merge_reason().to_string(),
                    };
                    let version = self.bump_customer_version(src, &tenant, &root, None);
                    self.put(StateKey::new(&tenant, Item::Customer(root.clone())), None);
                    out.projections.push(Projection::CustomerMerged {
                        tenant: tenant.clone(),
                        customer_id: merge.merged.clone(),
                        merged_into: merge.survivor.clone(),
                        reason: merge.reason.clone(),
                        version,
                    });
                    out.merges.push(merge);
                }
                continue;
            }
            if let Some(v) = self.recompute_customer(src, &tenant, &root, &mut redacted_orders) {
                out.projections.push(v);
            }
        }
        for (tenant, oid) in redacted_orders {
            if let Some(StateValue::Order(o)) = self
                .get_mut(src, &StateKey::new(&tenant, Item::Order(oid.clone())))
                .as_mut()
                && !o.redacted
            {
                Arc::make_mut(o).scrub(&tenant);
            }
            if !dirty_orders.contains(&(tenant.clone(), oid.clone())) {
                // Published below like any changed order.
                self.dirty_orders.insert((tenant, oid));
            }
        }
        let mut all_orders: BTreeSet<(String, OrderId)> = dirty_orders.into_iter().collect();
        all_orders.extend(std::mem::take(&mut self.dirty_orders));
        for (tenant, oid) in &all_orders {
            if let Some(p) = self.recompute_order(src, tenant, oid) {
                out.projections.push(p);
            }
        }
        // Triggers, with the customer ids as resolved now.
        let placed = std::mem::take(&mut self.placed_orders);
        for (tenant, oid) in placed {
            let Some((Some(ck), created_at)) = self.order_facts(src, &tenant, &oid) else {
                continue;
            };
            let root = self.root(src, &tenant, &ck);
            let count = match self.get(src, &StateKey::new(&tenant, Item::Customer(root.clone()))) {
                Some(StateValue::Customer(c)) => c.view.orders.len(),
                _ => 1,
            };
            let kind = if count <= 1 {
                "first_order"
            } else {
                "repeat_order"
            };
            let at = created_at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
            out.triggers.push(Trigger {
                trigger_id: trigger_id(kind, &oid, ""),
                tenant: tenant.clone(),
                kind: kind.to_string(),
                customer_id: Some(root.customer_id().0),
                order_id: Some(oid.clone()),
                occurred_at: at,
                source_event_id: oid.clone(),
                data: serde_json::json!({"orders_count": count}),
            });
        }
        for t in std::mem::take(&mut self.triggers) {
            let customer_id = t
                .customer
                .as_ref()
                .map(|k| self.root(src, &t.tenant, k).customer_id().0);
            let subject = t.order_id.clone().unwrap_or_default();
            out.triggers.push(Trigger {
                trigger_id: trigger_id(t.kind, &subject, &t.source_event_id),
                tenant: t.tenant,
                kind: t.kind.to_string(),
                customer_id,
                order_id: t.order_id,
                occurred_at: t.at,
                source_event_id: t.source_event_id,
                data: t.data,
            });
        }
        out
    }

    fn bump_customer_version(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        anchor: &IdentityKey,
        computed: Option<u64>,
    ) -> u64 {
        let key = StateKey::new(tenant, Item::Customer(anchor.clone()));
        let prev = match self.get(src, &key) {
            Some(StateValue::Customer(c)) => Some(c.version),
            _ => None,
        };
        match (prev, computed) {
            (Some(p), Some(c)) if c > p => c,
            (Some(p), _) => p + 1,
            (None, Some(c)) => c.max(1),
            (None, None) => 1,
        }
    }

    fn recompute_customer(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        root: &IdentityKey,
        redacted_orders: &mut Vec<(String, OrderId)>,
    ) -> Option<Projection> {
        let members = self.members(src, tenant, root);
        let mut order_ids: BTreeSet<OrderId> = BTreeSet::new();
        let mut merged = Vec::new();
        let mut version: u64 = 0;
        let mut present: Vec<StateKey> = Vec::new();
        let mut any_redacted = false;
        for m in &members {
            let node_key = StateKey::new(tenant, Item::Index(m.clone()));
            let (claimed, has_orders) = match self.get(src, &node_key) {
                Some(StateValue::Index(n)) => {
                    order_ids.extend(n.orders.iter().cloned());
                    (n.claimed_by.len() as u64, !n.orders.is_empty())
                }
                _ => (0, false),
            };
            version += claimed;
            let fkey = StateKey::new(tenant, Item::Fragment(m.clone()));
            let has_fragment = match self.get(src, &fkey) {
                Some(StateValue::Fragment(f)) => {
                    version += f.seen.count();
                    any_redacted |= f.redacted;
                    true
                }
                _ => false,
            };
            if has_fragment {
                present.push(fkey);
            }
            if m != root && (has_fragment || has_orders) {
                merged.push(MergeRecord {
                    merged_id: m.customer_id().0,
                    reason: m.kind.merge_reason().to_string(),
                });
            }
        }
        let mut order_keys: Vec<StateKey> = Vec::new();
        for oid in &order_ids {
            let okey = StateKey::new(tenant, Item::Order(oid.clone()));
            let (ck, seen, redacted) = match self.get(src, &okey) {
                Some(StateValue::Order(o)) => (o.customer_key(tenant), o.seen.count(), o.redacted),
                _ => continue,
            };
            if ck.is_some_and(|k| self.root(src, tenant, &k) == *root) {
                version += seen;
                if any_redacted && !redacted {
                    redacted_orders.push((tenant.to_string(), oid.clone()));
                }
                // Published under another customer id before (a merge moved it
                // here): publish it again, whatever batch the merge came in.
                let meta = StateKey::new(tenant, Item::OrderMeta(oid.clone()));
                if let Some(StateValue::OrderMeta(m)) = self.get(src, &meta)
                    && m.customer_id.as_deref() != Some(root.customer_id().0.as_str())
                {
                    self.dirty_orders.insert((tenant.to_string(), oid.clone()));
                }
                order_keys.push(okey);
            }
        }
        if present.is_empty() && order_keys.is_empty() {
            return None;
        }
        // Erasure spreads to every member and every order of the customer.
        if any_redacted {
            for key in &present {
                if let Some(StateValue::Fragment(f)) = self.get_mut(src, key).as_mut()
                    && !f.redacted
                {
                    f.scrub();
                }
            }
        }
        merged.sort();
        let frag_refs: Vec<&Fragment> = present
            .iter()
            .filter_map(|k| match self.peek(k) {
                Some(StateValue::Fragment(f)) => Some(&**f),
                _ => None,
            })
            .collect();
        let order_refs: Vec<&Order> = order_keys
            .iter()
            .filter_map(|k| match self.peek(k) {
                Some(StateValue::Order(o)) => Some(&**o),
                _ => None,
            })
            .collect();
        let view = Arc::new(Customer::build(
            tenant,
            root,
            &frag_refs,
            &order_refs,
            merged,
        ));
        let key = StateKey::new(tenant, Item::Customer(root.clone()));
        if let Some(StateValue::Customer(c)) = self.get(src, &key)
            && c.view == view
        {
            return None;
        }
        let version = self.bump_customer_version(src, tenant, root, Some(version));
        self.put(
            key,
            Some(StateValue::Customer(Box::new(CustomerRecord {
                version,
                view: Arc::clone(&view),
            }))),
        );
        Some(Projection::Customer { version, view })
    }

    fn recompute_order(&mut self, src: &dyn Source, tenant: &str, oid: &str) -> Option<Projection> {
        let order = match self.get(src, &StateKey::new(tenant, Item::Order(oid.to_string()))) {
            Some(StateValue::Order(o)) => Arc::clone(o),
            _ => return None,
        };
        let customer_id = order
            .customer_key(tenant)
            .map(|k| self.root(src, tenant, &k).customer_id().0);
        let meta_key = StateKey::new(tenant, Item::OrderMeta(oid.to_string()));
        let prev = match self.get(src, &meta_key) {
            Some(StateValue::OrderMeta(m)) => Some(m.clone()),
            _ => None,
        };
        let computed = order.seen.count();
        // The version follows the set of events folded in; a republish without a
        // new event (the customer id moved after a merge, an erasure) still moves
        // it forward so that sinks accept it.
        let version = match &prev {
            None => computed.max(1),
            Some(p) if computed > p.version => computed,
            Some(p) => p.version + 1,
        };
        self.put(
            meta_key,
            Some(StateValue::OrderMeta(OrderMeta {
                version,
                customer_id: customer_id.clone(),
            })),
        );
        let figures = order.figures();
        let shipments = order.shipment_views();
        Some(Projection::Order {
            version,
            view: Box::new(OrderView {
                tenant: tenant.to_string(),
                order_id: oid.to_string(),
                customer_id,
                figures,
                ledger: Vec::new(),
                shipments,
                order,
            }),
        })
    }
}
