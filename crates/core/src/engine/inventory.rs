//! Stock keeping units: the cost history a store, an inventory system or an
//! ERP reports for each SKU, and the unit costs order lines take from it.
//!
//! An order's line costs are a function of its snapshot (its time and the
//! SKUs its lines name) and of those SKUs' cost histories: the cost in force
//! at the order's time. Both sides keep it so, whichever comes first: an order
//! takes its costs when its snapshot changes, and a cost that changes the
//! history for some span of time gives its new value to the orders placed in
//! that span (found through the days, per SKU, on which orders naming it were
//! placed). So a cost that arrives after the order, or an ERP file loaded
//! late with costs from the past, gives the same books as the other way round.

use super::*;
use crate::aggregate::{Backorder, day_of};

/// The reference under which the orders of one SKU placed on one day are filed.
fn sku_day_ref(sku: &str, day: &str) -> String {
    format!("sku:{sku}@{day}")
}

/// The SKU record of a slot, created when the slot holds none.
fn sku_in<'a>(slot: &'a mut Slot, sku: &str) -> &'a mut Sku {
    if !matches!(slot.value, Some(StateValue::Sku(_))) {
        slot.value = Some(StateValue::Sku(Box::new(Sku::new(sku))));
        slot.dirty = true;
    }
    match &mut slot.value {
        Some(StateValue::Sku(s)) => s,
        _ => unreachable!("just set"),
    }
}

impl Engine {
    /// Folds what a system says about one SKU; a cost that changes the
    /// history re-costs the orders placed while it holds.
    pub(super) fn apply_inventory(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        i: &InventoryUpdated,
    ) -> Result<Outcome, FoldError> {
        if i.sku.trim().is_empty() {
            return Err(FoldError::NoSku);
        }
        let tenant = env.tenant.as_str();
        let slot = self.slot(src, StateKey::new(tenant, Item::Sku(i.sku.clone())));
        let sku = sku_in(slot, &i.sku);
        let change = sku.apply(i, env);
        if !change.changed {
            return Ok(Outcome::Duplicate);
        }
        // The days whose orders this report may change: those of the span
        // a cost, a stock figure or an ETA now holds over, and for an ETA
        // every earlier day an order was placed out of stock (it may be
        // delayed).
        let mut days: BTreeSet<String> = BTreeSet::new();
        for (from, until) in [change.costs, change.stock, change.eta]
            .into_iter()
            .flatten()
        {
            days.extend(sku.days_in(from, until));
        }
        if change.eta.is_some() {
            let today = day_of(i.at);
            days.extend(sku.backorder_days.range(..=today).cloned());
        }
        slot.dirty = true;
        for day in days {
            for oid in self.ref_orders(src, tenant, &sku_day_ref(&i.sku, &day)) {
                self.refresh_lines(src, tenant, &oid);
            }
        }
        Ok(Outcome::Applied)
    }

    /// After an order's snapshot changed: files the order under the day it
    /// was placed for each SKU its lines name, and gives it their costs.
    pub(super) fn order_skus(&mut self, src: &dyn Source, tenant: &str, oid: &str) {
        let (day, skus) = match self.get(src, StateKey::new(tenant, Item::Order(oid.to_string()))) {
            Some(StateValue::Order(o)) => match &o.snapshot {
                Some(s) => (day_of(s.value.created_at), line_skus(&s.value)),
                None => return,
            },
            _ => return,
        };
        for sku in &skus {
            let slot = self.slot(src, StateKey::new(tenant, Item::Sku(sku.clone())));
            if sku_in(slot, sku).add_order_day(&day) {
                slot.dirty = true;
            }
            let slot = self.slot(
                src,
                StateKey::new(tenant, Item::Ref(sku_day_ref(sku, &day))),
            );
            match &mut slot.value {
                Some(StateValue::Ref(set)) => {
                    if set.insert(oid.to_string()) {
                        slot.dirty = true;
                    }
                }
                other => {
                    *other = Some(StateValue::Ref(BTreeSet::from([oid.to_string()])));
                    slot.dirty = true;
                }
            }
        }
        self.refresh_lines(src, tenant, oid);
    }

    /// Sets an order's line costs to those in force at its time, and its
    /// backordered lines (SKUs out of stock then) with their promise and delays.
    fn refresh_lines(&mut self, src: &dyn Source, tenant: &str, oid: &str) {
        let order = match self.get(src, StateKey::new(tenant, Item::Order(oid.to_string()))) {
            Some(StateValue::Order(o)) if o.snapshot.is_some() => Arc::clone(o),
            _ => return,
        };
        let Some(snapshot) = &order.snapshot else {
            return;
        };
        let at = snapshot.value.created_at;
        let mut want: BTreeMap<String, CostEntry> = BTreeMap::new();
        let mut backorders: BTreeMap<String, Backorder> = BTreeMap::new();
        for sku in line_skus(&snapshot.value) {
            if let Some(StateValue::Sku(s)) =
                self.get(src, StateKey::new(tenant, Item::Sku(sku.clone())))
            {
                if let Some(c) = s.cost_at(at) {
                    want.insert(sku.clone(), c.clone());
                }
                if let Some(b) = s.backorder_at(at) {
                    backorders.insert(sku, b);
                }
            }
        }
        // The day of an order placed out of stock, for the ETAs to come.
        let day = day_of(at);
        for sku in backorders.keys() {
            let slot = self.slot(src, StateKey::new(tenant, Item::Sku(sku.clone())));
            if sku_in(slot, sku).backorder_days.insert(day.clone()) {
                slot.dirty = true;
            }
        }
        if order.costs == want && order.backorders == backorders {
            return;
        }
        drop(order);
        let order = self.order_mut(src, tenant, oid);
        order.costs = want;
        order.backorders = backorders;
        self.dirty_orders
            .insert((tenant.to_string(), oid.to_string()));
    }
}

/// The SKUs an order's lines name, each once.
fn line_skus(o: &OrderUpserted) -> BTreeSet<String> {
    o.line_items
        .iter()
        .filter_map(LineItem::sku_key)
        .map(str::to_string)
        .collect()
}
