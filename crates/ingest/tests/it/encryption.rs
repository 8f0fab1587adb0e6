//! Crypto-shredding at the ingest: a tenant with `raw_encryption` has every
//! body stored encrypted under its subject's data key (created once per
//! subject, in the keys topic before the body), with the residue beside it;
//! the body decrypts byte for byte with the key from the topic; a tombstone
//! for the key gives the subject's next body a new key; a tenant without it
//! stores bodies in clear; a missing keys topic refuses the start.

use std::time::{Duration, Instant};

use prometheus::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::RawEvent;
use storefold_ingest::Ingest;
use storefold_providers::ProviderKind;
use storefold_runtime::kafka::{Topics, topic_specs};
use storefold_runtime::rawkeys::{Kek, KeyBook, Lookup, TENANT_SUBJECT, body_aad};
use storefold_testkit::broker::{MockBroker, read_topic, send_waiting};
use storefold_testkit::samples::{sample, shopify_order, signed, signed_with};
use storefold_testkit::{http_client, send};
use time::OffsetDateTime;

use crate::common::{OTHER, Running, TENANT, config_with, raw_events};

const KEK: &str = "the-ingest-tests-key-encryption-key-0001";
const ANN: &str = "ann@keys.example";
const BOB: &str = "bob@keys.example";

fn encrypting(bootstrap: &str) -> storefold_runtime::Config {
    config_with(
        bootstrap,
        "",
        &format!(
            "[tenants.{TENANT}.identity]\nsecret = \"identity-secret-of-the-ingest-test\"\n\
             [tenants.{TENANT}.raw_encryption]\nkey = \"{KEK}\"\n"
        ),
    )
}

fn keys_topic(config: &storefold_runtime::Config) -> String {
    Topics::new(&config.kafka.topic_prefix).raw_keys()
}

fn read_book(bootstrap: &str, config: &storefold_runtime::Config) -> KeyBook {
    let mut book = KeyBook::new(
        [(TENANT.to_string(), Kek::derive(KEK))]
            .into_iter()
            .collect(),
        false,
    );
    for r in read_topic(bootstrap, &keys_topic(config), Duration::from_secs(20)) {
        book.apply(r.key.as_deref().unwrap(), r.payload.as_deref())
            .unwrap();
    }
    book
}

fn open(book: &KeyBook, ev: &RawEvent) -> Vec<u8> {
    let enc = ev.encryption.as_ref().expect("encrypted");
    let Lookup::Found(key) = book.lookup(&ev.tenant, &enc.subject, &enc.key_id) else {
        panic!("no key for {}", enc.subject);
    };
    key.open(
        &enc.nonce,
        &body_aad(&ev.tenant, &ev.provider, &ev.event_id),
        &ev.body,
    )
    .expect("the key opens its body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_stored_encrypted_under_one_key_per_subject() {
    let broker = MockBroker::start(1);
    let bootstrap = broker.bootstrap().to_string();
    let cfg = encrypting(&bootstrap);
    // Without the keys topic the ingest refuses to start, naming it.
    for spec in topic_specs(&cfg.kafka, &[]) {
        if spec.name != keys_topic(&cfg) {
            broker.create_topic(&spec.name, spec.partitions).unwrap();
        }
    }
    let err = Ingest::new(&cfg, &Registry::new()).unwrap_err().to_string();
    assert!(
        err.contains("raw_encryption") && err.contains("keys.raw"),
        "{err}"
    );
    broker.create_topic(&keys_topic(&cfg), 1).unwrap();

    let ing = Running::start(&cfg).await;
    let client = http_client();
    let now = OffsetDateTime::now_utc();
    let posts = [
        signed(TENANT, &shopify_order(1, ANN), now),
        signed(TENANT, &shopify_order(2, ANN), now),
        signed(TENANT, &shopify_order(3, BOB), now),
    ];
    for req in &posts {
        assert_eq!(send(&client, &ing.base, req).await.status(), 200);
    }
    // A carrier's tracking names nobody: the tenant's own subject.
    let tracking = signed(TENANT, &sample(ProviderKind::Easypost), now);
    assert_eq!(send(&client, &ing.base, &tracking).await.status(), 200);
    // Another tenant, without raw_encryption: in clear.
    let globex = signed_with(OTHER, &shopify_order(4, ANN), "globex-shopify-secret", now).unwrap();
    assert_eq!(send(&client, &ing.base, &globex).await.status(), 200);

    let stored = raw_events(&bootstrap, &cfg, ProviderKind::Shopify);
    let ours: Vec<&RawEvent> = stored
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.tenant == TENANT)
        .collect();
    assert_eq!(ours.len(), 3);
    let encs: Vec<_> = ours
        .iter()
        .map(|e| e.encryption.clone().expect("acme's bodies are encrypted"))
        .collect();
    assert!(encs[0].subject.starts_with("em_"), "{}", encs[0].subject);
    assert_eq!(encs[0].subject, encs[1].subject, "one subject for Ann");
    assert_eq!(encs[0].key_id, encs[1].key_id, "her key is made once");
    assert_ne!(encs[0].subject, encs[2].subject);
    assert_ne!(encs[0].nonce, encs[1].nonce, "a nonce per body");
    let clear = stored
        .iter()
        .map(|(_, e)| e)
        .find(|e| e.tenant == OTHER)
        .unwrap();
    assert!(clear.encryption.is_none() && clear.residue.is_none());
    assert_eq!(clear.body, globex.body);

    // The keys topic: one key per subject (Ann, Bob, the tenant), each
    // readable with the key-encryption key; the bodies open byte for byte.
    let keys = read_topic(&bootstrap, &keys_topic(&cfg), Duration::from_secs(20));
    assert_eq!(keys.len(), 3, "three subjects, three keys");
    let book = read_book(&bootstrap, &cfg);
    for (ev, req) in ours.iter().zip(&posts) {
        assert!(!ev.body.windows(ANN.len()).any(|w| w == ANN.as_bytes()));
        assert_eq!(open(&book, ev), req.body, "byte for byte");
        // The residue: the order's canonical events without its buyer.
        let residue: serde_json::Value =
            serde_json::from_str(ev.residue.as_deref().expect("a residue")).unwrap();
        let text = residue.to_string();
        assert!(text.contains("OrderUpserted"), "{text}");
        assert!(!text.contains("keys.example"), "{text}");
        // The buyer is there as her key (the subject's hash), not her email.
        let hash = |s: &str| s.trim_start_matches("em_").to_string();
        assert!(
            text.contains(&hash(&encs[0].subject)) || text.contains(&hash(&encs[2].subject)),
            "{text}"
        );
    }
    let (_, tracked) = raw_events(&bootstrap, &cfg, ProviderKind::Easypost)
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(tracked.encryption.as_ref().unwrap().subject, TENANT_SUBJECT);
    assert_eq!(open(&book, &tracked), tracking.body);
    let metrics = prometheus::TextEncoder::new()
        .encode_to_string(&ing.registry.gather())
        .unwrap();
    assert!(
        metrics.contains("storefold_ingest_raw_keys_created_total 3"),
        "{metrics}"
    );

    // Ann's key is tombstoned (as an erasure does): her next body gets a
    // new key once the ingest has read the tombstone.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let record = format!("{TENANT}/{}/{}", encs[0].subject, encs[0].key_id);
    send_waiting(
        &producer,
        BaseRecord::<str, [u8]>::to(&keys_topic(&cfg)).key(record.as_str()),
    );
    producer.flush(Duration::from_secs(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 10;
    loop {
        let req = signed(TENANT, &shopify_order(n, ANN), now);
        assert_eq!(send(&client, &ing.base, &req).await.status(), 200);
        let newest = raw_events(&bootstrap, &cfg, ProviderKind::Shopify)
            .into_iter()
            .map(|(_, e)| e)
            .rfind(|e| e.tenant == TENANT)
            .unwrap();
        let enc = newest.encryption.as_ref().unwrap();
        assert_eq!(enc.subject, encs[0].subject);
        if enc.key_id != encs[0].key_id {
            assert_eq!(open(&read_book(&bootstrap, &cfg), &newest), req.body);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ingest kept the tombstoned key for 20 s"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ing.stop().await;
}
