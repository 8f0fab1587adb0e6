//! Folding raw records into the open batch: decoding, mapping with the
//! provider, idempotency, the engine, and giving up on parked events whose
//! order did not come in time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use storefold_codec::{RawEncryption, RawEvent};
use storefold_core::{FoldError, Outcome};
use storefold_providers::{Headers, MapContext, ProviderKind, RawInput};

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
        if let Err(TaskError::Db(_) | TaskError::Kafka(_)) = &result {
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
        let body = match &raw.encryption {
            None => std::borrow::Cow::Borrowed(raw.body.as_slice()),
            Some(enc) => match self.open_body(&raw, enc)? {
                Opened::Body(b) => std::borrow::Cow::Owned(b),
                Opened::Shredded => return self.fold_shredded(input, &raw, pname, enc, idem),
                Opened::Refused(code, why) => {
                    self.dead_letter(input, Some(&raw.event_id), code, why);
                    self.count(pname, "rejected");
                    self.progress.read(input.topic, raw.received_at);
                    return self.expire_parked();
                }
            },
        };
        let headers =
            Headers::from_pairs(raw.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let received_at = raw.received_time();
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
                body: &body,
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
        self.fold_events(input, &raw, pname, &events)?;
        self.batch_idem.push((idem.clone(), raw.received_at));
        self.batch_idem_set.insert(idem);
        self.progress.read(input.topic, raw.received_at);
        self.expire_parked()
    }

    /// Folds the canonical events of one raw event; the first one the fold
    /// refuses sends the raw event to the dead-letter topic.
    fn fold_events(
        &mut self,
        input: &Input<'_>,
        raw: &RawEvent,
        pname: &str,
        events: &[storefold_core::Envelope],
    ) -> Result<(), TaskError> {
        let src = DbSource::new(&self.db);
        let mut rejected: Vec<FoldError> = Vec::new();
        let mut outcomes: Vec<&'static str> = Vec::new();
        for env in events {
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
                FoldError::NoSku => "no_sku",
            };
            self.dead_letter(input, Some(&raw.event_id), code, e.to_string());
            self.count(pname, "rejected");
        }
        Ok(())
    }

    /// The clear body of an encrypted raw event; whether its data key was
    /// shredded; or why it cannot be read. A key this processor has not seen
    /// is looked for in the keys topic read to its end (the ingest stores a
    /// key before the first body under it), so a missing key is a shredded
    /// one; a failure to read the topic abandons the batch.
    fn open_body(&mut self, raw: &RawEvent, enc: &RawEncryption) -> Result<Opened, TaskError> {
        use storefold_runtime::rawkeys::{Lookup, SCHEME, body_aad, record_key};
        if enc.scheme != SCHEME {
            return Ok(Opened::Refused(
                "undecryptable",
                format!("unknown encryption scheme {:?}", enc.scheme),
            ));
        }
        let no_kek = || {
            Opened::Refused(
                "no_raw_encryption_key",
                format!(
                    "the body is encrypted but tenants.{}.raw_encryption is not configured here",
                    raw.tenant
                ),
            )
        };
        let Some(keys) = &self.shared.raw_keys else {
            return Ok(no_kek());
        };
        let mut log = keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = log.book().lookup(&raw.tenant, &enc.subject, &enc.key_id);
        if matches!(found, Lookup::Unknown) {
            log.catch_up(self.shared.produce_timeout.max(Duration::from_secs(30)))
                .map_err(|e| TaskError::Kafka(format!("reading the keys topic: {e}")))?;
            let mut book = log.book();
            found = book.lookup(&raw.tenant, &enc.subject, &enc.key_id);
            if matches!(found, Lookup::Unknown) {
                book.mark_missing(&record_key(&raw.tenant, &enc.subject, &enc.key_id));
                found = Lookup::Shredded;
            }
        }
        drop(log);
        Ok(match found {
            Lookup::Found(key) => {
                let aad = body_aad(&raw.tenant, &raw.provider, &raw.event_id);
                match key.open(&enc.nonce, &aad, &raw.body) {
                    Ok(b) => Opened::Body(b),
                    Err(e) => Opened::Refused("undecryptable", e.to_string()),
                }
            }
            Lookup::Shredded => Opened::Shredded,
            Lookup::NoKek => no_kek(),
            Lookup::Unknown => unreachable!("an unknown key was resolved above"),
        })
    }

    /// A raw event whose data key was shredded: its subject was erased, and
    /// all that is left of it is whom it was about. The subject is erased
    /// again through a redaction naming only its key, so that whatever
    /// other events say of the subject is scrubbed as after the erasure
    /// itself (in any order), and the event counts as seen.
    fn fold_shredded(
        &mut self,
        input: &Input<'_>,
        raw: &RawEvent,
        pname: &str,
        enc: &RawEncryption,
        idem: String,
    ) -> Result<(), TaskError> {
        use storefold_core::event::{CustomerRedacted, Event};
        self.shared.metrics.raw_shredded.inc();
        match residue(raw) {
            Ok(events) => self.fold_events(input, raw, pname, &events)?,
            Err(why) => {
                self.dead_letter(input, Some(&raw.event_id), "bad_residue", why);
                self.count(pname, "rejected");
            }
        }
        if let Some(key) = storefold_core::identity::IdentityKey::parse(&enc.subject) {
            let occurred_at = raw.received_time();
            let env = storefold_core::Envelope {
                tenant: raw.tenant.clone(),
                provider: pname.to_string(),
                event_id: format!("{}#shredded", raw.event_id),
                occurred_at,
                event: Event::CustomerRedacted(CustomerRedacted::shredded(key)),
            };
            let src = DbSource::new(&self.db);
            let outcome = self
                .engine
                .apply_received(&src, &env, Some(raw.received_at));
            if let Some(e) = src.take_error() {
                return Err(e.into());
            }
            if let Err(e) = outcome {
                tracing::warn!(task = self.partition, error = %e, "shredded event not folded");
            }
        }
        self.count(pname, "shredded");
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

/// What an encrypted body came to.
enum Opened {
    Body(Vec<u8>),
    Shredded,
    /// Dead-lettered with this code and reason.
    Refused(&'static str, String),
}

/// The residue kept beside a shredded body: canonical events of the raw
/// event's own tenant (none when the ingest could not map the body).
fn residue(raw: &RawEvent) -> Result<Vec<storefold_core::Envelope>, String> {
    let Some(text) = &raw.residue else {
        return Ok(Vec::new());
    };
    let values: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("residue is not a JSON array: {e}"))?;
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let env = storefold_core::event::upcast(v)
            .map_err(|e| format!("residue holds no canonical event: {e}"))?;
        if env.tenant != raw.tenant {
            return Err(format!(
                "residue names tenant {:?}, the raw event {:?}",
                env.tenant, raw.tenant
            ));
        }
        out.push(env);
    }
    Ok(out)
}
