//! The HTTP side every poller shares: one GET with the provider's
//! authentication, 429 answered by waiting what `Retry-After` asks, and the
//! response read as JSON.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// How a poller authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <key>` (Stripe's secret or restricted key).
    Bearer(String),
    /// `X-Shopify-Access-Token: <token>` (a Shopify app's Admin API token).
    ShopifyToken(String),
    /// HTTP Basic with a WooCommerce REST consumer key and secret.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer(..)",
            Auth::ShopifyToken(_) => "ShopifyToken(..)",
            Auth::Basic { .. } => "Basic(..)",
        })
    }
}

/// Retries and waits: the limits of one provider's API.
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// How many times one request is retried after a 429 or a 5xx.
    pub max_retries: u32,
    /// The wait after a 429 without `Retry-After`, and after a 5xx (doubled
    /// at each retry).
    pub backoff: Duration,
    /// The longest `Retry-After` honoured; a longer one fails the pass (the
    /// next scheduled pass tries again).
    pub max_wait: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            max_retries: 5,
            backoff: Duration::from_secs(1),
            max_wait: Duration::from_secs(120),
        }
    }
}

/// A response: its headers and its body as JSON.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) headers: HeaderMap,
    pub(crate) body: serde_json::Value,
}

/// One provider's HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    auth: Auth,
    limits: RateLimits,
    provider: &'static str,
    metrics: Metrics,
}

impl Client {
    pub(crate) fn new(
        provider: &'static str,
        auth: Auth,
        limits: RateLimits,
        metrics: Metrics,
    ) -> Result<Self> {
        // reqwest is built without a default crypto provider (the workspace
        // picks ring); a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("storefold-reconcile/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http {
                provider,
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            auth,
            limits,
            provider,
            metrics,
        })
    }

    /// GETs `url`, retrying 429 (after `Retry-After`) and 5xx (after a
    /// doubling backoff) up to the limits.
    pub(crate) async fn get(&self, url: &str) -> Result<Page> {
        let mut attempt = 0u32;
        loop {
            let req = self.http.get(url).header("Accept", "application/json");
            let req = match &self.auth {
                Auth::Bearer(k) => req.bearer_auth(k),
                Auth::ShopifyToken(t) => req.header("X-Shopify-Access-Token", t),
                Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
            };
            let resp = req.send().await.map_err(|e| Error::Http {
                provider: self.provider,
                reason: e.without_url().to_string(),
            })?;
            let status = resp.status();
            self.metrics.request(self.provider, status.as_u16());
            let retryable = status.as_u16() == 429 || status.is_server_error();
            if retryable && attempt < self.limits.max_retries {
                let backoff = self.limits.backoff * 2u32.saturating_pow(attempt);
                let wait = if status.as_u16() == 429 {
                    self.metrics.rate_limited(self.provider);
                    retry_after(resp.headers()).unwrap_or(backoff)
                } else {
                    backoff
                };
                if wait > self.limits.max_wait {
                    return Err(Error::RateLimited {
                        provider: self.provider,
                        wait,
                    });
                }
                tracing::info!(
                    provider = self.provider,
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "reconcile: the API asks to wait"
                );
                self.metrics.throttled(self.provider, wait.as_secs_f64());
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(|e| Error::Http {
                provider: self.provider,
                reason: e.without_url().to_string(),
            })?;
            if !status.is_success() {
                return Err(Error::Status {
                    provider: self.provider,
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
                });
            }
            let body = serde_json::from_slice(&bytes).map_err(|e| Error::Payload {
                provider: self.provider,
                reason: e.to_string(),
            })?;
            return Ok(Page { headers, body });
        }
    }
}

/// `Retry-After` in seconds (Shopify sends a decimal, e.g. `2.0`). The
/// HTTP-date form is not used by these APIs and reads as absent.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A header's value as text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `base` + `path` + `?` + the pairs, each encoded.
pub(crate) fn url(base: &str, path: &str, query: &[(&str, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(k, v);
    }
    let q = q.finish();
    let base = base.trim_end_matches('/');
    if q.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{q}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_whole_and_decimal_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2.0".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn urls_encode_brackets_and_colons() {
        let u = url(
            "https://api.stripe.com/",
            "/v1/events",
            &[("created[gte]", "1".into()), ("x", "a:b".into())],
        );
        assert_eq!(
            u,
            "https://api.stripe.com/v1/events?created%5Bgte%5D=1&x=a%3Ab"
        );
    }
}
