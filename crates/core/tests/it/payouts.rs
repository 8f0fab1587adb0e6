//! Payouts: which orders' money each payout carried, the fees the payout
//! reports for payments whose events do not, and what keeps a payout from
//! reconciling; the same whatever order the reports arrive in. Every
//! expected figure is worked out by hand in the comments.

use std::collections::BTreeMap;

use storefold_core::engine::PayoutView;
use storefold_core::event::*;
use storefold_core::identity::Identity;
use storefold_core::ledger::{EntryKind, OrderFigures};
use storefold_core::money::{Currency, Money, MoneyBag};
use storefold_core::{Engine, Envelope, MemStore};
use time::OffsetDateTime;
use time::macros::datetime;

const PLACED: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

fn cur(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

fn m(minor: i64, code: &str) -> Money {
    Money::new(minor, cur(code))
}

fn bag(pairs: &[(&str, i64)]) -> MoneyBag {
    let mut b = MoneyBag::new();
    for (c, v) in pairs {
        b.add(m(*v, c));
    }
    b
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

fn pay_link(provider: &str, reference: &str) -> OrderLink {
    OrderLink::Payment {
        provider: provider.into(),
        reference: reference.into(),
    }
}

/// A store order of `total`, paid through `provider` under `reference`.
fn order(id: &str, email: &str, total: Money, provider: &str, reference: &str) -> Envelope {
    env(
        &format!("{id}:orders/create"),
        "shopify",
        PLACED,
        Event::OrderUpserted(Box::new(OrderUpserted {
            order_id: id.into(),
            number: None,
            customer: Identity::default().with_email(Some(email)),
            customer_name: None,
            status: OrderStatus::Open,
            financial_status: None,
            fulfillment_status: None,
            totals: OrderTotals {
                total,
                subtotal: None,
                discounts: None,
                shipping: None,
                tax: None,
                presentment_total: None,
            },
            line_items: vec![],
            discount_codes: vec![],
            payment_refs: vec![PaymentRef {
                provider: provider.into(),
                reference: reference.into(),
            }],
            tracking_numbers: vec![],
            attribution: Attribution::default(),
            cart_token: None,
            shipping_address: None,
            billing_address: None,
            note: None,
            tags: vec![],
            test: false,
            created_at: PLACED,
            updated_at: PLACED,
            cancelled_at: None,
            cancel_reason: None,
            store_money: None,
        })),
    )
}

/// A captured payment as the provider reports it, with its fee when known.
fn captured(
    id: &str,
    provider: &str,
    payment_id: &str,
    links: Vec<OrderLink>,
    amount: Money,
    fee: Option<Money>,
) -> Envelope {
    env(
        id,
        provider,
        PLACED,
        Event::PaymentSucceeded(Payment {
            provider: provider.into(),
            payment_id: payment_id.into(),
            links,
            status: PaymentStatus::Succeeded,
            amount,
            fee,
            net: fee.map(|f| Money::new(amount.minor - f.minor, amount.currency)),
            amount_refunded: None,
            method: None,
            failure_reason: None,
            payer: Identity::default(),
            at: PLACED,
            captured: Some(amount),
            capture_id: None,
            auto_capture: true,
        }),
    )
}

fn refund(id: &str, payment_id: &str, links: Vec<OrderLink>, amount: Money) -> Envelope {
    let at = datetime!(2026-03-03 12:00 UTC);
    env(
        id,
        "stripe",
        at,
        Event::RefundIssued(Refund {
            provider: "stripe".into(),
            refund_id: format!("re_{id}"),
            payment_id: Some(payment_id.into()),
            links,
            amount,
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

fn payout(provider: &str, payout_id: &str, amount: Money, status: PayoutStatus) -> Envelope {
    let at = datetime!(2026-03-06 02:00 UTC);
    env(
        &format!(
            "settlement:{provider}:payout:{payout_id}:{}",
            status.as_str()
        ),
        provider,
        at,
        Event::PayoutUpdated(PayoutUpdated {
            provider: provider.into(),
            payout_id: payout_id.into(),
            amount,
            status,
            arrival: Some(datetime!(2026-03-06 00:00 UTC)),
            failure: None,
            at,
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn payout_line(
    provider: &str,
    payout_id: &str,
    line_id: &str,
    kind: PayoutLineKind,
    links: Vec<OrderLink>,
    gross: Money,
    fee: Money,
    net: Money,
) -> Envelope {
    let at = datetime!(2026-03-04 00:00 UTC);
    env(
        &format!("settlement:{provider}:{line_id}"),
        provider,
        at,
        Event::PayoutLine(PayoutLine {
            provider: provider.into(),
            payout_id: payout_id.into(),
            line_id: line_id.into(),
            kind,
            links,
            gross,
            fee,
            net,
            at,
        }),
    )
}

struct Folded {
    figures: BTreeMap<String, OrderFigures>,
    /// (order/reference, kind, amount, counted)
    settlement_entries: Vec<(String, EntryKind, i64, bool)>,
    payouts: BTreeMap<String, PayoutView>,
}

/// Folds `events` one batch each, in the given order.
fn run(events: &[Envelope]) -> Folded {
    let mut store = MemStore::default();
    let mut published: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        let mut engine = Engine::new();
        engine.apply(&store, e).expect("fold");
        let out = engine.finish(&store);
        for p in &out.projections {
            if let storefold_core::engine::Projection::Payout { version, .. } = p {
                let prev = published.insert(p.key(), *version).unwrap_or(0);
                assert!(*version > prev, "a payout's version only grows");
            }
        }
        store.commit(out.changes);
    }
    let views = store.order_views();
    let mut settlement_entries = Vec::new();
    for (oid, v) in &views {
        for e in &v.ledger {
            if matches!(e.kind, EntryKind::Settled | EntryKind::SettlementFee) {
                settlement_entries.push((
                    format!("{oid}/{}", e.reference),
                    e.kind,
                    e.amount.minor,
                    e.counted,
                ));
            }
        }
    }
    settlement_entries.sort();
    Folded {
        figures: views.into_iter().map(|(k, v)| (k, v.figures)).collect(),
        settlement_entries,
        payouts: store.payout_views(),
    }
}

/// Every arrival order of the events gives what the written order gives.
fn in_any_order(events: &[Envelope]) -> Folded {
    let first = run(events);
    let mut idx: Vec<usize> = (0..events.len()).collect();
    let mut n = 0;
    permute(&mut idx, 0, &mut |p| {
        let evs: Vec<Envelope> = p.iter().map(|i| events[*i].clone()).collect();
        let other = run(&evs);
        assert_eq!(other.figures, first.figures, "arrival {p:?}: figures");
        assert_eq!(
            other.settlement_entries, first.settlement_entries,
            "arrival {p:?}: settlement entries"
        );
        assert_eq!(other.payouts, first.payouts, "arrival {p:?}: payouts");
        n += 1;
    });
    assert!(n > 1);
    // All in one batch, delivered twice.
    let mut store = MemStore::default();
    let mut engine = Engine::new();
    for e in events.iter().chain(events.iter()) {
        engine.apply(&store, e).expect("fold");
    }
    store.commit(engine.finish(&store).changes);
    assert_eq!(
        store.payout_views(),
        first.payouts,
        "one batch, redelivered"
    );
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

fn stripe_links() -> Vec<OrderLink> {
    vec![pay_link("stripe", "pi_A"), pay_link("stripe", "ch_A")]
}

/// Stripe: a 100.00 charge with its fee of 3.20 on the charge events, a
/// 30.00 refund, and the payout of 66.80 that carries both.
fn stripe_events() -> Vec<Envelope> {
    vec![
        order(
            "shopify:1001",
            "ann@example.com",
            m(10000, "USD"),
            "stripe",
            "ch_A",
        ),
        captured(
            "evt_charge",
            "stripe",
            "pi_A",
            stripe_links(),
            m(10000, "USD"),
            Some(m(320, "USD")),
        ),
        refund("evt_refund", "pi_A", stripe_links(), m(3000, "USD")),
        payout("stripe", "po_1", m(6680, "USD"), PayoutStatus::Paid),
        payout_line(
            "stripe",
            "po_1",
            "txn_charge",
            PayoutLineKind::Charge,
            stripe_links(),
            m(10000, "USD"),
            m(320, "USD"),
            m(9680, "USD"),
        ),
        payout_line(
            "stripe",
            "po_1",
            "txn_refund",
            PayoutLineKind::Refund,
            stripe_links(),
            m(-3000, "USD"),
            m(0, "USD"),
            m(-3000, "USD"),
        ),
    ]
}

#[test]
fn a_stripe_payout_carries_its_orders_net_and_the_fee_counts_once() {
    let f = in_any_order(&stripe_events());
    let o = &f.figures["shopify:1001"];
    // paid 100.00 − refunded 30.00 = 70.00; the fee 3.20 from the charge
    // events counts; the payout's report of the same fee does not count again.
    assert_eq!(o.net, bag(&[("USD", 7000)]));
    assert_eq!(o.fees, bag(&[("USD", 320)]));
    assert!(o.fees_known);
    assert_eq!(o.net_after_fees, Some(bag(&[("USD", 6680)])));
    // 96.80 − 30.00 = 66.80 arrived through po_1.
    assert_eq!(o.paid_out, bag(&[("USD", 6680)]));
    assert_eq!(o.payouts, vec!["stripe:po_1".to_string()]);
    assert_eq!(
        f.settlement_entries,
        vec![
            (
                "shopify:1001/txn_charge".into(),
                EntryKind::Settled,
                9680,
                false
            ),
            (
                "shopify:1001/txn_charge".into(),
                EntryKind::SettlementFee,
                320,
                false
            ),
            (
                "shopify:1001/txn_refund".into(),
                EntryKind::Settled,
                -3000,
                false
            ),
        ]
    );
    let p = &f.payouts["stripe:po_1"];
    assert_eq!(p.status, Some(PayoutStatus::Paid));
    assert_eq!(p.amount, Some(m(6680, "USD")));
    assert_eq!(p.net, bag(&[("USD", 6680)]));
    assert_eq!(p.fees, bag(&[("USD", 320)]));
    assert_eq!(p.gross, bag(&[("USD", 7000)]));
    assert_eq!(p.difference, Some(m(0, "USD")));
    assert_eq!(p.orders.len(), 1);
    assert_eq!(p.orders[0].order_id, "shopify:1001");
    // The payout's total is the order's net after fees.
    assert_eq!(Some(p.orders[0].net.clone()), o.net_after_fees);
    assert!(p.reconciled, "{:?}", p.unreconciled);
    assert!(p.unreconciled.is_empty());
    assert!(
        p.lines
            .iter()
            .all(|l| l.order_id.as_deref() == Some("shopify:1001"))
    );
}

/// Adyen: the notifications carry no fee. The settlement batch reports the
/// 50.00 capture with 1.35 of fees (net 48.65) and a 2.00 fee of no order;
/// the payout is 46.65.
fn adyen_events() -> Vec<Envelope> {
    let links = vec![pay_link("adyen", "PSP_B")];
    vec![
        order(
            "shopify:1002",
            "bo@example.com",
            m(5000, "EUR"),
            "adyen",
            "PSP_B",
        ),
        captured(
            "adyen:PSP_B:AUTHORISATION",
            "adyen",
            "PSP_B",
            links.clone(),
            m(5000, "EUR"),
            None,
        ),
        payout("adyen", "Acme_EUR:7", m(4665, "EUR"), PayoutStatus::Paid),
        payout_line(
            "adyen",
            "Acme_EUR:7",
            "PSP_B:Settled:MOD_B",
            PayoutLineKind::Charge,
            links,
            m(5000, "EUR"),
            m(135, "EUR"),
            m(4865, "EUR"),
        ),
        payout_line(
            "adyen",
            "Acme_EUR:7",
            "FEE_1:Fee:",
            PayoutLineKind::Fee,
            vec![],
            m(0, "EUR"),
            m(200, "EUR"),
            m(-200, "EUR"),
        ),
    ]
}

#[test]
fn an_adyen_settlement_gives_the_orders_their_fees() {
    let f = in_any_order(&adyen_events());
    let o = &f.figures["shopify:1002"];
    // The 1.35 only the settlement reports counts: net after fees 48.65.
    assert_eq!(o.fees, bag(&[("EUR", 135)]));
    assert!(o.fees_known);
    assert_eq!(o.net_after_fees, Some(bag(&[("EUR", 4865)])));
    assert_eq!(o.paid_out, bag(&[("EUR", 4865)]));
    let p = &f.payouts["adyen:Acme_EUR:7"];
    // 48.65 − 2.00 = 46.65: the lines add up to the payout.
    assert_eq!(p.net, bag(&[("EUR", 4665)]));
    assert_eq!(p.difference, Some(m(0, "EUR")));
    assert!(p.reconciled, "{:?}", p.unreconciled);
    assert_eq!(p.orders.len(), 1);
    let fee = p
        .lines
        .iter()
        .find(|l| l.kind == PayoutLineKind::Fee)
        .unwrap();
    assert_eq!(fee.order_id, None);
}

#[test]
fn without_its_fee_line_an_order_has_no_known_fee() {
    // Without the settlement, nothing reports the Adyen fee: unknown, not zero.
    let events: Vec<Envelope> = adyen_events().into_iter().take(2).collect();
    let f = run(&events);
    let o = &f.figures["shopify:1002"];
    assert!(!o.fees_known);
    assert_eq!(o.net_after_fees, None);
    assert!(o.paid_out.is_empty());
}

#[test]
fn what_keeps_a_payout_from_reconciling_is_listed() {
    let mut events = stripe_events();
    // The refund's line is missing: 96.80 of lines against a 66.80 payout.
    events.retain(|e| e.event_id != "settlement:stripe:txn_refund");
    // A charge of a payment no order is known for.
    events.push(payout_line(
        "stripe",
        "po_1",
        "txn_stranger",
        PayoutLineKind::Charge,
        vec![pay_link("stripe", "ch_Z")],
        m(1000, "USD"),
        m(59, "USD"),
        m(941, "USD"),
    ));
    let f = run(&events);
    let p = &f.payouts["stripe:po_1"];
    assert!(!p.reconciled);
    // 66.80 − (96.80 + 9.41) = −39.41.
    assert_eq!(p.difference, Some(m(-3941, "USD")));
    let reasons: Vec<(&str, Option<&str>, Option<i64>)> = p
        .unreconciled
        .iter()
        .map(|u| {
            (
                u.reason.as_str(),
                u.line_id.as_deref(),
                u.amount.map(|a| a.minor),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("order_unknown", Some("txn_stranger"), Some(941)),
            ("amount_differs", None, Some(-3941)),
        ]
    );
    // Lines alone: the payout's amount is unknown.
    let f = run(&events[4..]);
    let p = &f.payouts["stripe:po_1"];
    assert_eq!(p.status, None);
    assert_eq!(p.unreconciled[0].reason, "no_payout_report");
    // A failed payout says so.
    let mut events = stripe_events();
    events.push(payout(
        "stripe",
        "po_1",
        m(6680, "USD"),
        PayoutStatus::Failed,
    ));
    let f = run(&events);
    let p = &f.payouts["stripe:po_1"];
    assert_eq!(p.status, Some(PayoutStatus::Failed));
    assert_eq!(p.unreconciled[0].reason, "payout_failed");
    assert!(!p.reconciled);
}

#[test]
fn a_line_that_arrives_before_its_order_is_placed_when_the_order_comes() {
    let events = stripe_events();
    // Lines first, in their own batches; then the rest.
    let mut store = MemStore::default();
    for e in events[3..].iter().chain(events[..3].iter()) {
        let mut engine = Engine::new();
        engine.apply(&store, e).expect("fold");
        store.commit(engine.finish(&store).changes);
    }
    let p = &store.payout_views()["stripe:po_1"];
    assert!(p.reconciled, "{:?}", p.unreconciled);
    assert_eq!(
        store.order_views()["shopify:1001"].figures.paid_out,
        bag(&[("USD", 6680)])
    );
}
