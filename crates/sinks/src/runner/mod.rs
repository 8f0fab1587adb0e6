//! The runner: everything a sink needs besides the write itself.
//!
//! It consumes the sink's topics in the sink's own consumer group, decodes the
//! Avro values, batches by size and linger, keeps only the newest
//! `(generation, version)` of every key (triggers: every `trigger_id` once),
//! calls [`Sink::write`], retries what may succeed later (exponential backoff
//! with jitter, `Retry-After`, a circuit breaker), sends what can never
//! succeed to `dlq.sink.<name>`, and commits offsets only after the write and
//! the dead letters were acknowledged. A record is written, dead-lettered or
//! superseded by a newer one of its batch; none is dropped silently.
//!
//! ```no_run
//! # async fn demo(config: storefold_runtime::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use storefold_sinks::registry;
//! use storefold_sinks::runner::run;
//! let metrics = prometheus::Registry::new();
//! let spec = registry::find("postgres").ok_or("no such sink")?;
//! let settings = spec.settings(&config)?.ok_or("[sinks.postgres] is missing")?;
//! let sink = spec.build(&config, &metrics).await?;
//! let opts = settings.run_options(None);
//! let summary = run(sink, &config, opts, &metrics, Default::default()).await?;
//! println!("{} written", summary.written);
//! # Ok(()) }
//! ```

mod consumer;
mod dead_letter;
mod dedupe;
mod metrics;
mod retry;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use storefold_codec::{AvroCodec, RecordKind};
use storefold_runtime::config::{Config, SinksConfig};
use storefold_runtime::kafka::{Topics, client_config, describe_cluster, producer_config};
use tokio_util::sync::CancellationToken;

use crate::{Rejection, Sink, Stream, WriteError};
use consumer::{Ctx, Pending, stream_topic};
use dead_letter::dead_letter;
pub use dead_letter::{
    ERROR_HEADER, ERROR_REASON_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER, UNDECODABLE,
};
pub use dedupe::newest_per_key;
use metrics::Bound;
pub use metrics::SinkMetrics;
pub use retry::{Circuit, CircuitState, backoff};

/// How a run consumes and batches.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The sink's consumer group (its committed offsets are its progress).
    pub group_id: String,
    /// Records per write, at most (after "newest per key" a write may hold fewer).
    pub batch_size: usize,
    /// How long the first record of a batch waits for the batch to fill.
    pub linger: Duration,
    /// Return once caught up (every assigned partition written to its end) and
    /// nothing arrived for this long: for tests and benchmarks.
    pub exit_when_idle: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records the destination accepted.
    pub written: u64,
    /// Records sent to the dead-letter topic (refused by the destination, or
    /// undecodable).
    pub rejected: u64,
    /// Batches written (write calls that succeeded).
    pub batches: u64,
    /// Partition assignments the consumer received: 1 when the sink kept its
    /// place in the group the whole run, more after a rebalance (another member
    /// joined or left, or this one was evicted and rejoined).
    pub assignments: u64,
}

/// Why a run stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination said retrying cannot help (credentials, permissions,
    /// misconfiguration).
    #[error("sink {sink}: {error}")]
    Sink {
        sink: &'static str,
        #[source]
        error: WriteError,
    },
    /// Kafka refused something that retrying will not fix (a consumer position
    /// that no longer exists, a client that cannot be created).
    #[error("sink {sink}: Kafka: {message}")]
    Kafka { sink: &'static str, message: String },
    /// The configuration or the cluster does not fit (missing topics, …).
    #[error("sink {sink}: {message}")]
    Config { sink: &'static str, message: String },
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// What stops a flush: shutdown (nothing committed, the records come again), or
/// an error.
enum Stop {
    Shutdown,
    Error(SinkError),
}

struct Runner<'a, S: Sink> {
    sink: S,
    name: &'static str,
    settings: &'a SinksConfig,
    consumer: Arc<StreamConsumer<Ctx>>,
    producer: FutureProducer,
    dlq_topic: String,
    codec: AvroCodec,
    /// The schema registry, when configured: ids first seen while running (a
    /// newer processor's schema) are fetched from it before decoding.
    registry: Option<storefold_codec::registry::RegistryClient>,
    streams: HashMap<String, Stream>,
    metrics: Bound,
    circuit: Circuit,
    shutdown: CancellationToken,
    summary: RunSummary,
    last_lag: Option<Instant>,
    /// The longest wait a destination's `Retry-After` may impose.
    max_retry_after: Duration,
    /// The assigned partitions are paused (a retry or an open circuit waits).
    paused: bool,
    /// Records that arrived while waiting (a partition assigned meanwhile, or
    /// fetched just before the pause): the start of the next batch.
    carry: Pending,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs `sink` until `shutdown` is cancelled (or, with
/// [`RunOptions::exit_when_idle`], until it caught up and went idle). Stops with
/// an error on a [`WriteError::Fatal`], on a consumer position that no longer
/// exists, or when its topics are missing.
///
/// Registers [`SinkMetrics`] in `registry`: one run per registry (several sinks in
/// one process share one set through [`run_with_metrics`]).
pub async fn run<S: Sink>(
    sink: S,
    config: &Config,
    opts: RunOptions,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<RunSummary, SinkError> {
    run_with_metrics(sink, config, opts, &SinkMetrics::new(registry), shutdown).await
}

/// [`run`] with metrics registered once by the caller, so that several sinks of
/// one process (`storefold run`) export into one registry, told apart by the
/// `sink` label.
pub async fn run_with_metrics<S: Sink>(
    mut sink: S,
    config: &Config,
    opts: RunOptions,
    metrics: &SinkMetrics,
    shutdown: CancellationToken,
) -> Result<RunSummary, SinkError> {
    let name = sink.name();
    let metrics = metrics.for_sink(name);
    let topics = Topics::new(&config.kafka.topic_prefix);
    let streams: HashMap<String, Stream> = sink
        .streams()
        .into_iter()
        .map(|s| (stream_topic(&topics, s), s))
        .collect();
    if streams.is_empty() {
        return Err(SinkError::Config {
            sink: name,
            message: "the sink consumes no topic".into(),
        });
    }
    let dlq_topic = topics.dlq_sink(name);
    let kafka_err = |message: String| SinkError::Kafka {
        sink: name,
        message,
    };

    // Topics first: a clear message beats a consumer that waits forever.
    let kafka = config.kafka.clone();
    let view = tokio::task::spawn_blocking(move || describe_cluster(&kafka, KAFKA_TIMEOUT))
        .await
        .map_err(|e| kafka_err(e.to_string()))?
        .map_err(|e| kafka_err(format!("cannot read the cluster's topics: {e}")))?;
    let mut missing: Vec<String> = streams
        .keys()
        .chain([&dlq_topic])
        .filter(|t| !view.topics.contains_key(*t))
        .cloned()
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(SinkError::Config {
            sink: name,
            message: format!(
                "missing topics: {}; run `storefold topics create`",
                missing.join(", ")
            ),
        });
    }

    let mut cc = client_config(&config.kafka);
    cc.set("group.id", &opts.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A position that no longer exists is an error, never a silent skip; a
        // partition the group never committed starts from the beginning (the
        // rebalance callback says so explicitly).
        .set("auto.offset.reset", "error");
    let consumer: StreamConsumer<Ctx> = cc
        .create_with_context(Ctx {
            sink: name,
            positions: Mutex::new(BTreeMap::new()),
            assignments: Default::default(),
        })
        .map_err(|e| kafka_err(format!("consumer: {e}")))?;
    let producer: FutureProducer = producer_config(&config.kafka, KAFKA_TIMEOUT)
        .create()
        .map_err(|e| kafka_err(format!("producer: {e}")))?;
    let mut codec = AvroCodec::embedded().map_err(|e| SinkError::Config {
        sink: name,
        message: format!("schemas: {e}"),
    })?;
    // With a schema registry, the projections and triggers are Confluent frames:
    // the codec learns the ids of the current schemas and of earlier versions.
    let mut registry = None;
    if let Some(sr) = &config.schema_registry {
        let bound: Vec<(String, RecordKind)> = streams
            .iter()
            .map(|(topic, s)| {
                let kind = match s {
                    Stream::Customers => RecordKind::CustomerProjection,
                    Stream::Orders => RecordKind::OrderProjection,
                    Stream::Payouts => RecordKind::PayoutProjection,
                    Stream::Triggers => RecordKind::Trigger,
                };
                (topic.clone(), kind)
            })
            .collect();
        let registry_err = |e: storefold_codec::registry::RegistryError| SinkError::Config {
            sink: name,
            message: format!("schema_registry ({}): {e}", sr.url),
        };
        let client = sr.client().map_err(registry_err)?;
        sr.bind(&client, &mut codec, &bound)
            .await
            .map_err(registry_err)?;
        registry = Some(client);
    }

    let settings = &config.sinks;
    let max_retry_after = Duration::from_secs(settings.max_retry_after_secs.max(1));
    metrics.circuit.set(CircuitState::Closed.gauge());

    // `prepare` (migrations, connectivity) may meet a destination that is not up
    // yet: retried like a write.
    let mut delays = backoff(
        Duration::from_millis(settings.retry_initial_ms),
        Duration::from_millis(settings.retry_max_ms),
    );
    loop {
        match sink.prepare().await {
            Ok(()) => break,
            Err(WriteError::Fatal { message }) => {
                return Err(SinkError::Sink {
                    sink: name,
                    error: WriteError::Fatal { message },
                });
            }
            Err(WriteError::Retryable {
                message,
                retry_after,
            }) => {
                metrics.retries.inc();
                let delay = delays
                    .next()
                    .unwrap_or(max_retry_after)
                    .max(retry_after.unwrap_or_default().min(max_retry_after));
                tracing::warn!(sink = name, error = %message, ?delay, "destination not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(RunSummary::default()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    let topic_names: Vec<&str> = streams.keys().map(String::as_str).collect();
    consumer
        .subscribe(&topic_names)
        .map_err(|e| kafka_err(format!("subscribe: {e}")))?;
    tracing::info!(sink = name, topics = ?topic_names, group = %opts.group_id, "sink consuming");

    let mut runner = Runner {
        sink,
        name,
        settings,
        consumer: Arc::new(consumer),
        producer,
        dlq_topic,
        codec,
        registry,
        streams,
        metrics,
        circuit: Circuit::new(
            settings.circuit_failure_threshold,
            Duration::from_millis(settings.circuit_open_ms),
        ),
        shutdown,
        summary: RunSummary::default(),
        last_lag: None,
        max_retry_after,
        paused: false,
        carry: Pending::default(),
    };
    let mut result = runner.run(&opts).await;
    if let Ok(summary) = &mut result {
        summary.assignments = runner
            .consumer
            .context()
            .assignments
            .load(std::sync::atomic::Ordering::Relaxed);
    }
    // Leave the group now, so another member (a restart) takes over at once
    // rather than after the session timeout.
    runner.consumer.unsubscribe();
    result
}

impl<S: Sink> Runner<'_, S> {
    async fn run(&mut self, opts: &RunOptions) -> Result<RunSummary, SinkError> {
        let batch_size = opts.batch_size.max(1);
        let tick = opts
            .exit_when_idle
            .map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)))
            .max(Duration::from_millis(10));
        let mut pending = Pending::default();
        let mut last_arrival = Instant::now();
        loop {
            if self.shutdown.is_cancelled() {
                // What was consumed is written once more if it can be; either
                // way nothing uncommitted is lost (it comes again).
                // Records that arrived during the last wait join (nothing of
                // them is committed otherwise; they would come again anyway).
                let carried = std::mem::take(&mut self.carry);
                pending.merge(carried);
                if pending.consumed > 0 {
                    match self.flush(std::mem::take(&mut pending)).await {
                        Ok(()) | Err(Stop::Shutdown) => {}
                        Err(Stop::Error(e)) => return Err(e),
                    }
                }
                tracing::info!(
                    sink = self.name,
                    written = self.summary.written,
                    "sink stopped"
                );
                return Ok(self.summary);
            }
            let full = pending.consumed >= batch_size;
            let lingered = pending.first_at.is_some_and(|t| t.elapsed() >= opts.linger);
            if full || lingered {
                let flushed = self.flush(std::mem::take(&mut pending)).await;
                self.resume();
                pending = std::mem::take(&mut self.carry);
                match flushed {
                    Ok(()) => {}
                    Err(Stop::Shutdown) => continue,
                    Err(Stop::Error(e)) => return Err(e),
                }
                self.refresh_lag(false).await;
                continue;
            }
            let wait = match pending.first_at {
                Some(t) => opts.linger.saturating_sub(t.elapsed()),
                None => tick,
            };
            let got = tokio::select! {
                _ = self.shutdown.cancelled() => continue,
                r = tokio::time::timeout(wait, self.consumer.recv()) => match r {
                    Err(_elapsed) => None,
                    Ok(Ok(m)) => {
                        consumer::learn_writer(self.registry.as_ref(), &mut self.codec, &self.streams, &m).await;
                        self.take(&m, &mut pending);
                        Some(Ok(()))
                    }
                    Ok(Err(e)) => Some(Err(e)),
                },
            };
            match got {
                None => {
                    if pending.consumed == 0 {
                        self.refresh_lag(false).await;
                        if let Some(idle) = opts.exit_when_idle
                            && last_arrival.elapsed() >= idle
                            && self.refresh_lag(true).await == Some(0)
                        {
                            tracing::info!(sink = self.name, "caught up and idle");
                            return Ok(self.summary);
                        }
                    }
                }
                Some(Ok(())) => last_arrival = Instant::now(),
                Some(Err(e)) => {
                    let fatal = matches!(
                        e,
                        KafkaError::MessageConsumption(
                            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                        ) | KafkaError::MessageConsumptionFatal(_)
                    );
                    if fatal {
                        return Err(SinkError::Kafka {
                            sink: self.name,
                            message: format!(
                                "{e}: the position this sink must continue from no longer exists \
                                 (retention or truncation removed records it had not written); \
                                 refusing to skip them silently. Reset the group's offsets \
                                 deliberately to go on"
                            ),
                        });
                    }
                    tracing::warn!(sink = self.name, error = %e, "consumer error");
                    // Errors come at librdkafka's pace; never spin on them.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Writes a batch (with retries), dead-letters what must be, commits.
    async fn flush(&mut self, pending: Pending) -> Result<(), Stop> {
        let Pending {
            records,
            mut undecodable,
            next,
            ..
        } = pending;
        let (batch, superseded) = newest_per_key(records);
        let mut dead = std::mem::take(&mut undecodable);
        let undecodable_count = dead.len() as u64;
        let mut rejected_count = 0u64;
        if !batch.is_empty() {
            let rejections = self.write(&batch).await?;
            let mut refused = vec![false; batch.len()];
            for Rejection {
                index,
                code,
                reason,
            } in rejections
            {
                let Some(r) = batch.get(index) else {
                    tracing::error!(
                        sink = self.name,
                        index,
                        len = batch.len(),
                        "rejection of a record outside the batch ignored"
                    );
                    continue;
                };
                if std::mem::replace(&mut refused[index], true) {
                    continue;
                }
                tracing::warn!(
                    sink = self.name,
                    topic = %r.source.topic,
                    partition = r.source.partition,
                    offset = r.source.offset,
                    code = %code,
                    reason = %reason,
                    "record refused by the destination; sent to the dead-letter topic"
                );
                dead.push(dead_letter(
                    Some(r.key.clone()),
                    Some(r.value.clone()),
                    r.headers.clone(),
                    &r.source,
                    &code,
                    &reason,
                ));
                rejected_count += 1;
            }
            let written = batch.len() as u64 - rejected_count;
            let now = now_ms();
            for (r, refused) in batch.iter().zip(&refused) {
                if !refused && let Some(at) = r.received_at_ms {
                    self.metrics
                        .end_to_end
                        .observe((now - at).max(0) as f64 / 1000.0);
                }
            }
            self.metrics.written.inc_by(written);
            self.summary.written += written;
            self.summary.batches += 1;
        }
        if !dead.is_empty() {
            self.produce_dead_letters(dead).await?;
        }
        self.metrics
            .rejected
            .inc_by(rejected_count + undecodable_count);
        self.metrics.superseded.inc_by(superseded.len() as u64);
        self.summary.rejected += rejected_count + undecodable_count;
        self.commit(next).await;
        Ok(())
    }
}
