//! What the HubSpot and webhook sink tests share: real projections from a folded
//! history, records as the runner hands them over, and a mock Kafka cluster
//! with storefold's topics.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{
    AvroCodec, CustomerProjection, OrderProjection, RawEvent, Trigger, WireFormat,
};
use storefold_core::engine::{FoldConfig, Item as StateItem, StateValue, order_view};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, topic_specs};
use storefold_sinks::{Item, SinkRecord, SourcePosition};
use storefold_testkit::broker::{MockBroker, send_waiting};
use storefold_testkit::history::{HistorySpec, history, pure_fold};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The projections of one fold, as the processor would publish them.
#[derive(Clone, Debug, Default)]
pub struct Projections {
    pub customers: Vec<CustomerProjection>,
    pub orders: Vec<OrderProjection>,
}

fn millis(t: Option<time::OffsetDateTime>) -> i64 {
    t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

/// Folds the first `percent` % of the history of `spec` and returns every
/// customer and order projection (generation 1), in id order.
pub fn fold(spec: &HistorySpec, percent: usize) -> Projections {
    let events = history(spec);
    let n = events.len() * percent / 100;
    fold_events(&events[..n])
}

/// Shopify's `customers/redact` for customer `c` (by its email and phone) and
/// its Shopify orders among `orders`, delivered after every event of `events`,
/// as the ingest would have stored it: the processor erases the customer's
/// personal data and that of those orders.
pub fn redaction(
    events: &[RawEvent],
    c: &CustomerProjection,
    orders: &[OrderProjection],
) -> RawEvent {
    let template = events
        .iter()
        .rev()
        .find(|e| e.provider == "shopify" && e.tenant == c.tenant)
        .expect("a Shopify event of the tenant");
    let orders_to_redact: Vec<u64> = orders
        .iter()
        .filter(|o| o.customer_id.as_deref() == Some(c.customer_id.as_str()))
        .filter_map(|o| o.order_id.strip_prefix("shopify:")?.parse().ok())
        .collect();
    let body = serde_json::json!({
        "shop_id": 954_889,
        "shop_domain": "acme-outfitters.myshopify.com",
        "customer": {"email": c.email, "phone": c.phone},
        "orders_to_redact": orders_to_redact,
    });
    let received_at = events.iter().map(|e| e.received_at).max().unwrap_or(0) + 60_000;
    let mut headers = template.headers.clone();
    headers.remove("x-shopify-triggered-at");
    RawEvent {
        event_id: format!("redact-{}", c.customer_id),
        topic: "customers/redact".into(),
        received_at,
        headers,
        body: body.to_string().into_bytes(),
        ..template.clone()
    }
}

/// Folds `events` and returns every customer and order projection
/// (generation 1), in id order.
pub fn fold_events(events: &[RawEvent]) -> Projections {
    let (store, _) = pure_fold(events);
    let mut customers = Vec::new();
    let mut orders = Vec::new();
    let metas: BTreeMap<(String, String), _> = store
        .records
        .iter()
        .filter_map(|(k, v)| match (&k.item, v) {
            (StateItem::OrderMeta(id), StateValue::OrderMeta(m)) => {
                Some(((k.tenant.clone(), id.clone()), m.clone()))
            }
            _ => None,
        })
        .collect();
    for (k, v) in &store.records {
        match v {
            StateValue::Customer(rec) => {
                let view = &rec.view;
                customers.push(CustomerProjection {
                    tenant: view.tenant.clone(),
                    customer_id: view.customer_id.clone(),
                    generation: 1,
                    version: rec.version as i64,
                    email: view.email.clone(),
                    phone: view.phone.clone(),
                    redacted: view.redacted,
                    merged_into: None,
                    updated_at: millis(view.last_event_at),
                    doc: serde_json::to_string(&**view).expect("customer json"),
                    view: None,
                });
            }
            StateValue::Order(order) => {
                let Some(meta) = metas.get(&(k.tenant.clone(), order.order_id.clone())) else {
                    continue;
                };
                let status = order
                    .snapshot
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s.value.status).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "unknown".into());
                let Some(view) =
                    order_view(&store, &FoldConfig::default(), &k.tenant, &order.order_id)
                else {
                    continue;
                };
                orders.push(OrderProjection {
                    tenant: view.tenant.clone(),
                    order_id: view.order_id.clone(),
                    customer_id: view.customer_id.clone(),
                    generation: 1,
                    version: meta.version as i64,
                    status,
                    updated_at: millis(order.last_event_at),
                    doc: serde_json::to_string(&view).expect("order json"),
                    view: None,
                });
            }
            _ => {}
        }
    }
    customers.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    Projections { customers, orders }
}

/// A small one-tenant history.
pub fn spec(customers: usize, events: usize, seed: u64) -> HistorySpec {
    HistorySpec {
        tenants: 1,
        customers_per_tenant: customers,
        events,
        duplicate_pct: 5,
        seed,
    }
}

pub fn trigger(c: &CustomerProjection, kind: &str, occurred_at: i64) -> Trigger {
    Trigger {
        trigger_id: format!("trg_{kind}_{}_{occurred_at}", c.customer_id),
        tenant: c.tenant.clone(),
        customer_id: c.customer_id.clone(),
        order_id: None,
        kind: kind.into(),
        occurred_at,
        source_event_id: format!("evt_{occurred_at}"),
        data: "{\"dispute_id\":\"dp_1\"}".into(),
    }
}

pub fn key_of(item: &Item) -> String {
    match item {
        Item::Customer(c) => format!("{}/{}", c.tenant, c.customer_id),
        Item::Order(o) => format!("{}/{}", o.tenant, o.order_id),
        Item::Payout(p) => format!("{}/{}:{}", p.tenant, p.provider, p.payout_id),
        Item::Trigger(t) => format!("{}/{}", t.tenant, t.customer_id),
    }
}

pub fn encode(item: &Item) -> Vec<u8> {
    let codec = AvroCodec::embedded().expect("codec");
    match item {
        Item::Customer(c) => codec.encode(c, WireFormat::SingleObject),
        Item::Order(o) => codec.encode(o, WireFormat::SingleObject),
        Item::Payout(p) => codec.encode(p, WireFormat::SingleObject),
        Item::Trigger(t) => codec.encode(t, WireFormat::SingleObject),
    }
    .expect("encode")
}

/// A record as the runner would hand it to a sink.
pub fn record(item: Item, offset: i64) -> SinkRecord {
    let topic = format!("storefold.{}", item.stream().as_str());
    SinkRecord {
        key: key_of(&item).into_bytes(),
        value: encode(&item),
        headers: Vec::new(),
        source: SourcePosition {
            topic,
            partition: 0,
            offset,
        },
        received_at_ms: None,
        item,
    }
}

pub fn records(items: impl IntoIterator<Item = Item>) -> Vec<SinkRecord> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| record(item, i as i64))
        .collect()
}

/// A mock cluster with storefold's topics and a configuration pointing at it,
/// with `sinks_toml` (e.g. a `[sinks.hubspot]` section) appended.
pub struct KafkaEnv {
    pub broker: MockBroker,
    pub config: Config,
}

pub fn kafka_env(partitions: i32, sinks_toml: &str) -> KafkaEnv {
    let broker = MockBroker::start(1);
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\npartitions = {partitions}\n{sinks_toml}",
        broker.bootstrap()
    );
    let config = Config::from_toml_str(&toml, Vec::new()).expect("test config");
    storefold_sinks::registry::check(&config).expect("the test's sink sections");
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("create topic");
    }
    KafkaEnv { broker, config }
}

/// Produces projections and triggers to their topics, keyed as the processor
/// keys them (so one key stays on one partition).
pub fn produce(config: &Config, items: &[Item]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let topics = Topics::new(&config.kafka.topic_prefix);
    for item in items {
        let topic = match item {
            Item::Customer(_) => topics.customers(),
            Item::Order(_) => topics.orders(),
            Item::Payout(_) => topics.payouts(),
            Item::Trigger(_) => topics.triggers(),
        };
        let key = key_of(item);
        let payload = encode(item);
        let rec = BaseRecord::to(&topic).key(key.as_bytes()).payload(&payload);
        send_waiting(&producer, rec);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A customer erased after a history: the projections before and after
/// Shopify's `customers/redact` for it, and what is personal about it.
pub struct Erasure {
    pub before: Projections,
    pub after: Projections,
    /// The customer before the erasure (email, phone and name known, with
    /// orders), and its redacted projection (a newer version).
    pub subject: CustomerProjection,
    pub erased: CustomerProjection,
    /// The subject's orders before and after (redacted) the erasure.
    pub orders: Vec<OrderProjection>,
    pub erased_orders: Vec<OrderProjection>,
    /// The subject's personal strings: email, phone, names, identities,
    /// address lines, from its own and its orders' documents.
    pub personal: Vec<String>,
    /// Those of `personal` that are the subject's alone: all but the first
    /// and last name taken apart (the history draws names from a short list;
    /// its full name is here, and no other customer has the same pair).
    pub unique: Vec<String>,
    /// The subject's (first name, last name).
    pub name: (String, String),
    /// Another customer with an email, left alone.
    pub other: CustomerProjection,
}

/// String leaves of `v` under the keys that hold personal data.
fn personal_leaves(v: &serde_json::Value, inside: bool, out: &mut Vec<String>) {
    const KEYS: &[&str] = &[
        "email",
        "phone",
        "first_name",
        "last_name",
        "customer_name",
        "addresses",
        "shipping_address",
        "billing_address",
        "customer",
        "payer",
        "requester",
        "identities",
        "cart_token",
    ];
    // What an identity is (`email`, `shopify`), not whose.
    const NOT_PERSONAL: &[&str] = &["kind", "source"];
    match v {
        serde_json::Value::String(s) if inside && s.chars().count() >= 4 => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| personal_leaves(x, inside, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                if !NOT_PERSONAL.contains(&k.as_str()) {
                    personal_leaves(x, inside || KEYS.contains(&k.as_str()), out)
                }
            }
        }
        _ => {}
    }
}

/// The erasure of the first customer of a small history that has an email, a
/// phone, a name and Shopify orders, and whose personal strings no other
/// customer shares.
pub fn erasure() -> Erasure {
    let events = history(&spec(40, 500, 17));
    let before = fold_events(&events);
    let strings_of = |c: &CustomerProjection| -> Vec<String> {
        let mut out: Vec<String> = c.email.iter().chain(&c.phone).cloned().collect();
        personal_leaves(&serde_json::from_str(&c.doc).expect("doc"), false, &mut out);
        for o in before
            .orders
            .iter()
            .filter(|o| o.customer_id.as_deref() == Some(c.customer_id.as_str()))
        {
            personal_leaves(&serde_json::from_str(&o.doc).expect("doc"), false, &mut out);
        }
        out.sort();
        out.dedup();
        out
    };
    let name_of = |c: &CustomerProjection| -> Option<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(&c.doc).expect("doc");
        Some((
            doc["first_name"].as_str()?.to_string(),
            doc["last_name"].as_str()?.to_string(),
        ))
    };
    let unique_of = |c: &CustomerProjection| -> Vec<String> {
        let (first, last) = name_of(c).unwrap_or_default();
        strings_of(c)
            .into_iter()
            .filter(|s| *s != first && *s != last)
            .collect()
    };
    let subject = before
        .customers
        .iter()
        .filter(|c| c.email.is_some() && c.phone.is_some() && name_of(c).is_some())
        .filter(|c| {
            before.orders.iter().any(|o| {
                o.customer_id.as_deref() == Some(c.customer_id.as_str())
                    && o.order_id.starts_with("shopify:")
            })
        })
        .find(|c| {
            let mine = unique_of(c);
            before
                .customers
                .iter()
                .filter(|o| o.customer_id != c.customer_id)
                .all(|o| {
                    let theirs = format!("{:?} {:?} {}", o.email, o.phone, o.doc);
                    name_of(o) != name_of(c) && mine.iter().all(|s| !theirs.contains(s.as_str()))
                })
        })
        .expect("a customer to erase")
        .clone();
    let personal = strings_of(&subject);
    let unique = unique_of(&subject);
    let name = name_of(&subject).expect("a name");
    let mut all = events.clone();
    all.push(redaction(&events, &subject, &before.orders));
    let after = fold_events(&all);
    let erased = after
        .customers
        .iter()
        .find(|c| c.customer_id == subject.customer_id)
        .expect("the erased customer")
        .clone();
    assert!(erased.redacted, "the fold erased the customer");
    assert!(erased.version > subject.version);
    let of_subject =
        |o: &&OrderProjection| o.customer_id.as_deref() == Some(subject.customer_id.as_str());
    let orders: Vec<OrderProjection> = before.orders.iter().filter(of_subject).cloned().collect();
    let erased_orders: Vec<OrderProjection> =
        after.orders.iter().filter(of_subject).cloned().collect();
    assert_eq!(orders.len(), erased_orders.len());
    let other = before
        .customers
        .iter()
        .find(|c| c.customer_id != subject.customer_id && c.email.is_some() && c.phone.is_some())
        .expect("another customer")
        .clone();
    Erasure {
        before,
        after,
        subject,
        erased,
        orders,
        erased_orders,
        personal,
        unique,
        name,
        other,
    }
}
