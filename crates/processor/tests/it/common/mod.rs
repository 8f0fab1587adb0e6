//! What the processor's tests share: a broker with storefold's topics, raw
//! events built like the ingest builds them, a processor run to the end of its
//! input, and the state it left on disk.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus::Registry;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{AvroCodec, RawEvent, Verification, WireFormat};
use storefold_core::aggregate::{Customer, Order};
use storefold_core::engine::StateValue;
use storefold_processor::db::{StoreMemory, TaskDb};
use storefold_processor::records::{Family, decode_value};
use storefold_processor::{Mode, Processor, RunOptions, RunSummary};
use storefold_providers::{Headers, ProviderKind, WebhookRequest};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{java_partition, topic_specs};
use storefold_testkit::broker::{MockBroker, send_waiting};
use storefold_testkit::samples::{Sample, signed};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub struct Env {
    pub broker: MockBroker,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
}

/// The park timeout of [`env`]: about a century. The corpora of these tests
/// mix receive times years apart and fold them in any order, and they are
/// compared with the pure fold, which never gives up on a parked event; giving
/// up has a test of its own (`parked.rs`) with the default timeout.
pub const NO_PARK_TIMEOUT_HOURS: u64 = 1_000_000;

/// The operator token of [`env`]'s configuration (an admin token): the query
/// API, `/v1/tenants` and `/metrics` answer 401 without one.
pub const ADMIN_TOKEN: &str = "sft_test-admin-token";

/// A mock cluster with every storefold topic of `partitions` partitions and a
/// configuration pointing at it, state under a temporary directory.
pub fn env(partitions: i32) -> Env {
    env_with(partitions, NO_PARK_TIMEOUT_HOURS, "")
}

/// [`env`] with `processor.park_timeout_hours` and more configuration
/// (`[tenants.…]` sections) appended.
pub fn env_with(partitions: i32, park_timeout_hours: u64, more_toml: &str) -> Env {
    // `RUST_LOG=storefold_processor=debug cargo test …` shows what the tasks do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    // Idempotency keys are kept as long, for the same reason, unless the test
    // sets its own retention.
    let retention = if more_toml.contains("idempotency_retention_hours") {
        String::new()
    } else {
        format!("idempotency_retention_hours = {NO_PARK_TIMEOUT_HOURS}\n")
    };
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\npartitions = {partitions}\n\
         [processor]\nstate_dir = \"{}\"\nbatch_size = 300\ncommit_interval_ms = 100\n\
         park_timeout_hours = {park_timeout_hours}\n{retention}{more_toml}\n\
         [[operator.tokens]]\nname = \"test-admin\"\nsha256 = \"{admin}\"\nadmin = true\n",
        broker.bootstrap(),
        dir.path().join("state").display(),
        admin = storefold_runtime::operator::hash_token(ADMIN_TOKEN),
    );
    let config = Config::from_toml_str(&toml, Vec::new()).expect("test config");
    for spec in topic_specs(&config.kafka, &[]) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("create topic");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    Env {
        broker,
        config,
        dir,
        rt,
    }
}

/// A raw event for `sample`, exactly as the ingest stores it (kept headers,
/// event id from the provider's own description).
pub fn raw_event(tenant: &str, sample: &Sample, received_at: OffsetDateTime) -> RawEvent {
    let req = signed(tenant, sample, received_at);
    let kept = sample.provider.kept_headers();
    let headers: BTreeMap<String, String> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| kept.contains(&k.as_str()))
        .collect();
    let token = req.path.split("token=").nth(1).map(str::to_string);
    let h = Headers::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let inbound = sample
        .provider
        .describe(&WebhookRequest {
            headers: &h,
            body: &req.body,
            url_token: token.as_deref(),
        })
        .expect("describe sample");
    RawEvent {
        event_id: inbound.event_id,
        tenant: tenant.to_string(),
        provider: sample.provider.name().to_string(),
        topic: inbound.topic,
        received_at: (received_at.unix_timestamp_nanos() / 1_000_000) as i64,
        headers,
        body: req.body,
        verification: match sample.provider.scheme() {
            Some(s) => Verification::verified(s),
            None => Verification::unsigned(),
        },
        trace_context: None,
        encryption: None,
        residue: None,
    }
}

/// Produces raw events to their raw topics, keyed and partitioned by tenant.
pub fn produce(config: &Config, events: &[RawEvent]) {
    let codec = AvroCodec::embedded().expect("codec");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let topics = storefold_runtime::kafka::Topics::new(&config.kafka.topic_prefix);
    for e in events {
        let kind: ProviderKind = e.provider.parse().expect("provider");
        let topic = topics.raw(kind);
        let payload = codec.encode(e, WireFormat::SingleObject).expect("encode");
        let p = java_partition(e.tenant.as_bytes(), config.kafka.partitions);
        let rec = BaseRecord::to(&topic)
            .key(e.tenant.as_bytes())
            .payload(&payload)
            .partition(p);
        send_waiting(&producer, rec);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Produces any bytes to a raw topic partition (bad input).
pub fn produce_bytes(config: &Config, topic: &str, partition: i32, key: &[u8], value: &[u8]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::to(topic)
                .key(key)
                .payload(value)
                .partition(partition),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(10)).expect("flush");
}

pub fn options(config: &Config, mode: Mode) -> RunOptions {
    let mut o = storefold_processor::options(config, mode);
    o.exit_when_caught_up = true;
    o
}

/// Runs a processor until it has folded everything; returns its summary and
/// metrics text.
pub fn run(env: &Env, config: &Config, opts: RunOptions) -> (RunSummary, String) {
    let registry = Registry::new();
    let p = Processor::new(config, registry.clone(), env.rt.handle().clone()).expect("processor");
    let summary = p
        .run_blocking(opts, CancellationToken::new())
        .expect("run to the end");
    (summary, storefold_runtime::metrics::encode(&registry))
}

/// Every customer view and order aggregate the tasks hold on disk.
pub fn state(
    state_dir: &Path,
    partitions: i32,
) -> (BTreeMap<String, Customer>, BTreeMap<String, Order>) {
    let mut customers = BTreeMap::new();
    let mut orders = BTreeMap::new();
    let memory = StoreMemory::new(16 << 20);
    for p in 0..partitions {
        let path = state_dir.join(format!("task-{p}"));
        if !path.exists() {
            continue;
        }
        let db = TaskDb::open(&path, &memory, i64::MAX, Arc::new(AtomicI64::new(0)), false)
            .expect("open");
        for (k, v) in db.entries(Family::Aggregates).expect("read") {
            match decode_value(&v).unwrap_or_else(|e| panic!("{k}: {e}")) {
                StateValue::Customer(c) => {
                    customers.insert(
                        format!("{}/{}", c.view.tenant, c.view.customer_id),
                        (*c.view).clone(),
                    );
                }
                StateValue::Order(o) => {
                    let tenant = k.split('/').next().unwrap_or_default().to_string();
                    orders.insert(format!("{tenant}/{}", o.order_id), (*o).clone());
                }
                _ => {}
            }
        }
    }
    (customers, orders)
}

/// The pure fold's customers and orders keyed like [`state`].
pub fn reference(events: &[RawEvent]) -> (BTreeMap<String, Customer>, BTreeMap<String, Order>) {
    let (store, _) = storefold_testkit::history::pure_fold(events);
    let mut customers = BTreeMap::new();
    let mut orders = BTreeMap::new();
    for v in store.records.values() {
        if let StateValue::Customer(c) = v {
            customers.insert(
                format!("{}/{}", c.view.tenant, c.view.customer_id),
                (*c.view).clone(),
            );
        }
    }
    for (k, v) in &store.records {
        if let StateValue::Order(o) = v {
            orders.insert(format!("{}/{}", k.tenant, o.order_id), (**o).clone());
        }
    }
    (customers, orders)
}

/// Value of one metric sample in a text exposition (0 when absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every provider's sample for `tenant` a minute apart from `at` (browser touch
/// included), then `orders` Shopify orders of their own buyers an hour apart.
/// Signed at distinct times: the test signer derives Shopify's event id from the
/// signing time, and two different webhooks must not share an id.
pub fn provider_samples(tenant: &str, at: OffsetDateTime, orders: u64) -> Vec<RawEvent> {
    let mut out = Vec::new();
    for (i, p) in ProviderKind::WEBHOOK
        .iter()
        .chain([ProviderKind::Collect].iter())
        .enumerate()
    {
        out.push(raw_event(
            tenant,
            &storefold_testkit::samples::sample(*p),
            at + time::Duration::minutes(i as i64),
        ));
    }
    for n in 0..orders {
        out.push(raw_event(
            tenant,
            &storefold_testkit::samples::shopify_order(n, &format!("buyer{n}@example.com")),
            at + time::Duration::hours(n as i64 + 1),
        ));
    }
    out
}

/// Serves `processor`'s HTTP (query API, `/ui`, ops endpoints) on a free local
/// port from the environment's runtime; returns its base URL.
pub fn serve_http(env: &Env, processor: &Processor) -> String {
    let listener = env
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = processor.router(Arc::new(std::sync::atomic::AtomicBool::new(true)));
    env.rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}
