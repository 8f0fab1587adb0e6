//! Zendesk webhooks: event webhooks (`zen:event-type:ticket.*`) and trigger or
//! automation webhooks with a JSON body.
//!
//! Signature (Zendesk's "Verifying webhook authenticity"): header
//! `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, TIMESTAMP + BODY)),
//! where TIMESTAMP is the exact value of `X-Zendesk-Webhook-Signature-Timestamp`
//! (e.g. `2021-03-25T05:09:27Z`) concatenated with the raw body, no separator. The
//! timestamp must be within five minutes (`TOLERANCE_SECS`) of `now` either way, so a captured
//! request cannot be replayed later.
//!
//! Recommended trigger body (any subset; see `model.rs` for every field read):
//!
//! ```json
//! {"ticket": {"id": "{{ticket.id}}", "status": "{{ticket.status}}",
//!   "subject": "{{ticket.title}}", "tags": "{{ticket.tags}}",
//!   "requester": {"id": "{{ticket.requester.id}}", "email": "{{ticket.requester.email}}"},
//!   "created_at": "{{ticket.created_at_with_timestamp}}",
//!   "updated_at": "{{ticket.updated_at_with_timestamp}}",
//!   "satisfaction_rating": "{{satisfaction.current_rating}}"}}
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{
    Credentials, Inbound, MapError, SignError, Signed, VerifyError, WebhookRequest,
    base64_signature, check_hmac_sha256, hmac_sha256, required_header, signing_secret,
    verifying_secret,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "zendesk";
pub(crate) const SIGNATURE: &str = "x-zendesk-webhook-signature";
pub(crate) const TIMESTAMP: &str = "x-zendesk-webhook-signature-timestamp";
/// How far the signed timestamp may be from `now`, either way.
pub(crate) const TOLERANCE_SECS: i64 = 300;
const SECRET_IS_EMPTY: &str = "empty Zendesk signing secret";

/// Kept for tracing a delivery back to Zendesk's webhook activity log; mapping
/// needs none of them.
pub(crate) const HEADERS: &[&str] = &["x-zendesk-webhook-id", "x-zendesk-webhook-invocation-id"];

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    let signature = required_header(req, SIGNATURE)?;
    let timestamp = required_header(req, TIMESTAMP)?;
    let given = base64_signature(SIGNATURE, signature)?;
    let signed_at = OffsetDateTime::parse(timestamp.trim(), &Rfc3339).map_err(|e| {
        VerifyError::MalformedHeader {
            header: TIMESTAMP,
            reason: e.to_string(),
        }
    })?;
    check_hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), req.body], &given)?;
    if (now - signed_at).whole_seconds().abs() > TOLERANCE_SECS {
        return Err(VerifyError::Expired {
            tolerance_secs: TOLERANCE_SECS,
        });
    }
    Ok(())
}

/// Event webhooks: topic = `type`, id = `id`, occurred_at = `time`. Trigger
/// bodies: topic = `ticket`, id = hash of the body (Zendesk retries send the same
/// body), occurred_at = the ticket's `updated_at`.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    use crate::lenient_time;
    match map::shape(req.body)? {
        map::Shape::Event { event_type, body } => Ok(Inbound {
            topic: event_type,
            event_id: crate::non_empty(body.id.as_deref())
                .ok_or_else(|| MapError::MissingField("id".into()))?,
            occurred_at: body.time.as_deref().and_then(lenient_time),
        }),
        map::Shape::Trigger(ticket) => Ok(Inbound {
            topic: map::TRIGGER_TOPIC.to_string(),
            event_id: content_hash(req.body),
            occurred_at: ticket.updated_at.as_deref().and_then(lenient_time),
        }),
    }
}

pub(crate) use map::map;

/// Signs with `now` as the timestamp, formatted as Zendesk does (whole seconds, Z).
pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
    let ts = now
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|e| SignError::BadSecret(e.to_string()))?
        .format(&Rfc3339)
        .map_err(|e| SignError::BadSecret(e.to_string()))?;
    let mac = hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), body]);
    Ok(Signed {
        headers: vec![
            ("X-Zendesk-Webhook-Signature".to_string(), B64.encode(mac)),
            ("X-Zendesk-Webhook-Signature-Timestamp".to_string(), ts),
        ],
        url_token: None,
        body: body.to_vec(),
    })
}

/// Zendesk (ticket webhooks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Zendesk;

impl crate::Provider for Zendesk {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("zendesk-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "zen:event-type:ticket.status_changed",
            body: include_bytes!("fixtures/event__ticket_status_changed__solved.json"),
        }
    }

    crate::provider::entry_points!();
}
