//! The Kafka side of the runner: the consumer context (where each assigned
//! partition starts), the pending batch, decoding, pausing while a retry waits,
//! offset commits and the lag gauge.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use storefold_codec::{
    AvroCodec, CustomerProjection, OrderProjection, PayoutProjection, RECEIVED_AT_HEADER, Trigger,
};
use storefold_runtime::kafka::Topics;

use super::dead_letter::{DeadLetter, UNDECODABLE, dead_letter};
use super::{Runner, Stop};
use crate::{Item, Sink, SinkRecord, SourcePosition, Stream};

/// While a retry waits, the consumer is polled at least this often (far below
/// any sensible `max.poll.interval.ms`).
const POLL_WHILE_WAITING: Duration = Duration::from_millis(500);
/// How often the lag gauge is refreshed (each refresh asks the broker for the
/// watermarks of every assigned partition).
const LAG_REFRESH: Duration = Duration::from_secs(5);

pub(super) type Tp = (String, i32);

/// The consumer context: resolves where each assigned partition starts (the
/// committed offset, or the beginning for a partition this group never
/// committed) and remembers each partition's next offset to handle.
pub(super) struct Ctx {
    pub(super) sink: &'static str,
    /// Assigned partitions → next offset to handle (`None`: from the beginning).
    pub(super) positions: Mutex<BTreeMap<Tp, Option<i64>>>,
    /// Assignments received (see
    /// [`RunSummary::assignments`](super::RunSummary::assignments)).
    pub(super) assignments: std::sync::atomic::AtomicU64,
}

impl Ctx {
    pub(super) fn positions(&self) -> std::sync::MutexGuard<'_, BTreeMap<Tp, Option<i64>>> {
        self.positions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> TopicPartitionList {
        let mut committed = None;
        for attempt in 0..3 {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(c) => {
                    committed = Some(c);
                    break;
                }
                Err(e) => {
                    tracing::warn!(sink = self.sink, error = %e, attempt, "cannot read the committed offsets");
                }
            }
        }
        let Some(committed) = committed else {
            // librdkafka reads them itself; a partition without one then fails
            // loudly (auto.offset.reset=error) rather than skipping anything.
            return tpl.clone();
        };
        let mut out = TopicPartitionList::new();
        let mut positions = self.positions();
        for e in committed.elements() {
            let start = match e.offset() {
                Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            };
            positions.insert((e.topic().to_string(), e.partition()), start);
            let offset = start.map_or(Offset::Beginning, Offset::Offset);
            if let Err(err) = out.add_partition_offset(e.topic(), e.partition(), offset) {
                tracing::error!(sink = self.sink, error = %err, "cannot assign");
            }
        }
        out
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
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assignments
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let assign = self.start_offsets(consumer, tpl);
                tracing::info!(
                    sink = self.sink,
                    partitions = assign.count(),
                    "partitions assigned"
                );
                if let Err(e) = consumer.assign(&assign) {
                    tracing::error!(sink = self.sink, error = %e, "assign");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(
                    sink = self.sink,
                    partitions = tpl.count(),
                    "partitions revoked"
                );
                self.positions().clear();
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(sink = self.sink, error = %e, "unassign");
                }
            }
            other => tracing::error!(sink = self.sink, error = ?other, "rebalance error"),
        }
    }
}

/// Records consumed and not yet handled.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) records: Vec<SinkRecord>,
    pub(super) undecodable: Vec<DeadLetter>,
    pub(super) next: BTreeMap<Tp, i64>,
    pub(super) consumed: usize,
    pub(super) first_at: Option<Instant>,
}

impl Pending {
    /// Appends `other` (records consumed later) to these.
    pub(super) fn merge(&mut self, other: Pending) {
        if other.consumed == 0 {
            return;
        }
        self.records.extend(other.records);
        self.undecodable.extend(other.undecodable);
        for (tp, n) in other.next {
            let e = self.next.entry(tp).or_insert(n);
            *e = (*e).max(n);
        }
        self.consumed += other.consumed;
        self.first_at = match (self.first_at, other.first_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

pub(super) fn decode(codec: &AvroCodec, stream: Stream, payload: &[u8]) -> Result<Item, String> {
    let r = match stream {
        Stream::Customers => codec
            .decode::<CustomerProjection>(payload)
            .map(Item::Customer),
        Stream::Orders => codec.decode::<OrderProjection>(payload).map(Item::Order),
        Stream::Payouts => codec.decode::<PayoutProjection>(payload).map(Item::Payout),
        Stream::Triggers => codec.decode::<Trigger>(payload).map(Item::Trigger),
    };
    r.map_err(|e| e.to_string())
}

pub(super) fn stream_topic(topics: &Topics, s: Stream) -> String {
    match s {
        Stream::Customers => topics.customers(),
        Stream::Orders => topics.orders(),
        Stream::Payouts => topics.payouts(),
        Stream::Triggers => topics.triggers(),
    }
}

impl<S: Sink> Runner<'_, S> {
    /// Copies a consumed message into the pending batch, decoded, or as a dead
    /// letter when it cannot be decoded.
    pub(super) fn take<M: Message>(&self, m: &M, pending: &mut Pending) {
        let source = SourcePosition {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
        };
        pending.consumed += 1;
        pending.first_at.get_or_insert_with(Instant::now);
        let next = pending
            .next
            .entry((source.topic.clone(), source.partition))
            .or_insert(0);
        *next = (*next).max(source.offset + 1);
        let headers = storefold_runtime::kafka::owned_headers(m);
        let key = m.key().map(<[u8]>::to_vec);
        let Some(stream) = self.streams.get(&source.topic).copied() else {
            // Only subscribed topics are delivered.
            tracing::error!(sink = self.name, topic = %source.topic, "record of an unexpected topic");
            return;
        };
        let decoded = match m.payload() {
            None => Err(
                "the record has no value (a tombstone); storefold never deletes projections"
                    .to_string(),
            ),
            Some(p) => decode(&self.codec, stream, p),
        };
        match decoded {
            Ok(item) => {
                let received_at_ms = headers
                    .iter()
                    .find(|(k, _)| k == RECEIVED_AT_HEADER)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<i64>().ok());
                pending.records.push(SinkRecord {
                    item,
                    key: key.unwrap_or_default(),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    source,
                    received_at_ms,
                });
            }
            Err(reason) => {
                tracing::warn!(
                    sink = self.name,
                    topic = %source.topic,
                    partition = source.partition,
                    offset = source.offset,
                    reason = %reason,
                    "undecodable record sent to the dead-letter topic"
                );
                pending.undecodable.push(dead_letter(
                    key,
                    m.payload().map(<[u8]>::to_vec),
                    headers,
                    &source,
                    UNDECODABLE,
                    &reason,
                ));
            }
        }
    }

    /// Waits `d` (unless shutdown comes first) without leaving the group: the
    /// assigned partitions are paused and the consumer keeps being polled, so a
    /// destination outage longer than `max.poll.interval.ms` does not get this
    /// member evicted (and its partitions handed to a rebalance) while it
    /// retries. The partitions stay paused until the batch is handled
    /// ([`Self::resume`]).
    pub(super) async fn pause(&mut self, d: Duration) -> Result<(), Stop> {
        let until = Instant::now() + d;
        loop {
            // Every round, so that partitions assigned meanwhile pause too.
            self.pause_assigned();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let step = left.min(POLL_WHILE_WAITING);
            let got = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                r = tokio::time::timeout(step, self.consumer.recv()) => r,
            };
            match got {
                Err(_elapsed) => {}
                Ok(Ok(m)) => {
                    // Fetched before the pause took effect: keep it for the next
                    // batch rather than skipping it.
                    let mut carry = std::mem::take(&mut self.carry);
                    learn_writer(self.registry.as_ref(), &mut self.codec, &self.streams, &m).await;
                    self.take(&m, &mut carry);
                    self.carry = carry;
                }
                Ok(Err(e)) => {
                    tracing::warn!(sink = self.name, error = %e, "consumer error while waiting");
                    tokio::time::sleep(Duration::from_millis(100).min(left)).await;
                }
            }
        }
    }

    pub(super) fn pause_assigned(&mut self) {
        match self.consumer.assignment() {
            Ok(tpl) if tpl.count() > 0 => match self.consumer.pause(&tpl) {
                Ok(()) => {
                    if !self.paused {
                        tracing::info!(
                            sink = self.name,
                            partitions = tpl.count(),
                            "partitions paused while the destination is retried (still polling)"
                        );
                    }
                    self.paused = true;
                }
                Err(e) => {
                    tracing::warn!(sink = self.name, error = %e, "cannot pause the partitions")
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(sink = self.name, error = %e, "cannot read the assignment"),
        }
    }

    /// Resumes the partitions paused by [`Self::pause`].
    pub(super) fn resume(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        match self.consumer.assignment() {
            Ok(tpl) => {
                if let Err(e) = self.consumer.resume(&tpl) {
                    tracing::warn!(sink = self.name, error = %e, "cannot resume the partitions");
                } else {
                    tracing::info!(
                        sink = self.name,
                        partitions = tpl.count(),
                        "partitions resumed"
                    );
                }
            }
            Err(e) => tracing::warn!(sink = self.name, error = %e, "cannot read the assignment"),
        }
    }

    /// Commits the next offsets of a handled batch (synchronously). A commit
    /// refused because the group moved on is not an error: the new owner starts
    /// from the previous commit and writes the same rows again, idempotently.
    pub(super) async fn commit(&mut self, next: BTreeMap<Tp, i64>) {
        if next.is_empty() {
            return;
        }
        {
            let mut positions = self.consumer.context().positions();
            for (tp, n) in &next {
                if let Some(p) = positions.get_mut(tp) {
                    *p = Some(p.unwrap_or(0).max(*n));
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), n) in &next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*n)) {
                tracing::error!(sink = self.name, error = %e, "commit list");
            }
        }
        let mut delays = self.delays();
        for attempt in 0..5u32 {
            let consumer = self.consumer.clone();
            let list = tpl.clone();
            let r = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
                .await
                .unwrap_or(Err(KafkaError::Canceled));
            match r {
                Ok(()) => return,
                Err(e) if group_moved_on(&e) || attempt == 4 => {
                    tracing::warn!(
                        sink = self.name,
                        error = %e,
                        "offset commit failed; the records will be delivered (and written) again"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(sink = self.name, error = %e, attempt, "offset commit failed; retrying");
                    let delay = delays.next().unwrap_or(self.max_retry_after);
                    if self.pause(delay).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Refreshes `storefold_sink_lag` (at most every few seconds unless `now`)
    /// and returns the lag; `None` while nothing is assigned or the broker does
    /// not answer.
    pub(super) async fn refresh_lag(&mut self, now: bool) -> Option<i64> {
        if !now && self.last_lag.is_some_and(|t| t.elapsed() < LAG_REFRESH) {
            return None;
        }
        self.last_lag = Some(Instant::now());
        let positions: Vec<(Tp, Option<i64>)> = self
            .consumer
            .context()
            .positions()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if positions.is_empty() {
            return None;
        }
        let consumer = self.consumer.clone();
        let lag = tokio::task::spawn_blocking(move || {
            let mut lag = 0i64;
            for ((topic, partition), next) in positions {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                    .ok()?;
                lag += (high - next.unwrap_or(low).max(low)).max(0);
            }
            Some(lag)
        })
        .await
        .ok()
        .flatten()?;
        self.metrics.lag.set(lag);
        Some(lag)
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
                | RDKafkaErrorCode::NoOffset
        )
    )
}

/// With a schema registry: fetches the writer schema of a Confluent value whose id
/// the codec does not know yet (registered after this sink started). When the
/// registry cannot answer, the value is decoded as it is and goes to the
/// dead-letter topic like any undecodable record.
pub(super) async fn learn_writer<M: Message>(
    registry: Option<&storefold_codec::registry::RegistryClient>,
    codec: &mut AvroCodec,
    streams: &std::collections::HashMap<String, Stream>,
    m: &M,
) {
    let (Some(client), Some(payload)) = (registry, m.payload()) else {
        return;
    };
    let Some(kind) = streams.get(m.topic()).map(|s| match s {
        Stream::Customers => storefold_codec::RecordKind::CustomerProjection,
        Stream::Orders => storefold_codec::RecordKind::OrderProjection,
        Stream::Payouts => storefold_codec::RecordKind::PayoutProjection,
        Stream::Triggers => storefold_codec::RecordKind::Trigger,
    }) else {
        return;
    };
    if let Err(e) = storefold_codec::registry::learn_writer(client, codec, kind, payload).await {
        tracing::warn!(topic = m.topic(), error = %e, "cannot learn a value's writer schema from the schema registry");
    }
}
