//! Records too large for Kafka.
//!
//! A record above the producer's `message.max.bytes` is refused by librdkafka,
//! and a batch that cannot produce one of its records fails, is folded again,
//! and fails again: the partition would stall for ever. The state itself is
//! bounded (`storefold_core::limits`), so what can still be too large is an
//! output, handled here before it enters the outbox (whose changelog record
//! wraps it):
//!
//! - a dead letter whose copy of the raw record would not fit carries the raw
//!   record's coordinates (topic, partition, offset, event id, size) and the
//!   reason instead of the body ([`replace_with_coordinates`]);
//! - a projection that would not fit is published with its largest lists cut
//!   to their newest entries, flagged `truncated: true` with the counts of
//!   what was left out under `omitted` ([`trim_doc`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use storefold_runtime::config::KafkaConfig;

use crate::records::OutboxEntry;

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// What a changelog record adds around an outbox entry (its key, the state
/// record's fields) and what Kafka adds around a record: kept free below the
/// limit.
pub const RECORD_OVERHEAD: usize = 1024;

/// The largest record the processor's producer accepts: `message.max.bytes`
/// from `[kafka.properties]`, else librdkafka's default.
pub fn message_limit(kafka: &KafkaConfig) -> usize {
    kafka
        .properties
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
}

/// Bytes an outbox entry takes in its changelog record.
pub fn entry_bytes(e: &OutboxEntry) -> usize {
    // Length-prefixed fields of `OutboxEntry::encode`.
    1 + 4
        + e.topic.len()
        + 4
        + e.key.len()
        + 4
        + e.value.len()
        + 4
        + e.headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
}

/// Whether the entry, as a record of its own and wrapped in its changelog
/// record, stays under `limit`.
pub fn fits(e: &OutboxEntry, limit: usize) -> bool {
    entry_bytes(e) + RECORD_OVERHEAD <= limit
}

fn header<'a>(e: &'a OutboxEntry, name: &str) -> Option<&'a [u8]> {
    e.headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// Longest `storefold-error-reason` an oversized dead letter keeps.
const MAX_REASON_BYTES: usize = 4096;

/// Turns a dead letter too large for Kafka into one that carries the raw
/// record's coordinates instead of its copy: the value becomes a JSON object
/// (`value_omitted`, `size`, `topic`, `partition`, `offset`, `event_id`,
/// `error`, `reason`), the header `storefold-value-omitted: true` is added,
/// and only storefold's own headers are kept (the raw record's are on it).
pub fn replace_with_coordinates(e: &mut OutboxEntry, event_id: Option<&str>) {
    let text = |name: &str| header(e, name).map(|v| String::from_utf8_lossy(v).into_owned());
    let number = |name: &str| text(name).and_then(|v| v.parse::<i64>().ok());
    let event_id = event_id
        .map(str::to_string)
        .or_else(|| text("storefold-event-id"));
    let mut reason = text("storefold-error-reason").unwrap_or_default();
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    let value = serde_json::json!({
        "value_omitted": true,
        "why": "the raw record's copy would exceed the producer's message.max.bytes; read it from its own topic at these coordinates",
        "size": e.value.len(),
        "topic": text("storefold-source-topic"),
        "partition": number("storefold-source-partition"),
        "offset": number("storefold-source-offset"),
        "event_id": event_id,
        "error": text("storefold-error"),
        "reason": reason,
    });
    let mut headers: Vec<(String, Vec<u8>)> = e
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("storefold-") && k != "storefold-error-reason")
        .cloned()
        .collect();
    headers.push(("storefold-error-reason".into(), reason.into_bytes()));
    if let Some(id) = &event_id
        && header(e, "storefold-event-id").is_none()
    {
        headers.push(("storefold-event-id".into(), id.as_bytes().to_vec()));
    }
    headers.push(("storefold-value-omitted".into(), b"true".to_vec()));
    headers.push((
        "storefold-original-size".into(),
        e.value.len().to_string().into_bytes(),
    ));
    e.value = serde_json::to_vec(&value).unwrap_or_default();
    e.headers = headers;
    // A key is the raw record's key (a tenant id): small, but bounded anyway.
    e.key.truncate(1024);
}

/// Cuts a projection's JSON document until it takes at most `budget` bytes:
/// the largest list anywhere in it loses its oldest half (lists are in time
/// order, oldest first, so the newest entries stay), again and again; then
/// the largest map of observations loses half its entries. The document gets
/// `truncated: true` and `omitted` (path → entries left out, added to what the
/// view itself cut). When even that does not fit, the document keeps its
/// identifying scalars only, with `too_large: true`. Returns `None` when the
/// document is not a JSON object.
pub fn trim_doc(doc: &str, budget: usize) -> Option<String> {
    let mut v: Value = serde_json::from_str(doc).ok()?;
    if !v.is_object() {
        return None;
    }
    let mut omitted: BTreeMap<String, u64> = BTreeMap::new();
    // The view's own counts of what it cut.
    if let Some(Value::Object(o)) = v.get("omitted") {
        for (k, n) in o {
            if let Some(n) = n.as_u64() {
                omitted.insert(k.clone(), n);
            }
        }
    }
    let size = |v: &Value| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    // Room for the flags and counts added at the end.
    let room = |omitted: &BTreeMap<String, u64>| 64 + omitted.len() * 48;
    let mut rounds = 0;
    while size(&v) + room(&omitted) > budget && rounds < 10_000 {
        rounds += 1;
        let Some((path, len)) = largest_collection(&v, String::new()) else {
            break;
        };
        if len < 2 {
            break;
        }
        let cut = len.div_ceil(2);
        let Some(target) = v.pointer_mut(&path) else {
            break;
        };
        match target {
            Value::Array(a) => {
                a.drain(..cut);
            }
            Value::Object(m) => {
                let keys: Vec<String> = m.keys().take(cut).cloned().collect();
                for k in keys {
                    m.remove(&k);
                }
            }
            _ => break,
        }
        let name = path.trim_start_matches('/').replace('/', ".");
        *omitted.entry(name).or_default() += cut as u64;
    }
    let fits = size(&v) + room(&omitted) <= budget;
    let Value::Object(obj) = &mut v else {
        return None;
    };
    if !fits {
        // Keep what identifies the record (its top-level scalars that are
        // short) and say it was too large.
        let kept: Map<String, Value> = obj
            .iter()
            .filter(|(_, x)| match x {
                Value::String(s) => s.len() <= 256,
                Value::Number(_) | Value::Bool(_) => true,
                _ => false,
            })
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect();
        *obj = kept;
        obj.insert("too_large".into(), Value::Bool(true));
        let mut out = serde_json::to_string(&v).ok()?;
        if out.len() > budget {
            out = serde_json::json!({"truncated": true, "too_large": true}).to_string();
        }
        return Some(out);
    }
    obj.insert("truncated".into(), Value::Bool(true));
    obj.insert(
        "omitted".into(),
        Value::Object(
            omitted
                .into_iter()
                .map(|(k, n)| (k, Value::from(n)))
                .collect(),
        ),
    );
    serde_json::to_string(&v).ok()
}

/// The JSON pointer and length of the collection (an array, or a map of
/// `observations`) that serialises largest, with more than one entry.
fn largest_collection(v: &Value, path: String) -> Option<(String, usize)> {
    let mut best: Option<(String, usize, usize)> = None;
    fn walk(v: &Value, path: &str, parent_key: &str, best: &mut Option<(String, usize, usize)>) {
        let (len, is_collection) = match v {
            Value::Array(a) => (a.len(), true),
            Value::Object(m) => (m.len(), parent_key == "observations"),
            _ => return,
        };
        if is_collection && len > 1 {
            let bytes = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
            if best.as_ref().is_none_or(|b| bytes > b.2) {
                *best = Some((path.to_string(), len, bytes));
            }
        }
        match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}/{i}"), "", best);
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    let esc = k.replace('~', "~0").replace('/', "~1");
                    walk(x, &format!("{path}/{esc}"), k, best);
                }
            }
            _ => {}
        }
    }
    walk(v, &path, "", &mut best);
    best.map(|(p, len, _)| (p, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_document_keeps_its_newest_entries_and_says_what_it_left_out() {
        let orders: Vec<Value> = (0..5000)
            .map(|i| serde_json::json!({"order_id": format!("shopify:{i}"), "total": i}))
            .collect();
        let doc = serde_json::json!({
            "customer_id": "c1",
            "orders": orders,
            "tags": ["a", "b"],
            "omitted": {"tickets": 3},
        })
        .to_string();
        let out = trim_doc(&doc, 20_000).expect("trimmed");
        assert!(out.len() <= 20_000, "{}", out.len());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["customer_id"], "c1");
        let kept = v["orders"].as_array().unwrap();
        assert_eq!(
            kept.last().unwrap()["order_id"],
            "shopify:4999",
            "the newest entry stays"
        );
        let left_out = v["omitted"]["orders"].as_u64().unwrap();
        assert_eq!(left_out + kept.len() as u64, 5000);
        assert_eq!(v["omitted"]["tickets"], 3, "the view's own counts stay");
        assert_eq!(v["tags"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_document_that_cannot_fit_keeps_its_identifiers() {
        let doc =
            serde_json::json!({"order_id": "shopify:1", "note": "x".repeat(50_000)}).to_string();
        let out = trim_doc(&doc, 2_000).expect("trimmed");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["order_id"], "shopify:1");
        assert_eq!(v["too_large"], true);
        assert!(v.get("note").is_none());
    }

    #[test]
    fn an_oversized_dead_letter_carries_coordinates() {
        let mut e = OutboxEntry {
            topic: "storefold.dlq.processor".into(),
            key: b"acme".to_vec(),
            value: vec![b'x'; 2_000_000],
            headers: vec![
                ("x-original".into(), b"kept on the raw record".to_vec()),
                ("storefold-error".into(), b"malformed_json".to_vec()),
                (
                    "storefold-error-reason".into(),
                    "r".repeat(10_000).into_bytes(),
                ),
                (
                    "storefold-source-topic".into(),
                    b"storefold.raw.shopify".to_vec(),
                ),
                ("storefold-source-partition".into(), b"3".to_vec()),
                ("storefold-source-offset".into(), b"42".to_vec()),
            ],
        };
        assert!(!fits(&e, DEFAULT_MESSAGE_MAX_BYTES));
        replace_with_coordinates(&mut e, Some("evt-1"));
        assert!(fits(&e, DEFAULT_MESSAGE_MAX_BYTES));
        let v: Value = serde_json::from_slice(&e.value).unwrap();
        assert_eq!(v["size"], 2_000_000);
        assert_eq!(v["topic"], "storefold.raw.shopify");
        assert_eq!(v["partition"], 3);
        assert_eq!(v["offset"], 42);
        assert_eq!(v["event_id"], "evt-1");
        assert_eq!(v["error"], "malformed_json");
        assert!(e.headers.iter().all(|(k, _)| k.starts_with("storefold-")));
        assert!(
            e.headers
                .iter()
                .any(|(k, v)| k == "storefold-value-omitted" && v == b"true")
        );
    }
}
