//! `[reconcile]` and `[tenants.<id>.reconcile.<provider>]`: the reconciliation
//! polls of `storefold reconcile` (what the providers' APIs say changed, and
//! what the raw log lacks).

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The providers whose APIs `storefold reconcile` polls.
pub const RECONCILED: [&str; 3] = ["stripe", "shopify", "woocommerce"];

/// `[reconcile]`: the role's port, state and reach.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Address of /healthz, /readyz and /metrics.
    pub listen: SocketAddr,
    /// Where the cursors are kept (`reconcile-cursors.json`).
    pub state_dir: PathBuf,
    /// A change younger than this is left for its webhook (still being
    /// delivered or retried): the next pass looks at it.
    pub settle_secs: u64,
    /// Each window starts this much before the previous one ended.
    pub overlap_secs: u64,
    /// How far the first pass reaches back (and any pass at most). Stripe
    /// lists 30 days of events; Shopify 60 days of orders without
    /// `read_all_orders`.
    pub lookback_hours: u64,
    /// Retries of one API request after a 429 or a 5xx.
    pub max_retries: u32,
    /// The longest `Retry-After` waited for; longer fails the pass (the next
    /// one retries).
    pub max_wait_secs: u64,
    /// How long reading a raw topic over a window may take.
    pub scan_timeout_secs: u64,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8083)),
            state_dir: PathBuf::from("./.storefold/reconcile"),
            settle_secs: 900,
            overlap_secs: 3600,
            lookback_hours: 72,
            max_retries: 5,
            max_wait_secs: 120,
            scan_timeout_secs: 120,
        }
    }
}

/// `[tenants.<id>.reconcile.<provider>]`: one provider's polls for one
/// tenant, with the API credentials (`${VAR}` values allowed). Only the keys
/// of the provider's API apply.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSourceConfig {
    /// Time between passes.
    pub interval_secs: u64,
    /// The API's address: `https://api.stripe.com` (Stripe's default),
    /// `https://<shop_domain>` (Shopify's default), the store's site URL
    /// (WooCommerce: required).
    pub base_url: Option<String>,
    /// Items per page (clamped to the API's maximum: Stripe 100, Shopify 250,
    /// WooCommerce 100, which are the defaults).
    pub page_size: Option<u32>,
    /// Stripe: a secret or restricted key with read access to events.
    pub api_key: Option<SecretString>,
    /// Shopify: `<shop>.myshopify.com`.
    pub shop_domain: Option<String>,
    /// Shopify: the app's Admin API access token (`read_orders`).
    pub access_token: Option<SecretString>,
    /// Shopify: the Admin API version.
    pub api_version: String,
    /// Shopify: the REST bucket's leak rate, requests per second (2 on
    /// standard plans, 4 Advanced, 20 Plus).
    pub leak_per_second: f64,
    /// WooCommerce: a REST API consumer key with read access.
    pub consumer_key: Option<SecretString>,
    /// WooCommerce: its consumer secret.
    pub consumer_secret: Option<SecretString>,
}

impl Default for ReconcileSourceConfig {
    fn default() -> Self {
        Self {
            interval_secs: 900,
            base_url: None,
            page_size: None,
            api_key: None,
            shop_domain: None,
            access_token: None,
            api_version: "2025-07".to_string(),
            leak_per_second: 2.0,
            consumer_key: None,
            consumer_secret: None,
        }
    }
}

fn given(s: &Option<SecretString>) -> bool {
    s.as_ref()
        .is_some_and(|s| !s.expose_secret().trim().is_empty())
}

impl ReconcileSourceConfig {
    /// What `provider`'s poller lacks (credentials, addresses), in words a
    /// start refuses with; `Ok` when it can run.
    pub fn check(&self, tenant: &str, provider: &str) -> Result<(), String> {
        let key = format!("tenants.{tenant}.reconcile.{provider}");
        let missing = |what: &str| {
            Err(format!(
                "{key}.{what} is missing or empty: reconciling {provider} for {tenant} needs it"
            ))
        };
        if self.interval_secs == 0 {
            return Err(format!("{key}.interval_secs must be at least 1"));
        }
        match provider {
            "stripe" if !given(&self.api_key) => missing("api_key"),
            "shopify" if !given(&self.access_token) => missing("access_token"),
            "shopify"
                if self
                    .shop_domain
                    .as_deref()
                    .is_none_or(|d| d.trim().is_empty()) =>
            {
                missing("shop_domain")
            }
            "shopify" if self.leak_per_second.is_nan() || self.leak_per_second <= 0.0 => {
                Err(format!("{key}.leak_per_second must be positive"))
            }
            "woocommerce" if !given(&self.consumer_key) => missing("consumer_key"),
            "woocommerce" if !given(&self.consumer_secret) => missing("consumer_secret"),
            "woocommerce" if self.base_url.as_deref().is_none_or(|u| u.trim().is_empty()) => {
                missing("base_url")
            }
            p if !RECONCILED.contains(&p) => Err(format!(
                "{key}: reconciliation polls {} only",
                RECONCILED.join(", ")
            )),
            _ => Ok(()),
        }
    }
}
