//! Payouts on a journey of the library: Adyen's settlement details report of
//! the batch that paid out the `shopify_adyen` journey's money, folded with
//! the journey's own webhooks through the real mappers, in any arrival order.
//!
//! The report (`data/settlements/shopify_adyen_batch_112.csv`, written for
//! this test in the layout of Adyen's settlement details report) settles the
//! journey's two captures, its refund, its chargeback and the chargeback's
//! reversal in batch 112 of the merchant account `AcmeOutfittersEU`:
//!
//! | record | gross | fees (commission + markup + scheme + interchange) | net |
//! |---|---|---|---|
//! | Settled CP1A… | +120.00 | 0.13 + 0 + 0.05 + 0.72 = 0.90 | +119.10 |
//! | Settled CP2H… | +80.00 | 0.13 + 0 + 0.04 + 0.43 = 0.60 | +79.40 |
//! | Refunded RF9Q… | −50.00 | 0 | −50.00 |
//! | Chargeback DS5V… | −150.00 | 15.00 | −165.00 |
//! | ChargebackReversed DS5V… | +150.00 | 0 | +150.00 |
//! | MerchantPayout | | | 133.50 to the bank |
//!
//! By hand: 119.10 + 79.40 − 50.00 − 165.00 + 150.00 = 133.50, the payout.
//! Adyen's notifications carry no fee, so every fee of the report counts on
//! the order: 0.90 + 0.60 + 15.00 = 16.50. The order's net (the journey's
//! expectation) is 200.00 − 50.00 = 150.00, so its net after fees is
//! 150.00 − 16.50 = 133.50: the payout carries exactly the order's net.

use std::collections::BTreeMap;
use std::path::PathBuf;

use storefold_core::engine::PayoutView;
use storefold_core::event::PayoutStatus;
use storefold_core::ledger::{EntryKind, OrderFigures};
use storefold_core::money::Currency;
use storefold_core::{Envelope, Money, MoneyBag};
use storefold_journeys::run::Arrival;
use storefold_journeys::{Rng, journey, map_raw};
use storefold_providers::ProviderKind;
use time::macros::datetime;

const ORDER: &str = "shopify:5801006001";
const PAYOUT: &str = "adyen:AcmeOutfittersEU:112";

fn eur(minor: i64) -> MoneyBag {
    let mut b = MoneyBag::new();
    b.add(Money::new(minor, Currency::from_code("EUR").unwrap()));
    b
}

fn usd(minor: i64) -> MoneyBag {
    let mut b = MoneyBag::new();
    b.add(Money::new(minor, Currency::from_code("USD").unwrap()));
    b
}

/// A file of `data/settlements/`.
fn settlement_file(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/settlements")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn report() -> Vec<u8> {
    settlement_file("shopify_adyen_batch_112.csv")
}

/// The journey's webhooks, then the report, each one delivery.
fn deliveries() -> Vec<Vec<Envelope>> {
    let j = journey("shopify_adyen");
    let mut out: Vec<Vec<Envelope>> = j
        .steps
        .iter()
        .map(|s| s.map(&j.tenant, &j.options).expect("a journey step maps"))
        .collect();
    let settlement = map_raw(
        ProviderKind::Settlement,
        "adyen.settlement_details",
        "settlement:adyen.settlement_details:batch-112",
        &[],
        &report(),
        datetime!(2025-07-03 06:00 UTC),
        &j.tenant,
        &j.options,
    )
    .expect("the report maps");
    // Five lines and the payout.
    assert_eq!(settlement.len(), 6, "{settlement:#?}");
    out.push(settlement);
    out
}

struct Read {
    figures: OrderFigures,
    /// (kind, reference, amount, counted) of the payout entries.
    entries: Vec<(EntryKind, String, i64, bool)>,
    payouts: BTreeMap<String, PayoutView>,
}

fn read(arrival: &Arrival, deliveries: &[Vec<Envelope>]) -> Read {
    read_order(arrival, deliveries, ORDER)
}

fn read_order(arrival: &Arrival, deliveries: &[Vec<Envelope>], order: &str) -> Read {
    let folded = arrival.fold(deliveries).expect("fold");
    let mut views = folded.store.order_views();
    let view = views.remove(order).expect("the order");
    let mut entries: Vec<(EntryKind, String, i64, bool)> = view
        .ledger
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Settled | EntryKind::SettlementFee))
        .map(|e| (e.kind, e.reference.clone(), e.amount.minor, e.counted))
        .collect();
    entries.sort();
    Read {
        figures: view.figures,
        entries,
        payouts: folded.store.payout_views(),
    }
}

#[test]
fn the_adyen_batch_pays_out_the_order_s_net_after_its_fees_in_any_arrival_order() {
    let deliveries = deliveries();
    let n = deliveries.len();
    let in_order: Vec<usize> = (0..n).collect();
    let first = read(&Arrival::one_by_one(&in_order), &deliveries);

    let f = &first.figures;
    assert_eq!(f.net, eur(15000));
    assert_eq!(f.fees, eur(1650));
    assert!(f.fees_known, "the report gives the payment its fee");
    assert_eq!(f.net_after_fees, Some(eur(13350)));
    assert_eq!(f.paid_out, eur(13350));
    assert_eq!(f.payouts, vec![PAYOUT.to_string()]);
    // Each fee counted once, each settled amount listed.
    let fees: Vec<(i64, bool)> = first
        .entries
        .iter()
        .filter(|e| e.0 == EntryKind::SettlementFee)
        .map(|e| (e.2, e.3))
        .collect();
    // By line id: the chargeback's, then the two captures'.
    assert_eq!(fees, vec![(1500, true), (90, true), (60, true)]);
    let settled: i64 = first
        .entries
        .iter()
        .filter(|e| e.0 == EntryKind::Settled)
        .inspect(|e| assert!(!e.3, "a settled amount is listed, not counted"))
        .map(|e| e.2)
        .sum();
    assert_eq!(settled, 13350);

    let p = &first.payouts[PAYOUT];
    assert_eq!(p.status, Some(PayoutStatus::Paid));
    assert_eq!(p.amount.map(|a| a.minor), Some(13350));
    assert_eq!(p.difference.map(|d| d.minor), Some(0));
    assert_eq!(p.lines.len(), 5);
    assert!(p.lines.iter().all(|l| l.order_id.as_deref() == Some(ORDER)));
    assert_eq!(p.orders.len(), 1);
    // The payout total is the sum of its orders' net after fees.
    assert_eq!(Some(p.orders[0].net.clone()), f.net_after_fees);
    assert!(p.reconciled, "{:?}", p.unreconciled);

    // The same in other arrival orders: the report first, reversed, and
    // random orders with batches and redeliveries.
    let mut report_first = vec![n - 1];
    report_first.extend(0..n - 1);
    let reversed: Vec<usize> = (0..n).rev().collect();
    let mut arrivals = vec![
        Arrival::one_by_one(&report_first),
        Arrival::one_by_one(&reversed),
    ];
    let mut rng = Rng::new(112);
    for i in 0..60 {
        let mut p = in_order.clone();
        rng.shuffle(&mut p);
        arrivals.push(if i % 2 == 0 {
            Arrival::one_by_one(&p)
        } else {
            Arrival::shaken(&p, &mut rng, 25)
        });
    }
    for a in &arrivals {
        let other = read(a, &deliveries);
        let how = a.describe();
        assert_eq!(other.figures, first.figures, "{how}: figures");
        assert_eq!(other.entries, first.entries, "{how}: entries");
        assert_eq!(other.payouts, first.payouts, "{how}: payouts");
    }
}

#[test]
fn without_the_report_the_order_s_fees_stay_unknown_and_the_payout_unreported() {
    let mut deliveries = deliveries();
    deliveries.pop();
    let n = deliveries.len();
    let r = read(
        &Arrival::one_by_one(&(0..n).collect::<Vec<_>>()),
        &deliveries,
    );
    assert!(!r.figures.fees_known);
    assert_eq!(r.figures.net_after_fees, None);
    assert!(r.figures.paid_out.is_empty());
    assert!(r.payouts.is_empty());
}

/// Stripe on the `woo_stripe` journey: the webhooks never expand the charge's
/// balance transaction, so its processing fee is unknown until the itemized
/// payout reconciliation report (`data/settlements/woo_stripe_itemized_payouts.csv`)
/// gives it. The report, by hand:
///
/// | payout | balance transaction | category | gross | fee | net |
/// |---|---|---|---|---|---|
/// | po_…4127A | txn_…Ac | charge | +120.00 | 3.78 (2.9 % + 0.30) | +116.22 |
/// | po_…4127A | txn_…Ae | refund | −30.00 | 0 | −30.00 |
/// | po_…4127B | txn_…Wd4127B | dispute | −90.00 | 15.00 | −105.00 |
///
/// `payout.paid` reports po_…4127A at 86.22 (= 116.22 − 30.00); the second
/// payout's own report has not arrived. The dispute's 15.00 fee is already
/// counted from the dispute's balance transaction (the journey's
/// expectation): not again. So fees = 15.00 + 3.78 = 18.78, known; the
/// order's net is 0.00 (120.00 − 30.00 − 90.00), net after fees −18.78, and
/// what payouts carried of it: 86.22 − 105.00 = −18.78.
#[test]
fn a_stripe_payout_report_gives_the_charge_its_fee_without_counting_the_dispute_fee_twice() {
    const WOO: &str = "woocommerce:4127";
    const PO_A: &str = "stripe:po_1QzA9pLkdIwHu7ixPo4127A";
    const PO_B: &str = "stripe:po_1QzB3rLkdIwHu7ixPo4127B";
    let j = journey("woo_stripe");
    let mut deliveries: Vec<Vec<Envelope>> = j
        .steps
        .iter()
        .map(|s| s.map(&j.tenant, &j.options).expect("a journey step maps"))
        .collect();
    let report = map_raw(
        ProviderKind::Settlement,
        "stripe.payout_reconciliation",
        "settlement:stripe.payout_reconciliation:may-2025",
        &[],
        &settlement_file("woo_stripe_itemized_payouts.csv"),
        datetime!(2025-05-23 08:00 UTC),
        &j.tenant,
        &j.options,
    )
    .expect("the report maps");
    assert_eq!(report.len(), 3, "{report:#?}");
    let paid = map_raw(
        ProviderKind::Stripe,
        "payout.paid",
        "evt_1QzA9pLkdIwHu7ixPoPaid4127",
        &[],
        &settlement_file("woo_stripe_payout_paid.json"),
        datetime!(2025-05-15 00:00:02 UTC),
        &j.tenant,
        &j.options,
    )
    .expect("payout.paid maps");
    deliveries.push(report);
    deliveries.push(paid);
    let n = deliveries.len();
    let in_order: Vec<usize> = (0..n).collect();
    let first = read_order(&Arrival::one_by_one(&in_order), &deliveries, WOO);

    let f = &first.figures;
    assert_eq!(f.net, usd(0));
    assert_eq!(f.fees, usd(1878));
    assert!(f.fees_known);
    assert_eq!(f.net_after_fees, Some(usd(-1878)));
    assert_eq!(f.paid_out, usd(-1878));
    assert_eq!(f.payouts, vec![PO_A.to_string(), PO_B.to_string()]);
    let fees: Vec<(String, i64, bool)> = first
        .entries
        .iter()
        .filter(|e| e.0 == EntryKind::SettlementFee)
        .map(|e| (e.1.clone(), e.2, e.3))
        .collect();
    assert_eq!(
        fees,
        vec![
            ("txn_1QyB2cLkdIwHu7ixWd4127B".to_string(), 1500, false),
            ("txn_3QxA7mLkdIwHu7ix0p4127Ac".to_string(), 378, true),
        ]
    );

    let a = &first.payouts[PO_A];
    assert_eq!(a.status, Some(PayoutStatus::Paid));
    assert_eq!(a.amount.map(|m| m.minor), Some(8622));
    assert_eq!(a.difference.map(|d| d.minor), Some(0));
    assert!(a.reconciled, "{:?}", a.unreconciled);
    assert_eq!(a.orders.len(), 1);
    assert_eq!(a.orders[0].order_id, WOO);
    assert_eq!(a.orders[0].net, usd(8622));
    let b = &first.payouts[PO_B];
    assert_eq!(b.status, None);
    assert!(!b.reconciled);
    let reasons: Vec<&str> = b.unreconciled.iter().map(|u| u.reason.as_str()).collect();
    assert_eq!(reasons, vec!["no_payout_report"]);
    assert_eq!(b.lines[0].order_id.as_deref(), Some(WOO));
    // The orders' money over both payouts is the order's net after fees.
    let mut carried = MoneyBag::new();
    for p in [a, b] {
        for o in &p.orders {
            for m in o.net.iter() {
                carried.add(m);
            }
        }
    }
    assert_eq!(Some(carried), f.net_after_fees);

    let mut rng = Rng::new(4127);
    for i in 0..60 {
        let mut p = in_order.clone();
        rng.shuffle(&mut p);
        let arrival = if i % 2 == 0 {
            Arrival::one_by_one(&p)
        } else {
            Arrival::shaken(&p, &mut rng, 25)
        };
        let other = read_order(&arrival, &deliveries, WOO);
        let how = arrival.describe();
        assert_eq!(other.figures, first.figures, "{how}: figures");
        assert_eq!(other.entries, first.entries, "{how}: entries");
        assert_eq!(other.payouts, first.payouts, "{how}: payouts");
    }
}
