//! Operator commands to canonical events.

use storefold_core::event::{CustomerRedacted, IdentityDecided, IdentityDecision, Party};
use storefold_core::identity::{CustomerId, ExternalId};
use storefold_core::{Envelope, Event, Identity, IdentityKey};
use time::{OffsetDateTime, UtcOffset};

use super::{PROVIDER, model};
use crate::{MapContext, MapError, RawInput, non_empty, parse_json, parse_time};

/// The erasure of a customer.
pub(crate) const ERASE: &str = "customer/erase";
/// Two identities are one customer.
pub(crate) const MERGE: &str = "identity/merge";
/// Two identities are two customers (undoing a merge).
pub(crate) const SPLIT: &str = "identity/split";
/// Two identities must not become one customer (a precaution).
pub(crate) const BLOCK: &str = "identity/block";

/// The longest command id accepted (a UUID is 36 characters).
const MAX_COMMAND_ID_CHARS: usize = 128;

/// The longest `reason` accepted: a note for the audit trail, not a document.
pub(crate) const MAX_REASON_CHARS: usize = 1000;

/// What a side of a decision names, as its body spells it.
const SIDE_FIELDS: &str = "email, phone, external, customer_id";

/// A `customer/erase` command that passed every check.
#[derive(Debug)]
pub(crate) struct Erase {
    pub(crate) command_id: String,
    /// Normalised email and/or phone; never empty.
    pub(crate) identity: Identity,
    pub(crate) requested_at: OffsetDateTime,
}

/// An `identity/merge|split|block` command that passed every check.
#[derive(Debug)]
pub(crate) struct Decision {
    pub(crate) command_id: String,
    pub(crate) decision: IdentityDecision,
    /// Normalised; never [`Party::Erased`], and not the same as `b`.
    pub(crate) a: Party,
    pub(crate) b: Party,
    pub(crate) requested_at: OffsetDateTime,
}

/// The decision an identity topic carries out; `None` for any other topic.
pub(crate) fn decision_of(topic: &str) -> Option<IdentityDecision> {
    match topic {
        MERGE => Some(IdentityDecision::Merge),
        SPLIT => Some(IdentityDecision::Split),
        BLOCK => Some(IdentityDecision::Block),
        _ => None,
    }
}

/// The topic of a decision.
pub(crate) fn decision_topic(decision: IdentityDecision) -> &'static str {
    match decision {
        IdentityDecision::Merge => MERGE,
        IdentityDecision::Split => SPLIT,
        IdentityDecision::Block => BLOCK,
    }
}

/// Whether a split or block of `a` and `b` is one the fold carries out: at
/// least one side is an email or a customer anchored at one (`cus_em_`).
pub(crate) fn separable(a: &Party, b: &Party) -> bool {
    let email_side = |p: &Party| match p {
        Party::Email(_) => true,
        Party::CustomerId(c) => c.starts_with("cus_em_"),
        _ => false,
    };
    email_side(a) || email_side(b)
}

fn invalid(field: &str, reason: &str) -> MapError {
    MapError::InvalidField {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// The command id: present, short, without whitespace or control characters.
fn command_id(raw: Option<&str>) -> Result<String, MapError> {
    let command_id = non_empty(raw).ok_or_else(|| MapError::MissingField("command_id".into()))?;
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
    Ok(command_id)
}

/// `requested_at`: present, RFC 3339, read as UTC.
fn requested_at(raw: Option<&str>) -> Result<OffsetDateTime, MapError> {
    let requested_at =
        non_empty(raw).ok_or_else(|| MapError::MissingField("requested_at".into()))?;
    Ok(parse_time("requested_at", &requested_at)?.to_offset(UtcOffset::UTC))
}

/// `reason`: optional, at most [`MAX_REASON_CHARS`].
fn check_reason(reason: Option<&str>) -> Result<(), MapError> {
    if reason.is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
        return Err(invalid(
            "reason",
            &format!("longer than {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(())
}

/// `raw` normalised as every mapper normalises an email.
fn email(field: &str, raw: &str) -> Result<String, MapError> {
    Identity::default()
        .with_email(Some(raw))
        .email
        .ok_or_else(|| invalid(field, "not a valid email address"))
}

/// `raw` normalised as every mapper normalises a phone without a default
/// country.
fn phone(field: &str, raw: &str) -> Result<String, MapError> {
    Identity::default()
        .with_phone(Some(raw), None)
        .phone
        .ok_or_else(|| {
            invalid(
                field,
                "not a valid phone number in international form (+<country code><number>)",
            )
        })
}

/// Reads and checks a `customer/erase` body. The errors name the field and
/// never quote its value (an email in a dead letter is what erasure removes).
pub(crate) fn parse_erase(body: &[u8]) -> Result<Erase, MapError> {
    let cmd: model::EraseCommand = parse_json(body)?;
    let command_id = command_id(cmd.command_id.as_deref())?;
    let email_raw = non_empty(cmd.email.as_deref());
    let phone_raw = non_empty(cmd.phone.as_deref());
    if email_raw.is_none() && phone_raw.is_none() {
        return Err(MapError::MissingField(
            "email or phone (a customer/erase names at least one)".into(),
        ));
    }
    // Normalised exactly as every mapper keys identities, so the erasure finds
    // what the fold stored. A value that does not normalise is refused rather
    // than skipped: erasing less than was asked must never pass silently.
    let identity = Identity {
        email: email_raw.map(|e| email("email", &e)).transpose()?,
        phone: phone_raw.map(|p| phone("phone", &p)).transpose()?,
        ..Identity::default()
    };
    let requested_at = requested_at(cmd.requested_at.as_deref())?;
    check_reason(cmd.reason.as_deref())?;
    Ok(Erase {
        command_id,
        identity,
        requested_at,
    })
}

/// One side of a decision (`field` is `a` or `b`): exactly one identity,
/// normalised as the mappers normalise it, or a customer id storefold makes.
fn side(field: &str, side: Option<model::Side>) -> Result<Party, MapError> {
    let missing = || MapError::MissingField(format!("{field} (one of {SIDE_FIELDS})"));
    let side = side.ok_or_else(missing)?;
    let email_raw = non_empty(side.email.as_deref());
    let phone_raw = non_empty(side.phone.as_deref());
    let customer_raw = non_empty(side.customer_id.as_deref());
    let given = usize::from(email_raw.is_some())
        + usize::from(phone_raw.is_some())
        + usize::from(side.external.is_some())
        + usize::from(customer_raw.is_some());
    if given > 1 {
        return Err(invalid(
            field,
            &format!("names more than one identity (give exactly one of {SIDE_FIELDS})"),
        ));
    }
    if let Some(e) = email_raw {
        return Ok(Party::Email(email(&format!("{field}.email"), &e)?));
    }
    if let Some(p) = phone_raw {
        return Ok(Party::Phone(phone(&format!("{field}.phone"), &p)?));
    }
    if let Some(x) = side.external {
        let source = non_empty(x.source.as_deref())
            .ok_or_else(|| MapError::MissingField(format!("{field}.external.source")))?;
        if source
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':')
        {
            return Err(invalid(
                &format!("{field}.external.source"),
                "contains whitespace, control characters or ':'",
            ));
        }
        let id = non_empty(x.id.as_deref())
            .ok_or_else(|| MapError::MissingField(format!("{field}.external.id")))?;
        // Sources are lower-case names (`shopify`); an id is kept as the
        // mappers keep it, and what they ignore (`0`) is refused.
        let identity = Identity::default().with_external(&source.to_ascii_lowercase(), id);
        return match identity.external.into_iter().next() {
            Some(ExternalId { source, id }) => Ok(Party::External(ExternalId { source, id })),
            None => Err(invalid(&format!("{field}.external.id"), "not an id")),
        };
    }
    if let Some(c) = customer_raw {
        let id = CustomerId(c);
        if IdentityKey::from_customer_id(&id).is_none() {
            return Err(invalid(
                &format!("{field}.customer_id"),
                "not a storefold customer id (cus_<kind>_<hex>)",
            ));
        }
        return Ok(Party::CustomerId(id.0));
    }
    Err(missing())
}

/// Reads and checks an `identity/merge|split|block` body (the topic gives
/// `decision`). The errors name the field and never quote its value.
pub(crate) fn parse_decision(
    decision: IdentityDecision,
    body: &[u8],
) -> Result<Decision, MapError> {
    let cmd: model::DecisionCommand = parse_json(body)?;
    let command_id = command_id(cmd.command_id.as_deref())?;
    let a = side("a", cmd.a)?;
    let b = side("b", cmd.b)?;
    if a == b {
        return Err(invalid("b", "names the same identity as a"));
    }
    if decision.separates() && !separable(&a, &b) {
        return Err(invalid(
            "a, b",
            &format!(
                "{} needs an email or a cus_em_ customer id on at least one side",
                decision_topic(decision)
            ),
        ));
    }
    let requested_at = requested_at(cmd.requested_at.as_deref())?;
    check_reason(cmd.reason.as_deref())?;
    Ok(Decision {
        command_id,
        decision,
        a,
        b,
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
            keys: Vec::new(),
        }),
    }])
}

/// `identity/merge|split|block` → one `IdentityDecided` by the operator.
pub(crate) fn decide(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
    decision: IdentityDecision,
) -> Result<Vec<Envelope>, MapError> {
    let d = parse_decision(decision, input.body)?;
    Ok(vec![Envelope {
        tenant: ctx.tenant.to_string(),
        provider: PROVIDER.to_string(),
        event_id: input.event_id.to_string(),
        occurred_at: d.requested_at,
        event: Event::IdentityDecided(IdentityDecided {
            decision: d.decision,
            a: d.a,
            b: d.b,
            requested_by: PROVIDER.to_string(),
        }),
    }])
}

/// Maps a verified operator command by its topic.
pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    match input.topic {
        ERASE => erase(ctx, input),
        other => match decision_of(other) {
            Some(decision) => decide(ctx, input, decision),
            None => Err(unsupported(other)),
        },
    }
}

/// An operator topic storefold does not carry out (any but [`ERASE`],
/// [`MERGE`], [`SPLIT`] and [`BLOCK`]).
pub(crate) fn unsupported(topic: &str) -> MapError {
    MapError::UnsupportedTopic(topic.to_string())
}
