//! The processor's Prometheus metrics (ARCHITECTURE §7). Labels are bounded:
//! providers, outcomes, commit steps, reasons and task (partition) numbers.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use storefold_runtime::metrics::LATENCY_BUCKETS;
use storefold_runtime::register;

use crate::db::StoreMemory;

/// Batch sizes in events.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

#[derive(Clone, Debug)]
pub struct ProcessorMetrics {
    /// `storefold_processor_events_total{provider,outcome}`: applied, duplicate,
    /// parked, released, rejected.
    pub events: IntCounterVec,
    /// `storefold_processor_batch_events`: raw events per committed batch.
    pub batch_events: Histogram,
    /// `storefold_processor_commit_duration_seconds{step}`: changelog, marker,
    /// state, outbox, offsets, total.
    pub commit_seconds: HistogramVec,
    /// `storefold_processor_consumer_lag{task}`: raw records not yet folded.
    pub lag: IntGaugeVec,
    /// `storefold_processor_restore_records_total{task}`: changelog records read at start.
    pub restore_records: IntCounterVec,
    /// `storefold_processor_restore_remaining_records{task}`: still to read (0 when done).
    pub restore_remaining: IntGaugeVec,
    /// `storefold_processor_rocksdb_live_bytes{task}`
    pub live_bytes: IntGaugeVec,
    /// `storefold_processor_outbox_depth{task}`: outputs waiting to be produced.
    pub outbox_depth: IntGaugeVec,
    /// `storefold_processor_dlq_total{reason}`
    pub dlq: IntCounterVec,
    /// `storefold_processor_raw_shredded_total`: encrypted raw events whose
    /// data key was shredded (their subject was erased); `..._keys_shredded_total`:
    /// data keys this instance tombstoned for an erasure.
    pub raw_shredded: IntCounter,
    pub keys_shredded: IntCounter,
    /// `storefold_processor_oversized_total{kind}`: records that would have
    /// exceeded `message.max.bytes`: `dead_letter` (sent with the raw
    /// record's coordinates instead of its copy), `projection` (published
    /// trimmed), `state` (a state record: the batch fails, naming its key).
    pub oversized: IntCounterVec,
    /// `storefold_processor_dlq_records{topic}`: records a dead-letter topic holds
    /// in the partitions whose numbers this instance's tasks own (the sum over
    /// the instances is the topic's).
    pub dlq_records: IntGaugeVec,
    /// `storefold_processor_tasks`: tasks this instance owns.
    pub tasks: IntGauge,
    /// `storefold_processor_changelog_records_total{kind}`: restore findings
    /// (zombie, orphan) and repairs.
    pub changelog_findings: IntCounterVec,
    /// `storefold_processor_task_failures_total{reason}`: batches abandoned.
    pub task_failures: IntCounterVec,
    /// `storefold_processor_parked_events{task}`: events waiting for the order
    /// they name.
    pub parked_events: IntGaugeVec,
    /// `storefold_processor_parked_expired_total{provider}`: parked events given
    /// up on after `processor.park_timeout_hours` (sent to `dlq.processor`
    /// with reason `unresolved_order`).
    pub parked_expired: IntCounterVec,
    /// `storefold_processor_rocksdb_memory_bytes{kind}`: what the task stores
    /// of this instance hold in memory together: `block_cache` (data, index
    /// and filter blocks in the shared cache) and `memtables` (write buffers).
    pub rocksdb_memory: IntGaugeVec,
    /// `storefold_processor_memory_budget_bytes`: `processor.memory_budget_mb`
    /// in bytes, the bound of the two above together.
    pub memory_budget: IntGauge,
}

impl ProcessorMetrics {
    pub fn new(registry: &Registry) -> Self {
        let task_gauge = |name: &str, help: &str| {
            register!(registry, IntGaugeVec::new(Opts::new(name, help), &["task"]))
        };
        Self {
            events: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_events_total",
                        "Events by provider and outcome (applied, duplicate, parked, released, rejected)"
                    ),
                    &["provider", "outcome"]
                )
            ),
            batch_events: register!(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "storefold_processor_batch_events",
                        "Raw events per committed batch"
                    )
                    .buckets(BATCH_BUCKETS.to_vec())
                )
            ),
            commit_seconds: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "storefold_processor_commit_duration_seconds",
                        "Duration of each commit step (changelog, marker, state, outbox, offsets, total)"
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["step"]
                )
            ),
            lag: task_gauge(
                "storefold_processor_consumer_lag",
                "Raw records not yet folded, per task",
            ),
            restore_records: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_restore_records_total",
                        "Changelog records read while starting tasks"
                    ),
                    &["task"]
                )
            ),
            restore_remaining: task_gauge(
                "storefold_processor_restore_remaining_records",
                "Changelog records still to read before the task resumes",
            ),
            live_bytes: task_gauge(
                "storefold_processor_rocksdb_live_bytes",
                "RocksDB's estimate of live data per task",
            ),
            outbox_depth: task_gauge(
                "storefold_processor_outbox_depth",
                "Projections, triggers and dead letters waiting to be produced, per task",
            ),
            raw_shredded: register!(
                registry,
                IntCounter::new(
                    "storefold_processor_raw_shredded_total",
                    "Encrypted raw events read after their subject's data key was shredded"
                )
            ),
            keys_shredded: register!(
                registry,
                IntCounter::new(
                    "storefold_processor_keys_shredded_total",
                    "Raw-log data keys tombstoned because their subject was erased"
                )
            ),
            dlq: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_dlq_total",
                        "Raw events sent to the dead-letter topic, by reason"
                    ),
                    &["reason"]
                )
            ),
            oversized: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_oversized_total",
                        "Records that would have exceeded message.max.bytes, by kind (dead_letter: sent with coordinates; projection: published trimmed; state: batch failed)"
                    ),
                    &["kind"]
                )
            ),
            dlq_records: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "storefold_processor_dlq_records",
                        "Records held by a dead-letter topic (dlq.processor, dlq.sink.*) in the partitions of this instance's tasks"
                    ),
                    &["topic"]
                )
            ),
            tasks: register!(
                registry,
                IntGauge::new("storefold_processor_tasks", "Tasks owned by this instance")
            ),
            changelog_findings: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_changelog_records_total",
                        "Changelog records found at start that were not applied (zombie, orphan)"
                    ),
                    &["kind"]
                )
            ),
            task_failures: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_task_failures_total",
                        "Batches abandoned and tasks restarted from their committed state, by reason"
                    ),
                    &["reason"]
                )
            ),
            parked_events: task_gauge(
                "storefold_processor_parked_events",
                "Events waiting for the order they name, per task",
            ),
            parked_expired: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_processor_parked_expired_total",
                        "Parked events whose order never became known within processor.park_timeout_hours, sent to dlq.processor (reason unresolved_order), by provider"
                    ),
                    &["provider"]
                )
            ),
            rocksdb_memory: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "storefold_processor_rocksdb_memory_bytes",
                        "Memory the task stores of this instance use together, by kind (block_cache: data, index and filter blocks; memtables: write buffers)"
                    ),
                    &["kind"]
                )
            ),
            memory_budget: register!(
                registry,
                IntGauge::new(
                    "storefold_processor_memory_budget_bytes",
                    "RocksDB memory budget of this instance (processor.memory_budget_mb), block cache and memtables together"
                )
            ),
        }
    }

    /// Publishes what the shared block cache and the memtables hold now, and
    /// the budget they share.
    pub fn update_memory(&self, memory: &StoreMemory) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.memory_budget.set(gauge(memory.budget_bytes()));
        self.rocksdb_memory
            .with_label_values(&["block_cache"])
            .set(gauge(memory.block_cache_bytes()));
        self.rocksdb_memory
            .with_label_values(&["memtables"])
            .set(gauge(memory.memtable_bytes()));
    }
}
