//! The Inspector (`/ui`) end to end: a corpus folded by the processor, its
//! HTTP served as `storefold process` serves it, and Debian's headless
//! Chromium loading deep links; the test reads the DOM Chromium dumps.
//!
//! Needs the `chromium` package (`make deps` installs it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use crate::common::*;
use prometheus::Registry;
use storefold_codec::RawEvent;
use storefold_core::aggregate::{Customer, Order};
use storefold_core::engine::order_view;
use storefold_core::ledger::EntryKind;
use storefold_core::money::Money;
use storefold_processor::db::{DbSource, TaskDb};
use storefold_processor::{Mode, Processor};
use storefold_runtime::kafka::java_partition;
use storefold_testkit::browser::{assert_has, chromium, dump_dom, text_between, url_component};
use storefold_testkit::history::{HistorySpec, history};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
/// A token of tenant `beta` only.
const BETA_TOKEN: &str = "sft_test-beta-token";

/// An operator's do-not-merge of two of [`corpus`]'s buyers.
const BLOCK: &str = r#"{"command_id": "ui-block-1", "a": {"email": "buyer0@example.com"},
  "b": {"email": "buyer1@example.com"}, "requested_at": "2026-03-02T09:30:00Z"}"#;

/// Every provider's sample and a few more orders for `acme`, and a generated
/// history for acme and another tenant.
fn corpus() -> Vec<RawEvent> {
    let mut out = provider_samples("acme", datetime!(2026-03-01 10:00 UTC), 3);
    // The operator keeps two of those buyers apart (a do-not-merge).
    out.push(raw_event(
        "acme",
        &storefold_testkit::samples::Sample {
            provider: storefold_providers::ProviderKind::Operator,
            topic: "identity/block",
            body: BLOCK.as_bytes().to_vec(),
        },
        datetime!(2026-03-02 10:00 UTC),
    ));
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
            let db = TaskDb::open(
                &path,
                &processor.shared.memory,
                i64::MAX,
                Arc::new(AtomicI64::new(0)),
                false,
            )
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

/// The rows of table `id` in a dumped DOM: whether the row is marked counted
/// (`data-counted`), and its cells' text.
fn table_rows(dom: &str, id: &str) -> Vec<(bool, Vec<String>)> {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}:\n{dom}"));
    let body = &dom[start..];
    let body = &body[body.find("<tbody>").expect("tbody") + 7..];
    let body = &body[..body.find("</tbody>").expect("</tbody>")];
    let text = |html: &str| {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&")
    };
    body.split("<tr")
        .skip(1)
        .map(|tr| {
            let counted = tr[..tr.find('>').unwrap_or(0)].contains("data-counted=\"true\"");
            let cells = tr
                .split("<td")
                .skip(1)
                .map(|td| text(&td[td.find('>').map_or(0, |i| i + 1)..]))
                .collect();
            (counted, cells)
        })
        .collect()
}

#[test]
fn the_inspector_shows_a_customer_its_journey_and_an_order_ledger() {
    let browser = chromium();
    // acme reports in EUR, with the operator's rates for USD and GBP (other
    // currencies stay unconverted, and the page says so).
    let rates = tempfile::tempdir().expect("rates dir");
    let rates_file = rates.path().join("rates.csv");
    std::fs::write(
        &rates_file,
        "date,from,to,rate\n2025-01-01,USD,EUR,0.9\n2025-01-01,GBP,EUR,1.2\n",
    )
    .expect("write rates");
    let env = env_with(
        PARTITIONS,
        NO_PARK_TIMEOUT_HOURS,
        &format!(
            "[rates]\nfile = {:?}\nmax_age_days = 2000\n[tenants.acme]\nreporting_currency = \"EUR\"\n\
             [tenants.beta]\n[[operator.tokens]]\nname = \"beta-support\"\nsha256 = \"{}\"\n\
             tenants = [\"beta\"]\n",
            rates_file.display().to_string(),
            storefold_runtime::operator::hash_token(BETA_TOKEN),
        ),
    );
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
            "{}/ui?tenant=acme&email={}#token={ADMIN_TOKEN}",
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
    let reporting = customer
        .revenue_reporting
        .as_ref()
        .expect("acme reports in EUR: the customer has revenue in EUR");
    let net = Money::new(reporting.net, reporting.currency).to_string();
    assert_has(
        &dom,
        &format!("data-net-reporting=\"{net}\""),
        "the net revenue in the reporting currency",
    );
    let shown = text_between(&dom, "revenue-reporting", "identities");
    assert!(
        shown.contains("In the reporting currency EUR"),
        "the reporting currency is named:\n{shown}"
    );
    for (figure, amounts) in &reporting.unconverted {
        for (c, minor) in &amounts.0 {
            let m = Money::new(*minor, *c).to_string();
            assert!(
                shown.contains(&m),
                "the unconverted {figure} {m} is listed:\n{shown}"
            );
        }
    }
    // Each merge with its rule and the events that show it.
    let merges = text_between(&dom, "merges", "timeline");
    for m in &customer.merged {
        assert!(
            merges.contains(&m.merged_id) && merges.contains(&m.reason),
            "the merge of {} ({}) is listed:\n{merges}",
            m.merged_id,
            m.reason
        );
        for e in &m.evidence {
            assert!(merges.contains(e), "its evidence {e} is listed:\n{merges}");
        }
    }
    if customer.merged.is_empty() {
        assert!(merges.contains("none"), "no merges:\n{merges}");
    }
    if customer.identity_decisions.is_empty() {
        assert_has(&dom, "id=\"decisions\" hidden", "no decisions table");
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

    // The operator's do-not-merge is listed on both buyers' pages, with both
    // identity keys, the decision, its time and the command.
    for buyer in ["buyer0@example.com", "buyer1@example.com"] {
        let c = customers
            .values()
            .find(|c| c.tenant == "acme" && c.email.as_deref() == Some(buyer))
            .unwrap_or_else(|| panic!("{buyer} is a customer"));
        assert_eq!(
            c.identity_decisions.len(),
            1,
            "{buyer}: {:?}",
            c.identity_decisions
        );
        let d = &c.identity_decisions[0];
        let dom = dump_dom(
            &browser,
            profile.path(),
            &format!(
                "{}/ui?tenant=acme&email={}#token={ADMIN_TOKEN}",
                served.base,
                url_component(buyer)
            ),
        );
        assert!(dom.contains("data-state=\"customer\""), "{buyer}:\n{dom}");
        let shown = text_between(&dom, "decisions", "timeline");
        for want in [
            "block",
            d.key.as_str(),
            d.other.as_str(),
            "2026-03-02 09:30:00 UTC",
            "operator:identity/block:ui-block-1",
        ] {
            assert!(
                shown.contains(want),
                "{buyer}: the decision shows {want}:\n{shown}"
            );
        }
    }

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
            "{}/ui?tenant=acme&order={}#token={ADMIN_TOKEN}",
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
    // The books: every entry of the order's ledger, in the query API's order,
    // with its date, kind, provider, reference, amount, whether it counts and why.
    let view = {
        let owned = served.processor.owned.read().expect("lock");
        let db = owned.get(&acme).expect("acme's store").clone();
        let src = DbSource::new(&db);
        let fold = env.config.fold_config().expect("fold config");
        order_view(&src, &fold, "acme", order_id).expect("the order's view")
    };
    // The query API answers exactly that view, with the order's version.
    let answer: serde_json::Value = env.rt.block_on(async {
        let r = storefold_testkit::http_client()
            .get(format!(
                "{}/v1/tenants/acme/orders/{}",
                served.base,
                url_component(order_id)
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET the order");
        assert_eq!(r.status().as_u16(), 200);
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON")
    });
    let mut want = serde_json::to_value(&view).expect("view JSON");
    assert!(
        answer["version"].as_u64().is_some_and(|v| v >= 1),
        "{answer}"
    );
    want["version"] = answer["version"].clone();
    assert_eq!(
        answer, want,
        "the order endpoint answers the engine's order view"
    );
    for field in ["figures", "ledger", "shipments", "order", "customer_id"] {
        assert!(answer.get(field).is_some(), "{field} in {answer}");
    }
    assert!(
        view.ledger
            .iter()
            .any(|e| e.kind == EntryKind::Refund && e.counted),
        "the order's ledger has a counted refund: {:#?}",
        view.ledger
    );
    let rows = table_rows(&dom, "ledger");
    assert!(
        view.ledger.iter().any(|e| e
            .converted
            .as_ref()
            .is_some_and(|c| c.amount.currency != e.amount.currency)),
        "an entry converted to EUR: {:#?}",
        view.ledger
    );
    assert_eq!(
        rows.len(),
        view.ledger.len(),
        "one ledger row per entry:\n{rows:#?}\n{:#?}",
        view.ledger
    );
    for (e, (counted, cells)) in view.ledger.iter().zip(&rows) {
        let json = serde_json::to_value(e).expect("entry JSON");
        let at = json["at"].as_str().expect("at");
        let when = at.replacen('T', " ", 1);
        let when = when
            .strip_suffix('Z')
            .map_or(when.clone(), |w| format!("{w} UTC"));
        let kind = json["kind"].as_str().expect("kind").replace('_', " ");
        let figure = json["figure"]
            .as_str()
            .map(|f| format!(" ({})", f.replace('_', " ")))
            .unwrap_or_default();
        let want = vec![
            when,
            kind,
            e.provider.clone(),
            e.reference.clone(),
            match &e.converted {
                Some(c) if c.amount.currency != e.amount.currency => {
                    format!("{} = {} (rate of {})", e.amount, c.amount, c.rate_date)
                }
                _ => e.amount.to_string(),
            },
            format!("{}{figure}", if e.counted { "yes" } else { "no" }),
            e.why.clone(),
        ];
        assert_eq!(cells, &want, "the ledger row of {e:#?}");
        assert_eq!(*counted, e.counted, "data-counted of {e:#?}");
    }
    let facts = text_between(&dom, "order-facts", "ledger");
    for (c, minor) in &view.figures.net.0 {
        let net = Money::new(*minor, *c).to_string();
        assert!(
            facts.contains(&net),
            "the figures show the net {net}:\n{facts}"
        );
    }
    let paid = match view.figures.paid_source.as_str() {
        "provider" => "from the payment provider's captures",
        "store" => "from the store's word",
        other => panic!("paid_source {other}"),
    };
    assert!(
        facts.contains(paid),
        "the figures say where paid comes from:\n{facts}"
    );
    // The cost of goods: nothing in the corpus costs the generated orders'
    // lines, so the page names what has no cost and calls the margin unknown.
    assert!(view.figures.gross_margin.is_none(), "{:?}", view.figures);
    assert!(
        facts.contains("Cost of goods")
            && view
                .figures
                .cogs_unknown
                .iter()
                .all(|s| facts.contains(s.as_str()))
            && facts.contains("Gross margin")
            && facts.contains("unknown (a line has no unit cost"),
        "the figures show the cost of goods and why the margin is unknown:\n{facts}"
    );
    let r = view
        .figures
        .reporting
        .as_ref()
        .expect("the order's figures in EUR");
    let net = Money::new(r.net, r.currency).to_string();
    assert!(
        facts.contains("In EUR") && facts.contains(&format!("net {net}")),
        "the figures in the reporting currency:\n{facts}"
    );

    // Someone unknown: a clear not-found message.
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!(
            "{}/ui?tenant=acme&email=nobody%40nowhere.example#token={ADMIN_TOKEN}",
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
        &format!(
            "{}/ui?tenant={other}&email=a%40b.example#token={ADMIN_TOKEN}",
            served.base
        ),
    );
    assert!(
        dom.contains("data-state=\"not_owner\""),
        "a tenant on another partition ends in the not-owner state:\n{dom}"
    );
    assert!(
        text_between(&dom, "status", "customer").contains(&format!("partition {partition}")),
        "the not-owner message names partition {partition}:\n{dom}"
    );

    // Without a token the page asks for one and shows no data.
    let deep_link = format!(
        "{}/ui?tenant=acme&email={}",
        served.base,
        url_component(&email)
    );
    let dom = dump_dom(&browser, profile.path(), &deep_link);
    assert!(
        dom.contains("data-state=\"login\""),
        "without a token the page asks for one:\n{dom}"
    );
    assert!(
        !dom.contains(&email),
        "no customer data without a token:\n{dom}"
    );
    assert!(
        text_between(&dom, "status", "customer").contains("Sign in with an operator token"),
        "the sign-in message is shown:\n{dom}"
    );
    // A token the processor does not know is refused, and says so.
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!("{deep_link}#token=sft_not-a-configured-token"),
    );
    assert!(
        dom.contains("data-state=\"login\"") && dom.contains("was refused"),
        "an unknown token is refused:\n{dom}"
    );
    assert!(!dom.contains(&email), "no customer data with a wrong token");
    // Tenant beta's token never reads acme: the page says the tenant is not
    // one it may read, and shows nothing of the customer.
    let dom = dump_dom(
        &browser,
        profile.path(),
        &format!("{deep_link}#token={BETA_TOKEN}"),
    );
    assert!(
        dom.contains("data-state=\"not_found\"")
            && text_between(&dom, "status", "customer").contains("not one this token may read"),
        "another tenant's token gets not-found:\n{dom}"
    );
    assert!(!dom.contains(&email), "no acme data with beta's token");

    // The page's own headers: a strict CSP, never framed, no sniffing, no referrer.
    env.rt.block_on(async {
        for path in ["/ui", "/ui/app.js", "/ui/app.css"] {
            let r = storefold_testkit::http_client()
                .get(format!("{}{path}", served.base))
                .send()
                .await
                .expect("GET the page");
            assert_eq!(r.status().as_u16(), 200, "{path}");
            let h = r.headers();
            let csp = h["content-security-policy"].to_str().unwrap();
            for part in [
                "default-src 'self'",
                "script-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(part), "{path}: CSP {csp:?} lacks {part}");
            }
            assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        }
        // The page has no inline script for the CSP to block.
        let page = storefold_testkit::http_client()
            .get(format!("{}/ui", served.base))
            .send()
            .await
            .expect("GET /ui")
            .text()
            .await
            .expect("page");
        assert!(page.contains("<script src=\"/ui/app.js\"></script>"));
        assert_eq!(page.matches("<script").count(), 1, "one script, by URL");
        assert!(!page.contains(" style=") && !page.contains(" onclick="));
    });
    drop(served.processor);
}
