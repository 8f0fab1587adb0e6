//! ERP feed: signature, idempotency ids and exact canonical values, line by
//! line, and the errors that name the bad line.

use storefold_core::event::InventoryUpdated;
use storefold_core::{Currency, Envelope, Event, Money};
use time::OffsetDateTime;
use time::macros::datetime;

use super::{TOLERANCE_SECS, TOPIC, body_id, signature_header};
use crate::test_support::{self, Harness};
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "erp-test-secret";
const NOW: OffsetDateTime = datetime!(2026-11-02 13:00 UTC);

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("erp", name)
}

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::from_code(code).unwrap())
}

fn deliver(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    Harness::new(ProviderKind::Erp, SECRET, NOW)
        .tenant("acme")
        .deliver(TOPIC, body)
}

fn inventory(events: &[Envelope]) -> Vec<&InventoryUpdated> {
    events
        .iter()
        .map(|e| match &e.event {
            Event::InventoryUpdated(i) => i,
            other => panic!("expected inventory updates only, got {other:?}"),
        })
        .collect()
}

fn refusal(body: &str) -> String {
    deliver(body.as_bytes())
        .map(|(_, events)| format!("mapped: {events:?}"))
        .unwrap_or_else(|e| e.to_string())
}

/// Verifies `body` under `headers` with the test secret at `now`.
fn check(headers: &[(&str, &str)], body: &[u8], now: OffsetDateTime) -> Result<(), VerifyError> {
    let headers = Headers::from_pairs(headers.iter().copied());
    ProviderKind::Erp.verify(
        &Credentials::new(SECRET),
        &WebhookRequest {
            headers: &headers,
            body,
            url_token: None,
        },
        now,
    )
}

#[test]
fn every_line_is_one_inventory_update_with_exact_values() {
    let body = fixture("inventory.jsonl");
    let (inbound, events) = deliver(&body).unwrap();
    // sha256 of the fixture, computed with Python's hashlib.
    let id = "erp:a8ffc19d72d61d6511972ea9eb89eebcdbef3ac3efc173af3250ccaaadd8a999";
    assert_eq!(
        inbound,
        Inbound {
            topic: "inventory".into(),
            event_id: id.into(),
            occurred_at: None,
        }
    );
    // Line 3 is blank: skipped, and still counted.
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{id}#1"),
            format!("{id}#2"),
            format!("{id}#4"),
            format!("{id}#5")
        ]
    );
    for e in &events {
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.provider, "erp");
    }
    assert_eq!(
        inventory(&events),
        [
            &InventoryUpdated {
                sku: "TEE-ORG-M".into(),
                item_id: Some("ART-100-M".into()),
                unit_cost: Some(money(1250, "EUR")),
                available: Some(40),
                backorder: Some(false),
                eta: None,
                at: datetime!(2026-11-01 0:00 UTC),
            },
            // A date is midnight UTC, for `at` and `eta` alike.
            &InventoryUpdated {
                sku: "TEE-ORG-L".into(),
                item_id: None,
                unit_cost: Some(money(1305, "EUR")),
                available: Some(0),
                backorder: Some(true),
                eta: Some(datetime!(2027-01-15 0:00 UTC)),
                at: datetime!(2026-11-01 0:00 UTC),
            },
            // Yen have no minor unit; a numeric item id is kept as text.
            &InventoryUpdated {
                sku: "MUG-STONE-350".into(),
                item_id: Some("7781".into()),
                unit_cost: Some(money(1450, "JPY")),
                available: None,
                backorder: None,
                eta: None,
                at: datetime!(2026-11-02 0:30 UTC),
            },
            &InventoryUpdated {
                sku: "WRAP-GIFT".into(),
                item_id: None,
                unit_cost: None,
                available: Some(500),
                backorder: None,
                eta: None,
                at: datetime!(2026-11-02 12:00 UTC),
            },
        ]
    );
    assert_eq!(events[2].occurred_at, datetime!(2026-11-02 0:30 UTC));
}

#[test]
fn the_same_file_is_the_same_request_and_another_is_not() {
    let body = fixture("inventory.jsonl");
    let (first, _) = deliver(&body).unwrap();
    let (again, _) = deliver(&body).unwrap();
    assert_eq!(first.event_id, again.event_id);
    assert_eq!(first.event_id, body_id(&body));
    let mut other = body.clone();
    other.extend_from_slice(b"{\"sku\":\"X\",\"at\":\"2026-11-03\"}\n");
    let (changed, events) = deliver(&other).unwrap();
    assert_ne!(changed.event_id, first.event_id);
    assert_eq!(events.len(), 5);
    assert_eq!(events[4].event_id, format!("{}#6", changed.event_id));
}

#[test]
fn a_bad_line_refuses_the_whole_body_naming_line_and_field() {
    assert_eq!(
        refusal(&String::from_utf8(fixture("inventory__bad_line.jsonl")).unwrap()),
        "invalid field line 2: unit_cost: more decimals than EUR allows (2)"
    );
    assert_eq!(
        refusal(&String::from_utf8(fixture("inventory__cost_without_currency.jsonl")).unwrap()),
        "missing field line 3: currency (unit_cost is in it)"
    );
    let ok = r#"{"sku":"A","at":"2026-11-01"}"#;
    for (line, expected) in [
        (r#"{"at":"2026-11-01"}"#, "missing field line 2: sku"),
        (r#"{"sku":"  ","at":"2026-11-01"}"#, "missing field line 2: sku"),
        (r#"{"sku":"A"}"#, "missing field line 2: at"),
        (
            r#"{"sku":"A","at":"01/11/2026"}"#,
            "invalid field line 2: at: expected an RFC 3339 time or a date (YYYY-MM-DD)",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01","eta":"soon"}"#,
            "invalid field line 2: eta: expected an RFC 3339 time or a date (YYYY-MM-DD)",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01","unit_cost":"1.00","currency":"EURO"}"#,
            "invalid field line 2: currency: unknown currency code",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01","unit_cost":"-1.00","currency":"EUR"}"#,
            "invalid field line 2: unit_cost: a cost is not negative",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01","unit_cost":"1,00","currency":"EUR"}"#,
            "invalid field line 2: unit_cost: not a decimal amount (digits with an optional \
             '.' and fraction)",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01","available":"40"}"#,
            "body is not valid JSON: line 2, column 45: invalid type: string, expected i64 at \
             available",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01","unit_cots":"1.00"}"#,
            "body is not valid JSON: line 2, column 40: unknown field, expected one of `sku`, \
             `unit_cost`, `currency`, `available`, `backorder`, `eta`, `at`, `item_id` at \
             unit_cots",
        ),
        (
            r#"{"sku":"A","at":"2026-11-01""#,
            "body is not valid JSON: line 2, column 28: the JSON ends too early",
        ),
    ] {
        assert_eq!(refusal(&format!("{ok}\n{line}\n{ok}\n")), expected, "{line}");
    }
    // Not UTF-8 on the third line.
    let mut body = format!("{ok}\n\n").into_bytes();
    body.extend_from_slice(b"{\"sku\":\"\xff\",\"at\":\"2026-11-01\"}\n");
    assert_eq!(
        deliver(&body).unwrap_err().to_string(),
        "body is not valid JSON: line 3: not UTF-8 text"
    );
}

#[test]
fn errors_name_no_value() {
    let text = refusal(
        "{\"sku\":\"jane@example.com\",\"at\":\"2026-11-01\",\"available\":\"jane@example.com\"}",
    );
    assert!(text.starts_with("body is not valid JSON: line 1"), "{text}");
    assert!(!text.contains("jane"), "{text}");
}

#[test]
fn blank_lines_crlf_and_an_empty_body() {
    let (_, events) = deliver(b"\r\n{\"sku\":\"A\",\"at\":\"2026-11-01\"}\r\n  \r\n").unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].event_id.ends_with("#2"), "{}", events[0].event_id);
    assert_eq!(inventory(&events)[0].sku, "A");
    assert_eq!(deliver(b"").unwrap().1, vec![]);
    assert_eq!(deliver(b"\n\n").unwrap().1, vec![]);
}

#[test]
fn another_topic_is_refused_by_map() {
    let bench = Harness::new(ProviderKind::Erp, SECRET, NOW);
    let mut delivery = bench
        .receive(TOPIC, br#"{"sku":"A","at":"2026-11-01"}"#)
        .unwrap();
    delivery.inbound.topic = "orders".into();
    assert_eq!(
        bench.map(&delivery),
        Err(MapError::UnsupportedTopic("orders".into()))
    );
}

#[test]
fn verify_matches_an_independently_computed_hmac() {
    let body = b"{\"sku\":\"A\",\"at\":\"2026-11-01\"}\n";
    // hex(HMAC-SHA256("hush", "1743581760\n" + body)), computed with Python's hmac.
    let expected = "905849d554c27653da54f6c86b17fc2e2540314b8f4f76a5f603876b97d200ca";
    assert_eq!(
        signature_header("hush", 1_743_581_760, body),
        format!("sha256={expected}")
    );
    let headers = Headers::from_pairs([
        ("X-Storefold-Signature", format!("sha256={expected}")),
        ("X-Storefold-Timestamp", "1743581760".to_string()),
    ]);
    let at = OffsetDateTime::from_unix_timestamp(1_743_581_760).unwrap();
    let req = WebhookRequest {
        headers: &headers,
        body,
        url_token: None,
    };
    assert_eq!(
        ProviderKind::Erp.verify(&Credentials::new("hush"), &req, at),
        Ok(())
    );
}

#[test]
fn verify_refuses_wrong_secret_tampered_body_stale_time_and_bad_headers() {
    let body = fixture("inventory.jsonl");
    let t = NOW.unix_timestamp();
    let good = signature_header(SECRET, t, &body);
    let ts = t.to_string();
    assert_eq!(
        check(
            &[("X-Storefold-Signature", &good), ("X-Storefold-Timestamp", &ts)],
            &body,
            NOW
        ),
        Ok(())
    );
    let other = signature_header("another-secret", t, &body);
    assert_eq!(
        check(
            &[("X-Storefold-Signature", &other), ("X-Storefold-Timestamp", &ts)],
            &body,
            NOW
        ),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert_eq!(
        check(
            &[("X-Storefold-Signature", &good), ("X-Storefold-Timestamp", &ts)],
            &tampered,
            NOW
        ),
        Err(VerifyError::Mismatch)
    );
    // The time is signed: another one does not verify.
    let later = (t + 1).to_string();
    assert_eq!(
        check(
            &[("X-Storefold-Signature", &good), ("X-Storefold-Timestamp", &later)],
            &body,
            NOW
        ),
        Err(VerifyError::Mismatch)
    );
    // A genuine but stale request.
    let stale = time::Duration::seconds(TOLERANCE_SECS + 1);
    assert_eq!(
        check(
            &[("X-Storefold-Signature", &good), ("X-Storefold-Timestamp", &ts)],
            &body,
            NOW + stale
        ),
        Err(VerifyError::Expired {
            tolerance_secs: TOLERANCE_SECS
        })
    );
    assert_eq!(
        check(&[("X-Storefold-Timestamp", &ts)], &body, NOW),
        Err(VerifyError::MissingHeader("X-Storefold-Signature"))
    );
    assert_eq!(
        check(&[("X-Storefold-Signature", &good)], &body, NOW),
        Err(VerifyError::MissingHeader("X-Storefold-Timestamp"))
    );
    assert!(matches!(
        check(
            &[("X-Storefold-Signature", "md5=00"), ("X-Storefold-Timestamp", &ts)],
            &body,
            NOW
        ),
        Err(VerifyError::MalformedHeader { .. })
    ));
    // An operator command's signature (the topic is signed too) is not an
    // ERP feed's, even under the same secret.
    let operator = crate::operator::signature_header(SECRET, t, TOPIC, &body);
    assert_eq!(
        check(
            &[("X-Storefold-Signature", &operator), ("X-Storefold-Timestamp", &ts)],
            &body,
            NOW
        ),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        ProviderKind::Erp.verify(
            &Credentials::new(""),
            &WebhookRequest {
                headers: &Headers::new(),
                body: &body,
                url_token: None
            },
            NOW
        ),
        Err(VerifyError::BadCredentials(_))
    ));
}

#[test]
fn sign_sends_the_signature_and_its_time() {
    let body = fixture("inventory.jsonl");
    let signed = ProviderKind::Erp
        .sign(SECRET, "", &body, NOW)
        .unwrap();
    assert_eq!(signed.body, body);
    assert_eq!(signed.url_token, None);
    assert_eq!(
        signed.headers,
        vec![
            (
                "X-Storefold-Signature".to_string(),
                signature_header(SECRET, NOW.unix_timestamp(), &body)
            ),
            (
                "X-Storefold-Timestamp".to_string(),
                NOW.unix_timestamp().to_string()
            ),
        ]
    );
    assert!(ProviderKind::Erp.sign("", TOPIC, &body, NOW).is_err());
    assert_eq!(ProviderKind::Erp.topic_header(), None);
}
