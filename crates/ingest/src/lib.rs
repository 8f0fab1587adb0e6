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
//! origins only, a per-client rate limit, 204.
//!
//! Every non-2xx answer has the JSON body `{"error": "...", "reason": "<code>"}`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
use storefold_runtime::config::{Config, IngestConfig};
use storefold_runtime::kafka::Topics;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod metrics;
mod publish;
pub mod trace;

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
}

type Limiter = DefaultKeyedRateLimiter<(Arc<str>, IpAddr)>;

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
    limiter: Limiter,
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
                    },
                )
            })
            .collect();
        let settings = config.ingest.clone();
        let publisher = Publisher::new(
            &config.kafka,
            Duration::from_millis(settings.produce_timeout_ms),
        )?;
        let c = &settings.collect;
        let quota =
            Quota::per_second(NonZeroU32::new(c.requests_per_second).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(c.burst).unwrap_or(NonZeroU32::MIN));
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
            limiter: DefaultKeyedRateLimiter::keyed(quota),
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
        let kafka = kafka.clone();
        let view = tokio::task::spawn_blocking(move || {
            storefold_runtime::kafka::describe_cluster(&kafka, Duration::from_secs(10))
        })
        .await
        .map_err(|e| IngestError::Topics(format!("metadata task failed: {e}")))??;
        let missing: Vec<&str> = self
            .raw_topics()
            .iter()
            .filter(|t| !view.topics.contains_key(*t))
            .map(String::as_str)
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(IngestError::Topics(format!(
                "raw topics missing on the broker: {}; create them with `storefold topics create`",
                missing.join(", ")
            )))
        }
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

    async fn ready(&self) -> Result<(), String> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
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

/// The ingest's routes plus `/healthz`, `/readyz` and `/metrics`.
pub fn app(ingest: Arc<Ingest>, registry: Registry) -> Router {
    let probe = ingest.clone();
    let ready: storefold_runtime::server::ReadyCheck = Arc::new(move || {
        let probe = probe.clone();
        Box::pin(async move { probe.ready().await })
    });
    router(ingest)
        .merge(storefold_runtime::server::ops_router(registry, ready))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
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
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.cancelled().await;
            draining.stop_accepting();
        })
        .into_future(),
    );
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
}

impl Rejection {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
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
        tenant = %tenant,
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
    let kind = kind
        .filter(|k| *k != ProviderKind::Collect)
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                "unknown provider; known: shopify woocommerce stripe adyen paypal aftership easypost shippo zendesk gorgias",
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
    let body = read_body(body, &parts.headers, ingest.settings.max_body_bytes).await?;
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
        tenant = %tenant,
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
    let client = client_addr(&request, ingest.settings.collect.trust_forwarded_for);
    let key: (Arc<str>, IpAddr) = (Arc::from(tenant_id), client);
    if let Err(not_until) = ingest.limiter.check_key(&key) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut r = Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many touches from this client; slow down",
        );
        r.retry_after = Some(wait.as_secs().max(1));
        return Err(r);
    }
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, ingest.settings.collect.max_body_bytes).await?;
    let headers = to_headers(&parts.headers);
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: None,
    };
    let inbound = ProviderKind::Collect
        .describe(&req)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    let raw = raw_event(
        tenant_id,
        ProviderKind::Collect,
        inbound,
        &headers,
        &body,
        now,
        trace,
    );
    store(ingest, ProviderKind::Collect, raw).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
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

fn client_addr(request: &Request, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// Reads the body up to `limit` bytes: 413 beyond it (told by `Content-Length`
/// before reading when the client sends one), 400 when the client breaks off.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            format!("the body could not be read: {e}"),
        )),
    }
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
