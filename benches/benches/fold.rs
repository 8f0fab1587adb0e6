//! In-memory fold throughput: a realistic generated mix (profiles, touches,
//! orders, payments, partial refunds, disputes, split shipments, returns,
//! tickets, duplicates) folded through the engine in batches, as the processor
//! does, with a hash-map store standing in for RocksDB.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use storefold_scenario::{self as scenario, Rng, ScenarioSpec};

use storefold_core::aggregate::{Fragment, Order};
use storefold_core::event::{Event, OrderLink};
use storefold_core::{Engine, Envelope, MemStore};

fn workload() -> Vec<Envelope> {
    let mut events = Vec::new();
    // Many tenants' worth of customers, interleaved and shuffled like real arrivals.
    for seed in 0..40u64 {
        let spec = ScenarioSpec {
            tenant: format!("tenant-{}", seed % 8),
            customers: 50,
            max_orders_per_customer: 3,
            duplicate_pct: 5,
            shared_phone_pct: 5,
            ..ScenarioSpec::default()
        };
        events.extend(scenario::generate(seed, &spec));
    }
    Rng::new(42).shuffle(&mut events);
    events
}

fn fold_all(events: &[Envelope], batch: usize) -> MemStore {
    let mut store = MemStore::default();
    for chunk in events.chunks(batch) {
        let mut engine = Engine::new();
        for e in chunk {
            let _ = engine.apply(&store, e);
        }
        let out = engine.finish(&store);
        store.commit(out.changes);
    }
    store
}

/// The aggregate fold alone: `apply(state, event)` on in-memory aggregates, with
/// events already routed to their aggregate (no identity resolution, parking or
/// projection building — those are the engine's, measured below).
fn apply_only(events: &[(Envelope, Route)]) -> (HashMap<String, Order>, HashMap<String, Fragment>) {
    let mut orders: HashMap<String, Order> = HashMap::new();
    let mut frags: HashMap<String, Fragment> = HashMap::new();
    for (e, route) in events {
        match route {
            Route::Order(id) => {
                orders
                    .entry(id.clone())
                    .or_insert_with(|| Order::new(id))
                    .apply(e, e.tenant.as_str());
            }
            Route::Customer(k) => {
                frags
                    .entry(k.to_string())
                    .or_insert_with(|| Fragment::new(k.clone()))
                    .apply(e);
            }
            Route::None => {}
        }
    }
    (orders, frags)
}

enum Route {
    Order(String),
    Customer(storefold_core::IdentityKey),
    None,
}

fn route(e: &Envelope) -> Route {
    let by_links = |links: &[OrderLink]| {
        links
            .iter()
            .map(|l| match l {
                OrderLink::Order { order_id } => order_id.clone(),
                OrderLink::Payment { reference, .. } => reference.clone(),
                OrderLink::Tracking { number } | OrderLink::Number { number } => number.clone(),
            })
            .next()
            .map_or(Route::None, Route::Order)
    };
    let by_identity = |id: &storefold_core::Identity| {
        id.primary_key(&e.tenant)
            .map_or(Route::None, Route::Customer)
    };
    match &e.event {
        Event::OrderUpserted(o) => Route::Order(o.order_id.clone()),
        Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => by_links(&p.links),
        Event::RefundIssued(r) => by_links(&r.links),
        Event::DisputeOpened(d) | Event::DisputeClosed(d) => by_links(&d.links),
        Event::ShipmentUpdated(s) => by_links(&s.links),
        Event::ReturnRequested(r) | Event::ReturnResolved(r) => by_links(&r.links),
        Event::CustomerUpserted(c) => by_identity(&c.identity),
        Event::Touch(t) => by_identity(&t.identity),
        Event::Identify(i) => by_identity(&i.identity),
        Event::TicketUpdated(t) => by_identity(&t.requester),
        Event::CustomerRedacted(r) => by_identity(&r.identity),
        Event::IdentityDecided(d) => {
            d.a.key(e.tenant.as_str())
                .map_or(Route::None, Route::Customer)
        }
        // A SKU's record, and the orders its costs reach: none in the
        // generated histories the benchmark folds.
        Event::InventoryUpdated(_) => Route::None,
        // Payouts: none in the generated histories either.
        Event::PayoutLine(l) => by_links(&l.links),
        Event::PayoutUpdated(_) => Route::None,
    }
}

/// The processor's shape: one engine whose working set stays warm across batches,
/// changed records handed over by reference (here: counted, as a stand-in for
/// serialising them into a write batch).
fn fold_retaining(events: &[Envelope], batch: usize) -> usize {
    let empty = MemStore::default();
    let mut engine = Engine::new();
    let mut changed = 0usize;
    for chunk in events.chunks(batch) {
        for e in chunk {
            let _ = engine.apply(&empty, e);
        }
        let out = engine.finish_retaining(&empty, |_, _| changed += 1);
        changed += out.projections.len();
    }
    changed
}

fn bench_fold(c: &mut Criterion) {
    let events = workload();
    let routed: Vec<(Envelope, Route)> = events.iter().map(|e| (e.clone(), route(e))).collect();
    let mut g = c.benchmark_group("fold");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    g.bench_function(format!("aggregate_apply_{}_events", events.len()), |b| {
        b.iter_batched(|| (), |_| apply_only(&routed), BatchSize::PerIteration)
    });
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    let batch = 5000usize;
    g.bench_function(
        format!("engine_{}_events_batch_{batch}", events.len()),
        |b| b.iter_batched(|| (), |_| fold_all(&events, batch), BatchSize::PerIteration),
    );
    g.bench_function(
        format!("engine_warm_{}_events_batch_{batch}", events.len()),
        |b| {
            b.iter_batched(
                || (),
                |_| fold_retaining(&events, batch),
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

/// A busy SKU: `n` orders of it in one day, each followed by a stock report
/// (as a store sends after every sale), all in stock or all out of stock
/// since the day before.
fn busy_sku(n: i64, out_of_stock: bool) -> Vec<Envelope> {
    use storefold_core::event::{
        Attribution, InventoryUpdated, LineItem, OrderStatus, OrderTotals, OrderUpserted,
    };
    use storefold_core::{Identity, Money};
    use time::Duration;
    let usd = storefold_core::Currency::from_code("USD").expect("USD");
    let t0 = time::macros::datetime!(2026-02-15 00:00 UTC);
    let env = |id: String, at, event| Envelope {
        tenant: "acme".into(),
        provider: "shopify".into(),
        event_id: id,
        occurred_at: at,
        event,
    };
    let stock = |id: String, at, available| {
        env(
            id,
            at,
            Event::InventoryUpdated(InventoryUpdated {
                sku: "TEE".into(),
                item_id: None,
                unit_cost: None,
                available: Some(available),
                backorder: Some(true),
                eta: None,
                at,
            }),
        )
    };
    // The day before ends as the whole day goes: in stock, or out of it.
    let mut events = vec![stock(
        "s-1".into(),
        t0 - Duration::hours(1),
        if out_of_stock { 0 } else { 1_000_000 },
    )];
    for i in 0..n {
        let at = t0 + Duration::seconds(i * 80000 / n);
        let price = Money::new(3000, usd);
        events.push(env(
            format!("o{i}"),
            at,
            Event::OrderUpserted(Box::new(OrderUpserted {
                order_id: format!("shopify:{i}"),
                number: None,
                customer: Identity::default()
                    .with_email(Some(&format!("c{}@example.com", i % 300))),
                customer_name: None,
                status: OrderStatus::Open,
                financial_status: None,
                fulfillment_status: None,
                totals: OrderTotals {
                    total: price,
                    subtotal: None,
                    discounts: None,
                    shipping: None,
                    tax: None,
                    presentment_total: None,
                },
                line_items: vec![LineItem {
                    id: "l1".into(),
                    sku: Some("TEE".into()),
                    title: "Tee".into(),
                    quantity: 1,
                    unit_price: price,
                    total_discount: None,
                }],
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
                store_money: None,
            })),
        ));
        let after = at + Duration::seconds(1);
        events.push(stock(
            format!("s{i}"),
            after,
            if out_of_stock { 0 } else { 1_000_000 - i },
        ));
    }
    events
}

/// Stock reports of a busy SKU that stays in stock, or out of stock: neither
/// re-checks its orders (printed, never asserted). A SKU that runs out during
/// a day re-checks that day's orders with each report until the day ends.
fn bench_inventory(c: &mut Criterion) {
    let mut g = c.benchmark_group("inventory");
    g.sample_size(10);
    for (n, out) in [(1000, false), (1000, true), (4000, false), (4000, true)] {
        let events = busy_sku(n, out);
        g.throughput(Throughput::Elements(events.len() as u64));
        let name = if out { "out_of_stock" } else { "in_stock" };
        g.bench_function(format!("busy_sku_{n}_orders_{name}_batch_100"), |b| {
            b.iter_batched(|| (), |_| fold_all(&events, 100), BatchSize::PerIteration)
        });
    }
    g.finish();
}

criterion_group!(benches, bench_fold, bench_inventory);
criterion_main!(benches);
