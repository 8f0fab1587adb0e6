//! A model of what Kafka's log cleaner may leave of one partition of a
//! compacted topic (`cleanup.policy=compact`), for tests that must restore from
//! a compacted log. librdkafka's mock cluster never compacts, so such a test
//! reads a partition, rewrites it with [`clean`] and writes the survivors to a
//! fresh topic.
//!
//! How the broker's cleaner decides, and how the model follows it:
//!
//! - Only a prefix of the partition is cleanable. The broker stops at the
//!   first segment holding a record younger than `min.compaction.lag.ms`
//!   (its *first uncleanable offset*) and never touches the active segment.
//!   The model treats every record as its own segment: the cleanable prefix
//!   ends at the first record with `now - timestamp < min.compaction.lag.ms`,
//!   and the partition's last record always stays (the smallest possible active
//!   segment). [`clean_before`] cleans a shorter prefix, as a cleaner that
//!   stopped early (a full dedupe buffer) does.
//! - The broker's offset map (the newest offset of each key) is built from the
//!   cleanable prefix only, not from the whole partition: a record survives
//!   when no newer record of its key lies *inside the prefix*. A newer record of
//!   the same key within the lag does not remove it until that newer record is
//!   itself cleanable.
//! - A tombstone (a record without a value) that survives in the cleaned part
//!   is dropped once it is older than `delete.retention.ms`. The broker drops
//!   it later than that (its delete horizon starts when the tombstone is first
//!   cleaned), so the model removes at least as much as the broker could.
//! - Survivors keep their offsets and their order; nothing is ever reordered or
//!   rewritten.

/// One record of a partition as the cleaner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: i64,
    /// The record's timestamp (ms since the epoch): what the lag is measured on.
    pub timestamp_ms: i64,
    /// Compacted topics refuse records without a key.
    pub key: Vec<u8>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The topic settings the cleaner follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanerConfig {
    /// `min.compaction.lag.ms`: records younger than this are never removed.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone outlives what it deleted.
    pub delete_retention_ms: i64,
}

/// The changelog's settings: `storefold topics create` sets a lag of one hour;
/// the delete retention is the broker's default of 24 hours.
pub const CHANGELOG: CleanerConfig = CleanerConfig {
    min_compaction_lag_ms: 3_600_000,
    delete_retention_ms: 86_400_000,
};

/// What a cleaning at time `now_ms` may leave of `records` (one partition, in
/// offset order): the whole cleanable prefix cleaned. See the module docs.
pub fn clean(records: &[LogRecord], now_ms: i64, config: &CleanerConfig) -> Vec<LogRecord> {
    clean_before(records, i64::MAX, now_ms, config)
}

/// [`clean`], cleaning no record at or after offset `limit` (a cleaner that
/// stopped before the end of the cleanable prefix).
pub fn clean_before(
    records: &[LogRecord],
    limit: i64,
    now_ms: i64,
    config: &CleanerConfig,
) -> Vec<LogRecord> {
    debug_assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "records must be in offset order"
    );
    let horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
    // The first record the cleaner may not touch: the limit, the first record
    // within the lag, or the last record (the active segment).
    let last = records.len().saturating_sub(1);
    let end = records
        .iter()
        .position(|r| r.offset >= limit || r.timestamp_ms > horizon)
        .unwrap_or(last)
        .min(last);
    let cleanable = &records[..end];
    // The offset map: the newest offset of each key within the cleanable prefix.
    let mut newest: std::collections::HashMap<&[u8], i64> = std::collections::HashMap::new();
    for r in cleanable {
        newest.insert(&r.key, r.offset);
    }
    let tombstone_horizon = now_ms.saturating_sub(config.delete_retention_ms);
    let mut out: Vec<LogRecord> = cleanable
        .iter()
        .filter(|r| newest.get(r.key.as_slice()) == Some(&r.offset))
        .filter(|r| r.value.is_some() || r.timestamp_ms > tombstone_horizon)
        .cloned()
        .collect();
    out.extend_from_slice(&records[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_000 * HOUR;

    fn rec(offset: i64, age_ms: i64, key: &str, value: Option<&str>) -> LogRecord {
        LogRecord {
            offset,
            timestamp_ms: NOW - age_ms,
            key: key.as_bytes().to_vec(),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
        }
    }

    fn survivors(out: &[LogRecord]) -> Vec<i64> {
        out.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn the_newest_record_of_each_key_survives_with_its_offset() {
        let log = vec![
            rec(0, 5 * HOUR, "a", Some("a0")),
            rec(1, 5 * HOUR, "b", Some("b0")),
            rec(2, 4 * HOUR, "a", Some("a1")),
            rec(3, 3 * HOUR, "c", Some("c0")),
            rec(4, 3 * HOUR, "a", Some("a2")),
            rec(5, 2 * HOUR, "end", Some("x")),
        ];
        let out = clean(&log, NOW, &CHANGELOG);
        assert_eq!(survivors(&out), vec![1, 3, 4, 5]);
        assert_eq!(out[2].value.as_deref(), Some(b"a2".as_slice()));
    }

    #[test]
    fn records_within_the_lag_are_never_removed_nor_remove_older_ones() {
        let log = vec![
            rec(0, 3 * HOUR, "a", Some("a0")),
            rec(1, 2 * HOUR, "b", Some("b0")),
            // Within the lag from here on: everything stays, and `a`'s older
            // record stays too (the offset map covers the cleanable part only).
            rec(2, HOUR / 2, "a", Some("a1")),
            rec(3, HOUR / 3, "a", Some("a2")),
            // Older than the lag but after a younger record: not cleanable.
            rec(4, 5 * HOUR, "b", Some("b1")),
            rec(5, 0, "c", Some("c0")),
        ];
        let out = clean(&log, NOW, &CHANGELOG);
        assert_eq!(survivors(&out), vec![0, 1, 2, 3, 4, 5]);
        // An hour later the first three are cleanable: `a0` goes, `a1` is the
        // newest `a` of the cleanable prefix and stays.
        let out = clean(&log, NOW + HOUR / 2 + 1, &CHANGELOG);
        assert_eq!(survivors(&out), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_tombstone_outlives_its_key_by_the_delete_retention() {
        let log = vec![
            rec(0, 30 * HOUR, "old", Some("v")),
            rec(1, 25 * HOUR, "old", None),
            rec(2, 10 * HOUR, "young", Some("v")),
            rec(3, 9 * HOUR, "young", None),
            rec(4, 8 * HOUR, "kept", Some("v")),
            rec(5, 0, "recent", None),
        ];
        let out = clean(&log, NOW, &CHANGELOG);
        // `old`'s tombstone is older than 24 h: gone with its value. `young`'s
        // stays; the tombstone within the lag stays.
        assert_eq!(survivors(&out), vec![3, 4, 5]);
        assert_eq!(out[0].value, None);
    }

    #[test]
    fn the_active_segment_and_a_stopped_cleaner_keep_their_records() {
        let log = vec![
            rec(0, 50 * HOUR, "a", Some("a0")),
            rec(1, 50 * HOUR, "a", Some("a1")),
            rec(2, 50 * HOUR, "a", Some("a2")),
            rec(3, 50 * HOUR, "a", None),
        ];
        // The last record is the active segment: the tombstone stays, and it
        // is outside the offset map, so `a2` stays too.
        assert_eq!(survivors(&clean(&log, NOW, &CHANGELOG)), vec![2, 3]);
        // A cleaner that stopped at offset 2 only cleaned offsets 0 and 1.
        assert_eq!(
            survivors(&clean_before(&log, 2, NOW, &CHANGELOG)),
            vec![1, 2, 3]
        );
        assert!(clean(&[], NOW, &CHANGELOG).is_empty());
    }
}
