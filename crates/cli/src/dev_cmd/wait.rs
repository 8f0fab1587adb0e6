//! Waiting for the processor, and the PostgreSQL sink when it runs, to have
//! folded everything the sample wrote.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, client_config};

use super::FOLD_TIMEOUT;
use crate::roles::Roles;

/// Waits until every task's committed position reached the end of every raw
/// partition as it was after the last acknowledged request.
pub(super) async fn wait_folded(config: &Config, roles: &Roles) -> Result<()> {
    let processor = &roles.processor;
    let kafka = config.kafka.clone();
    let raw: Vec<String> = Topics::new(&kafka.topic_prefix)
        .all_raw()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let partitions = processor.shared.partitions;
    let ends = tokio::task::spawn_blocking(move || -> Result<BTreeMap<(String, i32), i64>> {
        let consumer: BaseConsumer = client_config(&kafka)
            .set("group.id", "storefold-dev-probe")
            .set("enable.auto.commit", "false")
            .create()
            .context("a Kafka client")?;
        let mut ends = BTreeMap::new();
        for t in &raw {
            for p in 0..partitions {
                let (_, high) = consumer
                    .fetch_watermarks(t, p, Duration::from_secs(10))
                    .with_context(|| format!("the end of {t}/{p}"))?;
                if high > 0 {
                    ends.insert((t.clone(), p), high);
                }
            }
        }
        Ok(ends)
    })
    .await
    .context("reading the raw topics' ends")??;
    let deadline = Instant::now() + FOLD_TIMEOUT;
    loop {
        if roles.folding.is_finished() {
            bail!("the processor stopped before the sample was folded");
        }
        let done = {
            let owned = processor.owned.read().unwrap_or_else(|e| e.into_inner());
            ends.iter().all(|((topic, p), high)| {
                owned
                    .get(p)
                    .and_then(|db| db.meta().ok().flatten())
                    .and_then(|m| m.positions.get(topic).copied())
                    .is_some_and(|next| next >= *high)
            })
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the processor did not fold the sample within {} s",
                FOLD_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the sink's consumer group committed the end of every projection
/// partition (the processor has folded everything, so those ends are final).
pub(super) async fn wait_sink_caught_up(config: &Config, group: &str) -> Result<()> {
    let kafka = config.kafka.clone();
    let group = group.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let topics = Topics::new(&kafka.topic_prefix);
        let consumer: BaseConsumer = client_config(&kafka)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .context("a Kafka client")?;
        let mut ends: Vec<(String, i32, i64)> = Vec::new();
        let mut wanted = rdkafka::TopicPartitionList::new();
        for topic in [
            topics.customers(),
            topics.orders(),
            topics.payouts(),
            topics.triggers(),
        ] {
            for p in 0..kafka.partitions {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .with_context(|| format!("the end of {topic}/{p}"))?;
                if high > 0 {
                    wanted.add_partition(&topic, p);
                    ends.push((topic.clone(), p, high));
                }
            }
        }
        let deadline = Instant::now() + FOLD_TIMEOUT;
        loop {
            let committed = consumer
                .committed_offsets(wanted.clone(), Duration::from_secs(10))
                .context("the PostgreSQL sink's committed offsets")?;
            let behind = ends.iter().any(|(topic, p, high)| {
                let at = committed
                    .find_partition(topic, *p)
                    .and_then(|c| c.offset().to_raw());
                at.unwrap_or(-1) < *high
            });
            if !behind {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the PostgreSQL sink did not write the sample within {} s (see its log \
                     lines and storefold_sink_* on /metrics)",
                    FOLD_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .context("waiting for the PostgreSQL sink")?
}
