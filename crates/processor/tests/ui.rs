//! The Inspector (`/ui`) end to end: a corpus folded by the processor, its
//! HTTP served as `storefold process` serves it, and Debian's headless
//! Chromium loading deep links; the test reads the DOM Chromium dumps.
//!
//! Needs the `chromium` package (`make deps` installs it).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use common::*;
use prometheus::Registry;
use storefold_codec::RawEvent;
use storefold_core::aggregate::{Customer, Order};
use storefold_core::money::Money;
use storefold_processor::db::TaskDb;
use storefold_processor::{Mode, Processor};
use storefold_runtime::kafka::java_partition;
use storefold_testkit::browser::{assert_has, chromium, dump_dom, text_between, url_component};
use storefold_testkit::history::{HistorySpec, history};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;

/// Every provider's sample and a few more orders for `acme`, and a generated
/// history for acme and another tenant.
fn corpus() -> Vec<RawEvent> {
    let mut out = provider_samples("acme", datetime!(2026-03-01 10:00 UTC), 3);
    // The generated history's first tenant becomes acme: customers with touches,
    // orders, payments, refunds, shipments and tickets that correlate.
    out.extend(
        history(&HistorySpec {
            tenants: 2,
            customers_per_tenant: 20,
            events: 600,
            duplicate_pct: 0,
            seed: 3,
        })
        .into_iter()
        .map(|mut e| {
            if e.tenant == "t000" {
                e.tenant = "acme".into();
            }
            e
        }),
    );
    out
}

struct Served {
    base: String,
    processor: Arc<Processor>,
    /// The state the fold left, read before the stores were opened to serve.
    customers: BTreeMap<String, Customer>,
    orders: BTreeMap<String, Order>,
}

/// Folds `events` with a processor, then serves its HTTP with the stores of
/// the `serve` partitions open, as a running processor owning them would.
fn fold_and_serve(env: &Env, events: &[RawEvent], serve: &[i32]) -> Served {
    produce(&env.config, events);
    let processor = Arc::new(
        Processor::new(&env.config, Registry::new(), env.rt.handle().clone()).expect("processor"),
    );
    let summary = processor
        .run_blocking(options(&env.config, Mode::Group), CancellationToken::new())
        .expect("fold the corpus");
    assert_eq!(summary.events as usize, events.len(), "every event folded");
    let (customers, orders) = state(&env.config.processor.state_dir, PARTITIONS);
    {
        let mut owned = processor.owned.write().expect("lock");
        for p in serve {
            let path = env.config.processor.state_dir.join(format!("task-{p}"));
            let db = TaskDb::open(&path, i64::MAX, Arc::new(AtomicI64::new(0)), false)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            owned.insert(*p, Arc::new(db));
        }
    }
    let base = serve_http(env, &processor);
    Served {
        base,
        processor,
        customers,
        orders,
    }
}

#[test]
fn the_inspector_shows_a_customer_its_journey_and_an_order_ledger() {
    let browser = chromium();
    let env = env(PARTITIONS);
    let events = corpus();
    let acme = java_partition(b"acme", PARTITIONS);
    let served = fold_and_serve(&env, &events, &[acme]);
    let (customers, orders) = (&served.customers, &served.orders);
    let profile = tempfile::tempdir().expect("chromium profile dir");

    // A customer of acme with an email, revenue, orders and a touch with a source.
    let customer: &Customer = customers
        .values()
        .filter(|c| c.tenant == "acme" && c.email.is_some() && !c.revenue.is_empty())
        .filter(|c| !c.orders.is_empty())
        .filter(|c| {
            c.first_touch
                .as_ref()
                .or(c.last_touch.as_ref())
                .is_some_and(|t| t.utm.source.is_some())
        })
        .max_by_key(|c| (c.orders.len(), c.tickets.len()))
        .unwrap_or_else(|| {
            panic!(
                "the corpus has an acme customer with an email, orders and a UTM touch: {:#?}",
                customers.keys().collect::<Vec<_>>()
            )
        });
    let email = customer.email.clone().expect("email");
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!(
            "{}/ui?tenant=acme&email={}",
            served.base,
            url_component(&email)
        ),
    );
    assert!(
        dom.contains("data-state=\"customer\""),
        "the page should have loaded the customer:\n{dom}"
    );
    let profile_text = text_between(&dom, "profile", "revenue");
    assert!(profile_text.contains(&email), "the email is shown");
    let revenue = text_between(&dom, "revenue", "identities");
    for r in &customer.revenue {
        let net = Money::new(r.net, r.currency).to_string();
        let gross = Money::new(r.gross, r.currency).to_string();
        assert_has(&dom, &format!("data-net=\"{net}\""), "the net revenue cell");
        let refunded = Money::new(r.refunded, r.currency).to_string();
        for (what, want) in [("gross", &gross), ("refunded", &refunded), ("net", &net)] {
            assert!(
                revenue.contains(want.as_str()),
                "the revenue table shows the {what} revenue {want}:\n{revenue}"
            );
        }
    }
    let timeline = text_between(&dom, "timeline", "order");
    let first_order = &customer.orders[0].order_id;
    assert!(
        timeline.contains(first_order.as_str()),
        "the timeline names order {first_order}:\n{timeline}"
    );
    let source = customer
        .first_touch
        .as_ref()
        .or(customer.last_touch.as_ref())
        .and_then(|t| t.utm.source.clone())
        .expect("utm source");
    assert!(
        timeline.contains(&source),
        "the timeline shows the touch's utm_source {source}:\n{timeline}"
    );

    // An order deep link: the ledger with a refund.
    let (key, order): (&String, &Order) = orders
        .iter()
        .find(|(k, o)| k.starts_with("acme/") && !o.refunds.is_empty())
        .expect("an acme order with a refund");
    let order_id = key.trim_start_matches("acme/");
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!(
            "{}/ui?tenant=acme&order={}",
            served.base,
            url_component(order_id)
        ),
    );
    assert!(
        dom.contains("data-state=\"order\""),
        "the page should have loaded order {order_id}:\n{dom}"
    );
    let ledger = text_between(&dom, "order", "shipments");
    let refunds = text_between(&dom, "refunds", "disputes");
    assert!(ledger.contains(order_id), "the order view names the order");
    for r in order.refunds.values().flat_map(|r| r.observations.values()) {
        let amount = r.amount.to_string();
        assert!(
            refunds.contains(&r.refund_id) && refunds.contains(&amount),
            "the ledger's refunds show refund {} of {amount}:\n{refunds}",
            r.refund_id
        );
    }

    // Someone unknown: a clear not-found message.
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!(
            "{}/ui?tenant=acme&email=nobody%40nowhere.example",
            served.base
        ),
    );
    assert!(
        dom.contains("data-state=\"not_found\""),
        "an unknown email ends in the not-found state:\n{dom}"
    );
    assert!(
        text_between(&dom, "status", "customer").contains("No customer"),
        "the not-found message is shown:\n{dom}"
    );

    // A tenant another instance owns: 421 with the owning partition.
    let other = (0..100)
        .map(|i| format!("tenant{i}"))
        .find(|t| java_partition(t.as_bytes(), PARTITIONS) != acme)
        .expect("a tenant on another partition");
    let partition = java_partition(other.as_bytes(), PARTITIONS);
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!("{}/ui?tenant={other}&email=a%40b.example", served.base),
    );
    assert!(
        dom.contains("data-state=\"not_owner\""),
        "a tenant on another partition ends in the not-owner state:\n{dom}"
    );
    assert!(
        text_between(&dom, "status", "customer").contains(&format!("partition {partition}")),
        "the not-owner message names partition {partition}:\n{dom}"
    );
    drop(served.processor);
}
