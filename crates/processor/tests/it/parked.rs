//! Parked events are bounded in time: a Stripe payment naming a WooCommerce
//! order that never arrives goes to `dlq.processor` (reason
//! `unresolved_order`) once WooCommerce's topic, where that order would come
//! from, has been read `processor.park_timeout_hours` past it; one whose order
//! arrives in time is folded into it, even when another topic is read days
//! ahead. A restart on the same disk still gives up on what was parked before,
//! and a replay gives up on the same events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use crate::common::*;
use prometheus::Registry;
use serde_json::{Value, json};
use storefold_codec::RawEvent;
use storefold_core::engine::{Item, ParkedEvent, StateKey, StateValue, order_view};
use storefold_processor::db::{DbSource, StoreMemory, TaskDb};
use storefold_processor::records::{Family, decode_value};
use storefold_processor::{Mode, Processor};
use storefold_providers::ProviderKind;
use storefold_testkit::broker::{Record, read_topic};
use storefold_testkit::samples::{Sample, sample};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "shop";
/// One partition: every event of the tenant meets in task 0.
const PARTITIONS: i32 = 1;

/// A WooCommerce shop whose Stripe charges carry the Woo order id in
/// `metadata.order_id`.
const TENANT_TOML: &str = "[tenants.shop]\nstores = [\"woocommerce\"]\n";

/// Stripe's `charge.succeeded` for charge `charge`, naming Woo order `order`.
fn stripe_charge(event: &str, charge: &str, order: &str) -> Sample {
    let mut v: Value = serde_json::from_slice(&sample(ProviderKind::Stripe).body).expect("json");
    v["id"] = json!(event);
    let o = &mut v["data"]["object"];
    o["id"] = json!(charge);
    o["payment_intent"] = json!(format!("pi_{charge}"));
    o["balance_transaction"] = json!(format!("txn_{charge}"));
    o["metadata"]["order_id"] = json!(order);
    Sample {
        provider: ProviderKind::Stripe,
        topic: "charge.succeeded",
        body: serde_json::to_vec(&v).expect("json"),
    }
}

/// WooCommerce's `order.created` of order `id`.
fn woo_order(id: u64) -> Sample {
    let mut v: Value =
        serde_json::from_slice(&sample(ProviderKind::WooCommerce).body).expect("json");
    v["id"] = json!(id);
    v["number"] = json!(id.to_string());
    v["transaction_id"] = json!(format!("pi_woo_{id}"));
    Sample {
        provider: ProviderKind::WooCommerce,
        topic: "order.created",
        body: serde_json::to_vec(&v).expect("json"),
    }
}

fn at(hours: i64, minutes: i64) -> OffsetDateTime {
    datetime!(2026-03-01 10:00 UTC)
        + time::Duration::hours(hours)
        + time::Duration::minutes(minutes)
}

fn dead_letters(env: &Env) -> Vec<Record> {
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    read_topic(
        &env.config.kafka.bootstrap_servers,
        &topics.dlq_processor(),
        Duration::from_secs(5),
    )
}

fn header(r: &Record, name: &str) -> String {
    String::from_utf8_lossy(r.header(name).unwrap_or_else(|| panic!("{name} header"))).into_owned()
}

/// Event ids of the parked events task 0 holds on disk.
fn parked_on_disk(env: &Env) -> BTreeSet<String> {
    let db = open_task(env);
    db.entries(Family::Parked)
        .expect("read")
        .into_iter()
        .filter_map(|(k, v)| match StateKey::decode(&k)?.item {
            Item::Parked(id) => match decode_value(&v).expect("decode") {
                StateValue::Parked(p) => {
                    assert_eq!(p.envelope.event_id, id);
                    Some(id)
                }
                other => panic!("{k}: {other:?}"),
            },
            _ => None,
        })
        .collect()
}

fn open_task(env: &Env) -> TaskDb {
    let path = env.config.processor.state_dir.join("task-0");
    let memory = StoreMemory::new(16 << 20);
    TaskDb::open(&path, &memory, i64::MAX, Arc::new(AtomicI64::new(0)), false).expect("open")
}

/// The event ids a raw Stripe charge maps to (one canonical payment event).
fn payment_event_id(env: &Env, raw: &RawEvent) -> String {
    let options = env
        .config
        .map_options()
        .expect("options")
        .remove(TENANT)
        .expect("tenant");
    let headers = storefold_providers::Headers::from_pairs(
        raw.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let events = ProviderKind::Stripe
        .map(
            &storefold_providers::MapContext {
                tenant: TENANT,
                options: &options,
            },
            &storefold_providers::RawInput {
                topic: &raw.topic,
                event_id: &raw.event_id,
                headers: &headers,
                body: &raw.body,
                received_at: at(0, 0),
            },
        )
        .expect("map");
    assert_eq!(events.len(), 1, "{events:?}");
    events[0].event_id.clone()
}

/// Runs a processor over every partition until its metrics satisfy `done`,
/// then stops it. The per-task gauges exist only while the task runs.
fn run_until(env: &Env, mut done: impl FnMut(&str) -> bool) {
    let processor = Arc::new(
        Processor::new(&env.config, Registry::new(), env.rt.handle().clone()).expect("processor"),
    );
    let token = CancellationToken::new();
    let thread = {
        let p = processor.clone();
        let t = token.clone();
        let opts = storefold_processor::options(&env.config, Mode::All);
        std::thread::spawn(move || p.run_blocking(opts, t).expect("processor run"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = storefold_runtime::metrics::encode(&processor.registry);
        if done(&text) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the processor's metrics never got there:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    token.cancel();
    thread.join().expect("processor thread");
}

#[test]
fn a_payment_whose_order_never_arrives_goes_to_the_dead_letter_topic_after_the_timeout() {
    let env = env_with(PARTITIONS, 72, TENANT_TOML);
    assert_eq!(env.config.processor.park_timeout_hours, 72);

    // The first run: two Stripe payments before their Woo orders; only order
    // 728 arrives (ten hours later).
    let never = raw_event(
        TENANT,
        &stripe_charge("evt_never", "ch_never", "727"),
        at(0, 0),
    );
    let in_time = raw_event(
        TENANT,
        &stripe_charge("evt_in_time", "ch_in_time", "728"),
        at(0, 1),
    );
    let order_728 = raw_event(TENANT, &woo_order(728), at(10, 0));
    // Stripe's topic holds an event received days later: the Woo orders come
    // from WooCommerce's topic, and only how far that one is read counts.
    let ahead = raw_event(
        TENANT,
        &stripe_charge("evt_ahead", "ch_ahead", "731"),
        at(100, 0),
    );
    let never_id = payment_event_id(&env, &never);
    let in_time_id = payment_event_id(&env, &in_time);
    let ahead_id = payment_event_id(&env, &ahead);
    produce(
        &env.config,
        &[
            never.clone(),
            in_time.clone(),
            ahead.clone(),
            order_728.clone(),
        ],
    );
    let (summary, metrics) = run(&env, &env.config, options(&env.config, Mode::All));
    assert_eq!(summary.events, 4);
    assert!(
        dead_letters(&env).is_empty(),
        "WooCommerce read ten hours past the payments: nobody gave up"
    );
    assert_eq!(
        parked_on_disk(&env),
        BTreeSet::from([never_id.clone(), ahead_id.clone()])
    );
    assert_eq!(
        metric(
            &metrics,
            "storefold_processor_parked_expired_total{provider=\"stripe\"}"
        ),
        0.0
    );

    // The payment whose order arrived in time is in that order's books.
    {
        let db = open_task(&env);
        let src = DbSource::new(&db);
        let fold = env.config.fold_config().expect("fold config");
        let view = order_view(&src, &fold, TENANT, "woocommerce:728").expect("order 728");
        assert_eq!(view.figures.paid_source, "provider", "{:#?}", view.figures);
        let usd = storefold_core::Currency::from_code("USD").expect("usd");
        assert_eq!(
            view.figures.paid.0.get(&usd),
            Some(&12999),
            "{:#?}",
            view.figures
        );
        assert!(
            view.ledger
                .iter()
                .any(|e| e.source_event_id == in_time_id && e.counted),
            "the Stripe capture is a counted ledger entry: {:#?}",
            view.ledger
        );
        assert!(
            order_view(&src, &fold, TENANT, "woocommerce:727").is_none(),
            "a payment never makes an order of its own"
        );
    }

    // A restart on the same disk: a later Woo order takes WooCommerce's topic
    // past 72 hours after the first payment was received. A payment received 72.5
    // hours in (its order is not known either) is not due yet.
    let later_order = raw_event(TENANT, &woo_order(729), at(73, 0));
    let recent = raw_event(
        TENANT,
        &stripe_charge("evt_recent", "ch_recent", "730"),
        at(72, 30),
    );
    let recent_id = payment_event_id(&env, &recent);
    produce(&env.config, &[later_order.clone(), recent.clone()]);
    let (summary, metrics) = run(&env, &env.config, options(&env.config, Mode::All));
    assert_eq!(summary.events, 2);
    let dlq = dead_letters(&env);
    assert_eq!(
        dlq.len(),
        1,
        "exactly the payment whose order never came: {dlq:?}"
    );
    let r = &dlq[0];
    assert_eq!(r.key.as_deref(), Some(TENANT.as_bytes()));
    assert_eq!(header(r, "storefold-error"), "unresolved_order");
    let reason = header(r, "storefold-error-reason");
    assert!(
        reason.contains("order:woocommerce:727") && reason.contains("72 hours"),
        "the reason names what it waited for and how long: {reason}"
    );
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    assert_eq!(
        header(r, "storefold-source-topic"),
        topics.raw(ProviderKind::Stripe)
    );
    assert_eq!(header(r, "storefold-source-partition"), "0");
    assert_eq!(header(r, "storefold-event-id"), never_id);
    let parked: ParkedEvent =
        serde_json::from_slice(r.payload.as_deref().expect("value")).expect("a parked event");
    assert_eq!(parked.envelope.event_id, never_id);
    assert_eq!(parked.envelope.tenant, TENANT);
    assert_eq!(parked.received_at, Some(never.received_at));
    assert_eq!(
        parked_on_disk(&env),
        BTreeSet::from([recent_id.clone(), ahead_id.clone()])
    );
    assert_eq!(
        metric(
            &metrics,
            "storefold_processor_parked_expired_total{provider=\"stripe\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "storefold_processor_dlq_total{reason=\"unresolved_order\"}"
        ),
        1.0
    );
    // Given up on, not released.
    let released: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("storefold_processor_events_total") && l.contains("outcome=\"released\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(released, 0.0, "{metrics}");
    let (_, orders) = state(&env.config.processor.state_dir, PARTITIONS);
    assert!(
        !orders.contains_key("shop/woocommerce:727"),
        "{:?}",
        orders.keys()
    );
    assert!(orders["shop/woocommerce:728"].payments.len() == 1);

    // Started again with nothing new to read: the task finds the event still
    // waiting in its state (the gauge is there while the task runs).
    run_until(&env, |m| {
        metric(m, "storefold_processor_parked_events{task=\"0\"}") == 2.0
    });
    assert_eq!(dead_letters(&env).len(), 1, "nothing more is due");

    // A replay folds the same log again and gives up on the same event.
    let mut opts = options(&env.config, Mode::All);
    opts.reset = true;
    let (summary, metrics) = run(&env, &env.config, opts);
    assert_eq!(summary.events, 6);
    let dlq = dead_letters(&env);
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert_eq!(header(&dlq[1], "storefold-event-id"), never_id);
    assert_eq!(header(&dlq[1], "storefold-error"), "unresolved_order");
    assert_eq!(parked_on_disk(&env), BTreeSet::from([recent_id, ahead_id]));
    assert_eq!(
        metric(
            &metrics,
            "storefold_processor_parked_expired_total{provider=\"stripe\"}"
        ),
        1.0
    );
    let (_, replayed) = state(&env.config.processor.state_dir, PARTITIONS);
    assert_eq!(replayed, orders, "the replay's orders are the first run's");
}
