//! One task's RocksDB: a column family per kind of state (see [`Family`]),
//! written only through whole write batches.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    IteratorMode, Options, WriteBatch, WriteBufferManager, WriteOptions,
};
use serde::{Deserialize, Serialize};
use storefold_core::engine::{Source, StateKey, StateValue};

use crate::records::{Family, decode_value, family_of, idempotency_stamp};

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
    /// Outbox keys produced and deleted here whose changelog tombstones the
    /// next batch writes: kept so that a restart still writes them (else the
    /// changelog would keep a run's last outputs, personal data included, for
    /// ever: compaction keeps a key's newest record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untombstoned: Vec<String>,
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

/// The RocksDB memory every task store of one processor instance shares, so
/// that it follows the configured budget (`processor.memory_budget_mb`), not
/// the number of tasks the instance owns.
///
/// The split: one LRU block cache whose capacity is the whole budget holds the
/// data blocks, index blocks and bloom filters of every store; one write
/// buffer manager limits the memtables of every store to half the budget and
/// charges them to that same cache (RocksDB reserves their size in it), so the
/// blocks get the rest and both together stay near the budget. The cache is
/// not strict: pinned blocks (the newest files' index and filter blocks) can
/// push it a little over, and a memtable flush only starts once the memtables
/// reach about 7/8 of their half, so writes that outrun the flushes can
/// briefly exceed it too; the write buffer manager only flushes the store
/// that writes, so the processor bounds the rest ([`StoreMemory::bound`]).
/// It also carries the one other limit every store follows: how many table
/// files each keeps open ([`store_open_files`]).
#[derive(Clone)]
pub struct StoreMemory {
    budget: usize,
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// Table files each store keeps open at most (-1: no limit); see
    /// [`store_open_files`].
    open_files: i32,
}

impl StoreMemory {
    /// The block cache and write buffer manager for a budget of
    /// `budget_bytes` (at least 1 MiB is used).
    pub fn new(budget_bytes: usize) -> StoreMemory {
        let budget = budget_bytes.max(1 << 20);
        let cache = Cache::new_lru_cache(budget);
        // No stall: a stalled writer waits for memory that only other stores'
        // flushes free, and an idle store never flushes.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            budget / 2,
            false,
            cache.clone(),
        );
        StoreMemory {
            budget,
            cache,
            write_buffers,
            open_files: -1,
        }
    }

    /// The same, each store keeping at most `files` table files open.
    pub fn with_open_files(mut self, files: i32) -> StoreMemory {
        self.open_files = files;
        self
    }

    /// The whole budget (bytes): the block cache's capacity.
    pub fn budget_bytes(&self) -> usize {
        self.budget
    }

    /// The most the memtables of all stores together may take (bytes).
    pub fn memtable_limit_bytes(&self) -> usize {
        self.write_buffers.get_buffer_size()
    }

    /// What the memtables of all stores hold now (bytes of arena allocated).
    pub fn memtable_bytes(&self) -> usize {
        self.write_buffers.get_usage()
    }

    /// Keeps the memtables of all `stores` near their share of the budget.
    /// RocksDB's write buffer manager only flushes the store that is writing
    /// when the memtables are over their limit, one family at a time: with
    /// hundreds of stores the memtables ran to three times their share
    /// (procbench, 768 partitions: 1.6 GiB against 512 MiB). Once over it,
    /// this asks the stores with the largest active memtables to flush
    /// (without waiting) until the total would come down to half the share.
    /// Returns how many were asked.
    pub fn bound<'a>(&self, stores: impl Iterator<Item = &'a TaskDb>) -> u64 {
        flush_largest(
            stores,
            self.memtable_bytes() as u64,
            self.memtable_limit_bytes() as u64,
        )
    }

    /// What the shared cache holds now, memtable reservations included (bytes).
    pub fn cache_bytes(&self) -> usize {
        self.cache.get_usage()
    }

    /// What the shared cache holds besides the memtables' reservations (bytes):
    /// data, index and filter blocks. The reservation is made in steps, so
    /// this is an estimate.
    pub fn block_cache_bytes(&self) -> usize {
        self.cache_bytes().saturating_sub(self.memtable_bytes())
    }
}

impl std::fmt::Debug for StoreMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMemory")
            .field("budget", &self.budget)
            .field("cache", &self.cache_bytes())
            .field("memtables", &self.memtable_bytes())
            .finish()
    }
}

/// RocksDB's property: bytes in a family's active (mutable) memtable.
const ACTIVE_MEMTABLE: &str = "rocksdb.cur-size-active-mem-table";

/// A family's memtable below this is not flushed to bound the memory (see
/// [`TaskDb::request_flush`]).
const SMALL_MEMTABLE_BYTES: u64 = 64 << 10;

/// Fewest table files RocksDB lets a store keep open (it raises a smaller
/// `max_open_files` to this).
const MIN_STORE_FILES: u64 = 20;

/// Files a store holds open besides its table files: its WAL, info log and
/// manifest, and one being written by a flush or compaction.
const STORE_FIXED_FILES: u64 = 4;

/// Files left for the rest of the process: Kafka connections, listeners,
/// the consumers of tasks being restored.
const PROCESS_FILES: u64 = 1024;

/// How many table files each of `stores` stores may keep open under the
/// process's open-file limit `limit` (None: unlimited), so that together they
/// stay within it. With RocksDB's default every table file of every store
/// stays open: at 768 partitions, a 256 MiB budget (so more, smaller files)
/// failed the run with "Too many open files" under a limit of 20 000. An
/// error when even the fewest RocksDB allows would not fit.
pub fn store_open_files(limit: Option<u64>, stores: u64) -> Result<i32, String> {
    let Some(limit) = limit else {
        return Ok(-1);
    };
    let stores = stores.max(1);
    let per_store = limit.saturating_sub(PROCESS_FILES) / stores;
    if per_store < MIN_STORE_FILES + STORE_FIXED_FILES {
        let needed = PROCESS_FILES + stores * (MIN_STORE_FILES + STORE_FIXED_FILES);
        return Err(format!(
            "the process may open {limit} files (ulimit -n) but {stores} task stores (one per \
             partition) need at least {needed}: raise the limit (ulimit -n, LimitNOFILE= in \
             systemd, the container runtime's nofile) or use fewer partitions per instance"
        ));
    }
    Ok(i32::try_from(per_store - STORE_FIXED_FILES).unwrap_or(i32::MAX))
}

/// The soft limit on open files of this process, from `/proc/self/limits`
/// (None: unlimited or unknown).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// With the memtables of all `stores` holding `usage` bytes, over `limit`:
/// asks the stores with the largest active memtables to flush until what is
/// flushing brings `usage` down to half of `limit` (see [`StoreMemory::bound`]).
fn flush_largest<'a>(stores: impl Iterator<Item = &'a TaskDb>, usage: u64, limit: u64) -> u64 {
    if usage <= limit {
        return 0;
    }
    let mut stores: Vec<(u64, u64, &TaskDb)> = stores
        .map(|db| {
            let (active, immutable) = db.memtable_bytes();
            (active, immutable, db)
        })
        .collect();
    // Immutable memtables are already on their way out.
    let flushing: u64 = stores.iter().map(|(_, i, _)| i).sum();
    stores.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    let mut wanted = usage.saturating_sub(limit / 2).saturating_sub(flushing);
    let mut asked = 0;
    for (active, _, db) in stores {
        if wanted == 0 || active == 0 {
            break;
        }
        match db.request_flush(SMALL_MEMTABLE_BYTES) {
            Ok(0) => {}
            Ok(bytes) => {
                wanted = wanted.saturating_sub(bytes);
                asked += 1;
            }
            Err(e) => tracing::warn!(error = %e, "memtable flush request failed"),
        }
    }
    tracing::debug!(
        usage,
        limit,
        flushing,
        asked,
        "memtables over their share: flushes requested"
    );
    asked
}

/// Families whose lookups are mostly point reads of keys that may be missing
/// (a new event id, a new identity, an order seen for the first time): their
/// files carry bloom filters.
const FILTERED: [Family; 3] = [Family::Idempotency, Family::Indexes, Family::Aggregates];

/// Bits per key of the bloom filters (about 1% false positives).
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Size of the memtables' arena blocks. A memtable that holds anything takes
/// at least one block, and hundreds of stores × the families each batch
/// writes keep one resident between flushes: with RocksDB's default (up to
/// 1 MiB) that floor alone would exceed the budget (768 stores × 5 families
/// × 1 MiB), at 16 KiB it is 60 MiB. Entries are small, so a smaller block
/// only means more, still rare, allocations.
const ARENA_BLOCK_BYTES: usize = 16 << 10;

/// Table options of every family: blocks, index and filter blocks in the
/// shared cache, the newest files' index and filter blocks pinned there.
fn table_options(memory: &StoreMemory, bloom: bool) -> BlockBasedOptions {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(&memory.cache);
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    if bloom {
        t.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        t.set_optimize_filters_for_memory(true);
    }
    t
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
    /// Opens (creating when missing) the store at `path`, its block cache and
    /// memtables counted in `memory` (shared by every store of the instance).
    /// Idempotency keys older than `retention_ms` before `watermark` (the
    /// newest receive time the task has folded) are dropped by compaction;
    /// the per-batch records (keys starting with `~`) are not: their owner
    /// expires them.
    pub fn open(
        path: &Path,
        memory: &StoreMemory,
        retention_ms: i64,
        watermark: Arc<AtomicI64>,
        sync: bool,
    ) -> Result<TaskDb, DbError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_max_background_jobs(2);
        // A process runs one store per task: keep each one's disk footprint
        // small. RocksDB preallocates each WAL file at 1.1× the largest write
        // buffer (~70 MB with the 64 MB default), so the buffers are small;
        // the info log is short.
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
        // Every store keeps a write buffer for its WAL and manifest (up to
        // 1 MiB each by default) and a table cache of 64 shards: 768 stores
        // opened and written held ~280 MiB more with the defaults (measured
        // RSS, 8 batches of 200 records of 1.6 KB per store). Opened empty, 768 stores
        // still take ~530 MiB, the fixed cost of a store per task.
        opts.set_writable_file_max_buffer_size(64 << 10);
        opts.set_max_open_files(memory.open_files);
        opts.set_table_cache_num_shard_bits(2);
        // No fallocate: RocksDB would reserve tens of MB of WAL per store up
        // front, which hundreds of tasks on one disk cannot afford.
        let mut opts = opts
            .get_options_from_string("allow_fallocate=false")
            .map_err(|source| DbError::Rocks {
                path: path.to_path_buf(),
                source,
            })?;
        // The memtables of every store count against the instance's shared
        // write buffer manager (which then ignores db_write_buffer_size); the
        // block cache is shared too (see StoreMemory): even the default
        // family, which holds nothing, would otherwise get a cache of its own.
        // Set on the options actually used, so that they keep both alive.
        opts.set_write_buffer_manager(&memory.write_buffers);
        opts.set_block_based_table_factory(&table_options(memory, false));
        opts.set_arena_block_size(ARENA_BLOCK_BYTES);
        let cfs = Family::ALL.iter().map(|f| {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_write_buffer_size(8 << 20);
            o.set_arena_block_size(ARENA_BLOCK_BYTES);
            o.set_block_based_table_factory(&table_options(memory, FILTERED.contains(f)));
            if *f == Family::Idempotency {
                let watermark = watermark.clone();
                o.set_compaction_filter(
                    "storefold-idempotency-retention",
                    move |_, k: &[u8], v: &[u8]| {
                        idempotency_decision(k, v, watermark.load(Ordering::Relaxed), retention_ms)
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

    /// What this store's memtables hold, all families: (the active
    /// memtables, the immutable ones not flushed yet), in bytes.
    pub fn memtable_bytes(&self) -> (u64, u64) {
        let (active, all) = Family::ALL.iter().fold((0, 0), |(active, all), f| {
            (
                active + self.property(*f, ACTIVE_MEMTABLE),
                all + self.property(*f, "rocksdb.cur-size-all-mem-tables"),
            )
        });
        (active, all.saturating_sub(active))
    }

    /// Asks RocksDB to flush the active memtable of every family holding at
    /// least `min_bytes`, without waiting for the flush (a family with less
    /// would only add a tiny file for compaction to merge). Returns the
    /// bytes those memtables hold.
    pub fn request_flush(&self, min_bytes: u64) -> Result<u64, DbError> {
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(false);
        let mut asked = 0;
        for f in Family::ALL {
            let active = self.property(f, ACTIVE_MEMTABLE);
            if active >= min_bytes.max(1) {
                self.db
                    .flush_cf_opt(self.cf(f), &opts)
                    .map_err(|e| self.rocks(e))?;
                asked += active;
            }
        }
        Ok(asked)
    }

    /// RocksDB's estimate of the live data, all families.
    pub fn live_bytes(&self) -> u64 {
        Family::ALL
            .iter()
            .map(|f| self.property(*f, "rocksdb.estimate-live-data-size"))
            .sum()
    }

    /// An integer property of family `f` (0 when RocksDB has none).
    fn property(&self, f: Family, name: &str) -> u64 {
        self.db
            .property_int_value_cf(self.cf(f), name)
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}

/// The idempotency family's compaction rule: a per-event key whose receive
/// time (the value's 8-byte stamp) is more than `retention_ms` behind `newest`
/// goes; a key starting with `~` (a per-batch record, expired by its owner), a
/// value without a stamp and anything before the first event folded stay.
fn idempotency_decision(key: &[u8], value: &[u8], newest: i64, retention_ms: i64) -> Decision {
    if key.first() == Some(&b'~') {
        return Decision::Keep;
    }
    match idempotency_stamp(value) {
        Some(at) if newest > 0 && at < newest.saturating_sub(retention_ms) => Decision::Remove,
        _ => Decision::Keep,
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

    #[test]
    fn the_stores_open_files_fit_the_process_limit_or_the_start_is_refused() {
        assert_eq!(store_open_files(None, 768), Ok(-1), "unlimited");
        // 20 000 files for 768 stores: 24 each, 4 of them not table files.
        assert_eq!(store_open_files(Some(20_000), 768), Ok(20));
        assert_eq!(store_open_files(Some(1_048_576), 768), Ok(1_360));
        assert_eq!(store_open_files(Some(65_536), 4), Ok(16_124));
        let refused = store_open_files(Some(4_096), 768).expect_err("too few");
        assert!(
            refused.contains("4096") && refused.contains("19456") && refused.contains("ulimit -n"),
            "{refused}"
        );
        let here = open_file_limit();
        assert!(here.is_none_or(|n| n > 0), "{here:?}");
    }

    /// Over their share, the memtables of the largest stores are flushed
    /// until half the share is left; quiet stores with little are left alone.
    #[test]
    fn memtables_over_their_share_are_flushed_from_the_largest_store_down() {
        let dirs: Vec<_> = (0..6)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        // A budget large enough that RocksDB flushes nothing by itself.
        let memory = StoreMemory::new(256 << 20);
        let dbs: Vec<TaskDb> = dirs
            .iter()
            .map(|d| TaskDb::open(d.path(), &memory, 1_000, Arc::new(AtomicI64::new(0)), false))
            .collect::<Result<_, _>>()
            .expect("open");
        // Store i holds about (i + 1) × 256 KiB of aggregates.
        for (i, db) in dbs.iter().enumerate() {
            let mut batch = WriteBatch::default();
            for n in 0..(i + 1) * 256 {
                db.stage(&mut batch, &format!("acme/cust/c{n}"), Some(&[b'x'; 1000]));
            }
            db.write(batch).expect("write");
        }
        let sizes: Vec<u64> = dbs.iter().map(|db| db.memtable_bytes().0).collect();
        assert!(
            sizes.windows(2).all(|w| w[0] < w[1]) && sizes[0] > 200 << 10,
            "each store holds its writes in its active memtables: {sizes:?}"
        );
        let usage: u64 = sizes.iter().sum();
        assert_eq!(
            flush_largest(dbs.iter(), usage, usage),
            0,
            "within the share: nothing to do"
        );
        // A share of 4 MiB: 5.25 MiB held must come down to 2 MiB, which the
        // three largest stores (1.5 + 1.25 + 1 MiB) do.
        assert_eq!(flush_largest(dbs.iter(), usage, 4 << 20), 3);
        // An empty memtable still holds its first arena block or so.
        let flushed = |db: &TaskDb| {
            let (active, immutable) = db.memtable_bytes();
            active < 64 << 10 && immutable == 0
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !dbs[3..].iter().all(flushed) {
            assert!(
                std::time::Instant::now() < deadline,
                "flushes did not finish"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for (i, db) in dbs.iter().enumerate().take(3) {
            assert_eq!(db.memtable_bytes().0, sizes[i], "store {i} was not asked");
        }
        for db in &dbs[3..] {
            assert!(
                db.get("acme/cust/c0").expect("get").is_some(),
                "flushed, not lost"
            );
        }
    }

    /// Idempotency keys live `retention_ms` of receive time behind the newest
    /// event the task folded (the watermark), not of wall-clock time; other
    /// families are never filtered.
    #[test]
    fn compaction_drops_idempotency_keys_older_than_the_retention_behind_the_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watermark = Arc::new(AtomicI64::new(0));
        let memory = StoreMemory::new(16 << 20);
        let db = TaskDb::open(dir.path(), &memory, 1_000, watermark.clone(), false).expect("open");
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
        // A per-batch record (see crate::idem): stamped like a key, but its
        // owner expires it, never the filter.
        let batch_record = "~idem/0000000000000001/0000000000000007";
        batch.put_cf(
            db.cf(Family::Idempotency),
            batch_record,
            [idempotency_value(5_000), b"pairs".to_vec()].concat(),
        );
        db.write(batch).expect("write");
        let present = |k: &str| db.get(k).expect("get").is_some();
        let batch_record_present = || {
            db.db
                .get_cf(db.cf(Family::Idempotency), batch_record)
                .expect("get")
                .is_some()
        };

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
        assert!(
            batch_record_present(),
            "a batch record stamped 5 000 is kept: its owner expires it"
        );

        // The retention follows the events, not the clock: later events move it.
        watermark.store(10_500, Ordering::Relaxed);
        compact(&db, Family::Idempotency);
        assert!(!present(&edge));
        assert!(present(&new));
        assert!(batch_record_present());
    }

    #[test]
    fn the_retention_rule_keeps_batch_records_and_unstamped_values() {
        let stamp = |at: i64| idempotency_value(at);
        let decide = |k: &[u8], v: &[u8]| idempotency_decision(k, v, 10_000, 1_000);
        assert!(matches!(
            decide(b"t/idem/p:old", &stamp(8_999)),
            Decision::Remove
        ));
        assert!(matches!(
            decide(b"t/idem/p:edge", &stamp(9_000)),
            Decision::Keep
        ));
        assert!(matches!(
            decide(b"~idem/0000000000000001/0000000000000002", &stamp(1)),
            Decision::Keep
        ));
        assert!(matches!(decide(b"~", &stamp(1)), Decision::Keep));
        assert!(matches!(decide(b"t/idem/p:short", b"x"), Decision::Keep));
        // Before the first event (watermark 0) nothing is old.
        assert!(matches!(
            idempotency_decision(b"t/idem/p:old", &stamp(1), 0, 1_000),
            Decision::Keep
        ));
    }

    /// The workload of the memory tests: `stores` stores written round by
    /// round, each round one batch per store (aggregates, index entries,
    /// idempotency keys, outbox entries, meta), as a task's commit writes.
    struct Workload {
        stores: usize,
        rounds: usize,
        keys: usize,
    }

    impl Workload {
        /// One batch's records for `store` in `round`: (family, key, value).
        fn batch(&self, store: usize, round: usize) -> Vec<(Family, String, Vec<u8>)> {
            let mut out = Vec::new();
            for k in 0..self.keys {
                let n = round * self.keys + k;
                // Values that do not compress to nothing: a simple LCG stream.
                let mut x = (store * 1_000_003 + n) as u64;
                let mut value = vec![0u8; 300];
                for b in value.iter_mut() {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    *b = (x >> 56) as u8;
                }
                out.push((
                    Family::Aggregates,
                    format!("t{store}/order/o{:06}", n % 2_000),
                    value,
                ));
                out.push((
                    Family::Indexes,
                    format!("t{store}/idx/email:{n:08}"),
                    format!("cust-{n}").into_bytes(),
                ));
                out.push((
                    Family::Idempotency,
                    idempotency_key(&format!("t{store}"), "shopify", &format!("evt-{n:08}")),
                    idempotency_value(n as i64),
                ));
            }
            out.push((
                Family::Outbox,
                crate::records::outbox_key(round as i64, 0),
                vec![7u8; 200],
            ));
            out
        }

        /// Writes round `round` to every store; returns the bytes written.
        fn write_round(&self, dbs: &[TaskDb], round: usize) -> usize {
            let mut written = 0;
            for (i, db) in dbs.iter().enumerate() {
                let mut batch = WriteBatch::default();
                for (f, k, v) in self.batch(i, round) {
                    written += k.len() + v.len();
                    batch.put_cf(db.cf(f), k.as_bytes(), &v);
                }
                let meta = Meta {
                    sequence: round as i64,
                    ..Meta::fresh()
                };
                db.stage_meta(&mut batch, &meta);
                db.write(batch).expect("write");
            }
            written
        }
    }

    /// An idempotency key of store `store` that was never written, inside the
    /// key range of its files (a key outside every file's range is answered
    /// without their filters).
    fn missing_event(store: usize, n: usize) -> String {
        idempotency_key(
            &format!("t{store}"),
            "shopify",
            &format!("evt-{:08}-retry", n * 37),
        )
    }

    /// Waits until no flush or compaction of `db` is pending or running.
    fn settle(db: &TaskDb) {
        db.db
            .wait_for_compact(&rocksdb::WaitForCompactOptions::default())
            .expect("wait for background work");
    }

    fn property(db: &TaskDb, f: Family, name: &str) -> u64 {
        db.db
            .property_int_value_cf(db.cf(f), name)
            .expect("property")
            .unwrap_or_else(|| panic!("{name} of {}", f.name()))
    }

    /// Bloom filter exclusions counted by this thread's perf context while
    /// `f` runs.
    fn bloom_exclusions(f: impl FnOnce()) -> u64 {
        use rocksdb::perf::{PerfContext, PerfMetric, PerfStatsLevel, set_perf_stats};
        set_perf_stats(PerfStatsLevel::EnableCount);
        let mut ctx = PerfContext::default();
        ctx.reset();
        f();
        let n = ctx.metric(PerfMetric::BloomSstMissCount);
        set_perf_stats(PerfStatsLevel::Disable);
        n
    }

    const MIB: usize = 1 << 20;

    /// 64 stores share one 16 MiB budget and are written well past it: the
    /// memtables RocksDB counts stay within their half of the budget (plus
    /// RocksDB's slack: a flush starts at 7/8 of the limit, and the store
    /// written last may still hold its own small memtables), every store
    /// reports the one shared cache, whose usage stays within its capacity,
    /// and lookups of missing keys are answered by bloom filters.
    #[test]
    fn many_stores_share_one_memory_budget() {
        let budget = 16 * MIB;
        let memory = StoreMemory::new(budget);
        assert_eq!(memory.budget_bytes(), budget);
        assert_eq!(memory.memtable_limit_bytes(), budget / 2);
        let dir = tempfile::tempdir().expect("tempdir");
        let load = Workload {
            stores: 64,
            rounds: 60,
            keys: 40,
        };
        let dbs: Vec<TaskDb> = (0..load.stores)
            .map(|i| {
                let path = dir.path().join(format!("task-{i}"));
                TaskDb::open(&path, &memory, i64::MAX, Arc::new(AtomicI64::new(0)), false)
                    .expect("open")
            })
            .collect();
        let slack = ARENA_BLOCK_BYTES * Family::ALL.len() + MIB;
        let mut written = 0;
        let mut highest = 0;
        for round in 0..load.rounds {
            written += load.write_round(&dbs, round);
            dbs.iter().for_each(settle);
            let used = memory.memtable_bytes();
            highest = highest.max(used);
            assert!(
                used <= memory.memtable_limit_bytes() + slack,
                "round {round}: memtables hold {used} bytes, limit {} (+{slack})",
                memory.memtable_limit_bytes()
            );
        }
        assert!(
            written > 3 * budget,
            "the stores were written {written} bytes, well past the budget"
        );
        assert!(
            highest > memory.memtable_limit_bytes() / 2,
            "the memtables were filled ({highest} bytes at most): the bound was tested"
        );

        // Reads fill the cache: present keys, and missing idempotency keys.
        let mut excluded = 0;
        for (i, db) in dbs.iter().enumerate() {
            for n in 0..load.keys {
                let k = format!("t{i}/order/o{n:06}");
                assert!(db.get(&k).expect("get").is_some(), "{k}");
            }
            excluded += bloom_exclusions(|| {
                for n in 0..load.keys {
                    let k = missing_event(i, n);
                    assert!(db.get(&k).expect("get").is_none(), "{k}");
                }
            });
        }
        // Each lookup consults the filter of every file whose key range holds
        // the key; a false positive (about 1% at 10 bits a key) or a key
        // outside a file's range does not count.
        let lookups = (load.stores * load.keys) as u64;
        assert!(
            excluded >= lookups / 2,
            "bloom filters ruled out files for {excluded} of {lookups} missing idempotency keys"
        );
        // The outbox has no filter: its lookups open its files' blocks.
        let outbox_excluded = bloom_exclusions(|| {
            for db in &dbs {
                let k = crate::records::outbox_key(1_000_000, 0);
                assert!(db.get(&k).expect("get").is_none());
            }
        });
        assert_eq!(outbox_excluded, 0, "the outbox family has no bloom filter");

        // One cache: every family of every store reports its capacity and
        // the same usage.
        let usage = property(&dbs[0], Family::Aggregates, "rocksdb.block-cache-usage");
        for db in &dbs {
            for f in Family::ALL {
                assert_eq!(
                    property(db, f, "rocksdb.block-cache-capacity"),
                    budget as u64
                );
                assert_eq!(property(db, f, "rocksdb.block-cache-usage"), usage);
            }
        }
        assert_eq!(usage, memory.cache_bytes() as u64);
        assert!(
            memory.cache_bytes() <= budget,
            "cache usage {} within its capacity {budget}",
            memory.cache_bytes()
        );
        assert!(
            memory.block_cache_bytes() > 0,
            "blocks were read into the shared cache"
        );
        // Index and filter blocks live in the cache, not in the table readers.
        let readers: u64 = dbs
            .iter()
            .flat_map(|db| {
                Family::ALL
                    .iter()
                    .map(move |f| property(db, *f, "rocksdb.estimate-table-readers-mem"))
            })
            .sum();
        let memtables: u64 = dbs
            .iter()
            .flat_map(|db| {
                Family::ALL
                    .iter()
                    .map(move |f| property(db, *f, "rocksdb.size-all-mem-tables"))
            })
            .sum();
        eprintln!(
            "64 stores, budget {budget}: written {written} B; memtables now {} B ({memtables} B \
             by the stores' count; highest settled {highest} B, limit {}); cache {} B of which \
             blocks {} B; table readers {readers} B",
            memory.memtable_bytes(),
            memory.memtable_limit_bytes(),
            memory.cache_bytes(),
            memory.block_cache_bytes(),
        );
    }
}
