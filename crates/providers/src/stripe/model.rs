//! Stripe payload structs. Tolerant: unknown fields are ignored, almost every field
//! is optional, and expandable fields accept either an id or the expanded object,
//! because Stripe adds fields every month and endpoints pin different API versions.

use serde::Deserialize;
use serde_json::Value;

/// The fields `describe` needs; read only after the signature passed.
#[derive(Debug, Deserialize)]
pub(crate) struct EventHead {
    pub(crate) id: Option<String>,
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) created: Option<i64>,
}

/// A webhook event: `data.object` is read according to `type`.
#[derive(Debug, Deserialize)]
pub(crate) struct Event {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) created: i64,
    pub(crate) data: EventData,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventData {
    pub(crate) object: Value,
}

/// A field Stripe sends as an id unless the request expanded it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Expandable<T> {
    Id(String),
    Object(Box<T>),
}

/// Objects that have an id, so an [`Expandable`] always knows its id.
pub(crate) trait HasId {
    fn id(&self) -> &str;
}

impl<T: HasId> Expandable<T> {
    pub(crate) fn id(&self) -> &str {
        match self {
            Expandable::Id(id) => id,
            Expandable::Object(o) => o.id(),
        }
    }

    pub(crate) fn object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(o) => Some(o),
        }
    }
}

/// A Stripe list (`{"object":"list","data":[…]}`); older fixtures send `{}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct List<T> {
    #[serde(default = "Vec::new")]
    pub(crate) data: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BalanceTransaction {
    pub(crate) id: String,
    pub(crate) currency: Option<String>,
    pub(crate) fee: Option<i64>,
    pub(crate) net: Option<i64>,
    /// Signed, in `currency`: negative when money left the merchant.
    pub(crate) amount: Option<i64>,
    pub(crate) created: Option<i64>,
}

impl HasId for BalanceTransaction {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BillingDetails {
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) address: Option<BillingAddress>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct BillingAddress {
    pub(crate) country: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PaymentMethodDetails {
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Outcome {
    pub(crate) reason: Option<String>,
    pub(crate) seller_message: Option<String>,
}

/// Stripe sends a customer as an id or, expanded, as an object with an id.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CustomerRef {
    pub(crate) id: String,
    pub(crate) email: Option<String>,
}

impl HasId for CustomerRef {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Charge {
    pub(crate) id: String,
    /// What was authorised (or charged at once).
    pub(crate) amount: i64,
    pub(crate) currency: String,
    /// What was captured, less than `amount` after a partial capture; absent
    /// from payloads of API versions before it existed.
    pub(crate) amount_captured: Option<i64>,
    /// Cumulative refunded, including the uncaptured rest a partial capture
    /// released.
    pub(crate) amount_refunded: Option<i64>,
    pub(crate) captured: Option<bool>,
    pub(crate) paid: Option<bool>,
    pub(crate) status: Option<String>,
    pub(crate) payment_intent: Option<Expandable<PaymentIntent>>,
    pub(crate) balance_transaction: Option<Expandable<BalanceTransaction>>,
    pub(crate) billing_details: Option<BillingDetails>,
    pub(crate) receipt_email: Option<String>,
    pub(crate) customer: Option<Expandable<CustomerRef>>,
    /// Kept as JSON: Stripe metadata values are strings, but nothing here should
    /// fail on an odd one.
    pub(crate) metadata: Option<Value>,
    pub(crate) payment_method_details: Option<PaymentMethodDetails>,
    pub(crate) failure_code: Option<String>,
    pub(crate) failure_message: Option<String>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) refunds: Option<List<Refund>>,
}

impl HasId for Charge {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PaymentError {
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) code: Option<String>,
    pub(crate) decline_code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) charge: Option<String>,
    pub(crate) payment_method: Option<PaymentMethod>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PaymentMethod {
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) billing_details: Option<BillingDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PaymentIntent {
    pub(crate) id: String,
    pub(crate) amount: Option<i64>,
    pub(crate) amount_received: Option<i64>,
    /// Authorised and not captured yet (manual capture).
    pub(crate) amount_capturable: Option<i64>,
    pub(crate) currency: Option<String>,
    pub(crate) metadata: Option<Value>,
    pub(crate) receipt_email: Option<String>,
    pub(crate) customer: Option<Expandable<CustomerRef>>,
    pub(crate) last_payment_error: Option<PaymentError>,
    pub(crate) latest_charge: Option<Expandable<Charge>>,
    /// Before API 2022-11-15 a payment intent carried its charges.
    pub(crate) charges: Option<List<Charge>>,
    pub(crate) payment_method_types: Option<Vec<String>>,
}

impl HasId for PaymentIntent {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Refund {
    pub(crate) id: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    /// When Stripe created it (unix seconds): a refund can fail days later.
    pub(crate) created: Option<i64>,
    pub(crate) status: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) failure_reason: Option<String>,
    pub(crate) charge: Option<Expandable<Charge>>,
    pub(crate) payment_intent: Option<Expandable<PaymentIntent>>,
    pub(crate) metadata: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Dispute {
    pub(crate) id: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) created: Option<i64>,
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    pub(crate) charge: Option<Expandable<Charge>>,
    pub(crate) payment_intent: Option<Expandable<PaymentIntent>>,
    pub(crate) metadata: Option<Value>,
    #[serde(default)]
    pub(crate) balance_transactions: Vec<BalanceTransaction>,
}

/// A payout to the merchant's bank (`payout.*` events).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Payout {
    pub(crate) id: String,
    /// Minor units of `currency`.
    pub(crate) amount: i64,
    pub(crate) currency: String,
    /// `pending`, `in_transit`, `paid`, `failed`, `canceled`.
    pub(crate) status: String,
    /// When the money is expected at the bank (unix seconds).
    pub(crate) arrival_date: Option<i64>,
    pub(crate) failure_code: Option<String>,
}
