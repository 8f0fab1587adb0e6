//! Types and helpers every provider shares.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use storefold_core::event::OrderLink;
use storefold_core::money::Currency;
use storefold_core::{Money, MoneyError};
use subtle::ConstantTimeEq;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

use crate::{MapError, SignError, VerifyError};

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

/// How one tenant's payloads are read: which stores it runs, and how each
/// payment provider names the store order it is paying for. Built from the
/// tenant's configuration (`[tenants.<id>.stores]`, `[tenants.<id>.payments]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapOptions {
    /// The stores the tenant runs (`shopify`, `woocommerce`), first = default:
    /// a bare order id from a payment provider (`727`) names an order of the
    /// provider's own `store`, else of the first store listed. An id that
    /// already names its store (`woocommerce:727`) is taken as it is.
    pub stores: Vec<String>,
    pub stripe: OrderReference,
    pub paypal: OrderReference,
    pub adyen: OrderReference,
    /// Whether Adyen captures authorisations by itself (Adyen's default) or the
    /// merchant captures them (then only CAPTURE notifications are money in).
    pub adyen_capture: AdyenCapture,
}

/// Where a payment provider's payload names the store's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderReference {
    /// Stripe: metadata keys, tried in order (`order_id`). PayPal: `custom_id`
    /// and/or `invoice_id`, tried in order. Adyen: unused (the merchant
    /// reference is the only place).
    pub fields: Vec<String>,
    /// The store the order ids belong to; `None`: the tenant's first store.
    pub store: Option<String>,
    /// The part of the reference that is the order id: a regular expression
    /// whose group `order` (or else first group) is the id, e.g.
    /// `^(?P<order>\d+)-\d+$` for Adyen merchant references like `1001-2`.
    /// `None`: the whole value.
    pub pattern: Option<ReferencePattern>,
}

/// A compiled [`OrderReference::pattern`].
#[derive(Clone, Debug)]
pub struct ReferencePattern(regex::Regex);

impl ReferencePattern {
    /// Compiles `pattern`; it must have a capture group.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        if re.captures_len() < 2 {
            return Err(format!(
                "pattern {pattern:?} has no group: put the order id in `(?P<order>...)`"
            ));
        }
        Ok(Self(re))
    }

    /// The order id inside `value`, `None` when the value does not match.
    pub fn order_id<'a>(&self, value: &'a str) -> Option<&'a str> {
        let caps = self.0.captures(value)?;
        caps.name("order")
            .or_else(|| caps.get(1))
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for ReferencePattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ReferencePattern {}

/// See [`MapOptions::adyen_capture`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdyenCapture {
    /// AUTHORISATION is captured by Adyen (immediately or after a delay) unless
    /// cancelled; CAPTURE notifications, when enabled, itemise it.
    #[default]
    Automatic,
    /// Only CAPTURE notifications move money; an AUTHORISATION is a hold.
    Manual,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self {
            stores: vec!["shopify".into()],
            stripe: OrderReference {
                fields: vec!["order_id".into()],
                ..OrderReference::default()
            },
            paypal: OrderReference {
                fields: vec!["custom_id".into(), "invoice_id".into()],
                ..OrderReference::default()
            },
            adyen: OrderReference::default(),
            adyen_capture: AdyenCapture::Automatic,
        }
    }
}

impl MapOptions {
    /// Options for a tenant that runs `stores` (first = default), all else default.
    pub fn for_stores<S: Into<String>>(stores: impl IntoIterator<Item = S>) -> Self {
        let stores: Vec<String> = stores.into_iter().map(Into::into).collect();
        Self {
            stores: if stores.is_empty() {
                MapOptions::default().stores
            } else {
                stores
            },
            ..MapOptions::default()
        }
    }

    /// The store a bare order id from `provider` belongs to.
    pub fn store_for(&self, provider: &str) -> &str {
        let own = match provider {
            "stripe" => self.stripe.store.as_deref(),
            "paypal" => self.paypal.store.as_deref(),
            "adyen" => self.adyen.store.as_deref(),
            _ => None,
        };
        own.or(self.stores.first().map(String::as_str))
            .unwrap_or("shopify")
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

/// Parses a JSON body into `T`, naming the failing field in the error. The
/// error text holds no value of the payload (see [`json_error_text`]).
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, MapError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        // Only a failed parse pays for tracking the path: read it again.
        Err(e) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let path = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(traced) => traced.path().to_string(),
                Ok(_) => String::new(),
            };
            Err(MapError::Json(json_error_text(&e, Some(&path))))
        }
    }
}

/// Deserialises a part of an already parsed payload (`field`: where it was,
/// e.g. `data.object`), with a value-free error naming the path inside it.
pub fn from_json_value<'de, T: serde::Deserialize<'de>>(
    field: &str,
    value: &'de serde_json::Value,
) -> Result<T, MapError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner.is_empty() || inner == "." {
            field.to_string()
        } else {
            format!("{field}.{inner}")
        };
        MapError::Json(json_error_text(e.inner(), Some(&path)))
    })
}

/// A serde_json error as text without the payload's values: serde's
/// `invalid type: string "jane@example.com", expected u64` becomes
/// `invalid type: string, expected u64 at customer.id (line 1, column 31)`.
/// What is left is the kind of error, what was expected (the schema's words),
/// the field path and the position; never the offending value.
pub fn json_error_text(e: &serde_json::Error, path: Option<&str>) -> String {
    use serde_json::error::Category;
    let mut msg = e.to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    let mut out = match e.classify() {
        Category::Data => scrub_serde_message(&msg),
        Category::Syntax => format!("not valid JSON: {}", scrub_serde_message(&msg)),
        Category::Eof => "the JSON ends too early".to_string(),
        Category::Io => "the body could not be read".to_string(),
    };
    if let Some(p) = path.filter(|p| !p.is_empty() && *p != ".") {
        out.push_str(" at ");
        out.push_str(p);
    }
    if e.line() > 0 {
        out.push_str(&format!(" (line {}, column {})", e.line(), e.column()));
    }
    out
}

/// A serde message without the values it quotes: the unexpected value of
/// `invalid type`/`invalid value` is reduced to its kind, the unknown variant
/// or field name is dropped, and any other quoted text is elided.
pub fn scrub_serde_message(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let (unexpected, expected) = match rest.split_once(", expected ") {
                Some((u, x)) => (u, Some(x)),
                None => (rest, None),
            };
            let kind = unexpected.split(['`', '"']).next().unwrap_or("").trim();
            let kind = if kind.is_empty() { "value" } else { kind };
            return match expected {
                Some(x) => format!("{prefix}{kind}, expected {}", elide_quoted(x)),
                None => format!("{prefix}{kind}"),
            };
        }
    }
    for prefix in ["unknown variant ", "unknown field "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let what = prefix.trim_end();
            return match rest.split_once(", expected ") {
                Some((_, x)) => format!("{what}, expected {x}"),
                None => what.to_string(),
            };
        }
    }
    elide_quoted(msg)
}

/// `"..."` segments replaced by `"…"` (custom messages may quote a value).
fn elide_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            out.push(c);
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push('…');
    }
    out
}

/// Why an amount or currency could not be read, without the amount itself.
pub fn money_reason(e: &MoneyError) -> String {
    match e {
        MoneyError::UnknownCurrency(_) => "unknown currency code".into(),
        MoneyError::Syntax(_) => {
            "not a decimal amount (digits with an optional '.' and fraction)".into()
        }
        MoneyError::Precision {
            currency, exponent, ..
        } => format!("more decimals than {currency} allows ({exponent})"),
        MoneyError::Overflow(_) => "amount out of range".into(),
        MoneyError::CurrencyMismatch(a, b) => format!("cannot combine {a} with {b}"),
    }
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
        reason: money_reason(&e),
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
        reason: money_reason(&e),
    })
}

/// `Some(s)` for a non-empty trimmed string.
pub fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
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

/// A UUID-shaped id (`8-4-4-4-12`) from the first 32 hex digits of a hash.
pub(crate) fn uuid_from_hash(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses the timestamps carriers and helpdesks send: RFC 3339, ISO 8601 with a
/// `+0000` offset, a local date-time without offset (read as UTC, which is what
/// AfterShip documents for checkpoints without a zone), or a bare date (midnight
/// UTC). `None` for an empty string or anything else.
pub(crate) fn lenient_time(raw: &str) -> Option<OffsetDateTime> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let s = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&s, &Iso8601::DEFAULT) {
        return Some(t);
    }
    if let Ok(t) = PrimitiveDateTime::parse(&s, &Iso8601::DEFAULT) {
        return Some(t.assume_utc());
    }
    if let Ok(d) = Date::parse(&s, &Iso8601::DEFAULT) {
        return Some(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
    }
    None
}

/// The items in their first-seen order, each once.
pub(crate) fn dedup_in_order(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// `first last`, either part optional; `None` when both are blank.
pub(crate) fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let parts: Vec<String> = [first, last].into_iter().filter_map(non_empty).collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// An order reference a shipper typed into free text (`Order #1001`, `#1001`,
/// `order 000123`) as an [`OrderLink::Number`] (`#1001`).
pub(crate) fn order_number_in_text(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    // `#1001` anywhere.
    if let Some(pos) = lower.find('#') {
        let digits: String = lower[pos + 1..]
            .chars()
            .skip_while(|c| c.is_whitespace())
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if digits.chars().any(|c| c.is_ascii_digit()) {
            return Some(format!("#{}", digits.to_ascii_uppercase()));
        }
    }
    // `order 1001`, `order: 1001`, `order no. 1001`.
    let idx = lower.find("order")?;
    let rest = lower[idx + 5..].trim_start_matches(|c: char| {
        c.is_whitespace() || c == ':' || c == '.' || c == 'n' || c == 'o'
    });
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!("#{digits}"));
    }
    None
}

/// `#1001` from an order number written as `1001` or `#1001`.
pub(crate) fn hash_number(raw: &str) -> Option<String> {
    let n = raw.trim().trim_start_matches('#').trim();
    (!n.is_empty()).then(|| format!("#{n}"))
}

/// The namespaced order id of an order reference a payment carries. A value that
/// already names a store (`shopify:123`, `woocommerce:727`) is kept as it is;
/// a bare one belongs to the provider's store ([`MapOptions::store_for`]).
pub(crate) fn namespaced_order_id(opts: &MapOptions, provider: &str, reference: &str) -> String {
    if names_a_store(opts, reference) {
        return reference.to_string();
    }
    format!("{}:{reference}", opts.store_for(provider))
}

/// Whether `reference` is already a namespaced order id (`woocommerce:727`).
fn names_a_store(opts: &MapOptions, reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(store, id)| {
        !id.is_empty() && (opts.stores.iter().any(|s| s == store) || KNOWN_STORES.contains(&store))
    })
}

/// Stores whose namespaced order ids (`shopify:1`) a payment may carry as is.
const KNOWN_STORES: [&str; 2] = ["shopify", "woocommerce"];

/// Where `provider` names the store's order, per the tenant's options.
fn order_reference_of<'a>(opts: &'a MapOptions, provider: &str) -> Option<&'a OrderReference> {
    match provider {
        "stripe" => Some(&opts.stripe),
        "paypal" => Some(&opts.paypal),
        "adyen" => Some(&opts.adyen),
        _ => None,
    }
}

/// The namespaced order id a payment provider's order reference names, or
/// `None` when it names none: an empty value, or one the provider's configured
/// [`OrderReference::pattern`] does not match (`1001-2` with
/// `^(?P<order>\d+)-\d+$` names order `1001`). A value that already names its
/// store is taken as it is.
pub(crate) fn payment_order_id(opts: &MapOptions, provider: &str, raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if names_a_store(opts, raw) {
        return Some(raw.to_string());
    }
    let pattern = order_reference_of(opts, provider).and_then(|r| r.pattern.as_ref());
    let id = match pattern {
        Some(p) => p.order_id(raw)?.trim(),
        None => raw,
    };
    (!id.is_empty()).then(|| namespaced_order_id(opts, provider, id))
}

/// The order links of a payment event (Stripe, Adyen, PayPal): each order
/// reference that names an order ([`payment_order_id`]: through the provider's
/// pattern, namespaced in the provider's store), then each payment reference of
/// `provider`. Empty references are skipped; each link appears once, in the
/// order given.
pub(crate) fn payment_order_links<'a>(
    opts: &MapOptions,
    provider: &str,
    order_references: impl IntoIterator<Item = String>,
    payment_references: impl IntoIterator<Item = &'a str>,
) -> Vec<OrderLink> {
    let orders = order_references
        .into_iter()
        .filter_map(|r| payment_order_id(opts, provider, &r))
        .map(|order_id| OrderLink::Order { order_id });
    let payments = payment_references
        .into_iter()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| OrderLink::Payment {
            provider: provider.to_string(),
            reference: r.to_string(),
        });
    let mut links: Vec<OrderLink> = Vec::new();
    for link in orders.chain(payments) {
        if !links.contains(&link) {
            links.push(link);
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

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

    #[test]
    fn lenient_times() {
        assert_eq!(
            lenient_time("2024-05-01T10:00:00Z"),
            Some(datetime!(2024-05-01 10:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01T10:00:00+02:00"),
            Some(datetime!(2024-05-01 8:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01T10:00:00"),
            Some(datetime!(2024-05-01 10:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01 10:00:00"),
            Some(datetime!(2024-05-01 10:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-05-01"),
            Some(datetime!(2024-05-01 0:00 UTC))
        );
        assert_eq!(
            lenient_time("2024-08-02T19:26:52.000Z"),
            Some(datetime!(2024-08-02 19:26:52 UTC))
        );
        assert_eq!(
            lenient_time("2019-12-10T13:47:31.564131+00:00"),
            Some(datetime!(2019-12-10 13:47:31.564131 UTC))
        );
        assert_eq!(lenient_time(""), None);
        assert_eq!(lenient_time("yesterday"), None);
    }

    #[test]
    fn payment_order_references_follow_the_providers_options() {
        let mut opts = MapOptions::for_stores(["shopify", "woocommerce"]);
        opts.adyen.pattern = Some(ReferencePattern::new(r"^(?P<order>\d+)-\d+$").unwrap());
        opts.adyen.store = Some("woocommerce".into());
        // Through the pattern, in the provider's store.
        assert_eq!(
            payment_order_id(&opts, "adyen", "1001-2").as_deref(),
            Some("woocommerce:1001")
        );
        // A reference the pattern does not match names no order.
        assert_eq!(payment_order_id(&opts, "adyen", "gift-card-7"), None);
        // One that already names its store is taken as it is.
        assert_eq!(
            payment_order_id(&opts, "adyen", "shopify:77").as_deref(),
            Some("shopify:77")
        );
        // Without a pattern the whole value, in the first store.
        assert_eq!(
            payment_order_id(&opts, "stripe", " 1001-2 ").as_deref(),
            Some("shopify:1001-2")
        );
        assert_eq!(payment_order_id(&opts, "paypal", "  "), None);
        assert_eq!(
            payment_order_links(
                &opts,
                "adyen",
                [
                    "1001-2".to_string(),
                    "nope".to_string(),
                    "1001-3".to_string()
                ],
                ["PSP1", "", "PSP1"],
            ),
            vec![
                OrderLink::Order {
                    order_id: "woocommerce:1001".into()
                },
                OrderLink::Payment {
                    provider: "adyen".into(),
                    reference: "PSP1".into()
                },
            ]
        );
    }

    #[test]
    fn order_numbers_in_text() {
        assert_eq!(
            order_number_in_text("Order #1001").as_deref(),
            Some("#1001")
        );
        assert_eq!(
            order_number_in_text("Order 000123").as_deref(),
            Some("#000123")
        );
        assert_eq!(order_number_in_text("order no. 42").as_deref(), Some("#42"));
        assert_eq!(
            order_number_in_text("Where is #A-1001?").as_deref(),
            Some("#A-1001")
        );
        assert_eq!(order_number_in_text("my order is late"), None);
        assert_eq!(order_number_in_text("#"), None);
        assert_eq!(hash_number(" 1001 ").as_deref(), Some("#1001"));
        assert_eq!(hash_number("#1001").as_deref(), Some("#1001"));
        assert_eq!(hash_number(" "), None);
    }
}

#[cfg(test)]
mod value_free_tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Customer {
        id: u64,
        tags: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Hook {
        customer: Customer,
        kind: Kind,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Order,
    }

    const EMAIL: &str = "jane.doe@example.com";

    fn err(body: &str) -> String {
        match parse_json::<Hook>(body.as_bytes()) {
            Err(MapError::Json(text)) => text,
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_place_never_the_value() {
        let text = err(&format!(
            r#"{{"customer":{{"id":"{EMAIL}","tags":[]}},"kind":"order"}}"#
        ));
        assert!(!text.contains(EMAIL) && !text.contains("jane"), "{text}");
        assert!(
            text.contains("invalid type: string, expected u64"),
            "{text}"
        );
        assert!(text.contains("customer.id"), "{text}");
        assert!(text.contains("line 1"), "{text}");

        let text = err(&format!(
            r#"{{"customer":{{"id":1,"tags":[]}},"kind":"{EMAIL}"}}"#
        ));
        assert!(!text.contains(EMAIL), "{text}");
        assert!(text.starts_with("unknown variant, expected"), "{text}");

        let text = err(&format!(r#"{{"customer":{{"id":1,"tags":[{EMAIL}]}}}}"#));
        assert!(!text.contains("jane"), "{text}");
        assert!(text.starts_with("not valid JSON"), "{text}");

        let text = err(&format!(r#"{{"customer":{{"id":1,"tags":["{EMAIL}""#));
        assert!(!text.contains(EMAIL), "{text}");

        // A part of an already parsed payload, and the dead-letter reason the
        // processor writes (the error's Display).
        let v: serde_json::Value =
            serde_json::from_str(&format!(r#"{{"id":1,"tags":[{{"email":"{EMAIL}"}}]}}"#)).unwrap();
        let e = from_json_value::<Customer>("data.object", &v).unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains(EMAIL), "{shown}");
        assert!(shown.contains("data.object.tags[0]"), "{shown}");
    }

    #[test]
    fn money_errors_hold_no_amount() {
        let e = money("total_price", "12,34.5jane@example.com", "EUR").unwrap_err();
        assert!(!e.to_string().contains("jane"), "{e}");
        let e = currency_of("currency", "jane@example.com").unwrap_err();
        assert!(!e.to_string().contains("jane"), "{e}");
        let e = MapError::from(MoneyError::Syntax(EMAIL.into()));
        assert!(!e.to_string().contains(EMAIL), "{e}");
    }

    #[test]
    fn custom_messages_lose_their_quotes() {
        assert_eq!(
            scrub_serde_message(r#"bad thing "jane@example.com" here"#),
            r#"bad thing "…" here"#
        );
        assert_eq!(
            scrub_serde_message("missing field `id`"),
            "missing field `id`"
        );
        assert_eq!(
            scrub_serde_message("invalid value: integer `7`, expected a day"),
            "invalid value: integer, expected a day"
        );
    }
}
