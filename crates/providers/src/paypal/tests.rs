//! PayPal: RSA transmission signatures against a pinned, self-signed test
//! certificate (key and certificate made here), and our own fixtures.

use std::convert::Infallible;
use std::sync::OnceLock;

use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::sha2::{Digest, Sha256};
use rsa::{PrivateKey, PublicKey};
use serde_json::{Value, json};
use storefold_core::event::{
    Dispute, DisputeStatus, OrderLink, Payment, PaymentStatus, Refund, RefundStatus,
};
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::paypal::map::dispute_status;
use crate::test_support;
use crate::test_support::Harness;
use crate::{
    Credentials, Headers, MapContext, MapOptions, ProviderKind, RawInput, VerifyError,
    WebhookRequest,
};

const WEBHOOK_ID: &str = "8PT597110X687430LKGECATA";

/// A deterministic RNG (SHA-256 in counter mode) so test keys are reproducible.
struct TestRng {
    seed: [u8; 32],
    counter: u64,
}

impl TestRng {
    fn new(label: &str) -> Self {
        Self {
            seed: Sha256::digest(label.as_bytes()).into(),
            counter: 0,
        }
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_le_bytes());
            self.counter += 1;
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for TestRng {}

/// rcgen signs the certificate through the rsa crate.
struct CertSigner {
    key: PrivateKey,
    public_der: Vec<u8>,
}

impl rcgen::PublicKeyData for CertSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.public_der
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for CertSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg))
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

struct TestIdentity {
    key_pem: String,
    cert_pem: String,
    expired_cert_pem: String,
}

fn make_identity(label: &str) -> TestIdentity {
    let key = PrivateKey::new(&mut TestRng::new(label), 2048).unwrap();
    let public_der = PublicKey::from(&key)
        .to_pkcs1_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let signer = CertSigner { key, public_der };
    let mut params =
        rcgen::CertificateParams::new(vec!["webhooks.storefold.test".to_string()]).unwrap();
    // Without rcgen's crypto backend the serial is not derived: give one.
    params.serial_number = Some(rcgen::SerialNumber::from(0x5f0d_2026_u64));
    let cert_pem = params.self_signed(&signer).unwrap().pem();
    let mut old =
        rcgen::CertificateParams::new(vec!["webhooks.storefold.test".to_string()]).unwrap();
    old.not_before = rcgen::date_time_ymd(2019, 1, 1);
    old.not_after = rcgen::date_time_ymd(2020, 1, 1);
    old.serial_number = Some(rcgen::SerialNumber::from(0x5f0d_2019_u64));
    let expired_cert_pem = old.self_signed(&signer).unwrap().pem();
    TestIdentity {
        key_pem,
        cert_pem,
        expired_cert_pem,
    }
}

fn ours() -> &'static TestIdentity {
    static ID: OnceLock<TestIdentity> = OnceLock::new();
    ID.get_or_init(|| make_identity("storefold paypal test key"))
}

fn theirs() -> &'static TestIdentity {
    static ID: OnceLock<TestIdentity> = OnceLock::new();
    ID.get_or_init(|| make_identity("someone else's key"))
}

fn time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn now() -> OffsetDateTime {
    time("2026-03-10T14:20:35Z")
}

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::from_code(code).unwrap())
}

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("paypal", &format!("{name}.json"))
}

fn signing_secret(id: &TestIdentity) -> String {
    format!("webhook_id: {WEBHOOK_ID}\n{}", id.key_pem)
}

fn sign(body: &[u8], at: OffsetDateTime) -> Headers {
    let signed = ProviderKind::Paypal
        .sign(&signing_secret(ours()), "", body, at)
        .unwrap();
    assert_eq!(signed.body, body);
    Headers::from_pairs(signed.headers)
}

fn creds(cert_pem: &str, webhook_id: &str) -> Credentials {
    Credentials {
        secret: cert_pem.to_string(),
        webhook_id: Some(webhook_id.to_string()),
    }
}

fn verify(
    creds: &Credentials,
    headers: &Headers,
    body: &[u8],
    at: OffsetDateTime,
) -> Result<(), VerifyError> {
    ProviderKind::Paypal.verify(
        creds,
        &WebhookRequest {
            headers,
            body,
            url_token: None,
        },
        at,
    )
}

fn with_header(headers: &Headers, name: &str, value: Option<&str>) -> Headers {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(v) = value {
        out.push((name.to_string(), v.to_string()));
    }
    Headers::from_pairs(out)
}

/// Signs, verifies with the pinned certificate, describes and maps.
fn signed_map(body: &[u8]) -> Vec<Envelope> {
    signed_map_with(&MapOptions::default(), body)
}

fn signed_map_with(options: &MapOptions, body: &[u8]) -> Vec<Envelope> {
    let bench = Harness::new(ProviderKind::Paypal, &signing_secret(ours()), now())
        .verifying_with(creds(&ours().cert_pem, WEBHOOK_ID))
        .tenant("acme")
        .options(options.clone());
    let delivery = bench.receive("", body).unwrap();
    assert_eq!(delivery.kept.iter().count(), 5);
    bench.map(&delivery).unwrap()
}

fn map_fixture(name: &str) -> Vec<Envelope> {
    signed_map(&fixture(name))
}

// ---------------------------------------------------------------- signatures

#[test]
fn signed_string_uses_the_unsigned_decimal_crc32() {
    // The CRC-32 (IEEE) check value of "123456789" is 0xCBF43926.
    assert_eq!(
        crate::paypal::signed_string("id-1", "2026-01-01T00:00:00Z", "WH1", b"123456789"),
        format!("id-1|2026-01-01T00:00:00Z|WH1|{}", 0xCBF4_3926_u32)
    );
    assert_eq!(0xCBF4_3926_u32, 3_421_780_262);
}

#[test]
fn a_signed_webhook_verifies_with_the_pinned_certificate_only() {
    let body = fixture("payment.capture.completed");
    let headers = sign(&body, now());
    assert_eq!(headers.get("paypal-auth-algo"), Some("SHA256withRSA"));
    assert_eq!(
        headers.get("paypal-cert-url"),
        Some(crate::paypal::PLACEHOLDER_CERT_URL)
    );
    assert_eq!(
        headers.get("paypal-transmission-time"),
        Some("2026-03-10T14:20:35Z")
    );
    assert_eq!(
        verify(&creds(&ours().cert_pem, WEBHOOK_ID), &headers, &body, now()),
        Ok(())
    );
    // Another certificate (whatever PAYPAL-CERT-URL says) does not verify it.
    assert_eq!(
        verify(
            &creds(&theirs().cert_pem, WEBHOOK_ID),
            &headers,
            &body,
            now()
        ),
        Err(VerifyError::Mismatch)
    );
    let elsewhere = with_header(
        &headers,
        "paypal-cert-url",
        Some("https://attacker.invalid/cert.pem"),
    );
    assert_eq!(
        verify(
            &creds(&ours().cert_pem, WEBHOOK_ID),
            &elsewhere,
            &body,
            now()
        ),
        Ok(())
    );
}

#[test]
fn tampered_body_wrong_webhook_id_and_replays_are_refused() {
    let body = fixture("payment.capture.completed");
    let headers = sign(&body, now());
    let pinned = creds(&ours().cert_pem, WEBHOOK_ID);
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("\"129.99\"", "\"12.99\"")
        .into_bytes();
    assert_eq!(
        verify(&pinned, &headers, &tampered, now()),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify(
            &creds(&ours().cert_pem, "OTHERWEBHOOK0001"),
            &headers,
            &body,
            now()
        ),
        Err(VerifyError::Mismatch)
    );
    let other_id = with_header(&headers, "paypal-transmission-id", Some("0a1b2c3d-0000"));
    assert_eq!(
        verify(&pinned, &other_id, &body, now()),
        Err(VerifyError::Mismatch)
    );
    let later = now() + time::Duration::seconds(301);
    assert_eq!(
        verify(&pinned, &headers, &body, later),
        Err(VerifyError::Expired {
            tolerance_secs: 300
        })
    );
    let earlier = now() - time::Duration::seconds(301);
    assert_eq!(
        verify(&pinned, &headers, &body, earlier),
        Err(VerifyError::Expired {
            tolerance_secs: 300
        })
    );
    assert_eq!(
        verify(
            &pinned,
            &headers,
            &body,
            now() + time::Duration::seconds(300)
        ),
        Ok(())
    );
}

#[test]
fn missing_and_garbled_headers() {
    let body = fixture("payment.capture.denied");
    let headers = sign(&body, now());
    let pinned = creds(&ours().cert_pem, WEBHOOK_ID);
    for name in [
        "PAYPAL-AUTH-ALGO",
        "PAYPAL-TRANSMISSION-ID",
        "PAYPAL-TRANSMISSION-TIME",
        "PAYPAL-TRANSMISSION-SIG",
    ] {
        assert_eq!(
            verify(&pinned, &with_header(&headers, name, None), &body, now()),
            Err(VerifyError::MissingHeader(name)),
            "{name}"
        );
    }
    for (name, value) in [
        ("paypal-auth-algo", "SHA1withRSA"),
        ("paypal-transmission-time", "yesterday"),
        ("paypal-transmission-sig", "***"),
        ("paypal-transmission-id", ""),
    ] {
        assert!(
            matches!(
                verify(
                    &pinned,
                    &with_header(&headers, name, Some(value)),
                    &body,
                    now()
                ),
                Err(VerifyError::MalformedHeader { .. })
            ),
            "{name}: {value:?}"
        );
    }
}

#[test]
fn unusable_credentials() {
    let body = fixture("payment.capture.denied");
    let headers = sign(&body, now());
    for bad in [
        creds("not a certificate", WEBHOOK_ID),
        creds(&ours().key_pem, WEBHOOK_ID),
        creds(&ours().expired_cert_pem, WEBHOOK_ID),
        creds(&ours().cert_pem, "  "),
        Credentials::new(ours().cert_pem.clone()),
    ] {
        assert!(
            matches!(
                verify(&bad, &headers, &body, now()),
                Err(VerifyError::BadCredentials(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn sign_needs_the_webhook_id_and_a_private_key() {
    let body = b"{}";
    assert!(
        ProviderKind::Paypal
            .sign(&ours().key_pem, "", body, now())
            .is_err()
    );
    assert!(
        ProviderKind::Paypal
            .sign("webhook_id: X\nnot a key", "", body, now())
            .is_err()
    );
    // `sign_for_webhook` takes the id directly, and signs deterministically.
    let a = crate::paypal::sign_for_webhook(&ours().key_pem, WEBHOOK_ID, body, now()).unwrap();
    let b = ProviderKind::Paypal
        .sign(&signing_secret(ours()), "", body, now())
        .unwrap();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------- mapping

const CAPTURE: &str = "7TK53561YB803214S";

fn links(orders: &[&str], capture: &str) -> Vec<OrderLink> {
    let mut links: Vec<OrderLink> = orders
        .iter()
        .map(|o| OrderLink::Order {
            order_id: format!("shopify:{o}"),
        })
        .collect();
    links.push(OrderLink::Payment {
        provider: "paypal".into(),
        reference: capture.into(),
    });
    links
}

fn envelope(event_id: &str, at: &str, event: Event) -> Envelope {
    Envelope {
        tenant: "acme".into(),
        provider: "paypal".into(),
        event_id: event_id.into(),
        occurred_at: time(at),
        event,
    }
}

#[test]
fn describe_reads_event_type_id_and_create_time() {
    let body = fixture("customer.dispute.created");
    let headers = Headers::new();
    let inbound = ProviderKind::Paypal
        .describe(&WebhookRequest {
            headers: &headers,
            body: &body,
            url_token: None,
        })
        .unwrap();
    assert_eq!(inbound.topic, "CUSTOMER.DISPUTE.CREATED");
    assert_eq!(inbound.event_id, "WH-4M0448861G563140B-9EX36365822141321");
    assert_eq!(inbound.occurred_at, Some(time("2026-04-02T10:00:05Z")));
}

#[test]
fn capture_completed_is_a_payment_with_fee_and_net() {
    let at = "2026-03-10T14:20:31.000Z";
    assert_eq!(
        map_fixture("payment.capture.completed"),
        vec![envelope(
            "WH-6KX0913TB2301384H-1LJ08295VT2113528",
            at,
            Event::PaymentSucceeded(Payment {
                provider: "paypal".into(),
                payment_id: CAPTURE.into(),
                links: links(&["5123000077", "INV-1077"], CAPTURE),
                status: PaymentStatus::Succeeded,
                amount: money(12999, "USD"),
                fee: Some(money(426, "USD")),
                net: Some(money(12573, "USD")),
                amount_refunded: None,
                method: Some("paypal".into()),
                failure_reason: None,
                payer: Identity::default(),
                at: time(at),
                captured: None,
                capture_id: None,
                auto_capture: false,
            })
        )]
    );
}

#[test]
fn capture_without_breakdown_has_unknown_fees() {
    let mut v: Value = serde_json::from_slice(&fixture("payment.capture.completed")).unwrap();
    v["resource"]
        .as_object_mut()
        .unwrap()
        .remove("seller_receivable_breakdown");
    v["resource"]["amount"] = json!({"currency_code": "JPY", "value": "15000"});
    let envs = signed_map(v.to_string().as_bytes());
    let Event::PaymentSucceeded(p) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!((p.fee, p.net), (None, None));
    assert_eq!(p.amount, money(15000, "JPY"));
}

#[test]
fn capture_denied_is_a_failed_payment() {
    let at = "2026-03-11T09:02:10Z";
    assert_eq!(
        map_fixture("payment.capture.denied"),
        vec![envelope(
            "WH-2WR32451HC0233532-67976317FL4543714",
            at,
            Event::PaymentFailed(Payment {
                provider: "paypal".into(),
                payment_id: "0VF52814937998046".into(),
                links: links(&["5123000078"], "0VF52814937998046"),
                status: PaymentStatus::Failed,
                amount: money(4500, "EUR"),
                fee: None,
                net: None,
                amount_refunded: None,
                method: Some("paypal".into()),
                failure_reason: Some("DECLINED".into()),
                payer: Identity::default(),
                at: time(at),
                captured: None,
                capture_id: None,
                auto_capture: false,
            })
        )]
    );
}

#[test]
fn capture_refunded_refers_to_the_capture_by_its_up_link() {
    let at = "2026-03-15T08:45:12Z";
    assert_eq!(
        map_fixture("payment.capture.refunded"),
        vec![envelope(
            "WH-1GE84257G0350133W-6RW800890C634293G",
            at,
            Event::RefundIssued(Refund {
                provider: "paypal".into(),
                refund_id: "1JU08902781691411".into(),
                payment_id: Some(CAPTURE.into()),
                links: links(&["5123000077", "INV-1077"], CAPTURE),
                amount: money(3000, "USD"),
                status: RefundStatus::Succeeded,
                reason: Some("Defective strap".into()),
                lines: vec![],
                adjustments: None,
                at: time(at),
                // The refund's own create_time.
                created_at: Some(time("2026-03-15T01:45:10-07:00")),
                gateway: None,
            })
        )]
    );
}

fn dispute(status: DisputeStatus, at: &str) -> Dispute {
    Dispute {
        provider: "paypal".into(),
        dispute_id: "PP-D-21481".into(),
        payment_id: Some(CAPTURE.into()),
        links: links(&["5123000077", "INV-1077"], CAPTURE),
        amount: money(12999, "USD"),
        status,
        reason: Some("MERCHANDISE_OR_SERVICE_NOT_RECEIVED".into()),
        funds_withdrawn: false,
        funds_reinstated: false,
        at: time(at),
        movements: vec![],
    }
}

#[test]
fn dispute_lifecycle() {
    let at = "2026-04-02T10:00:05.000Z";
    assert_eq!(
        map_fixture("customer.dispute.created"),
        vec![envelope(
            "WH-4M0448861G563140B-9EX36365822141321",
            at,
            Event::DisputeOpened(dispute(DisputeStatus::Inquiry, at))
        )]
    );
    let at = "2026-04-20T10:00:05.000Z";
    let mut d = dispute(DisputeStatus::UnderReview, at);
    d.funds_withdrawn = true;
    assert_eq!(
        map_fixture("customer.dispute.updated"),
        vec![envelope(
            "WH-0Y2844371C094313N-3MV48290EU4537629",
            at,
            Event::DisputeOpened(d)
        )]
    );
    let at = "2026-05-04T10:00:05.000Z";
    let mut d = dispute(DisputeStatus::Won, at);
    d.funds_withdrawn = true;
    d.funds_reinstated = true;
    assert_eq!(
        map_fixture("customer.dispute.resolved"),
        vec![envelope(
            "WH-8TR26393LL5322543-0N9437744X3296143",
            at,
            Event::DisputeClosed(d)
        )]
    );
}

#[test]
fn dispute_outcomes_and_statuses() {
    use DisputeStatus::*;
    let cases = [
        (
            true,
            Some("CHARGEBACK"),
            Some("RESOLVED_BUYER_FAVOUR"),
            Lost,
        ),
        // The merchant accepted the claim and refunded: not a loss.
        (true, Some("CHARGEBACK"), Some("ACCEPTED"), MerchantRefunded),
        (
            true,
            Some("CHARGEBACK"),
            Some("RESOLVED_SELLER_FAVOUR"),
            Won,
        ),
        (true, Some("ARBITRATION"), Some("DENIED"), Won),
        (true, Some("CHARGEBACK"), Some("RESOLVED_WITH_PAYOUT"), Won),
        (true, Some("CHARGEBACK"), Some("CANCELED_BY_BUYER"), Won),
        (
            true,
            Some("INQUIRY"),
            Some("CANCELED_BY_BUYER"),
            WarningClosed,
        ),
        (true, Some("INQUIRY"), None, WarningClosed),
    ];
    for (resolved, stage, outcome, want) in cases {
        assert_eq!(
            dispute_status(resolved, stage, Some("RESOLVED"), outcome),
            want,
            "{stage:?} {outcome:?}"
        );
    }
    assert_eq!(
        dispute_status(false, Some("INQUIRY"), Some("UNDER_REVIEW"), None),
        Inquiry
    );
    assert_eq!(
        dispute_status(
            false,
            Some("CHARGEBACK"),
            Some("WAITING_FOR_SELLER_RESPONSE"),
            None
        ),
        NeedsResponse
    );
    assert_eq!(
        dispute_status(false, Some("PRE_ARBITRATION"), Some("UNDER_REVIEW"), None),
        UnderReview
    );

    // Lost after a chargeback: the money is gone and stays gone.
    let mut v: Value = serde_json::from_slice(&fixture("customer.dispute.resolved")).unwrap();
    v["resource"]["dispute_outcome"]["outcome_code"] = json!("RESOLVED_BUYER_FAVOUR");
    let envs = signed_map(v.to_string().as_bytes());
    let Event::DisputeClosed(d) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(d.status, Lost);
    assert!(d.funds_withdrawn && !d.funds_reinstated);
}

const AUTH: &str = "8AU51278JL6410457";

fn auth_links(capture: Option<&str>) -> Vec<OrderLink> {
    let mut l = links(&["5123000090", "INV-1090"], AUTH);
    if let Some(c) = capture {
        l.push(OrderLink::Payment {
            provider: "paypal".into(),
            reference: c.into(),
        });
    }
    l
}

fn paypal_payment(
    id: &str,
    links: Vec<OrderLink>,
    status: PaymentStatus,
    amount: Money,
    at: &str,
) -> Payment {
    Payment {
        provider: "paypal".into(),
        payment_id: id.into(),
        links,
        status,
        amount,
        fee: None,
        net: None,
        amount_refunded: None,
        method: Some("paypal".into()),
        failure_reason: None,
        payer: Identity::default(),
        at: time(at),
        captured: None,
        capture_id: None,
        auto_capture: false,
    }
}

#[test]
fn an_authorization_captured_twice_then_voided() {
    // The authorization is the payment: 200.00 held.
    let at = "2026-07-03T12:00:04.000Z";
    assert_eq!(
        map_fixture("auth_capture.authorization.created"),
        vec![envelope(
            "WH-1AB23456CD789012E-3FG45678HJ901234K",
            at,
            Event::PaymentSucceeded(paypal_payment(
                AUTH,
                auth_links(None),
                PaymentStatus::Authorized,
                money(20000, "USD"),
                at
            ))
        )]
    );

    // Each capture names the authorization in its `up` link: a capture of that
    // payment, with its own id and, once completed, its own fee.
    let c1 = "3CA31270KY4471221";
    let at = "2026-07-05T09:30:03.000Z";
    let mut p = paypal_payment(
        AUTH,
        auth_links(Some(c1)),
        PaymentStatus::Succeeded,
        money(12000, "USD"),
        at,
    );
    p.capture_id = Some(c1.into());
    p.fee = Some(money(418, "USD"));
    p.net = Some(money(11582, "USD"));
    assert_eq!(
        map_fixture("auth_capture.capture_1.completed"),
        vec![envelope(
            "WH-2BC34567DE890123F-4GH56789JK012345L",
            at,
            Event::PaymentSucceeded(p)
        )]
    );

    // The second capture is pending (no money yet, no fee), then completes.
    let c2 = "3CA31270KY4471222";
    let at = "2026-07-07T15:10:02.000Z";
    let mut p = paypal_payment(
        AUTH,
        auth_links(Some(c2)),
        PaymentStatus::Authorized,
        money(5000, "USD"),
        at,
    );
    p.capture_id = Some(c2.into());
    assert_eq!(
        map_fixture("auth_capture.capture_2.pending"),
        vec![envelope(
            "WH-3CD45678EF901234G-5HJ67890KL123456M",
            at,
            Event::PaymentSucceeded(p.clone())
        )]
    );
    let at = "2026-07-08T08:00:02.000Z";
    p.status = PaymentStatus::Succeeded;
    p.at = time(at);
    p.fee = Some(money(224, "USD"));
    p.net = Some(money(4776, "USD"));
    assert_eq!(
        map_fixture("auth_capture.capture_2.completed"),
        vec![envelope(
            "WH-4DE56789FG012345H-6JK78901LM234567N",
            at,
            Event::PaymentSucceeded(p)
        )]
    );

    // The rest of the authorization is voided: the payment is cancelled (the
    // fold voids only what was not captured).
    let at = "2026-07-09T10:00:02.000Z";
    assert_eq!(
        map_fixture("auth_capture.authorization.voided"),
        vec![envelope(
            "WH-5EF67890GH123456J-7KL89012MN345678P",
            at,
            Event::PaymentFailed(paypal_payment(
                AUTH,
                auth_links(None),
                PaymentStatus::Cancelled,
                money(20000, "USD"),
                at
            ))
        )]
    );

    // A capture of this authorization that is denied fails that capture only.
    let mut v: Value = serde_json::from_slice(&fixture("auth_capture.capture_2.pending")).unwrap();
    v["event_type"] = json!("PAYMENT.CAPTURE.DECLINED");
    v["resource"]["status"] = json!("DECLINED");
    v["resource"]["status_details"] = json!({"reason": "BUYER_COMPLAINT"});
    let envs = signed_map(v.to_string().as_bytes());
    let Event::PaymentFailed(p) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(
        (p.payment_id.as_str(), p.capture_id.as_deref(), p.status),
        (AUTH, Some(c2), PaymentStatus::Failed)
    );
    assert_eq!(p.failure_reason.as_deref(), Some("BUYER_COMPLAINT"));
}

#[test]
fn a_v1_authorization_resource_is_read_too() {
    // Some events still carry v1 resources: `total`/`currency` money.
    let body = json!({
        "id": "WH-7GH89012JK345678L-9MN01234PQ567890R",
        "create_time": "2026-07-03T12:00:04Z",
        "resource_type": "authorization",
        "event_type": "PAYMENT.AUTHORIZATION.CREATED",
        "resource": {
            "id": "4BV90318XT2265839",
            "state": "authorized",
            "amount": {"total": "42.50", "currency": "GBP", "details": {"subtotal": "42.50"}},
            "parent_payment": "PAY-4FS12345AB678901CDEF2345",
            "links": [{"href": "https://api.sandbox.paypal.example/v1/payments/authorization/4BV90318XT2265839", "rel": "self", "method": "GET"}]
        }
    })
    .to_string();
    let envs = signed_map(body.as_bytes());
    let Event::PaymentSucceeded(p) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(
        (p.payment_id.as_str(), p.status, p.amount),
        (
            "4BV90318XT2265839",
            PaymentStatus::Authorized,
            money(4250, "GBP")
        )
    );
}

#[test]
fn a_reversed_capture_is_a_reversal_of_that_payment() {
    let at = "2026-04-25T16:05:09.000Z";
    let mut p = paypal_payment(
        CAPTURE,
        links(&[], CAPTURE),
        PaymentStatus::Reversed,
        money(12999, "USD"),
        at,
    );
    p.failure_reason = Some("Payment reversed".into());
    assert_eq!(
        map_fixture("payment.capture.reversed"),
        vec![envelope(
            "WH-6FG78901HJ234567K-8LM90123NP456789Q",
            at,
            Event::PaymentSucceeded(p)
        )]
    );
    // A reversal that failed took nothing back.
    let mut v: Value = serde_json::from_slice(&fixture("payment.capture.reversed")).unwrap();
    v["resource"]["status"] = json!("FAILED");
    assert_eq!(signed_map(v.to_string().as_bytes()), vec![]);
    // One without the capture it reverses cannot be placed.
    let mut v: Value = serde_json::from_slice(&fixture("payment.capture.reversed")).unwrap();
    v["resource"]["links"] = json!([]);
    let headers = Headers::new();
    let options = MapOptions::default();
    assert!(
        ProviderKind::Paypal
            .map(
                &MapContext {
                    tenant: "acme",
                    options: &options,
                },
                &RawInput {
                    topic: "PAYMENT.CAPTURE.REVERSED",
                    event_id: "x",
                    headers: &headers,
                    body: v.to_string().as_bytes(),
                    received_at: now(),
                },
            )
            .is_err()
    );
}

#[test]
fn the_order_reference_follows_the_configured_fields_pattern_and_store() {
    let mut options = MapOptions::for_stores(["shopify", "woocommerce"]);
    options.paypal.fields = vec!["invoice_id".into(), "custom_id".into()];
    options.paypal.store = Some("woocommerce".into());
    options.paypal.pattern = Some(crate::ReferencePattern::new(r"^INV-(?P<order>\d+)$").unwrap());
    // invoice_id first, through the pattern; custom_id does not match it.
    let envs = signed_map_with(&options, &fixture("payment.capture.completed"));
    let Event::PaymentSucceeded(p) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(
        p.links,
        vec![
            OrderLink::Order {
                order_id: "woocommerce:1077".into()
            },
            OrderLink::Payment {
                provider: "paypal".into(),
                reference: CAPTURE.into()
            }
        ]
    );
    // Disputes name the same fields as `invoice_number` and `custom`.
    let envs = signed_map_with(&options, &fixture("customer.dispute.created"));
    let Event::DisputeOpened(d) = &envs[0].event else {
        panic!("{envs:?}")
    };
    assert_eq!(
        d.links[0],
        OrderLink::Order {
            order_id: "woocommerce:1077".into()
        }
    );
}

#[test]
fn other_event_types_map_to_nothing() {
    let body = json!({
        "id": "WH-1", "event_type": "CHECKOUT.ORDER.APPROVED",
        "create_time": "2026-03-10T14:20:00Z", "resource": {"id": "5O190127TN364715T"}
    })
    .to_string();
    assert_eq!(signed_map(body.as_bytes()), vec![]);
}
