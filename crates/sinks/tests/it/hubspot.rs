//! The HubSpot sink against the HubSpot stand-in (storefold_testkit::hubspot):
//! directly through `Sink::write`, and end to end through the runner on a mock
//! Kafka cluster. Every test asserts the stand-in saw no contract violation and
//! no request with more than 100 inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::sink_fixtures::*;
use prometheus::Registry;
use serde_json::Value;
use storefold_codec::{CustomerProjection, OrderProjection};
use storefold_core::{Currency, Money};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::Topics;
use storefold_sinks::hubspot::HubSpotSink;
use storefold_sinks::hubspot::HubSpotSinkConfig;
use storefold_sinks::hubspot::mapping::Mapping;
use storefold_sinks::runner::{self, RunOptions};
use storefold_sinks::{Item, Sink, WriteError};
use storefold_testkit::broker::read_topic;
use storefold_testkit::hubspot::{
    BatchErrors, HubSpotStandIn, LoggedRequest, Outage, PropertyType, StandInConfig,
};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "pat-na1-test-token";
const CONTACTS_UPSERT: &str = "/crm/v3/objects/contacts/batch/upsert";
const DEALS_UPSERT: &str = "/crm/v3/objects/deals/batch/upsert";

fn hubspot_toml(hs: &HubSpotStandIn, extra: &str) -> String {
    format!(
        "[sinks.hubspot]\ntoken = \"{TOKEN}\"\nbase_url = \"{}\"\n{extra}\n",
        hs.base_url()
    )
}

fn hubspot_cfg(hs: &HubSpotStandIn, extra: &str) -> HubSpotSinkConfig {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n{}",
        hubspot_toml(hs, extra)
    );
    let config = Config::from_toml_str(&toml, Vec::new()).expect("config");
    HubSpotSinkConfig::from_config(&config)
        .expect("valid")
        .expect("hubspot section")
}

fn counter(registry: &Registry, name: &str, label: (&str, &str)) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label.0 && l.value() == label.1)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// The contract every test holds the sink to.
fn assert_contract(hs: &HubSpotStandIn) {
    assert_eq!(hs.violations(), Vec::<String>::new(), "contract violations");
    for r in hs.requests() {
        assert!(
            r.inputs().len() <= 100,
            "{} with {} inputs",
            r.path,
            r.inputs().len()
        );
    }
}

fn successful(hs: &HubSpotStandIn, path: &str) -> Vec<LoggedRequest> {
    hs.requests()
        .into_iter()
        .filter(|r| r.path == path && (r.status == 200 || r.status == 207))
        .collect()
}

fn doc(c: &CustomerProjection) -> Value {
    serde_json::from_str(&c.doc).expect("doc")
}

/// Net revenue of the currency most orders were paid in, read straight from the
/// doc and formatted by the core's money type.
fn expected_ltv(c: &CustomerProjection) -> Option<String> {
    let d = doc(c);
    let rows = d["revenue"].as_array()?;
    let row = rows
        .iter()
        .max_by_key(|r| (r["orders"].as_u64(), r["gross"].as_i64()))?;
    let currency = Currency::from_code(row["currency"].as_str()?).ok()?;
    Some(Money::new(row["net"].as_i64()?, currency).to_decimal_string())
}

fn items(p: &Projections) -> Vec<Item> {
    p.customers
        .iter()
        .cloned()
        .map(Item::Customer)
        .chain(p.orders.iter().cloned().map(Item::Order))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_contacts_deals_and_their_associations() {
    init_tracing();
    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults(TOKEN)).await;
    let registry = Registry::new();
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &registry).expect("sink");
    let p = fold(&spec(150, 1500, 11), 100);
    let with_email: Vec<&CustomerProjection> =
        p.customers.iter().filter(|c| c.email.is_some()).collect();
    assert!(with_email.len() > 100, "the fixture spans several batches");
    let batch = records(items(&p));
    let rejections = sink.write(&batch).await.expect("write");
    assert!(rejections.is_empty(), "{rejections:?}");

    let contacts = hs.contacts();
    assert_eq!(contacts.len(), with_email.len());
    for c in &with_email {
        let stored = &contacts[c.email.as_deref().unwrap_or_default()];
        let d = doc(c);
        let props = &stored.properties;
        assert_eq!(props["storefold_customer_id"], c.customer_id);
        assert_eq!(
            props["storefold_orders_count"],
            d["orders_count"].to_string()
        );
        assert_eq!(
            props.get("storefold_lifetime_value"),
            expected_ltv(c).as_ref()
        );
        assert_eq!(
            props
                .get("storefold_segments")
                .map(String::as_str)
                .unwrap_or(""),
            d["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(";")
        );
    }
    assert_eq!(
        counter(
            &registry,
            "storefold_sink_hubspot_skipped_total",
            ("reason", "no_email")
        ),
        (p.customers.len() - with_email.len()) as u64
    );

    let deals = hs.deals();
    assert_eq!(deals.len(), p.orders.len());
    let email_of: HashMap<&str, &str> = with_email
        .iter()
        .map(|c| {
            (
                c.customer_id.as_str(),
                c.email.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let associations = hs.associations();
    let mut expected_associations = 0;
    for o in &p.orders {
        let deal = &deals[&o.order_id];
        let d: Value = serde_json::from_str(&o.doc).unwrap();
        if let Some(total) = d.pointer("/order/snapshot/value/totals/total") {
            let m = Money::new(
                total["minor"].as_i64().unwrap(),
                Currency::from_code(total["currency"].as_str().unwrap()).unwrap(),
            );
            assert_eq!(deal.properties["amount"], m.to_decimal_string());
        }
        assert_eq!(deal.properties["storefold_order_status"], o.status);
        if let Some(email) = o.customer_id.as_deref().and_then(|c| email_of.get(c)) {
            expected_associations += 1;
            let contact = &contacts[*email];
            assert!(
                associations.contains(&(deal.id.clone(), contact.id.clone())),
                "deal of {} not associated with its contact",
                o.order_id
            );
        }
    }
    assert!(expected_associations > 0);
    assert_contract(&hs);

    // The same batch again (a redelivery) costs no request.
    let before = hs.requests().len();
    assert!(sink.write(&batch).await.expect("rewrite").is_empty());
    assert_eq!(hs.requests().len(), before);
}

/// Customers whose segments include `repeat`, which the test portal's
/// `storefold_segments` property does not allow, and one invalid email.
fn rejection_fixture() -> (Vec<CustomerProjection>, BTreeSet<usize>) {
    let p = fold(&spec(40, 400, 5), 100);
    let mut customers: Vec<CustomerProjection> = p
        .customers
        .into_iter()
        .filter(|c| c.email.is_some())
        .collect();
    let mut bad = customers[0].clone();
    bad.customer_id = "cus_em_invalid".into();
    bad.email = Some("not-an-email".into());
    customers.insert(3, bad);
    let refused: BTreeSet<usize> = customers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.email.as_deref() == Some("not-an-email")
                || doc(c)["segments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == "repeat")
        })
        .map(|(i, _)| i)
        .collect();
    assert!(refused.len() > 1 && refused.len() < customers.len() - 1);
    (customers, refused)
}

fn without_repeat(cfg: &mut StandInConfig) {
    cfg.contact_properties.insert(
        "storefold_segments".into(),
        PropertyType::options(
            &storefold_core::aggregate::SEGMENTS
                .into_iter()
                .filter(|s| *s != "repeat")
                .collect::<Vec<_>>(),
            true,
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_values_are_rejected_with_hubspots_message_in_every_error_mode() {
    init_tracing();
    for mode in [
        BatchErrors::MultiStatus,
        BatchErrors::Whole400Naming,
        BatchErrors::Whole400Anonymous,
    ] {
        let mut cfg = StandInConfig::storefold_defaults(TOKEN);
        without_repeat(&mut cfg);
        cfg.batch_errors = mode;
        let hs = HubSpotStandIn::start(cfg).await;
        let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &Registry::new()).expect("sink");
        let (customers, refused) = rejection_fixture();
        let batch = records(customers.iter().cloned().map(Item::Customer));
        let rejections = sink.write(&batch).await.expect("write");
        let got: BTreeSet<usize> = rejections.iter().map(|r| r.index).collect();
        assert_eq!(got, refused, "{mode:?}: rejected records");
        for r in &rejections {
            let c = &customers[r.index];
            if c.email.as_deref() == Some("not-an-email") {
                assert_eq!(r.code, "invalid_email", "{mode:?}");
                assert!(
                    r.reason.contains("Email address not-an-email is invalid"),
                    "{}",
                    r.reason
                );
            } else {
                assert_eq!(r.code, "invalid_option", "{mode:?}");
                assert!(
                    r.reason
                        .contains("repeat was not one of the allowed options"),
                    "{mode:?}: {}",
                    r.reason
                );
            }
        }
        // Everything else was written.
        let contacts = hs.contacts();
        assert_eq!(contacts.len(), customers.len() - refused.len(), "{mode:?}");
        for (i, c) in customers.iter().enumerate() {
            assert_eq!(
                contacts.contains_key(c.email.as_deref().unwrap()),
                !refused.contains(&i),
                "{mode:?}: {}",
                c.customer_id
            );
        }
        assert_contract(&hs);
        // A retry of the same batch answers the same rejections without asking
        // HubSpot again.
        let before = hs.requests().len();
        let again = sink.write(&batch).await.expect("rewrite");
        assert_eq!(again, rejections);
        assert_eq!(hs.requests().len(), before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_triggers_go_first_and_updates_of_one_contact_coalesce() {
    init_tracing();
    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults(TOKEN)).await;
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &Registry::new()).expect("sink");
    let p = fold(&spec(150, 1500, 11), 100);
    let customers: Vec<CustomerProjection> = p
        .customers
        .into_iter()
        .filter(|c| c.email.is_some())
        .collect();
    assert!(customers.len() > 100);
    let last = customers.last().unwrap().clone();
    let late = customers[customers.len() - 2].clone();
    let email = |c: &CustomerProjection| c.email.clone().unwrap();

    // An older version of `late` in the same batch (the runner would have
    // dropped it; the sink's queue coalesces anyway): the newer one wins.
    let mut older = late.clone();
    older.version -= 1;
    let mut d = doc(&older);
    d["orders_count"] = 999.into();
    older.doc = d.to_string();

    // The older version comes right before the newer one, so the contact keeps
    // its place in the queue.
    let mut batch_items: Vec<Item> = Vec::new();
    for c in &customers {
        if c.customer_id == late.customer_id {
            batch_items.push(Item::Customer(older.clone()));
        }
        batch_items.push(Item::Customer(c.clone()));
    }
    batch_items.push(Item::Trigger(trigger(
        &last,
        "chargeback_opened",
        1_700_000_000_000,
    )));
    batch_items.push(Item::Trigger(trigger(
        &late,
        "delivered",
        1_700_000_000_000,
    )));
    let rejections = sink.write(&records(batch_items)).await.expect("write");
    assert!(rejections.is_empty());

    let upserts = successful(&hs, CONTACTS_UPSERT);
    // Triggers joined their contacts' upserts: no extra request.
    assert_eq!(upserts.len(), customers.len().div_ceil(100));
    let first = upserts[0].input_ids();
    assert!(
        first.contains(&email(&last)),
        "the chargeback's contact goes in the first request"
    );
    assert!(
        !first.contains(&email(&late)),
        "a routine trigger does not jump the queue"
    );
    let sent_late: Vec<&Value> = upserts
        .iter()
        .flat_map(|r| r.body["inputs"].as_array().unwrap())
        .filter(|i| i["id"] == email(&late))
        .collect();
    assert_eq!(sent_late.len(), 1, "one upsert per contact");
    assert_eq!(
        sent_late[0]["properties"]["storefold_orders_count"],
        doc(&late)["orders_count"].to_string()
    );
    let contacts = hs.contacts();
    assert_eq!(
        contacts[&email(&last)].properties["storefold_last_trigger"],
        "chargeback_opened"
    );
    assert_eq!(
        contacts[&email(&late)].properties["storefold_last_trigger"],
        "delivered"
    );
    assert_contract(&hs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_sink_and_its_retry_sends_only_what_is_left() {
    init_tracing();
    let mut cfg = StandInConfig::storefold_defaults(TOKEN);
    // The portal allows fewer requests than the sink was told: HubSpot's 429
    // is the only thing that can stop it.
    cfg.rate_per_10s = Some(2);
    let hs = HubSpotStandIn::start(cfg).await;
    let registry = Registry::new();
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &registry).expect("sink");
    let p = fold(&spec(20, 200, 3), 100);
    let batch = records(items(&p));
    let mut rate_limited = 0;
    loop {
        match sink.write(&batch).await {
            Ok(rejections) => {
                assert!(rejections.is_empty());
                break;
            }
            Err(WriteError::Retryable {
                retry_after,
                message,
            }) => {
                assert!(message.contains("TEN_SECONDLY_ROLLING"), "{message}");
                let wait = retry_after.expect("Retry-After honoured");
                rate_limited += 1;
                assert!(rate_limited < 5, "the sink keeps hitting the limit");
                tokio::time::sleep(wait).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(rate_limited >= 1);
    // Contacts and deals went once each; only what the 429 stopped was sent again.
    assert_eq!(successful(&hs, CONTACTS_UPSERT).len(), 1);
    assert_eq!(successful(&hs, DEALS_UPSERT).len(), 1);
    assert_eq!(
        counter(
            &registry,
            "storefold_sink_hubspot_requests_total",
            ("status", "429")
        ),
        rate_limited
    );
    assert!(!hs.associations().is_empty());
    assert_contract(&hs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_fatal_and_outages_are_retryable() {
    init_tracing();
    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults("another-token")).await;
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &Registry::new()).expect("sink");
    let p = fold(&spec(10, 100, 3), 100);
    let batch = records(items(&p));
    match sink.write(&batch).await {
        Err(WriteError::Fatal { message }) => assert!(message.contains("401"), "{message}"),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert_eq!(hs.unauthorized(), 1);
    assert_contract(&hs);

    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults(TOKEN)).await;
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &Registry::new()).expect("sink");
    hs.outage(Outage::Unavailable, Duration::from_secs(60));
    assert!(matches!(
        sink.write(&batch).await,
        Err(WriteError::Retryable { .. })
    ));
    hs.outage(Outage::Unavailable, Duration::ZERO);
    hs.outage(Outage::Refused, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = hs.requests().len();
    assert!(matches!(
        sink.write(&batch).await,
        Err(WriteError::Retryable { .. })
    ));
    assert_eq!(hs.requests().len(), seen, "connections were refused");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sink.write(&batch)
            .await
            .expect("after the outage")
            .is_empty()
    );
    assert_eq!(
        hs.contacts().len(),
        p.customers.iter().filter(|c| c.email.is_some()).count()
    );
    assert_contract(&hs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_the_portal_lacks_stops_the_sink_instead_of_dead_lettering() {
    init_tracing();
    let mut portal = StandInConfig::storefold_defaults(TOKEN);
    portal.contact_properties.remove("storefold_chargebacks");
    let hs = HubSpotStandIn::start(portal).await;
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &Registry::new()).expect("sink");
    let p = fold(&spec(10, 100, 3), 100);
    match sink.write(&records(items(&p))).await {
        Err(WriteError::Fatal { message }) => {
            assert!(message.contains("storefold_chargebacks"), "{message}")
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    // The stand-in saw the misconfiguration for what it is.
    assert_eq!(hs.violations().len(), 1);
    assert!(hs.contacts().is_empty());
}

/// The commented `[sinks.hubspot]` and `[sinks.webhook]` examples of
/// storefold.example.toml, uncommented, load and build their sinks.
#[test]
fn the_example_configuration_sections_are_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../storefold.example.toml");
    let text = std::fs::read_to_string(path).expect("example config");
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# [sinks.hubspot]") || line.starts_with("# [sinks.webhook]") {
            inside = true;
        }
        if line.trim().is_empty() {
            inside = false;
        }
        match (inside, line.strip_prefix("# ")) {
            (true, Some(rest)) if !rest.starts_with("# ") => out.push(rest.to_string()),
            (true, _) => {}
            (false, _) => out.push(line.to_string()),
        }
    }
    let env = [
        ("HUBSPOT_TOKEN".to_string(), "pat-na1-x".to_string()),
        ("STOREFOLD_WEBHOOK_SECRET".to_string(), "s3cret".to_string()),
    ];
    let config = Config::from_toml_str(&out.join("\n"), env).expect("uncommented example");
    storefold_sinks::registry::check(&config).expect("the example's sink sections");
    let hubspot = HubSpotSinkConfig::from_config(&config)
        .expect("valid")
        .expect("hubspot section");
    assert_eq!(hubspot.deal_stages["pending"], "contractsent");
    HubSpotSink::new(&hubspot, &Registry::new()).expect("hubspot sink");
    let webhook = storefold_sinks::webhook::WebhookSinkConfig::from_config(&config)
        .expect("valid")
        .expect("webhook section");
    storefold_sinks::webhook::WebhookSink::new(&webhook, &Registry::new()).expect("webhook sink");
}

// ---------------------------------------------------------------------------
// End to end: the runner, a mock Kafka cluster, the stand-in.

fn run_options(idle: Duration) -> RunOptions {
    RunOptions {
        group_id: "storefold-sink-hubspot".into(),
        batch_size: 100,
        linger: Duration::from_millis(300),
        exit_when_idle: Some(idle),
    }
}

const RETRIES: &str = "[sinks]\nretry_initial_ms = 200\nretry_max_ms = 2000\n\
                       circuit_failure_threshold = 3\ncircuit_open_ms = 1000\n";

/// What the portal must hold after `waves` were written in order: every
/// contact's and deal's properties from the newest projection of its key.
/// Properties by record (email or order id).
type Portal = BTreeMap<String, BTreeMap<String, String>>;

fn expected_state(mapping: &Mapping, waves: &[Vec<Item>]) -> (Portal, Portal) {
    let mut customers: BTreeMap<String, CustomerProjection> = BTreeMap::new();
    let mut orders: BTreeMap<String, OrderProjection> = BTreeMap::new();
    let mut triggers: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in waves.iter().flatten() {
        match item {
            Item::Customer(c) => {
                if customers
                    .get(&c.customer_id)
                    .is_none_or(|cur| cur.version <= c.version)
                {
                    customers.insert(c.customer_id.clone(), c.clone());
                }
            }
            Item::Order(o) => {
                if orders
                    .get(&o.order_id)
                    .is_none_or(|cur| cur.version <= o.version)
                {
                    orders.insert(o.order_id.clone(), o.clone());
                }
            }
            Item::Trigger(t) => {
                triggers.insert(t.customer_id.clone(), mapping.trigger(t));
            }
            Item::Payout(_) => unreachable!("the HubSpot fixtures have no payouts"),
        }
    }
    let contacts = customers
        .values()
        .filter_map(|c| {
            let mut props = mapping.contact(c);
            props.extend(triggers.get(&c.customer_id).cloned().unwrap_or_default());
            // An empty value clears a property.
            props.retain(|_, v| !v.is_empty());
            props.insert("email".into(), c.email.clone()?);
            Some((c.email.clone()?, props))
        })
        .collect();
    let deals = orders
        .values()
        .map(|o| {
            let mut props = mapping.deal(o);
            props.retain(|_, v| !v.is_empty());
            props.insert("storefold_order_id".into(), o.order_id.clone());
            (o.order_id.clone(), props)
        })
        .collect();
    (contacts, deals)
}

/// Three waves of the same customers and orders, each a later fold of the same
/// history (so versions only grow), limited to customers with a unique email
/// that exist in the last fold, plus triggers in the last wave.
fn waves() -> Vec<Vec<Item>> {
    let s = spec(60, 600, 23);
    let last = fold(&s, 100);
    let mut emails: HashMap<String, usize> = HashMap::new();
    for c in &last.customers {
        if let Some(e) = &c.email {
            *emails.entry(e.clone()).or_default() += 1;
        }
    }
    let keep: BTreeSet<String> = last
        .customers
        .iter()
        .filter(|c| c.email.as_ref().is_some_and(|e| emails[e] == 1))
        .map(|c| c.customer_id.clone())
        .collect();
    let orders_of_last: BTreeSet<String> = last.orders.iter().map(|o| o.order_id.clone()).collect();
    let mut out = Vec::new();
    for percent in [40, 70, 100] {
        let f = fold(&s, percent);
        let mut wave: Vec<Item> = f
            .customers
            .into_iter()
            // An earlier fold may know a customer under another email, which the
            // last fold moved: only keys that end the same way are compared.
            .filter(|c| {
                keep.contains(&c.customer_id)
                    && last
                        .customers
                        .iter()
                        .any(|l| l.customer_id == c.customer_id && l.email == c.email)
            })
            .map(Item::Customer)
            .collect();
        wave.extend(
            f.orders
                .into_iter()
                .filter(|o| orders_of_last.contains(&o.order_id))
                .map(Item::Order),
        );
        out.push(wave);
    }
    // Triggers about customers the sink has seen before (a trigger whose
    // customer it never saw cannot address a contact and is skipped).
    let kept: Vec<&CustomerProjection> = last
        .customers
        .iter()
        .filter(|c| {
            keep.contains(&c.customer_id)
                && out[0]
                    .iter()
                    .any(|i| matches!(i, Item::Customer(w) if w.customer_id == c.customer_id))
        })
        .collect();
    out[2].push(Item::Trigger(trigger(
        kept[0],
        "chargeback_opened",
        1_700_000_000_000,
    )));
    out[2].push(Item::Trigger(trigger(
        kept[1],
        "payment_failed",
        1_700_000_000_001,
    )));
    out
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_and_a_60_second_outage_lose_nothing_and_never_exceed_the_rate() {
    init_tracing();
    const RATE: u32 = 10;
    let mut portal = StandInConfig::storefold_defaults(TOKEN);
    portal.rate_per_10s = Some(RATE);
    let hs = HubSpotStandIn::start(portal).await;
    // Retries come fast and the circuit stays closed, so that the runner asks
    // for more than the rate while HubSpot is down: the planner must hold it.
    let env = kafka_env(
        2,
        &format!(
            "[sinks]\nretry_initial_ms = 100\nretry_max_ms = 300\n\
             circuit_failure_threshold = 1000\ncircuit_open_ms = 1000\n{}",
            hubspot_toml(&hs, &format!("requests_per_10s = {RATE}"))
        ),
    );
    let config = env.config.clone();
    let cfg = HubSpotSinkConfig::from_config(&config)
        .expect("valid")
        .expect("hubspot");
    let mapping = Mapping::new(&cfg).expect("mapping");
    let waves = waves();
    let (contacts, deals) = expected_state(&mapping, &waves);

    // Wave 1 meets a 429 storm: it lasts until the sink has met it three
    // times (joining the consumer group takes seconds, so a storm of a fixed
    // length could end before the first write).
    hs.storm(Duration::from_secs(600));
    produce(&config, &waves[0]);
    let registry = Registry::new();
    let sink = HubSpotSink::new(&cfg, &registry).expect("sink");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let config = config.clone();
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        async move {
            runner::run(
                sink,
                &config,
                run_options(Duration::from_secs(5)),
                &registry,
                shutdown,
            )
            .await
        }
    });
    wait_for("the storm to be met three times", || {
        hs.requests().iter().filter(|r| r.status == 429).count() >= 3
    })
    .await;
    hs.storm(Duration::ZERO);
    wait_for("a write after the storm", || {
        !successful(&hs, CONTACTS_UPSERT).is_empty()
    })
    .await;

    // Wave 2 meets a 60-second outage: 30 s of 503s, then 30 s of refused
    // connections; wave 3 (and triggers) arrive while HubSpot is unreachable.
    produce(&config, &waves[1]);
    hs.outage(Outage::Unavailable, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(30)).await;
    hs.outage(Outage::Refused, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(5)).await;
    produce(&config, &waves[2]);

    let summary = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the runner went idle")
        .expect("runner task")
        .expect("runner");
    assert_eq!(summary.rejected, 0);

    // Nothing lost: the portal holds the newest projection of every key.
    let stored_contacts: Portal = hs
        .contacts()
        .into_iter()
        .map(|(e, s)| (e, s.properties))
        .collect();
    assert_eq!(stored_contacts, contacts);
    let stored_deals: Portal = hs
        .deals()
        .into_iter()
        .map(|(id, s)| (id, s.properties))
        .collect();
    assert_eq!(stored_deals, deals);

    // The planner's contract: never more than the rate in any 10 s.
    let requests = hs.requests();
    assert!(
        requests.iter().any(|r| r.status == 429),
        "the storm was met"
    );
    assert!(
        requests.iter().any(|r| r.status == 503),
        "the outage was met"
    );
    assert!(
        hs.busiest_window(Duration::from_secs(10)) <= RATE as usize,
        "{} requests within 10 s",
        hs.busiest_window(Duration::from_secs(10))
    );
    // Outside the storm, the portal's own limit never had to answer 429...
    assert_eq!(hs.rate_limited(), 0);
    // ...because the planner held requests back.
    let waited: f64 = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "storefold_sink_hubspot_quota_wait_seconds")
        .map(|f| f.get_metric()[0].get_histogram().get_sample_sum())
        .sum();
    assert!(waited > 1.0, "the planner waited {waited} s in all");
    eprintln!(
        "requests: {}, busiest 10 s: {}, quota wait: {waited:.1} s, contacts: {}, deals: {}, associations: {}, statuses: {:?}",
        requests.len(),
        hs.busiest_window(Duration::from_secs(10)),
        contacts.len(),
        deals.len(),
        hs.associations().len(),
        requests
            .iter()
            .fold(BTreeMap::<u16, usize>::new(), |mut m, r| {
                *m.entry(r.status).or_default() += 1;
                m
            })
    );
    assert!(!hs.associations().is_empty());
    assert_contract(&hs);
    let dlq = read_topic(
        env.broker.bootstrap(),
        &Topics::new(&config.kafka.topic_prefix).dlq_sink("hubspot"),
        Duration::from_secs(10),
    );
    assert!(dlq.is_empty());
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_lands_in_the_dlq_with_hubspots_message() {
    init_tracing();
    let mut portal = StandInConfig::storefold_defaults(TOKEN);
    without_repeat(&mut portal);
    let hs = HubSpotStandIn::start(portal).await;
    let env = kafka_env(2, &format!("{RETRIES}{}", hubspot_toml(&hs, "")));
    let config = env.config.clone();
    let (customers, refused) = rejection_fixture();
    let items: Vec<Item> = customers.iter().cloned().map(Item::Customer).collect();
    produce(&config, &items);
    let registry = Registry::new();
    let cfg = HubSpotSinkConfig::from_config(&config).unwrap().unwrap();
    let sink = HubSpotSink::new(&cfg, &registry).expect("sink");
    assert_eq!(sink.name(), "hubspot");
    let summary = runner::run(
        sink,
        &config,
        run_options(Duration::from_secs(2)),
        &registry,
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!(summary.rejected, refused.len() as u64);
    assert_eq!(summary.written, (customers.len() - refused.len()) as u64);

    let dlq = read_topic(
        env.broker.bootstrap(),
        &Topics::new(&config.kafka.topic_prefix).dlq_sink("hubspot"),
        Duration::from_secs(10),
    );
    let mut keys: Vec<String> = dlq
        .iter()
        .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = refused
        .iter()
        .map(|i| key_of(&Item::Customer(customers[*i].clone())))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    for r in &dlq {
        let code = std::str::from_utf8(r.header("storefold-error").unwrap()).unwrap();
        let reason = std::str::from_utf8(r.header("storefold-error-reason").unwrap()).unwrap();
        match code {
            "invalid_option" => assert!(
                reason.contains("storefold_segments: repeat was not one of the allowed options"),
                "{reason}"
            ),
            "invalid_email" => {
                assert!(
                    reason.contains("Email address not-an-email is invalid"),
                    "{reason}"
                )
            }
            other => panic!("unexpected code {other}: {reason}"),
        }
        // The original value travels with it.
        assert_eq!(
            r.payload.as_deref(),
            Some(
                encode(
                    &items[customers
                        .iter()
                        .position(|c| key_of(&Item::Customer(c.clone()))
                            == String::from_utf8_lossy(r.key.as_deref().unwrap()))
                        .unwrap()]
                )
                .as_slice()
            )
        );
    }
    assert_eq!(hs.contacts().len(), customers.len() - refused.len());
    assert_contract(&hs);
}

/// Two tenants with the same customer email and the same order id, each with
/// its own portal (token): each portal holds only its own tenant's contact and
/// deal, and a tenant without a portal is dead-lettered, never written into
/// someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_write_into_their_own_portals_only() {
    init_tracing();
    const ACME: &str = "pat-acme";
    const GLOBEX: &str = "pat-globex";
    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults(ACME)).await;
    hs.add_portal(GLOBEX);
    let cfg = hubspot_cfg_without_token(&format!(
        "[sinks.hubspot]\nbase_url = \"{}\"\n\
         [sinks.hubspot.tenants.acme]\ntoken = \"{ACME}\"\n\
         [sinks.hubspot.tenants.globex]\ntoken = \"{GLOBEX}\"\n",
        hs.base_url()
    ));
    let mut sink = HubSpotSink::new(&cfg, &Registry::new()).expect("sink");

    // One customer with an email and one of its orders, for acme; the same
    // email and order id for globex (another customer id); and for initech,
    // which has no portal.
    let p = fold(&spec(20, 200, 5), 100);
    let (c, o) = p
        .customers
        .iter()
        .filter(|c| c.email.is_some())
        .find_map(|c| {
            let o = p
                .orders
                .iter()
                .find(|o| o.customer_id.as_deref() == Some(c.customer_id.as_str()))?;
            Some((c.clone(), o.clone()))
        })
        .expect("a customer with an email and an order");
    let email = c.email.clone().unwrap().trim().to_lowercase();
    let as_tenant = |tenant: &str, prefix: &str| {
        let mut c = c.clone();
        let mut o = o.clone();
        c.tenant = tenant.into();
        c.customer_id = format!("{prefix}{}", c.customer_id);
        o.tenant = tenant.into();
        o.customer_id = Some(c.customer_id.clone());
        (c, o)
    };
    let (ac, ao) = as_tenant("acme", "");
    let (gc, go) = as_tenant("globex", "g-");
    let (ic, io) = as_tenant("initech", "i-");
    let batch = records(vec![
        Item::Customer(ac.clone()),
        Item::Customer(gc.clone()),
        Item::Customer(ic),
        Item::Order(ao.clone()),
        Item::Order(go.clone()),
        Item::Order(io),
    ]);
    let rejections = sink.write(&batch).await.expect("write");
    let refused: Vec<(usize, &str)> = rejections
        .iter()
        .map(|r| (r.index, r.code.as_str()))
        .collect();
    assert_eq!(
        refused,
        [(2, "no_hubspot_portal"), (5, "no_hubspot_portal")],
        "initech has no portal: its records are dead-lettered"
    );
    assert!(
        rejections[0]
            .reason
            .contains("sinks.hubspot.tenants.initech")
    );

    for (token, contacts, deals, assoc, customer_id) in [
        (
            ACME,
            hs.contacts(),
            hs.deals(),
            hs.associations(),
            ac.customer_id.as_str(),
        ),
        (
            GLOBEX,
            hs.portal_contacts(GLOBEX),
            hs.portal_deals(GLOBEX),
            hs.portal_associations(GLOBEX),
            gc.customer_id.as_str(),
        ),
    ] {
        assert_eq!(
            contacts.keys().collect::<Vec<_>>(),
            [&email],
            "portal {token}: one contact"
        );
        assert_eq!(
            contacts[&email]
                .properties
                .get("storefold_customer_id")
                .map(String::as_str),
            Some(customer_id),
            "portal {token} holds its own tenant's customer"
        );
        assert_eq!(
            deals.keys().collect::<Vec<_>>(),
            [&o.order_id],
            "portal {token}: one deal"
        );
        assert_eq!(
            assoc,
            BTreeSet::from([(deals[&o.order_id].id.clone(), contacts[&email].id.clone())]),
            "portal {token}: the deal is associated with its own contact"
        );
    }
    assert_ne!(
        hs.contacts()[&email].id,
        hs.portal_contacts(GLOBEX)[&email].id
    );
    assert_contract(&hs);
    assert_eq!(hs.portal_violations(GLOBEX), Vec::<String>::new());
    assert_eq!(hs.unauthorized(), 0);
    // Every request of each portal carried that portal's token: nothing of
    // globex reached acme's portal and the reverse.
    assert!(
        hs.requests()
            .iter()
            .flat_map(|r| r.input_ids())
            .all(|id| id == email || id == o.order_id || id.chars().all(|c| c.is_ascii_digit()))
    );

    // One token for several configured tenants is refused at start, and so is
    // a configured tenant without a token of its own.
    let two_tenants = "[tenants.acme]\n[tenants.globex]\n";
    let load = |toml: &str| -> Result<Config, String> {
        let config = Config::from_toml_str(toml, Vec::new()).map_err(|e| e.to_string())?;
        storefold_sinks::registry::check(&config).map_err(|e| e.to_string())?;
        Ok(config)
    };
    let err = load(&format!(
        "{two_tenants}[sinks.hubspot]\ntoken = \"t\"\nbase_url = \"{}\"\n",
        hs.base_url()
    ))
    .unwrap_err();
    assert!(err.contains("one portal"), "{err}");
    let err = load(
        &format!(
            "{two_tenants}[sinks.hubspot]\nbase_url = \"{}\"\n[sinks.hubspot.tenants.acme]\ntoken = \"t\"\n",
            hs.base_url()
        ),
    )
    .unwrap_err();
    assert!(err.contains("no token for tenant(s) globex"), "{err}");
}

/// A 429 whose `Retry-After` is absurd (a century) holds the sink no longer
/// than `sinks.max_retry_after_secs`, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_is_cut_to_the_configured_maximum() {
    init_tracing();
    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults(TOKEN)).await;
    hs.storm_with_retry_after(Duration::from_secs(3), "3153600000");
    let mut sink = HubSpotSink::new(&hubspot_cfg(&hs, ""), &Registry::new())
        .expect("sink")
        .with_max_retry_after(Duration::from_secs(2));
    let p = fold(&spec(3, 30, 7), 100);
    let batch = records(items(&p));
    match sink.write(&batch).await {
        Err(WriteError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
        }
        other => panic!("expected a retryable 429, got {other:?}"),
    }
    // After the maximum, the sink tries again by itself (the storm is over).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rejections = sink.write(&batch).await.expect("write after the storm");
    assert!(rejections.is_empty(), "{rejections:?}");
    assert!(!hs.contacts().is_empty());
    assert_contract(&hs);
}

fn hubspot_cfg_without_token(sinks_toml: &str) -> HubSpotSinkConfig {
    let toml = format!("[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n{sinks_toml}");
    let config = Config::from_toml_str(&toml, Vec::new()).expect("config");
    HubSpotSinkConfig::from_config(&config)
        .expect("valid")
        .expect("hubspot section")
}

const ASSOCIATE: &str = "/crm/v4/associations/deals/contacts/batch/associate/default";
const ARCHIVE: &str = "/crm/v4/associations/deals/contacts/batch/archive";

/// An order that moves to another customer (an operator's merge or split):
/// its deal is associated with the new customer's contact and the association
/// the sink made with the old one is archived, so the CRM shows the order on
/// one person only. The same move delivered again, a newer version of the
/// order with the same customer, and a newer projection of the old customer
/// that still lists the order, cost no association or archive request and
/// leave the deal where it is. End to end on a mock Kafka cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_that_moves_to_another_customer_leaves_the_old_contact() {
    init_tracing();
    let hs = HubSpotStandIn::start(StandInConfig::storefold_defaults(TOKEN)).await;
    let env = kafka_env(2, &format!("{RETRIES}{}", hubspot_toml(&hs, "")));
    let config = env.config.clone();

    // Customers A and B with emails of their own, and an order of A.
    let p = fold(&spec(20, 200, 5), 100);
    let mut emails: HashMap<String, usize> = HashMap::new();
    for c in &p.customers {
        if let Some(e) = &c.email {
            *emails.entry(e.trim().to_lowercase()).or_default() += 1;
        }
    }
    let usable: Vec<&CustomerProjection> = p
        .customers
        .iter()
        .filter(|c| {
            c.merged_into.is_none()
                && !c.redacted
                && c.email
                    .as_ref()
                    .is_some_and(|e| emails[&e.trim().to_lowercase()] == 1)
        })
        .collect();
    let (a, order) = usable
        .iter()
        .find_map(|c| {
            let o = p
                .orders
                .iter()
                .find(|o| o.customer_id.as_deref() == Some(c.customer_id.as_str()))?;
            Some(((*c).clone(), o.clone()))
        })
        .expect("a customer with an email and an order");
    let b = usable
        .iter()
        .find(|c| c.customer_id != a.customer_id)
        .map(|c| (*c).clone())
        .expect("another customer with an email");
    let email = |c: &CustomerProjection| c.email.clone().unwrap().trim().to_lowercase();
    let mut moved = order.clone();
    moved.version += 1;
    moved.customer_id = Some(b.customer_id.clone());
    let mut moved_again = moved.clone();
    moved_again.version += 1;
    let mut stale_a = a.clone();
    stale_a.version += 1;

    produce(
        &config,
        &[
            Item::Customer(a.clone()),
            Item::Customer(b.clone()),
            Item::Order(order.clone()),
        ],
    );
    let registry = Registry::new();
    let cfg = HubSpotSinkConfig::from_config(&config).unwrap().unwrap();
    let sink = HubSpotSink::new(&cfg, &registry).expect("sink");
    let run = tokio::spawn({
        let config = config.clone();
        let registry = registry.clone();
        async move {
            runner::run(
                sink,
                &config,
                run_options(Duration::from_secs(5)),
                &registry,
                CancellationToken::new(),
            )
            .await
        }
    });
    let ids = |hs: &HubSpotStandIn| {
        let contacts = hs.contacts();
        let deal = hs.deals().get(&order.order_id).map(|d| d.id.clone());
        let contact_a = contacts.get(&email(&a)).map(|c| c.id.clone());
        let contact_b = contacts.get(&email(&b)).map(|c| c.id.clone());
        (deal, contact_a, contact_b)
    };
    let of_deal = |hs: &HubSpotStandIn, deal: &str| -> BTreeSet<String> {
        hs.associations()
            .into_iter()
            .filter(|(d, _)| d == deal)
            .map(|(_, c)| c)
            .collect()
    };
    wait_for("the deal associated with A's contact", || {
        let (deal, contact_a, _) = ids(&hs);
        deal.zip(contact_a)
            .is_some_and(|(d, c)| of_deal(&hs, &d) == BTreeSet::from([c]))
    })
    .await;
    let (Some(deal), Some(contact_a), Some(contact_b)) = ids(&hs) else {
        panic!("contacts and deal written");
    };
    assert!(successful(&hs, ARCHIVE).is_empty());

    // The order moves to B.
    produce(&config, &[Item::Order(moved.clone())]);
    wait_for("the deal associated with B's contact only", || {
        of_deal(&hs, &deal) == BTreeSet::from([contact_b.clone()])
    })
    .await;
    let archives: Vec<LoggedRequest> = hs
        .requests()
        .into_iter()
        .filter(|r| r.path == ARCHIVE)
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert_eq!(archives[0].status, 204);
    assert_eq!(
        archives[0].body,
        serde_json::json!({"inputs": [{"from": {"id": deal}, "to": [{"id": contact_a}]}]})
    );
    // The new association went out before the old one was archived.
    let paths: Vec<String> = hs.requests().into_iter().map(|r| r.path).collect();
    let last_associate = paths.iter().rposition(|p| p == ASSOCIATE).unwrap();
    let archive_at = paths.iter().position(|p| p == ARCHIVE).unwrap();
    assert!(last_associate < archive_at, "{paths:?}");
    let associates = hs.requests().iter().filter(|r| r.path == ASSOCIATE).count();

    // The same move again (a redelivery), a newer version of the moved order,
    // and a newer projection of A that still lists the order.
    produce(
        &config,
        &[
            Item::Order(moved.clone()),
            Item::Order(moved_again.clone()),
            Item::Customer(stale_a.clone()),
        ],
    );
    let summary = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the runner went idle")
        .expect("runner task")
        .expect("runner");
    assert_eq!(summary.rejected, 0);
    let requests = hs.requests();
    let deal_upserts = requests
        .iter()
        .filter(|r| r.path == DEALS_UPSERT && r.input_ids().contains(&order.order_id))
        .count();
    assert_eq!(deal_upserts, 3, "each version of the order written once");
    let contact_upserts = requests
        .iter()
        .filter(|r| r.path == CONTACTS_UPSERT && r.input_ids().contains(&email(&a)))
        .count();
    assert_eq!(contact_upserts, 2, "A's newer projection was written");
    assert_eq!(
        requests.iter().filter(|r| r.path == ASSOCIATE).count(),
        associates,
        "nothing more to associate"
    );
    assert_eq!(
        requests.iter().filter(|r| r.path == ARCHIVE).count(),
        1,
        "nothing more to archive"
    );
    assert_eq!(of_deal(&hs, &deal), BTreeSet::from([contact_b.clone()]));
    assert!(
        !hs.associations().iter().any(|(_, c)| *c == contact_a),
        "A's contact keeps no deal"
    );
    assert_eq!(
        counter(
            &registry,
            "storefold_sink_hubspot_requests_total",
            ("endpoint", "associations_archive")
        ),
        1
    );
    assert_contract(&hs);
    let dlq = read_topic(
        env.broker.bootstrap(),
        &Topics::new(&config.kafka.topic_prefix).dlq_sink("hubspot"),
        Duration::from_secs(5),
    );
    assert!(dlq.is_empty());
}
