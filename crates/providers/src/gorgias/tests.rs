use storefold_core::event::{Csat, OrderLink, ReasonCode, Ticket, TicketStatus};
use storefold_core::identity::ExternalId;
use storefold_core::{Envelope, Event};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::Harness;
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const TOKEN: &str = "gorgias-tenant-token";
const NOW: OffsetDateTime = datetime!(2025-03-06 12:00 UTC);

const CLOSED: &[u8] = include_bytes!("fixtures/ticket_closed__return.json");
const OPEN: &[u8] = include_bytes!("fixtures/ticket_open__late.json");

fn run(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    Harness::new(ProviderKind::Gorgias, TOKEN, NOW).deliver("", body)
}

fn ticket(env: &Envelope) -> &Ticket {
    match &env.event {
        Event::TicketUpdated(t) => t,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

#[test]
fn url_token() {
    let headers = Headers::new();
    let check = |token: Option<&str>| {
        let req = WebhookRequest {
            headers: &headers,
            body: CLOSED,
            url_token: token,
        };
        ProviderKind::Gorgias.verify(&Credentials::new(TOKEN), &req, NOW)
    };
    assert_eq!(check(Some(TOKEN)), Ok(()));
    assert_eq!(check(None), Err(VerifyError::BadToken));
    assert_eq!(
        check(Some("gorgias-tenant-tokeN")),
        Err(VerifyError::BadToken)
    );
}

#[test]
fn closed_ticket_with_return() {
    let (inbound, events) = run(CLOSED).unwrap();
    assert_eq!(inbound.topic, "ticket-updated");
    assert_eq!(
        inbound.event_id,
        "gorgias:73001:2025-03-02T17:30:00.123456+00:00"
    );
    assert_eq!(
        inbound.occurred_at,
        Some(datetime!(2025-03-02 17:30:00.123456 UTC))
    );
    assert_eq!(events.len(), 2);
    let t = ticket(&events[0]);
    assert_eq!(events[0].provider, "gorgias");
    assert_eq!(t.ticket_id, "73001");
    assert_eq!(t.status, TicketStatus::Closed);
    assert_eq!(t.requester.email.as_deref(), Some("leo@example.org"));
    assert_eq!(
        t.requester.external,
        vec![ExternalId {
            source: "gorgias".into(),
            id: "551002".into()
        }]
    );
    assert_eq!(t.tags, vec!["return", "damaged"]);
    assert_eq!(t.reasons, vec![ReasonCode::Defect]);
    assert_eq!(
        t.order_links,
        vec![OrderLink::Number {
            number: "#1005".into()
        }]
    );
    assert_eq!(t.created_at, datetime!(2025-03-01 9:00 UTC));
    assert_eq!(t.first_response_at, Some(datetime!(2025-03-01 11:15 UTC)));
    assert_eq!(t.solved_at, Some(datetime!(2025-03-02 17:30 UTC)));
    assert_eq!(t.csat, Some(Csat { score: 4 }));
    match &events[1].event {
        Event::ReturnRequested(r) => {
            assert_eq!(r.return_id, "gorgias:73001");
            assert_eq!(r.reason, ReasonCode::Defect);
            assert_eq!(r.links, t.order_links);
        }
        other => panic!("expected a return, got {other:?}"),
    }
}

#[test]
fn open_top_level_ticket_without_return() {
    let (inbound, events) = run(OPEN).unwrap();
    assert_eq!(inbound.topic, "ticket");
    assert_eq!(inbound.event_id, "gorgias:73002:2025-03-05T10:00:00");
    assert_eq!(events.len(), 1);
    let t = ticket(&events[0]);
    assert_eq!(t.status, TicketStatus::Open);
    assert_eq!(t.requester.email, None);
    assert_eq!(t.reasons, vec![ReasonCode::Late]);
    assert_eq!(
        t.order_links,
        vec![OrderLink::Number {
            number: "#1006".into()
        }]
    );
    assert_eq!(t.created_at, datetime!(2025-03-05 10:00 UTC));
    assert_eq!(t.first_response_at, None);
    assert_eq!(t.solved_at, None);
    assert_eq!(t.csat, None);
}

#[test]
fn malformed_bodies() {
    assert!(matches!(run(b"not json"), Err(MapError::Json(_))));
    assert!(matches!(
        run(br#"{"ticket":{"status":"open"}}"#),
        Err(MapError::MissingField(f)) if f == "ticket.id"
    ));
    assert!(matches!(
        run(br#"{"id":1,"status":"open"}"#),
        Err(MapError::MissingField(f)) if f == "ticket.customer"
    ));
    assert!(matches!(
        run(br#"{"id":1,"status":"weird","customer":{"id":2}}"#),
        Err(MapError::InvalidField { .. })
    ));
}
