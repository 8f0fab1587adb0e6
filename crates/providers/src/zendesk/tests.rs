use storefold_core::event::{Csat, OrderLink, ReasonCode, Return, Ticket, TicketStatus};
use storefold_core::identity::ExternalId;
use storefold_core::{Envelope, Event};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::test_support::Harness;
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "dGhpcyBpcyBhIHplbmRlc2sgc2VjcmV0";
const NOW: OffsetDateTime = datetime!(2025-01-15 16:20:07 UTC);

const SOLVED: &[u8] = include_bytes!("fixtures/event__ticket_status_changed__solved.json");
const COMMENT: &[u8] = include_bytes!("fixtures/event__ticket_comment_added__staff.json");
const TRIGGER: &[u8] = include_bytes!("fixtures/trigger__ticket.json");
const USER: &[u8] = include_bytes!("fixtures/event__user_created.json");

fn signed(secret: &str, body: &[u8], at: OffsetDateTime) -> Headers {
    let s = ProviderKind::Zendesk.sign(secret, "", body, at).unwrap();
    Headers::from_pairs(s.headers)
}

fn verify(headers: &Headers, body: &[u8], now: OffsetDateTime) -> Result<(), VerifyError> {
    let req = WebhookRequest {
        headers,
        body,
        url_token: None,
    };
    ProviderKind::Zendesk.verify(&Credentials::new(SECRET), &req, now)
}

fn run(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    Harness::new(ProviderKind::Zendesk, SECRET, NOW).deliver("", body)
}

fn ticket(env: &Envelope) -> &Ticket {
    match &env.event {
        Event::TicketUpdated(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

fn ret(env: &Envelope) -> &Return {
    match &env.event {
        Event::ReturnRequested(r) => r,
        other => panic!("expected a return, got {other:?}"),
    }
}

#[test]
fn signature_is_base64_hmac_of_timestamp_then_body() {
    // python: base64(hmac.new(b"secret", b"2021-03-25T05:09:27Z" + b"{}", sha256).digest())
    let h = signed("secret", b"{}", datetime!(2021-03-25 5:09:27.5 UTC));
    assert_eq!(
        h.get("x-zendesk-webhook-signature-timestamp"),
        Some("2021-03-25T05:09:27Z")
    );
    assert_eq!(
        h.get("x-zendesk-webhook-signature"),
        Some("GhpvRAaZJm2qK40ZLj6n1F3eNwgxlwXQSHVuQ3hNtsA=")
    );
}

#[test]
fn verify_failures_and_window() {
    let good = signed(SECRET, SOLVED, NOW);
    assert_eq!(verify(&good, SOLVED, NOW), Ok(()));
    assert_eq!(verify(&good, SOLVED, NOW + Duration::seconds(300)), Ok(()));
    assert_eq!(verify(&good, SOLVED, NOW - Duration::seconds(300)), Ok(()));
    assert_eq!(
        verify(&good, SOLVED, NOW + Duration::seconds(301)),
        Err(VerifyError::Expired {
            tolerance_secs: 300
        })
    );
    assert_eq!(
        verify(&good, SOLVED, NOW - Duration::minutes(10)),
        Err(VerifyError::Expired {
            tolerance_secs: 300
        })
    );
    let wrong = signed("not-the-secret", SOLVED, NOW);
    assert_eq!(verify(&wrong, SOLVED, NOW), Err(VerifyError::Mismatch));
    let mut tampered = SOLVED.to_vec();
    tampered[3] ^= 0x20;
    assert_eq!(verify(&good, &tampered, NOW), Err(VerifyError::Mismatch));
    // Moving the timestamp breaks the signature: it is signed too.
    let moved = Headers::from_pairs([
        (
            "X-Zendesk-Webhook-Signature",
            good.get("x-zendesk-webhook-signature").unwrap(),
        ),
        (
            "X-Zendesk-Webhook-Signature-Timestamp",
            "2025-01-15T16:20:08Z",
        ),
    ]);
    assert_eq!(verify(&moved, SOLVED, NOW), Err(VerifyError::Mismatch));
    let only_sig = Headers::from_pairs([(
        "X-Zendesk-Webhook-Signature",
        good.get("x-zendesk-webhook-signature").unwrap(),
    )]);
    assert_eq!(
        verify(&only_sig, SOLVED, NOW),
        Err(VerifyError::MissingHeader(
            "x-zendesk-webhook-signature-timestamp"
        ))
    );
    assert_eq!(
        verify(&Headers::new(), SOLVED, NOW),
        Err(VerifyError::MissingHeader("x-zendesk-webhook-signature"))
    );
    let bad_ts = Headers::from_pairs([
        (
            "X-Zendesk-Webhook-Signature",
            good.get("x-zendesk-webhook-signature").unwrap(),
        ),
        ("X-Zendesk-Webhook-Signature-Timestamp", "yesterday"),
    ]);
    assert!(matches!(
        verify(&bad_ts, SOLVED, NOW),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

#[test]
fn solved_event_with_return_tags() {
    let (inbound, events) = run(SOLVED).unwrap();
    assert_eq!(inbound.topic, "zen:event-type:ticket.status_changed");
    assert_eq!(inbound.event_id, "7f3e2a10-5b6c-4d8e-9f01-23456789abcd");
    assert_eq!(
        inbound.occurred_at,
        Some(datetime!(2025-01-15 16:20:05 UTC))
    );
    assert_eq!(events.len(), 2);
    let t = ticket(&events[0]);
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].provider, "zendesk");
    assert_eq!(events[0].occurred_at, datetime!(2025-01-15 16:20:05 UTC));
    assert_eq!(t.ticket_id, "4821");
    assert_eq!(t.status, TicketStatus::Solved);
    assert_eq!(t.requester.email, None);
    assert_eq!(
        t.requester.external,
        vec![ExternalId {
            source: "zendesk".into(),
            id: "381726354".into()
        }]
    );
    assert_eq!(t.subject.as_deref(), Some("Return request for order #1001"));
    assert_eq!(t.tags, vec!["returns", "wrong_size", "order_1001"]);
    assert_eq!(t.reasons, vec![ReasonCode::Size]);
    assert_eq!(
        t.order_links,
        vec![OrderLink::Number {
            number: "#1001".into()
        }]
    );
    assert_eq!(t.created_at, datetime!(2025-01-14 9:00 UTC));
    assert_eq!(t.updated_at, datetime!(2025-01-15 16:20:05 UTC));
    assert_eq!(t.solved_at, Some(datetime!(2025-01-15 16:20:05 UTC)));
    assert_eq!(t.first_response_at, None);
    assert_eq!(t.csat, None);

    let r = ret(&events[1]);
    assert_eq!(events[1].event_id, format!("{}#return", inbound.event_id));
    assert_eq!(r.return_id, "zendesk:4821");
    assert_eq!(r.provider, "zendesk");
    assert_eq!(r.reason, ReasonCode::Size);
    assert_eq!(r.links, t.order_links);
    assert_eq!(r.at, datetime!(2025-01-14 9:00 UTC));
}

#[test]
fn staff_comment_is_first_response() {
    let (_, events) = run(COMMENT).unwrap();
    assert_eq!(events.len(), 1, "no order, no return");
    let t = ticket(&events[0]);
    assert_eq!(t.status, TicketStatus::Open);
    assert_eq!(t.first_response_at, Some(datetime!(2025-01-14 9:42 UTC)));
    assert_eq!(t.solved_at, None);
    assert_eq!(t.reasons, vec![ReasonCode::Late]);
    assert!(t.order_links.is_empty());
    // The same comment by the requester is not a response.
    let by_customer = String::from_utf8(COMMENT.to_vec())
        .unwrap()
        .replace("\"is_staff\": true", "\"is_staff\": false");
    let (_, events) = run(by_customer.as_bytes()).unwrap();
    assert_eq!(ticket(&events[0]).first_response_at, None);
}

#[test]
fn trigger_body_with_email_csat_and_custom_field_order() {
    let (inbound, events) = run(TRIGGER).unwrap();
    assert_eq!(inbound.topic, "ticket");
    assert_eq!(inbound.event_id.len(), 64, "content hash");
    assert_eq!(inbound.occurred_at, Some(datetime!(2025-02-03 12:30 UTC)));
    assert_eq!(events.len(), 2);
    let t = ticket(&events[0]);
    assert_eq!(t.ticket_id, "5110");
    assert_eq!(t.status, TicketStatus::Solved);
    assert_eq!(t.requester.email.as_deref(), Some("mia.jones@example.com"));
    assert_eq!(
        t.requester.external,
        vec![ExternalId {
            source: "zendesk".into(),
            id: "381726399".into()
        }]
    );
    assert_eq!(t.subject.as_deref(), Some("Broken mug"));
    assert_eq!(t.tags, vec!["damaged", "refund", "vip"]);
    assert_eq!(t.reasons, vec![ReasonCode::Defect]);
    assert_eq!(
        t.order_links,
        vec![OrderLink::Number {
            number: "#1002".into()
        }]
    );
    assert_eq!(t.csat, Some(Csat { score: 5 }));
    assert_eq!(t.first_response_at, Some(datetime!(2025-02-01 10:45 UTC)));
    assert_eq!(t.solved_at, Some(datetime!(2025-02-03 12:30 UTC)));
    let r = ret(&events[1]);
    assert_eq!(r.return_id, "zendesk:5110");
    assert_eq!(r.reason, ReasonCode::Defect);
    // A bad rating is 1.
    let bad = String::from_utf8(TRIGGER.to_vec())
        .unwrap()
        .replace("\"score\": \"good\"", "\"score\": \"bad\"");
    let (_, events) = run(bad.as_bytes()).unwrap();
    assert_eq!(ticket(&events[0]).csat, Some(Csat { score: 1 }));
}

#[test]
fn unsupported_and_malformed() {
    assert_eq!(
        run(USER).unwrap_err(),
        MapError::UnsupportedTopic("zen:event-type:user.created".into())
    );
    assert!(matches!(run(b"{"), Err(MapError::Json(_))));
    assert!(matches!(
        run(br#"{"hello":"world"}"#),
        Err(MapError::MissingField(f)) if f == "ticket"
    ));
    assert!(matches!(
        run(br#"{"ticket":{"id":1,"status":"open"}}"#),
        Err(MapError::MissingField(f)) if f == "ticket.requester_id"
    ));
    assert!(matches!(
        run(br#"{"ticket":{"id":1,"status":"archived","requester_id":2}}"#),
        Err(MapError::InvalidField { .. })
    ));
    assert!(matches!(
        run(br#"{"type":"zen:event-type:ticket.created","id":"x","time":"2025-01-01T00:00:00Z"}"#),
        Err(MapError::MissingField(f)) if f == "detail"
    ));
}
