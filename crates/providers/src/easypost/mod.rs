//! EasyPost webhooks (`Event` objects; trackers are mapped).
//!
//! Signature: header `X-Hmac-Signature: hmac-sha256-hex=<hex>`, the HMAC-SHA256 of
//! the exact body. The key is the webhook secret NFKD-normalised and UTF-8 encoded,
//! exactly as EasyPost's client libraries' `validate_webhook` build it (so a secret
//! with accented or compatibility characters verifies as EasyPost signed it). No
//! timestamp is signed.

use time::OffsetDateTime;
use unicode_normalization::UnicodeNormalization;

use crate::{
    Credentials, Inbound, MapError, SignError, Signed, VerifyError, WebhookRequest,
    check_hmac_sha256, hmac_sha256, required_header, signing_secret, verifying_secret,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "easypost";
pub(crate) const SIGNATURE: &str = "x-hmac-signature";
const PREFIX: &str = "hmac-sha256-hex=";
const SECRET_IS_EMPTY: &str = "empty EasyPost webhook secret";

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
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    let header = required_header(req, SIGNATURE)?.trim();
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
    check_hmac_sha256(&key(secret), &[req.body], &given)
}

/// Topic = `description` (`tracker.updated`), id = the event's `id`, occurred_at =
/// the event's `created_at`.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let event: model::EventObject = crate::parse_json(req.body)?;
    let topic = crate::non_empty(event.description.as_deref())
        .ok_or_else(|| MapError::MissingField("description".into()))?;
    let event_id =
        crate::non_empty(event.id.as_deref()).ok_or_else(|| MapError::MissingField("id".into()))?;
    let occurred_at = event.created_at.as_deref().and_then(crate::lenient_time);
    Ok(Inbound {
        topic,
        event_id,
        occurred_at,
    })
}

pub(crate) use map::map;

pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
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

/// EasyPost (tracker events).
#[derive(Clone, Copy, Debug, Default)]
pub struct Easypost;

impl crate::Provider for Easypost {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("easypost-hmac-sha256-hex")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "tracker.updated",
            body: include_bytes!("fixtures/tracker_updated__return_to_sender.json"),
        }
    }

    crate::provider::entry_points!();
}
