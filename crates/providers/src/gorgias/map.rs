//! Gorgias ticket -> TicketUpdated (+ ReturnRequested), with Zendesk's tag, order
//! and return rules (see `helpdesk.rs`).
//!
//! * requester: `customer.email`, plus `gorgias:<customer.id>`;
//! * status: open -> open, closed -> closed (also any Zendesk-style status);
//! * solved_at: `closed_datetime`;
//! * first_response_at: the first public agent message sent at or after the first
//!   customer message (an outbound ticket that the customer never wrote has none);
//! * CSAT: `satisfaction_survey.score` (1..=5);
//! * orders: the template's `order_number`, tags like `order_1001`, the subject.

use storefold_core::event::Ticket;
use storefold_core::{Envelope, Identity};
use time::OffsetDateTime;

use super::model::{TicketIn, Wrapper};
use crate::helpdesk::{self, time_of};
use crate::{MapContext, MapError, RawInput, lenient_time, non_empty};

/// The wrapper's `event` (or `ticket`) and the ticket.
pub(crate) fn parse(bytes: &[u8]) -> Result<(String, TicketIn), MapError> {
    let wrapper: Wrapper = crate::parse_json(bytes)?;
    let topic = non_empty(wrapper.event.as_deref()).unwrap_or_else(|| "ticket".to_string());
    let ticket = match wrapper.ticket {
        Some(t) => t,
        None => crate::parse_json::<TicketIn>(bytes)?,
    };
    if non_empty(ticket.id.as_deref()).is_none() {
        return Err(MapError::MissingField("ticket.id".into()));
    }
    Ok((topic, ticket))
}

fn first_response(t: &TicketIn) -> Option<OffsetDateTime> {
    let mut msgs: Vec<(OffsetDateTime, bool)> = t
        .messages
        .iter()
        .filter(|m| m.public != Some(false))
        .filter_map(|m| {
            let at = m
                .sent_datetime
                .as_deref()
                .or(m.created_datetime.as_deref())
                .and_then(lenient_time)?;
            Some((at, m.from_agent == Some(true)))
        })
        .collect();
    msgs.sort();
    let first_customer = msgs.iter().find(|(_, agent)| !agent)?.0;
    msgs.iter()
        .find(|(at, agent)| *agent && *at >= first_customer)
        .map(|(at, _)| *at)
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let (_, t) = parse(input.body)?;
    let ticket_id =
        non_empty(t.id.as_deref()).ok_or_else(|| MapError::MissingField("ticket.id".into()))?;
    let status_raw = t
        .status
        .as_deref()
        .ok_or_else(|| MapError::MissingField("ticket.status".into()))?;
    let status = match status_raw.trim().to_ascii_lowercase().as_str() {
        "snoozed" => Some(storefold_core::event::TicketStatus::OnHold),
        _ => helpdesk::status_of(status_raw),
    }
    .ok_or_else(|| MapError::InvalidField {
        field: "ticket.status".into(),
        reason: format!("unknown ticket status {status_raw:?}"),
    })?;
    let customer = t.customer.as_ref();
    let mut requester = Identity::default().with_email(customer.and_then(|c| c.email.as_deref()));
    if let Some(id) = customer.and_then(|c| non_empty(c.id.as_deref())) {
        requester = requester.with_external(super::NAME, id);
    }
    if requester.is_empty() {
        return Err(MapError::MissingField("ticket.customer".into()));
    }
    let tags = helpdesk::tags_of(t.tags.as_ref());
    let subject = non_empty(t.subject.as_deref());
    let explicit: Vec<String> = t.order_number.iter().cloned().collect();
    let updated_at = time_of("ticket.updated_datetime", t.updated_datetime.as_deref())?
        .unwrap_or(input.received_at);
    let created_at =
        time_of("ticket.created_datetime", t.created_datetime.as_deref())?.unwrap_or(updated_at);
    let ticket = Ticket {
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
        first_response_at: first_response(&t),
        solved_at: time_of("ticket.closed_datetime", t.closed_datetime.as_deref())?,
        csat: helpdesk::csat_of(t.satisfaction_survey.as_ref()),
    };
    Ok(helpdesk::envelopes(ctx, input.event_id, ticket))
}
