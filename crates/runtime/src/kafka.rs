//! Kafka: client configuration, topic names and layout, and topic admin.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use storefold_providers::ProviderKind;

use crate::config::KafkaConfig;

/// The topics of ARCHITECTURE §3 under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `raw.<provider>`: verified webhooks, keyed by tenant.
    pub fn raw(&self, provider: ProviderKind) -> String {
        format!("{}raw.{}", self.prefix, provider.name())
    }

    pub fn changelog(&self) -> String {
        format!("{}changelog", self.prefix)
    }

    pub fn customers(&self) -> String {
        format!("{}customers", self.prefix)
    }

    pub fn orders(&self) -> String {
        format!("{}orders", self.prefix)
    }

    /// `payouts`: each payout with its lines and the orders they belong to.
    pub fn payouts(&self) -> String {
        format!("{}payouts", self.prefix)
    }

    pub fn triggers(&self) -> String {
        format!("{}triggers", self.prefix)
    }

    pub fn dlq_processor(&self) -> String {
        format!("{}dlq.processor", self.prefix)
    }

    /// `keys.raw`: the raw log's data keys (crypto-shredding), compacted.
    pub fn raw_keys(&self) -> String {
        format!("{}keys.raw", self.prefix)
    }

    pub fn dlq_sink(&self, sink: &str) -> String {
        format!("{}dlq.sink.{sink}", self.prefix)
    }

    /// Every raw topic: the ten webhook providers and `collect`.
    pub fn all_raw(&self) -> Vec<(ProviderKind, String)> {
        ProviderKind::WEBHOOK
            .iter()
            .copied()
            .chain([ProviderKind::Collect])
            .map(|p| (p, self.raw(p)))
            .collect()
    }
}

/// How a topic is cleaned up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

impl CleanupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

/// What one topic must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub cleanup: CleanupPolicy,
    /// `retention.ms` for delete topics.
    pub retention_ms: Option<i64>,
    /// `min.insync.replicas`: with `acks=all`, how many replicas must hold a
    /// record before it is acknowledged.
    pub min_insync_replicas: i32,
    /// Part of the co-partitioned group (raw topics and the changelog), whose
    /// partition counts must all agree.
    pub co_partitioned: bool,
}

/// The topics storefold needs, from the configuration: with a dead-letter
/// topic `dlq.sink.<name>` for each of `dlq_sinks`. The sinks are registered
/// in a crate above this one, so callers pass their names
/// (`storefold_sinks::registry::names()`); a caller that runs no sink may pass
/// none.
pub fn topic_specs(kafka: &KafkaConfig, dlq_sinks: &[&str]) -> Vec<TopicSpec> {
    let topics = Topics::new(&kafka.topic_prefix);
    let p = kafka.partitions;
    let mut specs: Vec<TopicSpec> = topics
        .all_raw()
        .into_iter()
        .map(|(_, name)| TopicSpec {
            name,
            partitions: p,
            cleanup: CleanupPolicy::Delete,
            retention_ms: Some(kafka.raw_retention_ms),
            min_insync_replicas: kafka.min_insync(),
            co_partitioned: true,
        })
        .collect();
    specs.push(TopicSpec {
        name: topics.changelog(),
        partitions: p,
        cleanup: CleanupPolicy::Compact,
        retention_ms: None,
        min_insync_replicas: kafka.min_insync(),
        co_partitioned: true,
    });
    // One partition: a reader needs all of it (a key is looked up by id) and
    // it holds one small record per subject.
    specs.push(TopicSpec {
        name: topics.raw_keys(),
        partitions: 1,
        cleanup: CleanupPolicy::Compact,
        retention_ms: None,
        min_insync_replicas: kafka.min_insync(),
        co_partitioned: false,
    });
    for name in [topics.customers(), topics.orders(), topics.payouts()] {
        specs.push(TopicSpec {
            name,
            partitions: p,
            cleanup: CleanupPolicy::Compact,
            retention_ms: None,
            min_insync_replicas: kafka.min_insync(),
            co_partitioned: false,
        });
    }
    let dlqs = dlq_sinks.iter().map(|s| topics.dlq_sink(s));
    for name in [topics.triggers(), topics.dlq_processor()]
        .into_iter()
        .chain(dlqs)
    {
        specs.push(TopicSpec {
            name,
            partitions: p,
            cleanup: CleanupPolicy::Delete,
            retention_ms: Some(kafka.events_retention_ms),
            min_insync_replicas: kafka.min_insync(),
            co_partitioned: false,
        });
    }
    specs
}

/// A librdkafka client configuration with the bootstrap servers and the extra
/// properties (security) of `kafka`.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// The producer settings every storefold producer uses: `acks=all`, idempotence,
/// and the Java client's murmur2 partitioner so a key lands on the same partition
/// number as with any Kafka client.
pub fn producer_config(kafka: &KafkaConfig, delivery_timeout: Duration) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("compression.type", "lz4")
        // A few ms of batching cost little next to a webhook's timeout and save
        // the broker (and this process) a request per record under load.
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            delivery_timeout.as_millis().max(1).to_string(),
        );
    // The operator's properties (security, tuning) come last and win.
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Partition of `key` among `partitions` with the Java client's default partitioner
/// (murmur2, positive, modulo): what `partitioner=murmur2_random` does.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Kafka's murmur2 (seed 0x9747b28c), as in the Java client's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Topic metadata as the broker reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    /// Partition count per existing topic.
    pub topics: BTreeMap<String, i32>,
}

/// Reads the cluster id and every topic's partition count (blocking).
pub fn describe_cluster(kafka: &KafkaConfig, timeout: Duration) -> Result<ClusterView, KafkaError> {
    let consumer: BaseConsumer = client_config(kafka).create()?;
    let md = consumer.fetch_metadata(None, timeout)?;
    let topics = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect();
    Ok(ClusterView {
        cluster_id: consumer.client().fetch_cluster_id(timeout),
        topics,
    })
}

/// What `topics check` found about one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Problem(String),
    /// Something the broker would not tell (e.g. the mock cluster has no
    /// DescribeConfigs): said plainly rather than assumed fine.
    Unverified(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Ok(m) => write!(f, "ok          {m}"),
            Finding::Problem(m) => write!(f, "PROBLEM     {m}"),
            Finding::Unverified(m) => write!(f, "UNVERIFIED  {m}"),
        }
    }
}

/// Compares the cluster with `specs`: existence, partition counts (and that every
/// co-partitioned topic has the same count), then cleanup policies where the broker
/// answers DescribeConfigs.
pub async fn check_topics(
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<Finding>, KafkaError> {
    let kafka_owned = kafka.clone();
    let view = tokio::task::spawn_blocking(move || describe_cluster(&kafka_owned, timeout))
        .await
        .map_err(|_| KafkaError::Canceled)??;
    let mut findings = Vec::new();
    let mut co_counts: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    for spec in specs {
        match view.topics.get(&spec.name) {
            None => findings.push(Finding::Problem(format!(
                "{} does not exist (run `storefold topics create`)",
                spec.name
            ))),
            Some(&n) => {
                if spec.co_partitioned {
                    co_counts.entry(n).or_default().push(&spec.name);
                }
                if n == spec.partitions {
                    findings.push(Finding::Ok(format!("{} has {n} partitions", spec.name)));
                } else {
                    findings.push(Finding::Problem(format!(
                        "{} has {n} partitions, the configuration says {}",
                        spec.name, spec.partitions
                    )));
                }
            }
        }
    }
    if co_counts.len() > 1 {
        let detail: Vec<String> = co_counts
            .iter()
            .map(|(n, names)| format!("{n}: {}", names.join(", ")))
            .collect();
        findings.push(Finding::Problem(format!(
            "raw topics and the changelog must have the same partition count, so a tenant lands on the same partition number everywhere; found {}",
            detail.join("; ")
        )));
    }
    let existing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| view.topics.contains_key(&s.name))
        .collect();
    if !existing.is_empty() {
        findings.extend(check_policies(kafka, &existing, timeout).await);
    }
    Ok(findings)
}

/// What one topic's DescribeConfigs answered: its entries, or the broker's code.
pub type TopicConfig = Result<rdkafka::admin::ConfigResource, RDKafkaErrorCode>;

/// The configuration of each of `topics` as the broker reports it
/// (DescribeConfigs), in their order. `Err` says why nothing could be asked: no
/// admin client, no answer (librdkafka's mock cluster has no admin API), or no
/// answer within `timeout`.
pub async fn describe_topic_configs(
    kafka: &KafkaConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<TopicConfig>, String> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| format!("cannot create an admin client: {e}"))?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    match tokio::time::timeout(
        timeout + Duration::from_secs(1),
        admin.describe_configs(resources.iter(), &opts),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!(
            "the broker did not answer DescribeConfigs ({e}); librdkafka's mock cluster has no admin API"
        )),
        Err(_) => Err(format!("DescribeConfigs timed out after {timeout:?}")),
    }
}

async fn check_policies(
    kafka: &KafkaConfig,
    specs: &[&TopicSpec],
    timeout: Duration,
) -> Vec<Finding> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let results = match describe_topic_configs(kafka, &names, timeout).await {
        Ok(r) => r,
        Err(why) => {
            return vec![Finding::Unverified(format!(
                "cleanup policies and min.insync.replicas of {} topics: {why}",
                specs.len()
            ))];
        }
    };
    specs
        .iter()
        .zip(results)
        .flat_map(|(spec, result)| {
            let insync = match &result {
                Err(_) => None,
                Ok(resource) => Some(min_insync_finding(
                    spec,
                    resource
                        .get("min.insync.replicas")
                        .and_then(|e| e.value.as_deref()),
                )),
            };
            std::iter::once(policy_finding(spec, result)).chain(insync)
        })
        .collect()
}

/// What `topics check` says of a topic's `min.insync.replicas` (as the broker
/// reported it, if it did).
pub fn min_insync_finding(spec: &TopicSpec, reported: Option<&str>) -> Finding {
    match reported.map(|v| v.trim().parse::<i32>()) {
        None => Finding::Unverified(format!(
            "min.insync.replicas of {}: not reported",
            spec.name
        )),
        Some(Err(_)) => Finding::Problem(format!(
            "{} has min.insync.replicas={:?}, not a number",
            spec.name,
            reported.unwrap_or_default()
        )),
        Some(Ok(n)) if n == spec.min_insync_replicas => {
            Finding::Ok(format!("{} has min.insync.replicas={n}", spec.name))
        }
        Some(Ok(n)) => Finding::Problem(format!(
            "{} has min.insync.replicas={n}, the configuration says {} (kafka.min_insync_replicas): \
             with acks=all an acknowledged record may be on fewer replicas than configured{}",
            spec.name,
            spec.min_insync_replicas,
            if n < spec.min_insync_replicas {
                ""
            } else {
                ", or no write succeeds while replicas are down"
            }
        )),
    }
}

fn policy_finding(spec: &TopicSpec, result: TopicConfig) -> Finding {
    match result {
        Err(code) => Finding::Unverified(format!(
            "cleanup.policy of {}: DescribeConfigs failed ({code:?})",
            spec.name
        )),
        Ok(resource) => match resource.get("cleanup.policy").and_then(|e| e.value.clone()) {
            None => Finding::Unverified(format!("cleanup.policy of {}: not reported", spec.name)),
            Some(policy) if policy == spec.cleanup.as_str() => {
                Finding::Ok(format!("{} has cleanup.policy={policy}", spec.name))
            }
            Some(policy) => Finding::Problem(format!(
                "{} has cleanup.policy={policy}, must be {}",
                spec.name,
                spec.cleanup.as_str()
            )),
        },
    }
}

/// What `topics create` did with one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    Created(String),
    AlreadyExists(String),
}

/// Creates the topics of `specs` with their partition counts and configs. Topics
/// that exist are left alone (`check_topics` says whether they fit).
pub async fn create_topics(
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<Created>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    let retention: Vec<Option<String>> = specs
        .iter()
        .map(|s| s.retention_ms.map(|r| r.to_string()))
        .collect();
    let min_insync: Vec<String> = specs
        .iter()
        .map(|s| s.min_insync_replicas.to_string())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .zip(&min_insync)
        .map(|((s, r), m)| {
            let mut t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            )
            .set("cleanup.policy", s.cleanup.as_str())
            .set("min.insync.replicas", m);
            if let Some(r) = r {
                t = t.set("retention.ms", r);
            }
            if s.co_partitioned && s.cleanup == CleanupPolicy::Compact {
                // The changelog: a superseded committed value must outlive any
                // orphan record that still has to be repaired (ARCHITECTURE §5.5).
                t = t.set("min.compaction.lag.ms", "3600000");
                // Deletes are tombstones: a processor whose store has not
                // followed the changelog for this long rebuilds it
                // (storefold_processor::task STALE_AFTER is below it).
                t = t.set("delete.retention.ms", "86400000");
            }
            t
        })
        .collect();
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = match tokio::time::timeout(
        timeout + Duration::from_secs(1),
        admin.create_topics(new_topics.iter(), &opts),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => return Err(KafkaError::AdminOp(RDKafkaErrorCode::RequestTimedOut)),
    };
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(name) => out.push(Created::Created(name)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push(Created::AlreadyExists(name))
            }
            Err((name, code)) => {
                return Err(KafkaError::AdminOpCreation(format!(
                    "creating {name} failed: {code:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// A consumed record's headers as owned (name, value) pairs (a header without a
/// value gives an empty one), as dead letters and tests carry them on.
pub fn owned_headers<M: rdkafka::message::Message>(m: &M) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers as _;
    m.headers()
        .map(|h| {
            h.iter()
                .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's own UtilsTest / DefaultPartitionerTest.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
        // The partition is the positive hash modulo the partition count.
        assert_eq!(java_partition(b"foobar", 7), 1_357_151_166 % 7);
    }

    #[test]
    fn topic_layout_follows_the_prefix() {
        let kafka = KafkaConfig {
            topic_prefix: "sf.".into(),
            partitions: 6,
            ..KafkaConfig::default()
        };
        let specs = topic_specs(&kafka, &["postgres", "hubspot", "webhook"]);
        // One raw topic per registered provider (collect included).
        let raw = ProviderKind::ALL.len();
        // Raw topics, the changelog, customers, orders and payouts,
        // keys.raw, triggers and dlq.processor, one dead-letter topic per sink.
        assert_eq!(specs.len(), raw + 1 + 3 + 1 + 2 + 3);
        assert_eq!(
            topic_specs(&kafka, &[]).len(),
            raw + 1 + 3 + 1 + 2,
            "no sink, no sink dead-letter topic"
        );
        let keys = specs.iter().find(|s| s.name == "sf.keys.raw").unwrap();
        assert_eq!(keys.cleanup, CleanupPolicy::Compact);
        assert_eq!(keys.partitions, 1);
        assert!(!keys.co_partitioned);
        let dlq = specs
            .iter()
            .find(|s| s.name == "sf.dlq.sink.hubspot")
            .unwrap();
        assert_eq!(dlq.cleanup, CleanupPolicy::Delete);
        assert!(!dlq.co_partitioned);
        assert!(
            specs.iter().all(
                |s| s.name.starts_with("sf.") && (s.partitions == 6 || s.name == "sf.keys.raw")
            )
        );
        let changelog = specs.iter().find(|s| s.name == "sf.changelog").unwrap();
        assert_eq!(changelog.cleanup, CleanupPolicy::Compact);
        assert!(changelog.co_partitioned);
        let raw = specs.iter().find(|s| s.name == "sf.raw.collect").unwrap();
        assert_eq!(raw.cleanup, CleanupPolicy::Delete);
        assert_eq!(raw.retention_ms, Some(-1));
    }
}
