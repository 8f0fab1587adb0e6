//! The quota planner: when the next HubSpot request may go out.
//!
//! HubSpot limits a portal's requests per rolling 10 seconds (policy
//! `TEN_SECONDLY_ROLLING`) and per day (`DAILY`); beyond either it answers 429.
//! The planner keeps storefold under both so that 429s stay exceptional:
//!
//! - **Rolling 10 s**: a request may start only when fewer than
//!   `requests_per_10s` requests ended in the last 10 seconds. A request counts
//!   from the moment its answer came back (or it failed), which is never before
//!   HubSpot saw it, so HubSpot's own window, counted on arrival, can never see
//!   more than the limit either.
//! - **Daily**: requests are counted per minute over the last 24 hours and a
//!   minute's requests count until that minute is a whole 24 hours old, which
//!   over-counts slightly and never under-counts. (HubSpot resets its daily
//!   count at midnight in the portal's time zone; a rolling day is stricter.)
//! - **Pause**: after a 429 the planner sends nothing until its `Retry-After`
//!   has passed.
//!
//! Waits up to [`MAX_INLINE_WAIT`] are slept inside the write; a longer one (the
//! daily quota is spent, or a long `Retry-After`) is handed back to the runner as
//! a retryable error carrying the wait, so the runner's backoff, circuit breaker
//! and shutdown stay in charge.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The rolling window of HubSpot's burst limit.
pub const WINDOW: Duration = Duration::from_secs(10);
/// A day.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const MINUTE: Duration = Duration::from_secs(60);
/// Slack added to every window so that timer granularity never lets a request
/// in a moment too early.
const MARGIN: Duration = Duration::from_millis(25);
/// Longest wait slept inside one write.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);

/// When the next request may go, given the requests already made.
#[derive(Debug)]
pub struct Planner {
    per_window: usize,
    per_day: u64,
    /// End times of the most recent requests (at most `per_window`).
    recent: VecDeque<Instant>,
    /// (minute start, requests ended in that minute), oldest first.
    daily: VecDeque<(Instant, u64)>,
    daily_total: u64,
    paused_until: Option<Instant>,
}

impl Planner {
    pub fn new(per_10s: u32, per_day: u32) -> Self {
        Self {
            per_window: per_10s.max(1) as usize,
            per_day: u64::from(per_day.max(1)),
            recent: VecDeque::new(),
            daily: VecDeque::new(),
            daily_total: 0,
            paused_until: None,
        }
    }

    fn forget(&mut self, now: Instant) {
        while self
            .daily
            .front()
            .is_some_and(|(start, _)| *start + DAY + MINUTE <= now)
        {
            if let Some((_, n)) = self.daily.pop_front() {
                self.daily_total -= n;
            }
        }
    }

    /// The earliest instant the next request may start (`now` when it may go now).
    pub fn next_slot(&mut self, now: Instant) -> Instant {
        self.forget(now);
        let mut at = now;
        if let Some(p) = self.paused_until {
            at = at.max(p);
        }
        if self.recent.len() >= self.per_window
            && let Some(first) = self.recent.get(self.recent.len() - self.per_window)
        {
            at = at.max(*first + WINDOW + MARGIN);
        }
        if self.daily_total >= self.per_day {
            // The oldest counted minute has to age out first.
            let mut freed = 0;
            for (start, n) in &self.daily {
                freed += n;
                if self.daily_total - freed < self.per_day {
                    at = at.max(*start + DAY + MINUTE);
                    break;
                }
            }
        }
        at
    }

    /// Records a request that ended (answered or failed) at `at`.
    pub fn record(&mut self, at: Instant) {
        self.recent.push_back(at);
        while self.recent.len() > self.per_window {
            self.recent.pop_front();
        }
        match self.daily.back_mut() {
            Some((start, n)) if at < *start + MINUTE => *n += 1,
            _ => self.daily.push_back((at, 1)),
        }
        self.daily_total += 1;
    }

    /// Sends nothing before `until` (a 429's `Retry-After`).
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Requests counted in the current rolling day.
    pub fn daily_count(&self) -> u64 {
        self.daily_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_limit_in_any_window() {
        let t0 = Instant::now();
        let mut p = Planner::new(3, 1000);
        let mut sent = Vec::new();
        let mut now = t0;
        for _ in 0..12 {
            now = p.next_slot(now);
            // Each request takes 100 ms.
            now += Duration::from_millis(100);
            p.record(now);
            sent.push(now);
        }
        for (i, a) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().filter(|b| **b < *a + WINDOW).count();
            assert!(in_window <= 3, "{in_window} requests within 10 s of #{i}");
        }
        // 12 requests at 3 per 10 s need at least 30 s.
        assert!(now - t0 >= Duration::from_secs(30));
    }

    #[test]
    fn a_pause_holds_every_request() {
        let t0 = Instant::now();
        let mut p = Planner::new(100, 1000);
        p.pause_until(t0 + Duration::from_secs(5));
        assert_eq!(p.next_slot(t0), t0 + Duration::from_secs(5));
        p.pause_until(t0 + Duration::from_secs(1));
        assert_eq!(p.next_slot(t0), t0 + Duration::from_secs(5));
        assert_eq!(
            p.next_slot(t0 + Duration::from_secs(6)),
            t0 + Duration::from_secs(6)
        );
    }

    #[test]
    fn the_daily_quota_waits_for_the_oldest_minute_to_age_out() {
        let t0 = Instant::now();
        let mut p = Planner::new(1000, 5);
        for i in 0..5 {
            p.record(t0 + Duration::from_secs(i));
        }
        let next = p.next_slot(t0 + Duration::from_secs(10));
        assert_eq!(next, t0 + DAY + MINUTE);
        assert_eq!(p.next_slot(next), next);
        assert_eq!(p.daily_count(), 0);
    }
}
