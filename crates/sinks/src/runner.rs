//! The runner: everything a sink needs besides the write itself.
//!
//! It consumes the sink's topics in the sink's own consumer group, decodes the
//! Avro values, batches by size and linger, keeps only the newest
//! `(generation, version)` of every key (triggers: every `trigger_id` once),
//! calls [`Sink::write`], retries what may succeed later (exponential backoff
//! with full jitter, `Retry-After`, a circuit breaker), sends what can never
//! succeed to `dlq.sink.<name>`, and commits offsets only after the write and
//! the dead letters were acknowledged. A record is written, dead-lettered or
//! superseded by a newer one of its batch; none is dropped silently.
//!
//! ```no_run
//! # async fn demo(config: storefold_runtime::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use storefold_sinks::postgres::PostgresSink;
//! use storefold_sinks::runner::{RunOptions, run};
//! let registry = prometheus::Registry::new();
//! let pg = config.sinks.postgres.as_ref().expect("[sinks.postgres]");
//! let sink = PostgresSink::connect(pg, &registry).await?;
//! let opts = RunOptions {
//!     group_id: pg.group_id.clone(),
//!     batch_size: pg.batch_size,
//!     linger: Duration::from_millis(pg.linger_ms),
//!     exit_when_idle: None,
//! };
//! let summary = run(sink, &config, opts, &registry, Default::default()).await?;
//! println!("{} written", summary.written);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use rand::Rng as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use storefold_codec::{
    AvroCodec, CustomerProjection, OrderProjection, RECEIVED_AT_HEADER, Trigger,
};
use storefold_runtime::config::{Config, SinksConfig};
use storefold_runtime::kafka::{Topics, client_config, describe_cluster, producer_config};
use storefold_runtime::metrics::LATENCY_BUCKETS;
use storefold_runtime::register;
use tokio_util::sync::CancellationToken;

use crate::{Item, Rejection, Sink, SinkRecord, SourcePosition, Stream, WriteError};

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

/// Dead-letter headers, as the processor writes them.
pub const ERROR_HEADER: &str = "storefold-error";
pub const ERROR_REASON_HEADER: &str = "storefold-error-reason";
pub const SOURCE_TOPIC_HEADER: &str = "storefold-source-topic";
pub const SOURCE_PARTITION_HEADER: &str = "storefold-source-partition";
pub const SOURCE_OFFSET_HEADER: &str = "storefold-source-offset";

/// Error code of a record whose value could not be decoded.
pub const UNDECODABLE: &str = "undecodable";

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// While a retry waits, the consumer is polled at least this often (far below
/// any sensible `max.poll.interval.ms`).
const POLL_WHILE_WAITING: Duration = Duration::from_millis(500);
/// How often the lag gauge is refreshed (each refresh asks the broker for the
/// watermarks of every assigned partition).
const LAG_REFRESH: Duration = Duration::from_secs(5);

/// Batch sizes in records.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
/// Webhook received → destination written: milliseconds when all is well,
/// minutes or hours when a destination was down.
const END_TO_END_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

/// The runner's metrics (ARCHITECTURE §7), labelled by sink. A registry holds one
/// set, so a registry serves one [`run`].
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    /// `storefold_sink_writes_total{sink,outcome}`: written, rejected, superseded.
    pub writes: IntCounterVec,
    /// `storefold_sink_retries_total{sink}`: failed write attempts retried.
    pub retries: IntCounterVec,
    /// `storefold_sink_dlq_total{sink}`: records sent to `dlq.sink.<name>`.
    pub dlq: IntCounterVec,
    /// `storefold_sink_batch_size{sink}`: records per write.
    pub batch_size: HistogramVec,
    /// `storefold_sink_write_duration_seconds{sink}`: every write attempt.
    pub write_seconds: HistogramVec,
    /// `storefold_sink_circuit_state{sink}`: 0 closed, 1 half-open, 2 open.
    pub circuit: IntGaugeVec,
    /// `storefold_sink_end_to_end_seconds{sink}`: webhook received → written.
    pub end_to_end: HistogramVec,
    /// `storefold_sink_lag{sink}`: records of the assigned partitions not yet handled.
    pub lag: IntGaugeVec,
}

impl SinkMetrics {
    /// Registers the metrics in `registry` (once per registry).
    pub fn new(registry: &Registry) -> Self {
        let sink = &["sink"];
        Self {
            writes: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_sink_writes_total",
                        "Records consumed by a sink, by outcome (written, rejected, superseded)"
                    ),
                    &["sink", "outcome"]
                )
            ),
            retries: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_sink_retries_total",
                        "Failed writes that will be retried"
                    ),
                    sink
                )
            ),
            dlq: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_sink_dlq_total",
                        "Records sent to the sink's dead-letter topic"
                    ),
                    sink
                )
            ),
            batch_size: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new("storefold_sink_batch_size", "Records per write")
                        .buckets(BATCH_BUCKETS.to_vec()),
                    sink
                )
            ),
            write_seconds: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "storefold_sink_write_duration_seconds",
                        "Duration of each write attempt"
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    sink
                )
            ),
            circuit: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "storefold_sink_circuit_state",
                        "Circuit breaker state: 0 closed, 1 half-open, 2 open"
                    ),
                    sink
                )
            ),
            end_to_end: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "storefold_sink_end_to_end_seconds",
                        "From the webhook's receipt by the ingest to the sink's successful write"
                    )
                    .buckets(END_TO_END_BUCKETS.to_vec()),
                    sink
                )
            ),
            lag: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "storefold_sink_lag",
                        "Records of the sink's assigned partitions not yet written"
                    ),
                    sink
                )
            ),
        }
    }

    /// The handles of one sink.
    fn for_sink(&self, sink: &str) -> Bound {
        let outcome = |o: &str| self.writes.with_label_values(&[sink, o]);
        Bound {
            written: outcome("written"),
            rejected: outcome("rejected"),
            superseded: outcome("superseded"),
            retries: self.retries.with_label_values(&[sink]),
            dlq: self.dlq.with_label_values(&[sink]),
            batch_size: self.batch_size.with_label_values(&[sink]),
            write_seconds: self.write_seconds.with_label_values(&[sink]),
            circuit: self.circuit.with_label_values(&[sink]),
            end_to_end: self.end_to_end.with_label_values(&[sink]),
            lag: self.lag.with_label_values(&[sink]),
        }
    }
}

struct Bound {
    written: IntCounter,
    rejected: IntCounter,
    superseded: IntCounter,
    retries: IntCounter,
    dlq: IntCounter,
    batch_size: Histogram,
    write_seconds: Histogram,
    circuit: IntGauge,
    end_to_end: Histogram,
    lag: IntGauge,
}

// ---------------------------------------------------------------------------
// Circuit breaker and backoff: pure, time passed in.

/// State of the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Writes go through.
    Closed,
    /// The open period is over: one trial write decides.
    HalfOpen,
    /// Too many consecutive failures: no write until the open period is over.
    Open,
}

impl CircuitState {
    /// The value of `storefold_sink_circuit_state`.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half-open",
            CircuitState::Open => "open",
        }
    }
}

/// A circuit breaker: closed → open after `threshold` consecutive failures →
/// half-open (one trial) after `open_for` → closed on success, open again on
/// failure. The runner writes one batch at a time, so the trial is single.
#[derive(Debug, Clone)]
pub struct Circuit {
    state: CircuitState,
    failures: u32,
    threshold: u32,
    open_for: Duration,
    opened_at: Option<Instant>,
}

impl Circuit {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            state: CircuitState::Closed,
            failures: 0,
            threshold: threshold.max(1),
            open_for,
            opened_at: None,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// May a write be attempted at `now`? `Err(wait)` while open. Moves an open
    /// circuit whose period is over to half-open (returned as `Ok(Some(..))`).
    pub fn before_attempt(&mut self, now: Instant) -> Result<Option<CircuitState>, Duration> {
        if self.state != CircuitState::Open {
            return Ok(None);
        }
        let until = self.opened_at.unwrap_or(now) + self.open_for;
        if now >= until {
            self.state = CircuitState::HalfOpen;
            Ok(Some(CircuitState::HalfOpen))
        } else {
            Err(until - now)
        }
    }

    /// A write succeeded; returns the new state when it changed.
    pub fn on_success(&mut self) -> Option<CircuitState> {
        self.failures = 0;
        self.opened_at = None;
        let changed = self.state != CircuitState::Closed;
        self.state = CircuitState::Closed;
        changed.then_some(CircuitState::Closed)
    }

    /// A write failed at `now`; returns the new state when it changed.
    pub fn on_failure(&mut self, now: Instant) -> Option<CircuitState> {
        self.failures = self.failures.saturating_add(1);
        let open = match self.state {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => self.failures >= self.threshold,
            CircuitState::Open => false,
        };
        if open {
            self.state = CircuitState::Open;
            self.opened_at = Some(now);
            Some(CircuitState::Open)
        } else {
            None
        }
    }
}

/// Delay before retry number `attempt` (0 = first retry): "full jitter" over
/// `initial · 2^attempt` capped at `max`, but never below half of `initial`, so
/// that a run of small draws cannot make the sink spin hot.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let cap = initial
        .saturating_mul(2u32.saturating_pow(attempt.min(31)))
        .min(max)
        .max(initial.min(max));
    let floor = initial / 2;
    cap.mul_f64(unit.clamp(0.0, 1.0)).max(floor)
}

// ---------------------------------------------------------------------------
// Newest per key.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Customer(String, String),
    Order(String, String),
    Trigger(String),
}

fn key_of(item: &Item) -> Key {
    match item {
        Item::Customer(c) => Key::Customer(c.tenant.clone(), c.customer_id.clone()),
        Item::Order(o) => Key::Order(o.tenant.clone(), o.order_id.clone()),
        Item::Trigger(t) => Key::Trigger(t.trigger_id.clone()),
    }
}

/// Keeps the newest `(generation, version)` of every customer and order (the
/// later record on a tie) and the first record of every `trigger_id`, in the
/// order of first appearance. Returns the kept records and the superseded ones.
pub fn newest_per_key(records: Vec<SinkRecord>) -> (Vec<SinkRecord>, Vec<SinkRecord>) {
    let mut kept: Vec<SinkRecord> = Vec::with_capacity(records.len());
    let mut superseded = Vec::new();
    let mut at: HashMap<Key, usize> = HashMap::with_capacity(records.len());
    for r in records {
        match at.entry(key_of(&r.item)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(kept.len());
                kept.push(r);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let old = &mut kept[*o.get()];
                let newer = match (r.item.generation_version(), old.item.generation_version()) {
                    (Some(new), Some(cur)) => new >= cur,
                    // A trigger is written once: the first delivery stands.
                    _ => false,
                };
                if newer {
                    superseded.push(std::mem::replace(old, r));
                } else {
                    superseded.push(r);
                }
            }
        }
    }
    (kept, superseded)
}

// ---------------------------------------------------------------------------
// Kafka.

type Tp = (String, i32);

/// The consumer context: resolves where each assigned partition starts (the
/// committed offset, or the beginning for a partition this group never
/// committed) and remembers each partition's next offset to handle.
struct Ctx {
    sink: &'static str,
    /// Assigned partitions → next offset to handle (`None`: from the beginning).
    positions: Mutex<BTreeMap<Tp, Option<i64>>>,
    /// Assignments received (see [`RunSummary::assignments`]).
    assignments: std::sync::atomic::AtomicU64,
}

impl Ctx {
    fn positions(&self) -> std::sync::MutexGuard<'_, BTreeMap<Tp, Option<i64>>> {
        self.positions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> TopicPartitionList {
        let mut committed = None;
        for attempt in 0..3 {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(c) => {
                    committed = Some(c);
                    break;
                }
                Err(e) => {
                    tracing::warn!(sink = self.sink, error = %e, attempt, "cannot read the committed offsets");
                }
            }
        }
        let Some(committed) = committed else {
            // librdkafka reads them itself; a partition without one then fails
            // loudly (auto.offset.reset=error) rather than skipping anything.
            return tpl.clone();
        };
        let mut out = TopicPartitionList::new();
        let mut positions = self.positions();
        for e in committed.elements() {
            let start = match e.offset() {
                Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            };
            positions.insert((e.topic().to_string(), e.partition()), start);
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            if let Err(err) = out.add_partition_offset(e.topic(), e.partition(), offset) {
                tracing::error!(sink = self.sink, error = %err, "cannot assign");
            }
        }
        out
    }
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assignments
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let assign = self.start_offsets(consumer, tpl);
                tracing::info!(
                    sink = self.sink,
                    partitions = assign.count(),
                    "partitions assigned"
                );
                if let Err(e) = consumer.assign(&assign) {
                    tracing::error!(sink = self.sink, error = %e, "assign");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    sink = self.sink,
                    partitions = tpl.count(),
                    "partitions revoked"
                );
                self.positions().clear();
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(sink = self.sink, error = %e, "unassign");
                }
            }
            other => tracing::error!(sink = self.sink, error = ?other, "rebalance error"),
        }
    }
}

/// A record on its way to the dead-letter topic.
#[derive(Debug, Clone)]
struct DeadLetter {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

fn dead_letter(
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    mut headers: Vec<(String, Vec<u8>)>,
    source: &SourcePosition,
    code: &str,
    reason: &str,
) -> DeadLetter {
    headers.push((ERROR_HEADER.into(), code.as_bytes().to_vec()));
    headers.push((ERROR_REASON_HEADER.into(), reason.as_bytes().to_vec()));
    headers.push((SOURCE_TOPIC_HEADER.into(), source.topic.as_bytes().to_vec()));
    headers.push((
        SOURCE_PARTITION_HEADER.into(),
        source.partition.to_string().into_bytes(),
    ));
    headers.push((
        SOURCE_OFFSET_HEADER.into(),
        source.offset.to_string().into_bytes(),
    ));
    DeadLetter {
        key,
        value,
        headers,
    }
}

/// Records consumed and not yet handled.
#[derive(Default)]
struct Pending {
    records: Vec<SinkRecord>,
    undecodable: Vec<DeadLetter>,
    next: BTreeMap<Tp, i64>,
    consumed: usize,
    first_at: Option<Instant>,
}

impl Pending {
    /// Appends `other` (records consumed later) to these.
    fn merge(&mut self, other: Pending) {
        if other.consumed == 0 {
            return;
        }
        self.records.extend(other.records);
        self.undecodable.extend(other.undecodable);
        for (tp, n) in other.next {
            let e = self.next.entry(tp).or_insert(n);
            *e = (*e).max(n);
        }
        self.consumed += other.consumed;
        self.first_at = match (self.first_at, other.first_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

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

fn decode(codec: &AvroCodec, stream: Stream, payload: &[u8]) -> Result<Item, String> {
    let r = match stream {
        Stream::Customers => codec
            .decode::<CustomerProjection>(payload)
            .map(Item::Customer),
        Stream::Orders => codec.decode::<OrderProjection>(payload).map(Item::Order),
        Stream::Triggers => codec.decode::<Trigger>(payload).map(Item::Trigger),
    };
    r.map_err(|e| e.to_string())
}

fn stream_topic(topics: &Topics, s: Stream) -> String {
    match s {
        Stream::Customers => topics.customers(),
        Stream::Orders => topics.orders(),
        Stream::Triggers => topics.triggers(),
    }
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
    if config.schema_registry.is_some() {
        return Err(SinkError::Config {
            sink: name,
            message: "[schema_registry] is configured, but the sinks do not read the Confluent \
                      wire format yet; remove the section to use Avro single-object encoding"
                .into(),
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
    let codec = AvroCodec::embedded().map_err(|e| SinkError::Config {
        sink: name,
        message: format!("schemas: {e}"),
    })?;

    let settings = &config.sinks;
    let max_retry_after = Duration::from_secs(settings.max_retry_after_secs.max(1));
    metrics.circuit.set(CircuitState::Closed.gauge());

    // `prepare` (migrations, connectivity) may meet a destination that is not up
    // yet: retried like a write.
    let mut attempt = 0u32;
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
                let delay = backoff(
                    attempt,
                    Duration::from_millis(settings.retry_initial_ms),
                    Duration::from_millis(settings.retry_max_ms),
                    rand::rng().random(),
                )
                .max(retry_after.unwrap_or_default().min(max_retry_after));
                tracing::warn!(sink = name, error = %message, ?delay, "destination not ready; retrying");
                attempt = attempt.saturating_add(1);
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

    /// Copies a consumed message into the pending batch, decoded, or as a dead
    /// letter when it cannot be decoded.
    fn take<M: Message>(&self, m: &M, pending: &mut Pending) {
        let source = SourcePosition {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
        };
        pending.consumed += 1;
        pending.first_at.get_or_insert_with(Instant::now);
        let next = pending
            .next
            .entry((source.topic.clone(), source.partition))
            .or_insert(0);
        *next = (*next).max(source.offset + 1);
        let headers = storefold_runtime::kafka::owned_headers(m);
        let key = m.key().map(<[u8]>::to_vec);
        let Some(stream) = self.streams.get(&source.topic).copied() else {
            // Only subscribed topics are delivered.
            tracing::error!(sink = self.name, topic = %source.topic, "record of an unexpected topic");
            return;
        };
        let decoded = match m.payload() {
            None => Err(
                "the record has no value (a tombstone); storefold never deletes projections"
                    .to_string(),
            ),
            Some(p) => decode(&self.codec, stream, p),
        };
        match decoded {
            Ok(item) => {
                let received_at_ms = headers
                    .iter()
                    .find(|(k, _)| k == RECEIVED_AT_HEADER)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok());
                pending.records.push(SinkRecord {
                    item,
                    key: key.unwrap_or_default(),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    source,
                    received_at_ms,
                });
            }
            Err(reason) => {
                tracing::warn!(
                    sink = self.name,
                    topic = %source.topic,
                    partition = source.partition,
                    offset = source.offset,
                    reason = %reason,
                    "undecodable record sent to the dead-letter topic"
                );
                pending.undecodable.push(dead_letter(
                    key,
                    m.payload().map(<[u8]>::to_vec),
                    headers,
                    &source,
                    UNDECODABLE,
                    &reason,
                ));
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

    /// Waits `d` (unless shutdown comes first) without leaving the group: the
    /// assigned partitions are paused and the consumer keeps being polled, so a
    /// destination outage longer than `max.poll.interval.ms` does not get this
    /// member evicted (and its partitions handed to a rebalance) while it
    /// retries. The partitions stay paused until the batch is handled
    /// ([`Self::resume`]).
    async fn pause(&mut self, d: Duration) -> Result<(), Stop> {
        let until = Instant::now() + d;
        loop {
            // Every round, so that partitions assigned meanwhile pause too.
            self.pause_assigned();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let step = left.min(POLL_WHILE_WAITING);
            let got = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                r = tokio::time::timeout(step, self.consumer.recv()) => r,
            };
            match got {
                Err(_elapsed) => {}
                Ok(Ok(m)) => {
                    // Fetched before the pause took effect: keep it for the next
                    // batch rather than skipping it.
                    let mut carry = std::mem::take(&mut self.carry);
                    self.take(&m, &mut carry);
                    self.carry = carry;
                }
                Ok(Err(e)) => {
                    tracing::warn!(sink = self.name, error = %e, "consumer error while waiting");
                    tokio::time::sleep(Duration::from_millis(100).min(left)).await;
                }
            }
        }
    }

    fn pause_assigned(&mut self) {
        match self.consumer.assignment() {
            Ok(tpl) if tpl.count() > 0 => match self.consumer.pause(&tpl) {
                Ok(()) => {
                    if !self.paused {
                        tracing::info!(
                            sink = self.name,
                            partitions = tpl.count(),
                            "partitions paused while the destination is retried (still polling)"
                        );
                    }
                    self.paused = true;
                }
                Err(e) => {
                    tracing::warn!(sink = self.name, error = %e, "cannot pause the partitions")
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(sink = self.name, error = %e, "cannot read the assignment"),
        }
    }

    /// Resumes the partitions paused by [`Self::pause`].
    fn resume(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        match self.consumer.assignment() {
            Ok(tpl) => {
                if let Err(e) = self.consumer.resume(&tpl) {
                    tracing::warn!(sink = self.name, error = %e, "cannot resume the partitions");
                } else {
                    tracing::info!(
                        sink = self.name,
                        partitions = tpl.count(),
                        "partitions resumed"
                    );
                }
            }
            Err(e) => tracing::warn!(sink = self.name, error = %e, "cannot read the assignment"),
        }
    }

    fn set_circuit(&self, state: CircuitState) {
        self.metrics.circuit.set(state.gauge());
        match state {
            CircuitState::Open => tracing::warn!(
                sink = self.name,
                circuit = state.as_str(),
                open_ms = self.settings.circuit_open_ms,
                "circuit breaker opened: the destination keeps failing, writes pause"
            ),
            _ => tracing::info!(
                sink = self.name,
                circuit = state.as_str(),
                "circuit breaker state changed"
            ),
        }
    }

    fn delay(&self, attempt: u32) -> Duration {
        backoff(
            attempt,
            Duration::from_millis(self.settings.retry_initial_ms),
            Duration::from_millis(self.settings.retry_max_ms),
            rand::rng().random(),
        )
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, Stop> {
        self.metrics.batch_size.observe(batch.len() as f64);
        let mut attempt = 0u32;
        loop {
            loop {
                match self.circuit.before_attempt(Instant::now()) {
                    Ok(change) => {
                        if let Some(state) = change {
                            self.set_circuit(state);
                        }
                        break;
                    }
                    Err(wait) => self.pause(wait).await?,
                }
            }
            let started = Instant::now();
            let result = self.sink.write(batch).await;
            self.metrics
                .write_seconds
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(rejections) => {
                    if let Some(state) = self.circuit.on_success() {
                        self.set_circuit(state);
                    }
                    return Ok(rejections);
                }
                Err(WriteError::Fatal { message }) => {
                    tracing::error!(sink = self.name, error = %message, "the destination refused for good; stopping");
                    return Err(Stop::Error(SinkError::Sink {
                        sink: self.name,
                        error: WriteError::Fatal { message },
                    }));
                }
                Err(WriteError::Retryable {
                    message,
                    retry_after,
                }) => {
                    self.metrics.retries.inc();
                    if let Some(state) = self.circuit.on_failure(Instant::now()) {
                        self.set_circuit(state);
                    }
                    // An open circuit adds its own wait (at the top of the loop).
                    // A destination's Retry-After is honoured up to the maximum.
                    let asked = retry_after.unwrap_or_default();
                    if asked > self.max_retry_after {
                        tracing::warn!(
                            sink = self.name,
                            retry_after = ?asked,
                            max = ?self.max_retry_after,
                            "Retry-After beyond sinks.max_retry_after_secs; waiting the maximum"
                        );
                    }
                    let delay = self.delay(attempt).max(asked.min(self.max_retry_after));
                    tracing::warn!(
                        sink = self.name,
                        error = %message,
                        attempt,
                        ?delay,
                        records = batch.len(),
                        "write failed; retrying"
                    );
                    attempt = attempt.saturating_add(1);
                    self.pause(delay).await?;
                }
            }
        }
    }

    /// Produces the dead letters and waits for every acknowledgement; retries
    /// the ones that failed until they are acknowledged (or shutdown).
    async fn produce_dead_letters(&mut self, mut letters: Vec<DeadLetter>) -> Result<(), Stop> {
        let mut attempt = 0u32;
        loop {
            let mut sent = Vec::with_capacity(letters.len());
            for l in &letters {
                let mut headers = OwnedHeaders::new_with_capacity(l.headers.len());
                for (k, v) in &l.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                let mut rec: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.dlq_topic).headers(headers);
                if let Some(k) = &l.key {
                    rec = rec.key(k.as_slice());
                }
                if let Some(v) = &l.value {
                    rec = rec.payload(v.as_slice());
                }
                sent.push(self.producer.send_result(rec).map_err(|(e, _)| e));
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for (l, f) in letters.into_iter().zip(sent) {
                let acked = match f {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e),
                        Err(_canceled) => Err(KafkaError::Canceled),
                    },
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(()) => self.metrics.dlq.inc(),
                    Err(e) => {
                        last_error = Some(e);
                        failed.push(l);
                    }
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            let delay = self.delay(attempt);
            tracing::warn!(
                sink = self.name,
                topic = %self.dlq_topic,
                failed = failed.len(),
                error = ?last_error,
                ?delay,
                "dead letters not acknowledged; retrying (offsets stay uncommitted)"
            );
            letters = failed;
            attempt = attempt.saturating_add(1);
            self.pause(delay).await?;
        }
    }

    /// Commits the next offsets of a handled batch (synchronously). A commit
    /// refused because the group moved on is not an error: the new owner starts
    /// from the previous commit and writes the same rows again, idempotently.
    async fn commit(&mut self, next: BTreeMap<Tp, i64>) {
        if next.is_empty() {
            return;
        }
        {
            let mut positions = self.consumer.context().positions();
            for (tp, n) in &next {
                if let Some(p) = positions.get_mut(tp) {
                    *p = Some(p.unwrap_or(0).max(*n));
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), n) in &next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*n)) {
                tracing::error!(sink = self.name, error = %e, "commit list");
            }
        }
        for attempt in 0..5u32 {
            let consumer = self.consumer.clone();
            let list = tpl.clone();
            let r = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
                .await
                .unwrap_or(Err(KafkaError::Canceled));
            match r {
                Ok(()) => return,
                Err(e) if group_moved_on(&e) || attempt == 4 => {
                    tracing::warn!(
                        sink = self.name,
                        error = %e,
                        "offset commit failed; the records will be delivered (and written) again"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(sink = self.name, error = %e, attempt, "offset commit failed; retrying");
                    if self.pause(self.delay(attempt)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Refreshes `storefold_sink_lag` (at most every few seconds unless `now`)
    /// and returns the lag; `None` while nothing is assigned or the broker does
    /// not answer.
    async fn refresh_lag(&mut self, now: bool) -> Option<i64> {
        if !now && self.last_lag.is_some_and(|t| t.elapsed() < LAG_REFRESH) {
            return None;
        }
        self.last_lag = Some(Instant::now());
        let positions: Vec<(Tp, Option<i64>)> = self
            .consumer
            .context()
            .positions()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if positions.is_empty() {
            return None;
        }
        let consumer = self.consumer.clone();
        let lag = tokio::task::spawn_blocking(move || {
            let mut lag = 0i64;
            for ((topic, partition), next) in positions {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                    .ok()?;
                lag += (high - next.unwrap_or(low).max(low)).max(0);
            }
            Some(lag)
        })
        .await
        .ok()
        .flatten()?;
        self.metrics.lag.set(lag);
        Some(lag)
    }
}

fn group_moved_on(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::NoOffset
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str, generation: i64, version: i64) -> SinkRecord {
        SinkRecord {
            item: Item::Customer(CustomerProjection {
                tenant: "acme".into(),
                customer_id: id.into(),
                generation,
                version,
                email: None,
                phone: None,
                redacted: false,
                merged_into: None,
                updated_at: 0,
                doc: "{}".into(),
            }),
            key: format!("acme/{id}").into_bytes(),
            value: Vec::new(),
            headers: Vec::new(),
            source: SourcePosition {
                topic: "customers".into(),
                partition: 0,
                offset: version,
            },
            received_at_ms: None,
        }
    }

    fn trigger(id: &str, offset: i64) -> SinkRecord {
        SinkRecord {
            item: Item::Trigger(Trigger {
                trigger_id: id.into(),
                tenant: "acme".into(),
                customer_id: "c1".into(),
                order_id: None,
                kind: "delivered".into(),
                occurred_at: 0,
                source_event_id: "e".into(),
                data: "{}".into(),
            }),
            key: b"acme/c1".to_vec(),
            value: Vec::new(),
            headers: Vec::new(),
            source: SourcePosition {
                topic: "triggers".into(),
                partition: 0,
                offset,
            },
            received_at_ms: None,
        }
    }

    #[test]
    fn newest_per_key_keeps_the_newest_generation_then_version() {
        let (kept, superseded) = newest_per_key(vec![
            customer("c1", 1, 5),
            customer("c2", 1, 1),
            customer("c1", 1, 3),
            customer("c1", 2, 1),
            customer("c2", 1, 2),
            customer("c1", 1, 9),
        ]);
        let gv: Vec<(String, Option<(i64, i64)>)> = kept
            .iter()
            .map(|r| {
                (
                    String::from_utf8(r.key.clone()).unwrap(),
                    r.item.generation_version(),
                )
            })
            .collect();
        assert_eq!(
            gv,
            vec![
                ("acme/c1".to_string(), Some((2, 1))),
                ("acme/c2".to_string(), Some((1, 2)))
            ]
        );
        assert_eq!(superseded.len(), 4);
    }

    #[test]
    fn newest_per_key_writes_each_trigger_once() {
        let (kept, superseded) =
            newest_per_key(vec![trigger("t1", 0), trigger("t2", 1), trigger("t1", 2)]);
        let offsets: Vec<i64> = kept.iter().map(|r| r.source.offset).collect();
        assert_eq!(offsets, vec![0, 1]);
        assert_eq!(superseded.len(), 1);
        assert_eq!(superseded[0].source.offset, 2);
    }

    #[test]
    fn circuit_opens_after_the_threshold_and_tries_once_when_half_open() {
        let t0 = Instant::now();
        let mut c = Circuit::new(3, Duration::from_secs(10));
        assert_eq!(c.on_failure(t0), None);
        assert_eq!(c.on_failure(t0), None);
        assert_eq!(c.before_attempt(t0), Ok(None));
        assert_eq!(c.on_failure(t0), Some(CircuitState::Open));
        assert_eq!(
            c.before_attempt(t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(
            c.before_attempt(t0 + Duration::from_secs(10)),
            Ok(Some(CircuitState::HalfOpen))
        );
        // The trial fails: open again for a full period.
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(c.on_failure(t1), Some(CircuitState::Open));
        assert_eq!(
            c.before_attempt(t1 + Duration::from_secs(1)),
            Err(Duration::from_secs(9))
        );
        assert_eq!(
            c.before_attempt(t1 + Duration::from_secs(10)),
            Ok(Some(CircuitState::HalfOpen))
        );
        assert_eq!(c.on_success(), Some(CircuitState::Closed));
        assert_eq!(c.state(), CircuitState::Closed);
        // The count starts again after a success.
        assert_eq!(c.on_failure(t1), None);
        assert_eq!(c.on_success(), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_never_drops_below_half_the_initial_delay() {
        let initial = Duration::from_millis(200);
        let max = Duration::from_secs(30);
        assert_eq!(backoff(0, initial, max, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(3, initial, max, 1.0), Duration::from_millis(1600));
        assert_eq!(backoff(20, initial, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, initial, max, 1.0), max);
        assert_eq!(backoff(3, initial, max, 0.5), Duration::from_millis(800));
        assert_eq!(backoff(3, initial, max, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(20, initial, max, 0.0), Duration::from_millis(100));
    }
}
