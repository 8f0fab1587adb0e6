//! One task's RocksDB: a column family per kind of state (see [`Family`]),
//! written only through whole write batches.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, IteratorMode, Options, WriteBatch,
    WriteOptions,
};
use serde::{Deserialize, Serialize};
use storefold_core::engine::{Source, StateKey, StateValue};

use crate::records::{Family, OutboxEntry, decode_value, family_of, idempotency_stamp};

/// What a task remembers about itself besides its state records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Kafka cluster id the state was built from.
    pub cluster_id: Option<String>,
    /// Partition counts of the raw topics when the state was built.
    pub raw_partitions: BTreeMap<String, i32>,
    /// Highest epoch this task has used or seen.
    pub epoch: i64,
    /// Sequence of the newest committed batch (-1: none).
    pub sequence: i64,
    /// Newest batch whose outbox was produced (-1: none).
    pub flushed: i64,
    /// Projection generation.
    pub generation: i64,
    /// Next offset to read in the changelog partition (where a restart resumes).
    pub changelog_next: i64,
    /// Next offset per raw topic.
    pub positions: BTreeMap<String, i64>,
}

impl Meta {
    pub fn fresh() -> Meta {
        Meta {
            sequence: -1,
            flushed: -1,
            generation: 1,
            ..Meta::default()
        }
    }
}

const META_KEY: &[u8] = b"meta";

/// Errors of the local store.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("RocksDB at {path}: {source}")]
    Rocks {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("RocksDB at {path}: unreadable value under {key:?}: {detail}")]
    Corrupt {
        path: PathBuf,
        key: String,
        detail: String,
    },
}

/// A task's RocksDB.
pub struct TaskDb {
    db: rocksdb::DB,
    path: PathBuf,
    sync: bool,
}

impl std::fmt::Debug for TaskDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskDb").field("path", &self.path).finish()
    }
}

impl TaskDb {
    /// Opens (creating when missing) the store at `path`. Idempotency keys
    /// older than `retention_ms` before `watermark` (the newest receive time the
    /// task has folded) are dropped by compaction.
    pub fn open(
        path: &Path,
        retention_ms: i64,
        watermark: Arc<AtomicI64>,
        sync: bool,
    ) -> Result<TaskDb, DbError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        // A process runs one store per task: keep each one's footprint small.
        // RocksDB preallocates each WAL file at 1.1× the largest write buffer
        // (~70 MB with the 64 MB default), so the buffers are small; memtables
        // are bounded for the whole store; the info log is short.
        opts.set_db_write_buffer_size(32 << 20);
        // The default column family holds nothing, but its write buffer size
        // (64 MiB by default) sizes the WAL preallocation of the whole store.
        opts.set_write_buffer_size(4 << 20);
        opts.set_max_total_wal_size(64 << 20);
        opts.set_keep_log_file_num(2);
        // The manifest is preallocated at 4 MiB by default: a lot on disk for
        // hundreds of small stores, and it grows by itself when needed.
        opts.set_manifest_preallocation_size(256 << 10);
        opts.set_max_log_file_size(1 << 20);
        // No fallocate: RocksDB would reserve tens of MB of WAL per store up
        // front, which hundreds of tasks on one disk cannot afford.
        let opts = opts
            .get_options_from_string("allow_fallocate=false")
            .map_err(|source| DbError::Rocks {
                path: path.to_path_buf(),
                source,
            })?;
        let cfs = Family::ALL.iter().map(|f| {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_write_buffer_size(8 << 20);
            if *f == Family::Idempotency {
                let watermark = watermark.clone();
                o.set_compaction_filter(
                    "storefold-idempotency-retention",
                    move |_, _, v: &[u8]| {
                        let newest = watermark.load(Ordering::Relaxed);
                        match idempotency_stamp(v) {
                            Some(at) if newest > 0 && at < newest.saturating_sub(retention_ms) => {
                                Decision::Remove
                            }
                            _ => Decision::Keep,
                        }
                    },
                );
            }
            ColumnFamilyDescriptor::new(f.name(), o)
        });
        let db = rocksdb::DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| {
            DbError::Rocks {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(TaskDb {
            db,
            path: path.to_path_buf(),
            sync,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rocks(&self, source: rocksdb::Error) -> DbError {
        DbError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn cf(&self, f: Family) -> &ColumnFamily {
        // Every family is created at open.
        self.db
            .cf_handle(f.name())
            .unwrap_or_else(|| unreachable!("column family {} is opened with the db", f.name()))
    }

    /// The raw value of a state key.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DbError> {
        let Some(f) = family_of(key) else {
            return Ok(None);
        };
        self.db
            .get_cf(self.cf(f), key.as_bytes())
            .map_err(|e| self.rocks(e))
    }

    /// A decoded state value.
    pub fn value(&self, key: &StateKey) -> Result<Option<StateValue>, DbError> {
        let k = key.encode();
        match self.get(&k)? {
            None => Ok(None),
            Some(b) => decode_value(&b).map(Some).map_err(|e| DbError::Corrupt {
                path: self.path.clone(),
                key: k,
                detail: e.to_string(),
            }),
        }
    }

    pub fn meta(&self) -> Result<Option<Meta>, DbError> {
        match self
            .db
            .get_cf(self.cf(Family::Meta), META_KEY)
            .map_err(|e| self.rocks(e))?
        {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| DbError::Corrupt {
                    path: self.path.clone(),
                    key: "meta".into(),
                    detail: e.to_string(),
                }),
        }
    }

    /// Adds a put or delete of a state key to `batch`. Keys of no family are ignored.
    pub fn stage(&self, batch: &mut WriteBatch, key: &str, value: Option<&[u8]>) {
        let Some(f) = family_of(key) else {
            return;
        };
        match value {
            Some(v) => batch.put_cf(self.cf(f), key.as_bytes(), v),
            None => batch.delete_cf(self.cf(f), key.as_bytes()),
        }
    }

    pub fn stage_meta(&self, batch: &mut WriteBatch, meta: &Meta) {
        batch.put_cf(
            self.cf(Family::Meta),
            META_KEY,
            serde_json::to_vec(meta).unwrap_or_default(),
        );
    }

    /// Writes a batch atomically.
    pub fn write(&self, batch: WriteBatch) -> Result<(), DbError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        self.db.write_opt(batch, &wo).map_err(|e| self.rocks(e))
    }

    /// Deletes every state record, outbox entry and idempotency key (a replay's reset).
    pub fn stage_clear(&self, batch: &mut WriteBatch) -> Result<(), DbError> {
        for f in Family::ALL {
            if f == Family::Meta {
                continue;
            }
            for item in self.db.iterator_cf(self.cf(f), IteratorMode::Start) {
                let (k, _) = item.map_err(|e| self.rocks(e))?;
                batch.delete_cf(self.cf(f), k);
            }
        }
        Ok(())
    }

    /// The outbox, in batch order.
    pub fn outbox(&self) -> Result<Vec<(String, OutboxEntry)>, DbError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(Family::Outbox), IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let entry = OutboxEntry::decode(&v).ok_or_else(|| DbError::Corrupt {
                path: self.path.clone(),
                key: key.clone(),
                detail: "undecodable outbox entry".into(),
            })?;
            out.push((key, entry));
        }
        Ok(out)
    }

    /// Keys of one family (tests and tools).
    pub fn keys(&self, f: Family) -> Result<Vec<String>, DbError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(f), IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.rocks(e))?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// The entries of one family whose key starts with `prefix`, in key order.
    pub fn entries_with_prefix(
        &self,
        f: Family,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(f), mode) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every entry of one family (tests and tools).
    pub fn entries(&self, f: Family) -> Result<Vec<(String, Vec<u8>)>, DbError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(f), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.rocks(e))?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// RocksDB's estimate of the live data, all families.
    pub fn live_bytes(&self) -> u64 {
        Family::ALL
            .iter()
            .filter_map(|f| {
                self.db
                    .property_int_value_cf(self.cf(*f), "rocksdb.estimate-live-data-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}

/// The fold's view of a task's store. A value that cannot be read stops the
/// batch: it is remembered here and checked after every apply.
#[derive(Debug)]
pub struct DbSource<'a> {
    pub db: &'a TaskDb,
    pub error: RefCell<Option<DbError>>,
}

impl<'a> DbSource<'a> {
    pub fn new(db: &'a TaskDb) -> Self {
        Self {
            db,
            error: RefCell::new(None),
        }
    }

    pub fn take_error(&self) -> Option<DbError> {
        self.error.borrow_mut().take()
    }
}

impl Source for DbSource<'_> {
    fn load(&self, key: &StateKey) -> Option<StateValue> {
        match self.db.value(key) {
            Ok(v) => v,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{idempotency_key, idempotency_value};

    fn compact(db: &TaskDb, f: Family) {
        db.db
            .compact_range_cf(db.cf(f), None::<&[u8]>, None::<&[u8]>);
    }

    /// Idempotency keys live `retention_ms` of receive time behind the newest
    /// event the task folded (the watermark), not of wall-clock time; other
    /// families are never filtered.
    #[test]
    fn compaction_drops_idempotency_keys_older_than_the_retention_behind_the_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watermark = Arc::new(AtomicI64::new(0));
        let db = TaskDb::open(dir.path(), 1_000, watermark.clone(), false).expect("open");
        let old = idempotency_key("acme", "shopify", "old");
        let edge = idempotency_key("acme", "shopify", "edge");
        let new = idempotency_key("acme", "stripe", "new");
        let odd = idempotency_key("acme", "stripe", "short-value");
        let state = "acme/cust/c1";
        let mut batch = WriteBatch::default();
        db.stage(&mut batch, &old, Some(&idempotency_value(5_000)));
        db.stage(&mut batch, &edge, Some(&idempotency_value(9_000)));
        db.stage(&mut batch, &new, Some(&idempotency_value(10_000)));
        db.stage(&mut batch, &odd, Some(b"x"));
        db.stage(&mut batch, state, Some(&idempotency_value(1)));
        db.write(batch).expect("write");
        let present = |k: &str| db.get(k).expect("get").is_some();

        // Nothing folded yet (watermark 0): nothing is old.
        compact(&db, Family::Idempotency);
        assert!(present(&old) && present(&edge) && present(&new) && present(&odd));

        // Newest event received at 10 000: keys received before 9 000 go.
        watermark.store(10_000, Ordering::Relaxed);
        compact(&db, Family::Idempotency);
        compact(&db, Family::Aggregates);
        assert!(!present(&old), "received 5 000, older than 10 000 - 1 000");
        assert!(present(&edge), "received exactly at the retention's edge");
        assert!(present(&new));
        assert!(
            present(&odd),
            "a value without a stamp is kept, not guessed"
        );
        assert!(present(state), "state keys are never filtered");

        // The retention follows the events, not the clock: later events move it.
        watermark.store(10_500, Ordering::Relaxed);
        compact(&db, Family::Idempotency);
        assert!(!present(&edge));
        assert!(present(&new));
    }
}
