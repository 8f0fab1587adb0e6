//! `storefold process` and `storefold replay`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use storefold_processor::Mode;
use storefold_runtime::config::Config;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub(crate) struct ProcessArgs {
    /// Address of the query API, /ui, /v1/tenants and /metrics (behind
    /// [[operator.tokens]]), /healthz and /readyz (overrides processor.listen).
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where the tasks keep their RocksDB (overrides processor.state_dir).
    #[arg(long, env = "STOREFOLD_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Stop once every owned task has folded its raw partitions to their end
    /// (for batch runs and tests).
    #[arg(long)]
    exit_when_caught_up: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Address of /healthz, /readyz and /metrics (behind [[operator.tokens]])
    /// while replaying.
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where the tasks keep their RocksDB (overrides processor.state_dir).
    #[arg(long, env = "STOREFOLD_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Keep running as a processor of every partition after the replay caught up
    /// (default: exit; then start `storefold process` instances).
    #[arg(long)]
    keep_running: bool,
}

fn apply(config: &mut Config, listen: Option<SocketAddr>, state_dir: Option<PathBuf>) {
    if let Some(l) = listen {
        config.processor.listen = l;
    }
    if let Some(d) = state_dir {
        config.processor.state_dir = d;
    }
}

async fn bind(config: &Config) -> Result<TcpListener> {
    let addr = config.processor.listen;
    // processor.listen is this role's operator listener.
    config
        .operator
        .check_exposure(addr, "processor.listen")
        .map_err(|e| anyhow::anyhow!(e))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

pub(crate) async fn process(mut config: Config, args: ProcessArgs) -> Result<()> {
    apply(&mut config, args.listen, args.state_dir);
    let listener = bind(&config).await?;
    let mut opts = crate::processor_options(&config, Mode::Group);
    opts.exit_when_caught_up = args.exit_when_caught_up;
    let shutdown = storefold_runtime::shutdown::on_signal();
    let summary = storefold_processor::serve(&config, listener, opts, shutdown).await?;
    tracing::info!(
        events = summary.events,
        batches = summary.batches,
        restarts = summary.task_restarts,
        "processor stopped"
    );
    Ok(())
}

pub(crate) async fn replay(mut config: Config, args: ReplayArgs) -> Result<()> {
    apply(&mut config, args.listen, args.state_dir);
    let listener = bind(&config).await?;
    let mut opts = crate::processor_options(&config, Mode::All);
    opts.reset = true;
    opts.exit_when_caught_up = !args.keep_running;
    tracing::warn!(
        "replay: every task's state is cleared and rebuilt from the raw topics with a new \
         projection generation; stop the other processor instances first"
    );
    let shutdown = storefold_runtime::shutdown::on_signal();
    let summary = storefold_processor::serve(&config, listener, opts, shutdown).await?;
    eprintln!(
        "replay done: {} raw events folded in {} batches; projections carry the new generation",
        summary.events, summary.batches
    );
    Ok(())
}
