//! The reconcile role's metrics, registered in the registry the role serves
//! on `/metrics` (ARCHITECTURE.md §7: labels are the provider, the HTTP status
//! and the outcome, never the tenant).

use prometheus::{CounterVec, GaugeVec, IntCounterVec, Opts, Registry, core::Collector};

/// Handles on the reconcile metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Items the APIs listed in a pass window, by provider.
    pub listed: IntCounterVec,
    /// Items the raw log lacked and that were injected, by provider: the
    /// webhooks that were lost.
    pub gaps: IntCounterVec,
    /// API requests, by provider and HTTP status.
    pub requests: IntCounterVec,
    /// 429 answers, by provider.
    pub rate_limited: IntCounterVec,
    /// Seconds spent waiting for a provider's rate limit (429 or Shopify's
    /// call-limit header), by provider.
    pub throttle_seconds: CounterVec,
    /// Passes, by provider and outcome (`ok`, `error`).
    pub passes: IntCounterVec,
    /// When a pass last completed, by provider (Unix seconds).
    pub last_success: GaugeVec,
}

fn reg<C: Collector + Clone + 'static>(registry: &Registry, c: prometheus::Result<C>) -> C {
    let c = c.expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl Metrics {
    /// Registers the metrics in `registry` (panics on a second registration
    /// in the same registry, a programming error).
    pub fn new(registry: &Registry) -> Self {
        Self {
            listed: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_reconcile_listed_total",
                        "Items the provider APIs listed in reconciliation windows",
                    ),
                    &["provider"],
                ),
            ),
            gaps: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_reconcile_gaps_total",
                        "Items the raw log lacked (lost webhooks), injected as reconciled raw events",
                    ),
                    &["provider"],
                ),
            ),
            requests: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_reconcile_api_requests_total",
                        "Provider API requests made by reconciliation, by HTTP status",
                    ),
                    &["provider", "status"],
                ),
            ),
            rate_limited: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_reconcile_rate_limited_total",
                        "429 answers from provider APIs",
                    ),
                    &["provider"],
                ),
            ),
            throttle_seconds: reg(
                registry,
                CounterVec::new(
                    Opts::new(
                        "storefold_reconcile_throttle_seconds_total",
                        "Seconds reconciliation waited for provider rate limits",
                    ),
                    &["provider"],
                ),
            ),
            passes: reg(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_reconcile_passes_total",
                        "Reconciliation passes by outcome (ok, error)",
                    ),
                    &["provider", "outcome"],
                ),
            ),
            last_success: reg(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "storefold_reconcile_last_success_timestamp_seconds",
                        "When a reconciliation pass last completed (Unix seconds)",
                    ),
                    &["provider"],
                ),
            ),
        }
    }

    /// Metrics registered nowhere (tests, tools).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new())
    }

    pub(crate) fn request(&self, provider: &str, status: u16) {
        self.requests
            .with_label_values(&[provider, &status.to_string()])
            .inc();
    }

    pub(crate) fn rate_limited(&self, provider: &str) {
        self.rate_limited.with_label_values(&[provider]).inc();
    }

    pub(crate) fn throttled(&self, provider: &str, secs: f64) {
        self.throttle_seconds
            .with_label_values(&[provider])
            .inc_by(secs);
    }
}
