//! Committing the open batch (steps a–c of ARCHITECTURE §5): the changelog
//! records and the marker, one local write, then the outputs from the outbox.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rocksdb::WriteBatch;
use storefold_codec::{CommitMarker, StateKind, StateRecord};
use storefold_core::engine::{Engine, Item, StateValue};

use super::shared::Out;
use super::{Task, TaskError, task_label};
use crate::db::{DbError, DbSource};
use crate::parked::parked_since;
use crate::records::{
    Family, OutboxEntry, decode_outbox, decode_value, family_of, input_positions, marker_key,
    outbox_chunks, outbox_key, tombstone_headers,
};
use crate::{failpoint, idem, size};

impl Task {
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

    /// Committing the open batch (steps a–c of §5; the caller commits the
    /// consumer offsets, step d) takes three calls: `stage`, `mark` and
    /// `complete`. On error each abandons the batch: the task must be
    /// restarted from its committed state.
    ///
    /// Step a, first half: settles the previous batch's outputs, serialises
    /// the batch's changed state and hands its changelog records to the
    /// producer without waiting. Committing many tasks, the caller stages
    /// them all before it marks any, so that their acknowledgements are
    /// awaited together: one round trip per step for every due task.
    pub(crate) fn stage(&mut self) -> Result<Staged, TaskError> {
        let result = self.stage_inner();
        if result.is_err() {
            self.abandon();
        }
        result
    }

    /// Step a, second half: waits for the staged records' acknowledgements,
    /// then hands the commit marker to the producer.
    pub(crate) fn mark(&mut self, staged: Staged) -> Result<Marked, TaskError> {
        let result = self.mark_inner(staged);
        if result.is_err() {
            self.abandon();
        }
        result
    }

    /// Steps b and c: waits for the marker's acknowledgement, writes the
    /// batch to RocksDB in one write, and hands the outputs to the producer.
    /// Returns the batch's event count.
    pub(crate) fn complete(&mut self, marked: Marked) -> Result<usize, TaskError> {
        let result = self.complete_inner(marked);
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn stage_inner(&mut self) -> Result<Staged, TaskError> {
        let total = Instant::now();
        // The previous batch's outputs, acknowledged while this batch folded.
        let step = Instant::now();
        self.settle_outbox()?;
        self.shared
            .metrics
            .commit_seconds
            .with_label_values(&["outbox"])
            .observe(step.elapsed().as_secs_f64());
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
        self.engine.trim(self.shared.cache_per_task());
        for p in released {
            *self.batch_outcomes.entry((p, "released")).or_default() += 1;
        }
        // Batch records out of the retention tombstoned (with their keys),
        // then the batch's idempotency keys as one record (see crate::idem):
        // in this order, so that an event applied again after its key expired
        // keeps the key the new record gives it.
        let watermark = self.watermark.load(Ordering::Relaxed);
        for k in self
            .idem_batches
            .expire(watermark, self.shared.retention_ms)
        {
            records.push((k, None));
        }
        let idem_record = (!self.batch_idem.is_empty()).then(|| {
            let key = idem::batch_key(self.epoch, seq);
            let value = idem::encode_batch(&self.batch_idem);
            let newest = idem::batch_newest(&value).unwrap_or(0);
            records.push((key.clone(), Some(value)));
            (key, newest)
        });
        // Orphans of a crashed batch: written again with their committed value.
        for k in std::mem::take(&mut self.repair) {
            let v = self.db.get(&k)?;
            records.push((k, v));
        }
        let outputs = self.outputs(&output);
        // The outputs travel in a few chunk records, each within the
        // producer's message limit.
        let budget = self
            .shared
            .max_message_bytes
            .saturating_sub(size::RECORD_OVERHEAD + 256);
        for (i, chunk) in outbox_chunks(&outputs, budget).into_iter().enumerate() {
            records.push((outbox_key(seq, i), Some(chunk)));
        }
        for k in std::mem::take(&mut self.flushed_outbox) {
            records.push((k, None));
        }
        self.meta.untombstoned.clear();

        // (a) the changelog records, acknowledged, then the marker, acknowledged.
        let changelog = self.shared.topics.changelog();
        let step = Instant::now();
        // The local write batch is staged now (step b writes it only after the
        // marker is acknowledged), so the records can move into the changelog
        // records without copying their values.
        let mut batch = WriteBatch::default();
        for (k, v) in &records {
            idem::stage_record(&self.db, &mut batch, k, v.as_deref())?;
        }
        let record_count = records.len() as i64;
        // A put is a StateRecord; a delete is a Kafka tombstone carrying the
        // epoch and sequence in its headers, so compaction removes the key
        // (and, after `delete.retention.ms`, the tombstone) instead of keeping
        // a deleted key's last record for ever.
        let deleted = tombstone_headers(self.epoch, seq);
        let encoded: Vec<(String, Option<Vec<u8>>)> = records
            .into_iter()
            .map(|(key, value)| {
                let Some(value) = value else {
                    return (key, None);
                };
                let kind = family_of(&key).map_or(StateKind::Meta, Family::kind);
                let rec = StateRecord {
                    key,
                    kind,
                    epoch: self.epoch,
                    sequence: seq,
                    value: Some(value),
                };
                let bytes = self.shared.encode(&rec);
                (rec.key, Some(bytes))
            })
            .collect();
        // A state record over the producer's limit would fail this batch on
        // every attempt: say which, instead of librdkafka's bare refusal.
        if let Some((k, Some(v))) = encoded.iter().find(|(k, v)| {
            k.len() + v.as_ref().map_or(0, Vec::len) + 256 > self.shared.max_message_bytes
        }) {
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
                value: v.as_deref(),
                headers: if v.is_some() { &[] } else { &deleted },
            })
            .collect();
        let acks = self.shared.send_all(&outs)?;
        Ok(Staged {
            batch: Pending {
                total,
                seq,
                events,
                writes: batch,
                expired,
                idem_record,
            },
            step,
            record_count,
            acks,
        })
    }

    fn mark_inner(&mut self, staged: Staged) -> Result<Marked, TaskError> {
        let Staged {
            batch,
            step,
            record_count,
            acks,
        } = staged;
        let seq = batch.seq;
        let metrics = self.shared.metrics.clone();
        self.shared.acknowledged(acks)?;
        metrics
            .commit_seconds
            .with_label_values(&["changelog"])
            .observe(step.elapsed().as_secs_f64());
        failpoint::hit("after_changelog");
        let changelog = self.shared.topics.changelog();
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
        let marker_ack = self.shared.send_all(&[Out {
            topic: &changelog,
            partition: Some(self.partition),
            key: marker_rec.key.as_bytes(),
            value: Some(&payload),
            headers: &[],
        }])?;
        Ok(Marked {
            batch,
            step,
            marker_ack,
        })
    }

    fn complete_inner(&mut self, marked: Marked) -> Result<usize, TaskError> {
        let Marked {
            batch:
                Pending {
                    total,
                    seq,
                    events,
                    writes: mut batch,
                    expired,
                    idem_record,
                },
            step,
            marker_ack,
        } = marked;
        let metrics = self.shared.metrics.clone();
        let offsets = self.shared.acknowledged(marker_ack)?;
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
        if let Some((key, newest)) = idem_record {
            self.idem_batches.insert(key, newest);
        }

        // (c) the outputs, handed to the producer; the next commit waits for
        // their acknowledgements and deletes their outbox entries.
        self.send_outbox()?;
        metrics
            .commit_seconds
            .with_label_values(&["total"])
            .observe(total.elapsed().as_secs_f64());
        self.update_gauges();
        Ok(events)
    }

    /// Produces every outbox entry and deletes them once acknowledged.
    pub(super) fn flush_outbox(&mut self) -> Result<(), TaskError> {
        self.send_outbox()?;
        self.settle_outbox()
    }

    /// Hands every outbox entry to the producer; the next commit (or
    /// [`Task::settle_outbox`]) waits for the acknowledgements, so the task
    /// folds its next batch meanwhile.
    fn send_outbox(&mut self) -> Result<(), TaskError> {
        self.settle_outbox()?;
        let mut outbox: Vec<(String, Vec<OutboxEntry>)> = Vec::new();
        for (key, value) in self.db.entries(Family::Outbox)? {
            let entries = decode_outbox(&value).ok_or_else(|| DbError::Corrupt {
                path: self.db.path().to_path_buf(),
                key: key.clone(),
                detail: "undecodable outbox entry".into(),
            })?;
            outbox.push((key, entries));
        }
        self.shared
            .metrics
            .outbox_depth
            .with_label_values(&[&task_label(self.partition)])
            .set(outbox.iter().map(|(_, e)| e.len()).sum::<usize>() as i64);
        let acks = if outbox.is_empty() {
            Vec::new()
        } else {
            let outs: Vec<Out<'_>> = outbox
                .iter()
                .flat_map(|(_, entries)| entries)
                .map(|e| Out {
                    topic: &e.topic,
                    partition: None,
                    key: &e.key,
                    // An empty value is a tombstone (a shredded data key);
                    // no other output is ever empty.
                    value: (!e.value.is_empty()).then_some(e.value.as_slice()),
                    headers: &e.headers,
                })
                .collect();
            self.shared.send_all(&outs)?
        };
        self.outbox_in_flight = Some(InFlight {
            keys: outbox.into_iter().map(|(k, _)| k).collect(),
            sequence: self.meta.sequence,
            acks,
        });
        Ok(())
    }

    /// Waits for the outputs in flight, then deletes their outbox entries
    /// (tombstoned in the changelog by the next batch) and records their
    /// batch as produced.
    pub fn settle_outbox(&mut self) -> Result<(), TaskError> {
        let Some(flight) = self.outbox_in_flight.take() else {
            return Ok(());
        };
        if !flight.acks.is_empty() {
            self.shared.acknowledged(flight.acks)?;
            failpoint::hit("after_outbox");
        }
        let mut batch = WriteBatch::default();
        for k in flight.keys {
            self.db.stage(&mut batch, &k, None);
            self.flushed_outbox.push(k);
        }
        self.meta.untombstoned.clone_from(&self.flushed_outbox);
        self.meta.flushed = flight.sequence;
        self.db.stage_meta(&mut batch, &self.meta);
        self.db.write(batch)?;
        self.shared
            .metrics
            .outbox_depth
            .with_label_values(&[&task_label(self.partition)])
            .set(0);
        failpoint::hit("after_outbox_deleted");
        Ok(())
    }
}

/// Parked events that expired in a batch: (tenant, id) → provider.
type Expired = std::collections::HashMap<(String, String), String>;

/// What a batch being committed carries from step to step.
pub(crate) struct Pending {
    /// When its commit began.
    total: Instant,
    seq: i64,
    events: usize,
    /// The local write, staged (step b writes it).
    writes: WriteBatch,
    /// Parked events that expired in this batch, by tenant and id.
    expired: Expired,
    /// The batch's idempotency record and its newest receive time.
    idem_record: Option<(String, i64)>,
}

/// A batch whose changelog records are with the producer ([`Task::stage`]).
pub(crate) struct Staged {
    batch: Pending,
    /// When its records were handed over.
    step: Instant,
    record_count: i64,
    acks: Vec<rdkafka::producer::DeliveryFuture>,
}

/// A batch whose marker is with the producer ([`Task::mark`]).
pub(crate) struct Marked {
    batch: Pending,
    /// When its marker was handed over.
    step: Instant,
    marker_ack: Vec<rdkafka::producer::DeliveryFuture>,
}

/// A batch's outputs handed to the producer, not yet acknowledged.
pub(super) struct InFlight {
    /// Their outbox keys, deleted once acknowledged.
    keys: Vec<String>,
    /// The batch they belong to.
    sequence: i64,
    acks: Vec<rdkafka::producer::DeliveryFuture>,
}
