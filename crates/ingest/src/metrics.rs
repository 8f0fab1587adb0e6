//! The ingest's Prometheus metrics (ARCHITECTURE §7).

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use storefold_runtime::metrics::{LATENCY_BUCKETS, SIZE_BUCKETS};
use storefold_runtime::register;

/// Counters and histograms of the HTTP ingest. Labels are bounded: provider names
/// (or `unknown`), HTTP statuses, reason codes and outcomes — never tenants.
#[derive(Clone, Debug)]
pub struct IngestMetrics {
    /// `storefold_ingest_requests_total{provider,status}`
    pub requests: IntCounterVec,
    /// `storefold_ingest_signature_failures_total{provider,reason}`
    pub signature_failures: IntCounterVec,
    /// `storefold_ingest_body_bytes{provider}`
    pub body_bytes: HistogramVec,
    /// `storefold_ingest_publish_duration_seconds{provider,outcome}`: from the
    /// produce call to Kafka's acknowledgement (or its failure).
    pub publish_seconds: HistogramVec,
    /// `storefold_ingest_in_flight_requests`
    pub in_flight: IntGauge,
    /// `storefold_ingest_last_accepted_timestamp_seconds{provider}`: Unix time of
    /// the last request this instance stored (answered 2xx).
    pub last_accepted: GaugeVec,
    /// `storefold_ingest_readiness_checks_total`: Kafka metadata requests made
    /// for `/readyz` (cached for `ingest.ready_cache_ms`).
    pub ready_checks: IntCounter,
    /// `storefold_ingest_raw_keys_created_total`: data keys this instance
    /// created for the subjects of encrypted raw bodies (crypto-shredding).
    pub raw_keys_created: IntCounter,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            requests: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_ingest_requests_total",
                        "Webhook and collect requests by provider and HTTP status"
                    ),
                    &["provider", "status"]
                )
            ),
            signature_failures: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_ingest_signature_failures_total",
                        "Requests rejected with 401 by provider and reason"
                    ),
                    &["provider", "reason"]
                )
            ),
            body_bytes: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "storefold_ingest_body_bytes",
                        "Size of accepted request bodies in bytes"
                    )
                    .buckets(SIZE_BUCKETS.to_vec()),
                    &["provider"]
                )
            ),
            publish_seconds: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "storefold_ingest_publish_duration_seconds",
                        "Time from producing a raw event to Kafka's acknowledgement (acks=all)"
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["provider", "outcome"]
                )
            ),
            in_flight: register!(
                registry,
                IntGauge::new(
                    "storefold_ingest_in_flight_requests",
                    "Requests being handled now"
                )
            ),
            last_accepted: register!(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "storefold_ingest_last_accepted_timestamp_seconds",
                        "Unix time of the last request of a provider this instance stored (2xx)"
                    ),
                    &["provider"]
                )
            ),
            ready_checks: register!(
                registry,
                IntCounter::new(
                    "storefold_ingest_readiness_checks_total",
                    "Kafka metadata requests made to answer /readyz (the answer is cached)"
                )
            ),
            raw_keys_created: register!(
                registry,
                IntCounter::new(
                    "storefold_ingest_raw_keys_created_total",
                    "Data keys created for the subjects of encrypted raw bodies"
                )
            ),
        }
    }
}

/// Counts a request as in flight until dropped (also when the client goes away).
#[derive(Debug)]
pub(crate) struct InFlight(IntGauge);

impl InFlight {
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
