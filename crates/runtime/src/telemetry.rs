//! Logging with `tracing`: human-readable text or one JSON object per line.
//!
//! Logs never carry secrets or bodies: handlers log ids, sizes and outcomes only, and
//! the config types redact their secrets in `Debug`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` wins over `level`. Calling it twice is
/// harmless (the second call does nothing), so tests may call it freely.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.with_target(true).try_init(),
    };
}
