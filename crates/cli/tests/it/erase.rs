//! `storefold erase` against the real binary (`storefold run` with librdkafka's
//! mock cluster): the dry run reads the query API and names what would go; the
//! command itself is signed with the tenant's operator secret from the
//! configuration, lands on `raw.operator` byte for byte, maps to the operator's
//! `CustomerRedacted`, and the fold erases the customer; a wrong secret or a bad
//! identity is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use storefold_codec::{AvroCodec, RawEvent};
use storefold_core::Event;
use storefold_providers::{Headers, MapContext, MapOptions, ProviderKind, RawInput};
use storefold_runtime::operator::hash_token;
use storefold_testkit::broker::{MockBroker, read_topic};
use storefold_testkit::free_port;
use storefold_testkit::samples;
use time::OffsetDateTime;

use crate::common::{Started, post_order, start_run};

pub(crate) const TOKEN: &str = "sft_erase-test-admin";
const EMAIL: &str = "ada@erase.example";

/// A `storefold run` configuration with tenant `acme` (every provider, the
/// operator included) and the admin token [`TOKEN`].
pub(crate) fn write_config(dir: &Path, bootstrap: &str, public: u16, operator: u16) -> PathBuf {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = 2\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [ingest]\nlisten = \"127.0.0.1:{public}\"\nshutdown_timeout_secs = 5\n\
         [processor]\nstate_dir = \"{state}\"\ncommit_interval_ms = 100\n\
         [operator]\nlisten = \"127.0.0.1:{operator}\"\n\
         [[operator.tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nadmin = true\n\
         [log]\nlevel = \"info,librdkafka=error,rdkafka=error\"\n{acme}",
        state = dir.join("state").display(),
        hash = hash_token(TOKEN),
        acme = samples::tenant_toml("acme"),
    );
    let path = dir.join("storefold.toml");
    std::fs::write(&path, &toml).unwrap();
    path
}

fn erase(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(config)
        .args(["erase", "--tenant", "acme"])
        .args(args)
        .env_remove("STOREFOLD_TOKEN")
        .env_remove("STOREFOLD_OPERATOR_SECRET")
        .output()
        .unwrap()
}

/// The canonical events a raw operator command maps to.
pub(crate) fn operator_events(ev: &RawEvent) -> Vec<storefold_core::Envelope> {
    let headers = Headers::from_pairs(ev.headers.iter());
    let options = MapOptions::default();
    ProviderKind::Operator
        .map(
            &MapContext {
                tenant: &ev.tenant,
                options: &options,
            },
            &RawInput {
                topic: &ev.topic,
                event_id: &ev.event_id,
                headers: &headers,
                body: &ev.body,
                received_at: OffsetDateTime::now_utc(),
            },
        )
        .unwrap()
}

pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_dry_run_then_erase_through_the_ingest_and_the_fold() {
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port());
    let config = write_config(dir.path(), broker.bootstrap(), ports.0, ports.1);
    let Started {
        run,
        client,
        public_base,
        api,
    } = start_run(&broker, dir.path(), &config, ports, &["--no-sinks"]).await;

    // A customer with one order.
    post_order(&client, &public_base, 1, EMAIL).await;
    let by_email = format!("{api}/v1/tenants/acme/customers?email={EMAIL}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let customer_id = loop {
        let (status, doc) = get_json(&client, &by_email).await;
        if status == 200 {
            break doc["customer_id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the customer was not folded within 120 s ({status}):\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let order_id = format!("shopify:{}", 820_982_911_946_154_508u64 + 1);

    // The dry run (API address from operator.listen, token from the
    // environment): what would go, no identity value but the one given.
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args([
            "erase",
            "--tenant",
            "acme",
            "--email",
            "  ADA@erase.example",
        ])
        .arg("--dry-run")
        .env("STOREFOLD_TOKEN", TOKEN)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("dry run: nothing was sent\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "customer {customer_id} (found by email {EMAIL})\n  orders: 1 ({order_id})\n  tickets: 0\n"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("  identities: "), "{stdout}");
    assert!(stdout.contains("email 1"), "{stdout}");
    assert!(stdout.contains("  merged customers: 0"), "{stdout}");
    assert!(stdout.contains("What stays:"), "{stdout}");
    assert!(
        stdout.contains("Raw log: kept as received (tenants.acme.raw_encryption is not set)"),
        "{stdout}"
    );
    // The store's customer id is an identity value: named by its kind only.
    assert!(!stdout.contains("8300000001"), "{stdout}");
    // Nothing was posted: the raw operator topic is still empty.
    let bootstrap = broker.bootstrap().to_string();
    let raw = {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            read_topic(&b, "storefold.raw.operator", Duration::from_secs(5))
        })
        .await
        .unwrap()
    };
    assert!(raw.is_empty(), "a dry run posted {} records", raw.len());

    // Dry run of someone unknown: said plainly, exit 2.
    let out = erase(
        &config,
        &[
            "--email",
            "nobody@erase.example",
            "--dry-run",
            "--token",
            TOKEN,
            "--api",
            &api,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("no customer with email nobody@erase.example in tenant acme"),
        "{stdout}"
    );
    assert!(stderr.contains("nothing to erase"), "{stderr}");
    // A dry run without a token is refused before any request.
    let out = erase(&config, &["--email", EMAIL, "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--token"), "{}", text(&out).1);

    // Argument handling: an identity is required and must normalise.
    let out = erase(&config, &[]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--email"), "{}", text(&out).1);
    let out = erase(&config, &["--email", "not-an-address"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("--email is not a valid email address"),
        "{}",
        text(&out).1
    );
    let out = erase(&config, &["--phone", "0301234567"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--phone"), "{}", text(&out).1);

    // A wrong secret: the ingest's 401 is printed, exit 4, nothing stored.
    let out = erase(&config, &["--email", EMAIL, "--secret", "not-the-secret"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("HTTP 401"), "{stdout}");
    assert!(stdout.contains("signature_mismatch"), "{stdout}");

    // The erasure, signed with the tenant's operator secret from the configuration.
    let out = erase(
        &config,
        &["--email", EMAIL, "--reason", "asked by letter, DPO-7"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let command_id = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("command id: "))
        .unwrap_or_else(|| panic!("no command id: {stdout}"))
        .to_string();
    assert_eq!(command_id.len(), 36, "{command_id}");
    assert!(stdout.contains("HTTP 200"), "{stdout}");

    // On raw.operator: the signed body byte for byte, verified, keyed by the
    // command id; it maps to the operator's CustomerRedacted for the email.
    let raw = tokio::task::spawn_blocking(move || {
        read_topic(
            &bootstrap,
            "storefold.raw.operator",
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap();
    assert_eq!(raw.len(), 1, "one erasure command stored");
    let codec = AvroCodec::embedded().unwrap();
    let ev: RawEvent = codec.decode(raw[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(ev.tenant, "acme");
    assert_eq!(ev.provider, "operator");
    assert_eq!(ev.topic, "customer/erase");
    assert_eq!(ev.event_id, format!("operator:customer/erase:{command_id}"));
    assert_eq!(
        ev.verification.scheme.as_deref(),
        Some("storefold-hmac-sha256")
    );
    let body: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
    assert_eq!(body["command_id"], command_id.as_str());
    assert_eq!(body["email"], EMAIL);
    assert_eq!(body["reason"], "asked by letter, DPO-7");
    assert!(body.get("phone").is_none(), "{body}");
    let events = operator_events(&ev);
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::CustomerRedacted(r) => {
            assert_eq!(r.identity.email.as_deref(), Some(EMAIL));
            assert_eq!(r.identity.phone, None);
            assert!(r.orders.is_empty());
            assert_eq!(r.requested_by, "operator");
        }
        other => panic!("expected CustomerRedacted, got {other:?}"),
    }

    // The fold erased the customer: republished redacted, without the email.
    let by_id = format!("{api}/v1/tenants/acme/customers/{customer_id}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, doc) = get_json(&client, &by_id).await;
        if status == 200 && doc["redacted"] == true {
            assert!(!doc.to_string().contains(EMAIL), "{doc}");
            assert_eq!(doc["orders_count"], 1, "the figures stay: {doc}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the erasure was not folded within 120 s ({status} {doc}):\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
