//! What every task of an instance shares, and the Kafka calls the tasks make
//! through it: producing records and listing offsets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use storefold_codec::AvroCodec;
use storefold_codec::registry::Framing;
use storefold_core::engine::FoldConfig;
use storefold_providers::{MapOptions, ProviderKind};
use storefold_runtime::config::KafkaConfig;
use storefold_runtime::kafka::Topics;

use super::TaskError;
use crate::db::StoreMemory;
use crate::metrics::ProcessorMetrics;
use crate::parked::release_topics;

/// What every task of an instance shares.
pub struct Shared {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub codec: AvroCodec,
    /// How each record is framed: single-object, or Confluent's with the
    /// schema registry's id.
    pub framing: Framing,
    pub producer: FutureProducer,
    pub rt: tokio::runtime::Handle,
    pub metrics: ProcessorMetrics,
    /// The broker's cluster id, stored with the state.
    pub cluster_id: String,
    /// Raw topics (name, provider) this processor folds.
    pub raw_topics: Vec<String>,
    /// Partition count of the raw topics and the changelog.
    pub partitions: i32,
    pub state_dir: PathBuf,
    pub retention_ms: i64,
    pub sync_writes: bool,
    pub produce_timeout: Duration,
    /// State records the engines of all owned tasks keep between batches
    /// together (see [`Shared::cache_per_task`]).
    pub cache_records: usize,
    /// Tasks the instance owns now (kept by the runner).
    pub tasks: AtomicUsize,
    /// The block cache and memtable budget every task store shares.
    pub memory: StoreMemory,
    /// How each configured tenant's payloads are mapped (its stores, where its
    /// payment providers name the order).
    pub map_options: BTreeMap<String, MapOptions>,
    /// How the payloads of a tenant that is not configured are mapped.
    pub default_map_options: MapOptions,
    /// Reporting currencies and rates for the fold.
    pub fold: Arc<FoldConfig>,
    /// How long a parked event waits for its order (ms of receive time) before it
    /// goes to the dead-letter topic.
    pub park_timeout_ms: i64,
    /// The producer's `message.max.bytes`: no record the task writes may
    /// exceed it (see [`crate::size`]).
    pub max_message_bytes: usize,
    /// The raw log's data keys, when a tenant shreds it (see
    /// [`storefold_runtime::rawkeys`]); `None` when no tenant encrypts.
    pub raw_keys: Option<std::sync::Mutex<storefold_runtime::rawkeys::KeyLog>>,
}

/// Fewest state records a task keeps between batches, however many tasks
/// share `processor.cache_records`. Kept small so that the setting stays the
/// bound it says up to thousands of tasks (at 1 000, 768 tasks kept 768 000
/// records whatever the setting); what falls out is read from RocksDB's
/// block cache.
const CACHE_FLOOR: usize = 100;

impl Shared {
    /// This task's share of `cache_records`: the budget divided by the tasks
    /// the instance owns, but at least 100 (or the whole budget, when it is
    /// smaller).
    pub fn cache_per_task(&self) -> usize {
        cache_share(self.cache_records, self.tasks.load(Ordering::Relaxed))
    }

    /// The mapping options of `tenant`.
    pub fn map_options(&self, tenant: &str) -> &MapOptions {
        self.map_options
            .get(tenant)
            .unwrap_or(&self.default_map_options)
    }

    /// The raw topics a parked event's order can come from (see
    /// [`release_topics`]), with its tenant's stores.
    pub fn release_topics(&self, env: &storefold_core::Envelope) -> Vec<String> {
        release_topics(env, &self.map_options(&env.tenant).stores, |p| {
            p.parse::<ProviderKind>().ok().map(|k| self.topics.raw(k))
        })
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cluster_id", &self.cluster_id)
            .field("partitions", &self.partitions)
            .finish()
    }
}

/// A task's share of `budget` records among `tasks` (see [`Shared::cache_per_task`]).
fn cache_share(budget: usize, tasks: usize) -> usize {
    (budget / tasks.max(1)).max(CACHE_FLOOR.min(budget))
}

/// One record to produce.
pub(super) struct Out<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: Option<i32>,
    pub(super) key: &'a [u8],
    pub(super) value: Option<&'a [u8]>,
    pub(super) headers: &'a [(String, Vec<u8>)],
}

impl Shared {
    /// Produces the records and waits for every acknowledgement; returns their
    /// offsets. Any failure fails the whole call.
    pub(super) fn produce_all(&self, records: &[Out<'_>]) -> Result<Vec<i64>, TaskError> {
        let futures = self.send_all(records)?;
        self.acknowledged(futures)
    }

    /// Hands the records to the producer without waiting for their
    /// acknowledgements ([`Shared::acknowledged`] waits).
    pub(super) fn send_all(&self, records: &[Out<'_>]) -> Result<Vec<DeliveryFuture>, TaskError> {
        let mut futures = Vec::with_capacity(records.len());
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec = FutureRecord::to(r.topic).key(r.key).headers(headers);
            if let Some(v) = r.value {
                rec = rec.payload(v);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p);
            }
            let deadline = Instant::now() + self.produce_timeout;
            loop {
                match self.producer.send_result(rec) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        rec = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => {
                        return Err(TaskError::Kafka(format!("produce to {}: {e}", r.topic)));
                    }
                }
            }
        }
        Ok(futures)
    }

    /// Waits for the acknowledgement of every record [`Shared::send_all`]
    /// handed over; returns their offsets. Any failure fails the whole call.
    pub(super) fn acknowledged(&self, futures: Vec<DeliveryFuture>) -> Result<Vec<i64>, TaskError> {
        self.rt.block_on(async {
            let mut offsets = Vec::with_capacity(futures.len());
            for f in futures {
                match f.await {
                    Ok(Ok(d)) => offsets.push(d.offset),
                    Ok(Err((e, _))) => {
                        return Err(TaskError::Kafka(format!("not acknowledged: {e}")));
                    }
                    Err(_) => return Err(TaskError::Kafka("producer went away".into())),
                }
            }
            Ok(offsets)
        })
    }

    pub(super) fn encode<T: storefold_codec::AvroRecord>(&self, v: &T) -> Vec<u8> {
        // Our own records always match their schemas.
        self.codec
            .encode(v, self.framing.format(T::KIND))
            .unwrap_or_else(|e| unreachable!("encoding a {}: {e}", std::any::type_name::<T>()))
    }

    /// Encodes a customer or order projection with its own schema.
    pub(super) fn encode_projection(&self, record: &crate::records::ProjectionRecord) -> Vec<u8> {
        match record {
            crate::records::ProjectionRecord::Customer(c) => self.encode(c),
            crate::records::ProjectionRecord::Order(o) => self.encode(o),
            crate::records::ProjectionRecord::Payout(p) => self.encode(p),
        }
    }
}

/// (low, high) offsets per (topic, partition).
pub type Watermarks = BTreeMap<(String, i32), (i64, i64)>;

/// Low and high watermarks of many partitions in two ListOffsets requests
/// (timestamp -2 = earliest, -1 = latest), instead of a round trip each.
pub fn watermarks<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Watermarks, TaskError> {
    // `Beginning`/`End` carry the raw values -2/-1, which ListOffsets reads as
    // the earliest/latest timestamps.
    let ask = |ts: Offset| -> Result<BTreeMap<(String, i32), i64>, TaskError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition_offset(t, *p, ts)
                .map_err(|e| TaskError::Kafka(e.to_string()))?;
        }
        let out = consumer
            .offsets_for_times(tpl, timeout)
            .map_err(|e| TaskError::Kafka(format!("list offsets: {e}")))?;
        let mut m = BTreeMap::new();
        for e in out.elements() {
            if let Some(err) = e.error().err() {
                return Err(TaskError::Kafka(format!(
                    "list offsets of {}/{}: {err}",
                    e.topic(),
                    e.partition()
                )));
            }
            let v = match e.offset() {
                Offset::Offset(n) => n,
                other => other.to_raw().unwrap_or(-1),
            };
            m.insert((e.topic().to_string(), e.partition()), v);
        }
        Ok(m)
    };
    let low = ask(Offset::Beginning)?;
    let high = ask(Offset::End)?;
    Ok(partitions
        .iter()
        .map(|k| {
            let key = (k.0.clone(), k.1);
            let l = low.get(&key).copied().unwrap_or(0);
            let h = high.get(&key).copied().unwrap_or(-1);
            (key, (l, h))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_budget_is_divided_among_the_tasks_down_to_a_floor() {
        assert_eq!(cache_share(200_000, 0), 200_000, "no task yet: all of it");
        assert_eq!(cache_share(200_000, 1), 200_000);
        assert_eq!(cache_share(200_000, 8), 25_000);
        assert_eq!(cache_share(200_000, 200), 1_000);
        assert_eq!(
            cache_share(200_000, 768),
            260,
            "768 tasks share the setting: 768 x 260 <= 200 000"
        );
        assert_eq!(
            cache_share(200_000, 100_000),
            CACHE_FLOOR,
            "never below the floor"
        );
        assert_eq!(
            cache_share(50, 768),
            50,
            "a budget under the floor is kept as set"
        );
        assert_eq!(cache_share(0, 4), 0);
    }
}
