//! storefold-reconcile's integration tests, one binary: the pollers against
//! stand-ins of the three APIs (`contract`), and a journey with a webhook
//! dropped on purpose, made good by a pass, folded by the real engine (`fold`).

mod contract;
mod fold;
mod standins;

use std::time::Duration;

use storefold_reconcile::shopify::{Shopify, ShopifySettings};
use storefold_reconcile::stripe::Stripe;
use storefold_reconcile::woocommerce::WooCommerce;
use storefold_reconcile::{Metrics, Poller, RateLimits};

/// Test limits: short backoffs, the stand-ins' one-second Retry-After honoured.
fn limits() -> RateLimits {
    RateLimits {
        max_retries: 3,
        backoff: Duration::from_millis(50),
        max_wait: Duration::from_secs(5),
    }
}

fn stripe_poller(base: &str, page: u32, m: &Metrics) -> Poller {
    Poller::Stripe(Stripe::new(base, standins::STRIPE_KEY, page, limits(), m.clone()).unwrap())
}

/// Leaks 10 calls a second so that the near-full bucket costs ~0.3 s.
fn shopify_poller(base: &str, page: u32, m: &Metrics) -> Poller {
    Poller::Shopify(
        Shopify::new(
            ShopifySettings {
                base_url: base.to_string(),
                shop_domain: "acme-outfitters.myshopify.com".into(),
                api_version: standins::SHOPIFY_VERSION.into(),
                page_size: page,
                reserve: 2,
                leak_per_second: 10.0,
            },
            standins::SHOPIFY_TOKEN,
            limits(),
            m.clone(),
        )
        .unwrap(),
    )
}

fn woo_poller(base: &str, page: u32, m: &Metrics) -> Poller {
    Poller::WooCommerce(
        WooCommerce::new(
            base,
            standins::WOO_KEY,
            standins::WOO_SECRET,
            page,
            limits(),
            m.clone(),
        )
        .unwrap(),
    )
}
