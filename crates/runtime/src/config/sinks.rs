//! `[sinks]`: the settings every sink shares, and each sink's own section kept
//! as a raw TOML table.
//!
//! The sections' types live with their sinks (`storefold-sinks`, a crate above
//! this one), which parse and check them from [`SinksConfig::section`]; this
//! crate only knows that a table under `[sinks]` is some sink's section.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use super::{ConfigError, invalid};

/// The sinks: settings every sink shares, and one optional section per sink.
/// A sink runs (`storefold sink <name>`) only when its section is present.
///
/// Any table under `[sinks]` is kept in [`sections`](Self::sections) by name;
/// which names are sinks, and what their sections hold, is decided by the
/// sinks' registry (`storefold_sinks::registry::check`). Any other key must be
/// one of the shared settings below.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Address of a sink's /healthz, /readyz and /metrics.
    pub listen: SocketAddr,
    /// First retry delay of a failed write; doubled per attempt, with jitter.
    pub retry_initial_ms: u64,
    /// Longest delay between two retries (a `Retry-After` above it is honoured).
    pub retry_max_ms: u64,
    /// Consecutive failed writes that open the circuit breaker.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit waits before one trial write (half-open).
    pub circuit_open_ms: u64,
    /// The longest a destination's `Retry-After` (or a HubSpot quota pause) may
    /// hold a sink before the next attempt: a longer one is cut to this.
    pub max_retry_after_secs: u64,
    /// `[sinks.<name>]` tables by name, as written (after `${VAR}` substitution
    /// and `STOREFOLD_SINKS__<NAME>__<KEY>` overrides). They may hold
    /// credentials, so `Debug` shows only their names.
    #[serde(skip)]
    pub sections: BTreeMap<String, toml::Table>,
}

impl Default for SinksConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            retry_initial_ms: 200,
            retry_max_ms: 30_000,
            circuit_failure_threshold: 5,
            circuit_open_ms: 30_000,
            max_retry_after_secs: 900,
            sections: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for SinksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinksConfig")
            .field("listen", &self.listen)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("circuit_failure_threshold", &self.circuit_failure_threshold)
            .field("circuit_open_ms", &self.circuit_open_ms)
            .field("max_retry_after_secs", &self.max_retry_after_secs)
            .field("sections", &self.sections.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The shared settings' keys: any other non-table key under `[sinks]` is a typo.
const SHARED_KEYS: [&str; 6] = [
    "listen",
    "retry_initial_ms",
    "retry_max_ms",
    "circuit_failure_threshold",
    "circuit_open_ms",
    "max_retry_after_secs",
];

/// Reads `[sinks]` (Config's `sinks` field): the tables are kept as sections,
/// the other keys are the shared settings.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SinksConfig, D::Error> {
    let table = toml::Table::deserialize(deserializer)?;
    SinksConfig::from_table(table).map_err(serde::de::Error::custom)
}

impl SinksConfig {
    /// Splits `[sinks]` into its shared settings and its sections (the tables).
    fn from_table(table: toml::Table) -> Result<Self, String> {
        let mut sections = BTreeMap::new();
        let mut shared = toml::Table::new();
        for (key, value) in table {
            match value {
                toml::Value::Table(t) => {
                    sections.insert(key, t);
                }
                other if SHARED_KEYS.contains(&key.as_str()) => {
                    shared.insert(key, other);
                }
                _ => {
                    return Err(format!(
                        "unknown setting sinks.{key} (the shared settings are {}; a sink's own \
                         settings go in its [sinks.<name>] section)",
                        SHARED_KEYS.join(", ")
                    ));
                }
            }
        }
        let mut config: SinksConfig = serde_path_to_error::deserialize(toml::Value::Table(shared))
            .map_err(|e| {
                let key = e.path().to_string();
                format!("sinks.{key}: {}", e.into_inner())
            })?;
        config.sections = sections;
        Ok(config)
    }

    /// The raw `[sinks.<name>]` table, if the configuration has one.
    pub fn section(&self, name: &str) -> Option<&toml::Table> {
        self.sections.get(name)
    }

    /// Checks the shared settings; the sections are the sinks' to check.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err(invalid(
                "sinks.retry_initial_ms must be positive and at most sinks.retry_max_ms",
            ));
        }
        if self.circuit_failure_threshold == 0 || self.circuit_open_ms == 0 {
            return Err(invalid(
                "sinks.circuit_failure_threshold and circuit_open_ms must be positive",
            ));
        }
        if self.max_retry_after_secs == 0 {
            return Err(invalid("sinks.max_retry_after_secs must be positive"));
        }
        Ok(())
    }
}

/// A URL with its password (and any query string, which may hold tokens) hidden.
pub fn redact_url(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or_default();
    match (no_query.find("://"), no_query.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &no_query[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{user}:<redacted>{}",
                &no_query[..scheme + 3],
                &no_query[at..]
            )
        }
        _ => no_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_key_is_a_setting() {
        for key in SHARED_KEYS {
            let value = if key == "listen" {
                toml::Value::String("127.0.0.1:9000".into())
            } else {
                toml::Value::Integer(7)
            };
            let table = toml::Table::from_iter([(key.to_string(), value)]);
            SinksConfig::from_table(table).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
