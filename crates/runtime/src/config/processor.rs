//! `[processor]`: state, batching, retention and the projections' limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The processor: state, batching and its HTTP port (query API and metrics).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Address of the query API and /healthz, /readyz, /metrics.
    pub listen: SocketAddr,
    /// Where each task keeps its RocksDB (`task-<partition>`).
    pub state_dir: PathBuf,
    /// Consumer group of the processor instances.
    pub group_id: String,
    /// A batch is committed after this long at the latest.
    pub commit_interval_ms: u64,
    /// A batch is committed once it holds this many raw events.
    pub batch_size: usize,
    /// How long a provider event id is remembered to recognise retries (hours,
    /// measured in the events' receive time, not the processor's clock).
    pub idempotency_retention_hours: u64,
    /// State records the instance keeps in memory between batches (a read
    /// cache in front of RocksDB), shared by its tasks: each task keeps its
    /// share, this divided by the tasks the instance owns, but never fewer
    /// than 100.
    pub cache_records: usize,
    /// Memory (MiB) RocksDB may use for all the instance's task stores
    /// together: one block cache of this size, shared by every store, within
    /// which the memtables of every store may take up to half (past it the
    /// processor flushes the largest). Does not depend on how many tasks the
    /// instance owns; each store's fixed cost (~0.7 MiB) comes on top.
    pub memory_budget_mb: usize,
    /// fsync RocksDB's write-ahead log on every commit (survives power loss, not
    /// only process crashes).
    pub sync_writes: bool,
    /// How long a commit step waits for Kafka before the batch is abandoned and
    /// the task restarts from its committed state.
    pub produce_timeout_ms: u64,
    /// How long an event naming an order that does not exist waits for it
    /// before it goes to `dlq.processor` with reason `unresolved_order`: hours
    /// of receive time, on the raw topics the order can come from (not the
    /// processor's clock).
    pub park_timeout_hours: u64,
    /// Newest touches kept per identity (its first touch is kept besides;
    /// every touch is counted).
    pub max_touches: usize,
    /// Distinct utm_source, utm_medium and utm_campaign values counted on
    /// their own per customer; the rest are counted as `(other)`.
    pub max_touch_values: usize,
    /// Newest tickets kept per identity.
    pub max_tickets: usize,
    /// Newest orders a customer projection lists (every order is counted in
    /// its figures).
    pub max_listed_orders: usize,
    /// Newest checkpoints kept per shipment and parcel (the first is kept
    /// besides).
    pub max_checkpoints: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            state_dir: PathBuf::from("./.storefold/state"),
            group_id: "storefold-processor".into(),
            commit_interval_ms: 500,
            batch_size: 2_000,
            idempotency_retention_hours: 24 * 30,
            cache_records: 200_000,
            memory_budget_mb: 1024,
            sync_writes: false,
            produce_timeout_ms: 30_000,
            park_timeout_hours: 72,
            max_touches: 100,
            max_touch_values: 50,
            max_tickets: 200,
            max_listed_orders: 200,
            max_checkpoints: 100,
        }
    }
}

impl ProcessorConfig {
    /// `memory_budget_mb` in bytes.
    pub fn memory_budget_bytes(&self) -> usize {
        self.memory_budget_mb.saturating_mul(1 << 20)
    }
}
