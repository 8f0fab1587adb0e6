//! WooCommerce payloads to canonical events.

use storefold_core::event::{
    Address, Attribution, Consent, CustomerUpserted, InventoryUpdated, LineItem, OrderLink,
    OrderStatus, OrderTotals, OrderUpserted, PaymentRef, Refund, RefundLine, RefundStatus, StoreMoney, Utm,
};
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::model;
use crate::{
    MapContext, MapError, RawInput, currency_of, dedup_in_order, full_name, non_empty, parse_json,
};

const PROVIDER: &str = "woocommerce";

fn envelope(ctx: &MapContext<'_>, event_id: String, at: OffsetDateTime, event: Event) -> Envelope {
    Envelope {
        tenant: ctx.tenant.to_string(),
        provider: PROVIDER.to_string(),
        event_id,
        occurred_at: at,
        event,
    }
}

fn with_suffix(event_id: &str, suffix: &str) -> String {
    format!("{event_id}#{suffix}")
}

/// order.created, order.updated, order.deleted, order.restored: the customer (when
/// the order names a billing email), the order snapshot, and one refund per entry
/// of its `refunds` list.
pub(crate) fn order(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let o: model::Order = parse_json(input.body)?;
    if o.currency.is_none() && o.total.is_none() && input.topic == "order.deleted" {
        // WooCommerce sends only `{"id": ...}` for a deleted order. The canonical
        // model has no order deletion (an order that happened stays in the
        // customer's history), so a bare deletion changes nothing; it stays in the
        // raw log.
        return Ok(Vec::new());
    }
    let currency_code = non_empty(o.currency.as_deref())
        .ok_or_else(|| MapError::MissingField("currency".into()))?;
    let currency = currency_of("currency", &currency_code)?;
    let modified = gmt("date_modified_gmt", o.date_modified_gmt.as_deref())?;
    let created_at = gmt("date_created_gmt", o.date_created_gmt.as_deref())?
        .or(modified)
        .ok_or_else(|| MapError::MissingField("date_created_gmt".into()))?;
    let updated_at = modified.unwrap_or(created_at);
    let order_id = format!("{PROVIDER}:{}", o.id.0);

    let billing = o.billing.clone().unwrap_or_default();
    let country = non_empty(billing.country.as_deref()).or_else(|| {
        o.shipping
            .as_ref()
            .and_then(|s| non_empty(s.country.as_deref()))
    });
    let mut identity = Identity::default()
        .with_email(billing.email.as_deref())
        .with_phone(billing.phone.as_deref(), country.as_deref());
    if let Some(id) = &o.customer_id {
        // with_external ignores guest orders (`customer_id: 0`).
        identity = identity.with_external(PROVIDER, id.0.clone());
    }
    let billing_address = address(&billing);
    let shipping_address = o.shipping.as_ref().and_then(address);

    let mut events = Vec::new();
    if identity.email.is_some() {
        let customer = CustomerUpserted {
            identity: identity.clone(),
            first_name: non_empty(billing.first_name.as_deref()),
            last_name: non_empty(billing.last_name.as_deref()),
            addresses: billing_address.iter().chain(shipping_address.iter()).fold(
                Vec::new(),
                |mut acc, a| {
                    if !acc.contains(a) {
                        acc.push(a.clone());
                    }
                    acc
                },
            ),
            consent: Consent::default(),
            tags: Vec::new(),
            note: None,
            deleted: false,
            created_at: None,
            updated_at,
        };
        events.push(envelope(
            ctx,
            with_suffix(input.event_id, "customer"),
            updated_at,
            Event::CustomerUpserted(customer),
        ));
    }

    let mut line_items = Vec::new();
    let mut subtotal: Option<Money> = None;
    for l in &o.line_items {
        let line_subtotal = opt_money("line_items.subtotal", l.subtotal.as_ref(), currency)?;
        let line_total = opt_money("line_items.total", l.total.as_ref(), currency)?;
        let before_discount = line_subtotal
            .or(line_total)
            .unwrap_or_else(|| Money::zero(currency));
        subtotal = Some(match subtotal {
            Some(s) => s.checked_add(before_discount)?,
            None => before_discount,
        });
        line_items.push(LineItem {
            id: l.id.0.clone(),
            sku: non_empty(l.sku.as_deref()),
            title: non_empty(l.name.as_deref()).unwrap_or_default(),
            quantity: l.quantity,
            unit_price: unit_price(before_discount, l.quantity),
            total_discount: match (line_subtotal, line_total) {
                (Some(s), Some(t)) => Some(s.checked_sub(t)?),
                _ => None,
            },
        });
    }

    let total = opt_money("total", o.total.as_ref(), currency)?
        .ok_or_else(|| MapError::MissingField("total".into()))?;
    let payment_refs = match (
        non_empty(o.payment_method.as_deref()),
        non_empty(o.transaction_id.as_deref()),
    ) {
        (Some(method), Some(reference)) => vec![PaymentRef {
            provider: payment_provider(&method).to_string(),
            reference,
        }],
        _ => Vec::new(),
    };

    let order = OrderUpserted {
        order_id: order_id.clone(),
        number: non_empty(o.number.as_deref()),
        customer: identity,
        customer_name: full_name(billing.first_name.as_deref(), billing.last_name.as_deref()),
        status: order_status(o.status.as_deref().unwrap_or("")),
        // WooCommerce has one status for money and goods; it is `status` above.
        financial_status: None,
        fulfillment_status: None,
        totals: OrderTotals {
            total,
            subtotal,
            discounts: opt_money("discount_total", o.discount_total.as_ref(), currency)?,
            shipping: opt_money("shipping_total", o.shipping_total.as_ref(), currency)?,
            tax: opt_money("total_tax", o.total_tax.as_ref(), currency)?,
            presentment_total: None,
        },
        line_items,
        discount_codes: dedup_in_order(
            o.coupon_lines
                .iter()
                .filter_map(|c| non_empty(c.code.as_deref())),
        ),
        payment_refs,
        tracking_numbers: tracking_numbers(&o.meta_data),
        attribution: attribution(&o),
        cart_token: None,
        shipping_address,
        billing_address,
        note: non_empty(o.customer_note.as_deref()),
        tags: Vec::new(),
        test: false,
        created_at,
        updated_at,
        cancelled_at: None,
        cancel_reason: None,
        store_money: Some(store_money(&o, total)?),
    };
    events.push(envelope(
        ctx,
        input.event_id.to_string(),
        updated_at,
        Event::OrderUpserted(Box::new(order)),
    ));

    // The order lists its refunds without their dates; the snapshot's time is the
    // latest they can have happened. The refund id keeps them apart and the same
    // across snapshots.
    for r in &o.refunds {
        let amount = opt_money("refunds.total", r.total.as_ref(), currency)?
            .ok_or_else(|| MapError::MissingField("refunds.total".into()))?;
        events.push(envelope(
            ctx,
            with_suffix(input.event_id, &format!("refund:{}", r.id.0)),
            updated_at,
            Event::RefundIssued(Refund {
                provider: PROVIDER.to_string(),
                refund_id: r.id.0.clone(),
                payment_id: None,
                links: vec![OrderLink::Order {
                    order_id: order_id.clone(),
                }],
                // "-10.00" in the order's list: a refund of 10.00.
                amount: Money::new(amount.minor.abs(), amount.currency),
                status: RefundStatus::Succeeded,
                reason: non_empty(r.reason.as_deref()),
                lines: Vec::new(),
                adjustments: None,
                at: updated_at,
                created_at: None,
                gateway: None,
            }),
        ));
    }
    Ok(events)
}

/// The order's own account of the money it received, in the order currency (the
/// one the customer paid in; WooCommerce keeps no second currency).
///
/// WooCommerce never changes an order's `total` when it refunds: a refund is an
/// order of its own, listed in `refunds`, and the shop shows the total struck
/// through next to `total − refunded` (`WC_Order::get_formatted_order_total`).
/// So a paid order received its `total`, and its refunds come off once, in the
/// fold. Paid means:
///
/// - `processing`, `completed`: the statuses an order reaches when its payment
///   is complete (`wc_get_is_paid_statuses`); `refunded`: all of it went back,
///   so it had been received;
/// - else `date_paid_gmt` set, which WooCommerce sets once on payment and never
///   clears, unless the status is `failed`, `pending` or a draft (no money now):
///   a paid order put on hold or cancelled without a refund kept the money.
///
/// `on-hold` with a card payment only authorised: the Stripe gateway
/// (`_stripe_charge_captured` = `no`) and WooPayments (`_intention_status` =
/// `requires_capture`) put such orders on hold until the merchant captures;
/// then the total is held (`authorized`), nothing received. Anything else
/// received nothing.
fn store_money(o: &model::Order, total: Money) -> Result<StoreMoney, MapError> {
    let status = o.status.as_deref().map(str::trim).unwrap_or("");
    let zero = Money::zero(total.currency);
    let paid_date = gmt("date_paid_gmt", o.date_paid_gmt.as_deref())?;
    let meta = |key: &str| meta_str(&o.meta_data, key);
    let received = |basis: String| StoreMoney {
        received: total,
        authorized: None,
        outstanding: None,
        shop_received: None,
        basis,
    };
    let nothing = |authorized: Option<Money>, basis: String| StoreMoney {
        received: zero,
        authorized,
        outstanding: None,
        shop_received: None,
        basis,
    };
    if matches!(status, "processing" | "completed" | "refunded") {
        return Ok(received(format!("status:{status}")));
    }
    if status == "on-hold" {
        let authorised_only = if meta("_stripe_charge_captured").as_deref() == Some("no") {
            Some("_stripe_charge_captured=no")
        } else if meta("_intention_status").as_deref() == Some("requires_capture") {
            Some("_intention_status=requires_capture")
        } else {
            None
        };
        if let Some(evidence) = authorised_only {
            return Ok(nothing(Some(total), format!("status:on-hold, {evidence}")));
        }
    }
    let unpaid = matches!(
        status,
        "failed" | "pending" | "checkout-draft" | "draft" | "auto-draft"
    );
    if paid_date.is_some() && !unpaid {
        return Ok(received(format!("date_paid_gmt, status:{status}")));
    }
    Ok(nothing(None, format!("status:{status}")))
}

/// WooCommerce order statuses; unknown (plugin) statuses count as open.
pub(crate) fn order_status(status: &str) -> OrderStatus {
    match status {
        "pending" | "checkout-draft" | "draft" => OrderStatus::Pending,
        "processing" => OrderStatus::Open,
        "on-hold" => OrderStatus::OnHold,
        "completed" => OrderStatus::Completed,
        "cancelled" | "trash" => OrderStatus::Cancelled,
        "refunded" => OrderStatus::Refunded,
        "failed" => OrderStatus::Failed,
        _ => OrderStatus::Open,
    }
}

/// The payment provider behind a WooCommerce gateway id, so that payment provider
/// events find the order by its transaction id.
pub(crate) fn payment_provider(method: &str) -> &str {
    match method {
        // WooPayments runs on Stripe: its transaction ids are payment intents.
        "woocommerce_payments" | "stripe" => "stripe",
        m if m.starts_with("stripe_") || m.starts_with("woocommerce_payments_") => "stripe",
        "ppcp-gateway" | "ppcp" | "paypal" | "ppec_paypal" => "paypal",
        m if m.starts_with("ppcp-") => "paypal",
        m if m.starts_with("adyen") => "adyen",
        other => other,
    }
}

/// Order attribution (WooCommerce 8.5+) from `_wc_order_attribution_*` meta.
fn attribution(o: &model::Order) -> Attribution {
    let meta = |key: &str| meta_str(&o.meta_data, key);
    let landing_site = meta("_wc_order_attribution_session_entry");
    let from_url = landing_site
        .as_deref()
        .map(Utm::from_url)
        .unwrap_or_default();
    Attribution {
        referring_site: meta("_wc_order_attribution_referrer"),
        source_name: meta("_wc_order_attribution_source_type")
            .or_else(|| non_empty(o.created_via.as_deref())),
        utm: Utm {
            source: meta("_wc_order_attribution_utm_source").or(from_url.source),
            medium: meta("_wc_order_attribution_utm_medium").or(from_url.medium),
            campaign: meta("_wc_order_attribution_utm_campaign").or(from_url.campaign),
            term: meta("_wc_order_attribution_utm_term").or(from_url.term),
            content: meta("_wc_order_attribution_utm_content").or(from_url.content),
        },
        landing_site,
        note_attributes: Vec::new(),
    }
}

/// Tracking numbers the Shipment Tracking extension stores on the order.
fn tracking_numbers(meta: &[model::Meta]) -> Vec<String> {
    let items = meta
        .iter()
        .filter(|m| m.key == "_wc_shipment_tracking_items")
        .filter_map(|m| m.value.as_array())
        .flatten()
        .filter_map(|item| item.get("tracking_number")?.as_str())
        .filter_map(|n| non_empty(Some(n)));
    dedup_in_order(items)
}

fn meta_str(meta: &[model::Meta], key: &str) -> Option<String> {
    let m = meta.iter().find(|m| m.key == key)?;
    match &m.value {
        serde_json::Value::String(s) => non_empty(Some(s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// customer.created, customer.updated, customer.deleted.
pub(crate) fn customer(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let c: model::Customer = parse_json(input.body)?;
    let billing = c.billing.clone().unwrap_or_default();
    let created_at = gmt("date_created_gmt", c.date_created_gmt.as_deref())?;
    // A new customer has no modification date yet; a deleted one sends only its id.
    let updated_at = gmt("date_modified_gmt", c.date_modified_gmt.as_deref())?
        .or(created_at)
        .unwrap_or(input.received_at);
    let country = non_empty(billing.country.as_deref()).or_else(|| {
        c.shipping
            .as_ref()
            .and_then(|s| non_empty(s.country.as_deref()))
    });
    let identity = Identity::default()
        .with_email(c.email.as_deref().or(billing.email.as_deref()))
        .with_phone(billing.phone.as_deref(), country.as_deref())
        .with_external(PROVIDER, c.id.0.clone());
    let mut addresses = Vec::new();
    for a in [address(&billing), c.shipping.as_ref().and_then(address)]
        .into_iter()
        .flatten()
    {
        if !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    let customer = CustomerUpserted {
        identity,
        first_name: non_empty(c.first_name.as_deref())
            .or_else(|| non_empty(billing.first_name.as_deref())),
        last_name: non_empty(c.last_name.as_deref())
            .or_else(|| non_empty(billing.last_name.as_deref())),
        addresses,
        consent: Consent::default(),
        tags: Vec::new(),
        note: None,
        deleted: input.topic == "customer.deleted",
        created_at,
        updated_at,
    };
    Ok(vec![envelope(
        ctx,
        input.event_id.to_string(),
        updated_at,
        Event::CustomerUpserted(customer),
    )])
}

/// Maps a WooCommerce REST refund resource (`GET /wc/v3/orders/{id}/refunds/{id}`)
/// to a [`Refund`].
///
/// WooCommerce has no refund webhook: refunds reach storefold inside the order's
/// `refunds` list (read by the order mapping), which carries only id, reason and total. A
/// backfill that fetches refund resources gets the date and lines too, and
/// because the refund id is the same, the fold sees one refund either way. The
/// resource names no currency (it is the order's) and names its order only in
/// `_links.up`, so `order_id` may be passed when the caller knows it.
///
/// The resource does not name the gateway either, only whether WooCommerce had
/// the gateway send the money back (`refunded_payment`). When it did and the
/// caller passes the order's `payment_method`, that is the refund's gateway. A
/// refund only recorded in the shop names none: it may be money given back by
/// hand, or a refund made in the gateway's own dashboard and copied into the
/// shop by the gateway's plugin (the Stripe and PayPal plugins do that), so the
/// ledger counts it only beyond what the payment provider itself refunded.
pub fn map_refund_resource(
    ctx: &MapContext<'_>,
    event_id: &str,
    order_id: Option<&str>,
    currency: &str,
    payment_method: Option<&str>,
    body: &[u8],
) -> Result<Envelope, MapError> {
    let r: model::RefundResource = parse_json(body)?;
    let currency = currency_of("currency", currency)?;
    let order_id = match order_id {
        Some(id) => id.to_string(),
        None => r
            .links
            .up
            .iter()
            .find_map(|l| {
                let (_, last) = l.href.trim_end_matches('/').rsplit_once("/orders/")?;
                (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| last.to_string())
            })
            .ok_or_else(|| MapError::MissingField("_links.up".into()))?,
    };
    let at = gmt("date_created_gmt", r.date_created_gmt.as_deref())?
        .ok_or_else(|| MapError::MissingField("date_created_gmt".into()))?;
    let amount = opt_money("amount", r.amount.as_ref(), currency)?
        .ok_or_else(|| MapError::MissingField("amount".into()))?;
    let lines = r
        .line_items
        .iter()
        .map(|l| {
            let amount = opt_money("line_items.total", l.total.as_ref(), currency)?
                .map(|m| Money::new(m.minor.abs(), m.currency));
            Ok(RefundLine {
                // Refund lines are copies; `_refunded_item_id` names the order's line.
                line_item_id: meta_str(&l.meta_data, "_refunded_item_id")
                    .unwrap_or_else(|| l.id.0.clone()),
                quantity: l.quantity.abs(),
                amount,
                restock: false,
            })
        })
        .collect::<Result<Vec<_>, MapError>>()?;
    Ok(envelope(
        ctx,
        event_id.to_string(),
        at,
        Event::RefundIssued(Refund {
            provider: PROVIDER.to_string(),
            refund_id: r.id.0,
            payment_id: None,
            links: vec![OrderLink::Order {
                order_id: format!("{PROVIDER}:{order_id}"),
            }],
            amount: Money::new(amount.minor.abs(), amount.currency),
            status: RefundStatus::Succeeded,
            reason: non_empty(r.reason.as_deref()),
            lines,
            adjustments: None,
            at,
            created_at: Some(at),
            gateway: match r.refunded_payment {
                Some(true) => non_empty(payment_method),
                _ => None,
            },
        }),
    ))
}

/// Unit price from a line's pre-discount subtotal: WooCommerce's own `price` is
/// a float (`subtotal / quantity` in PHP), so it is recomputed here exactly,
/// rounded half away from zero to the currency's minor unit.
fn unit_price(subtotal: Money, quantity: i64) -> Money {
    if quantity <= 0 {
        return subtotal;
    }
    let q = subtotal.minor / quantity;
    let r = subtotal.minor % quantity;
    let round = if 2 * r.abs() >= quantity {
        r.signum()
    } else {
        0
    };
    Money::new(q + round, subtotal.currency)
}

/// The Cost of Goods plugin's meta key for a product's or variation's unit
/// cost: a decimal string in the shop's currency (WooCommerce itself has no
/// cost field).
pub(crate) const COST_META_KEY: &str = "_wc_cog_cost";

/// product.created, product.updated: the product's (or variation's) stock and,
/// when the Cost of Goods plugin set one, its unit cost in the tenant's
/// `cost_currency`, from `date_modified_gmt` on.
///
/// A product without a SKU maps to nothing: order lines find their costs and
/// stock by SKU. Nor do grouped and external products, which are never an
/// order line of the shop (a group's children are; an external product is
/// sold elsewhere).
pub(crate) fn product(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let p: model::Product = parse_json(input.body)?;
    let Some(sku) = non_empty(p.sku.as_deref()) else {
        return Ok(Vec::new());
    };
    if matches!(p.kind.as_deref(), Some("grouped" | "external")) {
        return Ok(Vec::new());
    }
    let field = format!("meta_data.{COST_META_KEY}");
    let cost_text = match p.meta_data.iter().find(|m| m.key == COST_META_KEY) {
        None => None,
        Some(m) => match &m.value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => non_empty(Some(s)),
            // WordPress keeps meta as text; a number written by an import is
            // read as its JSON literal.
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => {
                return Err(MapError::InvalidField {
                    field,
                    reason: "expected a decimal string".into(),
                });
            }
        },
    };
    let unit_cost = match cost_text {
        Some(text) => Some(crate::unit_cost(
            &field,
            &text,
            ctx.cost_currency(&field)?,
        )?),
        None => None,
    };
    let at = gmt("date_modified_gmt", p.date_modified_gmt.as_deref())?
        .or(gmt("date_created_gmt", p.date_created_gmt.as_deref())?)
        .unwrap_or(input.received_at);
    // A shop that does not manage the product's stock still says when it is
    // out of stock: nothing is available then.
    let available = p.stock_quantity.or_else(|| {
        (non_empty(p.stock_status.as_deref()).as_deref() == Some("outofstock")).then_some(0)
    });
    let event = InventoryUpdated {
        sku,
        item_id: Some(p.id.0),
        unit_cost,
        available,
        backorder: non_empty(p.backorders.as_deref()).map(|b| b != "no"),
        eta: None,
        at,
    };
    Ok(vec![envelope(
        ctx,
        input.event_id.to_string(),
        at,
        Event::InventoryUpdated(event),
    )])
}

/// `*_gmt` dates: `2017-03-22T19:28:02`, UTC without an offset. An RFC 3339 value
/// (with an offset) is accepted too.
pub(crate) fn gmt(field: &str, s: Option<&str>) -> Result<Option<OffsetDateTime>, MapError> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(Some(t));
    }
    let t = PrimitiveDateTime::parse(
        s,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .or_else(|_| {
        PrimitiveDateTime::parse(
            s,
            format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        )
    })
    .map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Some(t.assume_utc()))
}

fn opt_money(
    field: &str,
    a: Option<&model::Amount>,
    currency: Currency,
) -> Result<Option<Money>, MapError> {
    match a.filter(|a| !a.0.is_empty()) {
        Some(a) => Money::parse(&a.0, currency)
            .map(Some)
            .map_err(|e| MapError::InvalidField {
                field: field.to_string(),
                reason: crate::money_reason(&e),
            }),
        None => Ok(None),
    }
}

fn address(a: &model::Address) -> Option<Address> {
    let out = Address {
        name: full_name(a.first_name.as_deref(), a.last_name.as_deref()),
        company: non_empty(a.company.as_deref()),
        line1: non_empty(a.address_1.as_deref()),
        line2: non_empty(a.address_2.as_deref()),
        city: non_empty(a.city.as_deref()),
        region: non_empty(a.state.as_deref()),
        postal_code: non_empty(a.postcode.as_deref()),
        country: non_empty(a.country.as_deref()).map(|c| c.to_ascii_uppercase()),
        phone: non_empty(a.phone.as_deref()),
    };
    (out != Address::default()).then_some(out)
}
