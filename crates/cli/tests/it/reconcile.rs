//! `storefold reconcile --once` on Kafka (librdkafka's mock cluster): the raw
//! topic holds one of two Stripe events the API lists; the pass stores the
//! other, marked as reconciled, under its webhook's id; a second pass finds
//! nothing.

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;
use storefold_codec::{AvroCodec, RawEvent, Verification, WireFormat};
use storefold_testkit::broker::{MockBroker, read_topic, send_waiting};
use storefold_testkit::samples;

const KEY: &str = "rk_test_reconcile";

fn event(id: &str, created: i64) -> serde_json::Value {
    json!({"id": id, "object": "event", "type": "charge.succeeded", "created": created,
        "api_version": "2024-06-20", "livemode": false, "pending_webhooks": 0,
        "data": {"object": {"id": format!("ch_{id}"), "object": "charge", "amount": 1200,
            "amount_captured": 1200, "currency": "usd", "status": "succeeded", "paid": true,
            "captured": true, "created": created, "metadata": {"order_id": "4127"},
            "billing_details": {"email": "ann@example.com"}}}})
}

/// A Stripe stand-in listing `events` (one page), behind the key.
async fn stripe(events: Vec<serde_json::Value>) -> String {
    let router = Router::new().route(
        "/v1/events",
        get(move |headers: HeaderMap| {
            let events = events.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(&format!("Bearer {KEY}"))
                {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(json!({"object": "list", "url": "/v1/events", "has_more": false, "data": events}))
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn raw_events(bootstrap: &str) -> Vec<RawEvent> {
    let codec = AvroCodec::embedded().unwrap();
    read_topic(bootstrap, "storefold.raw.stripe", Duration::from_secs(20))
        .into_iter()
        .map(|r| codec.decode(r.payload.as_deref().unwrap()).unwrap())
        .collect()
}

fn once(config: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(config)
        .args(["reconcile", "--once"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_once_stores_what_the_raw_topic_lacks_once() {
    let broker = MockBroker::start(1);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let received = event("evt_received", now - 7200);
    let lost = event("evt_lost", now - 3600);
    let base = stripe(vec![lost.clone(), received.clone()]).await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storefold.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 2\n\
             [log]\nlevel = \"warn,librdkafka=error,rdkafka=error\"\n\
             [reconcile]\nstate_dir = \"{}\"\n{}\
             [tenants.demo.reconcile.stripe]\napi_key = \"{KEY}\"\nbase_url = \"{base}\"\n",
            broker.bootstrap(),
            dir.path().join("reconcile").display(),
            samples::tenant_toml("demo"),
        ),
    )
    .unwrap();
    crate::common::create_topics(&broker, &config);

    // The webhook of evt_received, as the ingest stored it an hour before.
    let codec = AvroCodec::embedded().unwrap();
    let stored = RawEvent {
        event_id: "evt_received".into(),
        tenant: "demo".into(),
        provider: "stripe".into(),
        topic: "charge.succeeded".into(),
        received_at: (now - 7190) * 1000,
        headers: Default::default(),
        body: serde_json::to_vec(&received).unwrap(),
        verification: Verification::verified("stripe-v1"),
        trace_context: None,
        encryption: None,
        residue: None,
    };
    let payload = codec.encode(&stored, WireFormat::SingleObject).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    send_waiting(
        &producer,
        BaseRecord::to("storefold.raw.stripe")
            .key("demo")
            .payload(&payload)
            .timestamp((now - 7190) * 1000),
    );
    producer.flush(Duration::from_secs(10)).unwrap();

    let (ok, stdout, stderr) = once(&config);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("demo stripe") && stdout.contains("listed 2, missing from the raw log 1"),
        "{stdout}"
    );
    assert!(stdout.contains("charge.succeeded evt_lost"), "{stdout}");
    let raws = raw_events(broker.bootstrap());
    assert_eq!(raws.len(), 2);
    let injected = raws.iter().find(|r| r.event_id == "evt_lost").unwrap();
    assert!(storefold_reconcile::is_reconciled(injected));
    assert_eq!(
        injected.verification.scheme.as_deref(),
        Some("reconcile:stripe-api")
    );
    let body: serde_json::Value = serde_json::from_slice(&injected.body).unwrap();
    assert_eq!(body, lost);

    // The second pass finds the raw topic complete.
    let (ok, stdout, stderr) = once(&config);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("missing from the raw log 0"), "{stdout}");
    assert_eq!(raw_events(broker.bootstrap()).len(), 2);
}
