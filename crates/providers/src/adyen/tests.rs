//! Adyen: per-item HMAC (including Adyen's known-answer vector), our own fixtures
//! (signed here with a known key) and the conformance corpus.

use serde_json::{Value, json};
use storefold_core::event::{
    Dispute, DisputeMovement, DisputeStatus, OrderLink, Payment, PaymentStatus, Refund,
    RefundStatus,
};
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::test_support::Harness;
use crate::test_support::{self, conformance_dir, json_file_names, read_json};
use crate::{
    AdyenCapture, Credentials, Headers, MapContext, MapOptions, ProviderKind, RawInput,
    ReferencePattern, VerifyError, WebhookRequest,
};

/// A test HMAC key (hex), as the Customer Area shows it.
const KEY: &str = "6A1F93C2D4E5B60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F";
const OTHER_KEY: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::from_code(code).unwrap())
}

fn time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("adyen", &format!("{name}.json"))
}

fn sign(key: &str, body: &[u8]) -> Vec<u8> {
    let signed = ProviderKind::Adyen
        .sign(key, "", body, OffsetDateTime::UNIX_EPOCH)
        .unwrap();
    assert!(signed.headers.is_empty());
    signed.body
}

fn verify(key: &str, body: &[u8]) -> Result<(), VerifyError> {
    let headers = Headers::new();
    ProviderKind::Adyen.verify(
        &Credentials::new(key),
        &WebhookRequest {
            headers: &headers,
            body,
            url_token: None,
        },
        OffsetDateTime::UNIX_EPOCH,
    )
}

fn describe(body: &[u8]) -> crate::Inbound {
    let headers = Headers::new();
    ProviderKind::Adyen
        .describe(&WebhookRequest {
            headers: &headers,
            body,
            url_token: None,
        })
        .unwrap()
}

fn map_with(options: &MapOptions, body: &[u8]) -> Vec<Envelope> {
    let headers = Headers::new();
    let inbound = describe(body);
    ProviderKind::Adyen
        .map(
            &MapContext {
                tenant: "acme",
                options,
            },
            &RawInput {
                topic: &inbound.topic,
                event_id: &inbound.event_id,
                headers: &headers,
                body,
                received_at: time("2030-01-01T00:00:00Z"),
            },
        )
        .unwrap()
}

/// Signs a fixture with [`KEY`], checks it verifies, and maps it.
fn signed_map(body: &[u8]) -> Vec<Envelope> {
    signed_map_options(&MapOptions::default(), body)
}

/// The whole path (sign with [`KEY`], verify, describe, map) with `options`.
fn signed_map_options(options: &MapOptions, body: &[u8]) -> Vec<Envelope> {
    let bench = Harness::new(ProviderKind::Adyen, KEY, OffsetDateTime::UNIX_EPOCH)
        .tenant("acme")
        .received_at(time("2030-01-01T00:00:00Z"))
        .options(options.clone());
    bench.deliver("", body).expect("maps").1
}

fn map_fixture(name: &str) -> Vec<Envelope> {
    signed_map(&fixture(name))
}

fn envelope(event_id: &str, at: &str, event: Event) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        provider: "adyen".into(),
        event_id: event_id.into(),
        occurred_at: time(at),
        event,
    }
}

fn links(order: &str, psp: &str) -> Vec<OrderLink> {
    vec![
        OrderLink::Order {
            order_id: format!("shopify:{order}"),
        },
        OrderLink::Payment {
            provider: "adyen".into(),
            reference: psp.into(),
        },
    ]
}

fn payment(psp: &str, status: PaymentStatus, minor: i64, at: &str) -> Payment {
    Payment {
        provider: "adyen".into(),
        payment_id: psp.into(),
        links: links("7301000042", psp),
        status,
        amount: money(minor, "EUR"),
        fee: None,
        net: None,
        amount_refunded: None,
        method: Some("mc".into()),
        failure_reason: None,
        payer: Identity::default(),
        at: time(at),
        captured: None,
        capture_id: None,
        auto_capture: false,
    }
}

// ---------------------------------------------------------------- signatures

#[test]
fn adyens_known_answer_vector_verifies() {
    let Some(dir) = conformance_dir("adyen") else {
        return;
    };
    let v = read_json(&dir, "hmac_known_answer_vector.json");
    let key_hex = v["hmac_key_hex"].as_str().unwrap();
    let signing_string = v["signing_string"].as_str().unwrap();
    let expected = v["expected_hmacSignature_base64"].as_str().unwrap();
    let key = hex::decode(key_hex).unwrap();
    assert_eq!(crate::adyen::item_signature(&key, signing_string), expected);

    // The same vector as a notification: its fields give exactly that signing
    // string, so our signer and our verifier agree with Adyen.
    let fields: Vec<&str> = signing_string.split(':').collect();
    assert_eq!(fields.len(), 8);
    let body = json!({"live": "false", "notificationItems": [{"NotificationRequestItem": {
        "pspReference": fields[0],
        "originalReference": fields[1],
        "merchantAccountCode": fields[2],
        "merchantReference": fields[3],
        "amount": {"value": fields[4].parse::<i64>().unwrap(), "currency": fields[5]},
        "eventCode": fields[6],
        "success": fields[7],
        "eventDate": "2026-01-01T00:00:00+01:00",
        "additionalData": {"hmacSignature": expected}
    }}]})
    .to_string();
    assert_eq!(verify(key_hex, body.as_bytes()), Ok(()));
    assert_eq!(verify(&key_hex.to_lowercase(), body.as_bytes()), Ok(()));
    assert_eq!(
        verify(OTHER_KEY, body.as_bytes()),
        Err(VerifyError::Mismatch)
    );
    let resigned: Value = serde_json::from_slice(&sign(key_hex, body.as_bytes())).unwrap();
    assert_eq!(
        resigned["notificationItems"][0]["NotificationRequestItem"]["additionalData"]["hmacSignature"],
        json!(expected)
    );
}

#[test]
fn wrong_key_tampered_item_and_one_bad_item_of_a_batch_are_mismatches() {
    let signed = sign(KEY, &fixture("batch"));
    assert_eq!(verify(KEY, &signed), Ok(()));
    assert_eq!(verify(OTHER_KEY, &signed), Err(VerifyError::Mismatch));

    // Tampering with a signed field of the last item.
    let mut v: Value = serde_json::from_slice(&signed).unwrap();
    v["notificationItems"][2]["NotificationRequestItem"]["amount"]["value"] = json!(250000);
    assert_eq!(
        verify(KEY, v.to_string().as_bytes()),
        Err(VerifyError::Mismatch)
    );

    // One item signed with another key among good ones.
    let mut v: Value = serde_json::from_slice(&signed).unwrap();
    let other: Value = serde_json::from_slice(&sign(OTHER_KEY, &fixture("batch"))).unwrap();
    v["notificationItems"][1] = other["notificationItems"][1].clone();
    assert_eq!(
        verify(KEY, v.to_string().as_bytes()),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn unusable_keys_and_unreadable_bodies_are_refused() {
    let signed = sign(KEY, &fixture("capture"));
    assert!(matches!(
        verify("not-hex", &signed),
        Err(VerifyError::BadCredentials(_))
    ));
    assert!(matches!(
        verify("", &signed),
        Err(VerifyError::BadCredentials(_))
    ));
    assert!(matches!(
        verify(KEY, b"[accepted]"),
        Err(VerifyError::MalformedHeader { .. })
    ));
    assert!(matches!(
        verify(KEY, br#"{"live":"false","notificationItems":[]}"#),
        Err(VerifyError::MalformedHeader { .. })
    ));
    // An item without a signature.
    assert_eq!(
        verify(KEY, &fixture("capture")),
        Err(VerifyError::MissingHeader("additionalData.hmacSignature"))
    );
    let mut v: Value = serde_json::from_slice(&signed).unwrap();
    v["notificationItems"][0]["NotificationRequestItem"]["additionalData"]["hmacSignature"] =
        json!("%%% not base64 %%%");
    assert!(matches!(
        verify(KEY, v.to_string().as_bytes()),
        Err(VerifyError::MalformedHeader { .. })
    ));
    assert!(
        ProviderKind::Adyen
            .sign("zz", "", &fixture("capture"), OffsetDateTime::UNIX_EPOCH)
            .is_err()
    );
    assert!(
        ProviderKind::Adyen
            .sign(KEY, "", b"{}", OffsetDateTime::UNIX_EPOCH)
            .is_err()
    );
}

#[test]
fn a_boolean_success_signs_like_the_string() {
    let mut v: Value = serde_json::from_slice(&fixture("capture")).unwrap();
    let signed: Value = serde_json::from_slice(&sign(KEY, v.to_string().as_bytes())).unwrap();
    v["notificationItems"][0]["NotificationRequestItem"]["success"] = json!(true);
    v["notificationItems"][0]["NotificationRequestItem"]["additionalData"] =
        signed["notificationItems"][0]["NotificationRequestItem"]["additionalData"].clone();
    assert_eq!(verify(KEY, v.to_string().as_bytes()), Ok(()));
}

#[test]
fn the_ingest_answers_accepted() {
    assert_eq!(crate::adyen::ACCEPTED_BODY, "[accepted]");
}

// ---------------------------------------------------------------- describe

#[test]
fn describe_names_single_items_and_batches() {
    let one = describe(&fixture("authorisation_true"));
    assert_eq!(one.topic, "AUTHORISATION");
    assert_eq!(one.event_id, "adyen:Q8K2PSP000000001:AUTHORISATION:true");
    assert_eq!(one.occurred_at, Some(time("2026-03-02T10:15:00+01:00")));

    let batch = describe(&fixture("batch"));
    assert_eq!(batch.topic, "batch");
    assert_eq!(
        batch.event_id,
        "adyen:Q8K2PSP000000002:CAPTURE:true,settlement_detail_report_batch_118.csv:REPORT_AVAILABLE:true,Q8K2PSP000000003:REFUND:true"
    );
    assert_eq!(batch.occurred_at, Some(time("2026-03-02T12:00:00+01:00")));

    // Many items: the id is a hash, stable for the same items.
    let mut v: Value = serde_json::from_slice(&fixture("capture")).unwrap();
    let item = v["notificationItems"][0].clone();
    v["notificationItems"] = Value::Array(vec![item; 20]);
    let many = describe(v.to_string().as_bytes());
    assert!(
        many.event_id.starts_with("adyen:sha256:"),
        "{}",
        many.event_id
    );
    assert_eq!(many.event_id.len(), "adyen:sha256:".len() + 64);
    assert_eq!(many.topic, "CAPTURE");
    assert_eq!(describe(v.to_string().as_bytes()), many);
}

// ---------------------------------------------------------------- our fixtures

#[test]
fn authorisation_success_is_an_authorised_payment_adyen_captures_itself() {
    // The tenant's default: Adyen captures authorisations automatically.
    let mut p = payment(
        "Q8K2PSP000000001",
        PaymentStatus::Authorized,
        12999,
        "2026-03-02T10:15:00+01:00",
    );
    p.auto_capture = true;
    p.payer = Identity::default()
        .with_email(Some("max.mustermann@example.de"))
        .with_external("adyen", "shopper-4711");
    assert_eq!(
        map_fixture("authorisation_true"),
        vec![envelope(
            "adyen:Q8K2PSP000000001:AUTHORISATION:true",
            "2026-03-02T10:15:00+01:00",
            Event::PaymentSucceeded(p)
        )]
    );
}

#[test]
fn refused_authorisation_is_a_failed_payment_with_the_reason() {
    assert_eq!(
        map_fixture("authorisation_false"),
        vec![envelope(
            "adyen:Q8K2PSP000000005:AUTHORISATION:false",
            "2026-03-02T11:00:00+09:00",
            Event::PaymentFailed(Payment {
                provider: "adyen".into(),
                payment_id: "Q8K2PSP000000005".into(),
                links: links("7301000043", "Q8K2PSP000000005"),
                status: PaymentStatus::Failed,
                amount: money(5000, "JPY"),
                fee: None,
                net: None,
                amount_refunded: None,
                method: Some("visa".into()),
                failure_reason: Some("Not enough balance".into()),
                payer: Identity::default().with_email(Some("hana@example.jp")),
                at: time("2026-03-02T11:00:00+09:00"),
                captured: None,
                capture_id: None,
                auto_capture: false,
            })
        )]
    );
}

#[test]
fn capture_is_one_capture_of_the_same_payment() {
    let mut p = payment(
        "Q8K2PSP000000001",
        PaymentStatus::Succeeded,
        12999,
        "2026-03-02T12:00:00+01:00",
    );
    p.capture_id = Some("Q8K2PSP000000002".into());
    assert_eq!(
        map_fixture("capture"),
        vec![envelope(
            "adyen:Q8K2PSP000000002:CAPTURE:true",
            "2026-03-02T12:00:00+01:00",
            Event::PaymentSucceeded(p)
        )]
    );
}

fn refund_3() -> Refund {
    Refund {
        provider: "adyen".into(),
        refund_id: "Q8K2PSP000000003".into(),
        payment_id: Some("Q8K2PSP000000001".into()),
        links: links("7301000042", "Q8K2PSP000000001"),
        amount: money(2500, "EUR"),
        status: RefundStatus::Succeeded,
        reason: None,
        lines: vec![],
        adjustments: None,
        at: time("2026-03-05T09:30:00+01:00"),
        created_at: None,
        gateway: None,
    }
}

#[test]
fn refund_refers_to_the_original_payment() {
    assert_eq!(
        map_fixture("refund"),
        vec![envelope(
            "adyen:Q8K2PSP000000003:REFUND:true",
            "2026-03-05T09:30:00+01:00",
            Event::RefundIssued(refund_3())
        )]
    );
    // A refund request Adyen turned down is a failed refund.
    let mut v: Value = serde_json::from_slice(&fixture("refund")).unwrap();
    v["notificationItems"][0]["NotificationRequestItem"]["success"] = json!("false");
    v["notificationItems"][0]["NotificationRequestItem"]["reason"] = json!("Insufficient balance");
    let envs = signed_map(v.to_string().as_bytes());
    let mut r = refund_3();
    r.status = RefundStatus::Failed;
    r.reason = Some("Insufficient balance".into());
    assert_eq!(envs[0].event, Event::RefundIssued(r));
    assert_eq!(envs[0].event_id, "adyen:Q8K2PSP000000003:REFUND:false");
}

#[test]
fn cancellation_cancels_the_payment() {
    let mut p = payment(
        "Q8K2PSP000000010",
        PaymentStatus::Cancelled,
        4200,
        "2026-03-03T08:00:00+01:00",
    );
    p.links = links("7301000044", "Q8K2PSP000000010");
    assert_eq!(
        map_fixture("cancellation"),
        vec![envelope(
            "adyen:Q8K2PSP000000011:CANCELLATION:true",
            "2026-03-03T08:00:00+01:00",
            Event::PaymentFailed(p)
        )]
    );
}

fn dispute(status: DisputeStatus, at: &str) -> Dispute {
    Dispute {
        provider: "adyen".into(),
        dispute_id: "Q8K2DSP000000001".into(),
        payment_id: Some("Q8K2PSP000000001".into()),
        links: links("7301000042", "Q8K2PSP000000001"),
        amount: money(12999, "EUR"),
        status,
        reason: Some("Other Fraud-Card Absent Environment".into()),
        funds_withdrawn: false,
        funds_reinstated: false,
        at: time(at),
        movements: vec![],
    }
}

#[test]
fn dispute_lifecycle() {
    // A notice of an incoming chargeback moves no money yet, whatever its
    // disputeStatus says.
    let at = "2026-04-01T10:00:00+02:00";
    assert_eq!(
        map_fixture("notification_of_chargeback"),
        vec![envelope(
            "adyen:Q8K2DSP000000001:NOTIFICATION_OF_CHARGEBACK:true",
            at,
            Event::DisputeOpened(dispute(DisputeStatus::Inquiry, at))
        )]
    );

    // The chargeback takes the money; disputeStatus Pending: under review.
    let at = "2026-04-03T10:00:00+02:00";
    let mut d = dispute(DisputeStatus::UnderReview, at);
    d.funds_withdrawn = true;
    let taken = DisputeMovement {
        id: "adyen:Q8K2DSP000000001:CHARGEBACK:true".into(),
        amount: money(-12999, "EUR"),
        fee: None,
        at: time(at),
    };
    d.movements = vec![taken];
    assert_eq!(
        map_fixture("chargeback"),
        vec![envelope(
            "adyen:Q8K2DSP000000001:CHARGEBACK:true",
            at,
            Event::DisputeOpened(d)
        )]
    );

    // Defended: the money comes back.
    let at = "2026-05-10T10:00:00+02:00";
    let mut d = dispute(DisputeStatus::Won, at);
    d.funds_withdrawn = true;
    d.funds_reinstated = true;
    d.movements = vec![DisputeMovement {
        id: "adyen:Q8K2DSP000000001:CHARGEBACK_REVERSED:true".into(),
        amount: money(12999, "EUR"),
        fee: None,
        at: time(at),
    }];
    assert_eq!(
        map_fixture("chargeback_reversed"),
        vec![envelope(
            "adyen:Q8K2DSP000000001:CHARGEBACK_REVERSED:true",
            at,
            Event::DisputeClosed(d)
        )]
    );
}

#[test]
fn dispute_status_defaults_without_dispute_status() {
    for (name, status) in [
        ("notification_of_chargeback", DisputeStatus::Inquiry),
        ("chargeback", DisputeStatus::NeedsResponse),
    ] {
        let mut v: Value = serde_json::from_slice(&fixture(name)).unwrap();
        v["notificationItems"][0]["NotificationRequestItem"]["additionalData"]
            .as_object_mut()
            .unwrap()
            .remove("disputeStatus");
        let envs = signed_map(v.to_string().as_bytes());
        let Event::DisputeOpened(d) = &envs[0].event else {
            panic!("{envs:?}")
        };
        assert_eq!(d.status, status, "{name}");
    }
}

/// A tenant that captures Adyen payments itself, whose merchant references are
/// `<woocommerce order>-<attempt>`.
fn manual_woocommerce() -> MapOptions {
    let mut options = MapOptions::for_stores(["shopify", "woocommerce"]);
    options.adyen_capture = AdyenCapture::Manual;
    options.adyen.store = Some("woocommerce".into());
    options.adyen.pattern = Some(ReferencePattern::new(r"^(?P<order>\d+)-\d+$").unwrap());
    options
}

fn signed_map_with(options: &MapOptions, name: &str) -> Vec<Envelope> {
    signed_map_options(options, &fixture(name))
}

const AUTH_20: &str = "Q8K2PSP000000020";

fn links_20() -> Vec<OrderLink> {
    vec![
        OrderLink::Order {
            order_id: "woocommerce:7301000050".into(),
        },
        OrderLink::Payment {
            provider: "adyen".into(),
            reference: AUTH_20.into(),
        },
    ]
}

fn payment_20(status: PaymentStatus, minor: i64, at: &str) -> Payment {
    let mut p = payment(AUTH_20, status, minor, at);
    p.links = links_20();
    p.method = Some("visa".into());
    p
}

#[test]
fn two_partial_captures_and_a_capture_the_scheme_rejected() {
    let options = manual_woocommerce();
    // Manual capture: the authorisation is a hold of 100.00.
    let at = "2026-06-01T09:00:00+02:00";
    let mut held = payment_20(PaymentStatus::Authorized, 10000, at);
    held.payer = Identity::default().with_email(Some("lena.koch@example.de"));
    assert_eq!(
        signed_map_with(&options, "partial_captures.authorisation"),
        vec![envelope(
            "adyen:Q8K2PSP000000020:AUTHORISATION:true",
            at,
            Event::PaymentSucceeded(held)
        )]
    );

    // Two captures, each its own pspReference and amount.
    for (name, psp, minor, at) in [
        (
            "partial_captures.capture_1",
            "Q8K2PSP000000021",
            6000,
            "2026-06-02T09:00:00+02:00",
        ),
        (
            "partial_captures.capture_2",
            "Q8K2PSP000000022",
            4000,
            "2026-06-03T09:00:00+02:00",
        ),
    ] {
        let mut p = payment_20(PaymentStatus::Succeeded, minor, at);
        p.capture_id = Some(psp.into());
        assert_eq!(
            signed_map_with(&options, name),
            vec![envelope(
                &format!("adyen:{psp}:CAPTURE:true"),
                at,
                Event::PaymentSucceeded(p)
            )]
        );
    }

    // The scheme rejected the second capture: same pspReference, failed.
    let at = "2026-06-05T09:00:00+02:00";
    let mut p = payment_20(PaymentStatus::Failed, 4000, at);
    p.capture_id = Some("Q8K2PSP000000022".into());
    p.failure_reason = Some("Capture rejected by the card scheme: authorisation expired".into());
    assert_eq!(
        signed_map_with(&options, "partial_captures.capture_failed"),
        vec![envelope(
            "adyen:Q8K2PSP000000022:CAPTURE_FAILED:true",
            at,
            Event::PaymentFailed(p)
        )]
    );

    // Without a reason it still says why.
    let mut v: Value = serde_json::from_slice(&fixture("partial_captures.capture_failed")).unwrap();
    v["notificationItems"][0]["NotificationRequestItem"]["reason"] = json!("");
    let envs = map_with(&options, &sign(KEY, v.to_string().as_bytes()));
    let Event::PaymentFailed(p) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(p.failure_reason.as_deref(), Some("capture_failed"));
}

#[test]
fn a_capture_adyen_refused_fails_that_capture() {
    let mut v: Value = serde_json::from_slice(&fixture("partial_captures.capture_2")).unwrap();
    let item = &mut v["notificationItems"][0]["NotificationRequestItem"];
    item["success"] = json!("false");
    item["reason"] = json!("Insufficient balance on payment");
    let envs = map_with(&manual_woocommerce(), &sign(KEY, v.to_string().as_bytes()));
    let at = "2026-06-03T09:00:00+02:00";
    let mut p = payment_20(PaymentStatus::Failed, 4000, at);
    p.capture_id = Some("Q8K2PSP000000022".into());
    p.failure_reason = Some("Insufficient balance on payment".into());
    assert_eq!(
        envs,
        vec![envelope(
            "adyen:Q8K2PSP000000022:CAPTURE:false",
            at,
            Event::PaymentFailed(p)
        )]
    );
}

fn refund_20(psp: &str, minor: i64, status: RefundStatus, at: &str) -> Refund {
    Refund {
        provider: "adyen".into(),
        refund_id: psp.into(),
        payment_id: Some(AUTH_20.into()),
        links: links_20(),
        amount: money(minor, "EUR"),
        status,
        reason: None,
        lines: vec![],
        adjustments: None,
        at: time(at),
        created_at: None,
        gateway: None,
    }
}

#[test]
fn refunds_that_fail_after_they_succeeded_are_the_same_refund() {
    let options = manual_woocommerce();
    let at = "2026-06-10T09:00:00+02:00";
    assert_eq!(
        signed_map_with(&options, "refund_failed.refund"),
        vec![envelope(
            "adyen:Q8K2PSP000000023:REFUND:true",
            at,
            Event::RefundIssued(refund_20(
                "Q8K2PSP000000023",
                1500,
                RefundStatus::Succeeded,
                at
            ))
        )]
    );
    let at = "2026-06-12T09:00:00+02:00";
    let mut r = refund_20("Q8K2PSP000000023", 1500, RefundStatus::Failed, at);
    r.reason = Some("Refund rejected by the card scheme".into());
    assert_eq!(
        signed_map_with(&options, "refund_failed.refund_failed"),
        vec![envelope(
            "adyen:Q8K2PSP000000023:REFUND_FAILED:true",
            at,
            Event::RefundIssued(r)
        )]
    );
    let at = "2026-06-20T09:00:00+02:00";
    let mut r = refund_20("Q8K2PSP000000024", 2500, RefundStatus::Failed, at);
    r.reason = Some("Account closed".into());
    assert_eq!(
        signed_map_with(&options, "refund_failed.refunded_reversed"),
        vec![envelope(
            "adyen:Q8K2PSP000000024:REFUNDED_REVERSED:true",
            at,
            Event::RefundIssued(r)
        )]
    );
}

/// The capture fixture turned into another modification of the same payment.
fn modification(code: &str, psp: &str, success: &str, extra: Value) -> Vec<Envelope> {
    let mut v: Value = serde_json::from_slice(&fixture("capture")).unwrap();
    let item = &mut v["notificationItems"][0]["NotificationRequestItem"];
    item["eventCode"] = json!(code);
    item["pspReference"] = json!(psp);
    item["success"] = json!(success);
    item["additionalData"] = extra;
    signed_map(v.to_string().as_bytes())
}

#[test]
fn cancellations_adjustments_and_cancel_or_refund() {
    let at = "2026-03-02T12:00:00+01:00";
    let cancelled = Event::PaymentFailed(payment(
        "Q8K2PSP000000001",
        PaymentStatus::Cancelled,
        12999,
        at,
    ));
    for code in ["CANCELLATION", "TECHNICAL_CANCEL"] {
        assert_eq!(
            modification(code, "Q8K2PSP000000030", "true", json!({})),
            vec![envelope(
                &format!("adyen:Q8K2PSP000000030:{code}:true"),
                at,
                cancelled.clone()
            )],
            "{code}"
        );
        // A cancellation that did not happen changes nothing.
        assert_eq!(
            modification(code, "Q8K2PSP000000030", "false", json!({})),
            vec![],
            "{code}"
        );
    }
    assert_eq!(
        modification(
            "CANCEL_OR_REFUND",
            "Q8K2PSP000000031",
            "true",
            json!({"modification.action": "cancel"})
        )[0]
        .event,
        cancelled
    );
    // Cancel-or-refund of a captured payment is a refund with its own reference.
    let envs = modification(
        "CANCEL_OR_REFUND",
        "Q8K2PSP000000032",
        "true",
        json!({"modification.action": "refund"}),
    );
    let mut r = refund_3();
    r.refund_id = "Q8K2PSP000000032".into();
    r.amount = money(12999, "EUR");
    r.at = time(at);
    assert_eq!(envs[0].event, Event::RefundIssued(r));

    // A new authorised amount (automatic capture, the default): still authorised.
    let mut p = payment("Q8K2PSP000000001", PaymentStatus::Authorized, 12999, at);
    p.auto_capture = true;
    assert_eq!(
        modification(
            "AUTHORISATION_ADJUSTMENT",
            "Q8K2PSP000000033",
            "true",
            json!({})
        )[0]
        .event,
        Event::PaymentSucceeded(p)
    );
}

#[test]
fn every_dispute_notification_moves_money_once_under_the_disputes_reference() {
    let notify = |code: &str, status: Option<&str>, at: &str| {
        let mut v: Value = serde_json::from_slice(&fixture("chargeback")).unwrap();
        let item = &mut v["notificationItems"][0]["NotificationRequestItem"];
        item["eventCode"] = json!(code);
        item["eventDate"] = json!(at);
        match status {
            Some(s) => item["additionalData"]["disputeStatus"] = json!(s),
            None => {
                item["additionalData"]
                    .as_object_mut()
                    .unwrap()
                    .remove("disputeStatus");
            }
        }
        let envs = signed_map(v.to_string().as_bytes());
        assert_eq!(envs.len(), 1);
        envs.into_iter().next().unwrap()
    };
    let moved = |code: &str, minor: i64, at: &str| DisputeMovement {
        id: format!("adyen:Q8K2DSP000000001:{code}:true"),
        amount: money(minor, "EUR"),
        fee: None,
        at: time(at),
    };
    type Case<'a> = (&'a str, Option<&'a str>, DisputeStatus, Option<i64>, bool);
    let cases: [Case<'_>; 12] = [
        (
            "REQUEST_FOR_INFORMATION",
            Some("Unresponded"),
            DisputeStatus::Inquiry,
            None,
            false,
        ),
        (
            "NOTIFICATION_OF_CHARGEBACK",
            Some("Undefended"),
            DisputeStatus::Inquiry,
            None,
            false,
        ),
        (
            "CHARGEBACK",
            None,
            DisputeStatus::NeedsResponse,
            Some(-12999),
            false,
        ),
        (
            "CHARGEBACK",
            Some("Undefended"),
            DisputeStatus::NeedsResponse,
            Some(-12999),
            false,
        ),
        (
            "CHARGEBACK",
            Some("Unresponded"),
            DisputeStatus::NeedsResponse,
            Some(-12999),
            false,
        ),
        (
            "CHARGEBACK",
            Some("Responded"),
            DisputeStatus::UnderReview,
            Some(-12999),
            false,
        ),
        (
            "CHARGEBACK",
            Some("Accepted"),
            DisputeStatus::Lost,
            Some(-12999),
            true,
        ),
        (
            "CHARGEBACK",
            Some("Expired"),
            DisputeStatus::Lost,
            Some(-12999),
            true,
        ),
        (
            "CHARGEBACK_REVERSED",
            Some("Won"),
            DisputeStatus::Won,
            Some(12999),
            true,
        ),
        (
            "SECOND_CHARGEBACK",
            Some("Lost"),
            DisputeStatus::Lost,
            Some(-12999),
            true,
        ),
        (
            "PREARBITRATION_WON",
            None,
            DisputeStatus::Won,
            Some(12999),
            true,
        ),
        ("PREARBITRATION_LOST", None, DisputeStatus::Lost, None, true),
    ];
    let at = "2026-05-20T10:00:00+02:00";
    for (code, status, want, minor, closed) in cases {
        let env = notify(code, status, at);
        let (d, is_closed) = match &env.event {
            Event::DisputeOpened(d) => (d, false),
            Event::DisputeClosed(d) => (d, true),
            other => panic!("{code}: {other:?}"),
        };
        assert_eq!(d.dispute_id, "Q8K2DSP000000001", "{code}");
        assert_eq!(d.payment_id.as_deref(), Some("Q8K2PSP000000001"), "{code}");
        assert_eq!(d.status, want, "{code} {status:?}");
        assert_eq!(is_closed, closed, "{code} {status:?}");
        assert_eq!(
            d.movements,
            minor
                .map(|m| moved(code, m, at))
                .into_iter()
                .collect::<Vec<_>>(),
            "{code}"
        );
        assert_eq!(d.at, time(at));
    }

    // Adyen's samples send pre-arbitration outcomes without an originalReference:
    // the dispute then names no payment (its own reference is not one).
    let mut v: Value = serde_json::from_slice(&fixture("chargeback")).unwrap();
    let item = &mut v["notificationItems"][0]["NotificationRequestItem"];
    item["eventCode"] = json!("PREARBITRATION_WON");
    item.as_object_mut().unwrap().remove("originalReference");
    let envs = signed_map(v.to_string().as_bytes());
    let Event::DisputeClosed(d) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(d.payment_id, None);
    assert_eq!(
        d.links,
        vec![OrderLink::Order {
            order_id: "shopify:7301000042".into()
        }]
    );
}

#[test]
fn a_batch_maps_known_items_and_skips_the_rest() {
    let envs = map_fixture("batch");
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[0].event_id, "adyen:Q8K2PSP000000002:CAPTURE:true");
    assert_eq!(envs[1].event, Event::RefundIssued(refund_3()));
    assert_eq!(envs[1].event_id, "adyen:Q8K2PSP000000003:REFUND:true");
    assert_eq!(map_fixture("report_available"), vec![]);
    assert_eq!(
        describe(&fixture("report_available")).topic,
        "REPORT_AVAILABLE"
    );
}

// ---------------------------------------------------------------- conformance corpus

const CORPUS: &[&str] = &[
    "hmac_known_answer_vector.json",
    "notification__authorisation_true.json",
    "notification__refund_true.json",
];

#[test]
fn conformance_every_adyen_file_is_covered() {
    let Some(dir) = conformance_dir("adyen") else {
        return;
    };
    let names = json_file_names(&dir);
    assert_eq!(names, CORPUS, "the corpus changed: cover the new files");
}

#[test]
fn conformance_authorisation_true() {
    let Some(dir) = conformance_dir("adyen") else {
        return;
    };
    let body = std::fs::read(dir.join(CORPUS[1])).unwrap();
    // Signed by the library's tests with a key we do not have: its signature is
    // checked, and does not match ours.
    assert_eq!(verify(KEY, &body), Err(VerifyError::Mismatch));
    let inbound = describe(&body);
    assert_eq!(inbound.topic, "AUTHORISATION");
    assert_eq!(inbound.event_id, "adyen:123456789:AUTHORISATION:true");
    let envs = signed_map(&body);
    assert_eq!(
        envs,
        vec![envelope(
            "adyen:123456789:AUTHORISATION:true",
            "2017-01-19T16:42:03+01:00",
            Event::PaymentSucceeded(Payment {
                provider: "adyen".into(),
                payment_id: "123456789".into(),
                links: links("8313842560770001", "123456789"),
                status: PaymentStatus::Authorized,
                amount: money(10100, "EUR"),
                fee: None,
                net: None,
                amount_refunded: None,
                method: Some("visa".into()),
                failure_reason: None,
                payer: Identity::default(),
                at: time("2017-01-19T16:42:03+01:00"),
                captured: None,
                capture_id: None,
                // Automatic capture (the default): Adyen captures it itself.
                auto_capture: true,
            })
        )]
    );

    // A tenant that captures by itself: the same authorisation is only a hold.
    let manual = MapOptions {
        adyen_capture: AdyenCapture::Manual,
        ..MapOptions::default()
    };
    let envs = map_with(&manual, &sign(KEY, &body));
    let Event::PaymentSucceeded(p) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(
        (p.status, p.auto_capture),
        (PaymentStatus::Authorized, false)
    );
}

#[test]
fn conformance_refund_true() {
    let Some(dir) = conformance_dir("adyen") else {
        return;
    };
    let body = std::fs::read(dir.join(CORPUS[2])).unwrap();
    assert_eq!(verify(KEY, &body), Err(VerifyError::Mismatch));
    let envs = signed_map(&body);
    assert_eq!(
        envs,
        vec![envelope(
            "adyen:PSP_REFERENCE:REFUND:true",
            "2017-02-17T11:11:44+01:00",
            Event::RefundIssued(Refund {
                provider: "adyen".into(),
                refund_id: "PSP_REFERENCE".into(),
                payment_id: Some("ORIGINAL_PSP".into()),
                links: links("payment-2017-1-17-11-refund", "ORIGINAL_PSP"),
                amount: money(1500, "EUR"),
                status: RefundStatus::Succeeded,
                reason: None,
                lines: vec![],
                adjustments: None,
                at: time("2017-02-17T11:11:44+01:00"),
                created_at: None,
                gateway: None,
            })
        )]
    );

    // The same refund rejected by the scheme, or reversed, later: REFUND_FAILED
    // and REFUNDED_REVERSED carry the REFUND's pspReference, so it is the same
    // refund, failed.
    for code in ["REFUND_FAILED", "REFUNDED_REVERSED"] {
        let mut v: Value = serde_json::from_slice(&body).unwrap();
        let item = &mut v["notificationItems"][0]["NotificationRequestItem"];
        item["eventCode"] = json!(code);
        item["eventDate"] = json!("2017-02-20T09:00:00+01:00");
        item["reason"] = json!("Refund Failed");
        let envs = signed_map(v.to_string().as_bytes());
        let Event::RefundIssued(r) = &envs[0].event else {
            panic!("{envs:?}")
        };
        assert_eq!(envs[0].event_id, format!("adyen:PSP_REFERENCE:{code}:true"));
        assert_eq!(
            (r.refund_id.as_str(), r.payment_id.as_deref(), r.status),
            ("PSP_REFERENCE", Some("ORIGINAL_PSP"), RefundStatus::Failed)
        );
        assert_eq!(r.amount, money(1500, "EUR"));
        assert_eq!(r.reason.as_deref(), Some("Refund Failed"));
    }
}
