//! The runner's Prometheus metrics, one set per registry, labelled by sink.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use storefold_runtime::metrics::LATENCY_BUCKETS;
use storefold_runtime::register;

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
/// set, so a registry serves one [`run`](super::run).
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
    pub(super) fn for_sink(&self, sink: &str) -> Bound {
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

/// The handles of one sink's series.
pub(super) struct Bound {
    pub(super) written: IntCounter,
    pub(super) rejected: IntCounter,
    pub(super) superseded: IntCounter,
    pub(super) retries: IntCounter,
    pub(super) dlq: IntCounter,
    pub(super) batch_size: Histogram,
    pub(super) write_seconds: Histogram,
    pub(super) circuit: IntGauge,
    pub(super) end_to_end: Histogram,
    pub(super) lag: IntGauge,
}
