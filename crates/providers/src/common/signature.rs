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
