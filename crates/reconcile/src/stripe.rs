//! Stripe: `GET /v1/events`, the same Event objects the webhooks carry (same
//! `evt_` id), so a reconciled event and its webhook are one event for the
//! processor.
//!
//! The contract (Stripe API reference, "List all events"): events of the last
//! 30 days, newest first; `created[gte]` / `created[lte]` bound the time (Unix
//! seconds); `limit` 1..=100 (default 10); `starting_after=<last id of the
//! page>` gives the next page while `has_more` is true; `types[]` (up to 20)
//! filters event types. Each event is rendered in the API version of its
//! creation, whatever `Stripe-Version` says, so the body is the webhook's.
//! Authentication: `Authorization: Bearer <secret or restricted key>` (a
//! restricted key needs read access to events). 429 is retried after
//! `Retry-After` or a backoff.

use std::collections::BTreeMap;

use storefold_providers::ProviderKind;
use time::OffsetDateTime;

use crate::client::{Auth, Client, RateLimits, url};
use crate::{Error, Found, Metrics, Result, Window};

/// `limit`'s maximum.
pub const MAX_PAGE: u32 = 100;

/// The event types the Stripe mapper reads (charges, refunds, disputes,
/// payment intents): 19, within the 20 `types[]` allows.
pub const TYPES: &[&str] = &[
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "charge.succeeded",
    "charge.captured",
    "charge.updated",
    "charge.failed",
    "charge.refunded",
    "charge.expired",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
];

/// A tenant's Stripe account, read through the event list.
#[derive(Debug)]
pub struct Stripe {
    client: Client,
    base_url: String,
    page_size: u32,
}

impl Stripe {
    /// `base_url` is `https://api.stripe.com` (a stand-in in tests); `page_size`
    /// is clamped to 1..=100.
    pub fn new(
        base_url: &str,
        api_key: &str,
        page_size: u32,
        limits: RateLimits,
        metrics: Metrics,
    ) -> Result<Self> {
        Ok(Self {
            client: Client::new("stripe", Auth::Bearer(api_key.to_string()), limits, metrics)?,
            base_url: base_url.to_string(),
            page_size: page_size.clamp(1, MAX_PAGE),
        })
    }

    pub(crate) async fn list(&self, window: Window) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = vec![
                ("created[gte]", window.since.unix_timestamp().to_string()),
                ("created[lte]", window.until.unix_timestamp().to_string()),
                ("limit", self.page_size.to_string()),
            ];
            q.extend(TYPES.iter().map(|t| ("types[]", (*t).to_string())));
            if let Some(a) = &after {
                q.push(("starting_after", a.clone()));
            }
            let page = self
                .client
                .get(&url(&self.base_url, "/v1/events", &q))
                .await?;
            let data = page
                .body
                .get("data")
                .and_then(|d| d.as_array())
                .ok_or_else(|| bad("a list without `data`"))?;
            for event in data {
                out.push(found(event)?);
            }
            let has_more = page
                .body
                .get("has_more")
                .and_then(serde_json::Value::as_bool)
                .ok_or_else(|| bad("a list without `has_more`"))?;
            match (has_more, out.last()) {
                (true, Some(last)) if !data.is_empty() => after = Some(last.event_id.clone()),
                (true, _) => return Err(bad("`has_more` on an empty page")),
                (false, _) => return Ok(out),
            }
        }
    }
}

fn bad(reason: &str) -> Error {
    Error::Payload {
        provider: "stripe",
        reason: reason.to_string(),
    }
}

/// An event as its webhook: topic = `type`, idempotency id = `id`.
fn found(event: &serde_json::Value) -> Result<Found> {
    let id = event
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("an event without `id`"))?;
    let kind = event
        .get("type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("an event without `type`"))?;
    let created = event
        .get("created")
        .and_then(serde_json::Value::as_i64)
        .and_then(|c| OffsetDateTime::from_unix_timestamp(c).ok())
        .ok_or_else(|| bad("an event without `created`"))?;
    let body = serde_json::to_vec(event).map_err(|e| bad(&e.to_string()))?;
    Ok(Found {
        provider: ProviderKind::Stripe,
        topic: kind.to_string(),
        event_id: id.to_string(),
        fact: id.to_string(),
        headers: BTreeMap::new(),
        body,
        changed_at: created,
        source: "stripe GET /v1/events",
    })
}
