//! `[sinks.hubspot]`: the HubSpot sink's section.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use storefold_runtime::config::{Config, ConfigError};

use crate::registry::parse_section;

/// `[sinks.hubspot]`: contacts by email and orders as deals, within the portal's limits.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotSinkConfig {
    /// Private app access token (sent as `Authorization: Bearer`): the portal
    /// of a deployment with one tenant. With several tenants, use `tenants`.
    /// Empty when not set; never in `Debug` output.
    #[serde(default)]
    pub token: SecretString,
    /// `[sinks.hubspot.tenants.<id>]`: one portal (token) per tenant, so that
    /// tenants never share contacts or deals.
    #[serde(default)]
    pub tenants: BTreeMap<String, HubSpotTenantConfig>,
    /// API base URL.
    #[serde(default = "default_url")]
    pub base_url: String,
    /// Consumer group of this sink.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Records per batch request (HubSpot accepts at most 100).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// How long a batch waits to fill before it is written anyway.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Requests allowed per rolling 10 seconds (the portal's burst limit).
    #[serde(default = "default_per_10s")]
    pub requests_per_10s: u32,
    /// Requests allowed per day (the portal's daily limit).
    #[serde(default = "default_daily")]
    pub requests_per_day: u32,
    /// storefold field -> HubSpot contact property name. Unlisted fields are not sent.
    #[serde(default)]
    pub contact_properties: BTreeMap<String, String>,
    /// storefold field -> HubSpot deal property name.
    #[serde(default)]
    pub deal_properties: BTreeMap<String, String>,
    /// Deal property holding storefold's order id (must be a unique-value property).
    #[serde(default = "default_order_id_property")]
    pub order_id_property: String,
    /// Pipeline (internal id) of the deals storefold creates.
    #[serde(default = "default_deal_pipeline")]
    pub deal_pipeline: String,
    /// storefold order status (`pending`, `open`, `on_hold`, `completed`,
    /// `cancelled`, `refunded`, `failed`) -> deal stage (internal id). Statuses
    /// left out keep their default stage.
    #[serde(default)]
    pub deal_stages: BTreeMap<String, String>,
}

impl fmt::Debug for HubSpotSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotSinkConfig")
            .field("token", &self.token)
            .field("tenants", &self.tenants)
            .field("base_url", &self.base_url)
            .field("group_id", &self.group_id)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("requests_per_10s", &self.requests_per_10s)
            .field("requests_per_day", &self.requests_per_day)
            .field("contact_properties", &self.contact_properties)
            .field("deal_properties", &self.deal_properties)
            .field("order_id_property", &self.order_id_property)
            .field("deal_pipeline", &self.deal_pipeline)
            .field("deal_stages", &self.deal_stages)
            .finish()
    }
}

/// `[sinks.hubspot.tenants.<id>]`: a tenant's own HubSpot portal.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotTenantConfig {
    /// The private app access token of the tenant's portal (never in `Debug`
    /// output).
    pub token: SecretString,
}

impl fmt::Debug for HubSpotTenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotTenantConfig")
            .field("token", &self.token)
            .finish()
    }
}

fn default_url() -> String {
    "https://api.hubapi.com".into()
}
fn default_group() -> String {
    "storefold-sink-hubspot".into()
}
fn default_batch() -> usize {
    100
}
fn default_linger() -> u64 {
    200
}
fn default_per_10s() -> u32 {
    100
}
fn default_daily() -> u32 {
    250_000
}
fn default_order_id_property() -> String {
    "storefold_order_id".into()
}
fn default_deal_pipeline() -> String {
    "default".into()
}

impl HubSpotSinkConfig {
    /// The section of `config`, parsed and checked (against the configured
    /// tenants too); `None` without one.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        parse_section(config, "hubspot", |c: &Self| c.validate(config))
    }

    /// What deserialisation cannot check: a token or one per tenant (never
    /// both), HubSpot's batch limit, positive rate limits, and that portals
    /// never mix tenants: one `token` serves a deployment with at most one
    /// tenant; with `tenants`, every tenant of `config` needs one.
    pub fn validate(&self, config: &Config) -> Result<(), String> {
        if self.tenants.is_empty() && self.token.expose_secret().trim().is_empty() {
            return Err(
                "sinks.hubspot: set token (one tenant) or a [sinks.hubspot.tenants.<id>] token per tenant"
                    .into(),
            );
        }
        if !self.tenants.is_empty() && !self.token.expose_secret().trim().is_empty() {
            return Err(
                "sinks.hubspot: token and tenants are exclusive: with [sinks.hubspot.tenants.<id>], every tenant has its own token"
                    .into(),
            );
        }
        for (id, t) in &self.tenants {
            if t.token.expose_secret().trim().is_empty() {
                return Err(format!(
                    "sinks.hubspot.tenants.{id}.token is missing or empty"
                ));
            }
        }
        if !(1..=100).contains(&self.batch_size) {
            return Err("sinks.hubspot.batch_size must be 1-100 (HubSpot's batch limit)".into());
        }
        if self.requests_per_10s == 0 || self.requests_per_day == 0 {
            return Err(
                "sinks.hubspot.requests_per_10s and requests_per_day must be positive".into(),
            );
        }
        let tenants = &config.tenants;
        if self.tenants.is_empty() {
            if tenants.len() > 1 {
                return Err(format!(
                    "sinks.hubspot.token would put the contacts and deals of {} tenants into one portal; \
                     give each tenant its own: [sinks.hubspot.tenants.<id>] token = ...",
                    tenants.len()
                ));
            }
            return Ok(());
        }
        let missing: Vec<&str> = tenants
            .keys()
            .filter(|id| !self.tenants.contains_key(*id))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "sinks.hubspot.tenants: no token for tenant(s) {}; add [sinks.hubspot.tenants.<id>] token = ... for each",
                missing.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Option<HubSpotSinkConfig>, String> {
        let config = Config::from_toml_str(toml, [("HS".to_string(), "pat-hunter2".to_string())])
            .map_err(|e| e.to_string())?;
        HubSpotSinkConfig::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_tokens_kept_out_of_debug() {
        let h = load("[sinks.hubspot]\ntoken = \"${HS}\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.token.expose_secret(), "pat-hunter2");
        assert_eq!(h.base_url, "https://api.hubapi.com");
        assert_eq!((h.batch_size, h.requests_per_10s), (100, 100));
        assert_eq!(h.order_id_property, "storefold_order_id");
        let shown = format!("{h:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("token: SecretBox<str>([REDACTED])"),
            "{shown}"
        );
        let t = load("[tenants.a]\n[sinks.hubspot.tenants.a]\ntoken = \"${HS}\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(t.tenants["a"].token.expose_secret(), "pat-hunter2");
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("\"a\": HubSpotTenantConfig { token: SecretBox<str>([REDACTED]) }"),
            "{shown}"
        );
        assert!(load("").unwrap().is_none());
    }

    #[test]
    fn unusable_settings_name_their_key() {
        for (toml, says) in [
            ("[sinks.hubspot]\n", "set token (one tenant)"),
            ("[sinks.hubspot]\ntoken = \" \"\n", "set token (one tenant)"),
            (
                "[tenants.a]\n[sinks.hubspot]\ntoken = \"t\"\n[sinks.hubspot.tenants.a]\ntoken = \"u\"\n",
                "exclusive",
            ),
            (
                "[tenants.a]\n[sinks.hubspot.tenants.a]\ntoken = \"\"\n",
                "sinks.hubspot.tenants.a.token",
            ),
            (
                "[sinks.hubspot]\ntoken = \"t\"\nbatch_size = 101\n",
                "1-100",
            ),
            ("[sinks.hubspot]\ntoken = \"t\"\nbatch_size = 0\n", "1-100"),
            (
                "[sinks.hubspot]\ntoken = \"t\"\nrequests_per_day = 0\n",
                "must be positive",
            ),
            (
                "[sinks.hubspot]\ntoken = \"t\"\ntokn = \"t\"\n",
                "unknown field `tokn`",
            ),
            (
                "[sinks.hubspot.tenants.a]\ntoken = \"t\"\nportal = 1\n",
                "sinks.hubspot.tenants",
            ),
        ] {
            let err = load(toml).expect_err(toml);
            assert!(err.contains(says), "{toml}: {err}");
        }
    }

    #[test]
    fn portals_never_mix_tenants() {
        let two = "[tenants.acme]\n[tenants.globex]\n";
        let err = load(&format!("{two}[sinks.hubspot]\ntoken = \"t\"\n")).unwrap_err();
        assert!(err.contains("2 tenants into one portal"), "{err}");
        let err = load(&format!(
            "{two}[sinks.hubspot.tenants.acme]\ntoken = \"t\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("no token for tenant(s) globex"), "{err}");
        assert!(load("[tenants.acme]\n[sinks.hubspot]\ntoken = \"t\"\n").is_ok());
        let both = load(&format!(
            "{two}[sinks.hubspot.tenants.acme]\ntoken = \"a\"\n[sinks.hubspot.tenants.globex]\ntoken = \"g\"\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(both.tenants.len(), 2);
    }
}
