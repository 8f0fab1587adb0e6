//! Starting a task: the local store checked against the log, the changelog
//! read past the local position, older epochs fenced, the parked index
//! rebuilt and what the outbox still holds produced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use rocksdb::WriteBatch;
use storefold_codec::{CommitMarker, StateKind, StateRecord};
use storefold_core::engine::{Engine, Item, StateKey, StateValue};
use storefold_runtime::kafka::client_config;

use super::shared::{Out, watermarks};
use super::{Shared, StartReport, Task, TaskError, task_label};
use crate::db::{DbError, Meta, TaskDb};
use crate::failpoint;
use crate::idem::{BatchRecords, IDEM_BATCH_PREFIX, is_batch_key, stage_record};
use crate::parked::{ParkedIndex, Progress, parked_since};
use crate::records::{
    FENCE_PREFIX, Family, Fence, FenceCommitted, MARKER_PREFIX, decode_value, fence_key,
    tombstone_record,
};
use crate::restore::{Committed, Op, Plan, Restorer, outbox_flushed};

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
        let open = || -> Result<Arc<TaskDb>, DbError> {
            Ok(Arc::new(TaskDb::open(
                &path,
                &shared.memory,
                shared.retention_ms,
                watermark.clone(),
                shared.sync_writes,
            )?))
        };
        let db = open()?;
        let stored = db.meta()?;
        let mut empty_disk = stored.is_none();
        let mut meta = stored.unwrap_or_else(Meta::fresh);
        let stale = !empty_disk && out_of_sync(&path, SystemTime::now());
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
        let mut db = db;
        if stale {
            // Deletes are tombstones, which compaction removes after the
            // changelog's delete.retention.ms: a store that has not followed
            // the changelog for longer may have missed some. Rebuilt from the
            // changelog instead (the checks above still ran on it).
            tracing::warn!(
                task = partition,
                dir = %path.display(),
                "the local state has not been written for over {} hours (longer than the \
                 changelog keeps tombstones): rebuilding it from the changelog",
                STALE_AFTER.as_secs() / 3600
            );
            drop(db);
            std::fs::remove_dir_all(&path).map_err(|e| {
                TaskError::WrongLog(format!("cannot remove {}: {e}", path.display()))
            })?;
            db = open()?;
            meta = Meta::fresh();
            empty_disk = true;
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
            let started = Instant::now();
            let reader = Reader {
                consumer: &consumer,
                changelog: &changelog,
                partition,
                from,
                high,
                timeout,
            };
            // Pass 1 (long ranges only): the markers and fences, so that
            // pass 2 knows at each record whether its batch was committed and
            // holds nothing back (memory stays bounded however long an epoch
            // ran). A short range (a restart on the same disk) is read once:
            // what it can hold back is bounded by its length.
            let mut plan = Plan::new(meta.epoch);
            let two_passes = high - from > SINGLE_PASS_RECORDS;
            let scan = |m: &BorrowedMessage<'_>| {
                remaining.set(2 * high - from - m.offset() - 1);
                let key = m.key().unwrap_or_default();
                if !(key.starts_with(MARKER_PREFIX.as_bytes())
                    || key.starts_with(FENCE_PREFIX.as_bytes()))
                {
                    return Ok(());
                }
                let Some(payload) = m.payload() else {
                    return Ok(());
                };
                let rec: StateRecord = shared
                    .codec
                    .decode(payload)
                    .map_err(|e| TaskError::Changelog(format!("offset {}: {e}", m.offset())))?;
                plan.read(m.offset(), &rec);
                Ok(())
            };
            if two_passes {
                reader.read("scanning", scan)?;
                restorer.follow(plan);
            }
            // Pass 2: every record, applied as it comes.
            let mut batch = WriteBatch::default();
            let next = reader.read("restoring", |m| {
                restored.inc();
                remaining.set(high - m.offset() - 1);
                let rec: StateRecord = match m.payload() {
                    Some(payload) => shared
                        .codec
                        .decode(payload)
                        .map_err(|e| TaskError::Changelog(format!("offset {}: {e}", m.offset())))?,
                    // A delete of a batch (its headers name it), or a
                    // tombstone nobody can place: skipped.
                    None => match tombstone_of(m) {
                        Some(rec) => rec,
                        None => return Ok(()),
                    },
                };
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
                Ok(())
            })?;
            db.write(batch)?;
            let rate = (next - from) as f64 / started.elapsed().as_secs_f64().max(1e-6);
            tracing::info!(
                task = partition,
                records = next - from,
                per_second = rate as u64,
                passes = if two_passes { 2 } else { 1 },
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
        let fence = Fence {
            generation,
            reset,
            committed: (!reset).then(|| FenceCommitted {
                sequence: c.sequence,
                flushed: c.flushed,
                positions: c.positions.clone(),
            }),
        };
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
            // The old history's idempotency batch records have keys nothing
            // rewrites: the first batch tombstones them (a repair of a key
            // whose committed value is now none).
            let old_batches: Vec<String> = db
                .entries_with_prefix(Family::Idempotency, IDEM_BATCH_PREFIX)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let mut batch = WriteBatch::default();
            db.stage_clear(&mut batch)?;
            db.write(batch)?;
            positions.clear();
            repair = old_batches;
            flushed = sequence;
        }
        let idem_batches = BatchRecords::load(&db)?;
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
            batch_parked: HashMap::new(),
            parked,
            progress: Progress::default(),
            batch_expired: HashMap::new(),
            batch_outcomes: BTreeMap::new(),
            repair,
            flushed_outbox: Vec::new(),
            idem_batches,
            outbox_in_flight: None,
            report,
        };
        // Outputs of batches committed but not produced: drop those already
        // produced (they will be tombstoned), produce the rest.
        // Produced before a restart, not tombstoned in the changelog yet.
        task.flushed_outbox = task.meta.untombstoned.clone();
        let outbox = task.db.keys(Family::Outbox)?;
        let mut drop = WriteBatch::default();
        for key in &outbox {
            if outbox_flushed(key, task.meta.flushed) {
                task.db.stage(&mut drop, key, None);
                if !task.flushed_outbox.contains(key) {
                    task.flushed_outbox.push(key.clone());
                }
            }
        }
        task.db.write(drop)?;
        task.flush_outbox()?;
        task.update_gauges();
        Ok(task)
    }
}

/// Reads one changelog partition from `from` to `high`.
struct Reader<'a> {
    consumer: &'a BaseConsumer,
    changelog: &'a str,
    partition: i32,
    from: i64,
    high: i64,
    timeout: Duration,
}

impl Reader<'_> {
    /// Hands every record from `from` to `high` to `each`, in offset order,
    /// logging progress every 5 s; returns the offset after the last one read.
    fn read(
        &self,
        phase: &'static str,
        mut each: impl FnMut(&BorrowedMessage<'_>) -> Result<(), TaskError>,
    ) -> Result<i64, TaskError> {
        let (changelog, partition, from, high) =
            (self.changelog, self.partition, self.from, self.high);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(changelog, partition, Offset::Offset(from))
            .map_err(|e| TaskError::Kafka(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| TaskError::Kafka(e.to_string()))?;
        let mut last_log = Instant::now();
        let mut last_progress = Instant::now();
        let mut next = from;
        while next < high {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {
                    // Compaction may leave the last offsets empty: the
                    // fetch position still reaches the end.
                    let at = self
                        .consumer
                        .position()
                        .ok()
                        .and_then(|tpl| tpl.elements().first().map(|e| e.offset()));
                    if let Some(Offset::Offset(o)) = at
                        && o >= high
                    {
                        break;
                    }
                    if last_progress.elapsed() > self.timeout {
                        return Err(TaskError::Kafka(format!(
                            "restore of task {partition} made no progress for {:?} at \
                             {changelog} offset {next}",
                            self.timeout
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
                    each(&m)?;
                    if last_log.elapsed() > Duration::from_secs(5) {
                        last_log = Instant::now();
                        tracing::info!(
                            task = partition,
                            phase,
                            offset = next,
                            to = high,
                            percent = (next - from) * 100 / (high - from).max(1),
                            "restoring"
                        );
                    }
                }
            }
        }
        Ok(next)
    }
}

/// The delete a changelog tombstone stands for, from its key and headers.
fn tombstone_of(m: &BorrowedMessage<'_>) -> Option<StateRecord> {
    use rdkafka::message::Headers as _;
    let headers = m.headers()?;
    tombstone_record(
        m.key()?,
        headers.iter().filter_map(|h| Some((h.key, h.value?))),
    )
}

/// Changelog ranges longer than this are read in two passes (see
/// [`Plan`]); shorter ones once, holding back at most this many records.
const SINGLE_PASS_RECORDS: i64 = 20_000;

/// How long a task's store may go without a write before a start rebuilds it
/// from the changelog: below the 24 hours `storefold topics create` gives the
/// changelog's `delete.retention.ms`, after which compaction may remove a
/// delete (tombstone) the store never read.
const STALE_AFTER: Duration = Duration::from_secs(20 * 3600);

/// True when no file of the store at `path` was written within
/// [`STALE_AFTER`] before `now`. RocksDB appends every write to its log
/// files, and a start ends with a write, so the newest file time is the last
/// time the store followed the changelog (or earlier: never later). The
/// info logs (`LOG*`), written on every open, do not count.
fn out_of_sync(path: &Path, now: SystemTime) -> bool {
    let Ok(dir) = std::fs::read_dir(path) else {
        return false;
    };
    let newest = dir
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with("LOG"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    newest.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_AFTER))
}

fn apply_op(db: &TaskDb, batch: &mut WriteBatch, op: Op) -> Result<(), TaskError> {
    match op {
        Op::Write(k, v) => {
            if v.is_none() && is_batch_key(&k) {
                // Retiring a batch record reads it from the store to delete
                // the keys it lists: what is staged is written first.
                db.write(std::mem::take(batch))?;
            }
            stage_record(db, batch, &k, v.as_deref())?
        }
        Op::Reset => {
            db.write(std::mem::take(batch))?;
            let mut clear = WriteBatch::default();
            db.stage_clear(&mut clear)?;
            db.write(clear)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_out_of_sync_once_no_file_was_written_for_longer_than_tombstones_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let set = |name: &str, age: Duration| {
            let f = std::fs::File::create(dir.path().join(name)).expect("file");
            f.set_modified(now - age).expect("set mtime");
        };
        assert!(!out_of_sync(dir.path(), now), "an empty directory");
        assert!(!out_of_sync(&dir.path().join("missing"), now));
        set("000012.sst", Duration::from_secs(48 * 3600));
        set("LOG", Duration::ZERO);
        assert!(
            out_of_sync(dir.path(), now),
            "the info log is written on every open and does not count"
        );
        set("000013.log", STALE_AFTER - Duration::from_secs(60));
        assert!(!out_of_sync(dir.path(), now), "a write within the limit");
        assert!(out_of_sync(dir.path(), now + Duration::from_secs(120)));
    }
}
