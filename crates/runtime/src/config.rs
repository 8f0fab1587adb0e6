//! The configuration file: one TOML document, `${ENV_VAR}` substitution in any string
//! value, and `STOREFOLD_<SECTION>__<KEY>` environment overrides.
//!
//! Loading is strict: an unknown key is an error (a typo must not silently fall back to
//! a default), a `${VAR}` that is not set is an error naming the key that used it, and a
//! provider configured for a tenant without a usable secret refuses to start.
//!
//! The environment is passed in rather than read here, so tests are hermetic; the
//! binary passes `std::env::vars()`.
//!
//! ```
//! use storefold_runtime::config::Config;
//! let toml = r#"
//! [kafka]
//! bootstrap_servers = "127.0.0.1:9092"
//! [tenants.acme.providers.shopify]
//! secret = "${ACME_SHOPIFY}"
//! "#;
//! let env = [("ACME_SHOPIFY".to_string(), "s3cret".to_string())];
//! let config = Config::from_toml_str(toml, env).unwrap();
//! assert_eq!(config.tenants["acme"].providers["shopify"].secret, "s3cret");
//! assert_eq!(config.kafka.topic_prefix, "storefold.");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storefold_core::engine::FoldConfig;
use storefold_core::money::Currency;
use storefold_core::rates::Rates;
use storefold_providers::{
    AdyenCapture, Credentials, MapOptions, OrderReference, ProviderKind, ReferencePattern,
};

/// Prefix of environment overrides: `STOREFOLD_KAFKA__BOOTSTRAP_SERVERS` sets
/// `kafka.bootstrap_servers`. Only names with a `__` are config keys; the others
/// (`STOREFOLD_CONFIG`, `STOREFOLD_LOG_FORMAT`) are command-line options.
pub const ENV_PREFIX: &str = "STOREFOLD_";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Toml(String),
    #[error("config key {key}: {message}")]
    Key { key: String, message: String },
    #[error("environment override {var}: {message}")]
    Override { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// When set, values use the Confluent wire format with ids from this registry.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub processor: ProcessorConfig,
    #[serde(default)]
    pub sinks: SinksConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// The operator's exchange rates, for tenants with a reporting currency.
    #[serde(default)]
    pub rates: RatesConfig,
    /// Tenants by id. Ids are lower case (`[a-z0-9_-]`), as they appear in URLs.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The operator listener and its API tokens (the query API, `/ui`, `/metrics`).
    #[serde(default)]
    pub operator: crate::operator::OperatorConfig,
}

/// Kafka connection and topic layout.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Prefix of every topic name.
    pub topic_prefix: String,
    /// Partitions of the raw topics and the changelog (they must all agree), and of
    /// the projection topics.
    pub partitions: i32,
    /// Replication factor used by `storefold topics create`.
    pub replication_factor: i32,
    /// `min.insync.replicas` of the created topics (default: 2, or the
    /// replication factor when it is smaller): with `acks=all` a write is
    /// acknowledged only once this many replicas hold it.
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms` of the raw topics; -1 keeps them forever (the log is the
    /// source of truth).
    pub raw_retention_ms: i64,
    /// `retention.ms` of the triggers and dead-letter topics.
    pub events_retention_ms: i64,
    /// Extra librdkafka properties for every client (security: `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: "storefold.".into(),
            partitions: 12,
            replication_factor: 3,
            min_insync_replicas: None,
            raw_retention_ms: -1,
            events_retention_ms: 14 * 24 * 3600 * 1000,
            properties: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("raw_retention_ms", &self.raw_retention_ms)
            .field("events_retention_ms", &self.events_retention_ms)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// The `min.insync.replicas` topics are created with.
    pub fn min_insync(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or_else(|| self.replication_factor.min(2))
    }
}

/// librdkafka properties storefold sets itself and `[kafka.properties]` may
/// not override, with why: exactly-once processing and "nothing acknowledged is
/// lost" rest on them.
pub const RESERVED_KAFKA_PROPERTIES: [(&str, &str); 16] = [
    ("bootstrap.servers", "set kafka.bootstrap_servers instead"),
    (
        "metadata.broker.list",
        "set kafka.bootstrap_servers instead",
    ),
    (
        "acks",
        "storefold produces with acks=all: a record is acknowledged only once every in-sync replica holds it",
    ),
    (
        "request.required.acks",
        "storefold produces with acks=all: a record is acknowledged only once every in-sync replica holds it",
    ),
    (
        "enable.idempotence",
        "storefold's producers are idempotent: a retried produce is never written twice",
    ),
    (
        "enable.gapless.guarantee",
        "storefold's commit protocol decides what a failed produce means",
    ),
    (
        "transactional.id",
        "storefold does not use Kafka transactions (README: exactly once without Kafka transactions)",
    ),
    (
        "partitioner",
        "storefold uses the Java client's murmur2 partitioner so a tenant has the same partition number in every raw topic",
    ),
    (
        "message.timeout.ms",
        "it is ingest.produce_timeout_ms / processor.produce_timeout_ms: a produce not acknowledged by then is final, which the 503 answers and the commit protocol rely on",
    ),
    (
        "delivery.timeout.ms",
        "it is ingest.produce_timeout_ms / processor.produce_timeout_ms: a produce not acknowledged by then is final, which the 503 answers and the commit protocol rely on",
    ),
    (
        "enable.auto.commit",
        "the processor and the sinks commit offsets only after their work is durable",
    ),
    (
        "enable.auto.offset.store",
        "the processor and the sinks commit offsets only after their work is durable",
    ),
    (
        "auto.offset.reset",
        "a position that no longer exists must stop storefold (error), never skip or re-read data silently",
    ),
    (
        "isolation.level",
        "storefold reads what it wrote without transactions; read_uncommitted/read_committed changes are not part of its protocol",
    ),
    (
        "group.id",
        "set processor.group_id or the sink's group_id instead",
    ),
    (
        "partition.assignment.strategy",
        "the processor's tasks need the range assignment (partition p of every raw topic in one task)",
    ),
];

/// Whether a librdkafka property holds a credential (never logged).
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n.ends_with(".key") || n.contains("pem")
}

/// Confluent-compatible schema registry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    pub url: String,
}

/// The HTTP ingest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address the ingest (and its /healthz, /readyz, /metrics) listens on.
    pub listen: SocketAddr,
    /// Largest accepted webhook body; larger requests get 413.
    pub max_body_bytes: usize,
    /// How long a request waits for Kafka's acknowledgement before it gets 503.
    pub produce_timeout_ms: u64,
    /// `Retry-After` (seconds) sent with 503.
    pub retry_after_secs: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// Requests handled at once; beyond it new requests get 503 at once (with
    /// `Retry-After`) instead of queueing bodies in memory while Kafka is slow.
    pub max_in_flight: usize,
    /// How long a client may take to send a request's headers; a slower
    /// connection is closed (slow-loris).
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body; a slower one gets
    /// 408 and its connection is closed.
    pub body_timeout_ms: u64,
    /// Bytes of request bodies held at once (each request reserves its
    /// `Content-Length`, else its body limit); beyond it 503 with `Retry-After`.
    pub max_buffered_bytes: usize,
    /// Sustained webhooks per second per tenant and provider; beyond the burst
    /// 429 with `Retry-After`.
    pub webhook_requests_per_second: u32,
    /// Webhooks a tenant's provider may send at once before the rate applies.
    pub webhook_burst: u32,
    /// How long `/readyz` reuses its last Kafka check.
    pub ready_cache_ms: u64,
    pub collect: CollectConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 1024 * 1024,
            produce_timeout_ms: 5_000,
            retry_after_secs: 5,
            shutdown_timeout_secs: 30,
            max_in_flight: 4096,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_buffered_bytes: 256 * 1024 * 1024,
            webhook_requests_per_second: 200,
            webhook_burst: 1000,
            ready_cache_ms: 2_000,
            collect: CollectConfig::default(),
        }
    }
}

/// The processor: state, batching and its HTTP port (query API and metrics).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Address of the query API and /healthz, /readyz, /metrics.
    pub listen: SocketAddr,
    /// Where each task keeps its RocksDB (`task-<partition>`).
    pub state_dir: PathBuf,
    /// Consumer group of the processor instances.
    pub group_id: String,
    /// A batch is committed after this long at the latest.
    pub commit_interval_ms: u64,
    /// A batch is committed once it holds this many raw events.
    pub batch_size: usize,
    /// How long a provider event id is remembered to recognise retries (hours,
    /// measured in the events' receive time, not the processor's clock).
    pub idempotency_retention_hours: u64,
    /// Records kept in memory between batches per task (a read cache in front of RocksDB).
    pub cache_records: usize,
    /// fsync RocksDB's write-ahead log on every commit (survives power loss, not
    /// only process crashes).
    pub sync_writes: bool,
    /// How long a commit step waits for Kafka before the batch is abandoned and
    /// the task restarts from its committed state.
    pub produce_timeout_ms: u64,
    /// How long an event naming an order that does not exist waits for it
    /// before it goes to `dlq.processor` with reason `unresolved_order`: hours
    /// of receive time, on the raw topics the order can come from (not the
    /// processor's clock).
    pub park_timeout_hours: u64,
    /// Newest touches kept per identity (its first touch is kept besides;
    /// every touch is counted).
    pub max_touches: usize,
    /// Distinct utm_source, utm_medium and utm_campaign values counted on
    /// their own per customer; the rest are counted as `(other)`.
    pub max_touch_values: usize,
    /// Newest tickets kept per identity.
    pub max_tickets: usize,
    /// Newest orders a customer projection lists (every order is counted in
    /// its figures).
    pub max_listed_orders: usize,
    /// Newest checkpoints kept per shipment and parcel (the first is kept
    /// besides).
    pub max_checkpoints: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            state_dir: PathBuf::from("./.storefold/state"),
            group_id: "storefold-processor".into(),
            commit_interval_ms: 500,
            batch_size: 2_000,
            idempotency_retention_hours: 24 * 30,
            cache_records: 200_000,
            sync_writes: false,
            produce_timeout_ms: 30_000,
            park_timeout_hours: 72,
            max_touches: 100,
            max_touch_values: 50,
            max_tickets: 200,
            max_listed_orders: 200,
            max_checkpoints: 100,
        }
    }
}

/// The sinks: settings every sink shares, and one optional section per sink.
/// A sink runs (`storefold sink <name>`) only when its section is present.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Address of a sink's /healthz, /readyz and /metrics.
    pub listen: SocketAddr,
    /// First retry delay of a failed write; doubled per attempt, with jitter.
    pub retry_initial_ms: u64,
    /// Longest delay between two retries (a `Retry-After` above it is honoured).
    pub retry_max_ms: u64,
    /// Consecutive failed writes that open the circuit breaker.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit waits before one trial write (half-open).
    pub circuit_open_ms: u64,
    /// The longest a destination's `Retry-After` (or a HubSpot quota pause) may
    /// hold a sink before the next attempt: a longer one is cut to this.
    pub max_retry_after_secs: u64,
    pub postgres: Option<PostgresSinkConfig>,
    pub hubspot: Option<HubSpotSinkConfig>,
    pub webhook: Option<WebhookSinkConfig>,
}

impl Default for SinksConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            circuit_failure_threshold: 5,
            circuit_open_ms: 30_000,
            max_retry_after_secs: 900,
            postgres: None,
            hubspot: None,
            webhook: None,
        }
    }
}

/// `[sinks.postgres]`: upserts projections into PostgreSQL (schema per §3).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// libpq-style URL, e.g. `postgres://storefold:${PGPASSWORD}@db:5432/crm`.
    pub url: String,
    /// Schema holding the tables (created by the migrations).
    #[serde(default = "default_pg_schema")]
    pub schema: String,
    /// Consumer group of this sink.
    #[serde(default = "default_pg_group")]
    pub group_id: String,
    /// Records per write (one upsert statement per table and batch).
    #[serde(default = "default_pg_batch")]
    pub batch_size: usize,
    /// How long a batch waits to fill before it is written anyway.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Also append `triggers` to the `triggers` table.
    #[serde(default = "default_true")]
    pub triggers: bool,
    /// TLS: `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (as
    /// libpq). Overrides an `sslmode` in `url`; default: the URL's, else `prefer`.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// PEM file of the certificate authorities that verify the server
    /// (`verify-ca`, `verify-full`); default: the system's roots. Overrides an
    /// `sslrootcert` in `url`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
}

impl fmt::Debug for PostgresSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("group_id", &self.group_id)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("triggers", &self.triggers)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

/// `[sinks.hubspot]`: contacts by email and orders as deals, within the portal's limits.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotSinkConfig {
    /// Private app access token (sent as `Authorization: Bearer`): the portal
    /// of a deployment with one tenant. With several tenants, use `tenants`.
    #[serde(default)]
    pub token: String,
    /// `[sinks.hubspot.tenants.<id>]`: one portal (token) per tenant, so that
    /// tenants never share contacts or deals.
    #[serde(default)]
    pub tenants: BTreeMap<String, HubSpotTenantConfig>,
    /// API base URL.
    #[serde(default = "default_hubspot_url")]
    pub base_url: String,
    #[serde(default = "default_hubspot_group")]
    pub group_id: String,
    /// Records per batch request (HubSpot accepts at most 100).
    #[serde(default = "default_hubspot_batch")]
    pub batch_size: usize,
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Requests allowed per rolling 10 seconds (the portal's burst limit).
    #[serde(default = "default_hubspot_per_10s")]
    pub requests_per_10s: u32,
    /// Requests allowed per day (the portal's daily limit).
    #[serde(default = "default_hubspot_daily")]
    pub requests_per_day: u32,
    /// storefold field -> HubSpot contact property name. Unlisted fields are not sent.
    #[serde(default)]
    pub contact_properties: BTreeMap<String, String>,
    /// storefold field -> HubSpot deal property name.
    #[serde(default)]
    pub deal_properties: BTreeMap<String, String>,
    /// Deal property holding storefold's order id (must be a unique-value property).
    #[serde(default = "default_hubspot_order_id_property")]
    pub order_id_property: String,
    /// Pipeline (internal id) of the deals storefold creates.
    #[serde(default = "default_hubspot_deal_pipeline")]
    pub deal_pipeline: String,
    /// storefold order status (`pending`, `open`, `on_hold`, `completed`,
    /// `cancelled`, `refunded`, `failed`) -> deal stage (internal id). Statuses
    /// left out keep their default stage.
    #[serde(default)]
    pub deal_stages: BTreeMap<String, String>,
}

impl fmt::Debug for HubSpotSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotSinkConfig")
            .field("token", &"<redacted>")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .field("base_url", &self.base_url)
            .field("group_id", &self.group_id)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("requests_per_10s", &self.requests_per_10s)
            .field("requests_per_day", &self.requests_per_day)
            .field("contact_properties", &self.contact_properties)
            .field("deal_properties", &self.deal_properties)
            .field("order_id_property", &self.order_id_property)
            .field("deal_pipeline", &self.deal_pipeline)
            .field("deal_stages", &self.deal_stages)
            .finish()
    }
}

/// `[sinks.hubspot.tenants.<id>]`: a tenant's own HubSpot portal.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotTenantConfig {
    /// The private app access token of the tenant's portal.
    pub token: String,
}

impl fmt::Debug for HubSpotTenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotTenantConfig")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `[sinks.webhook]`: signed JSON POSTs of projections and triggers.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Receiver URL.
    pub url: String,
    /// HMAC-SHA256 key for the signature header.
    pub secret: String,
    #[serde(default = "default_webhook_group")]
    pub group_id: String,
    /// Which topics to forward: any of `customers`, `orders`, `triggers`.
    #[serde(default = "default_webhook_streams")]
    pub streams: Vec<String>,
    /// Records per POST (the body is a JSON array).
    #[serde(default = "default_webhook_batch")]
    pub batch_size: usize,
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Per-request timeout.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

impl fmt::Debug for WebhookSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &"<redacted>")
            .field("group_id", &self.group_id)
            .field("streams", &self.streams)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_pg_schema() -> String {
    "storefold".into()
}
fn default_pg_group() -> String {
    "storefold-sink-postgres".into()
}
fn default_pg_batch() -> usize {
    1_000
}
fn default_linger() -> u64 {
    200
}
fn default_true() -> bool {
    true
}
fn default_hubspot_url() -> String {
    "https://api.hubapi.com".into()
}
fn default_hubspot_group() -> String {
    "storefold-sink-hubspot".into()
}
fn default_hubspot_batch() -> usize {
    100
}
fn default_hubspot_per_10s() -> u32 {
    100
}
fn default_hubspot_daily() -> u32 {
    250_000
}
fn default_hubspot_order_id_property() -> String {
    "storefold_order_id".into()
}
fn default_hubspot_deal_pipeline() -> String {
    "default".into()
}
fn default_webhook_group() -> String {
    "storefold-sink-webhook".into()
}
fn default_webhook_streams() -> Vec<String> {
    vec!["customers".into(), "orders".into(), "triggers".into()]
}
fn default_webhook_batch() -> usize {
    100
}
fn default_webhook_timeout() -> u64 {
    10_000
}

/// A URL with its password (and any query string, which may hold tokens) hidden.
pub fn redact_url(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or_default();
    match (no_query.find("://"), no_query.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &no_query[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:<redacted>{}",
                &no_query[..scheme + 3],
                &no_query[at..]
            )
        }
        _ => no_query.to_string(),
    }
}

impl SinksConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(invalid(
                "sinks.retry_initial_ms must be positive and at most sinks.retry_max_ms",
            ));
        }
        if self.circuit_failure_threshold == 0 || self.circuit_open_ms == 0 {
            return Err(invalid(
                "sinks.circuit_failure_threshold and circuit_open_ms must be positive",
            ));
        }
        if self.max_retry_after_secs == 0 {
            return Err(invalid("sinks.max_retry_after_secs must be positive"));
        }
        if let Some(pg) = &self.postgres {
            if pg.url.trim().is_empty() {
                return Err(invalid("sinks.postgres.url is empty"));
            }
            if pg.schema.is_empty()
                || !pg
                    .schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(invalid(
                    "sinks.postgres.schema may only hold a-z, 0-9 and '_'",
                ));
            }
            if pg.batch_size == 0 {
                return Err(invalid("sinks.postgres.batch_size must be positive"));
            }
            if let Some(mode) = &pg.sslmode
                && !matches!(
                    mode.as_str(),
                    "disable" | "prefer" | "require" | "verify-ca" | "verify-full"
                )
            {
                return Err(invalid(format!(
                    "sinks.postgres.sslmode: {mode:?} is not one of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        }
        if let Some(h) = &self.hubspot {
            if h.tenants.is_empty() && h.token.trim().is_empty() {
                return Err(invalid(
                    "sinks.hubspot: set token (one tenant) or a [sinks.hubspot.tenants.<id>] token per tenant",
                ));
            }
            if !h.tenants.is_empty() && !h.token.trim().is_empty() {
                return Err(invalid(
                    "sinks.hubspot: token and tenants are exclusive: with [sinks.hubspot.tenants.<id>], every tenant has its own token",
                ));
            }
            for (id, t) in &h.tenants {
                if t.token.trim().is_empty() {
                    return Err(invalid(format!(
                        "sinks.hubspot.tenants.{id}.token is missing or empty"
                    )));
                }
            }
            if !(1..=100).contains(&h.batch_size) {
                return Err(invalid(
                    "sinks.hubspot.batch_size must be 1-100 (HubSpot's batch limit)",
                ));
            }
            if h.requests_per_10s == 0 || h.requests_per_day == 0 {
                return Err(invalid(
                    "sinks.hubspot.requests_per_10s and requests_per_day must be positive",
                ));
            }
        }
        if let Some(w) = &self.webhook {
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(invalid("sinks.webhook.url must be an http(s) URL"));
            }
            if w.secret.trim().is_empty() {
                return Err(invalid(
                    "sinks.webhook.secret is missing or empty: receivers could not verify the sink's requests",
                ));
            }
            if w.batch_size == 0 || w.timeout_ms == 0 {
                return Err(invalid(
                    "sinks.webhook.batch_size and timeout_ms must be positive",
                ));
            }
            if w.streams.is_empty() {
                return Err(invalid("sinks.webhook.streams is empty"));
            }
            for s in &w.streams {
                if !matches!(s.as_str(), "customers" | "orders" | "triggers") {
                    return Err(invalid(format!(
                        "sinks.webhook.streams: {s:?} is not one of customers, orders, triggers"
                    )));
                }
            }
        }
        Ok(())
    }

    /// HubSpot portals never mix tenants: one `token` serves a deployment with
    /// at most one tenant; with `tenants`, every configured tenant needs one.
    fn validate_hubspot_tenants(
        &self,
        tenants: &BTreeMap<String, TenantConfig>,
    ) -> Result<(), ConfigError> {
        let Some(h) = &self.hubspot else {
            return Ok(());
        };
        if h.tenants.is_empty() {
            if tenants.len() > 1 {
                return Err(invalid(format!(
                    "sinks.hubspot.token would put the contacts and deals of {} tenants into one portal; \
                     give each tenant its own: [sinks.hubspot.tenants.<id>] token = ...",
                    tenants.len()
                )));
            }
            return Ok(());
        }
        let missing: Vec<&str> = tenants
            .keys()
            .filter(|id| !h.tenants.contains_key(*id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(invalid(format!(
                "sinks.hubspot.tenants: no token for tenant(s) {}; add [sinks.hubspot.tenants.<id>] token = ... for each",
                missing.join(", ")
            )));
        }
        Ok(())
    }
}

/// `POST /v1/collect/{tenant}` (browser touches).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Sustained requests per second allowed from one client address per tenant.
    pub requests_per_second: u32,
    /// Requests a client may send at once before the rate applies.
    pub burst: u32,
    /// Largest accepted touch body.
    pub max_body_bytes: usize,
    /// Addresses of the proxies in front of the ingest (CIDRs, `10.0.0.0/8`, or
    /// single addresses). A request from one of them is attributed to the
    /// rightmost `X-Forwarded-For` hop that is not one of them; empty: the
    /// peer address, and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
    /// Replaced by `trusted_proxies`; `true` is refused with a message saying so.
    pub trust_forwarded_for: Option<bool>,
    /// Sustained touches per second per tenant, all clients together.
    pub tenant_requests_per_second: u32,
    /// Touches a tenant may receive at once before its rate applies.
    pub tenant_burst: u32,
    /// Client addresses whose rate-limit state is kept; when more are seen at
    /// once, the clients not yet known share one bucket per tenant.
    pub max_clients: usize,
    /// How far before the receive time a touch's `at` may lie (400 beyond).
    pub max_past_secs: u64,
    /// How far after the receive time a touch's `at` may lie (400 beyond).
    pub max_future_secs: u64,
}

impl CollectConfig {
    /// The parsed `trusted_proxies`.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::net::Cidr>, String> {
        self.trusted_proxies
            .iter()
            .map(|c| {
                crate::net::Cidr::parse(c)
                    .map_err(|e| format!("ingest.collect.trusted_proxies: {e}"))
            })
            .collect()
    }
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 5,
            burst: 20,
            max_body_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            trust_forwarded_for: None,
            tenant_requests_per_second: 100,
            tenant_burst: 500,
            max_clients: 100_000,
            max_past_secs: 24 * 3600,
            max_future_secs: 300,
        }
    }
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `storefold_ingest=debug,info`. `RUST_LOG`
    /// wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// `[rates]`: daily exchange rates the operator supplies (see `docs/books.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatesConfig {
    /// A CSV file of `date,from,to,rate` lines (`2025-03-01,USD,EUR,0.9231`),
    /// read when the processor starts. `None`: no rates, amounts in other
    /// currencies than a tenant's reporting currency stay unconverted.
    pub file: Option<PathBuf>,
    /// An amount without a rate on its own date converts at the newest earlier
    /// rate at most this many days old; beyond that it stays unconverted.
    pub max_age_days: u32,
}

impl Default for RatesConfig {
    fn default() -> Self {
        Self {
            file: None,
            max_age_days: 7,
        }
    }
}

/// The store platforms a tenant may run.
pub const STORES: [&str; 2] = ["shopify", "woocommerce"];

/// One tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Origins (`scheme://host[:port]`) whose pages may post touches.
    pub collect_origins: Vec<String>,
    /// The store platforms the tenant runs (`shopify`, `woocommerce`); the first
    /// is where a payment provider's bare order id points unless the provider's
    /// `store` says otherwise.
    pub stores: Vec<String>,
    /// ISO 4217 code of the currency the tenant's figures are also converted
    /// to (`reporting` on orders, `revenue_reporting` on customers), with the
    /// rates of `[rates]`. `None`: figures stay per currency only.
    pub reporting_currency: Option<String>,
    /// Where each payment provider names the store's order.
    pub payments: PaymentsConfig,
    /// Credentials per provider name. Only configured providers are accepted.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Whether an `email` in a collect beacon may create or merge customers
    /// without a token from the shop's backend. Off: only beacons whose
    /// `email_token` verifies with `collect_identity_secret` do.
    pub collect_identify: bool,
    /// The shop backend's key for `email_token`s (HMAC-SHA256; see the README's
    /// collect section). `None`: beacon tokens are refused.
    pub collect_identity_secret: Option<crate::net::Secret>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            collect_origins: Vec::new(),
            stores: MapOptions::default().stores,
            reporting_currency: None,
            payments: PaymentsConfig::default(),
            providers: BTreeMap::new(),
            collect_identify: false,
            collect_identity_secret: None,
        }
    }
}

/// `[tenants.<id>.payments.*]`: how each payment provider's payloads name the
/// store's order. The defaults are `storefold_providers::MapOptions::default()`'s.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    pub stripe: StripePayments,
    pub paypal: PaypalPayments,
    pub adyen: AdyenPayments,
}

/// `[tenants.<id>.payments.stripe]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripePayments {
    /// Metadata keys of a charge or payment intent that hold the store's order
    /// id, tried in order.
    pub order_metadata_keys: Vec<String>,
    /// The store those order ids belong to (one of the tenant's `stores`);
    /// `None`: the tenant's first store.
    pub store: Option<String>,
    /// A regular expression whose group `order` (or else first group) is the
    /// order id inside the metadata value; `None`: the whole value.
    pub order_pattern: Option<String>,
}

impl Default for StripePayments {
    fn default() -> Self {
        let d = MapOptions::default().stripe;
        Self {
            order_metadata_keys: d.fields,
            store: d.store,
            order_pattern: None,
        }
    }
}

/// `[tenants.<id>.payments.paypal]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaypalPayments {
    /// The purchase unit fields that hold the store's order id, tried in
    /// order: `custom_id` and/or `invoice_id`.
    pub order_fields: Vec<String>,
    /// The store those order ids belong to; `None`: the tenant's first store.
    pub store: Option<String>,
    /// As `stripe.order_pattern`, for the field's value.
    pub order_pattern: Option<String>,
}

impl Default for PaypalPayments {
    fn default() -> Self {
        let d = MapOptions::default().paypal;
        Self {
            order_fields: d.fields,
            store: d.store,
            order_pattern: None,
        }
    }
}

/// PayPal's purchase unit fields that may name the store's order.
pub const PAYPAL_ORDER_FIELDS: [&str; 2] = ["custom_id", "invoice_id"];

/// `[tenants.<id>.payments.adyen]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdyenPayments {
    /// `automatic`: Adyen captures authorisations by itself (its default), so
    /// an AUTHORISATION is money in unless cancelled; `manual`: only CAPTURE
    /// notifications are money in, an AUTHORISATION is a hold.
    pub capture: AdyenCaptureMode,
    /// A regular expression whose group `order` (or else first group) is the
    /// store's order id inside the `merchantReference` (e.g.
    /// `^(?P<order>\d+)-\d+$` for `1001-2`); `None`: the whole reference.
    pub merchant_reference_pattern: Option<String>,
    /// The store those order ids belong to; `None`: the tenant's first store.
    pub store: Option<String>,
}

/// See [`AdyenPayments::capture`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdyenCaptureMode {
    #[default]
    Automatic,
    Manual,
}

/// A tenant setting that cannot be used: the key (below `tenants.<id>.`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantKeyError {
    pub key: String,
    pub message: String,
}

impl TenantConfig {
    /// How the tenant's payloads are mapped: its stores and where each payment
    /// provider names the order. Fails on a pattern without a group, a store
    /// that is not one of the tenant's `stores`, or an unknown store or field.
    pub fn map_options(&self) -> Result<MapOptions, TenantKeyError> {
        let err = |key: &str, message: String| TenantKeyError {
            key: key.to_string(),
            message,
        };
        if self.stores.is_empty() {
            return Err(err(
                "stores",
                format!(
                    "is empty; list the tenant's store platforms ({})",
                    STORES.join(", ")
                ),
            ));
        }
        for (i, s) in self.stores.iter().enumerate() {
            if !STORES.contains(&s.as_str()) {
                return Err(err(
                    "stores",
                    format!(
                        "{s:?} is not a store storefold reads ({})",
                        STORES.join(", ")
                    ),
                ));
            }
            if self.stores[..i].contains(s) {
                return Err(err("stores", format!("{s:?} is listed twice")));
            }
        }
        let store = |key: &str, s: &Option<String>| -> Result<Option<String>, TenantKeyError> {
            match s {
                Some(s) if !self.stores.contains(s) => Err(err(
                    key,
                    format!(
                        "{s:?} is not one of the tenant's stores ({})",
                        self.stores.join(", ")
                    ),
                )),
                other => Ok(other.clone()),
            }
        };
        let pattern =
            |key: &str, p: &Option<String>| -> Result<Option<ReferencePattern>, TenantKeyError> {
                p.as_deref()
                    .map(ReferencePattern::new)
                    .transpose()
                    .map_err(|e| err(key, e))
            };
        let p = &self.payments;
        for k in &p.stripe.order_metadata_keys {
            if k.trim().is_empty() {
                return Err(err(
                    "payments.stripe.order_metadata_keys",
                    "holds an empty key".into(),
                ));
            }
        }
        for f in &p.paypal.order_fields {
            if !PAYPAL_ORDER_FIELDS.contains(&f.as_str()) {
                return Err(err(
                    "payments.paypal.order_fields",
                    format!(
                        "{f:?} is not a PayPal field storefold reads ({})",
                        PAYPAL_ORDER_FIELDS.join(", ")
                    ),
                ));
            }
        }
        Ok(MapOptions {
            stores: self.stores.clone(),
            stripe: OrderReference {
                fields: p.stripe.order_metadata_keys.clone(),
                store: store("payments.stripe.store", &p.stripe.store)?,
                pattern: pattern("payments.stripe.order_pattern", &p.stripe.order_pattern)?,
            },
            paypal: OrderReference {
                fields: p.paypal.order_fields.clone(),
                store: store("payments.paypal.store", &p.paypal.store)?,
                pattern: pattern("payments.paypal.order_pattern", &p.paypal.order_pattern)?,
            },
            adyen: OrderReference {
                fields: Vec::new(),
                store: store("payments.adyen.store", &p.adyen.store)?,
                pattern: pattern(
                    "payments.adyen.merchant_reference_pattern",
                    &p.adyen.merchant_reference_pattern,
                )?,
            },
            adyen_capture: match p.adyen.capture {
                AdyenCaptureMode::Automatic => AdyenCapture::Automatic,
                AdyenCaptureMode::Manual => AdyenCapture::Manual,
            },
        })
    }

    /// The tenant's reporting currency, when it sets one.
    pub fn reporting_currency(&self) -> Result<Option<Currency>, TenantKeyError> {
        self.reporting_currency
            .as_deref()
            .map(|c| {
                Currency::from_code(c).map_err(|e| TenantKeyError {
                    key: "reporting_currency".into(),
                    message: format!("{e}: an ISO 4217 code with a minor unit, like EUR"),
                })
            })
            .transpose()
    }
}

/// A tenant's credentials for one provider.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// What the provider's verification needs: the HMAC secret, Adyen's hex HMAC
    /// key, the URL token (Shippo, Gorgias) or the pinned certificate PEM (PayPal).
    pub secret: String,
    /// PayPal's webhook id.
    pub webhook_id: Option<String>,
    /// Only for `storefold webhook send` with PayPal: the private key PEM that signs
    /// test requests (PayPal's own key is never available).
    pub signing_key: Option<String>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("secret", &"<redacted>")
            .field("webhook_id", &self.webhook_id)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ProviderConfig {
    /// The credentials the provider's `verify` takes.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            secret: self.secret.clone(),
            webhook_id: self.webhook_id.clone(),
        }
    }

    /// What the provider's `sign` takes, if this config can sign: the secret, or for
    /// PayPal the webhook id line and the signing key.
    pub fn signing_secret(&self, provider: ProviderKind) -> Option<String> {
        match provider {
            ProviderKind::Paypal => {
                let key = self.signing_key.as_ref()?;
                let id = self.webhook_id.as_deref().unwrap_or_default();
                Some(format!("webhook_id: {id}\n{key}"))
            }
            _ if self.secret.is_empty() => None,
            _ => Some(self.secret.clone()),
        }
    }
}

impl Config {
    /// Reads `path` and applies `env` (substitution and `STOREFOLD_…__…` overrides).
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, env)
    }

    /// Parses a TOML document and applies `env`.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.to_string()))?;
        apply_overrides(&mut doc, &env)?;
        let mut value = toml::Value::Table(doc);
        substitute(&mut value, &mut Vec::new(), &env)?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                key,
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what deserialisation cannot: names, ranges and that every configured
    /// provider can verify.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers is empty"));
        }
        if k.partitions < 1 {
            return Err(invalid("kafka.partitions must be at least 1"));
        }
        if k.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor must be at least 1"));
        }
        if let Some(m) = k.min_insync_replicas
            && (m < 1 || m > k.replication_factor)
        {
            return Err(invalid(format!(
                "kafka.min_insync_replicas = {m} must be between 1 and kafka.replication_factor ({}): with acks=all no write could ever be acknowledged otherwise",
                k.replication_factor
            )));
        }
        for name in k.properties.keys() {
            let lower = name.trim().to_ascii_lowercase();
            if let Some((key, why)) = RESERVED_KAFKA_PROPERTIES
                .iter()
                .find(|(key, _)| *key == lower)
            {
                return Err(invalid(format!(
                    "kafka.properties.\"{key}\" may not be set: {why}. Remove it from [kafka.properties]"
                )));
            }
        }
        if !k
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "kafka.topic_prefix may only hold ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        let i = &self.ingest;
        if i.max_body_bytes == 0 || i.collect.max_body_bytes == 0 {
            return Err(invalid("ingest body limits must be positive"));
        }
        if i.max_in_flight == 0 {
            return Err(invalid("ingest.max_in_flight must be positive"));
        }
        if i.produce_timeout_ms == 0 {
            return Err(invalid("ingest.produce_timeout_ms must be positive"));
        }
        if i.collect.requests_per_second == 0 || i.collect.burst == 0 {
            return Err(invalid(
                "ingest.collect.requests_per_second and burst must be positive",
            ));
        }
        validate_abuse_limits(i)?;
        let p = &self.processor;
        if p.batch_size == 0 || p.commit_interval_ms == 0 || p.produce_timeout_ms == 0 {
            return Err(invalid(
                "processor.batch_size, commit_interval_ms and produce_timeout_ms must be positive",
            ));
        }
        if p.group_id.trim().is_empty() {
            return Err(invalid("processor.group_id is empty"));
        }
        for (key, v) in [
            ("max_touches", p.max_touches),
            ("max_touch_values", p.max_touch_values),
            ("max_tickets", p.max_tickets),
            ("max_listed_orders", p.max_listed_orders),
            ("max_checkpoints", p.max_checkpoints),
        ] {
            if !(1..=10_000).contains(&v) {
                return Err(invalid(format!(
                    "processor.{key} = {v} must be between 1 and 10000: state records and projections must stay under Kafka's message size"
                )));
            }
        }
        if p.park_timeout_hours == 0 {
            return Err(invalid(
                "processor.park_timeout_hours must be positive: events naming an order that is not known yet need time for it to arrive",
            ));
        }
        self.sinks.validate()?;
        self.operator
            .validate(self.tenants.keys())
            .map_err(invalid)?;
        self.sinks.validate_hubspot_tenants(&self.tenants)?;
        for (id, tenant) in &self.tenants {
            if !valid_tenant_id(id) {
                return Err(invalid(format!(
                    "tenant id {id:?} must be 1-64 characters of a-z, 0-9, '_' and '-'"
                )));
            }
            tenant_options(id, tenant)?;
            if tenant
                .collect_identity_secret
                .as_ref()
                .is_some_and(|s| s.0.trim().len() < 16)
            {
                return Err(invalid(format!(
                    "tenants.{id}.collect_identity_secret must be at least 16 characters (a random key shared with the shop's backend)"
                )));
            }
            for origin in &tenant.collect_origins {
                if !(origin.starts_with("https://") || origin.starts_with("http://"))
                    || origin.trim_end_matches('/') != origin
                {
                    return Err(invalid(format!(
                        "tenants.{id}.collect_origins: {origin:?} is not an origin like https://shop.example"
                    )));
                }
            }
            for (name, provider) in &tenant.providers {
                let kind: ProviderKind = name
                    .parse()
                    .map_err(|e| invalid(format!("tenants.{id}.providers.{name}: {e}")))?;
                if kind == ProviderKind::Collect {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.collect: browser touches are unsigned; configure tenants.{id}.collect_origins instead"
                    )));
                }
                if provider.secret.trim().is_empty() {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.{name}.secret is missing or empty: storefold will not accept {name} webhooks it cannot verify"
                    )));
                }
                if kind == ProviderKind::Paypal
                    && provider.webhook_id.as_deref().is_none_or(str::is_empty)
                {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.paypal.webhook_id is missing: PayPal signs it into every request"
                    )));
                }
                if kind != ProviderKind::Paypal && provider.signing_key.is_some() {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.{name}.signing_key is only used by PayPal"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The tenant's credentials for `provider`, if configured.
    pub fn provider(&self, tenant: &str, provider: ProviderKind) -> Option<&ProviderConfig> {
        self.tenants.get(tenant)?.providers.get(provider.name())
    }

    /// The mapping options of every configured tenant (tenants that are not
    /// configured are mapped with `MapOptions::default()`).
    pub fn map_options(&self) -> Result<BTreeMap<String, MapOptions>, ConfigError> {
        self.tenants
            .iter()
            .map(|(id, t)| Ok((id.clone(), tenant_options(id, t)?.0)))
            .collect()
    }

    /// What the fold needs beyond the events: each tenant's reporting currency
    /// and the rates of `[rates]`, read from `rates.file`. An unreadable or
    /// invalid file is an error; a tenant with a reporting currency but no
    /// rates file is allowed (its other currencies stay unconverted) and is
    /// logged as a warning.
    pub fn fold_config(&self) -> Result<FoldConfig, ConfigError> {
        let mut reporting = BTreeMap::new();
        for (id, t) in &self.tenants {
            if let (_, Some(c)) = tenant_options(id, t)? {
                reporting.insert(id.clone(), c);
            }
        }
        let max_age = i64::from(self.rates.max_age_days);
        let rates = match &self.rates.file {
            None => {
                for (id, c) in &reporting {
                    tracing::warn!(
                        tenant = %id,
                        reporting_currency = %c,
                        "tenant has a reporting currency but [rates] has no file: amounts in \
                         other currencies stay unconverted"
                    );
                }
                Rates::new(max_age)
            }
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Key {
                    key: "rates.file".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                let rates = Rates::parse_csv(&text, max_age).map_err(|e| ConfigError::Key {
                    key: "rates.file".into(),
                    message: format!("{}: {e}", path.display()),
                })?;
                if rates.is_empty() {
                    return Err(ConfigError::Key {
                        key: "rates.file".into(),
                        message: format!(
                            "{} holds no rate (expected lines date,from,to,rate)",
                            path.display()
                        ),
                    });
                }
                rates
            }
        };
        let p = &self.processor;
        let limits = storefold_core::limits::Limits {
            touches: p.max_touches,
            touch_values: p.max_touch_values,
            tickets: p.max_tickets,
            listed_orders: p.max_listed_orders,
            checkpoints: p.max_checkpoints,
        };
        Ok(FoldConfig {
            reporting,
            rates,
            limits,
        })
    }
}

/// A tenant's mapping options and reporting currency, or an error naming the key.
fn tenant_options(
    id: &str,
    tenant: &TenantConfig,
) -> Result<(MapOptions, Option<Currency>), ConfigError> {
    let named = |e: TenantKeyError| ConfigError::Key {
        key: format!("tenants.{id}.{}", e.key),
        message: e.message,
    };
    Ok((
        tenant.map_options().map_err(named)?,
        tenant.reporting_currency().map_err(named)?,
    ))
}

/// The ingest's timeouts, budgets and rate limits, and the retired
/// `trust_forwarded_for`.
fn validate_abuse_limits(i: &IngestConfig) -> Result<(), ConfigError> {
    let c = &i.collect;
    if c.trust_forwarded_for == Some(true) {
        return Err(invalid(
            "ingest.collect.trust_forwarded_for is replaced by ingest.collect.trusted_proxies: list the addresses or CIDR blocks of your proxies (e.g. [\"10.0.0.0/8\"]); the client is then the rightmost X-Forwarded-For hop that is not one of them (the leftmost entry is whatever the client sent)",
        ));
    }
    c.trusted_proxies().map_err(invalid)?;
    if i.header_timeout_ms == 0 || i.body_timeout_ms == 0 || i.ready_cache_ms == 0 {
        return Err(invalid(
            "ingest.header_timeout_ms, body_timeout_ms and ready_cache_ms must be positive",
        ));
    }
    if i.webhook_requests_per_second == 0 || i.webhook_burst == 0 {
        return Err(invalid(
            "ingest.webhook_requests_per_second and webhook_burst must be positive",
        ));
    }
    if c.tenant_requests_per_second == 0 || c.tenant_burst == 0 || c.max_clients == 0 {
        return Err(invalid(
            "ingest.collect.tenant_requests_per_second, tenant_burst and max_clients must be positive",
        ));
    }
    if i.max_buffered_bytes < i.max_body_bytes.max(c.max_body_bytes) {
        return Err(invalid(format!(
            "ingest.max_buffered_bytes ({}) must hold at least one body of ingest.max_body_bytes ({})",
            i.max_buffered_bytes,
            i.max_body_bytes.max(c.max_body_bytes)
        )));
    }
    Ok(())
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Tenant ids appear in URLs, keys and env names: keep them simple.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Applies `STOREFOLD_A__B__C=value` as `a.b.c = value`. The value is read as a TOML
/// value when it is one (`12`, `true`, `["a"]`), else as a string.
fn apply_overrides(
    doc: &mut toml::Table,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Override {
                var: var.clone(),
                message: "empty key segment".into(),
            });
        }
        let value = parse_override(raw);
        let mut table = &mut *doc;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Override {
                        var: var.clone(),
                        message: format!("{seg} is not a table"),
                    });
                }
            };
        }
        table.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

fn parse_override(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match wrapped.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Replaces `${VAR}` in every string with the variable's value (`$${` is a literal
/// `${`). A missing variable is an error naming the key.
fn substitute(
    value: &mut toml::Value,
    path: &mut Vec<String>,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand(s, env).map_err(|message| ConfigError::Key {
                key: path.join("."),
                message,
            })?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                substitute(item, path, env)?;
                path.pop();
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                path.push(k.clone());
                substitute(v, path, env)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(s: &str, env: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ in value".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{name}}} is not an environment variable name"));
        }
        let value = env
            .get(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let c = Config::from_toml_str("", env(&[])).unwrap();
        assert_eq!(c.kafka.partitions, 12);
        assert_eq!(c.ingest.max_body_bytes, 1024 * 1024);
        assert!(c.tenants.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_with_their_path() {
        let err = Config::from_toml_str("[kafka]\nbootstrap_server = \"x\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bootstrap_server"), "{err}");
        let err = Config::from_toml_str(
            "[tenants.a.providers.shopify]\nsecret = \"s\"\nsecrte = \"t\"\n",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tenants.a.providers.shopify"), "{err}");
        assert!(err.contains("secrte"), "{err}");
    }

    #[test]
    fn env_substitution_and_missing_variables() {
        let toml = "[tenants.a.providers.stripe]\nsecret = \"whsec_${K}x\"\n";
        let c = Config::from_toml_str(toml, env(&[("K", "abc")])).unwrap();
        assert_eq!(c.tenants["a"].providers["stripe"].secret, "whsec_abcx");
        let err = Config::from_toml_str(toml, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenants.a.providers.stripe.secret"), "{err}");
        assert!(err.contains("K is not set"), "{err}");
        let lit = Config::from_toml_str(
            "[tenants.a.providers.stripe]\nsecret = \"$${NOT}\"\n",
            env(&[]),
        )
        .unwrap();
        assert_eq!(lit.tenants["a"].providers["stripe"].secret, "${NOT}");
    }

    #[test]
    fn storefold_env_overrides_nested_keys_and_types() {
        let c = Config::from_toml_str(
            "[kafka]\npartitions = 3\n",
            env(&[
                ("STOREFOLD_KAFKA__PARTITIONS", "6"),
                ("STOREFOLD_KAFKA__BOOTSTRAP_SERVERS", "broker:9093"),
                ("STOREFOLD_TENANTS__B__PROVIDERS__SHOPIFY__SECRET", "xyz"),
                ("STOREFOLD_CONFIG", "ignored: a command-line option"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.partitions, 6);
        assert_eq!(c.kafka.bootstrap_servers, "broker:9093");
        assert_eq!(c.tenants["b"].providers["shopify"].secret, "xyz");
        let err = Config::from_toml_str("", env(&[("STOREFOLD_KAFKA__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn a_configured_provider_without_a_secret_refuses_to_start() {
        let err = Config::from_toml_str("[tenants.a.providers.shopify]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenants.a.providers.shopify.secret"), "{err}");
        let err =
            Config::from_toml_str("[tenants.a.providers.paypal]\nsecret = \"pem\"\n", env(&[]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("webhook_id"), "{err}");
        let err =
            Config::from_toml_str("[tenants.a.providers.shopifyy]\nsecret = \"s\"\n", env(&[]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown provider"), "{err}");
    }

    #[test]
    fn tenant_ids_and_origins_are_checked() {
        let err = Config::from_toml_str("[tenants.Acme]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenant id"), "{err}");
        let err = Config::from_toml_str(
            "[tenants.a]\ncollect_origins = [\"shop.example\"]\n",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an origin"), "{err}");
    }

    #[test]
    fn tenant_stores_and_payments_become_map_options() {
        let c = Config::from_toml_str("[tenants.a]\n", env(&[])).unwrap();
        assert_eq!(
            c.tenants["a"].map_options().unwrap(),
            MapOptions::default(),
            "the defaults are the providers' defaults"
        );
        let c = Config::from_toml_str(
            r#"
[tenants.woo]
stores = ["woocommerce", "shopify"]
reporting_currency = "eur"
[tenants.woo.payments.stripe]
order_metadata_keys = ["woo_order", "order_id"]
order_pattern = '^WC-(?P<order>\d+)$'
[tenants.woo.payments.paypal]
order_fields = ["invoice_id"]
store = "shopify"
[tenants.woo.payments.adyen]
capture = "manual"
merchant_reference_pattern = '^(\d+)-\d+$'
store = "woocommerce"
"#,
            env(&[]),
        )
        .unwrap();
        let o = c.map_options().unwrap().remove("woo").unwrap();
        assert_eq!(o.stores, ["woocommerce", "shopify"]);
        assert_eq!(o.stripe.fields, ["woo_order", "order_id"]);
        assert_eq!(o.stripe.store, None);
        assert_eq!(o.store_for("stripe"), "woocommerce");
        let p = o.stripe.pattern.as_ref().unwrap();
        assert_eq!(p.order_id("WC-727"), Some("727"));
        assert_eq!(o.paypal.fields, ["invoice_id"]);
        assert_eq!(o.store_for("paypal"), "shopify");
        assert_eq!(o.adyen_capture, AdyenCapture::Manual);
        assert_eq!(
            o.adyen.pattern.as_ref().unwrap().order_id("1001-2"),
            Some("1001")
        );
        let fold = c.fold_config().unwrap();
        assert_eq!(fold.reporting["woo"].code(), "EUR");
        assert!(fold.rates.is_empty());
    }

    #[test]
    fn unusable_tenant_settings_name_their_key() {
        for (toml, key, says) in [
            (
                "[tenants.a]\nstores = [\"magento\"]\n",
                "tenants.a.stores",
                "magento",
            ),
            ("[tenants.a]\nstores = []\n", "tenants.a.stores", "empty"),
            (
                "[tenants.a]\nreporting_currency = \"EURO\"\n",
                "tenants.a.reporting_currency",
                "EURO",
            ),
            (
                "[tenants.a.payments.stripe]\norder_pattern = \"^WC-\\\\d+$\"\n",
                "tenants.a.payments.stripe.order_pattern",
                "no group",
            ),
            (
                "[tenants.a.payments.paypal]\norder_pattern = \"(\"\n",
                "tenants.a.payments.paypal.order_pattern",
                "regex",
            ),
            (
                "[tenants.a.payments.adyen]\nmerchant_reference_pattern = \"x\"\n",
                "tenants.a.payments.adyen.merchant_reference_pattern",
                "no group",
            ),
            (
                "[tenants.a.payments.stripe]\nstore = \"woocommerce\"\n",
                "tenants.a.payments.stripe.store",
                "not one of the tenant's stores",
            ),
            (
                "[tenants.a.payments.paypal]\norder_fields = [\"reference_id\"]\n",
                "tenants.a.payments.paypal.order_fields",
                "reference_id",
            ),
            (
                "[tenants.a.payments.adyen]\ncapture = \"delayed\"\n",
                "tenants.a.payments.adyen.capture",
                "delayed",
            ),
            (
                "[tenants.a.payments.klarna]\n",
                "tenants.a.payments",
                "klarna",
            ),
            (
                "[processor]\npark_timeout_hours = 0\n",
                "processor.park_timeout_hours",
                "positive",
            ),
        ] {
            let err = Config::from_toml_str(toml, env(&[]))
                .expect_err(toml)
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
            assert!(err.contains(says), "{toml}: {err}");
        }
    }

    #[test]
    fn the_rates_file_is_read_at_fold_config_and_a_bad_one_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("rates.csv");
        std::fs::write(&good, "date,from,to,rate\n2025-03-01,USD,EUR,0.92\n").unwrap();
        let toml = |path: &Path| {
            format!(
                "[rates]\nfile = {:?}\nmax_age_days = 3\n[tenants.a]\nreporting_currency = \"EUR\"\n",
                path.display().to_string()
            )
        };
        let c = Config::from_toml_str(&toml(&good), env(&[])).unwrap();
        assert_eq!(c.rates.max_age_days, 3);
        let fold = c.fold_config().unwrap();
        let usd = Currency::from_code("USD").unwrap();
        let eur = Currency::from_code("EUR").unwrap();
        let at = time::macros::datetime!(2025-03-03 12:00 UTC);
        assert_eq!(
            fold.rates
                .convert(storefold_core::Money::new(1000, usd), eur, at)
                .map(|c| c.amount),
            Some(920),
            "three days later, within max_age_days"
        );
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "2025-03-01,USD,EUR,zero\n").unwrap();
        let err = Config::from_toml_str(&toml(&bad), env(&[]))
            .unwrap()
            .fold_config()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rates.file") && err.contains("line 1"),
            "{err}"
        );
        let missing = dir.path().join("missing.csv");
        let err = Config::from_toml_str(&toml(&missing), env(&[]))
            .unwrap()
            .fold_config()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rates.file") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.csv");
        std::fs::write(&empty, "date,from,to,rate\n").unwrap();
        let err = Config::from_toml_str(&toml(&empty), env(&[]))
            .unwrap()
            .fold_config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("no rate"), "{err}");
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let c = Config::from_toml_str(
            "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n[tenants.a.providers.shopify]\nsecret = \"topsecret\"\n",
            env(&[]),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }
}
