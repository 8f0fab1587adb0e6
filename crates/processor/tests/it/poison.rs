//! Records too large for Kafka and partition-count changes, against
//! librdkafka's mock cluster and real RocksDB: a webhook of 1 MiB that cannot
//! be mapped goes to the dead-letter topic with its coordinates while the
//! partition keeps flowing; a customer with 10 000 orders and 10 000 touches
//! keeps exact money and a projection under the limit; a partition count that
//! changes under a running processor stops it with an error naming the topic.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use prometheus::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{AvroCodec, CustomerProjection, RawEvent, WireFormat};
use storefold_core::identity::{IdentityKey, IdentityKind};
use storefold_processor::{Mode, Processor};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, java_partition};
use storefold_testkit::broker::{read_topic, send_waiting};
use storefold_testkit::samples::{sample, shopify_order};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

const T0: OffsetDateTime = datetime!(2026-02-01 09:00 UTC);

/// Produces raw events with a producer that accepts records up to 4 MB (the
/// ingest of an operator who raised `message.max.bytes`).
fn produce_large(config: &Config, events: &[RawEvent]) {
    let codec = AvroCodec::embedded().expect("codec");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("message.max.bytes", "4000000")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let topics = Topics::new(&config.kafka.topic_prefix);
    for e in events {
        let kind: ProviderKind = e.provider.parse().expect("provider");
        let payload = codec.encode(e, WireFormat::SingleObject).expect("encode");
        let p = java_partition(e.tenant.as_bytes(), config.kafka.partitions);
        let topic = topics.raw(kind);
        send_waiting(
            &producer,
            BaseRecord::to(&topic)
                .key(e.tenant.as_bytes())
                .payload(&payload)
                .partition(p),
        );
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn header(r: &storefold_testkit::broker::Record, name: &str) -> String {
    String::from_utf8_lossy(r.header(name).unwrap_or_default()).into_owned()
}

#[test]
fn a_one_mib_webhook_that_cannot_be_mapped_is_dead_lettered_with_its_coordinates() {
    let env = env(1);
    let topics = Topics::new(&env.config.kafka.topic_prefix);
    // A signed Shopify webhook whose body is 1 MiB that is not an order.
    let mut huge = raw_event("acme", &shopify_order(1, "huge@example.com"), T0);
    let mut body = b"{\"id\": \"".to_vec();
    body.resize(1024 * 1024, b'7');
    huge.body = body;
    huge.event_id = "huge-1".into();
    let good = raw_event(
        "acme",
        &shopify_order(2, "after@example.com"),
        T0 + time::Duration::minutes(1),
    );
    produce_large(&env.config, &[huge, good]);

    let (summary, metrics) = run(&env, &env.config, options(&env.config, Mode::All));
    assert_eq!(summary.events, 2);
    // The partition kept flowing: the event after the poison one was folded.
    let (customers, _) = state(&env.config.processor.state_dir, 1);
    assert!(
        customers
            .values()
            .any(|c| c.email.as_deref() == Some("after@example.com")),
        "{customers:?}"
    );
    let dlq = read_topic(
        &env.config.kafka.bootstrap_servers,
        &topics.dlq_processor(),
        Duration::from_secs(5),
    );
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let r = &dlq[0];
    assert_eq!(header(r, "storefold-value-omitted"), "true");
    assert_eq!(header(r, "storefold-event-id"), "huge-1");
    assert_eq!(
        header(r, "storefold-source-topic"),
        topics.raw(ProviderKind::Shopify)
    );
    assert_eq!(header(r, "storefold-source-offset"), "0");
    assert!(!header(r, "storefold-error").is_empty());
    let value: serde_json::Value =
        serde_json::from_slice(r.payload.as_deref().expect("a value")).expect("JSON coordinates");
    assert_eq!(value["value_omitted"], true);
    assert_eq!(value["topic"], topics.raw(ProviderKind::Shopify));
    assert_eq!(value["partition"], 0);
    assert_eq!(value["offset"], 0);
    assert_eq!(value["event_id"], "huge-1");
    assert!(
        value["size"].as_u64().expect("size") > 1024 * 1024,
        "{value}"
    );
    assert_eq!(value["error"], header(r, "storefold-error"));
    assert!(r.payload.as_ref().map_or(0, Vec::len) < 16 * 1024);
    assert_eq!(
        metric(
            &metrics,
            "storefold_processor_oversized_total{kind=\"dead_letter\"}"
        ),
        1.0
    );
    assert_eq!(summary.task_restarts, 0, "no batch failed");
}

const EMAIL: &str = "collector@example.com";
const ANON: &str = "anon-collector";

/// A small Shopify `orders/create` for order `n` of [`EMAIL`], placed `n`
/// minutes after [`T0`], paid, for `n + 1` cents (the first order carries the
/// browser's cart token, which ties the anonymous touches to the customer).
fn small_order(template: &RawEvent, n: u32) -> RawEvent {
    let mut v: serde_json::Value =
        serde_json::from_slice(&shopify_order(u64::from(n), EMAIL).body).expect("fixture JSON");
    let obj = v.as_object_mut().expect("an object");
    for k in [
        "customer",
        "line_items",
        "fulfillments",
        "billing_address",
        "shipping_address",
        "total_price_set",
        "current_total_price_set",
        "subtotal_price_set",
        "current_subtotal_price_set",
        "total_discounts_set",
        "total_shipping_price_set",
        "landing_site",
        "note_attributes",
        "shipping_lines",
        "discount_codes",
        "client_details",
        "admin_graphql_api_id",
        "referring_site",
        "note",
        "tags",
        "checkout_token",
        "token",
    ] {
        obj.remove(k);
    }
    let at = (T0 + time::Duration::minutes(i64::from(n)))
        .format(&Rfc3339)
        .expect("time");
    let cents = i64::from(n) + 1;
    let price = format!("{}.{:02}", cents / 100, cents % 100);
    for k in [
        "total_price",
        "current_total_price",
        "subtotal_price",
        "current_subtotal_price",
    ] {
        obj.insert(k.into(), serde_json::json!(price));
    }
    // One currency: without the `*_set` amounts the presentment total is
    // only known in the shop's currency.
    obj.insert("currency".into(), serde_json::json!("USD"));
    obj.insert("presentment_currency".into(), serde_json::json!("USD"));
    obj.insert("total_discounts".into(), serde_json::json!("0.00"));
    obj.insert("total_tax".into(), serde_json::json!("0.00"));
    obj.insert("financial_status".into(), serde_json::json!("paid"));
    obj.insert("created_at".into(), serde_json::json!(at));
    obj.insert("updated_at".into(), serde_json::json!(at));
    obj.insert("processed_at".into(), serde_json::json!(at));
    obj.insert(
        "cart_token".into(),
        serde_json::json!(if n == 0 {
            ANON.to_string()
        } else {
            format!("cart-{n}")
        }),
    );
    let mut e = template.clone();
    e.event_id = format!("order-{n}");
    e.body = serde_json::to_vec(&v).expect("JSON");
    e.received_at = (T0 + time::Duration::minutes(i64::from(n))).unix_timestamp() * 1000;
    e
}

/// A browser touch of the anonymous visitor, `n` minutes after the last
/// order (so the orders' attribution does not move while touches arrive).
fn touch(template: &RawEvent, n: u32) -> RawEvent {
    let at = T0 + time::Duration::days(30) + time::Duration::minutes(i64::from(n));
    let body = serde_json::json!({
        "anonymous_id": ANON,
        "touch_id": format!("tch_{n}"),
        "at": at.format(&Rfc3339).expect("time"),
        "landing_page": format!("https://shop.example/p/{n}?utm_source=s{}&utm_campaign=c{}", n % 3, n % 5),
        "utm": {"source": format!("s{}", n % 3), "medium": "cpc", "campaign": format!("c{}", n % 5)},
    });
    let mut e = template.clone();
    e.event_id = format!("touch-{n}");
    e.body = serde_json::to_vec(&body).expect("JSON");
    e.received_at = at.unix_timestamp() * 1000;
    e
}

#[test]
fn a_customer_with_ten_thousand_orders_and_touches_keeps_exact_money_under_the_limit() {
    const N: u32 = 10_000;
    // Five rounds of 2 000 orders and 2 000 touches, each folded to the end
    // before the next is produced (the mock cluster keeps about 5 MiB per
    // partition): the same tasks and disks go on from round to round.
    const ROUND: u32 = 2_000;
    let env = env(1);
    let mut config = env.config.clone();
    // Batches by size (a round is two full batches), not by time:
    // each batch recomputes the customer from all its orders.
    config.processor.batch_size = 2_000;
    config.processor.commit_interval_ms = 5_000;
    let order_template = raw_event("acme", &shopify_order(0, EMAIL), T0);
    let touch_template = raw_event("acme", &sample(ProviderKind::Collect), T0);
    let mut events = 0;
    let mut restarts = 0;
    for round in 0..N / ROUND {
        let mut batch: Vec<RawEvent> = Vec::new();
        for n in round * ROUND..(round + 1) * ROUND {
            batch.push(small_order(&order_template, n));
            batch.push(touch(&touch_template, n));
        }
        produce(&config, &batch);
        let (summary, _) = run(&env, &config, options(&config, Mode::All));
        events += summary.events;
        restarts += summary.task_restarts;
    }
    assert_eq!(events, u64::from(2 * N), "every event was read");
    assert_eq!(restarts, 0, "no batch failed");
    // Then an event of another customer: the partition is not stalled.
    produce(
        &config,
        &[raw_event(
            "acme",
            &shopify_order(99_999, "next@example.com"),
            T0 + time::Duration::days(60),
        )],
    );
    let (summary, _) = run(&env, &config, options(&config, Mode::All));
    assert_eq!(summary.events, 1);

    let (customers, _) = state(&config.processor.state_dir, 1);
    assert!(
        customers
            .values()
            .any(|c| c.email.as_deref() == Some("next@example.com"))
    );
    let id = IdentityKey::new("acme", IdentityKind::Email, EMAIL)
        .customer_id()
        .0;
    let c = customers
        .get(&format!("acme/{id}"))
        .unwrap_or_else(|| panic!("{EMAIL} folded: {:?}", customers.keys()));
    // Money: every order counted, to the cent.
    let expected: i64 = (1..=i64::from(N)).sum();
    assert_eq!(c.orders_count, u64::from(N));
    assert_eq!(c.revenue.len(), 1, "{:?}", c.revenue);
    assert_eq!(c.revenue[0].gross, expected);
    assert_eq!(c.revenue[0].net, expected);
    assert_eq!(c.revenue[0].orders, u64::from(N));
    // Touches: every one counted, the first and the last kept.
    assert_eq!(c.touches, u64::from(N));
    assert_eq!(
        c.first_touch.as_ref().map(|t| t.touch_id.as_str()),
        Some("tch_0")
    );
    assert_eq!(
        c.last_touch.as_ref().map(|t| t.touch_id.as_str()),
        Some(format!("tch_{}", N - 1).as_str())
    );
    assert_eq!(
        c.touch_counts.medium.0.get("cpc").copied(),
        Some(u64::from(N))
    );
    // The newest orders are listed, and the view says how many are not.
    let listed = config.processor.max_listed_orders;
    assert!(c.truncated);
    assert_eq!(c.orders.len(), listed);
    assert_eq!(
        c.omitted.get("orders").copied(),
        Some(u64::from(N) - listed as u64)
    );
    assert_eq!(
        c.orders.last().map(|o| o.order_id.clone()),
        c.last_order_id.clone()
    );

    // The newest projection of the customer: under the limit, flagged, exact.
    let topics = Topics::new(&config.kafka.topic_prefix);
    let codec = AvroCodec::embedded().expect("codec");
    let key = format!("acme/{id}");
    let newest = read_topic(
        &config.kafka.bootstrap_servers,
        &topics.customers(),
        Duration::from_secs(5),
    )
    .into_iter()
    .rfind(|r| r.key.as_deref() == Some(key.as_bytes()))
    .expect("a projection of the customer");
    let bytes = newest.payload.as_deref().expect("value");
    assert!(bytes.len() < 1_000_000, "{} bytes", bytes.len());
    let projection: CustomerProjection = codec.decode(bytes).expect("projection");
    let doc: serde_json::Value = serde_json::from_str(&projection.doc).expect("doc");
    assert_eq!(doc["truncated"], true);
    assert_eq!(doc["orders_count"], N);
    assert_eq!(doc["revenue"][0]["gross"], expected);
    assert_eq!(doc["omitted"]["orders"], u64::from(N) - listed as u64);
    assert_eq!(doc["touches"], N);
}

#[test]
fn a_partition_count_change_stops_the_processor_naming_the_topic() {
    // librdkafka's mock cluster cannot add partitions to a topic, so the
    // processor is made to believe the topics had 2 partitions when it
    // started; the broker says 4.
    let env = env(4);
    produce(
        &env.config,
        &[raw_event("acme", &shopify_order(1, "a@example.com"), T0)],
    );
    let mut p =
        Processor::new(&env.config, Registry::new(), env.rt.handle().clone()).expect("processor");
    Arc::get_mut(&mut p.shared)
        .expect("not shared yet")
        .partitions = 2;
    for mode in [Mode::All, Mode::Group] {
        let opts = options(&env.config, mode.clone());
        let err = p
            .run_blocking(opts, CancellationToken::new())
            .expect_err("a changed partition count stops the processor");
        let text = err.to_string();
        assert!(err.is_fatal(), "{mode:?}: {text}");
        assert!(text.contains("partition count changed"), "{mode:?}: {text}");
        if mode == Mode::All {
            // The periodic check names the topic, the count it started with
            // and the one it found.
            assert!(text.contains("has 4 partitions"), "{text}");
            assert!(text.contains("had 2 when"), "{text}");
            assert!(text.contains("storefold.raw."), "{text}");
        } else {
            // The group hands out partitions 2 and 3, or the periodic check
            // comes first: either way the counts are named.
            assert!(
                text.contains("2 partitions") || text.contains("had 2 when"),
                "{text}"
            );
        }
    }
}
