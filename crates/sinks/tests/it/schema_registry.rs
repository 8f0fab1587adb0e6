//! A sink with `[schema_registry]` (testkit's stand-in) reads projections and
//! triggers written as Confluent frames, as a processor with the registry writes
//! them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{AvroCodec, RecordKind};
use storefold_runtime::kafka::Topics;
use storefold_sinks::runner::{self, RunOptions};
use storefold_sinks::{Item, Rejection, Sink, SinkRecord, Stream, WriteError};
use storefold_testkit::broker::send_waiting;
use storefold_testkit::schema_registry::SchemaRegistryStandIn;
use tokio_util::sync::CancellationToken;

use crate::sink_fixtures::*;

/// A destination that keeps what it is given.
struct Collect(Arc<Mutex<Vec<Item>>>);

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "webhook"
    }
    fn streams(&self) -> Vec<Stream> {
        vec![Stream::Customers, Stream::Orders, Stream::Triggers]
    }
    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, WriteError> {
        self.0
            .lock()
            .unwrap()
            .extend(batch.iter().map(|r| r.item.clone()));
        Ok(Vec::new())
    }
}

fn identity(item: &Item) -> (&'static str, String) {
    (item.stream().as_str(), key_of(item))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_reads_confluent_frames_with_the_registrys_ids() {
    init_tracing();
    let sr = SchemaRegistryStandIn::start().await;
    let env = kafka_env(2, &format!("[schema_registry]\nurl = \"{}\"\n", sr.url()));
    let config = &env.config;
    let topics = Topics::new(&config.kafka.topic_prefix);

    // Frame the values as a processor with the registry does.
    let sr_config = config.schema_registry.as_ref().unwrap();
    let client = sr_config.client().unwrap();
    let mut codec = AvroCodec::embedded().unwrap();
    let bound = vec![
        (topics.customers(), RecordKind::CustomerProjection),
        (topics.orders(), RecordKind::OrderProjection),
        (topics.triggers(), RecordKind::Trigger),
    ];
    let framing = sr_config
        .bind(&client, &mut codec, &bound)
        .await
        .unwrap()
        .framing;
    let p = fold(&spec(5, 60, 4), 100);
    let mut items: Vec<Item> = p.customers.iter().cloned().map(Item::Customer).collect();
    items.extend(p.orders.iter().cloned().map(Item::Order));
    items.push(Item::Trigger(trigger(
        &p.customers[0],
        "first_order",
        1_700_000_000_000,
    )));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .unwrap();
    for item in &items {
        let (topic, payload) = match item {
            Item::Customer(c) => (
                topics.customers(),
                codec.encode(c, framing.format(RecordKind::CustomerProjection)),
            ),
            Item::Order(o) => (
                topics.orders(),
                codec.encode(o, framing.format(RecordKind::OrderProjection)),
            ),
            Item::Trigger(t) => (
                topics.triggers(),
                codec.encode(t, framing.format(RecordKind::Trigger)),
            ),
            Item::Payout(p) => (
                topics.payouts(),
                codec.encode(p, framing.format(RecordKind::PayoutProjection)),
            ),
        };
        let payload = payload.unwrap();
        assert_eq!(payload[0], 0, "Confluent magic byte");
        let key = key_of(item);
        send_waiting(
            &producer,
            BaseRecord::to(&topic).key(key.as_bytes()).payload(&payload),
        );
    }
    // A trigger written with a schema id the sink's subjects do not list (as a
    // writer registered after the sink bound its codec would): the sink fetches
    // the schema by id and reads the value, its missing field defaulted.
    let older = {
        let mut v: serde_json::Value =
            serde_json::from_str(RecordKind::Trigger.embedded_json()).unwrap();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "order_id");
        v.to_string()
    };
    let late_id = client.register("elsewhere-value", &older).await.unwrap();
    let late = {
        use storefold_codec::apache_avro::Schema;
        use storefold_codec::apache_avro::types::{Record, Value};
        let schema = Schema::parse_str(&older).unwrap();
        let mut r = Record::new(&schema).unwrap();
        r.put("trigger_id", "trg_late");
        r.put("tenant", "acme");
        r.put("customer_id", "late-customer");
        r.put("kind", "delivered");
        r.put("occurred_at", Value::TimestampMillis(1_700_000_000_001));
        r.put("source_event_id", "evt_late");
        r.put("data", "{}");
        let writer =
            storefold_codec::apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                .build()
                .unwrap();
        let mut out = vec![0u8];
        out.extend_from_slice(&late_id.to_be_bytes());
        out.extend(writer.write_value_to_vec(r).unwrap());
        out
    };
    send_waiting(
        &producer,
        BaseRecord::to(&topics.triggers())
            .key("acme/late-customer".as_bytes())
            .payload(&late),
    );
    producer.flush(Duration::from_secs(30)).unwrap();

    let got = Arc::new(Mutex::new(Vec::new()));
    let summary = runner::run(
        Collect(got.clone()),
        config,
        RunOptions {
            group_id: "registry-test".into(),
            batch_size: 50,
            linger: Duration::from_millis(50),
            exit_when_idle: Some(Duration::from_secs(2)),
        },
        &Registry::new(),
        CancellationToken::new(),
    )
    .await
    .expect("run");
    assert_eq!(summary.rejected, 0);
    let got: BTreeSet<_> = got.lock().unwrap().iter().map(identity).collect();
    let mut expected: BTreeSet<_> = items.iter().map(identity).collect();
    expected.insert(("triggers", "acme/late-customer".to_string()));
    assert_eq!(got, expected);
}
