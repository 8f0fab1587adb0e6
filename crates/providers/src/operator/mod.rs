//! storefold's own command source: an operator (through `storefold erase` and
//! `storefold identity`, or any tool holding the tenant's operator secret) asks
//! for something the providers cannot, such as a GDPR erasure of a customer no
//! store redacted, or a say on whether two identities are one customer.
//!
//! A command is a JSON body posted to `/v1/webhooks/{tenant}/operator` like a
//! webhook, so it is verified by the ingest, kept in `raw.operator` as the proof
//! of who asked what and when, and folded in order with everything else.
//!
//! Signature: `X-Storefold-Signature: sha256=<hex>`, the HMAC-SHA256 keyed with
//! the tenant's operator secret of `<timestamp>\n<topic>\n<body>`, where
//! `<timestamp>` is `X-Storefold-Timestamp` (Unix seconds, exactly as sent) and
//! `<topic>` is `X-Storefold-Topic`. The topic is signed so that a captured
//! command cannot be replayed under another topic; the timestamp must be within
//! [`TOLERANCE_SECS`] of the check either way (Stripe's replay window), so it
//! cannot be replayed later either. A header value holds no newline, so the
//! signed string reads one way only.
//!
//! Topics (see `model.rs` for their bodies), each mapped to one event:
//!
//! - `customer/erase`: a `CustomerRedacted` of an email and/or phone;
//! - `identity/merge`, `identity/split`, `identity/block`: an
//!   `IdentityDecided` about two sides `a` and `b`, each exactly one email,
//!   phone, external id or storefold customer id. A merge joins their
//!   customers whatever the rules say; a split undoes a merge and a block
//!   prevents one, and both need an email (or a `cus_em_` customer id) on one
//!   side at least (see [`separable`]).
//!
//! Anything else is refused, at the ingest already, as is a body that could
//! not be carried out.

use storefold_core::event::{IdentityDecision, Party};
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapError, SignError, Signed, VerifyError, WebhookRequest,
    sign_storefold_topic, storefold_topic_signature, verify_storefold_topic,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const PROVIDER: &str = "operator";

/// The signature header: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = crate::STOREFOLD_SIGNATURE_HEADER;
/// The signed Unix time, in seconds.
pub const TIMESTAMP_HEADER: &str = crate::STOREFOLD_TIMESTAMP_HEADER;
/// The command's topic (`customer/erase`, `identity/merge`, ...).
pub const TOPIC_HEADER: &str = crate::STOREFOLD_TOPIC_HEADER;
/// How far the signed timestamp may be from the time of the check, either way.
pub const TOLERANCE_SECS: i64 = crate::STOREFOLD_TOLERANCE_SECS;
/// The topic of an erasure command.
pub const ERASE_TOPIC: &str = map::ERASE;
/// The topic of a merge of two identities' customers.
pub const MERGE_TOPIC: &str = map::MERGE;
/// The topic of a split of two identities' customers.
pub const SPLIT_TOPIC: &str = map::SPLIT;
/// The topic of a block (do not merge) of two identities' customers.
pub const BLOCK_TOPIC: &str = map::BLOCK;

/// The topic that carries `decision` ([`MERGE_TOPIC`], [`SPLIT_TOPIC`] or
/// [`BLOCK_TOPIC`]).
pub fn decision_topic(decision: IdentityDecision) -> &'static str {
    map::decision_topic(decision)
}

/// Whether a split or a block of `a` and `b` is accepted: one side at least
/// is an email or a customer id anchored at one (`cus_em_`). A merge may name
/// any two sides.
pub fn separable(a: &Party, b: &Party) -> bool {
    map::separable(a, b)
}

const SECRET_IS_EMPTY: &str = "empty operator secret";

/// The topic and the time are kept; the signature is not (it proves nothing
/// once verified, and the raw event records the verification).
pub(crate) const HEADERS: &[&str] = &["x-storefold-topic", "x-storefold-timestamp"];

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    verify_storefold_topic(creds, req, now, SECRET_IS_EMPTY)
}

/// Topic from `X-Storefold-Topic` (`customer/erase`, `identity/merge`,
/// `identity/split`, `identity/block`); id `operator:<topic>:<command_id>`;
/// occurred_at = `requested_at`. The whole command is checked here, so the
/// ingest answers 400 to a command that could not be carried out instead of
/// storing it.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let topic = crate::non_empty(req.headers.get(TOPIC_HEADER))
        .ok_or(MapError::MissingHeader(TOPIC_HEADER))?;
    let (command_id, requested_at) = if topic == map::ERASE {
        let erase = map::parse_erase(req.body)?;
        (erase.command_id, erase.requested_at)
    } else if let Some(decision) = map::decision_of(&topic) {
        let d = map::parse_decision(decision, req.body)?;
        (d.command_id, d.requested_at)
    } else {
        return Err(map::unsupported(&topic));
    };
    Ok(Inbound {
        event_id: map::event_id(&topic, &command_id),
        occurred_at: Some(requested_at),
        topic,
    })
}

pub(crate) use map::map;

/// The `X-Storefold-Signature` value for `body` sent under `topic` at Unix
/// time `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, topic: &str, body: &[u8]) -> String {
    storefold_topic_signature(secret, timestamp, topic, body)
}

pub(crate) fn sign(
    secret: &str,
    topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    sign_storefold_topic(secret, topic, body, now, SECRET_IS_EMPTY)
}

/// storefold's own operator commands (`customer/erase`, `identity/merge`,
/// `identity/split`, `identity/block`), signed with the tenant's operator
/// secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct Operator;

impl crate::Provider for Operator {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("storefold-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: map::ERASE,
            body: include_bytes!("fixtures/customer_erase__email.json"),
        }
    }

    fn topic_header(&self) -> Option<&'static str> {
        Some(TOPIC_HEADER)
    }

    crate::provider::entry_points!();
}
