//! `storefold dev`: every role in one process around an embedded broker
//! (librdkafka's mock cluster), and a sample history sent through the real HTTP
//! ingest with real signatures, summarised once folded.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use storefold_processor::Mode;
use storefold_providers::ProviderKind;
use storefold_runtime::config::{Config, PostgresSinkConfig};
use storefold_runtime::kafka::{Topics, client_config, topic_specs};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::dev_sample::{self, Expected, Sample, TENANT, format_money};
use crate::roles::{Roles, Sinks};
use crate::webhook_cmd::sign_webhook;

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
            .with_context(|| format!("configuration {}", p.display())),
        None => Config::from_toml_str(
            include_str!("../../../storefold.example.toml"),
            std::env::vars(),
        )
        .context("the bundled example configuration"),
    }
}

/// librdkafka's mock cluster, owned by a thread of its own (the handle is not
/// `Send`); its topics are created at start. Dropping it stops the cluster.
struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    fn start(topics: Vec<(String, i32)>) -> Result<EmbeddedBroker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let (boot_tx, boot_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = boot_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for (name, partitions) in &topics {
                    if let Err(e) = cluster.create_topic(name, *partitions, 1) {
                        let _ = boot_tx.send(Err(format!("creating {name}: {e}")));
                        return;
                    }
                }
                let _ = boot_tx.send(Ok(cluster.bootstrap_servers()));
                // Until the handle is dropped.
                let _ = stopped.recv();
            })
            .context("starting the embedded broker's thread")?;
        let bootstrap = boot_rx
            .recv()
            .map_err(|_| anyhow!("the embedded broker's thread ended"))?
            .map_err(|e| anyhow!("cannot start the embedded broker: {e}"))?;
        Ok(EmbeddedBroker {
            bootstrap,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forwards every connection to `listener` to `target` (the mock cluster binds
/// a port of its own choosing).
async fn forward(listener: TcpListener, target: String, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let target = target.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}

pub(crate) async fn run(mut config: Config, args: DevArgs) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sample = (!args.no_sample).then(dev_sample::sample);
    if sample.is_some() {
        check_tenant(&config)?;
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

    let topics: Vec<(String, i32)> = topic_specs(&config.kafka)
        .into_iter()
        .map(|s| (s.name, s.partitions))
        .collect();
    let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(topics))
        .await
        .context("starting the embedded broker")??;
    config.kafka.bootstrap_servers = broker.bootstrap.clone();

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
    tokio::spawn(forward(forwarder, broker.bootstrap.clone(), stop.clone()));

    let mut sinks = Sinks::default();
    if let Some(url) = &args.postgres_url {
        let mut cfg = match config.sinks.postgres.clone() {
            Some(c) => c,
            None => serde_json::from_value::<PostgresSinkConfig>(serde_json::json!({ "url": url }))
                .context("PostgreSQL sink settings")?,
        };
        cfg.url = url.clone();
        sinks.postgres = Some(cfg);
    }
    let pg_group = sinks.postgres.as_ref().map(|c| c.group_id.clone());
    let roles = Roles::start(&config, http, operator, Mode::All, sinks).await?;

    banner(
        &config,
        local,
        &access,
        broker_addr,
        &broker.bootstrap,
        &args,
        &state_dir,
    );

    let mut outcome: Result<()> = Ok(());
    if let Some(sample) = &sample {
        let sent = tokio::select! {
            r = send_and_summarise(&config, local, &access, sample, &roles, pg_group.as_deref()) => r,
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

/// The sample is sent as tenant `demo` with the secrets of the configuration.
fn check_tenant(config: &Config) -> Result<()> {
    let Some(t) = config.tenants.get(TENANT) else {
        bail!(
            "the sample is sent to tenant {TENANT}, which the configuration lacks: add \
             [tenants.{TENANT}] as in storefold.example.toml, or pass --no-sample"
        );
    };
    if t.collect_origins.is_empty() {
        bail!("tenant {TENANT} has no collect_origins; the sample posts browser touches");
    }
    for kind in [
        ProviderKind::Shopify,
        ProviderKind::Stripe,
        ProviderKind::Aftership,
        ProviderKind::Zendesk,
        ProviderKind::Gorgias,
    ] {
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
    base: String,
    token: String,
}

fn banner(
    config: &Config,
    http: SocketAddr,
    access: &Access,
    broker_port: SocketAddr,
    bootstrap: &str,
    args: &DevArgs,
    state_dir: &Path,
) {
    let topics = Topics::new(&config.kafka.topic_prefix);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\
storefold dev: the ingest, the processor{sink} and an embedded Kafka broker in one process.

  Public HTTP            http://{http} (webhooks, touches, /healthz, /readyz)
  Operator HTTP          {operator} (query API, /ui, /metrics; needs the token)
  Operator token         {token}
                         (admin, valid for this run only; send it as
                         Authorization: Bearer <token>)
  Inspector              {operator}/ui#token={token}
  Embedded broker        127.0.0.1:{port} (forwarded to {bootstrap}, the address it advertises:
                         clients such as kcat must be able to reach that one too)
  Topics                 {prefix}* with {partitions} partitions each (e.g. {raw})
  Processor state        {state} (wiped at every start)

The embedded broker is librdkafka's mock cluster: it keeps everything in memory, about
5 MiB per partition; records beyond that are dropped, and the processor then stops with an
offset-out-of-range error instead of skipping them. Its data dies with this process, so
`storefold dev` starts from fresh state every time instead of resuming on a log it no longer has.

For a real Kafka, put its address in a configuration file
([kafka] bootstrap_servers = \"broker:9092\", see storefold.example.toml) and run the roles:
  storefold --config storefold.toml topics create
  storefold --config storefold.toml run        (every role in one process; or apart:
  storefold --config storefold.toml ingest      ingest, process and sink <name>)
",
        sink = if args.postgres_url.is_some() {
            ", the PostgreSQL sink"
        } else {
            ""
        },
        operator = access.base,
        token = access.token,
        port = broker_port.port(),
        prefix = config.kafka.topic_prefix,
        partitions = config.kafka.partitions,
        raw = topics.raw(ProviderKind::Shopify),
        state = state_dir.display(),
    );
    let _ = out.flush();
}

/// Sends the sample, waits until the processor folded all of it, prints the summary.
async fn send_and_summarise(
    config: &Config,
    http: SocketAddr,
    access: &Access,
    sample: &Sample,
    roles: &Roles,
    pg_group: Option<&str>,
) -> Result<()> {
    let base = format!("http://{http}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    println!(
        "Sending the sample history to {base} as tenant {TENANT}: {} customers, {} signed \
         requests ({}) …",
        sample.customers.len(),
        sample.posts.len(),
        sample.describe()
    );
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    for post in &sample.posts {
        if roles.folding.is_finished() {
            bail!("the processor stopped while the sample was being sent");
        }
        send(config, &client, &base, post).await?;
    }
    println!(
        "Sent in {:.1} s; waiting for the processor to fold it …",
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    wait_folded(config, roles).await?;
    println!(
        "Folded {:.1} s after the first request.",
        started.elapsed().as_secs_f64()
    );
    if let Some(group) = pg_group {
        wait_sink_caught_up(config, group).await?;
        println!(
            "The PostgreSQL sink wrote every projection {:.1} s after the first request.",
            started.elapsed().as_secs_f64()
        );
    }
    println!();
    summarise(&client, access, sample).await
}

async fn send(
    config: &Config,
    client: &reqwest::Client,
    base: &str,
    post: &dev_sample::Post,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (url, headers, body) = if post.provider == ProviderKind::Collect {
            let origin = config
                .tenants
                .get(TENANT)
                .and_then(|t| t.collect_origins.first().cloned())
                .unwrap_or_default();
            (
                format!("{base}/v1/collect/{TENANT}"),
                vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("origin".to_string(), origin),
                ],
                post.body.clone(),
            )
        } else {
            let secret = config
                .provider(TENANT, post.provider)
                .and_then(|p| p.signing_secret(post.provider))
                .with_context(|| format!("no secret for {}", post.provider))?;
            let s = sign_webhook(
                post.provider,
                TENANT,
                &secret,
                post.topic,
                &post.body,
                OffsetDateTime::now_utc(),
            )?;
            (format!("{base}{}", s.path), s.headers, s.body)
        };
        let mut req = client.post(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {} {}", post.provider, post.topic))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // Touches are rate limited per client; Kafka may be slow to start.
        let retry = status.as_u16() == 429 || status.as_u16() == 503;
        if retry && Instant::now() < deadline {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_millis(250), |s| {
                    Duration::from_millis((s * 1000).min(1000))
                });
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "the ingest refused the sample's {} {}: HTTP {status} {text}",
            post.provider,
            post.topic
        );
    }
}

/// Waits until every task's committed position reached the end of every raw
/// partition as it was after the last acknowledged request.
async fn wait_folded(config: &Config, roles: &Roles) -> Result<()> {
    let processor = &roles.processor;
    let kafka = config.kafka.clone();
    let raw: Vec<String> = Topics::new(&kafka.topic_prefix)
        .all_raw()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let partitions = processor.shared.partitions;
    let ends = tokio::task::spawn_blocking(move || -> Result<BTreeMap<(String, i32), i64>> {
        let consumer: BaseConsumer = client_config(&kafka)
            .set("group.id", "storefold-dev-probe")
            .set("enable.auto.commit", "false")
            .create()
            .context("a Kafka client")?;
        let mut ends = BTreeMap::new();
        for t in &raw {
            for p in 0..partitions {
                let (_, high) = consumer
                    .fetch_watermarks(t, p, Duration::from_secs(10))
                    .with_context(|| format!("the end of {t}/{p}"))?;
                if high > 0 {
                    ends.insert((t.clone(), p), high);
                }
            }
        }
        Ok(ends)
    })
    .await
    .context("reading the raw topics' ends")??;
    let deadline = Instant::now() + FOLD_TIMEOUT;
    loop {
        if roles.folding.is_finished() {
            bail!("the processor stopped before the sample was folded");
        }
        let done = {
            let owned = processor.owned.read().unwrap_or_else(|e| e.into_inner());
            ends.iter().all(|((topic, p), high)| {
                owned
                    .get(p)
                    .and_then(|db| db.meta().ok().flatten())
                    .and_then(|m| m.positions.get(topic).copied())
                    .is_some_and(|next| next >= *high)
            })
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the processor did not fold the sample within {} s",
                FOLD_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the sink's consumer group committed the end of every projection
/// partition (the processor has folded everything, so those ends are final).
async fn wait_sink_caught_up(config: &Config, group: &str) -> Result<()> {
    let kafka = config.kafka.clone();
    let group = group.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let topics = Topics::new(&kafka.topic_prefix);
        let consumer: BaseConsumer = client_config(&kafka)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .context("a Kafka client")?;
        let mut ends: Vec<(String, i32, i64)> = Vec::new();
        let mut wanted = rdkafka::TopicPartitionList::new();
        for topic in [topics.customers(), topics.orders(), topics.triggers()] {
            for p in 0..kafka.partitions {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .with_context(|| format!("the end of {topic}/{p}"))?;
                if high > 0 {
                    wanted.add_partition(&topic, p);
                    ends.push((topic.clone(), p, high));
                }
            }
        }
        let deadline = Instant::now() + FOLD_TIMEOUT;
        loop {
            let committed = consumer
                .committed_offsets(wanted.clone(), Duration::from_secs(10))
                .context("the PostgreSQL sink's committed offsets")?;
            let behind = ends.iter().any(|(topic, p, high)| {
                let at = committed
                    .find_partition(topic, *p)
                    .and_then(|c| c.offset().to_raw());
                at.unwrap_or(-1) < *high
            });
            if !behind {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the PostgreSQL sink did not write the sample within {} s (see its log \
                     lines and storefold_sink_* on /metrics)",
                    FOLD_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .context("waiting for the PostgreSQL sink")?
}

/// Net revenue per currency of a Customer 360 document.
fn net_revenue(doc: &Value) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in doc["revenue"].as_array().into_iter().flatten() {
        let currency = match &r["currency"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *out.entry(currency).or_default() += r["net"].as_i64().unwrap_or(0);
    }
    out
}

fn money_list(net: &BTreeMap<String, i64>) -> String {
    if net.is_empty() {
        return "-".into();
    }
    net.iter()
        .map(|(c, m)| format_money(*m, c))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Queries the processor for every sample customer and prints the table, then
/// checks it against what the sample should give.
async fn summarise(client: &reqwest::Client, access: &Access, sample: &Sample) -> Result<()> {
    let base = &access.base;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut merges: Vec<String> = Vec::new();
    for exp in &sample.customers {
        // The sample's emails are plain ASCII (letters, dots, one @): no escaping.
        let url = format!("{base}/v1/tenants/{TENANT}/customers?email={}", exp.email);
        let resp = client
            .get(&url)
            .bearer_auth(&access.token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            wrong.push(format!("{}: HTTP {}", exp.email, resp.status()));
            continue;
        }
        let bytes = resp.bytes().await.context("a Customer 360 document")?;
        let doc: Value = serde_json::from_slice(&bytes).context("a Customer 360 document")?;
        let net = net_revenue(&doc);
        let orders = doc["orders_count"].as_u64().unwrap_or(0);
        let open = doc["open_tickets"].as_u64().unwrap_or(0);
        let segments: Vec<&str> = doc["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let merged = doc["merged"].as_array().map_or(0, Vec::len);
        if merged > 0 {
            merges.push(format!("{} ({merged} merged in)", exp.name));
        }
        check(exp, orders, &net, open, &mut wrong);
        rows.push([
            format!("{} <{}>", exp.name, exp.email),
            orders.to_string(),
            money_list(&net),
            open.to_string(),
            if segments.is_empty() {
                "-".into()
            } else {
                segments.join(", ")
            },
        ]);
    }
    let header = [
        "customer",
        "orders",
        "net revenue",
        "open tickets",
        "segments",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| -> String {
        let mut s = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i == 1 || i == 2 || i == 3 {
                s.push_str(&format!(" {}{cell} ", " ".repeat(pad)));
            } else {
                s.push_str(&format!(" {cell}{} ", " ".repeat(pad)));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Customer 360 of tenant {TENANT} ({} customers):",
        rows.len()
    )?;
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(
            out,
            "{}",
            line([
                r[0].as_str(),
                r[1].as_str(),
                r[2].as_str(),
                r[3].as_str(),
                r[4].as_str()
            ])
        )?;
    }
    if !merges.is_empty() {
        writeln!(out, "\nIdentity merges: {}", merges.join(", "))?;
    }
    let first = sample
        .customers
        .first()
        .map(|c| c.email.as_str())
        .unwrap_or("");
    let urls = [
        (
            format!("{base}/ui#token={}", access.token),
            "the Inspector (signed in with the dev token)",
        ),
        (
            format!("{base}/v1/tenants/{TENANT}/customers?email={first}"),
            "a Customer 360 (query API)",
        ),
        (
            format!("{base}/v1/tenants/{TENANT}/orders/shopify:5000000001001"),
            "an order with its ledger",
        ),
        (format!("{base}/metrics"), "Prometheus metrics"),
    ];
    let width = urls.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    writeln!(out, "\nOpen:")?;
    for (url, what) in &urls {
        writeln!(out, "  {url:<width$}  {what}")?;
    }
    writeln!(
        out,
        "The query API and /metrics answer 401 without the token, e.g.:\n  curl -H 'Authorization: Bearer {}' '{base}/v1/tenants'",
        access.token
    )?;
    writeln!(out)?;
    out.flush()?;
    if wrong.is_empty() {
        Ok(())
    } else {
        bail!(
            "the folded sample differs from what it should give:\n  {}",
            wrong.join("\n  ")
        )
    }
}

fn check(
    exp: &Expected,
    orders: u64,
    net: &BTreeMap<String, i64>,
    open: u64,
    wrong: &mut Vec<String>,
) {
    let want: BTreeMap<String, i64> = exp.net.iter().map(|(c, m)| (c.to_string(), *m)).collect();
    if orders != exp.orders || *net != want || open != exp.open_tickets {
        wrong.push(format!(
            "{}: {orders} orders, {}, {open} open tickets; expected {} orders, {}, {} open tickets",
            exp.email,
            money_list(net),
            exp.orders,
            money_list(&want),
            exp.open_tickets
        ));
    }
}
