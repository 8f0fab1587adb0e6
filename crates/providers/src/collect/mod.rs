//! Browser touches posted to `/v1/collect/{tenant}` by the shop's own site.
//!
//! Unsigned by design: a browser cannot keep a secret, so there is nothing to
//! verify and [`verify`] always passes. The ingest protects the endpoint instead,
//! with CORS (the tenant's allowed origins) and a rate limit. The only header kept
//! is `origin`, for auditing which site sent a touch; the user agent is not kept
//! (it fingerprints people and the fold does not need it).

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

pub(crate) const NAME: &str = "collect";

pub(crate) const HEADERS: &[&str] = &["origin"];

/// Always passes: see the module documentation.
pub(crate) fn verify(
    _creds: &Credentials,
    _req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    Ok(())
}

/// Topic `touch`, or `identify` for an email with no visit; id = `touch_id`, else
/// a hash of the body; occurred_at = `at` when readable.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let beacon: model::Beacon = crate::parse_json(req.body)?;
    map::identity_of(&beacon)?;
    Ok(Inbound {
        topic: map::topic_of(&beacon).to_string(),
        event_id: crate::non_empty(beacon.touch_id.as_deref())
            .unwrap_or_else(|| content_hash(req.body)),
        occurred_at: beacon
            .at
            .as_deref()
            .and_then(|at| crate::parse_time("at", at.trim()).ok()),
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    map::map(ctx, input)
}

/// Browsers sign nothing.
pub(crate) fn sign(
    _secret: &str,
    _topic: &str,
    _body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    Err(SignError::NotSigned("collect"))
}
