//! `[schema_registry]`: a Confluent-compatible schema registry. When the section is
//! present, every topic value storefold writes is framed in Confluent's wire format
//! with the id the registry gives its schema, and every reader resolves those ids
//! with the registry; without it, values use Avro single-object encoding.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use storefold_codec::AvroCodec;
use storefold_codec::RecordKind;
use storefold_codec::registry::{
    Binding, RegistryAuth, RegistryClient, RegistryError, SubjectNameStrategy, bind_topics,
};

use super::{ConfigError, invalid};

/// `[schema_registry]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of the registry, e.g. `http://registry:8081` (no credentials in it).
    pub url: String,
    /// How subjects are named: `topic_name` (`<topic>-value`, Confluent's default)
    /// or `record_name` (the record's full name, e.g. `io.storefold.RawEvent`).
    #[serde(default)]
    pub subject_name_strategy: SubjectNameStrategy,
    /// Basic-auth user (Confluent Cloud: the API key). Needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (Confluent Cloud: the API secret); never logged.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// How long one request to the registry may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl SchemaRegistryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(invalid(
                "schema_registry.url must be an http(s) URL, e.g. http://registry:8081",
            ));
        }
        if self.url.contains('@') {
            return Err(invalid(
                "schema_registry.url must not hold credentials: set schema_registry.username and password",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(invalid(
                "schema_registry.username and password go together (basic auth)",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("schema_registry.timeout_ms must be positive"));
        }
        Ok(())
    }

    /// A client of the configured registry.
    pub fn client(&self) -> Result<RegistryClient, RegistryError> {
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(RegistryAuth {
                username: u.clone(),
                password: p.expose_secret().to_owned(),
            }),
            _ => None,
        };
        RegistryClient::new(&self.url, auth, Duration::from_millis(self.timeout_ms))
    }

    /// Registers the current schema of each `(topic, record)` with the registry
    /// and binds the ids into `codec` (see [`bind_topics`]); older versions the
    /// current schemas cannot read are logged as warnings.
    pub async fn bind(
        &self,
        client: &RegistryClient,
        codec: &mut AvroCodec,
        topics: &[(String, RecordKind)],
    ) -> Result<Binding, RegistryError> {
        let binding = bind_topics(client, self.subject_name_strategy, codec, topics).await?;
        for (id, why) in &binding.unreadable {
            tracing::warn!(
                schema_id = id,
                reason = %why,
                "an earlier schema registered for storefold's subjects cannot be read by this build's schema; data written with it will be dead-lettered"
            );
        }
        Ok(binding)
    }
}

impl SchemaRegistryConfig {
    /// [`bind`](Self::bind) for callers that are not async (a role's start-up):
    /// runs on a thread of its own with a runtime of its own, so it may be called
    /// from inside or outside a Tokio runtime. The error names the registry.
    pub fn bind_blocking(
        &self,
        codec: &mut AvroCodec,
        topics: &[(String, RecordKind)],
    ) -> Result<Binding, String> {
        let named = |e: RegistryError| format!("schema_registry ({}): {e}", self.url);
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("schema_registry: cannot start a runtime: {e}"))?;
                rt.block_on(async {
                    let client = self.client().map_err(named)?;
                    self.bind(&client, codec, topics).await.map_err(named)
                })
            })
            .join()
            .unwrap_or_else(|_| Err("schema_registry: the binding thread panicked".into()))
        })
    }
}
