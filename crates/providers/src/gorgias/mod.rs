//! Gorgias HTTP integrations.
//!
//! Gorgias signs nothing: the integration's URL carries a per-tenant token
//! (`?token=…`), compared in constant time with [`Credentials::secret`], exactly as
//! for Shippo. The body is the ticket JSON the integration sends (see `model.rs`).

use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "gorgias";

/// Nothing in the headers is needed for mapping.
pub(crate) const HEADERS: &[&str] = &[];

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    crate::shippo::verify_token(creds, req)
}

/// Topic = the wrapper's `event`, else `ticket`. Id = `gorgias:<ticket id>:<updated
/// datetime>` (one id per ticket version, so retries and re-sends of the same
/// version are one event), else a hash of the body. occurred_at = updated_datetime.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let (topic, ticket) = map::parse(req.body)?;
    let updated = crate::non_empty(ticket.updated_datetime.as_deref());
    let event_id = match (crate::non_empty(ticket.id.as_deref()), &updated) {
        (Some(id), Some(at)) => format!("gorgias:{id}:{at}"),
        _ => content_hash(req.body),
    };
    Ok(Inbound {
        topic,
        event_id,
        occurred_at: updated
            .as_deref()
            .and_then(crate::aftership::carrier::lenient_time),
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    map::map(ctx, input)
}

/// Gorgias sends no signature: the token goes in the URL.
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
