//! Sending the sample through the real HTTP ingest, signed like the providers
//! sign, then waiting for it to be folded and summarising it.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use time::OffsetDateTime;

use super::Access;
use super::summary::summarise;
use super::wait::{wait_folded, wait_sink_caught_up};
use crate::dev_sample::{self, Sample, TENANT};
use crate::roles::Roles;
use crate::webhook_cmd::sign_webhook;

/// Sends the sample, waits until the processor folded all of it, prints the summary.
pub(super) async fn send_and_summarise(
    config: &Config,
    http: SocketAddr,
    access: &Access,
    sample: &Sample,
    roles: &Roles,
    pg_group: Option<&str>,
) -> Result<()> {
    let base = format!("http://{http}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    println!(
        "Sending the sample history to {base} as tenant {TENANT}: {} customers, {} signed \
         requests ({}) …",
        sample.customers.len(),
        sample.posts.len(),
        sample.describe()
    );
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    for post in &sample.posts {
        if roles.folding.is_finished() {
            bail!("the processor stopped while the sample was being sent");
        }
        send(config, &client, &base, post).await?;
    }
    println!(
        "Sent in {:.1} s; waiting for the processor to fold it …",
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    wait_folded(config, roles).await?;
    println!(
        "Folded {:.1} s after the first request.",
        started.elapsed().as_secs_f64()
    );
    if let Some(group) = pg_group {
        wait_sink_caught_up(config, group).await?;
        println!(
            "The PostgreSQL sink wrote every projection {:.1} s after the first request.",
            started.elapsed().as_secs_f64()
        );
    }
    println!();
    summarise(&client, access, sample).await
}

/// Posts one request of the sample, retrying while the ingest answers 429 or
/// 503 (rate limits, Kafka still starting) for up to a minute.
async fn send(
    config: &Config,
    client: &reqwest::Client,
    base: &str,
    post: &dev_sample::Post,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (url, headers, body) = if post.provider == ProviderKind::Collect {
            let origin = config
                .tenants
                .get(TENANT)
                .and_then(|t| t.collect_origins.first().cloned())
                .unwrap_or_default();
            (
                format!("{base}/v1/collect/{TENANT}"),
                vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("origin".to_string(), origin),
                ],
                post.body.clone(),
            )
        } else {
            let secret = config
                .provider(TENANT, post.provider)
                .and_then(|p| p.signing_secret(post.provider))
                .with_context(|| format!("no secret for {}", post.provider))?;
            let s = sign_webhook(
                post.provider,
                TENANT,
                &secret,
                post.topic,
                &post.body,
                OffsetDateTime::now_utc(),
            )?;
            (format!("{base}{}", s.path), s.headers, s.body)
        };
        let mut req = client.post(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {} {}", post.provider, post.topic))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // Touches are rate limited per client; Kafka may be slow to start.
        let retry = status.as_u16() == 429 || status.as_u16() == 503;
        if retry && Instant::now() < deadline {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_millis(250), |s| {
                    Duration::from_millis((s * 1000).min(1000))
                });
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "the ingest refused the sample's {} {}: HTTP {status} {text}",
            post.provider,
            post.topic
        );
    }
}
