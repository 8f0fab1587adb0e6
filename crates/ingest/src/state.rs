//! Building the [`Ingest`] from the configuration, the raw topics it writes
//! to and their checks at start, and readiness.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use governor::{DefaultKeyedRateLimiter, Quota};
use prometheus::Registry;
use storefold_codec::registry::Framing;
use storefold_codec::{AvroCodec, RecordKind};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::Topics;
use tokio::sync::Semaphore;

use crate::response::Rejection;
use crate::{
    DEFAULT_PRODUCER_MAX_BYTES, Ingest, IngestError, IngestMetrics, Publisher, RAW_ENVELOPE_BYTES,
    Tenant,
};

impl Ingest {
    /// Builds the ingest from the configuration, registering its metrics in
    /// `registry`. Refuses features that are configured but not built.
    pub fn new(config: &Config, registry: &Registry) -> Result<Arc<Self>, IngestError> {
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
        // With a schema registry, raw events are framed with the id it gives
        // their schema (registered under every raw topic's subject).
        let mut codec = AvroCodec::embedded()?;
        let framing = match &config.schema_registry {
            Some(sr) => {
                let topics: Vec<(String, RecordKind)> = raw_topic_names
                    .values()
                    .map(|t| (t.clone(), RecordKind::RawEvent))
                    .collect();
                sr.bind_blocking(&mut codec, &topics)
                    .map_err(IngestError::Unsupported)?
                    .framing
            }
            None => Framing::single_object(),
        };
        let map_options = config
            .map_options()
            .map_err(|e| IngestError::Unsupported(e.to_string()))?;
        let fold_config = config
            .fold_config()
            .map_err(|e| IngestError::Unsupported(e.to_string()))?;
        let raw_keys = start_key_tail(config)?;
        Ok(Arc::new(Self {
            tenants,
            raw_keys,
            map_options,
            fold_config,
            publisher,
            raw_topic_names,
            used_raw_topics,
            codec,
            framing,
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

    /// The Kafka producer the ingest stores raw events with.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The ingest's metrics.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// The raw topics this configuration writes to (configured providers, and
    /// `collect` when a tenant allows origins).
    pub fn raw_topics(&self) -> &[String] {
        &self.used_raw_topics
    }

    /// `raw.<provider>` of `kind`.
    pub(crate) fn raw_topic(&self, kind: ProviderKind) -> &str {
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

    /// The configured tenant `id`, else 404 `unknown_tenant`.
    pub(crate) fn tenant(&self, id: &str) -> Result<&Tenant, Rejection> {
        self.tenants.get(id).ok_or_else(|| {
            Rejection::new(StatusCode::NOT_FOUND, "unknown_tenant", "unknown tenant")
        })
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
    pub(crate) async fn ready(&self) -> Result<(), String> {
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

    /// Whether the producer can fetch the metadata of a raw topic.
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

/// For tenants that shred their raw log: reads the keys topic into a book,
/// and keeps following it on a thread of its own (until the ingest is
/// dropped), so that an erasure's tombstones reach the ingest.
fn start_key_tail(config: &Config) -> Result<Option<crate::RawKeys>, IngestError> {
    use storefold_runtime::rawkeys::{KeyBook, KeyLog};
    let keks = KeyBook::keks(config);
    if keks.is_empty() {
        return Ok(None);
    }
    let topic = Topics::new(&config.kafka.topic_prefix).raw_keys();
    let tenants = keks.keys().cloned().collect();
    let book = Arc::new(std::sync::Mutex::new(KeyBook::new(keks, false)));
    let mut log = KeyLog::open(
        &config.kafka,
        &topic,
        Arc::clone(&book),
        Duration::from_secs(10),
    )
    .map_err(|e| IngestError::Topics(format!("raw_encryption: {e}")))?;
    let weak = Arc::downgrade(&book);
    std::thread::Builder::new()
        .name("raw-keys".into())
        .spawn(move || {
            // Stops once the ingest (the book's other owner) is gone.
            while weak.strong_count() > 1 {
                if let Err(e) = log.poll(Duration::from_millis(200)) {
                    tracing::warn!(error = %e, "reading the keys topic");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        })
        .map_err(|e| IngestError::Unsupported(format!("cannot start the keys reader: {e}")))?;
    Ok(Some(crate::RawKeys {
        book,
        topic,
        tenants,
    }))
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
