//! What crosses the provider boundary: the request the ingest received
//! ([`WebhookRequest`] with its [`Headers`]), the tenant's [`Credentials`], what
//! a verified request says about itself ([`Inbound`]), the stored event the
//! processor maps ([`RawInput`]), what a provider would send ([`Signed`]) and the
//! ingest path it posts to ([`webhook_path`]).

use time::OffsetDateTime;

/// HTTP headers with case-insensitive lookup, in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
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

    /// Appends a header (the name is stored lower case); an earlier value of
    /// the same name stays first for [`Headers::get`].
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

    /// Every header as (lower-case name, value), in arrival order.
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
    /// Credentials made of a secret alone (every provider but PayPal).
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
    /// The request's headers, all of them (before [`Headers::select`]).
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

/// A stored raw event, as the processor hands it to [`crate::ProviderKind::map`].
#[derive(Clone, Copy, Debug)]
pub struct RawInput<'a> {
    /// The provider's topic, as [`Inbound::topic`] recorded it.
    pub topic: &'a str,
    /// The idempotency id, as [`Inbound::event_id`] recorded it.
    pub event_id: &'a str,
    /// The headers the ingest kept ([`crate::ProviderKind::kept_headers`]).
    pub headers: &'a Headers,
    /// The body, byte for byte as received.
    pub body: &'a [u8],
    /// When the ingest received it: the event time of last resort, for payloads
    /// that carry no time of their own.
    pub received_at: OffsetDateTime,
}

/// What a provider would send: headers to add and, for URL-token providers, the
/// token to put in the URL's query (`?token=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signed {
    /// Headers to add to the request (name, value), signature headers included.
    pub headers: Vec<(String, String)>,
    /// The `?token=` value, for the providers that sign nothing; else `None`.
    pub url_token: Option<String>,
    /// The body to send (normally the input unchanged).
    pub body: Vec<u8>,
}

/// The ingest path a provider posts to for `tenant`: `/v1/webhooks/{tenant}/{provider}`,
/// with `?token=` (URL-encoded) for the providers that sign nothing.
pub fn webhook_path(tenant: &str, provider: &str, url_token: Option<&str>) -> String {
    let mut path = format!("/v1/webhooks/{tenant}/{provider}");
    if let Some(token) = url_token {
        path.push('?');
        path.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .finish(),
        );
    }
    path
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
    fn webhook_paths_encode_the_token() {
        assert_eq!(
            webhook_path("acme", "stripe", None),
            "/v1/webhooks/acme/stripe"
        );
        assert_eq!(
            webhook_path("acme", "shippo", Some("a&b c")),
            "/v1/webhooks/acme/shippo?token=a%26b+c"
        );
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = Credentials::new("shh-very-secret");
        assert!(!format!("{c:?}").contains("shh"));
    }
}
