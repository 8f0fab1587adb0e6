//! Generated journeys against the independent model: 500 worlds per run (set
//! `JOURNEYS_CASES` for more, `JOURNEYS_SEED` to replay one), each rendered as
//! the webhooks its providers send, mapped by the real mappers and folded by
//! the real engine in the order it happened and in random arrival orders,
//! batch splits and redeliveries. The engine's figures and customer revenue
//! must equal the model's, and every arrival order must give the same figures,
//! ledgers, customers (ids, merges, revenue, segments) and newest triggers.
//!
//! A failure prints the seed, the world and the first differences.

use std::collections::BTreeMap;

use proptest::prelude::*;
use storefold_core::{Envelope, MoneyBag};
use storefold_journeys::Rng;
use storefold_journeys::generator::{self, Webhook};
use storefold_journeys::model::{self, Bag, Expected, Figures};
use storefold_journeys::run::{Arrival, Books};
use storefold_providers::MapOptions;

const CASES: u64 = 500;
const ARRIVALS: usize = 4;
const BASE_SEED: u64 = 0x5EED_2025_0601;

fn bag_of(b: &MoneyBag) -> Bag {
    b.iter()
        .filter(|m| m.minor != 0)
        .map(|m| (m.currency.code().to_string(), m.minor))
        .collect()
}

fn map_all(
    tenant: &str,
    options: &MapOptions,
    hooks: &[Webhook],
) -> Result<Vec<Vec<Envelope>>, String> {
    hooks
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.map(tenant, options).map_err(|e| {
                format!(
                    "webhook {} ({} {} {}) does not map: {e}\n{}",
                    i + 1,
                    h.provider,
                    h.topic,
                    h.event_id,
                    String::from_utf8_lossy(&h.body)
                )
            })
        })
        .collect()
}

fn figures_diff(
    id: &str,
    want: &Figures,
    got: &storefold_core::ledger::OrderFigures,
    out: &mut Vec<String>,
) {
    let pairs: [(&str, &Bag, &MoneyBag); 7] = [
        ("paid", &want.paid, &got.paid),
        ("authorized", &want.authorized, &got.authorized),
        ("refunded", &want.refunded, &got.refunded),
        (
            "chargeback_lost",
            &want.chargeback_lost,
            &got.chargeback_lost,
        ),
        ("disputed", &want.disputed, &got.disputed),
        ("net", &want.net, &got.net),
        ("fees", &want.fees, &got.fees),
    ];
    for (name, w, g) in pairs {
        let g = bag_of(g);
        if *w != g {
            out.push(format!("order {id} {name}: model {w:?}, engine {g:?}"));
        }
    }
    if want.paid_source != got.paid_source {
        out.push(format!(
            "order {id} paid_source: model {}, engine {}",
            want.paid_source, got.paid_source
        ));
    }
    if let Some(k) = want.fees_known
        && k != got.fees_known
    {
        out.push(format!(
            "order {id} fees_known: model {k}, engine {}",
            got.fees_known
        ));
    }
    if let Some(w) = &want.net_after_fees {
        let g = got.net_after_fees.as_ref().map(bag_of);
        if *w != g {
            out.push(format!(
                "order {id} net_after_fees: model {w:?}, engine {g:?}"
            ));
        }
    }
}

fn against_model(expected: &Expected, b: &Books) -> Vec<String> {
    let mut out = Vec::new();
    for (id, want) in &expected.orders {
        match b.orders.get(id) {
            Some(got) => figures_diff(id, want, &got.figures, &mut out),
            None => out.push(format!("order {id}: not in the engine's store")),
        }
    }
    for (i, (orders, revenue)) in expected.customers.iter().enumerate() {
        let Some(first) = orders.iter().next() else {
            continue;
        };
        let Some(cid) = b.orders.get(first).and_then(|o| o.customer_id.clone()) else {
            out.push(format!("customer {i}: its order {first} has no customer"));
            continue;
        };
        let Some(c) = b.customers.get(&cid) else {
            out.push(format!("customer {i}: {cid} not in the store"));
            continue;
        };
        let got_orders: std::collections::BTreeSet<String> = c.orders.iter().cloned().collect();
        if got_orders != *orders {
            out.push(format!(
                "customer {i} ({cid}) orders: model {orders:?}, engine {got_orders:?}"
            ));
        }
        let got: BTreeMap<String, model::Revenue> = c
            .revenue
            .iter()
            .filter(|r| {
                (r.gross, r.refunded, r.chargeback_lost, r.net, r.orders) != (0, 0, 0, 0, 0)
            })
            .map(|r| {
                (
                    r.currency.code().to_string(),
                    model::Revenue {
                        gross: r.gross,
                        refunded: r.refunded,
                        chargeback_lost: r.chargeback_lost,
                        net: r.net,
                        orders: r.orders,
                        aov: r.aov,
                    },
                )
            })
            .collect();
        let want: BTreeMap<String, model::Revenue> = revenue
            .iter()
            .filter(|(_, r)| {
                (r.gross, r.refunded, r.chargeback_lost, r.net, r.orders) != (0, 0, 0, 0, 0)
            })
            .map(|(k, r)| (k.clone(), *r))
            .collect();
        if got != want {
            out.push(format!(
                "customer {i} ({cid}) revenue: model {want:?}, engine {got:?}"
            ));
        }
    }
    // Test orders count nothing: no customer holds them.
    for c in b.customers.values() {
        for o in &c.orders {
            if expected.test_orders.contains(o) {
                out.push(format!("test order {o} counts for customer {:?}", c.email));
            }
        }
    }
    out
}

/// Every check of one generated world; empty when it holds.
fn check_seed(seed: u64) -> Vec<String> {
    let world = generator::world(seed);
    let options = generator::options(&world);
    let hooks = generator::render(&world, seed);
    let deliveries = match map_all(&world.tenant, &options, &hooks) {
        Ok(d) => d,
        Err(e) => return vec![e],
    };
    let expected = model::expect(&world);
    let n = deliveries.len();
    let in_order: Vec<usize> = (0..n).collect();
    let canonical = match Arrival::one_by_one(&in_order).fold(&deliveries) {
        Ok(f) => Books::of(&f),
        Err(e) => return vec![format!("in the order they happened: {e}")],
    };
    let mut out: Vec<String> = against_model(&expected, &canonical)
        .into_iter()
        .map(|l| format!("in the order they happened: {l}"))
        .collect();
    let mut rng = Rng::new(seed ^ 0xA11_0CA7E);
    for _ in 0..ARRIVALS {
        let mut p = in_order.clone();
        rng.shuffle(&mut p);
        let arrival = Arrival::shaken(&p, &mut rng, 15);
        match arrival.fold(&deliveries) {
            Ok(f) => {
                let diff = canonical.diff(&Books::of(&f), 6);
                if !diff.is_empty() {
                    out.push(format!("arriving as {}:", arrival.describe()));
                    out.extend(diff.into_iter().map(|l| format!("    {l}")));
                    break;
                }
            }
            Err(e) => {
                out.push(format!("arriving as {}: {e}", arrival.describe()));
                break;
            }
        }
    }
    out
}

/// What a difference is about, without its ids and amounts: `order net`,
/// `arrival: trigger first_order only in the first`.
fn kind_of(line: &str) -> Option<String> {
    let (prefix, rest) = match line
        .trim_start()
        .strip_prefix("in the order they happened: ")
    {
        Some(rest) => ("", rest),
        None if line.trim_start().starts_with("arriving as") => return None,
        None if line.starts_with("    ") => ("arrival: ", line.trim_start()),
        None => ("", line.trim_start()),
    };
    let mut words = Vec::new();
    for w in rest.split_whitespace() {
        let w = w.trim_matches(|c| c == '(' || c == ')' || c == ',');
        if w.is_empty()
            || w.chars().any(|c| c.is_ascii_digit())
            || w.contains('"')
            || w.trim_end_matches(':').contains(':')
        {
            continue;
        }
        let end = w.ends_with(':');
        words.push(w.trim_end_matches(':').to_string());
        if end || words.len() == 6 {
            break;
        }
    }
    Some(format!("{prefix}{}", words.join(" ")))
}

fn hooks_list(seed: u64) -> String {
    let world = generator::world(seed);
    generator::render(&world, seed)
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!(
                "    {:>2}. {} {} {}\n",
                i + 1,
                h.provider,
                h.topic,
                h.event_id
            )
        })
        .collect()
}

#[test]
fn generated_journeys_agree_with_the_model_in_any_arrival_order() {
    let seeds: Vec<u64> = match std::env::var("JOURNEYS_SEED") {
        Ok(s) => vec![s.trim().parse().expect("JOURNEYS_SEED is a u64")],
        Err(_) => {
            let cases = std::env::var("JOURNEYS_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(CASES);
            (0..cases)
                .map(|i| BASE_SEED.wrapping_add(i.wrapping_mul(0x9E37_79B9)))
                .collect()
        }
    };
    let mut failures: Vec<(u64, Vec<String>)> = Vec::new();
    for &seed in &seeds {
        let problems = check_seed(seed);
        if !problems.is_empty() {
            failures.push((seed, problems));
        }
    }
    if failures.is_empty() {
        return;
    }
    // Which kinds of difference, over all failing seeds.
    let mut kinds: BTreeMap<String, (usize, Vec<u64>)> = BTreeMap::new();
    for (seed, problems) in &failures {
        let mut seen = std::collections::BTreeSet::new();
        for p in problems {
            if let Some(key) = kind_of(p)
                && seen.insert(key.clone())
            {
                let k = kinds.entry(key).or_default();
                k.0 += 1;
                if k.1.len() < 3 {
                    k.1.push(*seed);
                }
            }
        }
    }
    let mut msg = format!(
        "{} of {} generated journeys fail (replay one with JOURNEYS_SEED=<seed>)\n\nkinds of difference (number of seeds showing it, a few of them):\n",
        failures.len(),
        seeds.len()
    );
    for (k, (n, examples)) in &kinds {
        msg.push_str(&format!("  {n:>4}  {k}  e.g. {examples:?}\n"));
    }
    for (seed, problems) in failures.iter().take(3) {
        msg.push_str(&format!(
            "\nseed {seed}\n{}  webhooks in the order they happened:\n{}  differences:\n",
            generator::describe(&generator::world(*seed)),
            hooks_list(*seed)
        ));
        for p in problems.iter().take(12) {
            msg.push_str(&format!("    - {p}\n"));
        }
    }
    panic!("{msg}");
}

#[test]
fn the_generator_covers_what_the_property_claims() {
    use model::{DisputeStatus, Flow, Provider, RefundOutcome, Store};
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut note = |k: &'static str, on: bool| {
        if on {
            *seen.entry(k).or_default() += 1;
        }
    };
    for i in 0..CASES {
        let w = generator::world(BASE_SEED.wrapping_add(i.wrapping_mul(0x9E37_79B9)));
        note("two stores", w.stores.len() == 2);
        note("adyen manual capture", w.adyen_manual);
        for c in &w.customers {
            note("redaction", c.redacted);
            note("touch sent twice", c.touches.iter().any(|t| t.sent_twice));
            note("identify", c.identifies);
        }
        for o in &w.orders {
            note("shopify", o.store == Store::Shopify);
            note("woocommerce", o.store == Store::WooCommerce);
            note("store only", o.payments.is_empty());
            note("presentment currency", o.currency != o.shop_currency);
            note("order edit", o.edit.is_some());
            note("cancelled", o.cancelled);
            note("test order", o.test);
            note("store refund", !o.store_refunds.is_empty());
            note(
                "store refund without gateway",
                o.store_refunds.iter().any(|r| r.gateway.is_none()),
            );
            for p in &o.payments {
                note("stripe", p.provider == Provider::Stripe);
                note("adyen", p.provider == Provider::Adyen);
                note("paypal", p.provider == Provider::Paypal);
                note("declined first", p.declined_first);
                note("resolves late (no order named)", !p.names_order);
                note("refunds as a total only", p.refunds_as_total_only);
                note("reversal", p.reversal.is_some());
                match &p.flow {
                    Flow::Immediate { .. } => note("immediate capture", true),
                    Flow::Captures { captures, end } => {
                        note("manual capture", true);
                        note("several captures", captures.len() > 1);
                        note(
                            "capture failed after success",
                            captures.iter().any(|c| c.fails_later),
                        );
                        note("partial capture voided", *end == model::AuthEnd::Voided);
                    }
                    Flow::AuthOnly { end } => {
                        note("authorised only", true);
                        note("void", *end == model::AuthEnd::Voided);
                    }
                }
                for r in &p.refunds {
                    note("refund pending", r.outcome == RefundOutcome::Pending);
                    note(
                        "refund failed after success",
                        r.outcome == RefundOutcome::FailedAfterSucceeded,
                    );
                    note("refund refused", r.outcome == RefundOutcome::Failed);
                }
                for d in &p.disputes {
                    let statuses: Vec<DisputeStatus> = d.course.iter().map(|s| s.status).collect();
                    let last = statuses.last().copied();
                    note("dispute lost", last == Some(DisputeStatus::Lost));
                    note("dispute won", last == Some(DisputeStatus::Won));
                    note("dispute open", last.is_some_and(|s| !s.closed()));
                    note(
                        "inquiry answered with a refund",
                        last == Some(DisputeStatus::MerchantRefunded)
                            || (statuses.first() == Some(&DisputeStatus::Inquiry)
                                && last == Some(DisputeStatus::WarningClosed)
                                && p.refunds.iter().any(|r| r.amount == d.amount)),
                    );
                    note(
                        "lost, reversed, lost again",
                        statuses
                            .windows(2)
                            .any(|w| w == [DisputeStatus::Won, DisputeStatus::Lost]),
                    );
                    note(
                        "lost then won",
                        last == Some(DisputeStatus::Won)
                            && statuses.contains(&DisputeStatus::NeedsResponse),
                    );
                }
            }
        }
    }
    let wanted = [
        "two stores",
        "adyen manual capture",
        "redaction",
        "touch sent twice",
        "identify",
        "shopify",
        "woocommerce",
        "store only",
        "presentment currency",
        "order edit",
        "cancelled",
        "test order",
        "store refund",
        "store refund without gateway",
        "stripe",
        "adyen",
        "paypal",
        "declined first",
        "resolves late (no order named)",
        "refunds as a total only",
        "reversal",
        "immediate capture",
        "manual capture",
        "several captures",
        "capture failed after success",
        "partial capture voided",
        "authorised only",
        "void",
        "refund pending",
        "refund failed after success",
        "refund refused",
        "dispute lost",
        "dispute won",
        "dispute open",
        "inquiry answered with a refund",
        "lost, reversed, lost again",
        "lost then won",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|k| !seen.contains_key(k))
        .collect();
    assert!(
        missing.is_empty(),
        "never generated: {missing:?}; seen {seen:?}"
    );
}

proptest! {
    // The model itself: its books are a function of the set of what happened,
    // and they balance (net = paid - refunded - chargeback_lost).
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn the_model_balances_and_ignores_the_order_of_its_lists(seed in any::<u64>(), shuffle in any::<u64>()) {
        let w = generator::world(seed);
        let want = model::expect(&w);
        let mut shuffled = w.clone();
        let mut rng = Rng::new(shuffle);
        for o in &mut shuffled.orders {
            rng.shuffle(&mut o.store_refunds);
            for p in &mut o.payments {
                rng.shuffle(&mut p.refunds);
                for d in &mut p.disputes {
                    rng.shuffle(&mut d.course);
                }
            }
        }
        let got = model::expect(&shuffled);
        prop_assert_eq!(&want.orders, &got.orders);
        for (id, f) in &want.orders {
            let mut net = f.paid.clone();
            for (c, m) in f.refunded.iter().chain(f.chargeback_lost.iter()) {
                *net.entry(c.clone()).or_insert(0) -= m;
            }
            net.retain(|_, m| *m != 0);
            prop_assert_eq!(&net, &f.net, "order {}", id);
        }
    }
}
