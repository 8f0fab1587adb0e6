//! A verified request as a raw event, and its produce to Kafka.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use storefold_codec::{RawEncryption, RawEvent, RecordKind, Verification};
use storefold_providers::{Headers, ProviderKind};
use time::OffsetDateTime;

use crate::response::Rejection;
use crate::{Ingest, PublishError, Stored, trace};

/// The raw event of a verified request: the exact body, the provider's own headers,
/// its idempotency id and topic, the receive time, how it was verified and the
/// trace context.
pub(crate) fn raw_event(
    tenant: &str,
    kind: ProviderKind,
    inbound: storefold_providers::Inbound,
    headers: &Headers,
    body: &[u8],
    received: OffsetDateTime,
    trace: &trace::TraceContext,
) -> RawEvent {
    RawEvent {
        event_id: inbound.event_id,
        tenant: tenant.to_string(),
        provider: kind.name().to_string(),
        topic: inbound.topic,
        received_at: unix_millis(received),
        headers: headers
            .select(kind.kept_headers())
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
        verification: kind
            .scheme()
            .map_or_else(Verification::unsigned, Verification::verified),
        trace_context: Some(trace.header_value()),
        encryption: None,
        residue: None,
    }
}

impl Ingest {
    /// Stores a raw event made outside a webhook request (a reconciled copy
    /// of a lost webhook, from `storefold reconcile`) exactly as a verified
    /// request's is stored: encrypted for a tenant that shreds its raw log,
    /// framed, produced to its provider's raw topic and acknowledged. The
    /// error says why it was not stored (a retry may help).
    pub async fn store_raw(&self, raw: RawEvent) -> Result<Stored, String> {
        let kind: ProviderKind = raw
            .provider
            .parse()
            .map_err(|e| format!("raw event {}: {e}", raw.event_id))?;
        store(self, kind, raw).await.map_err(|r| r.message)
    }

    /// Reads a record of a raw topic with the ingest's codec (single-object
    /// or, with a schema registry, Confluent framing).
    pub fn decode_raw(&self, payload: &[u8]) -> Result<RawEvent, storefold_codec::Error> {
        self.codec.decode(payload)
    }

    /// The raw topic of `kind`.
    pub fn raw_topic_of(&self, kind: ProviderKind) -> &str {
        self.raw_topic(kind)
    }
}

/// Encodes and produces `raw`, waiting for Kafka's acknowledgement; for a
/// tenant that shreds its raw log, the body is encrypted first.
pub(crate) async fn store(
    ingest: &Ingest,
    kind: ProviderKind,
    mut raw: RawEvent,
) -> Result<Stored, Rejection> {
    ingest
        .metrics
        .body_bytes
        .with_label_values(&[kind.name()])
        .observe(raw.body.len() as f64);
    if let Some(keys) = &ingest.raw_keys
        && keys.encrypts(&raw.tenant)
    {
        encrypt(ingest, keys, kind, &mut raw).await?;
    }
    let payload = ingest
        .codec
        .encode(&raw, ingest.framing.format(RecordKind::RawEvent))
        .map_err(|e| {
            Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encode_failed",
                format!("cannot encode the raw event: {e}"),
            )
        })?;
    let topic = ingest.raw_topic(kind);
    let started = Instant::now();
    let result = ingest
        .publisher
        .publish(
            topic,
            &raw.tenant,
            &payload,
            &[
                (
                    "traceparent",
                    raw.trace_context.as_deref().unwrap_or_default(),
                ),
                ("storefold-event-id", raw.event_id.as_str()),
            ],
        )
        .await;
    let outcome = if result.is_ok() { "acked" } else { "failed" };
    ingest
        .metrics
        .publish_seconds
        .with_label_values(&[kind.name(), outcome])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(stored) => {
            tracing::debug!(
                event_id = %raw.event_id,
                topic = %topic,
                partition = stored.partition,
                offset = stored.offset,
                bytes = raw.body.len(),
                "stored"
            );
            Ok(stored)
        }
        Err(PublishError::TooLarge) => Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large_for_kafka",
            "the event is larger than the Kafka broker accepts",
        )),
        Err(e) => {
            let mut r = Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.code(),
                format!("not stored, retry later: {e}"),
            );
            r.retry_after = Some(ingest.settings.retry_after_secs);
            Err(r)
        }
    }
}

/// Encrypts `raw.body` under a data key of its subject (see
/// `FoldConfig::subject`: the identity key the fold files what the body
/// says about a person under), as the processor will map it; the tenant's
/// own subject when it names nobody or cannot be mapped (the processor
/// dead-letters those). A subject without a usable key gets a new one,
/// stored in the keys topic before the body is.
async fn encrypt(
    ingest: &Ingest,
    keys: &crate::RawKeys,
    kind: ProviderKind,
    raw: &mut RawEvent,
) -> Result<(), Rejection> {
    use storefold_runtime::rawkeys::{self, DataKey, TENANT_SUBJECT};
    let internal =
        |code: &'static str, e: String| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, code, e);
    let events = map(ingest, kind, raw);
    let subject = events
        .as_deref()
        .and_then(|e| ingest.fold_config.subject(e))
        .map(|k| k.to_string())
        .unwrap_or_else(|| TENANT_SUBJECT.to_string());
    // What survives the subject's erasure, in clear. JSON of canonical
    // envelopes serialises infallibly; a body that cannot be mapped has none.
    let residue = events.map(|e| {
        let residue: Vec<serde_json::Value> = ingest
            .fold_config
            .residue(&e)
            .iter()
            .map(storefold_core::event::to_versioned_json)
            .collect();
        serde_json::Value::Array(residue).to_string()
    });
    let existing = keys.book().live_key(&raw.tenant, &subject);
    let key = match existing {
        Some(k) => k,
        None => {
            let (key, value) = {
                let book = keys.book();
                let kek = book
                    .kek(&raw.tenant)
                    .ok_or_else(|| internal("no_kek", "no key-encryption key".into()))?;
                DataKey::generate(kek, &raw.tenant, &subject)
                    .map_err(|e| internal("key_failed", e.to_string()))?
            };
            let record = key.record_key();
            ingest
                .publisher
                .publish(&keys.topic, &record, &value, &[])
                .await
                .map_err(|e| {
                    let mut r = Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        e.code(),
                        format!("the body's data key was not stored, retry later: {e}"),
                    );
                    r.retry_after = Some(ingest.settings.retry_after_secs);
                    r
                })?;
            ingest.metrics.raw_keys_created.inc();
            let key = std::sync::Arc::new(key);
            keys.book().insert(std::sync::Arc::clone(&key));
            key
        }
    };
    let aad = rawkeys::body_aad(&raw.tenant, &raw.provider, &raw.event_id);
    let (nonce, body) = key
        .seal(&aad, &raw.body)
        .map_err(|e| internal("encrypt_failed", e.to_string()))?;
    raw.body = body;
    raw.encryption = Some(RawEncryption {
        scheme: rawkeys::SCHEME.to_string(),
        subject,
        key_id: key.key_id.clone(),
        nonce,
    });
    raw.residue = residue;
    Ok(())
}

/// The body's canonical events as the processor will map them (with the
/// tenant's options); `None` when it cannot be mapped.
fn map(
    ingest: &Ingest,
    kind: ProviderKind,
    raw: &RawEvent,
) -> Option<Vec<storefold_core::Envelope>> {
    let headers = Headers::from_pairs(raw.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let options = ingest.map_options.get(&raw.tenant)?;
    let ctx = storefold_providers::MapContext {
        tenant: &raw.tenant,
        options,
    };
    let received_at = raw.received_time();
    kind.map(
        &ctx,
        &storefold_providers::RawInput {
            topic: &raw.topic,
            event_id: &raw.event_id,
            headers: &headers,
            body: &raw.body,
            received_at,
        },
    )
    .ok()
}

/// The request's headers whose values are text.
pub(crate) fn to_headers(map: &HeaderMap) -> Headers {
    Headers::from_pairs(
        map.iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
    )
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}
