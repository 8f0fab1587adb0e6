//! The PostgreSQL sink's batched upsert against single-row upserts of the same
//! rows, in one run, on a PostgreSQL started for the run (testkit's `PgServer`,
//! Debian's server). By default the server is durable like a production one
//! (`fsync`, `synchronous_commit` and `full_page_writes` on); `--fast` turns
//! them off as the tests do, which makes each single-row commit far cheaper.
//! Figures printed, never asserted; the target is batched ≥ 10× single-row.
//!
//! For each mode the same `--rows` customer projections (a ~0.7 KB JSON doc
//! each) are written twice, into empty tables: first as inserts (version 1),
//! then as updates (version 2, through the `(generation, version)` guard):
//!
//! - batched: `PostgresSink::write` with `--batch` rows per call (one transaction,
//!   one `INSERT … SELECT FROM unnest(…) ON CONFLICT … DO UPDATE … WHERE` per table);
//! - single-row: `PostgresSink::write` with one row per call (one transaction and
//!   one statement per row, what the sink would do with `batch_size = 1`).
//!
//! `make pgbench` (`PGBENCH_ARGS="--rows 50000 --batch 1000 [--fast]"`).

use std::time::{Duration, Instant};
use storefold_benches::{arg, say};

use prometheus::Registry;
use storefold_codec::CustomerProjection;
use storefold_runtime::config::Config;
use storefold_sinks::postgres::PostgresSink;
use storefold_sinks::{Item, Sink, SinkRecord, SourcePosition};
use storefold_testkit::postgres::PgServer;

fn record(i: usize, version: i64) -> SinkRecord {
    let id = format!("c{i:07}");
    let tenant = format!("t{:02}", i % 50);
    let doc = format!(
        concat!(
            r#"{{"customer_id":"{id}","tenant":"{tenant}","email":"{id}@example.com","#,
            r#""phone":"+1415555{n:04}","orders_count":{v},"#,
            r#""revenue":{{"USD":{{"gross":{g},"refunded":0,"net":{g}}}}},"#,
            r#""first_touch":{{"utm_source":"newsletter","utm_medium":"email","utm_campaign":"spring-sale","landing_page":"/collections/shoes"}},"#,
            r#""last_touch":{{"utm_source":"google","utm_medium":"cpc","utm_campaign":"brand","landing_page":"/products/runner-2"}},"#,
            r#""segments":["repeat","high_value","newsletter"],"tickets":{{"open":0,"solved":2,"csat":4.5}},"#,
            r#""returns":{{"count":1,"reasons":{{"size":1}}}},"chargebacks":0,"consent":{{"email":true,"sms":false}}}}"#
        ),
        id = id,
        tenant = tenant,
        n = i % 10_000,
        v = version,
        g = 4_999 * version,
    );
    SinkRecord {
        key: format!("{tenant}/{id}").into_bytes(),
        item: Item::Customer(CustomerProjection {
            tenant,
            customer_id: id.clone(),
            generation: 1,
            version,
            email: Some(format!("{id}@example.com")),
            phone: Some(format!("+1415555{:04}", i % 10_000)),
            redacted: false,
            merged_into: None,
            updated_at: 1_700_000_000_000 + i as i64,
            doc,
            view: None,
        }),
        value: Vec::new(),
        headers: Vec::new(),
        source: SourcePosition {
            topic: "storefold.customers".into(),
            partition: 0,
            offset: i as i64,
        },
        received_at_ms: None,
    }
}

async fn write_all(sink: &mut PostgresSink, rows: &[SinkRecord], per_call: usize) -> Duration {
    let started = Instant::now();
    for chunk in rows.chunks(per_call) {
        let rejected = sink.write(chunk).await.expect("write");
        assert!(rejected.is_empty(), "{rejected:?}");
    }
    started.elapsed()
}

fn main() {
    let n = arg("--rows", 10_000);
    let batch = arg("--batch", 1_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fast = std::env::args().any(|a| a == "--fast");
    let pg = if fast {
        PgServer::start()
    } else {
        PgServer::start_with(&[
            ("fsync", "on"),
            ("synchronous_commit", "on"),
            ("full_page_writes", "on"),
        ])
    };
    let toml = format!("[sinks.postgres]\nurl = \"{}\"\n", pg.url());
    let config = Config::from_toml_str(&toml, Vec::new()).expect("config");
    let cfg = storefold_sinks::postgres::PostgresSinkConfig::from_config(&config)
        .expect("valid [sinks.postgres]")
        .expect("[sinks.postgres]");
    rt.block_on(async {
        let mut sink = PostgresSink::connect(&cfg, &Registry::new())
            .await
            .expect("connect");
        sink.prepare().await.expect("migrations");
        let inserts: Vec<SinkRecord> = (0..n).map(|i| record(i, 1)).collect();
        let updates: Vec<SinkRecord> = (0..n).map(|i| record(i, 2)).collect();
        let client = pg.client().await;
        let check = |version: i64| {
            let client = &client;
            async move {
                let row = client
                    .query_one(
                        "SELECT count(*), min(version), max(version) FROM storefold.customers",
                        &[],
                    )
                    .await
                    .expect("count");
                let got: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
                assert_eq!(got, (n as i64, version, version), "rows after the phase");
            }
        };
        say(format!(
            "pgbench: {n} customer rows (doc {} B), batches of {batch}, PostgreSQL {} ({})",
            match &inserts[0].item {
                Item::Customer(c) => c.doc.len(),
                _ => 0,
            },
            pg.query("SHOW server_version").await[0].get::<_, String>(0),
            if fast {
                "fsync off"
            } else {
                "fsync and synchronous_commit on"
            }
        ));
        let mut results = Vec::new();
        for (mode, per_call) in [("batched", batch), ("single-row", 1)] {
            client
                .batch_execute("TRUNCATE storefold.customers")
                .await
                .expect("truncate");
            let insert = write_all(&mut sink, &inserts, per_call).await;
            check(1).await;
            let update = write_all(&mut sink, &updates, per_call).await;
            check(2).await;
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            say(format!(
                "{mode:>10}: insert {:>9.0} rows/s ({:.2} s), update {:>9.0} rows/s ({:.2} s)",
                rate(insert),
                insert.as_secs_f64(),
                rate(update),
                update.as_secs_f64()
            ));
            results.push((rate(insert), rate(update)));
        }
        let (b, s) = (results[0], results[1]);
        say(format!(
            "batched / single-row: insert {:.1}x, update {:.1}x (target >= 10x)",
            b.0 / s.0,
            b.1 / s.1
        ));
    });
}
