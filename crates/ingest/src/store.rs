//! A verified request as a raw event, and its produce to Kafka.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use storefold_codec::{RawEvent, RecordKind, Verification};
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
    }
}

/// Encodes and produces `raw`, waiting for Kafka's acknowledgement.
pub(crate) async fn store(
    ingest: &Ingest,
    kind: ProviderKind,
    raw: RawEvent,
) -> Result<Stored, Rejection> {
    ingest
        .metrics
        .body_bytes
        .with_label_values(&[kind.name()])
        .observe(raw.body.len() as f64);
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
