//! storefold-reconcile: the reconciliation polls of issue 19.
//!
//! Webhooks get lost (an endpoint down past the provider's retry window, a
//! disabled subscription). A pass asks a provider's API what changed in a time
//! window ([`Poller`]: the Stripe event list, Shopify orders updated since,
//! WooCommerce orders modified since), shapes every item as the webhook that
//! would have carried it ([`Found`]), compares it with what the raw log holds
//! ([`facts`] of the stored raw events) and returns the items the log lacks as
//! raw events marked as reconciled ([`reconciled_raw`]). The processor folds
//! them like any webhook: the provider mappers read them unchanged.
//!
//! Idempotency: a reconciled raw event carries the idempotency id the ingest
//! derives for the equivalent webhook wherever the API exposes it (Stripe: the
//! `evt_` id, the same Event object; WooCommerce: `order:<id>:<date_modified_gmt>`,
//! derived by the provider's own `describe`), so a later webhook is a duplicate
//! for the processor and the fold. Shopify's key (`X-Shopify-Event-Id`) is not
//! in the Admin API: a Shopify order version is recognised by (order id,
//! `updated_at`) instead, both in the raw log and in what is injected (see
//! [`shopify`]).
//!
//! [`Reconciler`] runs passes per source on their schedules, keeps cursors
//! ([`cursor::CursorFile`]) and counts what it finds ([`Metrics`]); the raw log
//! itself is behind [`RawLog`] (Kafka in the `storefold reconcile` role, a
//! vector in tests).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use storefold_codec::{RawEvent, Verification};
use storefold_providers::ProviderKind;
use time::OffsetDateTime;

mod client;
pub mod cursor;
mod metrics;
pub mod shopify;
pub mod stripe;
pub mod woocommerce;

pub use client::RateLimits;
pub use metrics::Metrics;

/// The header a reconciled raw event carries (the ingest never keeps it: no
/// provider lists it in its kept headers), with the API call that found it.
pub const RECONCILED_HEADER: &str = "x-storefold-reconciled";

/// What went wrong in a pass. Every error ends the pass for that source only;
/// its cursor stays where it was, so the next pass covers the window again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request did not complete (connection, TLS, timeout): external, a
    /// retry may help.
    #[error("{provider}: request failed: {reason}")]
    Http {
        provider: &'static str,
        reason: String,
    },
    /// The API answered with an error status: a 401/403 is the tenant's
    /// credentials (configuration), anything else external.
    #[error("{provider}: the API answered {status}: {body}")]
    Status {
        provider: &'static str,
        status: u16,
        body: String,
    },
    /// Still rate limited after the retries, or asked to wait longer than allowed.
    #[error("{provider}: rate limited (asked to wait {wait:?})")]
    RateLimited {
        provider: &'static str,
        wait: Duration,
    },
    /// The API answered something that is not what its contract says.
    #[error("{provider}: unexpected answer: {reason}")]
    Payload {
        provider: &'static str,
        reason: String,
    },
    /// The raw log could not be read or written.
    #[error("raw log: {0}")]
    RawLog(String),
    /// The cursor file could not be read or written.
    #[error("cursors: {0}")]
    Cursor(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The time window a pass lists: changes at or after `since`, at or before `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

/// How far passes reach back and how recent a change must be left alone.
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    /// A change younger than this is left for its webhook (still being
    /// delivered or retried); the next pass looks at it.
    pub settle: Duration,
    /// Each window starts this much before the previous window's end
    /// (provider clocks, items committed late): the overlap is compared with
    /// the raw log again and costs nothing else.
    pub overlap: Duration,
    /// How far the first pass (no cursor) reaches back, and the most any pass
    /// reaches back (Stripe lists 30 days of events).
    pub lookback: Duration,
}

impl Default for Reach {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(15 * 60),
            overlap: Duration::from_secs(60 * 60),
            lookback: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

impl Reach {
    /// The window of a pass at `now` after a previous one that ended at `cursor`.
    pub fn window(&self, cursor: Option<OffsetDateTime>, now: OffsetDateTime) -> Window {
        let until = now - self.settle;
        let floor = now - self.lookback;
        let since = cursor.map_or(floor, |c| (c - self.overlap).max(floor));
        Window {
            since: since.min(until),
            until,
        }
    }
}

/// One item an API listed, shaped as the webhook that would have carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub provider: ProviderKind,
    /// The webhook topic (`charge.refunded`, `orders/updated`, `order.updated`).
    pub topic: String,
    /// The idempotency id the raw event gets (see the crate docs).
    pub event_id: String,
    /// The key the raw log is searched for (see [`facts`]).
    pub fact: String,
    /// The provider headers the webhook would have carried (lower case).
    pub headers: BTreeMap<String, String>,
    /// The webhook body: the API's object as JSON.
    pub body: Vec<u8>,
    /// When the item changed, by the provider's clock.
    pub changed_at: OffsetDateTime,
    /// The API call that listed it (`GET /v1/events`).
    pub source: &'static str,
}

/// The poller of one provider.
#[derive(Debug)]
pub enum Poller {
    Stripe(stripe::Stripe),
    Shopify(shopify::Shopify),
    WooCommerce(woocommerce::WooCommerce),
}

impl Poller {
    /// The provider it polls.
    pub fn provider(&self) -> ProviderKind {
        match self {
            Poller::Stripe(_) => ProviderKind::Stripe,
            Poller::Shopify(_) => ProviderKind::Shopify,
            Poller::WooCommerce(_) => ProviderKind::WooCommerce,
        }
    }

    /// Everything the API lists as changed in `window`.
    pub async fn list(&self, window: Window) -> Result<Vec<Found>> {
        match self {
            Poller::Stripe(p) => p.list(window).await,
            Poller::Shopify(p) => p.list(window).await,
            Poller::WooCommerce(p) => p.list(window).await,
        }
    }
}

/// The facts a stored raw event stands for: its event id, and for a Shopify
/// order webhook whose body is readable the order version
/// ([`shopify::fact_of_body`]). An encrypted body gives its event id only.
pub fn facts(raw: &RawEvent) -> Vec<String> {
    let mut out = vec![raw.event_id.clone()];
    if raw.provider == ProviderKind::Shopify.name()
        && raw.encryption.is_none()
        && raw.topic.starts_with("orders/")
        && let Some(f) = shopify::fact_of_body(&raw.body)
    {
        out.push(f);
    }
    out
}

/// The raw event the ingest would have stored for `found`, marked as
/// reconciled: the header [`RECONCILED_HEADER`] names the API call, and the
/// verification scheme is `reconcile:<provider>-api` (verified: the data was
/// fetched from the provider's API with the tenant's credentials over TLS).
/// No schema change: the scheme is a string and the headers a map.
pub fn reconciled_raw(tenant: &str, found: &Found, now: OffsetDateTime) -> RawEvent {
    let mut headers = found.headers.clone();
    headers.insert(RECONCILED_HEADER.to_string(), found.source.to_string());
    RawEvent {
        event_id: found.event_id.clone(),
        tenant: tenant.to_string(),
        provider: found.provider.name().to_string(),
        topic: found.topic.clone(),
        received_at: millis(now),
        headers,
        body: found.body.clone(),
        verification: Verification::verified(format!("reconcile:{}-api", found.provider.name())),
        trace_context: None,
        encryption: None,
        residue: None,
    }
}

/// Whether a raw event was injected by reconciliation.
pub fn is_reconciled(raw: &RawEvent) -> bool {
    raw.headers.contains_key(RECONCILED_HEADER)
}

/// The items of `found` whose fact `known` lacks, once each, as reconciled
/// raw events (in the order listed).
pub fn gaps(
    tenant: &str,
    found: &[Found],
    known: &HashSet<String>,
    now: OffsetDateTime,
) -> Vec<RawEvent> {
    let mut seen = HashSet::new();
    found
        .iter()
        .filter(|f| !known.contains(&f.fact) && seen.insert(f.fact.clone()))
        .map(|f| reconciled_raw(tenant, f, now))
        .collect()
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Where raw events are read and injected: the `raw.<provider>` topics in
/// the role, a vector in tests.
pub trait RawLog {
    /// The [`facts`] of the raw events of `tenant` and `provider` received at
    /// or after `since`.
    fn facts(
        &mut self,
        tenant: &str,
        provider: ProviderKind,
        since: OffsetDateTime,
    ) -> impl std::future::Future<Output = Result<HashSet<String>>> + Send;

    /// Appends reconciled raw events (acknowledged when this returns `Ok`).
    fn inject(
        &mut self,
        events: Vec<RawEvent>,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// An in-memory raw log (tests and `--once` dry runs).
#[derive(Debug, Default, Clone)]
pub struct MemLog {
    pub events: Vec<RawEvent>,
}

impl RawLog for MemLog {
    async fn facts(
        &mut self,
        tenant: &str,
        provider: ProviderKind,
        since: OffsetDateTime,
    ) -> Result<HashSet<String>> {
        let since = millis(since);
        Ok(self
            .events
            .iter()
            .filter(|r| r.tenant == tenant && r.provider == provider.name())
            .filter(|r| r.received_at >= since)
            .flat_map(facts)
            .collect())
    }

    async fn inject(&mut self, events: Vec<RawEvent>) -> Result<()> {
        self.events.extend(events);
        Ok(())
    }
}

/// One tenant's poller and how often it runs.
#[derive(Debug)]
pub struct Source {
    pub tenant: String,
    pub poller: Poller,
    /// Time between passes.
    pub interval: Duration,
}

/// What one pass found.
#[derive(Debug, Clone)]
pub struct Report {
    pub tenant: String,
    pub provider: ProviderKind,
    pub window: Window,
    /// Items the API listed in the window.
    pub listed: usize,
    /// The raw events injected (what the raw log lacked).
    pub injected: Vec<RawEvent>,
}

/// Passes over every source, with cursors and metrics.
#[derive(Debug)]
pub struct Reconciler {
    pub sources: Vec<Source>,
    pub reach: Reach,
    pub cursors: cursor::CursorFile,
    pub metrics: Metrics,
}

impl Reconciler {
    /// One pass of source `i` at `now`: list the window, compare with the raw
    /// log, inject the gaps, then (only once they are acknowledged) move the
    /// cursor to the window's end.
    pub async fn pass<L: RawLog>(
        &mut self,
        i: usize,
        log: &mut L,
        now: OffsetDateTime,
    ) -> Result<Report> {
        let src = &self.sources[i];
        let provider = src.poller.provider();
        let name = provider.name();
        let window = self.reach.window(self.cursors.get(&src.tenant, name), now);
        let out = async {
            let found = src.poller.list(window).await?;
            // Webhooks arrive after the change: the raw log is read from the
            // window's start, less the overlap for clock differences.
            let known = log
                .facts(&src.tenant, provider, window.since - self.reach.overlap)
                .await?;
            let injected = gaps(&src.tenant, &found, &known, now);
            if !injected.is_empty() {
                log.inject(injected.clone()).await?;
            }
            Ok::<_, Error>((found.len(), injected))
        }
        .await;
        let m = &self.metrics;
        match out {
            Ok((listed, injected)) => {
                self.cursors.set(&src.tenant, name, window.until)?;
                m.listed.with_label_values(&[name]).inc_by(listed as u64);
                m.gaps
                    .with_label_values(&[name])
                    .inc_by(injected.len() as u64);
                m.passes.with_label_values(&[name, "ok"]).inc();
                m.last_success
                    .with_label_values(&[name])
                    .set(now.unix_timestamp() as f64);
                for r in &injected {
                    tracing::warn!(
                        tenant = %src.tenant, provider = name, topic = %r.topic,
                        event_id = %r.event_id, "reconcile: the raw log lacked this; injected"
                    );
                }
                Ok(Report {
                    tenant: src.tenant.clone(),
                    provider,
                    window,
                    listed,
                    injected,
                })
            }
            Err(e) => {
                m.passes.with_label_values(&[name, "error"]).inc();
                tracing::error!(tenant = %src.tenant, provider = name, error = %e, "reconcile pass failed");
                Err(e)
            }
        }
    }

    /// One pass of every source (`storefold reconcile --once`).
    pub async fn once<L: RawLog>(
        &mut self,
        log: &mut L,
        now: impl Fn() -> OffsetDateTime,
    ) -> Vec<(String, ProviderKind, Result<Report>)> {
        let mut out = Vec::new();
        for i in 0..self.sources.len() {
            let r = self.pass(i, log, now()).await;
            let s = &self.sources[i];
            out.push((s.tenant.clone(), s.poller.provider(), r));
        }
        out
    }

    /// Passes every source on its own interval until `stop` resolves. A
    /// failed pass is logged and counted; the source's next pass retries its
    /// window.
    pub async fn run<L: RawLog>(
        &mut self,
        log: &mut L,
        now: impl Fn() -> OffsetDateTime,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut next: Vec<tokio::time::Instant> =
            vec![tokio::time::Instant::now(); self.sources.len()];
        tokio::pin!(stop);
        loop {
            let Some((i, at)) = next.iter().copied().enumerate().min_by_key(|(_, t)| *t) else {
                stop.await;
                return;
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep_until(at) => {}
            }
            let _ = self.pass(i, log, now()).await;
            next[i] = tokio::time::Instant::now() + self.sources[i].interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_first_window_reaches_back_the_lookback_and_later_ones_overlap() {
        let reach = Reach {
            settle: Duration::from_secs(600),
            overlap: Duration::from_secs(3600),
            lookback: Duration::from_secs(86400),
        };
        let now = datetime!(2026-01-02 12:00 UTC);
        let w = reach.window(None, now);
        assert_eq!(w.since, datetime!(2026-01-01 12:00 UTC));
        assert_eq!(w.until, datetime!(2026-01-02 11:50 UTC));
        let w = reach.window(Some(datetime!(2026-01-02 11:00 UTC)), now);
        assert_eq!(w.since, datetime!(2026-01-02 10:00 UTC));
        // A cursor older than the lookback is clamped to it.
        let w = reach.window(Some(datetime!(2025-01-01 0:00 UTC)), now);
        assert_eq!(w.since, datetime!(2026-01-01 12:00 UTC));
    }
}
