//! The `storefold` command line.
//!
//! Roles: `run` (everything in one process against the configured Kafka), `dev`
//! (everything in one process around an embedded broker, with a sample history),
//! `ingest` (signed webhooks in, raw events durably in
//! Kafka), `process` and `replay` (the fold), `sink <name>` (PostgreSQL, HubSpot,
//! webhook), `reconcile` (what the providers' APIs say the raw log lacks),
//! `topics create|check`, `webhook send` (sign and post a payload as the
//! provider would), `erase` and `identity merge|split|block` (signed operator
//! commands), `token new|hash` (operator API tokens), `normalize` (what the fold
//! sees for a payload) and `schemas check`.

// The CLI's job is to print.
#![allow(clippy::print_stdout)]

mod dev_cmd;
mod dev_sample;
mod erase_cmd;
mod erp_cmd;
mod feed_load;
mod identity_cmd;
mod ingest_cmd;
mod normalize_cmd;
mod operator_command;
mod process_cmd;
mod reconcile_cmd;
mod roles;
mod run_cmd;
mod schemas_cmd;
mod settlement_cmd;
mod sink_cmd;
mod token_cmd;
mod topics_cmd;
mod webhook_cmd;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use storefold_runtime::config::{Config, ConfigError, LogFormat};

// glibc's allocator costs the ingest about a quarter of its throughput under load
// (measured with benches' loadgen); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// storefold: provider webhooks in, a correct Customer 360 out.
///
/// Configuration comes from the TOML file given with --config (or
/// ./storefold.toml when it exists), with `${ENV_VAR}` substitution in values and
/// overrides from `STOREFOLD_<SECTION>__<KEY>` environment variables (for example
/// STOREFOLD_KAFKA__BOOTSTRAP_SERVERS). Every option below can also be set from
/// the environment variable shown with it.
#[derive(Debug, Parser)]
#[command(name = "storefold", version, about, long_about)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "STOREFOLD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr: text or json (overrides log.format).
    #[arg(
        long,
        global = true,
        env = "STOREFOLD_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// See it work: the ingest, the processor (and, with --postgres-url, the
    /// PostgreSQL sink) in one process around an embedded Kafka broker, with a
    /// bundled sample history sent through the real HTTP ingest with real
    /// signatures, and a Customer 360 summary once it is folded.
    ///
    /// The embedded broker is librdkafka's mock cluster: in memory, about 5 MiB per
    /// partition, gone when the process ends; so the processor's state under
    /// ./.storefold/dev-state is wiped at every start. Without --config the bundled
    /// example configuration (tenant `demo` and its demo secrets) is used; with it,
    /// its tenants and settings, but always the embedded broker (for a real Kafka
    /// run `storefold run`, or `ingest`, `process` and `sink` apart).
    Dev(dev_cmd::DevArgs),
    /// Run the HTTP ingest: verify webhooks and touches, store them as raw events in
    /// Kafka (200 only after Kafka acknowledged), serve /healthz, /readyz, /metrics.
    ///
    /// Refuses to start when the configuration is invalid, a configured provider
    /// has no secret, or a raw topic it writes to does not exist. Stops gracefully on
    /// SIGTERM or Ctrl-C: stops accepting, finishes in-flight requests and their
    /// produces, then exits.
    Ingest(ingest_cmd::IngestArgs),
    /// Run a processor instance: fold the raw topics into customer and order
    /// state (RocksDB per task under processor.state_dir), exactly once, and
    /// publish projections, triggers and dead letters. Serves the query API
    /// (/v1/tenants/{tenant}/customers/…, /orders/…), the Inspector (/ui) and
    /// /metrics, behind [[operator.tokens]], with /healthz and /readyz on
    /// processor.listen.
    ///
    /// Instances share the work through the consumer group processor.group_id.
    /// Refuses to start when its state was built from another Kafka cluster or
    /// when a raw topic was truncated under it. Stops gracefully on SIGTERM.
    Process(process_cmd::ProcessArgs),
    /// Run every role in one process against the configured Kafka: the ingest,
    /// a processor instance and the configured sinks; webhooks, touches,
    /// /healthz and /readyz on the public address, the query API, /ui and
    /// /metrics (behind [[operator.tokens]]) on the operator address.
    ///
    /// For a small installation, or several identical instances that share the
    /// work: processors through the consumer group processor.group_id, each
    /// sink through its own group. Refuses to start when a raw topic is missing,
    /// the state was built from another cluster, or a chosen sink is not
    /// configured. On SIGTERM the ingest drains first, then the processor and the
    /// sinks stop; if any role stops by itself, everything stops and the exit
    /// code is 1.
    Run(run_cmd::RunArgs),
    /// Rebuild all state from the raw topics with a new projection generation,
    /// so the rebuilt history supersedes the old one in every sink. Owns every
    /// partition: stop the processor instances first.
    Replay(process_cmd::ReplayArgs),
    /// Run a sink: keep a destination in step with the projection topics
    /// (customers, orders, triggers), consumed in the sink's own consumer group.
    ///
    /// The sinks and what each writes are listed under `<NAME>`. Writes never
    /// move a row backwards ((generation, version) guard); failed writes are
    /// retried with backoff and a circuit breaker; a record the destination
    /// refuses goes to `dlq.sink.<name>` with the reason. Offsets are committed
    /// only after the write. Serves /healthz, /readyz, /metrics on sinks.listen.
    /// Refuses to start when `[sinks.<name>]` is missing. Stops gracefully on
    /// SIGTERM.
    Sink(sink_cmd::SinkArgs),
    /// Run the reconciliation polls: on each `[tenants.<id>.reconcile.<provider>]`
    /// schedule, ask the provider's API what changed since the last pass (Stripe
    /// events; Shopify and WooCommerce orders, with their refunds), compare with
    /// the tenant's raw topic, and store what it lacks (lost webhooks) as raw
    /// events marked as reconciled, with the webhook's idempotency id where the
    /// API gives it. Serves /healthz, /readyz, /metrics on reconcile.listen.
    ///
    /// With --once: one pass of every source, what each found printed, then exit.
    /// Refuses to start when a configured source lacks its credentials. Stops
    /// gracefully on SIGTERM, after the pass in flight.
    Reconcile(reconcile_cmd::ReconcileArgs),
    /// Create or check storefold's Kafka topics (`raw.<provider>`, changelog,
    /// customers, orders, triggers, dlq.processor, `dlq.sink.<name>`).
    Topics {
        #[command(subcommand)]
        command: topics_cmd::TopicsCommand,
    },
    /// Operator API tokens for the query API, the Inspector and /metrics
    /// ([[operator.tokens]] in the configuration holds their SHA-256).
    Token {
        #[command(subcommand)]
        command: token_cmd::TokenCommand,
    },
    /// Webhook tools for testing an installation.
    Webhook {
        #[command(subcommand)]
        command: webhook_cmd::WebhookCommand,
    },
    /// Load an ERP's inventory file (unit costs, stock, ETAs per SKU) into
    /// the ingest's ERP feed.
    Erp {
        #[command(subcommand)]
        command: erp_cmd::ErpCommand,
    },
    /// Load a payment provider's settlement report (Stripe's itemized payout
    /// reconciliation, Adyen's settlement details) into the ingest's
    /// settlement feed.
    Settlement {
        #[command(subcommand)]
        command: settlement_cmd::SettlementCommand,
    },
    /// Ask for the GDPR erasure of a customer by email and/or phone: a signed
    /// `customer/erase` command of the `operator` provider, posted to the ingest
    /// (kept in raw.operator, folded like Shopify's customers/redact). Prints the
    /// command id and the ingest's answer; exits 0 only for a 2xx answer (4
    /// otherwise).
    ///
    /// With --dry-run nothing is sent: the query API (--api, --token) shows the
    /// customer the identities resolve to and what the erasure would remove
    /// (orders, tickets, touches, identity kinds, merged customers); exits 2
    /// when no customer has them.
    Erase(erase_cmd::EraseArgs),
    /// Decide whether two identities are one customer: a signed
    /// `identity/merge`, `identity/split` or `identity/block` command of the
    /// `operator` provider, posted to the ingest (kept in raw.operator, folded
    /// in order; the latest decision on a pair holds). A side is
    /// email:ADDRESS, phone:NUMBER, external:SOURCE:ID or a customer id. Prints
    /// the command id and the ingest's answer; exits 0 only for a 2xx answer
    /// (4 otherwise).
    ///
    /// With --dry-run nothing is sent: the query API (--api, --token) shows the
    /// customer each side belongs to now, whether they are one customer, and
    /// what the decision would change; exits 2 when neither side has a
    /// customer.
    Identity {
        #[command(subcommand)]
        command: identity_cmd::IdentityCommand,
    },
    /// Print the canonical events storefold derives from a provider payload, as
    /// JSON lines (one versioned event per line).
    ///
    /// The payload is read exactly as a webhook body; its signature is not checked
    /// (that happens at the ingest). `--help` lists the known providers.
    Normalize(normalize_cmd::NormalizeArgs),
    /// Avro schema contracts.
    Schemas {
        #[command(subcommand)]
        command: SchemasCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Check that every schema parses and is backward compatible with the version
    /// committed in git HEAD.
    Check {
        /// Directory holding the `*.avsc` files.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Normalize(args) => load_config_if_any(cli.config.as_deref())
            .and_then(|config| normalize_cmd::run(args, config.as_ref())),
        Command::Schemas {
            command: SchemasCommand::Check { dir },
        } => schemas_cmd::check(&dir),
        Command::Dev(args) => dev_cmd::config(cli.config.as_deref()).and_then(|mut config| {
            if std::env::var_os("RUST_LOG").is_none() && cli.config.is_none() {
                // Keep the terminal for the banner and the summary.
                config.log.level = "warn".into();
            }
            init_logs(&config, cli.log_format);
            runtime()?.block_on(dev_cmd::run(config, args))
        }),
        Command::Run(args) => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(run_cmd::run(config, args))
        }),
        Command::Ingest(args) => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(ingest_cmd::run(config, args))
        }),
        Command::Process(args) => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(process_cmd::process(config, args))
        }),
        Command::Replay(args) => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(process_cmd::replay(config, args))
        }),
        Command::Sink(args) => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(sink_cmd::run_sink(config, args))
        }),
        Command::Reconcile(args) => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(reconcile_cmd::run(config, args))
        }),
        Command::Topics { command } => load_config(cli.config.as_deref()).and_then(|config| {
            init_logs(&config, cli.log_format);
            runtime()?.block_on(topics_cmd::run(&config, command))
        }),
        Command::Token { command } => token_cmd::run(command),
        Command::Erase(args) => load_config_if_any(cli.config.as_deref())
            .and_then(|config| runtime()?.block_on(erase_cmd::run(config.as_ref(), args))),
        Command::Identity { command } => load_config_if_any(cli.config.as_deref())
            .and_then(|config| runtime()?.block_on(identity_cmd::run(config.as_ref(), command))),
        Command::Webhook { command } => load_config_if_any(cli.config.as_deref())
            .and_then(|config| runtime()?.block_on(webhook_cmd::run(config.as_ref(), command))),
        Command::Erp { command } => load_config_if_any(cli.config.as_deref())
            .and_then(|config| runtime()?.block_on(erp_cmd::run(config.as_ref(), command))),
        Command::Settlement { command } => load_config_if_any(cli.config.as_deref())
            .and_then(|config| runtime()?.block_on(settlement_cmd::run(config.as_ref(), command))),
    };
    match result {
        Ok(()) => {}
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(exit_code(&e));
        }
    }
}

/// A command that ran but whose answer was "no" (a check found problems, a webhook
/// was refused) exits with this code; errors that stopped the command exit 1.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) i32, pub(crate) String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Failed {}

fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<Failed>().map_or(1, |f| f.0)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logs(config: &Config, format: Option<LogFormat>) {
    storefold_runtime::telemetry::init(format.unwrap_or(config.log.format), &config.log.level);
}

/// The value parser of a `--provider` argument: the registered providers are
/// clap's possible values (listed in `--help`), and an unknown name is refused
/// with [`storefold_providers::UnknownProvider`]'s message, which lists them too.
pub(crate) fn provider_parser() -> ProviderParser {
    ProviderParser
}

/// See [`provider_parser`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProviderParser;

impl clap::builder::TypedValueParser for ProviderParser {
    type Value = storefold_providers::ProviderKind;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<Self::Value, clap::Error> {
        value.to_string_lossy().parse().map_err(|e| {
            let arg = arg.map_or_else(|| "--provider".to_string(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value for {arg}: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            storefold_providers::ProviderKind::ALL
                .iter()
                .map(|k| clap::builder::PossibleValue::new(k.name())),
        ))
    }
}

/// The bytes of `path`, or of standard input for `-`.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The configuration: `--config`, else `./storefold.toml`, else the defaults; then
/// the environment.
fn load_config(path: Option<&Path>) -> Result<Config> {
    match load_config_if_any(path)? {
        Some(config) => Ok(config),
        None => Config::from_toml_str("", std::env::vars())
            .and_then(check_sinks)
            .context("the configuration from the environment"),
    }
}

/// `config` once its `[sinks.<name>]` sections passed their sinks' checks
/// (`storefold_sinks::registry::check`): every role refuses a wrong sink
/// section at start, as it refuses any other wrong setting.
pub(crate) fn check_sinks(config: Config) -> Result<Config, ConfigError> {
    storefold_sinks::registry::check(&config)?;
    Ok(config)
}

/// The processor's run options, measuring the dead-letter topics of every
/// registered sink.
pub(crate) fn processor_options(
    config: &Config,
    mode: storefold_processor::Mode,
) -> storefold_processor::RunOptions {
    let mut opts = storefold_processor::options(config, mode);
    opts.dead_letter_sinks = storefold_sinks::registry::names()
        .into_iter()
        .map(String::from)
        .collect();
    opts
}

/// Like [`load_config`], but `None` when there is no file at all (for tools that
/// work without one).
fn load_config_if_any(path: Option<&Path>) -> Result<Option<Config>> {
    let default = Path::new("storefold.toml");
    let path = match path {
        Some(p) => p,
        None if default.is_file() => default,
        None => return Ok(None),
    };
    Config::load(path, std::env::vars())
        .and_then(check_sinks)
        .map(Some)
        .with_context(|| format!("configuration {}", path.display()))
}
