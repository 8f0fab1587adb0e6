//! Identities and the ids derived from them.
//!
//! A customer's id is a hash of the tenant and the identity that anchors it (the
//! email where one is known), so the same events give the same ids whatever order
//! they arrive in and however often they are replayed. State is keyed by hashed
//! identity keys, never by the raw email or phone, so erasing a customer's data does
//! not leave personal data behind in keys.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Normalises an email: trimmed, lower-cased; `None` when it is not an address.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || e.contains(char::is_whitespace)
    {
        return None;
    }
    Some(e)
}

/// (raw number, default country) → normalised number.
type PhoneMemo = std::collections::HashMap<(String, Option<String>), Option<String>>;

/// Normalises a phone number to E.164. A number without a country code is read
/// in `default_country` (ISO 3166 alpha-2, e.g. the shipping address country);
/// without one it must carry a `+` prefix. Invalid numbers give `None`.
pub fn normalize_phone(raw: &str, default_country: Option<&str>) -> Option<String> {
    // Parsing with the full metadata costs tens of microseconds, and the same
    // number recurs (an order names it on the order, the customer and each
    // address): remember recent answers. The answer depends only on the inputs.
    thread_local! {
        static RECENT: std::cell::RefCell<PhoneMemo> = std::cell::RefCell::new(PhoneMemo::new());
    }
    const RECENT_MAX: usize = 4096;
    let key = (raw.to_string(), default_country.map(str::to_string));
    if let Some(hit) = RECENT.with(|r| r.borrow().get(&key).cloned()) {
        return hit;
    }
    let answer = normalize_phone_uncached(raw, default_country);
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() >= RECENT_MAX {
            r.clear();
        }
        r.insert(key, answer.clone());
    });
    answer
}

fn normalize_phone_uncached(raw: &str, default_country: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let region = default_country.and_then(|c| {
        c.trim()
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .ok()
    });
    let parsed = phonenumber::parse(region, trimmed).ok()?;
    if !phonenumber::is_valid(&parsed) {
        return None;
    }
    Some(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// A provider-scoped external id, e.g. Shopify customer 207119551.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExternalId {
    /// The source system (`shopify`, `woocommerce`, `stripe`, `zendesk`, ...).
    pub source: String,
    pub id: String,
}

/// What an event knows about who it concerns. Values are already normalised
/// (build it with [`Identity::with_email`] / [`Identity::with_phone`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<ExternalId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Identities known by their keys only: what is left of an event whose
    /// raw body was shredded (see [`crate::engine::FoldConfig::residue`]).
    /// They join and claim like the values they were derived from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyed: Vec<KeyedIdentity>,
}

/// An identity named by its key, with the system that issued it for an
/// external id (whether it links emails depends on it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyedIdentity {
    pub key: IdentityKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Identity {
    /// The same identity named by keys only: every value becomes its key in
    /// `scope` (with the source of an external id), the values go.
    pub fn to_keyed<'a>(&self, scope: impl Into<KeyScope<'a>>) -> Identity {
        Identity {
            keyed: self
                .keys_with_sources(scope)
                .into_iter()
                .map(|(key, source)| KeyedIdentity {
                    key,
                    source: source.map(str::to_string),
                })
                .collect(),
            ..Identity::default()
        }
    }

    /// [`Identity::keys`], each with the source of an external id.
    pub fn keys_with_sources<'a>(
        &self,
        scope: impl Into<KeyScope<'a>>,
    ) -> Vec<(IdentityKey, Option<&str>)> {
        let tenant = scope.into();
        let mut keys: Vec<(IdentityKey, Option<&str>)> = Vec::new();
        if let Some(e) = &self.email {
            keys.push((IdentityKey::new(tenant, IdentityKind::Email, e), None));
        }
        for x in &self.external {
            keys.push((
                IdentityKey::new(
                    tenant,
                    IdentityKind::External,
                    &format!("{}:{}", x.source, x.id),
                ),
                Some(x.source.as_str()),
            ));
        }
        if let Some(p) = &self.phone {
            keys.push((IdentityKey::new(tenant, IdentityKind::Phone, p), None));
        }
        if let Some(a) = &self.anonymous_id {
            keys.push((IdentityKey::new(tenant, IdentityKind::Anonymous, a), None));
        }
        if !self.keyed.is_empty() {
            for k in &self.keyed {
                if !keys.iter().any(|(have, _)| *have == k.key) {
                    keys.push((k.key.clone(), k.source.as_deref()));
                }
            }
            // Priority order, the values' own order kept within a kind.
            keys.sort_by_key(|(k, _)| k.kind);
        }
        keys
    }

    /// Sets the email when `raw` normalises to one.
    pub fn with_email(mut self, raw: Option<&str>) -> Self {
        if let Some(e) = raw.and_then(normalize_email) {
            self.email = Some(e);
        }
        self
    }

    /// Sets the phone when `raw` normalises to E.164 (see [`normalize_phone`]).
    pub fn with_phone(mut self, raw: Option<&str>, default_country: Option<&str>) -> Self {
        if let Some(p) = raw.and_then(|r| normalize_phone(r, default_country)) {
            self.phone = Some(p);
        }
        self
    }

    /// Adds an external id (ignored when empty).
    pub fn with_external(mut self, source: &str, id: impl Into<String>) -> Self {
        let id = id.into();
        if !id.is_empty() && id != "0" {
            let ext = ExternalId {
                source: source.to_string(),
                id,
            };
            if !self.external.contains(&ext) {
                self.external.push(ext);
                self.external.sort();
            }
        }
        self
    }

    pub fn with_anonymous_id(mut self, anon: Option<&str>) -> Self {
        if let Some(a) = anon.map(str::trim).filter(|a| !a.is_empty()) {
            self.anonymous_id = Some(a.to_string());
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.phone.is_none()
            && self.external.is_empty()
            && self.anonymous_id.is_none()
            && self.keyed.is_empty()
    }

    /// Every identity key this identity names, in priority order: email first,
    /// then external ids, phone, anonymous id.
    pub fn keys<'a>(&self, scope: impl Into<KeyScope<'a>>) -> Vec<IdentityKey> {
        self.keys_with_sources(scope)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The key a profile fragment of this identity is stored under: the first of
    /// [`Identity::keys`].
    pub fn primary_key<'a>(&self, scope: impl Into<KeyScope<'a>>) -> Option<IdentityKey> {
        let tenant = scope.into();
        if !self.keyed.is_empty() {
            return self.keys(tenant).into_iter().next();
        }
        // Same priority as `keys`, hashing only the one that wins.
        if let Some(e) = &self.email {
            return Some(IdentityKey::new(tenant, IdentityKind::Email, e));
        }
        if let Some(x) = self.external.first() {
            let v = format!("{}:{}", x.source, x.id);
            return Some(IdentityKey::new(tenant, IdentityKind::External, &v));
        }
        if let Some(p) = &self.phone {
            return Some(IdentityKey::new(tenant, IdentityKind::Phone, p));
        }
        self.anonymous_id
            .as_ref()
            .map(|a| IdentityKey::new(tenant, IdentityKind::Anonymous, a))
    }
}

/// Kind of an identity key. The order is the priority: an email anchors a customer,
/// the others attach to one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    Email,
    External,
    Phone,
    Anonymous,
}

impl IdentityKind {
    fn tag(self) -> &'static str {
        match self {
            IdentityKind::Email => "em",
            IdentityKind::External => "ex",
            IdentityKind::Phone => "ph",
            IdentityKind::Anonymous => "an",
        }
    }

    /// The reason recorded when a profile of this kind merges into an email's.
    pub fn merge_reason(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::External => "external_id",
            IdentityKind::Phone => "phone",
            IdentityKind::Anonymous => "anonymous_id",
        }
    }
}

/// Where identity keys are derived: the tenant, and the tenant's identity
/// secret when it has one. Without a secret a key is a plain hash of the tenant
/// and the value, which anyone who knows an email can compute again; with one
/// it is an HMAC that only the holder of the secret can.
#[derive(Clone, Copy)]
pub struct KeyScope<'a> {
    pub tenant: &'a str,
    pub secret: Option<&'a [u8]>,
}

impl<'a> From<&'a str> for KeyScope<'a> {
    /// A tenant without an identity secret.
    fn from(tenant: &'a str) -> Self {
        KeyScope {
            tenant,
            secret: None,
        }
    }
}

impl<'a> From<&'a String> for KeyScope<'a> {
    fn from(tenant: &'a String) -> Self {
        KeyScope::from(tenant.as_str())
    }
}

impl std::fmt::Debug for KeyScope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyScope")
            .field("tenant", &self.tenant)
            .field("keyed", &self.secret.is_some())
            .finish()
    }
}

/// A hashed identity: `em_<hex>`, `ph_<hex>`, ... Stable across replays.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdentityKey {
    pub kind: IdentityKind,
    pub hash: String,
}

impl IdentityKey {
    /// The key of `value` in `scope` (a tenant name alone, or a
    /// [`KeyScope`] with the tenant's secret).
    pub fn new<'a>(scope: impl Into<KeyScope<'a>>, kind: IdentityKind, value: &str) -> Self {
        let scope = scope.into();
        let parts = [
            scope.tenant.as_bytes(),
            &[0u8],
            kind.tag().as_bytes(),
            &[0u8],
            value.as_bytes(),
        ];
        let digest: Vec<u8> = match scope.secret {
            None => {
                let mut h = Sha256::new();
                for p in parts {
                    h.update(p);
                }
                h.finalize().to_vec()
            }
            Some(secret) => {
                use hmac::{KeyInit, Mac};
                // HMAC takes a key of any length.
                let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                for p in parts {
                    m.update(p);
                }
                m.finalize().into_bytes().to_vec()
            }
        };
        Self {
            kind,
            hash: hex::encode(&digest[..12]),
        }
    }

    /// The customer id of a customer anchored at this key: `cus_<kind>_<hash>`.
    pub fn customer_id(&self) -> CustomerId {
        CustomerId(format!("cus_{self}"))
    }

    /// Parses `em_<hex>` (the [`fmt::Display`] form).
    pub fn parse(s: &str) -> Option<IdentityKey> {
        let (tag, hash) = s.split_once('_')?;
        let kind = match tag {
            "em" => IdentityKind::Email,
            "ex" => IdentityKind::External,
            "ph" => IdentityKind::Phone,
            "an" => IdentityKind::Anonymous,
            _ => return None,
        };
        if hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(IdentityKey {
            kind,
            hash: hash.to_string(),
        })
    }

    /// The key behind a customer id made by [`IdentityKey::customer_id`].
    pub fn from_customer_id(id: &CustomerId) -> Option<IdentityKey> {
        IdentityKey::parse(id.0.strip_prefix("cus_")?)
    }
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.kind.tag(), self.hash)
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A customer id, `cus_<hex>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub String);

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hex SHA-256 of some bytes, for content-derived event ids.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Bob.Norman@Mail.Example.COM ").as_deref(),
            Some("bob.norman@mail.example.com")
        );
        assert_eq!(normalize_email("not an email"), None);
        assert_eq!(normalize_email("@x.com"), None);
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            normalize_phone("+1 (613) 555-0123", None).as_deref(),
            Some("+16135550123")
        );
        assert_eq!(
            normalize_phone("030 901820", Some("DE")).as_deref(),
            Some("+4930901820")
        );
        assert_eq!(
            normalize_phone("(613) 555-0123", Some("CA")).as_deref(),
            Some("+16135550123")
        );
        assert_eq!(normalize_phone("555", Some("US")), None);
        assert_eq!(normalize_phone("", None), None);
    }

    #[test]
    fn keys_are_stable_and_tenant_scoped() {
        let a = IdentityKey::new("t1", IdentityKind::Email, "a@x.com");
        assert_eq!(a, IdentityKey::new("t1", IdentityKind::Email, "a@x.com"));
        assert_ne!(a, IdentityKey::new("t2", IdentityKind::Email, "a@x.com"));
        assert_ne!(a, IdentityKey::new("t1", IdentityKind::Phone, "a@x.com"));
        assert!(a.customer_id().0.starts_with("cus_em_"));
        assert_eq!(
            IdentityKey::from_customer_id(&a.customer_id()),
            Some(a.clone())
        );
        assert_eq!(IdentityKey::parse("zz_00"), None);
        assert!(!a.to_string().contains("a@x.com"));
    }

    const HMAC_T1_A_AT_X: &str = "5946e11dd01abd5ba2423e0e";

    #[test]
    fn a_tenant_secret_keys_identities_with_an_hmac() {
        let plain = IdentityKey::new("t1", IdentityKind::Email, "a@x.com");
        let scope = |secret: &'static [u8]| KeyScope {
            tenant: "t1",
            secret: Some(secret),
        };
        let keyed = IdentityKey::new(scope(b"0123456789abcdef"), IdentityKind::Email, "a@x.com");
        assert_ne!(keyed, plain, "a secret changes every key");
        // SHA-256("t1\0em\0a@x.com"), first 12 bytes (Python's hashlib).
        assert_eq!(plain.hash, "48feddb623a8d0fe46ee8ac3");
        assert_eq!(
            keyed,
            IdentityKey::new(scope(b"0123456789abcdef"), IdentityKind::Email, "a@x.com"),
            "and stays stable"
        );
        assert_ne!(
            keyed,
            IdentityKey::new(scope(b"another secret!!"), IdentityKind::Email, "a@x.com")
        );
        // HMAC-SHA256(key, "t1\0em\0a@x.com"), first 12 bytes (computed with
        // Python's hmac module, not with this code).
        assert_eq!(keyed.hash, HMAC_T1_A_AT_X);
        let id = Identity::default().with_email(Some("a@x.com"));
        assert_eq!(id.primary_key(scope(b"0123456789abcdef")), Some(keyed));
    }

    #[test]
    fn primary_key_prefers_email() {
        let id = Identity::default()
            .with_phone(Some("+16135550123"), None)
            .with_external("shopify", "42")
            .with_email(Some("A@X.com"));
        let keys = id.keys("t");
        assert_eq!(keys[0].kind, IdentityKind::Email);
        assert_eq!(keys[1].kind, IdentityKind::External);
        assert_eq!(keys[2].kind, IdentityKind::Phone);
        assert_eq!(id.primary_key("t"), Some(keys[0].clone()));
    }
}
