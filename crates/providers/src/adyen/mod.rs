//! Adyen standard notifications: per-item HMAC verification, description, mapping.
//!
//! Adyen signs each notification item, not the request: `additionalData.hmacSignature`
//! is the base64 HMAC-SHA256 of
//! `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`
//! (a missing field is empty), keyed with the hex-decoded HMAC key. The signature
//! lives inside the JSON, so verification parses the body, but only into the
//! fields of that string. Every item must verify.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, ct_eq, hmac_sha256, parse_json, parse_time,
};

mod map;
mod model;

#[cfg(test)]
mod tests;

/// Adyen signs inside the body; no header is needed to map.
pub(crate) const HEADERS: &[&str] = &[];

/// The body the ingest answers Adyen with: Adyen retries anything else.
pub const ACCEPTED_BODY: &str = "[accepted]";

const PROVIDER: &str = "adyen";
/// Where the signature lives, for error messages.
const SIGNATURE_FIELD: &str = "additionalData.hmacSignature";
/// Longer joined item keys are hashed into the webhook's event id.
const MAX_EVENT_ID_LEN: usize = 200;

fn hmac_key(secret: &str) -> Result<Vec<u8>, String> {
    let secret = secret.trim();
    if secret.is_empty() {
        return Err("empty Adyen HMAC key".into());
    }
    hex::decode(secret).map_err(|e| format!("the Adyen HMAC key is not hex: {e}"))
}

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::MalformedHeader {
        header: SIGNATURE_FIELD,
        reason: reason.into(),
    }
}

/// The base64 `hmacSignature` of one item's signing string.
pub fn item_signature(key: &[u8], signing_string: &str) -> String {
    BASE64.encode(hmac_sha256(key, &[signing_string.as_bytes()]))
}

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let key = hmac_key(&creds.secret).map_err(VerifyError::BadCredentials)?;
    let notification: model::SignedNotification =
        serde_json::from_slice(req.body).map_err(|e| {
            malformed(format!(
                "body is not an Adyen notification: {}",
                crate::json_error_text(&e, None)
            ))
        })?;
    if notification.items.is_empty() {
        return Err(malformed("no notification items"));
    }
    let mut all = true;
    for wrapper in &notification.items {
        let item = &wrapper.item;
        let given = item
            .additional_data
            .as_ref()
            .and_then(|d| d.hmac_signature.as_deref())
            .ok_or(VerifyError::MissingHeader(SIGNATURE_FIELD))?;
        let given = BASE64
            .decode(given.trim())
            .map_err(|_| malformed("hmacSignature is not base64"))?;
        let expected = hmac_sha256(&key, &[item.signing_string().as_bytes()]);
        all &= ct_eq(&expected, &given);
    }
    if all {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let notification: model::Notification = parse_json(req.body)?;
    let items: Vec<&model::Item> = notification.items.iter().map(|w| &w.item).collect();
    let first = items
        .first()
        .ok_or_else(|| MapError::MissingField("notificationItems".into()))?;
    let code = first.code();
    let topic = if items.iter().all(|i| i.code() == code) {
        code
    } else {
        "batch".to_string()
    };
    let event_id = if let [only] = items.as_slice() {
        map::item_event_id(only)
    } else {
        let keys = items
            .iter()
            .map(|i| format!("{}:{}:{}", i.psp(), i.code(), i.success_text()))
            .collect::<Vec<_>>()
            .join(",");
        if keys.len() + "adyen:".len() <= MAX_EVENT_ID_LEN {
            format!("adyen:{keys}")
        } else {
            format!("adyen:sha256:{}", content_hash(keys.as_bytes()))
        }
    };
    // The signature passed: an odd date must not make Adyen retry forever, so it
    // only loses the event time here (the mapping reports it).
    let occurred_at = first
        .event_date
        .as_deref()
        .and_then(|d| parse_time("eventDate", d.trim()).ok());
    Ok(Inbound {
        topic,
        event_id,
        occurred_at,
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let notification: model::Notification = parse_json(input.body)?;
    map::map_notification(ctx, &notification, input.received_at)
}

/// Fills in `additionalData.hmacSignature` of every item with the hex key `secret`
/// and returns the new body (the JSON is re-serialised).
pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let key = hmac_key(secret).map_err(SignError::BadSecret)?;
    let not_a_notification =
        |why: &str| SignError::BadSecret(format!("body is not an Adyen notification: {why}"));
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| not_a_notification(&e.to_string()))?;
    let items = value
        .get_mut("notificationItems")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| not_a_notification("no notificationItems"))?;
    for wrapper in items {
        let item = wrapper
            .get_mut("NotificationRequestItem")
            .ok_or_else(|| not_a_notification("an item without NotificationRequestItem"))?;
        let fields: model::SignedItem =
            serde_json::from_value(item.clone()).map_err(|e| not_a_notification(&e.to_string()))?;
        let signature = item_signature(&key, &fields.signing_string());
        let object = item
            .as_object_mut()
            .ok_or_else(|| not_a_notification("an item is not an object"))?;
        let data = object
            .entry("additionalData")
            .or_insert_with(|| Value::Object(Default::default()));
        if !data.is_object() {
            *data = Value::Object(Default::default());
        }
        if let Some(data) = data.as_object_mut() {
            data.insert("hmacSignature".into(), Value::String(signature));
        }
    }
    let body = serde_json::to_vec(&value).map_err(|e| not_a_notification(&e.to_string()))?;
    Ok(Signed {
        headers: vec![],
        url_token: None,
        body,
    })
}

/// Adyen (standard notifications).
#[derive(Clone, Copy, Debug, Default)]
pub struct Adyen;

impl crate::Provider for Adyen {
    fn name(&self) -> &'static str {
        "adyen"
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("adyen-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "AUTHORISATION",
            body: include_bytes!("fixtures/authorisation_true.json"),
        }
    }

    crate::provider::entry_points!();
}
