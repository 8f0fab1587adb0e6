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
//! - [`log_cleaner`]: what Kafka's log cleaner may leave of a compacted
//!   topic's partition (the mock cluster never compacts).
//! - [`schema_registry`]: a stand-in for a Confluent schema registry (its REST
//!   contract, in memory).
//! - [`samples`]: one real-looking webhook per provider, signed as the provider would
//!   sign it, and a tenant configuration with every provider's secret.

pub mod broker;
pub mod browser;
pub mod history;
pub mod hubspot;
pub mod log_cleaner;
pub mod postgres;
pub mod samples;
pub mod schema_registry;

/// A binary of this workspace as the running test's build made it (in
/// `target/<profile>/`, beside the test's `deps/`), else built now with the test
/// profile and its package's test targets: the dependency features, and with them
/// the RocksDB and librdkafka builds, are then those of `make test`, not a second
/// set that would compile their C/C++ again.
pub fn workspace_binary(package: &str, name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("test binary directory")
        .to_path_buf();
    let bin = profile_dir.join(name);
    if bin.is_file() {
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "-q",
            "--profile",
            "test",
            "-p",
            package,
            "--all-targets",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {package}'s {name} failed");
    let built = target_dir.join("debug").join(name);
    assert!(built.is_file(), "{} was not built", built.display());
    built
}

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
