//! The generated history is deterministic, maps and folds without a rejection,
//! exercises what the fold must handle (payments, refunds, disputes, tracking,
//! tickets, touches, merges, parking), folds to the same state in any order, and
//! keeps its bodies small.

#![allow(clippy::print_stdout)]

use std::sync::OnceLock;

use storefold_codec::RawEvent;
use storefold_core::MemStore;
use storefold_testkit::history::{FoldCounts, HistorySpec, history, pure_fold, topic_counts};

fn spec() -> HistorySpec {
    HistorySpec {
        tenants: 3,
        customers_per_tenant: 200,
        events: 5000,
        duplicate_pct: 5,
        seed: 7,
    }
}

fn events() -> &'static Vec<RawEvent> {
    static EVENTS: OnceLock<Vec<RawEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| history(&spec()))
}

fn folded() -> &'static (MemStore, FoldCounts) {
    static FOLDED: OnceLock<(MemStore, FoldCounts)> = OnceLock::new();
    FOLDED.get_or_init(|| pure_fold(events()))
}

#[test]
fn the_history_is_deterministic_and_sized() {
    let a = events();
    let b = history(&spec());
    assert_eq!(a.len(), 5000);
    assert!(*a == b, "two calls with one spec differ");
    let other = history(&HistorySpec { seed: 8, ..spec() });
    assert!(*a != other, "another seed gives the same history");
    // received_at never goes backwards; tenants are t000..t002.
    assert!(a.windows(2).all(|w| w[0].received_at <= w[1].received_at));
    for e in a {
        assert!(
            ["t000", "t001", "t002"].contains(&e.tenant.as_str()),
            "{}",
            e.tenant
        );
        assert!(e.trace_context.is_none());
    }
    // Redeliveries: same id, same body.
    let mut first: std::collections::HashMap<(&str, &str, &str), &[u8]> =
        std::collections::HashMap::new();
    let mut redelivered = 0;
    for e in a {
        let key = (e.tenant.as_str(), e.provider.as_str(), e.event_id.as_str());
        match first.get(&key) {
            Some(body) => {
                redelivered += 1;
                assert_eq!(
                    *body,
                    e.body.as_slice(),
                    "redelivery of {key:?} changed its body"
                );
            }
            None => {
                first.insert(key, &e.body);
            }
        }
    }
    let distinct = first.len();
    println!("{distinct} distinct events, {redelivered} redeliveries");
    assert_eq!(distinct + redelivered, 5000);
    let expected = 5000 - 5000 * 100 / 105;
    assert_eq!(redelivered, expected);
}

#[test]
fn every_event_maps_and_folds() {
    let (_, counts) = folded();
    println!("{counts:#?}");
    assert_eq!(counts.events, 5000);
    assert_eq!(counts.map_errors, 0);
    assert_eq!(counts.fold_errors, 0);
    assert_eq!(counts.duplicates, 5000 - 5000 * 100 / 105);
    assert!(counts.envelopes > counts.events - counts.duplicates);
    assert!(counts.parked > 0, "nothing was parked");
    let parked = |p: &str| counts.parked_by_provider.get(p).copied().unwrap_or(0);
    assert!(
        parked("stripe") > 0,
        "no Stripe event waited for its charge"
    );
    assert!(
        parked("aftership") > 0,
        "no tracking update waited for its order"
    );
    assert_eq!(
        counts.released, counts.parked,
        "some parked events never found their order"
    );
    assert_eq!(counts.still_parked, 0);
}

#[test]
fn the_fold_has_every_kind_of_fact() {
    let (store, _) = folded();
    let orders = store.orders();
    let customers = store.customers();
    println!("{} orders, {} customers", orders.len(), customers.len());
    assert!(
        orders.values().all(|o| o.snapshot.is_some()),
        "an order without its Shopify snapshot"
    );
    let paid = orders
        .values()
        .filter(|o| o.payments.keys().any(|k| k.starts_with("stripe:")))
        .count();
    let refunded = orders
        .values()
        .filter(|o| o.refunds.keys().any(|k| k.starts_with("stripe:")))
        .count();
    let store_refunds = orders
        .values()
        .filter(|o| o.refunds.keys().any(|k| k.starts_with("shopify:")))
        .count();
    let disputed = orders.values().filter(|o| !o.disputes.is_empty()).count();
    // Carrier tracking lives in parcels, which the orders holding their
    // tracking numbers show.
    let carrier_parcels: std::collections::BTreeSet<&str> = store
        .records
        .values()
        .filter_map(|v| match v {
            storefold_core::engine::StateValue::Parcel(p)
                if p.entry.providers.contains("aftership") && p.entry.checkpoints.len() > 1 =>
            {
                Some(p.entry.tracking_number.as_str())
            }
            _ => None,
        })
        .collect();
    let tracked = orders
        .values()
        .filter(|o| {
            o.parcels
                .iter()
                .any(|t| carrier_parcels.contains(t.as_str()))
        })
        .count();
    let returns = orders.values().filter(|o| !o.returns.is_empty()).count();
    let currencies: std::collections::BTreeSet<String> = orders
        .values()
        .filter_map(|o| o.snapshot.as_ref())
        .map(|s| s.value.totals.total.currency.to_string())
        .collect();
    println!(
        "paid by stripe {paid}, stripe refunds {refunded}, shopify refunds {store_refunds}, \
         disputed {disputed}, tracked {tracked}, with returns {returns}, currencies {currencies:?}"
    );
    assert!(paid > 0 && refunded > 0 && store_refunds > 0 && disputed > 0);
    assert!(tracked > 0 && returns > 0);
    assert!(currencies.len() >= 3, "{currencies:?}");

    let with_tickets = customers.values().filter(|c| !c.tickets.is_empty()).count();
    let with_touches = customers.values().filter(|c| c.touches > 0).count();
    let both = customers
        .values()
        .filter(|c| !c.tickets.is_empty() && c.touches > 0 && c.orders_count > 0)
        .count();
    let merged: Vec<&str> = customers
        .values()
        .flat_map(|c| c.merged.iter().map(|m| m.reason.as_str()))
        .collect();
    let by_reason = |r: &str| merged.iter().filter(|m| **m == r).count();
    println!(
        "customers with tickets {with_tickets}, with touches {with_touches}, with orders, \
         tickets and touches {both}; merged: phone {}, anonymous_id {}, external_id {}",
        by_reason("phone"),
        by_reason("anonymous_id"),
        by_reason("external_id")
    );
    assert!(with_tickets > 0 && with_touches > 0 && both > 0);
    assert!(by_reason("phone") > 0, "no phone merge");
    assert!(by_reason("anonymous_id") > 0, "no visitor merge");
    assert!(by_reason("external_id") > 0, "no helpdesk id merge");
}

#[test]
fn the_fold_does_not_depend_on_arrival_order() {
    let (store, counts) = folded();
    let mut reversed = events().clone();
    reversed.reverse();
    let (back, back_counts) = pure_fold(&reversed);
    assert_eq!(back_counts.map_errors, 0);
    assert_eq!(back_counts.fold_errors, 0);
    assert_eq!(back_counts.duplicates, counts.duplicates);
    assert!(
        back.customers() == store.customers(),
        "customers differ when reversed"
    );
    assert!(
        back.orders() == store.orders(),
        "orders differ when reversed"
    );
}

#[test]
fn bodies_are_compact_and_the_mix_is_realistic() {
    let events = events();
    let total: usize = events.iter().map(|e| e.body.len()).sum();
    let average = total / events.len();
    let largest = events.iter().map(|e| e.body.len()).max().unwrap_or(0);
    println!("average body {average} bytes, largest {largest} bytes");
    for (topic, n) in topic_counts(events) {
        println!("{n:6}  {topic}");
    }
    let share = |provider: &str| {
        100 * events.iter().filter(|e| e.provider == provider).count() / events.len()
    };
    let shares: Vec<(&str, usize)> = [
        "shopify",
        "stripe",
        "aftership",
        "zendesk",
        "gorgias",
        "collect",
    ]
    .into_iter()
    .map(|p| (p, share(p)))
    .collect();
    println!("shares (%): {shares:?}");
    assert!(average < 800, "average body {average} bytes");
    assert!(largest < 1500, "largest body {largest} bytes");
    assert!((35..=55).contains(&share("shopify")));
    assert!((12..=30).contains(&share("stripe")));
    assert!((5..=15).contains(&share("aftership")));
    assert!((4..=12).contains(&(share("zendesk") + share("gorgias"))));
    assert!((8..=22).contains(&share("collect")));
}

#[test]
fn other_seeds_and_shapes_fold_cleanly() {
    assert!(
        history(&HistorySpec {
            events: 0,
            ..spec()
        })
        .is_empty()
    );
    for (i, (tenants, customers, events, dup)) in [
        (1, 2, 300, 0),
        (1, 50, 2000, 20),
        (5, 30, 2500, 10),
        (2, 500, 1500, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = HistorySpec {
            tenants,
            customers_per_tenant: customers,
            events,
            duplicate_pct: dup,
            seed: 100 + i as u64,
        };
        let h = history(&spec);
        assert_eq!(h.len(), events, "{spec:?}");
        let (_, counts) = pure_fold(&h);
        assert_eq!(counts.map_errors, 0, "{spec:?}: {counts:?}");
        assert_eq!(counts.fold_errors, 0, "{spec:?}: {counts:?}");
        assert_eq!(counts.still_parked, 0, "{spec:?}: {counts:?}");
        assert_eq!(
            counts.duplicates as usize,
            events - events * 100 / (100 + dup as usize)
        );
    }
}
