//! The processor against librdkafka's mock cluster in this process: every
//! provider's events fold to what the pure fold computes, retries and
//! redeliveries change nothing, arrival order does not matter, bad input goes
//! to the dead-letter topic, the query API answers from local state, and
//! state is never applied to a different log.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use storefold_codec::{AvroCodec, CustomerProjection, OrderProjection, RawEvent};
use storefold_processor::Mode;
use storefold_providers::ProviderKind;
use storefold_testkit::broker::read_topic;
use storefold_testkit::history::{HistorySpec, history};
use storefold_testkit::samples::{Sample, shopify_order};
use time::macros::datetime;

const PARTITIONS: i32 = 4;

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

/// Our fixtures of every provider, real payloads of the conformance corpus,
/// and a generated multi-tenant history with correlated events.
fn corpus() -> Vec<RawEvent> {
    let at = datetime!(2026-03-01 10:00 UTC);
    // AfterShip's sample names both an order id and a tracking number another
    // sample's fulfillment carries: the explicit order id must win in any
    // arrival order (it once depended on which arrived first).
    let mut out = provider_samples("acme", at, 5);
    let dir = conformance_dir();
    let real: [(ProviderKind, &str, &str); 5] = [
        (
            ProviderKind::Shopify,
            "orders/create",
            "shopify/orders_create__order.json",
        ),
        (
            ProviderKind::Shopify,
            "refunds/create",
            "shopify/refunds_create__refund.json",
        ),
        (
            ProviderKind::Stripe,
            "charge.succeeded",
            "stripe/djstripe__event_charge.succeeded.json",
        ),
        (
            ProviderKind::Adyen,
            "AUTHORISATION",
            "adyen/notification__authorisation_true.json",
        ),
        (
            ProviderKind::Easypost,
            "tracker.updated",
            "easypost/tracker_updated__delivered.json",
        ),
    ];
    for (provider, topic, file) in real {
        if let Ok(body) = std::fs::read(dir.join(file)) {
            out.push(raw_event(
                "globex",
                &Sample {
                    provider,
                    topic,
                    body,
                },
                at,
            ));
        } else {
            eprintln!(
                "conformance corpus not found at {}: {file} skipped",
                dir.display()
            );
        }
    }
    out.extend(history(&HistorySpec {
        tenants: 3,
        customers_per_tenant: 60,
        events: 1500,
        duplicate_pct: 5,
        seed: 11,
    }));
    out
}

/// The newest record per key of a projection topic.
fn latest<T: storefold_codec::AvroRecord>(
    bootstrap: &str,
    topic: &str,
) -> (BTreeMap<String, T>, usize) {
    let codec = AvroCodec::embedded().expect("codec");
    let records = read_topic(bootstrap, topic, Duration::from_secs(5));
    let n = records.len();
    let mut out = BTreeMap::new();
    for r in records {
        let key = String::from_utf8(r.key.clone().expect("keyed")).expect("utf8 key");
        let v: T = codec
            .decode(r.payload.as_deref().expect("value"))
            .expect("decode");
        out.insert(key, v);
    }
    (out, n)
}

#[test]
fn every_provider_folds_like_the_pure_fold_and_retries_change_nothing() {
    let env = env(PARTITIONS);
    let events = corpus();
    produce(&env.config, &events);
    let (summary, metrics) = run(&env, &env.config, options(&env.config, Mode::Group));
    assert_eq!(
        summary.events as usize,
        events.len(),
        "every raw event folded once"
    );

    let state_dir = env.config.processor.state_dir.clone();
    let (customers, orders) = state(&state_dir, PARTITIONS);
    let (want_customers, want_orders) = reference(&events);
    assert!(customers.len() > 100, "customers: {}", customers.len());
    assert!(orders.len() > 100, "orders: {}", orders.len());
    let extra: Vec<&String> = customers
        .keys()
        .filter(|k| !want_customers.contains_key(*k))
        .collect();
    let missing: Vec<&String> = want_customers
        .keys()
        .filter(|k| !customers.contains_key(*k))
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "customers only in the processor's state: {extra:?}; only in the pure fold: {missing:?}"
    );
    let extra: Vec<&String> = orders
        .keys()
        .filter(|k| !want_orders.contains_key(*k))
        .collect();
    let missing: Vec<&String> = want_orders
        .keys()
        .filter(|k| !orders.contains_key(*k))
        .collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "orders only in the processor's state: {extra:?}; only in the pure fold: {missing:?}"
    );
    for (k, c) in &want_customers {
        assert_eq!(customers.get(k), Some(c), "customer {k}");
    }
    for (k, o) in &want_orders {
        assert_eq!(orders.get(k), Some(o), "order {k}");
    }
    // The fixtures' own facts survive the trip through Kafka and RocksDB.
    let conformance = conformance_dir().exists();
    if conformance {
        assert!(
            orders.keys().any(|k| k.starts_with("globex/shopify:")),
            "the conformance Shopify order is folded"
        );
    }
    assert!(orders.contains_key("acme/shopify:820982911946154508"));
    assert!(
        customers
            .values()
            .any(|c| c.email.as_deref() == Some("buyer3@example.com") && c.orders_count == 1)
    );
    assert!(
        metric(
            &metrics,
            "storefold_processor_events_total{outcome=\"parked\""
        ) >= 0.0
    );
    let parked: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("storefold_processor_events_total") && l.contains("outcome=\"parked\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let released: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("storefold_processor_events_total") && l.contains("outcome=\"released\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        parked > 0.0,
        "some events waited for their order:\n{metrics}"
    );
    assert!(released > 0.0, "and were applied when it arrived");

    // Projections: the newest of every key is the state on disk.
    let bootstrap = env.config.kafka.bootstrap_servers.clone();
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    let (cust_proj, cust_records) = latest::<CustomerProjection>(&bootstrap, &topics.customers());
    for (k, c) in &customers {
        let p = cust_proj
            .get(k)
            .unwrap_or_else(|| panic!("no projection of {k}"));
        assert_eq!(p.generation, 1);
        let doc: serde_json::Value = serde_json::from_str(&p.doc).expect("doc is JSON");
        assert_eq!(
            doc,
            serde_json::to_value(c).expect("json"),
            "projection of {k}"
        );
        assert_eq!(p.email, c.email);
    }
    let (order_proj, order_records) = latest::<OrderProjection>(&bootstrap, &topics.orders());
    for (k, o) in &orders {
        let p = order_proj
            .get(k)
            .unwrap_or_else(|| panic!("no projection of {k}"));
        let doc: serde_json::Value = serde_json::from_str(&p.doc).expect("doc is JSON");
        assert_eq!(
            doc["order"],
            serde_json::to_value(o).expect("json"),
            "projection of {k}"
        );
    }
    // Every projection and trigger carries the receive time of the oldest raw
    // event of its batch (the sinks' end-to-end latency starts there).
    let first_received = events.iter().map(|e| e.received_at).min().expect("events");
    let last_received = events.iter().map(|e| e.received_at).max().expect("events");
    for topic in [topics.customers(), topics.orders(), topics.triggers()] {
        for r in read_topic(&bootstrap, &topic, Duration::from_secs(5)) {
            let at: i64 = r
                .header(storefold_codec::RECEIVED_AT_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or_else(|| panic!("{topic} record without a receive time"));
            assert!(
                (first_received..=last_received).contains(&at),
                "{topic}: received-at {at} outside the input's receive times"
            );
        }
    }
    let triggers = read_topic(&bootstrap, &topics.triggers(), Duration::from_secs(5));
    let codec = AvroCodec::embedded().expect("codec");
    let kinds: std::collections::BTreeSet<String> = triggers
        .iter()
        .map(|r| {
            codec
                .decode::<storefold_codec::Trigger>(r.payload.as_deref().expect("value"))
                .expect("trigger")
                .kind
        })
        .collect();
    for k in [
        "first_order",
        "repeat_order",
        "refund_issued",
        "chargeback_opened",
    ] {
        assert!(kinds.contains(k), "trigger {k} in {kinds:?}");
    }

    // Every event delivered again (provider retries, a redelivered log): the
    // state and the projection topics do not change.
    produce(&env.config, &events);
    let (summary2, metrics2) = run(&env, &env.config, options(&env.config, Mode::Group));
    assert_eq!(summary2.events as usize, events.len());
    let duplicates: f64 = metrics2
        .lines()
        .filter(|l| {
            l.starts_with("storefold_processor_events_total") && l.contains("outcome=\"duplicate\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        duplicates as usize,
        events.len(),
        "every redelivery recognised by its event id"
    );
    let (customers2, orders2) = state(&state_dir, PARTITIONS);
    assert_eq!(customers2, customers);
    assert_eq!(orders2, orders);
    let (_, cust_records2) = latest::<CustomerProjection>(&bootstrap, &topics.customers());
    let (_, order_records2) = latest::<OrderProjection>(&bootstrap, &topics.orders());
    assert_eq!(
        (cust_records2, order_records2),
        (cust_records, order_records),
        "no new projections"
    );
}

#[test]
fn arrival_order_does_not_change_the_result() {
    let events = corpus();
    let mut reversed = events.clone();
    reversed.reverse();
    let mut shuffled = events.clone();
    storefold_scenario::Rng::new(99).shuffle(&mut shuffled);
    let mut results = Vec::new();
    for list in [&events, &reversed, &shuffled] {
        let env = env(PARTITIONS);
        produce(&env.config, list);
        run(&env, &env.config, options(&env.config, Mode::All));
        results.push(state(&env.config.processor.state_dir, PARTITIONS));
    }
    assert!(!results[0].0.is_empty());
    assert_eq!(results[0], results[1], "reversed");
    assert_eq!(results[0], results[2], "shuffled");
}

#[test]
fn bad_input_goes_to_the_dead_letter_topic_and_the_task_keeps_going() {
    let env = env(2);
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    let at = datetime!(2026-03-01 10:00 UTC);
    let raw = topics.raw(ProviderKind::Shopify);
    produce_bytes(&env.config, &raw, 0, b"acme", b"not avro at all");
    let mut broken = raw_event("acme", &shopify_order(1, "a@example.com"), at);
    broken.body = b"{\"id\": ".to_vec();
    broken.event_id = "broken-1".into();
    let good = raw_event("acme", &shopify_order(2, "b@example.com"), at);
    produce(&env.config, &[broken, good]);
    let (summary, metrics) = run(&env, &env.config, options(&env.config, Mode::All));
    assert_eq!(summary.events, 3);
    let (customers, _) = state(&env.config.processor.state_dir, 2);
    assert!(
        customers
            .values()
            .any(|c| c.email.as_deref() == Some("b@example.com"))
    );
    let dlq = read_topic(
        &env.config.kafka.bootstrap_servers,
        &topics.dlq_processor(),
        Duration::from_secs(5),
    );
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let codes: Vec<String> = dlq
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.header("storefold-error").expect("error header")).into_owned()
        })
        .collect();
    assert!(codes.contains(&"undecodable".to_string()), "{codes:?}");
    for r in &dlq {
        assert_eq!(r.header("storefold-source-topic"), Some(raw.as_bytes()));
        assert!(r.header("storefold-source-offset").is_some());
        assert!(
            !r.header("storefold-error-reason")
                .expect("reason")
                .is_empty()
        );
        assert_eq!(r.key.as_deref(), Some(b"acme".as_slice()));
    }
    assert_eq!(
        dlq[0].payload.as_deref(),
        Some(b"not avro at all".as_slice()),
        "the original value is kept"
    );
    assert_eq!(
        metric(
            &metrics,
            "storefold_processor_dlq_total{reason=\"undecodable\"}"
        ),
        1.0
    );
    // What the topic holds, measured from its watermarks at the last lag check.
    assert_eq!(
        metric(
            &metrics,
            &format!(
                "storefold_processor_dlq_records{{topic=\"{}\"}}",
                topics.dlq_processor()
            )
        ),
        2.0
    );
}

/// The sinks' dead-letter topics the gauge measures are the ones the caller
/// names (the CLI names every registered sink): each is measured per owned
/// partition, and a topic nobody named is not.
#[test]
fn the_dead_letter_gauge_measures_the_sinks_it_is_given() {
    let env = env(2);
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    // The test cluster has no sink dead-letter topic: the sinks are named above
    // this crate. One is made here and holds three records.
    let dlq = topics.dlq_sink("webhook");
    env.broker.create_topic(&dlq, 2).expect("create topic");
    for (partition, key) in [(0, b"acme/a"), (1, b"acme/b"), (1, b"acme/c")] {
        produce_bytes(
            &env.config,
            &dlq,
            partition,
            key,
            b"refused by the receiver",
        );
    }
    let at = datetime!(2026-03-01 10:00 UTC);
    produce(
        &env.config,
        &[raw_event("acme", &shopify_order(1, "a@example.com"), at)],
    );
    let gauge = format!("storefold_processor_dlq_records{{topic=\"{dlq}\"}}");

    let mut opts = options(&env.config, Mode::All);
    opts.dead_letter_sinks = vec!["webhook".into()];
    let (_, metrics) = run(&env, &env.config, opts);
    assert_eq!(metric(&metrics, &gauge), 3.0, "{metrics}");

    let (_, metrics) = run(&env, &env.config, options(&env.config, Mode::All));
    assert!(
        !metrics.contains(&dlq),
        "nobody named the webhook sink: {metrics}"
    );
    assert!(metrics.contains(&topics.dlq_processor()), "{metrics}");
}

#[test]
fn state_is_never_applied_to_another_log() {
    let env = env(2);
    let at = datetime!(2026-03-01 10:00 UTC);
    produce(
        &env.config,
        &[raw_event("acme", &shopify_order(1, "a@example.com"), at)],
    );
    run(&env, &env.config, options(&env.config, Mode::All));

    // The same state directory against another cluster.
    let other = common::env(2);
    let mut config = other.config.clone();
    config.processor.state_dir = env.config.processor.state_dir.clone();
    let p = storefold_processor::Processor::new(
        &config,
        prometheus::Registry::new(),
        other.rt.handle().clone(),
    )
    .expect("processor");
    let err = p
        .run_blocking(
            options(&config, Mode::All),
            tokio_util::sync::CancellationToken::new(),
        )
        .expect_err("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("cluster"), "{msg}");
    assert!(msg.contains("task-"), "names the state directory: {msg}");
}

#[test]
fn a_position_beyond_the_end_of_the_log_is_refused() {
    let env = env(1);
    let at = datetime!(2026-03-01 10:00 UTC);
    produce(
        &env.config,
        &[raw_event("acme", &shopify_order(1, "a@example.com"), at)],
    );
    run(&env, &env.config, options(&env.config, Mode::All));
    // Pretend the raw topic lost its records: the stored position is past its end.
    let path = env.config.processor.state_dir.join("task-0");
    {
        let db = storefold_processor::db::TaskDb::open(
            &path,
            &storefold_processor::db::StoreMemory::new(16 << 20),
            i64::MAX,
            std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
            false,
        )
        .expect("open");
        let mut meta = db.meta().expect("meta").expect("stored");
        let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
        meta.positions
            .insert(topics.raw(ProviderKind::Shopify), 1_000);
        let mut batch = rocksdb::WriteBatch::default();
        db.stage_meta(&mut batch, &meta);
        db.write(batch).expect("write");
    }
    let p = storefold_processor::Processor::new(
        &env.config,
        prometheus::Registry::new(),
        env.rt.handle().clone(),
    )
    .expect("processor");
    let err = p
        .run_blocking(
            options(&env.config, Mode::All),
            tokio_util::sync::CancellationToken::new(),
        )
        .expect_err("must refuse");
    assert!(err.to_string().contains("offset 1000"), "{err}");
}

#[test]
fn replay_rebuilds_the_state_with_a_new_generation() {
    let env = env(2);
    let events = history(&HistorySpec {
        tenants: 3,
        customers_per_tenant: 30,
        events: 600,
        duplicate_pct: 5,
        seed: 3,
    });
    produce(&env.config, &events);
    run(&env, &env.config, options(&env.config, Mode::Group));
    let before = state(&env.config.processor.state_dir, 2);

    // `storefold replay`: every task cleared, the raw topics folded again.
    let mut opts = options(&env.config, Mode::All);
    opts.reset = true;
    let (summary, _) = run(&env, &env.config, opts);
    assert_eq!(
        summary.events as usize,
        events.len(),
        "every raw event folded again"
    );
    let after = state(&env.config.processor.state_dir, 2);
    assert_eq!(after, before, "the rebuilt state equals the first fold");
    assert_eq!(after, reference(&events));

    // The newest projection of every key carries generation 2, so sinks
    // replace the old history.
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    let (customers, _) =
        latest::<CustomerProjection>(&env.config.kafka.bootstrap_servers, &topics.customers());
    let (orders, _) =
        latest::<OrderProjection>(&env.config.kafka.bootstrap_servers, &topics.orders());
    assert!(!customers.is_empty() && !orders.is_empty());
    assert!(customers.values().all(|p| p.generation == 2), "customers");
    assert!(orders.values().all(|p| p.generation == 2), "orders");

    // A restart after the replay resumes (generation 2, nothing folded twice).
    produce(&env.config, &events[..10]);
    let (again, metrics) = run(&env, &env.config, options(&env.config, Mode::All));
    assert_eq!(again.events, 10);
    let dup: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("storefold_processor_events_total") && l.contains("outcome=\"duplicate\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dup, 10.0);
    assert_eq!(state(&env.config.processor.state_dir, 2), after);
}
