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
//!   - `merged`: a customer merged into another. Its identities (and email) now
//!     belong to the survivor, whose own projection updates the survivor's
//!     contact; the merged customer's old contact is left as it was (merging
//!     HubSpot contacts, or deleting them for anything but an erasure, is
//!     destructive and not storefold's call).
//! - **Erased customers → contacts deleted.** A redacted customer projection
//!   (GDPR erasure) deletes the customer's contact with HubSpot's GDPR delete
//!   (`POST /crm/v3/objects/contacts/gdpr-delete`, `{"objectId": …,
//!   "idProperty": …}`, answered 204), which also removes the contact's
//!   associations. The projection no longer carries the email, so the contact
//!   is addressed by the property `customer_id` is mapped to
//!   (`storefold_customer_id` by default), which must be a **unique-value**
//!   contact property: HubSpot accepts only such an `idProperty`. Without that
//!   mapping the email this process remembers for the customer is used
//!   (`idProperty: "email"`); when it knows none, the record is dead-lettered
//!   ([`ERASURE_UNADDRESSABLE`], also counted as a skip) so that someone
//!   deletes the contact by hand. A 404 means the contact is gone already:
//!   done. Upserts of the customer still waiting in the queue, older than the
//!   erasure, and triggers waiting for its contact are cancelled, so nothing
//!   brings the contact back after the delete; an older version delivered
//!   again is skipped. Only a newer version that is not redacted (a replay's
//!   new generation) upserts the contact again.
//! - **Orders → deals**, upserted by `order_id_property` (a unique-value deal
//!   property holding storefold's order id, e.g. `shopify:450789469`) via
//!   `POST /crm/v3/objects/deals/batch/upsert`, then **associated** with their
//!   customer's contact via HubSpot's default deal→contact association
//!   (`POST /crm/v4/associations/deals/contacts/batch/associate/default`). The
//!   contact's HubSpot id comes from the contact upsert's answer (kept in memory,
//!   email → id); after a restart it is looked up once with
//!   `POST /crm/v3/objects/contacts/batch/read` by email.
//! - **Moved deals.** An order can move to another customer (an operator's
//!   `storefold identity merge` or `split`, or the rules un-merging): its
//!   projection comes again with another `customer_id`, and the deal is
//!   associated with the new customer's contact. The associations this process
//!   made between the deal and other contacts are then archived
//!   (`POST /crm/v4/associations/deals/contacts/batch/archive`, inputs
//!   `{"from": {"id": deal}, "to": [{"id": contact}, …]}`, answered 204), after
//!   the new one is made, so the deal is never left without a contact.
//!   Associations this process does not know of are never touched: those made
//!   by someone else, and (a limitation) those this sink made before the
//!   process restarted, since it remembers them in memory only; such a deal
//!   stays associated with its old contact too until someone removes it. A
//!   customer projection that still lists an order which has since moved to
//!   another customer asks for no association.
//!   Deal properties carry no personal data (the name is `Order <number>`);
//!   a redacted order's deal gets its `customer_id` property (when mapped)
//!   cleared and is not associated with a contact.
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
//! associations, then archived associations; GDPR deletes (one request each) go before all of them. Each
//! request first asks the [`planner`] for a slot.
//!
//! # Errors
//! - 429: the planner pauses for `Retry-After` and the write fails as retryable
//!   with that delay; 5xx, 423, 477, timeouts and connection errors: retryable.
//! - 401/403, and answers that blame the configuration (a property that does not
//!   exist, a non-unique id property, for upserts and GDPR deletes alike): fatal.
//! - A GDPR delete HubSpot refuses for another reason: the erased customer's
//!   record is dead-lettered with HubSpot's message.
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

mod answer;
mod client;
mod config;
mod enqueue;
pub mod mapping;
mod metrics;
pub mod planner;
mod queue;
mod send;
mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use storefold_codec::{CustomerProjection, OrderProjection, Trigger};
use storefold_runtime::metrics::LATENCY_BUCKETS;
use tokio::time::Instant;

use crate::{Item, Rejection, Sink, SinkRecord, Stream, WriteError};
pub(crate) use client::install_crypto_provider;
use client::{Answer, Client, Endpoint, Failure};
pub use config::{HubSpotSinkConfig, HubSpotTenantConfig};
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

use answer::*;
pub use metrics::HubSpotMetrics;
use queue::*;

/// The HubSpot sink (see the module docs): one portal (`Portal`) per tenant
/// (`[sinks.hubspot.tenants.<id>]`), or one portal for a deployment with a
/// single tenant (`token`).
#[derive(Debug)]
pub struct HubSpotSink {
    /// Tenant → its portal.
    portals: BTreeMap<String, Portal>,
    /// The one portal of `token` (no `tenants`).
    single: Option<Portal>,
}

/// What a record of a stream the sink does not consume (a payout) comes to.
pub const UNSUPPORTED_STREAM: &str = "unsupported_stream";

/// What a tenant's records come to without a portal of their own.
pub const NO_PORTAL: &str = "no_hubspot_portal";

/// What an erased customer's record comes to (dead-lettered, and counted as a
/// skip) when its contact cannot be addressed: `customer_id` is mapped to no
/// contact property and this process does not know the contact's email.
pub const ERASURE_UNADDRESSABLE: &str = "erasure_unaddressable";

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
            if cfg.token.expose_secret().trim().is_empty() {
                return Err(fatal(
                    "sinks.hubspot: no token, and no [sinks.hubspot.tenants.<id>]".into(),
                ));
            }
            return Ok(Self {
                portals: BTreeMap::new(),
                single: Some(Portal::new(
                    cfg,
                    cfg.token.expose_secret(),
                    "sinks.hubspot.token",
                    metrics,
                )?),
            });
        }
        let mut portals = BTreeMap::new();
        for (tenant, t) in &cfg.tenants {
            let portal = Portal::new(
                cfg,
                t.token.expose_secret(),
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
}

fn tenant_of(item: &Item) -> &str {
    match item {
        Item::Customer(c) => &c.tenant,
        Item::Order(o) => &o.tenant,
        Item::Payout(p) => &p.tenant,
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
            if let Item::Payout(_) = &r.item {
                // Not in `streams()`, so the runner never hands one; HubSpot
                // has no object for a payout.
                rejections.push(Rejection {
                    index: i,
                    code: UNSUPPORTED_STREAM.into(),
                    reason: "the HubSpot sink does not take payouts (the PostgreSQL sink does)"
                        .into(),
                });
                continue;
            }
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
                // Payouts were refused above.
                Item::Customer(_) | Item::Payout(_) => {}
            }
        }
        let result = async {
            self.erase().await?;
            self.drain(Object::Contact).await?;
            self.drain(Object::Deal).await?;
            self.resolve_wants().await?;
            self.associate().await?;
            self.dissociate().await
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
