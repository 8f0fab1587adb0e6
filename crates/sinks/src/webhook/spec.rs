//! The webhook sink in the registry.

use prometheus::Registry;
use storefold_runtime::config::Config;

use super::WebhookSink;
use crate::registry::{SinkSettings, SinkSpec, missing_section};
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

    fn settings(&self, config: &Config) -> Option<SinkSettings> {
        config.sinks.webhook.as_ref().map(|c| SinkSettings {
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
                .webhook
                .as_ref()
                .ok_or_else(|| missing_section(self.name()))?;
            Ok(Box::new(WebhookSink::new(cfg, registry)?) as BoxedSink)
        })
    }
}
