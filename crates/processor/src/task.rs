//! A task: partition p of every raw topic, its RocksDB, and the commit protocol
//! of ARCHITECTURE §5.
//!
//! The task is split by protocol phase: `shared` holds what every task of an
//! instance shares (producer, codec, configuration) and the produce and
//! list-offsets helpers; `start` restores the state from the changelog and
//! fences older owners; `fold` folds raw records into the open batch;
//! `dead_letter` builds the dead letters the fold gives up with; `outputs`
//! builds the batch's projections and triggers; `commit` writes the batch
//! (changelog, marker, local state, outbox).

mod commit;
mod dead_letter;
mod fold;
mod outputs;
mod shared;
mod start;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use storefold_core::engine::Engine;

use crate::db::{DbError, Meta, TaskDb};
use crate::idem::BatchRecords;
use crate::parked::{ParkedIndex, Progress};
use crate::records::OutboxEntry;

pub use shared::{Shared, Watermarks, watermarks};

/// An open batch may be committed once the input runs dry and it has been
/// open for this fraction (1/n) of the commit interval; see
/// [`Task::due_when_idle`].
const IDLE_COMMIT_DIVISOR: u32 = 5;

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The state does not belong to this log: refusing is the only safe answer.
    #[error("{0}")]
    WrongLog(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("changelog: {0}")]
    Changelog(String),
    /// The batch's commit panicked (a bug): the task restarts from its
    /// committed state, as after a crash.
    #[error("commit panicked: {0}")]
    Panicked(String),
}

impl TaskError {
    /// Errors that restarting the task cannot fix.
    pub fn is_fatal(&self) -> bool {
        matches!(self, TaskError::WrongLog(_) | TaskError::Db(_))
    }
}

/// A raw record handed to a task.
#[derive(Debug)]
pub struct Input<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// How a start went (logged, and asserted on by tests).
#[derive(Clone, Debug, Default)]
pub struct StartReport {
    pub restored_records: u64,
    pub applied: u64,
    pub zombies: u64,
    pub orphans: u64,
    pub from_offset: i64,
    pub empty_disk: bool,
}

/// One task. See the module docs.
pub struct Task {
    pub partition: i32,
    db: Arc<TaskDb>,
    shared: Arc<Shared>,
    epoch: i64,
    /// Sequence the next batch gets.
    next_seq: i64,
    generation: i64,
    /// Committed next offset per raw topic.
    positions: BTreeMap<String, i64>,
    /// Positions including the open batch.
    batch_positions: BTreeMap<String, i64>,
    meta: Meta,
    engine: Engine,
    watermark: Arc<AtomicI64>,
    batch_events: usize,
    batch_started: Option<Instant>,
    batch_idem: Vec<(String, i64)>,
    batch_idem_set: HashSet<String>,
    batch_dlq: Vec<OutboxEntry>,
    /// Provider of each event parked in the open batch (a release in the same
    /// batch never reaches the store, but is counted).
    batch_parked: HashMap<String, String>,
    /// Every parked event of the task's state and the open batch, by receive
    /// time and the raw topics its order can come from.
    parked: ParkedIndex,
    /// How far each raw topic has been read (in receive times).
    progress: Progress,
    /// Provider of each parked event the open batch gave up on (tenant, event id).
    batch_expired: HashMap<(String, String), String>,
    /// (provider, outcome) counts of the open batch, published at commit.
    batch_outcomes: BTreeMap<(String, &'static str), u64>,
    /// Keys to write again with their committed value in the next batch.
    repair: Vec<String>,
    /// Outbox keys produced and deleted locally, to tombstone in the changelog.
    flushed_outbox: Vec<String>,
    /// The idempotency batch records still within the retention.
    idem_batches: BatchRecords,
    /// The newest batch's outputs while their acknowledgements are awaited.
    outbox_in_flight: Option<commit::InFlight>,
    pub report: StartReport,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("partition", &self.partition)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

pub(super) fn task_label(p: i32) -> String {
    p.to_string()
}

impl Task {
    /// The task's RocksDB store, shared with the instance's readers (the query API).
    pub fn db(&self) -> &Arc<TaskDb> {
        &self.db
    }

    /// Committed next offsets per raw topic.
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    /// Events in the open batch.
    pub fn batch_events(&self) -> usize {
        self.batch_events
    }

    /// True when the open batch is due (full, or older than `interval`).
    pub fn due(&self, batch_size: usize, interval: Duration) -> bool {
        self.batch_events >= batch_size
            || (self.batch_events > 0
                && self.batch_started.is_some_and(|t| t.elapsed() >= interval))
            || (!self.repair.is_empty() && self.batch_started.is_none())
    }

    /// True when the open batch may be committed early because the input ran
    /// dry: it has been open for at least a fifth of the commit interval.
    /// Waiting out the rest of the interval would only delay its outputs (no
    /// record is waiting to join it), while the fifth keeps a trickle of
    /// records from costing a commit each.
    pub fn due_when_idle(&self, interval: Duration) -> bool {
        open_long_enough(
            self.batch_events,
            self.batch_started,
            Instant::now(),
            interval,
        )
    }

    /// The position a raw topic's next record must have; records below it were
    /// folded already (a redelivery after a seek) and are skipped.
    pub fn expects(&self, topic: &str, offset: i64) -> bool {
        self.batch_positions.get(topic).is_none_or(|n| offset >= *n)
    }

    /// Refreshes the per-task gauges.
    pub fn update_gauges(&self) {
        let label = task_label(self.partition);
        let m = &self.shared.metrics;
        m.live_bytes
            .with_label_values(&[&label])
            .set(self.db.live_bytes() as i64);
    }

    /// Clears the per-task gauges when the task goes away.
    pub fn retire(&self) {
        let label = task_label(self.partition);
        let m = &self.shared.metrics;
        for g in [
            &m.live_bytes,
            &m.outbox_depth,
            &m.lag,
            &m.restore_remaining,
            &m.parked_events,
        ] {
            let _ = g.remove_label_values(&[&label]);
        }
    }
}

/// The rule of [`Task::due_when_idle`] at time `now`.
fn open_long_enough(
    events: usize,
    started: Option<Instant>,
    now: Instant,
    interval: Duration,
) -> bool {
    events > 0
        && started
            .is_some_and(|t| now.saturating_duration_since(t) >= interval / IDLE_COMMIT_DIVISOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_input_commits_a_batch_once_it_is_a_fifth_of_the_interval_old() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!open_long_enough(0, None, at(5_000), second), "no batch");
        assert!(
            !open_long_enough(0, Some(t0), at(5_000), second),
            "an empty batch is never committed"
        );
        assert!(
            !open_long_enough(3, Some(t0), at(199), second),
            "too young: a trickle would cost a commit per record"
        );
        assert!(open_long_enough(3, Some(t0), at(200), second));
        assert!(open_long_enough(3, Some(t0), at(900), second));
    }
}
