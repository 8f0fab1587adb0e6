//! `storefold run` as a process: the ingest, the processor and the PostgreSQL sink
//! in one process against a broker and a PostgreSQL server — signed webhooks in
//! through HTTP, the Customer 360 out of the query API (on the operator
//! listener, with a token) and in PostgreSQL, one `/metrics` for all roles, a
//! clean exit on SIGTERM. A sink that fails restarts with backoff and shows in
//! the operator /readyz while the ingest keeps taking webhooks; a chosen sink
//! without its section is refused.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storefold_testkit::broker::MockBroker;
use storefold_testkit::postgres::PgServer;
use storefold_testkit::samples::{self, shopify_order};
use storefold_testkit::{free_port, http_client};
use time::OffsetDateTime;

use crate::common::{Run, create_topics, wait_ready};

const TENANT: &str = "acme";
/// The admin token of [`write_config`]'s configuration.
const ADMIN_TOKEN: &str = "sft_run-test-admin";

/// A configuration whose ingest listens on `port` and whose operator listener
/// (the query API, /ui, /metrics) on a free port, written to `dir/operator-port`.
fn write_config(dir: &Path, bootstrap: &str, port: u16, sinks: &str) -> PathBuf {
    let operator = free_port();
    std::fs::write(dir.join("operator-port"), operator.to_string()).unwrap();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = 3\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [ingest]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout_secs = 10\n\
         [processor]\nstate_dir = \"{state}\"\ncommit_interval_ms = 100\n\
         [sinks]\nretry_initial_ms = 50\nretry_max_ms = 500\ncircuit_failure_threshold = 3\n\
         {sinks}\n\
         [log]\nlevel = \"info,librdkafka=error,rdkafka=error\"\n\
         [operator]\nlisten = \"127.0.0.1:{operator}\"\n\
         [[operator.tokens]]\nname = \"admin\"\nsha256 = \"{admin}\"\nadmin = true\n{tenant}",
        state = dir.join("state").display(),
        tenant = samples::tenant_toml(TENANT),
        admin = storefold_runtime::operator::hash_token(ADMIN_TOKEN),
    );
    let path = dir.join("storefold.toml");
    std::fs::write(&path, &toml).unwrap();
    path
}

fn order(n: u64, customer: u64, email: &str) -> samples::Sample {
    let mut s = shopify_order(n, email);
    let mut v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    v["customer"]["id"] = serde_json::json!(customer);
    v["customer"]["email"] = serde_json::json!(email);
    s.body = serde_json::to_vec(&v).unwrap();
    s
}

async fn post(client: &reqwest::Client, base: &str, sample: &samples::Sample) -> u16 {
    let req = samples::signed(TENANT, sample, OffsetDateTime::now_utc());
    let mut r = client.post(format!("{base}{}", req.path));
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    r.body(req.body).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_webhooks_to_the_query_api_and_postgresql_and_stops_cleanly() {
    let broker = MockBroker::start(1);
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        broker.bootstrap(),
        port,
        &format!(
            "[sinks.postgres]\nurl = \"{}\"\nbatch_size = 50\nlinger_ms = 20\n",
            pg.url()
        ),
    );
    create_topics(&broker, &config);
    let mut run = Run::start(&config, dir.path().join("run.log"), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();
    wait_ready(&client, &base, &mut run, Duration::from_secs(90)).await;

    // Five orders of one customer, one of another, one delivered twice; a
    // request with a wrong signature is refused and changes nothing.
    for n in 1..=5 {
        let s = order(n, 71, "ada@run.example");
        assert_eq!(post(&client, &base, &s).await, 200);
        if n == 3 {
            assert_eq!(post(&client, &base, &s).await, 200, "the duplicate");
        }
    }
    assert_eq!(
        post(&client, &base, &order(6, 72, "bob@run.example")).await,
        200
    );
    let forged = samples::signed_with(
        TENANT,
        &order(7, 73, "mallory@run.example"),
        "not the secret",
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let mut r = client.post(format!("{base}{}", forged.path));
    for (k, v) in &forged.headers {
        r = r.header(k, v);
    }
    assert_eq!(r.body(forged.body).send().await.unwrap().status(), 401);

    // The query API of the operator address answers the folded customer.
    let operator: u16 = std::fs::read_to_string(dir.path().join("operator-port"))
        .unwrap()
        .parse()
        .unwrap();
    let op = format!("http://127.0.0.1:{operator}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let doc = loop {
        let r = client
            .get(format!(
                "{op}/v1/tenants/{TENANT}/customers?email=ada@run.example"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            let doc: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            if doc["orders_count"] == 5 {
                break doc;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the customer was not folded within 120 s:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(doc["email"], "ada@run.example", "{doc}");

    // The PostgreSQL sink of the same process wrote both customers and the six
    // orders (the duplicate counted once, the forged order absent).
    let pgc = pg.client().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = pgc
            .query_one(
                "SELECT (SELECT count(*) FROM storefold.customers WHERE tenant = 'acme'), \
                        (SELECT count(*) FROM storefold.orders WHERE tenant = 'acme')",
                &[],
            )
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)));
        if counts.as_ref().is_ok_and(|c| *c == (2, 6)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL rows {counts:?} (want 2 customers, 6 orders):\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let emails: Vec<String> = pgc
        .query(
            "SELECT email FROM storefold.customers WHERE tenant = 'acme' ORDER BY email",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(emails, ["ada@run.example", "bob@run.example"]);

    // One /metrics for the three roles, and the Inspector, on the operator
    // address; the public one serves neither.
    for path in ["/metrics", "/ui", "/v1/tenants"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "public {path}");
    }
    let metrics = client
        .get(format!("{op}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "storefold_ingest_requests_total{provider=\"shopify\",status=\"200\"} 7",
        "storefold_ingest_signature_failures_total{provider=\"shopify\"",
        "storefold_processor_",
        "storefold_sink_writes_total{outcome=\"written\",sink=\"postgres\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    let ui = client.get(format!("{op}/ui")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("<html"));

    // SIGTERM: drains and exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = run.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "exit {exit}:\n{}", run.log());
}

/// A webhook receiver that refuses every delivery with 401 (a wrong signing
/// secret at the receiver: a fatal error for the webhook sink) while `refuse`
/// holds, and accepts them (200) after; it keeps the bodies it accepted.
fn switchable_receiver(refuse: Arc<AtomicBool>, accepted: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            // The whole request: headers, then content-length bytes of body.
            let mut req = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let answer: &[u8] = if refuse.load(Ordering::SeqCst) {
                b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 13\r\nconnection: close\r\n\r\nbad signature"
            } else {
                accepted
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&req).to_string());
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            };
            let _ = s.write_all(answer);
        }
    });
    port
}

/// Polls the operator listener's /readyz until `want` holds for its status and
/// body (at most 120 s, failing early if the process exits).
async fn operator_readyz(
    client: &reqwest::Client,
    op: &str,
    run: &mut Run,
    want: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client.get(format!("{op}/readyz")).send().await {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if want(status, &body) {
                return (status, body);
            }
        }
        if let Some(s) = run.child.try_wait().unwrap() {
            panic!("storefold run exited ({s}):\n{}", run.log());
        }
        assert!(
            Instant::now() < deadline,
            "operator /readyz never answered as expected:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_restarts_and_shows_in_readiness_while_webhooks_keep_coming() {
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let refuse = Arc::new(AtomicBool::new(true));
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = switchable_receiver(refuse.clone(), accepted.clone());
    let config = write_config(
        dir.path(),
        broker.bootstrap(),
        port,
        &format!(
            "[sinks.webhook]\nurl = \"http://127.0.0.1:{receiver}/hook\"\nsecret = \"s\"\n\
             linger_ms = 20\n"
        ),
    );
    create_topics(&broker, &config);
    let mut run = Run::start(&config, dir.path().join("run.log"), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let operator: u16 = std::fs::read_to_string(dir.path().join("operator-port"))
        .unwrap()
        .parse()
        .unwrap();
    let op = format!("http://127.0.0.1:{operator}");
    let client = http_client();
    wait_ready(&client, &base, &mut run, Duration::from_secs(90)).await;
    assert_eq!(
        post(&client, &base, &order(1, 74, "eve@run.example")).await,
        200
    );

    // The receiver's 401 is fatal for the sink: the operator /readyz names it
    // and its reason, the process keeps running.
    let (status, body) =
        operator_readyz(&client, &op, &mut run, |s, b| s == 503 && b.contains("401")).await;
    assert_eq!(status, 503);
    assert!(body.contains("sink webhook is failing"), "{body}");

    // Meanwhile the ingest takes webhooks, and its own /readyz stays ready.
    assert_eq!(
        post(&client, &base, &order(2, 75, "fay@run.example")).await,
        200
    );
    let public = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert!(run.child.try_wait().unwrap().is_none(), "still running");
    let log = run.log();
    assert!(
        log.contains("sink failed; restarting") && log.contains("webhook") && log.contains("401"),
        "the log names the failing sink and its reason:\n{log}"
    );

    // The receiver is fixed: the restarted sink delivers both customers and
    // the readiness clears.
    refuse.store(false, Ordering::SeqCst);
    operator_readyz(&client, &op, &mut run, |s, _| s == 200).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = accepted.lock().unwrap().join("\n");
        if got.contains("eve@run.example") && got.contains("fay@run.example") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered after the fix:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGTERM: exits 0 (the sink's earlier failures were recovered from).
    let status = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = run.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "exit {exit}:\n{}", run.log());
}

#[test]
fn a_chosen_sink_without_its_section_and_a_config_without_tenants_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "127.0.0.1:1", free_port(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--sink", "hubspot"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sink hubspot is not configured") && err.contains("[sinks.hubspot]"),
        "{err}"
    );

    // A wrong sink section stops every role at start, not only the sink's own:
    // a section no sink has, and a section its sink refuses.
    for (sinks, says) in [
        (
            "[sinks.hubspott]\ntoken = \"t\"\n",
            "unknown sink section [sinks.hubspott]; the sinks are: postgres, hubspot, webhook",
        ),
        (
            "[sinks.webhook]\nurl = \"ftp://hooks.example\"\nsecret = \"s\"\n",
            "sinks.webhook.url must be an http(s) URL",
        ),
        (
            "[sinks.postgres]\nurl = \"postgres://db/crm\"\nbatchsize = 5\n",
            "batchsize",
        ),
    ] {
        let wrong = write_config(dir.path(), "127.0.0.1:1", free_port(), sinks);
        for role in [
            &["ingest"][..],
            &["process"],
            &["topics", "check"],
            &["run", "--no-sinks"],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
                .arg("--config")
                .arg(&wrong)
                .args(role)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{role:?} with {sinks}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(says), "{role:?} with {sinks}: {err}");
        }
    }
    // The same from the environment alone (write_config rewrites the one
    // file of `dir`: the sections of the loop above are gone).
    let config = write_config(dir.path(), "127.0.0.1:1", free_port(), "");
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args(["topics", "check"])
        .env("STOREFOLD_SINKS__WEBHOOK__URL", "hooks.example")
        .env("STOREFOLD_SINKS__WEBHOOK__SECRET", "s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sinks.webhook.url"), "{err}");

    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&bare)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no tenants are configured"), "{err}");

    // A reporting currency without a rates file is allowed, and said at start
    // (the processor then goes on to Kafka, which is not there).
    let toml = std::fs::read_to_string(&config).unwrap().replace(
        "[tenants.acme]\n",
        "[tenants.acme]\nreporting_currency = \"EUR\"\n",
    );
    let unrated = dir.path().join("unrated.toml");
    std::fs::write(&unrated, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&unrated)
        .args(["process", "--listen", "127.0.0.1:0"])
        .env("STOREFOLD_PROCESSOR__PRODUCE_TIMEOUT_MS", "2000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARN")
            && err.contains("reporting currency but [rates] has no file")
            && err.contains("acme"),
        "{err}"
    );
    assert!(err.contains("cannot reach the cluster"), "{err}");

    // A rates file that cannot be read, or is not rates: run and process refuse
    // before they reach for Kafka, naming the key and the file.
    let missing = dir.path().join("no-such-rates.csv");
    let garbled = dir.path().join("garbled.csv");
    std::fs::write(&garbled, "2025-03-01,USD,EUR\n").unwrap();
    for (file, says) in [(&missing, "cannot read"), (&garbled, "line 1")] {
        let toml = std::fs::read_to_string(&config).unwrap().replace(
            "[log]",
            &format!("[rates]\nfile = {:?}\n[log]", file.display().to_string()),
        );
        let with_rates = dir.path().join("rates.toml");
        std::fs::write(&with_rates, toml).unwrap();
        for command in [&["run"][..], &["process", "--listen", "127.0.0.1:0"][..]] {
            let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
                .arg("--config")
                .arg(&with_rates)
                .args(command)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{command:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("rates.file") && err.contains(says) && !err.contains("Kafka"),
                "{command:?}: {err}"
            );
        }
    }
}
