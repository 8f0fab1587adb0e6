//! `storefold ingest`, `topics` and `webhook send` as processes around a broker that
//! lives in its own process (the testkit's mock cluster host): restarts, SIGTERM and
//! SIGKILL between requests lose nothing that was acknowledged.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use storefold_codec::{AvroCodec, RawEvent};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::topic_specs;
use storefold_testkit::broker::{BrokerProcess, read_topic};
use storefold_testkit::free_port;
use storefold_testkit::samples::{self, shopify_order};

const TENANT: &str = "acme";

fn storefold() -> Command {
    Command::new(env!("CARGO_BIN_EXE_storefold"))
}

struct Setup {
    _dir: tempfile::TempDir,
    config_path: PathBuf,
    config: Config,
    port: u16,
}

fn setup(bootstrap: &str, partitions: i32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = {partitions}\n\
         [ingest]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout_secs = 10\n{}",
        samples::tenant_toml(TENANT)
    );
    let config_path = dir.path().join("storefold.toml");
    std::fs::write(&config_path, &toml).unwrap();
    let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
    Setup {
        _dir: dir,
        config_path,
        config,
        port,
    }
}

fn create_all(broker: &mut BrokerProcess, config: &Config) {
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker.create_topic(&spec.name, spec.partitions).unwrap();
    }
}

struct IngestProcess {
    child: Child,
    log: PathBuf,
}

impl IngestProcess {
    fn start(setup: &Setup) -> IngestProcess {
        let log = setup
            ._dir
            .path()
            .join(format!("ingest-{}.log", free_port()));
        let child = storefold()
            .arg("--config")
            .arg(&setup.config_path)
            .args(["--log-format", "json", "ingest"])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let p = IngestProcess { child, log };
        p.wait_ready(setup.port);
        p
    }

    fn wait_ready(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Write;
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ingest not ready; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }
}

/// `storefold webhook send` for one sample written to a file.
fn webhook_send(setup: &Setup, sample: &samples::Sample, extra: &[&str]) -> Output {
    let file = setup
        ._dir
        .path()
        .join(format!("payload-{}.json", free_port()));
    std::fs::write(&file, &sample.body).unwrap();
    let mut cmd = storefold();
    cmd.arg("--config")
        .arg(&setup.config_path)
        .args(["webhook", "send", "--provider", sample.provider.name()])
        .args(["--topic", sample.topic, "--tenant", TENANT])
        .args(extra)
        .arg(&file);
    cmd.output().unwrap()
}

fn stored_orders(bootstrap: &str) -> Vec<u64> {
    let codec = AvroCodec::embedded().unwrap();
    read_topic(bootstrap, "storefold.raw.shopify", Duration::from_secs(20))
        .into_iter()
        .map(|r| {
            let ev: RawEvent = codec.decode(r.payload.as_deref().unwrap()).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
            v["order_number"].as_u64().unwrap() - 5000
        })
        .collect()
}

#[test]
fn restarts_sigterm_and_sigkill_between_requests_lose_nothing_acknowledged() {
    let mut broker = BrokerProcess::start(1);
    let setup = setup(broker.bootstrap(), 3);
    create_all(&mut broker, &setup.config);
    let mut acknowledged = Vec::new();
    let mut n = 0;
    let mut send_batch = |count: usize, acknowledged: &mut Vec<u64>| {
        for _ in 0..count {
            let out = webhook_send(&setup, &shopify_order(n, "buyer@example.com"), &[]);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "webhook send failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(stdout.starts_with("HTTP 200"), "{stdout}");
            acknowledged.push(n);
            n += 1;
        }
    };

    // Life 1, ended by SIGTERM: a graceful exit with status 0.
    let ingest = IngestProcess::start(&setup);
    send_batch(4, &mut acknowledged);
    ingest.signal("TERM");
    let (status, log) = ingest.wait();
    assert!(
        status.success(),
        "SIGTERM must exit cleanly: {status}\n{log}"
    );
    assert!(log.contains("ingest stopped"), "{log}");

    // Life 2, ended by SIGKILL right after its last acknowledged request.
    let ingest = IngestProcess::start(&setup);
    send_batch(4, &mut acknowledged);
    ingest.signal("KILL");
    let (status, _) = ingest.wait();
    assert!(!status.success());

    // Life 3.
    let ingest = IngestProcess::start(&setup);
    send_batch(4, &mut acknowledged);
    ingest.signal("TERM");
    let (status, log) = ingest.wait();
    assert!(status.success());

    let mut stored = stored_orders(broker.bootstrap());
    stored.sort_unstable();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged order exactly once"
    );

    // JSON logs, one object per line, carrying no secret and no body.
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(!log.contains(&samples::verify_secret(
        storefold_providers::ProviderKind::Shopify
    )));
    assert!(
        !log.contains("buyer@example.com"),
        "bodies never reach the logs"
    );
    assert!(
        log.contains("trace_id"),
        "requests are logged with their trace id"
    );
}

#[test]
fn webhook_send_reports_the_answer_and_fails_unless_2xx() {
    let mut broker = BrokerProcess::start(1);
    let setup = setup(broker.bootstrap(), 2);
    create_all(&mut broker, &setup.config);
    let ingest = IngestProcess::start(&setup);

    // Every provider, signed with the tenant's secrets from the configuration.
    for p in storefold_providers::ProviderKind::WEBHOOK
        .into_iter()
        .chain([storefold_providers::ProviderKind::Collect])
    {
        let out = webhook_send(&setup, &samples::sample(p), &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{p}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("HTTP 2"), "{p}: {stdout}");
    }
    // A wrong secret: the ingest's 401 is printed and the exit code is non-zero.
    let out = webhook_send(
        &setup,
        &samples::sample(storefold_providers::ProviderKind::Stripe),
        &["--secret", "whsec_wrong"],
    );
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("HTTP 401"), "{stdout}");
    assert!(stdout.contains("signature_mismatch"), "{stdout}");
    // Nobody listening: an error, not a success.
    let out = webhook_send(
        &setup,
        &samples::sample(storefold_providers::ProviderKind::Stripe),
        &["--url", &format!("http://127.0.0.1:{}", free_port())],
    );
    assert_eq!(out.status.code(), Some(1));
    ingest.signal("TERM");
    assert!(ingest.wait().0.success());
}

fn topics(setup: &Setup, args: &[&str]) -> Output {
    storefold()
        .arg("--config")
        .arg(&setup.config_path)
        .arg("topics")
        .args(args)
        .args(["--timeout", "3"])
        .output()
        .unwrap()
}

#[test]
fn topics_check_finds_wrong_partition_counts_and_says_what_it_cannot_verify() {
    let mut broker = BrokerProcess::start(1);
    let setup = setup(broker.bootstrap(), 3);

    // Nothing exists yet.
    let out = topics(&setup, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("storefold.raw.shopify does not exist"));

    // The mock cluster has no CreateTopics: `create` fails loudly, naming the way out.
    let out = topics(&setup, &["create"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CreateTopics"), "{stderr}");

    // Created through the mock with the right counts: ok, policies unverified.
    create_all(&mut broker, &setup.config);
    let out = topics(&setup, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 problems"), "{stdout}");
    assert!(stdout.contains("UNVERIFIED"), "{stdout}");
    assert!(stdout.contains("cleanup polic"), "{stdout}");
    let out = topics(&setup, &["check", "--strict"]);
    assert_eq!(out.status.code(), Some(3));

    // A raw topic with a different partition count breaks co-partitioning.
    let mut other = BrokerProcess::start(1);
    let bad = self::setup(other.bootstrap(), 3);
    for spec in topic_specs(&bad.config.kafka, &storefold_sinks::registry::names()) {
        let n = if spec.name == "storefold.raw.stripe" {
            2
        } else {
            spec.partitions
        };
        other.create_topic(&spec.name, n).unwrap();
    }
    let out = topics(&bad, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(
            "PROBLEM     storefold.raw.stripe has 2 partitions, the configuration says 3"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("must have the same partition count"),
        "{stdout}"
    );
}

#[test]
fn the_ingest_refuses_to_start_on_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run = |toml: &str| -> (Option<i32>, String) {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let out = storefold()
            .arg("--config")
            .arg(&path)
            .arg("ingest")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("[ingest]\nlisten_addr = \"127.0.0.1:1\"\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("listen_addr"), "{err}");
    let (code, err) = run("[tenants.acme.providers.stripe]\nsecret = \"\"\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("tenants.acme.providers.stripe.secret"),
        "{err}"
    );
    let (code, err) = run("[tenants.acme.providers.stripe]\nsecret = \"${NOT_SET_ANYWHERE_42}\"\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("NOT_SET_ANYWHERE_42"), "{err}");
    // A configured schema registry that cannot be reached: the ingest cannot
    // register the raw event schema, so it does not start.
    let (code, err) = run(
        "[schema_registry]\nurl = \"http://127.0.0.1:1\"\ntimeout_ms = 2000\n[tenants.acme.providers.stripe]\nsecret = \"whsec_x\"\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("schema_registry (http://127.0.0.1:1)") && err.contains("POST /subjects/"),
        "{err}"
    );
    // Raw topics missing on the broker: refuse rather than answer 503 forever.
    let broker = BrokerProcess::start(1);
    let s = setup(broker.bootstrap(), 2);
    let out = storefold()
        .arg("--config")
        .arg(&s.config_path)
        .arg("ingest")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("storefold topics create"), "{err}");
}

#[test]
fn the_example_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../storefold.example.toml");
    let config = Config::load(&path, Vec::new()).expect("the example config loads");
    let demo = &config.tenants["demo"];
    assert!(demo.providers.len() >= 9);
    assert_eq!(config.kafka.topic_prefix, "storefold.");
    storefold_sinks::registry::check(&config).expect("the example's sink sections");
    let pg = storefold_sinks::postgres::PostgresSinkConfig::from_config(&config)
        .expect("valid")
        .expect("[sinks.postgres]");
    assert_eq!(pg.schema, "storefold");
    assert_eq!(pg.batch_size, 1000);
    // --help of every subcommand works (the docs an operator reads first).
    for args in [
        vec!["--help"],
        vec!["ingest", "--help"],
        vec!["topics", "check", "--help"],
        vec!["topics", "create", "--help"],
        vec!["webhook", "send", "--help"],
        vec!["erase", "--help"],
        vec!["identity", "--help"],
        vec!["identity", "split", "--help"],
        vec!["sink", "--help"],
    ] {
        let out = storefold().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

/// `storefold erp load`: a file checked whole, posted in bodies of whole
/// lines under the limit, each stored once on raw.erp; loading it again
/// stores nothing new; a file with a wrong line posts nothing and names it.
#[test]
fn erp_load_posts_a_file_in_bodies_of_whole_lines_once() {
    let mut broker = BrokerProcess::start(1);
    let setup = setup(broker.bootstrap(), 1);
    create_all(&mut broker, &setup.config);
    let ingest = IngestProcess::start(&setup);
    let lines: Vec<String> = (1..=5)
        .map(|i| {
            format!(
                "{{\"sku\":\"TEE-{i}\",\"unit_cost\":\"1{i}.50\",\"currency\":\"USD\",\"available\":{i},\"at\":\"2026-11-0{i}T00:00:00Z\"}}"
            )
        })
        .collect();
    // Each line is under 100 bytes with its newline: two fit in 250.
    assert!(lines.iter().all(|l| l.len() < 100 && l.len() > 80));
    let file = setup._dir.path().join("costs.jsonl");
    std::fs::write(
        &file,
        format!("{}\n\n{}\n", lines[..2].join("\n"), lines[2..].join("\n")),
    )
    .unwrap();
    let load = |path: &Path| {
        storefold()
            .arg("--config")
            .arg(&setup.config_path)
            .args(["erp", "load", "--tenant", TENANT, "--max-bytes", "250"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = load(&file);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 line(s) with data, in 3 bodies"),
        "{stdout}"
    );
    // The file's lines 1-2, 4-5 and 6 (line 3 is blank).
    assert!(
        stdout.contains("lines 1-2:")
            && stdout.contains("lines 4-5:")
            && stdout.contains("lines 6-6:"),
        "{stdout}"
    );
    // (event id, body) of every record raw.erp holds.
    let stored = || -> Vec<(String, Vec<u8>)> {
        let codec = AvroCodec::embedded().unwrap();
        read_topic(
            broker.bootstrap(),
            "storefold.raw.erp",
            Duration::from_secs(20),
        )
        .into_iter()
        .map(|r| {
            let ev: RawEvent = codec.decode(r.payload.as_deref().unwrap()).unwrap();
            assert_eq!(ev.tenant, TENANT);
            (ev.event_id, ev.body)
        })
        .collect()
    };
    let first = stored();
    assert_eq!(first.len(), 3);
    let all: Vec<u8> = first.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(
        String::from_utf8(all).unwrap(),
        format!("{}\n", lines.join("\n"))
    );

    // Again: the same bodies under the same idempotency ids, which the
    // processor skips as duplicates.
    let out = load(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = stored();
    assert_eq!(again.len(), 6);
    assert_eq!(&again[3..], &first[..], "the same bodies and ids");

    // A wrong line: nothing posted, the line named.
    let bad = setup._dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{}\n{{\"sku\":\"CAP\",\"unit_cost\":\"1.234\",\"currency\":\"USD\",\"at\":\"2026-11-01T00:00:00Z\"}}\n",
            lines[0].replace("TEE-1", "NEW-1"),
            lines[1].replace("TEE-2", "NEW-2")
        ),
    )
    .unwrap();
    let out = load(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 3") && stderr.contains("nothing was posted"),
        "{stderr}"
    );
    assert_eq!(stored().len(), 6, "nothing of the bad file stored");
    ingest.signal("TERM");
    let (status, log) = ingest.wait();
    assert!(status.success(), "{log}");
}

/// `storefold settlement load`: a report checked whole, posted in bodies of
/// whole rows each with the header line, stored once on raw.settlement;
/// each movement keeps its event id whatever body it is in, so loading it
/// again folds nothing twice; a report with a wrong row posts nothing and
/// names the row's line and column.
#[test]
fn settlement_load_posts_a_report_in_bodies_of_whole_rows_with_the_header() {
    use storefold_core::Event;
    use storefold_providers::{Headers, MapContext, MapOptions, ProviderKind, RawInput};

    let mut broker = BrokerProcess::start(1);
    let setup = setup(broker.bootstrap(), 1);
    create_all(&mut broker, &setup.config);
    let ingest = IngestProcess::start(&setup);
    let header = "automatic_payout_id,balance_transaction_id,created_utc,currency,gross,fee,net,\
reporting_category,charge_id,customer_email";
    // Five rows of one length: gross 1i.00, fee 0.50, net 1(i-1).50.
    let rows: Vec<String> = (1..=5)
        .map(|i| {
            format!(
                "po_1SfLoad,txn_{i},2026-11-0{i} 09:00:00,usd,1{i}.00,0.50,1{j}.50,charge,ch_{i},\
b{i}@example.com",
                j = i - 1
            )
        })
        .collect();
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    // The header and two rows fit; three do not.
    let max = header.len() + 1 + 2 * (rows[0].len() + 1);
    let file = setup._dir.path().join("payouts.csv");
    std::fs::write(
        &file,
        format!(
            "{header}\n{}\n\n{}\n",
            rows[..2].join("\n"),
            rows[2..].join("\n")
        ),
    )
    .unwrap();
    let load = |path: &Path| {
        storefold()
            .arg("--config")
            .arg(&setup.config_path)
            .args([
                "settlement",
                "load",
                "--tenant",
                TENANT,
                "--report",
                "stripe.payout_reconciliation",
                "--max-bytes",
                &max.to_string(),
            ])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = load(&file);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 row(s), 5 event(s), in 3 bodies"),
        "{stdout}"
    );
    // The file's lines 2-3, 5-6 and 7 (line 4 is blank).
    assert!(
        stdout.contains("lines 2-3:")
            && stdout.contains("lines 5-6:")
            && stdout.contains("lines 7-7:"),
        "{stdout}"
    );
    // (request id, body) of every record raw.settlement holds.
    let stored = || -> Vec<(String, Vec<u8>)> {
        let codec = AvroCodec::embedded().unwrap();
        read_topic(
            broker.bootstrap(),
            "storefold.raw.settlement",
            Duration::from_secs(20),
        )
        .into_iter()
        .map(|r| {
            let ev: RawEvent = codec.decode(r.payload.as_deref().unwrap()).unwrap();
            assert_eq!(ev.tenant, TENANT);
            assert_eq!(ev.topic, "stripe.payout_reconciliation");
            (ev.event_id, ev.body)
        })
        .collect()
    };
    let first = stored();
    assert_eq!(first.len(), 3);
    let expected = [
        format!("{header}\n{}\n{}\n", rows[0], rows[1]),
        format!("{header}\n{}\n{}\n", rows[2], rows[3]),
        format!("{header}\n{}\n", rows[4]),
    ];
    for ((_, body), want) in first.iter().zip(&expected) {
        assert_eq!(String::from_utf8_lossy(body), *want);
    }
    // What the processor maps from the stored bodies: one line per row, its
    // id the balance transaction's, and no email.
    let options = MapOptions::default();
    let mut ids = Vec::new();
    for (id, body) in &first {
        let events = ProviderKind::Settlement
            .map(
                &MapContext {
                    tenant: TENANT,
                    options: &options,
                },
                &RawInput {
                    topic: "stripe.payout_reconciliation",
                    event_id: id,
                    headers: &Headers::default(),
                    body,
                    received_at: time::OffsetDateTime::now_utc(),
                },
            )
            .unwrap();
        for e in events {
            assert!(matches!(e.event, Event::PayoutLine(_)));
            assert!(!serde_json::to_string(&e).unwrap().contains("example.com"));
            ids.push(e.event_id);
        }
    }
    assert_eq!(
        ids,
        (1..=5)
            .map(|i| format!("settlement:stripe:txn_{i}"))
            .collect::<Vec<_>>()
    );

    // Again: the same bodies under the same ids, which the processor skips.
    let out = load(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = stored();
    assert_eq!(again.len(), 6);
    assert_eq!(&again[3..], &first[..], "the same bodies and ids");

    // A wrong row: nothing posted, its line and column named.
    let bad = setup._dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "{header}\n{}\n{}\n",
            rows[0].replace("txn_1", "txn_9"),
            rows[1].replace("12.00", "12.005")
        ),
    )
    .unwrap();
    let out = load(&bad);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 3: gross") && stderr.contains("nothing was posted"),
        "{stderr}"
    );
    assert_eq!(stored().len(), 6, "nothing of the bad file stored");
    ingest.signal("TERM");
    let (status, log) = ingest.wait();
    assert!(status.success(), "{log}");
}
