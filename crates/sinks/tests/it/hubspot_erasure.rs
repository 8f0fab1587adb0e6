//! GDPR erasure in the HubSpot sink: a redacted customer projection deletes the
//! customer's contact with HubSpot's GDPR delete, against a stand-in that
//! serves that endpoint ([`stand_in`]). Every test asserts the stand-in saw no
//! contract violation.

mod stand_in;

use std::time::Duration;

use crate::sink_fixtures::*;
use prometheus::Registry;
use serde_json::{Value, json};
use storefold_codec::CustomerProjection;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::Topics;
use storefold_sinks::hubspot::{ERASURE_UNADDRESSABLE, HubSpotSink, HubSpotSinkConfig};
use storefold_sinks::runner::{self, RunOptions};
use storefold_sinks::{Item, Sink, WriteError};
use storefold_testkit::broker::read_topic;
use tokio_util::sync::CancellationToken;

use stand_in::{CONTACTS_UPSERT, GDPR_DELETE, GdprStandIn, Stored};

const TOKEN: &str = "pat-na1-erasure-token";

fn hubspot_toml(hs: &GdprStandIn, extra: &str) -> String {
    format!(
        "[sinks.hubspot]\ntoken = \"{TOKEN}\"\nbase_url = \"{}\"\n{extra}\n",
        hs.base_url()
    )
}

fn sink(hs: &GdprStandIn, extra: &str, registry: &Registry) -> HubSpotSink {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n{}",
        hubspot_toml(hs, extra)
    );
    let config = Config::from_toml_str(&toml, Vec::new()).expect("config");
    let cfg = HubSpotSinkConfig::from_config(&config)
        .expect("valid")
        .expect("hubspot section");
    HubSpotSink::new(&cfg, registry).expect("sink")
}

/// Only `orders_count` is mapped: no contact property holds the customer id.
const WITHOUT_CUSTOMER_ID: &str =
    "[sinks.hubspot.contact_properties]\norders_count = \"storefold_orders_count\"";

fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// The GDPR deletes that reached the stand-in: (body, status).
fn deletes(hs: &GdprStandIn) -> Vec<(Value, u16)> {
    hs.requests()
        .into_iter()
        .filter(|r| r.path == GDPR_DELETE)
        .map(|r| (r.body, r.status))
        .collect()
}

/// Contact upserts HubSpot accepted that carried `email`.
fn upserts_of(hs: &GdprStandIn, email: &str) -> usize {
    hs.requests()
        .iter()
        .filter(|r| r.path == CONTACTS_UPSERT && r.status == 200)
        .filter(|r| {
            r.body["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["id"] == email)
        })
        .count()
}

fn contact_of<'a>(hs: &'a [(String, Stored)], customer_id: &str) -> Option<&'a Stored> {
    hs.iter().map(|(_, c)| c).find(|c| {
        c.properties
            .get("storefold_customer_id")
            .map(String::as_str)
            == Some(customer_id)
    })
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
async fn an_erased_customer_s_contact_is_deleted_and_nothing_personal_stays() {
    init_tracing();
    let hs = GdprStandIn::start(TOKEN).await;
    let registry = Registry::new();
    let mut sink = sink(&hs, "", &registry);
    let e = erasure();
    let email = e.subject.email.clone().unwrap();
    assert!(
        sink.write(&records(items(&e.before)))
            .await
            .expect("write")
            .is_empty()
    );

    let contacts: Vec<(String, Stored)> = hs.contacts().into_iter().collect();
    let contact = contact_of(&contacts, &e.subject.customer_id)
        .expect("the customer's contact")
        .clone();
    assert_eq!(contact.properties["email"], email);
    let other_email = e.other.email.clone().unwrap();
    let other = hs.contacts()[&other_email].clone();
    let deals_of_subject: Vec<String> = e.orders.iter().map(|o| o.order_id.clone()).collect();
    assert!(
        hs.associations().iter().any(|(_, c)| *c == contact.id),
        "the customer's deals were associated with its contact"
    );

    // The erasure: the redacted customer and its redacted orders.
    let mut erasure_items = vec![Item::Customer(e.erased.clone())];
    erasure_items.extend(e.erased_orders.iter().cloned().map(Item::Order));
    let rejections = sink
        .write(&records(erasure_items.clone()))
        .await
        .expect("erase");
    assert!(rejections.is_empty(), "{rejections:?}");

    // One GDPR delete, by the unique customer id property, done.
    assert_eq!(
        deletes(&hs),
        vec![(
            json!({"objectId": e.subject.customer_id, "idProperty": "storefold_customer_id"}),
            204
        )]
    );
    let contacts = hs.contacts();
    assert!(!contacts.contains_key(&email));
    let listed: Vec<(String, Stored)> = contacts.clone().into_iter().collect();
    assert!(contact_of(&listed, &e.subject.customer_id).is_none());
    assert!(hs.associations().iter().all(|(_, c)| *c != contact.id));
    // Another customer's contact is untouched.
    assert_eq!(contacts[&other_email], other);
    // The deals stay (figures, no person), and nothing personal of the
    // customer is anywhere in the portal.
    let deals = hs.deals();
    for id in &deals_of_subject {
        assert!(deals.contains_key(id), "deal {id}");
    }
    let stored = format!("{contacts:?}\n{deals:?}");
    assert!(e.unique.len() >= 3, "{:?}", e.unique);
    for s in &e.unique {
        assert!(!stored.contains(s.as_str()), "{s:?} is still in the portal");
    }
    // Its first and last name may be other customers' too, never together.
    let (first, last) = &e.name;
    assert!(
        contacts.values().all(|c| {
            c.properties.get("firstname") != Some(first)
                || c.properties.get("lastname") != Some(last)
        }),
        "a contact named {first} {last} is still in the portal"
    );
    assert_eq!(
        counter(
            &registry,
            "storefold_sink_hubspot_requests_total",
            &[("endpoint", "contacts_gdpr_delete"), ("status", "204")]
        ),
        1
    );
    assert_eq!(hs.violations(), Vec::<String>::new());

    // Delivered again, the erasure costs nothing; the customer's older
    // version delivered late brings nothing back.
    let before = hs.requests().len();
    assert!(
        sink.write(&records(erasure_items))
            .await
            .expect("again")
            .is_empty()
    );
    assert!(
        sink.write(&records([Item::Customer(e.subject.clone())]))
            .await
            .expect("late")
            .is_empty()
    );
    assert_eq!(hs.requests().len(), before);
    assert!(!hs.contacts().contains_key(&email));
    assert_eq!(hs.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_upsert_cannot_bring_the_contact_back_and_a_429_on_the_delete_is_retried() {
    init_tracing();
    let hs = GdprStandIn::start(TOKEN).await;
    let registry = Registry::new();
    let mut sink = sink(&hs, "", &registry);
    let e = erasure();
    let email = e.subject.email.clone().unwrap();
    let other_email = e.other.email.clone().unwrap();
    let batch = records([
        Item::Customer(e.subject.clone()),
        Item::Customer(e.other.clone()),
    ]);
    assert!(sink.write(&batch).await.expect("write").is_empty());
    assert!(hs.contacts().contains_key(&email));
    let other = hs.contacts()[&other_email].clone();

    // A newer version of the customer waits in the queue: its upsert got a 429.
    let mut update = e.subject.clone();
    update.version += 1;
    let mut erased = e.erased.clone();
    erased.version = erased.version.max(update.version + 1);
    hs.throttle(CONTACTS_UPSERT, 1, "1");
    match sink.write(&records([Item::Customer(update.clone())])).await {
        Err(WriteError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    // Then the erasure, whose delete gets a 429 with Retry-After too.
    hs.throttle(GDPR_DELETE, 1, "1");
    let erasure = records([Item::Customer(erased)]);
    match sink.write(&erasure).await {
        Err(WriteError::Retryable {
            retry_after,
            message,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
            assert!(message.contains("TEN_SECONDLY_ROLLING"), "{message}");
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert!(hs.contacts().contains_key(&email), "not deleted yet");
    // The runner hands the batch over again: the delete goes through, after
    // the pause HubSpot asked for.
    assert!(sink.write(&erasure).await.expect("retry").is_empty());
    let statuses: Vec<u16> = deletes(&hs).into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, vec![429, 204]);
    assert!(!hs.contacts().contains_key(&email));
    // The waiting upsert never went out, before or after the delete.
    assert_eq!(upserts_of(&hs, &email), 1);
    // The older update delivered again changes nothing either.
    assert!(
        sink.write(&records([Item::Customer(update)]))
            .await
            .expect("late")
            .is_empty()
    );
    assert!(!hs.contacts().contains_key(&email));
    assert_eq!(upserts_of(&hs, &email), 1);
    assert_eq!(hs.contacts()[&other_email], other);
    assert_eq!(
        counter(
            &registry,
            "storefold_sink_hubspot_requests_total",
            &[("endpoint", "contacts_gdpr_delete"), ("status", "429")]
        ),
        1
    );
    assert_eq!(hs.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_customer_id_property_the_contact_is_deleted_by_its_known_email() {
    init_tracing();
    let hs = GdprStandIn::start(TOKEN).await;
    let mut sink = sink(&hs, WITHOUT_CUSTOMER_ID, &Registry::new());
    let e = erasure();
    let email = e.subject.email.clone().unwrap();
    let batch = records([
        Item::Customer(e.subject.clone()),
        Item::Customer(e.other.clone()),
    ]);
    assert!(sink.write(&batch).await.expect("write").is_empty());
    assert!(hs.contacts().contains_key(&email));
    assert!(
        sink.write(&records([Item::Customer(e.erased.clone())]))
            .await
            .expect("erase")
            .is_empty()
    );
    assert_eq!(
        deletes(&hs),
        vec![(json!({"objectId": email, "idProperty": "email"}), 204)]
    );
    assert!(!hs.contacts().contains_key(&email));
    assert!(
        hs.contacts()
            .contains_key(e.other.email.as_deref().unwrap())
    );
    assert_eq!(hs.violations(), Vec::<String>::new());
}

/// An erasure the sink cannot address (no customer id property, and it never
/// saw the customer's email) goes to the dead-letter topic with a clear
/// reason, through the runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_that_cannot_be_addressed_is_dead_lettered() {
    init_tracing();
    let hs = GdprStandIn::start(TOKEN).await;
    let env = kafka_env(
        2,
        &format!(
            "[sinks]\nretry_initial_ms = 200\nretry_max_ms = 2000\n{}",
            hubspot_toml(&hs, WITHOUT_CUSTOMER_ID)
        ),
    );
    let e = erasure();
    let other: CustomerProjection = e.other.clone();
    let items = vec![Item::Customer(e.erased.clone()), Item::Customer(other)];
    produce(&env.config, &items);
    let registry = Registry::new();
    let cfg = HubSpotSinkConfig::from_config(&env.config)
        .unwrap()
        .unwrap();
    let sink = HubSpotSink::new(&cfg, &registry).expect("sink");
    let summary = runner::run(
        sink,
        &env.config,
        RunOptions {
            group_id: "storefold-sink-hubspot".into(),
            batch_size: 100,
            linger: Duration::from_millis(300),
            exit_when_idle: Some(Duration::from_secs(2)),
        },
        &registry,
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!((summary.written, summary.rejected), (1, 1));
    assert!(deletes(&hs).is_empty(), "nothing to address the contact by");
    assert_eq!(
        counter(
            &registry,
            "storefold_sink_hubspot_skipped_total",
            &[("reason", ERASURE_UNADDRESSABLE)]
        ),
        1
    );
    let dlq = read_topic(
        env.broker.bootstrap(),
        &Topics::new(&env.config.kafka.topic_prefix).dlq_sink("hubspot"),
        Duration::from_secs(10),
    );
    assert_eq!(dlq.len(), 1);
    let r = &dlq[0];
    assert_eq!(
        r.key.as_deref(),
        Some(key_of(&Item::Customer(e.erased.clone())).as_bytes())
    );
    let header = |n: &str| String::from_utf8(r.header(n).expect(n).to_vec()).unwrap();
    assert_eq!(header("storefold-error"), ERASURE_UNADDRESSABLE);
    let reason = header("storefold-error-reason");
    assert!(
        reason.contains("cannot be addressed") && reason.contains("customer_id"),
        "{reason}"
    );
    assert_eq!(hs.violations(), Vec::<String>::new());
}
