//! Shopify: orders updated in the window, through the REST Admin API
//! (`GET /admin/api/<version>/orders.json`), each with its refunds (the Order
//! resource lists them in `refunds`, and the Shopify mapper already reads a
//! snapshot's refunds like `refunds/create` deliveries).
//!
//! The contract (shopify.dev, REST Admin API "Order", "Make paginated
//! requests", "REST Admin API rate limits"): `status=any` (the default is
//! open orders only), `updated_at_min` / `updated_at_max` (ISO 8601), `limit`
//! up to 250 (default 50). Pages are cursor based: the next page is the
//! `Link` header's `rel="next"` URL, used exactly as given (its `page_info`
//! may not be combined with the filters). Authentication:
//! `X-Shopify-Access-Token`. Rate limit: a leaky bucket per app and store
//! (40 requests, leaking 2/s on standard plans); every answer carries
//! `X-Shopify-Shop-Api-Call-Limit: <used>/<size>`, and an app over the limit
//! gets 429 with `Retry-After` (seconds). The poller slows down before the
//! bucket is full: with fewer than `reserve` calls left it waits until the
//! bucket has leaked back to that reserve.
//!
//! Idempotency: a webhook's key is `X-Shopify-Event-Id`, which the Admin API
//! does not expose. An order version is therefore recognised by its fact
//! `shopify-order:<id>@<updated_at as Unix seconds>`, read from the bodies of
//! the `orders/*` webhooks in the raw log, and a reconciled copy's event id is
//! `reconciled-order-<id>-<updated_at>:orders/updated`. Its figures are the
//! webhook's (same mapper, same snapshot, refunds keyed by refund id); what
//! differs is event-id bookkeeping (see the README's reconcile section).

use std::collections::BTreeMap;
use std::time::Duration;

use storefold_providers::ProviderKind;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::client::{Auth, Client, Page, RateLimits, header, url};
use crate::{Error, Found, Metrics, Result, Window};

/// `limit`'s maximum.
pub const MAX_PAGE: u32 = 250;

/// A tenant's shop.
#[derive(Debug)]
pub struct Shopify {
    client: Client,
    base_url: String,
    shop_domain: String,
    api_version: String,
    page_size: u32,
    /// Calls kept free in the bucket.
    reserve: u32,
    /// The bucket's leak rate (requests per second: 2 on standard plans).
    leak_per_second: f64,
    metrics: Metrics,
}

/// The shop's settings besides its token.
#[derive(Clone, Debug)]
pub struct ShopifySettings {
    /// `https://<shop>.myshopify.com` (a stand-in in tests).
    pub base_url: String,
    /// `<shop>.myshopify.com`, as `X-Shopify-Shop-Domain` says in webhooks.
    pub shop_domain: String,
    /// The Admin API version, e.g. `2025-07`.
    pub api_version: String,
    /// Clamped to 1..=250.
    pub page_size: u32,
    pub reserve: u32,
    pub leak_per_second: f64,
}

impl Shopify {
    pub fn new(
        settings: ShopifySettings,
        access_token: &str,
        limits: RateLimits,
        metrics: Metrics,
    ) -> Result<Self> {
        Ok(Self {
            client: Client::new(
                "shopify",
                Auth::ShopifyToken(access_token.to_string()),
                limits,
                metrics.clone(),
            )?,
            base_url: settings.base_url,
            shop_domain: settings.shop_domain,
            api_version: settings.api_version,
            page_size: settings.page_size.clamp(1, MAX_PAGE),
            reserve: settings.reserve,
            leak_per_second: settings.leak_per_second.max(0.1),
            metrics,
        })
    }

    pub(crate) async fn list(&self, window: Window) -> Result<Vec<Found>> {
        let first = url(
            &self.base_url,
            &format!("/admin/api/{}/orders.json", self.api_version),
            &[
                ("status", "any".to_string()),
                ("updated_at_min", rfc3339(window.since)?),
                ("updated_at_max", rfc3339(window.until)?),
                ("limit", self.page_size.to_string()),
            ],
        );
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(u) = next.take() {
            let page = self.client.get(&u).await?;
            self.throttle(&page).await;
            let orders = page
                .body
                .get("orders")
                .and_then(|o| o.as_array())
                .ok_or_else(|| bad("an answer without `orders`"))?;
            for o in orders {
                out.push(self.found(o)?);
            }
            next = header(&page.headers, "link").and_then(next_link);
        }
        Ok(out)
    }

    /// Waits while the bucket is within `reserve` of full.
    async fn throttle(&self, page: &Page) {
        let Some((used, size)) =
            header(&page.headers, "x-shopify-shop-api-call-limit").and_then(call_limit)
        else {
            return;
        };
        let free_floor = size.saturating_sub(self.reserve);
        if used < free_floor {
            return;
        }
        let secs = f64::from(used - free_floor + 1) / self.leak_per_second;
        self.metrics.throttled("shopify", secs);
        tracing::debug!(
            used,
            size,
            wait_s = secs,
            "shopify: call limit near, slowing down"
        );
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    fn found(&self, order: &serde_json::Value) -> Result<Found> {
        let (id, updated) =
            order_version(order).ok_or_else(|| bad("an order without `id` or `updated_at`"))?;
        let topic = "orders/updated";
        let headers = BTreeMap::from([
            ("x-shopify-topic".to_string(), topic.to_string()),
            (
                "x-shopify-shop-domain".to_string(),
                self.shop_domain.clone(),
            ),
            (
                "x-shopify-api-version".to_string(),
                self.api_version.clone(),
            ),
        ]);
        Ok(Found {
            provider: ProviderKind::Shopify,
            topic: topic.to_string(),
            event_id: format!("reconciled-order-{id}-{}:{topic}", updated.unix_timestamp()),
            fact: fact(&id, updated),
            headers,
            body: serde_json::to_vec(order).map_err(|e| bad(&e.to_string()))?,
            changed_at: updated,
            source: "shopify GET /admin/api/{version}/orders.json",
        })
    }
}

fn bad(reason: &str) -> Error {
    Error::Payload {
        provider: "shopify",
        reason: reason.to_string(),
    }
}

fn rfc3339(t: OffsetDateTime) -> Result<String> {
    t.format(&Rfc3339).map_err(|e| bad(&e.to_string()))
}

/// An order version's fact.
pub fn fact(order_id: &str, updated_at: OffsetDateTime) -> String {
    format!("shopify-order:{order_id}@{}", updated_at.unix_timestamp())
}

/// `(id, updated_at)` of an order object.
fn order_version(order: &serde_json::Value) -> Option<(String, OffsetDateTime)> {
    let id = match order.get("id")? {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
        _ => return None,
    };
    let updated = order.get("updated_at")?.as_str()?;
    let at = OffsetDateTime::parse(updated.trim(), &Rfc3339).ok()?;
    Some((id, at))
}

/// The fact of an `orders/*` webhook body (`None` when it is not an order).
pub fn fact_of_body(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let (id, at) = order_version(&v)?;
    Some(fact(&id, at))
}

/// `X-Shopify-Shop-Api-Call-Limit: 39/40` as `(39, 40)`.
pub fn call_limit(v: &str) -> Option<(u32, u32)> {
    let (used, size) = v.trim().split_once('/')?;
    Some((used.trim().parse().ok()?, size.trim().parse().ok()?))
}

/// The `rel="next"` URL of a `Link` header.
pub fn next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page_only() {
        let v = "<https://s.myshopify.com/admin/api/2025-07/orders.json?limit=2&page_info=abc>; rel=\"previous\", <https://s.myshopify.com/admin/api/2025-07/orders.json?limit=2&page_info=def>; rel=\"next\"";
        assert_eq!(
            next_link(v).as_deref(),
            Some("https://s.myshopify.com/admin/api/2025-07/orders.json?limit=2&page_info=def")
        );
        assert_eq!(
            next_link("<https://x/y?page_info=a>; rel=\"previous\""),
            None
        );
    }

    #[test]
    fn call_limits_parse() {
        assert_eq!(call_limit("39/40"), Some((39, 40)));
        assert_eq!(call_limit("x"), None);
    }

    #[test]
    fn an_order_body_gives_its_version() {
        let body = br#"{"id":450789469,"updated_at":"2025-05-10T10:00:00-04:00"}"#;
        assert_eq!(
            fact_of_body(body).as_deref(),
            Some("shopify-order:450789469@1746885600")
        );
        assert_eq!(fact_of_body(b"{\"order_edit\":{}}"), None);
    }
}
