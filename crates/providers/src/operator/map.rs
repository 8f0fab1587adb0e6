//! Operator commands to canonical events.

use storefold_core::event::CustomerRedacted;
use storefold_core::{Envelope, Event, Identity};
use time::{OffsetDateTime, UtcOffset};

use super::{PROVIDER, model};
use crate::{MapContext, MapError, RawInput, non_empty, parse_json, parse_time};

/// The one topic the operator sends today.
pub(crate) const ERASE: &str = "customer/erase";

/// The longest command id accepted (a UUID is 36 characters).
const MAX_COMMAND_ID_CHARS: usize = 128;

/// The longest `reason` accepted: a note for the audit trail, not a document.
pub(crate) const MAX_REASON_CHARS: usize = 1000;

/// A `customer/erase` command that passed every check.
#[derive(Debug)]
pub(crate) struct Erase {
    pub(crate) command_id: String,
    /// Normalised email and/or phone; never empty.
    pub(crate) identity: Identity,
    pub(crate) requested_at: OffsetDateTime,
}

fn invalid(field: &str, reason: &str) -> MapError {
    MapError::InvalidField {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads and checks a `customer/erase` body. The errors name the field and
/// never quote its value (an email in a dead letter is what erasure removes).
pub(crate) fn parse_erase(body: &[u8]) -> Result<Erase, MapError> {
    let cmd: model::EraseCommand = parse_json(body)?;
    let command_id = non_empty(cmd.command_id.as_deref())
        .ok_or_else(|| MapError::MissingField("command_id".into()))?;
    if command_id.chars().count() > MAX_COMMAND_ID_CHARS {
        return Err(invalid(
            "command_id",
            &format!("longer than {MAX_COMMAND_ID_CHARS} characters"),
        ));
    }
    if command_id
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(
            "command_id",
            "contains whitespace or control characters",
        ));
    }
    let email = non_empty(cmd.email.as_deref());
    let phone = non_empty(cmd.phone.as_deref());
    if email.is_none() && phone.is_none() {
        return Err(MapError::MissingField(
            "email or phone (a customer/erase names at least one)".into(),
        ));
    }
    // Normalised exactly as every mapper keys identities, so the erasure finds
    // what the fold stored. A value that does not normalise is refused rather
    // than skipped: erasing less than was asked must never pass silently.
    let mut identity = Identity::default();
    if let Some(e) = &email {
        identity = identity.with_email(Some(e));
        if identity.email.is_none() {
            return Err(invalid("email", "not a valid email address"));
        }
    }
    if let Some(p) = &phone {
        identity = identity.with_phone(Some(p), None);
        if identity.phone.is_none() {
            return Err(invalid(
                "phone",
                "not a valid phone number in international form (+<country code><number>)",
            ));
        }
    }
    let requested_at = non_empty(cmd.requested_at.as_deref())
        .ok_or_else(|| MapError::MissingField("requested_at".into()))?;
    let requested_at = parse_time("requested_at", &requested_at)?.to_offset(UtcOffset::UTC);
    if cmd
        .reason
        .as_deref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(invalid(
            "reason",
            &format!("longer than {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(Erase {
        command_id,
        identity,
        requested_at,
    })
}

/// The idempotency id of a command: the same command id is the same event,
/// whatever else the retry changed (its signature time, its reason).
pub(crate) fn event_id(topic: &str, command_id: &str) -> String {
    format!("{PROVIDER}:{topic}:{command_id}")
}

/// `customer/erase` → one `CustomerRedacted` requested by the operator. No
/// orders are named: the fold erases the orders of the customer it resolves.
pub(crate) fn erase(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let erase = parse_erase(input.body)?;
    Ok(vec![Envelope {
        tenant: ctx.tenant.to_string(),
        provider: PROVIDER.to_string(),
        event_id: input.event_id.to_string(),
        occurred_at: erase.requested_at,
        event: Event::CustomerRedacted(CustomerRedacted {
            identity: erase.identity,
            orders: Vec::new(),
            requested_by: PROVIDER.to_string(),
        }),
    }])
}

/// Maps a verified operator command by its topic.
pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    match input.topic {
        ERASE => erase(ctx, input),
        other => Err(unsupported(other)),
    }
}

/// An operator topic storefold does not carry out (only [`ERASE`] today).
pub(crate) fn unsupported(topic: &str) -> MapError {
    MapError::UnsupportedTopic(topic.to_string())
}
