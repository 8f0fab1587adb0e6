//! `[tenants.<id>]`: a tenant's stores, payments mapping, reporting and cost currencies and provider credentials.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use storefold_core::money::Currency;
use storefold_providers::{
    AdyenCapture, Credentials, MapOptions, OrderReference, ProviderKind, ReferencePattern,
};

use super::ConfigError;

/// The store platforms a tenant may run.
pub const STORES: [&str; 2] = ["shopify", "woocommerce"];

/// One tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Origins (`scheme://host[:port]`) whose pages may post touches.
    pub collect_origins: Vec<String>,
    /// The store platforms the tenant runs (`shopify`, `woocommerce`); the first
    /// is where a payment provider's bare order id points unless the provider's
    /// `store` says otherwise.
    pub stores: Vec<String>,
    /// ISO 4217 code of the currency the tenant's figures are also converted
    /// to (`reporting` on orders, `revenue_reporting` on customers), with the
    /// rates of `[rates]`. `None`: figures stay per currency only.
    pub reporting_currency: Option<String>,
    /// ISO 4217 code of the currency the stores' product costs are in when
    /// their payloads do not say (Shopify's inventory item `cost`,
    /// WooCommerce's Cost of Goods meta): the shop's currency. `None`: such a
    /// cost cannot be mapped and its webhook goes to the dead-letter topic
    /// with a reason naming this key.
    pub cost_currency: Option<String>,
    /// Where each payment provider names the store's order.
    pub payments: PaymentsConfig,
    /// Credentials per provider name. Only configured providers are accepted.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Whether an `email` in a collect beacon may create or merge customers
    /// without a token from the shop's backend. Off: only beacons whose
    /// `email_token` verifies with `collect_identity_secret` do.
    pub collect_identify: bool,
    /// The shop backend's key for `email_token`s (HMAC-SHA256; see the README's
    /// collect section). `None`: beacon tokens are refused.
    pub collect_identity_secret: Option<crate::net::Secret>,
    /// How identities resolve into customers (`[tenants.<id>.identity]`).
    pub identity: IdentityConfig,
    /// Crypto-shredding of the raw log (`[tenants.<id>.raw_encryption]`):
    /// when set, the ingest encrypts every raw body under a data key of its
    /// subject, and an erasure deletes the subject's keys.
    pub raw_encryption: Option<RawEncryptionConfig>,
    /// Reconciliation polls by provider (`[tenants.<id>.reconcile.<provider>]`,
    /// read by `storefold reconcile`): `stripe`, `shopify`, `woocommerce`.
    pub reconcile: BTreeMap<String, super::ReconcileSourceConfig>,
}

/// `[tenants.<id>.raw_encryption]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEncryptionConfig {
    /// The key-encryption key (at least 32 characters; use `${VAR}`): data
    /// keys are kept in the keys topic wrapped under a key derived from it,
    /// so the topic alone decrypts nothing. The ingest and the processor need
    /// the same one; changing it makes the wrapped keys unreadable.
    pub key: crate::net::Secret,
}

/// `[tenants.<id>.identity]`: the merge rules (README, "Identity").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// External id sources whose ids link every email that carried them into
    /// one customer (a store's customer id follows a customer through an email
    /// change). Other sources' ids join a customer like a phone does.
    pub link_sources: Vec<String>,
    /// An id of a linking source carried by more emails than this links none
    /// of them (a shared staff or test account) and is flagged instead.
    pub link_max_emails: usize,
    /// Plus-addressing: `ann+shop@x.com` is the same email as `ann@x.com`.
    pub email_plus_addressing: bool,
    /// Domains whose mailboxes ignore dots in the local part (e.g.
    /// `["gmail.com", "googlemail.com"]`): `a.nn@gmail.com` is `ann@gmail.com`.
    pub email_dots_domains: Vec<String>,
    /// The tenant's identity secret (at least 16 characters; use `${VAR}`):
    /// customer ids and identity keys become an HMAC under it, which nobody
    /// without it can derive from an email or phone. Setting or changing it
    /// changes every customer id: run `storefold replay` to rebuild state.
    pub secret: Option<crate::net::Secret>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let rules = storefold_core::engine::IdentityRules::default();
        Self {
            link_sources: rules.link_sources.into_iter().collect(),
            link_max_emails: rules.link_max_emails,
            email_plus_addressing: rules.email_plus,
            email_dots_domains: rules.email_dots_domains.into_iter().collect(),
            secret: None,
        }
    }
}

impl IdentityConfig {
    /// The fold's rules, or why these are not valid.
    pub fn rules(&self) -> Result<storefold_core::engine::IdentityRules, String> {
        // The providers whose events carry an id of their own for a customer.
        const SOURCES: [&str; 6] = [
            "shopify",
            "woocommerce",
            "stripe",
            "adyen",
            "zendesk",
            "gorgias",
        ];
        for s in &self.link_sources {
            if !SOURCES.contains(&s.as_str()) {
                return Err(format!(
                    "link_sources: {s:?} is not a source of external ids (one of {})",
                    SOURCES.join(", ")
                ));
            }
        }
        if self.link_max_emails < 2 {
            return Err(format!(
                "link_max_emails = {} links nothing: it must be at least 2",
                self.link_max_emails
            ));
        }
        let mut dots = std::collections::BTreeSet::new();
        for d in &self.email_dots_domains {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() || d.contains('@') || !d.contains('.') {
                return Err(format!(
                    "email_dots_domains: {d:?} is not a mail domain like \"gmail.com\""
                ));
            }
            dots.insert(d);
        }
        let secret = match &self.secret {
            Some(s) if s.0.trim().len() < 16 => {
                return Err(
                    "secret must be at least 16 characters (a random key kept like a password)"
                        .to_string(),
                );
            }
            Some(s) => Some(storefold_core::engine::IdentitySecret(
                s.0.as_bytes().to_vec(),
            )),
            None => None,
        };
        Ok(storefold_core::engine::IdentityRules {
            secret,
            link_sources: self.link_sources.iter().cloned().collect(),
            link_max_emails: self.link_max_emails,
            email_plus: self.email_plus_addressing,
            email_dots_domains: dots,
        })
    }
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self {
            collect_origins: Vec::new(),
            stores: MapOptions::default().stores,
            reporting_currency: None,
            cost_currency: None,
            payments: PaymentsConfig::default(),
            providers: BTreeMap::new(),
            collect_identify: false,
            collect_identity_secret: None,
            identity: IdentityConfig::default(),
            raw_encryption: None,
            reconcile: BTreeMap::new(),
        }
    }
}

/// `[tenants.<id>.payments.*]`: how each payment provider's payloads name the
/// store's order. The defaults are `storefold_providers::MapOptions::default()`'s.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    pub stripe: StripePayments,
    pub paypal: PaypalPayments,
    pub adyen: AdyenPayments,
}

/// `[tenants.<id>.payments.stripe]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StripePayments {
    /// Metadata keys of a charge or payment intent that hold the store's order
    /// id, tried in order.
    pub order_metadata_keys: Vec<String>,
    /// The store those order ids belong to (one of the tenant's `stores`);
    /// `None`: the tenant's first store.
    pub store: Option<String>,
    /// A regular expression whose group `order` (or else first group) is the
    /// order id inside the metadata value; `None`: the whole value.
    pub order_pattern: Option<String>,
}

impl Default for StripePayments {
    fn default() -> Self {
        let d = MapOptions::default().stripe;
        Self {
            order_metadata_keys: d.fields,
            store: d.store,
            order_pattern: None,
        }
    }
}

/// `[tenants.<id>.payments.paypal]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaypalPayments {
    /// The purchase unit fields that hold the store's order id, tried in
    /// order: `custom_id` and/or `invoice_id`.
    pub order_fields: Vec<String>,
    /// The store those order ids belong to; `None`: the tenant's first store.
    pub store: Option<String>,
    /// As `stripe.order_pattern`, for the field's value.
    pub order_pattern: Option<String>,
}

impl Default for PaypalPayments {
    fn default() -> Self {
        let d = MapOptions::default().paypal;
        Self {
            order_fields: d.fields,
            store: d.store,
            order_pattern: None,
        }
    }
}

/// PayPal's purchase unit fields that may name the store's order.
pub const PAYPAL_ORDER_FIELDS: [&str; 2] = ["custom_id", "invoice_id"];

/// `[tenants.<id>.payments.adyen]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdyenPayments {
    /// `automatic`: Adyen captures authorisations by itself (its default), so
    /// an AUTHORISATION is money in unless cancelled; `manual`: only CAPTURE
    /// notifications are money in, an AUTHORISATION is a hold.
    pub capture: AdyenCaptureMode,
    /// A regular expression whose group `order` (or else first group) is the
    /// store's order id inside the `merchantReference` (e.g.
    /// `^(?P<order>\d+)-\d+$` for `1001-2`); `None`: the whole reference.
    pub merchant_reference_pattern: Option<String>,
    /// The store those order ids belong to; `None`: the tenant's first store.
    pub store: Option<String>,
}

/// See [`AdyenPayments::capture`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdyenCaptureMode {
    #[default]
    Automatic,
    Manual,
}

/// A tenant setting that cannot be used: the key (below `tenants.<id>.`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantKeyError {
    pub key: String,
    pub message: String,
}

impl TenantConfig {
    /// How the tenant's payloads are mapped: its stores and where each payment
    /// provider names the order. Fails on a pattern without a group, a store
    /// that is not one of the tenant's `stores`, or an unknown store or field.
    pub fn map_options(&self) -> Result<MapOptions, TenantKeyError> {
        let err = |key: &str, message: String| TenantKeyError {
            key: key.to_string(),
            message,
        };
        if self.stores.is_empty() {
            return Err(err(
                "stores",
                format!(
                    "is empty; list the tenant's store platforms ({})",
                    STORES.join(", ")
                ),
            ));
        }
        for (i, s) in self.stores.iter().enumerate() {
            if !STORES.contains(&s.as_str()) {
                return Err(err(
                    "stores",
                    format!(
                        "{s:?} is not a store storefold reads ({})",
                        STORES.join(", ")
                    ),
                ));
            }
            if self.stores[..i].contains(s) {
                return Err(err("stores", format!("{s:?} is listed twice")));
            }
        }
        let store = |key: &str, s: &Option<String>| -> Result<Option<String>, TenantKeyError> {
            match s {
                Some(s) if !self.stores.contains(s) => Err(err(
                    key,
                    format!(
                        "{s:?} is not one of the tenant's stores ({})",
                        self.stores.join(", ")
                    ),
                )),
                other => Ok(other.clone()),
            }
        };
        let pattern =
            |key: &str, p: &Option<String>| -> Result<Option<ReferencePattern>, TenantKeyError> {
                p.as_deref()
                    .map(ReferencePattern::new)
                    .transpose()
                    .map_err(|e| err(key, e))
            };
        let p = &self.payments;
        for k in &p.stripe.order_metadata_keys {
            if k.trim().is_empty() {
                return Err(err(
                    "payments.stripe.order_metadata_keys",
                    "holds an empty key".into(),
                ));
            }
        }
        for f in &p.paypal.order_fields {
            if !PAYPAL_ORDER_FIELDS.contains(&f.as_str()) {
                return Err(err(
                    "payments.paypal.order_fields",
                    format!(
                        "{f:?} is not a PayPal field storefold reads ({})",
                        PAYPAL_ORDER_FIELDS.join(", ")
                    ),
                ));
            }
        }
        Ok(MapOptions {
            stores: self.stores.clone(),
            stripe: OrderReference {
                fields: p.stripe.order_metadata_keys.clone(),
                store: store("payments.stripe.store", &p.stripe.store)?,
                pattern: pattern("payments.stripe.order_pattern", &p.stripe.order_pattern)?,
            },
            paypal: OrderReference {
                fields: p.paypal.order_fields.clone(),
                store: store("payments.paypal.store", &p.paypal.store)?,
                pattern: pattern("payments.paypal.order_pattern", &p.paypal.order_pattern)?,
            },
            adyen: OrderReference {
                fields: Vec::new(),
                store: store("payments.adyen.store", &p.adyen.store)?,
                pattern: pattern(
                    "payments.adyen.merchant_reference_pattern",
                    &p.adyen.merchant_reference_pattern,
                )?,
            },
            adyen_capture: match p.adyen.capture {
                AdyenCaptureMode::Automatic => AdyenCapture::Automatic,
                AdyenCaptureMode::Manual => AdyenCapture::Manual,
            },
            cost_currency: currency_key("cost_currency", self.cost_currency.as_deref())?,
        })
    }

    /// The tenant's reporting currency, when it sets one.
    pub fn reporting_currency(&self) -> Result<Option<Currency>, TenantKeyError> {
        currency_key("reporting_currency", self.reporting_currency.as_deref())
    }
}

/// A currency setting of a tenant (`key` below `tenants.<id>.`), when set.
fn currency_key(key: &str, code: Option<&str>) -> Result<Option<Currency>, TenantKeyError> {
    code.map(|c| {
        Currency::from_code(c).map_err(|e| TenantKeyError {
            key: key.into(),
            message: format!("{e}: an ISO 4217 code with a minor unit, like EUR"),
        })
    })
    .transpose()
}

/// A tenant's credentials for one provider. The secrets are [`SecretString`]s: they
/// never show in `Debug` output, and reading one takes an explicit `expose_secret`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// What the provider's verification needs: the HMAC secret, Adyen's hex HMAC
    /// key, the URL token (Shippo, Gorgias) or the pinned certificate PEM (PayPal).
    pub secret: SecretString,
    /// PayPal's webhook id.
    pub webhook_id: Option<String>,
    /// Only for `storefold webhook send` with PayPal: the private key PEM that signs
    /// test requests (PayPal's own key is never available).
    pub signing_key: Option<SecretString>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            secret: SecretString::from(""),
            webhook_id: None,
            signing_key: None,
        }
    }
}

impl ProviderConfig {
    /// The credentials the provider's `verify` takes.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            secret: self.secret.expose_secret().to_owned(),
            webhook_id: self.webhook_id.clone(),
        }
    }

    /// What the provider's `sign` takes, if this config can sign: the secret, or for
    /// PayPal the webhook id line and the signing key.
    pub fn signing_secret(&self, provider: ProviderKind) -> Option<String> {
        match provider {
            ProviderKind::Paypal => {
                let key = self.signing_key.as_ref()?.expose_secret();
                let id = self.webhook_id.as_deref().unwrap_or_default();
                Some(format!("webhook_id: {id}\n{key}"))
            }
            _ if self.secret.expose_secret().is_empty() => None,
            _ => Some(self.secret.expose_secret().to_owned()),
        }
    }
}

/// A tenant's mapping options and reporting currency, or an error naming the key.
pub(super) fn tenant_options(
    id: &str,
    tenant: &TenantConfig,
) -> Result<(MapOptions, Option<Currency>), ConfigError> {
    let named = |e: TenantKeyError| ConfigError::Key {
        key: format!("tenants.{id}.{}", e.key),
        message: e.message,
    };
    Ok((
        tenant.map_options().map_err(named)?,
        tenant.reporting_currency().map_err(named)?,
    ))
}

/// Tenant ids appear in URLs, keys and env names: keep them simple.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
