//! Settlement reports: signature, formats, exact lines worked out by hand
//! from the fixtures, ids that do not depend on the file, and the errors that
//! name the line and column.

use storefold_core::event::{OrderLink, PayoutLine, PayoutLineKind, PayoutStatus, PayoutUpdated};
use storefold_core::{Currency, Envelope, Event, Money};
use time::OffsetDateTime;
use time::macros::datetime;

use super::{
    ADYEN_SETTLEMENT_DETAILS, STRIPE_PAYOUT_RECONCILIATION, TOPIC_HEADER, body_id,
    signature_header,
};
use crate::test_support::{self, Harness};
use crate::{
    Credentials, Headers, Inbound, MapError, MapOptions, ProviderKind, ReferencePattern,
    VerifyError, WebhookRequest,
};

const SECRET: &str = "settlement-test-secret";
const NOW: OffsetDateTime = datetime!(2026-11-07 10:00 UTC);

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("settlement", name)
}

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::from_code(code).unwrap())
}

fn bench() -> Harness {
    Harness::new(ProviderKind::Settlement, SECRET, NOW).tenant("acme")
}

fn deliver_with(
    options: MapOptions,
    topic: &str,
    body: &[u8],
) -> Result<(Inbound, Vec<Envelope>), MapError> {
    bench().options(options).deliver(topic, body)
}

fn deliver(topic: &str, body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    deliver_with(MapOptions::default(), topic, body)
}

fn refusal(topic: &str, body: &str) -> String {
    deliver(topic, body.as_bytes())
        .map(|(_, events)| format!("mapped: {events:?}"))
        .unwrap_or_else(|e| e.to_string())
}

fn lines(events: &[Envelope]) -> Vec<&PayoutLine> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::PayoutLine(l) => Some(l),
            _ => None,
        })
        .collect()
}

fn order(id: &str) -> OrderLink {
    OrderLink::Order {
        order_id: id.into(),
    }
}

fn payment(provider: &str, reference: &str) -> OrderLink {
    OrderLink::Payment {
        provider: provider.into(),
        reference: reference.into(),
    }
}

/// Every event's id, kind, gross, fee and net in minor units, for short
/// comparisons.
fn figures(events: &[Envelope]) -> Vec<(String, PayoutLineKind, i64, i64, i64)> {
    lines(events)
        .iter()
        .map(|l| (l.line_id.clone(), l.kind, l.gross.minor, l.fee.minor, l.net.minor))
        .collect()
}

/// The Stripe fixture, by hand (USD, cents):
///
/// | line | txn | category | gross | fee | net |
/// |---|---|---|---|---|---|
/// | 2 | txn_3SfChargeA001 | charge | 100.00 | 3.20 | 96.80 |
/// | 3 | txn_3SfRefundA002 | refund (partial, of the same charge) | −30.00 | 0.00 | −30.00 |
/// | 4 | txn_3SfDisputeB03 | dispute | −100.00 | 15.00 | −115.00 |
/// | 5 | txn_3SfFeeC004 | fee (Radar) | −2.00 | 0.00 | −2.00 |
/// | 6 | txn_3SfChargeD005 | charge | 250.00 | 7.55 | 242.45 |
///
/// The nets add up to 192.25: po_1SfPayoutA11's amount in the Stripe
/// fixture `payout.paid.json`.
#[test]
fn a_stripe_report_is_one_line_per_balance_transaction() {
    let body = fixture("stripe.payout_reconciliation.csv");
    let (inbound, events) = deliver(STRIPE_PAYOUT_RECONCILIATION, &body).unwrap();
    assert_eq!(
        inbound,
        Inbound {
            topic: STRIPE_PAYOUT_RECONCILIATION.into(),
            event_id: body_id(STRIPE_PAYOUT_RECONCILIATION, &body),
            occurred_at: None,
        }
    );
    assert!(inbound.event_id.starts_with("settlement:stripe.payout_reconciliation:"));
    assert_eq!(
        figures(&events),
        [
            ("txn_3SfChargeA001".into(), PayoutLineKind::Charge, 10_000, 320, 9_680),
            ("txn_3SfRefundA002".into(), PayoutLineKind::Refund, -3_000, 0, -3_000),
            ("txn_3SfDisputeB03".into(), PayoutLineKind::Dispute, -10_000, 1_500, -11_500),
            ("txn_3SfFeeC004".into(), PayoutLineKind::Fee, -200, 0, -200),
            ("txn_3SfChargeD005".into(), PayoutLineKind::Charge, 25_000, 755, 24_245),
        ]
    );
    let total: i64 = lines(&events).iter().map(|l| l.net.minor).sum();
    assert_eq!(total, 19_225);
    // The first in full: the order from `payment_metadata[order_id]` (the
    // tenant's Stripe metadata key), then the payment intent, then the charge,
    // as the webhooks link the payment.
    assert_eq!(
        events[0],
        Envelope {
            tenant: "acme".into(),
            provider: "settlement".into(),
            event_id: "settlement:stripe:txn_3SfChargeA001".into(),
            occurred_at: datetime!(2026-11-02 9:15:30 UTC),
            event: Event::PayoutLine(PayoutLine {
                provider: "stripe".into(),
                payout_id: "po_1SfPayoutA11".into(),
                line_id: "txn_3SfChargeA001".into(),
                kind: PayoutLineKind::Charge,
                links: vec![
                    order("shopify:1001"),
                    payment("stripe", "pi_3SfIntentA001"),
                    payment("stripe", "ch_3SfChargeA001"),
                ],
                gross: money(10_000, "USD"),
                fee: money(320, "USD"),
                net: money(9_680, "USD"),
                at: datetime!(2026-11-02 9:15:30 UTC),
            }),
        }
    );
    let all = lines(&events);
    // A fee of no payment links nothing; a charge without metadata links
    // its payment only.
    assert_eq!(all[3].links, vec![]);
    assert_eq!(
        all[4].links,
        vec![
            payment("stripe", "pi_3SfIntentD005"),
            payment("stripe", "ch_3SfChargeD005"),
        ]
    );
    assert_eq!(all[2].at, datetime!(2026-11-04 8:30 UTC));
    assert!(all.iter().all(|l| l.payout_id == "po_1SfPayoutA11"));
}

/// The Adyen fixture, by hand (batch 57 of StorefoldShopEU, times in CET =
/// UTC+1, net currency EUR):
///
/// | line | type | gross | fee (commission+markup+scheme+interchange) | net |
/// |---|---|---|---|---|
/// | 2 | Settled | 120.00 EUR | 0.50+0.40+1.80 = 2.70 | 117.30 |
/// | 3 | Settled (paid in USD at 0.92) | 50.00 USD | 0.30+0.10+0.50 = 0.90 | 45.10 (= 46.00 − 0.90) |
/// | 4 | Refunded (part of line 2's payment) | −40.00 EUR | 0.12 | −40.12 |
/// | 5 | Chargeback | −80.00 EUR | 15.00 | −95.00 |
/// | 6 | Fee (monthly, no payment) | 0 | 12.50 | −12.50 |
/// | 7 | MerchantPayout | — | — | the payout: 14.78 |
///
/// 117.30 + 45.10 − 40.12 − 95.00 − 12.50 = 14.78, what the batch paid out.
#[test]
fn an_adyen_batch_is_lines_and_its_payout() {
    let body = fixture("adyen.settlement_details.csv");
    let (_, events) = deliver(ADYEN_SETTLEMENT_DETAILS, &body).unwrap();
    assert_eq!(
        figures(&events),
        [
            (
                "8816178952310001:Settled:8816178952318801".into(),
                PayoutLineKind::Charge,
                12_000,
                270,
                11_730
            ),
            (
                "8816178952310002:Settled:8816178952318802".into(),
                PayoutLineKind::Charge,
                5_000,
                90,
                4_510
            ),
            (
                "8816178952310001:Refunded:8816178952319902".into(),
                PayoutLineKind::Refund,
                -4_000,
                12,
                -4_012
            ),
            (
                "8816178952310003:Chargeback:8816178952319903".into(),
                PayoutLineKind::Dispute,
                -8_000,
                1_500,
                -9_500
            ),
            (
                "StorefoldShopEU:57:Fee:Transaction Fees October 2026".into(),
                PayoutLineKind::Fee,
                0,
                1_250,
                -1_250
            ),
        ]
    );
    let all = lines(&events);
    // Gross in the shopper's currency, fee and net in the payout's.
    assert_eq!(
        (all[1].gross, all[1].fee, all[1].net),
        (money(5_000, "USD"), money(90, "EUR"), money(4_510, "EUR"))
    );
    assert_eq!(
        *all[0],
        PayoutLine {
            provider: "adyen".into(),
            payout_id: "StorefoldShopEU:57".into(),
            line_id: "8816178952310001:Settled:8816178952318801".into(),
            kind: PayoutLineKind::Charge,
            // As the notifications link it: the merchant reference, then the
            // payment's PSP reference.
            links: vec![order("shopify:1001"), payment("adyen", "8816178952310001")],
            gross: money(12_000, "EUR"),
            fee: money(270, "EUR"),
            net: money(11_730, "EUR"),
            // 10:15 CET.
            at: datetime!(2026-11-02 9:15 UTC),
        }
    );
    // The refund links the payment it refunds.
    assert_eq!(all[2].links[1], payment("adyen", "8816178952310001"));
    assert_eq!(all[4].links, vec![]);
    let payout = events.last().unwrap();
    assert_eq!(payout.event_id, "settlement:adyen:payout:StorefoldShopEU:57");
    assert_eq!(
        payout.event,
        Event::PayoutUpdated(PayoutUpdated {
            provider: "adyen".into(),
            payout_id: "StorefoldShopEU:57".into(),
            amount: money(1_478, "EUR"),
            status: PayoutStatus::Paid,
            arrival: None,
            failure: None,
            at: datetime!(2026-11-06 7:00 UTC),
        })
    );
    let net: i64 = all.iter().map(|l| l.net.minor).sum();
    assert_eq!(net, 1_478);
    assert_eq!(
        events[3].event_id,
        "settlement:adyen:8816178952310003:Chargeback:8816178952319903"
    );
}

/// The tenant's options are read as the payment webhooks read them: Adyen's
/// merchant reference through its pattern and store, Stripe's metadata keys
/// in order.
#[test]
fn links_follow_the_tenants_payment_options() {
    let mut opts = MapOptions::for_stores(["shopify", "woocommerce"]);
    opts.adyen.pattern = Some(ReferencePattern::new(r"^(?P<order>\d+)$").unwrap());
    opts.adyen.store = Some("woocommerce".into());
    opts.stripe.fields = vec!["shop_order".into(), "order_id".into()];
    let (_, events) = deliver_with(
        opts.clone(),
        ADYEN_SETTLEMENT_DETAILS,
        &fixture("adyen.settlement_details.csv"),
    )
    .unwrap();
    assert_eq!(lines(&events)[0].links[0], order("woocommerce:1001"));
    let body = "automatic_payout_id,balance_transaction_id,created_utc,currency,gross,fee,net,\
reporting_category,charge_id,payment_intent_id,payment_metadata[shop_order],payment_metadata[order_id]\n\
po_1,txn_1,2026-11-02 09:00:00,eur,10.00,0.50,9.50,charge,ch_1,,,2001\n\
po_1,txn_2,2026-11-02 09:00:00,eur,10.00,0.50,9.50,charge,ch_2,pi_2,3001,2002\n";
    let (_, events) = deliver_with(opts, STRIPE_PAYOUT_RECONCILIATION, body.as_bytes()).unwrap();
    let all = lines(&events);
    assert_eq!(
        all[0].links,
        vec![order("shopify:2001"), payment("stripe", "ch_1")]
    );
    assert_eq!(
        all[1].links,
        vec![
            order("shopify:3001"),
            payment("stripe", "pi_2"),
            payment("stripe", "ch_2")
        ]
    );
}

/// A movement has the same event id in any file and any chunk of one, so
/// reports that overlap fold it once; the requests themselves differ.
#[test]
fn ids_do_not_depend_on_the_file() {
    let body = String::from_utf8(fixture("stripe.payout_reconciliation.csv")).unwrap();
    let all_lines: Vec<&str> = body.lines().collect();
    let header = all_lines[0];
    let first = format!("{header}\n{}\n", all_lines[1..3].join("\n"));
    let second = format!("{header}\n{}\n", all_lines[2..].join("\n"));
    let (whole_in, whole) = deliver(STRIPE_PAYOUT_RECONCILIATION, body.as_bytes()).unwrap();
    let (a_in, a) = deliver(STRIPE_PAYOUT_RECONCILIATION, first.as_bytes()).unwrap();
    let (b_in, b) = deliver(STRIPE_PAYOUT_RECONCILIATION, second.as_bytes()).unwrap();
    assert_ne!(a_in.event_id, whole_in.event_id);
    assert_ne!(a_in.event_id, b_in.event_id);
    let mut chunked: Vec<Envelope> = a.into_iter().chain(b).collect();
    // Line 3 is in both chunks: the same event twice.
    assert_eq!(chunked[1], chunked[2]);
    chunked.remove(2);
    assert_eq!(chunked, whole);
}

/// Columns are found by name: in any order, with others among them.
#[test]
fn columns_in_any_order() {
    let body = String::from_utf8(fixture("adyen.settlement_details.csv")).unwrap();
    let reversed: String = body
        .lines()
        .map(|l| {
            // No field of the fixture is quoted.
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.reverse();
            cells.push("ignored");
            cells.join(",") + "\n"
        })
        .collect();
    let (_, a) = deliver(ADYEN_SETTLEMENT_DETAILS, body.as_bytes()).unwrap();
    let (_, b) = deliver(ADYEN_SETTLEMENT_DETAILS, reversed.as_bytes()).unwrap();
    assert_eq!(a, b);
}

/// The customer's email, name and address columns never reach an event.
#[test]
fn personal_columns_are_not_carried() {
    let (_, events) = deliver(
        STRIPE_PAYOUT_RECONCILIATION,
        &fixture("stripe.payout_reconciliation.csv"),
    )
    .unwrap();
    let text = serde_json::to_string(&events).unwrap();
    for personal in ["ana.lima", "Ana Lima", "Rua Nova", "Lisboa", "cus_SfBuyer01", "Bo Berg"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
}

#[test]
fn a_bad_row_refuses_the_whole_body_naming_line_and_column() {
    let stripe_head = "automatic_payout_id,balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category";
    let ok = "po_1,txn_1,2026-11-02 09:00:00,usd,10.00,0.50,9.50,charge";
    for (row, expected) in [
        (
            "po_1,txn_2,2026-11-02 09:00:00,usd,10.005,0.50,9.505,charge",
            "invalid field line 3: gross: more decimals than USD allows (2)",
        ),
        (
            "po_1,txn_2,2026-11-02 09:00:00,usd,10.00,0.50,9.00,charge",
            "invalid field line 3: net: is not gross − fee",
        ),
        (
            "po_1,txn_2,02/11/2026,usd,10.00,0.50,9.50,charge",
            "invalid field line 3: created_utc: expected a time as YYYY-MM-DD HH:MM:SS",
        ),
        (
            ",txn_2,2026-11-02 09:00:00,usd,10.00,0.50,9.50,charge",
            "missing field line 3: automatic_payout_id",
        ),
        (
            "po_1,txn_2,2026-11-02 09:00:00,dollars,10.00,0.50,9.50,charge",
            "invalid field line 3: currency: unknown currency code",
        ),
        (
            "po_1,txn_2,2026-11-02 09:00:00,usd,1e3,0.50,999.50,charge",
            "invalid field line 3: gross: not a decimal amount (digits with an optional '.' and \
             fraction)",
        ),
        (
            "po_1,txn_1,2026-11-02 09:00:00,usd,10.00,0.50,9.50,charge",
            "invalid field line 3: the same movement as line 2",
        ),
        (
            "po_1,txn_2,\"2026-11-02 09:00:00,usd,10.00,0.50,9.50,charge",
            "invalid field line 3: not CSV: a quoted field is not closed",
        ),
    ] {
        assert_eq!(
            refusal(STRIPE_PAYOUT_RECONCILIATION, &format!("{stripe_head}\n{ok}\n{row}\n{ok}2\n")),
            expected,
            "{row}"
        );
    }
    assert_eq!(
        refusal(STRIPE_PAYOUT_RECONCILIATION, "automatic_payout_id,gross\npo_1,1.00\n"),
        "missing field column balance_transaction_id (the header line has none)"
    );
    assert_eq!(
        refusal(STRIPE_PAYOUT_RECONCILIATION, "\n\n"),
        "missing field line 1: the header line"
    );
    // Adyen: an unknown or ambiguous zone, and a wrong number.
    let adyen = String::from_utf8(fixture("adyen.settlement_details.csv")).unwrap();
    assert_eq!(
        refusal(ADYEN_SETTLEMENT_DETAILS, &adyen.replacen(",CET,Refunded,", ",IST,Refunded,", 1)),
        "invalid field line 4: TimeZone: not a time zone storefold knows"
    );
    assert_eq!(
        refusal(ADYEN_SETTLEMENT_DETAILS, &adyen.replacen(",15.00,", ",15.0O,", 1)),
        "invalid field line 5: Commission (NC): not a decimal amount (digits with an optional \
         '.' and fraction)"
    );
    assert_eq!(
        refusal(ADYEN_SETTLEMENT_DETAILS, &adyen.replacen(",EUR,12.50,", ",,12.50,", 1)),
        "missing field line 6: Net Currency"
    );
    assert!(
        refusal(ADYEN_SETTLEMENT_DETAILS, &adyen.replacen(",40.12,", ",40.1x,", 1))
            .starts_with("invalid field line 4: Net Debit (NC)"),
    );
    // Not UTF-8 on the third line.
    let mut body = format!("{stripe_head}\n{ok}\n").into_bytes();
    body.extend_from_slice(b"po_1,txn_\xff,2026-11-02 09:00:00,usd,1.00,0,1.00,charge\n");
    assert_eq!(
        deliver(STRIPE_PAYOUT_RECONCILIATION, &body)
            .unwrap_err()
            .to_string(),
        "invalid field line 3: not UTF-8 text"
    );
}

#[test]
fn errors_name_no_value() {
    let text = refusal(
        STRIPE_PAYOUT_RECONCILIATION,
        "automatic_payout_id,balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category\n\
         po_1,txn_1,2026-11-02 09:00:00,jane@example.com,jane@example.com,0,1,charge\n",
    );
    assert!(text.starts_with("invalid field line 2"), "{text}");
    assert!(!text.contains("jane"), "{text}");
}

/// The report's format is signed with the body: a body cannot be replayed
/// as another report; a format storefold does not read is refused at the
/// ingest, as is a request without one.
#[test]
fn the_format_is_signed_and_checked() {
    let body = fixture("stripe.payout_reconciliation.csv");
    let t = NOW.unix_timestamp();
    let sig = signature_header(SECRET, t, STRIPE_PAYOUT_RECONCILIATION, &body);
    let check = |topic: &str| {
        let headers = Headers::from_pairs([
            ("X-Storefold-Signature", sig.as_str()),
            ("X-Storefold-Timestamp", &t.to_string()),
            (TOPIC_HEADER, topic),
        ]);
        ProviderKind::Settlement.verify(
            &Credentials::new(SECRET),
            &WebhookRequest {
                headers: &headers,
                body: &body,
                url_token: None,
            },
            NOW,
        )
    };
    assert_eq!(check(STRIPE_PAYOUT_RECONCILIATION), Ok(()));
    assert_eq!(check(ADYEN_SETTLEMENT_DETAILS), Err(VerifyError::Mismatch));
    let describe = |headers: &[(&str, &str)]| {
        let headers = Headers::from_pairs(headers.iter().copied());
        ProviderKind::Settlement.describe(&WebhookRequest {
            headers: &headers,
            body: &body,
            url_token: None,
        })
    };
    assert_eq!(
        describe(&[(TOPIC_HEADER, "paypal.settlement")]),
        Err(MapError::UnsupportedTopic("paypal.settlement".into()))
    );
    assert_eq!(
        describe(&[]),
        Err(MapError::MissingHeader(TOPIC_HEADER))
    );
    // Signed by `sign` as `storefold settlement load` signs it.
    let signed = ProviderKind::Settlement
        .sign(SECRET, ADYEN_SETTLEMENT_DETAILS, &body, NOW)
        .unwrap();
    let headers = Headers::from_pairs(signed.headers);
    assert_eq!(headers.get(TOPIC_HEADER), Some(ADYEN_SETTLEMENT_DETAILS));
    assert_eq!(
        ProviderKind::Settlement.verify(
            &Credentials::new(SECRET),
            &WebhookRequest {
                headers: &headers,
                body: &body,
                url_token: None,
            },
            NOW + time::Duration::seconds(301),
        ),
        Err(VerifyError::Expired {
            tolerance_secs: 300
        })
    );
}
