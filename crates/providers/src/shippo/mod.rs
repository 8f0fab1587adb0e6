//! Shippo webhooks (`track_updated` is mapped).
//!
//! Shippo signs nothing. The tenant's webhook URL carries a per-tenant token
//! (`?token=…`), compared in constant time with [`Credentials::secret`]; a missing
//! or wrong token is [`VerifyError::BadToken`]. Shippo events carry no id either, so
//! the idempotency id is a hash of what identifies a tracking update: tracking
//! number, status and status date.

use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, ct_eq,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "shippo";

/// Nothing in the headers is needed for mapping.
pub(crate) const HEADERS: &[&str] = &[];

/// Constant-time URL token check shared by the token-authenticated providers.
pub(crate) fn verify_token(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
) -> Result<(), VerifyError> {
    if creds.secret.is_empty() {
        return Err(VerifyError::BadCredentials("empty URL token".into()));
    }
    match req.url_token {
        Some(token) if ct_eq(token.as_bytes(), creds.secret.as_bytes()) => Ok(()),
        _ => Err(VerifyError::BadToken),
    }
}

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    verify_token(creds, req)
}

/// Topic = `event`; for `track_updated` the id is a hash of tracking number,
/// status and status date, and occurred_at is the status date; other events get a
/// hash of the body.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let hook: model::Webhook = crate::parse_json(req.body)?;
    let topic = crate::non_empty(hook.event.as_deref())
        .ok_or_else(|| MapError::MissingField("event".into()))?;
    if topic != map::TRACK_UPDATED {
        return Ok(Inbound {
            topic,
            event_id: content_hash(req.body),
            occurred_at: None,
        });
    }
    let track = map::track_of(&hook)?;
    let number = crate::non_empty(track.tracking_number.as_deref())
        .ok_or_else(|| MapError::MissingField("data.tracking_number".into()))?;
    let status = track.tracking_status.unwrap_or_default();
    let status_name = status.status.unwrap_or_default();
    let status_date = status.status_date.unwrap_or_default();
    let key = format!("{number}\u{0}{status_name}\u{0}{status_date}");
    Ok(Inbound {
        topic,
        event_id: format!("shippo:{}", content_hash(key.as_bytes())),
        occurred_at: crate::aftership::carrier::lenient_time(&status_date),
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    map::map(ctx, input)
}

/// Shippo sends no signature: the token goes in the URL.
pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    if secret.is_empty() {
        return Err(SignError::BadSecret("empty URL token".into()));
    }
    Ok(Signed {
        headers: Vec::new(),
        url_token: Some(secret.to_string()),
        body: body.to_vec(),
    })
}
