//! Erasure through the whole processor: Shopify orders and a browser touch of
//! two shoppers, then Shopify's `customers/redact` for one of them. Afterwards
//! no personal string of that shopper is in any column family of any task's
//! RocksDB, in the newest changelog record of any key, or in the newest
//! customer or order projection; the other shopper's data is all still there.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use storefold_processor::Mode;
use storefold_processor::db::{StoreMemory, TaskDb};
use storefold_processor::records::Family;
use storefold_providers::ProviderKind;
use storefold_runtime::kafka::Topics;
use storefold_testkit::broker::read_topic;
use storefold_testkit::samples::Sample;
use time::macros::datetime;

use crate::common::*;

const PARTITIONS: i32 = 2;

/// A shopper whose every personal string carries `mark` (its phone, `digits`).
struct Shopper {
    n: u64,
    mark: &'static str,
    digits: &'static str,
}

const ERIN: Shopper = Shopper {
    n: 1,
    mark: "erinvale",
    digits: "4155550101",
};
const OLAF: Shopper = Shopper {
    n: 2,
    mark: "olafsund",
    digits: "4155550202",
};

impl Shopper {
    fn email(&self) -> String {
        format!("{}@erase.test", self.mark)
    }

    fn order_id(&self) -> u64 {
        5_012_345_600_000 + self.n
    }

    /// Shopify's orders/create fixture, made this shopper's: every personal
    /// field Shopify sends carries the mark, and the ids and tracking numbers
    /// are the shopper's own.
    fn order(&self) -> Sample {
        let mut v: Value = serde_json::from_slice(include_bytes!(
            "../../../providers/src/shopify/fixtures/orders_create.json"
        ))
        .expect("JSON");
        self.personalise(&mut v, false);
        v["id"] = json!(self.order_id());
        v["name"] = json!(format!("#{}", 7000 + self.n));
        v["order_number"] = json!(7000 + self.n);
        v["customer"]["id"] = json!(8_300_000_000u64 + self.n);
        v["cart_token"] = json!(format!("cart-{}", self.mark));
        v["landing_site"] = json!(format!(
            "/welcome?email={}%40erase.test&utm_source=newsletter",
            self.mark
        ));
        v["referring_site"] = json!(format!("https://mail.example/{}", self.mark));
        let text = serde_json::to_string(&v)
            .expect("JSON")
            .replace("1Z999AA1012345678", &format!("1Z{}TRACK", self.n))
            .replace("9400100000000000000000", &format!("94{}000", self.n));
        Sample {
            provider: ProviderKind::Shopify,
            topic: "orders/create",
            body: text.into_bytes(),
        }
    }

    fn personalise(&self, v: &mut Value, in_address: bool) {
        let m = self.mark;
        match v {
            Value::Object(fields) => {
                for (k, x) in fields.iter_mut() {
                    let address = k.ends_with("address") || k == "addresses";
                    match (k.as_str(), &*x) {
                        ("email" | "contact_email", Value::String(_)) => *x = json!(self.email()),
                        ("phone", Value::String(_)) => *x = json!(format!("+1{}", self.digits)),
                        (
                            "first_name" | "last_name" | "address1" | "address2" | "city"
                            | "company" | "zip" | "note",
                            Value::String(_),
                        ) => *x = json!(format!("{m} {k}")),
                        ("name", Value::String(_)) if in_address => *x = json!(format!("{m} name")),
                        ("tags", Value::String(_)) => *x = json!(format!("{m}-vip")),
                        ("code", Value::String(_)) => *x = json!(format!("{m}-10")),
                        ("value", Value::String(_)) => *x = json!(format!("for {m}")),
                        _ => self.personalise(x, address),
                    }
                }
            }
            Value::Array(items) => {
                for x in items {
                    self.personalise(x, in_address);
                }
            }
            _ => {}
        }
    }

    /// A browser touch whose landing page carries the email, as newsletters'
    /// links often do.
    fn touch(&self) -> Sample {
        Sample {
            provider: ProviderKind::Collect,
            topic: "touch",
            body: serde_json::to_vec(&json!({
                "anonymous_id": format!("anon-{}", self.mark),
                "touch_id": format!("tch-{}", self.n),
                "email": self.email(),
                "landing_page": format!(
                    "https://shop.test/welcome?email={}%40erase.test&utm_source=newsletter&utm_campaign=spring",
                    self.mark
                ),
                "referrer": format!("https://mail.example/{}", self.mark),
                "cart_token": format!("cart-{}", self.mark),
            }))
            .expect("JSON"),
        }
    }

    /// Stripe's charge.succeeded of a payment naming an order that never
    /// arrives (it waits, parked), paid by this shopper.
    fn stray_charge(&self) -> Sample {
        let mut v: Value = serde_json::from_slice(include_bytes!(
            "../../../providers/src/stripe/fixtures/charge.succeeded.json"
        ))
        .expect("JSON");
        let m = self.mark;
        v["id"] = json!(format!("evt_stray_{}", self.n));
        let o = &mut v["data"]["object"];
        o["id"] = json!(format!("ch_stray_{}", self.n));
        o["payment_intent"] = json!(format!("pi_stray_{}", self.n));
        o["customer"] = json!(format!("cus_stray_{}", self.n));
        o["metadata"] = json!({"order_id": format!("59990000{}", self.n)});
        o["billing_details"] = json!({
            "address": {"city": format!("{m}ville"), "country": "CA",
                        "line1": format!("1 {m} road"), "line2": null,
                        "postal_code": "K2P 1L4", "state": "ON"},
            "email": self.email(),
            "name": format!("{m} Quist"),
            "phone": format!("+1{}", self.digits),
        });
        Sample {
            provider: ProviderKind::Stripe,
            topic: "charge.succeeded",
            body: serde_json::to_vec(&v).expect("JSON"),
        }
    }

    /// Shopify's customers/redact for this shopper and its order.
    fn redact(&self) -> Sample {
        Sample {
            provider: ProviderKind::Shopify,
            topic: "customers/redact",
            body: serde_json::to_vec(&json!({
                "shop_id": 60000001,
                "shop_domain": "storefold-demo.myshopify.com",
                "customer": {
                    "id": 8_300_000_000u64 + self.n,
                    "email": self.email(),
                    "phone": format!("+1{}", self.digits),
                },
                "orders_to_redact": [self.order_id()],
            }))
            .expect("JSON"),
        }
    }

    fn found_in(&self, text: &str) -> bool {
        let t = text.to_lowercase();
        t.contains(self.mark) || t.contains(self.digits)
    }
}

/// `(where, text)` of every record of every column family of every task.
fn disk(env: &Env) -> Vec<(String, String)> {
    let memory = StoreMemory::new(16 << 20);
    let state_dir = env.dir.path().join("state");
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let path = state_dir.join(format!("task-{p}"));
        if !path.exists() {
            continue;
        }
        let db = TaskDb::open(
            &path,
            &memory,
            i64::MAX,
            std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0)),
            false,
        )
        .expect("open");
        for f in Family::ALL {
            for (k, v) in db.entries(f).expect("read") {
                out.push((
                    format!("task {p} {f:?} {k}"),
                    format!("{k} {}", String::from_utf8_lossy(&v)),
                ));
            }
        }
    }
    out
}

/// `(where, text)` of the newest record of every key of `topic`.
fn newest(env: &Env, topic: &str) -> Vec<(String, String)> {
    let mut by_key: BTreeMap<(i32, Vec<u8>), String> = BTreeMap::new();
    for r in read_topic(env.broker.bootstrap(), topic, Duration::from_secs(30)) {
        let key = r.key.clone().unwrap_or_default();
        let text = r
            .payload
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        by_key.insert((r.partition, key), text);
    }
    by_key
        .into_iter()
        .map(|((p, k), text)| {
            let k = String::from_utf8_lossy(&k).into_owned();
            (format!("{topic} [{p}] {k}"), format!("{k} {text}"))
        })
        .collect()
}

fn everything(env: &Env) -> Vec<(String, String)> {
    let topics = Topics::new(&env.config.kafka.topic_prefix);
    let mut all = disk(env);
    for t in [topics.changelog(), topics.customers(), topics.orders()] {
        all.extend(newest(env, &t));
    }
    all
}

#[test]
fn after_customers_redact_no_personal_string_is_left_in_state_changelog_or_projections() {
    let env = env(PARTITIONS);
    let at = datetime!(2025-03-14 14:00 UTC);
    let mut events = Vec::new();
    for (i, s) in [&ERIN, &OLAF].into_iter().enumerate() {
        let i = i as i64;
        // The shop signed the visitor's email (the ingest vouched for it).
        let mut touch = raw_event("acme", &s.touch(), at + time::Duration::minutes(i));
        touch.headers.insert(
            storefold_providers::collect::IDENTITY_HEADER.to_string(),
            storefold_providers::collect::IDENTITY_SIGNED.to_string(),
        );
        events.push(touch);
        events.push(raw_event(
            "acme",
            &s.order(),
            at + time::Duration::minutes(10 + i),
        ));
        events.push(raw_event(
            "acme",
            &s.stray_charge(),
            at + time::Duration::minutes(20 + i),
        ));
    }
    produce(&env.config, &events);
    run(&env, &env.config, options(&env.config, Mode::All));
    // The history does put Erin's data in every place looked at below.
    let before = everything(&env);
    for place in ["Aggregates", "Parked", "changelog", "customers", "orders"] {
        assert!(
            before
                .iter()
                .any(|(w, t)| w.contains(place) && ERIN.found_in(t)),
            "before the redaction, Erin's data is in {place}"
        );
    }

    produce(
        &env.config,
        &[raw_event(
            "acme",
            &ERIN.redact(),
            at + time::Duration::days(30),
        )],
    );
    run(&env, &env.config, options(&env.config, Mode::All));
    let after = everything(&env);
    let left: Vec<&(String, String)> = after.iter().filter(|(_, t)| ERIN.found_in(t)).collect();
    assert!(
        left.is_empty(),
        "the erased shopper's data is still in {} records: {:#?}\nthe first: {:#?}",
        left.len(),
        left.iter().map(|(w, _)| w).collect::<Vec<_>>(),
        left.first()
    );
    // Olaf's data is all where it was.
    for place in ["Aggregates", "Parked", "changelog", "customers", "orders"] {
        assert!(
            after
                .iter()
                .any(|(w, t)| w.contains(place) && OLAF.found_in(t)),
            "Olaf's data is still in {place}"
        );
    }
    // Erin's order still counts, anonymously.
    let (_, orders) = state(&env.dir.path().join("state"), PARTITIONS);
    let erin = &orders[&format!("acme/shopify:{}", ERIN.order_id())];
    assert!(erin.redacted);
    assert!(erin.snapshot.is_some(), "the order's figures stay");
}
