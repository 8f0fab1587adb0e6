//! AfterShip Tracking webhooks.
//!
//! Signature: header `aftership-hmac-sha256`, the base64 HMAC-SHA256 of the exact
//! body keyed with the webhook secret (AfterShip's "Webhook Signature" page).
//! AfterShip's newer products (Returns, Warranty) send the same HMAC under
//! `as-signature-hmac-sha256`; that name is accepted as a fallback so a tenant that
//! moves to a newer webhook version keeps working. No timestamp is signed.
//!
//! Body: `{"event_id", "event": "tracking_update", "msg": {tracking object}, "ts"}`.
//! Only `tracking_update` is mapped (see `map.rs`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapError, SignError, Signed, VerifyError, WebhookRequest,
    base64_signature, check_hmac_sha256, hmac_sha256, signing_secret, verifying_secret,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "aftership";
/// The signature header (lower case, as stored).
pub(crate) const SIGNATURE: &str = "aftership-hmac-sha256";
/// The same HMAC under the name AfterShip's newer webhook products use.
pub(crate) const SIGNATURE_ALT: &str = "as-signature-hmac-sha256";
const SECRET_IS_EMPTY: &str = "empty AfterShip webhook secret";

/// Nothing in the headers is needed for mapping: the body says it all.
pub(crate) const HEADERS: &[&str] = &[];

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    let header = req
        .headers
        .get(SIGNATURE)
        .or_else(|| req.headers.get(SIGNATURE_ALT))
        .ok_or(VerifyError::MissingHeader(SIGNATURE))?;
    let given = base64_signature(SIGNATURE, header)?;
    check_hmac_sha256(secret.as_bytes(), &[req.body], &given)
}

/// Topic = `event`; id = the body's `event_id` when present, else
/// `msg.id:tag:latest checkpoint time` (older webhook versions carry no id; that
/// triple changes exactly when the tracking does); occurred_at = `ts`.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let hook: model::Webhook = crate::parse_json(req.body)?;
    let topic = crate::non_empty(hook.event.as_deref())
        .ok_or_else(|| MapError::MissingField("event".into()))?;
    let occurred_at = map::ts_of(hook.ts.as_ref())?;
    let event_id = match crate::non_empty(hook.event_id.as_deref()) {
        Some(id) => id,
        None => derived_id(hook.msg.as_ref(), req.body),
    };
    Ok(Inbound {
        topic,
        event_id,
        occurred_at,
    })
}

fn derived_id(msg: Option<&model::Tracking>, body: &[u8]) -> String {
    let Some(msg) = msg else {
        return content_hash(body);
    };
    let Some(id) = crate::non_empty(msg.id.as_deref())
        .or_else(|| crate::non_empty(msg.tracking_number.as_deref()))
    else {
        return content_hash(body);
    };
    let latest = msg
        .checkpoints
        .iter()
        .filter_map(|c| {
            let raw = c.checkpoint_time.as_deref()?;
            Some((crate::lenient_time(raw)?, raw.trim()))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, raw)| raw)
        .unwrap_or("");
    format!("{id}:{}:{latest}", msg.tag.as_deref().unwrap_or(""))
}

pub(crate) use map::map;

pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
    let mac = hmac_sha256(secret.as_bytes(), &[body]);
    Ok(Signed {
        headers: vec![(SIGNATURE.to_string(), B64.encode(mac))],
        url_token: None,
        body: body.to_vec(),
    })
}

/// AfterShip (tracking updates).
#[derive(Clone, Copy, Debug, Default)]
pub struct Aftership;

impl crate::Provider for Aftership {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("aftership-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "tracking_update",
            body: include_bytes!("fixtures/tracking_update__delivered.json"),
        }
    }

    crate::provider::entry_points!();
}
