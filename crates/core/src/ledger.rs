//! An order's books: every amount its providers reported, as ledger entries,
//! and the figures the rules of `docs/books.md` count from them.
//!
//! The entries and figures are computed from the order's observations (a set),
//! never accumulated, so they do not depend on arrival order or batching.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::money::{Currency, Money, MoneyBag};

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
    /// Amounts with no usable rate, by figure (see [`ReportingFigures`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unconverted: BTreeMap<String, MoneyBag>,
}
