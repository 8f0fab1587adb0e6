//! A task: partition p of every raw topic, its RocksDB, and the commit protocol
//! of ARCHITECTURE §5.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use rocksdb::WriteBatch;
use storefold_codec::{
    AvroCodec, CommitMarker, RECEIVED_AT_HEADER, RawEvent, StateKind, StateRecord, WireFormat,
};
use storefold_core::engine::{Engine, FoldConfig, Item, StateKey, StateValue};
use storefold_core::{FoldError, Outcome};
use storefold_providers::{Headers, MapContext, MapOptions, ProviderKind, RawInput};
use storefold_runtime::config::KafkaConfig;
use storefold_runtime::kafka::{Topics, client_config};
use time::OffsetDateTime;

use crate::db::{DbError, DbSource, Meta, TaskDb};
use crate::failpoint;
use crate::metrics::ProcessorMetrics;
use crate::parked::{ParkedIndex, Progress, parked_since, release_topics, waited_for};
use crate::records::{
    Family, Fence, OutboxEntry, ProjectionRecord, decode_value, family_of, fence_key,
    idempotency_key, idempotency_value, input_positions, marker_key, outbox_key, projection_record,
    trigger_record,
};
use crate::restore::{Committed, Op, Restorer, outbox_flushed};
use crate::size;

/// What every task of an instance shares.
pub struct Shared {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub codec: AvroCodec,
    pub producer: FutureProducer,
    pub rt: tokio::runtime::Handle,
    pub metrics: ProcessorMetrics,
    /// The broker's cluster id, stored with the state.
    pub cluster_id: String,
    /// Raw topics (name, provider) this processor folds.
    pub raw_topics: Vec<String>,
    /// Partition count of the raw topics and the changelog.
    pub partitions: i32,
    pub state_dir: PathBuf,
    pub retention_ms: i64,
    pub sync_writes: bool,
    pub produce_timeout: Duration,
    pub cache_records: usize,
    /// How each configured tenant's payloads are mapped (its stores, where its
    /// payment providers name the order).
    pub map_options: BTreeMap<String, MapOptions>,
    /// How the payloads of a tenant that is not configured are mapped.
    pub default_map_options: MapOptions,
    /// Reporting currencies and rates for the fold.
    pub fold: Arc<FoldConfig>,
    /// How long a parked event waits for its order (ms of receive time) before it
    /// goes to the dead-letter topic.
    pub park_timeout_ms: i64,
    /// The producer's `message.max.bytes`: no record the task writes may
    /// exceed it (see [`crate::size`]).
    pub max_message_bytes: usize,
}

impl Shared {
    /// The mapping options of `tenant`.
    pub fn map_options(&self, tenant: &str) -> &MapOptions {
        self.map_options
            .get(tenant)
            .unwrap_or(&self.default_map_options)
    }

    /// The raw topics a parked event's order can come from (see
    /// [`release_topics`]), with its tenant's stores.
    pub fn release_topics(&self, env: &storefold_core::Envelope) -> Vec<String> {
        release_topics(env, &self.map_options(&env.tenant).stores, |p| {
            p.parse::<ProviderKind>().ok().map(|k| self.topics.raw(k))
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cluster_id", &self.cluster_id)
            .field("partitions", &self.partitions)
            .finish()
    }
}

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The state does not belong to this log: refusing is the only safe answer.
    #[error("{0}")]
    WrongLog(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("changelog: {0}")]
    Changelog(String),
}

impl TaskError {
    /// Errors that restarting the task cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(self, TaskError::WrongLog(_) | TaskError::Db(_))
    }
}

/// One record to produce.
struct Out<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: &'a [u8],
    value: Option<&'a [u8]>,
    headers: &'a [(String, Vec<u8>)],
}

impl Shared {
    /// Produces the records and waits for every acknowledgement; returns their
    /// offsets. Any failure fails the whole call.
    fn produce_all(&self, records: &[Out<'_>]) -> Result<Vec<i64>, TaskError> {
        let mut futures = Vec::with_capacity(records.len());
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec = FutureRecord::to(r.topic).key(r.key).headers(headers);
            if let Some(v) = r.value {
                rec = rec.payload(v);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p);
            }
            let deadline = Instant::now() + self.produce_timeout;
            loop {
                match self.producer.send_result(rec) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        rec = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        return Err(TaskError::Kafka(format!("produce to {}: {e}", r.topic)));
                    }
                }
            }
        }
        self.rt.block_on(async {
            let mut offsets = Vec::with_capacity(futures.len());
            for f in futures {
                match f.await {
                    Ok(Ok(d)) => offsets.push(d.offset),
                    Ok(Err((e, _))) => {
                        return Err(TaskError::Kafka(format!("not acknowledged: {e}")));
                    }
                    Err(_) => return Err(TaskError::Kafka("producer went away".into())),
                }
            }
            Ok(offsets)
        })
    }

    fn encode<T: storefold_codec::AvroRecord>(&self, v: &T) -> Vec<u8> {
        // Our own records always match their schemas.
        self.codec
            .encode(v, WireFormat::SingleObject)
            .unwrap_or_else(|e| unreachable!("encoding a {}: {e}", std::any::type_name::<T>()))
    }
}

/// (low, high) offsets per (topic, partition).
pub type Watermarks = BTreeMap<(String, i32), (i64, i64)>;

/// Low and high watermarks of many partitions in two ListOffsets requests
/// (timestamp -2 = earliest, -1 = latest), instead of a round trip each.
pub fn watermarks<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Watermarks, TaskError> {
    // `Beginning`/`End` carry the raw values -2/-1, which ListOffsets reads as
    // the earliest/latest timestamps.
    let ask = |ts: Offset| -> Result<BTreeMap<(String, i32), i64>, TaskError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition_offset(t, *p, ts)
                .map_err(|e| TaskError::Kafka(e.to_string()))?;
        }
        let out = consumer
            .offsets_for_times(tpl, timeout)
            .map_err(|e| TaskError::Kafka(format!("list offsets: {e}")))?;
        let mut m = BTreeMap::new();
        for e in out.elements() {
            if let Some(err) = e.error().err() {
                return Err(TaskError::Kafka(format!(
                    "list offsets of {}/{}: {err}",
                    e.topic(),
                    e.partition()
                )));
            }
            let v = match e.offset() {
                Offset::Offset(n) => n,
                other => other.to_raw().unwrap_or(-1),
            };
            m.insert((e.topic().to_string(), e.partition()), v);
        }
        Ok(m)
    };
    let low = ask(Offset::Beginning)?;
    let high = ask(Offset::End)?;
    Ok(partitions
        .iter()
        .map(|k| {
            let key = (k.0.clone(), k.1);
            let l = low.get(&key).copied().unwrap_or(0);
            let h = high.get(&key).copied().unwrap_or(-1);
            (key, (l, h))
        })
        .collect())
}

/// A raw record handed to a task.
#[derive(Debug)]
pub struct Input<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// How a start went (logged, and asserted on by tests).
#[derive(Clone, Debug, Default)]
pub struct StartReport {
    pub restored_records: u64,
    pub applied: u64,
    pub zombies: u64,
    pub orphans: u64,
    pub from_offset: i64,
    pub empty_disk: bool,
}

/// One task. See the module docs.
pub struct Task {
    pub partition: i32,
    db: Arc<TaskDb>,
    shared: Arc<Shared>,
    epoch: i64,
    /// Sequence the next batch gets.
    next_seq: i64,
    generation: i64,
    /// Committed next offset per raw topic.
    positions: BTreeMap<String, i64>,
    /// Positions including the open batch.
    batch_positions: BTreeMap<String, i64>,
    meta: Meta,
    engine: Engine,
    watermark: Arc<AtomicI64>,
    batch_events: usize,
    batch_started: Option<Instant>,
    batch_idem: Vec<(String, i64)>,
    batch_idem_set: HashSet<String>,
    batch_dlq: Vec<OutboxEntry>,
    /// Provider of each event parked in the open batch (a release in the same
    /// batch never reaches the store, but is counted).
    batch_parked: std::collections::HashMap<String, String>,
    /// Every parked event of the task's state and the open batch, by receive
    /// time and the raw topics its order can come from.
    parked: ParkedIndex,
    /// How far each raw topic has been read (in receive times).
    progress: Progress,
    /// Provider of each parked event the open batch gave up on (tenant, event id).
    batch_expired: std::collections::HashMap<(String, String), String>,
    /// (provider, outcome) counts of the open batch, published at commit.
    batch_outcomes: BTreeMap<(String, &'static str), u64>,
    /// Keys to write again with their committed value in the next batch.
    repair: Vec<String>,
    /// Outbox keys produced and deleted locally, to tombstone in the changelog.
    flushed_outbox: Vec<String>,
    pub report: StartReport,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("partition", &self.partition)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

fn task_label(p: i32) -> String {
    p.to_string()
}

impl Task {
    /// Opens the task's store and runs the start protocol: reads the changelog
    /// past the local position, applies committed batches, fences older epochs,
    /// and produces what the outbox still holds. `reset` starts a replay: the
    /// state is cleared and a new projection generation begins.
    pub fn start(shared: Arc<Shared>, partition: i32, reset: bool) -> Result<Task, TaskError> {
        let label = task_label(partition);
        let path = shared.state_dir.join(format!("task-{partition}"));
        std::fs::create_dir_all(&shared.state_dir).map_err(|e| {
            TaskError::WrongLog(format!(
                "cannot create state dir {}: {e}",
                shared.state_dir.display()
            ))
        })?;
        let watermark = Arc::new(AtomicI64::new(0));
        let db = Arc::new(TaskDb::open(
            &path,
            shared.retention_ms,
            watermark.clone(),
            shared.sync_writes,
        )?);
        let stored = db.meta()?;
        let empty_disk = stored.is_none();
        let mut meta = stored.unwrap_or_else(Meta::fresh);
        // Never apply state to a different log.
        if let Some(id) = &meta.cluster_id
            && *id != shared.cluster_id
        {
            return Err(TaskError::WrongLog(format!(
                "the state in {} was built from Kafka cluster {id}, but the broker is cluster {}; \
                 its positions mean nothing here. Point storefold at the original cluster, or move \
                 the directory away to rebuild this task from the changelog",
                path.display(),
                shared.cluster_id
            )));
        }
        for (topic, n) in &meta.raw_partitions {
            if *n != shared.partitions {
                return Err(TaskError::WrongLog(format!(
                    "the state in {} was built when {topic} had {n} partitions; it has {} now, so \
                     tenants moved between tasks. Rebuild with `storefold replay`",
                    path.display(),
                    shared.partitions
                )));
            }
        }
        let changelog = shared.topics.changelog();
        let consumer: BaseConsumer = client_config(&shared.kafka)
            .set("group.id", "storefold-restore")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error")
            .create()
            .map_err(|e| TaskError::Kafka(e.to_string()))?;
        let timeout = shared.produce_timeout;
        let mut wanted: Vec<(String, i32)> = vec![(changelog.clone(), partition)];
        wanted.extend(shared.raw_topics.iter().map(|t| (t.clone(), partition)));
        let marks = watermarks(&consumer, &wanted, timeout)?;
        let (low, high) = marks[&(changelog.clone(), partition)];
        if meta.changelog_next > high {
            return Err(TaskError::WrongLog(format!(
                "the state in {} has read {changelog} partition {partition} up to offset {}, but \
                 the partition ends at {high}: the changelog was deleted or recreated. Move the \
                 directory away to rebuild from what the changelog holds, or `storefold replay`",
                path.display(),
                meta.changelog_next
            )));
        }
        for (topic, next) in &meta.positions {
            let Some(&(rlow, rhigh)) = marks.get(&(topic.clone(), partition)) else {
                continue;
            };
            if *next > rhigh || *next < rlow {
                return Err(TaskError::WrongLog(format!(
                    "the state in {} continues {topic} partition {partition} at offset {next}, but \
                     the partition holds offsets {rlow}..{rhigh}: the log was truncated or \
                     recreated under the state. Refusing to skip or re-read data; `storefold \
                     replay` rebuilds from what the raw topics hold",
                    path.display()
                )));
            }
        }
        let from = meta.changelog_next.max(low);
        let mut restorer = Restorer::new(Committed {
            epoch: meta.epoch,
            sequence: meta.sequence,
            flushed: meta.flushed,
            positions: meta.positions.clone(),
            generation: meta.generation,
        });
        let remaining = shared
            .metrics
            .restore_remaining
            .with_label_values(&[&label]);
        let restored = shared.metrics.restore_records.with_label_values(&[&label]);
        if from < high {
            tracing::info!(
                task = partition,
                from,
                to = high,
                empty_disk,
                "restoring from the changelog"
            );
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&changelog, partition, Offset::Offset(from))
                .map_err(|e| TaskError::Kafka(e.to_string()))?;
            consumer
                .assign(&tpl)
                .map_err(|e| TaskError::Kafka(e.to_string()))?;
            let started = Instant::now();
            let mut last_log = Instant::now();
            let mut last_progress = Instant::now();
            let mut next = from;
            let mut batch = WriteBatch::default();
            while next < high {
                match consumer.poll(Duration::from_millis(200)) {
                    None => {
                        // Compaction may leave the last offsets empty: the
                        // fetch position still reaches the end.
                        let at = consumer
                            .position()
                            .ok()
                            .and_then(|tpl| tpl.elements().first().map(|e| e.offset()));
                        if let Some(Offset::Offset(o)) = at
                            && o >= high
                        {
                            break;
                        }
                        if last_progress.elapsed() > timeout {
                            return Err(TaskError::Kafka(format!(
                                "restore of task {partition} made no progress for {timeout:?} at {changelog} offset {next}"
                            )));
                        }
                    }
                    Some(Err(e)) => {
                        return Err(TaskError::Kafka(format!(
                            "reading {changelog}/{partition}: {e}"
                        )));
                    }
                    Some(Ok(m)) => {
                        last_progress = Instant::now();
                        next = m.offset() + 1;
                        restored.inc();
                        remaining.set(high - next);
                        let Some(payload) = m.payload() else {
                            // A compaction tombstone of a key: nothing to restore.
                            continue;
                        };
                        let rec: StateRecord = shared.codec.decode(payload).map_err(|e| {
                            TaskError::Changelog(format!("offset {}: {e}", m.offset()))
                        })?;
                        restorer
                            .feed(m.offset(), rec, |b| {
                                shared.codec.decode::<CommitMarker>(b).ok()
                            })
                            .map_err(|e| TaskError::Changelog(e.to_string()))?;
                        for op in restorer.drain() {
                            apply_op(&db, &mut batch, op)?;
                        }
                        if batch.len() >= 2_000 {
                            db.write(std::mem::take(&mut batch))?;
                            failpoint::hit("mid_restore");
                        }
                        if last_log.elapsed() > Duration::from_secs(5) {
                            last_log = Instant::now();
                            tracing::info!(
                                task = partition,
                                offset = next,
                                to = high,
                                percent = (next - from) * 100 / (high - from).max(1),
                                "restoring"
                            );
                        }
                    }
                }
            }
            db.write(batch)?;
            let rate = (next - from) as f64 / started.elapsed().as_secs_f64().max(1e-6);
            tracing::info!(
                task = partition,
                records = next - from,
                per_second = rate as u64,
                "changelog read"
            );
        }
        remaining.set(0);
        let (outcome, ops) = restorer.finish();
        let mut batch = WriteBatch::default();
        for op in ops {
            apply_op(&db, &mut batch, op)?;
        }
        db.write(batch)?;
        let c = outcome.committed;
        let metrics = &shared.metrics;
        metrics
            .changelog_findings
            .with_label_values(&["zombie"])
            .inc_by(outcome.stats.zombies);
        metrics
            .changelog_findings
            .with_label_values(&["orphan"])
            .inc_by(outcome.stats.orphans);

        // A new epoch fences off any older owner still writing.
        let epoch = c.epoch + 1;
        let generation = if reset {
            c.generation.max(1) + 1
        } else {
            c.generation.max(1)
        };
        let fence = Fence { generation, reset };
        let fence_rec = StateRecord {
            key: fence_key(epoch),
            kind: StateKind::Fence,
            epoch,
            sequence: c.sequence + 1,
            value: Some(serde_json::to_vec(&fence).unwrap_or_default()),
        };
        let payload = shared.encode(&fence_rec);
        let fence_started = Instant::now();
        let offsets = shared.produce_all(&[Out {
            topic: &changelog,
            partition: Some(partition),
            key: fence_rec.key.as_bytes(),
            value: Some(&payload),
            headers: &[],
        }])?;
        failpoint::hit("after_fence");
        tracing::debug!(task = partition, elapsed = ?fence_started.elapsed(), "fence acknowledged");

        let mut repair = outcome.repair;
        let mut positions = c.positions.clone();
        let mut sequence = c.sequence;
        let mut flushed = c.flushed;
        if reset {
            let mut batch = WriteBatch::default();
            db.stage_clear(&mut batch)?;
            db.write(batch)?;
            positions.clear();
            repair.clear();
            flushed = sequence;
        }
        // Where the raw topics continue: the committed positions, or the start of
        // each partition for a topic never read.
        for topic in &shared.raw_topics {
            if !positions.contains_key(topic) {
                let rlow = marks.get(&(topic.clone(), partition)).map_or(0, |m| m.0);
                positions.insert(topic.clone(), rlow);
            }
        }
        meta.cluster_id = Some(shared.cluster_id.clone());
        meta.raw_partitions = shared
            .raw_topics
            .iter()
            .map(|t| (t.clone(), shared.partitions))
            .collect();
        meta.epoch = epoch;
        meta.generation = generation;
        if reset {
            meta.changelog_next = offsets.first().map_or(meta.changelog_next, |o| o + 1);
            sequence = sequence.max(-1);
        } else if let Some(o) = outcome.resume_offset {
            meta.changelog_next = o;
        }
        meta.sequence = sequence;
        meta.flushed = flushed;
        meta.positions = positions.clone();
        let mut batch = WriteBatch::default();
        db.stage_meta(&mut batch, &meta);
        db.write(batch)?;

        // The events waiting for their order.
        let mut parked = ParkedIndex::default();
        for (key, value) in db.entries(Family::Parked)? {
            let Some(StateKey {
                tenant,
                item: Item::Parked(id),
            }) = StateKey::decode(&key)
            else {
                continue;
            };
            match decode_value(&value) {
                Ok(StateValue::Parked(p)) => parked.insert(
                    &tenant,
                    &id,
                    parked_since(&p),
                    shared.release_topics(&p.envelope),
                ),
                Ok(_) | Err(_) => {
                    return Err(TaskError::Db(DbError::Corrupt {
                        path: db.path().to_path_buf(),
                        key,
                        detail: "not a parked event".into(),
                    }));
                }
            }
        }
        parked.commit();
        shared
            .metrics
            .parked_events
            .with_label_values(&[&label])
            .set(parked.len() as i64);

        let report = StartReport {
            restored_records: outcome.stats.records,
            applied: outcome.stats.applied,
            zombies: outcome.stats.zombies,
            orphans: outcome.stats.orphans,
            from_offset: from,
            empty_disk,
        };
        tracing::info!(
            task = partition,
            epoch,
            generation,
            sequence,
            restored = report.restored_records,
            zombies = report.zombies,
            orphans = report.orphans,
            "task started"
        );
        let mut task = Task {
            partition,
            db,
            shared: shared.clone(),
            epoch,
            next_seq: sequence + 1,
            generation,
            batch_positions: positions.clone(),
            positions,
            meta,
            engine: Engine::with_config(shared.fold.clone()),
            watermark,
            batch_events: 0,
            batch_started: None,
            batch_idem: Vec::new(),
            batch_idem_set: HashSet::new(),
            batch_dlq: Vec::new(),
            batch_parked: std::collections::HashMap::new(),
            parked,
            progress: Progress::default(),
            batch_expired: std::collections::HashMap::new(),
            batch_outcomes: BTreeMap::new(),
            repair,
            flushed_outbox: Vec::new(),
            report,
        };
        // Outputs of batches committed but not produced: drop those already
        // produced (they will be tombstoned), produce the rest.
        let outbox = task.db.outbox()?;
        let mut drop = WriteBatch::default();
        for (key, _) in &outbox {
            if outbox_flushed(key, task.meta.flushed) {
                task.db.stage(&mut drop, key, None);
                task.flushed_outbox.push(key.clone());
            }
        }
        task.db.write(drop)?;
        task.flush_outbox()?;
        task.update_gauges();
        Ok(task)
    }

    pub fn db(&self) -> &Arc<TaskDb> {
        &self.db
    }

    /// Committed next offsets per raw topic.
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    /// Events in the open batch.
    pub fn batch_events(&self) -> usize {
        self.batch_events
    }

    /// True when the open batch is due (full, or older than `interval`).
    pub fn due(&self, batch_size: usize, interval: Duration) -> bool {
        self.batch_events >= batch_size
            || (self.batch_events > 0
                && self.batch_started.is_some_and(|t| t.elapsed() >= interval))
            || (!self.repair.is_empty() && self.batch_started.is_none())
    }

    fn count(&mut self, provider: &str, outcome: &'static str) {
        *self
            .batch_outcomes
            .entry((provider.to_string(), outcome))
            .or_default() += 1;
    }

    /// The position a raw topic's next record must have; records below it were
    /// folded already (a redelivery after a seek) and are skipped.
    pub fn expects(&self, topic: &str, offset: i64) -> bool {
        self.batch_positions.get(topic).is_none_or(|n| offset >= *n)
    }

    fn dead_letter(
        &mut self,
        input: &Input<'_>,
        event_id: Option<&str>,
        code: &str,
        reason: String,
    ) {
        tracing::warn!(
            task = self.partition,
            topic = input.topic,
            offset = input.offset,
            code,
            reason = %reason,
            "raw event sent to the dead-letter topic"
        );
        self.shared.metrics.dlq.with_label_values(&[code]).inc();
        let mut headers = input.headers.clone();
        headers.push(("storefold-error".into(), code.as_bytes().to_vec()));
        headers.push(("storefold-error-reason".into(), reason.into_bytes()));
        headers.push((
            "storefold-source-topic".into(),
            input.topic.as_bytes().to_vec(),
        ));
        headers.push((
            "storefold-source-partition".into(),
            input.partition.to_string().into_bytes(),
        ));
        headers.push((
            "storefold-source-offset".into(),
            input.offset.to_string().into_bytes(),
        ));
        if let Some(id) = event_id {
            headers.push(("storefold-event-id".into(), id.as_bytes().to_vec()));
        }
        let mut entry = OutboxEntry {
            topic: self.shared.topics.dlq_processor(),
            key: input.key.unwrap_or_default().to_vec(),
            value: input.payload.unwrap_or_default().to_vec(),
            headers,
        };
        self.fit_dead_letter(&mut entry, event_id);
        self.batch_dlq.push(entry);
    }

    /// A dead letter that would exceed `message.max.bytes` (in its topic or
    /// in the changelog record of its outbox entry) carries the raw record's
    /// coordinates instead of its copy, so the partition keeps flowing.
    fn fit_dead_letter(&self, entry: &mut OutboxEntry, event_id: Option<&str>) {
        if size::fits(entry, self.shared.max_message_bytes) {
            return;
        }
        let before = entry.value.len();
        size::replace_with_coordinates(entry, event_id);
        self.shared
            .metrics
            .oversized
            .with_label_values(&["dead_letter"])
            .inc();
        tracing::warn!(
            task = self.partition,
            bytes = before,
            limit = self.shared.max_message_bytes,
            "dead letter too large for Kafka: sent with the raw record's coordinates instead of its copy"
        );
    }

    /// Folds one raw record into the open batch. Only a store that cannot be
    /// read fails (the batch must then be abandoned); bad input goes to the
    /// dead-letter topic.
    pub fn process(&mut self, input: &Input<'_>) -> Result<(), TaskError> {
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        self.batch_events += 1;
        self.batch_positions
            .insert(input.topic.to_string(), input.offset + 1);
        let result = self.fold(input);
        if let Err(TaskError::Db(_)) = &result {
            return result;
        }
        Ok(())
    }

    fn fold(&mut self, input: &Input<'_>) -> Result<(), TaskError> {
        let Some(payload) = input.payload else {
            self.dead_letter(input, None, "empty", "the record has no value".into());
            self.count("unknown", "rejected");
            return Ok(());
        };
        let raw: RawEvent = match self.shared.codec.decode(payload) {
            Ok(r) => r,
            Err(e) => {
                self.dead_letter(
                    input,
                    None,
                    "undecodable",
                    format!("not a RawEvent: {}", e.without_values()),
                );
                self.count("unknown", "rejected");
                return Ok(());
            }
        };
        let provider: ProviderKind = match raw.provider.parse() {
            Ok(p) => p,
            Err(e) => {
                self.dead_letter(
                    input,
                    Some(&raw.event_id),
                    "unknown_provider",
                    format!("{e}"),
                );
                self.count("unknown", "rejected");
                return Ok(());
            }
        };
        let pname = provider.name();
        self.watermark.fetch_max(raw.received_at, Ordering::Relaxed);
        let idem = idempotency_key(&raw.tenant, pname, &raw.event_id);
        if self.batch_idem_set.contains(&idem) || self.db.get(&idem)?.is_some() {
            self.count(pname, "duplicate");
            self.progress.read(input.topic, raw.received_at);
            return self.expire_parked();
        }
        let headers =
            Headers::from_pairs(raw.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let received_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(raw.received_at) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let ctx = MapContext {
            tenant: &raw.tenant,
            options: self.shared.map_options(&raw.tenant),
        };
        let events = match provider.map(
            &ctx,
            &RawInput {
                topic: &raw.topic,
                event_id: &raw.event_id,
                headers: &headers,
                body: &raw.body,
                received_at,
            },
        ) {
            Ok(ev) => ev,
            Err(e) => {
                self.dead_letter(input, Some(&raw.event_id), e.code(), e.to_string());
                self.count(pname, "rejected");
                self.progress.read(input.topic, raw.received_at);
                return self.expire_parked();
            }
        };
        let src = DbSource::new(&self.db);
        let mut rejected: Vec<FoldError> = Vec::new();
        let mut outcomes: Vec<&'static str> = Vec::new();
        for env in &events {
            match self.engine.apply_received(&src, env, Some(raw.received_at)) {
                Ok(Outcome::Applied) => outcomes.push("applied"),
                Ok(Outcome::Duplicate) => outcomes.push("duplicate"),
                Ok(Outcome::Parked(_)) => {
                    self.batch_parked
                        .insert(env.event_id.clone(), pname.to_string());
                    let topics = self.shared.release_topics(env);
                    self.parked
                        .insert(&env.tenant, &env.event_id, raw.received_at, topics);
                    outcomes.push("parked");
                }
                Err(e) => rejected.push(e),
            }
            if let Some(e) = src.take_error() {
                return Err(e.into());
            }
        }
        for o in outcomes {
            self.count(pname, o);
        }
        if let Some(e) = rejected.first() {
            let code = match e {
                FoldError::NoIdentity => "no_identity",
                FoldError::NoOrderLink => "no_order_link",
            };
            self.dead_letter(input, Some(&raw.event_id), code, e.to_string());
            self.count(pname, "rejected");
        }
        self.batch_idem.push((idem.clone(), raw.received_at));
        self.batch_idem_set.insert(idem);
        self.progress.read(input.topic, raw.received_at);
        self.expire_parked()
    }

    /// Gives up on the parked events whose order did not come in time: every
    /// raw topic it can come from has been read past `park_timeout_hours`
    /// after the event was received. Each leaves the state and goes to
    /// `dlq.processor` (reason `unresolved_order`, the value its canonical
    /// envelope as JSON) in the open batch, so exactly once like the rest.
    /// Run after every raw event is folded (an order read is folded first), so
    /// what is given up on depends on each topic's own order only, never on
    /// where batches end or how the topics' reading interleaves.
    fn expire_parked(&mut self) -> Result<(), TaskError> {
        if self.parked.is_empty() {
            return Ok(());
        }
        let timeout = self.shared.park_timeout_ms;
        let progress = &self.progress;
        let due = self.parked.due(timeout, |t| progress.get(t));
        if due.is_empty() {
            return Ok(());
        }
        let db = self.db.clone();
        let src = DbSource::new(&db);
        for (tenant, event_id) in due {
            let expired = self.engine.expire_parked(&src, &tenant, &event_id);
            if let Some(e) = src.take_error() {
                return Err(e.into());
            }
            self.parked.remove(&tenant, &event_id);
            let Some(p) = expired else {
                // Released meanwhile (the batch's state changes say so at commit).
                continue;
            };
            self.dead_letter_expired(&p);
            self.batch_expired
                .insert((tenant, event_id), p.envelope.provider.clone());
        }
        Ok(())
    }

    /// The dead letter of a parked event the task gave up on.
    fn dead_letter_expired(&mut self, p: &storefold_core::engine::ParkedEvent) {
        let env = &p.envelope;
        let refs = waited_for(env);
        let topics = self.shared.release_topics(env);
        let read_to = topics
            .iter()
            .filter_map(|t| self.progress.get(t))
            .min()
            .unwrap_or_default();
        let ms = |t: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| t.to_string())
        };
        let hours = self.shared.park_timeout_ms / 3_600_000;
        let reason = format!(
            "{} {} waited for {} and none of it became known within {hours} hours: received \
             {}, and {} were read up to events received {} without it. The order never arrived, \
             or is named in a way the tenant's stores and payments settings do not resolve",
            env.event.type_name(),
            env.event_id,
            refs.join(", "),
            ms(parked_since(p)),
            topics.join(", "),
            ms(read_to),
        );
        tracing::warn!(
            task = self.partition,
            tenant = %env.tenant,
            provider = %env.provider,
            event_id = %env.event_id,
            waited_for = %refs.join(", "),
            "parked event expired: sent to the dead-letter topic"
        );
        let source_topic = env
            .provider
            .parse::<ProviderKind>()
            .map(|k| self.shared.topics.raw(k))
            .unwrap_or_default();
        let headers = vec![
            ("storefold-error".to_string(), b"unresolved_order".to_vec()),
            ("storefold-error-reason".to_string(), reason.into_bytes()),
            (
                "storefold-source-topic".to_string(),
                source_topic.into_bytes(),
            ),
            (
                "storefold-source-partition".to_string(),
                self.partition.to_string().into_bytes(),
            ),
            (
                "storefold-event-id".to_string(),
                env.event_id.as_bytes().to_vec(),
            ),
            (
                RECEIVED_AT_HEADER.to_string(),
                parked_since(p).to_string().into_bytes(),
            ),
        ];
        let mut entry = OutboxEntry {
            topic: self.shared.topics.dlq_processor(),
            key: env.tenant.as_bytes().to_vec(),
            // Our own types serialise to JSON.
            value: serde_json::to_vec(p).unwrap_or_default(),
            headers,
        };
        self.fit_dead_letter(&mut entry, Some(&env.event_id));
        self.batch_dlq.push(entry);
    }

    /// Abandons the open batch: the engine's working set may hold its changes,
    /// so it is dropped too. The caller seeks back to [`Task::positions`].
    pub fn abandon(&mut self) {
        self.engine = Engine::with_config(self.shared.fold.clone());
        self.batch_positions = self.positions.clone();
        self.batch_events = 0;
        self.batch_started = None;
        self.batch_idem.clear();
        self.batch_idem_set.clear();
        self.batch_dlq.clear();
        self.batch_parked.clear();
        self.batch_expired.clear();
        self.parked.rollback();
        self.progress.rollback();
        self.batch_outcomes.clear();
    }

    /// Commits the open batch (steps a–c of §5; the caller commits the
    /// consumer offsets, step d). On error the batch is abandoned: the task
    /// must be restarted from its committed state.
    pub fn commit(&mut self) -> Result<usize, TaskError> {
        let result = self.commit_inner();
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn commit_inner(&mut self) -> Result<usize, TaskError> {
        let total = Instant::now();
        let metrics = self.shared.metrics.clone();
        let seq = self.next_seq;
        let events = self.batch_events;
        let src = DbSource::new(&self.db);
        // The batch's changed state records, serialised once.
        let mut records: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let mut released: Vec<String> = Vec::new();
        let db = self.db.clone();
        let parked_now = std::mem::take(&mut self.batch_parked);
        let expired = std::mem::take(&mut self.batch_expired);
        let parked = &mut self.parked;
        let shared = self.shared.clone();
        let output = self.engine.finish_retaining(&src, |k, v| {
            let key = k.encode();
            if let Item::Parked(id) = &k.item {
                // The index follows the state exactly: parked (again, with its
                // first receive time) or gone (released or expired).
                match v {
                    Some(StateValue::Parked(p)) => parked.insert(
                        &k.tenant,
                        id,
                        parked_since(p),
                        shared.release_topics(&p.envelope),
                    ),
                    _ => parked.remove(&k.tenant, id),
                }
                if v.is_none() && !expired.contains_key(&(k.tenant.clone(), id.clone())) {
                    let provider = match db.get(&key) {
                        Ok(Some(bytes)) => match decode_value(&bytes) {
                            Ok(StateValue::Parked(p)) => Some(p.envelope.provider.clone()),
                            _ => None,
                        },
                        _ => parked_now.get(id).cloned(),
                    };
                    released.push(provider.unwrap_or_else(|| "unknown".into()));
                }
            }
            records.push((key, v.map(crate::records::encode_value)));
        });
        if let Some(e) = src.take_error() {
            return Err(e.into());
        }
        self.engine.trim(self.shared.cache_records);
        for p in released {
            *self.batch_outcomes.entry((p, "released")).or_default() += 1;
        }
        for (k, at) in &self.batch_idem {
            records.push((k.clone(), Some(idempotency_value(*at))));
        }
        // Orphans of a crashed batch: written again with their committed value.
        for k in std::mem::take(&mut self.repair) {
            let v = self.db.get(&k)?;
            records.push((k, v));
        }
        // The outputs, through the outbox. Each carries the receive time of the
        // oldest raw event folded in this batch, so sinks can measure the
        // end-to-end latency (webhook received → CRM written).
        let received: Vec<(String, Vec<u8>)> = self
            .batch_idem
            .iter()
            .map(|(_, at)| *at)
            .min()
            .map(|at| vec![(RECEIVED_AT_HEADER.to_string(), at.to_string().into_bytes())])
            .unwrap_or_default();
        let mut outputs: Vec<OutboxEntry> = Vec::new();
        let topics = &self.shared.topics;
        for p in &output.projections {
            let key = p.key().into_bytes();
            let mut record = projection_record(p, self.generation);
            let (topic, value) = match &record {
                ProjectionRecord::Customer(c) => (topics.customers(), self.shared.encode(c)),
                ProjectionRecord::Order(o) => (topics.orders(), self.shared.encode(o)),
            };
            let mut entry = OutboxEntry {
                topic,
                key,
                value,
                headers: received.clone(),
            };
            if !size::fits(&entry, self.shared.max_message_bytes) {
                // Published trimmed (flagged `truncated`), never stalling
                // the partition.
                let doc = match &mut record {
                    ProjectionRecord::Customer(c) => &mut c.doc,
                    ProjectionRecord::Order(o) => &mut o.doc,
                };
                let around = size::entry_bytes(&entry).saturating_sub(doc.len());
                let budget = self
                    .shared
                    .max_message_bytes
                    .saturating_sub(size::RECORD_OVERHEAD + around + 64);
                let before = doc.len();
                if let Some(trimmed) = size::trim_doc(doc, budget) {
                    *doc = trimmed;
                }
                entry.value = match &record {
                    ProjectionRecord::Customer(c) => self.shared.encode(c),
                    ProjectionRecord::Order(o) => self.shared.encode(o),
                };
                metrics.oversized.with_label_values(&["projection"]).inc();
                tracing::warn!(
                    task = self.partition,
                    key = %String::from_utf8_lossy(&entry.key),
                    bytes = before,
                    limit = self.shared.max_message_bytes,
                    "projection too large for Kafka: published trimmed"
                );
            }
            outputs.push(entry);
        }
        for t in &output.triggers {
            let rec = trigger_record(t);
            outputs.push(OutboxEntry {
                topic: topics.triggers(),
                key: format!("{}/{}", rec.tenant, rec.customer_id).into_bytes(),
                value: self.shared.encode(&rec),
                headers: received.clone(),
            });
        }
        outputs.append(&mut self.batch_dlq);
        let outbox: Vec<(String, Vec<u8>)> = outputs
            .iter()
            .enumerate()
            .map(|(i, e)| (outbox_key(seq, i), e.encode()))
            .collect();
        for (k, v) in &outbox {
            records.push((k.clone(), Some(v.clone())));
        }
        for k in std::mem::take(&mut self.flushed_outbox) {
            records.push((k, None));
        }

        // (a) the changelog records, acknowledged, then the marker, acknowledged.
        let changelog = topics.changelog();
        let step = Instant::now();
        // The local write batch is staged now (step b writes it only after the
        // marker is acknowledged), so the records can move into the changelog
        // records without copying their values.
        let mut batch = WriteBatch::default();
        for (k, v) in &records {
            self.db.stage(&mut batch, k, v.as_deref());
        }
        let record_count = records.len() as i64;
        let encoded: Vec<(String, Vec<u8>)> = records
            .into_iter()
            .map(|(key, value)| {
                let kind = family_of(&key).map_or(StateKind::Meta, Family::kind);
                let rec = StateRecord {
                    key,
                    kind,
                    epoch: self.epoch,
                    sequence: seq,
                    value,
                };
                let bytes = self.shared.encode(&rec);
                (rec.key, bytes)
            })
            .collect();
        // A state record over the producer's limit would fail this batch on
        // every attempt: say which, instead of librdkafka's bare refusal.
        if let Some((k, v)) = encoded
            .iter()
            .find(|(k, v)| k.len() + v.len() + 256 > self.shared.max_message_bytes)
        {
            metrics.oversized.with_label_values(&["state"]).inc();
            return Err(TaskError::Changelog(format!(
                "state record {k} is {} bytes, over message.max.bytes ({}): the batch cannot be \
                 committed. Lower the [processor] max_* bounds, or raise message.max.bytes in \
                 [kafka.properties] and max.message.bytes of the changelog and output topics",
                v.len(),
                self.shared.max_message_bytes
            )));
        }
        let outs: Vec<Out<'_>> = encoded
            .iter()
            .map(|(k, v)| Out {
                topic: &changelog,
                partition: Some(self.partition),
                key: k.as_bytes(),
                value: Some(v),
                headers: &[],
            })
            .collect();
        self.shared.produce_all(&outs)?;
        metrics
            .commit_seconds
            .with_label_values(&["changelog"])
            .observe(step.elapsed().as_secs_f64());
        failpoint::hit("after_changelog");
        let step = Instant::now();
        let marker = CommitMarker {
            epoch: self.epoch,
            sequence: seq,
            record_count,
            input_positions: input_positions(&self.batch_positions, self.partition),
            flushed_batch: self.meta.flushed,
        };
        let marker_rec = StateRecord {
            key: marker_key(self.epoch),
            kind: StateKind::Marker,
            epoch: self.epoch,
            sequence: seq,
            value: Some(self.shared.encode(&marker)),
        };
        let payload = self.shared.encode(&marker_rec);
        let offsets = self.shared.produce_all(&[Out {
            topic: &changelog,
            partition: Some(self.partition),
            key: marker_rec.key.as_bytes(),
            value: Some(&payload),
            headers: &[],
        }])?;
        metrics
            .commit_seconds
            .with_label_values(&["marker"])
            .observe(step.elapsed().as_secs_f64());
        failpoint::hit("after_marker");

        // (b) one RocksDB write: records, outbox, positions, changelog position.
        let step = Instant::now();
        self.meta.sequence = seq;
        self.meta.positions = self.batch_positions.clone();
        self.meta.changelog_next = offsets.first().map_or(self.meta.changelog_next, |o| o + 1);
        self.db.stage_meta(&mut batch, &self.meta);
        self.db.write(batch)?;
        metrics
            .commit_seconds
            .with_label_values(&["state"])
            .observe(step.elapsed().as_secs_f64());
        failpoint::hit("after_state");
        self.parked.commit();
        self.progress.commit();
        for provider in expired.values() {
            metrics
                .parked_expired
                .with_label_values(&[provider.as_str()])
                .inc();
            metrics.dlq.with_label_values(&["unresolved_order"]).inc();
        }
        metrics
            .parked_events
            .with_label_values(&[&task_label(self.partition)])
            .set(self.parked.len() as i64);
        self.positions = self.batch_positions.clone();
        self.next_seq = seq + 1;
        for ((provider, outcome), n) in std::mem::take(&mut self.batch_outcomes) {
            metrics
                .events
                .with_label_values(&[provider.as_str(), outcome])
                .inc_by(n);
        }
        metrics.batch_events.observe(events as f64);
        self.batch_events = 0;
        self.batch_started = None;
        self.batch_idem.clear();
        self.batch_idem_set.clear();

        // (c) the outputs, then their outbox entries deleted.
        let step = Instant::now();
        self.flush_outbox()?;
        metrics
            .commit_seconds
            .with_label_values(&["outbox"])
            .observe(step.elapsed().as_secs_f64());
        metrics
            .commit_seconds
            .with_label_values(&["total"])
            .observe(total.elapsed().as_secs_f64());
        self.update_gauges();
        Ok(events)
    }

    /// Produces every outbox entry and deletes them once acknowledged.
    fn flush_outbox(&mut self) -> Result<(), TaskError> {
        let outbox = self.db.outbox()?;
        let depth = self
            .shared
            .metrics
            .outbox_depth
            .with_label_values(&[&task_label(self.partition)]);
        depth.set(outbox.len() as i64);
        if !outbox.is_empty() {
            let outs: Vec<Out<'_>> = outbox
                .iter()
                .map(|(_, e)| Out {
                    topic: &e.topic,
                    partition: None,
                    key: &e.key,
                    value: Some(&e.value),
                    headers: &e.headers,
                })
                .collect();
            self.shared.produce_all(&outs)?;
            failpoint::hit("after_outbox");
        }
        let mut batch = WriteBatch::default();
        for (k, _) in &outbox {
            self.db.stage(&mut batch, k, None);
            self.flushed_outbox.push(k.clone());
        }
        self.meta.flushed = self.meta.sequence;
        self.db.stage_meta(&mut batch, &self.meta);
        self.db.write(batch)?;
        depth.set(0);
        failpoint::hit("after_outbox_deleted");
        Ok(())
    }

    /// Refreshes the per-task gauges.
    pub fn update_gauges(&self) {
        let label = task_label(self.partition);
        let m = &self.shared.metrics;
        m.live_bytes
            .with_label_values(&[&label])
            .set(self.db.live_bytes() as i64);
    }

    /// Clears the per-task gauges when the task goes away.
    pub fn retire(&self) {
        let label = task_label(self.partition);
        let m = &self.shared.metrics;
        for g in [
            &m.live_bytes,
            &m.outbox_depth,
            &m.lag,
            &m.restore_remaining,
            &m.parked_events,
        ] {
            let _ = g.remove_label_values(&[&label]);
        }
    }
}

fn apply_op(db: &TaskDb, batch: &mut WriteBatch, op: Op) -> Result<(), TaskError> {
    match op {
        Op::Write(k, v) => db.stage(batch, &k, v.as_deref()),
        Op::Reset => {
            db.write(std::mem::take(batch))?;
            let mut clear = WriteBatch::default();
            db.stage_clear(&mut clear)?;
            db.write(clear)?;
        }
    }
    Ok(())
}
