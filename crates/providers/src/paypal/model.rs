//! PayPal webhook payloads (REST v2 captures and refunds, v1 disputes). Tolerant:
//! unknown fields are ignored and nearly everything is optional.

use serde::Deserialize;
use serde_json::Value;

/// A webhook event; `resource` is read according to `event_type`.
#[derive(Debug, Deserialize)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) create_time: Option<String>,
    #[serde(default)]
    pub(crate) resource: Value,
}

/// PayPal money: a decimal string and a currency code (`value`/`currency_code`
/// in v2 resources, `total`/`currency` in the v1 resources some events still
/// carry).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Amount {
    #[serde(alias = "currency")]
    pub(crate) currency_code: String,
    #[serde(alias = "total")]
    pub(crate) value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Link {
    pub(crate) href: Option<String>,
    pub(crate) rel: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StatusDetails {
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SellerReceivableBreakdown {
    pub(crate) paypal_fee: Option<Amount>,
    pub(crate) net_amount: Option<Amount>,
}

/// `resource` of `PAYMENT.AUTHORIZATION.*`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Authorization {
    pub(crate) id: String,
    pub(crate) amount: Amount,
    pub(crate) custom_id: Option<String>,
    pub(crate) invoice_id: Option<String>,
}

/// `resource` of `PAYMENT.CAPTURE.COMPLETED|PENDING|DENIED|DECLINED`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Capture {
    pub(crate) id: String,
    pub(crate) status: Option<String>,
    pub(crate) status_details: Option<StatusDetails>,
    pub(crate) amount: Amount,
    pub(crate) custom_id: Option<String>,
    pub(crate) invoice_id: Option<String>,
    pub(crate) seller_receivable_breakdown: Option<SellerReceivableBreakdown>,
    /// `up` names what was captured: an authorization
    /// (`…/v2/payments/authorizations/<id>`) or an order.
    #[serde(default)]
    pub(crate) links: Vec<Link>,
}

/// `resource` of `PAYMENT.CAPTURE.REFUNDED` and of `PAYMENT.CAPTURE.REVERSED`
/// (a reversal is reported as a refund of the capture, issued by PayPal).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Refund {
    pub(crate) id: String,
    pub(crate) status: Option<String>,
    pub(crate) status_details: Option<StatusDetails>,
    pub(crate) amount: Amount,
    pub(crate) custom_id: Option<String>,
    pub(crate) invoice_id: Option<String>,
    pub(crate) note_to_payer: Option<String>,
    pub(crate) create_time: Option<String>,
    /// `up` is the refunded capture (`…/v2/payments/captures/<id>`).
    #[serde(default)]
    pub(crate) links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DisputedTransaction {
    pub(crate) seller_transaction_id: Option<String>,
    pub(crate) custom: Option<String>,
    pub(crate) invoice_number: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DisputeOutcome {
    pub(crate) outcome_code: Option<String>,
}

/// `resource` of `CUSTOMER.DISPUTE.*`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Dispute {
    pub(crate) dispute_id: String,
    pub(crate) reason: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) dispute_amount: Option<Amount>,
    pub(crate) dispute_outcome: Option<DisputeOutcome>,
    pub(crate) dispute_life_cycle_stage: Option<String>,
    #[serde(default)]
    pub(crate) disputed_transactions: Vec<DisputedTransaction>,
}
