//! Types and helpers every provider shares.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use storefold_core::Money;
use storefold_core::money::Currency;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::MapError;

/// HTTP headers with case-insensitive lookup, in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds from name/value pairs; names are stored lower case.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_string()))
                .collect(),
        )
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Only the headers named in `keep` (lower case), e.g. [`crate::ProviderKind::kept_headers`].
    pub fn select(&self, keep: &[&str]) -> Headers {
        Headers(
            self.0
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .cloned()
                .collect(),
        )
    }
}

/// A tenant's credentials for one provider.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The HMAC secret (Shopify, WooCommerce, Stripe `whsec_...`, AfterShip,
    /// EasyPost, Zendesk), the hex HMAC key (Adyen), the URL token (Shippo,
    /// Gorgias), or the pinned certificate PEM (PayPal).
    pub secret: String,
    /// PayPal's webhook id, part of its signed string.
    pub webhook_id: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        f.debug_struct("Credentials")
            .field("secret", &"<redacted>")
            .field("webhook_id", &self.webhook_id)
            .finish()
    }
}

impl Credentials {
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            webhook_id: None,
        }
    }
}

/// An incoming webhook as the ingest saw it.
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    pub headers: &'a Headers,
    /// The exact body bytes, as received.
    pub body: &'a [u8],
    /// `token` query parameter of the URL, for providers that sign nothing.
    pub url_token: Option<&'a str>,
}

/// What the ingest learns from a verified request before storing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// The provider's topic / event type (`orders/create`, `charge.refunded`).
    pub topic: String,
    /// The provider's idempotency id, else a hash of the content.
    pub event_id: String,
    /// When the provider says the event happened, if it says.
    pub occurred_at: Option<OffsetDateTime>,
}

/// Tenant-level mapping options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapOptions {
    /// Stripe/PayPal metadata key holding the store's order id (`order_id`).
    pub order_metadata_key: String,
    /// Store whose orders metadata order ids refer to (`shopify`), for namespacing.
    pub default_store: String,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            order_metadata_key: "order_id".into(),
            default_store: "shopify".into(),
        }
    }
}

/// Context of one mapping call.
#[derive(Clone, Copy, Debug)]
pub struct MapContext<'a> {
    pub tenant: &'a str,
    pub options: &'a MapOptions,
}

/// A stored raw event, as the processor hands it to [`crate::ProviderKind::map`].
#[derive(Clone, Copy, Debug)]
pub struct RawInput<'a> {
    pub topic: &'a str,
    pub event_id: &'a str,
    pub headers: &'a Headers,
    pub body: &'a [u8],
    /// When the ingest received it: the event time of last resort, for payloads
    /// that carry no time of their own.
    pub received_at: OffsetDateTime,
}

/// What a provider would send: headers to add and, for URL-token providers, the
/// token to put in the URL's query (`?token=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub url_token: Option<String>,
    /// The body to send (normally the input unchanged).
    pub body: Vec<u8>,
}

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

/// Parses a JSON body into `T`, naming the failing field in the error.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, MapError> {
    serde_json::from_slice(body).map_err(|e| MapError::Json(e.to_string()))
}

/// Parses RFC 3339 (also `2024-01-01 10:00:00 +0000`-free forms are refused).
pub fn parse_time(field: &str, s: &str) -> Result<OffsetDateTime, MapError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

/// Unix seconds to a timestamp.
pub fn from_unix(field: &str, secs: i64) -> Result<OffsetDateTime, MapError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

/// A decimal money string in a currency code, naming the field on error.
pub fn money(field: &str, amount: &str, currency: &str) -> Result<Money, MapError> {
    let c = currency_of(field, currency)?;
    Money::parse(amount, c).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

/// Minor units (Stripe, Adyen) in a currency code.
pub fn money_minor(field: &str, minor: i64, currency: &str) -> Result<Money, MapError> {
    Ok(Money::new(minor, currency_of(field, currency)?))
}

/// A currency code, naming the field on error.
pub fn currency_of(field: &str, code: &str) -> Result<Currency, MapError> {
    Currency::from_code(code).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

/// `Some(s)` for a non-empty trimmed string.
pub fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive() {
        let mut h = Headers::from_pairs([("X-A", "1")]);
        h.insert("x-B", "2");
        assert_eq!(h.get("x-a"), Some("1"));
        assert_eq!(h.get("X-B"), Some("2"));
        assert_eq!(h.select(&["x-b"]).iter().count(), 1);
    }

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

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials::new("shh-very-secret");
        assert!(!format!("{c:?}").contains("shh"));
    }
}
