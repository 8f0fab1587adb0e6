//! A stock keeping unit as the systems that sell and stock it report it: its
//! unit costs over time, its stock, and the days orders for it were placed.

use super::*;

/// One unit cost and the time it holds from, as one event said it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostEntry {
    /// From when the cost holds (until the next entry's time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub unit_cost: Money,
    /// The system that said it (`shopify`, `woocommerce`, `erp`).
    pub provider: String,
    pub event_id: String,
}

/// What the systems last said about a SKU's stock, each part by the newest
/// report that said it (a store reports quantities, an ERP dates).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Units available to sell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<Reg<i64>>,
    /// Whether it sells when out of stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backorder: Option<Reg<bool>>,
    /// When units out of stock are expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Reg<Eta>>,
}

/// An expected restock time (a register needs an owned value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eta(#[serde(with = "time::serde::rfc3339")] pub OffsetDateTime);

/// A SKU's cost history and stock: a join of every [`InventoryUpdated`] that
/// named it, so arrival order does not matter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sku {
    pub sku: String,
    /// Unit costs by the time each holds from, oldest first, one per time
    /// (at one time, the greatest event id wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub costs: Vec<CostEntry>,
    #[serde(default)]
    pub stock: Stock,
    /// Units available, the newest report of each day (`YYYY-MM-DD`, UTC):
    /// what the stock was when an order was placed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stock_days: BTreeMap<String, Reg<i64>>,
    /// Expected restock times, the newest report of each day: the date an
    /// order placed out of stock was promised, and how it moved since.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eta_days: BTreeMap<String, Reg<Eta>>,
    /// Days on which an order was placed while the SKU was out of stock:
    /// the orders a new ETA may delay.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub backorder_days: BTreeSet<String>,
    /// Days (`YYYY-MM-DD`, UTC) on which orders naming the SKU were placed:
    /// where a cost that arrives late finds the orders it applies to.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub order_days: BTreeSet<String>,
    #[serde(default)]
    pub seen: Seen,
}

/// What folding one event changed in a [`Sku`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkuChange {
    pub changed: bool,
    /// The cost history changed for orders placed in `[from, until)` (`until`
    /// `None`: from then on).
    pub costs: Option<(OffsetDateTime, Option<OffsetDateTime>)>,
    /// A day's stock report changed: orders placed from then until the next
    /// day with a report are looked at again.
    pub stock: Option<(OffsetDateTime, Option<OffsetDateTime>)>,
    /// A day's ETA report changed: the same for promises, and every order
    /// placed out of stock before it for delays.
    pub eta: Option<(OffsetDateTime, Option<OffsetDateTime>)>,
}

/// An order line placed while its SKU was out of stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backorder {
    /// The restock time in force when the order was placed (the newest ETA
    /// reported before it, when still ahead); `None`: no date was given.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub promised: Option<OffsetDateTime>,
    /// The newest ETA reported since the order, else the promise.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub eta: Option<OffsetDateTime>,
    /// ETAs reported after the order that lie past the promise, oldest
    /// report first (each day's newest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delays: Vec<EtaReport>,
}

/// One ETA report: when it was made, the time it expects, which event said it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtaReport {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub eta: OffsetDateTime,
    pub event_id: String,
}

impl Sku {
    pub fn new(sku: &str) -> Self {
        Self {
            sku: sku.to_string(),
            ..Self::default()
        }
    }

    /// Folds one report of this SKU.
    pub fn apply(&mut self, i: &InventoryUpdated, env: &Envelope) -> SkuChange {
        if !self.seen.insert(&env.event_id) {
            return SkuChange::default();
        }
        let mut change = SkuChange {
            changed: true,
            ..SkuChange::default()
        };
        if let Some(unit_cost) = i.unit_cost {
            let entry = CostEntry {
                at: i.at,
                unit_cost,
                provider: env.provider.clone(),
                event_id: env.event_id.clone(),
            };
            let pos = self.costs.partition_point(|c| c.at < i.at);
            let won = match self.costs.get_mut(pos) {
                Some(cur) if cur.at == i.at => {
                    let wins = entry.event_id > cur.event_id;
                    if wins {
                        *cur = entry;
                    }
                    wins
                }
                _ => {
                    self.costs.insert(pos, entry);
                    true
                }
            };
            if won {
                let until = self.costs.get(pos + 1).map(|c| c.at);
                change.costs = Some((i.at, until));
            }
        }
        let stamp = || Stamp::new(0, i.at, &env.event_id);
        let day = day_of(i.at);
        if let Some(a) = i.available {
            Reg::join(&mut self.stock.available, stamp(), a);
            // What the day said before, and what the days before it say.
            let replaced = self
                .stock_days
                .get(&day)
                .map(|r| (r.stamp.clone(), r.value));
            let earlier = self
                .stock_days
                .range(..day.clone())
                .next_back()
                .map(|(_, r)| r.value);
            if replaced.as_ref().is_none_or(|(at, _)| stamp() > *at) {
                self.stock_days.insert(
                    day.clone(),
                    Reg {
                        stamp: stamp(),
                        value: a,
                    },
                );
                // An order's status comes from one of these figures, before
                // and after: when they all say the same (in stock, or out of
                // it), no order was or becomes a backorder by this report (a
                // busy SKU reported after every sale re-checks nothing, nor
                // one out of stock since an earlier day).
                // (No figure before this day: in stock as far as is known.)
                let mut out = vec![a <= 0, earlier.is_some_and(|v| v <= 0)];
                if let Some((_, v)) = replaced {
                    out.push(v <= 0);
                }
                let at_stake = out.iter().any(|o| *o != out[0]);
                if at_stake {
                    change.stock = Some((
                        day_start(&day).min(i.at),
                        next_day_after(&self.stock_days, &day),
                    ));
                }
            }
        }
        if let Some(e) = i.eta {
            let slot = self.eta_days.entry(day.clone()).or_insert_with(|| Reg {
                stamp: Stamp::new(0, OffsetDateTime::UNIX_EPOCH, ""),
                value: Eta(e),
            });
            if stamp() > slot.stamp {
                *slot = Reg {
                    stamp: stamp(),
                    value: Eta(e),
                };
                change.eta = Some((
                    day_start(&day).min(i.at),
                    next_day_after(&self.eta_days, &day),
                ));
            }
        }
        if let Some(b) = i.backorder {
            Reg::join(&mut self.stock.backorder, stamp(), b);
        }
        if let Some(e) = i.eta {
            Reg::join(&mut self.stock.eta, stamp(), Eta(e));
        }
        change
    }

    /// Whether an order placed at `at` was placed out of stock, and if so its
    /// promise and what became of it. Stock and ETA are each day's newest
    /// report: at `at`, the newest report of its day when that was made
    /// before it, else the day before's, and so on.
    pub fn backorder_at(&self, at: OffsetDateTime) -> Option<Backorder> {
        let day = day_of(at);
        let before = |r: &&Reg<_>| r.stamp.at <= at;
        let available = self
            .stock_days
            .range(..=day.clone())
            .rev()
            .map(|(_, r)| r)
            .find(before)?
            .value;
        if available > 0 {
            return None;
        }
        let promised = self
            .eta_days
            .range(..=day.clone())
            .rev()
            .map(|(_, r)| r)
            .find(|r| r.stamp.at <= at)
            .map(|r| r.value.0)
            .filter(|e| *e > at);
        let later: Vec<&Reg<Eta>> = self
            .eta_days
            .range(day..)
            .map(|(_, r)| r)
            .filter(|r| r.stamp.at > at)
            .collect();
        let eta = later.last().map(|r| r.value.0).or(promised);
        let delays = match promised {
            Some(p) => later
                .iter()
                .filter(|r| r.value.0 > p)
                .map(|r| EtaReport {
                    at: r.stamp.at,
                    eta: r.value.0,
                    event_id: r.stamp.event_id.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        Some(Backorder {
            promised,
            eta,
            delays,
        })
    }

    /// The cost in force at `at`: the newest entry not after it.
    pub fn cost_at(&self, at: OffsetDateTime) -> Option<&CostEntry> {
        let pos = self.costs.partition_point(|c| c.at <= at);
        pos.checked_sub(1).map(|p| &self.costs[p])
    }

    /// Records that an order naming the SKU was placed on `day`; whether it is new.
    pub fn add_order_day(&mut self, day: &str) -> bool {
        if self.order_days.contains(day) {
            return false;
        }
        self.order_days.insert(day.to_string())
    }

    /// The order days a change for `[from, until)` reaches (the day of
    /// `until` included; to the last day with orders when `None`).
    pub fn days_in(&self, from: OffsetDateTime, until: Option<OffsetDateTime>) -> Vec<String> {
        let first = day_of(from);
        let last = until.map(day_of);
        self.order_days
            .range(first..)
            .take_while(|d| last.as_ref().is_none_or(|l| *d <= l))
            .cloned()
            .collect()
    }
}

/// The first instant of a `YYYY-MM-DD` day (UTC); the epoch if unreadable.
fn day_start(day: &str) -> OffsetDateTime {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, &fmt)
        .map(|d| d.midnight().assume_utc())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The start of the next day after `day` that has a report in `days`.
fn next_day_after<T>(days: &BTreeMap<String, Reg<T>>, day: &str) -> Option<OffsetDateTime> {
    use std::ops::Bound;
    days.range::<str, _>((Bound::Excluded(day), Bound::Unbounded))
        .next()
        .map(|(d, _)| day_start(d))
}

/// `YYYY-MM-DD` of a time, in UTC.
pub fn day_of(at: OffsetDateTime) -> String {
    let d = at.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
