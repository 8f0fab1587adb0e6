//! The HubSpot sink in the registry.

use std::time::Duration;

use prometheus::Registry;
use storefold_runtime::config::{Config, ConfigError};

use super::{HubSpotSink, HubSpotSinkConfig};
use crate::registry::{SinkSettings, SinkSpec, required};
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

    fn example(&self) -> &'static str {
        "[sinks.hubspot]\n\
         token = \"pat-na1-00000000-0000-0000-0000-000000000000\"\n\
         batch_size = 100\n\
         requests_per_10s = 100\n\
         requests_per_day = 250000\n\
         order_id_property = \"storefold_order_id\"\n\
         deal_pipeline = \"default\"\n\
         deal_stages = { pending = \"contractsent\", completed = \"closedwon\" }\n\
         [sinks.hubspot.contact_properties]\n\
         lifetime_value = \"storefold_lifetime_value\"\n\
         orders_count = \"storefold_orders_count\"\n"
    }

    fn settings(&self, config: &Config) -> Result<Option<SinkSettings>, ConfigError> {
        Ok(
            HubSpotSinkConfig::from_config(config)?.map(|c| SinkSettings {
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
            let cfg = required(self.name(), HubSpotSinkConfig::from_config(config))?;
            let sink = HubSpotSink::new(&cfg, registry)?
                .with_max_retry_after(Duration::from_secs(config.sinks.max_retry_after_secs));
            Ok(Box::new(sink) as BoxedSink)
        })
    }
}
