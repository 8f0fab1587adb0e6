//! The journey library, through the real mappers and the real engine: in every
//! arrival order (or 200 random ones when a journey has more than 7 steps), in
//! random batch splits and with redeliveries, the books must say exactly what
//! was worked out by hand (`crates/journeys/data/*/expect.json`), and every
//! arrival order must give the same books and the same newest triggers.

use std::collections::BTreeMap;

use storefold_core::Envelope;
use storefold_core::ledger::EntryKind;
use storefold_core::money::Money;
use storefold_journeys::run::{self, Arrival, Books, bag, same_bag};
use storefold_journeys::{Journey, Rng, journey, library};
use storefold_providers::{Credentials, ProviderKind, WebhookRequest};
use time::macros::datetime;

const RANDOM_ARRIVALS: usize = 200;
const MAX_EXHAUSTIVE: usize = 7;

fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Maps every step; a step its mapper refuses is reported with its file.
fn deliveries(j: &Journey) -> Result<Vec<Vec<Envelope>>, String> {
    j.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.map(&j.tenant, &j.options).map_err(|e| {
                format!(
                    "step {} ({} {}, {}) does not map: {e}",
                    i + 1,
                    s.provider,
                    s.topic,
                    s.body_file
                )
            })
        })
        .collect()
}

fn kind_name(k: EntryKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn multiset(items: &[(EntryKind, Money)]) -> BTreeMap<(EntryKind, Money), usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(*i).or_insert(0) += 1;
    }
    m
}

fn show(items: &BTreeMap<(EntryKind, Money), usize>) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|((k, m), n)| {
            if *n == 1 {
                format!("{} {m}", kind_name(*k))
            } else {
                format!("{n} x {} {m}", kind_name(*k))
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Where the books differ from the hand-computed expectation.
fn against_expectation(j: &Journey, b: &Books) -> Vec<String> {
    let mut out = Vec::new();
    let e = &j.expect;
    for (id, x) in &e.orders {
        let Some(got) = b.orders.get(id) else {
            out.push(format!(
                "order {id}: missing (orders present: {:?})",
                b.orders.keys().collect::<Vec<_>>()
            ));
            continue;
        };
        let f = &got.figures;
        let bags = [
            ("paid", &x.figures.paid, &f.paid),
            ("authorized", &x.figures.authorized, &f.authorized),
            ("refunded", &x.figures.refunded, &f.refunded),
            (
                "chargeback_lost",
                &x.figures.chargeback_lost,
                &f.chargeback_lost,
            ),
            ("disputed", &x.figures.disputed, &f.disputed),
            ("net", &x.figures.net, &f.net),
            ("fees", &x.figures.fees, &f.fees),
        ];
        for (name, want, have) in bags {
            if !same_bag(want, have) {
                out.push(format!(
                    "order {id} {name}: expected {}, got {}",
                    bag(want),
                    bag(have)
                ));
            }
        }
        if x.figures.paid_source != f.paid_source {
            out.push(format!(
                "order {id} paid_source: expected {}, got {:?}",
                x.figures.paid_source, f.paid_source
            ));
        }
        if let Some(k) = x.figures.fees_known
            && k != f.fees_known
        {
            out.push(format!(
                "order {id} fees_known: expected {k}, got {}",
                f.fees_known
            ));
        }
        for (name, want, have) in [
            (
                "net_after_fees",
                &x.figures.net_after_fees,
                &f.net_after_fees,
            ),
            ("gross_margin", &x.figures.gross_margin, &f.gross_margin),
        ] {
            // Checked when given; `None` is "unknown".
            let Some(want) = want else { continue };
            let ok = match (want, have) {
                (None, None) => true,
                (Some(w), Some(h)) => same_bag(w, h),
                _ => false,
            };
            if !ok {
                let s = |v: &Option<storefold_core::MoneyBag>| {
                    v.as_ref().map(bag).unwrap_or_else(|| "unknown".into())
                };
                out.push(format!(
                    "order {id} {name}: expected {}, got {}",
                    s(want),
                    s(have)
                ));
            }
        }
        if let Some(want) = &x.figures.cogs
            && !same_bag(want, &f.cogs)
        {
            out.push(format!(
                "order {id} cogs: expected {}, got {}",
                bag(want),
                bag(&f.cogs)
            ));
        }
        // Counted entries exactly; listed ones must be there.
        let counted: Vec<(EntryKind, Money)> = got
            .ledger
            .iter()
            .filter(|e| e.2)
            .map(|e| (e.0, e.1))
            .collect();
        let listed: Vec<(EntryKind, Money)> = got
            .ledger
            .iter()
            .filter(|e| !e.2)
            .map(|e| (e.0, e.1))
            .collect();
        let (want_c, have_c) = (multiset(&x.counted), multiset(&counted));
        if want_c != have_c {
            out.push(format!(
                "order {id} ledger (counted): expected {}, got {}",
                show(&want_c),
                show(&have_c)
            ));
        }
        let have_l = multiset(&listed);
        let mut missing = BTreeMap::new();
        for (k, n) in multiset(&x.listed) {
            let have = have_l.get(&k).copied().unwrap_or(0);
            if have < n {
                missing.insert(k, n - have);
            }
        }
        if !missing.is_empty() {
            out.push(format!(
                "order {id} ledger (listed, not counted): missing {}; listed entries are {}",
                show(&missing),
                show(&have_l)
            ));
        }
        if let Some(want) = &x.shipments {
            let mut want = want.clone();
            want.sort();
            if want != got.shipments {
                out.push(format!(
                    "order {id} shipments: expected {want:?}, got {:?}",
                    got.shipments
                ));
            }
        }
        if let Some(n) = x.returns
            && n != got.returns
        {
            out.push(format!(
                "order {id} returns: expected {n}, got {}",
                got.returns
            ));
        }
    }
    // Customers, found through the customer their orders belong to.
    for (email, c) in &e.customers {
        let ids: Vec<Option<&String>> = c
            .orders
            .iter()
            .map(|o| b.orders.get(o).and_then(|v| v.customer_id.as_ref()))
            .collect();
        let Some(Some(cid)) = ids.first() else {
            out.push(format!(
                "customer {email}: its order {:?} has no customer",
                c.orders.first()
            ));
            continue;
        };
        if ids.iter().any(|i| *i != Some(*cid)) {
            out.push(format!(
                "customer {email}: its orders {:?} belong to different customers {ids:?}",
                c.orders
            ));
        }
        let Some(got) = b.customers.get(*cid) else {
            out.push(format!("customer {email}: {cid} is not in the store"));
            continue;
        };
        if got.email.as_deref() != Some(email.as_str()) {
            out.push(format!(
                "customer {email}: the customer holding its orders has email {:?}",
                got.email
            ));
        }
        let mut want_orders = c.orders.clone();
        want_orders.sort();
        if want_orders != got.orders {
            out.push(format!(
                "customer {email} orders: expected {want_orders:?}, got {:?}",
                got.orders
            ));
        }
        let have: BTreeMap<String, (i64, i64, i64, i64, u64, i64)> = got
            .revenue
            .iter()
            .filter(|r| {
                (r.gross, r.refunded, r.chargeback_lost, r.net, r.orders) != (0, 0, 0, 0, 0)
            })
            .map(|r| {
                (
                    r.currency.code().to_string(),
                    (
                        r.gross,
                        r.refunded,
                        r.chargeback_lost,
                        r.net,
                        r.orders,
                        r.aov,
                    ),
                )
            })
            .collect();
        let want: BTreeMap<String, (i64, i64, i64, i64, u64, i64)> = c
            .revenue
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    (
                        r.gross,
                        r.refunded,
                        r.chargeback_lost,
                        r.net,
                        r.orders,
                        r.aov,
                    ),
                )
            })
            .collect();
        if want != have {
            out.push(format!(
                "customer {email} revenue (gross, refunded, chargeback_lost, net, orders, aov in minor units): expected {want:?}, got {have:?}"
            ));
        }
        for (code, r) in &c.revenue {
            let Some(want) = r.margin else { continue };
            let have = got
                .revenue
                .iter()
                .find(|x| x.currency.code() == code)
                .map(|x| (x.cogs, x.gross_margin));
            if have != Some(want) {
                out.push(format!(
                    "customer {email} {code} (cogs, gross margin): expected {want:?}, got {have:?}"
                ));
            }
        }
        if let Some(n) = c.tickets
            && n != got.tickets
        {
            out.push(format!(
                "customer {email} tickets: expected {n}, got {}",
                got.tickets
            ));
        }
        if let Some(n) = c.open_tickets
            && n != got.open_tickets
        {
            out.push(format!(
                "customer {email} open_tickets: expected {n}, got {}",
                got.open_tickets
            ));
        }
        if let Some(n) = c.returns
            && n != got.returns
        {
            out.push(format!(
                "customer {email} returns: expected {n}, got {}",
                got.returns
            ));
        }
    }
    let pairs = b.trigger_pairs();
    for t in &e.triggers {
        if !pairs.contains(t) {
            out.push(format!(
                "trigger {} of {}: expected, not emitted (emitted: {pairs:?})",
                t.0, t.1
            ));
        }
    }
    for t in &e.triggers_absent {
        if pairs.contains(t) {
            out.push(format!("trigger {} of {}: must not be emitted", t.0, t.1));
        }
    }
    out
}

/// Every check of one journey; empty when it holds.
fn check_journey(j: &Journey) -> Vec<String> {
    let deliveries = match deliveries(j) {
        Ok(d) => d,
        Err(e) => return vec![e],
    };
    let n = deliveries.len();
    let in_order: Vec<usize> = (0..n).collect();
    let canonical = match Arrival::one_by_one(&in_order).fold(&deliveries) {
        Ok(f) => Books::of(&f),
        Err(e) => return vec![format!("in the order they happened: {e}")],
    };
    let mut out: Vec<String> = against_expectation(j, &canonical)
        .into_iter()
        .map(|l| format!("in the order they happened: {l}"))
        .collect();
    let mut rng = Rng::new(seed_of(&j.name));
    let orders: Vec<Vec<usize>> = if n <= MAX_EXHAUSTIVE {
        run::permutations(n)
    } else {
        (0..RANDOM_ARRIVALS)
            .map(|_| {
                let mut p = in_order.clone();
                rng.shuffle(&mut p);
                p
            })
            .collect()
    };
    let total = orders.len();
    let mut diverging = 0;
    for (i, p) in orders.iter().enumerate() {
        let arrival = if i % 3 == 0 {
            Arrival::one_by_one(p)
        } else {
            Arrival::shaken(p, &mut rng, 25)
        };
        let books = match arrival.fold(&deliveries) {
            Ok(f) => Books::of(&f),
            Err(e) => {
                diverging += 1;
                if diverging <= 2 {
                    out.push(format!("arriving as {}: {e}", arrival.describe()));
                }
                continue;
            }
        };
        let diff = canonical.diff(&books, 8);
        if !diff.is_empty() {
            diverging += 1;
            if diverging <= 2 {
                out.push(format!(
                    "arriving as {} (steps numbered from 1, batches in brackets) the books differ from the order they happened (happened vs this arrival):",
                    arrival.describe()
                ));
                out.extend(diff.into_iter().map(|l| format!("    {l}")));
            }
        }
    }
    if diverging > 0 {
        out.push(format!(
            "{diverging} of {total} arrival orders give other books"
        ));
    }
    out
}

fn check(name: &str) {
    let j = journey(name);
    let problems = check_journey(&j);
    assert!(
        problems.is_empty(),
        "{}",
        run::report(
            &format!(
                "journey {name} ({}): {} steps; expectations in crates/journeys/data/{name}/expect.json",
                j.title,
                j.steps.len()
            ),
            &problems
        )
    );
}

#[test]
fn shopify_partial_refund() {
    check("shopify_partial_refund");
}

#[test]
fn shopify_costs_margin() {
    check("shopify_costs_margin");
}

#[test]
fn shopify_full_refund_cancel() {
    check("shopify_full_refund_cancel");
}

#[test]
fn shopify_order_edit() {
    check("shopify_order_edit");
}

#[test]
fn woo_stripe() {
    check("woo_stripe");
}

#[test]
fn woo_paypal() {
    check("woo_paypal");
}

#[test]
fn shopify_adyen() {
    check("shopify_adyen");
}

#[test]
fn stripe_refund_fails() {
    check("stripe_refund_fails");
}

#[test]
fn stripe_inquiry_refund() {
    check("stripe_inquiry_refund");
}

#[test]
fn shopify_presentment() {
    check("shopify_presentment");
}

#[test]
fn combined_parcel() {
    check("combined_parcel");
}

#[test]
fn helpdesk_return() {
    check("helpdesk_return");
}

#[test]
fn every_journey_of_the_library_has_its_test() {
    let tested = [
        "combined_parcel",
        "helpdesk_return",
        "shopify_adyen",
        "shopify_costs_margin",
        "shopify_full_refund_cancel",
        "shopify_order_edit",
        "shopify_partial_refund",
        "shopify_presentment",
        "stripe_inquiry_refund",
        "stripe_refund_fails",
        "woo_paypal",
        "woo_stripe",
    ];
    let names: Vec<String> = library().into_iter().map(|j| j.name).collect();
    assert_eq!(names, tested, "add a #[test] for every journey directory");
}

#[test]
fn the_ingest_would_store_every_step_under_its_manifest_topic_and_event_id() {
    let mut problems = Vec::new();
    for j in library() {
        for (i, s) in j.steps.iter().enumerate() {
            // Every body is JSON: one document, or one per line for the ERP feed.
            let json = if s.provider == ProviderKind::Erp {
                s.body
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .all(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok())
            } else {
                serde_json::from_slice::<serde_json::Value>(&s.body).is_ok()
            };
            assert!(json, "{} step {}: the body is not JSON", j.name, i + 1);
            let headers = s.headers();
            let req = WebhookRequest {
                headers: &headers,
                body: &s.body,
                url_token: None,
            };
            match s.provider.describe(&req) {
                Ok(inbound) if inbound.topic == s.topic && inbound.event_id == s.event_id => {}
                Ok(inbound) => problems.push(format!(
                    "{} step {} ({}): the ingest finds topic {:?} and event id {:?}; the manifest says {:?} and {:?}",
                    j.name,
                    i + 1,
                    s.body_file,
                    inbound.topic,
                    inbound.event_id,
                    s.topic,
                    s.event_id
                )),
                Err(e) => problems.push(format!("{} step {} ({}): describe refuses it: {e}", j.name, i + 1, s.body_file)),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}",
        run::report("describe", &problems)
    );
}

#[test]
fn every_step_can_be_signed_and_verified_the_way_the_ingest_checks_it() {
    // PayPal signs with an RSA key and a pinned certificate: the processor tests
    // that post the library bring their own; every other provider here is HMAC.
    let now = datetime!(2025-06-01 12:00 UTC);
    for j in library() {
        for (i, s) in j.steps.iter().enumerate() {
            if s.provider == ProviderKind::Paypal {
                continue;
            }
            let secret = match s.provider {
                ProviderKind::Adyen => {
                    "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
                }
                _ => "journeys-secret",
            };
            let signed = s
                .provider
                .sign(secret, &s.topic, &s.body, now)
                .unwrap_or_else(|e| panic!("{} step {}: sign: {e}", j.name, i + 1));
            let mut headers = s.headers();
            for (k, v) in &signed.headers {
                headers.insert(k, v);
            }
            let req = WebhookRequest {
                headers: &headers,
                body: &signed.body,
                url_token: signed.url_token.as_deref(),
            };
            s.provider
                .verify(&Credentials::new(secret), &req, now)
                .unwrap_or_else(|e| panic!("{} step {}: verify: {e}", j.name, i + 1));
        }
    }
}
