//! `storefold reconcile`: the reconciliation polls (storefold-reconcile) on
//! Kafka. What a pass lists is compared with the tenant's raw topic over the
//! window (read from the offset of the window's start, up to the end it had
//! when the pass began); what the topic lacks is stored through the ingest's
//! own path (encryption, framing, acknowledged produce) as reconciled raw
//! events. Serves /healthz, /readyz and /metrics on reconcile.listen.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use prometheus::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use storefold_codec::RawEvent;
use storefold_ingest::Ingest;
use storefold_providers::ProviderKind;
use storefold_reconcile::cursor::CursorFile;
use storefold_reconcile::shopify::{Shopify, ShopifySettings};
use storefold_reconcile::stripe::Stripe;
use storefold_reconcile::woocommerce::WooCommerce;
use storefold_reconcile::{Metrics, Poller, RateLimits, RawLog, Reach, Reconciler, Source};
use storefold_runtime::config::{Config, ExposeSecret, KafkaConfig, ReconcileSourceConfig};
use time::OffsetDateTime;
use tokio::net::TcpListener;

#[derive(Debug, clap::Args)]
pub(crate) struct ReconcileArgs {
    /// One pass of every configured source, print what each found, and exit
    /// (the cursors are kept as after a scheduled pass).
    #[arg(long)]
    once: bool,
    /// With --once: list and compare, but inject nothing and keep the cursors.
    #[arg(long, requires = "once")]
    dry_run: bool,
    /// Address of /healthz, /readyz and /metrics (overrides reconcile.listen).
    #[arg(long, env = "STOREFOLD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// The pollers of every `[tenants.<id>.reconcile.<provider>]`; refuses a
/// source without its credentials, and Shopify for a tenant that shreds its
/// raw log (its order versions are read from raw bodies).
pub(crate) fn sources(config: &Config, metrics: &Metrics) -> Result<Vec<Source>> {
    let r = &config.reconcile;
    let limits = RateLimits {
        max_retries: r.max_retries,
        backoff: Duration::from_secs(1),
        max_wait: Duration::from_secs(r.max_wait_secs),
    };
    let mut out = Vec::new();
    for (tenant, t) in &config.tenants {
        for (provider, s) in &t.reconcile {
            s.check(tenant, provider).map_err(|e| anyhow!(e))?;
            let poller = poller(
                tenant,
                provider,
                s,
                t.raw_encryption.is_some(),
                &limits,
                metrics,
            )?;
            out.push(Source {
                tenant: tenant.clone(),
                poller,
                interval: Duration::from_secs(s.interval_secs),
            });
        }
    }
    Ok(out)
}

fn secret(s: &Option<storefold_runtime::config::SecretString>) -> String {
    s.as_ref()
        .map(|s| s.expose_secret().trim().to_string())
        .unwrap_or_default()
}

fn poller(
    tenant: &str,
    provider: &str,
    s: &ReconcileSourceConfig,
    encrypted: bool,
    limits: &RateLimits,
    metrics: &Metrics,
) -> Result<Poller> {
    let m = metrics.clone();
    let l = limits.clone();
    Ok(match provider {
        "stripe" => Poller::Stripe(Stripe::new(
            s.base_url.as_deref().unwrap_or("https://api.stripe.com"),
            &secret(&s.api_key),
            s.page_size.unwrap_or(storefold_reconcile::stripe::MAX_PAGE),
            l,
            m,
        )?),
        "shopify" => {
            if encrypted {
                bail!(
                    "tenants.{tenant}.reconcile.shopify: the tenant shreds its raw log, and Shopify order versions are recognised from raw bodies; reconciling Shopify for it is not supported yet"
                );
            }
            let domain = s.shop_domain.clone().unwrap_or_default();
            Poller::Shopify(Shopify::new(
                ShopifySettings {
                    base_url: s
                        .base_url
                        .clone()
                        .unwrap_or_else(|| format!("https://{domain}")),
                    shop_domain: domain,
                    api_version: s.api_version.clone(),
                    page_size: s
                        .page_size
                        .unwrap_or(storefold_reconcile::shopify::MAX_PAGE),
                    reserve: 4,
                    leak_per_second: s.leak_per_second,
                },
                &secret(&s.access_token),
                l,
                m,
            )?)
        }
        "woocommerce" => Poller::WooCommerce(WooCommerce::new(
            s.base_url.as_deref().unwrap_or_default(),
            &secret(&s.consumer_key),
            &secret(&s.consumer_secret),
            s.page_size
                .unwrap_or(storefold_reconcile::woocommerce::MAX_PAGE),
            l,
            m,
        )?),
        other => bail!("tenants.{tenant}.reconcile.{other}: not a reconciled provider"),
    })
}

/// The raw topics: read to compare, written through the ingest.
struct KafkaLog {
    ingest: Arc<Ingest>,
    kafka: KafkaConfig,
    timeout: Duration,
    /// `--dry-run`: what would be injected, kept here instead.
    dry_run: Option<Vec<RawEvent>>,
}

impl RawLog for KafkaLog {
    async fn facts(
        &mut self,
        tenant: &str,
        provider: ProviderKind,
        since: OffsetDateTime,
    ) -> storefold_reconcile::Result<HashSet<String>> {
        let ingest = self.ingest.clone();
        let kafka = self.kafka.clone();
        let topic = ingest.raw_topic_of(provider).to_string();
        let tenant = tenant.to_string();
        let since_ms = (since.unix_timestamp_nanos() / 1_000_000) as i64;
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            scan(&ingest, &kafka, &topic, &tenant, since_ms, timeout)
        })
        .await
        .map_err(|e| storefold_reconcile::Error::RawLog(e.to_string()))?
        .map_err(storefold_reconcile::Error::RawLog)
    }

    async fn inject(&mut self, events: Vec<RawEvent>) -> storefold_reconcile::Result<()> {
        if let Some(kept) = &mut self.dry_run {
            kept.extend(events);
            return Ok(());
        }
        for raw in events {
            let id = raw.event_id.clone();
            self.ingest
                .store_raw(raw)
                .await
                .map_err(|e| storefold_reconcile::Error::RawLog(format!("{id}: {e}")))?;
        }
        Ok(())
    }
}

/// The facts of `tenant`'s raw events in `topic` received since `since_ms`:
/// every partition from the offset of that time up to its end when the scan
/// began (records are keyed by tenant; the others are skipped unread).
fn scan(
    ingest: &Ingest,
    kafka: &KafkaConfig,
    topic: &str,
    tenant: &str,
    since_ms: i64,
    timeout: Duration,
) -> Result<HashSet<String>, String> {
    let started = Instant::now();
    let err = |e: KafkaError| format!("{topic}: {e}");
    let consumer: BaseConsumer = storefold_runtime::kafka::client_config(kafka)
        .set("group.id", "storefold-reconcile-scan")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "latest")
        .create()
        .map_err(err)?;
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(err)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!(
            "the raw topic {topic} does not exist (run `storefold topics create`)"
        ));
    }
    let mut by_time = TopicPartitionList::new();
    for p in &partitions {
        by_time
            .add_partition_offset(topic, *p, Offset::Offset(since_ms))
            .map_err(err)?;
    }
    let starts = consumer.offsets_for_times(by_time, timeout).map_err(err)?;
    let mut assign = TopicPartitionList::new();
    let mut high: HashMap<i32, i64> = HashMap::new();
    for p in &partitions {
        let (low, h) = consumer.fetch_watermarks(topic, *p, timeout).map_err(err)?;
        let start = match starts.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            // "No record at or after the time", unless the partition's last
            // record says otherwise: a broker that cannot look offsets up by
            // time (librdkafka's mock cluster) answers the same; the
            // partition is then read from its start.
            _ if h > low && last_timestamp(&consumer, topic, *p, h - 1, timeout)? >= since_ms => {
                tracing::warn!(
                    topic,
                    partition = p,
                    "the broker found no offset for the window's start; reading the partition from its start"
                );
                Some(low)
            }
            _ => None,
        };
        if let Some(o) = start
            && o < h
        {
            assign
                .add_partition_offset(topic, *p, Offset::Offset(o))
                .map_err(err)?;
            high.insert(*p, h);
        }
    }
    let mut facts = HashSet::new();
    if high.is_empty() {
        return Ok(facts);
    }
    consumer.assign(&assign).map_err(err)?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    loop {
        if high
            .iter()
            .all(|(p, h)| next.get(p).copied().unwrap_or(0) >= *h)
        {
            return Ok(facts);
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "{topic}: not read to its end within {timeout:?} (reconcile.scan_timeout_secs)"
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => return Err(err(e)),
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                if m.key() != Some(tenant.as_bytes()) {
                    continue;
                }
                let Some(payload) = m.payload() else { continue };
                match ingest.decode_raw(payload) {
                    Ok(raw) if raw.tenant == tenant => {
                        facts.extend(storefold_reconcile::facts(&raw));
                    }
                    Ok(_) => {}
                    // A record the codec cannot read was never folded either
                    // (the processor dead-letters it): its id stays unknown,
                    // and the API's copy is injected if it is listed.
                    Err(e) => {
                        tracing::warn!(topic, offset = m.offset(), error = %e, "unreadable raw record")
                    }
                }
            }
        }
    }
}

/// The timestamp (ms) of the record at `offset` of `partition`.
fn last_timestamp(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<i64, String> {
    let err = |e: KafkaError| format!("{topic}: {e}");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(err)?;
    consumer.assign(&tpl).map_err(err)?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.partition() == partition => {
                return Ok(m.timestamp().to_millis().unwrap_or(0));
            }
            Some(Err(e)) if !matches!(e, KafkaError::PartitionEOF(_)) => return Err(err(e)),
            _ => {}
        }
    }
    Err(format!(
        "{topic}: the record at offset {offset} of partition {partition} was not read within {timeout:?}"
    ))
}

fn reconciler(config: &Config, registry: &Registry) -> Result<Reconciler> {
    let metrics = Metrics::new(registry);
    let sources = sources(config, &metrics)?;
    if sources.is_empty() {
        bail!(
            "nothing to reconcile: add a [tenants.<id>.reconcile.<provider>] section (stripe, shopify or woocommerce) with the API's credentials"
        );
    }
    let r = &config.reconcile;
    std::fs::create_dir_all(&r.state_dir)
        .with_context(|| format!("reconcile.state_dir {}", r.state_dir.display()))?;
    let cursors = CursorFile::open(r.state_dir.join("reconcile-cursors.json"))?;
    Ok(Reconciler {
        sources,
        reach: Reach {
            settle: Duration::from_secs(r.settle_secs),
            overlap: Duration::from_secs(r.overlap_secs),
            lookback: Duration::from_secs(r.lookback_hours * 3600),
        },
        cursors,
        metrics,
    })
}

pub(crate) async fn run(mut config: Config, args: ReconcileArgs) -> Result<()> {
    if let Some(l) = args.listen {
        config.reconcile.listen = l;
    }
    let registry = Registry::new();
    // The sources first: a missing credential is the likeliest mistake, and
    // says so before anything connects.
    let mut rec = reconciler(&config, &registry)?;
    let ingest = Ingest::new(&config, &registry).context("the raw topics' writer")?;
    ingest.check_topics(&config.kafka).await?;
    let mut log = KafkaLog {
        ingest,
        kafka: config.kafka.clone(),
        timeout: Duration::from_secs(config.reconcile.scan_timeout_secs),
        dry_run: None,
    };
    if args.once {
        if args.dry_run {
            log.dry_run = Some(Vec::new());
            rec.cursors = CursorFile::in_memory();
        }
        let reports = rec.once(&mut log, OffsetDateTime::now_utc).await;
        let mut failed = false;
        for (tenant, provider, r) in reports {
            match r {
                Ok(r) => {
                    println!(
                        "{tenant} {provider}: {} .. {}: listed {}, missing from the raw log {}{}",
                        r.window.since,
                        r.window.until,
                        r.listed,
                        r.injected.len(),
                        if args.dry_run {
                            " (dry run: not injected)"
                        } else {
                            " (injected)"
                        }
                    );
                    for e in &r.injected {
                        println!("  {} {}", e.topic, e.event_id);
                    }
                }
                Err(e) => {
                    failed = true;
                    println!("{tenant} {provider}: failed: {e}");
                }
            }
        }
        if failed {
            bail!("a reconciliation pass failed");
        }
        return Ok(());
    }
    let listener = TcpListener::bind(config.reconcile.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.reconcile.listen))?;
    let ready: storefold_runtime::server::ReadyCheck =
        Arc::new(|| Box::pin(async { Ok::<(), String>(()) }));
    let app = storefold_runtime::server::ops_router(registry.clone(), ready);
    let shutdown = storefold_runtime::shutdown::on_signal();
    let stop = shutdown.clone();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
    );
    tracing::info!(
        sources = rec.sources.len(),
        listen = %config.reconcile.listen,
        "reconcile running"
    );
    let stop = shutdown.clone();
    rec.run(&mut log, OffsetDateTime::now_utc, async move {
        stop.cancelled().await;
    })
    .await;
    let _ = server.await;
    Ok(())
}
