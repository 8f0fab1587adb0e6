//! The ingest with `[schema_registry]` (testkit's stand-in): raw events are stored
//! in Confluent's wire format with the id the registry gave the raw event schema
//! under the raw topic's subject.

use std::time::Duration;

use storefold_codec::{AvroCodec, RawEvent, RecordKind};
use storefold_providers::ProviderKind;
use storefold_runtime::kafka::Topics;
use storefold_testkit::broker::{MockBroker, read_topic};
use storefold_testkit::samples::{sample, signed};
use storefold_testkit::schema_registry::SchemaRegistryStandIn;
use storefold_testkit::{http_client, send};
use time::OffsetDateTime;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_registry_raw_events_are_confluent_frames_of_the_registered_schema() {
    let sr = SchemaRegistryStandIn::start().await;
    let broker = MockBroker::start(1);
    let cfg = config(
        broker.bootstrap(),
        &format!("[schema_registry]\nurl = \"{}\"\n", sr.url()),
    );
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let req = signed(
        TENANT,
        &sample(ProviderKind::Shopify),
        OffsetDateTime::now_utc(),
    );
    let resp = send(&http_client(), &ing.base, &req).await;
    assert_eq!(resp.status(), 200);
    ing.stop().await;

    let topic = Topics::new(&cfg.kafka.topic_prefix).raw(ProviderKind::Shopify);
    assert!(
        sr.subjects().contains(&format!("{topic}-value")),
        "{:?}",
        sr.subjects()
    );
    let records = read_topic(broker.bootstrap(), &topic, Duration::from_secs(20));
    assert_eq!(records.len(), 1);
    let payload = records[0].payload.as_deref().unwrap();
    assert_eq!(payload[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
    // A reader that learns the schema from the registry gets the webhook back.
    let mut reader = AvroCodec::embedded().unwrap();
    reader
        .register_schema_id(
            id,
            RecordKind::RawEvent,
            &sr.schema(id).expect("registered id"),
        )
        .unwrap();
    let ev: RawEvent = reader.decode(payload).unwrap();
    assert_eq!(ev.tenant, TENANT);
    assert_eq!(ev.body, req.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_refuses_the_schema_stops_the_ingest_with_its_answer() {
    let sr = SchemaRegistryStandIn::start().await;
    let broker = MockBroker::start(1);
    let cfg = config(
        broker.bootstrap(),
        &format!("[schema_registry]\nurl = \"{}\"\n", sr.url()),
    );
    // Another record already owns the raw topic's subject.
    let client = cfg.schema_registry.as_ref().unwrap().client().unwrap();
    let topic = Topics::new(&cfg.kafka.topic_prefix).raw(ProviderKind::Stripe);
    let codec = AvroCodec::embedded().unwrap();
    client
        .register(
            &format!("{topic}-value"),
            &codec.schema_json(RecordKind::Trigger),
        )
        .await
        .unwrap();
    let err = match storefold_ingest::Ingest::new(&cfg, &prometheus::Registry::new()) {
        Ok(_) => panic!("the ingest started against a refusing registry"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("HTTP 409") && err.contains("error_code 409"),
        "{err}"
    );
}
