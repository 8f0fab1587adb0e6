//! Bounded state: what a customer keeps when its history outgrows the limits,
//! that money stays exact, and that bounding keeps the fold independent of
//! arrival order and batching.

use std::collections::BTreeMap;
use std::sync::Arc;

use storefold_core::aggregate::Customer;
use storefold_core::engine::{FoldConfig, Item, StateValue};
use storefold_core::event::*;
use storefold_core::identity::{Identity, IdentityKey, IdentityKind};
use storefold_core::limits::{Limits, OTHER};
use storefold_core::money::{Currency, Money};
use storefold_core::{Engine, Envelope, MemStore};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2025-03-01 10:00 UTC);
const EMAIL: &str = "many@example.com";

fn fold(events: &[Envelope], batch: usize, limits: Limits) -> MemStore {
    let config = Arc::new(FoldConfig {
        limits,
        ..FoldConfig::default()
    });
    let mut store = MemStore::default();
    for chunk in events.chunks(batch.max(1)) {
        let mut engine = Engine::with_config(config.clone());
        for e in chunk {
            engine.apply(&store, e).expect("fold");
        }
        let out = engine.finish(&store);
        store.commit(out.changes);
    }
    store
}

fn customer(store: &MemStore) -> Customer {
    let id = IdentityKey::new("acme", IdentityKind::Email, EMAIL)
        .customer_id()
        .0;
    store.customers().remove(&id).expect("customer exists")
}

fn env(id: &str, at: OffsetDateTime, event: Event) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        provider: "test".into(),
        event_id: id.into(),
        occurred_at: at,
        event,
    }
}

fn touch(n: u32, touch_id: &str, at: OffsetDateTime) -> Envelope {
    env(
        &format!("touch-{n}"),
        at,
        Event::Touch(Touch {
            touch_id: touch_id.into(),
            identity: Identity::default().with_email(Some(EMAIL)),
            utm: Utm {
                source: Some(["google", "newsletter", "meta", "tiktok"][n as usize % 4].into()),
                medium: Some("cpc".into()),
                campaign: Some(format!("c{}", n % 7)),
                ..Utm::default()
            },
            landing_page: Some(format!("https://shop.example/p/{n}")),
            referrer: None,
            gclid: None,
            fbclid: None,
            cart_token: None,
            at,
        }),
    )
}

fn order(n: u32, total: i64) -> Envelope {
    let usd = Currency::from_code("USD").expect("USD");
    let at = T0 + Duration::minutes(i64::from(n));
    env(
        &format!("order-{n}"),
        at,
        Event::OrderUpserted(Box::new(OrderUpserted {
            order_id: format!("shopify:{n}"),
            number: Some(format!("#{n}")),
            customer: Identity::default().with_email(Some(EMAIL)),
            customer_name: Some("Many Orders".into()),
            status: OrderStatus::Open,
            financial_status: Some("paid".into()),
            fulfillment_status: None,
            totals: OrderTotals {
                total: Money::new(total, usd),
                subtotal: None,
                discounts: None,
                shipping: None,
                tax: None,
                presentment_total: None,
            },
            line_items: vec![],
            discount_codes: vec![],
            payment_refs: vec![],
            tracking_numbers: vec![],
            attribution: Attribution::default(),
            cart_token: None,
            shipping_address: None,
            billing_address: None,
            note: None,
            tags: vec![],
            test: false,
            created_at: at,
            updated_at: at,
            cancelled_at: None,
            cancel_reason: None,
            store_money: Some(StoreMoney {
                received: Money::new(total, usd),
                authorized: None,
                outstanding: None,
                shop_received: None,
                basis: "test: financial_status".into(),
            }),
        })),
    )
}

/// A deterministic shuffle (no dependency on a random source).
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

#[test]
fn a_customer_with_ten_thousand_orders_keeps_exact_money_and_lists_the_newest() {
    let n = 10_000u32;
    // Totals 1..=n cents: the gross is n(n+1)/2, exactly.
    let events: Vec<Envelope> = (1..=n).map(|i| order(i, i64::from(i))).collect();
    let limits = Limits::default();
    let store = fold(&shuffled(&events, 7), 1_000, limits);
    let c = customer(&store);
    let expected = i64::from(n) * (i64::from(n) + 1) / 2;
    assert_eq!(c.orders_count, u64::from(n));
    assert_eq!(c.revenue.len(), 1);
    assert_eq!(c.revenue[0].gross, expected, "every order's money counts");
    assert_eq!(c.revenue[0].net, expected);
    assert_eq!(c.revenue[0].orders, u64::from(n));
    assert_eq!(c.first_order_id.as_deref(), Some("shopify:1"));
    assert_eq!(
        c.last_order_id.as_deref(),
        Some(format!("shopify:{n}").as_str())
    );
    // The view lists the newest orders only, and says what it left out.
    assert_eq!(c.orders.len(), limits.listed_orders);
    assert!(c.truncated);
    assert_eq!(
        c.omitted.get("orders"),
        Some(&u64::from(n - limits.listed_orders as u32))
    );
    let listed: Vec<&str> = c.orders.iter().map(|o| o.order_id.as_str()).collect();
    let newest: Vec<String> = (n - limits.listed_orders as u32 + 1..=n)
        .map(|i| format!("shopify:{i}"))
        .collect();
    assert_eq!(
        listed,
        newest.iter().map(String::as_str).collect::<Vec<_>>()
    );
    // The stored view is small: far under Kafka's 1 MB default message size.
    let bytes = serde_json::to_vec(&c).expect("json").len();
    assert!(bytes < 200_000, "customer view of {bytes} bytes");
    // Another arrival order and batching give the same customer.
    let again = customer(&fold(&events, 777, limits));
    assert_eq!(c, again);
}

#[test]
fn bounded_touches_keep_first_last_and_counts_in_any_order() {
    // 60 touches, two of them re-sent with another time under the same id.
    let mut events: Vec<Envelope> = (0..60u32)
        .map(|i| touch(i, &format!("t{i}"), T0 + Duration::hours(i64::from(i))))
        .collect();
    events.push(touch(100, "t5", T0 + Duration::hours(70)));
    events.push(touch(101, "t40", T0 - Duration::hours(3)));
    let small = Limits {
        touches: 5,
        touch_values: 3,
        ..Limits::default()
    };
    let reference = customer(&fold(&events, events.len(), small));
    // First touch: the earliest ever seen (t40's early copy); last: the newest.
    let first = reference.first_touch.clone().expect("first touch");
    assert_eq!(first.touch_id, "t40");
    assert_eq!(first.at, T0 - Duration::hours(3));
    let last = reference.last_touch.clone().expect("last touch");
    assert_eq!(last.touch_id, "t5");
    assert_eq!(last.at, T0 + Duration::hours(70));
    // Touches are counted by id, every one of them.
    assert_eq!(reference.touches, 60);
    // Counts: every touch event, at most 3 values of their own plus the rest.
    for counts in [
        &reference.touch_counts.source,
        &reference.touch_counts.medium,
        &reference.touch_counts.campaign,
    ] {
        assert_eq!(counts.0.values().sum::<u64>(), 62, "{counts:?}");
        assert!(counts.0.keys().filter(|k| *k != OTHER).count() <= 3);
    }
    assert_eq!(reference.touch_counts.medium.0.get("cpc"), Some(&62));
    assert_eq!(reference.touch_counts.source.0.get("google"), Some(&16));
    assert_eq!(reference.touch_counts.source.0.get(OTHER), Some(&15));
    // The identity's stored touches are bounded.
    let store = fold(&events, 1, small);
    for (k, v) in &store.records {
        if let (Item::Fragment(_), StateValue::Fragment(f)) = (&k.item, v) {
            assert!(f.touches.len() <= small.touches, "{}", f.touches.len());
        }
    }
    // Any arrival order and batching give the same customer.
    let mut seen = BTreeMap::new();
    for (seed, batch) in [(1u64, 1usize), (2, 3), (3, 10), (4, 62)] {
        let c = customer(&fold(&shuffled(&events, seed), batch, small));
        assert_eq!(c, reference, "seed {seed}, batch {batch}");
        seen.insert(seed, c.touches);
    }
    let reversed: Vec<Envelope> = events.iter().rev().cloned().collect();
    assert_eq!(customer(&fold(&reversed, 4, small)), reference);
    // Without trimming, first, last and the count are the same.
    let unbounded = customer(&fold(&events, 62, Limits::default()));
    assert_eq!(unbounded.first_touch, reference.first_touch);
    assert_eq!(unbounded.last_touch, reference.last_touch);
    assert_eq!(unbounded.touches, reference.touches);
}

#[test]
fn a_parcel_keeps_its_first_and_newest_checkpoints_in_any_order() {
    let number = "1Z999";
    let events: Vec<Envelope> = (0..40i64)
        .map(|i| {
            env(
                &format!("track-{i}"),
                T0 + Duration::hours(i),
                Event::ShipmentUpdated(Shipment {
                    provider: "aftership".into(),
                    tracking_number: number.into(),
                    carrier: Some("ups".into()),
                    links: vec![],
                    fulfillment_id: None,
                    status: ShipmentStatus::InTransit,
                    checkpoints: vec![Checkpoint {
                        at: T0 + Duration::hours(i),
                        status: ShipmentStatus::InTransit,
                        message: Some(format!("scan {i}")),
                        location: None,
                    }],
                    line_item_ids: vec![],
                    estimated_delivery: None,
                    at: T0 + Duration::hours(i),
                }),
            )
        })
        .collect();
    let small = Limits {
        checkpoints: 4,
        ..Limits::default()
    };
    let parcel = |store: &MemStore| {
        store
            .records
            .iter()
            .find_map(|(k, v)| match (&k.item, v) {
                (Item::Parcel(t), StateValue::Parcel(p)) if t == number => Some(p.clone()),
                _ => None,
            })
            .expect("parcel")
    };
    let reference = parcel(&fold(&events, 40, small));
    let times: Vec<i64> = reference
        .entry
        .checkpoints
        .iter()
        .map(|c| (c.at - T0).whole_hours())
        .collect();
    assert_eq!(times, vec![0, 36, 37, 38, 39]);
    for (seed, batch) in [(5u64, 1usize), (6, 7)] {
        let p = parcel(&fold(&shuffled(&events, seed), batch, small));
        assert_eq!(p.entry.checkpoints, reference.entry.checkpoints);
    }
}
