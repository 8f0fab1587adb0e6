use storefold_core::event::{CustomerRedacted, IdentityDecided, IdentityDecision, Party};
use storefold_core::identity::ExternalId;
use storefold_core::{Envelope, Event, Identity};
use time::OffsetDateTime;
use time::macros::datetime;

use super::{
    BLOCK_TOPIC, ERASE_TOPIC, MERGE_TOPIC, SPLIT_TOPIC, TOLERANCE_SECS, decision_topic, separable,
    signature_header,
};
use crate::test_support::Harness;
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "operator-test-secret";
const NOW: OffsetDateTime = datetime!(2025-04-02 08:16 UTC);

const EMAIL: &[u8] = include_bytes!("fixtures/customer_erase__email.json");
const BOTH: &[u8] = include_bytes!("fixtures/customer_erase__email_and_phone.json");
const PHONE: &[u8] = include_bytes!("fixtures/customer_erase__phone.json");
const NO_IDENTITY: &[u8] = include_bytes!("fixtures/customer_erase__no_identity.json");
const BAD_PHONE: &[u8] = include_bytes!("fixtures/customer_erase__bad_phone.json");
const MERGE_EMAIL_PHONE: &[u8] = include_bytes!("fixtures/identity_merge__email_and_phone.json");
const MERGE_EXTERNAL_CUSTOMER: &[u8] =
    include_bytes!("fixtures/identity_merge__external_and_customer_id.json");
const MERGE_SAME: &[u8] = include_bytes!("fixtures/identity_merge__same_identity.json");
const SPLIT_EMAIL_CUSTOMER: &[u8] =
    include_bytes!("fixtures/identity_split__email_and_customer_id.json");
const SPLIT_NO_EMAIL: &[u8] = include_bytes!("fixtures/identity_split__no_email.json");
const BLOCK_EMAILS: &[u8] = include_bytes!("fixtures/identity_block__two_emails.json");
const BLOCK_TWO_ON_A_SIDE: &[u8] =
    include_bytes!("fixtures/identity_block__two_identities_on_a_side.json");

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
                keys: Vec::new(),
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
fn only_the_operator_topics_are_carried_out() {
    for topic in [
        "customer/merge",
        "customer/split",
        "customer/block",
        "customer/erase/all",
        "identity/unmerge",
        "identity/merge/all",
        "identity",
        "Identity/Merge",
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

// identity/merge, identity/split, identity/block

fn decide(topic: &str, body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    harness().deliver(topic, body)
}

fn decision(env: &Envelope) -> &IdentityDecided {
    match &env.event {
        Event::IdentityDecided(d) => d,
        other => panic!("expected an identity decision, got {other:?}"),
    }
}

/// A decision body with `a` and `b` as given (JSON), the rest valid.
fn body(a: &str, b: &str) -> Vec<u8> {
    format!(r#"{{"command_id":"c1","a":{a},"b":{b},"requested_at":"2025-05-12T12:00:00Z"}}"#)
        .into_bytes()
}

fn field_of(err: &MapError) -> &str {
    match err {
        MapError::InvalidField { field, .. } | MapError::MissingField(field) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn merge_an_email_and_a_phone() {
    let (inbound, events) = decide(MERGE_TOPIC, MERGE_EMAIL_PHONE).unwrap();
    assert_eq!(
        inbound,
        Inbound {
            topic: "identity/merge".into(),
            event_id: "operator:identity/merge:7d2e9b14-0c6a-4f3e-8a51-b9c7d3e2f106".into(),
            occurred_at: Some(datetime!(2025-05-12 12:03:20 UTC)),
        }
    );
    assert_eq!(
        events,
        vec![Envelope {
            tenant: "t1".into(),
            provider: "operator".into(),
            event_id: inbound.event_id.clone(),
            occurred_at: datetime!(2025-05-12 12:03:20 UTC),
            event: Event::IdentityDecided(IdentityDecided {
                decision: IdentityDecision::Merge,
                a: Party::Email("jonas.ebert@example.com".into()),
                b: Party::Phone("+4915123456789".into()),
                requested_by: "operator".into(),
            }),
        }]
    );
    // The UTC offset of the event time, as for an erasure.
    assert_eq!(events[0].occurred_at.offset(), time::UtcOffset::UTC);
}

#[test]
fn merge_an_external_id_and_a_customer_id() {
    let (inbound, events) = decide(MERGE_TOPIC, MERGE_EXTERNAL_CUSTOMER).unwrap();
    assert_eq!(
        inbound.event_id,
        "operator:identity/merge:merge-2025-05-13-0002"
    );
    assert_eq!(events.len(), 1);
    let d = decision(&events[0]);
    assert_eq!(d.decision, IdentityDecision::Merge);
    // The source lower-cased and the id trimmed, as the mappers key them.
    assert_eq!(
        d.a,
        Party::External(ExternalId {
            source: "shopify".into(),
            id: "7290015533".into()
        })
    );
    assert_eq!(
        d.b,
        Party::CustomerId("cus_ph_3c9e0a7f51b2d84e6a0c9f17".into())
    );
    assert_eq!(d.requested_by, "operator");
    // The side names the key the mappers would: Shopify's customer 7290015533.
    assert_eq!(
        d.a.key("t1"),
        Identity::default()
            .with_external("shopify", "7290015533")
            .primary_key("t1")
    );
    assert!(d.b.key("t1").is_some());
}

#[test]
fn split_and_block_map_to_their_decisions() {
    let (inbound, events) = decide(SPLIT_TOPIC, SPLIT_EMAIL_CUSTOMER).unwrap();
    assert_eq!(
        inbound.event_id,
        "operator:identity/split:d41f8a20-6b3c-4e97-b5a2-0e8c7f9d1a34"
    );
    assert_eq!(inbound.occurred_at, Some(datetime!(2025-05-14 16:45 UTC)));
    let d = decision(&events[0]);
    assert_eq!(d.decision, IdentityDecision::Split);
    assert_eq!(
        d.a,
        Party::CustomerId("cus_em_8b1f4c2a9d0e7f3a5c6b2e19".into())
    );
    assert_eq!(d.b, Party::Email("ines.falk@example.net".into()));

    let (inbound, events) = decide(BLOCK_TOPIC, BLOCK_EMAILS).unwrap();
    assert_eq!(
        inbound.event_id,
        "operator:identity/block:block-2025-05-15-0001"
    );
    let d = decision(&events[0]);
    assert_eq!(d.decision, IdentityDecision::Block);
    assert_eq!(
        d.a,
        Party::Email("front.desk@hotel-lindenhof.example".into())
    );
    assert_eq!(d.b, Party::Email("bookings@hotel-lindenhof.example".into()));

    // The same body under each topic: the topic alone decides, and is in the id.
    for (topic, expected) in [
        (MERGE_TOPIC, IdentityDecision::Merge),
        (SPLIT_TOPIC, IdentityDecision::Split),
        (BLOCK_TOPIC, IdentityDecision::Block),
    ] {
        assert_eq!(decision_topic(expected), topic);
        let (inbound, events) = decide(topic, BLOCK_EMAILS).unwrap();
        assert_eq!(
            inbound.event_id,
            format!("operator:{topic}:block-2025-05-15-0001")
        );
        assert_eq!(decision(&events[0]).decision, expected);
    }
}

#[test]
fn a_split_or_block_without_an_email_side_is_refused_but_a_merge_is_not() {
    let reason = |topic: &str| {
        format!("{topic} needs an email or a cus_em_ customer id on at least one side")
    };
    for topic in [SPLIT_TOPIC, BLOCK_TOPIC] {
        let err = decide(topic, SPLIT_NO_EMAIL).unwrap_err();
        assert_eq!(
            err,
            MapError::InvalidField {
                field: "a, b".into(),
                reason: reason(topic)
            }
        );
        assert_eq!(err.code(), "invalid_field");
        // A customer id of another kind is not an email side either.
        let err = decide(
            topic,
            &body(
                r#"{"customer_id":"cus_ph_3c9e0a7f51b2d84e6a0c9f17"}"#,
                r#"{"customer_id":"cus_ex_0a1b2c3d4e5f60718293a4b5"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(field_of(&err), "a, b", "{err}");
        // One email side is enough, on either side.
        decide(
            topic,
            &body(
                r#"{"phone":"+442079460321"}"#,
                r#"{"email":"a@example.com"}"#,
            ),
        )
        .unwrap();
    }
    let (_, events) = decide(MERGE_TOPIC, SPLIT_NO_EMAIL).unwrap();
    let d = decision(&events[0]);
    assert_eq!(d.a, Party::Phone("+442079460321".into()));
    assert_eq!(
        d.b,
        Party::External(ExternalId {
            source: "zendesk".into(),
            id: "90412277".into()
        })
    );
    // The rule the CLI checks with.
    let email = Party::Email("a@example.com".into());
    let phone = Party::Phone("+442079460321".into());
    let cus_em = Party::CustomerId("cus_em_8b1f4c2a9d0e7f3a5c6b2e19".into());
    let cus_ph = Party::CustomerId("cus_ph_3c9e0a7f51b2d84e6a0c9f17".into());
    assert!(separable(&email, &phone) && separable(&phone, &email));
    assert!(separable(&cus_em, &cus_ph) && separable(&cus_ph, &cus_em));
    assert!(!separable(&phone, &cus_ph));
}

#[test]
fn both_sides_naming_the_same_identity_is_refused() {
    // The same email once normalised.
    let err = decide(MERGE_TOPIC, MERGE_SAME).unwrap_err();
    assert_eq!(
        err,
        MapError::InvalidField {
            field: "b".into(),
            reason: "names the same identity as a".into()
        }
    );
    assert!(!err.to_string().contains("stern"), "{err}");
    // The same phone in two spellings, the same customer id, for every topic.
    for topic in [MERGE_TOPIC, SPLIT_TOPIC, BLOCK_TOPIC] {
        let err = decide(
            topic,
            &body(
                r#"{"phone":"+44 20 7946 0321"}"#,
                r#"{"phone":"+442079460321"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(field_of(&err), "b", "{err}");
        let cus = r#"{"customer_id":"cus_em_8b1f4c2a9d0e7f3a5c6b2e19"}"#;
        let err = decide(topic, &body(cus, cus)).unwrap_err();
        assert_eq!(field_of(&err), "b", "{err}");
    }
}

#[test]
fn each_side_names_exactly_one_identity() {
    let err = decide(BLOCK_TOPIC, BLOCK_TWO_ON_A_SIDE).unwrap_err();
    assert_eq!(
        err,
        MapError::InvalidField {
            field: "a".into(),
            reason: "names more than one identity (give exactly one of email, phone, external, \
                     customer_id)"
                .into()
        }
    );
    assert!(!err.to_string().contains("theo"), "{err}");
    let missing = |side: &str| {
        MapError::MissingField(format!(
            "{side} (one of email, phone, external, customer_id)"
        ))
    };
    let email = r#"{"email":"a@example.com"}"#;
    // Absent, null, empty, or only empty values.
    let err = decide(
        MERGE_TOPIC,
        br#"{"command_id":"c1","b":{"email":"a@example.com"},"requested_at":"2025-05-12T12:00:00Z"}"#,
    )
    .unwrap_err();
    assert_eq!(err, missing("a"));
    assert_eq!(err.code(), "missing_field");
    assert_eq!(
        decide(MERGE_TOPIC, &body(email, "null")).unwrap_err(),
        missing("b")
    );
    assert_eq!(
        decide(MERGE_TOPIC, &body("{}", email)).unwrap_err(),
        missing("a")
    );
    assert_eq!(
        decide(
            MERGE_TOPIC,
            &body(email, r#"{"email":" ","phone":"","customer_id":null}"#)
        )
        .unwrap_err(),
        missing("b")
    );
    // An empty value beside a real one is no second identity.
    let (_, events) = decide(
        MERGE_TOPIC,
        &body(email, r#"{"email":"","phone":"+442079460321"}"#),
    )
    .unwrap();
    assert_eq!(decision(&events[0]).b, Party::Phone("+442079460321".into()));
    // Two on the b side, an external beside an email.
    let err = decide(
        MERGE_TOPIC,
        &body(
            email,
            r#"{"customer_id":"cus_em_8b1f4c2a9d0e7f3a5c6b2e19","external":{"source":"shopify","id":"1"}}"#,
        ),
    )
    .unwrap_err();
    assert_eq!(field_of(&err), "b", "{err}");
}

#[test]
fn a_side_that_does_not_normalise_is_refused_without_quoting_it() {
    let email = r#"{"email":"a@example.com"}"#;
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"email":"kim at example.com"}"#, "a.email", "kim"),
        (r#"{"phone":"030 1234567"}"#, "a.phone", "1234567"),
        (r#"{"phone":"call me maybe"}"#, "a.phone", "maybe"),
        (
            r#"{"customer_id":"cust_em_8b1f4c2a9d0e7f3a5c6b2e19"}"#,
            "a.customer_id",
            "8b1f4c2a",
        ),
        (
            r#"{"customer_id":"cus_xx_8b1f4c2a9d0e7f3a5c6b2e19"}"#,
            "a.customer_id",
            "8b1f4c2a",
        ),
        (
            r#"{"customer_id":"cus_em_not-hex"}"#,
            "a.customer_id",
            "not-hex",
        ),
        (
            r#"{"external":{"source":"shopify","id":"0"}}"#,
            "a.external.id",
            "shopify",
        ),
        (
            r#"{"external":{"source":"my shop","id":"7"}}"#,
            "a.external.source",
            "my shop",
        ),
        (
            r#"{"external":{"source":"shopify:x","id":"7"}}"#,
            "a.external.source",
            "shopify:x",
        ),
    ];
    for (a, field, secret) in cases {
        let err = decide(MERGE_TOPIC, &body(a, email)).unwrap_err();
        assert_eq!(err.code(), "invalid_field", "{a}: {err}");
        assert_eq!(field_of(&err), *field, "{a}: {err}");
        assert!(!err.to_string().contains(secret), "{a}: {err}");
    }
    // Reasons are stated plainly.
    let err = decide(MERGE_TOPIC, &body(email, r#"{"email":"no-at-sign"}"#)).unwrap_err();
    assert_eq!(
        err,
        MapError::InvalidField {
            field: "b.email".into(),
            reason: "not a valid email address".into()
        }
    );
    let err = decide(
        MERGE_TOPIC,
        &body(email, r#"{"customer_id":"customer-42"}"#),
    )
    .unwrap_err();
    assert_eq!(
        err,
        MapError::InvalidField {
            field: "b.customer_id".into(),
            reason: "not a storefold customer id (cus_<kind>_<hex>)".into()
        }
    );
    // An external id needs both its parts.
    for (b, field) in [
        (r#"{"external":{"id":"7"}}"#, "b.external.source"),
        (r#"{"external":{"source":"shopify"}}"#, "b.external.id"),
        (
            r#"{"external":{"source":"shopify","id":"  "}}"#,
            "b.external.id",
        ),
        (r#"{"external":{}}"#, "b.external.source"),
    ] {
        let err = decide(MERGE_TOPIC, &body(email, b)).unwrap_err();
        assert_eq!(err, MapError::MissingField(field.into()), "{b}");
    }
}

#[test]
fn a_decision_needs_its_command_id_and_time_and_a_short_reason() {
    let ok = br#"{"command_id":"c1","a":{"email":"a@example.com"},"b":{"phone":"+442079460321"},"requested_at":"2025-05-12T12:00:00Z"}"#;
    decide(MERGE_TOPIC, ok).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_slice(ok).unwrap();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = value;
        }
        decide(MERGE_TOPIC, &serde_json::to_vec(&v).unwrap())
    };
    let null = serde_json::Value::Null;
    assert_eq!(
        with("command_id", null.clone()).unwrap_err(),
        MapError::MissingField("command_id".into())
    );
    assert_eq!(
        with("command_id", " ".into()).unwrap_err(),
        MapError::MissingField("command_id".into())
    );
    for bad in ["a b", "c\u{7}1"] {
        let err = with("command_id", bad.into()).unwrap_err();
        assert_eq!(field_of(&err), "command_id", "{err}");
    }
    let err = with("command_id", "x".repeat(129).into()).unwrap_err();
    assert_eq!(field_of(&err), "command_id", "{err}");
    with("command_id", "x".repeat(128).into()).unwrap();
    assert_eq!(
        with("requested_at", null).unwrap_err(),
        MapError::MissingField("requested_at".into())
    );
    let err = with("requested_at", "2025-05-12 12:00".into()).unwrap_err();
    assert_eq!(field_of(&err), "requested_at", "{err}");
    with("reason", "é".repeat(1000).into()).unwrap();
    assert_eq!(
        with("reason", "x".repeat(1001).into()).unwrap_err(),
        MapError::InvalidField {
            field: "reason".into(),
            reason: "longer than 1000 characters".into()
        }
    );
    // And an erasure's reason has the same bound.
    let mut erase: serde_json::Value = serde_json::from_slice(EMAIL).unwrap();
    erase["reason"] = "x".repeat(1001).into();
    let err = run(&serde_json::to_vec(&erase).unwrap()).unwrap_err();
    assert_eq!(field_of(&err), "reason", "{err}");
}

#[test]
fn unknown_fields_in_a_decision_are_refused() {
    let email = r#"{"email":"a@example.com"}"#;
    // At the top, in a side, in an external id.
    for (a, extra) in [
        (email, r#","decision":"split""#),
        (r#"{"emial":"a@example.com"}"#, ""),
        (
            r#"{"external":{"source":"shopify","id":"1","store":"eu"}}"#,
            "",
        ),
    ] {
        let text = format!(
            r#"{{"command_id":"c1","a":{a},"b":{{"phone":"+442079460321"}},"requested_at":"2025-05-12T12:00:00Z"{extra}}}"#
        );
        let err = decide(MERGE_TOPIC, text.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "malformed_json", "{text}: {err}");
    }
    // Wrong types: a number for an external id, a string for a side.
    for a in [
        r#"{"external":{"source":"shopify","id":7}}"#,
        r#""a@example.com""#,
    ] {
        let err = decide(MERGE_TOPIC, &body(a, r#"{"phone":"+442079460321"}"#)).unwrap_err();
        assert_eq!(err.code(), "malformed_json", "{a}: {err}");
        assert!(!err.to_string().contains("a@example.com"), "{err}");
    }
    // An erasure body is no decision, nor the reverse.
    assert_eq!(
        decide(MERGE_TOPIC, EMAIL).unwrap_err().code(),
        "malformed_json"
    );
    assert_eq!(run(MERGE_EMAIL_PHONE).unwrap_err().code(), "malformed_json");
}

#[test]
fn the_same_decision_twice_is_one_event() {
    let first = decide(SPLIT_TOPIC, SPLIT_EMAIL_CUSTOMER).unwrap();
    let mut later = harness();
    later.now = NOW + time::Duration::minutes(30);
    later.received_at = later.now;
    let mut edited: serde_json::Value = serde_json::from_slice(SPLIT_EMAIL_CUSTOMER).unwrap();
    edited["reason"] = "sent again after a timeout".into();
    let second = later
        .deliver(SPLIT_TOPIC, &serde_json::to_vec(&edited).unwrap())
        .unwrap();
    assert_eq!(first.0.event_id, second.0.event_id);
    assert_eq!(first.1, second.1);
    // The same command id under another topic is another event.
    let block = later
        .deliver(BLOCK_TOPIC, &serde_json::to_vec(&edited).unwrap())
        .unwrap();
    assert_ne!(first.0.event_id, block.0.event_id);
}

#[test]
fn a_decision_signature_covers_its_topic() {
    // HMAC-SHA256("operator-test-secret", "1743581760\nidentity/merge\n{}"),
    // computed independently with `openssl dgst -sha256 -hmac`.
    assert_eq!(
        signature_header(SECRET, 1_743_581_760, "identity/merge", b"{}"),
        "sha256=13417bef69a54d7318f278bbb1031cb02f728689d617f08306debdc7d092baaa"
    );
    // A merge cannot be replayed as a split or a block, nor the reverse.
    let t = NOW.unix_timestamp().to_string();
    let merge = signature_header(SECRET, NOW.unix_timestamp(), MERGE_TOPIC, BLOCK_EMAILS);
    let with = |topic: &str| {
        check(
            &[
                ("X-Storefold-Signature", merge.as_str()),
                ("X-Storefold-Timestamp", t.as_str()),
                ("X-Storefold-Topic", topic),
            ],
            BLOCK_EMAILS,
            NOW,
        )
    };
    assert_eq!(with(MERGE_TOPIC), Ok(()));
    for topic in [SPLIT_TOPIC, BLOCK_TOPIC, ERASE_TOPIC] {
        assert_eq!(with(topic), Err(VerifyError::Mismatch), "{topic}");
    }
    let block = signature_header(SECRET, NOW.unix_timestamp(), BLOCK_TOPIC, BLOCK_EMAILS);
    assert_ne!(block, merge);
    // The raw event keeps the decision's topic.
    let delivery = harness().receive(BLOCK_TOPIC, BLOCK_EMAILS).unwrap();
    assert_eq!(
        delivery.kept.get("x-storefold-topic"),
        Some("identity/block")
    );
}

#[test]
fn describe_checks_the_whole_decision() {
    // What the ingest answers 400 to is refused at describe, before mapping.
    let headers = |topic: &str, body: &[u8]| {
        let sig = signature_header(SECRET, NOW.unix_timestamp(), topic, body);
        Headers::from_pairs([
            ("X-Storefold-Signature".to_string(), sig),
            (
                "X-Storefold-Timestamp".to_string(),
                NOW.unix_timestamp().to_string(),
            ),
            ("X-Storefold-Topic".to_string(), topic.to_string()),
        ])
    };
    for (topic, body, code) in [
        (SPLIT_TOPIC, SPLIT_NO_EMAIL, "invalid_field"),
        (MERGE_TOPIC, MERGE_SAME, "invalid_field"),
        (BLOCK_TOPIC, BLOCK_TWO_ON_A_SIDE, "invalid_field"),
        (MERGE_TOPIC, EMAIL, "malformed_json"),
    ] {
        let h = headers(topic, body);
        let req = WebhookRequest {
            headers: &h,
            body,
            url_token: None,
        };
        assert_eq!(
            ProviderKind::Operator.verify(&Credentials::new(SECRET), &req, NOW),
            Ok(())
        );
        let err = ProviderKind::Operator.describe(&req).unwrap_err();
        assert_eq!(err.code(), code, "{topic}: {err}");
    }
    let h = headers(MERGE_TOPIC, MERGE_EMAIL_PHONE);
    let req = WebhookRequest {
        headers: &h,
        body: MERGE_EMAIL_PHONE,
        url_token: None,
    };
    assert_eq!(
        ProviderKind::Operator.describe(&req).unwrap().event_id,
        "operator:identity/merge:7d2e9b14-0c6a-4f3e-8a51-b9c7d3e2f106"
    );
}
