//! The configuration file: one TOML document, `${ENV_VAR}` substitution in any string
//! value, and `STOREFOLD_<SECTION>__<KEY>` environment overrides.
//!
//! Loading is strict: an unknown key is an error (a typo must not silently fall back to
//! a default), a `${VAR}` that is not set is an error naming the key that used it, and a
//! provider configured for a tenant without a usable secret refuses to start.
//!
//! The environment is passed in rather than read here, so tests are hermetic; the
//! binary passes `std::env::vars()`.
//!
//! ```
//! use storefold_runtime::config::Config;
//! let toml = r#"
//! [kafka]
//! bootstrap_servers = "127.0.0.1:9092"
//! [tenants.acme.providers.shopify]
//! secret = "${ACME_SHOPIFY}"
//! "#;
//! let env = [("ACME_SHOPIFY".to_string(), "s3cret".to_string())];
//! let config = Config::from_toml_str(toml, env).unwrap();
//! use storefold_runtime::config::ExposeSecret;
//! assert_eq!(config.tenants["acme"].providers["shopify"].secret.expose_secret(), "s3cret");
//! assert_eq!(config.kafka.topic_prefix, "storefold.");
//! ```

mod env;
mod ingest;
mod kafka;
mod log;
mod processor;
mod rates;
mod reconcile;
mod schema_registry;
mod sinks;
mod tenants;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use storefold_core::engine::FoldConfig;
use storefold_core::rates::Rates;
use storefold_providers::{MapOptions, ProviderKind};

/// The secret type of the configuration's credentials, and the trait that reads one.
pub use secrecy::{ExposeSecret, SecretString};

pub use ingest::{CollectConfig, IngestConfig};
pub use kafka::{KafkaConfig, RESERVED_KAFKA_PROPERTIES, is_secret_property};
pub use log::{LogConfig, LogFormat};
pub use processor::ProcessorConfig;
pub use rates::RatesConfig;
pub use reconcile::{RECONCILED, ReconcileConfig, ReconcileSourceConfig};
pub use schema_registry::SchemaRegistryConfig;
pub use sinks::{SinksConfig, redact_url};
pub use tenants::{
    AdyenCaptureMode, AdyenPayments, IdentityConfig, PAYPAL_ORDER_FIELDS, PaymentsConfig,
    PaypalPayments, ProviderConfig, RawEncryptionConfig, STORES, StripePayments, TenantConfig,
    TenantKeyError, valid_tenant_id,
};

use env::{apply_overrides, substitute};
use ingest::validate_abuse_limits;
use tenants::tenant_options;

/// Prefix of environment overrides: `STOREFOLD_KAFKA__BOOTSTRAP_SERVERS` sets
/// `kafka.bootstrap_servers`. Only names with a `__` are config keys; the others
/// (`STOREFOLD_CONFIG`, `STOREFOLD_LOG_FORMAT`) are command-line options.
pub const ENV_PREFIX: &str = "STOREFOLD_";

/// Largest `processor.memory_budget_mb` accepted (1 TiB): a larger value is
/// almost certainly a size in bytes given where MiB are expected.
pub const MAX_MEMORY_BUDGET_MB: usize = 1 << 20;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Toml(String),
    #[error("config key {key}: {message}")]
    Key { key: String, message: String },
    #[error("environment override {var}: {message}")]
    Override { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// When set, values use the Confluent wire format with ids from this registry.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub processor: ProcessorConfig,
    #[serde(default, deserialize_with = "sinks::deserialize")]
    pub sinks: SinksConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// The operator's exchange rates, for tenants with a reporting currency.
    #[serde(default)]
    pub rates: RatesConfig,
    /// Tenants by id. Ids are lower case (`[a-z0-9_-]`), as they appear in URLs.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The operator listener and its API tokens (the query API, `/ui`, `/metrics`).
    #[serde(default)]
    pub operator: crate::operator::OperatorConfig,
    /// The reconciliation polls' role (`storefold reconcile`).
    #[serde(default)]
    pub reconcile: ReconcileConfig,
}

impl Config {
    /// Reads `path` and applies `env` (substitution and `STOREFOLD_…__…` overrides).
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, env)
    }

    /// Parses a TOML document and applies `env`.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml(e.to_string()))?;
        apply_overrides(&mut doc, &env)?;
        let mut value = toml::Value::Table(doc);
        substitute(&mut value, &mut Vec::new(), &env)?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                key,
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what deserialisation cannot: names, ranges and that every configured
    /// provider can verify. The `[sinks.<name>]` sections are not checked here:
    /// their types belong to the sinks (`storefold_sinks::registry::check`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers is empty"));
        }
        if k.partitions < 1 {
            return Err(invalid("kafka.partitions must be at least 1"));
        }
        if k.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor must be at least 1"));
        }
        if let Some(m) = k.min_insync_replicas
            && (m < 1 || m > k.replication_factor)
        {
            return Err(invalid(format!(
                "kafka.min_insync_replicas = {m} must be between 1 and kafka.replication_factor ({}): with acks=all no write could ever be acknowledged otherwise",
                k.replication_factor
            )));
        }
        for name in k.properties.keys() {
            let lower = name.trim().to_ascii_lowercase();
            if let Some((key, why)) = RESERVED_KAFKA_PROPERTIES
                .iter()
                .find(|(key, _)| *key == lower)
            {
                return Err(invalid(format!(
                    "kafka.properties.\"{key}\" may not be set: {why}. Remove it from [kafka.properties]"
                )));
            }
        }
        if !k
            .topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "kafka.topic_prefix may only hold ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        let i = &self.ingest;
        if i.max_body_bytes == 0 || i.collect.max_body_bytes == 0 {
            return Err(invalid("ingest body limits must be positive"));
        }
        if i.max_in_flight == 0 {
            return Err(invalid("ingest.max_in_flight must be positive"));
        }
        if i.produce_timeout_ms == 0 {
            return Err(invalid("ingest.produce_timeout_ms must be positive"));
        }
        if i.collect.requests_per_second == 0 || i.collect.burst == 0 {
            return Err(invalid(
                "ingest.collect.requests_per_second and burst must be positive",
            ));
        }
        validate_abuse_limits(i)?;
        let p = &self.processor;
        if p.batch_size == 0 || p.commit_interval_ms == 0 || p.produce_timeout_ms == 0 {
            return Err(invalid(
                "processor.batch_size, commit_interval_ms and produce_timeout_ms must be positive",
            ));
        }
        if p.group_id.trim().is_empty() {
            return Err(invalid("processor.group_id is empty"));
        }
        if p.memory_budget_mb == 0 {
            return Err(invalid(
                "processor.memory_budget_mb must be positive: it is the RocksDB block cache and memtable memory of all the instance's tasks (default 1024)",
            ));
        }
        if p.memory_budget_mb > MAX_MEMORY_BUDGET_MB {
            return Err(invalid(format!(
                "processor.memory_budget_mb = {} is more than {MAX_MEMORY_BUDGET_MB} (1 TiB): give the budget in MiB",
                p.memory_budget_mb
            )));
        }
        for (key, v) in [
            ("max_touches", p.max_touches),
            ("max_touch_values", p.max_touch_values),
            ("max_tickets", p.max_tickets),
            ("max_listed_orders", p.max_listed_orders),
            ("max_checkpoints", p.max_checkpoints),
        ] {
            if !(1..=10_000).contains(&v) {
                return Err(invalid(format!(
                    "processor.{key} = {v} must be between 1 and 10000: state records and projections must stay under Kafka's message size"
                )));
            }
        }
        if p.park_timeout_hours == 0 {
            return Err(invalid(
                "processor.park_timeout_hours must be positive: events naming an order that is not known yet need time for it to arrive",
            ));
        }
        if let Some(sr) = &self.schema_registry {
            sr.validate()?;
        }
        self.sinks.validate()?;
        self.operator
            .validate(self.tenants.keys())
            .map_err(invalid)?;
        for (id, tenant) in &self.tenants {
            if !valid_tenant_id(id) {
                return Err(invalid(format!(
                    "tenant id {id:?} must be 1-64 characters of a-z, 0-9, '_' and '-'"
                )));
            }
            tenant_options(id, tenant)?;
            tenant
                .identity
                .rules()
                .map_err(|e| invalid(format!("tenants.{id}.identity.{e}")))?;
            if let Some(p) = tenant
                .reconcile
                .keys()
                .find(|p| !RECONCILED.contains(&p.as_str()))
            {
                return Err(invalid(format!(
                    "tenants.{id}.reconcile.{p}: reconciliation polls {} only",
                    RECONCILED.join(", ")
                )));
            }
            if let Some(enc) = &tenant.raw_encryption {
                if enc.key.0.trim().len() < 32 {
                    return Err(invalid(format!(
                        "tenants.{id}.raw_encryption.key must be at least 32 characters (a random key kept like a password)"
                    )));
                }
                if tenant.identity.secret.is_none() {
                    return Err(invalid(format!(
                        "tenants.{id}.raw_encryption needs tenants.{id}.identity.secret: raw bodies are keyed by their subject's identity key, which must not be derivable from the email"
                    )));
                }
            }
            if tenant
                .collect_identity_secret
                .as_ref()
                .is_some_and(|s| s.0.trim().len() < 16)
            {
                return Err(invalid(format!(
                    "tenants.{id}.collect_identity_secret must be at least 16 characters (a random key shared with the shop's backend)"
                )));
            }
            for origin in &tenant.collect_origins {
                if !(origin.starts_with("https://") || origin.starts_with("http://"))
                    || origin.trim_end_matches('/') != origin
                {
                    return Err(invalid(format!(
                        "tenants.{id}.collect_origins: {origin:?} is not an origin like https://shop.example"
                    )));
                }
            }
            for (name, provider) in &tenant.providers {
                let kind: ProviderKind = name
                    .parse()
                    .map_err(|e| invalid(format!("tenants.{id}.providers.{name}: {e}")))?;
                if kind == ProviderKind::Collect {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.collect: browser touches are unsigned; configure tenants.{id}.collect_origins instead"
                    )));
                }
                if provider.secret.expose_secret().trim().is_empty() {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.{name}.secret is missing or empty: storefold will not accept {name} webhooks it cannot verify"
                    )));
                }
                if kind == ProviderKind::Paypal
                    && provider.webhook_id.as_deref().is_none_or(str::is_empty)
                {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.paypal.webhook_id is missing: PayPal signs it into every request"
                    )));
                }
                if kind != ProviderKind::Paypal && provider.signing_key.is_some() {
                    return Err(invalid(format!(
                        "tenants.{id}.providers.{name}.signing_key is only used by PayPal"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The tenant's credentials for `provider`, if configured.
    pub fn provider(&self, tenant: &str, provider: ProviderKind) -> Option<&ProviderConfig> {
        self.tenants.get(tenant)?.providers.get(provider.name())
    }

    /// The mapping options of every configured tenant (tenants that are not
    /// configured are mapped with `MapOptions::default()`).
    pub fn map_options(&self) -> Result<BTreeMap<String, MapOptions>, ConfigError> {
        self.tenants
            .iter()
            .map(|(id, t)| Ok((id.clone(), tenant_options(id, t)?.0)))
            .collect()
    }

    /// What the fold needs beyond the events: each tenant's reporting currency
    /// and the rates of `[rates]`, read from `rates.file`. An unreadable or
    /// invalid file is an error; a tenant with a reporting currency but no
    /// rates file is allowed (its other currencies stay unconverted) and is
    /// logged as a warning.
    pub fn fold_config(&self) -> Result<FoldConfig, ConfigError> {
        let mut reporting = BTreeMap::new();
        for (id, t) in &self.tenants {
            if let (_, Some(c)) = tenant_options(id, t)? {
                reporting.insert(id.clone(), c);
            }
        }
        let max_age = i64::from(self.rates.max_age_days);
        let rates = match &self.rates.file {
            None => {
                for (id, c) in &reporting {
                    tracing::warn!(
                        tenant = %id,
                        reporting_currency = %c,
                        "tenant has a reporting currency but [rates] has no file: amounts in \
                         other currencies stay unconverted"
                    );
                }
                Rates::new(max_age)
            }
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Key {
                    key: "rates.file".into(),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                let rates = Rates::parse_csv(&text, max_age).map_err(|e| ConfigError::Key {
                    key: "rates.file".into(),
                    message: format!("{}: {e}", path.display()),
                })?;
                if rates.is_empty() {
                    return Err(ConfigError::Key {
                        key: "rates.file".into(),
                        message: format!(
                            "{} holds no rate (expected lines date,from,to,rate)",
                            path.display()
                        ),
                    });
                }
                rates
            }
        };
        let p = &self.processor;
        let limits = storefold_core::limits::Limits {
            touches: p.max_touches,
            touch_values: p.max_touch_values,
            tickets: p.max_tickets,
            listed_orders: p.max_listed_orders,
            checkpoints: p.max_checkpoints,
        };
        let mut identity = BTreeMap::new();
        for (id, t) in &self.tenants {
            let rules = t
                .identity
                .rules()
                .map_err(|e| invalid(format!("tenants.{id}.identity.{e}")))?;
            identity.insert(id.clone(), rules);
        }
        Ok(FoldConfig {
            reporting,
            rates,
            limits,
            identity,
        })
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}
