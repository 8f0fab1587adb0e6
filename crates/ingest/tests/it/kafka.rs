//! The ingest against librdkafka's mock cluster: what is acknowledged is in Kafka,
//! byte for byte, on the tenant's partition; what Kafka did not take is answered 503
//! and stored exactly once when the provider retries; a restart loses nothing that
//! was acknowledged.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{OTHER, PARTITIONS, Running, TENANT, config, create_topics, raw_events};
use storefold_codec::VerificationStatus;
use storefold_providers::ProviderKind;
use storefold_runtime::kafka::java_partition;
use storefold_testkit::broker::MockBroker;
use storefold_testkit::samples::{sample, shopify_order, signed, signed_with};
use storefold_testkit::{http_client, send};
use time::OffsetDateTime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_of_every_provider_lands_byte_identical_on_the_tenants_partition() {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let now = OffsetDateTime::now_utc();
    let providers: Vec<ProviderKind> = ProviderKind::WEBHOOK
        .into_iter()
        .chain([ProviderKind::Collect])
        .collect();
    let mut sent = BTreeMap::new();
    for &p in &providers {
        let req = signed(TENANT, &sample(p), now);
        let resp = send(&client, &ing.base, &req).await;
        sent.insert(p, req.body);
        let status = resp.status();
        assert!(
            status.is_success(),
            "{p}: {status} {}",
            resp.text().await.unwrap()
        );
    }
    // A second tenant lands on its own partition of the same topic.
    let globex = signed_with(
        OTHER,
        &sample(ProviderKind::Shopify),
        "globex-shopify-secret",
        now,
    )
    .unwrap();
    assert_eq!(send(&client, &ing.base, &globex).await.status(), 200);

    for &p in &providers {
        let stored = raw_events(broker.bootstrap(), &cfg, p);
        let ours: Vec<_> = stored
            .iter()
            .filter(|(_, ev)| ev.tenant == TENANT)
            .collect();
        assert_eq!(ours.len(), 1, "{p}: {} records", ours.len());
        let (record, ev) = ours[0];
        // Byte for byte what was sent (Adyen's signature lives inside its body).
        assert_eq!(ev.body, sent[&p], "{p}: body must be byte-identical");
        assert_eq!(record.key.as_deref(), Some(TENANT.as_bytes()), "{p}: key");
        assert_eq!(
            record.partition,
            java_partition(TENANT.as_bytes(), PARTITIONS),
            "{p}: murmur2 partition"
        );
        assert_eq!(ev.provider, p.name());
        assert!(!ev.event_id.is_empty() && !ev.topic.is_empty(), "{p}");
        match p.scheme() {
            Some(scheme) => {
                assert_eq!(ev.verification.status, VerificationStatus::Verified, "{p}");
                assert_eq!(ev.verification.scheme.as_deref(), Some(scheme));
            }
            None => assert_eq!(ev.verification.status, VerificationStatus::Unsigned),
        }
        // Only the provider's own headers are kept: no cookies, no proxies' headers.
        assert!(
            ev.headers
                .keys()
                .all(|k| p.kept_headers().contains(&k.as_str())),
            "{p}: {:?}",
            ev.headers.keys().collect::<Vec<_>>()
        );
        assert!(ev.trace_context.is_some());
    }
    let shopify = raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify);
    let (record, _) = shopify.iter().find(|(_, ev)| ev.tenant == OTHER).unwrap();
    assert_eq!(
        record.partition,
        java_partition(OTHER.as_bytes(), PARTITIONS)
    );
    assert_ne!(
        java_partition(OTHER.as_bytes(), PARTITIONS),
        java_partition(TENANT.as_bytes(), PARTITIONS),
        "the test needs two tenants on different partitions"
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_requests_get_503_and_their_retries_are_stored_once() {
    let broker = MockBroker::start(1);
    let cfg = config(
        broker.bootstrap(),
        "produce_timeout_ms = 1500\nretry_after_secs = 7\nmax_in_flight = 4",
    );
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let now = OffsetDateTime::now_utc();
    let requests: Vec<_> = (0..6)
        .map(|n| signed(TENANT, &shopify_order(n, &format!("c{n}@example.com")), now))
        .collect();
    // A first request while the broker is up: stored.
    assert_eq!(send(&client, &ing.base, &requests[0]).await.status(), 200);

    broker.down(1).unwrap();
    let mut set = tokio::task::JoinSet::new();
    for req in &requests[1..5] {
        let (client, base, req) = (client.clone(), ing.base.clone(), req.clone());
        set.spawn(async move { send(&client, &base, &req).await });
    }
    let attempts = set.join_all().await;
    assert_eq!(attempts.len(), 4);
    for resp in attempts {
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "7");
        let body = common::json(resp).await;
        assert_eq!(body["reason"], "kafka_timeout", "{body}");
    }

    // Beyond ingest.max_in_flight (4) requests, new ones are refused at once
    // instead of piling up while Kafka is away.
    let mut held = tokio::task::JoinSet::new();
    for req in &requests[1..5] {
        let (client, base, req) = (client.clone(), ing.base.clone(), req.clone());
        held.spawn(async move { send(&client, &base, &req).await.status().as_u16() });
    }
    // Well inside the 1.5 s the held requests wait for Kafka.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let shed = send(&client, &ing.base, &requests[5]).await;
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "7");
    assert_eq!(common::json(shed).await["reason"], "overloaded");
    assert_eq!(held.join_all().await, vec![503; 4]);

    broker.up(1).unwrap();
    // The provider retries each request (identical bytes and headers) until it is
    // told 200, as providers do.
    for req in &requests[1..] {
        let mut tries = 0;
        loop {
            tries += 1;
            let status = send(&client, &ing.base, req).await.status();
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            assert!(
                tries < 30,
                "the ingest never recovered after the broker came back"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Let anything that could still be in flight land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, ev) in raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify) {
        *counts.entry(ev.event_id).or_default() += 1;
    }
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "stored more than once: {counts:?}"
    );

    let metrics = storefold_runtime::metrics::encode(&ing.registry);
    assert!(
        metrics.contains("storefold_ingest_requests_total{provider=\"shopify\",status=\"503\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "storefold_ingest_publish_duration_seconds_count{outcome=\"failed\",provider=\"shopify\"}"
    ));
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_and_during_requests_loses_nothing_acknowledged() {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let client = http_client();
    let now = OffsetDateTime::now_utc();
    let mut acknowledged = Vec::new();

    // First life: ten requests, then a graceful stop while twenty more are in flight.
    let first = Running::start(&cfg).await;
    for n in 0..10 {
        let req = signed(TENANT, &shopify_order(n, "first@example.com"), now);
        assert_eq!(send(&client, &first.base, &req).await.status(), 200);
        acknowledged.push(n);
    }
    let stopper = first.stopper();
    let base = first.base.clone();
    let racing: Vec<_> = (10..30)
        .map(|n| {
            let client = client.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let req = signed(TENANT, &shopify_order(n, "race@example.com"), now);
                let mut b = client.post(format!("{base}{}", req.path));
                for (k, v) in &req.headers {
                    b = b.header(k, v);
                }
                let ok = matches!(b.body(req.body).send().await, Ok(r) if r.status() == 200);
                (n, ok)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    stopper.cancel();
    first.stop().await;
    for task in racing {
        let (n, ok) = task.await.unwrap();
        if ok {
            acknowledged.push(n);
        }
    }

    // Second life, same broker: ten more.
    let second = Running::start(&cfg).await;
    for n in 30..40 {
        let req = signed(TENANT, &shopify_order(n, "second@example.com"), now);
        assert_eq!(send(&client, &second.base, &req).await.status(), 200);
        acknowledged.push(n);
    }
    second.stop().await;

    let stored: Vec<u64> = raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify)
        .into_iter()
        .map(|(_, ev)| {
            let v: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
            v["order_number"].as_u64().unwrap() - 5000
        })
        .collect();
    for n in &acknowledged {
        assert!(
            stored.contains(n),
            "order {n} was acknowledged but is not in Kafka"
        );
    }
    assert!(acknowledged.len() >= 20, "{acknowledged:?}");
}

/// An ERP feed (JSON lines, storefold's own signature) goes through the real
/// ingest to `raw.erp` byte for byte, with its content-derived idempotency id;
/// the stored record maps to one InventoryUpdated per line, and a feed signed
/// with another secret is refused and not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_erp_feed_lands_on_raw_erp_and_maps_line_by_line() {
    use storefold_core::Event;
    use storefold_providers::{Headers, MapContext, MapOptions, RawInput};
    use storefold_testkit::samples::Sample;

    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let now = OffsetDateTime::now_utc();
    let body = b"{\"sku\":\"TEE-ORG-M\",\"unit_cost\":\"12.50\",\"currency\":\"EUR\",\"available\":40,\
\"backorder\":false,\"eta\":\"2027-01-15\",\"at\":\"2026-11-01T00:00:00Z\",\"item_id\":\"ART-100-M\"}\n\
\n{\"sku\":\"MUG-STONE-350\",\"unit_cost\":\"1450\",\"currency\":\"JPY\",\"at\":\"2026-11-02\"}\n"
        .to_vec();
    let feed = Sample {
        provider: ProviderKind::Erp,
        topic: "inventory",
        body: body.clone(),
    };

    let forged = signed_with(TENANT, &feed, "not-the-erp-secret", now).unwrap();
    let resp = send(&client, &ing.base, &forged).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(common::json(resp).await["reason"], "signature_mismatch");

    let req = signed(TENANT, &feed, now);
    assert_eq!(req.path, "/v1/webhooks/acme/erp");
    let resp = send(&client, &ing.base, &req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Erp);
    assert_eq!(stored.len(), 1, "the forged feed is not stored");
    let (record, ev) = &stored[0];
    assert_eq!(ev.body, body, "byte for byte");
    assert_eq!(record.key.as_deref(), Some(TENANT.as_bytes()));
    assert_eq!(
        record.partition,
        java_partition(TENANT.as_bytes(), PARTITIONS)
    );
    assert_eq!(
        (ev.provider.as_str(), ev.topic.as_str()),
        ("erp", "inventory")
    );
    let id = storefold_providers::erp::body_id(&body);
    assert_eq!(ev.event_id, id);
    assert_eq!(ev.verification.status, VerificationStatus::Verified);
    assert_eq!(
        ev.verification.scheme.as_deref(),
        Some("storefold-erp-hmac-sha256")
    );
    assert_eq!(
        ev.headers.keys().collect::<Vec<_>>(),
        ["x-storefold-timestamp"]
    );

    // What the processor maps from the stored record.
    let headers = Headers::from_pairs(ev.headers.iter());
    let options = MapOptions::default();
    let events = ProviderKind::Erp
        .map(
            &MapContext {
                tenant: TENANT,
                options: &options,
            },
            &RawInput {
                topic: &ev.topic,
                event_id: &ev.event_id,
                headers: &headers,
                body: &ev.body,
                received_at: now,
            },
        )
        .unwrap();
    let got: Vec<(String, String, Option<i64>)> = events
        .iter()
        .map(|e| match &e.event {
            Event::InventoryUpdated(i) => (
                e.event_id.clone(),
                i.sku.clone(),
                i.unit_cost.map(|m| m.minor),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (format!("{id}#1"), "TEE-ORG-M".to_string(), Some(1250)),
            (format!("{id}#3"), "MUG-STONE-350".to_string(), Some(1450)),
        ]
    );
    ing.stop().await;
}

/// A settlement report (CSV, storefold's own signature over the format and
/// the body) goes through the real ingest to `raw.settlement` byte for byte,
/// with its format as the topic; the stored record maps to one PayoutLine
/// per row and the batch's PayoutUpdated, each under the provider's own id.
/// A report signed with another secret, or under a format storefold does not
/// read, is refused and not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_settlement_report_lands_on_raw_settlement_and_maps_row_by_row() {
    use storefold_core::Event;
    use storefold_providers::settlement::ADYEN_SETTLEMENT_DETAILS;
    use storefold_providers::{Headers, MapContext, MapOptions, RawInput};
    use storefold_testkit::samples::Sample;

    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let now = OffsetDateTime::now_utc();
    // A Settled payment of 120.00 EUR (costs 2.70), and the batch's payout.
    let body = b"Merchant Account,Psp Reference,Merchant Reference,Creation Date,TimeZone,Type,\
Modification Reference,Gross Currency,Gross Debit (GC),Gross Credit (GC),Net Currency,\
Net Debit (NC),Net Credit (NC),Commission (NC),Markup (NC),Scheme Fees (NC),Interchange (NC),\
Batch Number\n\
ShopEU,8816178952310001,1001,2026-11-02 10:15:00,CET,Settled,8816178952318801,EUR,,120.00,\
EUR,,117.30,,0.50,0.40,1.80,57\n\
ShopEU,,,2026-11-06 08:00:00,CET,MerchantPayout,TX4711,,,,EUR,117.30,,,,,,57\n"
        .to_vec();
    let report = Sample {
        provider: ProviderKind::Settlement,
        topic: ADYEN_SETTLEMENT_DETAILS,
        body: body.clone(),
    };

    let forged = signed_with(TENANT, &report, "not-the-settlement-secret", now).unwrap();
    let resp = send(&client, &ing.base, &forged).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(common::json(resp).await["reason"], "signature_mismatch");
    let unknown = Sample {
        topic: "paypal.settlement",
        ..report.clone()
    };
    let resp = send(&client, &ing.base, &signed(TENANT, &unknown, now)).await;
    assert_eq!(resp.status(), 400);

    let req = signed(TENANT, &report, now);
    assert_eq!(req.path, "/v1/webhooks/acme/settlement");
    let resp = send(&client, &ing.base, &req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Settlement);
    assert_eq!(stored.len(), 1, "the refused reports are not stored");
    let (record, ev) = &stored[0];
    assert_eq!(ev.body, body, "byte for byte");
    assert_eq!(record.key.as_deref(), Some(TENANT.as_bytes()));
    assert_eq!(
        (ev.provider.as_str(), ev.topic.as_str()),
        ("settlement", ADYEN_SETTLEMENT_DETAILS)
    );
    assert_eq!(
        ev.event_id,
        storefold_providers::settlement::body_id(ADYEN_SETTLEMENT_DETAILS, &body)
    );
    assert_eq!(ev.verification.status, VerificationStatus::Verified);
    assert_eq!(
        ev.verification.scheme.as_deref(),
        Some("storefold-hmac-sha256")
    );

    // What the processor maps from the stored record.
    let headers = Headers::from_pairs(ev.headers.iter());
    let options = MapOptions::default();
    let events = ProviderKind::Settlement
        .map(
            &MapContext {
                tenant: TENANT,
                options: &options,
            },
            &RawInput {
                topic: &ev.topic,
                event_id: &ev.event_id,
                headers: &headers,
                body: &ev.body,
                received_at: now,
            },
        )
        .unwrap();
    let got: Vec<(String, i64)> = events
        .iter()
        .map(|e| match &e.event {
            Event::PayoutLine(l) => (e.event_id.clone(), l.net.minor),
            Event::PayoutUpdated(p) => (e.event_id.clone(), p.amount.minor),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "settlement:adyen:8816178952310001:Settled:8816178952318801".to_string(),
                11_730
            ),
            ("settlement:adyen:payout:ShopEU:57".to_string(), 11_730),
        ]
    );
    ing.stop().await;
}
