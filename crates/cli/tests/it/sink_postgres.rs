//! `storefold sink postgres` as a process: killed with SIGKILL mid-run several
//! times while the projection topics fill, restarted each time, and at the end
//! PostgreSQL holds exactly the newest `(generation, version)` of every key and
//! every trigger once. Also: a sink whose section is missing refuses to start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use storefold_codec::{AvroCodec, CustomerProjection, OrderProjection, Trigger, WireFormat};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, producer_config, topic_specs};
use storefold_scenario::Rng;
use storefold_testkit::broker::{MockBroker, send_waiting};
use storefold_testkit::postgres::PgServer;

/// A running sink, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path, extra: &[&str]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(config)
        .args(["sink", "postgres"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start storefold sink postgres");
    Proc(child)
}

fn write_config(dir: &Path, bootstrap: &str, pg_url: &str) -> PathBuf {
    let path = dir.join("sink.toml");
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = 6\n\
         [kafka.properties]\n# a killed member leaves the group quickly\n\
         \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [sinks]\nlisten = \"127.0.0.1:0\"\nretry_initial_ms = 50\nretry_max_ms = 500\n\
         [sinks.postgres]\nurl = \"{pg_url}\"\nbatch_size = 150\nlinger_ms = 20\n\
         [log]\nlevel = \"warn,librdkafka=error,rdkafka=error\"\n"
    );
    std::fs::write(&path, toml).expect("write config");
    path
}

/// What a key's newest projection must leave in its row.
type Newest = BTreeMap<String, (i64, i64, String)>;

struct History {
    waves: Vec<Vec<(String, String, Vec<u8>)>>,
    customers: Newest,
    orders: Newest,
    triggers: BTreeSet<String>,
}

/// Customers and orders in several versions, delivered out of order and twice,
/// some rebuilt by a replay (generation 2, versions from 1 again); triggers
/// delivered twice. Split into waves, each with triggers of its own (so that
/// progress is visible in PostgreSQL).
fn history(topics: &Topics, waves: usize) -> History {
    let codec = AvroCodec::embedded().expect("codec");
    let mut rng = Rng::new(0x5eed_5151);
    let mut records: Vec<(String, String, Vec<u8>, i64, i64)> = Vec::new();
    let mut customers = Newest::new();
    let mut orders = Newest::new();
    for i in 0..240 {
        let id = format!("c{i:03}");
        let mut versions: Vec<(i64, i64)> = (1..=6).map(|v| (1, v)).collect();
        if i % 5 == 0 {
            versions.extend((1..=2).map(|v| (2, v)));
        }
        for &(generation, version) in &versions {
            let p = CustomerProjection {
                tenant: "acme".into(),
                customer_id: id.clone(),
                generation,
                version,
                email: Some(format!("{id}@example.com")),
                phone: None,
                redacted: false,
                merged_into: None,
                updated_at: 1_700_000_000_000 + version,
                doc: format!(r#"{{"g": {generation}, "v": {version}}}"#),
                view: None,
            };
            let value = codec.encode(&p, WireFormat::SingleObject).unwrap();
            records.push((
                topics.customers(),
                format!("acme/{id}"),
                value,
                generation,
                version,
            ));
        }
        let newest = *versions.iter().max().unwrap();
        customers.insert(
            id,
            (
                newest.0,
                newest.1,
                format!(r#"{{"g": {}, "v": {}}}"#, newest.0, newest.1),
            ),
        );
    }
    for i in 0..120 {
        let id = format!("shopify:{i}");
        for version in 1..=4 {
            let p = OrderProjection {
                tenant: "acme".into(),
                order_id: id.clone(),
                customer_id: Some(format!("c{:03}", i % 240)),
                generation: 1,
                version,
                status: "paid".into(),
                updated_at: 1_700_000_000_000 + version,
                doc: format!(r#"{{"v": {version}}}"#),
                view: None,
            };
            let value = codec.encode(&p, WireFormat::SingleObject).unwrap();
            records.push((topics.orders(), format!("acme/{id}"), value, 1, version));
        }
        orders.insert(id, (1, 4, r#"{"v": 4}"#.to_string()));
    }
    // Out of order, and a fifth of everything delivered twice.
    rng.shuffle(&mut records);
    let dups: Vec<_> = records.iter().filter(|_| rng.chance(20)).cloned().collect();
    records.extend(dups);
    rng.shuffle(&mut records);

    let per_wave = records.len().div_ceil(waves);
    let mut triggers = BTreeSet::new();
    let mut out = Vec::new();
    for (w, chunk) in records.chunks(per_wave).enumerate() {
        let mut wave: Vec<(String, String, Vec<u8>)> = chunk
            .iter()
            .map(|(t, k, v, _, _)| (t.clone(), k.clone(), v.clone()))
            .collect();
        for j in 0..150 {
            let t = Trigger {
                trigger_id: format!("t{w}-{j:03}"),
                tenant: "acme".into(),
                customer_id: format!("c{:03}", j % 240),
                order_id: None,
                kind: "delivered".into(),
                occurred_at: 1_700_000_000_000 + j,
                source_event_id: format!("e{w}-{j}"),
                data: "{}".into(),
            };
            let value = codec.encode(&t, WireFormat::SingleObject).unwrap();
            let rec = (topics.triggers(), format!("acme/{}", t.customer_id), value);
            if j % 4 == 0 {
                wave.push(rec.clone());
            }
            wave.push(rec);
            triggers.insert(t.trigger_id);
        }
        rng.shuffle(&mut wave);
        out.push(wave);
    }
    History {
        waves: out,
        customers,
        orders,
        triggers,
    }
}

fn produce(config: &Config, records: &[(String, String, Vec<u8>)]) {
    let producer: BaseProducer = producer_config(&config.kafka, Duration::from_secs(30))
        .create()
        .expect("producer");
    for (topic, key, value) in records {
        let rec = BaseRecord::to(topic).key(key.as_bytes()).payload(value);
        send_waiting(&producer, rec);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Rows written so far (0 while the tables do not exist yet).
async fn progress(pg: &PgServer) -> i64 {
    let client = pg.client().await;
    client
        .query_one(
            "SELECT ((SELECT count(*) FROM storefold.triggers) \
             + (SELECT coalesce(sum(version), 0) FROM storefold.customers) \
             + (SELECT coalesce(sum(version), 0) FROM storefold.orders))::bigint",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_killed_mid_run_and_restarted_converges_to_the_newest_rows() {
    let broker = MockBroker::start(1);
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), broker.bootstrap(), &pg.url());
    let config = Config::load(&path, Vec::new()).expect("config");
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker.create_topic(&spec.name, spec.partitions).unwrap();
    }
    let topics = Topics::new(&config.kafka.topic_prefix);
    let kills = 3;
    let h = history(&topics, kills + 1);
    let mut rng = Rng::new(7);

    for wave in &h.waves[..kills] {
        produce(&config, wave);
        let before = progress(&pg).await;
        let mut sink = spawn(&path, &[]);
        // Kill once this run wrote something, a random moment later: mid-run,
        // with most of the wave still to write.
        let deadline = Instant::now() + Duration::from_secs(40);
        while progress(&pg).await <= before {
            assert!(Instant::now() < deadline, "the sink made no progress");
            assert!(
                sink.0.try_wait().unwrap().is_none(),
                "the sink exited on its own"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        sink.0.kill().expect("SIGKILL");
        sink.0.wait().unwrap();
    }

    produce(&config, &h.waves[kills]);
    let mut last = spawn(&path, &["--exit-when-idle-ms", "1500"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = last.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the last run did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");

    let client = pg.client().await;
    let rows = |sql: &'static str| {
        let client = &client;
        async move {
            client
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2), r.get(3))))
                .collect::<Newest>()
        }
    };
    let customers =
        rows("SELECT customer_id, generation, version, doc::text FROM storefold.customers").await;
    assert_eq!(customers, h.customers);
    let orders =
        rows("SELECT order_id, generation, version, doc::text FROM storefold.orders").await;
    assert_eq!(orders, h.orders);
    let triggers: Vec<String> = client
        .query("SELECT trigger_id FROM storefold.triggers", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(triggers.len(), h.triggers.len(), "each trigger once");
    assert_eq!(triggers.into_iter().collect::<BTreeSet<_>>(), h.triggers);
    // Nothing was refused: the dead-letter topic stayed empty.
    let dlq = storefold_testkit::broker::read_topic(
        broker.bootstrap(),
        &topics.dlq_sink("postgres"),
        Duration::from_secs(20),
    );
    assert!(dlq.is_empty(), "{} dead letters", dlq.len());
}

#[test]
fn a_sink_without_its_section_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n").unwrap();
    for name in ["postgres", "hubspot", "webhook"] {
        let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
            .arg("--config")
            .arg(&path)
            .args(["sink", name])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("add a [sinks.{name}] section")),
            "{name}: {stderr}"
        );
    }
}
