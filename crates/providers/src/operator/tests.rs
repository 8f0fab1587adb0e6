use storefold_core::event::CustomerRedacted;
use storefold_core::{Envelope, Event, Identity};
use time::OffsetDateTime;
use time::macros::datetime;

use super::{ERASE_TOPIC, TOLERANCE_SECS, signature_header};
use crate::test_support::Harness;
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "operator-test-secret";
const NOW: OffsetDateTime = datetime!(2025-04-02 08:16 UTC);

const EMAIL: &[u8] = include_bytes!("fixtures/customer_erase__email.json");
const BOTH: &[u8] = include_bytes!("fixtures/customer_erase__email_and_phone.json");
const PHONE: &[u8] = include_bytes!("fixtures/customer_erase__phone.json");
const NO_IDENTITY: &[u8] = include_bytes!("fixtures/customer_erase__no_identity.json");
const BAD_PHONE: &[u8] = include_bytes!("fixtures/customer_erase__bad_phone.json");

fn harness() -> Harness {
    Harness::new(ProviderKind::Operator, SECRET, NOW)
}

fn run(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    harness().deliver(ERASE_TOPIC, body)
}

fn redaction(env: &Envelope) -> &CustomerRedacted {
    match &env.event {
        Event::CustomerRedacted(r) => r,
        other => panic!("expected a redaction, got {other:?}"),
    }
}

/// Verifies `body` under `headers` (name, value) with the test secret at `now`.
fn check(headers: &[(&str, &str)], body: &[u8], now: OffsetDateTime) -> Result<(), VerifyError> {
    let headers = Headers::from_pairs(headers.iter().copied());
    ProviderKind::Operator.verify(
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
fn erase_by_email() {
    let (inbound, events) = run(EMAIL).unwrap();
    assert_eq!(
        inbound,
        Inbound {
            topic: "customer/erase".into(),
            event_id: "operator:customer/erase:3f6c2a9e-8b41-4d0e-9a57-1c2d3e4f5a6b".into(),
            occurred_at: Some(datetime!(2025-04-02 08:15 UTC)),
        }
    );
    assert_eq!(
        events,
        vec![Envelope {
            tenant: "t1".into(),
            provider: "operator".into(),
            event_id: inbound.event_id.clone(),
            occurred_at: datetime!(2025-04-02 08:15 UTC),
            event: Event::CustomerRedacted(CustomerRedacted {
                identity: Identity {
                    email: Some("marta.quell@example.org".into()),
                    ..Identity::default()
                },
                orders: Vec::new(),
                requested_by: "operator".into(),
            }),
        }]
    );
}

#[test]
fn erase_by_email_and_phone_normalises_both() {
    let (inbound, events) = run(BOTH).unwrap();
    assert_eq!(
        inbound.event_id,
        "operator:customer/erase:erase-2025-04-02-0007"
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].occurred_at, datetime!(2025-04-02 08:40:12.5 UTC));
    let r = redaction(&events[0]);
    assert_eq!(r.identity.email.as_deref(), Some("olu.banjo@example.net"));
    assert_eq!(r.identity.phone.as_deref(), Some("+442079460958"));
    assert!(r.identity.external.is_empty());
    assert_eq!(r.identity.anonymous_id, None);
    assert!(r.orders.is_empty());
    assert_eq!(r.requested_by, "operator");
}

#[test]
fn erase_by_phone_alone() {
    let (_, events) = run(PHONE).unwrap();
    let r = redaction(&events[0]);
    assert_eq!(r.identity.email, None);
    assert_eq!(r.identity.phone.as_deref(), Some("+61293744000"));
    assert_eq!(events[0].occurred_at, datetime!(2025-04-03 23:59:59 UTC));
}

#[test]
fn a_command_without_email_or_phone_is_refused_at_describe() {
    let err = run(NO_IDENTITY).unwrap_err();
    assert_eq!(
        err,
        MapError::MissingField("email or phone (a customer/erase names at least one)".into())
    );
    assert_eq!(err.code(), "missing_field");
    // Nulls are no better than absent fields.
    let err = run(
        br#"{"command_id":"c1","email":null,"phone":null,"requested_at":"2025-04-02T08:15:00Z"}"#,
    )
    .unwrap_err();
    assert!(
        matches!(err, MapError::MissingField(ref f) if f.starts_with("email or phone")),
        "{err}"
    );
}

#[test]
fn an_identity_that_does_not_normalise_is_refused_without_quoting_it() {
    let err = run(BAD_PHONE).unwrap_err();
    assert_eq!(err.code(), "invalid_field");
    assert!(
        matches!(&err, MapError::InvalidField { field, .. } if field == "phone"),
        "{err}"
    );
    // Even with a good email beside it: erasing less than asked must not pass.
    assert!(!err.to_string().contains("call me"), "{err}");
    let err = run(
        br#"{"command_id":"c1","email":"not-an-address","requested_at":"2025-04-02T08:15:00Z"}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        MapError::InvalidField {
            field: "email".into(),
            reason: "not a valid email address".into()
        }
    );
    // A phone without its country code cannot be read: there is no default country.
    let err =
        run(br#"{"command_id":"c1","phone":"030 1234567","requested_at":"2025-04-02T08:15:00Z"}"#)
            .unwrap_err();
    assert!(
        matches!(&err, MapError::InvalidField { field, .. } if field == "phone"),
        "{err}"
    );
}

#[test]
fn command_id_and_requested_at_are_required() {
    let err =
        run(br#"{"email":"a@example.com","requested_at":"2025-04-02T08:15:00Z"}"#).unwrap_err();
    assert_eq!(err, MapError::MissingField("command_id".into()));
    let err = run(
        br#"{"command_id":"  ","email":"a@example.com","requested_at":"2025-04-02T08:15:00Z"}"#,
    )
    .unwrap_err();
    assert_eq!(err, MapError::MissingField("command_id".into()));
    let err = run(
        br#"{"command_id":"a b","email":"a@example.com","requested_at":"2025-04-02T08:15:00Z"}"#,
    )
    .unwrap_err();
    assert!(
        matches!(&err, MapError::InvalidField { field, .. } if field == "command_id"),
        "{err}"
    );
    let long = format!(
        r#"{{"command_id":"{}","email":"a@example.com","requested_at":"2025-04-02T08:15:00Z"}}"#,
        "x".repeat(129)
    );
    let err = run(long.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, MapError::InvalidField { field, .. } if field == "command_id"),
        "{err}"
    );
    let err = run(br#"{"command_id":"c1","email":"a@example.com"}"#).unwrap_err();
    assert_eq!(err, MapError::MissingField("requested_at".into()));
    let err = run(br#"{"command_id":"c1","email":"a@example.com","requested_at":"yesterday"}"#)
        .unwrap_err();
    assert!(
        matches!(&err, MapError::InvalidField { field, .. } if field == "requested_at"),
        "{err}"
    );
}

#[test]
fn unknown_fields_and_non_json_are_refused() {
    // A misspelt field must not narrow an erasure silently.
    let err = run(br#"{"command_id":"c1","email":"a@example.com","phon":"+442079460958","requested_at":"2025-04-02T08:15:00Z"}"#)
        .unwrap_err();
    assert_eq!(err.code(), "malformed_json", "{err}");
    assert!(err.to_string().contains("phon"), "{err}");
    assert_eq!(
        run(b"erase a@example.com").unwrap_err().code(),
        "malformed_json"
    );
    let err = run(br#"{"command_id":"c1","email":"a@example.com","requested_at":"2025-04-02T08:15:00Z","reason":7}"#)
        .unwrap_err();
    assert_eq!(err.code(), "malformed_json", "{err}");
}

#[test]
fn the_same_command_twice_is_one_event() {
    // Sent again later (another signature time) with another reason: same id.
    let first = harness().deliver(ERASE_TOPIC, EMAIL).unwrap();
    let mut later = harness();
    later.now = NOW + time::Duration::minutes(30);
    later.received_at = later.now;
    let mut edited: serde_json::Value = serde_json::from_slice(EMAIL).unwrap();
    edited["reason"] = "sent again after a timeout".into();
    let second = later
        .deliver(ERASE_TOPIC, &serde_json::to_vec(&edited).unwrap())
        .unwrap();
    assert_eq!(first.0.event_id, second.0.event_id);
    assert_eq!(first.1, second.1);
    // Another command id for the same customer is another event.
    edited["command_id"] = "3f6c2a9e-8b41-4d0e-9a57-1c2d3e4f5a6c".into();
    let third = later
        .deliver(ERASE_TOPIC, &serde_json::to_vec(&edited).unwrap())
        .unwrap();
    assert_ne!(first.0.event_id, third.0.event_id);
    assert_eq!(redaction(&first.1[0]), redaction(&third.1[0]));
}

#[test]
fn only_customer_erase_is_carried_out() {
    for topic in [
        "customer/merge",
        "customer/split",
        "customer/block",
        "customer/erase/all",
    ] {
        let err = harness().deliver(topic, EMAIL).unwrap_err();
        assert_eq!(err, MapError::UnsupportedTopic(topic.into()));
        assert_eq!(err.code(), "unsupported_topic");
    }
    // Without the topic header.
    let t = NOW.unix_timestamp().to_string();
    let sig = signature_header(SECRET, NOW.unix_timestamp(), "", EMAIL);
    let headers = [
        ("X-Storefold-Signature", sig.as_str()),
        ("X-Storefold-Timestamp", t.as_str()),
    ];
    assert_eq!(check(&headers, EMAIL, NOW), Ok(()));
    let h = Headers::from_pairs(headers);
    let req = WebhookRequest {
        headers: &h,
        body: EMAIL,
        url_token: None,
    };
    assert_eq!(
        ProviderKind::Operator.describe(&req),
        Err(MapError::MissingHeader("X-Storefold-Topic"))
    );
}

#[test]
fn signature_matches_a_known_answer() {
    // HMAC-SHA256("operator-test-secret", "1743581760\ncustomer/erase\n{}"),
    // computed independently with `openssl dgst -sha256 -hmac`.
    assert_eq!(
        signature_header(SECRET, 1_743_581_760, "customer/erase", b"{}"),
        format!("sha256={}", KNOWN_ANSWER)
    );
}

const KNOWN_ANSWER: &str = "d9137788d8127b6b4e2ea6069713d3005bc218d2826a85fc3d62b067a9a60aa9";

#[test]
fn bad_signatures_are_refused() {
    let t = NOW.unix_timestamp().to_string();
    let good = signature_header(SECRET, NOW.unix_timestamp(), ERASE_TOPIC, EMAIL);
    let with = |sig: &str, ts: &str, topic: &str, body: &[u8]| {
        check(
            &[
                ("X-Storefold-Signature", sig),
                ("X-Storefold-Timestamp", ts),
                ("X-Storefold-Topic", topic),
            ],
            body,
            NOW,
        )
    };
    assert_eq!(with(&good, &t, ERASE_TOPIC, EMAIL), Ok(()));
    // Another secret.
    let other = signature_header("another-secret", NOW.unix_timestamp(), ERASE_TOPIC, EMAIL);
    assert_eq!(
        with(&other, &t, ERASE_TOPIC, EMAIL),
        Err(VerifyError::Mismatch)
    );
    // The body, the topic or the timestamp changed under the signature.
    assert_eq!(
        with(&good, &t, ERASE_TOPIC, BOTH),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        with(&good, &t, "customer/merge", EMAIL),
        Err(VerifyError::Mismatch)
    );
    let t1 = (NOW.unix_timestamp() + 1).to_string();
    assert_eq!(
        with(&good, &t1, ERASE_TOPIC, EMAIL),
        Err(VerifyError::Mismatch)
    );
    // Malformed and missing headers.
    let bare = good.trim_start_matches("sha256=");
    assert!(matches!(
        with(bare, &t, ERASE_TOPIC, EMAIL),
        Err(VerifyError::MalformedHeader {
            header: "X-Storefold-Signature",
            ..
        })
    ));
    assert!(matches!(
        with("sha256=zz", &t, ERASE_TOPIC, EMAIL),
        Err(VerifyError::MalformedHeader {
            header: "X-Storefold-Signature",
            ..
        })
    ));
    assert!(matches!(
        with("sha256=abcd", &t, ERASE_TOPIC, EMAIL),
        Err(VerifyError::MalformedHeader {
            header: "X-Storefold-Signature",
            ..
        })
    ));
    assert!(matches!(
        with(&good, "-5", ERASE_TOPIC, EMAIL),
        Err(VerifyError::MalformedHeader {
            header: "X-Storefold-Timestamp",
            ..
        })
    ));
    assert_eq!(
        check(
            &[
                ("X-Storefold-Timestamp", &t),
                ("X-Storefold-Topic", ERASE_TOPIC)
            ],
            EMAIL,
            NOW
        ),
        Err(VerifyError::MissingHeader("X-Storefold-Signature"))
    );
    assert_eq!(
        check(
            &[
                ("X-Storefold-Signature", &good),
                ("X-Storefold-Topic", ERASE_TOPIC)
            ],
            EMAIL,
            NOW
        ),
        Err(VerifyError::MissingHeader("X-Storefold-Timestamp"))
    );
    // No secret configured.
    let headers = Headers::from_pairs([
        ("X-Storefold-Signature", good.as_str()),
        ("X-Storefold-Timestamp", t.as_str()),
        ("X-Storefold-Topic", ERASE_TOPIC),
    ]);
    let req = WebhookRequest {
        headers: &headers,
        body: EMAIL,
        url_token: None,
    };
    assert!(matches!(
        ProviderKind::Operator.verify(&Credentials::new(""), &req, NOW),
        Err(VerifyError::BadCredentials(_))
    ));
    assert!(
        ProviderKind::Operator
            .sign("", ERASE_TOPIC, EMAIL, NOW)
            .is_err()
    );
}

#[test]
fn timestamps_outside_the_tolerance_are_refused() {
    let signed_at = NOW.unix_timestamp();
    let t = signed_at.to_string();
    let sig = signature_header(SECRET, signed_at, ERASE_TOPIC, EMAIL);
    let headers = [
        ("X-Storefold-Signature", sig.as_str()),
        ("X-Storefold-Timestamp", t.as_str()),
        ("X-Storefold-Topic", ERASE_TOPIC),
    ];
    let at = |secs: i64| check(&headers, EMAIL, NOW + time::Duration::seconds(secs));
    assert_eq!(at(TOLERANCE_SECS), Ok(()));
    assert_eq!(at(-TOLERANCE_SECS), Ok(()));
    let expired = Err(VerifyError::Expired {
        tolerance_secs: TOLERANCE_SECS,
    });
    assert_eq!(at(TOLERANCE_SECS + 1), expired);
    assert_eq!(at(-TOLERANCE_SECS - 1), expired);
    assert_eq!(at(86_400), expired);
}

#[test]
fn the_raw_event_keeps_topic_and_time_but_not_the_signature() {
    let delivery = harness().receive(ERASE_TOPIC, EMAIL).unwrap();
    let t = NOW.unix_timestamp().to_string();
    let kept: Vec<(&str, &str)> = delivery.kept.iter().collect();
    assert_eq!(
        kept,
        [
            ("x-storefold-timestamp", t.as_str()),
            ("x-storefold-topic", ERASE_TOPIC)
        ]
    );
}
