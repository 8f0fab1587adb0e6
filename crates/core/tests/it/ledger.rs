//! The order ledger, rule by rule (docs/books.md), on canonical events. Every
//! expected figure is worked out by hand from what the provider documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use storefold_core::aggregate::Order;
use storefold_core::engine::FoldConfig;
use storefold_core::event::*;
use storefold_core::identity::Identity;
use storefold_core::ledger::{EntryKind, OrderFigures};
use storefold_core::money::{Currency, Money};
use storefold_core::rates::Rates;
use storefold_core::{Engine, Envelope, MemStore};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2025-03-01 10:00 UTC);

fn cur(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, cur("USD"))
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

fn link() -> Vec<OrderLink> {
    vec![OrderLink::Order {
        order_id: "shopify:1".into(),
    }]
}

/// A store snapshot; `received` is what the store says it received.
fn order(total: Money, received: Option<Money>) -> Envelope {
    env(
        "o1",
        T0,
        Event::OrderUpserted(Box::new(OrderUpserted {
            order_id: "shopify:1".into(),
            number: Some("#1001".into()),
            customer: Identity::default().with_email(Some("ann@example.com")),
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
            payment_refs: vec![],
            tracking_numbers: vec![],
            attribution: Attribution::default(),
            cart_token: None,
            shipping_address: None,
            billing_address: None,
            note: None,
            tags: vec![],
            test: false,
            created_at: T0,
            updated_at: T0,
            cancelled_at: None,
            cancel_reason: None,
            store_money: received.map(|r| StoreMoney {
                received: r,
                authorized: None,
                outstanding: None,
                shop_received: None,
                basis: "test".into(),
            }),
        })),
    )
}

struct Pay {
    provider: &'static str,
    id: &'static str,
    status: PaymentStatus,
    amount: Money,
    captured: Option<i64>,
    capture_id: Option<&'static str>,
    auto: bool,
    refunded: Option<i64>,
    fee: Option<Money>,
    day: i64,
}

fn pay(provider: &'static str, id: &'static str, status: PaymentStatus, amount: Money) -> Pay {
    Pay {
        provider,
        id,
        status,
        amount,
        captured: None,
        capture_id: None,
        auto: false,
        refunded: None,
        fee: None,
        day: 1,
    }
}

impl Pay {
    fn ev(self, event_id: &str) -> Envelope {
        let at = T0 + Duration::days(self.day);
        let c = self.amount.currency;
        let p = Payment {
            provider: self.provider.into(),
            payment_id: self.id.into(),
            links: link(),
            status: self.status,
            amount: self.amount,
            fee: self.fee,
            net: None,
            amount_refunded: self.refunded.map(|r| Money::new(r, c)),
            method: None,
            failure_reason: None,
            payer: Identity::default(),
            at,
            captured: self.captured.map(|m| Money::new(m, c)),
            capture_id: self.capture_id.map(str::to_string),
            auto_capture: self.auto,
        };
        let event = match self.status {
            PaymentStatus::Failed | PaymentStatus::Cancelled => Event::PaymentFailed(p),
            _ => Event::PaymentSucceeded(p),
        };
        env(event_id, at, event)
    }
}

#[allow(clippy::too_many_arguments)]
fn refund(
    event_id: &str,
    provider: &str,
    id: &str,
    payment: Option<&str>,
    status: RefundStatus,
    amount: Money,
    day: i64,
    created_day: Option<i64>,
    gateway: Option<&str>,
) -> Envelope {
    let at = T0 + Duration::days(day);
    env(
        event_id,
        at,
        Event::RefundIssued(Refund {
            provider: provider.into(),
            refund_id: id.into(),
            payment_id: payment.map(str::to_string),
            links: link(),
            amount,
            status,
            reason: None,
            lines: vec![],
            adjustments: None,
            at,
            created_at: created_day.map(|d| T0 + Duration::days(d)),
            gateway: gateway.map(str::to_string),
        }),
    )
}

fn dispute(
    event_id: &str,
    provider: &str,
    payment: Option<&str>,
    status: DisputeStatus,
    amount: Money,
    day: i64,
    movements: Vec<DisputeMovement>,
) -> Envelope {
    let at = T0 + Duration::days(day);
    let d = Dispute {
        provider: provider.into(),
        dispute_id: "dp_1".into(),
        payment_id: payment.map(str::to_string),
        links: link(),
        amount,
        status,
        reason: None,
        funds_withdrawn: false,
        funds_reinstated: false,
        at,
        movements,
    };
    env(
        event_id,
        at,
        if status.is_closed() {
            Event::DisputeClosed(d)
        } else {
            Event::DisputeOpened(d)
        },
    )
}

fn movement(id: &str, amount: i64, fee: i64, day: i64) -> DisputeMovement {
    DisputeMovement {
        id: id.into(),
        amount: usd(amount),
        fee: (fee != 0).then(|| usd(fee)),
        at: T0 + Duration::days(day),
    }
}

/// Folds the events (store snapshot first so nothing waits) and returns the
/// order's books; also checks that every permutation gives the same books.
fn fold(events: &[Envelope]) -> (OrderFigures, Vec<(EntryKind, i64, bool)>) {
    fold_with(events, Arc::new(FoldConfig::default()))
}

fn fold_with(
    events: &[Envelope],
    config: Arc<FoldConfig>,
) -> (OrderFigures, Vec<(EntryKind, i64, bool)>) {
    let run = |evs: &[Envelope]| {
        let mut store = MemStore::default();
        for e in evs {
            let mut engine = Engine::with_config(config.clone());
            engine.apply(&store, e).expect("fold");
            let out = engine.finish(&store);
            store.commit(out.changes);
        }
        let view = store.order_views_with(&config).remove("shopify:1").unwrap();
        let mut entries: Vec<(EntryKind, i64, bool)> = view
            .ledger
            .iter()
            .map(|e| (e.kind, e.amount.minor, e.counted))
            .collect();
        entries.sort();
        (view.figures, entries)
    };
    let first = run(events);
    // Reversed and rotated arrival orders give the same books.
    let mut rev = events.to_vec();
    rev.reverse();
    assert_eq!(run(&rev), first, "reversed arrival changes the books");
    for k in 1..events.len() {
        let mut rot = events.to_vec();
        rot.rotate_left(k);
        assert_eq!(run(&rot), first, "rotated by {k}: the books changed");
    }
    first
}

fn bag(pairs: &[(&str, i64)]) -> storefold_core::MoneyBag {
    let mut b = storefold_core::MoneyBag::new();
    for (c, m) in pairs {
        b.add(Money::new(*m, cur(c)));
    }
    b
}

fn nz(b: &storefold_core::MoneyBag) -> BTreeMap<String, i64> {
    b.0.iter()
        .filter(|(_, m)| **m != 0)
        .map(|(c, m)| (c.code().to_string(), *m))
        .collect()
}

#[test]
fn stripe_partial_capture_releases_the_rest_and_its_release_is_no_refund() {
    // Authorised 1000, captured 600: Stripe refunds the uncaptured 400 at capture
    // time (a refund object of exactly 400) and reports amount_refunded 400,
    // which the mapper reduces to 0 for the captured money. Later a real refund
    // of 100: amount_refunded 500 (→ 100 of the captured money).
    let events = vec![
        order(usd(1000), Some(usd(1000))),
        Pay {
            day: 1,
            ..pay("stripe", "pi_1", PaymentStatus::Authorized, usd(1000))
        }
        .ev("auth"),
        Pay {
            day: 2,
            captured: Some(600),
            refunded: Some(0),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(600))
        }
        .ev("capture"),
        refund(
            "rel",
            "stripe",
            "re_release",
            Some("pi_1"),
            RefundStatus::Succeeded,
            usd(400),
            2,
            Some(2),
            None,
        ),
        Pay {
            day: 5,
            captured: Some(600),
            refunded: Some(100),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(600))
        }
        .ev("refunded"),
        refund(
            "re",
            "stripe",
            "re_2",
            Some("pi_1"),
            RefundStatus::Succeeded,
            usd(100),
            5,
            Some(5),
            None,
        ),
    ];
    let (f, entries) = fold(&events);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 600)])));
    assert_eq!(nz(&f.refunded), nz(&bag(&[("USD", 100)])));
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 500)])));
    assert!(f.authorized.is_empty(), "nothing held: {:?}", f.authorized);
    assert_eq!(f.paid_source, "provider");
    assert!(entries.contains(&(EntryKind::Released, 400, false)));
    assert!(entries.contains(&(EntryKind::StoreReceived, 1000, false)));
}

#[test]
fn a_stripe_refund_that_fails_gives_nothing_back_whatever_the_reported_total() {
    // charge.refunded says amount_refunded 500 at day 2 (the refund re_1, created
    // day 2); refund.failed on day 6. Stripe puts the amount back on the charge;
    // the last total we saw still says 500, but it included re_1, which failed.
    let events = vec![
        order(usd(1500), None),
        Pay {
            day: 1,
            captured: Some(1500),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(1500))
        }
        .ev("paid"),
        Pay {
            day: 2,
            captured: Some(1500),
            refunded: Some(500),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(1500))
        }
        .ev("charge.refunded"),
        refund(
            "r-created",
            "stripe",
            "re_1",
            Some("pi_1"),
            RefundStatus::Succeeded,
            usd(500),
            2,
            Some(2),
            None,
        ),
        refund(
            "r-failed",
            "stripe",
            "re_1",
            Some("pi_1"),
            RefundStatus::Failed,
            usd(500),
            6,
            Some(2),
            None,
        ),
    ];
    let (f, entries) = fold(&events);
    assert!(f.refunded.is_empty(), "{:?}", f.refunded);
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 1500)])));
    assert!(entries.contains(&(EntryKind::RefundFailed, 500, false)));
    assert!(!entries.iter().any(|e| e.0 == EntryKind::RefundTotalOnly));

    // Only the total: 300 refunded with no itemised refund → counted once.
    let (f, entries) = fold(&[
        order(usd(1500), None),
        Pay {
            day: 2,
            captured: Some(1500),
            refunded: Some(300),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(1500))
        }
        .ev("charge.refunded"),
    ]);
    assert_eq!(nz(&f.refunded), nz(&bag(&[("USD", 300)])));
    assert!(entries.contains(&(EntryKind::RefundTotalOnly, 300, true)));
}

#[test]
fn adyen_automatic_capture_counts_the_authorisation_until_it_is_cancelled() {
    let auth = || Pay {
        auto: true,
        ..pay("adyen", "psp_a", PaymentStatus::Authorized, usd(2000))
    };
    let (f, _) = fold(&[order(usd(2000), None), auth().ev("auth")]);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 2000)])));
    // CANCELLATION after the (automatic-capture) authorisation: voided.
    let (f, entries) = fold(&[
        order(usd(2000), None),
        auth().ev("auth"),
        Pay {
            day: 2,
            ..pay("adyen", "psp_a", PaymentStatus::Cancelled, usd(2000))
        }
        .ev("cancel"),
    ]);
    assert!(f.paid.is_empty(), "{:?}", f.paid);
    assert!(entries.contains(&(EntryKind::Voided, 2000, false)));
}

#[test]
fn adyen_partial_captures_add_up_and_a_failed_capture_takes_its_part_back() {
    // Manual capture: AUTHORISATION 100.00, CAPTURE c1 60.00, CAPTURE c2 40.00,
    // then CAPTURE_FAILED for c2 (the scheme rejected it after Adyen accepted).
    let cap = |id: &'static str, status, minor, day| Pay {
        capture_id: Some(id),
        day,
        ..pay("adyen", "psp_a", status, usd(minor))
    };
    let base = vec![
        order(usd(10000), Some(usd(10000))),
        pay("adyen", "psp_a", PaymentStatus::Authorized, usd(10000)).ev("auth"),
        cap("c1", PaymentStatus::Succeeded, 6000, 2).ev("cap1"),
        cap("c2", PaymentStatus::Succeeded, 4000, 3).ev("cap2"),
    ];
    let (f, _) = fold(&base);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 10000)])));
    assert!(f.authorized.is_empty());
    let mut failed = base.clone();
    failed.push(cap("c2", PaymentStatus::Failed, 4000, 4).ev("cap2-failed"));
    let (f, entries) = fold(&failed);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 6000)])));
    // The failed part stays authorised (held) until cancelled or captured again.
    assert_eq!(nz(&f.authorized), nz(&bag(&[("USD", 4000)])));
    assert!(entries.contains(&(EntryKind::CaptureFailed, 4000, false)));
    // Only the first capture, then the rest released by a CANCELLATION.
    let (f, entries) = fold(&[
        order(usd(10000), None),
        pay("adyen", "psp_a", PaymentStatus::Authorized, usd(10000)).ev("auth"),
        cap("c1", PaymentStatus::Succeeded, 6000, 2).ev("cap1"),
        Pay {
            day: 5,
            ..pay("adyen", "psp_a", PaymentStatus::Cancelled, usd(10000))
        }
        .ev("cancel"),
    ]);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 6000)])));
    assert!(f.authorized.is_empty());
    assert!(entries.contains(&(EntryKind::Voided, 4000, false)));
}

#[test]
fn a_chargeback_lost_then_reversed_is_won_and_a_second_chargeback_loses_again() {
    let base = vec![
        order(usd(5000), None),
        Pay {
            captured: Some(5000),
            ..pay("adyen", "psp_a", PaymentStatus::Succeeded, usd(5000))
        }
        .ev("paid"),
        dispute(
            "cb",
            "adyen",
            Some("psp_a"),
            DisputeStatus::Lost,
            usd(5000),
            10,
            vec![movement("m1", -5000, 0, 10)],
        ),
    ];
    let (f, _) = fold(&base);
    assert_eq!(nz(&f.chargeback_lost), nz(&bag(&[("USD", 5000)])));
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 0)])));
    let mut reversed = base.clone();
    reversed.push(dispute(
        "cbr",
        "adyen",
        Some("psp_a"),
        DisputeStatus::Won,
        usd(5000),
        20,
        vec![movement("m2", 5000, 0, 20)],
    ));
    let (f, entries) = fold(&reversed);
    assert!(f.chargeback_lost.is_empty(), "{:?}", f.chargeback_lost);
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 5000)])));
    assert!(entries.contains(&(EntryKind::DisputeWithdrawn, 5000, false)));
    assert!(entries.contains(&(EntryKind::DisputeReinstated, 5000, false)));
    assert!(entries.contains(&(EntryKind::DisputeWon, 5000, false)));
    reversed.push(dispute(
        "cb2",
        "adyen",
        Some("psp_a"),
        DisputeStatus::Lost,
        usd(5000),
        30,
        vec![movement("m3", -5000, 0, 30)],
    ));
    let (f, _) = fold(&reversed);
    assert_eq!(nz(&f.chargeback_lost), nz(&bag(&[("USD", 5000)])));
}

#[test]
fn an_inquiry_settled_by_a_merchant_refund_counts_once_as_a_refund() {
    let (f, entries) = fold(&[
        order(usd(3000), None),
        Pay {
            captured: Some(3000),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(3000))
        }
        .ev("paid"),
        dispute(
            "inq",
            "stripe",
            Some("pi_1"),
            DisputeStatus::Inquiry,
            usd(3000),
            5,
            vec![],
        ),
        refund(
            "re",
            "stripe",
            "re_1",
            Some("pi_1"),
            RefundStatus::Succeeded,
            usd(3000),
            6,
            Some(6),
            None,
        ),
        dispute(
            "closed",
            "stripe",
            Some("pi_1"),
            DisputeStatus::MerchantRefunded,
            usd(3000),
            7,
            vec![],
        ),
    ]);
    assert_eq!(nz(&f.refunded), nz(&bag(&[("USD", 3000)])));
    assert!(f.chargeback_lost.is_empty());
    assert!(f.disputed.is_empty(), "closed: {:?}", f.disputed);
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 0)])));
    assert!(entries.contains(&(EntryKind::DisputeMerchantRefunded, 3000, false)));
}

#[test]
fn a_paypal_reversal_and_a_lost_dispute_of_one_capture_are_one_loss() {
    let (f, entries) = fold(&[
        order(usd(2500), None),
        pay("paypal", "CAP1", PaymentStatus::Succeeded, usd(2500)).ev("cap"),
        Pay {
            day: 9,
            ..pay("paypal", "CAP1", PaymentStatus::Reversed, usd(2500))
        }
        .ev("reversed"),
        dispute(
            "lost",
            "paypal",
            Some("CAP1"),
            DisputeStatus::Lost,
            usd(2500),
            12,
            vec![],
        ),
    ]);
    assert_eq!(nz(&f.chargeback_lost), nz(&bag(&[("USD", 2500)])));
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 0)])));
    assert!(entries.contains(&(EntryKind::Reversed, 2500, false)));
    assert!(entries.contains(&(EntryKind::DisputeLost, 2500, true)));
}

#[test]
fn a_provider_report_supersedes_the_store_and_store_refunds_count_by_gateway() {
    // WooCommerce says it received 80.00; Stripe captured 80.00 and refunded
    // 20.00. The store lists that refund (no gateway named) and a 5.00 cash
    // refund: the provider's 20.00 counts, the store's unnamed 20.00 is the same
    // money, the cash 5.00 counts on its own.
    let woo = || {
        let mut o = order(usd(8000), Some(usd(8000)));
        if let Event::OrderUpserted(u) = &mut o.event {
            u.order_id = "shopify:1".into();
        }
        o
    };
    let (f, entries) = fold(&[
        woo(),
        Pay {
            captured: Some(8000),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(8000))
        }
        .ev("paid"),
        refund(
            "r-stripe",
            "stripe",
            "re_1",
            Some("pi_1"),
            RefundStatus::Succeeded,
            usd(2000),
            3,
            Some(3),
            None,
        ),
        refund(
            "r-store",
            "woocommerce",
            "55",
            None,
            RefundStatus::Succeeded,
            usd(2000),
            3,
            None,
            None,
        ),
        refund(
            "r-cash",
            "woocommerce",
            "56",
            None,
            RefundStatus::Succeeded,
            usd(500),
            4,
            None,
            Some("cash"),
        ),
    ]);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 8000)])));
    assert_eq!(nz(&f.refunded), nz(&bag(&[("USD", 2500)])));
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 5500)])));
    assert!(
        entries.contains(&(EntryKind::Refund, 2000, false)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&(EntryKind::Refund, 500, true)),
        "{entries:?}"
    );
    // Without any provider payment the store's word counts, refunds included.
    let (f, _) = fold(&[
        woo(),
        refund(
            "r-store",
            "woocommerce",
            "55",
            None,
            RefundStatus::Succeeded,
            usd(2000),
            3,
            None,
            None,
        ),
    ]);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 8000)])));
    assert_eq!(f.paid_source, "store");
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 6000)])));
}

#[test]
fn fees_stay_in_their_settlement_currency() {
    // A EUR payment settled in USD: the fee is USD, so EUR net minus fees is
    // unknown in EUR (never a EUR−USD difference).
    let eur = |m| Money::new(m, cur("EUR"));
    let (f, _) = fold(&[
        order(eur(10000), None),
        Pay {
            captured: Some(10000),
            fee: Some(usd(320)),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, eur(10000))
        }
        .ev("paid"),
    ]);
    assert_eq!(nz(&f.fees), nz(&bag(&[("USD", 320)])));
    assert!(f.fees_known);
    assert_eq!(f.net_after_fees, None);
    // The same in one currency: net after fees known.
    let (f, _) = fold(&[
        order(usd(10000), None),
        Pay {
            captured: Some(10000),
            fee: Some(usd(320)),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(10000))
        }
        .ev("paid"),
    ]);
    assert_eq!(
        f.net_after_fees.as_ref().map(nz),
        Some(nz(&bag(&[("USD", 9680)])))
    );
}

#[test]
fn the_reporting_currency_converts_each_entry_at_its_own_date_and_drops_nothing() {
    // 100.00 USD paid on 2 March (rate 0.90 → 90.00 EUR), 30.00 USD refunded on
    // 10 March (rate 0.80 → 24.00 EUR): net 66.00 EUR. A 5.00 GBP refund has no
    // rate: it stays unconverted, listed, not dropped.
    let rates = Rates::parse_csv("2025-03-02,USD,EUR,0.90\n2025-03-10,USD,EUR,0.80\n", 0).unwrap();
    let config = Arc::new(FoldConfig {
        reporting: BTreeMap::from([("acme".to_string(), cur("EUR"))]),
        rates,
        ..FoldConfig::default()
    });
    let (f, _) = fold_with(
        &[
            order(usd(10000), None),
            Pay {
                captured: Some(10000),
                ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(10000))
            }
            .ev("paid"),
            refund(
                "re",
                "stripe",
                "re_1",
                Some("pi_1"),
                RefundStatus::Succeeded,
                usd(3000),
                9,
                Some(9),
                None,
            ),
            refund(
                "re-gbp",
                "stripe",
                "re_2",
                Some("pi_1"),
                RefundStatus::Succeeded,
                Money::new(500, cur("GBP")),
                9,
                Some(9),
                None,
            ),
        ],
        config,
    );
    let r = f.reporting.expect("reporting figures");
    assert_eq!(r.currency, cur("EUR"));
    assert_eq!((r.paid, r.refunded, r.net), (9000, 2400, 6600));
    assert_eq!(
        r.unconverted.get("refunded").map(nz),
        Some(nz(&bag(&[("GBP", 500)])))
    );
    // The per-currency figures keep both currencies.
    assert_eq!(nz(&f.refunded), nz(&bag(&[("GBP", 500), ("USD", 3000)])));
}

#[test]
fn a_refund_in_a_currency_with_no_payment_is_kept_on_the_customer() {
    let mut store = MemStore::default();
    for e in [
        order(usd(1000), Some(usd(1000))),
        refund(
            "re",
            "shopify",
            "r1",
            None,
            RefundStatus::Succeeded,
            Money::new(900, cur("EUR")),
            2,
            None,
            Some("manual"),
        ),
    ] {
        let mut engine = Engine::new();
        engine.apply(&store, &e).unwrap();
        let out = engine.finish(&store);
        store.commit(out.changes);
    }
    let c = store.customers().into_values().next().unwrap();
    let by: BTreeMap<&str, (i64, i64)> = c
        .revenue
        .iter()
        .map(|r| (r.currency.code(), (r.gross, r.refunded)))
        .collect();
    assert_eq!(by, BTreeMap::from([("EUR", (0, 900)), ("USD", (1000, 0))]));
}

#[test]
fn test_orders_count_nothing() {
    let mut o = order(usd(1000), Some(usd(1000)));
    if let Event::OrderUpserted(u) = &mut o.event {
        u.test = true;
    }
    let (f, entries) = fold(&[
        o,
        Pay {
            captured: Some(1000),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(1000))
        }
        .ev("paid"),
    ]);
    assert!(f.paid.is_empty() && f.net.is_empty());
    assert!(entries.iter().all(|e| !e.2));
    let _ = Order::new("x");
}

#[test]
fn captures_of_one_paypal_authorisation_add_their_fees_and_a_reversal_joins_its_capture() {
    // Authorisation AUTH 100.00; captures CAP1 60.00 (fee 2.10) and CAP2 40.00
    // (fee 1.50); PayPal then reverses CAP2 — its event names only the capture.
    let cap = |id: &'static str, minor, fee, day| Pay {
        capture_id: Some(id),
        fee: Some(usd(fee)),
        day,
        ..pay("paypal", "AUTH", PaymentStatus::Succeeded, usd(minor))
    };
    let (f, entries) = fold(&[
        order(usd(10000), None),
        pay("paypal", "AUTH", PaymentStatus::Authorized, usd(10000)).ev("auth"),
        cap("CAP1", 6000, 210, 2).ev("cap1"),
        cap("CAP2", 4000, 150, 3).ev("cap2"),
        Pay {
            day: 9,
            ..pay("paypal", "CAP2", PaymentStatus::Reversed, usd(4000))
        }
        .ev("reversed"),
    ]);
    assert_eq!(nz(&f.paid), nz(&bag(&[("USD", 10000)])));
    assert_eq!(nz(&f.fees), nz(&bag(&[("USD", 360)])));
    assert_eq!(nz(&f.chargeback_lost), nz(&bag(&[("USD", 4000)])));
    assert_eq!(nz(&f.net), nz(&bag(&[("USD", 6000)])));
    assert!(f.fees_known);
    assert!(
        entries.contains(&(EntryKind::Reversed, 4000, true)),
        "{entries:?}"
    );
}

#[test]
fn a_refund_of_an_uncaptured_charge_is_its_release() {
    // Stripe reports releasing an uncaptured charge as a refund of it.
    let (f, entries) = fold(&[
        order(usd(5000), None),
        pay("stripe", "ch_1", PaymentStatus::Authorized, usd(5000)).ev("auth"),
        Pay {
            day: 3,
            ..pay("stripe", "ch_1", PaymentStatus::Cancelled, usd(5000))
        }
        .ev("released"),
        refund(
            "re",
            "stripe",
            "re_1",
            Some("ch_1"),
            RefundStatus::Succeeded,
            usd(5000),
            3,
            Some(3),
            None,
        ),
    ]);
    assert!(f.paid.is_empty() && f.refunded.is_empty(), "{f:?}");
    assert!(entries.contains(&(EntryKind::Released, 5000, false)));
    assert!(entries.contains(&(EntryKind::Voided, 5000, false)));
}

#[test]
fn each_entry_shows_its_converted_amount_and_the_rate_date() {
    let rates = Rates::parse_csv("2025-03-02,USD,EUR,0.90\n", 3).unwrap();
    let config = Arc::new(FoldConfig {
        reporting: BTreeMap::from([("acme".to_string(), cur("EUR"))]),
        rates,
        ..FoldConfig::default()
    });
    let mut store = MemStore::default();
    for e in [
        order(usd(10000), None),
        Pay {
            captured: Some(10000),
            ..pay("stripe", "pi_1", PaymentStatus::Succeeded, usd(10000))
        }
        .ev("paid"),
    ] {
        let mut engine = Engine::with_config(config.clone());
        engine.apply(&store, &e).unwrap();
        store.commit(engine.finish(&store).changes);
    }
    let view = store.order_views_with(&config).remove("shopify:1").unwrap();
    let captured = view
        .ledger
        .iter()
        .find(|e| e.kind == EntryKind::Captured)
        .expect("a capture");
    let c = captured.converted.as_ref().expect("converted");
    assert_eq!(c.amount, Money::new(9000, cur("EUR")));
    assert_eq!(c.rate_date, "2025-03-02");
    let json = serde_json::to_value(captured).unwrap();
    assert_eq!(json["converted"]["rate_date"], "2025-03-02");
    assert_eq!(json["converted"]["amount"]["minor"], 9000);
}
