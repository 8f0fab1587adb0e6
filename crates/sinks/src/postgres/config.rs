//! `[sinks.postgres]`: the PostgreSQL sink's section.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use storefold_runtime::config::{Config, ConfigError, redact_url};

use crate::registry::parse_section;

/// `[sinks.postgres]`: upserts projections into PostgreSQL (schema per §3).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// libpq-style URL, e.g. `postgres://storefold:${PGPASSWORD}@db:5432/crm`.
    /// It may hold a password: `Debug` shows it with the password redacted.
    pub url: SecretString,
    /// Schema holding the tables (created by the migrations).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Consumer group of this sink.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Records per write (one upsert statement per table and batch).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// How long a batch waits to fill before it is written anyway.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Also append `triggers` to the `triggers` table.
    #[serde(default = "default_true")]
    pub triggers: bool,
    /// TLS: `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (as
    /// libpq). Overrides an `sslmode` in `url`; default: the URL's, else `prefer`.
    #[serde(default)]
    pub sslmode: Option<String>,
    /// PEM file of the certificate authorities that verify the server
    /// (`verify-ca`, `verify-full`); default: the system's roots. Overrides an
    /// `sslrootcert` in `url`.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
}

impl fmt::Debug for PostgresSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("schema", &self.schema)
            .field("group_id", &self.group_id)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("triggers", &self.triggers)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .finish()
    }
}

fn default_schema() -> String {
    "storefold".into()
}
fn default_group() -> String {
    "storefold-sink-postgres".into()
}
fn default_batch() -> usize {
    1_000
}
fn default_linger() -> u64 {
    200
}
fn default_true() -> bool {
    true
}

impl PostgresSinkConfig {
    /// The settings of a section holding only `url`: every other key at its
    /// default.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            schema: default_schema(),
            group_id: default_group(),
            batch_size: default_batch(),
            linger_ms: default_linger(),
            triggers: true,
            sslmode: None,
            sslrootcert: None,
        }
    }

    /// The section of `config`, parsed and checked; `None` without one.
    pub fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        parse_section(config, "postgres", |c: &Self| c.validate())
    }

    /// What deserialisation cannot check: a URL, a schema name that is safe in
    /// SQL, a positive batch and a known `sslmode`.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.expose_secret().trim().is_empty() {
            return Err("sinks.postgres.url is empty".into());
        }
        if self.schema.is_empty()
            || !self
                .schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err("sinks.postgres.schema may only hold a-z, 0-9 and '_'".into());
        }
        if self.batch_size == 0 {
            return Err("sinks.postgres.batch_size must be positive".into());
        }
        if let Some(mode) = &self.sslmode
            && !matches!(
                mode.as_str(),
                "disable" | "prefer" | "require" | "verify-ca" | "verify-full"
            )
        {
            return Err(format!(
                "sinks.postgres.sslmode: {mode:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<Option<PostgresSinkConfig>, String> {
        let config = Config::from_toml_str(toml, [("PGPASSWORD".to_string(), "pa55".to_string())])
            .map_err(|e| e.to_string())?;
        PostgresSinkConfig::from_config(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_the_password_kept_out_of_debug() {
        let pg = load("[sinks.postgres]\nurl = \"postgres://sf:${PGPASSWORD}@db:5432/crm\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(pg.url.expose_secret(), "postgres://sf:pa55@db:5432/crm");
        let defaults = PostgresSinkConfig::with_url(pg.url.expose_secret());
        assert_eq!(format!("{pg:?}"), format!("{defaults:?}"));
        assert_eq!(
            (pg.schema.as_str(), pg.batch_size, pg.linger_ms, pg.triggers),
            ("storefold", 1000, 200, true)
        );
        assert_eq!(pg.group_id, "storefold-sink-postgres");
        let shown = format!("{pg:?}");
        assert!(!shown.contains("pa55"), "{shown}");
        assert!(shown.contains("sf:<redacted>@db:5432/crm"), "{shown}");
        assert!(load("").unwrap().is_none());
    }

    #[test]
    fn unusable_settings_name_their_key() {
        for (extra, says) in [
            ("", "sinks.postgres: missing field `url`"),
            ("url = \" \"", "sinks.postgres.url is empty"),
            (
                "url = \"postgres://db/crm\"\nschema = \"CRM\"",
                "sinks.postgres.schema",
            ),
            (
                "url = \"postgres://db/crm\"\nschema = \"\"",
                "sinks.postgres.schema",
            ),
            (
                "url = \"postgres://db/crm\"\nbatch_size = 0",
                "sinks.postgres.batch_size",
            ),
            (
                "url = \"postgres://db/crm\"\nsslmode = \"allow\"",
                "sinks.postgres.sslmode",
            ),
            (
                "url = \"postgres://db/crm\"\nbatch_size = \"many\"",
                "sinks.postgres.batch_size",
            ),
            (
                "url = \"postgres://db/crm\"\nshema = \"x\"",
                "unknown field `shema`",
            ),
        ] {
            let err = load(&format!("[sinks.postgres]\n{extra}\n")).expect_err(extra);
            assert!(err.contains(says), "{extra}: {err}");
        }
    }
}
