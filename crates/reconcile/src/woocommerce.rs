//! WooCommerce: orders modified in the window, through the REST API
//! (`GET /wp-json/wc/v3/orders`). A WooCommerce order webhook's body is the
//! same REST representation of the order, and its refunds are listed in it
//! (`refunds`), so the mapper reads a listed order as an `order.updated`
//! delivery, and the provider's own `describe` gives it the webhook's
//! idempotency id `order:<id>:<date_modified_gmt>`: a reconciled copy and the
//! webhook of one order version are one event.
//!
//! The contract (WooCommerce REST API v3 docs, "List all orders"; WordPress
//! REST API pagination): `modified_after` / `modified_before` (ISO 8601,
//! WooCommerce 5.8+), read as GMT with `dates_are_gmt=true`; `per_page` up to
//! 100 (default 10); `page` from 1; every answer carries `X-WP-Total` and
//! `X-WP-TotalPages`. Authentication over HTTPS: HTTP Basic with the consumer
//! key and secret. 429 (a host's or plugin's limiter) is retried after
//! `Retry-After` or a backoff.

use std::collections::BTreeMap;

use storefold_providers::{Headers, ProviderKind, WebhookRequest};
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use time::macros::format_description;

use crate::client::{Auth, Client, RateLimits, header, url};
use crate::{Error, Found, Metrics, Result, Window};

/// `per_page`'s maximum.
pub const MAX_PAGE: u32 = 100;

/// A tenant's WooCommerce store.
#[derive(Debug)]
pub struct WooCommerce {
    client: Client,
    base_url: String,
    page_size: u32,
}

impl WooCommerce {
    /// `base_url` is the store's site URL (`https://shop.example`); `page_size`
    /// is clamped to 1..=100.
    pub fn new(
        base_url: &str,
        consumer_key: &str,
        consumer_secret: &str,
        page_size: u32,
        limits: RateLimits,
        metrics: Metrics,
    ) -> Result<Self> {
        Ok(Self {
            client: Client::new(
                "woocommerce",
                Auth::Basic {
                    user: consumer_key.to_string(),
                    password: consumer_secret.to_string(),
                },
                limits,
                metrics,
            )?,
            base_url: base_url.to_string(),
            page_size: page_size.clamp(1, MAX_PAGE),
        })
    }

    pub(crate) async fn list(&self, window: Window) -> Result<Vec<Found>> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let q = [
                ("modified_after", gmt(window.since)?),
                ("modified_before", gmt(window.until)?),
                ("dates_are_gmt", "true".to_string()),
                ("per_page", self.page_size.to_string()),
                ("page", page.to_string()),
            ];
            let answer = self
                .client
                .get(&url(&self.base_url, "/wp-json/wc/v3/orders", &q))
                .await?;
            let orders = answer
                .body
                .as_array()
                .ok_or_else(|| bad("an answer that is not a list of orders"))?;
            for o in orders {
                out.push(self.found(o)?);
            }
            let pages: u32 = header(&answer.headers, "x-wp-totalpages")
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("an answer without `X-WP-TotalPages`"))?;
            if page >= pages || orders.is_empty() {
                return Ok(out);
            }
            page += 1;
        }
    }

    fn found(&self, order: &serde_json::Value) -> Result<Found> {
        let topic = "order.updated";
        let source = format!("{}/", self.base_url.trim_end_matches('/'));
        let pairs = [
            ("x-wc-webhook-topic", topic),
            ("x-wc-webhook-resource", "order"),
            ("x-wc-webhook-event", "updated"),
            ("x-wc-webhook-source", source.as_str()),
        ];
        let body = serde_json::to_vec(order).map_err(|e| bad(&e.to_string()))?;
        let headers = Headers::from_pairs(pairs);
        let inbound = ProviderKind::WooCommerce
            .describe(&WebhookRequest {
                headers: &headers,
                body: &body,
                url_token: None,
            })
            .map_err(|e| bad(&format!("an order the webhook mapper cannot describe: {e}")))?;
        let changed_at = inbound
            .occurred_at
            .or_else(|| modified(order))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(Found {
            provider: ProviderKind::WooCommerce,
            topic: inbound.topic,
            fact: inbound.event_id.clone(),
            event_id: inbound.event_id,
            headers: pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            body,
            changed_at,
            source: "woocommerce GET /wp-json/wc/v3/orders",
        })
    }
}

fn bad(reason: &str) -> Error {
    Error::Payload {
        provider: "woocommerce",
        reason: reason.to_string(),
    }
}

/// `2026-01-02T11:50:00` (GMT, as `dates_are_gmt` reads it).
fn gmt(t: OffsetDateTime) -> Result<String> {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .map_err(|e| bad(&e.to_string()))
}

fn modified(order: &serde_json::Value) -> Option<OffsetDateTime> {
    let s = order.get("date_modified_gmt")?.as_str()?;
    time::PrimitiveDateTime::parse(s, &Iso8601::DEFAULT)
        .ok()
        .map(|p| p.assume_utc())
}
