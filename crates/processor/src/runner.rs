//! The consumer loop: one consumer in the processor group, tasks opened and
//! closed by the rebalance callback, batches committed by size or interval.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::db::TaskDb;
use crate::task::{Input, Shared, Task, TaskError};

/// The stores of the tasks this instance owns, for the query API.
pub type Owned = Arc<RwLock<BTreeMap<i32, Arc<TaskDb>>>>;

/// How partitions are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Join the consumer group; tasks follow the group's assignment.
    Group,
    /// Own every partition without a group assignment (`storefold replay`).
    All,
}

/// Run options.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub mode: Mode,
    /// Start every task as a replay (clear state, new generation).
    pub reset: bool,
    /// Stop once every owned task has folded its partitions to their end.
    pub exit_when_caught_up: bool,
    pub batch_size: usize,
    pub commit_interval: Duration,
    pub group_id: String,
    /// The sinks whose dead-letter topics (`dlq.sink.<name>`) the
    /// `storefold_processor_dlq_records` gauge measures, besides the
    /// processor's own. The sinks are registered above this crate, so the
    /// caller names them (the CLI: `storefold_sinks::registry::names()`).
    pub dead_letter_sinks: Vec<String>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub events: u64,
    pub batches: u64,
    pub task_restarts: u64,
    /// Wall time spent waiting for input (polls that returned nothing).
    pub idle: Duration,
    /// Wall time spent decoding and folding events.
    pub folding: Duration,
    /// Wall time spent committing batches (all protocol steps).
    pub committing: Duration,
    /// Wall time spent checking the consumer lag.
    pub lag_checks: Duration,
    /// Wall time spent opening tasks (local store, restore from the
    /// changelog, fence, outputs left in the outbox), at the start and at
    /// each assignment.
    pub starting: Duration,
    /// Wall time spent closing the tasks when the run ends (the last
    /// outputs acknowledged, the stores closed).
    pub closing: Duration,
    /// Stores asked to flush their memtables because all of them together
    /// were over their share of the memory budget.
    pub memtable_flushes: u64,
}

struct Ctx {
    shared: Arc<Shared>,
    tasks: Mutex<BTreeMap<i32, Task>>,
    owned: Owned,
    reset: bool,
    fatal: Mutex<Option<TaskError>>,
    /// The dead-letter topics measured by `dlq_records`.
    dead_letters: Vec<String>,
    /// A task was installed since the loop last looked: its batch state is
    /// unknown to the loop's deadlines (and a task with keys to repair is due
    /// at once), so the loop checks every task once.
    installed: AtomicBool,
    /// Wall time spent in [`Ctx::open_all`], taken by the loop's summary.
    opening: Mutex<Duration>,
}

impl Ctx {
    fn open(&self, p: i32) -> Result<Task, TaskError> {
        let mut attempt = 0;
        loop {
            match Task::start(self.shared.clone(), p, self.reset) {
                Ok(t) => return Ok(t),
                Err(e) if !e.is_fatal() && attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(task = p, error = %e, attempt, "task start failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn install(&self, task: Task) {
        self.owned
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task.partition, task.db().clone());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.insert(task.partition, task);
        self.shared.tasks.store(tasks.len(), Ordering::Relaxed);
        self.shared.metrics.tasks.set(tasks.len() as i64);
        self.installed.store(true, Ordering::Release);
    }

    fn remove(&self, p: i32) {
        self.owned
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p);
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut t) = tasks.remove(&p) {
            // The newest batch's outputs were handed to the producer without
            // waiting: wait now and delete their outbox entries, so the next
            // owner does not produce them again.
            if let Err(e) = t.settle_outbox() {
                tracing::warn!(task = p, error = %e, "outputs not acknowledged; the next start produces them again");
            }
            t.retire();
            tracing::info!(task = p, "task closed");
        }
        self.shared.tasks.store(tasks.len(), Ordering::Relaxed);
        self.shared.metrics.tasks.set(tasks.len() as i64);
    }

    /// The time spent opening tasks since the last call.
    fn take_opening(&self) -> Duration {
        std::mem::take(&mut *self.opening.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn set_fatal(&self, e: TaskError) {
        tracing::error!(error = %e, "processor cannot continue");
        self.fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(e);
    }

    /// Opens the tasks of `partitions` and returns the assignment with the
    /// offsets each task continues from. The tasks open side by side (see
    /// [`PARALLEL_OPENS`]): each start waits on the broker most of the time
    /// (its restore consumer, the changelog read, the fence's
    /// acknowledgement), so opening them one after another makes a start or
    /// a cold restore of many tasks as slow as the sum of their round trips.
    fn open_all(&self, partitions: &BTreeSet<i32>) -> TopicPartitionList {
        let started = Instant::now();
        let mut tpl = TopicPartitionList::new();
        if let Some(&p) = partitions.iter().find(|p| **p >= self.shared.partitions) {
            // The group handed out a partition the topics did not have when
            // this processor started: their partition count changed.
            self.set_fatal(TaskError::WrongLog(format!(
                "the group assigned raw partition {p}, but the raw topics had {} partitions when \
                 this processor started: the partition count changed while running. {}",
                self.shared.partitions, PARTITION_CHANGE_ADVICE
            )));
            return tpl;
        }
        let work: Vec<(i32, i32)> = partitions.iter().map(|&p| (p, p)).collect();
        let mut opened = crate::lanes::run(work, PARALLEL_OPENS, |p| self.open(p));
        opened.sort_unstable_by_key(|(p, _)| *p);
        for (p, task) in opened {
            let task = match task {
                Ok(t) => t,
                Err(e) => {
                    self.set_fatal(e);
                    continue;
                }
            };
            for topic in &self.shared.raw_topics {
                let next = task.positions().get(topic).copied().unwrap_or(0);
                if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Offset(next)) {
                    tracing::error!(task = p, error = %e, "cannot assign");
                }
            }
            self.install(task);
        }
        *self.opening.lock().unwrap_or_else(|e| e.into_inner()) += started.elapsed();
        tpl
    }
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                tracing::info!(?partitions, "partitions assigned");
                let assign = self.open_all(&partitions);
                if let Err(e) = consumer.assign(&assign) {
                    self.set_fatal(TaskError::Kafka(format!("assign: {e}")));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(?partitions, "partitions revoked");
                // An open batch is dropped: its input is not committed anywhere,
                // so the next owner folds it from the committed positions.
                for p in partitions {
                    self.remove(p);
                }
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign");
                }
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

fn group_moved_on(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId
        )
    )
}

/// Runs the consumer loop until `token` is cancelled (or, with
/// `exit_when_caught_up`, until every owned task reached the end of its input).
pub fn run(
    shared: Arc<Shared>,
    owned: Owned,
    opts: RunOptions,
    token: CancellationToken,
) -> Result<RunSummary, TaskError> {
    let ctx = Ctx {
        shared: shared.clone(),
        tasks: Mutex::new(BTreeMap::new()),
        owned,
        reset: opts.reset,
        fatal: Mutex::new(None),
        dead_letters: std::iter::once(shared.topics.dlq_processor())
            .chain(
                opts.dead_letter_sinks
                    .iter()
                    .map(|s| shared.topics.dlq_sink(s)),
            )
            .collect(),
        installed: AtomicBool::new(false),
        opening: Mutex::new(Duration::ZERO),
    };
    let mut cc = storefold_runtime::kafka::client_config(&shared.kafka);
    cc.set("group.id", &opts.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A position that no longer exists is an error, never a silent skip.
        .set("auto.offset.reset", "error")
        .set("partition.assignment.strategy", "range");
    if !shared.kafka.properties.contains_key("max.poll.interval.ms") {
        // Restoring a task runs inside the rebalance callback: allow a long
        // restore (the operator may choose otherwise in [kafka.properties]).
        cc.set("max.poll.interval.ms", "1800000");
    }
    let consumer: BaseConsumer<Ctx> = cc
        .create_with_context(ctx)
        .map_err(|e| TaskError::Kafka(e.to_string()))?;
    // The broker checks (lag, dead-letter records, partition counts) go
    // through a client of their own: on the consumer's connections they wait
    // behind its fetches, each held open by the broker for up to
    // `fetch.wait.max.ms`, which made a lag check take seconds.
    let watch: BaseConsumer = storefold_runtime::kafka::client_config(&shared.kafka)
        .set("group.id", format!("{}-watch", opts.group_id))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| TaskError::Kafka(e.to_string()))?;
    let ctx = consumer.context();
    match opts.mode {
        Mode::Group => {
            let names: Vec<&str> = shared.raw_topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&names)
                .map_err(|e| TaskError::Kafka(e.to_string()))?;
        }
        Mode::All => {
            let all: BTreeSet<i32> = (0..shared.partitions).collect();
            let tpl = ctx.open_all(&all);
            if let Some(e) = ctx.fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(e);
            }
            consumer
                .assign(&tpl)
                .map_err(|e| TaskError::Kafka(e.to_string()))?;
        }
    }
    shared.metrics.update_memory(&shared.memory);
    let mut summary = RunSummary {
        starting: ctx.take_opening(),
        ..RunSummary::default()
    };
    let mut last_check = Instant::now();
    let mut last_partition_check = Instant::now();
    let mut deadlines = Deadlines::default();
    let mut last_scan = Instant::now();
    let mut due: Vec<i32> = Vec::new();
    let result = loop {
        if let Some(e) = ctx.fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
            break Err(e);
        }
        if token.is_cancelled() {
            break Ok(());
        }
        let polled_at = Instant::now();
        // Wake up for the earliest batch deadline, at the latest after 50 ms.
        let wait = deadlines
            .next()
            .map_or(POLL_WAIT, |at| at.saturating_duration_since(polled_at))
            .min(POLL_WAIT);
        let polled = consumer.poll(wait);
        let idle = polled.is_none();
        // Tasks installed during the poll (a rebalance) or by a restart: drop
        // the deadlines of batches that no longer exist, and check every task
        // below (a restarted task with keys to repair is due at once).
        let mut scan_all = ctx.installed.swap(false, Ordering::Acquire);
        let opened = if scan_all {
            ctx.take_opening()
        } else {
            Duration::ZERO
        };
        summary.starting += opened;
        if idle {
            summary.idle += polled_at.elapsed().saturating_sub(opened);
        }
        if scan_all {
            let tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
            deadlines.retain(|p| tasks.get(&p).is_some_and(|t| t.batch_events() > 0));
        }
        let folding = Instant::now();
        match polled {
            None => {}
            Some(Ok(m)) => {
                let p = m.partition();
                let mut tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(task) = tasks.get_mut(&p)
                    && task.expects(m.topic(), m.offset())
                {
                    let headers = storefold_runtime::kafka::owned_headers(&m);
                    let input = Input {
                        topic: m.topic(),
                        partition: p,
                        offset: m.offset(),
                        key: m.key(),
                        payload: m.payload(),
                        headers,
                    };
                    match task.process(&input) {
                        Ok(()) => {
                            // Only the task that took the record can have
                            // filled its batch; its deadline is set by the
                            // batch's first record.
                            if task.batch_events() > 0 {
                                deadlines.open(p, Instant::now() + opts.commit_interval);
                            }
                            if task.due(opts.batch_size, opts.commit_interval) {
                                due.push(p);
                            }
                        }
                        Err(e) => {
                            drop(tasks);
                            if e.is_fatal() {
                                break Err(e);
                            }
                            deadlines.close(p);
                            restart(&consumer, p, &e, &mut summary);
                        }
                    }
                }
            }
            Some(Err(KafkaError::MessageConsumption(
                code @ (RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange),
            ))) => {
                break Err(TaskError::WrongLog(format!(
                    "a raw topic no longer holds the offset storefold must continue from ({code}): \
                     the log was truncated under the state (retention, deletion, or an embedded \
                     broker that dropped records). Refusing to skip data; `storefold replay` \
                     rebuilds from what the raw topics hold"
                )));
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
        }
        summary.folding += folding.elapsed();
        // Commit due batches: the one filled above, those whose deadline
        // passed and, after an install or once per commit interval (a
        // backstop that keeps `Task::due` the only rule), any task found due
        // by asking each.
        let committing = Instant::now();
        let now = Instant::now();
        scan_all |= now.duration_since(last_scan) >= opts.commit_interval;
        {
            let tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
            for p in deadlines.take_due(now) {
                let Some(task) = tasks.get(&p) else { continue };
                if task.due(opts.batch_size, opts.commit_interval) {
                    due.push(p);
                } else if task.batch_events() > 0 {
                    // Not due by the task's own clock yet: ask again later.
                    deadlines.open(p, now + opts.commit_interval);
                }
            }
            if idle {
                // Nothing came: batches open for long enough are committed
                // now rather than at their deadline (see Task::due_when_idle).
                due.extend(
                    tasks
                        .iter()
                        .filter(|(_, t)| t.due_when_idle(opts.commit_interval))
                        .map(|(p, _)| *p),
                );
            }
            if scan_all {
                last_scan = now;
                due.extend(
                    tasks
                        .iter()
                        .filter(|(_, t)| t.due(opts.batch_size, opts.commit_interval))
                        .map(|(p, _)| *p),
                );
            }
        }
        due.sort_unstable();
        due.dedup();
        for p in &due {
            deadlines.close(*p);
        }
        for (p, e) in commit_tasks(&consumer, &due, &opts.mode, &mut summary) {
            if e.is_fatal() {
                return Err(e);
            }
            restart(&consumer, p, &e, &mut summary);
        }
        due.clear();
        if idle {
            // Nothing to fold: wait for the outputs still in flight now, so
            // they are confirmed (and their outbox entries deleted) without
            // waiting for a next batch that may not come soon.
            let mut failed = Vec::new();
            {
                let mut tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
                for (p, task) in tasks.iter_mut().filter(|(_, t)| t.batch_events() == 0) {
                    if let Err(e) = task.settle_outbox() {
                        failed.push((*p, e));
                    }
                }
            }
            for (p, e) in failed {
                if e.is_fatal() {
                    return Err(e);
                }
                restart(&consumer, p, &e, &mut summary);
            }
        }
        summary.committing += committing.elapsed();
        let every = if opts.exit_when_caught_up {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        // The partition counts the tasks rest on: every 30 s (a metadata
        // request per co-partitioned topic), and before a run that exits once
        // caught up says it is.
        if last_partition_check.elapsed() >= Duration::from_secs(30) {
            last_partition_check = Instant::now();
            if let Err(e) = check_partition_counts(&watch, &shared, Duration::from_secs(10)) {
                break Err(e);
            }
        }
        if (idle || !opts.exit_when_caught_up) && last_check.elapsed() >= every {
            last_check = Instant::now();
            shared.metrics.update_memory(&shared.memory);
            let caught_up = update_lag(ctx, &watch);
            summary.lag_checks += last_check.elapsed();
            tracing::debug!(elapsed = ?last_check.elapsed(), caught_up, "lag checked");
            if opts.exit_when_caught_up && caught_up {
                if let Err(e) = check_partition_counts(&watch, &shared, Duration::from_secs(10)) {
                    break Err(e);
                }
                tracing::info!("every owned task has folded its input");
                break Ok(());
            }
        }
    };
    // Graceful stop: commit what is open, then leave the group.
    if result.is_ok() {
        let open: Vec<i32> = ctx
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, t)| t.batch_events() > 0)
            .map(|(p, _)| *p)
            .collect();
        for (p, e) in commit_tasks(&consumer, &open, &opts.mode, &mut summary) {
            tracing::warn!(task = p, error = %e, "final commit failed; the batch will be folded again");
        }
    }
    let closing = Instant::now();
    consumer.unsubscribe();
    let parts: Vec<i32> = ctx
        .tasks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .copied()
        .collect();
    for p in parts {
        ctx.remove(p);
    }
    summary.closing = closing.elapsed();
    result.map(|()| summary)
}

/// Longest wait for a record before the loop looks at deadlines and lag again.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// When each open batch falls due by time: the batch's first record plus the
/// commit interval. Finding the due batches after a record is then a look at
/// the earliest deadlines, not a question to every task.
#[derive(Debug, Default)]
struct Deadlines {
    /// (deadline, task), earliest first.
    order: BTreeSet<(Instant, i32)>,
    /// The deadline of each task in `order`.
    of: HashMap<i32, Instant>,
}

impl Deadlines {
    /// Gives task `p` the deadline `at` unless it has one: a batch keeps the
    /// deadline of its first record.
    fn open(&mut self, p: i32, at: Instant) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.of.entry(p) {
            v.insert(at);
            self.order.insert((at, p));
        }
    }

    /// Forgets the deadline of task `p` (its batch was committed or dropped).
    fn close(&mut self, p: i32) {
        if let Some(at) = self.of.remove(&p) {
            self.order.remove(&(at, p));
        }
    }

    /// The earliest deadline.
    fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns the tasks whose deadline is `now` or earlier,
    /// earliest first.
    fn take_due(&mut self, now: Instant) -> Vec<i32> {
        let mut due = Vec::new();
        while let Some(&(at, p)) = self.order.first() {
            if at > now {
                break;
            }
            self.order.pop_first();
            self.of.remove(&p);
            due.push(p);
        }
        due
    }

    /// Keeps the deadlines of the tasks for which `keep` is true.
    fn retain(&mut self, mut keep: impl FnMut(i32) -> bool) {
        let gone: Vec<i32> = self.of.keys().copied().filter(|p| !keep(*p)).collect();
        for p in gone {
            self.close(p);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        debug_assert_eq!(self.order.len(), self.of.len());
        self.of.len()
    }
}

/// Most tasks opened at once. A start is mostly waiting on the broker, but
/// it also opens a RocksDB store and applies what it restores, so the number
/// stays well below [`PARALLEL_COMMITS`].
const PARALLEL_OPENS: usize = 16;

/// Threads that serialise, write and hand over the due tasks' batches at once
/// (each step of a commit round runs on this many lanes; the
/// acknowledgements of every task are awaited together). When each task
/// committed alone from start to end, 64 lanes were no faster than 16
/// (procbench, 256 partitions: 10.4 s of commits against 10.7 s) but held
/// more at once (peak RSS 3.1 GiB against 2.5 GiB).
const PARALLEL_COMMITS: usize = 16;

/// What a commit round holds in memory per event it commits (bytes), for
/// sizing rounds: a folded event writes about 7 KB (procbench: 4.5 KB of
/// changelog, 2.2 KB of outputs), and until acknowledged a round holds it
/// twice (its local write batch and the producer's queue), with the
/// allocator's slack besides.
const ROUND_BYTES_PER_EVENT: usize = 16 << 10;

/// Most events one commit round commits: a quarter of the memory budget at
/// [`ROUND_BYTES_PER_EVENT`] (16 384 with the default 1 GiB), so that what a
/// round holds follows the budget even when hundreds of tasks are due at
/// once (the graceful stop commits every open batch; so does the first scan
/// after an assignment). In procbench's runs rounds stay below this, so it
/// changes nothing there.
fn round_events(memory: &crate::db::StoreMemory) -> usize {
    (memory.budget_bytes() / 4 / ROUND_BYTES_PER_EVENT).max(1)
}

/// `due` cut into consecutive rounds whose batches hold at most `limit`
/// events together (a round has at least one task, however large its batch).
fn rounds<T>(due: Vec<T>, events: impl Fn(&T) -> usize, limit: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut size = 0;
    for t in due {
        let n = events(&t);
        match out.last_mut() {
            Some(round) if size + n <= limit => {
                size += n;
                round.push(t);
            }
            _ => {
                size = n;
                out.push(vec![t]);
            }
        }
    }
    out
}

/// Commits the open batches of tasks `due`, in rounds of at most
/// [`round_events`] events (steps a–c of each task of a round side by side),
/// then the consumer offsets of every committed task in one request (step d).
/// Returns the tasks whose batch failed, with the error.
fn commit_tasks(
    consumer: &BaseConsumer<Ctx>,
    due: &[i32],
    mode: &Mode,
    summary: &mut RunSummary,
) -> Vec<(i32, TaskError)> {
    if due.is_empty() {
        return Vec::new();
    }
    let ctx = consumer.context();
    let mut tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
    let work: Vec<(i32, &mut Task)> = tasks
        .iter_mut()
        .filter(|(p, _)| due.contains(p))
        .map(|(p, t)| (*p, t))
        .collect();
    // In each round: every task's changelog records are handed to the
    // producer, then every marker once its task's records are acknowledged,
    // then each task writes RocksDB and hands over its outputs. A task that
    // fails a step drops out with its error; the others go on.
    let mut failed = Vec::new();
    let mut results = Vec::new();
    let limit = round_events(&ctx.shared.memory);
    for round in rounds(work, |(_, t)| t.batch_events(), limit) {
        let staged = succeeded(
            &mut failed,
            crate::lanes::run(round, PARALLEL_COMMITS, |task: &mut Task| {
                task.stage().map(|s| (task, s))
            }),
        );
        let marked = succeeded(
            &mut failed,
            crate::lanes::run(
                staged,
                PARALLEL_COMMITS,
                |(task, staged): (&mut Task, _)| task.mark(staged).map(|m| (task, m)),
            ),
        );
        results.extend(crate::lanes::run(
            marked,
            PARALLEL_COMMITS,
            |(task, marked): (&mut Task, _)| task.complete(marked),
        ));
    }
    summary.memtable_flushes += ctx
        .shared
        .memory
        .bound(tasks.values().map(|t| t.db().as_ref()));
    let mut tpl = TopicPartitionList::new();
    let mut committed = Vec::new();
    for (p, r) in results {
        match r {
            Ok(events) => {
                summary.events += events as u64;
                summary.batches += 1;
                committed.push(p);
                if let Some(task) = tasks.get(&p) {
                    for (topic, next) in task.positions() {
                        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(*next));
                    }
                }
            }
            Err(e) => failed.push((p, e)),
        }
    }
    drop(tasks);
    if committed.is_empty() {
        return failed;
    }
    let step = Instant::now();
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {}
        Err(e) if *mode == Mode::Group && group_moved_on(&e) => {
            // The group gave partitions to another member: stop those at once
            // (the ones still ours are committed again with the next batch).
            tracing::warn!(tasks = ?committed, error = %e, "offset commit rejected: the group moved on; closing the tasks");
            for p in &committed {
                ctx.remove(*p);
            }
        }
        Err(e) => {
            tracing::warn!(tasks = ?committed, error = %e, "offset commit failed (the marker and local positions remain the truth)")
        }
    }
    ctx.shared
        .metrics
        .commit_seconds
        .with_label_values(&["offsets"])
        .observe(step.elapsed().as_secs_f64());
    tracing::debug!(tasks = committed.len(), offsets = ?step.elapsed(), "batches committed");
    crate::failpoint::hit("after_offsets");
    failed
}

/// The successful results of a commit step; the failed ones join `failed`.
fn succeeded<V>(
    failed: &mut Vec<(i32, TaskError)>,
    results: Vec<(i32, Result<V, TaskError>)>,
) -> Vec<(i32, V)> {
    let mut ok = Vec::with_capacity(results.len());
    for (p, r) in results {
        match r {
            Ok(v) => ok.push((p, v)),
            Err(e) => failed.push((p, e)),
        }
    }
    ok
}

/// Restarts task `p` from its committed state after a failed batch and seeks
/// the consumer back to its positions.
fn restart(consumer: &BaseConsumer<Ctx>, p: i32, e: &TaskError, summary: &mut RunSummary) {
    let ctx = consumer.context();
    tracing::warn!(task = p, error = %e, "batch abandoned; restarting the task from its committed state");
    summary.task_restarts += 1;
    let reason = match e {
        TaskError::Kafka(_) => "kafka",
        TaskError::Changelog(_) => "changelog",
        TaskError::Db(_) => "state",
        TaskError::WrongLog(_) => "wrong_log",
        TaskError::Panicked(_) => "panic",
    };
    ctx.shared
        .metrics
        .task_failures
        .with_label_values(&[reason])
        .inc();
    ctx.remove(p);
    std::thread::sleep(Duration::from_millis(500));
    match Task::start(ctx.shared.clone(), p, false) {
        Ok(task) => {
            // The consumer has read past the abandoned batch: folding on
            // without rewinding would skip its records, so a seek that keeps
            // failing stops the processor (its committed state is intact).
            let positions = task.positions().iter().map(|(t, next)| (t.as_str(), *next));
            let rewound = crate::lanes::seek_all(positions, 5, |topic, next| {
                consumer
                    .seek(topic, p, Offset::Offset(next), Duration::from_secs(10))
                    .map_err(|e| e.to_string())
            });
            match rewound {
                Ok(()) => ctx.install(task),
                Err(e) => ctx.set_fatal(TaskError::Kafka(format!(
                    "task {p} restarted but could not rewind its consumer ({e}); stopping \
                     rather than skipping the abandoned batch's records"
                ))),
            }
        }
        Err(e) => ctx.set_fatal(e),
    }
}

/// What to do when a co-partitioned topic's partition count changed.
const PARTITION_CHANGE_ADVICE: &str = "Tenants are placed by hashing over the partition count, so \
     their events would now reach tasks that do not hold their state. Stopping without folding \
     anything more: restore the partition count, or stop every role, set kafka.partitions to the \
     new count, give every raw topic and the changelog that count (`storefold topics check`) and \
     rebuild with `storefold replay`";

/// Checks that every raw topic and the changelog still have the partition
/// count the processor started with (tenants are hashed over it). A
/// difference is fatal: the error names the topic and both counts.
pub fn check_partition_counts<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    shared: &Shared,
    timeout: Duration,
) -> Result<(), TaskError> {
    let changelog = shared.topics.changelog();
    for topic in shared.raw_topics.iter().chain(std::iter::once(&changelog)) {
        let md = match consumer.fetch_metadata(Some(topic), timeout) {
            Ok(md) => md,
            Err(e) => {
                // Not knowing is not a change: the next check asks again.
                tracing::debug!(topic = %topic, error = %e, "partition count not checked");
                continue;
            }
        };
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            continue;
        };
        if t.error().is_some() {
            continue;
        }
        let found = t.partitions().len() as i32;
        if found != shared.partitions {
            tracing::error!(
                topic = %topic,
                expected = shared.partitions,
                found,
                "partition count changed while running"
            );
            return Err(TaskError::WrongLog(format!(
                "topic {topic} has {found} partitions, but it had {} when this processor started: \
                 the partition count changed while running. {PARTITION_CHANGE_ADVICE}",
                shared.partitions
            )));
        }
    }
    Ok(())
}

/// Publishes the lag per task (high watermarks asked from the broker); true
/// when every owned task is at the end of every raw partition.
fn update_lag(ctx: &Ctx, watch: &BaseConsumer) -> bool {
    let tasks = ctx.tasks.lock().unwrap_or_else(|e| e.into_inner());
    if tasks.is_empty() {
        return false;
    }
    let wanted: Vec<(String, i32)> = tasks
        .keys()
        .flat_map(|p| ctx.shared.raw_topics.iter().map(move |t| (t.clone(), *p)))
        .collect();
    let marks = match crate::task::watermarks(watch, &wanted, Duration::from_secs(10)) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot measure the lag");
            return false;
        }
    };
    let mut all = true;
    for (p, task) in tasks.iter() {
        let mut lag = 0i64;
        for topic in &ctx.shared.raw_topics {
            let next = task.positions().get(topic).copied().unwrap_or(0);
            let high = marks.get(&(topic.clone(), *p)).map_or(-1, |m| m.1);
            if high >= 0 {
                lag += (high - next).max(0);
            }
            if high < 0 || high > next || task.batch_events() > 0 {
                all = false;
            }
        }
        ctx.shared
            .metrics
            .lag
            .with_label_values(&[&p.to_string()])
            .set(lag);
        task.update_gauges();
    }
    let owned: Vec<i32> = tasks.keys().copied().collect();
    drop(tasks);
    update_dlq_records(ctx, watch, &owned);
    all
}

/// Publishes how many records each dead-letter topic holds (low to high
/// watermark) in the partitions of the owned tasks: what is left to look at.
/// One ListOffsets round for every topic; only when that fails (a dead-letter
/// topic missing or with fewer partitions) is each topic asked alone.
fn update_dlq_records(ctx: &Ctx, watch: &BaseConsumer, owned: &[i32]) {
    let shared = &ctx.shared;
    let topics = &ctx.dead_letters;
    let wanted = |topics: &[String]| -> Vec<(String, i32)> {
        topics
            .iter()
            .flat_map(|t| owned.iter().map(move |p| (t.clone(), *p)))
            .collect()
    };
    let publish = |topic: &str, marks: &crate::task::Watermarks| {
        let held: i64 = marks
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, (low, high))| (high - low).max(0))
            .sum();
        shared
            .metrics
            .dlq_records
            .with_label_values(&[topic])
            .set(held);
    };
    let timeout = Duration::from_secs(10);
    if let Ok(marks) = crate::task::watermarks(watch, &wanted(topics), timeout) {
        for t in topics {
            publish(t, &marks);
        }
        return;
    }
    for t in topics {
        match crate::task::watermarks(watch, &wanted(std::slice::from_ref(t)), timeout) {
            Ok(marks) => publish(t, &marks),
            Err(e) => tracing::debug!(topic = %t, error = %e, "dead-letter records not measured"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn commit_rounds_hold_at_most_the_limit_and_every_task_once() {
        // (task, events of its batch)
        let due = vec![(1, 900), (2, 200), (3, 100), (4, 5000), (5, 700), (6, 300)];
        let cut = rounds(due.clone(), |t| t.1, 1000);
        let tasks = |r: &Vec<(i32, usize)>| r.iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(
            cut.iter().map(tasks).collect::<Vec<_>>(),
            vec![vec![1], vec![2, 3], vec![4], vec![5, 6]],
            "consecutive, within the limit, a larger batch alone"
        );
        assert_eq!(cut.concat(), due, "every task once, in order");
        assert!(rounds(Vec::<(i32, usize)>::new(), |t| t.1, 1000).is_empty());
        assert_eq!(round_events(&crate::db::StoreMemory::new(1 << 30)), 16_384);
        assert_eq!(round_events(&crate::db::StoreMemory::new(0)), 16);
    }

    #[test]
    fn deadlines_fall_due_in_order_and_only_once() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.open(3, at(t0, 30));
        d.open(1, at(t0, 10));
        d.open(2, at(t0, 20));
        assert_eq!(d.next(), Some(at(t0, 10)));
        assert!(d.take_due(at(t0, 5)).is_empty());
        assert_eq!(d.take_due(at(t0, 20)), vec![1, 2]);
        assert_eq!(d.next(), Some(at(t0, 30)));
        assert!(d.take_due(at(t0, 20)).is_empty());
        assert_eq!(d.take_due(at(t0, 1000)), vec![3]);
        assert_eq!(d.next(), None);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_batch_keeps_the_deadline_of_its_first_record() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.open(7, at(t0, 10));
        d.open(7, at(t0, 50));
        assert_eq!(d.len(), 1);
        assert_eq!(d.take_due(at(t0, 10)), vec![7]);
        // Once taken (committed), the next batch gets a new deadline.
        d.open(7, at(t0, 50));
        assert_eq!(d.next(), Some(at(t0, 50)));
    }

    #[test]
    fn closed_and_dropped_batches_never_fall_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        for p in 0..5 {
            d.open(p, at(t0, 10));
        }
        d.close(1);
        d.close(1);
        d.close(99);
        d.retain(|p| p != 3);
        assert_eq!(d.len(), 3);
        assert_eq!(d.take_due(at(t0, 10)), vec![0, 2, 4]);
    }

    #[test]
    fn tasks_with_the_same_deadline_are_all_kept() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.open(2, at(t0, 10));
        d.open(1, at(t0, 10));
        assert_eq!(d.len(), 2);
        assert_eq!(d.take_due(at(t0, 10)), vec![1, 2]);
    }
}
