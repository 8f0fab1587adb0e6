//! `storefold sink <name>`: one sink of the registry
//! (`storefold_sinks::registry::SINKS`), alone in its process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use prometheus::Registry;
use storefold_runtime::config::Config;
use storefold_sinks::registry::{self, SinkSpec};
use storefold_sinks::runner::{RunOptions, run};
use storefold_sinks::{BoxedSink, Sink};
use tokio::net::TcpListener;

/// A sink's name on the command line: the choices (and their help) are the
/// registry's, so a new sink appears here by itself.
pub(crate) fn sink_parser() -> impl TypedValueParser<Value = &'static dyn SinkSpec> {
    PossibleValuesParser::new(
        registry::SINKS
            .iter()
            .map(|s| PossibleValue::new(s.name()).help(s.about())),
    )
    .try_map(|name| registry::find(&name).ok_or_else(|| format!("no sink named {name}")))
}

#[derive(Debug, clap::Args)]
pub(crate) struct SinkArgs {
    /// Which sink to run; its `[sinks.<name>]` section must be configured.
    #[arg(value_parser = sink_parser(), value_name = "NAME")]
    name: &'static dyn SinkSpec,
    /// Address of /healthz, /readyz and /metrics (overrides sinks.listen).
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Stop once every assigned partition is written and nothing arrived for
    /// this many milliseconds (for batch runs and tests).
    #[arg(long, value_name = "MS")]
    exit_when_idle_ms: Option<u64>,
}

pub(crate) async fn run_sink(mut config: Config, args: SinkArgs) -> Result<()> {
    if let Some(l) = args.listen {
        config.sinks.listen = l;
    }
    let spec = args.name;
    let idle = args.exit_when_idle_ms.map(Duration::from_millis);
    // The section first: a missing one is the likeliest mistake, and says so
    // before anything is bound or connected.
    let settings = spec
        .settings(&config)?
        .ok_or_else(|| anyhow!(registry::not_configured(spec.name())))?;
    let addr = config.sinks.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let registry = Registry::new();
    let sink = spec.build(&config, &registry).await?;
    serve(
        sink,
        &config,
        settings.run_options(idle),
        registry,
        listener,
    )
    .await
}

/// Serves /healthz, /readyz (ready while the runner runs) and /metrics on
/// `listener` and runs the sink until SIGTERM/SIGINT (or idle, when asked).
async fn serve(
    sink: BoxedSink,
    config: &Config,
    opts: RunOptions,
    registry: Registry,
    listener: TcpListener,
) -> Result<()> {
    let name = sink.name();
    let running = Arc::new(AtomicBool::new(true));
    let ready: storefold_runtime::server::ReadyCheck = {
        let running = running.clone();
        Arc::new(move || {
            let running = running.clone();
            Box::pin(async move {
                if running.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("the sink is not running".to_string())
                }
            })
        })
    };
    let app = storefold_runtime::server::ops_router(registry.clone(), ready);
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(sink = name, %local, group = %opts.group_id, "sink listening");
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let shutdown = storefold_runtime::shutdown::on_signal();
    let result = run(sink, config, opts, &registry, shutdown).await;
    running.store(false, Ordering::SeqCst);
    let _ = stop_http.send(());
    let _ = server.await;
    let summary = result?;
    tracing::info!(
        sink = name,
        written = summary.written,
        rejected = summary.rejected,
        batches = summary.batches,
        "sink stopped"
    );
    Ok(())
}
