//! A load generator for the HTTP ingest: a pool of signed requests in a realistic
//! provider mix, a closed loop (N clients back to back: the maximum rate) and an
//! open loop (a fixed arrival rate, latency measured from each request's scheduled
//! start so a stalled server cannot hide its queueing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use storefold_providers::ProviderKind;
use storefold_testkit::samples::{self, Sample, SignedRequest};
use time::OffsetDateTime;

/// The mix: (provider, share in percent). Stores and payments dominate; trackers,
/// helpdesks and touches follow.
pub const MIX: &[(ProviderKind, u32)] = &[
    (ProviderKind::Shopify, 35),
    (ProviderKind::Stripe, 20),
    (ProviderKind::Adyen, 5),
    (ProviderKind::Paypal, 5),
    (ProviderKind::WooCommerce, 5),
    (ProviderKind::Aftership, 10),
    (ProviderKind::Easypost, 3),
    (ProviderKind::Shippo, 2),
    (ProviderKind::Zendesk, 5),
    (ProviderKind::Gorgias, 2),
    (ProviderKind::Collect, 8),
];

/// `size` requests for `tenant` following [`MIX`], signed now with the testkit's
/// secrets (timestamped schemes accept them for five minutes). Shopify orders are
/// all distinct.
pub fn request_pool(tenant: &str, size: usize) -> Vec<SignedRequest> {
    let now = OffsetDateTime::now_utc();
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mut pool = Vec::with_capacity(size);
    let mut n = 0u64;
    for i in 0..size {
        let slot = (i as u32 * 7919) % total;
        let mut acc = 0;
        let provider = MIX
            .iter()
            .find(|(_, w)| {
                acc += w;
                slot < acc
            })
            .map_or(ProviderKind::Shopify, |(p, _)| *p);
        let sample: Sample = if provider == ProviderKind::Shopify {
            n += 1;
            samples::shopify_order(n, &format!("buyer{}@example.com", n % 500))
        } else {
            samples::sample(provider)
        };
        pool.push(samples::signed(tenant, &sample, now));
    }
    pool
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub completed: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Sorted latencies in microseconds.
    pub latencies_us: Vec<u64>,
}

impl Report {
    /// Joins client tasks that each return (latencies in µs, error count).
    async fn collect(mut tasks: tokio::task::JoinSet<(Vec<u64>, u64)>, started: Instant) -> Report {
        let mut latencies_us = Vec::new();
        let mut errors = 0;
        while let Some(r) = tasks.join_next().await {
            let (lat, e) = r.expect("client task");
            latencies_us.extend(lat);
            errors += e;
        }
        let elapsed = started.elapsed();
        latencies_us.sort_unstable();
        Report {
            completed: latencies_us.len() as u64 - errors,
            errors,
            elapsed,
            latencies_us,
        }
    }

    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let idx = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[idx] as f64 / 1000.0
    }
}

/// A request ready to send many times without re-parsing URL or headers.
#[derive(Clone, Debug)]
pub struct Prepared {
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

/// Parses URL and headers of every request of `pool` once, against `base`.
pub fn prepare(base: &str, pool: &[SignedRequest]) -> Arc<Vec<Prepared>> {
    Arc::new(
        pool.iter()
            .map(|r| {
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &r.headers {
                    headers.append(
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                        reqwest::header::HeaderValue::from_str(v).expect("header value"),
                    );
                }
                Prepared {
                    url: reqwest::Url::parse(&format!("{base}{}", r.path)).expect("URL"),
                    headers,
                    body: bytes::Bytes::from(r.body.clone()),
                }
            })
            .collect(),
    )
}

async fn post(client: &reqwest::Client, req: &Prepared) -> bool {
    let sent = client
        .post(req.url.clone())
        .headers(req.headers.clone())
        .body(req.body.clone())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let ok = r.status().is_success();
            // Read the answer so the connection goes back to the pool.
            let _ = r.bytes().await;
            ok
        }
        Err(_) => false,
    }
}

/// `concurrency` clients posting back to back for `duration`.
pub async fn closed_loop(
    pool: Arc<Vec<Prepared>>,
    concurrency: usize,
    duration: Duration,
) -> Report {
    let client = storefold_testkit::http_client();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let (client, pool) = (client.clone(), pool.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = post(&client, &pool[i % pool.len()]).await;
                lat.push(t.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
                i += concurrency;
            }
            (lat, errors)
        });
    }
    Report::collect(tasks, started).await
}

/// Requests arriving at `rate` per second for `duration`, sent by up to `workers`
/// connections; each is measured from its scheduled start, so requests that wait
/// for a free connection count their wait (no coordinated omission).
pub async fn open_loop(
    pool: Arc<Vec<Prepared>>,
    rate: f64,
    duration: Duration,
    workers: usize,
) -> Report {
    let client = storefold_testkit::http_client();
    let started = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (client, pool, next) = (client.clone(), pool.clone(), next.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let scheduled = started + interval.mul_f64(i as f64);
                if scheduled > Instant::now() {
                    tokio::time::sleep_until(scheduled.into()).await;
                }
                let ok = post(&client, &pool[i as usize % pool.len()]).await;
                lat.push(scheduled.elapsed().as_micros() as u64);
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        });
    }
    Report::collect(tasks, started).await
}
