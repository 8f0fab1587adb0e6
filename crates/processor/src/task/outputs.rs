//! The batch's outputs, in outbox order: its projections (trimmed to their
//! newest entries when too large for Kafka), its triggers, then its dead
//! letters.

use std::time::Duration;
use storefold_codec::RECEIVED_AT_HEADER;

use storefold_core::engine::BatchOutput;
use storefold_core::identity::IdentityKey;

use super::Task;
use crate::records::{OutboxEntry, ProjectionRecord, projection_record, trigger_record};
use crate::size;

impl Task {
    /// The outbox entries of a batch whose state the engine has settled into
    /// `output`; takes the open batch's dead letters.
    pub(super) fn outputs(&mut self, output: &BatchOutput) -> Vec<OutboxEntry> {
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
            let topic = match &record {
                ProjectionRecord::Customer(_) => topics.customers(),
                ProjectionRecord::Order(_) => topics.orders(),
                ProjectionRecord::Payout(_) => topics.payouts(),
            };
            let mut entry = OutboxEntry {
                topic,
                key,
                value: self.shared.encode_projection(&record),
                headers: received.clone(),
            };
            if !size::fits(&entry, self.shared.max_message_bytes) {
                // Published trimmed (flagged `truncated`), never stalling
                // the partition.
                // The document is cut, then the typed view rebuilt from it:
                // the two share the room.
                record.clear_view();
                entry.value = self.shared.encode_projection(&record);
                let doc = record.doc_mut();
                let around = size::entry_bytes(&entry).saturating_sub(doc.len());
                let budget = self
                    .shared
                    .max_message_bytes
                    .saturating_sub(size::RECORD_OVERHEAD + around + 64)
                    / 2;
                let before = doc.len();
                if let Some(trimmed) = size::trim_doc(doc, budget) {
                    *doc = trimmed;
                }
                record.view_from_doc();
                entry.value = self.shared.encode_projection(&record);
                if !size::fits(&entry, self.shared.max_message_bytes) {
                    record.clear_view();
                    entry.value = self.shared.encode_projection(&record);
                }
                self.shared
                    .metrics
                    .oversized
                    .with_label_values(&["projection"])
                    .inc();
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
        outputs.extend(self.shred(&output.erased));
        outputs.append(&mut self.batch_dlq);
        outputs
    }
}

impl Task {
    /// Tombstones for the data keys of the erased subjects, read from the
    /// keys topic up to its end (keys the ingest made since this processor
    /// started are shredded too). Empty values: the outbox sends them as
    /// tombstones. Listed again by any later batch that touches an erased
    /// identity; a tombstone for a key already gone changes nothing.
    fn shred(&mut self, erased: &[(String, IdentityKey)]) -> Vec<OutboxEntry> {
        let Some(keys) = &self.shared.raw_keys else {
            return Vec::new();
        };
        let mut log = keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let erased: Vec<&(String, IdentityKey)> = erased
            .iter()
            .filter(|(tenant, _)| log.book().kek(tenant).is_some())
            .collect();
        if erased.is_empty() {
            return Vec::new();
        }
        if let Err(e) = log.catch_up(self.shared.produce_timeout.max(Duration::from_secs(30))) {
            // The keys known are still shredded; any made meanwhile are left
            // for the next batch that touches the identity.
            tracing::warn!(task = self.partition, error = %e, "keys topic not read to its end before shredding");
        }
        let book = log.book();
        let topic = self.shared.topics.raw_keys();
        let mut out = Vec::new();
        for (tenant, k) in erased {
            for record in book.subject_records(tenant, &k.to_string()) {
                out.push(OutboxEntry {
                    topic: topic.clone(),
                    key: record.into_bytes(),
                    value: Vec::new(),
                    headers: Vec::new(),
                });
            }
        }
        self.shared.metrics.keys_shredded.inc_by(out.len() as u64);
        out
    }
}
