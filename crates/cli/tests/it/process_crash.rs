//! The crash test of the commit protocol: `storefold process` killed with
//! SIGKILL at random moments and at every step of the protocol (failpoints),
//! restarted, once joined by a second instance with an empty state dir that
//! takes tasks over. At the end every aggregate equals the pure fold of the
//! raw log and the newest projection of every key equals an uninterrupted run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{AvroCodec, CustomerProjection, OrderProjection, RawEvent, WireFormat};
use storefold_core::aggregate::{Customer, Order};
use storefold_core::engine::StateValue;
use storefold_processor::db::{StoreMemory, TaskDb};
use storefold_processor::records::{Family, decode_value};
use storefold_providers::ProviderKind;
use storefold_runtime::kafka::{Topics, java_partition};
use storefold_scenario::Rng;
use storefold_testkit::broker::{BrokerProcess, read_topic, send_waiting};
use storefold_testkit::history::{HistorySpec, history, pure_fold};

/// Enough partitions that no partition of any topic passes the mock cluster's
/// ~5 MiB cap (checked at the end: every log start offset is still 0).
const PARTITIONS: i32 = 48;
const FAILPOINTS: [&str; 8] = [
    "after_fence",
    "after_changelog",
    "after_marker",
    "after_state",
    "after_outbox",
    "after_outbox_deleted",
    "after_offsets",
    // Last: a restore is only long enough to be interrupted once the changelog
    // holds a good part of the history.
    "mid_restore",
];

struct Cluster {
    broker: BrokerProcess,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// The processor's configuration. Like idempotency keys, parked events are
    /// kept for ever (a century): the history delivers some Shopify orders weeks
    /// after their payments (held back until after their refunds and disputes),
    /// which the default `park_timeout_hours` rightly gives up on, while the
    /// pure fold this test compares with never does. Giving up has its own test
    /// (crates/processor/tests/it/parked.rs).
    fn config(&self, prefix: &str, state: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{prefix}{state}.toml"));
        let toml = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ntopic_prefix = \"{prefix}\"\npartitions = {PARTITIONS}\n\
             [processor]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nbatch_size = 2000\ncommit_interval_ms = 1000\n\
             idempotency_retention_hours = 1000000\npark_timeout_hours = 1000000\n[log]\nlevel = \"warn,librdkafka=error,rdkafka=error\"\n\
             [kafka.properties]\n# a killed member leaves the group quickly\n\
             \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
             \"max.poll.interval.ms\" = \"20000\"\n",
            self.broker.bootstrap(),
            self.dir.path().join(format!("{prefix}{state}")).display()
        );
        std::fs::write(&path, toml).expect("write config");
        path
    }

    fn state_dir(&self, prefix: &str, state: &str) -> PathBuf {
        self.dir.path().join(format!("{prefix}{state}"))
    }

    fn create_topics(&mut self, prefix: &str) {
        let topics = Topics::new(prefix);
        let mut names: Vec<String> = topics.all_raw().into_iter().map(|(_, t)| t).collect();
        names.extend([
            topics.changelog(),
            topics.customers(),
            topics.orders(),
            topics.payouts(),
            topics.triggers(),
            topics.dlq_processor(),
        ]);
        for n in names {
            self.broker
                .create_topic(&n, PARTITIONS)
                .expect("create topic");
        }
    }
}

/// Kills a spawned processor when dropped (also when the test fails midway).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn spawn(config: &Path, failpoint: Option<String>, exit_when_caught_up: bool) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_storefold"));
    cmd.arg("--config").arg(config).arg("process");
    if exit_when_caught_up {
        cmd.arg("--exit-when-caught-up");
    }
    cmd.env_remove("STOREFOLD_FAILPOINT");
    if let Some(f) = failpoint {
        cmd.env("STOREFOLD_FAILPOINT", f);
    }
    Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn storefold process"),
    )
}

fn produce(bootstrap: &str, prefix: &str, events: &[RawEvent]) {
    let codec = AvroCodec::embedded().expect("codec");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let topics = Topics::new(prefix);
    for e in events {
        let kind: ProviderKind = e.provider.parse().expect("provider");
        let topic = topics.raw(kind);
        let payload = codec.encode(e, WireFormat::SingleObject).expect("encode");
        let rec = BaseRecord::to(&topic)
            .key(e.tenant.as_bytes())
            .payload(&payload)
            .partition(java_partition(e.tenant.as_bytes(), PARTITIONS));
        send_waiting(&producer, rec);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

type Views = (BTreeMap<String, Customer>, BTreeMap<String, Order>);

/// Aggregates and idempotency keys on disk.
fn state(dir: &Path) -> (Views, BTreeSet<String>) {
    let mut customers = BTreeMap::new();
    let mut orders = BTreeMap::new();
    let mut idem = BTreeSet::new();
    let memory = StoreMemory::new(16 << 20);
    for p in 0..PARTITIONS {
        let path = dir.join(format!("task-{p}"));
        if !path.exists() {
            continue;
        }
        let db = TaskDb::open(&path, &memory, i64::MAX, Arc::new(AtomicI64::new(0)), false)
            .expect("open");
        for (k, v) in db.entries(Family::Aggregates).expect("read") {
            match decode_value(&v).expect("decode") {
                StateValue::Customer(c) => {
                    customers.insert(
                        format!("{}/{}", c.view.tenant, c.view.customer_id),
                        (*c.view).clone(),
                    );
                }
                StateValue::Order(o) => {
                    let tenant = k.split('/').next().unwrap_or_default();
                    orders.insert(format!("{tenant}/{}", o.order_id), (*o).clone());
                }
                _ => {}
            }
        }
        idem.extend(db.keys(Family::Idempotency).expect("read"));
    }
    ((customers, orders), idem)
}

fn reference(events: &[RawEvent]) -> Views {
    let (store, counts) = pure_fold(events);
    assert_eq!(counts.map_errors + counts.fold_errors, 0, "{counts:?}");
    let mut customers = BTreeMap::new();
    let mut orders = BTreeMap::new();
    for (k, v) in &store.records {
        match v {
            StateValue::Customer(c) => {
                customers.insert(
                    format!("{}/{}", c.view.tenant, c.view.customer_id),
                    (*c.view).clone(),
                );
            }
            StateValue::Order(o) => {
                orders.insert(format!("{}/{}", k.tenant, o.order_id), (**o).clone());
            }
            _ => {}
        }
    }
    (customers, orders)
}

/// The newest projection doc of every key of the customers and orders topics.
fn projections(bootstrap: &str, prefix: &str) -> BTreeMap<String, (Option<String>, String)> {
    let codec = AvroCodec::embedded().expect("codec");
    let topics = Topics::new(prefix);
    let mut out = BTreeMap::new();
    for r in read_topic(bootstrap, &topics.customers(), Duration::from_secs(30)) {
        let p: CustomerProjection = codec
            .decode(r.payload.as_deref().expect("value"))
            .expect("decode");
        out.insert(
            format!("c/{}/{}", p.tenant, p.customer_id),
            (p.merged_into, p.doc),
        );
    }
    for r in read_topic(bootstrap, &topics.orders(), Duration::from_secs(30)) {
        let p: OrderProjection = codec
            .decode(r.payload.as_deref().expect("value"))
            .expect("decode");
        out.insert(
            format!("o/{}/{}", p.tenant, p.order_id),
            (p.customer_id, p.doc),
        );
    }
    out
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigkill_at_any_moment_loses_nothing_and_applies_nothing_twice() {
    let mut cluster = Cluster {
        broker: BrokerProcess::start(1),
        dir: tempfile::tempdir().expect("tmp"),
    };
    let bootstrap = cluster.broker.bootstrap().to_string();
    let events = history(&HistorySpec {
        tenants: 240,
        customers_per_tenant: 40,
        events: 50_000,
        duplicate_pct: 3,
        seed: 2026,
    });
    assert!(events.len() >= 50_000);
    let distinct: BTreeSet<(String, String, String)> = events
        .iter()
        .map(|e| (e.tenant.clone(), e.provider.clone(), e.event_id.clone()))
        .collect();

    // The interrupted run.
    cluster.create_topics("crash.");
    let a = cluster.config("crash.", "state-a");
    let b = cluster.config("crash.", "state-b");
    let c = cluster.config("crash.", "state-c");
    // New input before every restart, so that every crash meets work to do.
    let chunks: Vec<&[RawEvent]> = events.chunks(events.len() / 26 + 1).collect();
    let mut rng = Rng::new(7);
    let mut kills = 0;
    let mut failpoint_crashes = 0;
    let mut attempts = 0usize;
    let mut fired: BTreeSet<&str> = BTreeSet::new();
    let mut produced = 0;
    let mut took_over = false;
    let started = Instant::now();
    while kills < 24 {
        if produced < chunks.len() {
            produce(&bootstrap, "crash.", chunks[produced]);
            produced += 1;
        }
        if kills == 12 && !took_over {
            // A second instance with an empty disk joins and takes tasks over.
            took_over = true;
            let mut first = spawn(&a, None, false);
            let mut second = spawn(&b, None, false);
            std::thread::sleep(Duration::from_millis(4000 + rng.below(2000)));
            second.kill().expect("kill");
            first.kill().expect("kill");
            second.wait().expect("wait");
            first.wait().expect("wait");
            kills += 2;
            continue;
        }
        if kills % 2 == 0 {
            // A crash between two steps of the protocol.
            let point = FAILPOINTS[attempts % FAILPOINTS.len()];
            attempts += 1;
            // A restore long enough to be interrupted needs an empty disk: a
            // third instance starts from nothing, dies mid-restore, and is
            // then started again on what it left.
            let config = if point == "mid_restore" { &c } else { &a };
            let nth = if point == "mid_restore" {
                1
            } else {
                1 + rng.below(4)
            };
            let mut child = spawn(config, Some(format!("{point}:{nth}")), false);
            match wait_exit(&mut child, Duration::from_secs(60)) {
                Some(status) => {
                    assert!(
                        !status.success(),
                        "{point}: the process should have aborted"
                    );
                    failpoint_crashes += 1;
                    fired.insert(point);
                }
                None => {
                    child.kill().expect("kill");
                    child.wait().expect("wait");
                }
            }
            if point == "mid_restore" {
                let mut again = spawn(&c, None, false);
                std::thread::sleep(Duration::from_millis(3000 + rng.below(3000)));
                again.kill().expect("kill");
                again.wait().expect("wait");
                kills += 1;
            }
        } else {
            let mut child = spawn(&a, None, false);
            std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
        kills += 1;
        eprintln!(
            "[{:>5.1?}] kill {kills}: {failpoint_crashes} at failpoints so far",
            started.elapsed()
        );
    }
    while produced < chunks.len() {
        produce(&bootstrap, "crash.", chunks[produced]);
        produced += 1;
    }
    let mut last = spawn(&a, None, true);
    let status = wait_exit(&mut last, Duration::from_secs(900)).expect("final run ends");
    assert!(status.success(), "final run: {status}");
    eprintln!(
        "interrupted run: {kills} kills ({failpoint_crashes} at failpoints: {fired:?}) in {:?}",
        started.elapsed()
    );
    assert!(kills >= 20);
    assert!(
        fired.len() >= 6,
        "crashes between the protocol's steps: {fired:?}"
    );

    // The uninterrupted run on the same raw events.
    cluster.create_topics("clean.");
    produce(&bootstrap, "clean.", &events);
    let clean = cluster.config("clean.", "state");
    let mut run = spawn(&clean, None, true);
    let status = wait_exit(&mut run, Duration::from_secs(900)).expect("clean run ends");
    assert!(status.success(), "clean run: {status}");

    // Nothing was dropped by the mock cluster.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut biggest = (String::new(), 0i64);
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .expect("watermarks");
            assert_eq!(
                low,
                0,
                "{}/{} lost its oldest records (log start {low})",
                t.name(),
                p.id()
            );
            if high > biggest.1 {
                biggest = (format!("{}/{}", t.name(), p.id()), high);
            }
        }
    }
    eprintln!(
        "largest partition: {} with {} records",
        biggest.0, biggest.1
    );

    let want = reference(&events);
    let (got, idem) = state(&cluster.state_dir("crash.", "state-a"));
    let lost = distinct
        .iter()
        .filter(|(t, p, id)| !idem.contains(&format!("{t}/idem/{p}:{id}")))
        .count();
    let double: u64 = want
        .1
        .iter()
        .map(|(k, o)| {
            got.1
                .get(k)
                .map_or(0, |g| g.seen.count().saturating_sub(o.seen.count()))
        })
        .sum();
    eprintln!("lost events: {lost}, double-applied events: {double}");
    assert_eq!(lost, 0, "events lost");
    assert_eq!(double, 0, "events applied twice");
    assert_eq!(got.0.len(), want.0.len(), "customers");
    assert_eq!(got.1.len(), want.1.len(), "orders");
    for (k, c) in &want.0 {
        assert_eq!(got.0.get(k), Some(c), "customer {k}");
    }
    for (k, o) in &want.1 {
        assert_eq!(got.1.get(k), Some(o), "order {k}");
    }
    let (clean_state, _) = state(&cluster.state_dir("clean.", "state"));
    assert_eq!(
        clean_state, want,
        "the uninterrupted run folds to the reference too"
    );

    let interrupted = projections(&bootstrap, "crash.");
    let uninterrupted = projections(&bootstrap, "clean.");
    assert_eq!(interrupted.len(), uninterrupted.len(), "projection keys");
    for (k, v) in &uninterrupted {
        assert_eq!(interrupted.get(k), Some(v), "newest projection of {k}");
    }
    let _ = std::io::stderr().flush();
}
