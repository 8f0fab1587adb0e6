//! What the tests of `storefold run` share: the process (killed when dropped,
//! its log kept in a file), the topics its configuration names, and waiting
//! until a listener is ready.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use storefold_runtime::config::Config;
use storefold_runtime::kafka::topic_specs;
use storefold_testkit::broker::MockBroker;

/// A running `storefold run`, killed when dropped.
pub(crate) struct Run {
    pub(crate) child: Child,
    log: PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    /// `storefold --config <config> --log-format json run <args>`, its log (stderr)
    /// written to `log`.
    pub(crate) fn start(config: &Path, log: PathBuf, args: &[&str]) -> Run {
        let child = Command::new(env!("CARGO_BIN_EXE_storefold"))
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json", "run"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start storefold run");
        Run { child, log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit (at most `limit`).
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "storefold run did not exit within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Creates on the mock broker every topic the configuration at `config` names.
pub(crate) fn create_topics(broker: &MockBroker, config: &Path) {
    let config = Config::load(config, Vec::<(String, String)>::new()).unwrap();
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker.create_topic(&spec.name, spec.partitions).unwrap();
    }
}

/// Waits until `base/readyz` answers 2xx (at most `limit`); fails the test with
/// the log if the process exits first.
pub(crate) async fn wait_ready(
    client: &reqwest::Client,
    base: &str,
    run: &mut Run,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        if let Some(s) = run.child.try_wait().unwrap() {
            panic!(
                "storefold run exited ({s}) before it was ready:\n{}",
                run.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not ready within {limit:?}:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A started `storefold run`, ready on both listeners.
pub(crate) struct Started {
    pub(crate) run: Run,
    pub(crate) client: reqwest::Client,
    /// The ingest's base URL.
    pub(crate) public_base: String,
    /// The operator listener's base URL (query API, `/metrics`).
    pub(crate) api: String,
}

/// Creates the topics of `config` on `broker`, starts `storefold run <args>`
/// (its log in `dir/run.log`) and waits until the ingest on `public` and the
/// operator API on `operator` are ready.
pub(crate) async fn start_run(
    broker: &MockBroker,
    dir: &Path,
    config: &Path,
    (public, operator): (u16, u16),
    args: &[&str],
) -> Started {
    create_topics(broker, config);
    let mut run = Run::start(config, dir.join("run.log"), args);
    let public_base = format!("http://127.0.0.1:{public}");
    let api = format!("http://127.0.0.1:{operator}");
    let client = storefold_testkit::http_client();
    wait_ready(&client, &public_base, &mut run, Duration::from_secs(90)).await;
    wait_ready(&client, &api, &mut run, Duration::from_secs(90)).await;
    Started {
        run,
        client,
        public_base,
        api,
    }
}

/// Signs Shopify's `orders/create` sample `n` for `email` (tenant `acme`)
/// and posts it to the ingest, which must take it.
pub(crate) async fn post_order(client: &reqwest::Client, public_base: &str, n: u64, email: &str) {
    let sample = storefold_testkit::samples::shopify_order(n, email);
    let req = storefold_testkit::samples::signed("acme", &sample, time::OffsetDateTime::now_utc());
    let mut r = client.post(format!("{public_base}{}", req.path));
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    assert_eq!(r.body(req.body).send().await.unwrap().status(), 200);
}
