//! The state records the fold reads and writes, their keys, and the in-memory store.

use super::*;

/// Identity index entry: who claims this identity, what it claims, its orders.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IndexNode {
    /// The identities whose events carried this one as a secondary identity:
    /// the emails, or, for an event without an email, its primary identity
    /// (an external id claims a phone it came with).
    pub claimed_by: BTreeSet<IdentityKey>,
    /// The secondary identities this one's events carried.
    pub claims: BTreeSet<IdentityKey>,
    /// Orders placed under this identity.
    pub orders: BTreeSet<OrderId>,
    /// The customer this identity was last published as merged into.
    pub merged_into: Option<IdentityKey>,
    /// The version of that merge notice: a customer published again under
    /// this identity's id (un-merged) takes a greater one, so that sinks
    /// keeping the greatest version take it.
    #[serde(skip_serializing_if = "is_zero")]
    pub merged_version: u64,
    /// For an external id: the system that issued it (`shopify`), which
    /// decides whether it links the emails that carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Resolution found this identity claimed by two or more customers when it
    /// last settled (so a change either way republishes its claimers).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// For each identity in `claimed_by`: the earliest event that carried both
    /// (the evidence of the claim, shown with the merges it causes).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", with = "by_key_string")]
    pub evidence: BTreeMap<IdentityKey, Evidence>,
    /// The operator's decisions about this identity and another one (the map's
    /// key): the latest by time, then event id. Kept on both identities.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", with = "by_key_string")]
    pub decisions: BTreeMap<IdentityKey, Decided>,
}

/// An operator's decision about two identities, and the event that made it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Decided {
    /// First, so that the latest decision is the greatest.
    pub evidence: Evidence,
    pub decision: IdentityDecision,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl IndexNode {
    /// Whether this identity (an external id) links the emails that carried it
    /// under `rules`: its source is a linking one, and it was not carried by
    /// more emails than the rules allow.
    pub fn links(&self, rules: &IdentityRules) -> bool {
        self.source
            .as_ref()
            .is_some_and(|s| rules.link_sources.contains(s))
            && self
                .claimed_by
                .iter()
                .filter(|c| c.kind == IdentityKind::Email)
                .count()
                <= rules.link_max_emails
    }
}

/// A map keyed by identity keys, stored as a JSON object keyed by their
/// string form (`em_<hex>`): JSON object keys are strings.
mod by_key_string {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::identity::IdentityKey;

    pub(super) fn serialize<V: Serialize, S: Serializer>(
        map: &BTreeMap<IdentityKey, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (k.to_string(), v)))
    }

    pub(super) fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<IdentityKey, V>, D::Error> {
        let raw: BTreeMap<String, V> = BTreeMap::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                IdentityKey::parse(&k)
                    .map(|key| (key, v))
                    .ok_or_else(|| D::Error::custom(format!("{k:?} is not an identity key")))
            })
            .collect()
    }
}

/// An event that showed two identities together: the earliest by event time
/// (then id), so that any arrival order keeps the same one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event_id: String,
}

/// A tenant's identity rules (`[tenants.<id>.identity]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRules {
    /// External id sources whose ids link every email that carried them into
    /// one customer (a store's customer id follows its customer through email
    /// changes). Ids of other sources join an email's customer like a phone:
    /// only when one customer claims them.
    pub link_sources: BTreeSet<String>,
    /// An id of a linking source that more than this many emails carried
    /// links none of them (a shared guest or test account), and is flagged.
    pub link_max_emails: usize,
    /// Plus-addressing: `ann+shop@x.com` is `ann@x.com`.
    pub email_plus: bool,
    /// Domains whose mailboxes ignore dots in the local part (`gmail.com`):
    /// `a.nn@gmail.com` is `ann@gmail.com` there.
    pub email_dots_domains: BTreeSet<String>,
    /// The tenant's identity secret: identity keys and customer ids are an
    /// HMAC under it instead of a plain hash (see [`crate::identity::KeyScope`]).
    pub secret: Option<IdentitySecret>,
}

/// A tenant's identity secret (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct IdentitySecret(pub Vec<u8>);

impl std::fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySecret([REDACTED])")
    }
}

impl Default for IdentityRules {
    fn default() -> Self {
        Self {
            link_sources: ["shopify", "woocommerce"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            link_max_emails: 10,
            email_plus: false,
            email_dots_domains: BTreeSet::new(),
            secret: None,
        }
    }
}

impl IdentityRules {
    /// Whether the alias policy rewrites any email.
    pub fn rewrites_emails(&self) -> bool {
        self.email_plus || !self.email_dots_domains.is_empty()
    }

    /// `email` (already normalised) under the alias policy; `None` when it
    /// does not change.
    pub fn canonical_email(&self, email: &str) -> Option<String> {
        let (local, domain) = email.rsplit_once('@')?;
        let mut l = local;
        if self.email_plus
            && let Some((base, _)) = l.split_once('+')
            && !base.is_empty()
        {
            l = base;
        }
        let undotted;
        if self.email_dots_domains.contains(domain) && l.contains('.') {
            undotted = l.replace('.', "");
            if undotted.is_empty() {
                return None;
            }
            l = &undotted;
        }
        (l != local).then(|| format!("{l}@{domain}"))
    }

    /// Rewrites the emails of the identities an event names under the alias
    /// policy; `None` when nothing changes.
    pub fn canonical_envelope(&self, env: &Envelope) -> Option<Envelope> {
        if !self.rewrites_emails() {
            return None;
        }
        let mut out = env.clone();
        let mut changed = false;
        let mut fix = |id: &mut crate::identity::Identity| {
            if let Some(c) = id.email.as_deref().and_then(|e| self.canonical_email(e)) {
                id.email = Some(c);
                changed = true;
            }
        };
        match &mut out.event {
            Event::CustomerUpserted(c) => fix(&mut c.identity),
            Event::CustomerRedacted(r) => fix(&mut r.identity),
            Event::OrderUpserted(o) => fix(&mut o.customer),
            Event::TicketUpdated(t) => fix(&mut t.requester),
            Event::Touch(t) => fix(&mut t.identity),
            Event::Identify(i) => fix(&mut i.identity),
            Event::IdentityDecided(d) => {
                for side in [&mut d.a, &mut d.b] {
                    if let crate::event::Party::Email(e) = side
                        && let Some(c) = self.canonical_email(e)
                    {
                        *e = c;
                        changed = true;
                    }
                }
            }
            // The others name an order, not a customer.
            _ => {}
        }
        changed.then_some(out)
    }
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
    /// The identities the event names as a person (a payment's payer), under
    /// which it is also filed (`who:<key>`), so that erasing one finds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erasure_keys: Vec<IdentityKey>,
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
    /// Identity rules per tenant; a tenant without an entry has the defaults.
    pub identity: BTreeMap<String, IdentityRules>,
}

impl FoldConfig {
    /// What of one raw event survives its subject's erasure, to be kept in
    /// clear beside the encrypted body (crypto-shredding): its canonical
    /// events scrubbed as [`Event::scrub`] says (the books, ids, statuses and
    /// times stay), with every identity they named kept as its key only, so
    /// that a replay that cannot decrypt the body still counts the money and
    /// finds the customer it belonged to, erased.
    pub fn residue(&self, events: &[Envelope]) -> Vec<Envelope> {
        events
            .iter()
            .map(|env| {
                let tenant = env.tenant.as_str();
                let scope = self.key_scope(tenant);
                let mut out = self
                    .identity_rules(tenant)
                    .canonical_envelope(env)
                    .unwrap_or_else(|| env.clone());
                let keyed = |id: &crate::identity::Identity| id.to_keyed(scope);
                let kept = match &out.event {
                    Event::CustomerUpserted(c) => Some(keyed(&c.identity)),
                    Event::CustomerRedacted(r) => Some(keyed(&r.identity)),
                    Event::OrderUpserted(o) => {
                        // The cart token joins the buyer's other identities
                        // (never alone: it would become the order's anchor).
                        let mut id = o.customer.clone();
                        if id.anonymous_id.is_none() && !id.is_empty() {
                            id.anonymous_id = o.cart_token.clone();
                        }
                        Some(keyed(&id))
                    }
                    Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => Some(keyed(&p.payer)),
                    Event::TicketUpdated(t) => Some(keyed(&t.requester)),
                    Event::Touch(t) => {
                        let mut id = t.identity.clone();
                        if id.anonymous_id.is_none() {
                            id.anonymous_id = t.cart_token.clone();
                        }
                        Some(keyed(&id))
                    }
                    Event::Identify(i) => Some(keyed(&i.identity)),
                    _ => None,
                };
                if let Event::IdentityDecided(d) = &mut out.event {
                    for side in [&mut d.a, &mut d.b] {
                        if let Some(k) = side.key(scope) {
                            *side = Party::CustomerId(k.customer_id().0);
                        }
                    }
                }
                out.event.scrub();
                if let Some(id) = kept {
                    match &mut out.event {
                        Event::CustomerUpserted(c) => c.identity = id,
                        Event::CustomerRedacted(r) => r.identity = id,
                        Event::OrderUpserted(o) => o.customer = id,
                        Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => p.payer = id,
                        Event::TicketUpdated(t) => t.requester = id,
                        Event::Touch(t) => t.identity = id,
                        Event::Identify(i) => i.identity = id,
                        _ => {}
                    }
                }
                out
            })
            .collect()
    }

    /// The subject of one raw event, for crypto-shredding: the identity key
    /// the fold files what the event says about a person under (the
    /// [`Identity::primary_key`] of its buyer, payer, requester, visitor, a
    /// redaction's identity or an operator's side: an email, else an external
    /// id, phone, anonymous id), under the tenant's alias policy and secret;
    /// the most significant one when its events name several. An erasure
    /// erases exactly the data filed under erased keys, so shredding the raw
    /// events of those subjects destroys what the erasure destroyed and
    /// nothing it kept. `None`: the event names nobody.
    ///
    /// [`Identity::primary_key`]: crate::identity::Identity::primary_key
    pub fn subject(&self, events: &[Envelope]) -> Option<IdentityKey> {
        let mut best: Option<IdentityKey> = None;
        for env in events {
            let tenant = env.tenant.as_str();
            let canonical = self.identity_rules(tenant).canonical_envelope(env);
            let env = canonical.as_ref().unwrap_or(env);
            let scope = self.key_scope(tenant);
            let primary = |id: &crate::identity::Identity| id.primary_key(scope);
            let keys: Vec<Option<IdentityKey>> = match &env.event {
                Event::CustomerUpserted(c) => vec![primary(&c.identity)],
                Event::CustomerRedacted(r) => vec![primary(&r.identity)],
                Event::OrderUpserted(o) => vec![primary(&o.customer)],
                Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => vec![primary(&p.payer)],
                Event::TicketUpdated(t) => vec![primary(&t.requester)],
                Event::Touch(t) => {
                    let mut id = t.identity.clone();
                    if id.anonymous_id.is_none() {
                        id.anonymous_id = t.cart_token.clone();
                    }
                    vec![primary(&id)]
                }
                Event::Identify(i) => vec![primary(&i.identity)],
                Event::IdentityDecided(d) => vec![d.a.key(scope), d.b.key(scope)],
                _ => Vec::new(),
            };
            for k in keys.into_iter().flatten() {
                if best.as_ref().is_none_or(|b| k.kind < b.kind) {
                    best = Some(k);
                }
            }
        }
        best
    }

    /// Where `tenant`'s identity keys are derived (with its secret, if any).
    pub fn key_scope<'a>(&'a self, tenant: &'a str) -> crate::identity::KeyScope<'a> {
        crate::identity::KeyScope {
            tenant,
            secret: self
                .identity
                .get(tenant)
                .and_then(|r| r.secret.as_ref())
                .map(|s| s.0.as_slice()),
        }
    }

    /// The identity rules of `tenant`.
    pub fn identity_rules(&self, tenant: &str) -> &IdentityRules {
        static DEFAULT: std::sync::OnceLock<IdentityRules> = std::sync::OnceLock::new();
        self.identity
            .get(tenant)
            .unwrap_or_else(|| DEFAULT.get_or_init(IdentityRules::default))
    }

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
    /// A stock keeping unit: its cost history and stock.
    Sku(String),
    /// A payout, by `provider:payout_id`.
    Payout(String),
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
            Item::Sku(s) => ("sku", s.clone()),
            Item::Payout(p) => ("payout", p.clone()),
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
            "sku" => Item::Sku(id.to_string()),
            "payout" => Item::Payout(id.to_string()),
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
    Sku(Box<Sku>),
    Payout(Box<Payout>),
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

    /// Every payout as the CRM sees it, by `provider:payout_id`: what the
    /// newest payout projection of each holds.
    pub fn payout_views(&self) -> BTreeMap<String, super::PayoutView> {
        self.records
            .iter()
            .filter_map(|(k, v)| match (&k.item, v) {
                (Item::Payout(id), StateValue::Payout(p)) => {
                    Some((id.clone(), super::payout_view(&k.tenant, p)))
                }
                _ => None,
            })
            .collect()
    }
}
