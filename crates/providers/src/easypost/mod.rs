//! EasyPost webhooks (`Event` objects; trackers are mapped).
//!
//! Signature: header `X-Hmac-Signature: hmac-sha256-hex=<hex>`, the HMAC-SHA256 of
//! the exact body. The key is the webhook secret NFKD-normalised and UTF-8 encoded,
//! exactly as EasyPost's client libraries' `validate_webhook` build it (so a secret
//! with accented or compatibility characters verifies as EasyPost signed it). No
//! timestamp is signed.

use storefold_core::Envelope;
use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, ct_eq, hmac_sha256,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "easypost";
pub(crate) const SIGNATURE: &str = "x-hmac-signature";
const PREFIX: &str = "hmac-sha256-hex=";

/// Nothing in the headers is needed for mapping.
pub(crate) const HEADERS: &[&str] = &[];

/// The HMAC key EasyPost's SDKs derive from a webhook secret.
fn key(secret: &str) -> Vec<u8> {
    secret.nfkd().collect::<String>().into_bytes()
}

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    if creds.secret.is_empty() {
        return Err(VerifyError::BadCredentials(
            "empty EasyPost webhook secret".into(),
        ));
    }
    let header = req
        .headers
        .get(SIGNATURE)
        .ok_or(VerifyError::MissingHeader(SIGNATURE))?
        .trim();
    let hex_part = header
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &header[PREFIX.len()..])
        .ok_or_else(|| VerifyError::MalformedHeader {
            header: SIGNATURE,
            reason: format!("expected {PREFIX}<hex>"),
        })?;
    let given = hex::decode(hex_part).map_err(|e| VerifyError::MalformedHeader {
        header: SIGNATURE,
        reason: e.to_string(),
    })?;
    let expected = hmac_sha256(&key(&creds.secret), &[req.body]);
    if ct_eq(&given, &expected) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Topic = `description` (`tracker.updated`), id = the event's `id`, occurred_at =
/// the event's `created_at`.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let event: model::EventObject = crate::parse_json(req.body)?;
    let topic = crate::non_empty(event.description.as_deref())
        .ok_or_else(|| MapError::MissingField("description".into()))?;
    let event_id =
        crate::non_empty(event.id.as_deref()).ok_or_else(|| MapError::MissingField("id".into()))?;
    let occurred_at = event
        .created_at
        .as_deref()
        .and_then(crate::aftership::carrier::lenient_time);
    Ok(Inbound {
        topic,
        event_id,
        occurred_at,
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    map::map(ctx, input)
}

pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    if secret.is_empty() {
        return Err(SignError::BadSecret("empty EasyPost webhook secret".into()));
    }
    let mac = hmac_sha256(&key(secret), &[body]);
    Ok(Signed {
        headers: vec![(
            "X-Hmac-Signature".to_string(),
            format!("{PREFIX}{}", hex::encode(mac)),
        )],
        url_token: None,
        body: body.to_vec(),
    })
}
