//! The fold: routes canonical events to the aggregates they concern, resolves
//! identities and order references, parks what cannot be placed yet, and derives
//! the projections, merges and triggers the rest of storefold publishes.
//!
//! The engine works on a batch: [`Engine::apply`] folds events into an in-memory
//! working set read through from a [`Source`] (RocksDB in the processor, a map in
//! tests), and [`Engine::finish`] returns the changed state records and the outputs.
//! Nothing here does I/O or reads a clock.
//!
//! The engine's parts: [`records`](StateKey) (what is stored), the outputs of a
//! batch, identity resolution (`identity`), order references and parking
//! (`orders`), and settling a batch into projections and triggers (`settle`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aggregate::{
    CostEntry, Customer, DecisionRecord, Fragment, MergeRecord, Order, Parcel, Payout,
    SharedIdentity, Sku, TouchEntry, is_store,
};
use crate::event::*;
use crate::identity::{IdentityKey, IdentityKind, content_hash};
use crate::ledger::{self, Books, LedgerEntry, OrderFigures, Reporting};
use crate::limits::Limits;
use crate::money::Currency;
use crate::rates::Rates;

mod identity;
mod inventory;
mod orders;
mod output;
mod payouts;
mod records;
mod settle;

pub use output::{BatchOutput, FoldError, Merge, OrderView, Outcome, Projection, Trigger};
pub use payouts::{PayoutLineView, PayoutOrder, PayoutView, Unreconciled, payout_view};
pub use records::{
    CustomerRecord, Decided, Evidence, FoldConfig, IdentityRules, IdentitySecret, IndexNode, Item,
    MemStore, OrderMeta, OrderTouches, ParkedEvent, Source, StateKey, StateValue,
};
pub use settle::order_view;

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
    /// Payouts changed by the batch: (tenant, `provider:payout_id`).
    dirty_payouts: BTreeSet<(String, String)>,
    /// Identity resolutions of the current settle (see `identity`): the
    /// claims do not change while the batch settles.
    resolved: HashMap<String, identity::Resolved, FxBuild>,
    /// When the event being applied was received (for parking), if known.
    received_at: Option<i64>,
    /// The books of orders as last derived, by the order's allocation: a
    /// customer recompute needs the books of all its orders, most of them
    /// unchanged since the last batch. An entry holds a weak reference to its
    /// order, so the address stays that order's while the entry lives; and
    /// while a weak reference exists an `Arc<Order>` is never changed in place
    /// (`Arc::make_mut` moves the order to a new allocation first), so an
    /// entry whose order is still alive at that address describes it as it is.
    /// Entries of orders gone are dropped at the end of each settle.
    books: HashMap<usize, (std::sync::Weak<Order>, Books), FxBuild>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cached", &self.cache.len())
            .finish()
    }
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
    // The JSON array `[kind, customer_id, order_id, "nanos", source, data]`,
    // written straight from the fields (the same bytes a `json!` array of them
    // prints, without copying them into a value first).
    let v = (
        &t.kind,
        &t.customer_id,
        &t.order_id,
        t.occurred_at.unix_timestamp_nanos().to_string(),
        &t.source_event_id,
        &t.data,
    );
    // Strings, options and a JSON value always serialise.
    let bytes = serde_json::to_vec(&v).unwrap_or_default();
    let mut h = content_hash(&bytes);
    h.truncate(16);
    h
}

/// The links of an event that needs an order, if it is one.
fn links_of(event: &Event) -> Option<&[OrderLink]> {
    match event {
        Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => Some(&p.links),
        Event::RefundIssued(r) => Some(&r.links),
        Event::DisputeOpened(d) | Event::DisputeClosed(d) => Some(&d.links),
        Event::ShipmentUpdated(s) => Some(&s.links),
        Event::ReturnRequested(r) | Event::ReturnResolved(r) => Some(&r.links),
        Event::PayoutLine(l) if !l.links.is_empty() => Some(&l.links),
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

    fn get<'a>(&'a mut self, src: &dyn Source, key: StateKey) -> Option<&'a StateValue> {
        self.slot(src, key).value.as_ref()
    }

    fn get_mut<'a>(&'a mut self, src: &dyn Source, key: StateKey) -> &'a mut Option<StateValue> {
        let slot = self.slot(src, key);
        slot.dirty = true;
        &mut slot.value
    }

    /// The working-set slot of `key`, loaded from `src` when absent; not marked
    /// changed. Takes the key by value: one lookup whether it is there or not
    /// (the key is kept only when it is new to the working set).
    fn slot<'a>(&'a mut self, src: &dyn Source, key: StateKey) -> &'a mut Slot {
        match self.cache.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let value = src.load(e.key());
                e.insert(Slot {
                    value,
                    dirty: false,
                })
            }
        }
    }

    /// A record already in the working set (no loading).
    fn peek(&self, key: &StateKey) -> Option<&StateValue> {
        self.cache.get(key).and_then(|s| s.value.as_ref())
    }

    fn put(&mut self, key: StateKey, value: Option<StateValue>) {
        self.cache.insert(key, Slot { value, dirty: true });
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
        // The tenant's email alias policy, when it has one, applies to the
        // event as a whole (its keys, claims and stored snapshot).
        let mut canonical = self
            .config
            .identity_rules(&env.tenant)
            .canonical_envelope(env);
        // Emails in the links a visit or an order carries are not kept.
        let current = canonical.as_ref().unwrap_or(env);
        if matches!(current.event, Event::Touch(_) | Event::OrderUpserted(_))
            && let Some(event) = current.event.without_link_emails()
        {
            let mut e = current.clone();
            e.event = event;
            canonical = Some(e);
        }
        let out = self.apply_event(src, canonical.as_ref().unwrap_or(env));
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
            Event::IdentityDecided(d) => self.apply_decision(src, env, d),
            Event::TicketUpdated(t) => self.apply_to_customer(src, env, &t.requester),
            Event::CustomerRedacted(r) => {
                let config = Arc::clone(&self.config);
                let mut keys = r.identity.keys(config.key_scope(tenant));
                keys.extend(r.keys.iter().cloned());
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
                if changed {
                    self.order_skus(src, tenant, &o.order_id);
                }
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
                let config = Arc::clone(&self.config);
                if let Some(primary) = o.customer.primary_key(config.key_scope(tenant)) {
                    self.with_fragment(src, tenant, &primary, env);
                    self.update_index(src, tenant, &primary, |n| {
                        n.orders.insert(o.order_id.clone())
                    });
                }
                self.claim(src, env, &id);
                Ok(if changed {
                    Outcome::Applied
                } else {
                    Outcome::Duplicate
                })
            }
            Event::InventoryUpdated(i) => self.apply_inventory(src, env, i),
            Event::PayoutUpdated(p) => self.apply_payout(src, env, p),
            Event::PayoutLine(l) => self.apply_payout_line(src, env, l),
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
}
