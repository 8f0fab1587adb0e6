//! `[sinks.webhook]`: the webhook sink's section.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use storefold_runtime::config::{Config, ConfigError, redact_url};

use crate::registry::parse_section;

/// `[sinks.webhook]`: signed JSON POSTs of projections and triggers.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Receiver URL.
    pub url: String,
    /// HMAC-SHA256 key for the signature header (never in `Debug` output).
    pub secret: SecretString,
    /// Consumer group of this sink.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Which topics to forward: any of `customers`, `orders`, `triggers`
    /// (`payouts` is refused: only the PostgreSQL sink writes payouts).
    #[serde(default = "default_streams")]
    pub streams: Vec<String>,
    /// Records per POST (the body is a JSON array).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// How long a batch waits to fill before it is sent anyway.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Per-request timeout.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

impl fmt::Debug for WebhookSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret)
            .field("group_id", &self.group_id)
            .field("streams", &self.streams)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn default_group() -> String {
    "storefold-sink-webhook".into()
}
fn default_streams() -> Vec<String> {
    vec!["customers".into(), "orders".into(), "triggers".into()]
}
fn default_batch() -> usize {
    100
}
fn default_linger() -> u64 {
    200
}
fn default_timeout() -> u64 {
    10_000
}

impl WebhookSinkConfig {
    /// The section of `config`, parsed and checked; `None` without one.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        parse_section(config, "webhook", |c: &Self| c.validate())
    }

    /// What deserialisation cannot check: the URL's scheme, a usable secret,
    /// positive sizes and known streams.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err("sinks.webhook.url must be an http(s) URL".into());
        }
        if self.secret.expose_secret().trim().is_empty() {
            return Err(
                "sinks.webhook.secret is missing or empty: receivers could not verify the sink's requests"
                    .into(),
            );
        }
        if self.batch_size == 0 || self.timeout_ms == 0 {
            return Err("sinks.webhook.batch_size and timeout_ms must be positive".into());
        }
        if self.streams.is_empty() {
            return Err("sinks.webhook.streams is empty".into());
        }
        for s in &self.streams {
            if s == "payouts" {
                return Err(super::PAYOUTS_NOT_FORWARDED.into());
            }
            if !matches!(s.as_str(), "customers" | "orders" | "triggers") {
                return Err(format!(
                    "sinks.webhook.streams: {s:?} is not one of customers, orders, triggers"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Option<WebhookSinkConfig>, String> {
        let config = Config::from_toml_str(toml, [("HOOK".to_string(), "whk-hunter2".to_string())])
            .map_err(|e| e.to_string())?;
        WebhookSinkConfig::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn the_secret_is_a_secret() {
        let w = load("[sinks.webhook]\nurl = \"https://hooks.example/in\"\nsecret = \"${HOOK}\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(w.secret.expose_secret(), "whk-hunter2");
        assert_eq!(w.group_id, "storefold-sink-webhook");
        assert_eq!(w.streams, ["customers", "orders", "triggers"]);
        assert!(!format!("{w:?}").contains("hunter2"));
        let err = load("[sinks.webhook]\nurl = \"https://hooks.example/in\"\nsecret = \" \"\n")
            .unwrap_err();
        assert!(err.contains("sinks.webhook.secret"), "{err}");
        assert_eq!(load("").unwrap().map(|w| w.url), None);
    }

    #[test]
    fn unusable_settings_name_their_key() {
        let ok = "url = \"https://hooks.example/in\"\nsecret = \"s\"\n";
        for (extra, says) in [
            ("", "sinks.webhook: missing field `url`"),
            ("url = \"ftp://x\"\nsecret = \"s\"", "http(s) URL"),
            (
                "url = \"https://x\"",
                "sinks.webhook: missing field `secret`",
            ),
            (
                "url = \"https://x\"\nsecret = \"s\"\nbatch_size = 0",
                "batch_size",
            ),
            (
                "url = \"https://x\"\nsecret = \"s\"\ntimeout_ms = 0",
                "timeout_ms",
            ),
            (
                "url = \"https://x\"\nsecret = \"s\"\nstreams = []",
                "streams is empty",
            ),
            (
                "url = \"https://x\"\nsecret = \"s\"\nstreams = [\"carts\"]",
                "\"carts\" is not one of",
            ),
            (
                "url = \"https://x\"\nsecret = \"s\"\nstreams = [\"orders\", \"payouts\"]",
                "\"payouts\" is not one of customers, orders, triggers (payouts go to the PostgreSQL sink only)",
            ),
            (
                "url = \"https://x\"\nsecret = \"s\"\nbatch_sise = 5",
                "unknown field `batch_sise`",
            ),
        ] {
            let err = load(&format!("[sinks.webhook]\n{extra}\n")).expect_err(extra);
            assert!(err.contains(says), "{extra}: {err}");
        }
        assert!(load(&format!("[sinks.webhook]\n{ok}")).is_ok());
    }
}
