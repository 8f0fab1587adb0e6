//! Processor throughput against a raw passthrough, on the same broker and the
//! same input (ARCHITECTURE §5; figures printed, never asserted).
//!
//! The broker is librdkafka's mock cluster in its own process. It keeps only
//! about 5 MiB per partition, so the topics get enough partitions for the
//! input and the run checks at the end that no partition lost a record (every
//! log start offset is still 0) — a figure from a truncated log would be void.
//!
//! 1. generate a multi-tenant history (default 1M distinct customers) and
//!    produce it to the raw topics;
//! 2. (a) passthrough: consume every raw record and produce it to another
//!    topic with the processor's producer settings, waiting for the
//!    acknowledgements and committing offsets every `batch` records;
//! 3. (b) the processor (all partitions, one instance) folds the same input;
//! 4. cold restore: a second instance with an empty state dir rebuilds every
//!    task from the changelog;
//! 5. peak RSS of (b) (the bench process, reset before the run);
//! 6. where the records went: the changelog read back and decoded, counted
//!    by kind (aggregates, indexes, idempotency, parked, outbox, meta, markers,
//!    fences, tombstones) and the output topics (projections, triggers, dead
//!    letters), in records and bytes (key + value) per raw event.
//!
//! Sizes: `--preset 64`, `--preset 256` or `--preset 768` picks the customers,
//! tenants and partitions of the README's three runs (60k customers over 300
//! tenants and 64 partitions; 200k / 1000 / 256; 1M / 3000 / 768); `--customers`,
//! `--events`, `--tenants`, `--partitions` and `--batch` set each one alone.
//! `--memory-budget-mb` and `--cache-records` set the processor's memory
//! settings (defaults: the product's, 1024 and 200 000);
//! `--kafka-property key=value` (repeatable) adds to `[kafka.properties]`.
//!
//! Logs are off; `RUST_LOG=storefold_processor=debug` (for example) shows them.

use std::time::{Duration, Instant};
use storefold_benches::{arg, say};

use prometheus::Registry;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use storefold_codec::{AvroCodec, StateKind, StateRecord, WireFormat};
use storefold_processor::{Mode, Processor};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, java_partition, producer_config, topic_specs};
use storefold_testkit::broker::{BrokerProcess, send_waiting};
use storefold_testkit::history::{HistorySpec, history};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Records and bytes (key + value) of one kind of written record.
#[derive(Default)]
struct Tally {
    records: usize,
    bytes: usize,
}

impl Tally {
    fn add(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>) {
        self.records += 1;
        self.bytes += key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
    }
}

/// What a changelog record is: the kind its decoded [`StateRecord`] names
/// (idempotency split into per-event keys and per-batch records); a tombstone
/// by the family of its key.
fn changelog_kind(codec: &AvroCodec, key: &str, payload: Option<&[u8]>) -> String {
    let Some(payload) = payload else {
        let of = if key.starts_with("~marker/") {
            "markers".to_string()
        } else if key.starts_with("~fence/") {
            "fences".to_string()
        } else {
            storefold_processor::records::family_of(key)
                .map_or("other", |f| f.name())
                .to_string()
        };
        return format!("tombstones ({of})");
    };
    let Ok(rec) = codec.decode::<StateRecord>(payload) else {
        return "undecodable".to_string();
    };
    let kind = match &rec.kind {
        StateKind::Aggregate => "aggregates",
        StateKind::Index => "indexes",
        StateKind::Idempotency if key.starts_with('~') => "idempotency (batch records)",
        StateKind::Idempotency => "idempotency (per-event keys)",
        StateKind::Parked => "parked",
        StateKind::Meta => "meta",
        StateKind::Marker => "markers",
        StateKind::Fence => "fences",
        StateKind::Other(other) => other.as_str(),
    };
    if rec.value.is_none() {
        format!("deletes ({kind})")
    } else {
        kind.to_string()
    }
}

/// The README's three sizes: (customers, tenants, partitions).
fn preset(size: usize) -> (usize, usize, usize) {
    match size {
        0 => (1_000_000, 1000, 128),
        64 => (60_000, 300, 64),
        256 => (200_000, 1000, 256),
        768 => (1_000_000, 3000, 768),
        other => {
            say(format!(
                "--preset {other}: the presets are 64, 256 and 768 (partitions)"
            ));
            std::process::exit(2);
        }
    }
}

fn main() {
    // Quiet unless RUST_LOG asks (e.g. `RUST_LOG=storefold_processor=debug`).
    storefold_runtime::telemetry::init(storefold_runtime::config::LogFormat::Text, "off");
    let (customers, tenants, partitions) = preset(arg("--preset", 0));
    let customers = arg("--customers", customers);
    let events_n = arg("--events", customers * 6 / 5);
    let partitions = arg("--partitions", partitions) as i32;
    let batch = arg("--batch", 5_000);
    // The processor's memory settings: RocksDB's budget (MiB) and the state
    // records kept between batches, both instance-wide.
    let memory_mb = arg("--memory-budget-mb", 1024);
    let cache_records = arg("--cache-records", 200_000);
    let tenants = arg("--tenants", tenants);

    let mut broker = BrokerProcess::start(1);
    let dir = tempfile::tempdir().expect("tmp");
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\npartitions = {partitions}\n\
         [processor]\nstate_dir = \"{}\"\nbatch_size = {batch}\ncommit_interval_ms = 1000\ncache_records = {cache_records}\nmemory_budget_mb = {memory_mb}\n",
        broker.bootstrap(),
        dir.path().join("state").display()
    );
    // `--kafka-property key=value` (repeatable): [kafka.properties] of the
    // processor's clients (and of the passthrough, which uses the same).
    let args: Vec<String> = std::env::args().collect();
    let properties: String = args
        .windows(2)
        .filter(|w| w[0] == "--kafka-property")
        .filter_map(|w| w[1].split_once('='))
        .map(|(k, v)| format!("{k:?} = {v:?}\n"))
        .collect();
    let toml = if properties.is_empty() {
        toml
    } else {
        format!("{toml}[kafka.properties]\n{properties}")
    };
    let config = Config::from_toml_str(&toml, Vec::new()).expect("config");
    let topics = Topics::new(&config.kafka.topic_prefix);
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("topic");
    }
    let passthrough = format!("{}bench.passthrough", config.kafka.topic_prefix);
    broker
        .create_topic(&passthrough, partitions)
        .expect("topic");

    let t = Instant::now();
    let events = history(&HistorySpec {
        tenants,
        customers_per_tenant: customers / tenants,
        events: events_n,
        duplicate_pct: 2,
        seed: 42,
    });
    let total = events.len();
    let bytes: usize = events.iter().map(|e| e.body.len()).sum();
    say(format!(
        "generated {total} raw events ({} distinct customers over {tenants} tenants, mean body {} B) in {:.1?}",
        customers,
        bytes / total.max(1),
        t.elapsed()
    ));
    let t = Instant::now();
    {
        let codec = AvroCodec::embedded().expect("codec");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "500000")
            .create()
            .expect("producer");
        for e in &events {
            let kind: ProviderKind = e.provider.parse().expect("provider");
            let topic = topics.raw(kind);
            let payload = codec.encode(e, WireFormat::SingleObject).expect("encode");
            let rec = BaseRecord::to(&topic)
                .key(e.tenant.as_bytes())
                .payload(&payload)
                .partition(java_partition(e.tenant.as_bytes(), partitions));
            send_waiting(&producer, rec);
        }
        producer.flush(Duration::from_secs(120)).expect("flush");
    }
    drop(events);
    say(format!("produced the raw topics in {:.1?}", t.elapsed()));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // (a) passthrough.
    let raw_topics: Vec<String> = topics.all_raw().into_iter().map(|(_, t)| t).collect();
    let consumer: BaseConsumer = storefold_runtime::kafka::client_config(&config.kafka)
        .set("group.id", "bench-passthrough")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let names: Vec<&str> = raw_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    let producer: FutureProducer = producer_config(&config.kafka, Duration::from_secs(30))
        .create()
        .expect("producer");
    let t = Instant::now();
    let mut moved = 0usize;
    let mut pending = Vec::with_capacity(batch);
    let mut idle_since = Instant::now();
    while moved < total {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            if idle_since.elapsed() > Duration::from_secs(30) {
                say(format!(
                    "passthrough: nothing to read for 30 s after {moved} of {total} records; stopping"
                ));
                std::process::exit(1);
            }
            continue;
        };
        idle_since = Instant::now();
        let m = m.expect("consume");
        let mut rec = FutureRecord::to(&passthrough)
            .key(m.key().unwrap_or_default())
            .payload(m.payload().unwrap_or_default())
            .partition(m.partition());
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        moved += 1;
        if moved.is_multiple_of(100_000) {
            say(format!(
                "  passthrough: {moved} records after {:.1?}",
                t.elapsed()
            ));
        }
        if pending.len() >= batch || moved == total {
            rt.block_on(async {
                for f in pending.drain(..) {
                    f.await.expect("delivery").expect("acknowledged");
                }
            });
            consumer
                .commit_consumer_state(CommitMode::Sync)
                .expect("commit");
        }
    }
    let pass_secs = t.elapsed().as_secs_f64();
    let pass_rate = total as f64 / pass_secs;
    say(format!(
        "(a) passthrough: {total} records in {pass_secs:.1} s = {pass_rate:.0} records/s"
    ));
    drop(consumer);

    // (b) the processor.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_kb("VmRSS:");
    let registry = Registry::new();
    let p = Processor::new(&config, registry.clone(), rt.handle().clone()).expect("processor");
    let mut opts = storefold_processor::options(&config, Mode::All);
    opts.exit_when_caught_up = true;
    // The memtables' peak, sampled from the stores' shared memory.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (memory, sampling) = (p.store_memory().clone(), sampling.clone());
        std::thread::spawn(move || {
            let mut memtables = 0usize;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                memtables = memtables.max(memory.memtable_bytes());
                std::thread::sleep(Duration::from_millis(200));
            }
            memtables
        })
    };
    let t = Instant::now();
    let summary = p
        .run_blocking(opts, CancellationToken::new())
        .expect("processor run");
    let proc_secs = t.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let memtables_peak = sampler.join().unwrap_or(0);
    say(format!(
        "  memtables: peak {} MiB (sampled), {} flushes requested by the processor",
        memtables_peak >> 20,
        summary.memtable_flushes
    ));
    let proc_rate = summary.events as f64 / proc_secs;
    say(format!(
        "  processor wall time: opening tasks {:.1?}, idle {:.1?}, folding {:.1?}, committing {:.1?}, \
         lag checks {:.1?}, closing tasks {:.1?}, the rest (polls, metrics) {:.1?}",
        summary.starting,
        summary.idle,
        summary.folding,
        summary.committing,
        summary.lag_checks,
        summary.closing,
        Duration::from_secs_f64(proc_secs).saturating_sub(
            summary.starting
                + summary.idle
                + summary.folding
                + summary.committing
                + summary.lag_checks
                + summary.closing
        )
    ));
    // Where the processor's time went: total seconds per commit step.
    let text = storefold_runtime::metrics::encode(&registry);
    for line in text.lines().filter(|l| {
        l.starts_with("storefold_processor_commit_duration_seconds_sum")
            || l.starts_with("storefold_processor_commit_duration_seconds_count")
            || l.starts_with("storefold_processor_batch_events_sum")
            || l.starts_with("storefold_processor_batch_events_count")
            || l.starts_with("storefold_processor_rocksdb_memory_bytes")
    }) {
        say(format!("  {line}"));
    }
    let peak = status_kb("VmHWM:");
    drop(p);
    say(format!(
        "(b) processor: {} events in {} batches, {proc_secs:.1} s = {proc_rate:.0} events/s; peak RSS {} MiB (baseline before the run {} MiB)",
        summary.events,
        summary.batches,
        peak / 1024,
        rss_before / 1024
    ));
    // What the processor wrote per raw event: the changelog decoded record by
    // record (after the run, so the processor pays nothing for it), then the
    // output topics.
    let (changelog_per_event, changelog_bytes_per_event) = {
        let codec = AvroCodec::embedded().expect("codec");
        let per_event = |n: usize| n as f64 / summary.events.max(1) as f64;
        let mut changelog: std::collections::BTreeMap<String, Tally> = Default::default();
        let mut changelog_total = Tally::default();
        for r in storefold_testkit::broker::read_topic(
            broker.bootstrap(),
            &topics.changelog(),
            Duration::from_secs(300),
        ) {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            let kind = changelog_kind(&codec, &key, r.payload.as_deref());
            changelog
                .entry(kind)
                .or_default()
                .add(r.key.as_deref(), r.payload.as_deref());
            changelog_total.add(r.key.as_deref(), r.payload.as_deref());
        }
        let mut outputs: Vec<(&str, Tally)> = Vec::new();
        for (name, topic) in [
            ("customer projections", topics.customers()),
            ("order projections", topics.orders()),
            ("triggers", topics.triggers()),
            ("dead letters", topics.dlq_processor()),
        ] {
            let mut t = Tally::default();
            for r in storefold_testkit::broker::read_topic(
                broker.bootstrap(),
                &topic,
                Duration::from_secs(300),
            ) {
                t.add(r.key.as_deref(), r.payload.as_deref());
            }
            outputs.push((name, t));
        }
        let outputs_records: usize = outputs.iter().map(|(_, t)| t.records).sum();
        let outputs_bytes: usize = outputs.iter().map(|(_, t)| t.bytes).sum();
        say(format!(
            "records written per raw event: {:.2} ({:.0} B): changelog {:.2} ({:.0} B), outputs {:.2} ({:.0} B)",
            per_event(changelog_total.records + outputs_records),
            per_event(changelog_total.bytes + outputs_bytes),
            per_event(changelog_total.records),
            per_event(changelog_total.bytes),
            per_event(outputs_records),
            per_event(outputs_bytes),
        ));
        let line = |name: &str, t: &Tally| {
            say(format!(
                "  {name:<34} {:>9} records {:>6.3}/event {:>12} B {:>7.1} B/event",
                t.records,
                per_event(t.records),
                t.bytes,
                per_event(t.bytes)
            ))
        };
        say("  changelog (key + value bytes):".to_string());
        for (kind, t) in &changelog {
            line(kind, t);
        }
        say("  outputs:".to_string());
        for (name, t) in &outputs {
            line(name, t);
        }
        (
            per_event(changelog_total.records),
            per_event(changelog_total.bytes),
        )
    };
    say(format!(
        "ratio processor / passthrough = {:.2} (target >= 0.5)",
        proc_rate / pass_rate
    ));

    // Cold restore into an empty state dir (the first one is removed: the
    // disk holds one full copy of the state at a time).
    let _ = std::fs::remove_dir_all(dir.path().join("state"));
    let mut cold = config.clone();
    cold.processor.state_dir = dir.path().join("cold");
    let registry = Registry::new();
    let p = Processor::new(&cold, registry.clone(), rt.handle().clone()).expect("processor");
    let mut opts = storefold_processor::options(&cold, Mode::All);
    opts.exit_when_caught_up = true;
    opts.group_id = "bench-cold".into();
    let t = Instant::now();
    let restore_summary = p
        .run_blocking(opts, CancellationToken::new())
        .expect("restore run");
    let run_secs = t.elapsed().as_secs_f64();
    // The restore is the opening of the tasks; the rest of that run is the
    // processor finding there is nothing left to fold, and closing.
    let secs = restore_summary.starting.as_secs_f64();
    let restored: f64 = storefold_runtime::metrics::encode(&registry)
        .lines()
        .filter(|l| l.starts_with("storefold_processor_restore_records_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let restore_rate = restored / secs;
    say(format!(
        "cold restore: {restored:.0} changelog records in {secs:.1} s = {restore_rate:.0} records/s \
         (opening the {partitions} tasks; the whole run, with its exit once caught up, {run_secs:.1} s)"
    ));

    // Nothing may have been dropped by the mock cluster.
    let check: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("consumer");
    let md = check
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut dropped = 0;
    let mut biggest = 0i64;
    for t in md.topics() {
        for part in t.partitions() {
            let (low, high) = check
                .fetch_watermarks(t.name(), part.id(), Duration::from_secs(10))
                .expect("watermarks");
            biggest = biggest.max(high);
            if low != 0 {
                dropped += 1;
                say(format!(
                    "DROPPED: {}/{} starts at {low}",
                    t.name(),
                    part.id()
                ));
            }
        }
    }
    if dropped > 0 {
        say(format!(
            "{dropped} partitions lost records: the figures above are VOID; rerun with more --partitions"
        ));
        // exit skips destructors: the state dirs (GBs at 768 partitions)
        // would stay behind.
        drop(dir);
        std::process::exit(1);
    }
    say(format!(
        "no partition lost a record (largest partition: {biggest} records)"
    ));
    say(format!(
        "summary: {partitions} partitions, {total} events: passthrough {pass_rate:.0} records/s, \
         processor {proc_rate:.0} events/s, ratio {:.2}, peak RSS {} MiB, cold restore \
         {restore_rate:.0} records/s, changelog {changelog_per_event:.2} records \
         ({changelog_bytes_per_event:.0} B) per raw event",
        proc_rate / pass_rate,
        peak / 1024
    ));
}
