//! storefold-runtime: the shell every role shares — configuration, Kafka clients and
//! topic admin, the Prometheus registry, logging, the `/healthz` `/readyz`
//! `/metrics` endpoints and graceful shutdown.

pub mod config;
pub mod kafka;
pub mod metrics;
pub mod net;
pub mod operator;
pub mod rawkeys;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;
