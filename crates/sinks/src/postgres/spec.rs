//! The PostgreSQL sink in the registry.

use prometheus::Registry;
use storefold_runtime::config::Config;

use super::PostgresSink;
use crate::registry::{SinkSettings, SinkSpec, missing_section};
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

    fn settings(&self, config: &Config) -> Option<SinkSettings> {
        config.sinks.postgres.as_ref().map(|c| SinkSettings {
            group_id: c.group_id.clone(),
            batch_size: c.batch_size,
            linger_ms: c.linger_ms,
        })
    }

    fn build<'a>(
        &'a self,
        config: &'a Config,
        registry: &'a Registry,
    ) -> BoxFuture<'a, Result<BoxedSink, WriteError>> {
        Box::pin(async move {
            let cfg = config
                .sinks
                .postgres
                .as_ref()
                .ok_or_else(|| missing_section(self.name()))?;
            let sink = PostgresSink::connect(cfg, registry).await?;
            Ok(Box::new(sink) as BoxedSink)
        })
    }
}
