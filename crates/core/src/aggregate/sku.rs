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
            costs: None,
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
        if let Some(a) = i.available {
            Reg::join(&mut self.stock.available, stamp(), a);
        }
        if let Some(b) = i.backorder {
            Reg::join(&mut self.stock.backorder, stamp(), b);
        }
        if let Some(e) = i.eta {
            Reg::join(&mut self.stock.eta, stamp(), Eta(e));
        }
        change
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

    /// The order days a cost change for `[from, until)` reaches.
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

/// `YYYY-MM-DD` of a time, in UTC.
pub fn day_of(at: OffsetDateTime) -> String {
    let d = at.to_offset(time::UtcOffset::UTC).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
