//! Folding deliveries with the real engine, in any arrival order, and reading
//! back what the books say.
//!
//! A delivery is one raw webhook's envelopes (what its provider's mapper made
//! of it). [`fold`] applies deliveries batch by batch the way the processor
//! does (one [`Engine`] per batch, its changes committed to a [`MemStore`]);
//! [`Books::of`] reads the order figures, ledgers, customers and the newest
//! trigger of every trigger id. [`Books::diff`] says where two readings differ.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use storefold_core::aggregate::CurrencyRevenue;
use storefold_core::engine::{Merge, Trigger};
use storefold_core::ledger::{EntryKind, OrderFigures};
use storefold_core::{Engine, Envelope, MemStore, Money, MoneyBag};

use crate::Rng;

/// What one fold produced.
#[derive(Debug)]
pub struct Folded {
    pub store: MemStore,
    /// The newest trigger of every trigger id (the last one emitted).
    pub triggers: BTreeMap<String, Trigger>,
    pub merges: Vec<Merge>,
}

/// Folds `batches` of deliveries in order. An envelope the engine refuses is an
/// error naming it.
pub fn fold(batches: &[Vec<&[Envelope]>]) -> Result<Folded, String> {
    let mut store = MemStore::default();
    let mut triggers = BTreeMap::new();
    let mut merges = Vec::new();
    for batch in batches {
        let mut engine = Engine::new();
        for delivery in batch {
            for env in delivery.iter() {
                engine.apply(&store, env).map_err(|e| {
                    format!(
                        "the engine refused {} ({} {}): {e}",
                        env.event_id,
                        env.provider,
                        env.event.type_name()
                    )
                })?;
            }
        }
        let out = engine.finish(&store);
        store.commit(out.changes);
        for t in out.triggers {
            triggers.insert(t.trigger_id.clone(), t);
        }
        merges.extend(out.merges);
    }
    Ok(Folded {
        store,
        triggers,
        merges,
    })
}

/// One way the deliveries may arrive: an order of delivery indices (a
/// redelivered one appears twice) cut into batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub batches: Vec<Vec<usize>>,
}

impl Arrival {
    /// `order` in one batch per delivery.
    pub fn one_by_one(order: &[usize]) -> Self {
        Arrival {
            batches: order.iter().map(|&i| vec![i]).collect(),
        }
    }

    /// `order`, with some deliveries delivered a second time later on, cut into
    /// random batches.
    pub fn shaken(order: &[usize], rng: &mut Rng, redeliver_pct: u64) -> Self {
        let mut seq: Vec<usize> = order.to_vec();
        for (pos, &i) in order.iter().enumerate() {
            if rng.chance(redeliver_pct) {
                let at = pos + 1 + rng.below((seq.len() - pos) as u64) as usize;
                seq.insert(at.min(seq.len()), i);
            }
        }
        let mut batches = Vec::new();
        let mut rest = seq.as_slice();
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(6) as u64) as usize;
            batches.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        Arrival { batches }
    }

    /// Folds `deliveries` arriving this way.
    pub fn fold(&self, deliveries: &[Vec<Envelope>]) -> Result<Folded, String> {
        let batches: Vec<Vec<&[Envelope]>> = self
            .batches
            .iter()
            .map(|b| b.iter().map(|&i| deliveries[i].as_slice()).collect())
            .collect();
        fold(&batches)
    }

    /// `[3 1] [0 2 3]` (batches of delivery numbers, counting from 1).
    pub fn describe(&self) -> String {
        self.batches
            .iter()
            .map(|b| {
                let inner: Vec<String> = b.iter().map(|i| (i + 1).to_string()).collect();
                format!("[{}]", inner.join(" "))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Every permutation of `0..n`, in lexicographic order.
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut p: Vec<usize> = (0..n).collect();
    loop {
        out.push(p.clone());
        // Next lexicographic permutation.
        let Some(i) = (1..n).rev().find(|&i| p[i - 1] < p[i]) else {
            return out;
        };
        let j = (i..n).rev().find(|&j| p[j] > p[i - 1]).unwrap_or(i);
        p.swap(i - 1, j);
        p[i..].reverse();
    }
}

/// A ledger entry as the books are compared: kind, amount, counted.
pub type Entry = (EntryKind, Money, bool);

/// One order as compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBooks {
    pub figures: OrderFigures,
    /// Sorted.
    pub ledger: Vec<Entry>,
    pub customer_id: Option<String>,
    /// `(tracking number, status)`, sorted.
    pub shipments: Vec<(String, String)>,
    pub returns: usize,
}

/// One customer as compared: ids, merges, revenue, segments, orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerBooks {
    pub email: Option<String>,
    pub merged: Vec<String>,
    pub revenue: Vec<CurrencyRevenue>,
    pub segments: Vec<String>,
    pub orders: Vec<String>,
    pub redacted: bool,
    pub tickets: usize,
    pub open_tickets: u64,
    pub returns: u64,
}

/// What the books say after a fold.
#[derive(Clone, Debug, PartialEq)]
pub struct Books {
    pub orders: BTreeMap<String, OrderBooks>,
    pub customers: BTreeMap<String, CustomerBooks>,
    pub triggers: BTreeMap<String, Trigger>,
}

impl Books {
    pub fn of(f: &Folded) -> Books {
        let orders = f
            .store
            .order_views()
            .into_iter()
            .map(|(id, v)| {
                let mut ledger: Vec<Entry> = v
                    .ledger
                    .iter()
                    .map(|e| (e.kind, e.amount, e.counted))
                    .collect();
                ledger.sort();
                let mut shipments: Vec<(String, String)> = v
                    .shipments
                    .iter()
                    .map(|s| {
                        (
                            s.tracking_number.clone(),
                            s.status.map(|s| s.as_str()).unwrap_or("none").to_string(),
                        )
                    })
                    .collect();
                shipments.sort();
                (
                    id,
                    OrderBooks {
                        figures: v.figures.clone(),
                        ledger,
                        customer_id: v.customer_id.clone(),
                        shipments,
                        returns: v.order.returns.len(),
                    },
                )
            })
            .collect();
        let customers = f
            .store
            .customers()
            .into_iter()
            .map(|(id, c)| {
                let mut merged: Vec<String> =
                    c.merged.iter().map(|m| m.merged_id.clone()).collect();
                merged.sort();
                let mut orders: Vec<String> = c.orders.iter().map(|o| o.order_id.clone()).collect();
                orders.sort();
                (
                    id,
                    CustomerBooks {
                        email: c.email.clone(),
                        merged,
                        revenue: c.revenue.clone(),
                        segments: c.segments.clone(),
                        orders,
                        redacted: c.redacted,
                        tickets: c.tickets.len(),
                        open_tickets: c.open_tickets,
                        returns: c.returns,
                    },
                )
            })
            .collect();
        Books {
            orders,
            customers,
            triggers: f.triggers.clone(),
        }
    }

    /// The newest triggers as `(kind, order id)` pairs.
    pub fn trigger_pairs(&self) -> BTreeSet<(String, String)> {
        self.triggers
            .values()
            .map(|t| (t.kind.clone(), t.order_id.clone().unwrap_or_default()))
            .collect()
    }

    /// Where `self` differs from `other` (at most `limit` lines), empty when equal.
    pub fn diff(&self, other: &Books, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let ids: BTreeSet<&String> = self.orders.keys().chain(other.orders.keys()).collect();
        for id in ids {
            match (self.orders.get(id), other.orders.get(id)) {
                (Some(a), Some(b)) => {
                    figure_diff(id, &a.figures, &b.figures, &mut out);
                    if a.ledger != b.ledger {
                        out.push(format!(
                            "order {id} ledger: {} vs {}",
                            entries(&a.ledger),
                            entries(&b.ledger)
                        ));
                    }
                    if a.customer_id != b.customer_id {
                        out.push(format!(
                            "order {id} customer: {:?} vs {:?}",
                            a.customer_id, b.customer_id
                        ));
                    }
                    if a.shipments != b.shipments {
                        out.push(format!(
                            "order {id} shipments: {:?} vs {:?}",
                            a.shipments, b.shipments
                        ));
                    }
                    if a.returns != b.returns {
                        out.push(format!(
                            "order {id} returns: {} vs {}",
                            a.returns, b.returns
                        ));
                    }
                }
                (a, b) => out.push(format!(
                    "order {id}: {} vs {}",
                    if a.is_some() { "present" } else { "absent" },
                    if b.is_some() { "present" } else { "absent" }
                )),
            }
        }
        let ids: BTreeSet<&String> = self
            .customers
            .keys()
            .chain(other.customers.keys())
            .collect();
        for id in ids {
            match (self.customers.get(id), other.customers.get(id)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => out.push(format!("customer {id}: {a:?} vs {b:?}")),
                (a, b) => out.push(format!(
                    "customer {id}: {} vs {}",
                    if a.is_some() { "present" } else { "absent" },
                    if b.is_some() { "present" } else { "absent" }
                )),
            }
        }
        let ids: BTreeSet<&String> = self.triggers.keys().chain(other.triggers.keys()).collect();
        for id in ids {
            match (self.triggers.get(id), other.triggers.get(id)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => out.push(trigger_diff(a, b)),
                (Some(a), None) => out.push(format!(
                    "trigger {id} ({} of {:?}) only in the first",
                    a.kind, a.order_id
                )),
                (None, Some(b)) => out.push(format!(
                    "trigger {id} ({} of {:?}) only in the second",
                    b.kind, b.order_id
                )),
                (None, None) => {}
            }
        }
        out.truncate(limit);
        out
    }
}

/// The fields two versions of one trigger differ in.
fn trigger_diff(a: &Trigger, b: &Trigger) -> String {
    let mut fields = Vec::new();
    if a.kind != b.kind {
        fields.push(format!("kind {} vs {}", a.kind, b.kind));
    }
    if a.customer_id != b.customer_id {
        fields.push(format!(
            "customer_id {:?} vs {:?}",
            a.customer_id, b.customer_id
        ));
    }
    if a.order_id != b.order_id {
        fields.push(format!("order_id {:?} vs {:?}", a.order_id, b.order_id));
    }
    if a.occurred_at != b.occurred_at {
        fields.push(format!(
            "occurred_at {} vs {}",
            a.occurred_at, b.occurred_at
        ));
    }
    if a.source_event_id != b.source_event_id {
        fields.push(format!(
            "source_event_id {} vs {}",
            a.source_event_id, b.source_event_id
        ));
    }
    if a.data != b.data {
        fields.push(format!("data {} vs {}", a.data, b.data));
    }
    if a.tenant != b.tenant {
        fields.push(format!("tenant {} vs {}", a.tenant, b.tenant));
    }
    format!(
        "trigger {} ({} of {}): {}",
        a.trigger_id,
        a.kind,
        a.order_id.as_deref().unwrap_or("-"),
        fields.join(", ")
    )
}

/// A bag without zero entries, as `{USD 1.00, EUR 2.00}`.
pub fn bag(b: &MoneyBag) -> String {
    let parts: Vec<String> = b
        .iter()
        .filter(|m| m.minor != 0)
        .map(|m| m.to_string())
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Two bags are equal when their non-zero entries are.
pub fn same_bag(a: &MoneyBag, b: &MoneyBag) -> bool {
    let nz = |b: &MoneyBag| -> Vec<Money> { b.iter().filter(|m| m.minor != 0).collect() };
    nz(a) == nz(b)
}

/// `[captured USD 1.00 counted, fee USD 0.30 listed]`.
pub fn entries(e: &[Entry]) -> String {
    let parts: Vec<String> = e
        .iter()
        .map(|(k, m, c)| {
            format!(
                "{} {m} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                if *c { "counted" } else { "listed" }
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn figure_diff(id: &str, a: &OrderFigures, b: &OrderFigures, out: &mut Vec<String>) {
    let bags: [(&str, &MoneyBag, &MoneyBag); 8] = [
        ("paid", &a.paid, &b.paid),
        ("authorized", &a.authorized, &b.authorized),
        ("refunded", &a.refunded, &b.refunded),
        ("chargeback_lost", &a.chargeback_lost, &b.chargeback_lost),
        ("disputed", &a.disputed, &b.disputed),
        ("net", &a.net, &b.net),
        ("fees", &a.fees, &b.fees),
        ("cogs", &a.cogs, &b.cogs),
    ];
    for (name, x, y) in bags {
        if !same_bag(x, y) {
            out.push(format!("order {id} {name}: {} vs {}", bag(x), bag(y)));
        }
    }
    if a.paid_source != b.paid_source {
        out.push(format!(
            "order {id} paid_source: {} vs {}",
            a.paid_source, b.paid_source
        ));
    }
    if a.fees_known != b.fees_known {
        out.push(format!(
            "order {id} fees_known: {} vs {}",
            a.fees_known, b.fees_known
        ));
    }
    let naf = |x: &Option<MoneyBag>| x.as_ref().map(bag).unwrap_or_else(|| "unknown".into());
    if naf(&a.net_after_fees) != naf(&b.net_after_fees) {
        out.push(format!(
            "order {id} net_after_fees: {} vs {}",
            naf(&a.net_after_fees),
            naf(&b.net_after_fees)
        ));
    }
    if naf(&a.gross_margin) != naf(&b.gross_margin) {
        out.push(format!(
            "order {id} gross_margin: {} vs {}",
            naf(&a.gross_margin),
            naf(&b.gross_margin)
        ));
    }
}

/// A report of several lines, for assertion messages.
pub fn report(title: &str, lines: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{title}");
    for l in lines {
        let _ = writeln!(s, "  - {l}");
    }
    s
}
