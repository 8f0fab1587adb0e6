//! What the HubSpot and webhook sink tests share: real projections from a folded
//! history, records as the runner hands them over, and a mock Kafka cluster
//! with storefold's topics.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{AvroCodec, CustomerProjection, OrderProjection, Trigger, WireFormat};
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
    let (store, _) = pure_fold(&events[..n]);
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
        Item::Trigger(t) => format!("{}/{}", t.tenant, t.customer_id),
    }
}

pub fn encode(item: &Item) -> Vec<u8> {
    let codec = AvroCodec::embedded().expect("codec");
    match item {
        Item::Customer(c) => codec.encode(c, WireFormat::SingleObject),
        Item::Order(o) => codec.encode(o, WireFormat::SingleObject),
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
            Item::Trigger(_) => topics.triggers(),
        };
        let key = key_of(item);
        let payload = encode(item);
        let rec = BaseRecord::to(&topic).key(key.as_bytes()).payload(&payload);
        send_waiting(&producer, rec);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}
