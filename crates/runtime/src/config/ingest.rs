//! `[ingest]` and `[ingest.collect]`: the HTTP ingest's listener, limits and budgets.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, invalid};

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

/// The ingest's timeouts, budgets and rate limits, and the retired
/// `trust_forwarded_for`.
pub(super) fn validate_abuse_limits(i: &IngestConfig) -> Result<(), ConfigError> {
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
