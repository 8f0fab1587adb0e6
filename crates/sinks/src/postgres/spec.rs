//! The PostgreSQL sink in the registry.

use prometheus::Registry;
use storefold_runtime::config::{Config, ConfigError};

use super::{PostgresSink, PostgresSinkConfig};
use crate::registry::{SinkSettings, SinkSpec, required};
use crate::{BoxFuture, BoxedSink, WriteError};

/// `[sinks.postgres]`: see [`PostgresSink`].
#[derive(Debug, Clone, Copy)]
pub struct PostgresSpec;

impl SinkSpec for PostgresSpec {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn about(&self) -> &'static str {
        "Upserts customers and orders (and appends triggers) into PostgreSQL"
    }

    fn example(&self) -> &'static str {
        "[sinks.postgres]\n\
         url = \"postgres://storefold@127.0.0.1:5432/storefold\"\n\
         schema = \"storefold\"\n\
         batch_size = 1000\n\
         linger_ms = 200\n\
         triggers = true\n\
         sslmode = \"prefer\"\n"
    }

    fn settings(&self, config: &Config) -> Result<Option<SinkSettings>, ConfigError> {
        Ok(
            PostgresSinkConfig::from_config(config)?.map(|c| SinkSettings {
                group_id: c.group_id,
                batch_size: c.batch_size,
                linger_ms: c.linger_ms,
            }),
        )
    }

    fn build<'a>(
        &'a self,
        config: &'a Config,
        registry: &'a Registry,
    ) -> BoxFuture<'a, Result<BoxedSink, WriteError>> {
        Box::pin(async move {
            let cfg = required(self.name(), PostgresSinkConfig::from_config(config))?;
            let sink = PostgresSink::connect(&cfg, registry).await?;
            Ok(Box::new(sink) as BoxedSink)
        })
    }
}
