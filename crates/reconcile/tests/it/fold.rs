//! A webhook dropped on purpose is found by the next reconciliation pass and
//! the Customer 360 and order views end as in the run that received it; the
//! dropped webhook arriving late afterwards changes nothing.
//!
//! Journeys from storefold-journeys (real provider payloads), their webhooks
//! mapped by the real mappers and folded by the real engine; the pass runs
//! against the API stand-ins serving the providers' objects as they are at
//! the end of the journey.

use std::time::Duration;

use serde_json::Value;
use storefold_codec::RawEvent;
use storefold_core::Envelope;
use storefold_journeys::run::{Books, Folded, fold};
use storefold_journeys::{Journey, Step, map_raw};
use storefold_providers::ProviderKind;
use storefold_reconcile::cursor::CursorFile;
use storefold_reconcile::{MemLog, Metrics, Reach, Reconciler, Source, is_reconciled};
use time::OffsetDateTime;

use crate::standins;

fn journey(name: &str) -> Journey {
    storefold_journeys::library()
        .into_iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("journey {name}"))
}

/// A step as the ingest stored it.
fn raw_of(j: &Journey, s: &Step) -> RawEvent {
    RawEvent {
        event_id: s.event_id.clone(),
        tenant: j.tenant.clone(),
        provider: s.provider.name().to_string(),
        topic: s.topic.clone(),
        received_at: (s.received_at.unix_timestamp_nanos() / 1_000_000) as i64,
        headers: s
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        body: s.body.clone(),
        verification: storefold_codec::Verification::verified("test"),
        trace_context: None,
        encryption: None,
        residue: None,
    }
}

/// What the processor's mapper makes of a stored raw event.
fn map(j: &Journey, r: &RawEvent) -> Vec<Envelope> {
    let provider: ProviderKind = r.provider.parse().unwrap();
    let headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    map_raw(
        provider,
        &r.topic,
        &r.event_id,
        &headers,
        &r.body,
        r.received_time(),
        &j.tenant,
        &j.options,
    )
    .unwrap_or_else(|e| panic!("mapping {} {}: {e}", r.provider, r.topic))
}

/// Folds raw events one batch each, in order.
fn fold_raw(j: &Journey, raws: &[RawEvent]) -> Folded {
    let deliveries: Vec<Vec<Envelope>> = raws.iter().map(|r| map(j, r)).collect();
    let batches: Vec<Vec<&[Envelope]>> = deliveries.iter().map(|d| vec![d.as_slice()]).collect();
    fold(&batches).unwrap()
}

/// Everything a CRM reads: the Customer 360s and order views, exactly (event
/// ids included), and the newest triggers.
fn views(f: &Folded) -> Value {
    serde_json::json!({
        "customers": serde_json::to_value(f.store.customers()).unwrap(),
        "orders": serde_json::to_value(f.store.order_views()).unwrap(),
        "triggers": serde_json::to_value(&f.triggers).unwrap(),
    })
}

/// The books with each trigger's `source_event_id` blanked.
fn without_sources(mut b: Books) -> Books {
    for t in b.triggers.values_mut() {
        t.source_event_id.clear();
    }
    b
}

fn body(s: &Step) -> Value {
    serde_json::from_slice(&s.body).unwrap()
}

/// The stand-ins' current objects: every Stripe event, and each store
/// order's newest version.
fn current_objects(j: &Journey, provider: ProviderKind) -> Vec<Value> {
    let steps = j.steps.iter().filter(|s| s.provider == provider);
    match provider {
        ProviderKind::Stripe => steps.map(body).collect(),
        _ => {
            let mut newest = std::collections::BTreeMap::new();
            for s in steps.filter(|s| s.topic.starts_with("order")) {
                let b = body(s);
                newest.insert(b["id"].to_string(), b);
            }
            newest.into_values().collect()
        }
    }
}

fn reconciler(sources: Vec<Source>) -> Reconciler {
    Reconciler {
        sources,
        reach: Reach {
            settle: Duration::from_secs(15 * 60),
            overlap: Duration::from_secs(3600),
            // The journeys span weeks; the stand-ins do not expire events.
            lookback: Duration::from_secs(90 * 24 * 3600),
        },
        cursors: CursorFile::in_memory(),
        metrics: Metrics::unregistered(),
    }
}

fn pass_time(j: &Journey) -> OffsetDateTime {
    j.steps.iter().map(|s| s.received_at).max().unwrap() + time::Duration::hours(1)
}

#[tokio::test]
async fn woo_stripe_a_dropped_refund_and_order_update_are_found_and_the_360_is_identical() {
    let j = journey("woo_stripe");
    let all: Vec<RawEvent> = j.steps.iter().map(|s| raw_of(&j, s)).collect();
    // Dropped on purpose: Stripe's charge.refunded and WooCommerce's last
    // order.updated (the one listing the refund).
    let last_woo = j
        .steps
        .iter()
        .rposition(|s| s.provider == ProviderKind::WooCommerce)
        .unwrap();
    let dropped: Vec<usize> = vec![
        j.steps
            .iter()
            .position(|s| s.topic == "charge.refunded")
            .unwrap(),
        last_woo,
    ];
    let received: Vec<RawEvent> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, r)| r.clone())
        .collect();

    let stripe = standins::stripe(current_objects(&j, ProviderKind::Stripe)).await;
    let woo = standins::woocommerce(current_objects(&j, ProviderKind::WooCommerce)).await;
    let m = Metrics::unregistered();
    let mut rec = reconciler(vec![
        Source {
            tenant: j.tenant.clone(),
            poller: crate::stripe_poller(&stripe.base_url, 3, &m),
            interval: Duration::from_secs(300),
        },
        Source {
            tenant: j.tenant.clone(),
            poller: crate::woo_poller(&woo.base_url, 2, &m),
            interval: Duration::from_secs(300),
        },
    ]);
    let mut log = MemLog {
        events: received.clone(),
    };
    let now = pass_time(&j);
    let reports = rec.once(&mut log, || now).await;
    let injected: Vec<RawEvent> = reports
        .into_iter()
        .flat_map(|(_, _, r)| r.unwrap().injected)
        .collect();
    for api in [&stripe, &woo] {
        assert!(api.log.lock().unwrap().violations.is_empty());
    }

    // Exactly the dropped webhooks were found, under their webhook ids.
    let mut ids: Vec<&str> = injected.iter().map(|r| r.event_id.as_str()).collect();
    ids.sort();
    let mut want: Vec<&str> = dropped.iter().map(|&i| all[i].event_id.as_str()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(injected.iter().all(is_reconciled));

    let with_webhook = views(&fold_raw(&j, &all));
    let mut healed = received.clone();
    healed.extend(injected.clone());
    assert_eq!(
        views(&fold_raw(&j, &healed)),
        with_webhook,
        "the 360 after reconciliation"
    );

    // The dropped webhooks arrive late after all: nothing changes (same event ids).
    let mut late = healed.clone();
    late.extend(dropped.iter().map(|&i| all[i].clone()));
    assert_eq!(
        views(&fold_raw(&j, &late)),
        with_webhook,
        "after the late webhooks"
    );

    // Reconciled first, webhooks after, in the log order they would take:
    // the reverse order gives the same too.
    let mut reverse = injected.clone();
    reverse.extend(received.clone());
    assert_eq!(
        views(&fold_raw(&j, &reverse)),
        with_webhook,
        "reconciled first"
    );

    // A second pass finds nothing more, and counts what the first found.
    let reports = rec
        .once(&mut log, || now + time::Duration::minutes(5))
        .await;
    assert!(
        reports
            .iter()
            .all(|(_, _, r)| r.as_ref().unwrap().injected.is_empty())
    );
    assert_eq!(rec.metrics.gaps.with_label_values(&["stripe"]).get(), 1);
    assert_eq!(
        rec.metrics.gaps.with_label_values(&["woocommerce"]).get(),
        1
    );
}

#[tokio::test]
async fn shopify_a_dropped_order_update_and_refund_are_found_and_the_books_are_identical() {
    let j = journey("shopify_partial_refund");
    let all: Vec<RawEvent> = j.steps.iter().map(|s| raw_of(&j, s)).collect();
    // Dropped: refunds/create and the orders/updated after it.
    let dropped: Vec<usize> = j
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.topic == "refunds/create" || s.topic == "orders/updated")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(dropped.len(), 2);
    let received: Vec<RawEvent> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, r)| r.clone())
        .collect();

    let shop = standins::shopify(current_objects(&j, ProviderKind::Shopify)).await;
    let m = Metrics::unregistered();
    let mut rec = reconciler(vec![Source {
        tenant: j.tenant.clone(),
        poller: crate::shopify_poller(&shop.base_url, 50, &m),
        interval: Duration::from_secs(300),
    }]);
    let mut log = MemLog {
        events: received.clone(),
    };
    let now = pass_time(&j);
    let reports = rec.once(&mut log, || now).await;
    let injected = reports.into_iter().next().unwrap().2.unwrap().injected;
    assert!(shop.log.lock().unwrap().violations.is_empty());
    assert_eq!(
        injected.len(),
        1,
        "the order's newest version, with its refund"
    );
    assert_eq!(injected[0].topic, "orders/updated");

    // The books: figures, ledger amounts, customers (orders, revenue,
    // segments), and the same triggers (ids, kinds, content) except the event
    // they name as their source: the reconciled copy's id, Shopify's event id
    // not being in its API.
    let with_webhook = without_sources(Books::of(&fold_raw(&j, &all)));
    let mut healed = received.clone();
    healed.extend(injected.clone());
    let folded = fold_raw(&j, &healed);
    let books = without_sources(Books::of(&folded));
    assert_eq!(books.diff(&with_webhook, 20), Vec::<String>::new());
    assert_eq!(books.triggers, with_webhook.triggers);
    let order = "shopify:5801001001";
    let seen = folded.store.orders()[order].seen.count();
    // The ledger's refund entry names the reconciled copy as its source.
    let views = folded.store.order_views();
    assert!(
        views[order].ledger.iter().any(|e| e
            .source_event_id
            .starts_with("reconciled-order-5801001001-")),
        "{:?}",
        views[order].ledger
    );

    // The late webhooks change no figure; they are new events to the fold
    // (their observations join the reconciled ones), so the order counts
    // more events than before.
    let mut late = healed.clone();
    late.extend(dropped.iter().map(|&i| all[i].clone()));
    let folded = fold_raw(&j, &late);
    let books = without_sources(Books::of(&folded));
    assert_eq!(
        books.diff(&with_webhook, 20),
        Vec::<String>::new(),
        "after the late webhooks"
    );
    assert_eq!(books.triggers, with_webhook.triggers);
    assert!(folded.store.orders()[order].seen.count() > seen);

    // Had the webhook been received, the pass would find nothing.
    let mut full = MemLog {
        events: all.clone(),
    };
    let mut rec = reconciler(vec![Source {
        tenant: j.tenant.clone(),
        poller: crate::shopify_poller(&shop.base_url, 50, &m),
        interval: Duration::from_secs(300),
    }]);
    let reports = rec.once(&mut full, || now).await;
    assert!(reports[0].2.as_ref().unwrap().injected.is_empty());
}
