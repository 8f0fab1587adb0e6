//! The HubSpot sink: customers as contacts, orders as deals, within the portal's
//! rate limits.
//!
//! # What is written
//! - **Customers → contacts**, upserted by email
//!   (`POST /crm/v3/objects/contacts/batch/upsert`, `idProperty: "email"`), with
//!   storefold's fields mapped to properties ([`mapping`]). Skipped, and counted
//!   in `storefold_sink_hubspot_skipped_total{reason}`:
//!   - `no_email`: HubSpot's contacts are keyed by email here; a customer known
//!     only by phone or an external id has no contact to upsert.
//!   - `redacted`: after an erasure the projection carries no email, so the
//!     contact cannot even be addressed. Erasing the contact in HubSpot is
//!     HubSpot's GDPR delete, a deliberate act left to the CRM's owners.
//!   - `merged`: a customer merged into another. Its identities (and email) now
//!     belong to the survivor, whose own projection updates the survivor's
//!     contact; the merged customer's old contact is left as it was (merging or
//!     deleting HubSpot contacts is destructive and not storefold's call).
//! - **Orders → deals**, upserted by `order_id_property` (a unique-value deal
//!   property holding storefold's order id, e.g. `shopify:450789469`) via
//!   `POST /crm/v3/objects/deals/batch/upsert`, then **associated** with their
//!   customer's contact via HubSpot's default deal→contact association
//!   (`POST /crm/v4/associations/deals/contacts/batch/associate/default`). The
//!   contact's HubSpot id comes from the contact upsert's answer (kept in memory,
//!   email → id); after a restart it is looked up once with
//!   `POST /crm/v3/objects/contacts/batch/read` by email.
//! - **Triggers** set `last_trigger` / `last_trigger_at` on the customer's
//!   contact (when mapped), and `chargeback_opened` and `payment_failed` make
//!   that contact's update go out first.
//!
//! # Portals
//! Tenants never share a portal: with `[sinks.hubspot.tenants.<id>] token`,
//! each tenant's records go to its own portal (its own client, rate limits,
//! queue and memory), so two tenants' customers with one email or two orders
//! with one id stay apart. A record of a tenant without a portal is
//! dead-lettered (`no_hubspot_portal`), and the configuration check refuses to
//! start when a configured tenant has none. A single `token` is allowed only
//! while the configuration has at most one tenant.
//!
//! # The queue and the quota planner
//! A write turns its records into upserts waiting in a queue, one per HubSpot
//! object (contacts by email, deals by order id). Updates of one object waiting
//! in the queue coalesce: the newest `(generation, version)` of a customer wins,
//! and a trigger joins its contact's upsert instead of costing a request of its
//! own. The queue outlives a failed write, so when the runner retries after a
//! 429 or an outage, what it hands over again (or anything newer) merges with
//! what still waits. The queue drains in requests of up to `batch_size` inputs:
//! priority contacts first, then the other contacts, then deals, then
//! associations; each request first asks the [`planner`] for a slot.
//!
//! # Errors
//! - 429: the planner pauses for `Retry-After` and the write fails as retryable
//!   with that delay; 5xx, 423, 477, timeouts and connection errors: retryable.
//! - 401/403, and answers that blame the configuration (a property that does not
//!   exist, a non-unique id property): fatal.
//! - Per-record validation errors (an option that is not allowed, an invalid
//!   email): every input carries an `objectWriteTraceId`, so HubSpot answers 207
//!   Multi-Status naming the failed inputs; exactly those records are rejected
//!   with HubSpot's message (they go to `dlq.sink.hubspot`) and the others are
//!   written. When HubSpot refuses a whole batch with a 400 instead, the inputs it
//!   names are rejected and the rest sent again; when it names none, the batch is
//!   split in halves until the culprit stands alone.
//!
//! Nothing here guards HubSpot against older versions the way PostgreSQL's
//! `(generation, version)` check does: projections arrive in order per key, and
//! the sink remembers the newest version it wrote per key (in memory) so that
//! redeliveries and retries neither go backwards nor cost requests.

mod client;
pub mod mapping;
pub mod planner;
mod spec;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use serde_json::{Value, json};
use storefold_codec::{CustomerProjection, OrderProjection, Trigger};
use storefold_runtime::config::HubSpotSinkConfig;
use storefold_runtime::metrics::LATENCY_BUCKETS;
use tokio::time::Instant;

use crate::{Item, Rejection, Sink, SinkRecord, Stream, WriteError};
pub(crate) use client::install_crypto_provider;
use client::{Answer, Client, Endpoint, Failure};
use mapping::Mapping;
use planner::{MAX_INLINE_WAIT, Planner};
pub use spec::HubSpotSpec;

/// Trigger kinds whose contact update goes before routine profile updates.
pub const PRIORITY_TRIGGERS: &[&str] = &["chargeback_opened", "payment_failed"];

/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Entries kept per in-memory map (emails, ids, written versions); a map that
/// grows past it starts over, which costs lookups and rewrites, never data.
const MEMORY_CAP: usize = 200_000;

/// The sink's metrics (ARCHITECTURE §7).
#[derive(Clone, Debug)]
pub struct HubSpotMetrics {
    /// `storefold_sink_hubspot_requests_total{endpoint,status}`; `status` is the
    /// HTTP status, or `timeout`, `connect_error`, `transport_error`.
    pub requests: IntCounterVec,
    /// `storefold_sink_hubspot_quota_wait_seconds`: how long each request waited
    /// for the quota planner.
    pub quota_wait: Histogram,
    /// `storefold_sink_hubspot_skipped_total{reason}`: records or associations
    /// deliberately not written (`no_email`, `redacted`, `merged`,
    /// `trigger_unknown_customer`, `association_customer_unknown`,
    /// `association_contact_not_found`, `association_rejected`).
    pub skipped: IntCounterVec,
}

impl HubSpotMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "storefold_sink_hubspot_requests_total",
                "HubSpot API requests by endpoint and answer status",
            ),
            &["endpoint", "status"],
        )?;
        let quota_wait = Histogram::with_opts(
            HistogramOpts::new(
                "storefold_sink_hubspot_quota_wait_seconds",
                "Time a HubSpot request waited for the quota planner",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "storefold_sink_hubspot_skipped_total",
                "Records and associations the HubSpot sink did not write, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(quota_wait.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        Ok(Self {
            requests,
            quota_wait,
            skipped,
        })
    }

    fn skip(&self, reason: &str) {
        self.skipped.with_label_values(&[reason]).inc();
    }
}

/// Which record an upsert came from, to report rejections against the batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SourceId {
    Customer {
        key: String,
        generation: i64,
        version: i64,
    },
    Order {
        key: String,
        generation: i64,
        version: i64,
    },
    Trigger {
        trigger_id: String,
    },
}

impl SourceId {
    fn of(item: &Item) -> SourceId {
        match item {
            Item::Customer(c) => SourceId::Customer {
                key: customer_key(&c.tenant, &c.customer_id),
                generation: c.generation,
                version: c.version,
            },
            Item::Order(o) => SourceId::Order {
                key: order_key(&o.tenant, &o.order_id),
                generation: o.generation,
                version: o.version,
            },
            Item::Trigger(t) => SourceId::Trigger {
                trigger_id: t.trigger_id.clone(),
            },
        }
    }
}

fn customer_key(tenant: &str, customer_id: &str) -> String {
    format!("{tenant}/{customer_id}")
}

fn order_key(tenant: &str, order_id: &str) -> String {
    format!("{tenant}/{order_id}")
}

/// A customer's part of a contact upsert.
#[derive(Debug, Clone)]
struct CustomerPart {
    source: SourceId,
    key: String,
    stamp: (i64, i64),
    updated_at: i64,
    props: BTreeMap<String, String>,
    /// Order ids of the customer (for associations).
    orders: Vec<String>,
}

/// One contact waiting to be upserted.
#[derive(Debug, Clone)]
struct ContactOp {
    customer: Option<CustomerPart>,
    /// Properties set by the newest trigger, and its time.
    trigger_props: BTreeMap<String, String>,
    trigger_at: i64,
    /// Records this upsert answers for besides `customer.source`: superseded
    /// versions and triggers.
    also: Vec<SourceId>,
    priority: bool,
    seq: u64,
}

impl ContactOp {
    /// Nothing to send yet; `seq` orders it among the queued upserts.
    fn empty(seq: u64) -> Self {
        ContactOp {
            customer: None,
            trigger_props: BTreeMap::new(),
            trigger_at: i64::MIN,
            also: Vec::new(),
            priority: false,
            seq,
        }
    }
}

impl ContactOp {
    fn sources(&self) -> Vec<SourceId> {
        let mut out: Vec<SourceId> = self.customer.iter().map(|c| c.source.clone()).collect();
        out.extend(self.also.iter().cloned());
        out
    }

    fn properties(&self) -> BTreeMap<String, String> {
        let mut p = self
            .customer
            .as_ref()
            .map(|c| c.props.clone())
            .unwrap_or_default();
        p.extend(self.trigger_props.clone());
        p
    }
}

/// One deal waiting to be upserted.
#[derive(Debug, Clone)]
struct DealOp {
    source: SourceId,
    key: String,
    stamp: (i64, i64),
    customer_key: Option<String>,
    props: BTreeMap<String, String>,
    also: Vec<SourceId>,
    seq: u64,
}

impl DealOp {
    fn sources(&self) -> Vec<SourceId> {
        let mut out = vec![self.source.clone()];
        out.extend(self.also.iter().cloned());
        out
    }
}

/// An association to make once both ids are known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Want {
    order_id: String,
    customer_key: String,
}

/// What waits to be written. Survives a failed write (see the module docs).
#[derive(Debug, Default)]
struct Queue {
    seq: u64,
    /// By email.
    contacts: BTreeMap<String, ContactOp>,
    /// By order id (the deal's id property value).
    deals: BTreeMap<String, DealOp>,
    /// Associations to make, by what they need.
    wants: HashSet<Want>,
    /// Associations ready to send: (deal id, contact id).
    pairs: HashSet<(String, String)>,
}

/// What the sink remembers between writes (bounded, see [`MEMORY_CAP`]).
#[derive(Debug, Default)]
struct Memory {
    /// Customer key → email.
    emails: HashMap<String, String>,
    /// Email → HubSpot contact id.
    contact_ids: HashMap<String, String>,
    /// Emails a contact lookup did not find (until a contact upsert gives an id).
    not_found: HashSet<String>,
    /// Order id → HubSpot deal id.
    deal_ids: HashMap<String, String>,
    /// (deal id, contact id) associated.
    associated: HashSet<(String, String)>,
    /// Key (`c:`/`o:` + tenant/id) → newest (generation, version) written.
    written: HashMap<String, (i64, i64)>,
    /// Triggers applied.
    triggers_done: HashSet<String>,
    /// Email → time of the newest trigger applied.
    last_trigger_at: HashMap<String, i64>,
    /// Records HubSpot refused: (code, reason), answered again on a retry.
    rejected: HashMap<SourceId, (String, String)>,
}

impl Memory {
    /// Whether `(generation, version)` `stamp` or a newer one of the customer
    /// (`'c'`) or order (`'o'`) `key` was written already.
    fn written_at_least(&self, kind: char, key: &str, stamp: (i64, i64)) -> bool {
        self.written
            .get(&format!("{kind}:{key}"))
            .is_some_and(|w| *w >= stamp)
    }

    fn mark_written(&mut self, kind: char, key: &str, stamp: (i64, i64)) {
        bounded(&mut self.written);
        self.written.insert(format!("{kind}:{key}"), stamp);
    }
}

fn bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MEMORY_CAP {
        map.clear();
    }
}

fn bounded_set<K: std::hash::Hash + Eq>(set: &mut HashSet<K>) {
    if set.len() >= MEMORY_CAP {
        set.clear();
    }
}

/// The HubSpot sink (see the module docs): one [`Portal`] per tenant
/// (`[sinks.hubspot.tenants.<id>]`), or one portal for a deployment with a
/// single tenant (`token`).
#[derive(Debug)]
pub struct HubSpotSink {
    /// Tenant → its portal.
    portals: BTreeMap<String, Portal>,
    /// The one portal of `token` (no `tenants`).
    single: Option<Portal>,
}

/// What a tenant's records come to without a portal of their own.
pub const NO_PORTAL: &str = "no_hubspot_portal";

/// One HubSpot portal: its token, its rate limits, its queue and what it
/// remembers. Tenants never share one (unless the deployment has one tenant).
#[derive(Debug)]
struct Portal {
    batch_size: usize,
    order_id_property: String,
    mapping: Mapping,
    client: Client,
    planner: Planner,
    metrics: HubSpotMetrics,
    queue: Queue,
    memory: Memory,
    /// Rejections decided during the current write.
    rejected_now: Vec<(SourceId, String, String)>,
}

/// How an upsert chunk ended.
enum ChunkEnd {
    Done,
    /// Send these (subsets of the chunk) again.
    Again(Vec<Vec<String>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    Contact,
    Deal,
}

impl HubSpotSink {
    /// The sink of `cfg`: a portal per `[sinks.hubspot.tenants.<id>]`, or the
    /// one portal of `token`. Records of a tenant without a portal are
    /// dead-lettered ([`NO_PORTAL`]); the configuration check refuses to start
    /// when a configured tenant has none.
    pub fn new(cfg: &HubSpotSinkConfig, registry: &Registry) -> Result<Self, WriteError> {
        let fatal = |message: String| WriteError::Fatal { message };
        let metrics = HubSpotMetrics::new(registry)
            .map_err(|e| fatal(format!("cannot register the HubSpot metrics: {e}")))?;
        if cfg.tenants.is_empty() {
            if cfg.token.trim().is_empty() {
                return Err(fatal(
                    "sinks.hubspot: no token, and no [sinks.hubspot.tenants.<id>]".into(),
                ));
            }
            return Ok(Self {
                portals: BTreeMap::new(),
                single: Some(Portal::new(
                    cfg,
                    &cfg.token,
                    "sinks.hubspot.token",
                    metrics,
                )?),
            });
        }
        let mut portals = BTreeMap::new();
        for (tenant, t) in &cfg.tenants {
            let portal = Portal::new(
                cfg,
                &t.token,
                &format!("sinks.hubspot.tenants.{tenant}.token"),
                metrics.clone(),
            )?;
            portals.insert(tenant.clone(), portal);
        }
        Ok(Self {
            portals,
            single: None,
        })
    }

    /// The longest `Retry-After` honoured (`sinks.max_retry_after_secs`); the
    /// default is [`crate::DEFAULT_MAX_RETRY_AFTER`].
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        for p in self.portals.values_mut().chain(self.single.as_mut()) {
            p.client.max_retry_after = max;
        }
        self
    }
}

impl Portal {
    fn new(
        cfg: &HubSpotSinkConfig,
        token: &str,
        token_key: &str,
        metrics: HubSpotMetrics,
    ) -> Result<Self, WriteError> {
        let fatal = |message: String| WriteError::Fatal { message };
        let mapping = Mapping::new(cfg).map_err(fatal)?;
        if !(1..=100).contains(&cfg.batch_size) {
            return Err(fatal(
                "sinks.hubspot.batch_size must be 1-100 (HubSpot's batch limit)".into(),
            ));
        }
        if cfg.order_id_property.trim().is_empty() {
            return Err(fatal("sinks.hubspot.order_id_property is empty".into()));
        }
        let client = Client::new(&cfg.base_url, token, REQUEST_TIMEOUT, metrics.clone())
            .map_err(|e| fatal(e.replace("sinks.hubspot.token", token_key)))?;
        Ok(Self {
            batch_size: cfg.batch_size,
            order_id_property: cfg.order_id_property.clone(),
            mapping,
            client,
            planner: Planner::new(cfg.requests_per_10s, cfg.requests_per_day),
            metrics,
            queue: Queue::default(),
            memory: Memory::default(),
            rejected_now: Vec::new(),
        })
    }

    fn next_seq(&mut self) -> u64 {
        self.queue.seq += 1;
        self.queue.seq
    }

    fn enqueue_customer(&mut self, c: &CustomerProjection) {
        let key = customer_key(&c.tenant, &c.customer_id);
        if c.merged_into.is_some() {
            self.metrics.skip("merged");
            self.memory.emails.remove(&key);
            return;
        }
        if c.redacted {
            self.metrics.skip("redacted");
            self.memory.emails.remove(&key);
            return;
        }
        let Some(email) = c
            .email
            .as_deref()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty())
        else {
            self.metrics.skip("no_email");
            return;
        };
        bounded(&mut self.memory.emails);
        self.memory.emails.insert(key.clone(), email.clone());
        let stamp = (c.generation, c.version);
        if self.memory.written_at_least('c', &key, stamp) {
            return;
        }
        let orders = c
            .customer_view()
            .map(|v| v.orders.iter().map(|o| o.order_id.clone()).collect())
            .unwrap_or_default();
        let part = CustomerPart {
            source: SourceId::of(&Item::Customer(c.clone())),
            key,
            stamp,
            updated_at: c.updated_at,
            props: self.mapping.contact(c),
            orders,
        };
        let seq = self.next_seq();
        let op = self
            .queue
            .contacts
            .entry(email)
            .or_insert_with(|| ContactOp::empty(seq));
        let Some(cur) = op.customer.as_mut() else {
            op.customer = Some(part);
            return;
        };
        let newer = if cur.key == part.key {
            part.stamp > cur.stamp
        } else {
            // Two customers with one email (a merge in flight): the most
            // recently changed one speaks for the contact.
            part.updated_at >= cur.updated_at
        };
        if newer {
            let old = std::mem::replace(cur, part);
            op.also.push(old.source);
        } else if part.source != cur.source {
            op.also.push(part.source);
        }
    }

    fn enqueue_trigger(&mut self, t: &Trigger) {
        if self.memory.triggers_done.contains(&t.trigger_id) {
            return;
        }
        let key = customer_key(&t.tenant, &t.customer_id);
        let Some(email) = self.memory.emails.get(&key).cloned() else {
            self.metrics.skip("trigger_unknown_customer");
            return;
        };
        let priority = PRIORITY_TRIGGERS.contains(&t.kind.as_str());
        let newer = self
            .memory
            .last_trigger_at
            .get(&email)
            .is_none_or(|at| t.occurred_at > *at);
        let props = if newer {
            self.mapping.trigger(t)
        } else {
            BTreeMap::new()
        };
        let source = SourceId::Trigger {
            trigger_id: t.trigger_id.clone(),
        };
        if props.is_empty() && !priority && !self.queue.contacts.contains_key(&email) {
            // Nothing to send for it.
            self.memory.triggers_done.insert(t.trigger_id.clone());
            return;
        }
        let seq = self.next_seq();
        let op = self
            .queue
            .contacts
            .entry(email)
            .or_insert_with(|| ContactOp::empty(seq));
        op.priority |= priority;
        if !props.is_empty() && t.occurred_at > op.trigger_at {
            op.trigger_props = props;
            op.trigger_at = t.occurred_at;
        }
        if !op.also.contains(&source) {
            op.also.push(source);
        }
    }

    fn enqueue_order(&mut self, o: &OrderProjection) {
        let key = order_key(&o.tenant, &o.order_id);
        let stamp = (o.generation, o.version);
        if self.memory.written_at_least('o', &key, stamp) {
            return;
        }
        let source = SourceId::of(&Item::Order(o.clone()));
        let props = self.mapping.deal(o);
        let customer_key = o.customer_id.as_deref().map(|c| customer_key(&o.tenant, c));
        let seq = self.next_seq();
        match self.queue.deals.get_mut(&o.order_id) {
            Some(cur) if cur.key == key && cur.stamp >= stamp => {
                if cur.source != source {
                    cur.also.push(source);
                }
            }
            Some(cur) => {
                let old = std::mem::replace(
                    cur,
                    DealOp {
                        source,
                        key,
                        stamp,
                        customer_key,
                        props,
                        also: Vec::new(),
                        seq,
                    },
                );
                cur.also = old.also;
                cur.also.push(old.source);
            }
            None => {
                self.queue.deals.insert(
                    o.order_id.clone(),
                    DealOp {
                        source,
                        key,
                        stamp,
                        customer_key,
                        props,
                        also: Vec::new(),
                        seq,
                    },
                );
            }
        }
    }

    /// Waits for a slot, sends, and records the request with the planner.
    async fn request(&mut self, endpoint: Endpoint, body: &Value) -> Result<Answer, WriteError> {
        loop {
            let now = Instant::now();
            let slot = self.planner.next_slot(now);
            let wait = slot.saturating_duration_since(now);
            if wait > MAX_INLINE_WAIT {
                return Err(WriteError::Retryable {
                    message: format!(
                        "HubSpot quota: the next request may go in {:.0} s ({} requests in the rolling day)",
                        wait.as_secs_f64(),
                        self.planner.daily_count()
                    ),
                    retry_after: Some(wait),
                });
            }
            if wait.is_zero() {
                self.metrics.quota_wait.observe(0.0);
                break;
            }
            tokio::time::sleep_until(slot).await;
            self.metrics.quota_wait.observe(wait.as_secs_f64());
            // Re-check: nothing else sends meanwhile, so this passes at once.
            if self.planner.next_slot(Instant::now()) <= Instant::now() {
                break;
            }
        }
        let result = self.client.post(endpoint, body).await;
        let ended = Instant::now();
        self.planner.record(ended);
        match result {
            Ok(answer) => Ok(answer),
            Err(Failure::RateLimited {
                retry_after,
                policy,
                message,
            }) => {
                self.planner.pause_until(ended + retry_after);
                tracing::warn!(policy = %policy, retry_after_ms = retry_after.as_millis() as u64, "HubSpot rate limit");
                Err(WriteError::Retryable {
                    message: format!("{message} (policy {policy})"),
                    retry_after: Some(retry_after),
                })
            }
            Err(Failure::Transient {
                message,
                retry_after,
            }) => {
                if let Some(r) = retry_after {
                    self.planner.pause_until(ended + r);
                }
                Err(WriteError::Retryable {
                    message,
                    retry_after,
                })
            }
            Err(Failure::Fatal { message }) => Err(WriteError::Fatal { message }),
        }
    }

    fn reject(&mut self, sources: Vec<SourceId>, code: &str, reason: &str) {
        for s in sources {
            if self.memory.rejected.len() >= 10_000 {
                self.memory.rejected.clear();
            }
            self.memory
                .rejected
                .insert(s.clone(), (code.to_string(), reason.to_string()));
            self.rejected_now
                .push((s, code.to_string(), reason.to_string()));
        }
    }

    /// The next chunk of contacts: priority first, then in arrival order.
    fn next_contacts(&self) -> Vec<String> {
        let mut all: Vec<(&String, &ContactOp)> = self.queue.contacts.iter().collect();
        all.sort_by_key(|(_, op)| (!op.priority, op.seq));
        all.into_iter()
            .take(self.batch_size)
            .map(|(e, _)| e.clone())
            .collect()
    }

    fn next_deals(&self) -> Vec<String> {
        let mut all: Vec<(&String, &DealOp)> = self.queue.deals.iter().collect();
        all.sort_by_key(|(_, op)| op.seq);
        all.into_iter()
            .take(self.batch_size)
            .map(|(k, _)| k.clone())
            .collect()
    }

    async fn drain(&mut self, object: Object) -> Result<(), WriteError> {
        loop {
            let chunk = match object {
                Object::Contact => self.next_contacts(),
                Object::Deal => self.next_deals(),
            };
            if chunk.is_empty() {
                return Ok(());
            }
            let mut work = vec![chunk];
            while let Some(chunk) = work.pop() {
                if let ChunkEnd::Again(parts) = self.upsert(object, &chunk).await? {
                    // Later parts first on the stack, so the first half goes first.
                    work.extend(parts.into_iter().rev());
                }
            }
        }
    }

    /// Sends one upsert request for `ids` (emails or order ids) of the queue.
    async fn upsert(&mut self, object: Object, ids: &[String]) -> Result<ChunkEnd, WriteError> {
        let (endpoint, id_property) = match object {
            Object::Contact => (Endpoint::ContactsUpsert, "email".to_string()),
            Object::Deal => (Endpoint::DealsUpsert, self.order_id_property.clone()),
        };
        let mut inputs = Vec::new();
        let mut sent: Vec<String> = Vec::new();
        for id in ids {
            let props = match object {
                Object::Contact => self.queue.contacts.get(id).map(ContactOp::properties),
                Object::Deal => self.queue.deals.get(id).map(|d| d.props.clone()),
            };
            let Some(props) = props else { continue };
            if props.is_empty() {
                // A trigger with nothing mapped: done without a request.
                self.complete(object, id, None);
                continue;
            }
            inputs.push(json!({
                "idProperty": id_property,
                "id": id,
                "objectWriteTraceId": sent.len().to_string(),
                "properties": props,
            }));
            sent.push(id.clone());
        }
        if sent.is_empty() {
            return Ok(ChunkEnd::Done);
        }
        let answer = self.request(endpoint, &json!({ "inputs": inputs })).await?;
        let (body, partial) = match answer {
            Answer::Done(body) => (body, false),
            Answer::Partial(body) => (body, true),
            Answer::Invalid { status, body } => {
                return self.refused(object, &sent, status, &body);
            }
        };
        // Ids of the results, by input.
        let mut ids_of: HashMap<usize, String> = HashMap::new();
        for r in body
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(hs_id) = r.get("id").and_then(Value::as_str) else {
                continue;
            };
            let input = trace_of(r).or_else(|| {
                let v = r.pointer(&format!("/properties/{id_property}"))?.as_str()?;
                sent.iter().position(|s| s.eq_ignore_ascii_case(v))
            });
            if let Some(i) = input {
                ids_of.insert(i, hs_id.to_string());
            }
        }
        let mut failed: HashMap<usize, (String, String)> = HashMap::new();
        // An error that names no input we can place.
        let mut unplaced: Option<(String, String)> = None;
        if partial {
            for e in body
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let named = named_inputs(e, &sent);
                let d = describe(e);
                if named.is_empty() {
                    unplaced.get_or_insert(d);
                    continue;
                }
                for i in named {
                    failed.insert(i, d.clone());
                }
            }
        }
        // A single input that got an error without a result is that error's.
        if let (Some(d), true) = (&unplaced, sent.len() == 1)
            && !ids_of.contains_key(&0)
        {
            failed.insert(0, d.clone());
        }
        let mut again = Vec::new();
        for (i, id) in sent.iter().enumerate() {
            if let Some((code, reason)) = failed.get(&i) {
                let sources = self.remove(object, id);
                self.reject(sources, code, reason);
            } else if ids_of.contains_key(&i) || unplaced.is_none() {
                self.complete(object, id, ids_of.get(&i).cloned());
            } else {
                again.push(id.clone());
            }
        }
        // Every retry is smaller than its request, or split: this ends.
        if again.is_empty() {
            Ok(ChunkEnd::Done)
        } else if again.len() == sent.len() {
            Ok(ChunkEnd::Again(halves(again)))
        } else {
            Ok(ChunkEnd::Again(vec![again]))
        }
    }

    /// A 400/409/422 for a whole upsert request.
    fn refused(
        &mut self,
        object: Object,
        sent: &[String],
        status: u16,
        body: &Value,
    ) -> Result<ChunkEnd, WriteError> {
        let (code, reason) = describe(body);
        if blames_configuration(body) {
            return Err(WriteError::Fatal {
                message: format!("HubSpot refused the request ({status}, {code}): {reason}"),
            });
        }
        // Each named input with the most specific error that names it.
        let mut named: BTreeMap<usize, (String, String)> = named_inputs(body, sent)
            .into_iter()
            .map(|i| (i, (code.clone(), reason.clone())))
            .collect();
        for e in body
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let inputs = named_inputs(e, sent);
            if !inputs.is_empty() {
                let d = describe(e);
                for i in inputs {
                    named.insert(i, d.clone());
                }
            }
        }
        if named.is_empty() {
            if sent.len() == 1 {
                let sources = self.remove(object, &sent[0]);
                self.reject(sources, &code, &reason);
                return Ok(ChunkEnd::Done);
            }
            tracing::debug!(
                inputs = sent.len(),
                "HubSpot refused a batch without naming an input: splitting it"
            );
            return Ok(ChunkEnd::Again(halves(sent.to_vec())));
        }
        let mut rest = Vec::new();
        for (i, id) in sent.iter().enumerate() {
            if let Some((code, reason)) = named.get(&i) {
                let sources = self.remove(object, id);
                self.reject(sources, code, reason);
            } else {
                rest.push(id.clone());
            }
        }
        Ok(if rest.is_empty() {
            ChunkEnd::Done
        } else {
            ChunkEnd::Again(vec![rest])
        })
    }

    fn remove(&mut self, object: Object, id: &str) -> Vec<SourceId> {
        match object {
            Object::Contact => self
                .queue
                .contacts
                .remove(id)
                .map(|op| op.sources())
                .unwrap_or_default(),
            Object::Deal => self
                .queue
                .deals
                .remove(id)
                .map(|op| op.sources())
                .unwrap_or_default(),
        }
    }

    /// An upsert HubSpot accepted: remember what was written.
    fn complete(&mut self, object: Object, id: &str, hs_id: Option<String>) {
        match object {
            Object::Contact => {
                let Some(op) = self.queue.contacts.remove(id) else {
                    return;
                };
                if let Some(hs) = hs_id {
                    bounded(&mut self.memory.contact_ids);
                    self.memory.contact_ids.insert(id.to_string(), hs);
                    self.memory.not_found.remove(id);
                }
                if let Some(c) = &op.customer {
                    self.memory.mark_written('c', &c.key, c.stamp);
                    for order_id in &c.orders {
                        if self.memory.deal_ids.contains_key(order_id) {
                            self.queue.wants.insert(Want {
                                order_id: order_id.clone(),
                                customer_key: c.key.clone(),
                            });
                        }
                    }
                }
                if op.trigger_at != i64::MIN {
                    bounded(&mut self.memory.last_trigger_at);
                    let at = self
                        .memory
                        .last_trigger_at
                        .entry(id.to_string())
                        .or_insert(i64::MIN);
                    *at = (*at).max(op.trigger_at);
                }
                for s in op.also {
                    if let SourceId::Trigger { trigger_id } = s {
                        bounded_set(&mut self.memory.triggers_done);
                        self.memory.triggers_done.insert(trigger_id);
                    }
                }
            }
            Object::Deal => {
                let Some(op) = self.queue.deals.remove(id) else {
                    return;
                };
                self.memory.mark_written('o', &op.key, op.stamp);
                if let Some(hs) = hs_id {
                    bounded(&mut self.memory.deal_ids);
                    self.memory.deal_ids.insert(id.to_string(), hs);
                }
                if let Some(ck) = op.customer_key {
                    self.queue.wants.insert(Want {
                        order_id: id.to_string(),
                        customer_key: ck,
                    });
                }
            }
        }
    }

    /// Turns wanted associations into (deal id, contact id) pairs, looking up
    /// contact ids HubSpot gave before this process started.
    async fn resolve_wants(&mut self) -> Result<(), WriteError> {
        let mut lookup: Vec<String> = Vec::new();
        for w in &self.queue.wants {
            let Some(email) = self.memory.emails.get(&w.customer_key) else {
                continue;
            };
            if !self.memory.contact_ids.contains_key(email)
                && !self.memory.not_found.contains(email)
                && !lookup.contains(email)
            {
                lookup.push(email.clone());
            }
        }
        for chunk in lookup.chunks(self.batch_size) {
            let inputs: Vec<Value> = chunk.iter().map(|e| json!({ "id": e })).collect();
            let body = json!({
                "idProperty": "email",
                "properties": ["email"],
                "propertiesWithHistory": [],
                "inputs": inputs,
            });
            let body = match self.request(Endpoint::ContactsRead, &body).await? {
                Answer::Done(b) | Answer::Partial(b) => b,
                Answer::Invalid { status, body } => {
                    let (code, reason) = describe(&body);
                    tracing::warn!(status, %code, %reason, "HubSpot refused a contact lookup");
                    Value::Null
                }
            };
            for r in body
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(id), Some(email)) = (
                    r.get("id").and_then(Value::as_str),
                    r.pointer("/properties/email").and_then(Value::as_str),
                ) else {
                    continue;
                };
                bounded(&mut self.memory.contact_ids);
                self.memory
                    .contact_ids
                    .insert(email.to_lowercase(), id.to_string());
            }
            for e in chunk {
                if !self.memory.contact_ids.contains_key(e) {
                    bounded_set(&mut self.memory.not_found);
                    self.memory.not_found.insert(e.clone());
                }
            }
        }
        let wants: Vec<Want> = self.queue.wants.drain().collect();
        for w in wants {
            let Some(deal_id) = self.memory.deal_ids.get(&w.order_id).cloned() else {
                continue;
            };
            let Some(email) = self.memory.emails.get(&w.customer_key) else {
                self.metrics.skip("association_customer_unknown");
                continue;
            };
            let Some(contact_id) = self.memory.contact_ids.get(email).cloned() else {
                self.metrics.skip("association_contact_not_found");
                continue;
            };
            let pair = (deal_id, contact_id);
            if !self.memory.associated.contains(&pair) {
                self.queue.pairs.insert(pair);
            }
        }
        Ok(())
    }

    async fn associate(&mut self) -> Result<(), WriteError> {
        loop {
            let mut pending: Vec<(String, String)> = self.queue.pairs.iter().cloned().collect();
            if pending.is_empty() {
                return Ok(());
            }
            pending.sort();
            pending.truncate(self.batch_size);
            let mut work = vec![pending];
            while let Some(chunk) = work.pop() {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|(d, c)| json!({"from": {"id": d}, "to": {"id": c}}))
                    .collect();
                let answer = self
                    .request(Endpoint::Associations, &json!({ "inputs": inputs }))
                    .await?;
                let failed_all = match answer {
                    Answer::Done(_) => false,
                    Answer::Partial(body) => {
                        let n = body
                            .get("errors")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len);
                        if n > 0 {
                            let (code, reason) = describe(&body["errors"][0]);
                            tracing::warn!(errors = n, %code, %reason, "HubSpot refused some associations");
                            self.metrics
                                .skipped
                                .with_label_values(&["association_rejected"])
                                .inc_by(n as u64);
                        }
                        false
                    }
                    Answer::Invalid { status, body } => {
                        if chunk.len() > 1 {
                            work.extend(halves(chunk.clone()).into_iter().rev());
                            continue;
                        }
                        let (code, reason) = describe(&body);
                        tracing::warn!(status, %code, %reason, "HubSpot refused an association");
                        self.metrics.skip("association_rejected");
                        true
                    }
                };
                for pair in chunk {
                    self.queue.pairs.remove(&pair);
                    if !failed_all {
                        bounded_set(&mut self.memory.associated);
                        self.memory.associated.insert(pair);
                    }
                }
            }
        }
    }
}

/// The input index an answer item names through its `objectWriteTraceId`.
fn trace_of(item: &Value) -> Option<usize> {
    item.get("objectWriteTraceId")?.as_str()?.parse().ok()
}

/// Strings listed under `key` in an error's `context` (HubSpot uses
/// `{"key": ["value", ...]}`).
fn context_values<'a>(e: &'a Value, key: &str) -> Vec<&'a str> {
    match e.pointer(&format!("/context/{key}")) {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// Inputs (indices into `sent`) an error names, by trace id or by id value.
fn named_inputs(e: &Value, sent: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for t in context_values(e, "objectWriteTraceId") {
        if let Ok(i) = t.parse::<usize>()
            && i < sent.len()
        {
            out.push(i);
        }
    }
    for key in ["ids", "id"] {
        for v in context_values(e, key) {
            if let Some(i) = sent.iter().position(|s| s.eq_ignore_ascii_case(v)) {
                out.push(i);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `(code, reason)` of a HubSpot error: the most specific code (`errors[].code`,
/// the error's own `code`, the `error` of an embedded validation result, else
/// the category), lower case, and HubSpot's own messages, each prefixed with
/// the property it is about when HubSpot names one.
fn describe(e: &Value) -> (String, String) {
    let about = |item: &Value, message: &str| -> String {
        let property = context_values(item, "propertyName")
            .first()
            .map(|p| p.to_string())
            .or_else(|| item.get("in").and_then(Value::as_str).map(str::to_string));
        match property {
            Some(p) if !message.starts_with(&p) => format!("{p}: {message}"),
            _ => message.to_string(),
        }
    };
    let mut codes = Vec::new();
    let mut messages = Vec::new();
    for sub in e
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = sub.get("code").and_then(Value::as_str) {
            codes.push(c.to_string());
        }
        if let Some(m) = sub.get("message").and_then(Value::as_str) {
            messages.push(about(sub, m));
        }
    }
    if let Some(c) = e.get("code").and_then(Value::as_str) {
        codes.push(c.to_string());
    }
    let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
    // "Property values were not valid: [{\"isValid\":false,\"message\":...,\"error\":\"INVALID_OPTION\",\"name\":\"x\"}]"
    if messages.is_empty()
        && let Some((_, tail)) = message.split_once(": [")
        && let Ok(Value::Array(results)) = serde_json::from_str::<Value>(&format!("[{tail}"))
    {
        for r in &results {
            if let Some(c) = r.get("error").and_then(Value::as_str) {
                codes.push(c.to_string());
            }
            match (
                r.get("name").and_then(Value::as_str),
                r.get("message").and_then(Value::as_str),
            ) {
                (Some(n), Some(m)) => messages.push(format!("{n}: {m}")),
                (None, Some(m)) => messages.push(m.to_string()),
                _ => {}
            }
        }
    }
    if messages.is_empty() && !message.is_empty() {
        messages.push(about(e, message));
    }
    let code = codes
        .first()
        .cloned()
        .or_else(|| {
            e.get("category")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "hubspot_rejected".into())
        .to_lowercase();
    let reason = if messages.is_empty() {
        client::excerpt(&e.to_string())
    } else {
        messages.join("; ")
    };
    (code, reason)
}

/// Whether a refusal is about the configuration rather than a record: a
/// property that does not exist, an id property that is not unique, a scope.
fn blames_configuration(body: &Value) -> bool {
    let text = body.to_string().to_ascii_uppercase();
    text.contains("PROPERTY_DOESNT_EXIST")
        || text.contains("DOES NOT EXIST")
        || text.contains("NON-UNIQUE")
        || text.contains("MISSING_SCOPES")
}

fn halves<T>(ids: Vec<T>) -> Vec<Vec<T>> {
    let mut a = ids;
    let b = a.split_off(a.len() / 2);
    vec![a, b]
}

fn tenant_of(item: &Item) -> &str {
    match item {
        Item::Customer(c) => &c.tenant,
        Item::Order(o) => &o.tenant,
        Item::Trigger(t) => &t.tenant,
    }
}

impl Sink for HubSpotSink {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn streams(&self) -> Vec<Stream> {
        vec![Stream::Customers, Stream::Orders, Stream::Triggers]
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, WriteError> {
        if let Some(single) = self.single.as_mut() {
            return single.write(batch).await;
        }
        // Each tenant's records go to its own portal; indices map back.
        let mut by_tenant: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut rejections = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let tenant = tenant_of(&r.item);
            if self.portals.contains_key(tenant) {
                by_tenant.entry(tenant).or_default().push(i);
            } else {
                rejections.push(Rejection {
                    index: i,
                    code: NO_PORTAL.into(),
                    reason: format!(
                        "tenant {tenant:?} has no HubSpot portal: add [sinks.hubspot.tenants.{tenant}] \
                         token = ... (tenants never share a portal)"
                    ),
                });
            }
        }
        let mut first_error = None;
        for (tenant, indices) in by_tenant {
            let Some(portal) = self.portals.get_mut(tenant) else {
                continue;
            };
            let part: Vec<SinkRecord> = indices.iter().map(|i| batch[*i].clone()).collect();
            match portal.write(&part).await {
                Ok(rs) => rejections.extend(rs.into_iter().map(|r| Rejection {
                    index: indices[r.index],
                    ..r
                })),
                // The other portals still get their records; the runner retries
                // the batch, and what a portal wrote it skips the next time.
                Err(WriteError::Retryable {
                    message,
                    retry_after,
                }) => {
                    let e = WriteError::Retryable {
                        message: format!("tenant {tenant}: {message}"),
                        retry_after,
                    };
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
                Err(WriteError::Fatal { message }) => {
                    return Err(WriteError::Fatal {
                        message: format!(
                            "tenant {tenant}: {message} (sinks.hubspot.tenants.{tenant}.token)"
                        ),
                    });
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        rejections.sort_by_key(|r| r.index);
        Ok(rejections)
    }
}

impl Portal {
    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, WriteError> {
        self.rejected_now.clear();
        let mut index: HashMap<SourceId, usize> = HashMap::new();
        let mut rejections = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let id = SourceId::of(&r.item);
            if let Some((code, reason)) = self.memory.rejected.get(&id) {
                rejections.push(Rejection {
                    index: i,
                    code: code.clone(),
                    reason: reason.clone(),
                });
                continue;
            }
            index.insert(id, i);
        }
        let live = |r: &SinkRecord| index.contains_key(&SourceId::of(&r.item));
        // Customers first, so that triggers of the same batch find their email.
        for r in batch.iter().filter(|r| live(r)) {
            if let Item::Customer(c) = &r.item {
                self.enqueue_customer(c);
            }
        }
        for r in batch.iter().filter(|r| live(r)) {
            match &r.item {
                Item::Order(o) => self.enqueue_order(o),
                Item::Trigger(t) => self.enqueue_trigger(t),
                Item::Customer(_) => {}
            }
        }
        let result = async {
            self.drain(Object::Contact).await?;
            self.drain(Object::Deal).await?;
            self.resolve_wants().await?;
            self.associate().await
        }
        .await;
        for (source, code, reason) in std::mem::take(&mut self.rejected_now) {
            match index.get(&source) {
                Some(i) => rejections.push(Rejection {
                    index: *i,
                    code,
                    reason,
                }),
                // From an earlier, failed write: its batch comes again and
                // gets the rejection from `memory.rejected`.
                None => tracing::debug!(?source, %code, "rejection of a record not in this batch"),
            }
        }
        result?;
        rejections.sort_by_key(|r| r.index);
        Ok(rejections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_hubspots_error_bodies() {
        // A single-object 400 as HubSpot sends it (validation results embedded
        // in the message).
        let body = json!({
            "status": "error",
            "message": "Property values were not valid: [{\"isValid\":false,\"message\":\"reports was not one of the allowed options: [PRODUCT_ISSUE, BILLING_ISSUE]\",\"error\":\"INVALID_OPTION\",\"name\":\"hs_ticket_category\"}]",
            "correlationId": "c0",
            "category": "VALIDATION_ERROR"
        });
        let (code, reason) = describe(&body);
        assert_eq!(code, "invalid_option");
        assert_eq!(
            reason,
            "hs_ticket_category: reports was not one of the allowed options: [PRODUCT_ISSUE, BILLING_ISSUE]"
        );
        assert!(!blames_configuration(&body));
        // A multi-status error item.
        let item = json!({
            "status": "error",
            "category": "VALIDATION_ERROR",
            "message": "Property values were not valid",
            "context": {"objectWriteTraceId": ["1"]},
            "errors": [{"message": "Email address x is invalid", "code": "INVALID_EMAIL", "context": {"propertyName": ["email"]}}]
        });
        assert_eq!(
            describe(&item),
            (
                "invalid_email".into(),
                "email: Email address x is invalid".into()
            )
        );
        let sent = vec!["a@x.io".to_string(), "x".to_string()];
        assert_eq!(named_inputs(&item, &sent), vec![1]);
        assert_eq!(
            named_inputs(&json!({"context": {"ids": ["A@X.IO"]}}), &sent),
            vec![0]
        );
        // Configuration, not data.
        assert!(blames_configuration(&json!({
            "message": "Property values were not valid",
            "errors": [{"code": "PROPERTY_DOESNT_EXIST", "message": "Property \"x\" does not exist"}]
        })));
        assert!(blames_configuration(&json!({
            "message": "Unable to perform update/upsert by non-unique 0-1 property"
        })));
        assert_eq!(describe(&json!({})).0, "hubspot_rejected");
    }
}
