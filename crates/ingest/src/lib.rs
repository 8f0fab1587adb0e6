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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus::Registry;
use storefold_codec::{AvroCodec, RawEvent, Verification, WireFormat};
use storefold_providers::{Credentials, Headers, ProviderKind, WebhookRequest};
use storefold_runtime::config::{Config, IngestConfig, valid_tenant_id};
use storefold_runtime::kafka::Topics;
use storefold_runtime::net::Cidr;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod metrics;
mod publish;
mod serve;
pub mod trace;

pub use serve::serve_public;

pub use metrics::IngestMetrics;
pub use publish::{PublishError, Publisher, Stored};

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

/// The ingest's shared state: tenants and their secrets, the producer, the codec.
pub struct Ingest {
    tenants: HashMap<String, Tenant>,
    publisher: Publisher,
    /// `raw.<provider>` of every provider, named once.
    raw_topic_names: HashMap<ProviderKind, String>,
    /// The raw topics this configuration writes to (see [`Ingest::raw_topics`]).
    used_raw_topics: Vec<String>,
    codec: AvroCodec,
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

impl Ingest {
    /// Builds the ingest from the configuration, registering its metrics in
    /// `registry`. Refuses features that are configured but not built.
    pub fn new(config: &Config, registry: &Registry) -> Result<Arc<Self>, IngestError> {
        if let Some(sr) = &config.schema_registry {
            return Err(IngestError::Unsupported(format!(
                "schema_registry.url = {:?} is configured, but the Confluent wire format is not wired into the ingest yet; remove [schema_registry] to use Avro single-object encoding",
                sr.url
            )));
        }
        let tenants = config
            .tenants
            .iter()
            .map(|(id, t)| {
                let providers = t
                    .providers
                    .iter()
                    .filter_map(|(name, p)| {
                        name.parse::<ProviderKind>()
                            .ok()
                            .map(|k| (k, p.credentials()))
                    })
                    .collect();
                (
                    id.clone(),
                    Tenant {
                        providers,
                        origins: t.collect_origins.clone(),
                        collect_identify: t.collect_identify,
                        identity_secret: t.collect_identity_secret.as_ref().map(|s| s.0.clone()),
                    },
                )
            })
            .collect();
        let settings = config.ingest.clone();
        check_message_size(config)?;
        let trusted_proxies = settings
            .collect
            .trusted_proxies()
            .map_err(IngestError::Unsupported)?;
        let publisher = Publisher::new(
            &config.kafka,
            Duration::from_millis(settings.produce_timeout_ms),
        )?;
        let c = &settings.collect;
        let quota = |per_second: u32, burst: u32| {
            Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
        };
        let raw_topic_names: HashMap<ProviderKind, String> =
            Topics::new(&config.kafka.topic_prefix)
                .all_raw()
                .into_iter()
                .collect();
        let used_raw_topics = used_providers(&tenants)
            .into_iter()
            .map(|k| raw_topic_names[&k].clone())
            .collect();
        Ok(Arc::new(Self {
            tenants,
            publisher,
            raw_topic_names,
            used_raw_topics,
            codec: AvroCodec::embedded()?,
            metrics: IngestMetrics::new(registry),
            limiter: DefaultKeyedRateLimiter::keyed(quota(c.requests_per_second, c.burst)),
            tenant_limiter: DefaultKeyedRateLimiter::keyed(quota(
                c.tenant_requests_per_second,
                c.tenant_burst,
            )),
            webhook_limiter: DefaultKeyedRateLimiter::keyed(quota(
                settings.webhook_requests_per_second,
                settings.webhook_burst,
            )),
            trusted_proxies,
            last_prune: std::sync::Mutex::new(Instant::now()),
            body_budget: Arc::new(Semaphore::new(
                settings.max_buffered_bytes.min(Semaphore::MAX_PERMITS),
            )),
            ready_cache: tokio::sync::Mutex::new(None),
            settings,
            accepting: AtomicBool::new(true),
        }))
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// The raw topics this configuration writes to (configured providers, and
    /// `collect` when a tenant allows origins).
    pub fn raw_topics(&self) -> &[String] {
        &self.used_raw_topics
    }

    fn raw_topic(&self, kind: ProviderKind) -> &str {
        &self.raw_topic_names[&kind]
    }

    /// Refuses to start when a raw topic the configuration needs does not exist
    /// (the produce would fail every request with 503).
    pub async fn check_topics(
        &self,
        kafka: &storefold_runtime::config::KafkaConfig,
    ) -> Result<(), IngestError> {
        let owned = kafka.clone();
        let view = tokio::task::spawn_blocking(move || {
            storefold_runtime::kafka::describe_cluster(&owned, Duration::from_secs(10))
        })
        .await
        .map_err(|e| IngestError::Topics(format!("metadata task failed: {e}")))??;
        let missing: Vec<&str> = self
            .raw_topics()
            .iter()
            .filter(|t| !view.topics.contains_key(*t))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(IngestError::Topics(format!(
                "raw topics missing on the broker: {}; create them with `storefold topics create`",
                missing.join(", ")
            )));
        }
        self.check_topic_message_size(kafka).await
    }

    /// Refuses a `max_body_bytes` above a raw topic's `max.message.bytes`, where
    /// the broker answers DescribeConfigs (librdkafka's mock cluster does not:
    /// then only the producer's limit was checked, in [`Ingest::new`]).
    async fn check_topic_message_size(
        &self,
        kafka: &storefold_runtime::config::KafkaConfig,
    ) -> Result<(), IngestError> {
        let topics: Vec<&str> = self.raw_topics().iter().map(String::as_str).collect();
        let results = match storefold_runtime::kafka::describe_topic_configs(
            kafka,
            &topics,
            Duration::from_secs(5),
        )
        .await
        {
            Ok(r) => r,
            Err(why) => {
                tracing::info!(%why, "raw topics' max.message.bytes not checked");
                return Ok(());
            }
        };
        for (topic, result) in self.raw_topics().iter().zip(results) {
            let Some(limit) = result.ok().and_then(|r| {
                r.get("max.message.bytes")
                    .and_then(|e| e.value.as_deref())
                    .and_then(|v| v.trim().parse::<usize>().ok())
            }) else {
                continue;
            };
            if self.settings.max_body_bytes > limit {
                return Err(IngestError::Topics(format!(
                    "ingest.max_body_bytes = {} is above {topic}'s max.message.bytes = {limit}: \
                     a webhook the ingest accepts could never be stored; lower ingest.max_body_bytes \
                     or raise the topic's max.message.bytes",
                    self.settings.max_body_bytes
                )));
            }
        }
        Ok(())
    }

    /// Stops answering readiness (so load balancers drain) before the listener closes.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    fn tenant(&self, id: &str) -> Result<&Tenant, Rejection> {
        self.tenants.get(id).ok_or_else(|| {
            Rejection::new(StatusCode::NOT_FOUND, "unknown_tenant", "unknown tenant")
        })
    }

    /// 503 when more than `ingest.max_in_flight` requests are being handled (this
    /// one included): a slow Kafka must not make the ingest hold bodies without
    /// bound.
    fn shed_load(&self) -> Option<Rejection> {
        let in_flight = usize::try_from(self.metrics.in_flight.get()).unwrap_or(0);
        if in_flight <= self.settings.max_in_flight {
            return None;
        }
        let mut r = Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry later",
        );
        r.retry_after = Some(self.settings.retry_after_secs);
        Some(r)
    }

    /// Drops rate-limiter state of clients not seen recently.
    pub fn prune_rate_limits(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Clients whose rate-limit state is held now.
    pub fn tracked_clients(&self) -> usize {
        self.limiter.len()
    }

    /// `/readyz`: shutting down, else the Kafka answer of at most
    /// `ingest.ready_cache_ms` ago (one metadata request at a time, however
    /// often the probe asks).
    async fn ready(&self) -> Result<(), String> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        let ttl = Duration::from_millis(self.settings.ready_cache_ms);
        let mut cached = self.ready_cache.lock().await;
        if let Some((at, answer)) = &*cached
            && at.elapsed() < ttl
        {
            return answer.clone();
        }
        let answer = self.kafka_ready().await;
        self.metrics.ready_checks.inc();
        *cached = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn kafka_ready(&self) -> Result<(), String> {
        let producer = self.publisher.producer().clone();
        let topic = self
            .raw_topics()
            .first()
            .cloned()
            .unwrap_or_else(|| self.raw_topic(ProviderKind::Shopify).to_string());
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| format!("Kafka metadata not reachable: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Refuses a `max_body_bytes` that the producer could not send: the body plus
/// [`RAW_ENVELOPE_BYTES`] must fit the producer's `message.max.bytes`.
fn check_message_size(config: &Config) -> Result<(), IngestError> {
    let producer_max = match config.kafka.properties.get("message.max.bytes") {
        None => DEFAULT_PRODUCER_MAX_BYTES,
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            IngestError::Unsupported(format!(
                "kafka.properties message.max.bytes = {v:?} is not a number"
            ))
        })?,
    };
    let largest = config
        .ingest
        .max_body_bytes
        .max(config.ingest.collect.max_body_bytes);
    if largest.saturating_add(RAW_ENVELOPE_BYTES) > producer_max {
        return Err(IngestError::Unsupported(format!(
            "ingest.max_body_bytes = {largest} plus up to {RAW_ENVELOPE_BYTES} bytes of raw event \
             envelope is more than the producer's message.max.bytes = {producer_max}: such a \
             webhook would be accepted and never stored; lower ingest.max_body_bytes to at most {} \
             or raise kafka.properties message.max.bytes (and the raw topics' max.message.bytes)",
            producer_max.saturating_sub(RAW_ENVELOPE_BYTES)
        )));
    }
    Ok(())
}

/// A tenant id from a URL as it may be logged: as it is when it is a valid id,
/// else escaped and cut (it is whatever the client sent).
fn loggable_tenant(tenant: &str) -> String {
    if valid_tenant_id(tenant) {
        tenant.to_string()
    } else {
        let cut: String = tenant.chars().take(64).collect();
        format!("invalid:{cut:?}")
    }
}

/// Providers some tenant is configured for, plus `collect` when a tenant allows
/// origins; sorted.
fn used_providers(tenants: &HashMap<String, Tenant>) -> Vec<ProviderKind> {
    let mut kinds: Vec<ProviderKind> = tenants
        .values()
        .flat_map(|t| t.providers.keys().copied())
        .collect();
    if tenants.values().any(|t| !t.origins.is_empty()) {
        kinds.push(ProviderKind::Collect);
    }
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The ingest's routes (without the ops endpoints).
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/webhooks/{tenant}/{provider}", post(webhook))
        .route(
            "/v1/collect/{tenant}",
            post(collect).options(collect_preflight),
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

/// A non-2xx answer: status, machine-readable reason and a message.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    reason: &'static str,
    message: String,
    retry_after: Option<u64>,
    /// Close the connection after answering (the request was not read to its end).
    close: bool,
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.message, "reason": self.reason});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

fn provider_label(provider: Option<ProviderKind>) -> &'static str {
    provider.map_or("unknown", ProviderKind::name)
}

async fn webhook(
    State(ingest): State<Arc<Ingest>>,
    Path((tenant, provider)): Path<(String, String)>,
    request: Request,
) -> Response {
    let kind = provider.parse::<ProviderKind>().ok();
    let trace = trace::TraceContext::continue_or_new(request.headers());
    let span = tracing::info_span!(
        "webhook",
        tenant = %loggable_tenant(&tenant),
        provider = provider_label(kind),
        trace_id = %trace.trace_id(),
    );
    let _in_flight = metrics::InFlight::new(&ingest.metrics.in_flight);
    let result = match ingest.shed_load() {
        Some(rejection) => Err(rejection),
        None => {
            handle_webhook(&ingest, &tenant, kind, &trace, request)
                .instrument(span.clone())
                .await
        }
    };
    finish(&ingest, kind, result, &span)
}

fn finish(
    ingest: &Ingest,
    kind: Option<ProviderKind>,
    result: Result<Response, Rejection>,
    span: &tracing::Span,
) -> Response {
    let _enter = span.enter();
    let response = match result {
        Ok(r) => r,
        Err(rejection) => {
            if rejection.status.is_server_error() {
                tracing::warn!(status = rejection.status.as_u16(), reason = rejection.reason, error = %rejection.message, "request not stored");
            } else {
                tracing::info!(
                    status = rejection.status.as_u16(),
                    reason = rejection.reason,
                    "request rejected"
                );
            }
            rejection.into_response()
        }
    };
    ingest
        .metrics
        .requests
        .with_label_values(&[provider_label(kind), response.status().as_str()])
        .inc();
    if response.status().is_success() {
        // Operators' clock, not the fold's: when did this provider last get through.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ingest
            .metrics
            .last_accepted
            .with_label_values(&[provider_label(kind)])
            .set(now);
    }
    response
}

async fn handle_webhook(
    ingest: &Ingest,
    tenant_id: &str,
    kind: Option<ProviderKind>,
    trace: &trace::TraceContext,
    request: Request,
) -> Result<Response, Rejection> {
    let tenant = ingest.tenant(tenant_id)?;
    let kind = kind.filter(|k| k.is_webhook()).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!(
                "unknown provider; known: {}",
                ProviderKind::names(&ProviderKind::WEBHOOK)
            ),
        )
    })?;
    let creds = tenant.providers.get(&kind).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "provider_not_configured",
            format!("{} is not configured for this tenant", kind.name()),
        )
    })?;
    let (parts, body) = request.into_parts();
    let (body, _reserved) = ingest
        .read_body(body, &parts.headers, ingest.settings.max_body_bytes)
        .await?;
    let headers = to_headers(&parts.headers);
    let url_token = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: url_token.as_deref(),
    };
    let now = OffsetDateTime::now_utc();
    if let Err(e) = kind.verify(creds, &req, now) {
        if matches!(e, storefold_providers::VerifyError::BadCredentials(_)) {
            tracing::error!(error = %e, "the configured credentials cannot verify requests");
            return Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unusable_credentials",
                "the tenant's credentials for this provider are unusable; see the ingest log",
            ));
        }
        ingest
            .metrics
            .signature_failures
            .with_label_values(&[kind.name(), e.code()])
            .inc();
        return Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            e.code(),
            e.to_string(),
        ));
    }
    let inbound = kind
        .describe(&req)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    if kind.is_handshake(&inbound) {
        // A creation ping says only "this URL answers": answered, not stored,
        // and not counted (anyone can send one unsigned).
        tracing::info!(provider = kind.name(), "handshake answered");
        return Ok(StatusCode::OK.into_response());
    }
    // Counted once verified: a flood of forged requests must not use up the
    // tenant's budget and get its real provider's deliveries refused.
    ingest.limit_webhooks(tenant_id, kind)?;
    let raw = raw_event(tenant_id, kind, inbound, &headers, &body, now, trace);
    store(ingest, kind, raw).await?;
    Ok(match kind {
        ProviderKind::Adyen => (
            [(header::CONTENT_TYPE, "text/plain")],
            storefold_providers::adyen::ACCEPTED_BODY,
        )
            .into_response(),
        _ => StatusCode::OK.into_response(),
    })
}

/// The raw event of a verified request: the exact body, the provider's own headers,
/// its idempotency id and topic, the receive time, how it was verified and the
/// trace context.
fn raw_event(
    tenant: &str,
    kind: ProviderKind,
    inbound: storefold_providers::Inbound,
    headers: &Headers,
    body: &[u8],
    received: OffsetDateTime,
    trace: &trace::TraceContext,
) -> RawEvent {
    RawEvent {
        event_id: inbound.event_id,
        tenant: tenant.to_string(),
        provider: kind.name().to_string(),
        topic: inbound.topic,
        received_at: unix_millis(received),
        headers: headers
            .select(kind.kept_headers())
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
        verification: kind
            .scheme()
            .map_or_else(Verification::unsigned, Verification::verified),
        trace_context: Some(trace.header_value()),
    }
}

/// Encodes and produces `raw`, waiting for Kafka's acknowledgement.
async fn store(ingest: &Ingest, kind: ProviderKind, raw: RawEvent) -> Result<Stored, Rejection> {
    ingest
        .metrics
        .body_bytes
        .with_label_values(&[kind.name()])
        .observe(raw.body.len() as f64);
    let payload = ingest
        .codec
        .encode(&raw, WireFormat::SingleObject)
        .map_err(|e| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encode_failed",
                format!("cannot encode the raw event: {e}"),
            )
        })?;
    let topic = ingest.raw_topic(kind);
    let started = Instant::now();
    let result = ingest
        .publisher
        .publish(
            topic,
            &raw.tenant,
            &payload,
            &[
                (
                    "traceparent",
                    raw.trace_context.as_deref().unwrap_or_default(),
                ),
                ("storefold-event-id", raw.event_id.as_str()),
            ],
        )
        .await;
    let outcome = if result.is_ok() { "acked" } else { "failed" };
    ingest
        .metrics
        .publish_seconds
        .with_label_values(&[kind.name(), outcome])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(stored) => {
            tracing::debug!(
                event_id = %raw.event_id,
                topic = %topic,
                partition = stored.partition,
                offset = stored.offset,
                bytes = raw.body.len(),
                "stored"
            );
            Ok(stored)
        }
        Err(PublishError::TooLarge) => Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large_for_kafka",
            "the event is larger than the Kafka broker accepts",
        )),
        Err(e) => {
            let mut r = Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code(),
                format!("not stored, retry later: {e}"),
            );
            r.retry_after = Some(ingest.settings.retry_after_secs);
            Err(r)
        }
    }
}

async fn collect(
    State(ingest): State<Arc<Ingest>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let kind = Some(ProviderKind::Collect);
    let trace = trace::TraceContext::continue_or_new(request.headers());
    let span = tracing::info_span!(
        "collect",
        tenant = %loggable_tenant(&tenant),
        provider = "collect",
        trace_id = %trace.trace_id(),
    );
    let _in_flight = metrics::InFlight::new(&ingest.metrics.in_flight);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let result = match ingest.shed_load() {
        Some(rejection) => Err(rejection),
        None => {
            handle_collect(&ingest, &tenant, &trace, request)
                .instrument(span.clone())
                .await
        }
    };
    let mut response = finish(&ingest, kind, result, &span);
    // The browser must be able to read errors too, but only for allowed origins.
    if let (Some(origin), Some(t)) = (origin, ingest.tenants.get(&tenant))
        && t.origins.contains(&origin)
    {
        add_cors(response.headers_mut(), &origin);
    }
    response
}

async fn handle_collect(
    ingest: &Ingest,
    tenant_id: &str,
    trace: &trace::TraceContext,
    request: Request,
) -> Result<Response, Rejection> {
    let tenant = ingest.tenant(tenant_id)?;
    check_origin(tenant, request.headers())?;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = storefold_runtime::net::client_addr(peer, forwarded, &ingest.trusted_proxies);
    ingest.limit_touches(tenant_id, client)?;
    let (parts, body) = request.into_parts();
    let (body, _reserved) = ingest
        .read_body(body, &parts.headers, ingest.settings.collect.max_body_bytes)
        .await?;
    let headers = to_headers(&parts.headers);
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: None,
    };
    let inbound = ProviderKind::Collect
        .describe(&req)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let claims = storefold_providers::collect::claims(&body)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    check_touch_time(&ingest.settings.collect, claims.at, now)?;
    let vouched = vouch_for_email(tenant, tenant_id, &claims, now)?;
    let mut raw = raw_event(
        tenant_id,
        ProviderKind::Collect,
        inbound,
        &headers,
        &body,
        now,
        trace,
    );
    if let Some(mark) = vouched {
        raw.headers.insert(
            storefold_providers::collect::IDENTITY_HEADER.to_string(),
            mark.to_string(),
        );
    }
    store(ingest, ProviderKind::Collect, raw).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 400 when a touch's `at` lies outside `[now - max_past_secs, now +
/// max_future_secs]`: a beacon dated years ahead would stay a customer's last
/// touch, one dated years back their first.
fn check_touch_time(
    c: &storefold_runtime::config::CollectConfig,
    at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), Rejection> {
    let Some(at) = at else { return Ok(()) };
    let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    let earliest = now.checked_sub(secs(c.max_past_secs));
    let latest = now.checked_add(secs(c.max_future_secs));
    if earliest.is_some_and(|e| at < e) || latest.is_some_and(|l| at > l) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "at_out_of_window",
            format!(
                "at must lie between {} seconds before and {} seconds after the time the touch is received",
                c.max_past_secs, c.max_future_secs
            ),
        ));
    }
    Ok(())
}

/// Whether the beacon's email may identify the visitor, as the mark stored
/// with it: a valid `email_token` (`signed`; a wrong, expired or unverifiable
/// one is 401), else the tenant's opt-in. An email nobody vouches for is kept
/// out of the fold; a beacon that would say nothing else (an identify) is 403.
fn vouch_for_email(
    tenant: &Tenant,
    tenant_id: &str,
    claims: &storefold_providers::collect::Claims,
    now: OffsetDateTime,
) -> Result<Option<&'static str>, Rejection> {
    use storefold_providers::collect::{IDENTITY_OPTED_IN, IDENTITY_SIGNED};
    let Some(email) = claims.email.as_deref() else {
        return Ok(None);
    };
    if let Some(token) = claims.email_token.as_deref() {
        let secret = tenant.identity_secret.as_deref().unwrap_or_default();
        return match storefold_providers::collect::verify_identity_token(
            secret, tenant_id, email, token, now,
        ) {
            Ok(()) => Ok(Some(IDENTITY_SIGNED)),
            Err(e) => Err(Rejection::new(
                StatusCode::UNAUTHORIZED,
                "bad_email_token",
                format!("email_token does not verify for this tenant and email: {e}"),
            )),
        };
    }
    if tenant.collect_identify {
        return Ok(Some(IDENTITY_OPTED_IN));
    }
    if !claims.visit {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "identify_not_allowed",
            "this tenant takes beacon emails only with an email_token signed by the shop's backend",
        ));
    }
    Ok(None)
}

/// CORS preflight for the collect endpoint: allowed origins only.
async fn collect_preflight(
    State(ingest): State<Arc<Ingest>>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = match ingest.tenants.get(&tenant_id) {
        None => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            "unknown tenant",
        )),
        Some(tenant) => check_origin(tenant, &headers).and_then(|origin| {
            let method_ok = headers
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .is_none_or(|m| m == Method::POST.as_str());
            if method_ok {
                Ok(origin)
            } else {
                Err(Rejection::new(
                    StatusCode::FORBIDDEN,
                    "method_not_allowed",
                    "only POST is allowed",
                ))
            }
        }),
    };
    match result {
        Ok(origin) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            add_cors(h, &origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            resp
        }
        Err(r) => r.into_response(),
    }
}

fn check_origin(tenant: &Tenant, headers: &HeaderMap) -> Result<String, Rejection> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::FORBIDDEN,
                "origin_required",
                "touches are accepted from the shop's pages only (no Origin header)",
            )
        })?;
    if tenant.origins.iter().any(|o| o == origin) {
        Ok(origin.to_string())
    } else {
        Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not post touches for this tenant",
        ))
    }
}

fn add_cors(headers: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

impl Ingest {
    /// 429 when the tenant's provider is over `ingest.webhook_requests_per_second`.
    fn limit_webhooks(&self, tenant: &str, kind: ProviderKind) -> Result<(), Rejection> {
        // Only configured tenants get here, so the keys are bounded.
        let key = (Arc::from(tenant), kind);
        self.webhook_limiter.check_key(&key).map_err(|not_until| {
            rate_limited(
                not_until,
                "too many webhooks for this tenant and provider; retry later",
            )
        })
    }

    /// 429 when the client (IPv6: its /64) or the tenant as a whole is over its
    /// rate. The client table holds at most `ingest.collect.max_clients`
    /// addresses: when it is full after dropping idle ones, clients not yet in
    /// it share one bucket per tenant, so a flood of addresses costs memory
    /// only up to the bound.
    fn limit_touches(&self, tenant: &str, client: IpAddr) -> Result<(), Rejection> {
        let tenant_key: Arc<str> = Arc::from(tenant);
        let mut client = storefold_runtime::net::client_key(client);
        if self.limiter.len() >= self.settings.collect.max_clients {
            if let Ok(mut last) = self.last_prune.try_lock()
                && last.elapsed() >= Duration::from_secs(1)
            {
                self.limiter.retain_recent();
                *last = Instant::now();
            }
            if self.limiter.len() >= self.settings.collect.max_clients {
                client = IpAddr::from([0, 0, 0, 0]);
            }
        }
        self.limiter
            .check_key(&(tenant_key.clone(), client))
            .map_err(|n| rate_limited(n, "too many touches from this client; slow down"))?;
        self.tenant_limiter
            .check_key(&tenant_key)
            .map_err(|n| rate_limited(n, "too many touches for this tenant; slow down"))
    }

    /// Reads the body up to `limit` bytes within `ingest.body_timeout_ms`,
    /// holding its share of `ingest.max_buffered_bytes` (returned with it, to
    /// be held until the request is answered). 413 beyond the limit (told by
    /// `Content-Length` before reading when the client sends one), 503 when
    /// the budget is spent, 408 when the body comes too slowly, 400 when the
    /// client breaks off.
    async fn read_body(
        &self,
        body: Body,
        headers: &HeaderMap,
        limit: usize,
    ) -> Result<(Bytes, OwnedSemaphorePermit), Rejection> {
        let too_large = || {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {limit} bytes"),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let reserve = declared.map_or(limit, |len| len as usize).max(1);
        let permit = u32::try_from(reserve)
            .ok()
            .and_then(|n| self.body_budget.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                let mut r = Rejection::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many request bodies held at once; retry later",
                );
                r.retry_after = Some(self.settings.retry_after_secs);
                r
            })?;
        let deadline = Duration::from_millis(self.settings.body_timeout_ms);
        match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => Ok((collected.to_bytes(), permit)),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(_)) => Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "the body could not be read (the client broke off)",
            )),
            Err(_) => {
                let mut r = Rejection::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the body did not arrive within {deadline:?}"),
                );
                r.close = true;
                Err(r)
            }
        }
    }
}

/// 429 with the limiter's wait as `Retry-After` (at least a second).
fn rate_limited(
    not_until: governor::NotUntil<governor::clock::QuantaInstant>,
    message: &'static str,
) -> Rejection {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    let mut r = Rejection::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    r.retry_after = Some(wait.as_secs().max(1));
    r
}

fn to_headers(map: &HeaderMap) -> Headers {
    Headers::from_pairs(
        map.iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
    )
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::loggable_tenant;

    #[test]
    fn tenants_from_urls_are_logged_escaped() {
        assert_eq!(loggable_tenant("acme"), "acme");
        let forged = "acme\n2026-01-01T00:00:00Z INFO admin logged in";
        let shown = loggable_tenant(forged);
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.starts_with("invalid:\""), "{shown}");
        assert!(loggable_tenant(&"x".repeat(500)).len() < 100);
        assert!(!loggable_tenant("a\u{1b}[31mred").contains('\u{1b}'));
    }
}
