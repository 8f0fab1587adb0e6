//! storefold-processor: folds the raw topics into customer and order state,
//! exactly once, with RocksDB per task and the commit protocol of
//! ARCHITECTURE §5.
//!
//! - [`task`]: a task owns partition p of every raw topic: decode → map →
//!   dedupe → correlate and fold (storefold-core) → commit (changelog records,
//!   marker, one RocksDB write batch, outbox → projections, triggers, dead
//!   letters).
//! - [`restore`]: the start protocol's reading of the changelog (pure).
//! - [`runner`]: the consumer group loop and the rebalance callbacks.
//! - [`query`]: the Customer 360 and order endpoints.
//! - [`ui`]: the Inspector page over them (`/ui`).

pub mod db;
mod failpoint;
pub mod idem;
mod lanes;
pub mod metrics;
pub mod parked;
pub mod query;
pub mod records;
pub mod restore;
pub mod runner;
pub mod size;
pub mod task;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::Registry;
use rdkafka::producer::FutureProducer;
use storefold_codec::registry::Framing;
use storefold_codec::{AvroCodec, RecordKind};
use storefold_core::engine::FoldConfig;
use storefold_providers::MapOptions;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, describe_cluster, producer_config};
use storefold_runtime::operator::Access;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use runner::{Mode, Owned, RunOptions, RunSummary};
pub use task::{Shared, TaskError};

/// Why the processor could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("{0}")]
    Config(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// A processor instance: shared settings, the stores it owns, its metrics.
#[derive(Debug)]
pub struct Processor {
    pub shared: Arc<Shared>,
    pub owned: Owned,
    pub registry: Registry,
    /// The configured tenant ids (`GET /v1/tenants`, the Inspector's choices).
    pub tenants: Vec<String>,
    /// The operator tokens that guard the query API, `/v1/tenants` and `/metrics`.
    pub access: Access,
}

impl Processor {
    /// Reads the fold's configuration (`Config::fold_config`: the rates file),
    /// checks the cluster and the topics and prepares the Kafka clients. `rt`
    /// runs the producer's acknowledgement futures.
    pub fn new(
        config: &Config,
        registry: Registry,
        rt: tokio::runtime::Handle,
    ) -> Result<Processor, ProcessorError> {
        let fold = config
            .fold_config()
            .map_err(|e| ProcessorError::Config(e.to_string()))?;
        Self::with_fold(config, fold, registry, rt)
    }

    /// [`Processor::new`] with the fold's configuration already read (a
    /// caller that checks it before starting anything else).
    pub fn with_fold(
        config: &Config,
        fold: FoldConfig,
        registry: Registry,
        rt: tokio::runtime::Handle,
    ) -> Result<Processor, ProcessorError> {
        let p = &config.processor;
        // The tenants' settings before Kafka is asked.
        let map_options = config
            .map_options()
            .map_err(|e| ProcessorError::Config(e.to_string()))?;
        let timeout = Duration::from_millis(p.produce_timeout_ms);
        let topics = Topics::new(&config.kafka.topic_prefix);
        let view = describe_cluster(&config.kafka, timeout)
            .map_err(|e| ProcessorError::Kafka(format!("cannot reach the cluster: {e}")))?;
        let cluster_id = view.cluster_id.clone().ok_or_else(|| {
            ProcessorError::Kafka(
                "the broker did not tell its cluster id; storefold stores it with the state to \
                 never resume on a different log"
                    .into(),
            )
        })?;
        let raw_topics: Vec<String> = topics.all_raw().into_iter().map(|(_, t)| t).collect();
        let changelog = topics.changelog();
        let partitions = *view.topics.get(&changelog).ok_or_else(|| {
            ProcessorError::Config(format!(
                "topic {changelog} does not exist; run `storefold topics create`"
            ))
        })?;
        let mut missing = Vec::new();
        for t in raw_topics.iter().chain([
            &topics.customers(),
            &topics.orders(),
            &topics.payouts(),
            &topics.triggers(),
            &topics.dlq_processor(),
        ]) {
            match view.topics.get(t) {
                None => missing.push(t.clone()),
                Some(n) if raw_topics.contains(t) && *n != partitions => {
                    return Err(ProcessorError::Config(format!(
                        "{t} has {n} partitions but {changelog} has {partitions}: the raw topics and \
                         the changelog must be co-partitioned (`storefold topics check`)"
                    )));
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Err(ProcessorError::Config(format!(
                "missing topics: {}; run `storefold topics create`",
                missing.join(", ")
            )));
        }
        let producer: FutureProducer = producer_config(&config.kafka, timeout)
            .create()
            .map_err(|e| ProcessorError::Kafka(e.to_string()))?;
        let mut codec = AvroCodec::embedded().map_err(|e| ProcessorError::Config(e.to_string()))?;
        // With a schema registry, every topic value is framed with the id it
        // gives the value's schema (the commit marker inside a changelog record
        // is no topic value and stays single-object).
        let framing = match &config.schema_registry {
            Some(sr) => {
                let mut bound: Vec<(String, RecordKind)> = raw_topics
                    .iter()
                    .map(|t| (t.clone(), RecordKind::RawEvent))
                    .collect();
                bound.extend([
                    (changelog.clone(), RecordKind::StateRecord),
                    (topics.customers(), RecordKind::CustomerProjection),
                    (topics.orders(), RecordKind::OrderProjection),
                    (topics.payouts(), RecordKind::PayoutProjection),
                    (topics.triggers(), RecordKind::Trigger),
                ]);
                sr.bind_blocking(&mut codec, &bound)
                    .map_err(ProcessorError::Config)?
                    .framing
            }
            None => Framing::single_object(),
        };
        // Tenants that shred their raw log: every data key is read before the
        // first record is folded (an encrypted body whose key is not there
        // was shredded).
        let keks = storefold_runtime::rawkeys::KeyBook::keks(config);
        let raw_keys = if keks.is_empty() {
            None
        } else {
            use storefold_runtime::rawkeys::{KeyBook, KeyLog};
            let book = Arc::new(std::sync::Mutex::new(KeyBook::new(keks, true)));
            let mut log = KeyLog::open(&config.kafka, &topics.raw_keys(), book, timeout)
                .map_err(|e| ProcessorError::Config(format!("raw_encryption: {e}")))?;
            log.catch_up(timeout.max(Duration::from_secs(60)))
                .map_err(|e| ProcessorError::Kafka(format!("reading the keys topic: {e}")))?;
            tracing::info!(keys = log.book().len(), "raw log data keys read");
            Some(std::sync::Mutex::new(log))
        };
        let shared = Arc::new(Shared {
            raw_keys,
            kafka: config.kafka.clone(),
            topics,
            codec,
            framing,
            producer,
            rt,
            metrics: metrics::ProcessorMetrics::new(&registry),
            cluster_id,
            raw_topics,
            partitions,
            state_dir: p.state_dir.clone(),
            retention_ms: (p.idempotency_retention_hours as i64).saturating_mul(3_600_000),
            sync_writes: p.sync_writes,
            produce_timeout: timeout,
            cache_records: p.cache_records,
            tasks: Default::default(),
            memory: db::StoreMemory::new(p.memory_budget_bytes()).with_open_files(
                db::store_open_files(db::open_file_limit(), partitions as u64)
                    .map_err(ProcessorError::Config)?,
            ),
            map_options,
            default_map_options: MapOptions::default(),
            fold: Arc::new(fold),
            park_timeout_ms: i64::try_from(p.park_timeout_hours)
                .unwrap_or(i64::MAX)
                .saturating_mul(3_600_000),
            max_message_bytes: size::message_limit(&config.kafka),
        });
        Ok(Processor {
            shared,
            owned: Owned::default(),
            registry,
            tenants: config.tenants.keys().cloned().collect(),
            access: Access::new(&config.operator),
        })
    }

    /// The RocksDB memory the instance's task stores share (its gauges read
    /// it too).
    pub fn store_memory(&self) -> &db::StoreMemory {
        &self.shared.memory
    }

    /// Runs the consumer loop on the calling (blocking) thread.
    pub fn run_blocking(
        &self,
        opts: RunOptions,
        token: CancellationToken,
    ) -> Result<RunSummary, TaskError> {
        runner::run(self.shared.clone(), self.owned.clone(), opts, token)
    }

    /// The operator routes: the query API, the Inspector (`/ui`,
    /// `/v1/tenants`) and `ops` (`/healthz`, `/readyz`, `/metrics`), behind
    /// the operator tokens' guard (`storefold_runtime::operator::guard`).
    pub fn operator_router(&self, ops: axum::Router) -> axum::Router {
        query::router(
            self.owned.clone(),
            self.shared.partitions,
            self.shared.fold.clone(),
        )
        .merge(ui::router(self.tenants.clone()))
        .merge(ops)
        .layer(axum::middleware::from_fn_with_state(
            self.access.clone(),
            storefold_runtime::operator::guard,
        ))
    }

    /// [`Processor::operator_router`] with the processor's own `/healthz`,
    /// `/readyz` (the loop runs) and `/metrics`.
    pub fn router(&self, running: Arc<AtomicBool>) -> axum::Router {
        let ready: storefold_runtime::server::ReadyCheck = Arc::new(move || {
            let running = running.clone();
            Box::pin(async move {
                if running.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("the processor loop is not running".to_string())
                }
            })
        });
        self.operator_router(storefold_runtime::server::ops_router(
            self.registry.clone(),
            ready,
        ))
    }
}

/// Run options from the configuration. No sink's dead-letter topic is
/// measured until the caller names the sinks (`dead_letter_sinks`).
pub fn options(config: &Config, mode: Mode) -> RunOptions {
    RunOptions {
        mode,
        reset: false,
        exit_when_caught_up: false,
        batch_size: config.processor.batch_size,
        commit_interval: Duration::from_millis(config.processor.commit_interval_ms),
        group_id: config.processor.group_id.clone(),
        dead_letter_sinks: Vec::new(),
    }
}

/// `storefold process` / `storefold replay`: serves the HTTP port on `listener`
/// and runs the loop until `shutdown` (or, with `exit_when_caught_up`, the end
/// of the input).
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, ProcessorError> {
    let registry = Registry::new();
    let handle = tokio::runtime::Handle::current();
    let cfg = config.clone();
    let processor = tokio::task::spawn_blocking(move || Processor::new(&cfg, registry, handle))
        .await
        .map_err(|e| ProcessorError::Kafka(e.to_string()))??;
    let processor = Arc::new(processor);
    let running = Arc::new(AtomicBool::new(true));
    let app = processor.router(running.clone());
    let local = listener.local_addr().map_err(ProcessorError::Serve)?;
    tracing::info!(%local, partitions = processor.shared.partitions, "processor listening");
    let stop_http = CancellationToken::new();
    let server = {
        let stop = stop_http.clone();
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .into_future(),
        )
    };
    let p = processor.clone();
    let token = shutdown.clone();
    let result = tokio::task::spawn_blocking(move || p.run_blocking(opts, token))
        .await
        .map_err(|e| ProcessorError::Kafka(e.to_string()));
    running.store(false, Ordering::SeqCst);
    stop_http.cancel();
    let _ = server.await;
    Ok(result??)
}
