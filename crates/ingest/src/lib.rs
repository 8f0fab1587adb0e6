//! storefold-ingest: signed webhooks in, raw events durably in Kafka.
//!
//! `POST /v1/webhooks/{tenant}/{provider}` verifies the request with that tenant's
//! secret for that provider, wraps the exact body bytes and the provider's headers in
//! a RawEvent (Avro) and produces it to `raw.{provider}` keyed by tenant. It answers
//! 200 only after Kafka acknowledged the record (`acks=all`); when Kafka does not
//! within `ingest.produce_timeout_ms`, 503 with `Retry-After`, so the provider
//! retries and nothing it was told "ok" is ever lost.
//!
//! `POST /v1/collect/{tenant}` takes browser touches: CORS from the tenant's allowed
//! origins only, per-client and per-tenant rate limits, `at` within a window of
//! the receive time, and an `email` that counts only when the tenant opted in or
//! the shop's backend signed it; 204.
//!
//! Public means abused: headers and bodies have read deadlines, bodies in memory
//! have a byte budget, every tenant's provider has a rate limit, and `/readyz`
//! reuses its Kafka check for `ingest.ready_cache_ms`.
//!
//! Every non-2xx answer has the JSON body `{"error": "...", "reason": "<code>"}`.
//!
//! The crate is split by concern: `state` builds the shared [`Ingest`] and
//! answers readiness; `webhook` and `collect` are the two endpoints; `guard`
//! holds what protects them (load shedding, rate limits, bounded body reads);
//! `store` turns a verified request into a raw event in Kafka; `response` is
//! the JSON error answer and the per-request metrics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use governor::DefaultKeyedRateLimiter;
use prometheus::Registry;
use storefold_codec::AvroCodec;
use storefold_providers::{Credentials, ProviderKind};
use storefold_runtime::config::{Config, IngestConfig};
use storefold_runtime::net::Cidr;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod collect;
mod guard;
mod metrics;
mod publish;
mod response;
mod serve;
mod state;
mod store;
pub mod trace;
mod webhook;

pub use serve::serve_public;

pub use metrics::IngestMetrics;
pub use publish::{PublishError, Publisher, Stored};

use response::Rejection;

/// Why the ingest could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Avro: {0}")]
    Codec(#[from] storefold_codec::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Topics(String),
    #[error("{0}")]
    Unsupported(String),
}

struct Tenant {
    providers: HashMap<ProviderKind, Credentials>,
    origins: Vec<String>,
    /// Beacon emails count without a token.
    collect_identify: bool,
    /// The key of beacons' `email_token`s.
    identity_secret: Option<String>,
}

type Limiter = DefaultKeyedRateLimiter<(Arc<str>, IpAddr)>;

/// Bytes a raw event adds to its body: ids, the kept headers, the trace
/// context, Avro framing and Kafka's record overhead, generously.
pub const RAW_ENVELOPE_BYTES: usize = 64 * 1024;

/// librdkafka's producer limit the ingest sets unless `kafka.properties` says
/// otherwise (see [`Publisher::new`]).
pub const DEFAULT_PRODUCER_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The raw log's data keys, for tenants that shred it (see
/// `storefold_runtime::rawkeys`): the book a thread keeps following the keys
/// topic into, so that an erasure's tombstone makes the next body of its
/// subject get a new key.
pub(crate) struct RawKeys {
    book: Arc<std::sync::Mutex<storefold_runtime::rawkeys::KeyBook>>,
    topic: String,
    /// The tenants that encrypt (read on every request, without the lock).
    tenants: std::collections::HashSet<String>,
}

impl RawKeys {
    fn book(&self) -> std::sync::MutexGuard<'_, storefold_runtime::rawkeys::KeyBook> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn encrypts(&self, tenant: &str) -> bool {
        self.tenants.contains(tenant)
    }
}

/// The ingest's shared state: tenants and their secrets, the producer, the codec.
pub struct Ingest {
    tenants: HashMap<String, Tenant>,
    /// Set when a tenant shreds its raw log.
    raw_keys: Option<RawKeys>,
    /// How the processor maps each tenant's bodies, and its identity rules:
    /// what an encrypted body's subject is.
    map_options: std::collections::BTreeMap<String, storefold_providers::MapOptions>,
    fold_config: storefold_core::engine::FoldConfig,
    publisher: Publisher,
    /// `raw.<provider>` of every provider, named once.
    raw_topic_names: HashMap<ProviderKind, String>,
    /// The raw topics this configuration writes to (see [`Ingest::raw_topics`]).
    used_raw_topics: Vec<String>,
    codec: AvroCodec,
    /// Single-object encoding, or Confluent's with the registry's id.
    framing: storefold_codec::registry::Framing,
    settings: IngestConfig,
    metrics: IngestMetrics,
    /// Touches per tenant and client address (IPv6 by /64).
    limiter: Limiter,
    /// Touches per tenant, all clients together.
    tenant_limiter: DefaultKeyedRateLimiter<Arc<str>>,
    /// Webhooks per tenant and provider.
    webhook_limiter: DefaultKeyedRateLimiter<(Arc<str>, ProviderKind)>,
    trusted_proxies: Vec<Cidr>,
    /// When idle clients were last dropped from a full `limiter` (at most once
    /// a second: a flood of new addresses must not make every request sweep
    /// the whole table).
    last_prune: std::sync::Mutex<Instant>,
    /// Bytes of bodies that may be held at once (`ingest.max_buffered_bytes`).
    body_budget: Arc<Semaphore>,
    /// The last Kafka readiness answer and when it was made.
    ready_cache: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    accepting: AtomicBool,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("tenants", &self.tenants.keys().collect::<Vec<_>>())
            .field("raw_topics", &self.used_raw_topics)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The ingest's routes (without the ops endpoints).
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/webhooks/{tenant}/{provider}", post(webhook::webhook))
        .route(
            "/v1/collect/{tenant}",
            post(collect::collect).options(collect::collect_preflight),
        )
        .with_state(ingest)
}

/// What may face the internet: the ingest's routes, `/healthz` and `/readyz`
/// (no `/metrics`, no operator route: they are 404 like any unknown path).
pub fn public_app(ingest: Arc<Ingest>) -> Router {
    let probe = ingest.clone();
    let ready: storefold_runtime::server::ReadyCheck = Arc::new(move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ready().await })
    });
    router(ingest)
        .merge(storefold_runtime::server::probes_router(ready))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

/// The standalone ingest's listener: [`public_app`] plus its own `/metrics`.
pub fn app(ingest: Arc<Ingest>, registry: Registry) -> Router {
    public_app(ingest).merge(storefold_runtime::server::metrics_router(registry))
}

/// Unknown paths get the JSON error body too.
async fn no_route() -> Response {
    Rejection::new(
        StatusCode::NOT_FOUND,
        "no_such_endpoint",
        "no such endpoint; webhooks go to POST /v1/webhooks/{tenant}/{provider}",
    )
    .into_response()
}

/// Known paths asked with another method than POST.
async fn wrong_method() -> Response {
    Rejection::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint takes POST",
    )
    .into_response()
}

/// Runs the ingest of `config` until `shutdown` is cancelled: checks the raw topics,
/// listens on `ingest.listen`, then on shutdown stops accepting, finishes in-flight
/// requests and their produces, and flushes the producer.
pub async fn run(config: &Config, shutdown: CancellationToken) -> Result<(), IngestError> {
    let registry = Registry::new();
    let ingest = Ingest::new(config, &registry)?;
    ingest.check_topics(&config.kafka).await?;
    let addr = config.ingest.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| IngestError::Bind { addr, source })?;
    serve(listener, ingest, registry, shutdown).await
}

/// Serves `ingest` on `listener` until `shutdown` is cancelled (see [`run`]).
pub async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let local = listener.local_addr().map_err(IngestError::Serve)?;
    tracing::info!(%local, raw_topics = ?ingest.raw_topics(), "ingest listening");
    let app = app(ingest.clone(), registry);
    let grace = Duration::from_secs(ingest.settings.shutdown_timeout_secs);
    let stop = shutdown.clone();
    let draining = ingest.clone();
    let header_timeout = Duration::from_millis(ingest.settings.header_timeout_ms);
    let stop_serving = CancellationToken::new();
    {
        let stop_serving = stop_serving.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            draining.stop_accepting();
            stop_serving.cancel();
        });
    }
    let server = tokio::spawn(serve::serve_public(
        listener,
        app,
        header_timeout,
        stop_serving,
    ));
    let pruner = {
        let ingest = ingest.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => ingest.prune_rate_limits(),
                }
            }
        })
    };
    let mut server = server;
    let result = tokio::select! {
        r = &mut server => Some(r),
        _ = shutdown.cancelled() => None,
    };
    let result = match result {
        Some(r) => r,
        None => {
            tracing::info!(?grace, "draining in-flight requests");
            match tokio::time::timeout(grace, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish within {grace:?}; closing");
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    pruner.abort();
    let flushed = {
        let publisher = ingest.publisher.clone();
        tokio::task::spawn_blocking(move || publisher.flush(grace))
            .await
            .map_err(|e| IngestError::Topics(e.to_string()))?
    };
    if let Err(e) = flushed {
        tracing::error!(error = %e, "producer flush incomplete at shutdown");
    }
    tracing::info!("ingest stopped");
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(IngestError::Serve(e)),
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(IngestError::Serve(std::io::Error::other(e.to_string()))),
    }
}
