//! Idempotency keys in the changelog: one record per batch, not one per event.
//!
//! Locally every raw event's key (`tenant/idem/provider:event_id`) stays a key
//! of its own in the `idempotency` column family, because the fold looks each
//! one up. The changelog instead carries one *batch record* per committed
//! batch, `~idem/<epoch>/<sequence>`, listing the batch's keys with their
//! receive times. The batch record is also kept locally (same family), so a
//! restore or an orphan repair can write it again, and so the task knows when
//! to retire it: once the newest receive time the task has folded is more than
//! the retention past the batch's newest key, the task tombstones the batch
//! record in its next commit and compaction removes it from the changelog. The
//! changelog therefore holds one record per batch within the retention instead
//! of one record per event forever.
//!
//! A batch record's value starts with the batch's newest receive time (8 bytes,
//! big-endian, like a per-event value), then a version byte (1), the entry
//! count (u32) and each entry as a length-prefixed key and an 8-byte receive
//! time.

use std::collections::BTreeSet;

use rocksdb::WriteBatch;

use crate::db::{DbError, TaskDb};
use crate::records::{Family, idempotency_value};

/// Key prefix of idempotency batch records.
pub const IDEM_BATCH_PREFIX: &str = "~idem/";

const VERSION: u8 = 1;

/// The batch record key of batch `sequence` of `epoch` (unique per committed
/// batch, so a zombie's or an orphan's record never shares a key with a
/// committed one).
pub fn batch_key(epoch: i64, sequence: i64) -> String {
    format!("{IDEM_BATCH_PREFIX}{epoch:016}/{sequence:016}")
}

/// True for an idempotency batch record key.
pub fn is_batch_key(key: &str) -> bool {
    key.starts_with(IDEM_BATCH_PREFIX)
}

/// Encodes a batch's idempotency keys (key, receive time in ms).
pub fn encode_batch(entries: &[(String, i64)]) -> Vec<u8> {
    let newest = entries.iter().map(|(_, at)| *at).max().unwrap_or(0);
    let size: usize = entries.iter().map(|(k, _)| k.len() + 12).sum();
    let mut out = Vec::with_capacity(13 + size);
    out.extend_from_slice(&newest.to_be_bytes());
    out.push(VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (k, at) in entries {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&at.to_be_bytes());
    }
    out
}

/// The newest receive time of a batch record (its first 8 bytes).
pub fn batch_newest(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// Decodes a batch record: its newest receive time and its entries; `None`
/// when the value is not a batch record this build can read.
pub fn decode_batch(value: &[u8]) -> Option<(i64, Vec<(String, i64)>)> {
    let newest = batch_newest(value)?;
    let (&version, mut input) = value.get(8..)?.split_first()?;
    if version != VERSION {
        return None;
    }
    let n = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
    input = input.get(4..)?;
    let mut entries = Vec::with_capacity(n.min(input.len() / 12));
    for _ in 0..n {
        let len = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
        let key = std::str::from_utf8(input.get(4..4 + len)?)
            .ok()?
            .to_string();
        let at = i64::from_be_bytes(input.get(4 + len..12 + len)?.try_into().ok()?);
        input = input.get(12 + len..)?;
        entries.push((key, at));
    }
    input.is_empty().then_some((newest, entries))
}

/// Stages a state record's put or delete on `batch`; an idempotency batch
/// record that is put also puts each of its per-event keys, and one that is
/// deleted (retired) deletes those the store holds, so that the store holds
/// exactly what a restore from the compacted changelog gives. A delete reads
/// the batch record from the store: `batch` must not hold its put.
pub fn stage_record(
    db: &TaskDb,
    batch: &mut WriteBatch,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), DbError> {
    if value.is_none()
        && is_batch_key(key)
        && let Some(v) = db.get(key)?
        && let Some((_, entries)) = decode_batch(&v)
    {
        for (k, _) in entries {
            db.stage(batch, &k, None);
        }
    }
    db.stage(batch, key, value);
    if let Some(v) = value
        && is_batch_key(key)
    {
        let (_, entries) = decode_batch(v).ok_or_else(|| DbError::Corrupt {
            path: db.path().to_path_buf(),
            key: key.to_string(),
            detail: "unreadable idempotency batch record".into(),
        })?;
        for (k, at) in entries {
            db.stage(batch, &k, Some(&idempotency_value(at)));
        }
    }
    Ok(())
}

/// The live batch records of a task, by newest receive time: which ones the
/// next commit retires.
#[derive(Debug, Default)]
pub struct BatchRecords {
    live: BTreeSet<(i64, String)>,
}

impl BatchRecords {
    /// The batch records in the task's store.
    pub fn load(db: &TaskDb) -> Result<BatchRecords, DbError> {
        let mut live = BTreeSet::new();
        for (key, value) in db.entries_with_prefix(Family::Idempotency, IDEM_BATCH_PREFIX)? {
            let newest = batch_newest(&value).ok_or_else(|| DbError::Corrupt {
                path: db.path().to_path_buf(),
                key: key.clone(),
                detail: "idempotency batch record without its receive time".into(),
            })?;
            live.insert((newest, key));
        }
        Ok(BatchRecords { live })
    }

    /// Records a committed batch record.
    pub fn insert(&mut self, key: String, newest: i64) {
        self.live.insert((newest, key));
    }

    /// Takes the batch records whose newest key is older than `retention_ms`
    /// before `watermark` (the newest receive time folded; nothing expires
    /// before the task has folded anything).
    pub fn expire(&mut self, watermark: i64, retention_ms: i64) -> Vec<String> {
        if watermark <= 0 {
            return Vec::new();
        }
        let cutoff = watermark.saturating_sub(retention_ms);
        let mut out = Vec::new();
        while let Some((newest, _)) = self.live.first()
            && *newest < cutoff
        {
            if let Some((_, key)) = self.live.pop_first() {
                out.push(key);
            }
        }
        out
    }

    /// Live batch records.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no batch record is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_records_round_trip_and_refuse_damage() {
        let entries = vec![
            ("acme/idem/shopify:1".to_string(), 5_000),
            ("acme/idem/stripe:evt_ü".to_string(), 9_000),
            ("beta/idem/adyen:x".to_string(), 7_000),
        ];
        let v = encode_batch(&entries);
        assert_eq!(batch_newest(&v), Some(9_000));
        assert_eq!(decode_batch(&v), Some((9_000, entries.clone())));
        for cut in [0, 7, 9, 13, v.len() - 1] {
            assert_eq!(decode_batch(&v[..cut]), None, "cut at {cut}");
        }
        let mut longer = v.clone();
        longer.push(0);
        assert_eq!(decode_batch(&longer), None, "trailing bytes");
        assert_eq!(decode_batch(&encode_batch(&[])), Some((0, vec![])));
    }

    #[test]
    fn batch_keys_are_unique_per_epoch_and_sequence_and_sort_by_them() {
        assert_eq!(batch_key(3, 17), "~idem/0000000000000003/0000000000000017");
        assert!(is_batch_key(&batch_key(3, 17)));
        assert!(!is_batch_key("acme/idem/shopify:1"));
        assert!(batch_key(3, 17) < batch_key(3, 170));
        assert!(batch_key(3, 17) < batch_key(4, 1));
        assert_ne!(batch_key(3, 17), batch_key(4, 17));
    }

    #[test]
    fn batch_records_expire_a_retention_behind_the_newest_receive_time() {
        let mut live = BatchRecords::default();
        live.insert(batch_key(1, 0), 1_000);
        live.insert(batch_key(1, 1), 5_000);
        live.insert(batch_key(2, 2), 3_000);
        assert!(live.expire(0, 100).is_empty(), "nothing folded yet");
        assert!(live.expire(5_000, 4_000).is_empty(), "1 000 is the edge");
        assert_eq!(live.expire(4_500, 2_000), vec![batch_key(1, 0)]);
        assert_eq!(live.expire(6_000, 2_000), vec![batch_key(2, 2)]);
        assert_eq!(live.len(), 1);
        assert_eq!(live.expire(i64::MAX, i64::MAX), Vec::<String>::new());
        assert_eq!(live.expire(20_000, 0), vec![batch_key(1, 1)]);
        assert!(live.is_empty());
    }

    /// Putting a batch record puts its keys; retiring it deletes them, so the
    /// store holds what a restore from the compacted changelog gives.
    #[test]
    fn a_batch_record_brings_and_takes_its_keys() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicI64;

        use crate::db::StoreMemory;
        use crate::records::idempotency_key;

        let dir = tempfile::tempdir().expect("tempdir");
        let db = TaskDb::open(
            dir.path(),
            &StoreMemory::new(8 << 20),
            i64::MAX,
            Arc::new(AtomicI64::new(0)),
            false,
        )
        .expect("open");
        let (a, b) = (
            idempotency_key("acme", "shopify", "1"),
            idempotency_key("acme", "stripe", "evt_2"),
        );
        let record = batch_key(1, 0);
        let mut batch = WriteBatch::default();
        let value = encode_batch(&[(a.clone(), 10), (b.clone(), 20)]);
        stage_record(&db, &mut batch, &record, Some(&value)).expect("stage");
        db.write(batch).expect("write");
        assert_eq!(db.get(&a).expect("get"), Some(idempotency_value(10)));
        assert_eq!(db.get(&b).expect("get"), Some(idempotency_value(20)));
        assert!(db.get(&record).expect("get").is_some());
        let loaded = BatchRecords::load(&db).expect("load");
        assert_eq!(loaded.len(), 1);

        let mut batch = WriteBatch::default();
        stage_record(&db, &mut batch, &record, None).expect("stage");
        db.write(batch).expect("write");
        for k in [&a, &b, &record] {
            assert_eq!(db.get(k).expect("get"), None, "{k}");
        }
        // A damaged record is refused, not half applied.
        let mut batch = WriteBatch::default();
        assert!(stage_record(&db, &mut batch, &record, Some(b"short")).is_err());
    }
}
