//! Retrying a write: the circuit breaker, the backoff between attempts, and
//! the write loop that honours both and the destination's `Retry-After`.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::{Runner, SinkError, Stop};
use crate::{Rejection, Sink, SinkRecord, WriteError};

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

/// The pauses between attempts, endless: exponential from `initial`, doubled
/// each time up to `max`, each drawn at random in the upper half of its step
/// ("equal jitter", by `backon`): sinks failing together spread out, and none
/// retries sooner than half of `initial`, so a run of small draws cannot make
/// a sink spin hot.
pub fn backoff(initial: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    let initial = initial.min(max);
    ExponentialBuilder::new()
        .with_min_delay(initial / 2)
        .with_max_delay(max / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

impl<S: Sink> Runner<'_, S> {
    pub(super) fn set_circuit(&self, state: CircuitState) {
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

    /// A fresh series of pauses from `sinks.retry_initial_ms` to `retry_max_ms`.
    pub(super) fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<S> {
        backoff(
            Duration::from_millis(self.settings.retry_initial_ms),
            Duration::from_millis(self.settings.retry_max_ms),
        )
    }

    pub(super) async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, Stop> {
        self.metrics.batch_size.observe(batch.len() as f64);
        let mut attempt = 0u32;
        let mut delays = self.delays();
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
                    let delay = delays
                        .next()
                        .unwrap_or(self.max_retry_after)
                        .max(asked.min(self.max_retry_after));
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn backoff_doubles_up_to_the_cap_within_the_upper_half_of_each_step() {
        let initial = Duration::from_millis(200);
        let max = Duration::from_secs(30);
        // Two series: the draws differ, the bounds do not.
        for _ in 0..2 {
            let delays: Vec<Duration> = backoff(initial, max).take(40).collect();
            assert_eq!(delays.len(), 40, "the series never ends");
            for (n, d) in delays.iter().enumerate() {
                let step = initial
                    .saturating_mul(2u32.saturating_pow(n as u32))
                    .min(max);
                // f32 arithmetic in backon: a millisecond of slack.
                let slack = Duration::from_millis(1);
                assert!(
                    *d + slack >= step / 2,
                    "retry {n}: {d:?} below half of {step:?}"
                );
                assert!(*d <= step + slack, "retry {n}: {d:?} above {step:?}");
                assert!(*d >= initial / 2 - slack, "retry {n}: {d:?} spins hot");
            }
        }
        // A first delay above the maximum is the maximum's series.
        let big: Vec<Duration> = backoff(Duration::from_secs(60), max).take(3).collect();
        for d in big {
            assert!(d <= max + Duration::from_millis(1), "{d:?}");
            assert!(d + Duration::from_millis(1) >= max / 2, "{d:?}");
        }
    }
}
