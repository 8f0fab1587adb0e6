//! The webhook sink in the registry.

use prometheus::Registry;
use storefold_runtime::config::{Config, ConfigError};

use super::{WebhookSink, WebhookSinkConfig};
use crate::registry::{SinkSettings, SinkSpec, required};
use crate::{BoxFuture, BoxedSink, WriteError};

/// `[sinks.webhook]`: see [`WebhookSink`].
#[derive(Debug, Clone, Copy)]
pub struct WebhookSpec;

impl SinkSpec for WebhookSpec {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn about(&self) -> &'static str {
        "POSTs projections and triggers as signed JSON to a URL"
    }

    fn example(&self) -> &'static str {
        "[sinks.webhook]\n\
         url = \"https://crm-bridge.example.com/storefold\"\n\
         secret = \"a-key-shared-with-the-receiver\"\n\
         streams = [\"customers\", \"orders\", \"triggers\"]\n\
         batch_size = 100\n\
         linger_ms = 200\n\
         timeout_ms = 10000\n"
    }

    fn settings(&self, config: &Config) -> Result<Option<SinkSettings>, ConfigError> {
        Ok(
            WebhookSinkConfig::from_config(config)?.map(|c| SinkSettings {
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
            let cfg = required(self.name(), WebhookSinkConfig::from_config(config))?;
            Ok(Box::new(WebhookSink::new(&cfg, registry)?) as BoxedSink)
        })
    }
}
