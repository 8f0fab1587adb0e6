//! An order's books: every amount its providers reported, as ledger entries,
//! and the figures the rules of `docs/books.md` count from them.
//!
//! The entries and figures are computed from the order's observations (a set),
//! never accumulated, so they do not depend on arrival order or batching.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aggregate::{
    DisputeRecord, Order, PaymentRecord, RefundRecord, is_payment_provider, is_store,
};
use crate::event::{
    DisputeMovement, DisputeStatus, OrderLink, Payment, PaymentStatus, PayoutLineKind, RefundStatus,
};
use crate::money::{Currency, Money, MoneyBag};
use crate::rates::Rates;

/// What a ledger entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An authorisation (a hold on the customer's money).
    Authorized,
    /// Money captured.
    Captured,
    /// A capture that failed (also after it was reported as succeeded).
    CaptureFailed,
    /// A payment attempt that failed.
    PaymentFailed,
    /// The uncaptured part of an authorisation that was voided or cancelled.
    Voided,
    /// The uncaptured part of an authorisation released by a final capture.
    Released,
    /// Captured money the payment provider took back outside a dispute.
    Reversed,
    /// What the store says it received for the order.
    StoreReceived,
    /// A refund (succeeded).
    Refund,
    /// A refund the provider has not completed yet (counted: the money is promised).
    RefundPending,
    /// A refund that failed or was cancelled: nothing went back.
    RefundFailed,
    /// Refunded money the provider reported only in a payment's refunded total.
    RefundTotalOnly,
    /// Store refunds without a gateway, beyond what the payment provider refunded.
    StoreRefundBeyondProvider,
    /// A dispute (chargeback or inquiry).
    DisputeOpened,
    /// Money a dispute took from the merchant.
    DisputeWithdrawn,
    /// Money a dispute gave back.
    DisputeReinstated,
    /// A dispute closed against the merchant.
    DisputeLost,
    /// A dispute closed in the merchant's favour.
    DisputeWon,
    /// A dispute closed because the merchant refunded the payment.
    DisputeMerchantRefunded,
    /// A processing fee.
    Fee,
    /// A dispute fee (negative when given back).
    DisputeFee,
    /// The cost of one order line's goods: its quantity at the unit cost in
    /// force at the order's time.
    CostOfGoods,
    /// The cost of goods a refund put back in stock (taken off the cost of goods).
    Restocked,
    /// Money a payout settled for the order (signed: a refund or a dispute
    /// takes money back); listed, not counted: the payments, refunds and
    /// disputes count it.
    Settled,
    /// A fee a payout's line took (negative when given back): counted when no
    /// payment or dispute event of the order reports the same fee.
    SettlementFee,
}

/// The figure an entry counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    Paid,
    Authorized,
    Refunded,
    ChargebackLost,
    Disputed,
    Fees,
    /// Cost of goods sold.
    Cogs,
}

impl Figure {
    pub fn as_str(self) -> &'static str {
        match self {
            Figure::Paid => "paid",
            Figure::Authorized => "authorized",
            Figure::Refunded => "refunded",
            Figure::ChargebackLost => "chargeback_lost",
            Figure::Disputed => "disputed",
            Figure::Fees => "fees",
            Figure::Cogs => "cogs",
        }
    }
}

/// One line of an order's books.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub kind: EntryKind,
    /// `stripe`, `adyen`, `paypal`, `shopify`, `woocommerce`.
    pub provider: String,
    /// The provider's id of what the entry is about (payment, capture, refund,
    /// dispute, balance transaction).
    pub reference: String,
    /// The canonical event the amount comes from (the newest one, when several
    /// events reported it).
    pub source_event_id: String,
    /// A magnitude; the kind says which way the money went (a dispute fee given
    /// back is negative).
    pub amount: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Whether the amount is in a figure.
    pub counted: bool,
    /// The figure it counts in (or would, were it counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figure: Option<Figure>,
    /// Why it is counted or not, in words.
    pub why: String,
    /// The amount in the tenant's reporting currency, when one is configured
    /// and a rate was found (see `docs/books.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted: Option<Converted>,
}

/// An amount converted to the reporting currency, and the date of the rate used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Converted {
    pub amount: Money,
    /// `YYYY-MM-DD`.
    pub rate_date: String,
}

/// Money figures of one order (see `docs/books.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFigures {
    /// Captured money that counts.
    pub paid: MoneyBag,
    /// Where `paid` came from: `provider`, `store` or `none`.
    pub paid_source: String,
    /// Authorised, not captured, not voided or released.
    pub authorized: MoneyBag,
    /// Refunds that count (succeeded or pending).
    pub refunded: MoneyBag,
    /// Lost disputes and reversals.
    pub chargeback_lost: MoneyBag,
    /// Disputes still open.
    pub disputed: MoneyBag,
    /// `paid − refunded − chargeback_lost`.
    pub net: MoneyBag,
    /// Processing and dispute fees, in the currencies they were charged in.
    pub fees: MoneyBag,
    /// Every payment with captured money has a known fee.
    pub fees_known: bool,
    /// `net − fees`, when `fees_known` and every fee is in a currency of `net`;
    /// `None` is unknown, not zero.
    pub net_after_fees: Option<MoneyBag>,
    /// Cost of goods sold: the counted lines' quantities at their unit costs
    /// as of the order's time, less what refunds put back in stock, in the
    /// currencies the costs are in. Counted once the order is paid for and
    /// while it is not cancelled.
    #[serde(default, skip_serializing_if = "MoneyBag::is_empty")]
    pub cogs: MoneyBag,
    /// Every line has a unit cost (and the cost of goods counts).
    #[serde(default)]
    pub cogs_known: bool,
    /// The lines without a known unit cost: their SKU, or `line:<id>` for a
    /// line without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cogs_unknown: Vec<String>,
    /// `net − cogs`, when `cogs_known` and every cost is in a currency of
    /// `net`; `None` is unknown, not zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_margin: Option<MoneyBag>,
    /// What payouts settled of the order's money (net of their fees and of
    /// the refunds and disputes they took back), per currency.
    #[serde(default, skip_serializing_if = "MoneyBag::is_empty")]
    pub paid_out: MoneyBag,
    /// The payouts that carried its money (`provider:payout_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payouts: Vec<String>,
    /// The figures in the tenant's reporting currency, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting: Option<ReportingFigures>,
}

/// Figures converted to a reporting currency (minor units of `currency`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingFigures {
    pub currency: Currency,
    pub paid: i64,
    pub refunded: i64,
    pub chargeback_lost: i64,
    pub net: i64,
    pub fees: i64,
    /// `net − fees` when every fee is known.
    pub net_after_fees: Option<i64>,
    /// Cost of goods sold.
    #[serde(default)]
    pub cogs: i64,
    /// `net − cogs` when the cost of goods is known and every amount converted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_margin: Option<i64>,
    /// Amounts with no usable rate, by figure: never dropped, left out of the
    /// converted sums.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unconverted: BTreeMap<String, MoneyBag>,
}

/// A customer's revenue converted to the tenant's reporting currency: the sum
/// of its counted orders' [`ReportingFigures`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingRevenue {
    pub currency: Currency,
    pub gross: i64,
    pub refunded: i64,
    pub chargeback_lost: i64,
    pub net: i64,
    pub fees: i64,
    /// Cost of goods sold.
    #[serde(default)]
    pub cogs: i64,
    /// `net − cogs` when every paid order's margin is known and converted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_margin: Option<i64>,
    /// Amounts with no usable rate, by figure (see [`ReportingFigures`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unconverted: BTreeMap<String, MoneyBag>,
}

/// An order's ledger and the figures counted from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Books {
    pub entries: Vec<LedgerEntry>,
    pub figures: OrderFigures,
}

/// The tenant's reporting currency and the rates to reach it.
#[derive(Clone, Copy, Debug)]
pub struct Reporting<'a> {
    pub currency: Currency,
    pub rates: &'a Rates,
}

/// Computes an order's books by the rules of `docs/books.md`.
pub fn books(order: &Order, reporting: Option<Reporting<'_>>) -> Books {
    let mut l = LedgerBuilder::default();
    let test = order.snapshot.as_ref().is_some_and(|s| s.value.test);

    // Payments, by class.
    let mut provider_payments: Vec<PaymentCalc> = Vec::new();
    let mut store_payments: Vec<PaymentCalc> = Vec::new();
    for rec in payments_by_authorisation(order).values() {
        for calc in analyse_payment(rec) {
            if is_payment_provider(&calc.provider) {
                provider_payments.push(calc);
            } else {
                store_payments.push(calc);
            }
        }
    }
    let reporting_providers: BTreeSet<String> = provider_payments
        .iter()
        .map(|p| p.provider.clone())
        .collect();
    let provider_reports = !provider_payments.is_empty();
    let store_money = order
        .snapshot
        .as_ref()
        .and_then(|s| s.value.store_money.clone());
    let snapshot_event = order
        .snapshot
        .as_ref()
        .map(|s| s.stamp.event_id.clone())
        .unwrap_or_default();
    let snapshot_at = order
        .snapshot
        .as_ref()
        .map(|s| s.value.updated_at)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let store_provider = order
        .order_id
        .split_once(':')
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();

    let paid_source = if provider_reports {
        "provider"
    } else if store_money.is_some() || !store_payments.is_empty() {
        "store"
    } else {
        "none"
    };
    // Which payment entries count.
    for p in &provider_payments {
        p.write(&mut l, true, "reported by the payment provider");
    }
    for p in &store_payments {
        let (count, why) = if provider_reports {
            (false, "the payment provider reports this order's payments")
        } else if store_money.is_some() {
            (
                false,
                "the store's order snapshot accounts for the money it received",
            )
        } else {
            (
                true,
                "recorded by the store; no payment provider reports this order",
            )
        };
        p.write(&mut l, count, why);
    }
    if let Some(sm) = &store_money {
        let (count, why) = if provider_reports {
            (
                false,
                "the payment provider reports this order's payments".to_string(),
            )
        } else {
            (
                true,
                format!("the store's account of the order ({})", sm.basis),
            )
        };
        l.push(
            EntryKind::StoreReceived,
            &store_provider,
            &order.order_id,
            &snapshot_event,
            sm.received,
            snapshot_at,
            count,
            Figure::Paid,
            why,
        );
        if let Some(a) = sm.authorized.filter(|a| a.minor != 0) {
            l.push(
                EntryKind::Authorized,
                &store_provider,
                &order.order_id,
                &snapshot_event,
                a,
                snapshot_at,
                !provider_reports,
                Figure::Authorized,
                if provider_reports {
                    "the payment provider reports this order's payments".to_string()
                } else {
                    "authorised at the store, not captured yet".to_string()
                },
            );
        }
    }

    // Refunds.
    let all_payments: Vec<&PaymentCalc> = provider_payments
        .iter()
        .chain(store_payments.iter())
        .collect();
    let refunds: Vec<RefundCalc> = order.refunds.values().filter_map(analyse_refund).collect();
    let mut provider_refunded = MoneyBag::new();
    let mut unknown_gateway: Vec<&RefundCalc> = Vec::new();
    for r in &refunds {
        let payment = r.payment_id.as_deref().and_then(|id| {
            all_payments
                .iter()
                .find(|p| p.provider == r.provider && p.names(id))
        });
        if let Some(p) = payment
            && p.is_release(r)
        {
            l.push(
                EntryKind::Released,
                &r.provider,
                &r.refund_id,
                &r.event_id,
                r.amount,
                r.at,
                false,
                Figure::Refunded,
                "the uncaptured rest of a partial capture, released: never captured, never refunded"
                    .into(),
            );
            continue;
        }
        let kind = match r.status {
            RefundStatus::Succeeded => EntryKind::Refund,
            RefundStatus::Pending => EntryKind::RefundPending,
            RefundStatus::Failed | RefundStatus::Cancelled => EntryKind::RefundFailed,
        };
        let counts_status = matches!(r.status, RefundStatus::Succeeded | RefundStatus::Pending);
        if is_payment_provider(&r.provider) {
            if counts_status {
                provider_refunded.add(r.amount);
            }
            l.push(
                kind,
                &r.provider,
                &r.refund_id,
                &r.event_id,
                r.amount,
                r.at,
                counts_status,
                Figure::Refunded,
                refund_why(r.status, "reported by the payment provider"),
            );
            continue;
        }
        // A store's refund.
        let via = r.gateway.as_deref().and_then(gateway_provider);
        let (count, why) = if !provider_reports {
            (
                counts_status,
                "recorded by the store; no payment provider reports this order".to_string(),
            )
        } else if let Some(v) = via.filter(|v| reporting_providers.contains(*v)) {
            (
                false,
                format!("the same money as {v}'s refunds, which count"),
            )
        } else if let Some(g) = &r.gateway {
            (
                counts_status,
                format!("refunded through {g}, which no payment provider reports"),
            )
        } else {
            if counts_status {
                unknown_gateway.push(r);
            }
            (
                false,
                "the store names no gateway: counted only beyond the provider's refunds"
                    .to_string(),
            )
        };
        l.push(
            kind,
            &r.provider,
            &r.refund_id,
            &r.event_id,
            r.amount,
            r.at,
            count,
            Figure::Refunded,
            if count || !counts_status {
                refund_why(r.status, &why)
            } else {
                why
            },
        );
    }
    // Refunds a provider reported only as a payment's total.
    for p in &provider_payments {
        let Some((total, at, event)) = &p.cumulative_refunded else {
            continue;
        };
        let included: i64 = refunds
            .iter()
            .filter(|r| {
                r.provider == p.provider
                    && r.payment_id.as_deref().is_some_and(|id| p.names(id))
                    && !p.is_release(r)
                    && r.amount.currency == total.currency
                    && r.created <= *at
                    && r.ended.is_none_or(|e| e > *at)
            })
            .map(|r| r.amount.minor)
            .sum();
        let rest = total.minor - included;
        if rest > 0 {
            let m = Money::new(rest, total.currency);
            provider_refunded.add(m);
            l.push(
                EntryKind::RefundTotalOnly,
                &p.provider,
                &p.payment_id,
                event,
                m,
                *at,
                true,
                Figure::Refunded,
                "refunded according to the payment's refunded total; no refund of it is itemised"
                    .into(),
            );
        }
    }
    // Store refunds without a gateway, beyond what the provider refunded.
    let mut beyond = MoneyBag::new();
    for r in &unknown_gateway {
        beyond.add(r.amount);
    }
    for m in beyond.iter() {
        let extra = m.minor - provider_refunded.get(m.currency);
        if extra > 0 {
            let newest = unknown_gateway
                .iter()
                .filter(|r| r.amount.currency == m.currency)
                .max_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
            let (event, at) = newest
                .map(|r| (r.event_id.clone(), r.at))
                .unwrap_or((String::new(), OffsetDateTime::UNIX_EPOCH));
            l.push(
                EntryKind::StoreRefundBeyondProvider,
                &store_provider,
                &order.order_id,
                &event,
                Money::new(extra, m.currency),
                at,
                true,
                Figure::Refunded,
                "the store refunded more than the payment provider reports: the rest went back another way"
                    .into(),
            );
        }
    }

    // Disputes and reversals, once per payment.
    let disputes: Vec<DisputeCalc> = order
        .disputes
        .values()
        .filter_map(analyse_dispute)
        .collect();
    let mut lost_by_payment: BTreeMap<(String, Currency), i64> = BTreeMap::new();
    for d in &disputes {
        if d.status == DisputeStatus::Lost {
            *lost_by_payment
                .entry((d.payment_key(&all_payments), d.amount.currency))
                .or_default() += d.amount.minor;
        }
    }
    let mut reversed_by_payment: BTreeMap<(String, Currency), i64> = BTreeMap::new();
    for p in &provider_payments {
        for r in &p.reversals {
            *reversed_by_payment
                .entry((p.key.clone(), r.amount.currency))
                .or_default() += r.amount.minor;
        }
    }
    for p in &provider_payments {
        for r in &p.reversals {
            let lost = lost_by_payment
                .get(&(p.key.clone(), r.amount.currency))
                .copied()
                .unwrap_or(0);
            let reversed = reversed_by_payment
                .get(&(p.key.clone(), r.amount.currency))
                .copied()
                .unwrap_or(0);
            let count = reversed > lost;
            l.push(
                EntryKind::Reversed,
                &p.provider,
                &r.reference,
                &r.event_id,
                r.amount,
                r.at,
                count,
                Figure::ChargebackLost,
                if count {
                    "the payment provider took the captured money back".into()
                } else {
                    "the same money as the lost dispute of this payment, which counts".into()
                },
            );
        }
    }
    for d in &disputes {
        let open = !d.status.is_closed();
        l.push(
            EntryKind::DisputeOpened,
            &d.provider,
            &d.dispute_id,
            &d.first_event_id,
            d.amount,
            d.opened_at,
            open,
            Figure::Disputed,
            if open {
                "a dispute still open".into()
            } else {
                "the dispute is closed".into()
            },
        );
        for mv in &d.movements {
            let (kind, amount) = if mv.amount.minor < 0 {
                (
                    EntryKind::DisputeWithdrawn,
                    Money::new(-mv.amount.minor, mv.amount.currency),
                )
            } else {
                (EntryKind::DisputeReinstated, mv.amount)
            };
            l.push_uncounted(
                kind,
                &d.provider,
                &mv.id,
                &d.event_id,
                amount,
                mv.at,
                "money the dispute moved; the dispute's outcome decides what is lost".into(),
            );
            if let Some(fee) = mv.fee.filter(|f| f.minor != 0) {
                l.push(
                    EntryKind::DisputeFee,
                    &d.provider,
                    &mv.id,
                    &d.event_id,
                    fee,
                    mv.at,
                    true,
                    Figure::Fees,
                    if fee.minor < 0 {
                        "dispute fee given back".into()
                    } else {
                        "dispute fee".into()
                    },
                );
            }
        }
        match d.status {
            DisputeStatus::Lost => {
                let key = (d.payment_key(&all_payments), d.amount.currency);
                let lost = lost_by_payment.get(&key).copied().unwrap_or(0);
                let reversed = reversed_by_payment.get(&key).copied().unwrap_or(0);
                let count = lost >= reversed;
                l.push(
                    EntryKind::DisputeLost,
                    &d.provider,
                    &d.dispute_id,
                    &d.event_id,
                    d.amount,
                    d.at,
                    count,
                    Figure::ChargebackLost,
                    if count {
                        "closed against the merchant".into()
                    } else {
                        "the same money as the payment's reversal, which counts".into()
                    },
                );
            }
            DisputeStatus::Won => l.push_uncounted(
                EntryKind::DisputeWon,
                &d.provider,
                &d.dispute_id,
                &d.event_id,
                d.amount,
                d.at,
                "closed in the merchant's favour: nothing lost".into(),
            ),
            DisputeStatus::MerchantRefunded => l.push_uncounted(
                EntryKind::DisputeMerchantRefunded,
                &d.provider,
                &d.dispute_id,
                &d.event_id,
                d.amount,
                d.at,
                "closed by the merchant's refund, which counts as a refund".into(),
            ),
            _ => {}
        }
    }

    let fee_reported = settlements(order, &provider_payments, &disputes, &mut l);
    let cogs_unknown = cost_of_goods(order, &refunds, &mut l);
    let mut entries = l.entries;
    if test {
        for e in &mut entries {
            if e.counted {
                e.counted = false;
                e.why = format!("a test order counts nothing ({})", e.why);
            }
        }
    }
    if let Some(r) = reporting {
        for e in &mut entries {
            e.converted = r
                .rates
                .convert(e.amount, r.currency, e.at)
                .map(|c| Converted {
                    amount: Money::new(c.amount, r.currency),
                    rate_date: c.rate_date.to_string(),
                });
        }
    }
    let mut figures = figures_of(
        &entries,
        paid_source,
        &provider_payments,
        &fee_reported,
        test,
        reporting,
    );
    figures.cogs_unknown = cogs_unknown;
    let mut payouts = BTreeSet::new();
    for st in order.settlements.values() {
        figures.paid_out.add(st.line.net);
        payouts.insert(format!("{}:{}", st.line.provider, st.line.payout_id));
    }
    figures.payouts = payouts.into_iter().collect();
    margin_of(&mut figures, &entries);
    Books { entries, figures }
}

/// The order's payments with every observation under the payment it belongs
/// to: an event that names only a capture (PayPal's reversal of a capture of an
/// authorisation names the capture) joins the authorisation that capture is of.
fn payments_by_authorisation(order: &Order) -> BTreeMap<String, PaymentRecord> {
    let mut owner: BTreeMap<(String, String), String> = BTreeMap::new();
    for (key, rec) in &order.payments {
        for p in rec.observations.values() {
            if let Some(c) = &p.capture_id
                && c != &p.payment_id
            {
                owner.insert((p.provider.clone(), c.clone()), key.clone());
            }
        }
    }
    let mut out: BTreeMap<String, PaymentRecord> = BTreeMap::new();
    for (key, rec) in &order.payments {
        for (ev, p) in &rec.observations {
            match owner.get(&(p.provider.clone(), p.payment_id.clone())) {
                Some(target) if target != key => {
                    let owner_id = order.payments[target]
                        .observations
                        .values()
                        .next()
                        .map(|o| o.payment_id.clone())
                        .unwrap_or_default();
                    let mut moved = p.clone();
                    moved.capture_id = Some(p.payment_id.clone());
                    moved.payment_id = owner_id;
                    out.entry(target.clone())
                        .or_default()
                        .observations
                        .insert(ev.clone(), moved);
                }
                _ => {
                    out.entry(key.clone())
                        .or_default()
                        .observations
                        .insert(ev.clone(), p.clone());
                }
            }
        }
    }
    out
}

/// Sums the counted entries into the figures.
fn figures_of(
    entries: &[LedgerEntry],
    paid_source: &str,
    provider_payments: &[PaymentCalc],
    fee_reported: &BTreeSet<String>,
    test: bool,
    reporting: Option<Reporting<'_>>,
) -> OrderFigures {
    let mut f = OrderFigures {
        paid_source: paid_source.to_string(),
        ..OrderFigures::default()
    };
    for e in entries.iter().filter(|e| e.counted) {
        let bag = match e.figure {
            Some(Figure::Paid) => &mut f.paid,
            Some(Figure::Authorized) => &mut f.authorized,
            Some(Figure::Refunded) => &mut f.refunded,
            Some(Figure::ChargebackLost) => &mut f.chargeback_lost,
            Some(Figure::Disputed) => &mut f.disputed,
            Some(Figure::Fees) => &mut f.fees,
            Some(Figure::Cogs) => &mut f.cogs,
            None => continue,
        };
        bag.add(signed(e));
    }
    f.net = f.paid.minus(&f.refunded).minus(&f.chargeback_lost);
    let captured: Vec<&PaymentCalc> = provider_payments
        .iter()
        .filter(|p| p.captured > 0)
        .collect();
    f.fees_known = !test
        && paid_source == "provider"
        && !captured.is_empty()
        && captured
            .iter()
            .all(|p| !p.fees.is_empty() || fee_reported.contains(&p.key()));
    let net_currencies: BTreeSet<Currency> = f.net.0.keys().copied().collect();
    if f.fees_known && f.fees.0.keys().all(|c| net_currencies.contains(c)) {
        f.net_after_fees = Some(f.net.minus(&f.fees));
    }
    if let Some(r) = reporting {
        let mut rf = ReportingFigures {
            currency: r.currency,
            paid: 0,
            refunded: 0,
            chargeback_lost: 0,
            net: 0,
            fees: 0,
            net_after_fees: None,
            cogs: 0,
            gross_margin: None,
            unconverted: BTreeMap::new(),
        };
        for e in entries.iter().filter(|e| e.counted) {
            let Some(fig) = e.figure else { continue };
            let slot = match fig {
                Figure::Paid => &mut rf.paid,
                Figure::Refunded => &mut rf.refunded,
                Figure::ChargebackLost => &mut rf.chargeback_lost,
                Figure::Fees => &mut rf.fees,
                Figure::Cogs => &mut rf.cogs,
                Figure::Authorized | Figure::Disputed => continue,
            };
            match &e.converted {
                Some(c) => {
                    let minor = if e.kind == EntryKind::Restocked {
                        c.amount.minor.saturating_neg()
                    } else {
                        c.amount.minor
                    };
                    *slot = slot.saturating_add(minor)
                }
                None => rf
                    .unconverted
                    .entry(fig.as_str().to_string())
                    .or_default()
                    .add(signed(e)),
            }
        }
        rf.net = rf.paid - rf.refunded - rf.chargeback_lost;
        rf.net_after_fees =
            (f.fees_known && !rf.unconverted.contains_key("fees")).then_some(rf.net - rf.fees);
        f.reporting = Some(rf);
    }
    f
}

/// An entry's amount as its figure counts it: what a refund put back in stock
/// is taken off the cost of goods.
fn signed(e: &LedgerEntry) -> Money {
    if e.kind == EntryKind::Restocked {
        Money::new(e.amount.minor.saturating_neg(), e.amount.currency)
    } else {
        e.amount
    }
}

/// The order's settled movements (what payouts carried of its money) and the
/// fees they took. A charge's fee counts unless the payment's own events
/// report its fee; a dispute's unless the order's disputes with that provider
/// report fees of their own; any other fee counts.
/// Returns the payments (`provider:payment_id`) whose fee a payout reported.
fn settlements(
    order: &Order,
    payments: &[PaymentCalc],
    disputes: &[DisputeCalc],
    l: &mut LedgerBuilder,
) -> BTreeSet<String> {
    let mut reported = BTreeSet::new();
    for st in order.settlements.values() {
        let line = &st.line;
        let refs: Vec<&str> = line
            .links
            .iter()
            .filter_map(|k| match k {
                OrderLink::Payment {
                    provider,
                    reference,
                } if *provider == line.provider => Some(reference.as_str()),
                _ => None,
            })
            .collect();
        let payment = payments
            .iter()
            .find(|p| p.provider == line.provider && refs.iter().any(|r| p.names(r)));
        l.push_uncounted(
            EntryKind::Settled,
            &line.provider,
            &line.line_id,
            &st.event_id,
            line.net,
            line.at,
            format!(
                "{} settled in payout {} ({} {} gross, {} fee)",
                line.kind.as_str(),
                line.payout_id,
                line.gross.to_decimal_string(),
                line.gross.currency.code(),
                line.fee.to_decimal_string()
            ),
        );
        if line.fee.minor == 0 {
            continue;
        }
        let (count, why) = match line.kind {
            PayoutLineKind::Charge => match payment {
                Some(p) if !p.fees.is_empty() => {
                    let own: Vec<String> = p
                        .fees
                        .iter()
                        .map(|(f, ..)| format!("{} {}", f.to_decimal_string(), f.currency.code()))
                        .collect();
                    (
                        false,
                        format!(
                            "the payment's own events report its fee ({}), which counts",
                            own.join(", ")
                        ),
                    )
                }
                Some(p) => {
                    reported.insert(p.key());
                    (
                        true,
                        "processing fee, reported by the payout (the payment's events do not)"
                            .to_string(),
                    )
                }
                None => (true, "processing fee, reported by the payout".to_string()),
            },
            PayoutLineKind::Dispute | PayoutLineKind::DisputeReversal => {
                let dispute_fees = disputes.iter().any(|d| {
                    d.provider == line.provider
                        && d.movements
                            .iter()
                            .any(|m| m.fee.is_some_and(|f| f.minor != 0))
                });
                if dispute_fees {
                    (
                        false,
                        "the dispute's own events report its fees, which count".to_string(),
                    )
                } else {
                    (true, "dispute fee, reported by the payout".to_string())
                }
            }
            _ => (
                true,
                format!("{} fee, reported by the payout", line.kind.as_str()),
            ),
        };
        l.push(
            EntryKind::SettlementFee,
            &line.provider,
            &line.line_id,
            &st.event_id,
            line.fee,
            line.at,
            count,
            Figure::Fees,
            why,
        );
    }
    reported
}

/// The cost of goods of an order's lines: one entry per line whose SKU has a
/// unit cost in force at the order's time ([`Order::costs`]), and one per
/// line a store refund put back in stock. They count once a payment counts
/// and while the order is not cancelled. Returns the lines whose cost is
/// unknown (their SKU, `line:<id>` without one).
fn cost_of_goods(order: &Order, refunds: &[RefundCalc], l: &mut LedgerBuilder) -> Vec<String> {
    let Some(snapshot) = &order.snapshot else {
        return Vec::new();
    };
    let o = &snapshot.value;
    let paid = l
        .entries
        .iter()
        .any(|e| e.counted && e.figure == Some(Figure::Paid) && e.amount.minor > 0);
    let (count, why) = if o.status == crate::event::OrderStatus::Cancelled {
        (
            false,
            "the order was cancelled: no goods went out".to_string(),
        )
    } else if !paid {
        (
            false,
            "nothing counts as paid for the order yet".to_string(),
        )
    } else {
        (true, String::new())
    };
    // Units each line got back in stock, from the store's refunds that count
    // (each refund as its newest store observation lists its lines).
    let mut restocked: BTreeMap<&str, Vec<(i64, &str, OffsetDateTime, &str)>> = BTreeMap::new();
    let standing: BTreeSet<(&str, &str)> = refunds
        .iter()
        .filter(|r| !matches!(r.status, RefundStatus::Failed | RefundStatus::Cancelled))
        .map(|r| (r.provider.as_str(), r.refund_id.as_str()))
        .collect();
    for rec in order.refunds.values() {
        let newest_store = rec
            .observations
            .iter()
            .filter(|(_, r)| {
                is_store(&r.provider)
                    && standing.contains(&(r.provider.as_str(), r.refund_id.as_str()))
            })
            .max_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        if let Some((ev, r)) = newest_store {
            for line in r.lines.iter().filter(|x| x.restock && x.quantity > 0) {
                restocked
                    .entry(line.line_item_id.as_str())
                    .or_default()
                    .push((line.quantity, r.refund_id.as_str(), r.at, ev.as_str()));
            }
        }
    }
    let mut unknown = BTreeSet::new();
    for line in o.line_items.iter().filter(|x| x.quantity > 0) {
        let sku = line.sku_key();
        let Some(cost) = sku.and_then(|s| order.costs.get(s)) else {
            unknown.insert(match sku {
                Some(s) => s.to_string(),
                None => format!("line:{}", line.id),
            });
            continue;
        };
        let sku = sku.unwrap_or_default();
        let unit = cost.unit_cost;
        let times = |q: i64| Money::new(unit.minor.saturating_mul(q), unit.currency);
        let why_line = if count {
            format!(
                "{} × {} {} in force from {} ({})",
                line.quantity,
                unit.to_decimal_string(),
                unit.currency.code(),
                cost.at.date(),
                cost.provider
            )
        } else {
            why.clone()
        };
        l.push(
            EntryKind::CostOfGoods,
            &cost.provider,
            sku,
            &cost.event_id,
            times(line.quantity),
            o.created_at,
            count,
            Figure::Cogs,
            why_line,
        );
        // Back in stock, never more than the line sold.
        let mut left = line.quantity;
        for (qty, refund_id, at, ev) in restocked.get(line.id.as_str()).into_iter().flatten() {
            let q = (*qty).min(left);
            if q <= 0 {
                break;
            }
            left -= q;
            let why_back = if count {
                format!("{q} back in stock by refund {refund_id}")
            } else {
                why.clone()
            };
            l.push(
                EntryKind::Restocked,
                &cost.provider,
                sku,
                ev,
                times(q),
                *at,
                count,
                Figure::Cogs,
                why_back,
            );
        }
    }
    unknown.into_iter().collect()
}

/// Whether the cost of goods is known, and the gross margin (`net − cogs`),
/// from the figures and their entries.
fn margin_of(f: &mut OrderFigures, entries: &[LedgerEntry]) {
    let counted = entries
        .iter()
        .any(|e| e.counted && e.figure == Some(Figure::Cogs));
    f.cogs_known = counted && f.cogs_unknown.is_empty();
    let net_currencies: BTreeSet<Currency> = f.net.0.keys().copied().collect();
    if f.cogs_known && f.cogs.0.keys().all(|c| net_currencies.contains(c)) {
        f.gross_margin = Some(f.net.minus(&f.cogs));
    }
    if let Some(rf) = &mut f.reporting {
        let converted = ["paid", "refunded", "chargeback_lost", "cogs"]
            .iter()
            .all(|k| !rf.unconverted.contains_key(*k));
        rf.gross_margin = (f.cogs_known && converted).then_some(rf.net - rf.cogs);
    }
}

fn refund_why(status: RefundStatus, why: &str) -> String {
    match status {
        RefundStatus::Succeeded => why.to_string(),
        RefundStatus::Pending => format!("pending, the money is promised back; {why}"),
        RefundStatus::Failed => "the refund failed: nothing went back".to_string(),
        RefundStatus::Cancelled => "the refund was cancelled: nothing went back".to_string(),
    }
}

/// The payment provider a store's gateway name is, when it is one storefold
/// hears from.
pub fn gateway_provider(gateway: &str) -> Option<&'static str> {
    let g = gateway.to_ascii_lowercase();
    if g.contains("stripe") || g == "woocommerce_payments" {
        Some("stripe")
    } else if g.contains("paypal") || g.starts_with("ppcp") || g == "ppec" {
        Some("paypal")
    } else if g.contains("adyen") {
        Some("adyen")
    } else {
        None
    }
}

#[derive(Default)]
struct LedgerBuilder {
    entries: Vec<LedgerEntry>,
}

impl LedgerBuilder {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: EntryKind,
        provider: &str,
        reference: &str,
        event: &str,
        amount: Money,
        at: OffsetDateTime,
        counted: bool,
        figure: Figure,
        why: String,
    ) {
        self.entries.push(LedgerEntry {
            kind,
            provider: provider.to_string(),
            reference: reference.to_string(),
            source_event_id: event.to_string(),
            amount,
            at,
            counted,
            figure: Some(figure),
            why,
            converted: None,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn push_uncounted(
        &mut self,
        kind: EntryKind,
        provider: &str,
        reference: &str,
        event: &str,
        amount: Money,
        at: OffsetDateTime,
        why: String,
    ) {
        self.entries.push(LedgerEntry {
            kind,
            provider: provider.to_string(),
            reference: reference.to_string(),
            source_event_id: event.to_string(),
            amount,
            at,
            counted: false,
            figure: None,
            why,
            converted: None,
        });
    }
}

/// One observation's identity: its event id and time.
type Obs<'a, T> = (&'a str, &'a T);

fn newest<'a, T>(
    obs: impl Iterator<Item = Obs<'a, T>>,
    at: impl Fn(&T) -> OffsetDateTime,
) -> Option<Obs<'a, T>> {
    obs.max_by(|a, b| (at(a.1), a.0).cmp(&(at(b.1), b.0)))
}

struct Capture {
    id: String,
    event_id: String,
    status: PaymentStatus,
    amount: Money,
    at: OffsetDateTime,
}

struct Reversal {
    reference: String,
    event_id: String,
    amount: Money,
    at: OffsetDateTime,
}

/// One payment in one currency, worked out from its observations.
struct PaymentCalc {
    key: String,
    provider: String,
    payment_id: String,
    currency: Currency,
    authorised: i64,
    authorised_event: Option<(String, OffsetDateTime)>,
    captured: i64,
    captures: Vec<Capture>,
    /// The observation the captured amount comes from, when not itemised.
    captured_event: Option<(String, OffsetDateTime, &'static str)>,
    /// Captures beyond the itemised ones, reported as a total.
    captured_beyond: i64,
    ended_by_capture: bool,
    latest_capture_at: Option<OffsetDateTime>,
    cancelled: Option<(String, OffsetDateTime)>,
    failures: Vec<(String, Money, OffsetDateTime)>,
    reversals: Vec<Reversal>,
    /// Fees: the payment's own (newest report) and each capture's (newest
    /// report per capture): (fee, reference, event, time).
    fees: Vec<(Money, String, String, OffsetDateTime)>,
    cumulative_refunded: Option<(Money, OffsetDateTime, String)>,
}

impl PaymentCalc {
    /// `provider:payment_id`.
    fn key(&self) -> String {
        format!("{}:{}", self.provider, self.payment_id)
    }

    /// Whether `id` is this payment or one of its captures.
    fn names(&self, id: &str) -> bool {
        self.payment_id == id || self.captures.iter().any(|c| c.id == id)
    }

    /// Stripe's release of the uncaptured rest of a partial capture, reported
    /// as a refund of exactly that rest created no later than the capture.
    fn is_release(&self, r: &RefundCalc) -> bool {
        if r.amount.currency != self.currency {
            return false;
        }
        // A refund of a payment that captured nothing gives nothing back: it is
        // the provider releasing the authorisation (Stripe reports releasing an
        // uncaptured charge as a refund).
        if self.captured == 0 && self.authorised > 0 && r.amount.minor <= self.authorised {
            return true;
        }
        self.ended_by_capture
            && self.captured < self.authorised
            && r.amount.minor == self.authorised - self.captured
            && self.latest_capture_at.is_some_and(|t| r.created <= t)
    }

    fn write(&self, l: &mut LedgerBuilder, count: bool, why: &str) {
        let c = self.currency;
        if let Some((ev, at)) = &self.authorised_event
            && self.authorised > 0
        {
            l.push_uncounted(
                EntryKind::Authorized,
                &self.provider,
                &self.payment_id,
                ev,
                Money::new(self.authorised, c),
                *at,
                "authorised; what was captured of it is listed as captured".into(),
            );
        }
        for cap in &self.captures {
            let (kind, counted, why_cap) = match cap.status {
                PaymentStatus::Succeeded => (EntryKind::Captured, count, why.to_string()),
                PaymentStatus::Failed | PaymentStatus::Cancelled => (
                    EntryKind::CaptureFailed,
                    false,
                    "the capture failed: no money came".to_string(),
                ),
                _ => (
                    EntryKind::Captured,
                    false,
                    "the capture is pending: no money yet".to_string(),
                ),
            };
            l.push(
                kind,
                &self.provider,
                &cap.id,
                &cap.event_id,
                cap.amount,
                cap.at,
                counted,
                Figure::Paid,
                why_cap,
            );
        }
        if let Some((ev, at, how)) = &self.captured_event {
            let amount = if self.captures.is_empty() {
                self.captured
            } else {
                self.captured_beyond
            };
            if amount > 0 {
                l.push(
                    EntryKind::Captured,
                    &self.provider,
                    &self.payment_id,
                    ev,
                    Money::new(amount, c),
                    *at,
                    count,
                    Figure::Paid,
                    format!("{how}; {why}"),
                );
            }
        }
        let rest = self.authorised - self.captured;
        if rest > 0 {
            let (kind, ev, at, counted, why_rest) = if let Some((ev, at)) = &self.cancelled {
                (
                    EntryKind::Voided,
                    ev.clone(),
                    *at,
                    false,
                    "voided: the authorisation was released, never captured",
                )
            } else if self.ended_by_capture {
                let (ev, at) = self
                    .captured_event
                    .as_ref()
                    .map(|(ev, at, _)| (ev.clone(), *at))
                    .unwrap_or((String::new(), OffsetDateTime::UNIX_EPOCH));
                (
                    EntryKind::Released,
                    ev,
                    at,
                    false,
                    "released: the capture took less than was authorised",
                )
            } else {
                let (ev, at) = self
                    .authorised_event
                    .clone()
                    .unwrap_or((String::new(), OffsetDateTime::UNIX_EPOCH));
                (
                    EntryKind::Authorized,
                    ev,
                    at,
                    count,
                    "held: authorised, not captured yet",
                )
            };
            l.push(
                kind,
                &self.provider,
                &self.payment_id,
                &ev,
                Money::new(rest, c),
                at,
                counted,
                Figure::Authorized,
                why_rest.into(),
            );
        }
        for (ev, m, at) in &self.failures {
            l.push_uncounted(
                EntryKind::PaymentFailed,
                &self.provider,
                &self.payment_id,
                ev,
                *m,
                *at,
                "the attempt failed: no money moved".into(),
            );
        }
        if self.captured > 0 {
            for (fee, reference, ev, at) in &self.fees {
                l.push(
                    EntryKind::Fee,
                    &self.provider,
                    reference,
                    ev,
                    *fee,
                    *at,
                    count,
                    Figure::Fees,
                    "processing fee, in the currency it was charged in".into(),
                );
            }
        }
    }
}

fn capture_rank(s: PaymentStatus) -> u8 {
    match s {
        PaymentStatus::Authorized => 0,
        PaymentStatus::Succeeded => 1,
        PaymentStatus::Failed | PaymentStatus::Cancelled => 2,
        PaymentStatus::Reversed => 1,
    }
}

/// The newest observation (by time, then event id) of each capture (the
/// payment itself for observations without a capture id) among those `keep`
/// selects.
fn newest_per_capture<'a>(
    obs: &[Obs<'a, Payment>],
    keep: impl Fn(&Payment) -> bool,
) -> BTreeMap<String, Obs<'a, Payment>> {
    let mut out: BTreeMap<String, Obs<'a, Payment>> = BTreeMap::new();
    for (ev, p) in obs.iter().copied().filter(|(_, p)| keep(p)) {
        let key = p.capture_id.clone().unwrap_or_else(|| p.payment_id.clone());
        match out.get(&key) {
            Some((cur_ev, cur)) if (cur.at, *cur_ev) >= (p.at, ev) => {}
            _ => {
                out.insert(key, (ev, p));
            }
        }
    }
    out
}

/// Works a payment out per currency (a payment normally has one).
fn analyse_payment(rec: &PaymentRecord) -> Vec<PaymentCalc> {
    let mut by_currency: BTreeMap<Currency, Vec<Obs<'_, Payment>>> = BTreeMap::new();
    for (ev, p) in &rec.observations {
        by_currency
            .entry(p.amount.currency)
            .or_default()
            .push((ev.as_str(), p));
    }
    let mut out = Vec::new();
    for (currency, obs) in by_currency {
        let Some((_, first)) = obs.first() else {
            continue;
        };
        let provider = first.provider.clone();
        let payment_id = first.payment_id.clone();
        let plain = || obs.iter().copied().filter(|(_, p)| p.capture_id.is_none());
        // Captures with ids of their own.
        let mut captures_by_id: BTreeMap<&str, Vec<Obs<'_, Payment>>> = BTreeMap::new();
        for (ev, p) in obs.iter().copied() {
            if let Some(c) = &p.capture_id
                && p.status != PaymentStatus::Reversed
            {
                captures_by_id.entry(c.as_str()).or_default().push((ev, p));
            }
        }
        let captures: Vec<Capture> = captures_by_id
            .into_iter()
            .filter_map(|(id, list)| {
                let status = list
                    .iter()
                    .map(|(_, p)| p.status)
                    .max_by_key(|s| capture_rank(*s))?;
                let (ev, p) = newest(list.into_iter(), |p| p.at)?;
                Some(Capture {
                    id: id.to_string(),
                    event_id: ev.to_string(),
                    status,
                    amount: p.amount,
                    at: p.at,
                })
            })
            .collect();
        // The largest authorised amount (newest among equals).
        let authorised_obs = plain()
            .filter(|(_, p)| {
                matches!(
                    p.status,
                    PaymentStatus::Authorized | PaymentStatus::Succeeded | PaymentStatus::Cancelled
                )
            })
            .max_by(|a, b| (a.1.amount.minor, a.1.at, a.0).cmp(&(b.1.amount.minor, b.1.at, b.0)));
        let authorised_max = authorised_obs.map(|(_, p)| p.amount.minor);
        let cumulative = obs
            .iter()
            .filter_map(|(ev, p)| p.captured.map(|c| (c.minor, *ev, p.at)))
            .max_by(|a, b| (a.0, a.2, a.1).cmp(&(b.0, b.2, b.1)));
        // A succeeded observation that reports what it captured says so in
        // `captured` (its `amount` is then what was authorised).
        let succeeded_plain = plain()
            .filter(|(_, p)| p.status == PaymentStatus::Succeeded && p.captured.is_none())
            .map(|(ev, p)| (p.amount.minor, ev, p.at))
            .max_by(|a, b| (a.0, a.2, a.1).cmp(&(b.0, b.2, b.1)));
        let auto = plain()
            .filter(|(_, p)| p.auto_capture && p.status == PaymentStatus::Authorized)
            .map(|(ev, p)| (ev, p.at))
            .max_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        let cancelled = plain()
            .filter(|(_, p)| p.status == PaymentStatus::Cancelled)
            .map(|(ev, p)| (ev.to_string(), p.at))
            .min_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let itemised: i64 = captures
            .iter()
            .filter(|c| c.status == PaymentStatus::Succeeded)
            .map(|c| c.amount.minor)
            .sum();
        let mut captured_event = None;
        let mut captured_beyond = 0;
        let mut ended_by_capture = false;
        let captured = if !captures.is_empty() {
            let cum = cumulative.map(|c| c.0).unwrap_or(0);
            if cum > itemised
                && let Some((_, ev, at)) = cumulative
            {
                captured_beyond = cum - itemised;
                captured_event = Some((ev.to_string(), at, "captured, reported as a total"));
            }
            itemised.max(cum)
        } else if cumulative.is_some() || succeeded_plain.is_some() {
            ended_by_capture = true;
            let best = match (cumulative, succeeded_plain) {
                (Some(a), Some(b)) => {
                    if (a.0, a.2, a.1) >= (b.0, b.2, b.1) {
                        a
                    } else {
                        b
                    }
                }
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => unreachable!("one of them is present"),
            };
            captured_event = Some((best.1.to_string(), best.2, "captured"));
            best.0
        } else if let Some((ev, at)) = auto
            && cancelled.is_none()
        {
            captured_event = Some((
                ev.to_string(),
                at,
                "authorisation captured by the provider itself (automatic capture)",
            ));
            authorised_max.unwrap_or(0)
        } else {
            0
        };
        let authorised = authorised_max.unwrap_or(itemised).max(0);
        let latest_capture_at = obs
            .iter()
            .filter(|(_, p)| p.status == PaymentStatus::Succeeded || p.captured.is_some())
            .map(|(_, p)| p.at)
            .max();
        let failures = plain()
            .filter(|(_, p)| p.status == PaymentStatus::Failed)
            .map(|(ev, p)| (ev.to_string(), p.amount, p.at))
            .collect();
        let reversals = newest_per_capture(&obs, |p| p.status == PaymentStatus::Reversed)
            .into_iter()
            .map(|(reference, (ev, p))| Reversal {
                reference,
                event_id: ev.to_string(),
                amount: p.amount,
                at: p.at,
            })
            .collect();
        let fees = newest_per_capture(&obs, |p| p.fee.is_some())
            .into_iter()
            .filter_map(|(reference, (ev, p))| p.fee.map(|f| (f, reference, ev.to_string(), p.at)))
            .collect();
        let cumulative_refunded = newest(
            obs.iter()
                .copied()
                .filter(|(_, p)| p.amount_refunded.is_some()),
            |p| p.at,
        )
        .and_then(|(ev, p)| p.amount_refunded.map(|r| (r, p.at, ev.to_string())));
        out.push(PaymentCalc {
            key: format!("{provider}:{payment_id}"),
            provider,
            payment_id,
            currency,
            authorised,
            authorised_event: authorised_obs.map(|(ev, p)| (ev.to_string(), p.at)),
            captured,
            captures,
            captured_event,
            captured_beyond,
            ended_by_capture,
            latest_capture_at,
            cancelled,
            failures,
            reversals,
            fees,
            cumulative_refunded,
        });
    }
    out
}

/// One refund, worked out from its observations.
struct RefundCalc {
    provider: String,
    refund_id: String,
    payment_id: Option<String>,
    gateway: Option<String>,
    status: RefundStatus,
    amount: Money,
    /// The newest observation.
    event_id: String,
    at: OffsetDateTime,
    /// When the provider created it (else when it was first reported).
    created: OffsetDateTime,
    /// When it was first reported failed or cancelled.
    ended: Option<OffsetDateTime>,
}

fn refund_rank(s: RefundStatus) -> u8 {
    match s {
        RefundStatus::Pending => 0,
        RefundStatus::Succeeded => 1,
        RefundStatus::Failed | RefundStatus::Cancelled => 2,
    }
}

fn analyse_refund(rec: &RefundRecord) -> Option<RefundCalc> {
    let obs = || rec.observations.iter().map(|(ev, r)| (ev.as_str(), r));
    let (ev, newest_obs) = newest(obs(), |r| r.at)?;
    // Highest rank; among equals the newest (so `Failed` vs `Cancelled` is stable).
    let status = obs()
        .map(|(ev, r)| (refund_rank(r.status), r.at, ev, r.status))
        .max()
        .map(|t| t.3)?;
    let created = obs()
        .filter_map(|(_, r)| r.created_at)
        .min()
        .or_else(|| obs().map(|(_, r)| r.at).min())?;
    let ended = obs()
        .filter(|(_, r)| matches!(r.status, RefundStatus::Failed | RefundStatus::Cancelled))
        .map(|(_, r)| r.at)
        .min();
    Some(RefundCalc {
        provider: newest_obs.provider.clone(),
        refund_id: newest_obs.refund_id.clone(),
        payment_id: obs().filter_map(|(_, r)| r.payment_id.clone()).max(),
        gateway: obs().filter_map(|(_, r)| r.gateway.clone()).max(),
        status,
        amount: newest_obs.amount,
        event_id: ev.to_string(),
        at: newest_obs.at,
        created,
        ended,
    })
}

/// One dispute, worked out from its observations.
struct DisputeCalc {
    provider: String,
    dispute_id: String,
    payment_id: Option<String>,
    status: DisputeStatus,
    amount: Money,
    event_id: String,
    at: OffsetDateTime,
    first_event_id: String,
    opened_at: OffsetDateTime,
    movements: Vec<DisputeMovement>,
}

impl DisputeCalc {
    /// The payment it disputes (`provider:payment_id`, or its own key).
    fn payment_key(&self, payments: &[&PaymentCalc]) -> String {
        self.payment_id
            .as_deref()
            .and_then(|id| {
                payments
                    .iter()
                    .find(|p| p.provider == self.provider && p.names(id))
            })
            .map(|p| p.key.clone())
            .unwrap_or_else(|| format!("dispute:{}:{}", self.provider, self.dispute_id))
    }
}

fn dispute_rank(s: DisputeStatus) -> u8 {
    match s {
        DisputeStatus::Inquiry => 0,
        DisputeStatus::NeedsResponse => 1,
        DisputeStatus::UnderReview => 2,
        DisputeStatus::WarningClosed | DisputeStatus::MerchantRefunded => 3,
        DisputeStatus::Won | DisputeStatus::Lost => 4,
    }
}

fn analyse_dispute(rec: &DisputeRecord) -> Option<DisputeCalc> {
    let obs = || rec.observations.iter().map(|(ev, d)| (ev.as_str(), d));
    let (ev, d) = obs().max_by(|a, b| {
        (a.1.at, dispute_rank(a.1.status), a.0).cmp(&(b.1.at, dispute_rank(b.1.status), b.0))
    })?;
    let (first_ev, first) = obs().min_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)))?;
    let mut movements: BTreeMap<&str, &DisputeMovement> = BTreeMap::new();
    for (_, o) in obs() {
        for m in &o.movements {
            movements.entry(m.id.as_str()).or_insert(m);
        }
    }
    Some(DisputeCalc {
        provider: d.provider.clone(),
        dispute_id: d.dispute_id.clone(),
        payment_id: obs().filter_map(|(_, o)| o.payment_id.clone()).max(),
        status: d.status,
        amount: d.amount,
        event_id: ev.to_string(),
        at: d.at,
        first_event_id: first_ev.to_string(),
        opened_at: first.at,
        movements: movements.into_values().cloned().collect(),
    })
}
