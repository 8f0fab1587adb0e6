//! The typed order view of the projection contract (storefold-codec's
//! `OrderView`) carries the order's books: folded from real journeys, encoded
//! with the embedded Avro schema and decoded again, its ledger lines and
//! figures are those of the core's view, and the counted lines add up to the
//! typed figures.

use std::collections::BTreeMap;
use std::sync::Arc;

use storefold_codec::{AvroCodec, LedgerEntryView, OrderProjection, OrderView, WireFormat};
use storefold_core::engine::{self, FoldConfig};
use storefold_core::ledger::LedgerEntry;
use storefold_core::money::MoneyBag;
use storefold_core::rates::Rates;
use storefold_core::{Currency, Engine, MemStore};
use storefold_journeys::{Journey, journey, library};

/// Folds every step of `j` in the order it happened, one batch per step, with
/// `config`; the core's views of its orders.
fn fold(j: &Journey, config: FoldConfig) -> Vec<engine::OrderView> {
    let config = Arc::new(config);
    let mut store = MemStore::default();
    for (i, step) in j.steps.iter().enumerate() {
        let envelopes = step
            .map(&j.tenant, &j.options)
            .unwrap_or_else(|e| panic!("{} step {} does not map: {e}", j.name, i + 1));
        let mut engine = Engine::with_config(config.clone());
        for env in &envelopes {
            engine
                .apply(&store, env)
                .unwrap_or_else(|e| panic!("{} step {}: {e}", j.name, i + 1));
        }
        let out = engine.finish(&store);
        store.commit(out.changes);
    }
    store.order_views_with(&config).into_values().collect()
}

/// `v` as the processor publishes it, through an Avro encode and decode with
/// the embedded schema; the decoded typed view.
fn through_avro(codec: &AvroCodec, v: &engine::OrderView) -> OrderView {
    let p = OrderProjection {
        tenant: v.tenant.clone(),
        order_id: v.order_id.clone(),
        customer_id: v.customer_id.clone(),
        generation: 1,
        version: 1,
        status: "open".into(),
        updated_at: 0,
        doc: serde_json::to_string(v).expect("json"),
        view: Some(OrderView::from(v)),
    };
    let bytes = codec.encode(&p, WireFormat::SingleObject).expect("encode");
    let back: OrderProjection = codec.decode(&bytes).expect("decode");
    assert_eq!(back, p, "{} changed through Avro", v.order_id);
    back.view.expect("a typed view")
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn bag(b: &MoneyBag) -> BTreeMap<String, i64> {
    b.0.iter().map(|(c, n)| (c.code().to_owned(), *n)).collect()
}

/// Every line of the typed ledger says what the core's line says.
fn assert_same_lines(order: &str, typed: &[LedgerEntryView], core: &[LedgerEntry]) {
    assert_eq!(typed.len(), core.len(), "{order}: ledger length");
    for (t, c) in typed.iter().zip(core) {
        assert_eq!(t.kind, snake(&c.kind), "{order}");
        assert!(!t.kind.is_empty(), "{order}: a kind without a name");
        assert_eq!(t.provider, c.provider, "{order}");
        assert_eq!(t.reference, c.reference, "{order}");
        assert_eq!(t.source_event_id, c.source_event_id, "{order}");
        assert_eq!(t.amount.minor, c.amount.minor, "{order}");
        assert_eq!(t.amount.currency, c.amount.currency.code(), "{order}");
        assert_eq!(
            t.at,
            (c.at.unix_timestamp_nanos() / 1_000_000) as i64,
            "{order}"
        );
        assert_eq!(t.counted, c.counted, "{order}");
        assert_eq!(t.figure.as_deref(), c.figure.map(|f| f.as_str()), "{order}");
        assert_eq!(t.why, c.why, "{order}");
        match (&t.converted, &c.converted) {
            (None, None) => {}
            (Some(t), Some(c)) => {
                assert_eq!(t.amount.minor, c.amount.minor, "{order}");
                assert_eq!(t.amount.currency, c.amount.currency.code(), "{order}");
                assert_eq!(t.rate_date, c.rate_date, "{order}");
            }
            other => panic!("{order}: converted differs: {other:?}"),
        }
    }
}

/// Counted typed lines of `figure`, summed per currency.
fn counted(ledger: &[LedgerEntryView], figure: &str) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for e in ledger
        .iter()
        .filter(|e| e.counted && e.figure.as_deref() == Some(figure))
    {
        *sums.entry(e.amount.currency.clone()).or_insert(0) += e.amount.minor;
    }
    sums
}

/// Every order of every journey: the typed view's ledger and figures, read
/// back from Avro, equal the core view's.
#[test]
fn every_journey_s_ledger_and_figures_survive_the_typed_view() {
    let codec = AvroCodec::embedded().expect("codec");
    let mut lines = 0;
    for j in library() {
        for v in fold(&j, FoldConfig::default()) {
            let typed = through_avro(&codec, &v);
            assert_same_lines(&v.order_id, &typed.ledger, &v.ledger);
            let f = &typed.figures;
            let c = &v.figures;
            assert_eq!(f.paid, bag(&c.paid), "{}", v.order_id);
            assert_eq!(f.paid_source, c.paid_source, "{}", v.order_id);
            assert_eq!(f.authorized, bag(&c.authorized), "{}", v.order_id);
            assert_eq!(f.refunded, bag(&c.refunded), "{}", v.order_id);
            assert_eq!(f.chargeback_lost, bag(&c.chargeback_lost), "{}", v.order_id);
            assert_eq!(f.disputed, bag(&c.disputed), "{}", v.order_id);
            assert_eq!(f.net, bag(&c.net), "{}", v.order_id);
            assert_eq!(f.fees, bag(&c.fees), "{}", v.order_id);
            assert_eq!(f.fees_known, c.fees_known, "{}", v.order_id);
            assert_eq!(
                f.net_after_fees,
                c.net_after_fees.as_ref().map(bag),
                "{}",
                v.order_id
            );
            lines += typed.ledger.len();
        }
    }
    assert!(
        lines >= 30,
        "the library's orders have {lines} ledger lines"
    );
}

/// WooCommerce + Stripe, a partial refund and a lost chargeback with its fee,
/// for a tenant reporting in EUR: the typed books read back from Avro hold the
/// figures worked out by hand (crates/journeys/data/woo_stripe/expect.json),
/// their counted lines add up to them, and every line carries its conversion.
#[test]
fn a_stripe_paid_order_with_a_partial_refund_keeps_its_books_in_the_typed_view() {
    let j = journey("woo_stripe");
    let eur = Currency::from_code("EUR").expect("EUR");
    let rates = Rates::parse_csv("2025-01-01,USD,EUR,0.5\n", 3650).expect("rates");
    let config = FoldConfig {
        reporting: BTreeMap::from([(j.tenant.clone(), eur)]),
        rates,
        ..FoldConfig::default()
    };
    let views = fold(&j, config);
    let v = views
        .iter()
        .find(|v| v.order_id == "woocommerce:4127")
        .expect("the order");
    let codec = AvroCodec::embedded().expect("codec");
    let typed = through_avro(&codec, v);
    assert_same_lines(&v.order_id, &typed.ledger, &v.ledger);

    let usd = |minor: i64| BTreeMap::from([("USD".to_owned(), minor)]);
    let f = &typed.figures;
    assert_eq!(f.paid, usd(12_000));
    assert_eq!(f.paid_source, "provider");
    assert_eq!(f.refunded, usd(3_000));
    assert_eq!(f.chargeback_lost, usd(9_000));
    assert_eq!(f.net, usd(0));
    assert_eq!(f.fees, usd(1_500));
    assert!(!f.fees_known);
    assert_eq!(f.net_after_fees, None);
    for figure in ["paid", "refunded", "chargeback_lost", "fees"] {
        let figures = serde_json::to_value(f).expect("json");
        let want: BTreeMap<String, i64> =
            serde_json::from_value(figures[figure].clone()).expect("a money map");
        assert_eq!(counted(&typed.ledger, figure), want, "{figure}");
    }

    let kinds = |counted: bool| {
        let mut k: Vec<(String, i64)> = typed
            .ledger
            .iter()
            .filter(|e| e.counted == counted)
            .map(|e| (e.kind.clone(), e.amount.minor))
            .collect();
        k.sort();
        k
    };
    let owned = |k: &[(&str, i64)]| -> Vec<(String, i64)> {
        k.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
    };
    assert_eq!(
        kinds(true),
        owned(&[
            ("captured", 12_000),
            ("dispute_fee", 1_500),
            ("dispute_lost", 9_000),
            ("refund", 3_000)
        ])
    );
    assert_eq!(
        kinds(false),
        owned(&[
            ("authorized", 12_000),
            ("dispute_opened", 9_000),
            ("dispute_withdrawn", 9_000),
            ("refund", 3_000),
            ("store_received", 12_000)
        ])
    );
    assert!(
        typed
            .ledger
            .iter()
            .all(|e| e.provider == "stripe" || e.provider == "woocommerce")
    );
    assert!(typed.ledger.iter().all(|e| !e.why.is_empty()));

    // Converted at 0.5 EUR per USD, rate of 2025-01-01.
    for e in &typed.ledger {
        let c = e.converted.as_ref().expect("a conversion");
        assert_eq!(c.amount.currency, "EUR");
        assert_eq!(c.amount.minor, e.amount.minor / 2, "{}", e.kind);
        assert_eq!(c.rate_date, "2025-01-01");
    }
    let reporting = f.reporting.as_ref().expect("reporting figures");
    assert_eq!(reporting.currency, "EUR");
    assert_eq!(reporting.paid, 6_000);
    assert_eq!(reporting.refunded, 1_500);
    assert_eq!(reporting.chargeback_lost, 4_500);
    assert_eq!(reporting.fees, 750);
}
