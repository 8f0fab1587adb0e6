//! Stripe: `Stripe-Signature` verification, event description and mapping.
//!
//! Stripe signs `"<t>.<body>"` with HMAC-SHA256, keyed with the endpoint's whole
//! signing secret (`whsec_…` as bytes, as Stripe's SDKs do), and sends
//! `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`. While a secret is being
//! rolled, Stripe signs with both and sends several `v1`: any one matching is enough.
//! `v0` (test-mode legacy scheme) and unknown schemes are ignored.

use storefold_core::Envelope;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, ct_eq, from_unix, hmac_sha256, non_empty, parse_json, required_header,
    signing_secret, verifying_secret,
};

mod map;
mod model;

#[cfg(test)]
mod tests;

pub(crate) const HEADERS: &[&str] = &["stripe-signature"];

/// The name payment events carry as their provider.
const PROVIDER: &str = "stripe";
/// The signature header, as Stripe spells it.
const SIGNATURE_HEADER: &str = "Stripe-Signature";
/// How far the signed timestamp may be from `now`, either way (Stripe's SDK default).
pub const TOLERANCE_SECS: i64 = 300;
const SECRET_IS_EMPTY: &str = "empty Stripe endpoint secret";

/// A parsed `Stripe-Signature` header.
#[derive(Debug)]
struct SignatureHeader<'a> {
    /// The timestamp exactly as sent: it is what was signed.
    t_raw: &'a str,
    t: i64,
    v1: Vec<Vec<u8>>,
}

fn malformed(reason: impl Into<String>) -> VerifyError {
    VerifyError::MalformedHeader {
        header: SIGNATURE_HEADER,
        reason: reason.into(),
    }
}

fn parse_header(raw: &str) -> Result<SignatureHeader<'_>, VerifyError> {
    let mut t: Option<(&str, i64)> = None;
    let mut v1 = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| malformed(format!("element without '=': {item:?}")))?;
        match key.trim() {
            "t" => {
                if t.is_some() {
                    return Err(malformed("more than one timestamp"));
                }
                let value = value.trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(malformed("timestamp is not a unix time"));
                }
                let secs = value
                    .parse::<i64>()
                    .map_err(|_| malformed("timestamp is out of range"))?;
                t = Some((value, secs));
            }
            "v1" => {
                let sig =
                    hex::decode(value.trim()).map_err(|_| malformed("v1 signature is not hex"))?;
                if sig.len() != 32 {
                    return Err(malformed("v1 signature is not 32 bytes"));
                }
                v1.push(sig);
            }
            // v0 and schemes Stripe may add later are not ours to check.
            _ => {}
        }
    }
    let (t_raw, t) = t.ok_or_else(|| malformed("no timestamp (t=)"))?;
    if v1.is_empty() {
        return Err(malformed("no v1 signature"));
    }
    Ok(SignatureHeader { t_raw, t, v1 })
}

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    let raw = required_header(req, SIGNATURE_HEADER)?;
    let header = parse_header(raw)?;
    let expected = hmac_sha256(
        secret.as_bytes(),
        &[header.t_raw.as_bytes(), b".", req.body],
    );
    // Compare with every candidate (no early exit) so timing says nothing about
    // which one matched.
    let matched = header
        .v1
        .iter()
        .fold(false, |ok, sig| ct_eq(&expected, sig) | ok);
    if !matched {
        return Err(VerifyError::Mismatch);
    }
    if now.unix_timestamp().abs_diff(header.t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::Expired {
            tolerance_secs: TOLERANCE_SECS,
        });
    }
    Ok(())
}

pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let head: model::EventHead = parse_json(req.body)?;
    let topic =
        non_empty(head.kind.as_deref()).ok_or_else(|| MapError::MissingField("type".into()))?;
    let event_id =
        non_empty(head.id.as_deref()).ok_or_else(|| MapError::MissingField("id".into()))?;
    let occurred_at = head.created.map(|c| from_unix("created", c)).transpose()?;
    Ok(Inbound {
        topic,
        event_id,
        occurred_at,
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let event: model::Event = parse_json(input.body)?;
    map::map_event(ctx, &event)
}

/// The `Stripe-Signature` value for `body` signed at `t` with `secret`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    let t = t.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex::encode(mac))
}

pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
    Ok(Signed {
        headers: vec![(
            SIGNATURE_HEADER.to_string(),
            signature_header(secret, now.unix_timestamp(), body),
        )],
        url_token: None,
        body: body.to_vec(),
    })
}

/// Stripe (charges, refunds, disputes, payment intents).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stripe;

impl crate::Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("stripe-v1")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "charge.succeeded",
            body: include_bytes!("fixtures/charge.succeeded.json"),
        }
    }

    crate::provider::entry_points!();
}
