//! Dead letters: a raw record the fold rejects, and a parked event the task
//! gave up on, each kept within the producer's size limit.

use storefold_codec::RECEIVED_AT_HEADER;
use storefold_providers::ProviderKind;
use time::OffsetDateTime;

use super::{Input, Task};
use crate::parked::{parked_since, waited_for};
use crate::records::OutboxEntry;
use crate::size;

impl Task {
    pub(super) fn dead_letter(
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

    /// The dead letter of a parked event the task gave up on.
    pub(super) fn dead_letter_expired(&mut self, p: &storefold_core::engine::ParkedEvent) {
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
}
