//! `erp`: a feed of unit costs and stock from the merchant's ERP or inventory
//! system, for the SKUs the stores sell. It is storefold's own contract, not a
//! third party's webhook: the ERP (or `storefold erp load`, or any script
//! holding the tenant's ERP secret) posts a file of JSON lines to
//! `/v1/webhooks/{tenant}/erp`, which is verified by the ingest, kept in
//! `raw.erp` and folded in order with the orders it costs.
//!
//! Body: one JSON object per line (blank lines are skipped), each one SKU's
//! state from a time on; see `map.rs` for the fields. Every line becomes one
//! `InventoryUpdated`. A line that cannot be read refuses the whole body, with
//! an error naming its line number and field (the body then goes to the
//! dead-letter topic with that reason; nothing of it is folded).
//!
//! Signature: storefold's own scheme, as the operator's commands have it, but
//! without a topic: `X-Storefold-Signature: sha256=<hex>`, the HMAC-SHA256
//! keyed with the tenant's ERP secret of `<timestamp>\n<body>`, where
//! `<timestamp>` is `X-Storefold-Timestamp` (Unix seconds, exactly as sent),
//! within [`TOLERANCE_SECS`] of the check either way.
//!
//! Idempotency: the request's id is `erp:<SHA-256 of the body>`, so the same
//! file posted again is a duplicate the processor skips; line `n` (counted
//! from 1, blank lines included) becomes the event `erp:<hash>#<n>`,
//! deterministic and distinct within the body.

use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapError, SignError, Signed, VerifyError, WebhookRequest,
    signing_secret, storefold_signature, verify_storefold_hmac, verifying_secret,
};

mod map;
#[cfg(test)]
mod tests;

pub(crate) use map::map;

pub(crate) const PROVIDER: &str = "erp";

/// The one topic of the feed: every body is a file of inventory lines.
pub const TOPIC: &str = "inventory";
/// The signature header: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = crate::STOREFOLD_SIGNATURE_HEADER;
/// The signed Unix time, in seconds.
pub const TIMESTAMP_HEADER: &str = crate::STOREFOLD_TIMESTAMP_HEADER;
/// How far the signed timestamp may be from the time of the check, either way.
pub const TOLERANCE_SECS: i64 = crate::STOREFOLD_TOLERANCE_SECS;

const SECRET_IS_EMPTY: &str = "empty ERP secret";

/// The signed time is kept; the signature is not (the raw event records the
/// verification).
pub(crate) const HEADERS: &[&str] = &["x-storefold-timestamp"];

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    verify_storefold_hmac(secret, req, &[], now)
}

/// The request's idempotency id: `erp:` and the SHA-256 of the exact body.
pub fn body_id(body: &[u8]) -> String {
    format!("{PROVIDER}:{}", content_hash(body))
}

/// Topic `inventory`; id [`body_id`]. The lines are read by `map`: a body
/// whose line cannot be read is stored and goes to the dead-letter topic
/// with the line's number and field.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    Ok(Inbound {
        topic: TOPIC.to_string(),
        event_id: body_id(req.body),
        occurred_at: None,
    })
}

/// The `X-Storefold-Signature` value for `body` signed at Unix time
/// `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    storefold_signature(secret, timestamp, &[], body)
}

/// The headers an ERP feed is sent with; the topic is always `inventory`
/// (any `topic` given is not sent: nothing else could be meant).
pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
    let t = now.unix_timestamp();
    Ok(Signed {
        headers: vec![
            (
                SIGNATURE_HEADER.to_string(),
                signature_header(secret, t, body),
            ),
            (TIMESTAMP_HEADER.to_string(), t.to_string()),
        ],
        url_token: None,
        body: body.to_vec(),
    })
}

/// The merchant's ERP: unit costs and stock per SKU, as JSON lines signed
/// with the tenant's ERP secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct Erp;

impl crate::Provider for Erp {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("storefold-erp-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: TOPIC,
            body: include_bytes!("fixtures/inventory.jsonl"),
        }
    }

    crate::provider::entry_points!();
}
