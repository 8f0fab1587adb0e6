//! Zendesk tickets -> TicketUpdated (+ ReturnRequested).
//!
//! Event webhooks (`zen:event-type:ticket.*`): the ticket comes from `detail`
//! (id, status, subject, requester_id, tags, created_at, updated_at). The requester
//! is known only by id there: `zendesk:<requester_id>`. `ticket.status_changed` to
//! solved sets `solved_at` to the event time; `ticket.comment_added` with a public
//! comment by staff sets `first_response_at` to the event time (the fold keeps the
//! earliest). Event payloads carry no CSAT. Other `zen:event-type:*` (users,
//! organisations, ...) are unsupported topics.
//!
//! Trigger webhooks: see [`TicketIn`] for the fields read;
//! the requester is the email when given, plus `zendesk:<id>` when the id is.
//!
//! Both: order links from `order_number`, custom field values like `#1001`, tags
//! like `order_1001`, and the subject (`#1001`, `Order 1001`); reasons and the
//! ReturnRequested as in [`helpdesk`].

use storefold_core::event::{Ticket, TicketStatus};
use storefold_core::{Envelope, Identity};
use time::OffsetDateTime;

use super::model::{Body, TicketIn};
use crate::helpdesk::{self, time_of};
use crate::{MapContext, MapError, RawInput, non_empty};

pub(crate) const EVENT_PREFIX: &str = "zen:event-type:";
pub(crate) const TICKET_EVENT_PREFIX: &str = "zen:event-type:ticket.";
/// Topic of trigger/automation bodies, which name none.
pub(crate) const TRIGGER_TOPIC: &str = "ticket";

/// Which of the two shapes a body is.
pub(crate) enum Shape {
    Event { event_type: String, body: Box<Body> },
    Trigger(Box<TicketIn>),
}

pub(crate) fn shape(bytes: &[u8]) -> Result<Shape, MapError> {
    let mut body: Body = crate::parse_json(bytes)?;
    if let Some(t) = body.event_type.clone()
        && t.starts_with(EVENT_PREFIX)
    {
        return Ok(Shape::Event {
            event_type: t,
            body: Box::new(body),
        });
    }
    if let Some(ticket) = body.ticket.take() {
        return Ok(Shape::Trigger(Box::new(ticket)));
    }
    let top: TicketIn = crate::parse_json(bytes)?;
    if top.id.is_some() {
        return Ok(Shape::Trigger(Box::new(top)));
    }
    Err(MapError::MissingField("ticket".into()))
}

fn pointer_bool(v: Option<&serde_json::Value>, path: &str) -> bool {
    v.and_then(|v| v.pointer(path)).and_then(|b| b.as_bool()) == Some(true)
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let ticket = match shape(input.body)? {
        Shape::Event { event_type, body } => {
            if !event_type.starts_with(TICKET_EVENT_PREFIX) {
                return Err(MapError::UnsupportedTopic(event_type.to_string()));
            }
            let detail = body
                .detail
                .as_ref()
                .ok_or_else(|| MapError::MissingField("detail".into()))?;
            let time = time_of("time", body.time.as_deref())?.unwrap_or(input.received_at);
            let mut status = detail.status.clone();
            let kind = &event_type[TICKET_EVENT_PREFIX.len()..];
            if kind == "status_changed"
                && let Some(current) = body
                    .event
                    .as_ref()
                    .and_then(|e| e.get("current"))
                    .and_then(|c| c.as_str())
            {
                status = Some(current.to_string());
            }
            let mut t = ticket_of(detail, status.as_deref(), "detail", time)?;
            if kind == "status_changed" && t.status == TicketStatus::Solved {
                t.solved_at = Some(time);
            }
            if kind == "comment_added"
                && pointer_bool(body.event.as_ref(), "/comment/is_public")
                && pointer_bool(body.event.as_ref(), "/comment/author/is_staff")
            {
                t.first_response_at = Some(time);
            }
            t
        }
        Shape::Trigger(ticket) => ticket_of(
            &ticket,
            ticket.status.as_deref(),
            "ticket",
            input.received_at,
        )?,
    };
    Ok(helpdesk::envelopes(ctx, input.event_id, ticket))
}

fn ticket_of(
    t: &TicketIn,
    status: Option<&str>,
    path: &str,
    fallback_time: OffsetDateTime,
) -> Result<Ticket, MapError> {
    let field = |name: &str| format!("{path}.{name}");
    let ticket_id =
        non_empty(t.id.as_deref()).ok_or_else(|| MapError::MissingField(field("id")))?;
    let status_raw = status.ok_or_else(|| MapError::MissingField(field("status")))?;
    let status = helpdesk::status_of(status_raw).ok_or_else(|| MapError::InvalidField {
        field: field("status"),
        reason: format!("unknown ticket status {status_raw:?}"),
    })?;
    let requester_id = non_empty(t.requester_id.as_deref()).or_else(|| {
        t.requester
            .as_ref()
            .and_then(|r| non_empty(r.id.as_deref()))
    });
    let email = t
        .requester_email
        .as_deref()
        .or_else(|| t.requester.as_ref().and_then(|r| r.email.as_deref()));
    let mut requester = Identity::default().with_email(email);
    if let Some(id) = requester_id {
        requester = requester.with_external(super::NAME, id);
    }
    if requester.is_empty() {
        return Err(MapError::MissingField(field("requester_id")));
    }
    let tags = helpdesk::tags_of(t.tags.as_ref());
    let subject = non_empty(t.subject.as_deref()).or_else(|| non_empty(t.title.as_deref()));
    let mut explicit: Vec<String> = t.order_number.iter().cloned().collect();
    explicit.extend(
        t.custom_fields
            .iter()
            .filter_map(|f| f.value.clone())
            .filter(|v| helpdesk::looks_like_order_number(v)),
    );
    let updated_at =
        time_of(&field("updated_at"), t.updated_at.as_deref())?.unwrap_or(fallback_time);
    let created_at = time_of(&field("created_at"), t.created_at.as_deref())?.unwrap_or(updated_at);
    Ok(Ticket {
        provider: super::NAME.to_string(),
        ticket_id,
        requester,
        order_links: helpdesk::order_links(&explicit, &tags, subject.as_deref()),
        status,
        subject,
        reasons: helpdesk::reasons_of(&tags),
        tags,
        created_at,
        updated_at,
        first_response_at: time_of(&field("first_response_at"), t.first_response_at.as_deref())?,
        solved_at: time_of(&field("solved_at"), t.solved_at.as_deref())?,
        csat: helpdesk::csat_of(t.satisfaction_rating.as_ref()),
    })
}
