//! `storefold run`: every role in one process against the configured Kafka.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use storefold_processor::Mode;
use storefold_runtime::config::Config;
use tokio::net::TcpListener;

use storefold_sinks::registry::{self, SinkSpec};

use crate::roles::{Roles, Sinks};
use crate::sink_cmd::sink_parser;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Address of the public HTTP: webhooks, touches, /healthz and /readyz
    /// (default: ingest.listen).
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Address of the operator HTTP: the query API, /ui, /v1/tenants and
    /// /metrics behind [[operator.tokens]], with /healthz and /readyz
    /// (default: operator.listen).
    #[arg(long, env = "STOREFOLD_OPERATOR_LISTEN", value_name = "ADDR")]
    operator_listen: Option<SocketAddr>,
    /// Where the processor's tasks keep their RocksDB (overrides processor.state_dir).
    #[arg(long, env = "STOREFOLD_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Run only these sinks (repeatable; each needs its `[sinks.<name>]` section).
    /// Default: every sink the configuration has a section for.
    #[arg(
        long = "sink",
        value_parser = sink_parser(),
        value_name = "NAME",
        conflicts_with = "no_sinks"
    )]
    sinks: Vec<&'static dyn SinkSpec>,
    /// Run no sink (the projection topics are still written).
    #[arg(long)]
    no_sinks: bool,
}

/// The sinks `run` starts: the ones named, else every configured one.
fn chosen(config: &Config, args: &RunArgs) -> Result<Sinks> {
    if args.no_sinks {
        return Ok(Sinks::default());
    }
    if args.sinks.is_empty() {
        return Ok(Sinks(registry::configured(config)));
    }
    for spec in &args.sinks {
        let name = spec.name();
        if config.sinks.section(name).is_none() {
            bail!("--sink {name}: {}", registry::not_configured(name));
        }
    }
    // Each once, in the registry's order.
    Ok(Sinks(
        registry::SINKS
            .iter()
            .copied()
            .filter(|s| args.sinks.iter().any(|a| a.name() == s.name()))
            .collect(),
    ))
}

pub(crate) async fn run(mut config: Config, args: RunArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if config.tenants.is_empty() {
        bail!(
            "no tenants are configured: add a [tenants.<id>] section with provider secrets to \
             the configuration"
        );
    }
    let sinks = chosen(&config, &args)?;
    if let Some(l) = args.listen {
        config.ingest.listen = l;
    }
    if let Some(d) = &args.state_dir {
        config.processor.state_dir = d.clone();
    }
    if let Some(l) = args.operator_listen {
        config.operator.listen = l;
    }
    config
        .operator
        .check_exposure(config.operator.listen, "operator.listen")
        .map_err(|e| anyhow!(e))?;
    let addr = config.ingest.listen;
    let http = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = http.local_addr().context("listen address")?;
    let addr = config.operator.listen;
    let operator = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (operator.listen)"))?;
    let operator_local = operator.local_addr().context("operator listen address")?;
    let names = sinks.names();
    let roles = Roles::start(&config, http, operator, Mode::Group, sinks).await?;
    tracing::info!(
        %local,
        operator = %operator_local,
        group = %config.processor.group_id,
        state_dir = %config.processor.state_dir.display(),
        sinks = ?names,
        "storefold run: ingest, processor and sinks serving"
    );
    let shutdown = storefold_runtime::shutdown::on_signal();
    let ended = tokio::select! {
        _ = shutdown.cancelled() => None,
        who = roles.stopped() => Some(who),
    };
    if ended.is_none() {
        tracing::info!("stopping: draining the ingest, then the processor and the sinks");
    }
    let grace = Duration::from_secs(config.ingest.shutdown_timeout_secs);
    let result = roles.shutdown(grace).await;
    match ended {
        None => result,
        Some(who) => Err(result
            .err()
            .unwrap_or_else(|| anyhow!("{who} stopped unexpectedly"))),
    }
}
