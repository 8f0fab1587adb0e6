//! PayPal: RSA-SHA256 transmission signatures checked against a pinned certificate.
//!
//! PayPal signs `<transmission id>|<transmission time>|<webhook id>|<crc32 of the body>`
//! (the CRC as an unsigned decimal) with RSASSA-PKCS1-v1_5 / SHA-256 and sends the
//! signature base64 in `PAYPAL-TRANSMISSION-SIG`, with `PAYPAL-AUTH-ALGO:
//! SHA256withRSA` and the URL of its certificate in `PAYPAL-CERT-URL`. storefold
//! never fetches that URL (no network here, and a certificate named by the request
//! itself proves nothing): it verifies with the certificate configured for the
//! tenant (`Credentials::secret`, PEM) and the tenant's webhook id
//! (`Credentials::webhook_id`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::Pkcs1v15Sign;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::{Digest, Sha256};
use rsa::{PrivateKey, PublicKey};
use serde::Deserialize;
use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::time::ASN1Time;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, parse_json, parse_time, uuid_from_hash,
};

mod map;
mod model;

#[cfg(test)]
mod tests;

pub(crate) const HEADERS: &[&str] = &[
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
];

const PROVIDER: &str = "paypal";
const TRANSMISSION_ID: &str = "PAYPAL-TRANSMISSION-ID";
const TRANSMISSION_TIME: &str = "PAYPAL-TRANSMISSION-TIME";
const TRANSMISSION_SIG: &str = "PAYPAL-TRANSMISSION-SIG";
const CERT_URL: &str = "PAYPAL-CERT-URL";
const AUTH_ALGO: &str = "PAYPAL-AUTH-ALGO";

/// The only algorithm PayPal signs webhooks with.
pub const ALGORITHM: &str = "SHA256withRSA";
/// How far the transmission time may be from `now`, either way.
pub const TOLERANCE_SECS: i64 = 300;
/// What [`sign`](crate::ProviderKind::sign) puts in `PAYPAL-CERT-URL`: storefold
/// never reads it, so it only has to look like PayPal's.
pub const PLACEHOLDER_CERT_URL: &str =
    "https://paypal.invalid/v1/notifications/certs/CERT-storefold-pinned";

/// The string PayPal signs.
pub fn signed_string(
    transmission_id: &str,
    transmission_time: &str,
    webhook_id: &str,
    body: &[u8],
) -> String {
    format!(
        "{transmission_id}|{transmission_time}|{webhook_id}|{}",
        crc32fast::hash(body)
    )
}

fn malformed(header: &'static str, reason: impl Into<String>) -> VerifyError {
    VerifyError::MalformedHeader {
        header,
        reason: reason.into(),
    }
}

/// The public key of the pinned certificate, which must be valid at `now`.
fn pinned_key(pem: &str, now: OffsetDateTime) -> Result<PublicKey, VerifyError> {
    let bad = |why: String| VerifyError::BadCredentials(format!("PayPal certificate: {why}"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes())
        .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let at = ASN1Time::from_timestamp(now.unix_timestamp()).map_err(|e| bad(e.to_string()))?;
    if !cert.validity().is_valid_at(at) {
        return Err(bad("not valid now (expired or not yet valid)".into()));
    }
    PublicKey::from_public_key_der(cert.public_key().raw)
        .map_err(|e| bad(format!("not an RSA public key: {e}")))
}

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let webhook_id = creds
        .webhook_id
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| VerifyError::BadCredentials("no PayPal webhook id configured".into()))?;
    let key = pinned_key(&creds.secret, now)?;
    let header = |name: &'static str| {
        req.headers
            .get(name)
            .map(str::trim)
            .ok_or(VerifyError::MissingHeader(name))
    };
    let algo = header(AUTH_ALGO)?;
    if !algo.eq_ignore_ascii_case(ALGORITHM) {
        return Err(malformed(
            AUTH_ALGO,
            format!("unsupported algorithm {algo:?}"),
        ));
    }
    let id = header(TRANSMISSION_ID)?;
    if id.is_empty() || id.contains('|') {
        return Err(malformed(TRANSMISSION_ID, "empty or contains '|'"));
    }
    let time_raw = header(TRANSMISSION_TIME)?;
    let sent_at = OffsetDateTime::parse(time_raw, &Rfc3339)
        .map_err(|e| malformed(TRANSMISSION_TIME, e.to_string()))?;
    let signature = BASE64
        .decode(header(TRANSMISSION_SIG)?)
        .map_err(|_| malformed(TRANSMISSION_SIG, "not base64"))?;
    let message = signed_string(id, time_raw, webhook_id, req.body);
    let digest = Sha256::digest(message.as_bytes());
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        .map_err(|_| VerifyError::Mismatch)?;
    if (now - sent_at).whole_seconds().abs() > TOLERANCE_SECS {
        return Err(VerifyError::Expired {
            tolerance_secs: TOLERANCE_SECS,
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct EventHead {
    id: Option<String>,
    event_type: Option<String>,
    create_time: Option<String>,
}

pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let head: EventHead = parse_json(req.body)?;
    let topic = head
        .event_type
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| MapError::MissingField("event_type".into()))?;
    let event_id = head
        .id
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| MapError::MissingField("id".into()))?;
    // The signature passed: an odd time only loses the event time here (the
    // mapping reports it), rather than making PayPal retry for three days.
    let occurred_at = head
        .create_time
        .and_then(|t| parse_time("create_time", t.trim()).ok());
    Ok(Inbound {
        topic,
        event_id,
        occurred_at,
    })
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let event: model::Event = parse_json(input.body)?;
    map::map_event(ctx, &event, input.event_id, input.received_at)
}

/// Reads a private key PEM (PKCS#8, or PKCS#1 `RSA PRIVATE KEY`).
fn private_key(pem: &str) -> Result<PrivateKey, SignError> {
    let pem = pem.trim();
    PrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| PrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| SignError::BadSecret(format!("not an RSA private key PEM: {e}")))
}

/// Signs `body` as PayPal would for the webhook `webhook_id`, at `now`.
///
/// The transmission id is derived from the body and the time, so the same input
/// signs the same way (PKCS#1 v1.5 signatures are deterministic too).
pub fn sign_for_webhook(
    private_key_pem: &str,
    webhook_id: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let key = private_key(private_key_pem)?;
    let webhook_id = webhook_id.trim();
    if webhook_id.is_empty() {
        return Err(SignError::BadSecret("empty PayPal webhook id".into()));
    }
    let now = now.to_offset(time::UtcOffset::UTC);
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let transmission_time = now
        .format(&Rfc3339)
        .map_err(|e| SignError::BadSecret(format!("unformattable time: {e}")))?;
    let mut seed = transmission_time.clone().into_bytes();
    seed.extend_from_slice(body);
    let h = content_hash(&seed);
    let transmission_id = uuid_from_hash(&h);
    let message = signed_string(&transmission_id, &transmission_time, webhook_id, body);
    let digest = Sha256::digest(message.as_bytes());
    // Unblinded signing: this signs test and demo traffic, never on a server.
    let signature = key
        .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
        .map_err(|e| SignError::BadSecret(format!("RSA signing failed: {e}")))?;
    Ok(Signed {
        headers: vec![
            (TRANSMISSION_ID.to_string(), transmission_id),
            (TRANSMISSION_TIME.to_string(), transmission_time),
            (TRANSMISSION_SIG.to_string(), BASE64.encode(signature)),
            (CERT_URL.to_string(), PLACEHOLDER_CERT_URL.to_string()),
            (AUTH_ALGO.to_string(), ALGORITHM.to_string()),
        ],
        url_token: None,
        body: body.to_vec(),
    })
}

/// The webhook id a signing secret names, and the key PEM. PayPal's signed string
/// contains the webhook id, which [`sign`](crate::ProviderKind::sign) has no
/// argument for: the secret carries it as a `webhook_id: <id>` line before the PEM
/// (RFC 7468 allows explanatory text there).
fn split_signing_secret(secret: &str) -> (Option<&str>, &str) {
    let begin = secret.find("-----BEGIN").unwrap_or(0);
    let (preamble, pem) = secret.split_at(begin);
    let webhook_id = preamble.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix("webhook_id")?;
        let rest = rest.trim_start().strip_prefix([':', '='])?;
        Some(rest.trim()).filter(|r| !r.is_empty())
    });
    (webhook_id, pem)
}

pub(crate) fn sign(
    secret: &str,
    _topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let (webhook_id, pem) = split_signing_secret(secret);
    let webhook_id = webhook_id.ok_or_else(|| {
        SignError::BadSecret(
            "PayPal signs with the webhook id: put a `webhook_id: <id>` line before the private key PEM"
                .into(),
        )
    })?;
    sign_for_webhook(pem, webhook_id, body, now)
}

/// PayPal (captures, authorizations, disputes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Paypal;

impl crate::Provider for Paypal {
    fn name(&self) -> &'static str {
        "paypal"
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("paypal-sha256withrsa")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "PAYMENT.CAPTURE.COMPLETED",
            body: include_bytes!("fixtures/payment.capture.completed.json"),
        }
    }

    crate::provider::entry_points!();
}
