//! `storefold dev`: every role in one process around an embedded broker
//! (librdkafka's mock cluster, from storefold-testkit), and a sample history
//! sent through the real HTTP ingest with real signatures, summarised once
//! folded.
//!
//! `broker` starts the embedded broker and forwards a local port to it;
//! `banner` prints what runs where; `send` posts the sample and `wait` waits
//! for the processor (and the PostgreSQL sink) to fold it; `summary` prints
//! and checks the Customer 360 of every sample customer.

mod banner;
mod broker;
mod send;
mod summary;
mod wait;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use storefold_processor::Mode;
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::topic_specs;
use storefold_sinks::postgres::PostgresSinkConfig;
use storefold_sinks::registry;
use tokio::net::TcpListener;

use crate::dev_sample::{self, TENANT};
use crate::roles::{Roles, Sinks};

/// Partitions of every topic on the embedded broker.
const DEV_PARTITIONS: i32 = 3;
/// Where `dev` keeps the processor's state (wiped at every start).
const STATE_DIR: &str = ".storefold/dev-state";
/// How long the sample may take to fold.
const FOLD_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Address of the public HTTP: the ingest (webhooks, touches), /healthz
    /// and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Address of the operator HTTP: the query API, the Inspector (/ui) and
    /// /metrics, behind the dev token printed at start.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    operator_listen: SocketAddr,
    /// Local port where other Kafka tools (kcat, …) reach the embedded broker
    /// (0: any free port).
    #[arg(long, default_value_t = 9092, value_name = "PORT")]
    broker_port: u16,
    /// Do not send the bundled sample history.
    #[arg(long)]
    no_sample: bool,
    /// Send the sample, wait until it is folded, print the summary and exit.
    #[arg(long, conflicts_with = "no_sample")]
    exit_after_sample: bool,
    /// Also run the PostgreSQL sink, writing to this database
    /// (settings from [sinks.postgres] when present).
    #[arg(
        long,
        env = "STOREFOLD_POSTGRES_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    postgres_url: Option<String>,
}

/// The configuration `dev` starts from: `--config`, else the example
/// configuration bundled with the binary (tenant `demo` and its demo secrets).
pub(crate) fn config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p, std::env::vars())
            .and_then(crate::check_sinks)
            .with_context(|| format!("configuration {}", p.display())),
        None => Config::from_toml_str(
            include_str!("../../../storefold.example.toml"),
            std::env::vars(),
        )
        .and_then(crate::check_sinks)
        .context("the bundled example configuration"),
    }
}

/// Runs `storefold dev`: the embedded broker and its topics, every role, the
/// sample when asked, until Ctrl-C (or the summary with `--exit-after-sample`).
pub(crate) async fn run(mut config: Config, args: DevArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sample = (!args.no_sample).then(dev_sample::sample);
    if let Some(sample) = &sample {
        check_tenant(&config, sample)?;
    }

    // Fresh state: the embedded broker's log dies with the process, and a state
    // built from a log that no longer exists must not be resumed.
    let state_dir = PathBuf::from(STATE_DIR);
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("clearing {}", state_dir.display()))?;
    }
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    config.processor.state_dir = state_dir.clone();
    config.kafka.partitions = DEV_PARTITIONS;
    // Security settings are for a real cluster; the embedded one speaks plaintext.
    config.kafka.properties.clear();
    config.ingest.listen = args.listen;
    // The sample is a history dated 2025 whose visitor identifies by a beacon
    // email: take its touches' dates as they are, and its emails as a shop that
    // accepts them would (README, "The public endpoints under abuse").
    config.ingest.collect.max_past_secs = u64::MAX;
    if let Some(t) = config.tenants.get_mut(TENANT) {
        t.collect_identify = true;
    }
    config.operator.listen = args.operator_listen;
    // An admin token for this run only, printed in the banner.
    let token = storefold_runtime::operator::new_token();
    config
        .operator
        .tokens
        .push(storefold_runtime::operator::TokenConfig {
            name: "storefold-dev".into(),
            sha256: storefold_runtime::operator::hash_token(&token),
            tenants: Vec::new(),
            admin: true,
            metrics: false,
        });
    config.validate().context("the operator token of dev")?;

    let topics: Vec<(String, i32)> = topic_specs(&config.kafka, &registry::names())
        .into_iter()
        .map(|s| (s.name, s.partitions))
        .collect();
    let broker = tokio::task::spawn_blocking(move || broker::start(&topics))
        .await
        .context("starting the embedded broker")??;
    config.kafka.bootstrap_servers = broker.bootstrap().to_string();

    let forwarder = TcpListener::bind(("127.0.0.1", args.broker_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} for the embedded broker (is a Kafka already running \
                 there?); choose another with --broker-port, 0 for any free port",
                args.broker_port
            )
        })?;
    let broker_addr = forwarder.local_addr().context("broker port")?;
    let http = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (choose another with --listen)",
            args.listen
        )
    })?;
    let mut local = http.local_addr().context("listen address")?;
    if local.ip().is_unspecified() {
        local.set_ip([127, 0, 0, 1].into());
    }
    let operator = TcpListener::bind(args.operator_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (choose another with --operator-listen)",
                args.operator_listen
            )
        })?;
    let mut operator_local = operator.local_addr().context("operator listen address")?;
    if operator_local.ip().is_unspecified() {
        operator_local.set_ip([127, 0, 0, 1].into());
    }
    let access = Access {
        base: format!("http://{operator_local}"),
        token,
    };

    let shutdown = storefold_runtime::shutdown::on_signal();
    let stop = shutdown.child_token();
    tokio::spawn(broker::forward(
        forwarder,
        broker.bootstrap().to_string(),
        stop.clone(),
    ));

    let mut sinks = Sinks::default();
    let mut pg_group = None;
    if let Some(url) = &args.postgres_url {
        // The URL goes into the section (made when missing), whose other
        // settings keep their values or defaults.
        config
            .sinks
            .sections
            .entry("postgres".into())
            .or_default()
            .insert("url".into(), url.clone().into());
        let cfg = PostgresSinkConfig::from_config(&config)
            .context("PostgreSQL sink settings")?
            .context("the [sinks.postgres] section just made")?;
        pg_group = Some(cfg.group_id);
        sinks.0.push(&storefold_sinks::postgres::PostgresSpec);
    }
    let roles = Roles::start(&config, http, operator, Mode::All, sinks).await?;

    banner::print(
        &config,
        local,
        &access,
        broker_addr,
        broker.bootstrap(),
        &args,
        &state_dir,
    );

    let mut outcome: Result<()> = Ok(());
    if let Some(sample) = &sample {
        let sent = tokio::select! {
            r = send::send_and_summarise(&config, local, &access, sample, &roles, pg_group.as_deref()) => r,
            _ = shutdown.cancelled() => Ok(()),
        };
        if let Err(e) = sent {
            outcome = Err(e);
        }
    }
    let mut ended = None;
    if outcome.is_ok() && !args.exit_after_sample {
        println!("Running; Ctrl-C stops everything (the embedded broker's data goes with it).");
        let _ = std::io::stdout().flush();
        ended = tokio::select! {
            _ = shutdown.cancelled() => None,
            who = roles.stopped() => Some(who),
        };
    }

    // Stop: the ingest (draining), the processor loop and the sink, then the
    // forwarder and the broker.
    let stopped = roles
        .shutdown(Duration::from_secs(config.ingest.shutdown_timeout_secs))
        .await;
    outcome = outcome.and(stopped);
    if let (Some(who), Ok(())) = (&ended, &outcome) {
        outcome = Err(anyhow!("{who} stopped unexpectedly"));
    }
    stop.cancel();
    let _ = tokio::task::spawn_blocking(move || drop(broker)).await;
    outcome
}

/// The sample is sent as tenant `demo` with the secrets of the configuration: it
/// needs one for every provider the sample posts as a webhook.
fn check_tenant(config: &Config, sample: &dev_sample::Sample) -> Result<()> {
    let Some(t) = config.tenants.get(TENANT) else {
        bail!(
            "the sample is sent to tenant {TENANT}, which the configuration lacks: add \
             [tenants.{TENANT}] as in storefold.example.toml, or pass --no-sample"
        );
    };
    if t.collect_origins.is_empty() {
        bail!("tenant {TENANT} has no collect_origins; the sample posts browser touches");
    }
    let mut kinds: Vec<ProviderKind> = sample
        .posts
        .iter()
        .map(|p| p.provider)
        .filter(|k| k.is_webhook())
        .collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        if config
            .provider(TENANT, kind)
            .and_then(|p| p.signing_secret(kind))
            .is_none()
        {
            bail!(
                "the sample needs tenants.{TENANT}.providers.{kind} with a secret (see \
                 storefold.example.toml), or pass --no-sample"
            );
        }
    }
    Ok(())
}

/// The operator listener's address and the dev token.
struct Access {
    /// `http://host:port` of the operator listener.
    base: String,
    /// The admin token of this run.
    token: String,
}
