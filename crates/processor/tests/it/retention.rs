//! Idempotency keys leave the changelog once out of the retention: the
//! changelog carries them as one record per batch (`~idem/…`), never one per
//! event, and a batch record whose newest key is more than
//! `idempotency_retention_hours` (of receive time) behind the newest event the
//! task folded is tombstoned, so a compacted changelog holds only the batches
//! within the retention. A restore onto an empty disk still recognises a
//! retry of a recent event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use crate::common::*;
use storefold_codec::{AvroCodec, RawEvent, StateKind, StateRecord};
use storefold_processor::Mode;
use storefold_processor::db::{StoreMemory, TaskDb};
use storefold_processor::idem::{decode_batch, is_batch_key};
use storefold_processor::records::{Family, idempotency_key, tombstone_record};
use storefold_testkit::broker::read_topic;
use storefold_testkit::log_cleaner::{CleanerConfig, LogRecord, clean};
use time::macros::datetime;

const HOUR_MS: i64 = 3_600_000;
const ROUNDS: i64 = 6;

/// The changelog of partition 0 in offset order: each record's offset, key,
/// whether Kafka holds a value (a tombstone holds none), and the state record
/// it stands for (a tombstone: a delete named by its headers).
fn changelog(env: &Env) -> Vec<(i64, Vec<u8>, bool, Option<StateRecord>)> {
    let codec = AvroCodec::embedded().expect("codec");
    let topics = storefold_runtime::kafka::Topics::new(&env.config.kafka.topic_prefix);
    let mut out: Vec<(i64, Vec<u8>, bool, Option<StateRecord>)> = read_topic(
        &env.config.kafka.bootstrap_servers,
        &topics.changelog(),
        Duration::from_secs(10),
    )
    .into_iter()
    .filter(|r| r.partition == 0)
    .map(|r| {
        let key = r.key.clone().unwrap_or_default();
        let rec = match r.payload.as_deref() {
            Some(p) => Some(
                codec
                    .decode::<StateRecord>(p)
                    .unwrap_or_else(|e| panic!("changelog offset {}: {e}", r.offset)),
            ),
            None => tombstone_record(
                &key,
                r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            ),
        };
        (r.offset, key, r.payload.is_some(), rec)
    })
    .collect();
    out.sort_by_key(|r| r.0);
    out
}

fn received(events: &[RawEvent]) -> i64 {
    events.iter().map(|e| e.received_at).max().unwrap_or(0)
}

#[test]
fn idempotency_batch_records_are_tombstoned_once_out_of_the_retention() {
    let env = env_with(
        1,
        NO_PARK_TIMEOUT_HOURS,
        "idempotency_retention_hours = 1\n",
    );
    // Six rounds of every provider's samples two hours apart (receive time),
    // each folded to the end before the next is produced, so no batch mixes
    // rounds.
    let start = datetime!(2026-04-01 08:00 UTC);
    let mut rounds: Vec<Vec<RawEvent>> = Vec::new();
    for i in 0..ROUNDS {
        let events = provider_samples(
            &format!("shop{i}"),
            start + time::Duration::hours(2 * i),
            12,
        );
        produce(&env.config, &events);
        run(&env, &env.config, options(&env.config, Mode::All));
        rounds.push(events);
    }
    let newest = received(rounds.last().expect("rounds"));
    let cutoff = newest - HOUR_MS;

    let log = changelog(&env);
    // Newest record of every idempotency batch key, and every key the
    // batch records named.
    let mut batch_state: BTreeMap<String, Option<i64>> = BTreeMap::new();
    let mut named: BTreeMap<String, String> = BTreeMap::new();
    let mut batches_written = 0;
    for (_, key, in_kafka, rec) in &log {
        let key = String::from_utf8_lossy(key).into_owned();
        let Some(rec) = rec else {
            panic!("{key}: a tombstone that names no batch");
        };
        assert_eq!(
            *in_kafka,
            rec.value.is_some(),
            "{key}: deletes are tombstones"
        );
        assert!(
            !key.contains("/idem/"),
            "a per-event idempotency key reached the changelog: {key}"
        );
        if !is_batch_key(&key) {
            continue;
        }
        assert_eq!(rec.kind, StateKind::Idempotency, "{key}");
        match &rec.value {
            Some(v) => {
                batches_written += 1;
                let (stamp, entries) = decode_batch(v).expect("batch record");
                for (k, _) in entries {
                    named.insert(k, key.clone());
                }
                batch_state.insert(key, Some(stamp));
            }
            None => {
                batch_state.insert(key, None);
            }
        }
    }
    let all_events: Vec<&RawEvent> = rounds.iter().flatten().collect();
    assert_eq!(
        named.len(),
        all_events.len(),
        "every event's key travels in exactly one batch record"
    );
    for e in &all_events {
        let k = idempotency_key(&e.tenant, &e.provider, &e.event_id);
        assert!(named.contains_key(&k), "{k} is in no batch record");
    }
    assert!(
        batches_written < all_events.len() / 4,
        "{batches_written} batch records for {} events",
        all_events.len()
    );

    // Every batch record older than the retention was tombstoned; the others
    // are live. Stamps come from the last put before the tombstone.
    let mut stamps: BTreeMap<String, i64> = BTreeMap::new();
    for (_, key, _, rec) in &log {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(StateRecord { value: Some(v), .. }) = rec
            && is_batch_key(&key)
        {
            stamps.insert(key, decode_batch(v).expect("batch").0);
        }
    }
    let (mut live, mut retired) = (0, 0);
    for (key, state) in &batch_state {
        let stamp = stamps[key];
        if stamp < cutoff {
            assert_eq!(
                *state, None,
                "{key} (newest key {stamp}) outlived the retention"
            );
            retired += 1;
        } else {
            assert_eq!(*state, Some(stamp), "{key} is within the retention");
            live += 1;
        }
    }
    assert!(retired > 0 && live > 0, "retired {retired}, live {live}");

    // What a compaction leaves: no record of an expired batch at all.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30 * 24 * HOUR_MS;
    let records: Vec<LogRecord> = log
        .iter()
        .map(|(offset, key, in_kafka, _)| LogRecord {
            offset: *offset,
            timestamp_ms: 0,
            key: key.clone(),
            value: in_kafka.then(|| vec![1]),
            headers: Vec::new(),
        })
        .collect();
    let survivors: BTreeSet<String> = clean(
        &records,
        now,
        &CleanerConfig {
            min_compaction_lag_ms: HOUR_MS,
            delete_retention_ms: 24 * HOUR_MS,
        },
    )
    .into_iter()
    .map(|r| String::from_utf8_lossy(&r.key).into_owned())
    .filter(|k| is_batch_key(k))
    .collect();
    let expected: BTreeSet<String> = stamps
        .iter()
        .filter(|(_, s)| **s >= cutoff)
        .map(|(k, _)| k.clone())
        .collect();
    // The partition's last record is never cleaned (the active segment).
    let last = String::from_utf8_lossy(&log.last().expect("records").1).into_owned();
    let survivors: BTreeSet<String> = survivors.into_iter().filter(|k| *k != last).collect();
    assert_eq!(
        survivors, expected,
        "only batches within the retention remain"
    );

    // A processor on an empty disk restores the live batches' keys and
    // recognises a retry of a recent event.
    let recent = rounds.last().expect("rounds")[3].clone();
    produce(&env.config, std::slice::from_ref(&recent));
    let mut fresh = env.config.clone();
    fresh.processor.state_dir = env.dir.path().join("fresh");
    let (_, metrics) = run(&env, &fresh, options(&fresh, Mode::All));
    let duplicates: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("storefold_processor_events_total") && l.contains("outcome=\"duplicate\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(duplicates, 1.0, "the retry is recognised after the restore");
    let db = TaskDb::open(
        &fresh.processor.state_dir.join("task-0"),
        &StoreMemory::new(16 << 20),
        i64::MAX,
        Arc::new(AtomicI64::new(0)),
        false,
    )
    .expect("open");
    let restored: BTreeSet<String> = db
        .keys(Family::Idempotency)
        .expect("keys")
        .into_iter()
        .collect();
    for e in rounds.last().expect("rounds") {
        let k = idempotency_key(&e.tenant, &e.provider, &e.event_id);
        assert!(restored.contains(&k), "{k} restored");
    }
    for key in &expected {
        assert!(restored.contains(key), "batch record {key} restored");
    }
}
