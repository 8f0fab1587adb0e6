//! Crypto-shredding of the raw log through the real binary (`storefold run`
//! around librdkafka's mock cluster): the ingest stores each body encrypted
//! under its subject's data key, an erasure tombstones the subject's keys,
//! after which no raw event of the erased subject can be decrypted (and every
//! other still can), and a replay from the raw topics folds the shredded
//! events as erased: nothing of the subject comes back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use storefold_codec::{AvroCodec, CustomerProjection, RawEvent};
use storefold_runtime::rawkeys::{Kek, KeyBook, Lookup, SCHEME, body_aad};
use storefold_testkit::broker::{MockBroker, Record, read_topic};
use storefold_testkit::free_port;

use crate::common::{Started, post_order, start_run};
use crate::erase::{TOKEN, get_json, text, write_config};
use crate::identity::customer_of;

const ANN: &str = "ann@shred.example";
const BOB: &str = "bob@shred.example";
/// Shopify's customer ids of the two samples (`shopify_order(n, ..)`).
const ANN_STORE_ID: &str = "8300000001";
const BOB_STORE_ID: &str = "8300000002";
const KEK: &str = "raw-log-key-encryption-key-for-the-shredding-test";

fn config(dir: &Path, bootstrap: &str, public: u16, operator: u16) -> PathBuf {
    let path = write_config(dir, bootstrap, public, operator);
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!(
        "[tenants.acme.identity]\nsecret = \"identity-secret-of-the-shredding-test\"\n\
         [tenants.acme.raw_encryption]\nkey = \"{KEK}\"\n"
    ));
    std::fs::write(&path, toml).unwrap();
    path
}

async fn read(bootstrap: &str, topic: &str) -> Vec<Record> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || read_topic(&b, &t, Duration::from_secs(20)))
        .await
        .unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every raw event the tenant stored, decoded.
async fn raw_events(bootstrap: &str) -> Vec<RawEvent> {
    let codec = AvroCodec::embedded().unwrap();
    let mut out = Vec::new();
    for topic in ["storefold.raw.shopify", "storefold.raw.operator"] {
        for r in read(bootstrap, topic).await {
            out.push(codec.decode(r.payload.as_deref().unwrap()).unwrap());
        }
    }
    out
}

/// The keys topic as a reader that starts now would know it.
async fn key_book(bootstrap: &str) -> KeyBook {
    let mut book = KeyBook::new(
        [("acme".to_string(), Kek::derive(KEK))]
            .into_iter()
            .collect(),
        false,
    );
    for r in read(bootstrap, "storefold.keys.raw").await {
        book.apply(r.key.as_deref().unwrap(), r.payload.as_deref())
            .unwrap();
    }
    book
}

/// The clear body of `ev`, `None` when its key is shredded.
fn decrypt(book: &KeyBook, ev: &RawEvent) -> Option<Vec<u8>> {
    let enc = ev.encryption.as_ref().expect("every body is encrypted");
    match book.lookup(&ev.tenant, &enc.subject, &enc.key_id) {
        Lookup::Found(key) => Some(
            key.open(
                &enc.nonce,
                &body_aad(&ev.tenant, &ev.provider, &ev.event_id),
                &ev.body,
            )
            .expect("a live key opens its bodies"),
        ),
        Lookup::Shredded | Lookup::Unknown => None,
        Lookup::NoKek => panic!("the test's book has the tenant's key-encryption key"),
    }
}

/// The newest projection of every customer of `generation`, by customer id.
async fn customers(
    bootstrap: &str,
    generation: i64,
) -> BTreeMap<String, (Vec<u8>, CustomerProjection)> {
    let codec = AvroCodec::embedded().unwrap();
    let mut out = BTreeMap::new();
    for r in read(bootstrap, "storefold.customers").await {
        let Some(payload) = r.payload else { continue };
        let p: CustomerProjection = codec.decode(&payload).unwrap();
        if p.generation == generation {
            out.insert(p.customer_id.clone(), (payload, p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_shreds_the_subjects_raw_events_and_a_replay_folds_them_as_erased() {
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port());
    let config = config(dir.path(), broker.bootstrap(), ports.0, ports.1);
    let Started {
        mut run,
        client,
        public_base,
        api,
    } = start_run(&broker, dir.path(), &config, ports, &["--no-sinks"]).await;
    let bootstrap = broker.bootstrap().to_string();

    // Two shoppers, one order each, through the ingest.
    post_order(&client, &public_base, 1, ANN).await;
    post_order(&client, &public_base, 2, BOB).await;
    let ann = customer_of(&client, &api, ANN, &mut run).await;
    let bob = customer_of(&client, &api, BOB, &mut run).await;
    let live = customers(&bootstrap, 1).await;
    let bob_live = live[&bob].1.clone();
    assert_eq!(bob_live.email.as_deref(), Some(BOB));

    // The raw log holds ciphertext only, each body under its shopper's key:
    // the subject is the keyed email (`em_`), never the email.
    let stored = raw_events(&bootstrap).await;
    assert_eq!(stored.len(), 2);
    let mut subjects = Vec::new();
    for ev in &stored {
        let enc = ev.encryption.as_ref().expect("encrypted at the ingest");
        assert_eq!(enc.scheme, SCHEME);
        assert_eq!(enc.nonce.len(), 12);
        assert!(enc.subject.starts_with("em_"), "{}", enc.subject);
        for marker in [ANN, BOB, ANN_STORE_ID, BOB_STORE_ID, "shred.example"] {
            assert!(!contains(&ev.body, marker), "{marker} in a stored body");
            assert!(!enc.subject.contains(marker));
        }
        subjects.push(enc.subject.clone());
    }
    subjects.dedup();
    assert_eq!(subjects.len(), 2, "one subject per shopper: {subjects:?}");
    let keys = read(&bootstrap, "storefold.keys.raw").await;
    assert_eq!(keys.len(), 2, "one data key per subject");
    assert!(keys.iter().all(|k| k.payload.is_some()));
    // Before the erasure, a reader of the keys topic decrypts both bodies.
    let book = key_book(&bootstrap).await;
    let clear: Vec<Vec<u8>> = stored.iter().filter_map(|e| decrypt(&book, e)).collect();
    assert_eq!(clear.len(), 2);
    assert!(clear.iter().any(|b| contains(b, ANN)));
    assert!(clear.iter().any(|b| contains(b, BOB)));

    // The dry run says what happens to the raw log.
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args(["erase", "--tenant", "acme", "--email", ANN, "--dry-run"])
        .env("STOREFOLD_TOKEN", TOKEN)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("Raw log: the data keys of every erased identity are destroyed"),
        "{stdout}"
    );

    // Ann is erased.
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args(["erase", "--tenant", "acme", "--email", ANN])
        .env_remove("STOREFOLD_TOKEN")
        .env_remove("STOREFOLD_OPERATOR_SECRET")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, doc) =
            get_json(&client, &format!("{api}/v1/tenants/acme/customers/{ann}")).await;
        if status == 200 && doc["redacted"] == true {
            assert_eq!(
                doc["orders_count"], 1,
                "the live state keeps the figures: {doc}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the erasure was not folded within 120 s ({status} {doc}):\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Ann's data key is tombstoned (the erasure command, encrypted under the
    // same key, included); Bob's stays.
    let ann_subject = stored
        .iter()
        .find(|e| decrypt(&book, e).is_some_and(|b| contains(&b, ANN)))
        .and_then(|e| e.encryption.as_ref())
        .map(|e| e.subject.clone())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let keys = loop {
        let keys = read(&bootstrap, "storefold.keys.raw").await;
        let tombstoned = keys.iter().any(|k| {
            k.payload.is_none()
                && String::from_utf8_lossy(k.key.as_deref().unwrap())
                    .starts_with(&format!("acme/{ann_subject}/"))
        });
        if tombstoned {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "no tombstone for the erased subject's key within 60 s:\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        keys.iter().filter(|k| k.payload.is_none()).count(),
        1,
        "only Ann's key is shredded"
    );
    let (_, metrics) = {
        let r = client
            .get(format!("{api}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(
        metrics.contains("storefold_processor_keys_shredded_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("storefold_ingest_raw_keys_created_total 2"),
        "{metrics}"
    );

    // Every raw event, read with the keys that remain: nothing of Ann can be
    // decrypted (her order, her erasure command); Bob's order still can.
    let stored = raw_events(&bootstrap).await;
    assert_eq!(stored.len(), 3, "two orders and the erasure command");
    let book = key_book(&bootstrap).await;
    let mut shredded = 0;
    for ev in &stored {
        match decrypt(&book, ev) {
            Some(body) => {
                for marker in [ANN, ANN_STORE_ID] {
                    assert!(
                        !contains(&body, marker),
                        "{marker} in a decrypted raw event"
                    );
                }
                assert!(contains(&body, BOB) && contains(&body, BOB_STORE_ID));
            }
            None => {
                assert_eq!(ev.encryption.as_ref().unwrap().subject, ann_subject);
                shredded += 1;
            }
        }
    }
    assert_eq!(shredded, 2, "Ann's order and her erasure command");
    // What is left in clear beside each shredded body: her events without
    // her data (the order's figures, her identities as keys).
    for ev in stored.iter().filter(|e| decrypt(&book, e).is_none()) {
        let residue = ev
            .residue
            .as_deref()
            .expect("a residue beside the ciphertext");
        for marker in [ANN, ANN_STORE_ID, "shred.example"] {
            assert!(
                !residue.contains(marker),
                "{marker} in a residue: {residue}"
            );
        }
    }
    let ann_live = customers(&bootstrap, 1).await[&ann].1.clone();
    assert!(ann_live.redacted);
    drop(run);

    // A replay from the raw topics: Ann's events are folded as shredded,
    // Bob's as before.
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "replay", "--state-dir"])
        .arg(dir.path().join("replay"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("replay done: 3 raw events folded"),
        "{stderr}"
    );
    let replayed = customers(&bootstrap, 2).await;
    for (id, (bytes, _)) in &replayed {
        for marker in [ANN, ANN_STORE_ID] {
            assert!(
                !contains(bytes, marker),
                "{marker} in the replayed projection of {id}"
            );
        }
    }
    let bob_replayed = &replayed[&bob].1;
    assert_eq!(bob_replayed.email.as_deref(), Some(BOB));
    assert_eq!(bob_replayed.redacted, bob_live.redacted);
    let view = |p: &CustomerProjection| {
        let mut doc: serde_json::Value = serde_json::from_str(&p.doc).unwrap();
        doc.as_object_mut().unwrap().remove("version");
        doc
    };
    assert_eq!(
        view(bob_replayed),
        view(&bob_live),
        "Bob's customer is unchanged by the replay"
    );
    // Ann's customer comes back as the erasure left it: erased, her order
    // and its figures counted, from the residues of her shredded events.
    let ann_replayed = &replayed[&ann].1;
    assert!(ann_replayed.redacted);
    assert_eq!(ann_replayed.email, None);
    assert_eq!(view(ann_replayed), view(&ann_live), "Ann's erased customer");
}
