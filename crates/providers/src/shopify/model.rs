//! Shopify webhook payloads (REST shapes, API versions 2019-10 and later).
//!
//! Every struct is tolerant: unknown fields are ignored and almost every field is
//! optional, because Shopify adds fields with every API version and old payloads
//! (and replays of them) lack the newer ones.

use serde::Deserialize;

pub(crate) use crate::serde_util::{Amount, Id};

/// One side of a money bag.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct MoneyValue {
    pub(crate) amount: Amount,
    pub(crate) currency_code: String,
}

/// `*_set` money bags: the amount in the shop's and in the customer's currency.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct MoneySet {
    #[serde(default)]
    pub(crate) shop_money: Option<MoneyValue>,
    #[serde(default)]
    pub(crate) presentment_money: Option<MoneyValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Address {
    #[serde(default)]
    pub(crate) first_name: Option<String>,
    #[serde(default)]
    pub(crate) last_name: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) company: Option<String>,
    #[serde(default)]
    pub(crate) address1: Option<String>,
    #[serde(default)]
    pub(crate) address2: Option<String>,
    #[serde(default)]
    pub(crate) city: Option<String>,
    #[serde(default)]
    pub(crate) province: Option<String>,
    #[serde(default)]
    pub(crate) province_code: Option<String>,
    #[serde(default)]
    pub(crate) zip: Option<String>,
    #[serde(default)]
    pub(crate) country: Option<String>,
    #[serde(default)]
    pub(crate) country_code: Option<String>,
    #[serde(default)]
    pub(crate) phone: Option<String>,
}

/// `email_marketing_consent` / `sms_marketing_consent`.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct MarketingConsent {
    #[serde(default)]
    pub(crate) state: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Customer {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) phone: Option<String>,
    #[serde(default)]
    pub(crate) first_name: Option<String>,
    #[serde(default)]
    pub(crate) last_name: Option<String>,
    #[serde(default)]
    pub(crate) note: Option<String>,
    /// Comma-separated.
    #[serde(default)]
    pub(crate) tags: Option<String>,
    #[serde(default)]
    pub(crate) accepts_marketing: Option<bool>,
    #[serde(default)]
    pub(crate) email_marketing_consent: Option<MarketingConsent>,
    #[serde(default)]
    pub(crate) sms_marketing_consent: Option<MarketingConsent>,
    #[serde(default)]
    pub(crate) default_address: Option<Address>,
    #[serde(default)]
    pub(crate) addresses: Vec<Address>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LineItem {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) sku: Option<String>,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) quantity: i64,
    #[serde(default)]
    pub(crate) price: Option<Amount>,
    #[serde(default)]
    pub(crate) price_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) total_discount: Option<Amount>,
    #[serde(default)]
    pub(crate) total_discount_set: Option<MoneySet>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct DiscountCode {
    #[serde(default)]
    pub(crate) code: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct NoteAttribute {
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Usually a string; apps sometimes write numbers or booleans.
    #[serde(default)]
    pub(crate) value: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ShippingLine {
    #[serde(default)]
    pub(crate) price: Option<Amount>,
    #[serde(default)]
    pub(crate) price_set: Option<MoneySet>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct FulfillmentLineItem {
    pub(crate) id: Id,
}

/// A fulfillment: the body of fulfillments/* and an entry of `order.fulfillments`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Fulfillment {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) order_id: Option<Id>,
    /// pending, open, success, cancelled, error, failure.
    #[serde(default)]
    pub(crate) status: Option<String>,
    /// The carrier's view: label_printed, in_transit, delivered, failure, ...
    #[serde(default)]
    pub(crate) shipment_status: Option<String>,
    #[serde(default)]
    pub(crate) tracking_company: Option<String>,
    #[serde(default)]
    pub(crate) tracking_number: Option<String>,
    #[serde(default)]
    pub(crate) tracking_numbers: Vec<String>,
    #[serde(default)]
    pub(crate) line_items: Vec<FulfillmentLineItem>,
    #[serde(default)]
    pub(crate) estimated_delivery_at: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Order {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) contact_email: Option<String>,
    #[serde(default)]
    pub(crate) phone: Option<String>,
    /// Shop currency.
    #[serde(default)]
    pub(crate) currency: Option<String>,
    /// The currency the customer saw and paid in (multi-currency orders).
    #[serde(default)]
    pub(crate) presentment_currency: Option<String>,
    #[serde(default)]
    pub(crate) financial_status: Option<String>,
    #[serde(default)]
    pub(crate) fulfillment_status: Option<String>,
    #[serde(default)]
    pub(crate) total_price: Option<Amount>,
    #[serde(default)]
    pub(crate) total_price_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) current_total_price: Option<Amount>,
    #[serde(default)]
    pub(crate) current_total_price_set: Option<MoneySet>,
    /// Still owed by the customer (negative: owed to the customer), in the shop
    /// currency only; REST payloads carry no money bag for it.
    #[serde(default)]
    pub(crate) total_outstanding: Option<Amount>,
    #[serde(default)]
    pub(crate) subtotal_price: Option<Amount>,
    #[serde(default)]
    pub(crate) subtotal_price_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) current_subtotal_price: Option<Amount>,
    #[serde(default)]
    pub(crate) current_subtotal_price_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) total_discounts: Option<Amount>,
    #[serde(default)]
    pub(crate) total_discounts_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) current_total_discounts: Option<Amount>,
    #[serde(default)]
    pub(crate) current_total_discounts_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) total_tax: Option<Amount>,
    #[serde(default)]
    pub(crate) total_tax_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) current_total_tax: Option<Amount>,
    #[serde(default)]
    pub(crate) current_total_tax_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) total_shipping_price_set: Option<MoneySet>,
    #[serde(default)]
    pub(crate) shipping_lines: Vec<ShippingLine>,
    #[serde(default)]
    pub(crate) line_items: Vec<LineItem>,
    #[serde(default)]
    pub(crate) discount_codes: Vec<DiscountCode>,
    #[serde(default)]
    pub(crate) fulfillments: Vec<Fulfillment>,
    /// The order's refunds so far (same shape as a refunds/create body).
    #[serde(default)]
    pub(crate) refunds: Vec<Refund>,
    #[serde(default)]
    pub(crate) landing_site: Option<String>,
    #[serde(default)]
    pub(crate) referring_site: Option<String>,
    #[serde(default)]
    pub(crate) source_name: Option<String>,
    #[serde(default)]
    pub(crate) note_attributes: Vec<NoteAttribute>,
    #[serde(default)]
    pub(crate) cart_token: Option<String>,
    #[serde(default)]
    pub(crate) note: Option<String>,
    /// Comma-separated.
    #[serde(default)]
    pub(crate) tags: Option<String>,
    #[serde(default)]
    pub(crate) test: Option<bool>,
    #[serde(default)]
    pub(crate) customer: Option<Customer>,
    #[serde(default)]
    pub(crate) billing_address: Option<Address>,
    #[serde(default)]
    pub(crate) shipping_address: Option<Address>,
    #[serde(default)]
    pub(crate) buyer_accepts_marketing: Option<bool>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
    #[serde(default)]
    pub(crate) processed_at: Option<String>,
    #[serde(default)]
    pub(crate) cancelled_at: Option<String>,
    #[serde(default)]
    pub(crate) cancel_reason: Option<String>,
    #[serde(default)]
    pub(crate) closed_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RefundLineItem {
    #[serde(default)]
    pub(crate) line_item_id: Option<Id>,
    #[serde(default)]
    pub(crate) line_item: Option<LineItemRef>,
    #[serde(default)]
    pub(crate) quantity: i64,
    /// no_restock, cancel, return, legacy_restock.
    #[serde(default)]
    pub(crate) restock_type: Option<String>,
    #[serde(default)]
    pub(crate) subtotal: Option<Amount>,
    #[serde(default)]
    pub(crate) subtotal_set: Option<MoneySet>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LineItemRef {
    pub(crate) id: Id,
}

/// An order transaction: the body of order_transactions/create and an entry of a
/// refund's `transactions`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Transaction {
    #[serde(default)]
    pub(crate) id: Option<Id>,
    #[serde(default)]
    pub(crate) order_id: Option<Id>,
    /// authorization, capture, sale, void, refund (and change, suggested_refund, ...).
    #[serde(default)]
    pub(crate) kind: Option<String>,
    /// pending, failure, success, error.
    #[serde(default)]
    pub(crate) status: Option<String>,
    /// In the order's presentment currency (`currency`).
    #[serde(default)]
    pub(crate) amount: Option<Amount>,
    #[serde(default)]
    pub(crate) currency: Option<String>,
    /// The gateway as Shopify names it: shopify_payments, paypal, manual, gift_card, ...
    #[serde(default)]
    pub(crate) gateway: Option<String>,
    /// The transaction this one acts on (the authorisation a capture or void
    /// belongs to, the capture or sale a refund gives back).
    #[serde(default)]
    pub(crate) parent_id: Option<Id>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) error_code: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) processed_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct OrderAdjustment {
    #[serde(default)]
    pub(crate) amount: Option<Amount>,
    #[serde(default)]
    pub(crate) amount_set: Option<MoneySet>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Refund {
    pub(crate) id: Id,
    /// Always in a refunds/create body; an entry of `order.refunds` may omit it.
    #[serde(default)]
    pub(crate) order_id: Option<Id>,
    #[serde(default)]
    pub(crate) note: Option<String>,
    /// Pre-2017 refunds say only this, for every line.
    #[serde(default)]
    pub(crate) restock: Option<bool>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) processed_at: Option<String>,
    #[serde(default)]
    pub(crate) refund_line_items: Vec<RefundLineItem>,
    #[serde(default)]
    pub(crate) transactions: Vec<Transaction>,
    #[serde(default)]
    pub(crate) order_adjustments: Vec<OrderAdjustment>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct FulfillmentEvent {
    pub(crate) fulfillment_id: Id,
    #[serde(default)]
    pub(crate) order_id: Option<Id>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) city: Option<String>,
    #[serde(default)]
    pub(crate) province: Option<String>,
    #[serde(default)]
    pub(crate) country: Option<String>,
    #[serde(default)]
    pub(crate) tracking_number: Option<String>,
    #[serde(default)]
    pub(crate) happened_at: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) estimated_delivery_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Checkout {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) id: Option<Id>,
    #[serde(default)]
    pub(crate) cart_token: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) landing_site: Option<String>,
    #[serde(default)]
    pub(crate) referring_site: Option<String>,
    #[serde(default)]
    pub(crate) customer: Option<Customer>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

/// orders/edited: what an order edit changed, not the order itself (no totals).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct OrderEdited {
    pub(crate) order_edit: OrderEdit,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct OrderEdit {
    pub(crate) order_id: Id,
}

/// customers/delete: Shopify sends little more than the id.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct DeletedCustomer {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RedactCustomer {
    #[serde(default)]
    pub(crate) id: Option<Id>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) phone: Option<String>,
}

/// customers/redact (mandatory compliance webhook).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct CustomersRedact {
    #[serde(default)]
    pub(crate) customer: RedactCustomer,
    #[serde(default)]
    pub(crate) orders_to_redact: Vec<Id>,
}

/// inventory_items/create, inventory_items/update: the REST InventoryItem.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct InventoryItem {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) sku: Option<String>,
    /// What one unit costs the merchant, in the shop's currency (the payload
    /// does not name it); `null` when the merchant never set it.
    #[serde(default)]
    pub(crate) cost: Option<Amount>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

/// One variant of a product (products/create, products/update).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Variant {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) sku: Option<String>,
    /// The inventory item that carries the variant's stock and cost.
    #[serde(default)]
    pub(crate) inventory_item_id: Option<Id>,
    /// Units available, all locations together (negative when oversold).
    #[serde(default)]
    pub(crate) inventory_quantity: Option<i64>,
    /// `deny` (stop selling when out of stock) or `continue` (keep selling).
    #[serde(default)]
    pub(crate) inventory_policy: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

/// products/create, products/update: the REST Product with its variants.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Product {
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
    #[serde(default)]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) variants: Vec<Variant>,
}
