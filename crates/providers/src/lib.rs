//! storefold-providers: verify every provider's webhook over its exact raw bytes and
//! map it to canonical events.
//!
//! Pure code: no I/O and no clock. The time a timestamped scheme is checked against
//! is an argument. One directory per provider, each with the same four entry points
//! (see [`ProviderKind`]): `verify` (signature over the raw bytes; nothing is parsed
//! before it passed), `describe` (topic and idempotency id, after verification),
//! `map` (payload to canonical events) and `sign` (what the provider would send,
//! for `storefold webhook send` and tests).
//!
//! ```
//! use storefold_providers::{Headers, ProviderKind};
//! assert_eq!("stripe".parse::<ProviderKind>().unwrap(), ProviderKind::Stripe);
//! let h = Headers::from_pairs([("X-Shopify-Topic", "orders/create")]);
//! assert_eq!(h.get("x-shopify-topic"), Some("orders/create"));
//! ```

use std::fmt;
use std::str::FromStr;

use storefold_core::{Envelope, MoneyError};
use time::OffsetDateTime;

mod common;
mod helpdesk;
mod serde_util;
#[cfg(test)]
mod test_support;
mod tracking;

pub mod adyen;
pub mod aftership;
pub mod collect;
pub mod easypost;
pub mod gorgias;
pub mod paypal;
pub mod shippo;
pub mod shopify;
pub mod stripe;
pub mod woocommerce;
pub mod zendesk;

pub use common::*;

/// Every provider storefold reads, plus `collect` (the shop's own site).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderKind {
    Shopify,
    WooCommerce,
    Stripe,
    Adyen,
    Paypal,
    Aftership,
    Easypost,
    Shippo,
    Zendesk,
    Gorgias,
    /// Browser touches posted to `/v1/collect/{tenant}` (unsigned; CORS + rate limit).
    Collect,
}

impl ProviderKind {
    /// The providers that send webhooks to `/v1/webhooks/{tenant}/{provider}`.
    pub const WEBHOOK: [ProviderKind; 10] = [
        ProviderKind::Shopify,
        ProviderKind::WooCommerce,
        ProviderKind::Stripe,
        ProviderKind::Adyen,
        ProviderKind::Paypal,
        ProviderKind::Aftership,
        ProviderKind::Easypost,
        ProviderKind::Shippo,
        ProviderKind::Zendesk,
        ProviderKind::Gorgias,
    ];

    /// The name used in URLs, topics and configuration.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Shopify => "shopify",
            ProviderKind::WooCommerce => "woocommerce",
            ProviderKind::Stripe => "stripe",
            ProviderKind::Adyen => "adyen",
            ProviderKind::Paypal => "paypal",
            ProviderKind::Aftership => "aftership",
            ProviderKind::Easypost => "easypost",
            ProviderKind::Shippo => "shippo",
            ProviderKind::Zendesk => "zendesk",
            ProviderKind::Gorgias => "gorgias",
            ProviderKind::Collect => "collect",
        }
    }

    /// The verification scheme recorded with a verified raw event; `None` for
    /// `collect`, which is unsigned.
    pub fn scheme(self) -> Option<&'static str> {
        Some(match self {
            ProviderKind::Shopify => "shopify-hmac-sha256",
            ProviderKind::WooCommerce => "woocommerce-hmac-sha256",
            ProviderKind::Stripe => "stripe-v1",
            ProviderKind::Adyen => "adyen-hmac-sha256",
            ProviderKind::Paypal => "paypal-sha256withrsa",
            ProviderKind::Aftership => "aftership-hmac-sha256",
            ProviderKind::Easypost => "easypost-hmac-sha256-hex",
            ProviderKind::Shippo => "url-token",
            ProviderKind::Zendesk => "zendesk-hmac-sha256",
            ProviderKind::Gorgias => "url-token",
            ProviderKind::Collect => return None,
        })
    }

    /// Headers (lower case) worth keeping in the raw event for mapping later.
    pub fn kept_headers(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Shopify => shopify::HEADERS,
            ProviderKind::WooCommerce => woocommerce::HEADERS,
            ProviderKind::Stripe => stripe::HEADERS,
            ProviderKind::Adyen => adyen::HEADERS,
            ProviderKind::Paypal => paypal::HEADERS,
            ProviderKind::Aftership => aftership::HEADERS,
            ProviderKind::Easypost => easypost::HEADERS,
            ProviderKind::Shippo => shippo::HEADERS,
            ProviderKind::Zendesk => zendesk::HEADERS,
            ProviderKind::Gorgias => gorgias::HEADERS,
            ProviderKind::Collect => collect::HEADERS,
        }
    }

    /// Checks the request's signature over its exact bytes with the tenant's
    /// credentials. `now` is the verifier's current time for timestamped schemes.
    pub fn verify(
        self,
        creds: &Credentials,
        req: &WebhookRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        match self {
            ProviderKind::Shopify => shopify::verify(creds, req, now),
            ProviderKind::WooCommerce => woocommerce::verify(creds, req, now),
            ProviderKind::Stripe => stripe::verify(creds, req, now),
            ProviderKind::Adyen => adyen::verify(creds, req, now),
            ProviderKind::Paypal => paypal::verify(creds, req, now),
            ProviderKind::Aftership => aftership::verify(creds, req, now),
            ProviderKind::Easypost => easypost::verify(creds, req, now),
            ProviderKind::Shippo => shippo::verify(creds, req, now),
            ProviderKind::Zendesk => zendesk::verify(creds, req, now),
            ProviderKind::Gorgias => gorgias::verify(creds, req, now),
            ProviderKind::Collect => collect::verify(creds, req, now),
        }
    }

    /// Topic and idempotency id of a verified request. Call only after [`verify`].
    ///
    /// [`verify`]: ProviderKind::verify
    pub fn describe(self, req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
        match self {
            ProviderKind::Shopify => shopify::describe(req),
            ProviderKind::WooCommerce => woocommerce::describe(req),
            ProviderKind::Stripe => stripe::describe(req),
            ProviderKind::Adyen => adyen::describe(req),
            ProviderKind::Paypal => paypal::describe(req),
            ProviderKind::Aftership => aftership::describe(req),
            ProviderKind::Easypost => easypost::describe(req),
            ProviderKind::Shippo => shippo::describe(req),
            ProviderKind::Zendesk => zendesk::describe(req),
            ProviderKind::Gorgias => gorgias::describe(req),
            ProviderKind::Collect => collect::describe(req),
        }
    }

    /// Whether a described request only checks that the URL answers
    /// (WooCommerce's creation ping): it is answered and not stored.
    pub fn is_handshake(self, inbound: &Inbound) -> bool {
        self == ProviderKind::WooCommerce && inbound.topic == woocommerce::PING_TOPIC
    }

    /// Maps a verified payload to canonical events.
    pub fn map(
        self,
        ctx: &MapContext<'_>,
        input: &RawInput<'_>,
    ) -> Result<Vec<Envelope>, MapError> {
        match self {
            ProviderKind::Shopify => shopify::map(ctx, input),
            ProviderKind::WooCommerce => woocommerce::map(ctx, input),
            ProviderKind::Stripe => stripe::map(ctx, input),
            ProviderKind::Adyen => adyen::map(ctx, input),
            ProviderKind::Paypal => paypal::map(ctx, input),
            ProviderKind::Aftership => aftership::map(ctx, input),
            ProviderKind::Easypost => easypost::map(ctx, input),
            ProviderKind::Shippo => shippo::map(ctx, input),
            ProviderKind::Zendesk => zendesk::map(ctx, input),
            ProviderKind::Gorgias => gorgias::map(ctx, input),
            ProviderKind::Collect => collect::map(ctx, input),
        }
    }

    /// Signs `body` exactly as the provider would send it, returning the headers
    /// (and URL token) a request needs. `secret` is what [`Credentials::secret`]
    /// holds for HMAC schemes and tokens; for PayPal it is the private key PEM.
    pub fn sign(
        self,
        secret: &str,
        topic: &str,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Signed, SignError> {
        match self {
            ProviderKind::Shopify => shopify::sign(secret, topic, body, now),
            ProviderKind::WooCommerce => woocommerce::sign(secret, topic, body, now),
            ProviderKind::Stripe => stripe::sign(secret, topic, body, now),
            ProviderKind::Adyen => adyen::sign(secret, topic, body, now),
            ProviderKind::Paypal => paypal::sign(secret, topic, body, now),
            ProviderKind::Aftership => aftership::sign(secret, topic, body, now),
            ProviderKind::Easypost => easypost::sign(secret, topic, body, now),
            ProviderKind::Shippo => shippo::sign(secret, topic, body, now),
            ProviderKind::Zendesk => zendesk::sign(secret, topic, body, now),
            ProviderKind::Gorgias => gorgias::sign(secret, topic, body, now),
            ProviderKind::Collect => collect::sign(secret, topic, body, now),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown provider name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown provider {0:?}; known: shopify woocommerce stripe adyen paypal aftership easypost shippo zendesk gorgias collect"
)]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = match s {
            "shopify" => ProviderKind::Shopify,
            "woocommerce" => ProviderKind::WooCommerce,
            "stripe" => ProviderKind::Stripe,
            "adyen" => ProviderKind::Adyen,
            "paypal" => ProviderKind::Paypal,
            "aftership" => ProviderKind::Aftership,
            "easypost" => ProviderKind::Easypost,
            "shippo" => ProviderKind::Shippo,
            "zendesk" => ProviderKind::Zendesk,
            "gorgias" => ProviderKind::Gorgias,
            "collect" => ProviderKind::Collect,
            other => return Err(UnknownProvider(other.to_string())),
        };
        Ok(kind)
    }
}

/// Why a signature check failed. Every variant is a 401 at the ingest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature header {0}")]
    MissingHeader(&'static str),
    #[error("malformed signature header {header}: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: String,
    },
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp outside the {tolerance_secs}s tolerance")]
    Expired { tolerance_secs: i64 },
    #[error("missing or wrong URL token")]
    BadToken,
    /// The configured credentials cannot be used (bad hex key, bad certificate).
    #[error("unusable credentials: {0}")]
    BadCredentials(String),
}

impl VerifyError {
    /// A short machine-readable code for metrics and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedHeader { .. } => "malformed_signature",
            VerifyError::Mismatch => "signature_mismatch",
            VerifyError::Expired { .. } => "signature_expired",
            VerifyError::BadToken => "bad_token",
            VerifyError::BadCredentials(_) => "unusable_credentials",
        }
    }
}

/// Why a verified payload could not be read or mapped. A 400 at the ingest
/// (for [`describe`](ProviderKind::describe)), a dead letter at the processor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("missing field {0}")]
    MissingField(String),
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("unsupported topic {0:?}")]
    UnsupportedTopic(String),
    #[error("money: {}", common::money_reason(.0))]
    Money(#[from] MoneyError),
}

impl MapError {
    /// A short machine-readable code for metrics and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            MapError::Json(_) => "malformed_json",
            MapError::MissingField(_) => "missing_field",
            MapError::InvalidField { .. } => "invalid_field",
            MapError::MissingHeader(_) => "missing_header",
            MapError::UnsupportedTopic(_) => "unsupported_topic",
            MapError::Money(_) => "invalid_money",
        }
    }
}

/// Why a payload could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("unusable signing secret: {0}")]
    BadSecret(String),
    #[error("{0} does not sign its requests with a shared secret")]
    NotSigned(&'static str),
}
