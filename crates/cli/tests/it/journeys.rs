//! The journey library (`crates/journeys`) through the real pipeline: every
//! step signed as its provider signs it, posted to `storefold run`'s HTTP
//! ingest, folded by the processor, written by the PostgreSQL sink. Each
//! journey is a tenant of its own with the journey's store and payment
//! settings. The money worked out by hand must be in the PostgreSQL rows and
//! the query API to the minor unit, and in what the HubSpot sink would send.
//! One tenant receives its steps in reverse: the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use storefold_codec::{CustomerProjection, OrderProjection};
use storefold_core::MoneyBag;
use storefold_core::ledger::OrderFigures;
use storefold_journeys::{FiguresExpect, Journey, library};
use storefold_providers::{AdyenCapture, MapOptions, OrderReference, ProviderKind};
use storefold_sinks::hubspot::HubSpotSinkConfig;
use storefold_sinks::hubspot::mapping::Mapping;
use storefold_testkit::broker::MockBroker;
use storefold_testkit::postgres::PgServer;
use storefold_testkit::samples;
use storefold_testkit::{free_port, http_client};
use time::OffsetDateTime;

use crate::common::{Run, create_topics, wait_ready};

/// A tenant id for a journey (tenant ids are short and plain).
fn tenant_of(j: &Journey, reversed: bool) -> String {
    let t = format!("j_{}", j.name.replace('-', "_"));
    if reversed { format!("{t}_rev") } else { t }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("'''{s}'''"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn reference_toml(
    section: &str,
    r: &OrderReference,
    fields_key: Option<&str>,
    pattern_key: &str,
) -> String {
    let mut s = format!("[{section}]\n");
    if let Some(k) = fields_key
        && !r.fields.is_empty()
    {
        s.push_str(&format!("{k} = [{}]\n", quoted(&r.fields)));
    }
    if let Some(store) = &r.store {
        s.push_str(&format!("store = \"{store}\"\n"));
    }
    if let Some(p) = &r.pattern {
        s.push_str(&format!("{pattern_key} = '''{}'''\n", p.as_str()));
    }
    s
}

/// The tenant's section: the test secrets of every provider, and the
/// journey's stores and payment references as an operator would write them.
fn tenant_toml(tenant: &str, o: &MapOptions) -> String {
    let mut s = samples::tenant_toml(tenant);
    // `[tenants.<t>]` keys must come before its sub-tables.
    let head = format!("[tenants.{tenant}]\n");
    let cost_currency = o
        .cost_currency
        .map(|c| format!("cost_currency = \"{}\"\n", c.code()))
        .unwrap_or_default();
    s = s.replacen(
        &head,
        &format!("{head}stores = [{}]\n{cost_currency}", quoted(&o.stores)),
        1,
    );
    let base = format!("tenants.{tenant}.payments");
    s.push_str(&reference_toml(
        &format!("{base}.stripe"),
        &o.stripe,
        Some("order_metadata_keys"),
        "order_pattern",
    ));
    s.push_str(&reference_toml(
        &format!("{base}.paypal"),
        &o.paypal,
        Some("order_fields"),
        "order_pattern",
    ));
    s.push_str(&reference_toml(
        &format!("{base}.adyen"),
        &o.adyen,
        None,
        "merchant_reference_pattern",
    ));
    s.push_str(&format!(
        "capture = \"{}\"\n",
        match o.adyen_capture {
            AdyenCapture::Automatic => "automatic",
            AdyenCapture::Manual => "manual",
        }
    ));
    s
}

/// The admin token of [`write_config`]'s configuration.
const ADMIN_TOKEN: &str = "sft_journeys-test-admin";

/// A configuration with the ingest on `port` and the operator listener (the
/// query API) on `operator`.
fn write_config(
    dir: &Path,
    bootstrap: &str,
    (port, operator): (u16, u16),
    pg: &str,
    tenants: &str,
) -> PathBuf {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = 3\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [ingest]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout_secs = 10\n\
         [processor]\nstate_dir = \"{state}\"\ncommit_interval_ms = 100\n\
         [sinks]\nretry_initial_ms = 50\nretry_max_ms = 500\n\
         [sinks.postgres]\nurl = \"{pg}\"\nbatch_size = 100\nlinger_ms = 20\n\
         [log]\nlevel = \"warn,librdkafka=error,rdkafka=error\"\n\
         [operator]\nlisten = \"127.0.0.1:{operator}\"\n\
         [[operator.tokens]]\nname = \"admin\"\nsha256 = \"{admin}\"\nadmin = true\n{tenants}",
        state = dir.join("state").display(),
        admin = storefold_runtime::operator::hash_token(ADMIN_TOKEN),
    );
    let path = dir.join("storefold.toml");
    std::fs::write(&path, &toml).unwrap();
    path
}

/// Posts a journey step as its provider would: signed now, with the
/// provider's own headers.
async fn post(client: &reqwest::Client, base: &str, tenant: &str, j: &Journey, i: usize) {
    let step = &j.steps[i];
    let provider = step.provider;
    let signed = provider
        .sign(
            &samples::signing_secret(provider),
            &step.topic,
            &step.body,
            OffsetDateTime::now_utc(),
        )
        .expect("the test secrets sign");
    let path =
        storefold_providers::webhook_path(tenant, provider.name(), signed.url_token.as_deref());
    let mut headers: BTreeMap<String, String> = step
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    for (k, v) in signed.headers {
        headers.insert(k.to_ascii_lowercase(), v);
    }
    headers.insert("content-type".into(), "application/json".into());
    let mut r = client.post(format!("{base}{path}"));
    for (k, v) in &headers {
        r = r.header(k, v);
    }
    let res = r.body(signed.body).send().await.unwrap();
    assert_eq!(
        res.status().as_u16(),
        200,
        "{} step {} ({} {}): {}",
        j.name,
        i + 1,
        provider,
        step.topic,
        res.text().await.unwrap_or_default()
    );
}

fn no_zeros(b: &MoneyBag) -> BTreeMap<String, i64> {
    b.0.iter()
        .filter(|(_, m)| **m != 0)
        .map(|(c, m)| (c.code().to_string(), *m))
        .collect()
}

/// What differs between the figures worked out by hand and a row's.
fn figure_diffs(order: &str, want: &FiguresExpect, got: &OrderFigures) -> Vec<String> {
    let mut d = Vec::new();
    let mut cmp = |name: &str, w: &MoneyBag, g: &MoneyBag| {
        if no_zeros(w) != no_zeros(g) {
            d.push(format!(
                "{order} {name}: want {:?}, got {:?}",
                no_zeros(w),
                no_zeros(g)
            ));
        }
    };
    cmp("paid", &want.paid, &got.paid);
    cmp("authorized", &want.authorized, &got.authorized);
    cmp("refunded", &want.refunded, &got.refunded);
    cmp(
        "chargeback_lost",
        &want.chargeback_lost,
        &got.chargeback_lost,
    );
    cmp("disputed", &want.disputed, &got.disputed);
    cmp("net", &want.net, &got.net);
    cmp("fees", &want.fees, &got.fees);
    if let Some(w) = &want.cogs {
        cmp("cogs", w, &got.cogs);
    }
    if want.paid_source != got.paid_source {
        d.push(format!(
            "{order} paid_source: want {}, got {}",
            want.paid_source, got.paid_source
        ));
    }
    if let Some(w) = &want.gross_margin {
        let same = match (w, &got.gross_margin) {
            (None, None) => true,
            (Some(w), Some(g)) => no_zeros(w) == no_zeros(g),
            _ => false,
        };
        if !same {
            d.push(format!(
                "{order} gross_margin: want {:?}, got {:?}",
                w.as_ref().map(no_zeros),
                got.gross_margin.as_ref().map(no_zeros)
            ));
        }
    }
    d
}

/// A HubSpot deal carries the order's net and refunded amounts exactly.
fn hubspot_mapping() -> Mapping {
    let mut cfg: HubSpotSinkConfig =
        serde_json::from_value(serde_json::json!({"token": "t"})).expect("a HubSpot section");
    cfg.deal_properties = [
        ("amount", "amount"),
        ("currency", "deal_currency_code"),
        ("net_amount", "storefold_net"),
        ("refunded_amount", "storefold_refunded"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    cfg.contact_properties = [
        ("lifetime_value", "storefold_net_revenue"),
        ("refunded_amount", "storefold_refunded"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    Mapping::new(&cfg).expect("mapping")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_journeys_money_reaches_postgresql_the_query_api_and_hubspot_exactly() {
    let journeys = library();
    assert!(journeys.len() >= 11, "the library has its journeys");
    let broker = MockBroker::start(1);
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut tenants = String::new();
    for j in &journeys {
        tenants.push_str(&tenant_toml(&tenant_of(j, false), &j.options));
    }
    let reversed = &journeys[0];
    tenants.push_str(&tenant_toml(&tenant_of(reversed, true), &reversed.options));
    let operator = free_port();
    let config = write_config(
        dir.path(),
        broker.bootstrap(),
        (port, operator),
        &pg.url(),
        &tenants,
    );
    create_topics(&broker, &config);
    let mut run = Run::start(&config, dir.path().join("run.log"), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();
    wait_ready(&client, &base, &mut run, Duration::from_secs(120)).await;

    for j in &journeys {
        let t = tenant_of(j, false);
        for i in 0..j.steps.len() {
            post(&client, &base, &t, j, i).await;
        }
    }
    let t = tenant_of(reversed, true);
    for i in (0..reversed.steps.len()).rev() {
        post(&client, &base, &t, reversed, i).await;
    }

    // Every expected order's row holds the expected figures (the sink writes
    // newer versions as the processor folds: wait until they settle).
    let pgc = pg.client().await;
    let mut cases: Vec<(&Journey, String)> =
        journeys.iter().map(|j| (j, tenant_of(j, false))).collect();
    cases.push((reversed, tenant_of(reversed, true)));
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last: Vec<String>;
    loop {
        last = Vec::new();
        for (j, tenant) in &cases {
            for (order_id, want) in &j.expect.orders {
                let row = pgc
                    .query_opt(
                        "SELECT doc::text FROM storefold.orders WHERE tenant = $1 AND order_id = $2",
                        &[tenant, order_id],
                    )
                    .await
                    .unwrap();
                let Some(row) = row else {
                    last.push(format!("{tenant} {order_id}: no row yet"));
                    continue;
                };
                let doc: Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
                let got: OrderFigures = serde_json::from_value(doc["figures"].clone())
                    .unwrap_or_else(|e| panic!("{tenant} {order_id} figures: {e}\n{doc}"));
                last.extend(figure_diffs(
                    &format!("{tenant} {order_id}"),
                    &want.figures,
                    &got,
                ));
            }
            for (email, want) in &j.expect.customers {
                let row = pgc
                    .query_opt(
                        "SELECT doc::text FROM storefold.customers WHERE tenant = $1 AND email = $2",
                        &[tenant, email],
                    )
                    .await
                    .unwrap();
                let Some(row) = row else {
                    last.push(format!("{tenant} customer {email}: no row yet"));
                    continue;
                };
                let doc: Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
                let got: BTreeMap<String, (i64, i64, i64, i64)> = doc["revenue"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        (
                            r["currency"].as_str().unwrap_or_default().to_string(),
                            (
                                r["gross"].as_i64().unwrap_or(0),
                                r["refunded"].as_i64().unwrap_or(0),
                                r["chargeback_lost"].as_i64().unwrap_or(0),
                                r["net"].as_i64().unwrap_or(0),
                            ),
                        )
                    })
                    .collect();
                let want: BTreeMap<String, (i64, i64, i64, i64)> = want
                    .revenue
                    .iter()
                    .map(|(c, r)| (c.clone(), (r.gross, r.refunded, r.chargeback_lost, r.net)))
                    .collect();
                if got != want {
                    last.push(format!(
                        "{tenant} customer {email} revenue (gross, refunded, lost, net): want {want:?}, got {got:?}"
                    ));
                }
                // The cost of goods and margin, where the journey gives them.
                for (code, r) in &j.expect.customers[email].revenue {
                    let Some(margin) = r.margin else { continue };
                    let row = doc["revenue"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|x| x["currency"].as_str() == Some(code.as_str()));
                    let have =
                        row.map(|x| (x["cogs"].as_i64().unwrap_or(0), x["gross_margin"].as_i64()));
                    if have != Some(margin) {
                        last.push(format!(
                            "{tenant} customer {email} {code} (cogs, gross margin): want {margin:?}, got {have:?}"
                        ));
                    }
                }
            }
        }
        if last.is_empty() {
            break;
        }
        if let Some(s) = run.child.try_wait().unwrap() {
            panic!("storefold run exited ({s}):\n{}", run.log());
        }
        assert!(
            Instant::now() < deadline,
            "the rows did not reach the expected money within 240 s:\n{}\n\nlog:\n{}",
            last.join("\n"),
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A SKU's costs as the query API tells them: the belt of
    // `shopify_costs_margin`, costed by the ERP's file then by Shopify.
    for (j, tenant) in cases
        .iter()
        .filter(|(j, _)| j.name == "shopify_costs_margin")
    {
        let r = client
            .get(format!(
                "http://127.0.0.1:{operator}/v1/tenants/{tenant}/skus/BELT-L"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{} BELT-L: {}", j.name, r.status());
        let doc: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        let costs: Vec<(i64, i64, String)> = doc["costs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    time::OffsetDateTime::parse(
                        c["at"].as_str().unwrap_or_default(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_or(0, |t| t.unix_timestamp()),
                    c["unit_cost"]["minor"].as_i64().unwrap_or(-1),
                    c["provider"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            costs,
            vec![
                // 2025-04-01T00:00:00Z and 2025-05-10T13:30:00Z.
                (1_743_465_600, 950, "erp".to_string()),
                (1_746_883_800, 1100, "shopify".to_string()),
            ],
            "{doc}"
        );
        assert_eq!(
            doc["order_days"],
            serde_json::json!(["2025-05-20"]),
            "{doc}"
        );
        let missing = client
            .get(format!(
                "http://127.0.0.1:{operator}/v1/tenants/{tenant}/skus/NO-SUCH"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    }

    // The query API answers the same figures, and the HubSpot sink would send
    // exactly them.
    let mapping = hubspot_mapping();
    for (j, tenant) in &cases {
        for (order_id, want) in &j.expect.orders {
            let r = client
                .get(format!(
                    "http://127.0.0.1:{operator}/v1/tenants/{tenant}/orders/{}",
                    order_id.replace(':', "%3A")
                ))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "{tenant} {order_id}: {}",
                r.status()
            );
            let doc: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            let got: OrderFigures = serde_json::from_value(doc["figures"].clone()).unwrap();
            let diffs = figure_diffs(
                &format!("query API {tenant} {order_id}"),
                &want.figures,
                &got,
            );
            assert!(diffs.is_empty(), "{}", diffs.join("\n"));
            assert!(
                doc["ledger"].as_array().is_some_and(|l| !l.is_empty()),
                "the order answers its ledger: {doc}"
            );

            let row = pgc
                .query_one(
                    "SELECT customer_id, generation, version, doc::text FROM storefold.orders \
                     WHERE tenant = $1 AND order_id = $2",
                    &[tenant, order_id],
                )
                .await
                .unwrap();
            let projection = OrderProjection {
                tenant: tenant.clone(),
                order_id: order_id.clone(),
                customer_id: row.get(0),
                generation: row.get(1),
                version: row.get(2),
                status: String::new(),
                updated_at: 0,
                doc: row.get::<_, String>(3),
                view: None,
            };
            let deal = mapping.deal(&projection);
            let currency = deal.get("deal_currency_code").cloned().unwrap_or_default();
            let Ok(c) = storefold_core::Currency::from_code(&currency) else {
                continue;
            };
            let decimal =
                |b: &MoneyBag| storefold_core::Money::new(b.get(c), c).to_decimal_string();
            assert_eq!(
                deal.get("storefold_net"),
                Some(&decimal(&want.figures.net)),
                "{tenant} {order_id}: the deal's net"
            );
            assert_eq!(
                deal.get("storefold_refunded"),
                Some(&decimal(&want.figures.refunded)),
                "{tenant} {order_id}: the deal's refunded amount"
            );
        }
        for (email, want) in &j.expect.customers {
            let row = pgc
                .query_one(
                    "SELECT customer_id, generation, version, doc::text FROM storefold.customers \
                     WHERE tenant = $1 AND email = $2",
                    &[tenant, email],
                )
                .await
                .unwrap();
            let projection = CustomerProjection {
                tenant: tenant.clone(),
                customer_id: row.get(0),
                generation: row.get(1),
                version: row.get(2),
                email: Some(email.clone()),
                phone: None,
                redacted: false,
                merged_into: None,
                updated_at: 0,
                doc: row.get::<_, String>(3),
                view: None,
            };
            let contact = mapping.contact(&projection);
            // The contact carries the revenue of the customer's main currency.
            if let Some(net) = contact.get("storefold_net_revenue") {
                assert!(
                    want.revenue.iter().any(|(code, r)| {
                        storefold_core::Currency::from_code(code)
                            .map(|c| storefold_core::Money::new(r.net, c).to_decimal_string())
                            .is_ok_and(|s| &s == net)
                    }),
                    "{tenant} {email}: the contact's net revenue {net} is one of {:?}",
                    want.revenue
                );
            }
        }
    }
    let _ = ProviderKind::WEBHOOK;
}
