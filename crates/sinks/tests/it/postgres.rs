//! The PostgreSQL sink against a real PostgreSQL (Debian's server, started per
//! test) and the real Kafka protocol (librdkafka's mock cluster in this process):
//! projections written and readable, never moved backwards by old or repeated
//! deliveries, superseded by a newer generation, triggers appended once, refused
//! rows dead-lettered while the rest is written, and a PostgreSQL outage retried
//! until everything is written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus::Registry;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use storefold_codec::{
    AvroCodec, CustomerProjection, OrderProjection, PayoutProjection, RECEIVED_AT_HEADER, Trigger,
    WireFormat,
};
use storefold_core::engine::{PayoutLineView, PayoutOrder, PayoutView};
use storefold_core::event::{PayoutLineKind, PayoutStatus};
use storefold_core::{Currency, Money, MoneyBag};
use storefold_runtime::config::Config;
use storefold_runtime::kafka::{Topics, producer_config, topic_specs};
use storefold_sinks::postgres::PostgresSink;
use storefold_sinks::postgres::PostgresSinkConfig;
use storefold_sinks::runner::{RunOptions, RunSummary, run};
use storefold_sinks::{Sink, SinkError, Stream};
use storefold_testkit::broker::{MockBroker, read_topic};
use storefold_testkit::postgres::PgServer;
use tokio_util::sync::CancellationToken;

struct Env {
    broker: MockBroker,
    pg: PgServer,
    config: Config,
    topics: Topics,
    codec: AvroCodec,
}

/// A mock cluster with storefold's topics, a PostgreSQL, and a configuration.
/// The session timeout is short because the mock cluster, after a member left,
/// waits that long before a new member of the group gets its assignment.
fn env(batch_size: usize) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let broker = MockBroker::start(1);
    let pg = PgServer::start();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{}\"\npartitions = 3\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n[sinks]\nretry_initial_ms = 50\nretry_max_ms = 400\n\
         circuit_failure_threshold = 3\ncircuit_open_ms = 500\n\
         [sinks.postgres]\nurl = \"{}\"\nbatch_size = {batch_size}\nlinger_ms = 50\n",
        broker.bootstrap(),
        pg.url()
    );
    let config = Config::from_toml_str(&toml, Vec::new()).expect("test config");
    for spec in topic_specs(&config.kafka, &storefold_sinks::registry::names()) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("create topic");
    }
    Env {
        topics: Topics::new(&config.kafka.topic_prefix),
        broker,
        pg,
        config,
        codec: AvroCodec::embedded().expect("codec"),
    }
}

fn customer(id: &str, generation: i64, version: i64) -> CustomerProjection {
    CustomerProjection {
        tenant: "acme".into(),
        customer_id: id.into(),
        generation,
        version,
        email: Some(format!("{id}@example.com")),
        phone: Some("+14155550100".into()),
        redacted: false,
        merged_into: None,
        updated_at: 1_700_000_000_000 + version,
        doc: format!(r#"{{"customer_id":"{id}","generation":{generation},"version":{version}}}"#),
        view: None,
    }
}

fn order(id: &str, customer: &str, generation: i64, version: i64) -> OrderProjection {
    OrderProjection {
        tenant: "acme".into(),
        order_id: id.into(),
        customer_id: Some(customer.into()),
        generation,
        version,
        status: "paid".into(),
        updated_at: 1_700_000_100_000 + version,
        doc: format!(r#"{{"order_id":"{id}","version":{version}}}"#),
        view: None,
    }
}

fn trigger(id: &str, customer: &str) -> Trigger {
    Trigger {
        trigger_id: id.into(),
        tenant: "acme".into(),
        customer_id: customer.into(),
        order_id: Some("shopify:1".into()),
        kind: "delivered".into(),
        occurred_at: 1_700_000_200_000,
        source_event_id: format!("evt-{id}"),
        data: r#"{"carrier":"ups"}"#.into(),
    }
}

/// One record to produce: topic, key, value.
type Out = (String, String, Vec<u8>);

impl Env {
    fn c(&self, p: &CustomerProjection) -> Out {
        (
            self.topics.customers(),
            format!("{}/{}", p.tenant, p.customer_id),
            self.codec.encode(p, WireFormat::SingleObject).unwrap(),
        )
    }

    fn o(&self, p: &OrderProjection) -> Out {
        (
            self.topics.orders(),
            format!("{}/{}", p.tenant, p.order_id),
            self.codec.encode(p, WireFormat::SingleObject).unwrap(),
        )
    }

    fn p(&self, p: &PayoutProjection) -> Out {
        (
            self.topics.payouts(),
            format!("{}/{}:{}", p.tenant, p.provider, p.payout_id),
            self.codec.encode(p, WireFormat::SingleObject).unwrap(),
        )
    }

    fn t(&self, p: &Trigger) -> Out {
        (
            self.topics.triggers(),
            format!("{}/{}", p.tenant, p.customer_id),
            self.codec.encode(p, WireFormat::SingleObject).unwrap(),
        )
    }

    /// Produces in order (a key always lands on the same partition), with a
    /// receive-time header, and waits for every acknowledgement.
    async fn produce(&self, records: &[Out]) {
        let producer: FutureProducer = producer_config(&self.config.kafka, Duration::from_secs(10))
            .create()
            .expect("producer");
        let received = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 1500)
            .to_string();
        for (topic, key, value) in records {
            let headers = OwnedHeaders::new().insert(Header {
                key: RECEIVED_AT_HEADER,
                value: Some(received.as_bytes()),
            });
            producer
                .send(
                    FutureRecord::to(topic)
                        .key(key.as_bytes())
                        .payload(value)
                        .headers(headers),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
        }
    }

    fn options(&self, group: &str, batch_size: usize) -> RunOptions {
        RunOptions {
            group_id: group.into(),
            batch_size,
            linger: Duration::from_millis(50),
            exit_when_idle: Some(Duration::from_millis(700)),
        }
    }

    async fn sink(&self, registry: &Registry) -> PostgresSink {
        let cfg = PostgresSinkConfig::from_config(&self.config)
            .unwrap()
            .unwrap();
        PostgresSink::connect(&cfg, registry)
            .await
            .expect("connect")
    }

    /// Runs the sink until it caught up; returns its summary and metrics.
    async fn run_to_idle(&self, group: &str, batch_size: usize) -> (RunSummary, String) {
        let registry = Registry::new();
        let sink = self.sink(&registry).await;
        let summary = tokio::time::timeout(
            Duration::from_secs(45),
            run(
                sink,
                &self.config,
                self.options(group, batch_size),
                &registry,
                CancellationToken::new(),
            ),
        )
        .await
        .expect("the sink catches up")
        .expect("the sink runs");
        (summary, storefold_runtime::metrics::encode(&registry))
    }

    /// `customer_id -> (generation, version, email, doc)` of tenant acme.
    async fn customers(&self) -> BTreeMap<String, (i64, i64, Option<String>, String)> {
        self.pg
            .query(
                "SELECT customer_id, generation, version, email, doc::text \
                 FROM storefold.customers WHERE tenant = 'acme'",
            )
            .await
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect()
    }
}

/// The value of the first sample of `name` whose labels include `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0.0)
}

fn written(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        "storefold_sink_writes_total",
        &[("sink", "postgres"), ("outcome", outcome)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_are_written_and_readable() {
    let env = env(500);
    let mut redacted = customer("c3", 1, 4);
    redacted.redacted = true;
    redacted.doc = r#"{"customer_id":"c3","redacted":true}"#.into();
    let mut merged = customer("c4", 1, 2);
    merged.merged_into = Some("c1".into());
    let records = vec![
        env.c(&customer("c1", 1, 1)),
        env.c(&customer("c2", 1, 7)),
        env.c(&redacted),
        env.c(&merged),
        env.o(&order("shopify:1", "c1", 1, 3)),
        env.o(&order("shopify:2", "c2", 1, 1)),
        env.t(&trigger("t1", "c1")),
    ];
    env.produce(&records).await;
    let (summary, metrics) = env.run_to_idle("pg-written", 500).await;
    assert_eq!(summary.written, 7);
    assert_eq!(summary.rejected, 0);
    assert_eq!(written(&metrics, "written"), 7.0);
    // Every record carried a receive time: one end-to-end sample each.
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_end_to_end_seconds_count",
            &[("sink", "postgres")]
        ),
        7.0
    );
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_circuit_state",
            &[("sink", "postgres")]
        ),
        0.0
    );

    let rows = env
        .pg
        .query(
            "SELECT customer_id, generation, version, email, phone, redacted, merged_into, \
             (extract(epoch from updated_at) * 1000)::bigint, doc->>'customer_id' \
             FROM storefold.customers ORDER BY customer_id",
        )
        .await;
    type Row = (
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        bool,
        Option<String>,
        i64,
        Option<String>,
    );
    let got: Vec<Row> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            )
        })
        .collect();
    let phone = Some("+14155550100".to_string());
    assert_eq!(
        got,
        vec![
            (
                "c1".into(),
                1,
                1,
                Some("c1@example.com".into()),
                phone.clone(),
                false,
                None,
                1_700_000_000_001,
                Some("c1".into())
            ),
            (
                "c2".into(),
                1,
                7,
                Some("c2@example.com".into()),
                phone.clone(),
                false,
                None,
                1_700_000_000_007,
                Some("c2".into())
            ),
            // Redacted: the contact data is erased even though the projection
            // still carried it.
            (
                "c3".into(),
                1,
                4,
                None,
                None,
                true,
                None,
                1_700_000_000_004,
                Some("c3".into())
            ),
            (
                "c4".into(),
                1,
                2,
                Some("c4@example.com".into()),
                phone,
                false,
                Some("c1".into()),
                1_700_000_000_002,
                Some("c4".into())
            ),
        ]
    );
    let orders: Vec<(String, Option<String>, i64, String)> = env
        .pg
        .query(
            "SELECT order_id, customer_id, version, doc::text FROM storefold.orders \
             WHERE tenant = 'acme' ORDER BY order_id",
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        orders,
        vec![
            (
                "shopify:1".into(),
                Some("c1".into()),
                3,
                r#"{"version": 3, "order_id": "shopify:1"}"#.into()
            ),
            (
                "shopify:2".into(),
                Some("c2".into()),
                1,
                r#"{"version": 1, "order_id": "shopify:2"}"#.into()
            ),
        ]
    );
    let triggers: Vec<(String, String, String, String)> = env
        .pg
        .query("SELECT trigger_id, kind, source_event_id, data->>'carrier' FROM storefold.triggers")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        triggers,
        vec![(
            "t1".into(),
            "delivered".into(),
            "evt-t1".into(),
            "ups".into()
        )]
    );

    // The migrations: recorded once, the indexes of §3 present; a restart runs
    // nothing again.
    let (again, _) = env.run_to_idle("pg-written", 500).await;
    assert_eq!(again.written, 0, "the committed offsets hold");
    let versions: Vec<i32> = env
        .pg
        .query("SELECT version FROM storefold.schema_migrations")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2]);
    let mut indexes: Vec<String> = env
        .pg
        .query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'storefold' AND indexname NOT LIKE '%pkey'")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        vec![
            "CREATE INDEX customers_email ON storefold.customers USING btree (tenant, email)",
            "CREATE INDEX customers_phone ON storefold.customers USING btree (tenant, phone)",
            "CREATE INDEX orders_customer ON storefold.orders USING btree (tenant, customer_id)",
            "CREATE INDEX payout_lines_order ON storefold.payout_lines USING btree (tenant, order_id)",
            "CREATE INDEX triggers_customer ON storefold.triggers USING btree (tenant, customer_id, occurred_at)",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_and_repeated_deliveries_never_move_a_row_backwards() {
    let env = env(500);
    let mut newest = customer("c1", 1, 5);
    newest.doc = r#"{"the":"newest"}"#.into();
    env.produce(&[env.c(&newest), env.c(&customer("c2", 1, 2))])
        .await;
    let (first, _) = env.run_to_idle("pg-backwards", 500).await;
    assert_eq!(first.written, 2);

    // Older versions and a repeat of the newest (with another doc, which must
    // not win either), each written on its own (batch size 1) so that the
    // table's guard decides, not the runner's newest-per-key.
    let mut repeat = customer("c1", 1, 5);
    repeat.doc = r#"{"the":"repeat"}"#.into();
    env.produce(&[
        env.c(&customer("c1", 1, 3)),
        env.c(&repeat),
        env.c(&customer("c1", 1, 4)),
        env.c(&customer("c2", 1, 1)),
    ])
    .await;
    let (second, metrics) = env.run_to_idle("pg-backwards", 1).await;
    assert_eq!(second.written, 4, "handed to PostgreSQL one by one");
    assert_eq!(second.batches, 4);
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_postgres_rows_total",
            &[("table", "customers"), ("outcome", "skipped")]
        ),
        4.0
    );
    let rows = env.customers().await;
    assert_eq!(
        rows["c1"],
        (
            1,
            5,
            Some("c1@example.com".into()),
            r#"{"the": "newest"}"#.into()
        )
    );
    assert_eq!(rows["c2"].1, 2);

    // Out of order within one batch: the runner keeps the newest per key.
    env.produce(&[
        env.c(&customer("c1", 1, 9)),
        env.c(&customer("c1", 1, 7)),
        env.c(&customer("c1", 1, 8)),
        env.c(&customer("c2", 1, 3)),
    ])
    .await;
    let (third, metrics) = env.run_to_idle("pg-backwards", 500).await;
    assert_eq!(third.written, 2);
    assert_eq!(written(&metrics, "superseded"), 2.0);
    let rows = env.customers().await;
    assert_eq!(rows["c1"].1, 9);
    assert_eq!(rows["c2"].1, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_generation_supersedes_even_with_a_lower_version() {
    let env = env(500);
    env.produce(&[
        env.c(&customer("c1", 1, 40)),
        env.o(&order("shopify:1", "c1", 1, 12)),
    ])
    .await;
    env.run_to_idle("pg-generation", 500).await;
    // A replay: generation 2 starts its versions again from 1.
    env.produce(&[
        env.c(&customer("c1", 2, 1)),
        env.o(&order("shopify:1", "c1", 2, 1)),
    ])
    .await;
    env.run_to_idle("pg-generation", 1).await;
    // A late delivery of the old generation does not bring it back.
    env.produce(&[
        env.c(&customer("c1", 1, 41)),
        env.o(&order("shopify:1", "c1", 1, 13)),
    ])
    .await;
    let (last, _) = env.run_to_idle("pg-generation", 1).await;
    assert_eq!(last.written, 2);
    let rows = env.customers().await;
    assert_eq!((rows["c1"].0, rows["c1"].1), (2, 1));
    assert_eq!(
        rows["c1"].3,
        r#"{"version": 1, "generation": 2, "customer_id": "c1"}"#
    );
    let order: Vec<(i64, i64)> = env
        .pg
        .query("SELECT generation, version FROM storefold.orders")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(order, vec![(2, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_are_appended_once() {
    let env = env(500);
    env.produce(&[
        env.t(&trigger("t1", "c1")),
        env.t(&trigger("t2", "c1")),
        env.t(&trigger("t1", "c1")),
    ])
    .await;
    let (first, metrics) = env.run_to_idle("pg-triggers", 500).await;
    assert_eq!(first.written, 2);
    assert_eq!(written(&metrics, "superseded"), 1.0);
    // Redelivered later (e.g. the processor replayed a batch): not appended again.
    let mut changed = trigger("t2", "c1");
    changed.kind = "returned".into();
    env.produce(&[env.t(&changed), env.t(&trigger("t3", "c2"))])
        .await;
    let (second, metrics) = env.run_to_idle("pg-triggers", 500).await;
    assert_eq!(second.written, 2);
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_postgres_rows_total",
            &[("table", "triggers"), ("outcome", "skipped")]
        ),
        1.0
    );
    let rows: Vec<(String, String, String)> = env
        .pg
        .query("SELECT trigger_id, customer_id, kind FROM storefold.triggers ORDER BY trigger_id")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("t1".into(), "c1".into(), "delivered".into()),
            ("t2".into(), "c1".into(), "delivered".into()),
            ("t3".into(), "c2".into(), "delivered".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_postgresql_refuses_go_to_the_dlq_and_the_rest_is_written() {
    let env = env(500);
    let mut records = Vec::new();
    let mut expected = Vec::new();
    for i in 0..12 {
        let id = format!("c{i:02}");
        let mut c = customer(&id, 1, 1);
        match i {
            3 => c.doc = "{not json".into(),
            7 => c.email = Some("nul\0byte@example.com".into()),
            _ => expected.push(id),
        }
        records.push(env.c(&c));
    }
    let mut bad_order = order("shopify:9", "c01", 1, 1);
    bad_order.doc = "[1, 2".into();
    records.push(env.o(&bad_order));
    records.push(env.o(&order("shopify:10", "c01", 1, 1)));
    // Not Avro at all.
    records.push((
        env.topics.customers(),
        "acme/garbage".into(),
        b"\x00garbage".to_vec(),
    ));
    env.produce(&records).await;
    let (summary, metrics) = env.run_to_idle("pg-dlq", 500).await;
    assert_eq!(summary.written, 11);
    assert_eq!(summary.rejected, 4);
    assert_eq!(written(&metrics, "rejected"), 4.0);
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_dlq_total",
            &[("sink", "postgres")]
        ),
        4.0
    );
    let got: Vec<String> = env.customers().await.into_keys().collect();
    assert_eq!(got, expected);
    let orders: Vec<String> = env
        .pg
        .query("SELECT order_id FROM storefold.orders")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(orders, vec!["shopify:10".to_string()]);

    let dlq = read_topic(
        env.broker.bootstrap(),
        &env.topics.dlq_sink("postgres"),
        Duration::from_secs(20),
    );
    let mut by_key: BTreeMap<String, (String, String, Vec<u8>, String)> = BTreeMap::new();
    for r in &dlq {
        let h = |n: &str| String::from_utf8(r.header(n).expect(n).to_vec()).unwrap();
        // The original value, untouched, and where it came from.
        let source = format!(
            "{}:{}:{}",
            h("storefold-source-topic"),
            h("storefold-source-partition"),
            h("storefold-source-offset")
        );
        assert!(source.starts_with("storefold."), "{source}");
        assert!(
            r.header(RECEIVED_AT_HEADER).is_some(),
            "original headers kept"
        );
        by_key.insert(
            String::from_utf8(r.key.clone().unwrap()).unwrap(),
            (
                h("storefold-error"),
                h("storefold-error-reason"),
                r.payload.clone().unwrap_or_default(),
                source,
            ),
        );
    }
    let keys: Vec<&str> = by_key.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["acme/c03", "acme/c07", "acme/garbage", "acme/shopify:9"]
    );
    let (code, reason, value, _) = &by_key["acme/c03"];
    assert_eq!(code, "22P02");
    assert!(
        reason.contains("invalid input syntax for type json"),
        "{reason}"
    );
    assert_eq!(value, &records[3].2);
    let (code, reason, value, _) = &by_key["acme/c07"];
    assert_eq!(code, "22021");
    assert!(reason.contains("0x00"), "{reason}");
    assert_eq!(value, &records[7].2);
    let (code, _, _, source) = &by_key["acme/shopify:9"];
    assert_eq!(code, "22P02");
    assert!(source.starts_with("storefold.orders:"), "{source}");
    let (code, reason, value, _) = &by_key["acme/garbage"];
    assert_eq!(code, "undecodable");
    assert!(!reason.is_empty());
    assert_eq!(value, b"\x00garbage");

    // Everything was committed: a restart finds nothing to do.
    let (again, _) = env.run_to_idle("pg-dlq", 500).await;
    assert_eq!((again.written, again.rejected), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_outage_is_retried_and_nothing_is_lost() {
    let mut env = env(50);
    let registry = Registry::new();
    let sink = env.sink(&registry).await;
    let token = CancellationToken::new();
    let config = env.config.clone();
    let opts = RunOptions {
        group_id: "pg-outage".into(),
        batch_size: 50,
        linger: Duration::from_millis(50),
        exit_when_idle: None,
    };
    let runner = {
        let registry = registry.clone();
        let token = token.clone();
        tokio::spawn(async move { run(sink, &config, opts, &registry, token).await })
    };
    let first: Vec<Out> = (0..100)
        .map(|i| env.c(&customer(&format!("a{i:03}"), 1, 1)))
        .collect();
    env.produce(&first).await;
    wait_for("the first records", || async {
        env.customers().await.len() == 100
    })
    .await;

    env.pg.stop();
    let second: Vec<Out> = (0..200)
        .map(|i| env.c(&customer(&format!("b{i:03}"), 1, i % 7 + 1)))
        .collect();
    env.produce(&second).await;
    let text = || storefold_runtime::metrics::encode(&registry);
    wait_for("the circuit to open", || async {
        metric(
            &text(),
            "storefold_sink_circuit_state",
            &[("sink", "postgres")],
        ) == 2.0
    })
    .await;
    let retries = metric(
        &text(),
        "storefold_sink_retries_total",
        &[("sink", "postgres")],
    );
    assert!(retries >= 3.0, "retries: {retries}");
    assert!(!runner.is_finished(), "an outage does not stop the sink");

    env.pg.start_again();
    wait_for("every record after the outage", || async {
        env.customers().await.len() == 300
    })
    .await;
    // Closed again once a write passed.
    wait_for("the circuit to close", || async {
        metric(
            &text(),
            "storefold_sink_circuit_state",
            &[("sink", "postgres")],
        ) == 0.0
    })
    .await;
    token.cancel();
    let summary = runner.await.unwrap().expect("the sink stops cleanly");
    assert_eq!(summary.written, 300);
    assert_eq!(summary.rejected, 0);
    let rows = env.customers().await;
    for i in 0..200 {
        let id = format!("b{i:03}");
        assert_eq!(rows[&id].1, i % 7 + 1, "{id}");
    }
    let m = text();
    assert_eq!(written(&m, "written"), 300.0);
    assert!(metric(&m, "storefold_sink_postgres_connects_total", &[]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_sinks_start_together() {
    let env = env(10);
    let cfg = PostgresSinkConfig::from_config(&env.config)
        .unwrap()
        .unwrap();
    let mut starts = Vec::new();
    for _ in 0..4 {
        let cfg = cfg.clone();
        starts.push(tokio::spawn(async move {
            let mut sink = PostgresSink::connect(&cfg, &Registry::new()).await.unwrap();
            sink.prepare().await
        }));
    }
    for s in starts {
        s.await.unwrap().expect("prepare");
    }
    let versions: Vec<i32> = env
        .pg
        .query("SELECT version FROM storefold.schema_migrations ORDER BY version")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2], "each migration once");

    // A table gone after the migrations is the deployment's problem: fatal.
    env.pg.query("DROP TABLE storefold.orders").await;
    let registry = Registry::new();
    let sink = env.sink(&registry).await;
    env.produce(&[env.o(&order("shopify:1", "c1", 1, 1))]).await;
    let err = tokio::time::timeout(
        Duration::from_secs(45),
        run(
            sink,
            &env.config,
            env.options("pg-fatal", 10),
            &registry,
            CancellationToken::new(),
        ),
    )
    .await
    .expect("stops");
    match err {
        Err(SinkError::Sink { sink, error }) => {
            assert_eq!(sink, "postgres");
            let msg = error.to_string();
            assert!(msg.contains("fatal") && msg.contains("42P01"), "{msg}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

/// Polls `cond` every 100 ms for up to 40 s.
async fn wait_for<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(40);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of every column of the rows `query` selects (`row_to_json`).
async fn rows_as_text(pg: &PgServer, query: &str) -> Vec<String> {
    pg.query(query).await.iter().map(|r| r.get(0)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_customer_leaves_no_personal_data_in_its_rows() {
    let env = env(500);
    let e = crate::sink_fixtures::erasure();
    let tenant = e.subject.tenant.clone();
    // Everything of the history, then the erasure: the customer's and its
    // orders' redacted versions (newer ones).
    let mut first: Vec<Out> = e.before.customers.iter().map(|c| env.c(c)).collect();
    first.extend(e.before.orders.iter().map(|o| env.o(o)));
    env.produce(&first).await;
    env.run_to_idle("pg-erasure", 500).await;
    let subject_row = format!(
        "SELECT row_to_json(c)::text FROM storefold.customers c \
         WHERE tenant = '{tenant}' AND customer_id = '{}'",
        e.subject.customer_id
    );
    let order_rows = format!(
        "SELECT row_to_json(o)::text FROM storefold.orders o \
         WHERE tenant = '{tenant}' AND customer_id = '{}'",
        e.subject.customer_id
    );
    // The rows held the customer's personal data before.
    let before = rows_as_text(&env.pg, &subject_row).await;
    assert_eq!(before.len(), 1);
    let email = e.subject.email.clone().unwrap();
    assert!(before[0].contains(&email), "{}", before[0]);
    let orders_before = rows_as_text(&env.pg, &order_rows).await.join("\n");
    assert_eq!(
        rows_as_text(&env.pg, &order_rows).await.len(),
        e.orders.len()
    );
    assert!(
        e.personal
            .iter()
            .any(|s| orders_before.contains(s.as_str())),
        "the orders carried personal data: {orders_before}"
    );

    let mut second = vec![env.c(&e.erased)];
    second.extend(e.erased_orders.iter().map(|o| env.o(o)));
    env.produce(&second).await;
    let (summary, _) = env.run_to_idle("pg-erasure", 500).await;
    assert_eq!(summary.written as usize, 1 + e.erased_orders.len());

    let after = rows_as_text(&env.pg, &subject_row).await;
    assert_eq!(after.len(), 1);
    let row: serde_json::Value = serde_json::from_str(&after[0]).unwrap();
    assert_eq!(row["redacted"], true);
    assert_eq!(row["version"], e.erased.version);
    assert!(row["email"].is_null() && row["phone"].is_null(), "{row}");
    // Its figures stay.
    assert_eq!(
        row["doc"]["orders_count"],
        serde_json::from_str::<serde_json::Value>(&e.subject.doc).unwrap()["orders_count"]
    );
    let orders_after = rows_as_text(&env.pg, &order_rows).await;
    assert_eq!(orders_after.len(), e.orders.len());
    let text = format!("{}\n{}", after[0], orders_after.join("\n"));
    assert!(e.personal.len() >= 4, "{:?}", e.personal);
    for s in &e.personal {
        assert!(!text.contains(s.as_str()), "{s:?} is still in: {text}");
    }

    // Another customer's row is untouched.
    let other: Vec<(Option<String>, i64)> = env
        .pg
        .query(&format!(
            "SELECT email, version FROM storefold.customers \
             WHERE tenant = '{tenant}' AND customer_id = '{}'",
            e.other.customer_id
        ))
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(other, vec![(e.other.email.clone(), e.other.version)]);

    // A late redelivery of the customer's older version brings nothing back.
    env.produce(&[env.c(&e.subject)]).await;
    env.run_to_idle("pg-erasure", 500).await;
    let again = rows_as_text(&env.pg, &subject_row).await;
    assert!(!again[0].contains(&email), "{}", again[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redacted_projection_that_still_carries_personal_data_is_cleaned() {
    let env = env(500);
    let mut c = customer("c1", 1, 1);
    c.doc = r#"{"customer_id":"c1","email":"c1@example.com","phone":"+14155550100",
        "first_name":"Ada","last_name":"Lovelace","addresses":[{"line1":"12 St James's Square"}],
        "identities":[{"kind":"email","value":"c1@example.com"}],"orders_count":2}"#
        .into();
    env.produce(&[env.c(&c), env.c(&customer("c2", 1, 1))])
        .await;
    env.run_to_idle("pg-redacted-leftovers", 500).await;
    // The erasure from a producer that left the personal data in place.
    let mut erased = c.clone();
    erased.version = 2;
    erased.redacted = true;
    env.produce(&[env.c(&erased)]).await;
    env.run_to_idle("pg-redacted-leftovers", 500).await;
    let row = rows_as_text(
        &env.pg,
        "SELECT row_to_json(c)::text FROM storefold.customers c \
         WHERE tenant = 'acme' AND customer_id = 'c1'",
    )
    .await;
    for s in [
        "c1@example.com",
        "+14155550100",
        "Ada",
        "Lovelace",
        "St James",
    ] {
        assert!(!row[0].contains(s), "{s} in {}", row[0]);
    }
    let doc: serde_json::Value = serde_json::from_str(&row[0]).unwrap();
    assert_eq!(doc["doc"]["orders_count"], 2);
    assert_eq!(doc["version"], 2);
    assert_eq!(
        env.customers().await["c2"].2.as_deref(),
        Some("c2@example.com")
    );
}

/// A line of a payout: id, kind, order, gross and fee in minor units of USD
/// (net = gross − fee, as the fold computes it).
type Line<'a> = (&'a str, PayoutLineKind, Option<&'a str>, i64, i64);

/// A payout projection whose document is a real [`PayoutView`], paid, with
/// `amount` the sum of the lines' net (so `difference` 0).
fn payout(
    provider: &str,
    id: &str,
    generation: i64,
    version: i64,
    lines: &[Line],
) -> PayoutProjection {
    let usd = Currency::from_code("USD").unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_300).unwrap();
    let mut gross = MoneyBag::new();
    let mut fees = MoneyBag::new();
    let mut net = MoneyBag::new();
    let mut orders: BTreeMap<String, MoneyBag> = BTreeMap::new();
    let lines: Vec<PayoutLineView> = lines
        .iter()
        .enumerate()
        .map(|(i, (line_id, kind, order_id, g, f))| {
            let line = PayoutLineView {
                line_id: (*line_id).into(),
                kind: *kind,
                order_id: order_id.map(String::from),
                reference: order_id.map(|_| format!("payment:{provider}:ch_{line_id}")),
                gross: Money::new(*g, usd),
                fee: Money::new(*f, usd),
                net: Money::new(g - f, usd),
                at: at + time::Duration::minutes(i as i64),
                source_event_id: format!("evt-{line_id}"),
            };
            gross.add(line.gross);
            fees.add(line.fee);
            net.add(line.net);
            if let Some(o) = &line.order_id {
                orders.entry(o.clone()).or_default().add(line.net);
            }
            line
        })
        .collect();
    let amount = Money::new(net.0.get(&usd).copied().unwrap_or(0), usd);
    let view = PayoutView {
        tenant: "acme".into(),
        provider: provider.into(),
        payout_id: id.into(),
        status: Some(PayoutStatus::Paid),
        amount: Some(amount),
        arrival: None,
        failure: None,
        reported_at: Some(at),
        lines,
        gross,
        fees,
        net,
        orders: orders
            .into_iter()
            .map(|(order_id, net)| PayoutOrder { order_id, net })
            .collect(),
        difference: Some(Money::zero(usd)),
        reconciled: true,
        unreconciled: Vec::new(),
    };
    PayoutProjection {
        tenant: "acme".into(),
        provider: provider.into(),
        payout_id: id.into(),
        generation,
        version,
        status: Some("paid".into()),
        currency: Some("USD".into()),
        amount: Some(amount.minor),
        difference: Some(0),
        reconciled: true,
        updated_at: 1_700_000_400_000 + version,
        doc: serde_json::to_string(&view).unwrap(),
    }
}

/// The payout of most tests: two orders paid, one of them partly refunded,
/// and a fee of no order.
fn stripe_lines() -> Vec<Line<'static>> {
    vec![
        (
            "txn_1",
            PayoutLineKind::Charge,
            Some("shopify:1"),
            10_000,
            320,
        ),
        (
            "txn_2",
            PayoutLineKind::Charge,
            Some("shopify:2"),
            5_000,
            175,
        ),
        (
            "txn_3",
            PayoutLineKind::Refund,
            Some("shopify:1"),
            -2_000,
            0,
        ),
        ("txn_4", PayoutLineKind::Fee, None, 0, 150),
    ]
}

/// `(payout_id, line_id) -> (kind, order_id, currency, gross, fee, net, at ms)`
/// of tenant acme and `provider`.
type LineRow = (String, Option<String>, String, i64, i64, i64, i64);

async fn payout_lines(pg: &PgServer, provider: &str) -> BTreeMap<(String, String), LineRow> {
    pg.query(&format!(
        "SELECT payout_id, line_id, kind, order_id, currency, gross, fee, net, \
         (extract(epoch from at) * 1000)::bigint \
         FROM storefold.payout_lines WHERE tenant = 'acme' AND provider = '{provider}'"
    ))
    .await
    .iter()
    .map(|r| {
        (
            (r.get(0), r.get(1)),
            (
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            ),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_are_written_with_a_row_per_line_in_minor_units() {
    let env = env(500);
    let stripe = payout("stripe", "po_1", 1, 3, &stripe_lines());
    // Another provider with the same payout id is another payout.
    let adyen = payout(
        "adyen",
        "po_1",
        1,
        1,
        &[(
            "psp_9",
            PayoutLineKind::Charge,
            Some("shopify:2"),
            1_999,
            61,
        )],
    );
    // A line without its net: PostgreSQL refuses the payout (NOT NULL), the
    // sink dead-letters it and writes the rest.
    let mut broken = payout("paypal", "po_bad", 1, 1, &stripe_lines());
    let mut doc: serde_json::Value = serde_json::from_str(&broken.doc).unwrap();
    doc["lines"][1].as_object_mut().unwrap().remove("net");
    broken.doc = doc.to_string();
    env.produce(&[env.p(&stripe), env.p(&adyen), env.p(&broken)])
        .await;
    let (summary, metrics) = env.run_to_idle("pg-payouts", 500).await;
    assert_eq!((summary.written, summary.rejected), (2, 1));
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_postgres_rows_total",
            &[("table", "payout_lines"), ("outcome", "applied")]
        ),
        5.0
    );

    type PayoutRow = (
        String,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        bool,
        i64,
        Option<String>,
    );
    let rows: Vec<PayoutRow> = env
        .pg
        .query(
            "SELECT provider, payout_id, generation, version, status, currency, amount, \
             difference, reconciled, (extract(epoch from updated_at) * 1000)::bigint, \
             doc->>'payout_id' FROM storefold.payouts ORDER BY provider, payout_id",
        )
        .await
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
            )
        })
        .collect();
    let usd = Some("USD".to_string());
    let paid = Some("paid".to_string());
    let po_1 = Some("po_1".to_string());
    assert_eq!(
        rows,
        vec![
            (
                "adyen".into(),
                "po_1".into(),
                1,
                1,
                paid.clone(),
                usd.clone(),
                Some(1_938),
                Some(0),
                true,
                1_700_000_400_001,
                po_1.clone()
            ),
            (
                "stripe".into(),
                "po_1".into(),
                1,
                3,
                paid,
                usd,
                // 9_680 + 4_825 − 2_000 − 150
                Some(12_355),
                Some(0),
                true,
                1_700_000_400_003,
                po_1
            ),
        ]
    );

    let at = |minutes: i64| 1_700_000_300_000 + minutes * 60_000;
    let line = |kind: &str, order: Option<&str>, gross, fee, net, at| -> LineRow {
        (
            kind.into(),
            order.map(String::from),
            "USD".into(),
            gross,
            fee,
            net,
            at,
        )
    };
    let key = |l: &str| ("po_1".to_string(), l.to_string());
    assert_eq!(
        payout_lines(&env.pg, "stripe").await,
        BTreeMap::from([
            (
                key("txn_1"),
                line("charge", Some("shopify:1"), 10_000, 320, 9_680, at(0))
            ),
            (
                key("txn_2"),
                line("charge", Some("shopify:2"), 5_000, 175, 4_825, at(1))
            ),
            (
                key("txn_3"),
                line("refund", Some("shopify:1"), -2_000, 0, -2_000, at(2))
            ),
            (key("txn_4"), line("fee", None, 0, 150, -150, at(3))),
        ])
    );
    assert_eq!(
        payout_lines(&env.pg, "adyen").await,
        BTreeMap::from([(
            key("psp_9"),
            line("charge", Some("shopify:2"), 1_999, 61, 1_938, at(0))
        )])
    );
    assert!(payout_lines(&env.pg, "paypal").await.is_empty());

    // What finance asks: the money each order received, over every payout.
    let per_order: Vec<(Option<String>, i64)> = env
        .pg
        .query(
            "SELECT order_id, sum(net)::bigint FROM storefold.payout_lines \
             GROUP BY order_id ORDER BY order_id NULLS LAST",
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        per_order,
        vec![
            (Some("shopify:1".into()), 7_680),
            (Some("shopify:2".into()), 6_763),
            (None, -150),
        ]
    );

    let dlq = read_topic(
        env.broker.bootstrap(),
        &env.topics.dlq_sink("postgres"),
        Duration::from_secs(20),
    );
    let refused: Vec<(String, String)> = dlq
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                String::from_utf8(r.header("storefold-error").unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        vec![("acme/paypal:po_bad".to_string(), "23502".to_string())]
    );
}

/// `(generation, version, amount)` of acme's stripe payout po_1.
async fn stripe_po_1(pg: &PgServer) -> (i64, i64, i64) {
    let rows = pg
        .query(
            "SELECT generation, version, amount FROM storefold.payouts \
             WHERE tenant = 'acme' AND provider = 'stripe' AND payout_id = 'po_1'",
        )
        .await;
    (rows[0].get(0), rows[0].get(1), rows[0].get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_never_goes_backwards_and_a_newer_version_rewrites_its_lines() {
    let env = env(500);
    let other = payout(
        "stripe",
        "po_2",
        1,
        1,
        &[("txn_9", PayoutLineKind::Charge, Some("shopify:9"), 700, 20)],
    );
    env.produce(&[
        env.p(&payout("stripe", "po_1", 1, 5, &stripe_lines())),
        env.p(&other),
    ])
    .await;
    let (first, _) = env.run_to_idle("pg-payout-versions", 500).await;
    assert_eq!(first.written, 2);

    // An older version with one line more and a repeat of the newest with one
    // line fewer, each written on its own so that the table decides: neither
    // replaces the row, so neither touches its lines.
    let mut older_lines = stripe_lines();
    older_lines.push(("txn_5", PayoutLineKind::Adjustment, None, -99, 0));
    let mut repeat = payout("stripe", "po_1", 1, 5, &stripe_lines()[..2]);
    repeat.amount = Some(1);
    env.produce(&[
        env.p(&payout("stripe", "po_1", 1, 4, &older_lines)),
        env.p(&repeat),
    ])
    .await;
    let (second, metrics) = env.run_to_idle("pg-payout-versions", 1).await;
    assert_eq!(second.written, 2);
    assert_eq!(
        metric(
            &metrics,
            "storefold_sink_postgres_rows_total",
            &[("table", "payouts"), ("outcome", "skipped")]
        ),
        2.0
    );
    assert_eq!(stripe_po_1(&env.pg).await, (1, 5, 12_355));
    let line_ids = |lines: BTreeMap<(String, String), LineRow>| -> Vec<String> {
        lines
            .into_keys()
            .map(|(payout, line)| format!("{payout}/{line}"))
            .collect()
    };
    assert_eq!(
        line_ids(payout_lines(&env.pg, "stripe").await),
        [
            "po_1/txn_1",
            "po_1/txn_2",
            "po_1/txn_3",
            "po_1/txn_4",
            "po_2/txn_9"
        ]
    );

    // A newer version without txn_2 (the charge moved to another payout):
    // its row is gone, the other lines and the other payout stay.
    let newer: Vec<Line> = stripe_lines()
        .into_iter()
        .filter(|l| l.0 != "txn_2")
        .collect();
    env.produce(&[env.p(&payout("stripe", "po_1", 1, 6, &newer))])
        .await;
    env.run_to_idle("pg-payout-versions", 500).await;
    assert_eq!(stripe_po_1(&env.pg).await, (1, 6, 7_530));
    let lines = payout_lines(&env.pg, "stripe").await;
    assert_eq!(
        line_ids(lines.clone()),
        ["po_1/txn_1", "po_1/txn_3", "po_1/txn_4", "po_2/txn_9"]
    );
    assert_eq!(
        lines[&("po_1".to_string(), "txn_1".to_string())].5,
        9_680,
        "net in minor units"
    );

    // A replay (generation 2, versions from 1 again) replaces it; a late
    // delivery of generation 1 does not bring the old lines back.
    let replayed: Vec<Line> = vec![(
        "txn_1",
        PayoutLineKind::Charge,
        Some("shopify:1"),
        10_000,
        320,
    )];
    env.produce(&[
        env.p(&payout("stripe", "po_1", 2, 1, &replayed)),
        env.p(&payout("stripe", "po_1", 1, 7, &stripe_lines())),
    ])
    .await;
    env.run_to_idle("pg-payout-versions", 1).await;
    assert_eq!(stripe_po_1(&env.pg).await, (2, 1, 9_680));
    assert_eq!(
        line_ids(payout_lines(&env.pg, "stripe").await),
        ["po_1/txn_1", "po_2/txn_9"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_postgresql_sink_consumes_payouts() {
    let env = env(500);
    let registry = Registry::new();
    assert_eq!(
        env.sink(&registry).await.streams(),
        vec![
            Stream::Customers,
            Stream::Orders,
            Stream::Payouts,
            Stream::Triggers
        ]
    );
    // Without triggers too: payouts are not optional.
    let mut cfg = PostgresSinkConfig::from_config(&env.config)
        .unwrap()
        .unwrap();
    cfg.triggers = false;
    let sink = PostgresSink::connect(&cfg, &Registry::new())
        .await
        .expect("connect");
    assert!(sink.streams().contains(&Stream::Payouts));
    // The others consume what they can send, never payouts.
    for name in ["hubspot", "webhook"] {
        let spec = storefold_sinks::registry::find(name).expect(name);
        let config = Config::from_toml_str(spec.example(), Vec::new()).expect("example");
        let sink = spec.build(&config, &Registry::new()).await.expect(name);
        let streams = sink.streams();
        assert!(!streams.is_empty(), "{name}");
        assert!(!streams.contains(&Stream::Payouts), "{name}: {streams:?}");
    }
}
