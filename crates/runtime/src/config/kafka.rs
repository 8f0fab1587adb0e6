//! `[kafka]`: the brokers, the topic layout and extra librdkafka properties.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// Kafka connection and topic layout.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Prefix of every topic name.
    pub topic_prefix: String,
    /// Partitions of the raw topics and the changelog (they must all agree), and of
    /// the projection topics.
    pub partitions: i32,
    /// Replication factor used by `storefold topics create`.
    pub replication_factor: i32,
    /// `min.insync.replicas` of the created topics (default: 2, or the
    /// replication factor when it is smaller): with `acks=all` a write is
    /// acknowledged only once this many replicas hold it.
    pub min_insync_replicas: Option<i32>,
    /// `retention.ms` of the raw topics; -1 keeps them forever (the log is the
    /// source of truth).
    pub raw_retention_ms: i64,
    /// `retention.ms` of the triggers and dead-letter topics.
    pub events_retention_ms: i64,
    /// Extra librdkafka properties for every client (security: `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: "storefold.".into(),
            partitions: 12,
            replication_factor: 3,
            min_insync_replicas: None,
            raw_retention_ms: -1,
            events_retention_ms: 14 * 24 * 3600 * 1000,
            properties: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("raw_retention_ms", &self.raw_retention_ms)
            .field("events_retention_ms", &self.events_retention_ms)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// The `min.insync.replicas` topics are created with.
    pub fn min_insync(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or_else(|| self.replication_factor.min(2))
    }
}

/// librdkafka properties storefold sets itself and `[kafka.properties]` may
/// not override, with why: exactly-once processing and "nothing acknowledged is
/// lost" rest on them.
pub const RESERVED_KAFKA_PROPERTIES: [(&str, &str); 16] = [
    ("bootstrap.servers", "set kafka.bootstrap_servers instead"),
    (
        "metadata.broker.list",
        "set kafka.bootstrap_servers instead",
    ),
    (
        "acks",
        "storefold produces with acks=all: a record is acknowledged only once every in-sync replica holds it",
    ),
    (
        "request.required.acks",
        "storefold produces with acks=all: a record is acknowledged only once every in-sync replica holds it",
    ),
    (
        "enable.idempotence",
        "storefold's producers are idempotent: a retried produce is never written twice",
    ),
    (
        "enable.gapless.guarantee",
        "storefold's commit protocol decides what a failed produce means",
    ),
    (
        "transactional.id",
        "storefold does not use Kafka transactions (README: exactly once without Kafka transactions)",
    ),
    (
        "partitioner",
        "storefold uses the Java client's murmur2 partitioner so a tenant has the same partition number in every raw topic",
    ),
    (
        "message.timeout.ms",
        "it is ingest.produce_timeout_ms / processor.produce_timeout_ms: a produce not acknowledged by then is final, which the 503 answers and the commit protocol rely on",
    ),
    (
        "delivery.timeout.ms",
        "it is ingest.produce_timeout_ms / processor.produce_timeout_ms: a produce not acknowledged by then is final, which the 503 answers and the commit protocol rely on",
    ),
    (
        "enable.auto.commit",
        "the processor and the sinks commit offsets only after their work is durable",
    ),
    (
        "enable.auto.offset.store",
        "the processor and the sinks commit offsets only after their work is durable",
    ),
    (
        "auto.offset.reset",
        "a position that no longer exists must stop storefold (error), never skip or re-read data silently",
    ),
    (
        "isolation.level",
        "storefold reads what it wrote without transactions; read_uncommitted/read_committed changes are not part of its protocol",
    ),
    (
        "group.id",
        "set processor.group_id or the sink's group_id instead",
    ),
    (
        "partition.assignment.strategy",
        "the processor's tasks need the range assignment (partition p of every raw topic in one task)",
    ),
];

/// Whether a librdkafka property holds a credential (never logged).
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n.ends_with(".key") || n.contains("pem")
}
