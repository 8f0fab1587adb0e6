//! Ingest load benchmark (not a test): the storefold ingest producing to librdkafka's
//! mock cluster against a bare axum handler that answers 200 without work, in one
//! run on this machine.
//!
//! `cargo run --release -p storefold-benches --bin loadgen -- [--seconds N] [--concurrency C]`
//!
//! Prints requests/s and p50/p99 of each at its maximum (closed loop), the ratio,
//! then p50/p99 of each at 80 % of its own maximum rate (open loop). Client and
//! servers share this machine's cores, so the figures are a lower bound for a server
//! with the machine to itself.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use prometheus::Registry;
use storefold_benches::load::{Report, closed_loop, open_loop, prepare, request_pool};
use storefold_ingest::Ingest;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::topic_specs;
use storefold_testkit::broker::MockBroker;
use storefold_testkit::samples;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const TENANT: &str = "bench";

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut seconds = 10u64;
    let mut concurrency = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--concurrency" => {
                concurrency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(concurrency)
            }
            "--bench" => {}
            other => {
                let _ = writeln!(std::io::stderr(), "unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let duration = Duration::from_secs(seconds);
    let broker = MockBroker::start(1);
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 6\n\
         [ingest]\nlisten = \"127.0.0.1:0\"\n\
         [ingest.collect]\nrequests_per_second = 1000000\nburst = 1000000\n{}",
        broker.bootstrap(),
        samples::tenant_toml(TENANT)
    );
    let config = Config::from_toml_str(&toml, Vec::new()).expect("bench config");
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("topic");
    }

    // Servers on their own runtime (2 workers), the client on another.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let (ingest_base, bare_base) = servers.block_on(async {
        let registry = Registry::new();
        let ingest = Ingest::new(&config, &registry).expect("ingest");
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingest_base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(storefold_ingest::serve(
            l,
            ingest,
            registry,
            shutdown.clone(),
        ));
        let bare = Router::new()
            .route(
                "/v1/webhooks/{tenant}/{provider}",
                post(|_b: Bytes| async { "" }),
            )
            .route("/v1/collect/{tenant}", post(|_b: Bytes| async { "" }));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, bare).await });
        (ingest_base, bare_base)
    });
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
        .unwrap();
    let requests = request_pool(TENANT, 2000);
    let bodies: usize = requests.iter().map(|r| r.body.len()).sum();
    let (pool_len, mean_body) = (requests.len(), bodies / requests.len());
    let bare = prepare(&bare_base, &requests);
    let ingest = prepare(&ingest_base, &requests);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "request pool: {} signed requests, mean body {} bytes; {seconds}s per run, {concurrency} clients",
        pool_len, mean_body
    );
    client.block_on(async {
        // Warm up both (connections, producer metadata).
        closed_loop(bare.clone(), concurrency, Duration::from_secs(1)).await;
        closed_loop(ingest.clone(), concurrency, Duration::from_secs(2)).await;
        // The maximum of each: the best of `concurrency`, 2x and 4x as many clients
        // (a server that waits on Kafka needs more requests in flight to be busy).
        let mut bare_max = closed_loop(bare.clone(), concurrency, duration).await;
        let mut ingest_max = closed_loop(ingest.clone(), concurrency, duration).await;
        for factor in [2, 4] {
            let more = closed_loop(bare.clone(), concurrency * factor, duration).await;
            if more.rate() > bare_max.rate() {
                bare_max = more;
            }
            let more = closed_loop(ingest.clone(), concurrency * factor, duration).await;
            if more.rate() > ingest_max.rate() {
                ingest_max = more;
            }
        }
        let workers = concurrency * 2;
        let bare_80 = open_loop(bare.clone(), bare_max.rate() * 0.8, duration, workers).await;
        let ingest_80 =
            open_loop(ingest.clone(), ingest_max.rate() * 0.8, duration, workers).await;
        let _ = writeln!(
            out,
            "{:<28} {:>10} {:>9} {:>9} {:>8}",
            "run", "req/s", "p50 ms", "p99 ms", "errors"
        );
        let row = |out: &mut std::io::StdoutLock<'_>, name: &str, r: &Report| {
            let _ = writeln!(
                out,
                "{name:<28} {:>10.0} {:>9.2} {:>9.2} {:>8}",
                r.rate(),
                r.percentile_ms(0.5),
                r.percentile_ms(0.99),
                r.errors
            );
        };
        row(&mut out, "bare axum, max", &bare_max);
        row(&mut out, "ingest + mock Kafka, max", &ingest_max);
        row(&mut out, "bare axum, 80% of its max", &bare_80);
        row(&mut out, "ingest, 80% of its max", &ingest_80);
        let _ = writeln!(
            out,
            "ingest/bare throughput ratio: {:.2} (target >= 0.5); ingest p99 at 80%: {:.2} ms (target <= 20 ms)",
            ingest_max.rate() / bare_max.rate(),
            ingest_80.percentile_ms(0.99)
        );
    });
    shutdown.cancel();
    drop(servers);
}
