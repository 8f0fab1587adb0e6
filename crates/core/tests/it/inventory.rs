//! Cost of goods and gross margin: each order line at the unit cost in force
//! at the order's time, whatever order the costs and the order arrive in.
//! Every expected figure is worked out by hand in the comments.

use std::collections::BTreeMap;
use std::sync::Arc;

use storefold_core::aggregate::{Backorder, CurrencyRevenue};
use storefold_core::engine::FoldConfig;
use storefold_core::event::*;
use storefold_core::identity::Identity;
use storefold_core::ledger::{EntryKind, OrderFigures};
use storefold_core::money::{Currency, Money, MoneyBag};
use storefold_core::rates::Rates;
use storefold_core::{Engine, Envelope, MemStore};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The order is placed on 15 February.
const PLACED: OffsetDateTime = datetime!(2026-02-15 10:00 UTC);

fn cur(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, cur("USD"))
}

fn env(id: &str, provider: &str, at: OffsetDateTime, event: Event) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        provider: provider.into(),
        event_id: id.into(),
        occurred_at: at,
        event,
    }
}

fn line(id: &str, sku: Option<&str>, quantity: i64, price: i64) -> LineItem {
    LineItem {
        id: id.into(),
        sku: sku.map(str::to_string),
        title: format!("item {id}"),
        quantity,
        unit_price: usd(price),
        total_discount: None,
    }
}

fn order(id: &str, at: OffsetDateTime, status: OrderStatus, lines: Vec<LineItem>) -> Envelope {
    env(
        &format!("{id}@{}", status as u8),
        "shopify",
        at,
        Event::OrderUpserted(Box::new(OrderUpserted {
            order_id: id.into(),
            number: None,
            customer: Identity::default().with_email(Some("ann@example.com")),
            customer_name: None,
            status,
            financial_status: None,
            fulfillment_status: None,
            totals: OrderTotals {
                total: usd(lines.iter().map(|l| l.unit_price.minor * l.quantity).sum()),
                subtotal: None,
                discounts: None,
                shipping: None,
                tax: None,
                presentment_total: None,
            },
            line_items: lines,
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
            updated_at: at + Duration::minutes(status as i64),
            cancelled_at: None,
            cancel_reason: None,
            store_money: None,
        })),
    )
}

/// The start of a day, UTC.
fn midnight(year: i32, month: time::Month, day: u8) -> OffsetDateTime {
    OffsetDateTime::new_utc(
        time::Date::from_calendar_date(year, month, day).unwrap(),
        time::Time::MIDNIGHT,
    )
}

/// An order of one TEE at 30.00.
fn tee_order(id: &str, at: OffsetDateTime, status: OrderStatus) -> Envelope {
    order(id, at, status, vec![line("l1", Some("TEE"), 1, 3000)])
}

fn link(order_id: &str) -> Vec<OrderLink> {
    vec![OrderLink::Order {
        order_id: order_id.into(),
    }]
}

fn captured(id: &str, order_id: &str, amount: i64, at: OffsetDateTime) -> Envelope {
    env(
        id,
        "stripe",
        at,
        Event::PaymentSucceeded(Payment {
            provider: "stripe".into(),
            payment_id: format!("pi_{id}"),
            links: link(order_id),
            status: PaymentStatus::Succeeded,
            amount: usd(amount),
            fee: None,
            net: None,
            amount_refunded: None,
            method: None,
            failure_reason: None,
            payer: Identity::default(),
            at,
            captured: Some(usd(amount)),
            capture_id: None,
            auto_capture: false,
        }),
    )
}

/// The store's refund of `amount`, putting `restocked` units of line `l1` back.
fn store_refund(
    id: &str,
    order_id: &str,
    amount: i64,
    restocked: i64,
    at: OffsetDateTime,
) -> Envelope {
    env(
        id,
        "shopify",
        at,
        Event::RefundIssued(Refund {
            provider: "shopify".into(),
            refund_id: id.into(),
            payment_id: None,
            links: link(order_id),
            amount: usd(amount),
            status: RefundStatus::Succeeded,
            reason: None,
            lines: vec![RefundLine {
                line_item_id: "l1".into(),
                quantity: restocked,
                amount: Some(usd(amount)),
                restock: true,
            }],
            adjustments: None,
            created_at: None,
            gateway: Some("stripe".into()),
            at,
        }),
    )
}

/// The refund as Stripe reports it (the money).
fn provider_refund(
    id: &str,
    order_id: &str,
    pay: &str,
    amount: i64,
    at: OffsetDateTime,
) -> Envelope {
    env(
        id,
        "stripe",
        at,
        Event::RefundIssued(Refund {
            provider: "stripe".into(),
            refund_id: format!("re_{id}"),
            payment_id: Some(format!("pi_{pay}")),
            links: link(order_id),
            amount: usd(amount),
            status: RefundStatus::Succeeded,
            reason: None,
            lines: vec![],
            adjustments: None,
            created_at: None,
            gateway: None,
            at,
        }),
    )
}

fn cost(id: &str, provider: &str, sku: &str, unit: Money, from: OffsetDateTime) -> Envelope {
    env(
        id,
        provider,
        from,
        Event::InventoryUpdated(InventoryUpdated {
            sku: sku.into(),
            item_id: None,
            unit_cost: Some(unit),
            available: None,
            backorder: None,
            eta: None,
            at: from,
        }),
    )
}

struct Folded {
    figures: BTreeMap<String, OrderFigures>,
    cogs_lines: Vec<(String, EntryKind, i64, bool)>,
    revenue: Vec<CurrencyRevenue>,
}

/// Folds `events` one batch each, in the given order.
fn run(events: &[Envelope], config: &Arc<FoldConfig>) -> Folded {
    let mut store = MemStore::default();
    for e in events {
        let mut engine = Engine::with_config(config.clone());
        engine.apply(&store, e).expect("fold");
        let out = engine.finish(&store);
        store.commit(out.changes);
    }
    let views = store.order_views_with(config);
    let mut cogs_lines = Vec::new();
    for (oid, v) in &views {
        for e in &v.ledger {
            if matches!(e.kind, EntryKind::CostOfGoods | EntryKind::Restocked) {
                cogs_lines.push((
                    format!("{oid}/{}", e.reference),
                    e.kind,
                    e.amount.minor,
                    e.counted,
                ));
            }
        }
    }
    cogs_lines.sort();
    let customers = store.customers();
    assert_eq!(customers.len(), 1, "one shopper");
    let revenue = customers.into_values().next().unwrap().revenue;
    Folded {
        figures: views.into_iter().map(|(k, v)| (k, v.figures)).collect(),
        cogs_lines,
        revenue,
    }
}

/// Every arrival order of up to 7 events (5040), else reversals and rotations;
/// also all in one batch. Returns what the written order gives.
fn in_any_order(events: &[Envelope], config: Arc<FoldConfig>) -> Folded {
    let first = run(events, &config);
    let same = |other: &Folded, how: &str| {
        assert_eq!(other.figures, first.figures, "{how}: figures changed");
        assert_eq!(
            other.cogs_lines, first.cogs_lines,
            "{how}: cost lines changed"
        );
        assert_eq!(
            other.revenue, first.revenue,
            "{how}: customer revenue changed"
        );
    };
    let mut idx: Vec<usize> = (0..events.len()).collect();
    let mut n = 0;
    permute(&mut idx, 0, &mut |p| {
        let evs: Vec<Envelope> = p.iter().map(|i| events[*i].clone()).collect();
        same(&run(&evs, &config), &format!("arrival {p:?}"));
        n += 1;
    });
    assert!(n > 1);
    // One batch, twice over (a redelivery).
    let mut store = MemStore::default();
    let mut engine = Engine::with_config(config.clone());
    for e in events.iter().chain(events.iter()) {
        engine.apply(&store, e).expect("fold");
    }
    store.commit(engine.finish(&store).changes);
    let views = store.order_views_with(&config);
    for (oid, f) in &first.figures {
        assert_eq!(&views[oid].figures, f, "one batch with redeliveries: {oid}");
    }
    first
}

fn permute(idx: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
    if k == idx.len() {
        f(idx);
        return;
    }
    for i in k..idx.len() {
        idx.swap(k, i);
        permute(idx, k + 1, f);
        idx.swap(k, i);
    }
}

fn bag(pairs: &[(&str, i64)]) -> MoneyBag {
    let mut b = MoneyBag::new();
    for (c, m) in pairs {
        b.add(Money::new(*m, cur(c)));
    }
    b
}

#[test]
fn each_line_costs_what_was_in_force_when_the_order_was_placed_whatever_arrives_first() {
    // SKU TEE costs 10.00 from 1 January, 11.00 from 1 February (an ERP line
    // that may arrive last) and 12.00 from 1 March; MUG costs 5.00 from 1
    // January. The order of 15 February: 2 TEE at 30.00, 1 MUG at 8.00 = 68.00,
    // captured in full; one TEE is refunded (30.00) and goes back to stock.
    let events = vec![
        order(
            "shopify:1",
            PLACED,
            OrderStatus::Open,
            vec![
                line("l1", Some("TEE"), 2, 3000),
                line("l2", Some("MUG"), 1, 800),
            ],
        ),
        captured("pay1", "shopify:1", 6800, PLACED + Duration::minutes(1)),
        store_refund("r1", "shopify:1", 3000, 1, PLACED + Duration::days(3)),
        provider_refund("r1s", "shopify:1", "pay1", 3000, PLACED + Duration::days(3)),
        cost(
            "c1",
            "erp",
            "TEE",
            usd(1000),
            datetime!(2026-01-01 0:00 UTC),
        ),
        cost(
            "c2",
            "erp",
            "TEE",
            usd(1100),
            datetime!(2026-02-01 0:00 UTC),
        ),
        cost(
            "c3",
            "shopify",
            "TEE",
            usd(1200),
            datetime!(2026-03-01 0:00 UTC),
        ),
    ];
    let mut events = events;
    // The MUG's cost comes with the order's batch in every ordering: it is
    // the 8th event, folded right after the order.
    let mug = cost("c4", "erp", "MUG", usd(500), datetime!(2026-01-01 0:00 UTC));
    let f = in_any_order(&events, Arc::new(FoldConfig::default()));
    // Without the MUG's cost the margin is unknown, not a guess.
    let fig = &f.figures["shopify:1"];
    assert_eq!(fig.cogs_unknown, vec!["MUG".to_string()]);
    assert!(!fig.cogs_known);
    assert_eq!(fig.gross_margin, None);
    assert_eq!(f.revenue[0].gross_margin, None);

    events.push(mug);
    let f = run(&events, &Arc::new(FoldConfig::default()));
    let mut rev = events.clone();
    rev.reverse();
    let r = run(&rev, &Arc::new(FoldConfig::default()));
    assert_eq!(r.figures, f.figures);
    let fig = &f.figures["shopify:1"];
    // COGS: 2 × 11.00 + 1 × 5.00 − 1 × 11.00 back in stock = 16.00.
    assert_eq!(fig.cogs, bag(&[("USD", 1600)]));
    assert!(fig.cogs_known);
    assert!(fig.cogs_unknown.is_empty());
    // Net: 68.00 − 30.00 = 38.00; margin 38.00 − 16.00 = 22.00.
    assert_eq!(fig.net, bag(&[("USD", 3800)]));
    assert_eq!(fig.gross_margin, Some(bag(&[("USD", 2200)])));
    assert_eq!(
        f.cogs_lines,
        vec![
            ("shopify:1/MUG".into(), EntryKind::CostOfGoods, 500, true),
            ("shopify:1/TEE".into(), EntryKind::CostOfGoods, 2200, true),
            ("shopify:1/TEE".into(), EntryKind::Restocked, 1100, true),
        ]
    );
    let usd_rev = &f.revenue[0];
    assert_eq!((usd_rev.gross, usd_rev.net), (6800, 3800));
    assert_eq!((usd_rev.cogs, usd_rev.gross_margin), (1600, Some(2200)));
}

#[test]
fn a_late_cost_reaches_only_the_orders_placed_while_it_holds() {
    // TEE: 10.00 from 1 January, 12.00 from 1 March. Orders on 15 February
    // (1 TEE), on 1 March (1 TEE, placed at 10:00, after the change at
    // midnight) and on 10 March (1 TEE), each paid 30.00. A cost of 11.00
    // from 1 February, arriving in any position, reaches the first order only.
    let march1 = datetime!(2026-03-01 10:00 UTC);
    let march10 = datetime!(2026-03-10 10:00 UTC);
    let events = vec![
        tee_order("shopify:1", PLACED, OrderStatus::Open),
        tee_order("shopify:2", march1, OrderStatus::Open),
        tee_order("shopify:3", march10, OrderStatus::Open),
        captured("p1", "shopify:1", 3000, PLACED),
        captured("p2", "shopify:2", 3000, march1),
        captured("p3", "shopify:3", 3000, march10),
        cost(
            "c1",
            "erp",
            "TEE",
            usd(1000),
            datetime!(2026-01-01 0:00 UTC),
        ),
        cost(
            "c3",
            "erp",
            "TEE",
            usd(1200),
            datetime!(2026-03-01 0:00 UTC),
        ),
    ];
    let late = cost(
        "c2",
        "erp",
        "TEE",
        usd(1100),
        datetime!(2026-02-01 0:00 UTC),
    );
    let config = Arc::new(FoldConfig::default());
    for pos in 0..=events.len() {
        let mut evs = events.clone();
        evs.insert(pos, late.clone());
        let f = run(&evs, &config);
        let cogs = |o: &str| f.figures[o].cogs.get(cur("USD"));
        assert_eq!(
            (cogs("shopify:1"), cogs("shopify:2"), cogs("shopify:3")),
            (1100, 1200, 1200),
            "the 1 February cost folded at position {pos}"
        );
        // Margins 19.00 + 18.00 + 18.00; the customer's is their sum.
        assert_eq!(f.revenue[0].gross_margin, Some(5500), "position {pos}");
    }
}

#[test]
fn costs_count_only_for_paid_orders_that_stand() {
    // An unpaid order and a cancelled one list their costs but count none.
    let events = vec![
        tee_order("shopify:1", PLACED, OrderStatus::Pending),
        order(
            "shopify:2",
            PLACED + Duration::hours(1),
            OrderStatus::Cancelled,
            vec![line("l1", Some("TEE"), 3, 3000)],
        ),
        captured("p2", "shopify:2", 9000, PLACED + Duration::hours(1)),
        provider_refund("r2", "shopify:2", "p2", 9000, PLACED + Duration::hours(2)),
        cost(
            "c1",
            "erp",
            "TEE",
            usd(1000),
            datetime!(2026-01-01 0:00 UTC),
        ),
    ];
    let f = in_any_order(&events, Arc::new(FoldConfig::default()));
    for o in ["shopify:1", "shopify:2"] {
        let fig = &f.figures[o];
        assert!(fig.cogs.is_empty(), "{o}: {:?}", fig.cogs);
        assert!(!fig.cogs_known, "{o}");
        assert_eq!(fig.gross_margin, None, "{o}");
    }
    assert_eq!(
        f.cogs_lines,
        vec![
            ("shopify:1/TEE".into(), EntryKind::CostOfGoods, 1000, false),
            ("shopify:2/TEE".into(), EntryKind::CostOfGoods, 3000, false),
        ]
    );
}

#[test]
fn a_line_without_a_sku_leaves_the_margin_unknown_and_says_which() {
    let events = vec![
        order(
            "shopify:1",
            PLACED,
            OrderStatus::Open,
            vec![line("l1", Some("TEE"), 1, 3000), line("l9", None, 1, 500)],
        ),
        captured("p1", "shopify:1", 3500, PLACED),
        cost(
            "c1",
            "erp",
            "TEE",
            usd(1000),
            datetime!(2026-01-01 0:00 UTC),
        ),
    ];
    let f = in_any_order(&events, Arc::new(FoldConfig::default()));
    let fig = &f.figures["shopify:1"];
    assert_eq!(fig.cogs, bag(&[("USD", 1000)]));
    assert_eq!(fig.cogs_unknown, vec!["line:l9".to_string()]);
    assert_eq!(fig.gross_margin, None);
}

#[test]
fn a_cost_in_another_currency_has_a_margin_only_in_the_reporting_currency() {
    // The shop sells in USD; the ERP keeps costs in EUR. 1 TEE at 30.00 USD
    // costs 10.00 EUR. With EUR as the reporting currency and 1 EUR = 1.25 USD
    // on the order's day: net 30.00 USD = 24.00 EUR, margin 24.00 − 10.00 =
    // 14.00 EUR.
    let rates = Rates::parse_csv("2026-02-15,EUR,USD,1.25\n", 0).unwrap();
    let config = Arc::new(FoldConfig {
        reporting: BTreeMap::from([("acme".to_string(), cur("EUR"))]),
        rates,
        ..FoldConfig::default()
    });
    let events = vec![
        tee_order("shopify:1", PLACED, OrderStatus::Open),
        captured("p1", "shopify:1", 3000, PLACED),
        cost(
            "c1",
            "erp",
            "TEE",
            Money::new(1000, cur("EUR")),
            datetime!(2026-01-01 0:00 UTC),
        ),
    ];
    let f = in_any_order(&events, config);
    let fig = &f.figures["shopify:1"];
    assert_eq!(fig.cogs, bag(&[("EUR", 1000)]));
    assert!(fig.cogs_known);
    assert_eq!(
        fig.gross_margin, None,
        "USD net less EUR costs is no figure"
    );
    let r = fig.reporting.as_ref().expect("reporting");
    assert_eq!((r.net, r.cogs, r.gross_margin), (2400, 1000, Some(1400)));
}

#[test]
fn generated_histories_with_cost_reports_cost_their_orders() {
    // The property test of `fold.rs` folds histories with cost reports in
    // random arrival orders; this checks that such histories do cost orders,
    // with the cost in force at each order's time.
    let spec = storefold_scenario::ScenarioSpec {
        customers: 5,
        cost_reports: 4,
        ..storefold_scenario::ScenarioSpec::default()
    };
    let config = Arc::new(FoldConfig::default());
    let mut costed = 0;
    let (mut backordered, mut delayed) = (0, 0);
    for seed in 0..20u64 {
        let events = storefold_scenario::generate(seed, &spec);
        let mut reports: Vec<(OffsetDateTime, String, Money)> = events
            .iter()
            .filter_map(|e| match &e.event {
                Event::InventoryUpdated(i) => {
                    Some((i.at, e.event_id.clone(), i.unit_cost.expect("a cost")))
                }
                _ => None,
            })
            .collect();
        reports.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut store = MemStore::default();
        for e in events.iter().rev() {
            let mut engine = Engine::with_config(config.clone());
            let _ = engine.apply(&store, e);
            store.commit(engine.finish(&store).changes);
        }
        for (oid, v) in store.order_views_with(&config) {
            let Some(snapshot) = &v.order.snapshot else {
                continue;
            };
            // The newest report not after the order (the greatest event id
            // among reports at one time).
            let expect = reports
                .iter()
                .rev()
                .find(|r| r.0 <= snapshot.value.created_at)
                .map(|r| r.2);
            let got = v.order.costs.get("SKU-1").map(|c| c.unit_cost);
            assert_eq!(got, expect, "seed {seed}, {oid}");
            costed += usize::from(got.is_some());
            backordered += v.order.backorders.len();
            delayed += v
                .order
                .backorders
                .values()
                .map(|b| b.delays.len())
                .sum::<usize>();
        }
    }
    assert!(costed > 10, "only {costed} orders costed");
    // Stock reports make some of them backorders, some delayed.
    assert!(
        backordered > 3 && delayed > 0,
        "{backordered} backordered, {delayed} delays"
    );
}

fn stock(
    id: &str,
    sku: &str,
    available: i64,
    eta: Option<OffsetDateTime>,
    at: OffsetDateTime,
) -> Envelope {
    env(
        id,
        "erp",
        at,
        Event::InventoryUpdated(InventoryUpdated {
            sku: sku.into(),
            item_id: None,
            unit_cost: None,
            available: Some(available),
            backorder: Some(true),
            eta,
            at,
        }),
    )
}

fn eta_report(id: &str, sku: &str, eta: OffsetDateTime, at: OffsetDateTime) -> Envelope {
    env(
        id,
        "erp",
        at,
        Event::InventoryUpdated(InventoryUpdated {
            sku: sku.into(),
            item_id: None,
            unit_cost: None,
            available: None,
            backorder: None,
            eta: Some(eta),
            at,
        }),
    )
}

/// A store fulfillment of line `l1` of `order_id`, out at `at`.
fn shipped(id: &str, order_id: &str, at: OffsetDateTime) -> Envelope {
    env(
        id,
        "shopify",
        at,
        Event::ShipmentUpdated(Shipment {
            provider: "shopify".into(),
            tracking_number: format!("1Z{id}"),
            carrier: Some("UPS".into()),
            links: link(order_id),
            fulfillment_id: Some(format!("f-{id}")),
            status: ShipmentStatus::InTransit,
            checkpoints: vec![Checkpoint {
                at,
                status: ShipmentStatus::InTransit,
                message: None,
                location: None,
            }],
            line_item_ids: vec!["l1".into()],
            estimated_delivery: None,
            at,
        }),
    )
}

/// An order's backorders, by SKU.
type Backorders = BTreeMap<String, Backorder>;
/// `backorder_delayed` triggers: id → (order, data).
type Told = BTreeMap<String, (String, serde_json::Value)>;

/// Folds `events` in the given order, one batch each; the backorders of each
/// order and every `backorder_delayed` trigger.
fn backorders_of(events: &[Envelope]) -> (BTreeMap<String, Backorders>, Told) {
    let config = Arc::new(FoldConfig::default());
    let mut store = MemStore::default();
    let mut triggers = BTreeMap::new();
    for e in events {
        let mut engine = Engine::with_config(config.clone());
        engine.apply(&store, e).expect("fold");
        let out = engine.finish(&store);
        for t in out
            .triggers
            .iter()
            .filter(|t| t.kind == "backorder_delayed")
        {
            triggers.insert(
                t.trigger_id.clone(),
                (t.order_id.clone().unwrap_or_default(), t.data.clone()),
            );
        }
        store.commit(out.changes);
    }
    let orders = store
        .order_views_with(&config)
        .into_iter()
        .map(|(k, v)| (k, v.order.backorders.clone()))
        .collect();
    (orders, triggers)
}

#[test]
fn a_line_placed_out_of_stock_carries_its_promise_and_each_later_eta_past_it_is_a_trigger() {
    // 1 Feb: TEE out of stock, expected 1 March. 15 Feb: order 1 (a TEE).
    // 16 Feb: order 2 (a MUG, in stock). 20 Feb: the ETA moves to 10 March
    // (past the promise: delayed); 25 Feb: to 5 March (still past it: delayed
    // again); 27 Feb: the same 5 March again (the same fact, no new trigger).
    // 12 March: TEE back in stock; order 3 that day is not a backorder.
    let day = |d: u8, m: time::Month| midnight(2026, m, d);
    use time::Month::{February, March};
    let events = vec![
        stock("s1", "TEE", 0, Some(day(1, March)), day(1, February)),
        stock("s2", "MUG", 5, None, day(1, February)),
        tee_order("shopify:1", PLACED, OrderStatus::Open),
        order(
            "shopify:2",
            PLACED + Duration::days(1),
            OrderStatus::Open,
            vec![line("l1", Some("MUG"), 1, 800)],
        ),
        eta_report("e1", "TEE", day(10, March), day(20, February)),
        eta_report("e2", "TEE", day(5, March), day(25, February)),
        eta_report("e3", "TEE", day(5, March), day(27, February)),
        stock("s3", "TEE", 30, None, day(12, March)),
        order(
            "shopify:3",
            day(12, March) + Duration::hours(9),
            OrderStatus::Open,
            vec![line("l1", Some("TEE"), 1, 3000)],
        ),
    ];
    let (orders, triggers) = backorders_of(&events);
    let b = &orders["shopify:1"]["TEE"];
    assert_eq!(b.promised, Some(day(1, March)));
    assert_eq!(
        b.eta,
        Some(day(5, March)),
        "the newest report since the order"
    );
    assert_eq!(
        b.delays.iter().map(|d| (d.at, d.eta)).collect::<Vec<_>>(),
        vec![
            (day(20, February), day(10, March)),
            (day(25, February), day(5, March)),
            (day(27, February), day(5, March)),
        ]
    );
    assert!(orders["shopify:2"].is_empty(), "the MUG was in stock");
    assert!(orders["shopify:3"].is_empty(), "TEE was back in stock");
    let mut etas: Vec<(String, String)> = triggers
        .values()
        .map(|(o, d)| (o.clone(), d["eta"].as_str().unwrap().to_string()))
        .collect();
    etas.sort();
    assert_eq!(
        etas,
        vec![
            ("shopify:1".to_string(), "2026-03-05T00:00:00Z".to_string()),
            ("shopify:1".to_string(), "2026-03-10T00:00:00Z".to_string()),
        ]
    );
    for (_, data) in triggers.values() {
        assert_eq!(data["promised"], "2026-03-01T00:00:00Z");
        assert_eq!(data["sku"], "TEE");
    }
    // Any arrival order: the same backorders and the same triggers.
    let mut idx: Vec<usize> = (0..events.len()).collect();
    let mut rng = 0x5eed_u64;
    for round in 0..300 {
        for i in (1..idx.len()).rev() {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            idx.swap(i, (rng >> 33) as usize % (i + 1));
        }
        let evs: Vec<Envelope> = idx.iter().map(|i| events[*i].clone()).collect();
        let (o, t) = backorders_of(&evs);
        assert_eq!(o, orders, "round {round}: arrival {idx:?}");
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            triggers.keys().collect::<Vec<_>>(),
            "round {round}: arrival {idx:?}"
        );
    }
}

#[test]
fn no_delay_is_told_once_the_line_went_out_or_for_a_cancelled_order() {
    // As above, but the TEE of order 1 ships on 22 Feb: the 20 Feb delay is
    // told, the 25 Feb one is not. Order 4, placed out of stock too, is
    // cancelled: none of its delays is told.
    let feb = |d: u8| midnight(2026, time::Month::February, d);
    let mar = |d: u8| midnight(2026, time::Month::March, d);
    let events = vec![
        stock("s1", "TEE", 0, Some(mar(1)), feb(1)),
        tee_order("shopify:1", PLACED, OrderStatus::Open),
        tee_order("shopify:4", PLACED, OrderStatus::Cancelled),
        eta_report("e1", "TEE", mar(10), feb(20)),
        shipped("f1", "shopify:1", feb(22)),
        eta_report("e2", "TEE", mar(12), feb(25)),
    ];
    // In the order things happened: only the delay before the shipment.
    let (orders, triggers) = backorders_of(&events);
    assert_eq!(
        orders["shopify:4"]["TEE"].delays.len(),
        2,
        "kept on the order"
    );
    let told = |t: &Told| -> Vec<(String, String)> {
        t.values()
            .map(|(o, d)| (o.clone(), d["eta"].as_str().unwrap().to_string()))
            .collect()
    };
    let expected = vec![("shopify:1".to_string(), "2026-03-10T00:00:00Z".to_string())];
    assert_eq!(told(&triggers), expected);
    // In any other order the orders end the same. A shipment that arrives
    // after a later delay report cannot take back the trigger that report
    // already published, so the triggers may be more, never fewer.
    for rotation in 1..events.len() {
        let mut evs = events.clone();
        evs.rotate_left(rotation);
        let (o, t) = backorders_of(&evs);
        assert_eq!(o, orders, "rotation {rotation}");
        let got = told(&t);
        assert!(
            expected.iter().all(|e| got.contains(e)),
            "rotation {rotation}: {got:?}"
        );
        assert!(
            got.iter().all(|(o, _)| o == "shopify:1"),
            "never for the cancelled order: {got:?}"
        );
    }
}
