//! `[sinks]` and one section per sink.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{ConfigError, TenantConfig, invalid};

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
    /// HMAC-SHA256 key for the signature header (never in `Debug` output).
    pub secret: SecretString,
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
            .field("secret", &self.secret)
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
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
            if w.secret.expose_secret().trim().is_empty() {
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
    pub(super) fn validate_hubspot_tenants(
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
