//! Folding raw records into the open batch: decoding, mapping with the
//! provider, idempotency, the engine, and giving up on parked events whose
//! order did not come in time.

use std::sync::atomic::Ordering;
use std::time::Instant;

use storefold_codec::RawEvent;
use storefold_core::{FoldError, Outcome};
use storefold_providers::{Headers, MapContext, ProviderKind, RawInput};
use time::OffsetDateTime;

use super::{Input, Task, TaskError};
use crate::db::DbSource;
use crate::records::idempotency_key;

impl Task {
    fn count(&mut self, provider: &str, outcome: &'static str) {
        *self
            .batch_outcomes
            .entry((provider.to_string(), outcome))
            .or_default() += 1;
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
}
