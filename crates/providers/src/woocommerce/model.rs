//! WooCommerce webhook payloads: the REST API (wc/v3) resources, which is what an
//! `order.*` / `customer.*` webhook delivers. Tolerant of unknown fields, because
//! plugins add fields and meta freely.

use serde::Deserialize;

pub(crate) use crate::serde_util::{Amount, Id};

/// Billing or shipping address; `email` only on billing, `phone` on both since 5.6.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Address {
    #[serde(default)]
    pub(crate) first_name: Option<String>,
    #[serde(default)]
    pub(crate) last_name: Option<String>,
    #[serde(default)]
    pub(crate) company: Option<String>,
    #[serde(default)]
    pub(crate) address_1: Option<String>,
    #[serde(default)]
    pub(crate) address_2: Option<String>,
    #[serde(default)]
    pub(crate) city: Option<String>,
    #[serde(default)]
    pub(crate) state: Option<String>,
    #[serde(default)]
    pub(crate) postcode: Option<String>,
    #[serde(default)]
    pub(crate) country: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) phone: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Meta {
    #[serde(default)]
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) value: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LineItem {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) sku: Option<String>,
    #[serde(default)]
    pub(crate) quantity: i64,
    /// Before discounts.
    #[serde(default)]
    pub(crate) subtotal: Option<Amount>,
    /// After discounts.
    #[serde(default)]
    pub(crate) total: Option<Amount>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct CouponLine {
    #[serde(default)]
    pub(crate) code: Option<String>,
}

/// An entry of `order.refunds`: WooCommerce lists refunds with negative totals.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RefundRef {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) total: Option<Amount>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Order {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) number: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) currency: Option<String>,
    #[serde(default)]
    pub(crate) created_via: Option<String>,
    #[serde(default)]
    pub(crate) date_created_gmt: Option<String>,
    #[serde(default)]
    pub(crate) date_modified_gmt: Option<String>,
    /// Set once, when the order first reaches a paid status or its gateway
    /// reports the payment complete (`WC_Order::payment_complete`,
    /// `maybe_set_date_paid`); never cleared afterwards (not by a refund either).
    #[serde(default)]
    pub(crate) date_paid_gmt: Option<String>,
    #[serde(default)]
    pub(crate) discount_total: Option<Amount>,
    #[serde(default)]
    pub(crate) shipping_total: Option<Amount>,
    #[serde(default)]
    pub(crate) total: Option<Amount>,
    #[serde(default)]
    pub(crate) total_tax: Option<Amount>,
    #[serde(default)]
    pub(crate) customer_id: Option<Id>,
    #[serde(default)]
    pub(crate) customer_note: Option<String>,
    #[serde(default)]
    pub(crate) billing: Option<Address>,
    #[serde(default)]
    pub(crate) shipping: Option<Address>,
    #[serde(default)]
    pub(crate) payment_method: Option<String>,
    #[serde(default)]
    pub(crate) transaction_id: Option<String>,
    #[serde(default)]
    pub(crate) meta_data: Vec<Meta>,
    #[serde(default)]
    pub(crate) line_items: Vec<LineItem>,
    #[serde(default)]
    pub(crate) coupon_lines: Vec<CouponLine>,
    #[serde(default)]
    pub(crate) refunds: Vec<RefundRef>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Customer {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub(crate) first_name: Option<String>,
    #[serde(default)]
    pub(crate) last_name: Option<String>,
    #[serde(default)]
    pub(crate) date_created_gmt: Option<String>,
    #[serde(default)]
    pub(crate) date_modified_gmt: Option<String>,
    #[serde(default)]
    pub(crate) billing: Option<Address>,
    #[serde(default)]
    pub(crate) shipping: Option<Address>,
}

/// What [`super::describe`] needs: any resource's id and modification time.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Stamp {
    #[serde(default)]
    pub(crate) id: Option<Id>,
    #[serde(default)]
    pub(crate) date_modified_gmt: Option<String>,
    #[serde(default)]
    pub(crate) date_created_gmt: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RefundLineItem {
    pub(crate) id: Id,
    /// Negative in a refund.
    #[serde(default)]
    pub(crate) quantity: i64,
    /// Negative in a refund.
    #[serde(default)]
    pub(crate) total: Option<Amount>,
    #[serde(default)]
    pub(crate) meta_data: Vec<Meta>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Link {
    #[serde(default)]
    pub(crate) href: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct RefundLinks {
    /// The order the refund belongs to (`.../orders/723`).
    #[serde(default)]
    pub(crate) up: Vec<Link>,
}

/// The REST refund resource (GET/POST /wc/v3/orders/{id}/refunds).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RefundResource {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) date_created_gmt: Option<String>,
    /// Positive, unlike the order's `refunds[].total`.
    #[serde(default)]
    pub(crate) amount: Option<Amount>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    /// Whether WooCommerce had the gateway send the money back (an API refund);
    /// `false` for a refund only recorded in the shop.
    #[serde(default)]
    pub(crate) refunded_payment: Option<bool>,
    #[serde(default)]
    pub(crate) line_items: Vec<RefundLineItem>,
    #[serde(default, rename = "_links")]
    pub(crate) links: RefundLinks,
}

/// product.created, product.updated: the REST product (wc/v3), a simple or
/// variable product or one variation (`type: variation`, with its own SKU and
/// stock).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Product {
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) sku: Option<String>,
    /// `simple`, `variable`, `variation`, `grouped`, `external`.
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    /// `null` unless the shop manages the product's stock.
    #[serde(default)]
    pub(crate) stock_quantity: Option<i64>,
    /// `instock`, `outofstock`, `onbackorder`.
    #[serde(default)]
    pub(crate) stock_status: Option<String>,
    /// Whether it sells out of stock: `no`, `notify`, `yes`.
    #[serde(default)]
    pub(crate) backorders: Option<String>,
    #[serde(default)]
    pub(crate) date_created_gmt: Option<String>,
    #[serde(default)]
    pub(crate) date_modified_gmt: Option<String>,
    #[serde(default)]
    pub(crate) meta_data: Vec<Meta>,
}
