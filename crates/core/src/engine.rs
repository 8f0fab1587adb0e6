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

use crate::aggregate::{Customer, Fragment, MergeRecord, Order, Parcel, TouchEntry};
use crate::event::*;
use crate::identity::{IdentityKey, IdentityKind, content_hash};
use crate::ledger::{self, Books, LedgerEntry, OrderFigures, Reporting};
use crate::limits::Limits;
use crate::money::Currency;
use crate::rates::Rates;

/// Identity index entry: who claims this identity, what it claims, its orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
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
    /// The first/repeat order triggers last published for this customer: trigger
    /// id → content hash, so one is published again only when it changes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers: BTreeMap<String, String>,
}

/// Last published order projection state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderMeta {
    pub version: u64,
    pub customer_id: Option<String>,
    /// The order's triggers last published: trigger id → content hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers: BTreeMap<String, String>,
    /// The customer's first and last touch as of the order's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touches: Option<Box<OrderTouches>>,
}

/// The campaign touches an order is attributed to: the customer's first touch
/// and its last touch before the order was placed (the order's own landing
/// page UTM is in its snapshot's attribution).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTouches {
    pub first: Option<TouchEntry>,
    pub last: Option<TouchEntry>,
}

/// A parked event and when the ingest received it (milliseconds since the
/// epoch), so that the processor can give up on it after a bounded time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedEvent {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
}

/// What the fold needs to know about tenants beyond their events.
#[derive(Clone, Debug, Default)]
pub struct FoldConfig {
    /// Reporting currency per tenant (see `docs/books.md`).
    pub reporting: BTreeMap<String, Currency>,
    /// The operator's exchange rates.
    pub rates: Rates,
    /// How much history the state keeps (`[processor]` limits).
    pub limits: Limits,
}

impl FoldConfig {
    pub fn reporting(&self, tenant: &str) -> Option<Reporting<'_>> {
        self.reporting.get(tenant).map(|c| Reporting {
            currency: *c,
            rates: &self.rates,
        })
    }
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
    /// A carrier's parcel, by tracking number.
    Parcel(String),
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
            Item::Parcel(t) => ("parcel", t.clone()),
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
            "parcel" => Item::Parcel(id.to_string()),
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
    Parcel(Box<Parcel>),
    Parked(Box<ParkedEvent>),
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
        self.order_views_with(&FoldConfig::default())
    }

    /// [`MemStore::order_views`] with a tenant configuration (reporting currency).
    pub fn order_views_with(&self, config: &FoldConfig) -> BTreeMap<String, OrderView> {
        self.records
            .keys()
            .filter_map(|k| match &k.item {
                Item::Order(id) => order_view(self, config, &k.tenant, id).map(|v| (id.clone(), v)),
                _ => None,
            })
            .collect()
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
    config: Arc<FoldConfig>,
    cache: HashMap<StateKey, Slot, FxBuild>,
    dirty_keys: BTreeSet<(String, IdentityKey)>,
    dirty_orders: BTreeSet<(String, OrderId)>,
    /// When the event being applied was received (for parking), if known.
    received_at: Option<i64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// The store platforms, whose shipment events are their own fulfillments.
fn is_store(provider: &str) -> bool {
    matches!(provider, "shopify" | "woocommerce")
}

/// The parking and reference key of a link (`order:shopify:1`,
/// `payment:stripe:pi_1`, `tracking:1Z…`, `number:#1001`).
pub fn link_key(link: &OrderLink) -> String {
    match link {
        OrderLink::Order { order_id } => format!("order:{order_id}"),
        OrderLink::Payment {
            provider,
            reference,
        } => format!("payment:{provider}:{reference}"),
        OrderLink::Tracking { number } => format!("tracking:{number}"),
        OrderLink::Number { number } => format!("number:{number}"),
    }
}

fn trigger_id(kind: &str, subject: &str, source: &str) -> String {
    let h = content_hash(format!("{kind}\0{subject}\0{source}").as_bytes());
    format!("trg_{}", &h[..24])
}

/// A trigger's content hash (what a republish compares).
fn trigger_hash(t: &Trigger) -> String {
    let v = serde_json::json!([
        t.kind,
        t.customer_id,
        t.order_id,
        t.occurred_at.unix_timestamp_nanos().to_string(),
        t.source_event_id,
        t.data
    ]);
    content_hash(v.to_string().as_bytes())[..16].to_string()
}

/// The links of an event that needs an order, if it is one.
fn links_of(event: &Event) -> Option<&[OrderLink]> {
    match event {
        Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => Some(&p.links),
        Event::RefundIssued(r) => Some(&r.links),
        Event::DisputeOpened(d) | Event::DisputeClosed(d) => Some(&d.links),
        Event::ShipmentUpdated(s) => Some(&s.links),
        Event::ReturnRequested(r) | Event::ReturnResolved(r) => Some(&r.links),
        _ => None,
    }
}

/// The order references a parked event waits for, as the fold files it: the
/// orders it names outright (`order:woocommerce:727`), else every reference it
/// carries (`payment:stripe:pi_1`, `number:#1001`); a carrier's tracking event
/// also waits under its tracking number (`tracking:1Z…`) and may wait for the
/// orders it names. Sorted, each once.
pub fn parked_keys(env: &Envelope) -> Vec<String> {
    let links = links_of(&env.event).unwrap_or_default();
    let explicit: Vec<String> = links
        .iter()
        .filter(|l| matches!(l, OrderLink::Order { .. }))
        .map(link_key)
        .collect();
    let mut keys = if explicit.is_empty() || matches!(env.event, Event::ShipmentUpdated(_)) {
        links.iter().map(link_key).collect()
    } else {
        explicit
    };
    if let Event::ShipmentUpdated(s) = &env.event {
        keys.push(format!("tracking:{}", s.tracking_number));
    }
    keys.sort();
    keys.dedup();
    keys
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine that knows the tenants' reporting currencies and rates.
    pub fn with_config(config: Arc<FoldConfig>) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Number of records in the working set.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn get<'a>(&'a mut self, src: &dyn Source, key: &StateKey) -> Option<&'a StateValue> {
        self.slot(src, key).value.as_ref()
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

    fn fragment_mut<'a>(
        &'a mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
    ) -> &'a mut Fragment {
        let slot = self.get_mut(src, &StateKey::new(tenant, Item::Fragment(k.clone())));
        if !matches!(slot, Some(StateValue::Fragment(_))) {
            *slot = Some(StateValue::Fragment(Box::new(Fragment::new(k.clone()))));
        }
        match slot {
            Some(StateValue::Fragment(f)) => f,
            _ => unreachable!("just set"),
        }
    }

    fn with_fragment(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        k: &IdentityKey,
        env: &Envelope,
    ) -> bool {
        let limits = self.config.limits;
        let fragment = self.fragment_mut(src, tenant, k);
        let changed = fragment.apply(env);
        if changed {
            fragment.bound(&limits);
        }
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
        self.apply_received(src, env, None)
    }

    /// [`Engine::apply`] for an event the ingest received at `received_at`
    /// (milliseconds since the epoch): a parked event keeps that time, so the
    /// processor can give up on it after a bounded wait.
    pub fn apply_received(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        received_at: Option<i64>,
    ) -> Result<Outcome, FoldError> {
        let before = std::mem::replace(&mut self.received_at, received_at);
        let out = self.apply_event(src, env);
        self.received_at = before;
        out
    }

    fn apply_event(&mut self, src: &dyn Source, env: &Envelope) -> Result<Outcome, FoldError> {
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
                // An order named here is erased whenever it arrives: its
                // redaction is kept on a record that has no snapshot yet.
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
                // The store's own references are the order's: they release
                // events parked under them.
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
                // Events that named this order before it existed.
                self.release(src, tenant, &format!("order:{}", o.order_id));
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
            // A carrier's tracking (a store's own fulfillments go to the order).
            Event::ShipmentUpdated(s) if !is_store(&s.provider) => self.apply_parcel(src, env, s),
            Event::PaymentSucceeded(_)
            | Event::PaymentFailed(_)
            | Event::RefundIssued(_)
            | Event::DisputeOpened(_)
            | Event::DisputeClosed(_)
            | Event::ShipmentUpdated(_)
            | Event::ReturnRequested(_)
            | Event::ReturnResolved(_) => {
                // The order decides who the customer is; a payer's details stay
                // on the payment (a gift or a company card is not a new customer).
                let links = links_of(&env.event).unwrap_or_default();
                self.apply_linked(src, env, links)
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

    fn order_mut<'a>(
        &'a mut self,
        src: &dyn Source,
        tenant: &str,
        order_id: &str,
    ) -> &'a mut Order {
        let slot = self.get_mut(
            src,
            &StateKey::new(tenant, Item::Order(order_id.to_string())),
        );
        if !matches!(slot, Some(StateValue::Order(_))) {
            *slot = Some(StateValue::Order(Arc::new(Order::new(order_id))));
        }
        match slot {
            Some(StateValue::Order(o)) => Arc::make_mut(o),
            _ => unreachable!("just set"),
        }
    }

    /// Applies to the order; true when it changed.
    fn apply_to_order(&mut self, src: &dyn Source, env: &Envelope, order_id: &str) -> bool {
        let tenant = env.tenant.as_str();
        let checkpoints = self.config.limits.checkpoints;
        let order = self.order_mut(src, tenant, order_id);
        let tracking = match &env.event {
            Event::ShipmentUpdated(s) if !s.tracking_number.starts_with("fulfillment:") => {
                Some(s.tracking_number.clone())
            }
            _ => None,
        };
        if !order.apply(env) {
            return false;
        }
        if matches!(env.event, Event::ShipmentUpdated(_)) {
            for s in order.shipments.values_mut() {
                s.bound(checkpoints);
            }
        }
        self.dirty_orders
            .insert((tenant.to_string(), order_id.to_string()));
        if let Some(t) = tracking {
            // A store's fulfillment names its parcel: the carrier's events of
            // that number belong to this order too.
            self.learn_ref(src, tenant, &format!("tracking:{t}"), order_id);
        }
        true
    }

    /// Whether the order exists (the store's snapshot of it has arrived).
    fn order_exists(&mut self, src: &dyn Source, tenant: &str, order_id: &str) -> bool {
        matches!(
            self.get(src, &StateKey::new(tenant, Item::Order(order_id.to_string()))),
            Some(StateValue::Order(o)) if o.snapshot.is_some()
        )
    }

    fn learn_ref(&mut self, src: &dyn Source, tenant: &str, reference: &str, order_id: &str) {
        let key = StateKey::new(tenant, Item::Ref(reference.to_string()));
        let slot = self.slot(src, &key);
        let added = match &mut slot.value {
            Some(StateValue::Ref(set)) => set.insert(order_id.to_string()),
            other => {
                *other = Some(StateValue::Ref(BTreeSet::from([order_id.to_string()])));
                true
            }
        };
        if !added {
            return;
        }
        slot.dirty = true;
        if let Some(t) = reference.strip_prefix("tracking:") {
            // The order holds the parcel: its view shows the carrier's events.
            let t = t.to_string();
            let order = self.order_mut(src, tenant, order_id);
            order.parcels.insert(t);
            self.dirty_orders
                .insert((tenant.to_string(), order_id.to_string()));
        }
        self.release(src, tenant, reference);
    }

    /// The orders a reference names.
    fn ref_orders(&mut self, src: &dyn Source, tenant: &str, reference: &str) -> BTreeSet<OrderId> {
        match self.get(
            src,
            &StateKey::new(tenant, Item::Ref(reference.to_string())),
        ) {
            Some(StateValue::Ref(s)) => s.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// The order a reference resolves to: the one it names, or, when a
    /// reference names several (which the providers' data should not do), the
    /// smallest id, so the choice does not depend on arrival.
    fn resolve_ref(&mut self, src: &dyn Source, tenant: &str, reference: &str) -> Option<OrderId> {
        self.ref_orders(src, tenant, reference).into_iter().next()
    }

    /// Applies an event that names its order through links.
    ///
    /// An order named outright (`OrderLink::Order`) wins over any reference;
    /// the event waits (parked under `order:<id>`) until that order exists and
    /// never makes an order of its own. Otherwise the first reference that
    /// resolves decides; with none, the event waits under every reference it
    /// names. A payment event that found its order teaches it the payment
    /// references it carries (the provider's own word that they belong to it).
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
        let explicit: Vec<&OrderId> = links
            .iter()
            .filter_map(|l| match l {
                OrderLink::Order { order_id } => Some(order_id),
                _ => None,
            })
            .collect();
        let refs: Vec<String> = links
            .iter()
            .filter(|l| !matches!(l, OrderLink::Order { .. }))
            .map(link_key)
            .collect();
        let target = if explicit.is_empty() {
            match refs.iter().find_map(|r| self.resolve_ref(src, tenant, r)) {
                Some(o) => o,
                None => return Ok(self.park(src, env, refs)),
            }
        } else {
            match explicit
                .iter()
                .find(|o| self.order_exists(src, tenant, o))
                .map(|o| (*o).clone())
            {
                Some(o) => o,
                None => {
                    let keys = explicit.iter().map(|o| format!("order:{o}")).collect();
                    return Ok(self.park(src, env, keys));
                }
            }
        };
        let changed = self.apply_to_order(src, env, &target);
        for r in refs.iter().filter(|r| r.starts_with("payment:")) {
            self.learn_ref(src, tenant, r, &target);
        }
        Ok(if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        })
    }

    /// A carrier's tracking event: it belongs to the parcel of its tracking
    /// number, which every order holding the number shows (a combined parcel
    /// shows on each). An order the carrier names (outright or by its number)
    /// comes to hold the parcel once it exists. With no order holding the
    /// number yet, the event also waits (parked) so that an order that never
    /// comes is noticed.
    fn apply_parcel(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        s: &Shipment,
    ) -> Result<Outcome, FoldError> {
        let tenant = env.tenant.as_str();
        let number = s.tracking_number.clone();
        let key = StateKey::new(tenant, Item::Parcel(number.clone()));
        let checkpoints = self.config.limits.checkpoints;
        let changed = {
            let slot = self.slot(src, &key);
            let changed = match &mut slot.value {
                Some(StateValue::Parcel(p)) => p.apply(s, env),
                other => {
                    let mut p = Parcel::new(&number);
                    let changed = p.apply(s, env);
                    *other = Some(StateValue::Parcel(Box::new(p)));
                    changed
                }
            };
            if changed && let Some(StateValue::Parcel(p)) = &mut slot.value {
                p.entry.bound(checkpoints);
            }
            slot.dirty |= changed;
            changed
        };
        let tracking_ref = format!("tracking:{number}");
        // Orders the carrier names: they hold the parcel once they exist.
        let mut unresolved = Vec::new();
        for l in &s.links {
            let claimed = match l {
                OrderLink::Order { order_id } => self
                    .order_exists(src, tenant, order_id)
                    .then(|| order_id.clone()),
                OrderLink::Number { .. } => self.resolve_ref(src, tenant, &link_key(l)),
                _ => continue,
            };
            match claimed {
                Some(o) => self.learn_ref(src, tenant, &tracking_ref, &o),
                None => unresolved.push(link_key(l)),
            }
        }
        let holders = self.ref_orders(src, tenant, &tracking_ref);
        let mut waiting = unresolved;
        if holders.is_empty() {
            waiting.push(tracking_ref);
        }
        let outcome = if changed {
            Outcome::Applied
        } else {
            Outcome::Duplicate
        };
        if !waiting.is_empty() {
            let parked = self.park(src, env, waiting);
            if holders.is_empty() {
                return Ok(match parked {
                    Outcome::Duplicate => outcome,
                    p => p,
                });
            }
        }
        for o in holders {
            self.dirty_orders.insert((tenant.to_string(), o));
        }
        Ok(outcome)
    }

    fn park(&mut self, src: &dyn Source, env: &Envelope, refs: Vec<String>) -> Outcome {
        let tenant = env.tenant.as_str();
        let pkey = StateKey::new(tenant, Item::Parked(env.event_id.clone()));
        if self.get(src, &pkey).is_some() {
            return Outcome::Duplicate;
        }
        self.put(
            pkey,
            Some(StateValue::Parked(Box::new(ParkedEvent {
                envelope: env.clone(),
                received_at: self.received_at,
            }))),
        );
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
            let parked = match self.get(src, &pkey) {
                Some(StateValue::Parked(e)) => (**e).clone(),
                _ => continue, // released through another reference already
            };
            self.put(pkey, None);
            // It resolves now (or parks again under what it still waits for, with
            // its original receive time). It cannot fail: only events with links
            // are parked, and the link error is the only one linking returns.
            let _ = self.apply_received(src, &parked.envelope, parked.received_at);
        }
    }

    /// Gives up on a parked event: removes it (and its entries under the
    /// references it waited for) and returns it, for the dead-letter topic.
    /// `None` when it is no longer parked (it was released meanwhile).
    pub fn expire_parked(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        event_id: &str,
    ) -> Option<ParkedEvent> {
        let pkey = StateKey::new(tenant, Item::Parked(event_id.to_string()));
        let parked = match self.get(src, &pkey) {
            Some(StateValue::Parked(p)) => (**p).clone(),
            _ => return None,
        };
        self.put(pkey, None);
        for r in parked_keys(&parked.envelope) {
            let key = StateKey::new(tenant, Item::ParkedBy(r));
            let next = match self.get(src, &key) {
                Some(StateValue::ParkedBy(s)) if s.contains(event_id) => {
                    let mut s = s.clone();
                    s.remove(event_id);
                    Some(s)
                }
                _ => None,
            };
            if let Some(s) = next {
                let value = (!s.is_empty()).then_some(StateValue::ParkedBy(s));
                self.put(key, value);
            }
        }
        Some(parked)
    }

    fn has_fragment(&mut self, src: &dyn Source, tenant: &str, k: &IdentityKey) -> bool {
        self.get(src, &StateKey::new(tenant, Item::Fragment(k.clone())))
            .is_some()
    }

    /// The customer key of an order, without copying it.
    fn order_customer(&mut self, src: &dyn Source, tenant: &str, id: &str) -> Option<IdentityKey> {
        match self.get(src, &StateKey::new(tenant, Item::Order(id.to_string()))) {
            Some(StateValue::Order(o)) => o.customer_key(tenant),
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

    /// Erasure, derived from state so that arrival order does not matter: an
    /// identity is erased when a redaction named it, or when an email that a
    /// redaction named claims it; an order is erased when a redaction named it
    /// or it was placed under an erased identity (with the parcels it holds).
    fn settle_erasure(&mut self, src: &dyn Source) {
        let keys: Vec<(String, IdentityKey)> = self.dirty_keys.iter().cloned().collect();
        let mut erased: Vec<(String, IdentityKey)> = Vec::new();
        for (tenant, k) in keys {
            let (redacted, requested) =
                match self.get(src, &StateKey::new(&tenant, Item::Fragment(k.clone()))) {
                    Some(StateValue::Fragment(f)) => (f.redacted, f.erasure_requested),
                    _ => (false, false),
                };
            if !redacted {
                continue;
            }
            if requested && k.kind == IdentityKind::Email {
                for c in self.index(src, &tenant, &k).claims {
                    let f = self.fragment_mut(src, &tenant, &c);
                    if !f.redacted {
                        f.scrub();
                    }
                    erased.push((tenant.clone(), c.clone()));
                    self.dirty_keys.insert((tenant.clone(), c));
                }
            }
            erased.push((tenant, k));
        }
        for (tenant, k) in erased {
            for oid in self.index(src, &tenant, &k).orders {
                self.erase_order(src, &tenant, &oid);
            }
        }
    }

    fn erase_order(&mut self, src: &dyn Source, tenant: &str, oid: &str) {
        let key = StateKey::new(tenant, Item::Order(oid.to_string()));
        let parcels = match self.get(src, &key) {
            Some(StateValue::Order(o)) if !o.redacted => o.parcels.clone(),
            _ => return,
        };
        self.order_mut(src, tenant, oid).scrub(tenant);
        for t in parcels {
            if let Some(StateValue::Parcel(p)) = self
                .get_mut(src, &StateKey::new(tenant, Item::Parcel(t)))
                .as_mut()
            {
                p.redacted = true;
                p.entry.scrub();
            }
        }
        self.dirty_orders
            .insert((tenant.to_string(), oid.to_string()));
    }

    /// Recomputes the views touched by the batch and collects the outputs.
    fn settle(&mut self, src: &dyn Source) -> BatchOutput {
        let mut out = BatchOutput::default();
        self.settle_erasure(src);
        // Orders whose customer may have changed mark their customers dirty.
        let dirty_orders: Vec<(String, OrderId)> = self.dirty_orders.iter().cloned().collect();
        for (tenant, oid) in &dirty_orders {
            if let Some(k) = self.order_customer(src, tenant, oid) {
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
            self.recompute_customer(src, &tenant, &root, &mut out);
        }
        let all_orders: BTreeSet<(String, OrderId)> = std::mem::take(&mut self.dirty_orders);
        for (tenant, oid) in &all_orders {
            self.recompute_order(src, tenant, oid, &mut out);
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

    /// The parcels an order holds, from the working set.
    fn load_parcels(&mut self, src: &dyn Source, tenant: &str, order: &Order) -> Vec<StateKey> {
        let keys: Vec<StateKey> = order
            .parcels
            .iter()
            .map(|t| StateKey::new(tenant, Item::Parcel(t.clone())))
            .collect();
        for k in &keys {
            self.get(src, k);
        }
        keys
    }

    fn books_of(&self, tenant: &str, order: &Order) -> Books {
        ledger::books(order, self.config.reporting(tenant))
    }

    fn recompute_customer(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        root: &IdentityKey,
        out: &mut BatchOutput,
    ) {
        let members = self.members(src, tenant, root);
        let mut order_ids: BTreeSet<OrderId> = BTreeSet::new();
        let mut merged = Vec::new();
        let mut version: u64 = 0;
        let mut present: Vec<StateKey> = Vec::new();
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
        let root_id = root.customer_id().0;
        let mut orders: Vec<Arc<Order>> = Vec::new();
        for oid in &order_ids {
            let okey = StateKey::new(tenant, Item::Order(oid.clone()));
            let order = match self.get(src, &okey) {
                Some(StateValue::Order(o)) if o.snapshot.is_some() => Arc::clone(o),
                _ => continue,
            };
            let Some(ck) = order.customer_key(tenant) else {
                continue;
            };
            if self.root(src, tenant, &ck) != *root {
                continue;
            }
            version += order.seen.count();
            // Published under another customer id before (a merge moved it
            // here): publish it again, whatever batch the merge came in.
            let meta = StateKey::new(tenant, Item::OrderMeta(oid.clone()));
            if let Some(StateValue::OrderMeta(m)) = self.get(src, &meta)
                && m.customer_id.as_deref() != Some(root_id.as_str())
            {
                self.dirty_orders.insert((tenant.to_string(), oid.clone()));
            }
            orders.push(order);
        }
        if present.is_empty() && orders.is_empty() {
            return;
        }
        merged.sort();
        let books: Vec<Books> = orders.iter().map(|o| self.books_of(tenant, o)).collect();
        let frag_refs: Vec<&Fragment> = present
            .iter()
            .filter_map(|k| match self.peek(k) {
                Some(StateValue::Fragment(f)) => Some(&**f),
                _ => None,
            })
            .collect();
        let order_refs: Vec<(&Order, &Books)> =
            orders.iter().map(|o| &**o).zip(books.iter()).collect();
        let view = Arc::new(Customer::build(
            tenant,
            root,
            &frag_refs,
            &order_refs,
            merged,
            &self.config.limits,
        ));
        // Each order's touches as of its time, from the customer's touches.
        let mut touch_list: Vec<TouchEntry> = frag_refs
            .iter()
            .flat_map(|f| f.first_touch.iter().chain(f.touches.values()).cloned())
            .collect();
        touch_list.sort();
        touch_list.dedup_by(|a, b| a.touch_id == b.touch_id && a == b);
        let mut order_touches: Vec<(OrderId, Option<Box<OrderTouches>>)> = Vec::new();
        for o in &orders {
            let Some(created) = o.created_at() else {
                continue;
            };
            let before: Vec<&TouchEntry> = touch_list.iter().filter(|t| t.at <= created).collect();
            let touches = (!before.is_empty()).then(|| {
                Box::new(OrderTouches {
                    first: before.first().map(|t| (*t).clone()),
                    last: before.last().map(|t| (*t).clone()),
                })
            });
            order_touches.push((o.order_id.clone(), touches));
        }
        // First and repeat orders, by when they were placed.
        let mut placed: Vec<(&Order, &Books)> = order_refs
            .iter()
            .copied()
            .filter(|(o, b)| {
                o.counts()
                    && !(o.snapshot.as_ref().is_some_and(|s| {
                        matches!(s.value.status, OrderStatus::Cancelled | OrderStatus::Failed)
                    }) && b.figures.paid.is_empty())
            })
            .collect();
        placed.sort_by(|a, b| {
            (a.0.created_at(), &a.0.order_id).cmp(&(b.0.created_at(), &b.0.order_id))
        });
        let mut placed_triggers: BTreeMap<String, Trigger> = BTreeMap::new();
        for (i, (o, _)) in placed.iter().enumerate() {
            let kind = if i == 0 {
                "first_order"
            } else {
                "repeat_order"
            };
            let t = Trigger {
                trigger_id: trigger_id("placed", &o.order_id, ""),
                tenant: tenant.to_string(),
                kind: kind.to_string(),
                customer_id: Some(root_id.clone()),
                order_id: Some(o.order_id.clone()),
                occurred_at: o.created_at().unwrap_or(OffsetDateTime::UNIX_EPOCH),
                source_event_id: format!("order:{}", o.order_id),
                data: serde_json::json!({"orders_count": i + 1}),
            };
            placed_triggers.insert(t.trigger_id.clone(), t);
        }
        let placed_hashes: BTreeMap<String, String> = placed_triggers
            .iter()
            .map(|(id, t)| (id.clone(), trigger_hash(t)))
            .collect();
        drop(order_refs);
        drop(frag_refs);
        for (oid, touches) in order_touches {
            let meta_key = StateKey::new(tenant, Item::OrderMeta(oid.clone()));
            let current = match self.get(src, &meta_key) {
                Some(StateValue::OrderMeta(m)) => Some(m.touches.clone()),
                _ => None,
            };
            if current.as_ref() != Some(&touches) {
                let mut meta = match self.get(src, &meta_key) {
                    Some(StateValue::OrderMeta(m)) => m.clone(),
                    _ => OrderMeta::default(),
                };
                meta.touches = touches;
                self.put(meta_key, Some(StateValue::OrderMeta(meta)));
                self.dirty_orders.insert((tenant.to_string(), oid));
            }
        }
        let key = StateKey::new(tenant, Item::Customer(root.clone()));
        let prev_triggers = match self.get(src, &key) {
            Some(StateValue::Customer(c)) => {
                if c.view == view && c.triggers == placed_hashes {
                    return;
                }
                c.triggers.clone()
            }
            _ => BTreeMap::new(),
        };
        for (id, t) in placed_triggers {
            if prev_triggers.get(&id) != placed_hashes.get(&id) {
                out.triggers.push(t);
            }
        }
        let version = self.bump_customer_version(src, tenant, root, Some(version));
        self.put(
            key,
            Some(StateValue::Customer(Box::new(CustomerRecord {
                version,
                view: Arc::clone(&view),
                triggers: placed_hashes,
            }))),
        );
        out.projections.push(Projection::Customer { version, view });
    }

    fn recompute_order(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        oid: &str,
        out: &mut BatchOutput,
    ) {
        let order = match self.get(src, &StateKey::new(tenant, Item::Order(oid.to_string()))) {
            Some(StateValue::Order(o)) if o.snapshot.is_some() => Arc::clone(o),
            _ => return,
        };
        let customer_id = order
            .customer_key(tenant)
            .map(|k| self.root(src, tenant, &k).customer_id().0);
        let parcel_keys = self.load_parcels(src, tenant, &order);
        let books = self.books_of(tenant, &order);
        let parcels: BTreeMap<String, &Parcel> = parcel_keys
            .iter()
            .filter_map(|k| match (self.peek(k), &k.item) {
                (Some(StateValue::Parcel(p)), Item::Parcel(t)) => Some((t.clone(), &**p)),
                _ => None,
            })
            .collect();
        let parcel_events: u64 = parcels.values().map(|p| p.seen.count()).sum();
        let shipments = order.shipment_views(&parcels);
        drop(parcels);
        let meta_key = StateKey::new(tenant, Item::OrderMeta(oid.to_string()));
        let prev = match self.get(src, &meta_key) {
            Some(StateValue::OrderMeta(m)) => Some(m.clone()),
            _ => None,
        };
        let computed = order.seen.count() + parcel_events;
        // The version follows the set of events folded in; a republish without a
        // new event (the customer id moved after a merge, an erasure) still moves
        // it forward so that sinks accept it.
        let version = match &prev {
            None => computed.max(1),
            Some(p) if computed > p.version => computed,
            Some(p) => p.version + 1,
        };
        let triggers = order_triggers(tenant, &order, &shipments, customer_id.as_deref());
        let hashes: BTreeMap<String, String> = triggers
            .iter()
            .map(|(id, t)| (id.clone(), trigger_hash(t)))
            .collect();
        let prev_hashes = prev.as_ref().map(|p| &p.triggers);
        for (id, t) in triggers {
            if prev_hashes.and_then(|h| h.get(&id)) != hashes.get(&id) {
                out.triggers.push(t);
            }
        }
        let touches = prev.as_ref().and_then(|p| p.touches.clone());
        self.put(
            meta_key,
            Some(StateValue::OrderMeta(OrderMeta {
                version,
                customer_id: customer_id.clone(),
                triggers: hashes,
                touches: touches.clone(),
            })),
        );
        out.projections.push(Projection::Order {
            version,
            view: Box::new(OrderView {
                tenant: tenant.to_string(),
                order_id: oid.to_string(),
                customer_id,
                figures: books.figures,
                ledger: books.entries,
                shipments,
                touches,
                order,
            }),
        });
    }
}

/// An order's triggers, derived from its state: one per fact, with an id from
/// the fact, so that every arrival order gives the same set.
fn order_triggers(
    tenant: &str,
    order: &Order,
    shipments: &[crate::aggregate::ShipmentView],
    customer_id: Option<&str>,
) -> BTreeMap<String, Trigger> {
    let oid = order.order_id.as_str();
    let mut out = BTreeMap::new();
    let mut add = |kind: &str, subject: &str, at: OffsetDateTime, source: &str, data| {
        let t = Trigger {
            trigger_id: trigger_id(kind, oid, subject),
            tenant: tenant.to_string(),
            kind: kind.to_string(),
            customer_id: customer_id.map(str::to_string),
            order_id: Some(oid.to_string()),
            occurred_at: at,
            source_event_id: source.to_string(),
            data,
        };
        out.insert(t.trigger_id.clone(), t);
    };
    // Every delivery, exception and return a parcel's timeline shows.
    for s in shipments {
        for c in &s.checkpoints {
            let kind = match c.status {
                ShipmentStatus::Delivered => "delivered",
                ShipmentStatus::Exception => "shipment_exception",
                ShipmentStatus::Returned => "returned",
                _ => continue,
            };
            let subject = format!("{}@{}", s.tracking_number, c.at.unix_timestamp_nanos());
            add(
                kind,
                &subject,
                c.at,
                &format!("shipment:{subject}"),
                serde_json::json!({"tracking_number": s.tracking_number, "status": c.status.as_str()}),
            );
        }
    }
    // Every failed payment attempt or capture.
    for rec in order.payments.values() {
        for (ev, p) in &rec.observations {
            if p.status == PaymentStatus::Failed {
                add(
                    "payment_failed",
                    ev,
                    p.at,
                    ev,
                    serde_json::json!({
                        "payment_id": p.payment_id,
                        "provider": p.provider,
                        "capture_id": p.capture_id,
                        "reason": p.failure_reason,
                    }),
                );
            }
        }
    }
    // Every refund that went through, once, at its first report.
    for (key, rec) in &order.refunds {
        let first = rec
            .observations
            .iter()
            .filter(|(_, r)| r.status == RefundStatus::Succeeded)
            .min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        if let Some((ev, r)) = first {
            add(
                "refund_issued",
                key,
                r.at,
                ev,
                serde_json::json!({"refund_id": r.refund_id, "amount": r.amount}),
            );
        }
    }
    // Every dispute, at its first report.
    for (key, rec) in &order.disputes {
        let first = rec
            .observations
            .iter()
            .min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        if let Some((ev, d)) = first {
            add(
                "chargeback_opened",
                key,
                d.at,
                ev,
                serde_json::json!({"dispute_id": d.dispute_id, "amount": d.amount}),
            );
        }
    }
    // Every return asked for or settled.
    for (id, r) in &order.returns {
        let first = [&r.requested, &r.resolved]
            .into_iter()
            .flatten()
            .min_by(|a, b| (a.value.at, &a.stamp.event_id).cmp(&(b.value.at, &b.stamp.event_id)));
        if let Some(reg) = first {
            add(
                "returned",
                &format!("return:{id}"),
                reg.value.at,
                &reg.stamp.event_id,
                serde_json::json!({"return_id": id}),
            );
        }
    }
    out
}

/// An order as the CRM sees it, read from `src` (what the order projection
/// holds, and what the query API answers).
pub fn order_view(
    src: &dyn Source,
    config: &FoldConfig,
    tenant: &str,
    order_id: &str,
) -> Option<OrderView> {
    let order = match src.load(&StateKey::new(tenant, Item::Order(order_id.to_string()))) {
        Some(StateValue::Order(o)) if o.snapshot.is_some() => o,
        _ => return None,
    };
    let meta = match src.load(&StateKey::new(
        tenant,
        Item::OrderMeta(order_id.to_string()),
    )) {
        Some(StateValue::OrderMeta(m)) => m,
        _ => OrderMeta::default(),
    };
    let parcels_owned: Vec<(String, Box<Parcel>)> = order
        .parcels
        .iter()
        .filter_map(
            |t| match src.load(&StateKey::new(tenant, Item::Parcel(t.clone()))) {
                Some(StateValue::Parcel(p)) => Some((t.clone(), p)),
                _ => None,
            },
        )
        .collect();
    let parcels: BTreeMap<String, &Parcel> = parcels_owned
        .iter()
        .map(|(t, p)| (t.clone(), &**p))
        .collect();
    let books = ledger::books(&order, config.reporting(tenant));
    Some(OrderView {
        tenant: tenant.to_string(),
        order_id: order_id.to_string(),
        customer_id: meta.customer_id,
        figures: books.figures,
        ledger: books.entries,
        shipments: order.shipment_views(&parcels),
        touches: meta.touches,
        order,
    })
}
