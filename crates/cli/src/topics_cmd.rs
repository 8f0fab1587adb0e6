//! `storefold topics create|check`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Created, Finding, check_topics, create_topics, topic_specs};

use crate::Failed;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create every topic with its partition count and cleanup policy (existing
    /// topics are left alone), then check them.
    Create {
        /// Seconds to wait for the broker.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Check that every topic exists with the configured partition count, that the
    /// raw topics and the changelog agree on it, and (where the broker answers
    /// DescribeConfigs) that cleanup policies are right. Exits 2 on a problem.
    Check {
        /// Also fail (exit 3) when something could not be verified.
        #[arg(long)]
        strict: bool,
        /// Seconds to wait for the broker.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

pub(crate) async fn run(config: &Config, command: TopicsCommand) -> Result<()> {
    let specs = topic_specs(&config.kafka, &storefold_sinks::registry::names());
    let mut out = std::io::stdout().lock();
    let (strict, timeout) = match command {
        TopicsCommand::Create { timeout } => {
            let timeout = Duration::from_secs(timeout);
            let created = create_topics(&config.kafka, &specs, timeout)
                .await
                .with_context(|| {
                    format!(
                        "creating topics on {} (a broker without the CreateTopics admin API, such as librdkafka's mock cluster, needs its topics created through its own tooling)",
                        config.kafka.bootstrap_servers
                    )
                })?;
            for c in created {
                match c {
                    Created::Created(name) => writeln!(out, "created     {name}")?,
                    Created::AlreadyExists(name) => writeln!(out, "exists      {name}")?,
                }
            }
            (false, timeout)
        }
        TopicsCommand::Check { strict, timeout } => (strict, Duration::from_secs(timeout)),
    };
    let findings = check_topics(&config.kafka, &specs, timeout)
        .await
        .with_context(|| format!("reading metadata from {}", config.kafka.bootstrap_servers))?;
    let (mut ok, mut problems, mut unverified) = (0, 0, 0);
    for f in &findings {
        writeln!(out, "{f}")?;
        match f {
            Finding::Ok(_) => ok += 1,
            Finding::Problem(_) => problems += 1,
            Finding::Unverified(_) => unverified += 1,
        }
    }
    let summary = format!("{ok} ok, {problems} problems, {unverified} not verified");
    writeln!(out, "{summary}")?;
    if problems > 0 {
        return Err(Failed(2, format!("topics check failed: {summary}")).into());
    }
    if strict && unverified > 0 {
        return Err(Failed(
            3,
            format!("topics check (strict) could not verify everything: {summary}"),
        )
        .into());
    }
    Ok(())
}
