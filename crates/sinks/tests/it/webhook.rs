//! The webhook sink against a receiver in the test (axum): signatures verified
//! with exactly the README's recipe, retries on 5xx, dead letters on 4xx.

use crate::sink_fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sink_fixtures::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use prometheus::Registry;
use serde_json::Value;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::Topics;
use storefold_sinks::runner::{self, RunOptions};
use storefold_sinks::webhook::WebhookSink;
use storefold_sinks::webhook::WebhookSinkConfig;
use storefold_sinks::{Item, Sink, WriteError};
use storefold_testkit::broker::read_topic;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec-storefold-test";

// ---- The receiver's verification, exactly as README.md ("Sinks → Webhook") gives it.
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Checks a storefold webhook: `secret` is the sink's `sinks.webhook.secret`,
/// `now` the receiver's clock in Unix seconds, `body` the raw request body.
fn verify(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let ts: i64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    // Replay window: refuse requests signed more than 5 minutes away from now.
    if (now - ts).abs() > 300 {
        return Err("timestamp outside the replay window");
    }
    let sig = signature
        .strip_prefix("v1=")
        .ok_or("unknown signature version")?;
    let sig = hex::decode(sig).map_err(|_| "signature is not hex")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| "bad key")?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).map_err(|_| "signature mismatch")
}
// ---- end of the recipe.

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    delivery_id: String,
    verified: Result<(), &'static str>,
    records: Vec<Value>,
    /// The raw body, as text.
    body: String,
    status: u16,
}

/// How the receiver answers.
#[derive(Default)]
struct Receiver {
    deliveries: Vec<Delivery>,
    /// Answer 503 to this many requests first.
    fail_first: usize,
    /// Answer 422 to any request holding a record with this key.
    refuse_key: Option<String>,
    /// Answer this to every request.
    always: Option<u16>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(
    State(rx): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = verify(
        SECRET.as_bytes(),
        &header("storefold-timestamp"),
        &header("storefold-signature"),
        &body,
        now,
    );
    let records: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
    let mut rx = rx.lock().unwrap();
    let (status, answer) = if let Some(s) = rx.always {
        (s, "no".to_string())
    } else if rx.fail_first > 0 {
        rx.fail_first -= 1;
        (503, "try later".to_string())
    } else if let Some(k) = rx
        .refuse_key
        .clone()
        .filter(|k| records.iter().any(|r| r["key"] == k.as_str()))
    {
        (422, format!("record {k} is not acceptable"))
    } else if verified.is_err() {
        (401, "bad signature".to_string())
    } else {
        (200, "ok".to_string())
    };
    rx.deliveries.push(Delivery {
        delivery_id: header("storefold-delivery-id"),
        verified,
        records,
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    (StatusCode::from_u16(status).unwrap(), answer)
}

async fn start_receiver(rx: Shared) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(rx);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn webhook_toml(addr: SocketAddr, extra: &str) -> String {
    format!(
        "[sinks]\nretry_initial_ms = 50\nretry_max_ms = 500\n\
         [sinks.webhook]\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\nbatch_size = 25\nlinger_ms = 100\n{extra}\n"
    )
}

fn webhook_cfg(addr: SocketAddr) -> WebhookSinkConfig {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n{}",
        webhook_toml(addr, "")
    );
    let config = Config::from_toml_str(&toml, Vec::new()).unwrap();
    WebhookSinkConfig::from_config(&config).unwrap().unwrap()
}

fn options() -> RunOptions {
    RunOptions {
        group_id: "storefold-sink-webhook".into(),
        batch_size: 25,
        linger: Duration::from_millis(100),
        exit_when_idle: Some(Duration::from_secs(2)),
    }
}

fn fixture() -> Vec<Item> {
    let p = fold(&spec(15, 150, 9), 100);
    let mut items: Vec<Item> = p.customers.iter().cloned().map(Item::Customer).collect();
    items.extend(p.orders.iter().cloned().map(Item::Order));
    items.push(Item::Trigger(trigger(
        &p.customers[0],
        "chargeback_opened",
        1_700_000_000_000,
    )));
    items
}

/// Identity of a delivered record: (type, key, version or trigger id).
fn identity(r: &Value) -> (String, String, String) {
    let v = if r["type"] == "trigger" {
        r["data"]["trigger_id"].as_str().unwrap().to_string()
    } else {
        r["version"].to_string()
    };
    (
        r["type"].as_str().unwrap().to_string(),
        r["key"].as_str().unwrap().to_string(),
        v,
    )
}

fn identity_of(item: &Item) -> (String, String, String) {
    let r = storefold_sinks::webhook::record_json(item);
    identity(&r)
}

/// Runs the webhook sink of `env`'s configuration until it went idle.
async fn run_webhook_sink(env: &KafkaEnv) -> runner::RunSummary {
    let registry = Registry::new();
    let cfg = WebhookSinkConfig::from_config(&env.config)
        .unwrap()
        .unwrap();
    let sink = WebhookSink::new(&cfg, &registry).unwrap();
    assert_eq!(sink.name(), "webhook");
    runner::run(
        sink,
        &env.config,
        options(),
        &registry,
        CancellationToken::new(),
    )
    .await
    .expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_verifies_with_the_readme_recipe() {
    init_tracing();
    let rx: Shared = Arc::default();
    let addr = start_receiver(rx.clone()).await;
    let env = kafka_env(2, &webhook_toml(addr, ""));
    let items = fixture();
    produce(&env.config, &items);
    let summary = run_webhook_sink(&env).await;
    assert_eq!(summary.rejected, 0);

    let deliveries = rx.lock().unwrap().deliveries.clone();
    assert!(deliveries.len() > 1);
    let mut got = BTreeSet::new();
    for d in &deliveries {
        assert_eq!(d.verified, Ok(()), "delivery {}", d.delivery_id);
        assert_eq!(d.status, 200);
        assert_eq!(d.delivery_id.len(), 32);
        for r in &d.records {
            let data = &r["data"];
            match r["type"].as_str().unwrap() {
                "customer" | "order" => {
                    assert!(data["doc"].is_object(), "doc is parsed JSON");
                    assert_eq!(r["generation"], data["generation"]);
                    assert_eq!(r["version"], data["version"]);
                }
                "trigger" => {
                    assert!(data["data"].is_object());
                    assert!(r["version"].is_null());
                }
                other => panic!("type {other}"),
            }
            got.insert(identity(r));
        }
    }
    let expected: BTreeSet<_> = items.iter().map(identity_of).collect();
    assert_eq!(got, expected);

    // The recipe refuses what it must.
    let body = br#"[{"type":"customer"}]"#;
    let now = 1_700_000_000;
    let good = storefold_sinks::webhook::signature(SECRET.as_bytes(), now, body);
    assert_eq!(
        verify(SECRET.as_bytes(), &now.to_string(), &good, body, now),
        Ok(())
    );
    assert!(verify(SECRET.as_bytes(), &now.to_string(), &good, b"[]", now).is_err());
    assert!(verify(b"other", &now.to_string(), &good, body, now).is_err());
    assert!(verify(SECRET.as_bytes(), &now.to_string(), &good, body, now + 301).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_everything_arrives() {
    init_tracing();
    let rx: Shared = Arc::new(Mutex::new(Receiver {
        fail_first: 4,
        ..Receiver::default()
    }));
    let addr = start_receiver(rx.clone()).await;
    let env = kafka_env(2, &webhook_toml(addr, ""));
    let items = fixture();
    produce(&env.config, &items);
    let summary = run_webhook_sink(&env).await;
    assert_eq!(summary.rejected, 0);

    let deliveries = rx.lock().unwrap().deliveries.clone();
    assert_eq!(deliveries.iter().filter(|d| d.status == 503).count(), 4);
    let delivered: BTreeSet<_> = deliveries
        .iter()
        .filter(|d| d.status == 200)
        .flat_map(|d| d.records.iter().map(identity))
        .collect();
    let expected: BTreeSet<_> = items.iter().map(identity_of).collect();
    assert_eq!(delivered, expected, "nothing lost");
    // A retry carries the delivery id of the attempt it repeats.
    let mut by_id: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for d in &deliveries {
        by_id
            .entry(d.delivery_id.clone())
            .or_default()
            .push(d.status);
    }
    assert!(
        by_id
            .values()
            .any(|s| s.len() > 1 && s.contains(&503) && s.contains(&200))
    );
    assert!(deliveries.iter().all(|d| d.verified.is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_goes_to_the_dlq_with_the_receivers_status() {
    init_tracing();
    let items = fixture();
    let refused = items
        .iter()
        .find_map(|i| match i {
            Item::Order(o) => Some(format!("{}/{}", o.tenant, o.order_id)),
            _ => None,
        })
        .unwrap();
    let rx: Shared = Arc::new(Mutex::new(Receiver {
        refuse_key: Some(refused.clone()),
        ..Receiver::default()
    }));
    let addr = start_receiver(rx.clone()).await;
    let env = kafka_env(2, &webhook_toml(addr, ""));
    produce(&env.config, &items);
    let summary = run_webhook_sink(&env).await;
    assert_eq!(summary.rejected, 1);

    let dlq = read_topic(
        env.broker.bootstrap(),
        &Topics::new(&env.config.kafka.topic_prefix).dlq_sink("webhook"),
        Duration::from_secs(10),
    );
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].key.as_deref(), Some(refused.as_bytes()));
    assert_eq!(dlq[0].header("storefold-error"), Some(&b"http_422"[..]));
    let reason =
        String::from_utf8(dlq[0].header("storefold-error-reason").unwrap().to_vec()).unwrap();
    assert!(
        reason.contains("422") && reason.contains("is not acceptable"),
        "{reason}"
    );

    // Every other record arrived (the refused batch was sent again record by record).
    let delivered: BTreeSet<_> = rx
        .lock()
        .unwrap()
        .deliveries
        .iter()
        .filter(|d| d.status == 200)
        .flat_map(|d| d.records.iter().map(identity))
        .collect();
    let expected: BTreeSet<_> = items
        .iter()
        .filter(|i| sink_fixtures::key_of(i) != refused)
        .map(identity_of)
        .collect();
    assert_eq!(delivered, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_refuses_the_credentials_stops_the_sink() {
    init_tracing();
    let rx: Shared = Arc::new(Mutex::new(Receiver {
        always: Some(401),
        ..Receiver::default()
    }));
    let addr = start_receiver(rx.clone()).await;
    let mut sink = WebhookSink::new(&webhook_cfg(addr), &Registry::new()).unwrap();
    let batch = records(fixture().into_iter().take(3));
    match sink.write(&batch).await {
        Err(WriteError::Fatal { message }) => assert!(message.contains("401"), "{message}"),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    // 4xx about the content: rejected record by record, the others delivered.
    rx.lock().unwrap().always = None;
    rx.lock().unwrap().refuse_key = Some(sink_fixtures::key_of(&batch[1].item));
    let rejections = sink.write(&batch).await.expect("write");
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].index, 1);
    assert_eq!(rejections[0].code, "http_422");
}

/// A receiver down for longer than `max.poll.interval.ms`: the runner pauses its
/// partitions and keeps polling while it retries, so it is never evicted from
/// its group. Proof: one assignment for the whole run (no rebalance), and every
/// record delivered exactly once after the receiver came back (an evicted member
/// could not commit and would deliver again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_max_poll_interval_keeps_the_sink_in_its_group() {
    init_tracing();
    let rx: Shared = Arc::new(Mutex::new(Receiver {
        always: Some(503),
        ..Receiver::default()
    }));
    let addr = start_receiver(rx.clone()).await;
    let toml = format!(
        "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"max.poll.interval.ms\" = \"6000\"\n\
         \"heartbeat.interval.ms\" = \"500\"\n\
         [sinks]\nretry_initial_ms = 50\nretry_max_ms = 500\ncircuit_failure_threshold = 3\ncircuit_open_ms = 1000\n\
         [sinks.webhook]\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\nbatch_size = 25\nlinger_ms = 100\n"
    );
    let env = kafka_env(2, &toml);
    let items = fixture();
    produce(&env.config, &items);

    // The outage lasts until the receiver has refused for 15 s: 2.5 times
    // max.poll.interval.ms.
    let outage = rx.clone();
    let ended = tokio::spawn(async move {
        while outage.lock().unwrap().deliveries.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
        outage.lock().unwrap().always = None;
    });
    let summary = run_webhook_sink(&env).await;
    ended.await.unwrap();
    assert_eq!(summary.rejected, 0);
    assert_eq!(
        summary.assignments, 1,
        "the sink kept its assignment through the outage (no rebalance, no eviction)"
    );

    let deliveries = rx.lock().unwrap().deliveries.clone();
    let refused = deliveries.iter().filter(|d| d.status == 503).count();
    assert!(refused >= 3, "the outage was retried ({refused} refusals)");
    let delivered: Vec<_> = deliveries
        .iter()
        .filter(|d| d.status == 200)
        .flat_map(|d| d.records.iter().map(identity))
        .collect();
    let expected: BTreeSet<_> = items.iter().map(identity_of).collect();
    let unique: BTreeSet<_> = delivered.iter().cloned().collect();
    assert_eq!(unique, expected, "nothing lost");
    assert_eq!(
        delivered.len(),
        expected.len(),
        "nothing delivered twice after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_customer_arrives_as_a_signed_erasure_without_personal_data() {
    init_tracing();
    let rx: Shared = Arc::default();
    let addr = start_receiver(rx.clone()).await;
    // The sink runs twice in one group: a short session, so that the mock
    // cluster hands the partitions to the second run soon after the first left.
    let env = kafka_env(
        2,
        &format!(
            "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             \"heartbeat.interval.ms\" = \"500\"\n{}",
            webhook_toml(addr, "")
        ),
    );
    let e = sink_fixtures::erasure();
    let mut first = vec![
        Item::Customer(e.subject.clone()),
        Item::Customer(e.other.clone()),
    ];
    first.extend(e.orders.iter().cloned().map(Item::Order));
    produce(&env.config, &first);
    run_webhook_sink(&env).await;
    let delivered_before = rx.lock().unwrap().deliveries.len();
    let email = e.subject.email.clone().unwrap();
    assert!(
        rx.lock().unwrap().deliveries[..delivered_before]
            .iter()
            .any(|d| d.body.contains(&email)),
        "the customer was delivered with its email first"
    );

    let mut second = vec![Item::Customer(e.erased.clone())];
    second.extend(e.erased_orders.iter().cloned().map(Item::Order));
    produce(&env.config, &second);
    let summary = run_webhook_sink(&env).await;
    assert_eq!(summary.rejected, 0);
    assert_eq!(summary.written as usize, second.len());

    let deliveries = rx.lock().unwrap().deliveries[delivered_before..].to_vec();
    assert!(!deliveries.is_empty());
    let mut erasures = Vec::new();
    for d in &deliveries {
        assert_eq!(d.verified, Ok(()), "delivery {}", d.delivery_id);
        assert_eq!(d.status, 200);
        // Nothing personal of the erased customer, in any record of the
        // erasure's deliveries (its redacted orders included).
        for s in &e.personal {
            assert!(!d.body.contains(s.as_str()), "{s:?} in {}", d.body);
        }
        erasures.extend(
            d.records
                .iter()
                .filter(|r| r["type"] == "customer_erased")
                .cloned(),
        );
        assert!(
            d.records.iter().all(|r| r["type"] != "customer"),
            "the redacted customer goes as an erasure only"
        );
    }
    let key = format!("{}/{}", e.erased.tenant, e.erased.customer_id);
    assert_eq!(
        erasures,
        vec![serde_json::json!({
            "type": "customer_erased",
            "key": key,
            "generation": e.erased.generation,
            "version": e.erased.version,
            "data": {
                "tenant": e.erased.tenant,
                "customer_id": e.erased.customer_id,
                "generation": e.erased.generation,
                "version": e.erased.version,
                "updated_at": e.erased.updated_at,
            },
        })]
    );
}
