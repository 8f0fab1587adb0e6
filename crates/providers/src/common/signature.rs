//! Signature checks and signing shared by the providers: HMAC-SHA256 and
//! constant-time comparison, the checks of a base64 HMAC header, the secrets a
//! scheme needs, and the whole `verify`/`sign` of the providers that sign
//! nothing (a token in the URL).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::{Credentials, SignError, Signed, VerifyError, WebhookRequest};

/// HMAC-SHA256 of `data` with `key`.
pub fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    for d in data {
        mac.update(d);
    }
    mac.finalize().into_bytes().to_vec()
}

// HMAC accepts keys of any length; this is never reached.
fn unreachable_hmac() -> hmac::Hmac<Sha256> {
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(b"").expect("hmac takes any key length")
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The tenant's shared secret for verifying, or [`VerifyError::BadCredentials`]
/// with `empty_message` when none is configured.
pub(crate) fn verifying_secret<'a>(
    creds: &'a Credentials,
    empty_message: &str,
) -> Result<&'a str, VerifyError> {
    if creds.secret.is_empty() {
        return Err(VerifyError::BadCredentials(empty_message.to_string()));
    }
    Ok(&creds.secret)
}

/// `secret` for signing, or [`SignError::BadSecret`] with `empty_message` when it
/// is empty.
pub(crate) fn signing_secret<'a>(
    secret: &'a str,
    empty_message: &str,
) -> Result<&'a str, SignError> {
    if secret.is_empty() {
        return Err(SignError::BadSecret(empty_message.to_string()));
    }
    Ok(secret)
}

/// The value of a header the request must carry, else
/// [`VerifyError::MissingHeader`].
pub(crate) fn required_header<'a>(
    req: &WebhookRequest<'a>,
    name: &'static str,
) -> Result<&'a str, VerifyError> {
    req.headers
        .get(name)
        .ok_or(VerifyError::MissingHeader(name))
}

/// Ok when `given` is the HMAC-SHA256 of `signed_parts` keyed with `key`
/// (compared in constant time), else [`VerifyError::Mismatch`].
pub(crate) fn check_hmac_sha256(
    key: &[u8],
    signed_parts: &[&[u8]],
    given: &[u8],
) -> Result<(), VerifyError> {
    if ct_eq(&hmac_sha256(key, signed_parts), given) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Checks a header holding the base64 HMAC-SHA256 of `signed_parts` keyed with
/// `key` (Shopify, WooCommerce). `header_value` is the header as received (`None`
/// when absent); a missing or blank one is [`VerifyError::MissingHeader`], one that
/// is not base64 of exactly 32 bytes is [`VerifyError::MalformedHeader`], and the
/// comparison is constant-time ([`ct_eq`]).
pub(crate) fn verify_base64_hmac(
    header_name: &'static str,
    header_value: Option<&str>,
    key: &[u8],
    signed_parts: &[&[u8]],
) -> Result<(), VerifyError> {
    let header = header_value
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(VerifyError::MissingHeader(header_name))?;
    let given = BASE64
        .decode(header)
        .map_err(|e| VerifyError::MalformedHeader {
            header: header_name,
            reason: format!("not base64: {e}"),
        })?;
    if given.len() != 32 {
        return Err(VerifyError::MalformedHeader {
            header: header_name,
            reason: format!("expected 32 bytes of HMAC-SHA256, got {}", given.len()),
        });
    }
    check_hmac_sha256(key, signed_parts, &given)
}

/// Decodes a base64 signature header value (trimmed), naming the header on error.
pub(crate) fn base64_signature(
    header_name: &'static str,
    value: &str,
) -> Result<Vec<u8>, VerifyError> {
    BASE64
        .decode(value.trim())
        .map_err(|e| VerifyError::MalformedHeader {
            header: header_name,
            reason: e.to_string(),
        })
}

/// `verify` of the providers that sign nothing (Shippo, Gorgias): the request's
/// `?token=` must equal [`Credentials::secret`], compared in constant time.
pub(crate) fn verify_url_token(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, "empty URL token")?;
    match req.url_token {
        Some(token) if ct_eq(token.as_bytes(), secret.as_bytes()) => Ok(()),
        _ => Err(VerifyError::BadToken),
    }
}

/// `sign` of the providers that sign nothing (Shippo, Gorgias): no headers, the
/// token in the URL.
pub(crate) fn sign_url_token(
    secret: &str,
    _topic: &str,
    body: &[u8],
    _now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, "empty URL token")?;
    Ok(Signed {
        headers: Vec::new(),
        url_token: Some(secret.to_string()),
        body: body.to_vec(),
    })
}

/// The signature header of storefold's own scheme (operator commands, ERP
/// feeds): `sha256=<hex>`.
pub const STOREFOLD_SIGNATURE_HEADER: &str = "X-Storefold-Signature";
/// The signed Unix time of storefold's own scheme, in seconds.
pub const STOREFOLD_TIMESTAMP_HEADER: &str = "X-Storefold-Timestamp";
/// How far the signed time of storefold's own scheme may be from the time of
/// the check, either way (Stripe's replay window).
pub const STOREFOLD_TOLERANCE_SECS: i64 = 300;

fn malformed(header: &'static str, reason: &str) -> VerifyError {
    VerifyError::MalformedHeader {
        header,
        reason: reason.to_string(),
    }
}

/// The string storefold's own scheme signs: the timestamp as sent, a newline,
/// `context` (what else the provider signs, e.g. the operator's topic and a
/// newline; empty for none) and the exact body.
fn storefold_signed_parts<'a>(
    timestamp: &'a str,
    context: &'a [&'a [u8]],
    body: &'a [u8],
) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(context.len() + 3);
    parts.push(timestamp.as_bytes());
    parts.push(b"\n".as_slice());
    parts.extend_from_slice(context);
    parts.push(body);
    parts
}

/// `verify` of storefold's own scheme: `X-Storefold-Signature: sha256=<hex>`,
/// the HMAC-SHA256 keyed with `secret` of `<X-Storefold-Timestamp>\n`,
/// `context` and the body; the timestamp within
/// [`STOREFOLD_TOLERANCE_SECS`] of `now` either way. The time is checked after
/// the signature, as Stripe's check does: only a genuine but stale request is
/// told it expired.
pub(crate) fn verify_storefold_hmac(
    secret: &str,
    req: &WebhookRequest<'_>,
    context: &[&[u8]],
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let signature = required_header(req, STOREFOLD_SIGNATURE_HEADER)?.trim();
    let timestamp = required_header(req, STOREFOLD_TIMESTAMP_HEADER)?.trim();
    if signature.is_empty() {
        return Err(VerifyError::MissingHeader(STOREFOLD_SIGNATURE_HEADER));
    }
    if timestamp.is_empty() {
        return Err(VerifyError::MissingHeader(STOREFOLD_TIMESTAMP_HEADER));
    }
    let hex_sig = signature
        .strip_prefix("sha256=")
        .ok_or_else(|| malformed(STOREFOLD_SIGNATURE_HEADER, "expected sha256=<hex>"))?;
    let given =
        hex::decode(hex_sig).map_err(|_| malformed(STOREFOLD_SIGNATURE_HEADER, "not hex"))?;
    if given.len() != 32 {
        return Err(malformed(
            STOREFOLD_SIGNATURE_HEADER,
            "expected 32 bytes of HMAC-SHA256",
        ));
    }
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            STOREFOLD_TIMESTAMP_HEADER,
            "not a Unix time in seconds",
        ));
    }
    let signed_at = timestamp
        .parse::<i64>()
        .map_err(|_| malformed(STOREFOLD_TIMESTAMP_HEADER, "out of range"))?;
    check_hmac_sha256(
        secret.as_bytes(),
        &storefold_signed_parts(timestamp, context, req.body),
        &given,
    )?;
    if now.unix_timestamp().abs_diff(signed_at) > STOREFOLD_TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::Expired {
            tolerance_secs: STOREFOLD_TOLERANCE_SECS,
        });
    }
    Ok(())
}

/// The `X-Storefold-Signature` value of storefold's own scheme for `body`
/// signed at Unix time `timestamp` with `context` (see
/// [`verify_storefold_hmac`]).
pub(crate) fn storefold_signature(
    secret: &str,
    timestamp: i64,
    context: &[&[u8]],
    body: &[u8],
) -> String {
    let t = timestamp.to_string();
    let mac = hmac_sha256(
        secret.as_bytes(),
        &storefold_signed_parts(&t, context, body),
    );
    format!("sha256={}", hex::encode(mac))
}

/// The header naming what a body of storefold's own topic-signed feeds is
/// (an operator command's topic, a settlement report's format).
pub const STOREFOLD_TOPIC_HEADER: &str = "X-Storefold-Topic";

/// `verify` of storefold's scheme for a feed whose topic is signed with the
/// body: the context is `<X-Storefold-Topic>\n`. An absent topic signs as
/// empty; the feed's `describe` refuses it.
pub(crate) fn verify_storefold_topic(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
    empty_secret: &'static str,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, empty_secret)?;
    let topic = req.headers.get(STOREFOLD_TOPIC_HEADER).unwrap_or_default();
    verify_storefold_hmac(secret, req, &[topic.as_bytes(), b"\n"], now)
}

/// The `X-Storefold-Signature` value for `body` sent under `topic` at Unix
/// time `timestamp` (the scheme `verify_storefold_topic` checks).
pub fn storefold_topic_signature(secret: &str, timestamp: i64, topic: &str, body: &[u8]) -> String {
    storefold_signature(secret, timestamp, &[topic.as_bytes(), b"\n"], body)
}

/// `sign` of a topic-signed feed: the signature, the time and the topic.
pub(crate) fn sign_storefold_topic(
    secret: &str,
    topic: &str,
    body: &[u8],
    now: OffsetDateTime,
    empty_secret: &'static str,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, empty_secret)?;
    let t = now.unix_timestamp();
    Ok(Signed {
        headers: vec![
            (
                STOREFOLD_SIGNATURE_HEADER.to_string(),
                storefold_topic_signature(secret, t, topic, body),
            ),
            (STOREFOLD_TIMESTAMP_HEADER.to_string(), t.to_string()),
            (STOREFOLD_TOPIC_HEADER.to_string(), topic.to_string()),
        ],
        url_token: None,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
