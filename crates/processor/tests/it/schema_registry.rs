//! The processor with `[schema_registry]`: raw events framed in Confluent's wire
//! format are folded, every value it writes is a Confluent frame whose id the
//! registry (testkit's stand-in) knows, and a reader that knows nothing of
//! storefold, as Kafka Connect's `AvroConverter` does, decodes the projection
//! topics into typed records with the writer schema fetched by id.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::apache_avro::Schema;
use storefold_codec::apache_avro::types::Value;
use storefold_codec::{AvroCodec, CustomerProjection, RecordKind};
use storefold_processor::Mode;
use storefold_providers::ProviderKind;
use storefold_runtime::kafka::{Topics, java_partition};
use storefold_testkit::broker::{read_topic, send_waiting};
use storefold_testkit::schema_registry::SchemaRegistryStandIn;
use time::macros::datetime;

use crate::common::*;

/// What a Connect-style consumer does with one value: check the magic byte,
/// fetch the writer schema of the id over the registry's REST API and decode
/// the datum with it. Returns the id and the record's fields.
fn connect_decode(
    rt: &tokio::runtime::Runtime,
    registry: &str,
    payload: &[u8],
) -> (u32, Vec<(String, Value)>) {
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
    let body: serde_json::Value = rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(format!("{registry}/schemas/ids/{id}"))
            .header("Accept", "application/vnd.schemaregistry.v1+json")
            .send()
            .await
            .expect("GET /schemas/ids/{id}");
        assert!(resp.status().is_success(), "{}", resp.status());
        serde_json::from_slice(&resp.bytes().await.expect("schema answer")).expect("JSON answer")
    });
    let schema = Schema::parse_str(body["schema"].as_str().expect("schema string"))
        .expect("writer schema parses");
    let mut datum = &payload[5..];
    let value = storefold_codec::apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .expect("reader")
        .read_value(&mut datum)
        .expect("datum decodes with the writer schema");
    assert!(datum.is_empty(), "the datum is the whole rest of the value");
    match value {
        Value::Record(fields) => (id, fields),
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn with_a_registry_every_value_is_a_confluent_frame_that_a_connect_consumer_reads() {
    let sr_rt = tokio::runtime::Runtime::new().unwrap();
    let sr = sr_rt.block_on(SchemaRegistryStandIn::start());
    let env = env_with(
        2,
        NO_PARK_TIMEOUT_HOURS,
        &format!("[schema_registry]\nurl = \"{}\"\n", sr.url()),
    );
    let config = &env.config;
    let topics = Topics::new(&config.kafka.topic_prefix);

    // Raw events as an ingest with the registry writes them.
    let mut codec = AvroCodec::embedded().unwrap();
    let raw: Vec<(String, RecordKind)> = topics
        .all_raw()
        .into_iter()
        .map(|(_, t)| (t, RecordKind::RawEvent))
        .collect();
    let framing = config
        .schema_registry
        .as_ref()
        .unwrap()
        .bind_blocking(&mut codec, &raw)
        .unwrap()
        .framing;
    let events = provider_samples("acme", datetime!(2026-03-01 10:00 UTC), 3);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .unwrap();
    for e in &events {
        let kind: ProviderKind = e.provider.parse().unwrap();
        let payload = codec
            .encode(e, framing.format(RecordKind::RawEvent))
            .unwrap();
        assert_eq!(payload[0], 0);
        let topic = topics.raw(kind);
        let rec = BaseRecord::to(&topic)
            .key(e.tenant.as_bytes())
            .payload(&payload)
            .partition(java_partition(e.tenant.as_bytes(), config.kafka.partitions));
        send_waiting(&producer, rec);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let (summary, _) = run(&env, config, options(config, Mode::All));
    assert!(summary.events > 0, "{summary:?}");

    // Every subject the processor writes or reads is registered under the
    // topic name strategy.
    let subjects = sr.subjects();
    for t in [
        topics.customers(),
        topics.orders(),
        topics.triggers(),
        topics.changelog(),
    ] {
        assert!(
            subjects.contains(&format!("{t}-value")),
            "{t}: {subjects:?}"
        );
    }

    // A Connect-style consumer of the customers topic: typed records, no
    // storefold code involved in decoding.
    let customers = read_topic(
        &config.kafka.bootstrap_servers,
        &topics.customers(),
        Duration::from_secs(30),
    );
    assert!(!customers.is_empty());
    let current = AvroCodec::embedded().unwrap();
    let names: Vec<String> = match current.schema(RecordKind::CustomerProjection) {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        other => panic!("not a record schema: {other:?}"),
    };
    for rec in &customers {
        let payload = rec.payload.as_deref().expect("a value");
        let (id, fields) = connect_decode(&sr_rt, &sr.url(), payload);
        // The writer schema is this build's customer projection schema.
        let writer = Schema::parse_str(&sr.schema(id).unwrap()).unwrap();
        assert_eq!(
            storefold_codec::Fingerprint::of(&writer),
            current.fingerprint(RecordKind::CustomerProjection)
        );
        let got: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
        let tenant = fields.iter().find(|(n, _)| n == "tenant").map(|(_, v)| v);
        assert_eq!(tenant, Some(&Value::String("acme".into())));
        // storefold's own reader agrees with the generic one.
        let typed: CustomerProjection = {
            let mut reader = AvroCodec::embedded().unwrap();
            reader
                .register_schema_id(id, RecordKind::CustomerProjection, &sr.schema(id).unwrap())
                .unwrap();
            reader.decode(payload).unwrap()
        };
        assert_eq!(typed.tenant, "acme");
    }

    // The other topics the processor writes are Confluent frames of known ids.
    for t in [topics.orders(), topics.triggers(), topics.changelog()] {
        let records = read_topic(&config.kafka.bootstrap_servers, &t, Duration::from_secs(30));
        assert!(!records.is_empty(), "{t}");
        for rec in records.iter().filter_map(|r| r.payload.as_deref()) {
            let (id, fields) = connect_decode(&sr_rt, &sr.url(), rec);
            assert!(sr.schema(id).is_some() && !fields.is_empty(), "{t}");
        }
    }
}
