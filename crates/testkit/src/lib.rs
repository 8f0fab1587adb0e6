//! storefold-testkit: what the tests of every role share (a dev-dependency only).
//!
//! - [`broker`]: a Kafka broker for tests — librdkafka's mock cluster, either in this
//!   process ([`broker::MockBroker`]) or in its own process
//!   ([`broker::BrokerProcess`], for restart and crash tests), and a reader that
//!   returns everything a topic holds.
//! - [`browser`]: headless Chromium's DOM of a page, for the Inspector's tests.
//! - [`history`]: a seeded multi-tenant history of raw webhooks (Shopify, Stripe,
//!   AfterShip, Zendesk, Gorgias, browser touches) in arrival order, late and
//!   duplicated deliveries included, and the in-memory fold it must give.
//! - [`samples`]: one real-looking webhook per provider, signed as the provider would
//!   sign it, and a tenant configuration with every provider's secret.

pub mod broker;
pub mod browser;
pub mod history;
pub mod hubspot;
pub mod postgres;
pub mod samples;

/// A local TCP port nothing listens on right now (for a process the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An HTTP client for tests (rustls with the ring provider, installed once).
pub fn http_client() -> reqwest::Client {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("build the HTTP client")
}

/// Sends `req` to `base` (`http://host:port`).
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    req: &samples::SignedRequest,
) -> reqwest::Response {
    let mut builder = client.post(format!("{base}{}", req.path));
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(req.body.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {}: {e}", req.path))
}
