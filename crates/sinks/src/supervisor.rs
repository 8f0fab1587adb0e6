//! Sinks beside other roles (`storefold run`): a sink that stops with an error
//! (a fatal answer such as a 401, a consumer position that is gone, missing
//! topics) is restarted after a growing pause instead of taking the process
//! down, and [`SinkHealth`] says which sinks are failing, and why, for a
//! readiness check. A restarted sink counts as recovered once it has handled a
//! record again (written or dead-lettered).
//!
//! A standalone `storefold sink <name>` does not use this: it exits with the
//! error, and its supervisor (systemd, Kubernetes) restarts it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storefold_runtime::config::Config;
use tokio_util::sync::CancellationToken;

use crate::Sink;
use crate::runner::{RunOptions, RunSummary, SinkError, SinkMetrics, run_with_metrics};

/// The first pause before a restart; doubled per failure in a row.
const FIRST_RESTART: Duration = Duration::from_secs(1);
/// The longest pause between restarts.
const MAX_RESTART: Duration = Duration::from_secs(60);

/// The pause before restart number `failures` (1 for the first).
pub fn restart_delay(failures: u32) -> Duration {
    FIRST_RESTART
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_RESTART)
}

#[derive(Debug, Clone)]
struct Failing {
    reason: String,
    failures: u32,
    /// Records handled (written + rejected) when it failed.
    progress_then: u64,
}

/// Which sinks are failing; shared by the supervisors and the readiness check.
#[derive(Debug, Clone)]
pub struct SinkHealth {
    failing: Arc<Mutex<BTreeMap<&'static str, Failing>>>,
    metrics: SinkMetrics,
}

impl SinkHealth {
    /// Health read from the sinks' shared metrics.
    pub fn new(metrics: &SinkMetrics) -> Self {
        Self {
            failing: Arc::default(),
            metrics: metrics.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Failing>> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn progress(&self, sink: &str) -> u64 {
        ["written", "rejected"]
            .iter()
            .map(|o| self.metrics.writes.with_label_values(&[sink, o]).get())
            .sum()
    }

    /// Records a failure; returns how many failures in a row this sink has had.
    fn failed(&self, sink: &'static str, reason: String) -> u32 {
        let progress = self.progress(sink);
        let mut failing = self.lock();
        let failures = match failing.get(sink) {
            // Still failing since the last time (nothing handled since).
            Some(f) if progress <= f.progress_then => f.failures + 1,
            _ => 1,
        };
        failing.insert(
            sink,
            Failing {
                reason,
                failures,
                progress_then: progress,
            },
        );
        failures
    }

    /// `Ok` when no sink is failing; else one line per failing sink with its
    /// last error. A sink that handled records since its failure recovered.
    pub fn check(&self) -> Result<(), String> {
        let mut failing = self.lock();
        let recovered: Vec<&'static str> = failing
            .iter()
            .filter(|(name, f)| self.progress(name) > f.progress_then)
            .map(|(name, _)| *name)
            .collect();
        for name in recovered {
            failing.remove(name);
            tracing::info!(sink = name, "sink recovered: it writes again");
        }
        if failing.is_empty() {
            return Ok(());
        }
        Err(failing
            .iter()
            .map(|(name, f)| {
                format!(
                    "sink {name} is failing ({} failure(s) in a row; restarting with backoff): {}",
                    f.failures, f.reason
                )
            })
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Runs `sink` until `stop`, restarting it after each error with a growing
/// pause ([`restart_delay`]) and reporting it in `health` meanwhile.
pub async fn supervise<S: Sink>(
    mut sink: S,
    config: Config,
    opts: RunOptions,
    metrics: SinkMetrics,
    health: SinkHealth,
    stop: CancellationToken,
) -> Result<RunSummary, SinkError> {
    let name = sink.name();
    let mut total = RunSummary::default();
    loop {
        match run_with_metrics(&mut sink, &config, opts.clone(), &metrics, stop.clone()).await {
            Ok(s) => {
                total.written += s.written;
                total.rejected += s.rejected;
                total.batches += s.batches;
                total.assignments += s.assignments;
                return Ok(total);
            }
            Err(e) => {
                let failures = health.failed(name, e.to_string());
                let delay = restart_delay(failures);
                tracing::error!(
                    sink = name,
                    error = %e,
                    failures,
                    ?delay,
                    "sink failed; restarting it after a pause (the other roles keep running)"
                );
                tokio::select! {
                    _ = stop.cancelled() => return Ok(total),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_up_to_a_minute() {
        assert_eq!(restart_delay(1), Duration::from_secs(1));
        assert_eq!(restart_delay(2), Duration::from_secs(2));
        assert_eq!(restart_delay(4), Duration::from_secs(8));
        assert_eq!(restart_delay(7), Duration::from_secs(60));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn a_failing_sink_is_reported_until_it_handles_records_again() {
        let registry = prometheus::Registry::new();
        let metrics = SinkMetrics::new(&registry);
        let health = SinkHealth::new(&metrics);
        assert_eq!(health.check(), Ok(()));
        assert_eq!(health.failed("webhook", "fatal: 401".into()), 1);
        assert_eq!(health.failed("webhook", "fatal: 401 again".into()), 2);
        let err = health.check().unwrap_err();
        assert!(
            err.contains("sink webhook") && err.contains("401 again") && err.contains("2 failure"),
            "{err}"
        );
        // Another sink's progress does not count.
        metrics
            .writes
            .with_label_values(&["postgres", "written"])
            .inc();
        assert!(health.check().is_err());
        metrics
            .writes
            .with_label_values(&["webhook", "written"])
            .inc_by(3);
        assert_eq!(health.check(), Ok(()));
        // A new failure after the recovery starts the count again.
        assert_eq!(health.failed("webhook", "fatal: 401".into()), 1);
    }
}
