//! Retrying a write: the circuit breaker, the backoff between attempts, and
//! the write loop that honours both and the destination's `Retry-After`.

use std::time::{Duration, Instant};

use rand::Rng as _;

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

    pub(super) fn delay(&self, attempt: u32) -> Duration {
        backoff(
            attempt,
            Duration::from_millis(self.settings.retry_initial_ms),
            Duration::from_millis(self.settings.retry_max_ms),
            rand::rng().random(),
        )
    }

    pub(super) async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, Stop> {
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
