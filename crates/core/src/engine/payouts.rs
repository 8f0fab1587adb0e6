//! Payouts: the movements a payment provider settles into each transfer to
//! the merchant's bank, and the orders they belong to.
//!
//! A payout record joins the provider's reports of the payout (its amount and
//! status) and of its lines. A line that names a payment is also an event of
//! that payment's order: it finds the order through the payment references
//! the fold already knows (or waits, parked, until they are known), is kept
//! on the order (its fees count there, see `docs/books.md`), and is placed
//! on the payout with its order. The payout's view lists which orders' money
//! it carried and every difference that keeps it from reconciling.

use super::*;
use crate::aggregate::PayoutLineEntry;
use crate::money::{Money, MoneyBag};

/// A payout as the CRM and the finance team see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutView {
    pub tenant: String,
    pub provider: String,
    pub payout_id: String,
    /// `None` while only the payout's lines have been reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PayoutStatus>,
    /// What reaches the bank, as the provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub arrival: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The time of the report the status comes from.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub reported_at: Option<OffsetDateTime>,
    /// Every movement, by line id.
    pub lines: Vec<PayoutLineView>,
    /// Sums of the lines, per currency (`net` per the currency it settles in).
    pub gross: MoneyBag,
    pub fees: MoneyBag,
    pub net: MoneyBag,
    /// The orders whose money it carried, with what it carried of each (net).
    pub orders: Vec<PayoutOrder>,
    /// `amount − net` in the payout's currency, when the amount is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<Money>,
    /// True when the payout is paid, every line is placed on its order (or
    /// belongs to no order) and the lines add up to the amount.
    pub reconciled: bool,
    /// What keeps it from reconciling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreconciled: Vec<Unreconciled>,
}

/// One movement of a payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutLineView {
    pub line_id: String,
    pub kind: PayoutLineKind,
    /// The order it belongs to, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// The payment reference it names (`payment:stripe:ch_…`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub gross: Money,
    pub fee: Money,
    pub net: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source_event_id: String,
}

/// What one order received through a payout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOrder {
    pub order_id: OrderId,
    pub net: MoneyBag,
}

/// A reason a payout does not reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreconciled {
    /// `no_payout_report`, `no_lines`, `amount_differs`, `order_unknown`,
    /// `payout_failed`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_id: Option<String>,
    /// The amount in question (the difference, the line's net).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// In words.
    pub detail: String,
}

impl Engine {
    /// Folds a report of a payout itself (its amount and status).
    pub(super) fn apply_payout(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        p: &PayoutUpdated,
    ) -> Result<Outcome, FoldError> {
        let key = Payout::key(&p.provider, &p.payout_id);
        let changed = self
            .payout_mut(src, &env.tenant, &key, &p.provider, &p.payout_id)
            .apply_state(p, &env.event_id);
        Ok(self.payout_outcome(&env.tenant, key, changed))
    }

    /// Folds one movement of a payout: kept on the payout, and, when it names
    /// a payment, on that payment's order (or parked until the order is known).
    pub(super) fn apply_payout_line(
        &mut self,
        src: &dyn Source,
        env: &Envelope,
        l: &PayoutLine,
    ) -> Result<Outcome, FoldError> {
        let key = Payout::key(&l.provider, &l.payout_id);
        let changed = self
            .payout_mut(src, &env.tenant, &key, &l.provider, &l.payout_id)
            .apply_line(l, &env.event_id);
        let own = self.payout_outcome(&env.tenant, key, changed);
        if l.links.is_empty() {
            return Ok(own);
        }
        match self.apply_linked(src, env, &l.links)? {
            Outcome::Duplicate => Ok(own),
            other => Ok(other),
        }
    }

    /// After a line was folded into an order: the payout learns its order.
    pub(super) fn place_payout_line(
        &mut self,
        src: &dyn Source,
        tenant: &str,
        l: &PayoutLine,
        order_id: &str,
    ) {
        let key = Payout::key(&l.provider, &l.payout_id);
        if self
            .payout_mut(src, tenant, &key, &l.provider, &l.payout_id)
            .place(&l.line_id, order_id)
        {
            self.dirty_payouts.insert((tenant.to_string(), key));
        }
    }

    fn payout_outcome(&mut self, tenant: &str, key: String, changed: bool) -> Outcome {
        if changed {
            self.dirty_payouts.insert((tenant.to_string(), key));
            Outcome::Applied
        } else {
            Outcome::Duplicate
        }
    }

    fn payout_mut<'a>(
        &'a mut self,
        src: &dyn Source,
        tenant: &str,
        key: &str,
        provider: &str,
        payout_id: &str,
    ) -> &'a mut Payout {
        let slot = self.get_mut(src, StateKey::new(tenant, Item::Payout(key.to_string())));
        if !matches!(slot, Some(StateValue::Payout(_))) {
            *slot = Some(StateValue::Payout(Box::new(Payout::new(
                provider, payout_id,
            ))));
        }
        match slot {
            Some(StateValue::Payout(p)) => p,
            _ => unreachable!("just set"),
        }
    }

    /// The views of the payouts the batch changed, each with its next version.
    pub(super) fn settle_payouts(&mut self, src: &dyn Source, out: &mut BatchOutput) {
        let dirty = std::mem::take(&mut self.dirty_payouts);
        for (tenant, key) in dirty {
            let slot = self.get_mut(src, StateKey::new(&tenant, Item::Payout(key)));
            let Some(StateValue::Payout(p)) = slot else {
                continue;
            };
            let computed = p.computed_version();
            p.version = if computed > p.version {
                computed
            } else {
                p.version + 1
            };
            out.projections.push(Projection::Payout {
                version: p.version,
                view: Box::new(payout_view(&tenant, p)),
            });
        }
    }
}

/// A payout's view: its lines, their sums, the orders they belong to, and
/// what keeps it from reconciling.
pub fn payout_view(tenant: &str, p: &Payout) -> PayoutView {
    let state = p.state.as_ref().map(|r| &r.value);
    let mut gross = MoneyBag::new();
    let mut fees = MoneyBag::new();
    let mut net = MoneyBag::new();
    let mut orders: BTreeMap<OrderId, MoneyBag> = BTreeMap::new();
    let mut unreconciled = Vec::new();
    let mut lines = Vec::with_capacity(p.lines.len());
    for (
        id,
        PayoutLineEntry {
            line,
            event_id,
            order_id,
        },
    ) in &p.lines
    {
        gross.add(line.gross);
        fees.add(line.fee);
        net.add(line.net);
        let reference = line.links.iter().find_map(|l| match l {
            OrderLink::Order { .. } => None,
            other => Some(link_key(other)),
        });
        match order_id {
            Some(o) => orders.entry(o.clone()).or_default().add(line.net),
            None if !line.links.is_empty() => unreconciled.push(Unreconciled {
                reason: "order_unknown".into(),
                line_id: Some(id.clone()),
                amount: Some(line.net),
                detail: format!(
                    "the {} names {}, which no known order has",
                    line.kind.as_str(),
                    reference.as_deref().unwrap_or("an order")
                ),
            }),
            None => {}
        }
        lines.push(PayoutLineView {
            line_id: id.clone(),
            kind: line.kind,
            order_id: order_id.clone(),
            reference,
            gross: line.gross,
            fee: line.fee,
            net: line.net,
            at: line.at,
            source_event_id: event_id.clone(),
        });
    }
    let difference = state.map(|s| {
        let currency = s.amount.currency;
        Money::new(s.amount.minor - net.get(currency), currency)
    });
    match state {
        None => unreconciled.insert(
            0,
            Unreconciled {
                reason: "no_payout_report".into(),
                line_id: None,
                amount: None,
                detail: "lines were reported but not the payout itself: its amount is unknown"
                    .into(),
            },
        ),
        Some(s) => {
            if matches!(s.status, PayoutStatus::Failed | PayoutStatus::Canceled) {
                unreconciled.insert(
                    0,
                    Unreconciled {
                        reason: "payout_failed".into(),
                        line_id: None,
                        amount: Some(s.amount),
                        detail: format!(
                            "the payout is {}{}: the money did not reach the bank",
                            s.status.as_str(),
                            s.failure
                                .as_deref()
                                .map(|f| format!(" ({f})"))
                                .unwrap_or_default()
                        ),
                    },
                );
            }
            if p.lines.is_empty() {
                unreconciled.push(Unreconciled {
                    reason: "no_lines".into(),
                    line_id: None,
                    amount: Some(s.amount),
                    detail: "no movement of this payout has been reported yet".into(),
                });
            } else if let Some(d) = difference.filter(|d| d.minor != 0) {
                unreconciled.push(Unreconciled {
                    reason: "amount_differs".into(),
                    line_id: None,
                    amount: Some(d),
                    detail: format!(
                        "the payout is {} {} but its lines add up to {} {}",
                        s.amount.to_decimal_string(),
                        s.amount.currency.code(),
                        Money::new(net.get(s.amount.currency), s.amount.currency)
                            .to_decimal_string(),
                        s.amount.currency.code()
                    ),
                });
            }
            let others: Vec<Money> = net
                .iter()
                .filter(|m| m.currency != s.amount.currency && m.minor != 0)
                .collect();
            for m in others {
                unreconciled.push(Unreconciled {
                    reason: "amount_differs".into(),
                    line_id: None,
                    amount: Some(m),
                    detail: format!(
                        "lines settle {} {} in a currency other than the payout's",
                        m.to_decimal_string(),
                        m.currency.code()
                    ),
                });
            }
        }
    }
    let reconciled =
        state.is_some_and(|s| s.status == PayoutStatus::Paid) && unreconciled.is_empty();
    PayoutView {
        tenant: tenant.to_string(),
        provider: p.provider.clone(),
        payout_id: p.payout_id.clone(),
        status: state.map(|s| s.status),
        amount: state.map(|s| s.amount),
        arrival: state.and_then(|s| s.arrival),
        failure: state.and_then(|s| s.failure.clone()),
        reported_at: state.map(|s| s.at),
        lines,
        gross,
        fees,
        net,
        orders: orders
            .into_iter()
            .map(|(order_id, net)| PayoutOrder { order_id, net })
            .collect(),
        difference,
        reconciled,
        unreconciled,
    }
}
