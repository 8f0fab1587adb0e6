//! storefold-providers: verify every provider's webhook over its exact raw bytes and
//! map it to canonical events.
//!
//! Pure code: no I/O and no clock. The time a timestamped scheme is checked against
//! is an argument. One directory per provider, each with a unit struct
//! implementing [`Provider`]: `verify` (signature over the raw bytes; nothing is
//! parsed before it passed), `describe` (topic and idempotency id, after
//! verification), `map` (payload to canonical events) and `sign` (what the
//! provider would send, for `storefold webhook send` and tests). One list,
//! `providers!` below, registers them: [`ProviderKind`], its `FromStr`, its
//! names and everything the other crates list per provider derive from it.
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
#[cfg(test)]
mod fixture_snapshots;
mod helpdesk;
mod provider;
mod serde_util;
#[cfg(test)]
mod test_support;
mod tracking;

pub use common::*;
use provider::providers;
pub use provider::{Example, Provider};

// The registry: one line per provider, `Variant => module::UnitStruct`. It
// declares `pub mod module;` (the directory `src/module/`) and generates
// `ProviderKind` with its dispatch to the unit struct's `Provider` impl.
//
// Adding a provider:
// 1. `src/<name>/mod.rs` with a unit struct implementing [`Provider`] (and its
//    `model.rs`/`map.rs` as needed), fixtures in `src/<name>/fixtures/` and
//    tests in `src/<name>/tests.rs` built on `test_support::Harness`;
// 2. one line below;
// 3. `INSTA_UPDATE=always cargo test -p storefold-providers fixture_snapshots`,
//    then review the new files in `src/snapshots/` against the fixtures;
// 4. `tests/robustness.rs` fails (`every_provider_has_a_sample`) until the
//    provider has a sample and a line in its `robustness!` list. testkit's
//    samples derive from `Provider::example` and a generic test secret (a
//    scheme whose key has a special form, like Adyen's hex, gets an arm in
//    `samples::verify_secret`).
providers! {
    Shopify => shopify::Shopify,
    WooCommerce => woocommerce::WooCommerce,
    Stripe => stripe::Stripe,
    Adyen => adyen::Adyen,
    Paypal => paypal::Paypal,
    Aftership => aftership::Aftership,
    Easypost => easypost::Easypost,
    Shippo => shippo::Shippo,
    Zendesk => zendesk::Zendesk,
    Gorgias => gorgias::Gorgias,
    /// storefold's own signed operator commands (`customer/erase`, `identity/*`).
    Operator => operator::Operator,
    /// The merchant's ERP: unit costs and stock per SKU, signed JSON lines.
    Erp => erp::Erp,
    /// Payment providers' settlement reports (Stripe, Adyen), signed CSV.
    Settlement => settlement::Settlement,
    /// Browser touches posted to `/v1/collect/{tenant}` (unsigned; CORS + rate limit).
    Collect => collect::Collect,
}

/// How many registered providers post webhooks (all but `collect`).
const WEBHOOK_COUNT: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < ProviderKind::ALL.len() {
        if ProviderKind::ALL[i].is_webhook() {
            n += 1;
        }
        i += 1;
    }
    n
};

impl ProviderKind {
    /// The providers that send webhooks to `/v1/webhooks/{tenant}/{provider}`:
    /// every registered provider but `collect`, in registration order.
    pub const WEBHOOK: [ProviderKind; WEBHOOK_COUNT] = {
        let mut out = [ProviderKind::Collect; WEBHOOK_COUNT];
        let (mut i, mut n) = (0, 0);
        while i < ProviderKind::ALL.len() {
            if ProviderKind::ALL[i].is_webhook() {
                out[n] = ProviderKind::ALL[i];
                n += 1;
            }
            i += 1;
        }
        out
    };

    /// Whether this provider posts to `/v1/webhooks/{tenant}/{provider}`; only
    /// `collect` does not (the ingest gives browsers their own endpoint).
    pub const fn is_webhook(self) -> bool {
        !matches!(self, ProviderKind::Collect)
    }

    /// The name used in URLs, topics and configuration.
    pub fn name(self) -> &'static str {
        self.provider().name()
    }

    /// The names of `kinds`, space separated (for messages and help).
    pub fn names(kinds: &[ProviderKind]) -> String {
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(" ")
    }

    /// The verification scheme recorded with a verified raw event; `None` for
    /// `collect`, which is unsigned.
    pub fn scheme(self) -> Option<&'static str> {
        self.provider().scheme()
    }

    /// Headers (lower case) worth keeping in the raw event for mapping later.
    pub fn kept_headers(self) -> &'static [&'static str] {
        self.provider().kept_headers()
    }

    /// A representative webhook of this provider, from its fixtures.
    pub fn example(self) -> Example {
        self.provider().example()
    }

    /// The header the provider sends its topic in, when the topic is not in the
    /// body (the stores).
    pub fn topic_header(self) -> Option<&'static str> {
        self.provider().topic_header()
    }

    /// Checks the request's signature over its exact bytes with the tenant's
    /// credentials. `now` is the verifier's current time for timestamped schemes.
    pub fn verify(
        self,
        creds: &Credentials,
        req: &WebhookRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<(), VerifyError> {
        self.provider().verify(creds, req, now)
    }

    /// Topic and idempotency id of a verified request. Call only after [`verify`].
    ///
    /// [`verify`]: ProviderKind::verify
    pub fn describe(self, req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
        self.provider().describe(req)
    }

    /// Whether a described request only checks that the URL answers
    /// (WooCommerce's creation ping): it is answered and not stored.
    pub fn is_handshake(self, inbound: &Inbound) -> bool {
        self.provider().is_handshake(inbound)
    }

    /// Maps a verified payload to canonical events.
    pub fn map(
        self,
        ctx: &MapContext<'_>,
        input: &RawInput<'_>,
    ) -> Result<Vec<Envelope>, MapError> {
        self.provider().map(ctx, input)
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
        self.provider().sign(secret, topic, body, now)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown provider name; its message lists the registered ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}; known: {known}", known = ProviderKind::names(ProviderKind::ALL))]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderKind {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownProvider(s.to_string()))
    }
}

/// Why a signature check failed. Every variant is a 401 at the ingest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The scheme's signature (or timestamp) header is absent or blank.
    #[error("missing signature header {0}")]
    MissingHeader(&'static str),
    /// The header is there but cannot be read (not base64, wrong length,
    /// unknown format).
    #[error("malformed signature header {header}: {reason}")]
    MalformedHeader {
        /// The header's name (`email_token` for a beacon's identity token).
        header: &'static str,
        /// What is wrong with it (never the secret).
        reason: String,
    },
    /// The signature is well formed but is not the one the secret gives.
    #[error("signature does not match")]
    Mismatch,
    /// The signed timestamp is too far from the time of the check (replay guard).
    #[error("timestamp outside the {tolerance_secs}s tolerance")]
    Expired {
        /// How far either way the timestamp may be, in seconds.
        tolerance_secs: i64,
    },
    /// A provider that signs nothing came without the tenant's `?token=`, or
    /// with another one.
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
    /// The body does not parse into the provider's model; the text names the
    /// place and never a value ([`json_error_text`]).
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// A field the mapping needs is absent (its path).
    #[error("missing field {0}")]
    MissingField(String),
    /// A field is there but unusable.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field's path.
        field: String,
        /// Why it cannot be used (never its value).
        reason: String,
    },
    /// A header the mapping needs (the topic, for instance) is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The provider's topic is not one storefold maps.
    #[error("unsupported topic {0:?}")]
    UnsupportedTopic(String),
    /// An amount or currency that is not valid money (shown without the amount).
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
    /// The secret cannot sign (empty, or not in the form the scheme needs).
    #[error("unusable signing secret: {0}")]
    BadSecret(String),
    /// The provider (named) has nothing to sign with: `collect`.
    #[error("{0} does not sign its requests with a shared secret")]
    NotSigned(&'static str),
}
