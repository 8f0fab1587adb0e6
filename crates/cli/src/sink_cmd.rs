//! `storefold sink <postgres|hubspot|webhook>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use prometheus::Registry;
use storefold_runtime::config::Config;
use storefold_sinks::Sink;
use storefold_sinks::hubspot::HubSpotSink;
use storefold_sinks::postgres::PostgresSink;
use storefold_sinks::runner::{RunOptions, run};
use storefold_sinks::webhook::WebhookSink;
use tokio::net::TcpListener;

/// The sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SinkName {
    /// Upserts customers and orders (and appends triggers) into PostgreSQL.
    Postgres,
    /// Upserts contacts and deals into HubSpot, within the portal's limits.
    Hubspot,
    /// POSTs projections and triggers as signed JSON to a URL.
    Webhook,
}

impl SinkName {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SinkName::Postgres => "postgres",
            SinkName::Hubspot => "hubspot",
            SinkName::Webhook => "webhook",
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct SinkArgs {
    /// Which sink to run; its `[sinks.<name>]` section must be configured.
    #[arg(value_enum)]
    name: SinkName,
    /// Address of /healthz, /readyz and /metrics (overrides sinks.listen).
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Stop once every assigned partition is written and nothing arrived for
    /// this many milliseconds (for batch runs and tests).
    #[arg(long, value_name = "MS")]
    exit_when_idle_ms: Option<u64>,
}

fn missing(name: SinkName) -> anyhow::Error {
    anyhow!(
        "sink {0} is not configured: add a [sinks.{0}] section to the configuration \
         (see storefold.example.toml)",
        name.as_str()
    )
}

/// Runner options of a sink's settings (`idle`: stop after that many ms idle).
pub(crate) fn options(
    group_id: &str,
    batch_size: usize,
    linger_ms: u64,
    idle: Option<u64>,
) -> RunOptions {
    RunOptions {
        group_id: group_id.to_string(),
        batch_size,
        linger: Duration::from_millis(linger_ms),
        exit_when_idle: idle.map(Duration::from_millis),
    }
}

pub(crate) async fn run_sink(mut config: Config, args: SinkArgs) -> Result<()> {
    if let Some(l) = args.listen {
        config.sinks.listen = l;
    }
    let name = args.name;
    let idle = args.exit_when_idle_ms;
    // The section first: a missing one is the likeliest mistake, and says so
    // before anything is bound or connected.
    let section_present = match name {
        SinkName::Postgres => config.sinks.postgres.is_some(),
        SinkName::Hubspot => config.sinks.hubspot.is_some(),
        SinkName::Webhook => config.sinks.webhook.is_some(),
    };
    if !section_present {
        return Err(missing(name));
    }
    let addr = config.sinks.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let registry = Registry::new();
    match name {
        SinkName::Postgres => {
            let cfg = config.sinks.postgres.clone().ok_or_else(|| missing(name))?;
            let sink = PostgresSink::connect(&cfg, &registry).await?;
            let opts = options(&cfg.group_id, cfg.batch_size, cfg.linger_ms, idle);
            serve(sink, &config, opts, registry, listener).await
        }
        SinkName::Hubspot => {
            let cfg = config.sinks.hubspot.clone().ok_or_else(|| missing(name))?;
            let sink = HubSpotSink::new(&cfg, &registry)?
                .with_max_retry_after(Duration::from_secs(config.sinks.max_retry_after_secs));
            let opts = options(&cfg.group_id, cfg.batch_size, cfg.linger_ms, idle);
            serve(sink, &config, opts, registry, listener).await
        }
        SinkName::Webhook => {
            let cfg = config.sinks.webhook.clone().ok_or_else(|| missing(name))?;
            let sink = WebhookSink::new(&cfg, &registry)?;
            let opts = options(&cfg.group_id, cfg.batch_size, cfg.linger_ms, idle);
            serve(sink, &config, opts, registry, listener).await
        }
    }
}

/// Serves /healthz, /readyz (ready while the runner runs) and /metrics on
/// `listener` and runs the sink until SIGTERM/SIGINT (or idle, when asked).
async fn serve<S: Sink>(
    sink: S,
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
