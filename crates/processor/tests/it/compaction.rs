//! A restore from a compacted changelog gives the state the tasks had.
//!
//! Kafka compacts the changelog (`cleanup.policy=compact`, one hour of
//! `min.compaction.lag.ms`); the mock cluster never does. So this test folds a
//! history in two runs (two epochs per task), reads each changelog partition,
//! appends what a crash leaves behind (a batch of the current epoch whose
//! records were acknowledged but whose marker never was, and a fenced-off
//! owner's batch with its marker written after the newest fence), rewrites
//! each partition with [`storefold_testkit::log_cleaner`] and writes the
//! survivors to the changelog of a fresh cluster (same topic names, so the
//! markers' positions still name the raw topics). Offsets renumber there; the
//! restore reads records in order and keeps offsets only to recognise a
//! key's newest record, so it does not depend on dense offsets.
//!
//! 0. The uncompacted log restored: the control (a difference here is not
//!    the cleaner's doing).
//! 1. Everything older than the lag cleaned, the crash's records within it
//!    (the protocol's assumption: they are repaired before they can be
//!    cleaned): a restore onto an empty disk equals the original state.
//! 2. The processor restarted on that log with an empty disk (raw topics
//!    copied with their offsets) writes the crash's keys again in its first
//!    batch; its state equals; the log is compacted again with everything
//!    cleanable; a restore onto an empty disk still equals.
//!
//! "Equals": every column family but `meta` holds the same keys and values
//! (the outbox is empty on both sides once a start has produced it), the
//! committed raw positions and the generation are the same, and every
//! projection the restored tasks produce is the original's newest of its key.
//! Every stage runs; the differences are reported together, grouped by family
//! and key kind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use crate::common::*;
use prometheus::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use storefold_codec::{CommitMarker, RecordKind, StateKind, StateRecord};
use storefold_processor::db::{StoreMemory, TaskDb};
use storefold_processor::idem;
use storefold_processor::records::{Family, marker_key};
use storefold_processor::restore::{Committed, Op, Restorer};
use storefold_processor::task::Task;
use storefold_processor::{Mode, Processor, Shared};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, topic_specs};
use storefold_testkit::broker::{MockBroker, read_topic, send_waiting};
use storefold_testkit::history::{HistorySpec, history};
use storefold_testkit::log_cleaner::{self, CHANGELOG, LogRecord};

const PARTITIONS: i32 = 8;
/// Keys of each record kind a crash rewrites, per partition.
const CRASH_KEYS_PER_KIND: usize = 4;

/// One partition's records in offset order.
type Log = BTreeMap<i32, Vec<LogRecord>>;

/// What a task holds: every column family but `meta` (by name), and the
/// parts of its metadata that must survive a restore.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    families: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
    positions: BTreeMap<String, i64>,
    generation: i64,
}

impl Snapshot {
    fn of(db: &TaskDb) -> Snapshot {
        let families = Family::ALL
            .iter()
            .filter(|f| **f != Family::Meta)
            .map(|f| {
                let entries = db.entries(*f).expect("read family").into_iter().collect();
                (f.name(), entries)
            })
            .collect();
        let meta = db.meta().expect("meta").expect("a stored meta");
        Snapshot {
            families,
            positions: meta.positions,
            generation: meta.generation,
        }
    }

    fn value(&self, key: &str) -> Option<&Vec<u8>> {
        self.families.values().find_map(|m| m.get(key))
    }
}

/// The kind of a state key, for grouping differences: its kind segment
/// (`tenant/<kind>/…`) or its `~<prefix>/`.
fn key_kind(key: &str) -> &str {
    if key.starts_with('~') {
        key.split('/').next().unwrap_or(key)
    } else {
        key.split('/').nth(1).unwrap_or(key)
    }
}

/// For a per-event idempotency key, whether one of the task's live batch
/// records (`~idem/…`, see `storefold_processor::idem`) lists it: only
/// those are in the changelog (diagnostics only; the comparison itself
/// treats every key alike).
fn batch_listed(want: &Snapshot, key: &str) -> &'static str {
    if idem::is_batch_key(key) {
        return "";
    }
    let listed = want
        .families
        .get(Family::Idempotency.name())
        .into_iter()
        .flatten()
        .filter(|(k, _)| idem::is_batch_key(k))
        .filter_map(|(_, v)| idem::decode_batch(v))
        .any(|(_, entries)| entries.iter().any(|(k, _)| k == key));
    if listed {
        " (listed by a live batch record)"
    } else {
        " (listed by no live batch record: its batch record was retired)"
    }
}

/// Every difference between two tasks' snapshots, as (category, example).
fn differences(partition: i32, want: &Snapshot, got: &Snapshot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (family, w) in &want.families {
        let empty = BTreeMap::new();
        let g = got.families.get(family).unwrap_or(&empty);
        let keys: BTreeSet<&String> = w.keys().chain(g.keys()).collect();
        for k in keys {
            let what = match (w.get(k), g.get(k)) {
                (Some(a), Some(b)) if a == b => continue,
                (Some(_), Some(_)) => "a different value",
                (Some(_), None) => "missing",
                (None, Some(_)) => "extra",
                (None, None) => continue,
            };
            let age = if *family == Family::Idempotency.name() {
                batch_listed(want, k)
            } else {
                ""
            };
            out.push((
                format!("{family} {} keys: {what}{age}", key_kind(k)),
                format!("task {partition} {k}"),
            ));
        }
    }
    if want.positions != got.positions {
        out.push((
            "raw positions".into(),
            format!(
                "task {partition}: {:?}, restored {:?}",
                want.positions, got.positions
            ),
        ));
    }
    if want.generation != got.generation {
        out.push((
            "generation".into(),
            format!(
                "task {partition}: {}, restored {}",
                want.generation, got.generation
            ),
        ));
    }
    out
}

/// The differences of `got` from `want`, grouped, as one message (`None`
/// when equal).
fn compare(
    what: &str,
    want: &BTreeMap<i32, Snapshot>,
    got: &BTreeMap<i32, Snapshot>,
) -> Option<String> {
    let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (p, w) in want {
        let diffs = match got.get(p) {
            Some(g) => differences(*p, w, g),
            None => vec![("tasks".into(), format!("task {p}: not restored"))],
        };
        for (category, example) in diffs {
            by_category.entry(category).or_default().push(example);
        }
    }
    if by_category.is_empty() {
        return None;
    }
    let report: Vec<String> = by_category
        .iter()
        .map(|(category, examples)| {
            let shown: Vec<&String> = examples.iter().take(3).collect();
            format!("  {} × {category}, e.g. {shown:?}", examples.len())
        })
        .collect();
    Some(format!(
        "{what}: differs from the original state:\n{}",
        report.join("\n")
    ))
}

/// Every partition of `topic` with the records' timestamps.
fn read_log(bootstrap: &str, topic: &str) -> Log {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = BTreeSet::new();
    let mut log: Log = (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => log.entry(m.partition()).or_default().push(LogRecord {
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis().expect("a timestamp"),
                key: m.key().expect("a keyed record").to_vec(),
                value: m.payload().map(<[u8]>::to_vec),
                headers: storefold_runtime::kafka::owned_headers(&m),
            }),
        }
    }
    for records in log.values_mut() {
        records.sort_by_key(|r| r.offset);
    }
    log
}

/// Writes `log` to `topic` (a fresh one), partition by partition, in order,
/// with the records' timestamps, and checks it was written whole.
fn write_log(bootstrap: &str, topic: &str, log: &Log) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (p, records) in log {
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(*p)
                .key(r.key.as_slice())
                .timestamp(r.timestamp_ms)
                .headers(headers);
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            send_waiting(&producer, rec);
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let back = read_log(bootstrap, topic);
    for (p, records) in log {
        let keys: Vec<&Vec<u8>> = records.iter().map(|r| &r.key).collect();
        let got: Vec<&Vec<u8>> = back[p].iter().map(|r| &r.key).collect();
        assert_eq!(got, keys, "{topic}/{p} holds what was written, in order");
    }
}

/// Another cluster with storefold's topics (same names), and the
/// configuration pointing at it with state under its own directory.
struct Cluster {
    broker: MockBroker,
    config: Config,
}

impl Cluster {
    fn start(env: &Env, name: &str) -> Cluster {
        let broker = MockBroker::start(1);
        let mut config = env.config.clone();
        config.kafka.bootstrap_servers = broker.bootstrap().to_string();
        config.processor.state_dir = env.dir.path().join(format!("state-{name}"));
        for spec in topic_specs(&config.kafka, &[]) {
            broker
                .create_topic(&spec.name, spec.partitions)
                .expect("create topic");
        }
        Cluster { broker, config }
    }

    fn bootstrap(&self) -> &str {
        self.broker.bootstrap()
    }
}

fn open(config: &Config, partition: i32) -> TaskDb {
    let path = config.processor.state_dir.join(format!("task-{partition}"));
    let memory = StoreMemory::new(16 << 20);
    TaskDb::open(&path, &memory, i64::MAX, Arc::new(AtomicI64::new(0)), false).expect("open")
}

/// Every task's state on disk under `config`'s state directory.
fn disk_state(config: &Config) -> BTreeMap<i32, Snapshot> {
    (0..PARTITIONS)
        .map(|p| (p, Snapshot::of(&open(config, p))))
        .collect()
}

/// Starts every task of `config`'s prefix on an empty disk (the start protocol
/// alone: restore, fence, outbox) and returns their state and start reports.
fn restore(env: &Env, config: &Config) -> (BTreeMap<i32, Snapshot>, BTreeMap<i32, String>) {
    let processor =
        Processor::new(config, Registry::new(), env.rt.handle().clone()).expect("processor");
    let mut state = BTreeMap::new();
    let mut reports = BTreeMap::new();
    for p in 0..PARTITIONS {
        let task = Task::start(processor.shared.clone(), p, false)
            .unwrap_or_else(|e| panic!("restore of task {p}: {e}"));
        assert!(task.report.empty_disk, "task {p} started on an empty disk");
        state.insert(p, Snapshot::of(task.db()));
        reports.insert(p, format!("{:?}", task.report));
    }
    (state, reports)
}

fn decode(shared: &Shared, r: &LogRecord) -> Option<StateRecord> {
    r.value.as_deref().map(|v| {
        shared
            .codec
            .decode::<StateRecord>(v)
            .unwrap_or_else(|e| panic!("changelog offset {}: {e}", r.offset))
    })
}

/// What a crash leaves after partition `log`'s records, given the task's
/// state: a batch of the current epoch whose records were acknowledged but
/// not its marker, then a batch of the previous epoch's owner (a zombie that
/// has not noticed the newest fence) with its marker. Both write existing keys
/// with values that differ from the committed ones (another key's value of the
/// same kind). Returns the records and the keys they rewrite.
fn crash_records(
    shared: &Shared,
    log: &[LogRecord],
    state: &Snapshot,
    epoch: i64,
    sequence: i64,
    timestamp_ms: i64,
) -> Option<(Vec<LogRecord>, BTreeSet<String>)> {
    assert!(epoch >= 2, "the task has had two owners");
    // The newest record of each key, and the newest marker of the zombie's epoch.
    let mut newest: BTreeMap<String, StateKind> = BTreeMap::new();
    let mut zombie_marker: Option<CommitMarker> = None;
    for r in log {
        let Some(rec) = decode(shared, r) else {
            continue;
        };
        match rec.kind {
            StateKind::Marker if rec.epoch == epoch - 1 => {
                zombie_marker = rec
                    .value
                    .as_deref()
                    .and_then(|v| shared.codec.decode::<CommitMarker>(v).ok());
            }
            StateKind::Marker | StateKind::Fence => {}
            kind => {
                newest.insert(rec.key, kind);
            }
        }
    }
    // A task without a batch in the previous epoch has nothing to crash on.
    let last = zombie_marker?;
    // A few keys of each kind that the task holds, spread over the key range.
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, kind) in &newest {
        if state.value(k).is_some() {
            by_kind
                .entry(format!("{kind:?}"))
                .or_default()
                .push(k.clone());
        }
    }
    let mut orphans = Vec::new();
    let mut zombies = Vec::new();
    for keys in by_kind.values() {
        if keys.len() < 2 {
            continue;
        }
        let n = CRASH_KEYS_PER_KIND.min(keys.len());
        let picked: Vec<&String> = (0..n).map(|i| &keys[i * keys.len() / n]).collect();
        for (i, k) in picked.iter().enumerate() {
            let own = state.value(k).expect("held");
            let other = state.value(picked[(i + 1) % n]).expect("held");
            if other == own {
                continue;
            }
            let kind = newest[*k].clone();
            let target = if i % 2 == 0 {
                &mut orphans
            } else {
                &mut zombies
            };
            target.push(((*k).clone(), kind, other.clone()));
        }
    }
    if orphans.is_empty() || zombies.is_empty() {
        return None;
    }
    let format = shared.framing.format(RecordKind::StateRecord);
    let encode = |rec: &StateRecord| shared.codec.encode(rec, format).expect("encode");
    let mut records = Vec::new();
    let mut keys = BTreeSet::new();
    let mut push = |rec: StateRecord| {
        keys.insert(rec.key.clone());
        records.push(LogRecord {
            offset: 0,
            timestamp_ms,
            key: rec.key.as_bytes().to_vec(),
            value: Some(encode(&rec)),
            headers: Vec::new(),
        });
    };
    for (key, kind, value) in orphans {
        push(StateRecord {
            key,
            kind,
            epoch,
            sequence: sequence + 1,
            value: Some(value),
        });
    }
    let zombie_seq = last.sequence + 1;
    let count = zombies.len() as i64;
    for (key, kind, value) in zombies {
        push(StateRecord {
            key,
            kind,
            epoch: epoch - 1,
            sequence: zombie_seq,
            value: Some(value),
        });
    }
    let marker = CommitMarker {
        epoch: epoch - 1,
        sequence: zombie_seq,
        record_count: count,
        input_positions: last.input_positions.clone(),
        flushed_batch: last.sequence,
    };
    let marker_format = shared.framing.format(RecordKind::CommitMarker);
    push(StateRecord {
        key: marker_key(epoch - 1),
        kind: StateKind::Marker,
        epoch: epoch - 1,
        sequence: zombie_seq,
        value: Some(shared.codec.encode(&marker, marker_format).expect("marker")),
    });
    keys.remove(&marker_key(epoch - 1));
    let base = log.last().map_or(0, |r| r.offset + 1);
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = base + i as i64;
    }
    Some((records, keys))
}

/// What a log holds: records, state records that delete a key (a value
/// Kafka keeps: such a record is no tombstone), Kafka tombstones (no value),
/// distinct keys.
#[derive(Debug)]
struct Census {
    records: usize,
    state_deletes: usize,
    tombstones: usize,
    keys: usize,
}

fn census(shared: &Shared, log: &Log) -> Census {
    let mut c = Census {
        records: 0,
        state_deletes: 0,
        tombstones: 0,
        keys: 0,
    };
    let mut keys = BTreeSet::new();
    for r in log.values().flatten() {
        c.records += 1;
        keys.insert(r.key.clone());
        match decode(shared, r) {
            None => c.tombstones += 1,
            Some(rec) if rec.value.is_none() => c.state_deletes += 1,
            Some(_) => {}
        }
    }
    c.keys = keys.len();
    c
}

/// The newest value of every key of the projection topics under `prefix`.
fn projections(bootstrap: &str, prefix: &str) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let topics = Topics::new(prefix);
    let mut out = BTreeMap::new();
    for topic in [topics.customers(), topics.orders()] {
        for r in read_topic(bootstrap, &topic, Duration::from_secs(10)) {
            if let (Some(k), Some(v)) = (r.key, r.payload) {
                out.insert((topic.clone(), k), v);
            }
        }
    }
    out
}

/// Projections produced on `cluster` that are not the original's newest of
/// their key.
fn stale_projections(
    original: &BTreeMap<(String, Vec<u8>), Vec<u8>>,
    cluster: &Cluster,
    prefix: &str,
) -> Option<String> {
    let stale: Vec<String> = projections(cluster.bootstrap(), prefix)
        .into_iter()
        .filter(|(k, v)| original.get(k) != Some(v))
        .map(|((topic, key), _)| format!("{topic} {}", String::from_utf8_lossy(&key)))
        .collect();
    (!stale.is_empty()).then(|| {
        format!(
            "{} projections produced by the restored tasks are not the original's newest: {:?}",
            stale.len(),
            &stale[..stale.len().min(5)]
        )
    })
}

#[test]
fn a_restore_from_a_compacted_changelog_equals_the_state() {
    let env = env(PARTITIONS);
    let bootstrap = env.config.kafka.bootstrap_servers.clone();
    let original_prefix = env.config.kafka.topic_prefix.clone();
    let events = history(&HistorySpec {
        tenants: 24,
        customers_per_tenant: 16,
        events: 2400,
        duplicate_pct: 4,
        seed: 16,
    });
    // Two runs: every task has had two epochs (the second owner fenced the
    // first), so there is an older epoch for a zombie to write in.
    let (first, second) = events.split_at(events.len() / 2);
    produce(&env.config, first);
    run(&env, &env.config, options(&env.config, Mode::All));
    produce(&env.config, second);
    let (summary, _) = run(&env, &env.config, options(&env.config, Mode::All));
    assert_eq!(summary.events as usize, second.len());

    let original = disk_state(&env.config);
    let metas: BTreeMap<i32, (i64, i64)> = (0..PARTITIONS)
        .map(|p| {
            let m = open(&env.config, p).meta().expect("meta").expect("stored");
            (p, (m.epoch, m.sequence))
        })
        .collect();
    let held: Vec<usize> = original
        .values()
        .map(|s| s.families[Family::Aggregates.name()].len())
        .collect();
    eprintln!("aggregates per task: {held:?}");
    let original_projections = projections(&bootstrap, &original_prefix);
    // Every stage runs; what differs is reported together at the end.
    let mut findings: Vec<String> = Vec::new();
    let processor =
        Processor::new(&env.config, Registry::new(), env.rt.handle().clone()).expect("processor");
    let shared = processor.shared.clone();
    let changelog = Topics::new(&original_prefix).changelog();
    let mut log = read_log(&bootstrap, &changelog);

    // The crash's records, one millisecond after the newest record of any
    // partition.
    let newest_ms = log
        .values()
        .flatten()
        .map(|r| r.timestamp_ms)
        .max()
        .expect("a changelog");
    let crash_ms = newest_ms + 1;
    let mut crashed: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for (p, records) in log.iter_mut() {
        let (epoch, sequence) = metas[p];
        if let Some((extra, keys)) =
            crash_records(&shared, records, &original[p], epoch, sequence, crash_ms)
        {
            records.extend(extra);
            crashed.insert(*p, keys);
        }
    }
    assert!(
        crashed.len() >= PARTITIONS as usize / 2,
        "a crash on most tasks: {crashed:?}"
    );

    // 1. Everything before the crash cleaned; the crash within the lag.
    let now = crash_ms - 1 + CHANGELOG.min_compaction_lag_ms;
    let compacted: Log = log
        .iter()
        .map(|(p, r)| (*p, log_cleaner::clean(r, now, &CHANGELOG)))
        .collect();
    let before = census(&shared, &log);
    let after = census(&shared, &compacted);
    eprintln!(
        "changelog of {} raw events: {before:?}; compacted (everything before the crash): \
         {after:?}",
        events.len()
    );
    assert!(after.records < before.records, "compaction removed records");
    for (p, records) in &compacted {
        let kept: BTreeSet<Vec<u8>> = records
            .iter()
            .filter(|r| r.timestamp_ms == crash_ms)
            .map(|r| r.key.clone())
            .collect();
        for k in crashed.get(p).into_iter().flatten() {
            assert!(
                kept.contains(k.as_bytes()),
                "the crash's {k} is within the lag"
            );
        }
    }
    // The same log uncompacted first: what a restore gives without the
    // cleaner (a difference here is no compaction's doing).
    let plain = Cluster::start(&env, "uncompacted");
    write_log(plain.bootstrap(), &changelog, &log);
    let (restored, reports) = restore(&env, &plain.config);
    eprintln!("restore from the uncompacted changelog: {reports:#?}");
    findings.extend(compare(
        "restore from the uncompacted changelog",
        &original,
        &restored,
    ));

    let once = Cluster::start(&env, "once");
    write_log(once.bootstrap(), &changelog, &compacted);
    let (restored, reports) = restore(&env, &once.config);
    eprintln!("restore from the compacted changelog: {reports:#?}");
    findings.extend(compare(
        "restore from the compacted changelog",
        &original,
        &restored,
    ));
    findings.extend(stale_projections(
        &original_projections,
        &once,
        &original_prefix,
    ));

    // 2. The processor restarted on that log (raw topics copied, offsets
    // kept) with an empty disk: its first batch writes the crash's keys again.
    let repaired = Cluster::start(&env, "repaired");
    write_log(repaired.bootstrap(), &changelog, &compacted);
    for (_, raw) in Topics::new(&original_prefix).all_raw() {
        write_log(repaired.bootstrap(), &raw, &read_log(&bootstrap, &raw));
    }
    let (summary, _) = run(&env, &repaired.config, options(&repaired.config, Mode::All));
    assert_eq!(summary.events, 0, "nothing left to fold");
    findings.extend(compare(
        "processor restarted on the compacted changelog",
        &original,
        &disk_state(&repaired.config),
    ));
    findings.extend(stale_projections(
        &original_projections,
        &repaired,
        &original_prefix,
    ));
    let relog = read_log(repaired.bootstrap(), &changelog);
    for (p, keys) in &crashed {
        let rewritten: BTreeSet<String> = relog[p]
            .iter()
            .skip(compacted[p].len())
            .filter_map(|r| decode(&shared, r))
            .map(|rec| rec.key)
            .collect();
        let missing: Vec<&String> = keys.iter().filter(|k| !rewritten.contains(*k)).collect();
        if !missing.is_empty() {
            findings.push(format!(
                "task {p}: the restart did not write the crash's keys again: {missing:?}"
            ));
        }
    }

    // Then compacted with everything cleanable, and restored once more.
    let newest_ms = relog
        .values()
        .flatten()
        .map(|r| r.timestamp_ms)
        .max()
        .expect("records");
    let now = newest_ms + CHANGELOG.min_compaction_lag_ms;
    let recompacted: Log = relog
        .iter()
        .map(|(p, r)| (*p, log_cleaner::clean(r, now, &CHANGELOG)))
        .collect();
    eprintln!(
        "after the repair, everything cleanable compacted: {:?}",
        census(&shared, &recompacted)
    );
    let twice = Cluster::start(&env, "twice");
    write_log(twice.bootstrap(), &changelog, &recompacted);
    let (restored, reports) = restore(&env, &twice.config);
    eprintln!("restore after the repair and a full compaction: {reports:#?}");
    findings.extend(compare(
        "restore after the repair and a full compaction",
        &original,
        &restored,
    ));
    findings.extend(stale_projections(
        &original_projections,
        &twice,
        &original_prefix,
    ));
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// The restore rule under compaction, record by record: a fenced-off owner
/// (a zombie) that commits a batch after the newest fence writes its epoch's
/// marker again, under the same key (`~marker/<epoch>`). Compaction keeps
/// only that newest marker, which the restore ignores (a lower epoch after a
/// higher fence), and the epoch's own marker is gone: the epoch's batches
/// below the fence's sequence must still count as committed (the fence's
/// owner started from them). A fence written by an older build (sequence,
/// no committed state in its value) is enough.
#[test]
fn a_zombies_marker_compacted_over_its_epochs_marker_keeps_the_epoch_committed() {
    let data = |key: &str, epoch: i64, sequence: i64, value: &str| StateRecord {
        key: key.into(),
        kind: StateKind::Aggregate,
        epoch,
        sequence,
        value: Some(value.as_bytes().to_vec()),
    };
    let marker = |epoch: i64, sequence: i64| StateRecord {
        key: marker_key(epoch),
        kind: StateKind::Marker,
        epoch,
        sequence,
        value: Some(
            serde_json::to_vec(&CommitMarker {
                epoch,
                sequence,
                record_count: 1,
                input_positions: Vec::new(),
                flushed_batch: sequence - 1,
            })
            .expect("json"),
        ),
    };
    // What the second owner's start writes: its epoch, and the next sequence.
    let fence = StateRecord {
        key: storefold_processor::records::fence_key(2),
        kind: StateKind::Fence,
        epoch: 2,
        sequence: 1,
        // A fence's value is JSON; written by hand so that fields added to
        // it later do not change this test.
        value: Some(br#"{"generation":1,"reset":false}"#.to_vec()),
    };
    let restore = |records: Vec<StateRecord>| -> Vec<Op> {
        let mut r = Restorer::new(Committed {
            sequence: -1,
            flushed: -1,
            generation: 1,
            ..Committed::default()
        });
        let mut ops = Vec::new();
        for (offset, rec) in records.into_iter().enumerate() {
            r.feed(offset as i64, rec, |b| serde_json::from_slice(b).ok())
                .expect("feed");
            ops.extend(r.drain());
        }
        ops.extend(r.finish().1);
        ops
    };
    let written = |key: &str, value: &str| Op::Write(key.into(), Some(value.as_bytes().to_vec()));
    let log = vec![
        data("a", 1, 0, "a0"),
        marker(1, 0),
        fence.clone(),
        // The zombie's batch, after the fence.
        data("b", 1, 1, "zombie"),
        marker(1, 1),
        data("c", 2, 1, "c1"),
        marker(2, 1),
    ];
    assert_eq!(restore(log), vec![written("a", "a0"), written("c", "c1")]);
    // Compacted: the zombie's marker superseded marker(1, 0).
    let compacted = vec![
        data("a", 1, 0, "a0"),
        fence,
        data("b", 1, 1, "zombie"),
        marker(1, 1),
        data("c", 2, 1, "c1"),
        marker(2, 1),
    ];
    assert_eq!(
        restore(compacted),
        vec![written("a", "a0"), written("c", "c1")],
        "batch 0 of epoch 1 was committed before the fence"
    );
}
