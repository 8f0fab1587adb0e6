//! The HubSpot sink in the registry.

use std::time::Duration;

use prometheus::Registry;
use storefold_runtime::config::Config;

use super::HubSpotSink;
use crate::registry::{SinkSettings, SinkSpec, missing_section};
use crate::{BoxFuture, BoxedSink, WriteError};

/// `[sinks.hubspot]`: see [`HubSpotSink`].
#[derive(Debug, Clone, Copy)]
pub struct HubSpotSpec;

impl SinkSpec for HubSpotSpec {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn about(&self) -> &'static str {
        "Upserts contacts and deals into HubSpot, within the portal's limits"
    }

    fn settings(&self, config: &Config) -> Option<SinkSettings> {
        config.sinks.hubspot.as_ref().map(|c| SinkSettings {
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
                .hubspot
                .as_ref()
                .ok_or_else(|| missing_section(self.name()))?;
            let sink = HubSpotSink::new(cfg, registry)?
                .with_max_retry_after(Duration::from_secs(config.sinks.max_retry_after_secs));
            Ok(Box::new(sink) as BoxedSink)
        })
    }
}
