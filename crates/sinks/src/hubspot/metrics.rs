//! The HubSpot sink's metrics.

use super::*;

/// The sink's metrics (ARCHITECTURE §7).
#[derive(Clone, Debug)]
pub struct HubSpotMetrics {
    /// `storefold_sink_hubspot_requests_total{endpoint,status}`; `status` is the
    /// HTTP status, or `timeout`, `connect_error`, `transport_error`.
    pub requests: IntCounterVec,
    /// `storefold_sink_hubspot_quota_wait_seconds`: how long each request waited
    /// for the quota planner.
    pub quota_wait: Histogram,
    /// `storefold_sink_hubspot_skipped_total{reason}`: records or associations
    /// deliberately not written (`no_email`, `merged`, `erasure_unaddressable`
    /// (dead-lettered too), `trigger_unknown_customer`, `association_customer_unknown`,
    /// `association_contact_not_found`, `association_rejected`,
    /// `association_archive_rejected`).
    pub skipped: IntCounterVec,
}

impl HubSpotMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "storefold_sink_hubspot_requests_total",
                "HubSpot API requests by endpoint and answer status",
            ),
            &["endpoint", "status"],
        )?;
        let quota_wait = Histogram::with_opts(
            HistogramOpts::new(
                "storefold_sink_hubspot_quota_wait_seconds",
                "Time a HubSpot request waited for the quota planner",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "storefold_sink_hubspot_skipped_total",
                "Records and associations the HubSpot sink did not write, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(quota_wait.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        Ok(Self {
            requests,
            quota_wait,
            skipped,
        })
    }

    pub(super) fn skip(&self, reason: &str) {
        self.skipped.with_label_values(&[reason]).inc();
    }
}
