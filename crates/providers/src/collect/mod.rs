//! Browser touches posted to `/v1/collect/{tenant}` by the shop's own site.
//!
//! Unsigned by design: a browser cannot keep a secret, so there is nothing to
//! verify and its [`verify`](crate::Provider::verify) always passes. The ingest protects the endpoint instead,
//! with CORS (the tenant's allowed origins) and rate limits. The only header kept
//! is `origin`, for auditing which site sent a touch; the user agent is not kept
//! (it fingerprints people and the fold does not need it).
//!
//! Anyone can post a beacon, so a beacon's `email` is a claim, not a fact: it
//! creates or merges customers only when the ingest vouched for it, by storing
//! the beacon with the header [`IDENTITY_HEADER`] (`signed`: the beacon's
//! `email_token` verified with the tenant's key, see [`identity_token`];
//! `opted-in`: the tenant accepts beacon emails as they are). Otherwise the
//! touch is kept under its anonymous id only and an identify says nothing.

use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Headers, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "collect";

pub(crate) const HEADERS: &[&str] = &["origin"];

/// Set by the ingest (never taken from the request) on a stored beacon whose
/// email may be used: [`IDENTITY_SIGNED`] or [`IDENTITY_OPTED_IN`].
pub const IDENTITY_HEADER: &str = "storefold-identity";
/// The beacon's `email_token` verified with the tenant's key.
pub const IDENTITY_SIGNED: &str = "signed";
/// The tenant accepts beacon emails without a token (`collect_identify`).
pub const IDENTITY_OPTED_IN: &str = "opted-in";

/// Whether a stored beacon's email may create or merge customers.
pub fn email_trusted(headers: &Headers) -> bool {
    matches!(
        headers.get(IDENTITY_HEADER),
        Some(IDENTITY_SIGNED | IDENTITY_OPTED_IN)
    )
}

/// What the ingest checks in a beacon before storing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    /// The email, normalised (trimmed, lower case), when it is one.
    pub email: Option<String>,
    /// The beacon's `email_token`, when it carries one (the ingest checks it
    /// with [`verify_identity_token`]).
    pub email_token: Option<String>,
    /// `at`, when given.
    pub at: Option<OffsetDateTime>,
    /// Whether the beacon says anything about a visit (else an email makes it
    /// an identify).
    pub visit: bool,
    /// Whether the beacon carries an `anonymous_id`.
    pub anonymous_id: bool,
}

/// Reads a beacon's claims; an unreadable body or `at` is an error.
pub fn claims(body: &[u8]) -> Result<Claims, MapError> {
    let b: model::Beacon = crate::parse_json(body)?;
    map::identity_of(&b)?;
    let at = match crate::non_empty(b.at.as_deref()) {
        Some(raw) => Some(crate::parse_time("at", &raw)?),
        None => None,
    };
    Ok(Claims {
        email: b
            .email
            .as_deref()
            .and_then(storefold_core::identity::normalize_email),
        email_token: crate::non_empty(b.email_token.as_deref()),
        at,
        visit: map::is_visit(&b),
        anonymous_id: crate::non_empty(b.anonymous_id.as_deref()).is_some(),
    })
}

/// The version prefix of the signed text of an [`identity_token`].
const TOKEN_CONTEXT: &str = "storefold-identity-v1";

/// The `email_token` the shop's backend puts in a beacon so that its email may
/// identify the visitor: `<expires>.<hex>`, where `expires` is a Unix time in
/// seconds and `hex` the HMAC-SHA256, keyed with the tenant's
/// `collect_identity_secret`, of
/// `storefold-identity-v1\n<tenant>\n<email trimmed, lower case>\n<expires>`.
///
/// ```
/// use storefold_providers::collect::{identity_token, verify_identity_token};
/// use time::OffsetDateTime;
/// let token = identity_token("k3y-shared-with-the-shop", "acme", " Ana@Example.com", 1_900_000_000);
/// assert!(token.starts_with("1900000000."));
/// let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
/// assert!(verify_identity_token("k3y-shared-with-the-shop", "acme", "ana@example.com", &token, now).is_ok());
/// assert!(verify_identity_token("k3y-shared-with-the-shop", "globex", "ana@example.com", &token, now).is_err());
/// ```
pub fn identity_token(secret: &str, tenant: &str, email: &str, expires: i64) -> String {
    let mac = crate::hmac_sha256(
        secret.as_bytes(),
        &[token_text(tenant, email, expires).as_bytes()],
    );
    format!("{expires}.{}", hex::encode(mac))
}

fn token_text(tenant: &str, email: &str, expires: i64) -> String {
    format!(
        "{TOKEN_CONTEXT}\n{tenant}\n{}\n{expires}",
        email.trim().to_lowercase()
    )
}

/// Checks an [`identity_token`] for `tenant` and `email` at `now`: malformed,
/// expired or not matching is an error (401 at the ingest).
pub fn verify_identity_token(
    secret: &str,
    tenant: &str,
    email: &str,
    token: &str,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let malformed = |reason: &str| VerifyError::MalformedHeader {
        header: "email_token",
        reason: reason.to_string(),
    };
    if secret.is_empty() {
        return Err(VerifyError::BadToken);
    }
    let (expires, mac) = token
        .trim()
        .split_once('.')
        .ok_or_else(|| malformed("expected <expires>.<hex>"))?;
    let expires: i64 = expires
        .parse()
        .map_err(|_| malformed("the expiry is not a Unix time"))?;
    let given = hex::decode(mac).map_err(|_| malformed("the signature is not hex"))?;
    crate::check_hmac_sha256(
        secret.as_bytes(),
        &[token_text(tenant, email, expires).as_bytes()],
        &given,
    )?;
    if now.unix_timestamp() > expires {
        return Err(VerifyError::Expired { tolerance_secs: 0 });
    }
    Ok(())
}

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

/// The shop's own site: browser touches, unsigned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collect;

impl crate::Provider for Collect {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scheme(&self) -> Option<&'static str> {
        None
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "touch",
            body: include_bytes!("fixtures/touch__landing_utm.json"),
        }
    }

    crate::provider::entry_points!();
}
