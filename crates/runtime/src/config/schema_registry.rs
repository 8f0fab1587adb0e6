//! `[schema_registry]`.

use serde::Deserialize;

/// Confluent-compatible schema registry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    pub url: String,
}
