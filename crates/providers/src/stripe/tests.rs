//! Stripe: signature checks, our own fixtures (one per mapped event type, signed
//! here with a known secret) and the conformance corpus of real payloads.

use serde_json::{Value, json};
use storefold_core::event::{
    Dispute, DisputeMovement, DisputeStatus, OrderLink, Payment, PaymentStatus, Refund,
    RefundStatus,
};
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::OffsetDateTime;

use crate::test_support::Harness;
use crate::test_support::{self, conformance_dir, json_file_names, read_json};
use crate::{
    Credentials, Headers, MapContext, MapOptions, ProviderKind, RawInput, VerifyError,
    WebhookRequest,
};

const SECRET: &str = "whsec_storefold_test_5f1c0a9e3b7d4e21";

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::from_code("USD").unwrap())
}

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("stripe", &format!("{name}.json"))
}

fn request<'a>(headers: &'a Headers, body: &'a [u8]) -> WebhookRequest<'a> {
    WebhookRequest {
        headers,
        body,
        url_token: None,
    }
}

fn signed_headers(secret: &str, body: &[u8], now: OffsetDateTime) -> Headers {
    let signed = ProviderKind::Stripe.sign(secret, "", body, now).unwrap();
    assert_eq!(signed.body, body);
    Headers::from_pairs(signed.headers)
}

fn verify_with(header: &str, body: &[u8], now: OffsetDateTime) -> Result<(), VerifyError> {
    let headers = Headers::from_pairs([("Stripe-Signature", header)]);
    ProviderKind::Stripe.verify(&Credentials::new(SECRET), &request(&headers, body), now)
}

fn map_options() -> MapOptions {
    MapOptions::default()
}

/// Signs `body` as Stripe would, verifies it, describes it and maps it.
fn signed_map(body: &[u8]) -> Vec<Envelope> {
    let bench = Harness::new(ProviderKind::Stripe, SECRET, at(1_767_000_000))
        .tenant("acme")
        .options(map_options());
    let delivery = bench.receive("", body).expect("describe");
    assert!(delivery.kept.get("stripe-signature").is_some());
    bench.map(&delivery).expect("map")
}

fn map_fixture(name: &str) -> Vec<Envelope> {
    signed_map(&fixture(name))
}

fn envelope(event_id: &str, secs: i64, event: Event) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        provider: "stripe".into(),
        event_id: event_id.into(),
        occurred_at: at(secs),
        event,
    }
}

fn pay_link(reference: &str) -> OrderLink {
    OrderLink::Payment {
        provider: "stripe".into(),
        reference: reference.into(),
    }
}

fn order_link(id: &str) -> OrderLink {
    OrderLink::Order {
        order_id: id.into(),
    }
}

fn jane() -> Identity {
    Identity::default()
        .with_email(Some("jane.doe@example.com"))
        .with_phone(Some("+16135550123"), None)
        .with_external("stripe", "cus_QsfJane01")
}

fn links_1() -> Vec<OrderLink> {
    vec![
        order_link("shopify:5123000001"),
        pay_link("pi_3QsfPi0001"),
        pay_link("ch_3QsfCh0001"),
    ]
}

/// The payment of `pi_3QsfPi0001` (12999 USD, captured in full when it succeeded).
fn payment_1(status: PaymentStatus, secs: i64) -> Payment {
    Payment {
        provider: "stripe".into(),
        payment_id: "pi_3QsfPi0001".into(),
        links: links_1(),
        status,
        amount: usd(12999),
        fee: None,
        net: None,
        amount_refunded: Some(usd(0)),
        method: Some("card".into()),
        failure_reason: None,
        payer: jane(),
        at: at(secs),
        captured: (status == PaymentStatus::Succeeded).then(|| usd(12999)),
        capture_id: None,
        auto_capture: false,
    }
}

// ---------------------------------------------------------------- signatures

#[test]
fn verifies_a_signed_fixture_and_rejects_the_wrong_secret() {
    let body = fixture("charge.succeeded");
    let now = at(1_767_000_000);
    let headers = signed_headers(SECRET, &body, now);
    let req = request(&headers, &body);
    assert_eq!(
        ProviderKind::Stripe.verify(&Credentials::new(SECRET), &req, now),
        Ok(())
    );
    assert_eq!(
        ProviderKind::Stripe.verify(&Credentials::new("whsec_someone_else"), &req, now),
        Err(VerifyError::Mismatch)
    );
    // The key is the whole secret string, prefix included.
    let bare = SECRET.trim_start_matches("whsec_");
    assert_eq!(
        ProviderKind::Stripe.verify(&Credentials::new(bare), &req, now),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        ProviderKind::Stripe.verify(&Credentials::new(""), &req, now),
        Err(VerifyError::BadCredentials(_))
    ));
}

#[test]
fn a_tampered_body_does_not_verify() {
    let body = fixture("charge.refunded");
    let now = at(1_767_000_000);
    let headers = signed_headers(SECRET, &body, now);
    let tampered = String::from_utf8(body)
        .unwrap()
        .replace("\"amount_refunded\": 3000", "\"amount_refunded\": 30")
        .into_bytes();
    assert_eq!(
        ProviderKind::Stripe.verify(
            &Credentials::new(SECRET),
            &request(&headers, &tampered),
            now
        ),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn timestamps_outside_five_minutes_are_expired() {
    let body = br#"{"id":"evt_1","type":"charge.succeeded","created":1}"#;
    let t = 1_767_000_000;
    let header = crate::stripe::signature_header(SECRET, t, body);
    assert_eq!(verify_with(&header, body, at(t + 300)), Ok(()));
    assert_eq!(verify_with(&header, body, at(t - 300)), Ok(()));
    let expired = Err(VerifyError::Expired {
        tolerance_secs: 300,
    });
    assert_eq!(verify_with(&header, body, at(t + 301)), expired);
    assert_eq!(verify_with(&header, body, at(t - 301)), expired);
    // A valid signature over an old timestamp is still a replay; a bad one is a mismatch.
    let wrong = crate::stripe::signature_header("whsec_other", t, body);
    assert_eq!(
        verify_with(&wrong, body, at(t + 3600)),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn any_v1_may_match_during_secret_rotation() {
    let body = fixture("payment_intent.succeeded");
    let t = 1_767_000_000;
    let old = crate::stripe::signature_header("whsec_old_secret", t, &body);
    let new = crate::stripe::signature_header(SECRET, t, &body);
    let old_sig = old.split_once(",v1=").unwrap().1;
    let new_sig = new.split_once(",v1=").unwrap().1;
    let header = format!("t={t},v1={old_sig},v1={new_sig},v0={}", "ab".repeat(32));
    assert_eq!(verify_with(&header, &body, at(t)), Ok(()));
    let header = format!("t={t}, v1={new_sig}, v1={old_sig}");
    assert_eq!(verify_with(&header, &body, at(t)), Ok(()));
    let header = format!("t={t},v1={old_sig},v1={old_sig}");
    assert_eq!(
        verify_with(&header, &body, at(t)),
        Err(VerifyError::Mismatch)
    );
    // A v0 alone is not a signature storefold accepts.
    let header = format!("t={t},v0={new_sig}");
    assert!(matches!(
        verify_with(&header, &body, at(t)),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

#[test]
fn garbled_headers_are_malformed_and_a_missing_one_is_missing() {
    let body = b"{}";
    let t = 1_767_000_000;
    let sig = "0".repeat(64);
    for garbled in [
        String::new(),
        "garbage".to_string(),
        format!("v1={sig}"),
        format!("t={t}"),
        format!("t=abc,v1={sig}"),
        format!("t=-5,v1={sig}"),
        format!("t={t},t={t},v1={sig}"),
        format!("t={t},v1=not-hex"),
        format!("t={t},v1=abcd"),
        format!("t={t};v1={sig}"),
    ] {
        assert!(
            matches!(
                verify_with(&garbled, body, at(t)),
                Err(VerifyError::MalformedHeader {
                    header: "Stripe-Signature",
                    ..
                })
            ),
            "{garbled:?} should be malformed"
        );
    }
    let none = Headers::new();
    assert_eq!(
        ProviderKind::Stripe.verify(&Credentials::new(SECRET), &request(&none, body), at(t)),
        Err(VerifyError::MissingHeader("Stripe-Signature"))
    );
}

#[test]
fn sign_produces_the_header_stripe_sends() {
    let body = br#"{"id":"evt_x"}"#;
    let signed = ProviderKind::Stripe
        .sign(SECRET, "charge.succeeded", body, at(1_700_000_000))
        .unwrap();
    assert_eq!(signed.headers.len(), 1);
    let (name, value) = &signed.headers[0];
    assert_eq!(name, "Stripe-Signature");
    let expected = hex::encode(crate::hmac_sha256(
        SECRET.as_bytes(),
        &[b"1700000000.", body],
    ));
    assert_eq!(value, &format!("t=1700000000,v1={expected}"));
    assert!(ProviderKind::Stripe.sign("", "", body, at(0)).is_err());
}

#[test]
fn describe_reads_type_id_and_created() {
    let body = fixture("charge.dispute.created");
    let headers = Headers::new();
    let inbound = ProviderKind::Stripe
        .describe(&request(&headers, &body))
        .unwrap();
    assert_eq!(inbound.topic, "charge.dispute.created");
    assert_eq!(inbound.event_id, "evt_3QsfEv0011");
    assert_eq!(inbound.occurred_at, Some(at(1_767_500_001)));
    assert!(
        ProviderKind::Stripe
            .describe(&request(&headers, b"not json"))
            .is_err()
    );
    assert!(
        ProviderKind::Stripe
            .describe(&request(&headers, br#"{"id":"evt_1"}"#))
            .is_err()
    );
}

// ---------------------------------------------------------------- our fixtures

#[test]
fn payment_intent_succeeded_carries_fees_from_the_expanded_charge() {
    let mut p = payment_1(PaymentStatus::Succeeded, 1_767_000_005);
    p.fee = Some(usd(407));
    p.net = Some(usd(12592));
    assert_eq!(
        map_fixture("payment_intent.succeeded"),
        vec![envelope(
            "evt_3QsfEv0001",
            1_767_000_005,
            Event::PaymentSucceeded(p)
        )]
    );
}

#[test]
fn charge_succeeded_has_the_payment_intent_id_and_unknown_fees() {
    let envs = map_fixture("charge.succeeded");
    assert_eq!(
        envs,
        vec![envelope(
            "evt_3QsfEv0002",
            1_767_000_004,
            Event::PaymentSucceeded(payment_1(PaymentStatus::Succeeded, 1_767_000_004))
        )]
    );
    // Same payment as payment_intent.succeeded.
    let Event::PaymentSucceeded(p) = &map_fixture("payment_intent.succeeded")[0].event else {
        panic!("not a payment");
    };
    let Event::PaymentSucceeded(c) = &envs[0].event else {
        panic!("not a payment");
    };
    assert_eq!(p.payment_id, c.payment_id);
}

#[test]
fn charge_updated_restates_a_paid_charge_with_its_balance_transaction() {
    let mut p = payment_1(PaymentStatus::Succeeded, 1_767_000_060);
    p.fee = Some(usd(407));
    p.net = Some(usd(12592));
    assert_eq!(
        map_fixture("charge.updated"),
        vec![envelope(
            "evt_3QsfEv0003",
            1_767_000_060,
            Event::PaymentSucceeded(p)
        )]
    );
    // A pending charge's update says nothing yet.
    let mut body: Value = serde_json::from_slice(&fixture("charge.updated")).unwrap();
    body["data"]["object"]["status"] = json!("pending");
    assert_eq!(signed_map(body.to_string().as_bytes()), vec![]);
}

fn failed_links() -> Vec<OrderLink> {
    vec![
        order_link("shopify:5123000002"),
        pay_link("pi_3QsfPi0002"),
        pay_link("ch_3QsfCh0002"),
    ]
}

#[test]
fn charge_failed_is_a_failed_payment_with_its_reason() {
    assert_eq!(
        map_fixture("charge.failed"),
        vec![envelope(
            "evt_3QsfEv0004",
            1_767_100_000,
            Event::PaymentFailed(Payment {
                provider: "stripe".into(),
                payment_id: "pi_3QsfPi0002".into(),
                links: failed_links(),
                status: PaymentStatus::Failed,
                amount: usd(4500),
                fee: None,
                net: None,
                amount_refunded: Some(usd(0)),
                method: Some("card".into()),
                failure_reason: Some("card_declined".into()),
                payer: Identity::default().with_email(Some("buyer2@example.net")),
                at: at(1_767_100_000),
                captured: None,
                capture_id: None,
                auto_capture: false,
            })
        )]
    );
}

#[test]
fn payment_intent_payment_failed_matches_the_failed_charge() {
    assert_eq!(
        map_fixture("payment_intent.payment_failed"),
        vec![envelope(
            "evt_3QsfEv0005",
            1_767_100_001,
            Event::PaymentFailed(Payment {
                provider: "stripe".into(),
                payment_id: "pi_3QsfPi0002".into(),
                links: failed_links(),
                status: PaymentStatus::Failed,
                amount: usd(4500),
                fee: None,
                net: None,
                amount_refunded: None,
                method: Some("card".into()),
                failure_reason: Some("card_declined".into()),
                payer: Identity::default().with_email(Some("buyer2@example.net")),
                at: at(1_767_100_001),
                captured: None,
                capture_id: None,
                auto_capture: false,
            })
        )]
    );
}

#[test]
fn charge_refunded_yields_the_payment_and_each_refund() {
    let mut p = payment_1(PaymentStatus::Succeeded, 1_767_200_000);
    p.amount_refunded = Some(usd(3000));
    assert_eq!(
        map_fixture("charge.refunded"),
        vec![
            envelope(
                "evt_3QsfEv0006#payment",
                1_767_200_000,
                Event::PaymentSucceeded(p)
            ),
            envelope(
                "evt_3QsfEv0006#refund:re_3QsfRe0001",
                1_767_200_000,
                Event::RefundIssued(Refund {
                    provider: "stripe".into(),
                    refund_id: "re_3QsfRe0001".into(),
                    payment_id: Some("pi_3QsfPi0001".into()),
                    links: links_1(),
                    amount: usd(3000),
                    status: RefundStatus::Succeeded,
                    reason: Some("requested_by_customer".into()),
                    lines: vec![],
                    adjustments: None,
                    at: at(1_767_200_000),
                    // Stripe's `created` of the refund, before the event.
                    created_at: Some(at(1_767_199_990)),
                    gateway: None,
                })
            ),
        ]
    );
}

/// A refund of `pi_3QsfPi0001`; `created` is Stripe's creation time of it.
fn refund(id: &str, minor: i64, status: RefundStatus, secs: i64, created: i64) -> Refund {
    Refund {
        provider: "stripe".into(),
        refund_id: id.into(),
        payment_id: Some("pi_3QsfPi0001".into()),
        links: vec![pay_link("pi_3QsfPi0001"), pay_link("ch_3QsfCh0001")],
        amount: usd(minor),
        status,
        reason: None,
        lines: vec![],
        adjustments: None,
        at: at(secs),
        created_at: Some(at(created)),
        gateway: None,
    }
}

#[test]
fn refund_events_map_to_refunds_with_their_status() {
    let mut r = refund(
        "re_3QsfRe0001",
        3000,
        RefundStatus::Succeeded,
        1_767_200_100,
        1_767_199_990,
    );
    r.reason = Some("requested_by_customer".into());
    assert_eq!(
        map_fixture("charge.refund.updated"),
        vec![envelope(
            "evt_3QsfEv0007",
            1_767_200_100,
            Event::RefundIssued(r)
        )]
    );

    // Expanded charge: its metadata names the order, its payment intent the payment.
    let mut r = refund(
        "re_3QsfRe0002",
        9999,
        RefundStatus::Pending,
        1_767_300_000,
        1_767_300_000,
    );
    r.links = links_1();
    assert_eq!(
        map_fixture("refund.created"),
        vec![envelope(
            "evt_3QsfEv0008",
            1_767_300_000,
            Event::RefundIssued(r)
        )]
    );

    let mut r = refund(
        "re_3QsfRe0002",
        9999,
        RefundStatus::Succeeded,
        1_767_300_500,
        1_767_300_000,
    );
    r.reason = Some("duplicate".into());
    assert_eq!(
        map_fixture("refund.updated"),
        vec![envelope(
            "evt_3QsfEv0009",
            1_767_300_500,
            Event::RefundIssued(r)
        )]
    );

    // Failed a day after it was created: still created then.
    let mut r = refund(
        "re_3QsfRe0002",
        9999,
        RefundStatus::Failed,
        1_767_400_000,
        1_767_300_000,
    );
    r.reason = Some("expired_or_canceled_card".into());
    assert_eq!(
        map_fixture("refund.failed"),
        vec![envelope(
            "evt_3QsfEv0010",
            1_767_400_000,
            Event::RefundIssued(r)
        )]
    );
}

fn dispute(id: &str, status: DisputeStatus, secs: i64) -> Dispute {
    Dispute {
        provider: "stripe".into(),
        dispute_id: id.into(),
        payment_id: Some("pi_3QsfPi0001".into()),
        links: vec![pay_link("pi_3QsfPi0001"), pay_link("ch_3QsfCh0001")],
        amount: usd(12999),
        status,
        reason: Some("fraudulent".into()),
        funds_withdrawn: false,
        funds_reinstated: false,
        at: at(secs),
        movements: vec![],
    }
}

#[test]
fn dispute_lifecycle_maps_statuses_and_fund_moves() {
    let mut d = dispute("du_3QsfDu0001", DisputeStatus::Inquiry, 1_767_500_001);
    d.reason = Some("product_not_received".into());
    assert_eq!(
        map_fixture("charge.dispute.created"),
        vec![envelope(
            "evt_3QsfEv0011",
            1_767_500_001,
            Event::DisputeOpened(d.clone())
        )]
    );
    d.at = at(1_767_600_000);
    assert_eq!(
        map_fixture("charge.dispute.updated"),
        vec![envelope(
            "evt_3QsfEv0012",
            1_767_600_000,
            Event::DisputeOpened(d)
        )]
    );

    // The withdrawal's balance transaction: the disputed amount taken, with
    // Stripe's dispute fee, in the settlement currency.
    let withdrawal = DisputeMovement {
        id: "txn_3QsfBt0003".into(),
        amount: usd(-12999),
        fee: Some(usd(1500)),
        at: at(1_767_700_000),
    };
    let mut d = dispute("du_3QsfDu0002", DisputeStatus::NeedsResponse, 1_767_700_000);
    d.funds_withdrawn = true;
    d.movements = vec![withdrawal.clone()];
    assert_eq!(
        map_fixture("charge.dispute.funds_withdrawn"),
        vec![envelope(
            "evt_3QsfEv0013",
            1_767_700_000,
            Event::DisputeOpened(d.clone())
        )]
    );
    d.status = DisputeStatus::Lost;
    d.at = at(1_768_400_000);
    assert_eq!(
        map_fixture("charge.dispute.closed"),
        vec![envelope(
            "evt_3QsfEv0014",
            1_768_400_000,
            Event::DisputeClosed(d)
        )]
    );

    // No payment intent: the charge is the payment.
    let mut d = dispute("du_3QsfDu0003", DisputeStatus::Won, 1_768_500_000);
    d.payment_id = Some("ch_3QsfCh0009".into());
    d.links = vec![pay_link("ch_3QsfCh0009")];
    d.funds_withdrawn = true;
    d.funds_reinstated = true;
    d.movements = vec![
        withdrawal,
        DisputeMovement {
            id: "txn_3QsfBt0004".into(),
            amount: usd(12999),
            fee: Some(usd(-1500)),
            at: at(1_768_500_000),
        },
    ];
    assert_eq!(
        map_fixture("charge.dispute.funds_reinstated"),
        vec![envelope(
            "evt_3QsfEv0015",
            1_768_500_000,
            Event::DisputeClosed(d)
        )]
    );
}

#[test]
fn every_stripe_dispute_status_has_a_place() {
    use crate::stripe::map::dispute_status;
    let cases = [
        ("warning_needs_response", DisputeStatus::Inquiry),
        ("warning_under_review", DisputeStatus::Inquiry),
        ("warning_closed", DisputeStatus::WarningClosed),
        ("needs_response", DisputeStatus::NeedsResponse),
        ("under_review", DisputeStatus::UnderReview),
        ("won", DisputeStatus::Won),
        ("lost", DisputeStatus::Lost),
        ("prevented", DisputeStatus::WarningClosed),
        // Closed by the merchant's refund: the refund is the money, not a loss.
        ("charge_refunded", DisputeStatus::MerchantRefunded),
    ];
    for (stripe, ours) in cases {
        assert_eq!(dispute_status(stripe), Ok(ours), "{stripe}");
    }
    assert!(dispute_status("bogus").is_err());
}

#[test]
fn funds_reinstated_on_an_open_dispute_stays_open() {
    let mut body: Value =
        serde_json::from_slice(&fixture("charge.dispute.funds_reinstated")).unwrap();
    body["data"]["object"]["status"] = json!("under_review");
    let envs = signed_map(body.to_string().as_bytes());
    let Event::DisputeOpened(d) = &envs[0].event else {
        panic!("expected an open dispute: {envs:?}");
    };
    assert_eq!(d.status, DisputeStatus::UnderReview);
    assert!(d.funds_reinstated);
}

#[test]
fn an_uncaptured_charge_is_only_authorised() {
    let mut body: Value = serde_json::from_slice(&fixture("charge.succeeded")).unwrap();
    body["data"]["object"]["captured"] = json!(false);
    body["data"]["object"]["amount_captured"] = json!(0);
    let envs = signed_map(body.to_string().as_bytes());
    assert_eq!(
        envs[0].event,
        Event::PaymentSucceeded(payment_1(PaymentStatus::Authorized, 1_767_000_004))
    );
}

#[test]
fn releasing_an_uncaptured_charge_cancels_it_without_refunds() {
    let mut body: Value = serde_json::from_slice(&fixture("charge.refunded")).unwrap();
    body["data"]["object"]["captured"] = json!(false);
    body["data"]["object"]["amount_captured"] = json!(0);
    body["data"]["object"]["amount_refunded"] = json!(12999);
    // Stripe reports the release as refunded, but none of it was captured: the
    // refunded part of the captured money is 0.
    let p = payment_1(PaymentStatus::Cancelled, 1_767_200_000);
    assert_eq!(
        signed_map(body.to_string().as_bytes()),
        vec![envelope(
            "evt_3QsfEv0006#payment",
            1_767_200_000,
            Event::PaymentFailed(p)
        )]
    );
}

#[test]
fn an_expired_uncaptured_charge_is_cancelled() {
    let mut body: Value = serde_json::from_slice(&fixture("charge.succeeded")).unwrap();
    body["type"] = json!("charge.expired");
    let charge = &mut body["data"]["object"];
    charge["captured"] = json!(false);
    charge["amount_captured"] = json!(0);
    charge["amount_refunded"] = json!(12999);
    charge["refunded"] = json!(true);
    assert_eq!(
        signed_map(body.to_string().as_bytes()),
        vec![envelope(
            "evt_3QsfEv0002",
            1_767_000_004,
            Event::PaymentFailed(payment_1(PaymentStatus::Cancelled, 1_767_000_004))
        )]
    );
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::from_code("EUR").unwrap())
}

fn links_3() -> Vec<OrderLink> {
    vec![
        order_link("shopify:5123000003"),
        pay_link("pi_3QsfPi0003"),
        pay_link("ch_3QsfCh0003"),
    ]
}

/// A payment of `pi_3QsfPi0003`: 1000 EUR authorised (manual capture).
fn payment_3(status: PaymentStatus, minor: i64, secs: i64) -> Payment {
    Payment {
        provider: "stripe".into(),
        payment_id: "pi_3QsfPi0003".into(),
        links: links_3(),
        status,
        amount: eur(minor),
        fee: None,
        net: None,
        amount_refunded: None,
        method: Some("card".into()),
        failure_reason: None,
        payer: Identity::default().with_email(Some("paul.martin@example.fr")),
        at: at(secs),
        captured: None,
        capture_id: None,
        auto_capture: false,
    }
}

fn refund_3(id: &str, minor: i64, secs: i64, created: i64) -> Refund {
    Refund {
        provider: "stripe".into(),
        refund_id: id.into(),
        payment_id: Some("pi_3QsfPi0003".into()),
        links: links_3(),
        amount: eur(minor),
        status: RefundStatus::Succeeded,
        reason: None,
        lines: vec![],
        adjustments: None,
        at: at(secs),
        created_at: Some(at(created)),
        gateway: None,
    }
}

#[test]
fn a_partial_capture_brings_what_was_captured_and_releases_the_rest() {
    // 1000 EUR authorised with manual capture.
    let mut held = payment_3(PaymentStatus::Authorized, 1000, 1_767_800_000);
    held.payer = Identity::default();
    assert_eq!(
        map_fixture("partial_capture.amount_capturable_updated"),
        vec![envelope(
            "evt_3QsfEv0020",
            1_767_800_000,
            Event::PaymentSucceeded(held)
        )]
    );

    // 600 captured of the 1000 authorised (`amount` stays what was authorised);
    // Stripe refunds the uncaptured 400 by itself, which is in amount_refunded
    // and listed as a refund created at the capture.
    let mut captured = payment_3(PaymentStatus::Succeeded, 1000, 1_767_900_000);
    captured.captured = Some(eur(600));
    captured.amount_refunded = Some(eur(0));
    let mut release = refund_3("re_3QsfRe0003", 400, 1_767_900_000, 1_767_900_000);
    assert_eq!(
        map_fixture("partial_capture.charge.captured"),
        vec![
            envelope(
                "evt_3QsfEv0021",
                1_767_900_000,
                Event::PaymentSucceeded(captured)
            ),
            envelope(
                "evt_3QsfEv0021#refund:re_3QsfRe0003",
                1_767_900_000,
                Event::RefundIssued(release.clone())
            ),
        ]
    );

    // The payment intent asked for 1000 and received 600.
    let mut received = payment_3(PaymentStatus::Succeeded, 1000, 1_767_900_001);
    received.payer = Identity::default();
    received.captured = Some(eur(600));
    assert_eq!(
        map_fixture("partial_capture.payment_intent.succeeded"),
        vec![envelope(
            "evt_3QsfEv0022",
            1_767_900_001,
            Event::PaymentSucceeded(received)
        )]
    );

    // The release's own refund object: the same refund, created at the capture.
    release.at = at(1_767_900_001);
    release.links = vec![pay_link("pi_3QsfPi0003"), pay_link("ch_3QsfCh0003")];
    assert_eq!(
        map_fixture("partial_capture.refund.created"),
        vec![envelope(
            "evt_3QsfEv0023",
            1_767_900_001,
            Event::RefundIssued(release)
        )]
    );

    // A real refund of 100 later: amount_refunded 500 is 100 of the captured money.
    let mut refunded = payment_3(PaymentStatus::Succeeded, 1000, 1_768_000_000);
    refunded.captured = Some(eur(600));
    refunded.amount_refunded = Some(eur(100));
    let mut later = refund_3("re_3QsfRe0005", 100, 1_768_000_000, 1_768_000_000);
    later.reason = Some("requested_by_customer".into());
    assert_eq!(
        map_fixture("partial_capture.charge.refunded"),
        vec![
            envelope(
                "evt_3QsfEv0024#payment",
                1_768_000_000,
                Event::PaymentSucceeded(refunded)
            ),
            envelope(
                "evt_3QsfEv0024#refund:re_3QsfRe0005",
                1_768_000_000,
                Event::RefundIssued(later)
            ),
            envelope(
                "evt_3QsfEv0024#refund:re_3QsfRe0003",
                1_768_000_000,
                Event::RefundIssued(refund_3("re_3QsfRe0003", 400, 1_768_000_000, 1_767_900_000))
            ),
        ]
    );
}

#[test]
fn a_refund_that_fails_keeps_its_creation_time() {
    // Created pending, succeeded, then failed a day later (refund.failed and
    // charge.refund.updated both say so): one refund, created once.
    let seen: Vec<(RefundStatus, OffsetDateTime, Option<OffsetDateTime>)> = [
        "refund.created",
        "refund.updated",
        "refund.failed",
        "refund_failed.charge.refund.updated",
    ]
    .into_iter()
    .map(|name| {
        let envs = map_fixture(name);
        let Event::RefundIssued(r) = only(&envs) else {
            panic!("not a refund: {envs:?}")
        };
        assert_eq!(r.refund_id, "re_3QsfRe0002");
        assert_eq!(r.payment_id.as_deref(), Some("pi_3QsfPi0001"));
        assert_eq!(r.amount, usd(9999));
        (r.status, r.at, r.created_at)
    })
    .collect();
    let created = Some(at(1_767_300_000));
    assert_eq!(
        seen,
        vec![
            (RefundStatus::Pending, at(1_767_300_000), created),
            (RefundStatus::Succeeded, at(1_767_300_500), created),
            (RefundStatus::Failed, at(1_767_400_000), created),
            (RefundStatus::Failed, at(1_767_400_001), created),
        ]
    );
    let Event::RefundIssued(r) = only(&map_fixture("refund_failed.charge.refund.updated")).clone()
    else {
        unreachable!()
    };
    assert_eq!(r.reason.as_deref(), Some("lost_or_stolen_card"));
}

#[test]
fn an_inquiry_closed_by_the_merchants_refund_is_not_a_loss() {
    let links = vec![pay_link("pi_3QsfPi0004"), pay_link("ch_3QsfCh0004")];
    let inquiry = |status, secs| Dispute {
        provider: "stripe".into(),
        dispute_id: "du_3QsfDu0004".into(),
        payment_id: Some("pi_3QsfPi0004".into()),
        links: links.clone(),
        amount: usd(4200),
        status,
        reason: Some("product_unacceptable".into()),
        funds_withdrawn: false,
        funds_reinstated: false,
        at: at(secs),
        movements: vec![],
    };
    assert_eq!(
        map_fixture("inquiry_refunded.charge.dispute.created"),
        vec![envelope(
            "evt_3QsfEv0030",
            1_768_100_000,
            Event::DisputeOpened(inquiry(DisputeStatus::Inquiry, 1_768_100_000))
        )]
    );

    // The merchant refunds the whole charge: the refund is the money that went back.
    let envs = map_fixture("inquiry_refunded.charge.refunded");
    assert_eq!(envs.len(), 2);
    let p = payment_of(&envs[0].event);
    assert_eq!(
        (p.status, p.amount, p.captured, p.amount_refunded),
        (
            PaymentStatus::Succeeded,
            usd(4200),
            Some(usd(4200)),
            Some(usd(4200))
        )
    );
    let Event::RefundIssued(r) = &envs[1].event else {
        panic!("not a refund: {envs:?}")
    };
    assert_eq!(
        (r.refund_id.as_str(), r.amount, r.status, r.created_at),
        (
            "re_3QsfRe0004",
            usd(4200),
            RefundStatus::Succeeded,
            Some(at(1_768_150_000))
        )
    );
    assert_eq!(r.links[0], order_link("shopify:5123000004"));

    // The dispute closes as charge_refunded: merchant-refunded, not lost.
    assert_eq!(
        map_fixture("inquiry_refunded.charge.dispute.closed"),
        vec![envelope(
            "evt_3QsfEv0032",
            1_768_160_000,
            Event::DisputeClosed(inquiry(DisputeStatus::MerchantRefunded, 1_768_160_000))
        )]
    );
}

#[test]
fn dispute_movements_without_their_creation_time_use_the_disputes() {
    let mut body: Value =
        serde_json::from_slice(&fixture("charge.dispute.funds_withdrawn")).unwrap();
    body["data"]["object"]["balance_transactions"][0]
        .as_object_mut()
        .unwrap()
        .remove("created");
    let envs = signed_map(body.to_string().as_bytes());
    let (d, _) = dispute_of(only(&envs));
    assert_eq!(
        d.movements,
        vec![DisputeMovement {
            id: "txn_3QsfBt0003".into(),
            amount: usd(-12999),
            fee: Some(usd(1500)),
            at: at(1_767_500_000),
        }]
    );
}

#[test]
fn the_order_reference_goes_through_the_configured_pattern_and_store() {
    let mut options = MapOptions::for_stores(["shopify", "woocommerce"]);
    options.stripe.fields = vec!["order_ref".into(), "order_id".into()];
    options.stripe.store = Some("woocommerce".into());
    options.stripe.pattern = Some(crate::ReferencePattern::new(r"^WC-(?P<order>\d+)$").unwrap());
    let mut v: Value = serde_json::from_slice(&fixture("charge.succeeded")).unwrap();
    // The first key's value does not match the pattern; the second one does.
    v["data"]["object"]["metadata"] = json!({"order_ref": "cart-91", "order_id": "WC-727"});
    let envs = map_with(&options, v.to_string().as_bytes());
    assert_eq!(
        payment_of(&envs[0].event).links,
        vec![
            order_link("woocommerce:727"),
            pay_link("pi_3QsfPi0001"),
            pay_link("ch_3QsfCh0001")
        ]
    );
    // Nothing matches: only the payment references.
    v["data"]["object"]["metadata"] = json!({"order_id": "727"});
    let envs = map_with(&options, v.to_string().as_bytes());
    assert_eq!(
        payment_of(&envs[0].event).links,
        vec![pay_link("pi_3QsfPi0001"), pay_link("ch_3QsfCh0001")]
    );
}

#[test]
fn metadata_order_ids_are_namespaced_once_and_use_the_configured_key() {
    let mut body: Value = serde_json::from_slice(&fixture("charge.succeeded")).unwrap();
    body["data"]["object"]["metadata"] = json!({"order_id": "shopify:77"});
    let envs = signed_map(body.to_string().as_bytes());
    let Event::PaymentSucceeded(p) = &envs[0].event else {
        panic!()
    };
    assert_eq!(p.links[0], order_link("shopify:77"));

    let body = fixture("charge.succeeded");
    let mut options = MapOptions::for_stores(["woocommerce"]);
    options.stripe.fields = vec!["wc_order".into()];
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["data"]["object"]["metadata"] = json!({"wc_order": "727"});
    let body = v.to_string().into_bytes();
    let envs = map_with(&options, &body);
    let Event::PaymentSucceeded(p) = &envs[0].event else {
        panic!()
    };
    assert_eq!(
        p.links,
        vec![
            order_link("woocommerce:727"),
            pay_link("pi_3QsfPi0001"),
            pay_link("ch_3QsfCh0001")
        ]
    );
}

fn map_with(options: &MapOptions, body: &[u8]) -> Vec<Envelope> {
    let headers = Headers::new();
    ProviderKind::Stripe
        .map(
            &MapContext {
                tenant: "acme",
                options,
            },
            &RawInput {
                topic: "",
                event_id: "",
                headers: &headers,
                body,
                received_at: at(0),
            },
        )
        .unwrap()
}

#[test]
fn unmapped_event_types_yield_nothing_and_bad_objects_are_errors() {
    let body = br#"{"id":"evt_1","type":"invoice.paid","created":1767000000,"data":{"object":{"id":"in_1"}}}"#;
    assert_eq!(map_with(&map_options(), body), vec![]);
    let headers = Headers::new();
    let bad = br#"{"id":"evt_1","type":"charge.succeeded","created":1767000000,"data":{"object":{"id":"ch_1"}}}"#;
    let err = ProviderKind::Stripe.map(
        &MapContext {
            tenant: "acme",
            options: &map_options(),
        },
        &RawInput {
            topic: "charge.succeeded",
            event_id: "evt_1",
            headers: &headers,
            body: bad,
            received_at: at(0),
        },
    );
    assert!(err.is_err());
}

// ---------------------------------------------------------------- conformance corpus

/// Wraps a bare object into the event Stripe would send for it.
fn wrap(id: &str, kind: &str, object: Value) -> Vec<u8> {
    let created = object["created"].as_i64().unwrap_or(1_700_000_000);
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}})
        .to_string()
        .into_bytes()
}

/// Wraps an event's `data` member (pay-rails files) into an event.
fn wrap_data(id: &str, kind: &str, data: Value) -> Vec<u8> {
    let created = data["object"]["created"].as_i64().unwrap_or(1_700_000_000);
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": data})
        .to_string()
        .into_bytes()
}

fn only(envs: &[Envelope]) -> &Event {
    assert_eq!(envs.len(), 1, "{envs:?}");
    &envs[0].event
}

fn payment_of(event: &Event) -> &Payment {
    match event {
        Event::PaymentSucceeded(p) | Event::PaymentFailed(p) => p,
        other => panic!("not a payment: {other:?}"),
    }
}

fn dispute_of(event: &Event) -> (&Dispute, bool) {
    match event {
        Event::DisputeOpened(d) => (d, false),
        Event::DisputeClosed(d) => (d, true),
        other => panic!("not a dispute: {other:?}"),
    }
}

/// Every file of the corpus is named here, so a new file fails this test until a
/// test reads it.
const CORPUS: &[&str] = &[
    "djstripe__balance_transaction_txn_fake_ch_fakefakefakefakefake0001.json",
    "djstripe__charge_ch_fakefakefakefakefake0001.json",
    "djstripe__dispute_dp_fakefakefakefake01.json",
    "djstripe__dispute_dp_fakefakefakefake02.json",
    "djstripe__dispute_dp_funds_reinstated_full.json",
    "djstripe__dispute_txn_fakefakefakefake01.json",
    "djstripe__event_charge.dispute.closed.json",
    "djstripe__event_charge.dispute.created.json",
    "djstripe__event_charge.succeeded.json",
    "djstripe__payment_intent_pi_fakefakefakefakefake0001.json",
    "openapi_fixture__balance_transaction.json",
    "openapi_fixture__charge.json",
    "openapi_fixture__customer.json",
    "openapi_fixture__dispute.json",
    "openapi_fixture__event.json",
    "openapi_fixture__payment_intent.json",
    "openapi_fixture__refund.json",
    "pay_rails__charge.refunded__event_data.json",
    "pay_rails__charge.succeeded__event_data.json",
    "pay_rails__charge.updated__event_data.json",
];

#[test]
fn conformance_every_stripe_file_is_covered() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let names = json_file_names(&dir);
    assert_eq!(names, CORPUS, "the corpus changed: cover the new files");
}

#[test]
fn conformance_djstripe_charge_and_its_balance_transaction() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let charge = read_json(&dir, CORPUS[1]);
    let envs = signed_map(&wrap("evt_conf_ch", "charge.succeeded", charge.clone()));
    let p = payment_of(only(&envs));
    assert_eq!(p.payment_id, "pi_fakefakefakefakefake0001");
    assert_eq!(p.status, PaymentStatus::Succeeded);
    // captured: true with amount_captured 0 (a payload older than the field):
    // the whole amount was captured.
    assert_eq!(p.amount, usd(2000));
    assert_eq!(p.captured, Some(usd(2000)));
    assert_eq!(p.amount_refunded, Some(usd(0)));
    // The balance transaction is only an id here: the fee is unknown, not zero.
    assert_eq!((p.fee, p.net), (None, None));
    assert_eq!(
        p.links,
        vec![
            pay_link("pi_fakefakefakefakefake0001"),
            pay_link("ch_fakefakefakefakefake0001")
        ]
    );
    assert_eq!(p.method.as_deref(), Some("card"));
    // billing_details.name holds an address, but it is a name, not an email.
    assert_eq!(
        p.payer,
        Identity::default().with_external("stripe", "cus_6lsBvm5rJ0zyHc")
    );
    assert_eq!(envs[0].occurred_at, at(1_557_995_177));

    // Expanded with the dj-stripe balance transaction: fee 88, net 1912.
    let mut expanded = charge;
    expanded["balance_transaction"] = read_json(&dir, CORPUS[0]);
    let envs = signed_map(&wrap("evt_conf_bt", "charge.succeeded", expanded));
    let p = payment_of(only(&envs));
    assert_eq!(p.fee, Some(usd(88)));
    assert_eq!(p.net, Some(usd(1912)));
    assert_eq!(p.amount, usd(2000));
}

#[test]
fn conformance_djstripe_payment_intent_finds_its_charge() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let pi = read_json(&dir, CORPUS[9]);
    let envs = signed_map(&wrap("evt_conf_pi", "payment_intent.succeeded", pi));
    let p = payment_of(only(&envs));
    assert!(matches!(only(&envs), Event::PaymentSucceeded(_)));
    assert_eq!(p.payment_id, "pi_fakefakefakefakefake0001");
    // amount_received 2000.
    assert_eq!(p.amount, usd(2000));
    assert_eq!(p.captured, Some(usd(2000)));
    assert_eq!(p.amount_refunded, Some(usd(0)));
    assert_eq!((p.fee, p.net), (None, None));
    assert_eq!(
        p.links,
        vec![
            pay_link("pi_fakefakefakefakefake0001"),
            pay_link("ch_fakefakefakefakefake0001")
        ]
    );
    assert_eq!(
        p.payer,
        Identity::default().with_external("stripe", "cus_6lsBvm5rJ0zyHc")
    );
}

#[test]
fn conformance_djstripe_event_charge_succeeded_verifies_and_maps() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let bytes = std::fs::read(dir.join(CORPUS[8])).unwrap();
    let envs = signed_map(&bytes);
    assert_eq!(envs[0].event_id, "evt_16YKQi2eZvKYlo2CT2oe5ff3");
    assert_eq!(envs[0].occurred_at, at(1_439_229_084));
    let p = payment_of(only(&envs));
    assert_eq!(p.payment_id, "pi_fakefakefakefakefake0001");
    assert_eq!(p.amount, usd(2000));
    assert_eq!(p.status, PaymentStatus::Succeeded);
}

#[test]
fn conformance_djstripe_disputes() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let dp_links = |charge: &str| vec![pay_link("pi_1JAyTwJSZQVUcJYgBbsz0NuH"), pay_link(charge)];

    // dp_…01: needs_response, one withdrawal balance transaction.
    let envs = signed_map(&wrap(
        "evt_conf_dp1",
        "charge.dispute.created",
        read_json(&dir, CORPUS[2]),
    ));
    let (d, closed) = dispute_of(only(&envs));
    assert!(!closed);
    assert_eq!(d.dispute_id, "dp_1JAyTwJSZQVUcJYgPqasUEn1");
    assert_eq!(d.status, DisputeStatus::NeedsResponse);
    assert_eq!(d.payment_id.as_deref(), Some("pi_1JAyTwJSZQVUcJYgBbsz0NuH"));
    assert_eq!(d.links, dp_links("ch_fakefakefakefakefake0001"));
    assert_eq!(d.amount, usd(1000));
    assert_eq!(d.reason.as_deref(), Some("fraudulent"));
    assert!(d.funds_withdrawn && !d.funds_reinstated);
    // The withdrawal: −1000 with Stripe's 1500 dispute fee.
    let withdrawal = DisputeMovement {
        id: "txn_16g5h62eZvKYlo2CQ2AHA89s".into(),
        amount: usd(-1000),
        fee: Some(usd(1500)),
        at: at(1_625_755_540),
    };
    assert_eq!(d.movements, vec![withdrawal.clone()]);

    // dp_…02: the same dispute on another charge.
    let envs = signed_map(&wrap(
        "evt_conf_dp2",
        "charge.dispute.updated",
        read_json(&dir, CORPUS[3]),
    ));
    let (d, closed) = dispute_of(only(&envs));
    assert!(!closed);
    assert_eq!(d.status, DisputeStatus::NeedsResponse);
    assert_eq!(d.links, dp_links("ch_1JHRCWJSZQVUcJYgOCavbxio"));

    // Reinstated in full while under review: still open, both moves recorded.
    let envs = signed_map(&wrap(
        "evt_conf_dp3",
        "charge.dispute.funds_reinstated",
        read_json(&dir, CORPUS[4]),
    ));
    let (d, closed) = dispute_of(only(&envs));
    assert!(!closed);
    assert_eq!(d.status, DisputeStatus::UnderReview);
    assert!(d.funds_withdrawn && d.funds_reinstated);
    // Withdrawn, then reinstated with the dispute fee given back.
    assert_eq!(
        d.movements,
        vec![
            withdrawal,
            DisputeMovement {
                id: "txn_1JAyV2JSZQVUcJYgETKXUN9k".into(),
                amount: usd(1000),
                fee: Some(usd(-1500)),
                at: at(1_625_755_608),
            }
        ]
    );

    // The dispute's balance transaction (bare) put into a dispute: a withdrawal.
    let txn = read_json(&dir, CORPUS[5]);
    assert_eq!(txn["amount"], json!(-1000));
    let mut dp = read_json(&dir, CORPUS[3]);
    dp["balance_transactions"] = json!([txn]);
    dp["status"] = json!("warning_needs_response");
    let envs = signed_map(&wrap("evt_conf_dp4", "charge.dispute.created", dp));
    let (d, _) = dispute_of(only(&envs));
    assert_eq!(d.status, DisputeStatus::Inquiry);
    assert!(d.funds_withdrawn && !d.funds_reinstated);
    assert_eq!(
        d.movements,
        vec![DisputeMovement {
            id: "txn_1JHRCWJSZQVUcJYgYwW8XpF4".into(),
            amount: usd(-1000),
            fee: Some(usd(1500)),
            at: at(1_557_995_177),
        }]
    );

    // Whole events.
    let envs = signed_map(&std::fs::read(dir.join(CORPUS[7])).unwrap());
    assert_eq!(envs[0].event_id, "evt_16YKQi2eZvKYlo2CT2oe5ff3");
    let (d, closed) = dispute_of(only(&envs));
    assert!(!closed);
    assert_eq!(d.status, DisputeStatus::NeedsResponse);
    assert_eq!(d.links, dp_links("ch_fakefakefakefakefake0001"));

    let envs = signed_map(&std::fs::read(dir.join(CORPUS[6])).unwrap());
    assert_eq!(envs[0].event_id, "evt_1JAyTxJSZQVUcJYgNk1Jqu8o");
    assert_eq!(envs[0].occurred_at, at(1_439_229_084));
    let (d, closed) = dispute_of(only(&envs));
    assert!(closed);
    assert_eq!(d.status, DisputeStatus::Won);
    assert_eq!(d.amount, usd(1000));
    assert_eq!(d.payment_id.as_deref(), Some("pi_1JAyTwJSZQVUcJYgBbsz0NuH"));
    assert_eq!(d.links, dp_links("ch_1JHRCWJSZQVUcJYgOCavbxio"));
    assert_eq!(
        d.movements,
        vec![DisputeMovement {
            id: "txn_1JHRCWJSZQVUcJYgYwW8XpF4".into(),
            amount: usd(-1000),
            fee: Some(usd(1500)),
            at: at(1_625_755_540),
        }]
    );

    // The same dispute closed by the merchant's refund (API versions that have
    // charge_refunded): merchant-refunded, not lost.
    let mut dp = read_json(&dir, CORPUS[3]);
    dp["status"] = json!("charge_refunded");
    let envs = signed_map(&wrap("evt_conf_dp5", "charge.dispute.closed", dp));
    let (d, closed) = dispute_of(only(&envs));
    assert!(closed);
    assert_eq!(d.status, DisputeStatus::MerchantRefunded);
}

#[test]
fn conformance_openapi_charge_and_balance_transaction() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let charge = read_json(&dir, CORPUS[11]);
    let envs = signed_map(&wrap("evt_conf_oc", "charge.succeeded", charge.clone()));
    let p = payment_of(only(&envs));
    // No payment intent: the charge is the payment. captured=false: authorised only.
    assert_eq!(p.payment_id, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
    assert_eq!(p.links, vec![pay_link("ch_1PgafuB7WZ01zgkWXYmPNZs8")]);
    assert_eq!(p.status, PaymentStatus::Authorized);
    assert_eq!(p.amount, usd(100));
    assert_eq!((p.captured, p.amount_refunded), (None, Some(usd(0))));
    assert_eq!(p.payer, Identity::default());

    // The same uncaptured charge expiring (Stripe marks it refunded): the hold
    // is cancelled, and nothing captured was refunded.
    let mut expired = charge.clone();
    expired["refunded"] = json!(true);
    expired["amount_refunded"] = json!(100);
    let envs = signed_map(&wrap("evt_conf_oce", "charge.expired", expired));
    let Event::PaymentFailed(p) = only(&envs) else {
        panic!("not a cancelled payment: {envs:?}")
    };
    assert_eq!(
        (p.status, p.amount, p.captured, p.amount_refunded),
        (PaymentStatus::Cancelled, usd(100), None, Some(usd(0)))
    );

    let bt = read_json(&dir, CORPUS[10]);
    assert_eq!(bt["source"], charge["id"]);
    let mut expanded = charge;
    expanded["balance_transaction"] = bt;
    let envs = signed_map(&wrap("evt_conf_obt", "charge.updated", expanded));
    let p = payment_of(only(&envs));
    // A known zero fee is zero, not unknown.
    assert_eq!(p.fee, Some(usd(0)));
    assert_eq!(p.net, Some(usd(100)));
}

#[test]
fn conformance_openapi_dispute_refund_and_payment_intent() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let envs = signed_map(&wrap(
        "evt_conf_od",
        "charge.dispute.created",
        read_json(&dir, CORPUS[13]),
    ));
    let (d, closed) = dispute_of(only(&envs));
    assert!(!closed);
    assert_eq!(d.dispute_id, "dp_1Pgc71B7WZ01zgkWMevJiAUx");
    assert_eq!(d.status, DisputeStatus::Inquiry);
    assert_eq!(d.payment_id.as_deref(), Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"));
    assert_eq!(d.amount, usd(1000));
    assert_eq!(d.reason.as_deref(), Some("general"));
    assert!(!d.funds_withdrawn && !d.funds_reinstated);

    let envs = signed_map(&wrap(
        "evt_conf_or",
        "refund.created",
        read_json(&dir, CORPUS[16]),
    ));
    let Event::RefundIssued(r) = only(&envs) else {
        panic!("not a refund")
    };
    assert_eq!(r.refund_id, "re_1Pgc72B7WZ01zgkWqPvrRrPE");
    assert_eq!(r.payment_id.as_deref(), Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"));
    assert_eq!(r.links, vec![pay_link("ch_1PgafuB7WZ01zgkWXYmPNZs8")]);
    assert_eq!(r.amount, usd(100));
    assert_eq!(r.status, RefundStatus::Succeeded);
    assert_eq!(r.reason, None);
    assert_eq!(r.created_at, Some(at(1_234_567_890)));

    let envs = signed_map(&wrap(
        "evt_conf_opi",
        "payment_intent.payment_failed",
        read_json(&dir, CORPUS[15]),
    ));
    let Event::PaymentFailed(p) = only(&envs) else {
        panic!("not a failed payment")
    };
    assert_eq!(p.payment_id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
    assert_eq!(p.status, PaymentStatus::Failed);
    assert_eq!((p.amount, p.captured), (usd(1099), None));
    assert_eq!(p.failure_reason.as_deref(), Some("idempotency_error"));
    assert_eq!(p.links, vec![pay_link("pi_1PgafyB7WZ01zgkWSjxsAJo3")]);
    assert_eq!(p.method.as_deref(), Some("card"));
    assert_eq!((p.fee, p.amount_refunded), (None, None));
}

#[test]
fn conformance_openapi_event_and_customer_are_not_payments() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    let event = std::fs::read(dir.join(CORPUS[14])).unwrap();
    let headers = Headers::new();
    let inbound = ProviderKind::Stripe
        .describe(&request(&headers, &event))
        .unwrap();
    assert_eq!(inbound.topic, "plan.created");
    assert_eq!(inbound.event_id, "evt_1Pgc76B7WZ01zgkWwyRHS12y");
    assert_eq!(inbound.occurred_at, Some(at(1_234_567_890)));
    assert_eq!(signed_map(&event), vec![]);

    let customer = read_json(&dir, CORPUS[12]);
    assert_eq!(customer["id"], json!("cus_QXg1o8vcGmoR32"));
    assert_eq!(
        signed_map(&wrap("evt_conf_cus", "customer.created", customer)),
        vec![]
    );
}

#[test]
fn conformance_pay_rails_charges() {
    let Some(dir) = conformance_dir("stripe") else {
        return;
    };
    // Partial refund: 500 of 1500.
    let envs = signed_map(&wrap_data(
        "evt_conf_prr",
        "charge.refunded",
        read_json(&dir, CORPUS[17]),
    ));
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[0].event_id, "evt_conf_prr#payment");
    let p = payment_of(&envs[0].event);
    assert_eq!(p.payment_id, "pm_1234");
    assert_eq!(p.amount, usd(1500));
    assert_eq!(p.captured, Some(usd(1500)));
    assert_eq!(p.amount_refunded, Some(usd(500)));
    assert_eq!(p.status, PaymentStatus::Succeeded);
    assert_eq!(
        envs[1].event_id,
        "evt_conf_prr#refund:re_3LQOJoKXBGcbgpbZ10i9Mg75"
    );
    let Event::RefundIssued(r) = &envs[1].event else {
        panic!("not a refund")
    };
    assert_eq!(r.amount, usd(500));
    assert_eq!(r.payment_id.as_deref(), Some("pm_1234"));
    assert_eq!(r.status, RefundStatus::Succeeded);
    assert_eq!(r.reason.as_deref(), Some("requested_by_customer"));
    assert_eq!(r.created_at, Some(at(1_658_982_465)));
    assert_eq!(r.links, vec![pay_link("pm_1234"), pay_link("ch_chargeid")]);

    let envs = signed_map(&wrap_data(
        "evt_conf_prs",
        "charge.succeeded",
        read_json(&dir, CORPUS[18]),
    ));
    let p = payment_of(only(&envs));
    assert_eq!(p.amount, usd(500));
    assert_eq!(p.captured, Some(usd(500)));
    assert_eq!(p.amount_refunded, Some(usd(0)));
    assert_eq!((p.fee, p.net), (None, None));
    assert_eq!(
        p.payer,
        Identity::default().with_external("stripe", "cus_0dUMWLtzCTagWs")
    );

    let envs = signed_map(&wrap_data(
        "evt_conf_pru",
        "charge.updated",
        read_json(&dir, CORPUS[19]),
    ));
    let p = payment_of(only(&envs));
    assert!(matches!(only(&envs), Event::PaymentSucceeded(_)));
    assert_eq!(p.payment_id, "pi_1234");
    assert_eq!(p.amount, usd(24900));
    assert_eq!(p.captured, Some(usd(24900)));
    assert_eq!(
        p.payer,
        Identity::default()
            .with_email(Some("customer@example.org"))
            .with_external("stripe", "cus_1234")
    );
    assert_eq!(p.links, vec![pay_link("pi_1234"), pay_link("ch_1234")]);
}

/// `payout.*`: the payout as it stands, at the event's time. Values of the
/// fixtures: po_1SfPayoutA11 pays 192.25 USD (19225 cents, the net of the
/// settlement fixture `stripe.payout_reconciliation.csv`), arriving
/// 2026-11-06 00:00 UTC (1793923200); the event is of 2026-11-06 08:05 UTC.
#[test]
fn payout_events_restate_the_payout() {
    use storefold_core::event::{PayoutStatus, PayoutUpdated};
    let events = map_fixture("payout.paid");
    assert_eq!(
        events,
        vec![envelope(
            "evt_1SfPayoutPaid0001",
            1_793_952_300,
            Event::PayoutUpdated(PayoutUpdated {
                provider: "stripe".into(),
                payout_id: "po_1SfPayoutA11".into(),
                amount: usd(19_225),
                status: PayoutStatus::Paid,
                arrival: Some(at(1_793_923_200)),
                failure: None,
                at: at(1_793_952_300),
            }),
        )]
    );
    // A connected account's payout (`account` on the event) maps as the
    // platform's own, as every other Stripe event does; yen have no minor
    // unit: 480000 is ¥480,000.
    let events = map_fixture("payout.failed");
    assert_eq!(
        events,
        vec![envelope(
            "evt_1SfPayoutFail0002",
            1_794_038_700,
            Event::PayoutUpdated(PayoutUpdated {
                provider: "stripe".into(),
                payout_id: "po_1SfPayoutE22".into(),
                amount: Money::new(480_000, Currency::from_code("JPY").unwrap()),
                status: PayoutStatus::Failed,
                arrival: Some(at(1_794_009_600)),
                failure: Some("account_closed".into()),
                at: at(1_794_038_700),
            }),
        )]
    );
    // Every payout event type reads the payout's own status, whatever the type.
    let mut body: Value = serde_json::from_slice(&fixture("payout.paid")).unwrap();
    for (kind, status, expected) in [
        ("payout.created", "pending", PayoutStatus::Pending),
        ("payout.updated", "in_transit", PayoutStatus::InTransit),
        ("payout.canceled", "canceled", PayoutStatus::Canceled),
        ("payout.reconciliation_completed", "paid", PayoutStatus::Paid),
    ] {
        body["type"] = json!(kind);
        body["data"]["object"]["status"] = json!(status);
        let events = signed_map(&serde_json::to_vec(&body).unwrap());
        match &events[..] {
            [e] => match &e.event {
                Event::PayoutUpdated(p) => assert_eq!(p.status, expected, "{kind}"),
                other => panic!("{kind}: {other:?}"),
            },
            other => panic!("{kind}: {other:?}"),
        }
    }
    body["data"]["object"]["status"] = json!("lost_in_the_mail");
    let bench = Harness::new(ProviderKind::Stripe, SECRET, at(1_767_000_000));
    let delivery = bench
        .receive("", &serde_json::to_vec(&body).unwrap())
        .unwrap();
    assert_eq!(
        bench.map(&delivery).unwrap_err().to_string(),
        "invalid field data.object.status: unknown payout status \"lost_in_the_mail\""
    );
}
