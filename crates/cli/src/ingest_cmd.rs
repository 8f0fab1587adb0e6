//! `storefold ingest`.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use storefold_runtime::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct IngestArgs {
    /// Address to listen on (overrides ingest.listen).
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub(crate) async fn run(mut config: Config, args: IngestArgs) -> Result<()> {
    if let Some(listen) = args.listen {
        config.ingest.listen = listen;
    }
    if config.tenants.is_empty() {
        bail!(
            "no tenants are configured: add a [tenants.<id>] section with provider secrets to the configuration"
        );
    }
    let shutdown = storefold_runtime::shutdown::on_signal();
    storefold_ingest::run(&config, shutdown).await?;
    Ok(())
}
