//! Shopify payloads to canonical events.

use std::collections::BTreeSet;

use storefold_core::event::{
    Address, Attribution, Checkpoint, Consent, CustomerRedacted, CustomerUpserted, InventoryUpdated,
    LineItem,
    OrderLink, OrderStatus, OrderTotals, OrderUpserted, Payment, PaymentStatus, ReasonCode, Refund,
    RefundLine, RefundStatus, Return, ReturnResolution, Shipment, ShipmentStatus, StoreMoney,
    Touch, Utm,
};
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::OffsetDateTime;

use super::model;
use crate::{
    MapContext, MapError, RawInput, currency_of, dedup_in_order, full_name, non_empty, parse_json,
    parse_time,
};

const PROVIDER: &str = "shopify";

/// Builds envelopes for one raw event.
struct Out<'a> {
    ctx: &'a MapContext<'a>,
    input: &'a RawInput<'a>,
}

impl Out<'_> {
    /// One webhook can yield several events; each gets a stable suffix.
    fn envelope(&self, suffix: Option<&str>, at: OffsetDateTime, event: Event) -> Envelope {
        let event_id = match suffix {
            Some(s) => format!("{}#{s}", self.input.event_id),
            None => self.input.event_id.to_string(),
        };
        Envelope {
            tenant: self.ctx.tenant.to_string(),
            provider: PROVIDER.to_string(),
            event_id,
            occurred_at: at,
            event,
        }
    }

    /// When Shopify says the webhook was triggered, else when it was received:
    /// for payloads that carry no time of their own (deletions, redactions).
    fn fallback_time(&self) -> OffsetDateTime {
        self.input
            .headers
            .get("x-shopify-triggered-at")
            .and_then(|t| parse_time("X-Shopify-Triggered-At", t.trim()).ok())
            .unwrap_or(self.input.received_at)
    }
}

/// orders/create, orders/updated, orders/paid, orders/cancelled, orders/fulfilled,
/// orders/partially_fulfilled: the customer (when there is one), the order
/// snapshot with the store's account of its money, and one refund (and the return
/// it settles) per entry of the snapshot's `refunds`.
pub(crate) fn order(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let o: model::Order = parse_json(input.body)?;
    let currency = order_currency(&o)?;
    let presentment = presentment_currency(&o, currency)?;
    let updated_at = opt_time("updated_at", o.updated_at.as_deref())?;
    let created_at = opt_time("created_at", o.created_at.as_deref())?;
    let processed_at = opt_time("processed_at", o.processed_at.as_deref())?;
    let created_at = created_at
        .or(processed_at)
        .or(updated_at)
        .ok_or_else(|| MapError::MissingField("created_at".into()))?;
    let updated_at = updated_at.unwrap_or(created_at);

    let country = o
        .shipping_address
        .as_ref()
        .and_then(|a| non_empty(a.country_code.as_deref()))
        .or_else(|| {
            o.billing_address
                .as_ref()
                .and_then(|a| non_empty(a.country_code.as_deref()))
        })
        .or_else(|| {
            o.customer
                .as_ref()
                .and_then(|c| c.default_address.as_ref())
                .and_then(|a| non_empty(a.country_code.as_deref()))
        });
    let email = first_non_empty([
        o.email.as_deref(),
        o.contact_email.as_deref(),
        o.customer.as_ref().and_then(|c| c.email.as_deref()),
    ]);
    let phone = first_non_empty([
        o.phone.as_deref(),
        o.customer.as_ref().and_then(|c| c.phone.as_deref()),
        o.billing_address.as_ref().and_then(|a| a.phone.as_deref()),
    ]);
    let mut identity = Identity::default()
        .with_email(email.as_deref())
        .with_phone(phone.as_deref(), country.as_deref());
    if let Some(c) = &o.customer {
        identity = identity.with_external(PROVIDER, c.id.0.clone());
    }

    let mut events = Vec::new();
    if let Some(c) = &o.customer {
        let customer = customer_upserted(
            c,
            email.as_deref(),
            phone.as_deref(),
            o.buyer_accepts_marketing,
            updated_at,
        )?;
        let at = customer.updated_at;
        events.push(out.envelope(Some("customer"), at, Event::CustomerUpserted(customer)));
    }

    let customer_name = o
        .customer
        .as_ref()
        .and_then(|c| full_name(c.first_name.as_deref(), c.last_name.as_deref()))
        .or_else(|| o.billing_address.as_ref().and_then(address_name));

    let order = OrderUpserted {
        order_id: format!("{PROVIDER}:{}", o.id.0),
        number: non_empty(o.name.as_deref()),
        customer: identity,
        customer_name,
        status: order_status(&o),
        financial_status: non_empty(o.financial_status.as_deref()),
        fulfillment_status: non_empty(o.fulfillment_status.as_deref()),
        totals: order_totals(&o, currency)?,
        line_items: o
            .line_items
            .iter()
            .map(|l| line_item(l, currency))
            .collect::<Result<_, _>>()?,
        discount_codes: dedup_in_order(
            o.discount_codes
                .iter()
                .filter_map(|d| non_empty(d.code.as_deref())),
        ),
        // Shopify order webhooks carry no payment provider references (Stripe
        // intents, PayPal captures); payments link through order metadata instead.
        payment_refs: Vec::new(),
        tracking_numbers: dedup_in_order(
            o.fulfillments
                .iter()
                .filter(|f| f.status.as_deref() != Some("cancelled"))
                .flat_map(tracking_numbers),
        ),
        attribution: attribution(&o),
        cart_token: non_empty(o.cart_token.as_deref()),
        shipping_address: o.shipping_address.as_ref().and_then(address),
        billing_address: o.billing_address.as_ref().and_then(address),
        note: non_empty(o.note.as_deref()),
        tags: split_tags(o.tags.as_deref()),
        test: o.test.unwrap_or(false),
        created_at,
        updated_at,
        cancelled_at: opt_time("cancelled_at", o.cancelled_at.as_deref())?,
        cancel_reason: non_empty(o.cancel_reason.as_deref()),
        store_money: store_money(&o, currency, presentment)?,
    };
    events.push(out.envelope(None, updated_at, Event::OrderUpserted(Box::new(order))));

    // The refunds the snapshot lists, like refunds/create reports them: the same
    // refund id from either source is one refund in the fold, so a missed
    // refunds/create delivery is made good by the next order snapshot.
    for r in &o.refunds {
        let suffix = format!("refund:{}", r.id.0);
        events.extend(refund_events(
            &out,
            r,
            &o.id,
            Some(presentment),
            updated_at,
            Some(&suffix),
        )?);
    }
    Ok(events)
}

/// The currency the customer saw and paid in: `presentment_currency`, else the
/// presentment side of the total's money bag, else (payloads from before
/// multi-currency selling) the shop currency.
fn presentment_currency(o: &model::Order, shop: Currency) -> Result<Currency, MapError> {
    let code = non_empty(o.presentment_currency.as_deref()).or_else(|| {
        [&o.current_total_price_set, &o.total_price_set]
            .into_iter()
            .flatten()
            .find_map(|s| {
                s.presentment_money
                    .as_ref()
                    .map(|m| m.currency_code.clone())
            })
    });
    match code {
        Some(code) => currency_of("presentment_currency", &code),
        None => Ok(shop),
    }
}

/// `total_outstanding` (shop currency) in the presentment currency.
enum Outstanding {
    /// The payload has no `total_outstanding` (REST payloads before it existed).
    Absent,
    /// In the presentment currency, and the same amount in the shop currency.
    Known {
        presentment: Money,
        shop: Money,
        /// Converted at the order's own shop/presentment ratio (inexact by up
        /// to half a minor unit), not the same currency and not zero.
        converted: bool,
    },
    /// Not zero, in another currency, and no money bag gives the order's ratio.
    Unconvertible,
}

impl Outstanding {
    fn presentment(&self) -> Option<Money> {
        match self {
            Outstanding::Known { presentment, .. } => Some(*presentment),
            _ => None,
        }
    }
}

/// Shopify reports `total_outstanding` in the shop currency only. Zero needs no
/// conversion and the same currency none either; otherwise it is converted at
/// the ratio Shopify itself used for this order, the presentment over the shop
/// side of `current_total_price_set` (else `total_price_set`), rounded half away
/// from zero to the presentment currency's minor unit.
fn outstanding(
    o: &model::Order,
    shop: Currency,
    presentment: Currency,
) -> Result<Outstanding, MapError> {
    let Some(raw) = o.total_outstanding.as_ref().filter(|a| !a.0.is_empty()) else {
        return Ok(Outstanding::Absent);
    };
    let in_shop = money_in("total_outstanding", raw, shop)?;
    if presentment == shop {
        return Ok(Outstanding::Known {
            presentment: in_shop,
            shop: in_shop,
            converted: false,
        });
    }
    if in_shop.minor == 0 {
        return Ok(Outstanding::Known {
            presentment: Money::zero(presentment),
            shop: in_shop,
            converted: false,
        });
    }
    let mut ratio = None;
    for set in [&o.current_total_price_set, &o.total_price_set]
        .into_iter()
        .flatten()
    {
        let (Some(s), Some(p)) = (&set.shop_money, &set.presentment_money) else {
            continue;
        };
        let s = crate::money("total_price_set.shop_money", &s.amount.0, &s.currency_code)?;
        let p = crate::money(
            "total_price_set.presentment_money",
            &p.amount.0,
            &p.currency_code,
        )?;
        if s.currency == shop && p.currency == presentment && s.minor != 0 {
            ratio = Some((p.minor, s.minor));
            break;
        }
    }
    let Some((p, s)) = ratio else {
        return Ok(Outstanding::Unconvertible);
    };
    let minor = div_round_half_away(i128::from(in_shop.minor) * i128::from(p), i128::from(s));
    let minor = i64::try_from(minor).map_err(|_| MapError::InvalidField {
        field: "total_outstanding".into(),
        reason: "out of range once converted to the presentment currency".into(),
    })?;
    Ok(Outstanding::Known {
        presentment: Money::new(minor, presentment),
        shop: in_shop,
        converted: true,
    })
}

/// `n / d` rounded half away from zero (`d` is never zero here).
fn div_round_half_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    let r = n % d;
    if 2 * r.abs() >= d.abs() {
        q + n.signum() * d.signum()
    } else {
        q
    }
}

/// Σ of the successful refund transactions of the snapshot's own `refunds`, in
/// the presentment currency (Shopify refunds in the presentment currency; a
/// transaction without `currency` is taken to be in it). `None` when one is in
/// another currency: the sum could not be exact.
fn refunded_in(o: &model::Order, presentment: Currency) -> Result<Option<Money>, MapError> {
    let mut sum = Money::zero(presentment);
    for t in o.refunds.iter().flat_map(|r| &r.transactions) {
        if t.kind.as_deref() != Some("refund") || t.status.as_deref() != Some("success") {
            continue;
        }
        let Some(a) = t.amount.as_ref().filter(|a| !a.0.is_empty()) else {
            continue;
        };
        let m = match non_empty(t.currency.as_deref()) {
            Some(code) => crate::money("refunds.transactions.amount", &a.0, &code)?,
            None => money_in("refunds.transactions.amount", a, presentment)?,
        };
        if m.currency != presentment {
            return Ok(None);
        }
        sum = sum.checked_add(m)?;
    }
    Ok(Some(sum))
}

/// The snapshot's own account of the money the shop received for the order, in
/// the presentment currency (docs/books.md: counted only when no payment
/// provider reports the order's payments). Every figure comes from this one
/// snapshot, so they agree with each other:
///
/// - `authorized`: nothing received; the current total (else the total) is held.
///   `pending`, `voided`, `expired`: nothing received.
/// - with `current_total_price` and `total_outstanding` (newer payloads):
///   received = current total + Σ successful refund transactions of the snapshot's
///   `refunds` − outstanding. `current_total_price` already has edits, refunds
///   and returns taken into account, and the outstanding amount is what is not
///   yet transacted (positive: owed by the customer, negative: owed to them),
///   that is the current total less what was received net of refunds; so this
///   gives back what the customer paid before refunds, and refunds come off
///   once, in the fold.
/// - without them (older payloads): `paid`, `partially_refunded`, `refunded`
///   received `total_price`, what the checkout charged. `partially_paid` says
///   that some money came but not how much: no account (`None`).
fn store_money(
    o: &model::Order,
    shop: Currency,
    presentment: Currency,
) -> Result<Option<StoreMoney>, MapError> {
    let financial = o.financial_status.as_deref().map(str::trim).unwrap_or("");
    let current = amount_in(
        "current_total_price",
        o.current_total_price.as_ref(),
        o.current_total_price_set.as_ref(),
        presentment,
        shop,
    )?;
    let original = amount_in(
        "total_price",
        o.total_price.as_ref(),
        o.total_price_set.as_ref(),
        presentment,
        shop,
    )?;
    let outstanding = outstanding(o, shop, presentment)?;
    let multi_currency = presentment != shop;
    // `received` in the shop currency, when the payload gives it without a rate.
    let shop_side = |m: Option<Money>| m.filter(|_| multi_currency);
    let nothing_received = |authorized: Option<Money>| StoreMoney {
        received: Money::zero(presentment),
        authorized,
        outstanding: outstanding.presentment(),
        shop_received: shop_side(Some(Money::zero(shop))),
        basis: format!("financial_status:{financial}"),
    };
    match financial {
        "authorized" => {
            let held = current.or(original);
            return Ok(held.map(|h| nothing_received(Some(h))));
        }
        "pending" | "voided" | "expired" => return Ok(Some(nothing_received(None))),
        _ => {}
    }
    if let (
        Some(current),
        Outstanding::Known {
            presentment: owed,
            shop: owed_in_shop,
            converted,
        },
    ) = (current, &outstanding)
    {
        let Some(refunded) = refunded_in(o, presentment)? else {
            return Ok(None);
        };
        let received = current.checked_add(refunded)?.checked_sub(*owed)?;
        // The refund transactions carry no shop-currency amount: the shop side is
        // exact only while nothing was refunded.
        let current_in_shop = amount_in(
            "current_total_price",
            o.current_total_price.as_ref(),
            o.current_total_price_set.as_ref(),
            shop,
            shop,
        )?;
        let shop_received = match current_in_shop {
            Some(c) if refunded.minor == 0 => shop_side(Some(c.checked_sub(*owed_in_shop)?)),
            _ => None,
        };
        return Ok(Some(StoreMoney {
            received,
            authorized: None,
            outstanding: Some(*owed),
            shop_received,
            basis: if *converted {
                "current_total+refunds-outstanding, outstanding converted at the order's own rate"
                    .to_string()
            } else {
                "current_total+refunds-outstanding".to_string()
            },
        }));
    }
    match (financial, original) {
        ("paid" | "partially_refunded" | "refunded", Some(total)) => {
            let total_in_shop = amount_in(
                "total_price",
                o.total_price.as_ref(),
                o.total_price_set.as_ref(),
                shop,
                shop,
            )?;
            Ok(Some(StoreMoney {
                received: total,
                authorized: None,
                outstanding: None,
                shop_received: shop_side(total_in_shop),
                basis: format!("financial_status:{financial}, total_price"),
            }))
        }
        // partially_paid without `total_outstanding`: some money came, the payload
        // does not say how much. Unknown statuses say nothing either.
        _ => Ok(None),
    }
}

/// The shop currency of an order: `currency`, else the shop side of a money bag.
fn order_currency(o: &model::Order) -> Result<Currency, MapError> {
    let code = non_empty(o.currency.as_deref())
        .or_else(|| {
            [&o.current_total_price_set, &o.total_price_set]
                .into_iter()
                .flatten()
                .find_map(|s| s.shop_money.as_ref().map(|m| m.currency_code.clone()))
        })
        .ok_or_else(|| MapError::MissingField("currency".into()))?;
    currency_of("currency", &code)
}

fn order_status(o: &model::Order) -> OrderStatus {
    let financial = o.financial_status.as_deref().unwrap_or("");
    if o.cancelled_at.as_deref().is_some_and(|s| !s.is_empty()) {
        return OrderStatus::Cancelled;
    }
    match financial {
        "refunded" => return OrderStatus::Refunded,
        // A voided authorisation: the order will never be paid.
        "voided" => return OrderStatus::Cancelled,
        "expired" => return OrderStatus::Failed,
        _ => {}
    }
    if o.fulfillment_status.as_deref() == Some("fulfilled")
        || o.closed_at.as_deref().is_some_and(|s| !s.is_empty())
    {
        return OrderStatus::Completed;
    }
    if financial == "pending" {
        return OrderStatus::Pending;
    }
    // authorized, paid, partially_paid, partially_refunded, unfulfilled or partial.
    OrderStatus::Open
}

fn order_totals(o: &model::Order, currency: Currency) -> Result<OrderTotals, MapError> {
    // `current_*` figures include later edits, refunds and removals; the
    // original ones are what the order was placed with.
    let (total_field, total_rest, total_set) =
        if o.current_total_price.is_some() || o.current_total_price_set.is_some() {
            (
                "current_total_price",
                o.current_total_price.as_ref(),
                o.current_total_price_set.as_ref(),
            )
        } else {
            (
                "total_price",
                o.total_price.as_ref(),
                o.total_price_set.as_ref(),
            )
        };
    let total = money_of(total_field, total_rest, total_set, currency)?
        .ok_or_else(|| MapError::MissingField("total_price".into()))?;
    let presentment_total = match total_set.and_then(|s| s.presentment_money.as_ref()) {
        Some(p) => {
            let m = crate::money(total_field, &p.amount.0, &p.currency_code)?;
            (m.currency != total.currency).then_some(m)
        }
        None => None,
    };
    let subtotal = first_money(
        "subtotal_price",
        [
            (
                o.current_subtotal_price.as_ref(),
                o.current_subtotal_price_set.as_ref(),
            ),
            (o.subtotal_price.as_ref(), o.subtotal_price_set.as_ref()),
        ],
        currency,
    )?;
    let discounts = first_money(
        "total_discounts",
        [
            (
                o.current_total_discounts.as_ref(),
                o.current_total_discounts_set.as_ref(),
            ),
            (o.total_discounts.as_ref(), o.total_discounts_set.as_ref()),
        ],
        currency,
    )?;
    let tax = first_money(
        "total_tax",
        [
            (
                o.current_total_tax.as_ref(),
                o.current_total_tax_set.as_ref(),
            ),
            (o.total_tax.as_ref(), o.total_tax_set.as_ref()),
        ],
        currency,
    )?;
    let shipping = match money_of(
        "total_shipping_price_set",
        None,
        o.total_shipping_price_set.as_ref(),
        currency,
    )? {
        Some(m) => Some(m),
        None if o.shipping_lines.is_empty() => None,
        None => {
            let mut sum = Money::zero(currency);
            for l in &o.shipping_lines {
                if let Some(m) = money_of(
                    "shipping_lines.price",
                    l.price.as_ref(),
                    l.price_set.as_ref(),
                    currency,
                )? {
                    sum = sum.checked_add(m)?;
                }
            }
            Some(sum)
        }
    };
    Ok(OrderTotals {
        total,
        subtotal,
        discounts,
        shipping,
        tax,
        presentment_total,
    })
}

fn line_item(l: &model::LineItem, currency: Currency) -> Result<LineItem, MapError> {
    let unit_price = money_of(
        "line_items.price",
        l.price.as_ref(),
        l.price_set.as_ref(),
        currency,
    )?
    .unwrap_or_else(|| Money::zero(currency));
    Ok(LineItem {
        id: l.id.0.clone(),
        sku: non_empty(l.sku.as_deref()),
        title: non_empty(l.title.as_deref())
            .or_else(|| non_empty(l.name.as_deref()))
            .unwrap_or_default(),
        quantity: l.quantity,
        unit_price,
        total_discount: money_of(
            "line_items.total_discount",
            l.total_discount.as_ref(),
            l.total_discount_set.as_ref(),
            currency,
        )?,
    })
}

fn attribution(o: &model::Order) -> Attribution {
    let landing_site = non_empty(o.landing_site.as_deref());
    let note_attributes: Vec<(String, String)> = o
        .note_attributes
        .iter()
        .filter_map(|a| {
            let name = non_empty(a.name.as_deref())?;
            let value = match &a.value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            Some((name, value))
        })
        .collect();
    let mut utm = landing_site
        .as_deref()
        .map(Utm::from_url)
        .unwrap_or_default();
    // Headless storefronts and attribution apps record the campaign in note
    // attributes (`utm_source` = ...) instead of the landing URL; the URL wins.
    for (name, value) in &note_attributes {
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        if slot.is_none() {
            *slot = non_empty(Some(value));
        }
    }
    Attribution {
        landing_site,
        referring_site: non_empty(o.referring_site.as_deref()),
        source_name: non_empty(o.source_name.as_deref()),
        utm,
        note_attributes,
    }
}

/// A Shopify customer record as a profile fragment. `email`/`phone` are the
/// order's when the customer object lacks them (protected customer data).
fn customer_upserted(
    c: &model::Customer,
    email: Option<&str>,
    phone: Option<&str>,
    accepts_marketing: Option<bool>,
    fallback_updated_at: OffsetDateTime,
) -> Result<CustomerUpserted, MapError> {
    let country = c
        .default_address
        .as_ref()
        .and_then(|a| non_empty(a.country_code.as_deref()))
        .or_else(|| {
            c.addresses
                .iter()
                .find_map(|a| non_empty(a.country_code.as_deref()))
        });
    let email = first_non_empty([c.email.as_deref(), email]);
    let phone = first_non_empty([c.phone.as_deref(), phone]);
    let identity = Identity::default()
        .with_email(email.as_deref())
        .with_phone(phone.as_deref(), country.as_deref())
        .with_external(PROVIDER, c.id.0.clone());
    let mut addresses: Vec<Address> = Vec::new();
    let listed = if c.addresses.is_empty() {
        c.default_address.iter().collect::<Vec<_>>()
    } else {
        c.addresses.iter().collect()
    };
    for a in listed.into_iter().filter_map(address) {
        if !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    let created_at = opt_time("customer.created_at", c.created_at.as_deref())?;
    let updated_at =
        opt_time("customer.updated_at", c.updated_at.as_deref())?.unwrap_or(fallback_updated_at);
    Ok(CustomerUpserted {
        identity,
        first_name: non_empty(c.first_name.as_deref()),
        last_name: non_empty(c.last_name.as_deref()),
        addresses,
        consent: Consent {
            email_marketing: consent_state(c.email_marketing_consent.as_ref())
                .or(c.accepts_marketing)
                .or(accepts_marketing),
            sms_marketing: consent_state(c.sms_marketing_consent.as_ref()),
        },
        tags: split_tags(c.tags.as_deref()),
        note: non_empty(c.note.as_deref()),
        deleted: false,
        created_at,
        updated_at,
    })
}

/// `subscribed` is consent; `not_subscribed`, `unsubscribed` and `pending`
/// (double opt-in not confirmed yet) are not; `redacted`/`invalid` say nothing.
fn consent_state(c: Option<&model::MarketingConsent>) -> Option<bool> {
    match c?.state.as_deref()? {
        "subscribed" => Some(true),
        "not_subscribed" | "unsubscribed" | "pending" => Some(false),
        _ => None,
    }
}

/// customers/create, customers/update.
pub(crate) fn customer(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let c: model::Customer = parse_json(input.body)?;
    let customer = customer_upserted(&c, None, None, None, out.fallback_time())?;
    Ok(vec![out.envelope(
        None,
        customer.updated_at,
        Event::CustomerUpserted(customer),
    )])
}

/// customers/delete: the payload names only the customer id.
pub(crate) fn customer_deleted(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let c: model::DeletedCustomer = parse_json(input.body)?;
    let updated_at =
        opt_time("updated_at", c.updated_at.as_deref())?.unwrap_or_else(|| out.fallback_time());
    let customer = CustomerUpserted {
        identity: Identity::default().with_external(PROVIDER, c.id.0),
        first_name: None,
        last_name: None,
        addresses: Vec::new(),
        consent: Consent::default(),
        tags: Vec::new(),
        note: None,
        deleted: true,
        created_at: None,
        updated_at,
    };
    Ok(vec![out.envelope(
        None,
        updated_at,
        Event::CustomerUpserted(customer),
    )])
}

/// refunds/create: the refund, and the return it settles when goods came back.
pub(crate) fn refund(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let r: model::Refund = parse_json(input.body)?;
    let order_id = r
        .order_id
        .clone()
        .ok_or_else(|| MapError::MissingField("order_id".into()))?;
    refund_events(&out, &r, &order_id, None, out.fallback_time(), None)
}

/// One refund (a refunds/create body or an entry of an order's `refunds`) as a
/// [`Refund`], plus the return it settles when goods came back. The amount is
/// the sum of its successful refund transactions, in their currency (Shopify
/// refunds in the presentment currency); lines and adjustments are given in the
/// same currency, from their money bags.
///
/// `suffix` names the events of an order snapshot's refunds (`refund:<id>`);
/// refunds/create has one refund and needs none. `presentment` is the order's
/// currency when known, for refunds whose transactions name none.
fn refund_events(
    out: &Out<'_>,
    r: &model::Refund,
    order_id: &model::Id,
    presentment: Option<Currency>,
    fallback_at: OffsetDateTime,
    suffix: Option<&str>,
) -> Result<Vec<Envelope>, MapError> {
    let currency = refund_currency(r, presentment)?;
    let created_at = match opt_time("created_at", r.created_at.as_deref())? {
        Some(t) => Some(t),
        None => opt_time("processed_at", r.processed_at.as_deref())?,
    };
    let at = created_at.unwrap_or(fallback_at);

    let refunds: Vec<&model::Transaction> = r
        .transactions
        .iter()
        .filter(|t| t.kind.as_deref() == Some("refund"))
        .collect();
    let succeeded: Vec<&model::Transaction> = refunds
        .iter()
        .copied()
        .filter(|t| t.status.as_deref() == Some("success"))
        .collect();
    let mut amount = Money::zero(currency);
    for t in &succeeded {
        let m = match (&t.amount, non_empty(t.currency.as_deref())) {
            (Some(a), Some(code)) => crate::money("transactions.amount", &a.0, &code)?,
            (Some(a), None) => money_in("transactions.amount", a, currency)?,
            (None, _) => continue,
        };
        amount = amount.checked_add(m)?;
    }
    let has = |s: &str| refunds.iter().any(|t| t.status.as_deref() == Some(s));
    let status = if has("success") {
        RefundStatus::Succeeded
    } else if has("pending") {
        RefundStatus::Pending
    } else if has("failure") || has("error") {
        RefundStatus::Failed
    } else {
        // No money moved (a restock-only refund): nothing is outstanding.
        RefundStatus::Succeeded
    };
    // The gateway that moved the money: that of the successful refund
    // transactions (else of any). A refund split over several gateways (part to
    // a gift card, part to the card) names none: the ledger then counts it only
    // beyond what the payment provider refunded, which is the gift card part.
    let considered = if succeeded.is_empty() {
        &refunds
    } else {
        &succeeded
    };
    let gateways: BTreeSet<String> = considered
        .iter()
        .filter_map(|t| non_empty(t.gateway.as_deref()))
        .collect();
    let gateway = match gateways.len() {
        1 => gateways.into_iter().next(),
        _ => None,
    };

    let mut lines = Vec::new();
    let mut returned = Vec::new();
    for l in &r.refund_line_items {
        let line_item_id = l
            .line_item_id
            .as_ref()
            .or(l.line_item.as_ref().map(|li| &li.id))
            .map(|id| id.0.clone())
            .ok_or_else(|| MapError::MissingField("refund_line_items.line_item_id".into()))?;
        let restock = match l.restock_type.as_deref() {
            Some("no_restock") => false,
            Some(_) => true,
            None => r.restock.unwrap_or(false),
        };
        if l.restock_type.as_deref() == Some("return") {
            returned.push(line_item_id.clone());
        }
        lines.push(RefundLine {
            line_item_id,
            quantity: l.quantity,
            amount: money_in_currency(
                "refund_line_items.subtotal",
                l.subtotal.as_ref(),
                l.subtotal_set.as_ref(),
                currency,
            )?,
            restock,
        });
    }

    // Shopify records shipping refunds and discrepancies as negative adjustments
    // of the order; as part of the refund they count positive. Unknown when one
    // of them has no amount in the refund's currency.
    let mut adjustments = None;
    if !r.order_adjustments.is_empty() {
        let mut sum = Some(Money::zero(currency));
        for a in &r.order_adjustments {
            let m = money_in_currency(
                "order_adjustments.amount",
                a.amount.as_ref(),
                a.amount_set.as_ref(),
                currency,
            )?;
            sum = match (sum, m) {
                (Some(s), Some(m)) => Some(s.checked_sub(m)?),
                _ => None,
            };
        }
        adjustments = sum;
    }

    let links = vec![OrderLink::Order {
        order_id: format!("{PROVIDER}:{}", order_id.0),
    }];
    let note = non_empty(r.note.as_deref());
    let mut events = vec![out.envelope(
        suffix,
        at,
        Event::RefundIssued(Refund {
            provider: PROVIDER.to_string(),
            refund_id: r.id.0.clone(),
            payment_id: None,
            links: links.clone(),
            amount,
            status,
            reason: note.clone(),
            lines,
            adjustments,
            at,
            created_at,
            gateway,
        }),
    )];
    if !returned.is_empty() {
        let return_suffix = match suffix {
            Some(s) => format!("{s}:return"),
            None => "return".to_string(),
        };
        events.push(
            out.envelope(
                Some(&return_suffix),
                at,
                Event::ReturnResolved(Return {
                    provider: PROVIDER.to_string(),
                    return_id: format!("refund:{}", r.id.0),
                    links,
                    reason: note
                        .as_deref()
                        .map(reason_from_note)
                        .unwrap_or(ReasonCode::Other),
                    resolution: Some(ReturnResolution::Refund),
                    line_item_ids: returned,
                    note,
                    at,
                }),
            ),
        );
    }
    Ok(events)
}

/// The currency a refund is in: its transactions' (Shopify refunds in the
/// presentment currency), else the order's presentment currency when the caller
/// knows it, else the presentment side of its lines' or adjustments' money bags
/// (the shop side when there is no other).
fn refund_currency(r: &model::Refund, presentment: Option<Currency>) -> Result<Currency, MapError> {
    if let Some(code) = r
        .transactions
        .iter()
        .find_map(|t| non_empty(t.currency.as_deref()))
    {
        return currency_of("transactions.currency", &code);
    }
    if let Some(c) = presentment {
        return Ok(c);
    }
    let bags: Vec<&model::MoneySet> = r
        .refund_line_items
        .iter()
        .filter_map(|l| l.subtotal_set.as_ref())
        .chain(
            r.order_adjustments
                .iter()
                .filter_map(|a| a.amount_set.as_ref()),
        )
        .collect();
    let code = bags
        .iter()
        .find_map(|s| s.presentment_money.as_ref())
        .or_else(|| bags.iter().find_map(|s| s.shop_money.as_ref()))
        .map(|m| m.currency_code.clone())
        .ok_or_else(|| MapError::MissingField("transactions.currency".into()))?;
    currency_of("currency", &code)
}

/// order_transactions/create: a payment as the store recorded it. Shopify sends
/// it when a transaction is created or its status changes, and only for the
/// statuses success, failure and error. One payment per authorisation or sale
/// (payment id = transaction id); a capture is one capture of its authorisation
/// (payment id = `parent_id`, capture id = transaction id); a void cancels its
/// authorisation. These are store-recorded payments: the ledger counts them only
/// when neither a payment provider nor the order snapshot accounts for the money.
///
/// Refund transactions give no event: refunds/create (and the order's `refunds`)
/// report the same refund with its lines, under the refund's id; mapping the
/// transaction too would count the money twice. A void that failed changed
/// nothing (the authorisation stands), and pending transactions (never sent) or
/// other kinds (`change`, `suggested_refund`, `emv_authorization`) move no money
/// of the order's own: no event either.
pub(crate) fn order_transaction(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let t: model::Transaction = parse_json(input.body)?;
    let kind = t.kind.as_deref().map(str::trim).unwrap_or("");
    let failed = match t.status.as_deref().map(str::trim) {
        Some("success") => false,
        Some("failure" | "error") => true,
        _ => return Ok(Vec::new()),
    };
    let id =
        t.id.as_ref()
            .ok_or_else(|| MapError::MissingField("id".into()))?
            .0
            .clone();
    let parent = || {
        t.parent_id
            .as_ref()
            .map(|p| p.0.clone())
            .ok_or_else(|| MapError::MissingField("parent_id".into()))
    };
    let (payment_id, capture_id, status) = match (kind, failed) {
        ("authorization", false) => (id, None, PaymentStatus::Authorized),
        ("sale", false) => (id, None, PaymentStatus::Succeeded),
        ("authorization" | "sale", true) => (id, None, PaymentStatus::Failed),
        ("capture", false) => (parent()?, Some(id), PaymentStatus::Succeeded),
        ("capture", true) => (parent()?, Some(id), PaymentStatus::Failed),
        ("void", false) => (parent()?, None, PaymentStatus::Cancelled),
        _ => return Ok(Vec::new()),
    };
    let order_id = t
        .order_id
        .as_ref()
        .ok_or_else(|| MapError::MissingField("order_id".into()))?;
    let amount = t
        .amount
        .as_ref()
        .filter(|a| !a.0.is_empty())
        .ok_or_else(|| MapError::MissingField("amount".into()))?;
    // No currency, no money: Shopify names it on every transaction it sends; a
    // payload without one is not guessed at (the shop currency and the
    // presentment currency can differ).
    let code = non_empty(t.currency.as_deref())
        .ok_or_else(|| MapError::MissingField("currency".into()))?;
    let amount = crate::money("amount", &amount.0, &code)?;
    let at = match opt_time("processed_at", t.processed_at.as_deref())? {
        Some(at) => at,
        None => {
            opt_time("created_at", t.created_at.as_deref())?.unwrap_or_else(|| out.fallback_time())
        }
    };
    let failure_reason = if failed {
        non_empty(t.message.as_deref()).or_else(|| non_empty(t.error_code.as_deref()))
    } else {
        None
    };
    let payment = Payment {
        provider: PROVIDER.to_string(),
        payment_id,
        links: vec![OrderLink::Order {
            order_id: format!("{PROVIDER}:{}", order_id.0),
        }],
        status,
        amount,
        fee: None,
        net: None,
        amount_refunded: None,
        captured: None,
        capture_id,
        auto_capture: false,
        method: non_empty(t.gateway.as_deref()),
        failure_reason,
        payer: Identity::default(),
        at,
    };
    let event = match status {
        PaymentStatus::Authorized | PaymentStatus::Succeeded => Event::PaymentSucceeded(payment),
        _ => Event::PaymentFailed(payment),
    };
    Ok(vec![out.envelope(None, at, event)])
}

/// orders/edited: the body is an order edit (which line items were added or
/// removed, and by how much), not the order. It carries no totals, no
/// outstanding amount and no financial status, so it says nothing exact about
/// the money; the orders/updated that Shopify sends for the same change carries
/// the edited `current_*` totals and `total_outstanding`, and the order
/// snapshot accounts for them. The body is read (a malformed one, or one that
/// names no order, is an error) and accepted without an event.
pub(crate) fn order_edited(
    _ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let edited: model::OrderEdited = parse_json(input.body)?;
    if edited.order_edit.order_id.0.trim().is_empty() {
        return Err(MapError::MissingField("order_edit.order_id".into()));
    }
    Ok(Vec::new())
}

/// A coarse reason from the merchant's refund note.
pub(crate) fn reason_from_note(note: &str) -> ReasonCode {
    let n = note.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if any(&["size", "too small", "too big", "too large", "fit"]) {
        ReasonCode::Size
    } else if any(&["defect", "broke", "damage", "faulty", "not working"]) {
        ReasonCode::Defect
    } else if any(&["late", "delay", "never arrived"]) {
        ReasonCode::Late
    } else {
        ReasonCode::Other
    }
}

/// fulfillments/create, fulfillments/update: one shipment per tracking number.
pub(crate) fn fulfillment(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let f: model::Fulfillment = parse_json(input.body)?;
    let order_id = f
        .order_id
        .as_ref()
        .ok_or_else(|| MapError::MissingField("order_id".into()))?;
    let at = match opt_time("updated_at", f.updated_at.as_deref())? {
        Some(t) => t,
        None => {
            opt_time("created_at", f.created_at.as_deref())?.unwrap_or_else(|| out.fallback_time())
        }
    };
    let status = shipment_status(f.shipment_status.as_deref(), f.status.as_deref());
    let estimated_delivery = opt_time("estimated_delivery_at", f.estimated_delivery_at.as_deref())?;
    let mut numbers = tracking_numbers(&f);
    if numbers.is_empty() {
        // Fulfilled without tracking (local delivery, digital goods): still a shipment.
        numbers.push(format!("fulfillment:{}", f.id.0));
    }
    let line_item_ids: Vec<String> = f.line_items.iter().map(|l| l.id.0.clone()).collect();
    Ok(numbers
        .into_iter()
        .map(|number| {
            out.envelope(
                Some(&format!("shipment:{number}")),
                at,
                Event::ShipmentUpdated(Shipment {
                    provider: PROVIDER.to_string(),
                    tracking_number: number,
                    carrier: non_empty(f.tracking_company.as_deref()),
                    links: vec![OrderLink::Order {
                        order_id: format!("{PROVIDER}:{}", order_id.0),
                    }],
                    fulfillment_id: Some(f.id.0.clone()),
                    status,
                    checkpoints: Vec::new(),
                    line_item_ids: line_item_ids.clone(),
                    estimated_delivery,
                    at,
                }),
            )
        })
        .collect())
}

/// fulfillment_events/create: one step of a fulfillment's tracking timeline.
pub(crate) fn fulfillment_event(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let e: model::FulfillmentEvent = parse_json(input.body)?;
    let order_id = e
        .order_id
        .as_ref()
        .ok_or_else(|| MapError::MissingField("order_id".into()))?;
    let at = match opt_time("happened_at", e.happened_at.as_deref())? {
        Some(t) => t,
        None => {
            opt_time("created_at", e.created_at.as_deref())?.unwrap_or_else(|| out.fallback_time())
        }
    };
    let status = shipment_status(e.status.as_deref(), None);
    let location = [&e.city, &e.province, &e.country]
        .into_iter()
        .filter_map(|p| non_empty(p.as_deref()))
        .collect::<Vec<_>>()
        .join(", ");
    let tracking_number = non_empty(e.tracking_number.as_deref())
        .unwrap_or_else(|| format!("fulfillment:{}", e.fulfillment_id.0));
    Ok(vec![out.envelope(
        None,
        at,
        Event::ShipmentUpdated(Shipment {
            provider: PROVIDER.to_string(),
            tracking_number,
            carrier: None,
            links: vec![OrderLink::Order {
                order_id: format!("{PROVIDER}:{}", order_id.0),
            }],
            fulfillment_id: Some(e.fulfillment_id.0.clone()),
            status,
            checkpoints: vec![Checkpoint {
                at,
                status,
                message: non_empty(e.message.as_deref()),
                location: (!location.is_empty()).then_some(location),
            }],
            line_item_ids: Vec::new(),
            estimated_delivery: opt_time(
                "estimated_delivery_at",
                e.estimated_delivery_at.as_deref(),
            )?,
            at,
        }),
    )])
}

/// Shopify's shipment statuses (`shipment_status`, fulfillment event `status`) in
/// the canonical set; without one, the fulfillment's own status decides.
pub(crate) fn shipment_status(shipment: Option<&str>, fulfillment: Option<&str>) -> ShipmentStatus {
    match shipment.map(str::trim) {
        Some("label_printed" | "label_purchased" | "confirmed") => ShipmentStatus::LabelCreated,
        Some("in_transit" | "carrier_picked_up") => ShipmentStatus::InTransit,
        // A delay is news, not a failure: the parcel is still moving.
        Some("delayed") => ShipmentStatus::InTransit,
        Some("out_for_delivery" | "ready_for_pickup") => ShipmentStatus::OutForDelivery,
        Some("delivered" | "picked_up") => ShipmentStatus::Delivered,
        Some("failure" | "attempted_delivery") => ShipmentStatus::Exception,
        Some("returned" | "return_to_sender") => ShipmentStatus::Returned,
        _ => match fulfillment {
            Some("cancelled" | "error" | "failure") => ShipmentStatus::Exception,
            // pending, open, success: handed over or about to be, nothing tracked yet.
            _ => ShipmentStatus::LabelCreated,
        },
    }
}

fn tracking_numbers(f: &model::Fulfillment) -> Vec<String> {
    let listed: Vec<String> = f
        .tracking_numbers
        .iter()
        .filter_map(|t| non_empty(Some(t)))
        .collect();
    if listed.is_empty() {
        non_empty(f.tracking_number.as_deref())
            .into_iter()
            .collect()
    } else {
        dedup_in_order(listed)
    }
}

/// checkouts/create, checkouts/update: a touch that ties the cart token to the
/// campaign that brought the visitor (and to an email once one is typed in).
pub(crate) fn checkout(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let c: model::Checkout = parse_json(input.body)?;
    let token = non_empty(c.token.as_deref())
        .or_else(|| c.id.as_ref().map(|i| i.0.clone()))
        .ok_or_else(|| MapError::MissingField("token".into()))?;
    let at = match opt_time("updated_at", c.updated_at.as_deref())? {
        Some(t) => t,
        None => {
            opt_time("created_at", c.created_at.as_deref())?.unwrap_or_else(|| out.fallback_time())
        }
    };
    let email = first_non_empty([
        c.email.as_deref(),
        c.customer.as_ref().and_then(|x| x.email.as_deref()),
    ]);
    let cart_token = non_empty(c.cart_token.as_deref());
    let mut identity = Identity::default()
        .with_email(email.as_deref())
        .with_anonymous_id(cart_token.as_deref());
    if let Some(customer) = &c.customer {
        identity = identity.with_external(PROVIDER, customer.id.0.clone());
    }
    let landing = non_empty(c.landing_site.as_deref());
    let touch = Touch {
        touch_id: format!("shopify-checkout:{token}"),
        identity,
        utm: landing.as_deref().map(Utm::from_url).unwrap_or_default(),
        gclid: landing.as_deref().and_then(|l| query_param(l, "gclid")),
        fbclid: landing.as_deref().and_then(|l| query_param(l, "fbclid")),
        landing_page: landing,
        referrer: non_empty(c.referring_site.as_deref()),
        cart_token,
        at,
    };
    Ok(vec![out.envelope(None, at, Event::Touch(touch))])
}

/// customers/redact: erase the customer and the personal data of the listed orders.
pub(crate) fn customer_redact(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let r: model::CustomersRedact = parse_json(input.body)?;
    let mut identity = Identity::default()
        .with_email(r.customer.email.as_deref())
        .with_phone(r.customer.phone.as_deref(), None);
    if let Some(id) = &r.customer.id {
        identity = identity.with_external(PROVIDER, id.0.clone());
    }
    if identity.is_empty() {
        return Err(MapError::MissingField("customer".into()));
    }
    let at = out.fallback_time();
    Ok(vec![
        out.envelope(
            None,
            at,
            Event::CustomerRedacted(CustomerRedacted {
                identity,
                orders: r
                    .orders_to_redact
                    .iter()
                    .map(|o| format!("{PROVIDER}:{}", o.0))
                    .collect(),
                requested_by: PROVIDER.to_string(),
                keys: Vec::new(),
            }),
        ),
    ])
}

/// inventory_items/create, inventory_items/update: the item's unit cost (in
/// the tenant's `cost_currency`: Shopify's payload does not name the shop's
/// currency) from its `updated_at` on.
///
/// An item without a SKU maps to nothing: order lines find their costs by
/// SKU, so a cost no line can name would only take room. It stays in the raw
/// log, and the item's next update with a SKU carries its cost again.
pub(crate) fn inventory_item(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let item: model::InventoryItem = parse_json(input.body)?;
    let Some(sku) = non_empty(item.sku.as_deref()) else {
        return Ok(Vec::new());
    };
    let unit_cost = match item.cost.as_ref().filter(|c| !c.0.is_empty()) {
        Some(cost) => Some(crate::unit_cost("cost", &cost.0, ctx.cost_currency("cost")?)?),
        None => None,
    };
    let at = opt_time("updated_at", item.updated_at.as_deref())?
        .or(opt_time("created_at", item.created_at.as_deref())?)
        .unwrap_or_else(|| out.fallback_time());
    let event = InventoryUpdated {
        sku,
        item_id: Some(item.id.0),
        unit_cost,
        available: None,
        backorder: None,
        eta: None,
        at,
    };
    Ok(vec![out.envelope(None, at, Event::InventoryUpdated(event))])
}

/// products/create, products/update: one stock report per variant with a SKU
/// (order lines find items by SKU; a variant without one is left out): its
/// inventory item, the units available and whether it keeps selling when out
/// of stock (`inventory_policy: continue`). Costs are not in this payload
/// (they are the inventory item's). Each from the variant's `updated_at`, else
/// the product's.
pub(crate) fn product(
    ctx: &MapContext<'_>,
    input: &RawInput<'_>,
) -> Result<Vec<Envelope>, MapError> {
    let out = Out { ctx, input };
    let p: model::Product = parse_json(input.body)?;
    let product_at = opt_time("updated_at", p.updated_at.as_deref())?
        .or(opt_time("created_at", p.created_at.as_deref())?)
        .unwrap_or_else(|| out.fallback_time());
    let mut events = Vec::new();
    for (i, v) in p.variants.iter().enumerate() {
        let Some(sku) = non_empty(v.sku.as_deref()) else {
            continue;
        };
        let at = opt_time(
            &format!("variants[{i}].updated_at"),
            v.updated_at.as_deref(),
        )?
        .unwrap_or(product_at);
        let event = InventoryUpdated {
            sku,
            item_id: v.inventory_item_id.as_ref().map(|id| id.0.clone()),
            unit_cost: None,
            available: v.inventory_quantity,
            backorder: non_empty(v.inventory_policy.as_deref()).map(|p| p == "continue"),
            eta: None,
            at,
        };
        let suffix = format!("variant:{}", v.id.0);
        events.push(out.envelope(Some(&suffix), at, Event::InventoryUpdated(event)));
    }
    Ok(events)
}

fn address(a: &model::Address) -> Option<Address> {
    let country = non_empty(a.country_code.as_deref()).or_else(|| {
        // Older payloads may hold only `country`; keep it when it already is a code.
        non_empty(a.country.as_deref()).filter(|c| c.len() == 2)
    });
    let out = Address {
        name: address_name(a),
        company: non_empty(a.company.as_deref()),
        line1: non_empty(a.address1.as_deref()),
        line2: non_empty(a.address2.as_deref()),
        city: non_empty(a.city.as_deref()),
        region: non_empty(a.province_code.as_deref()).or_else(|| non_empty(a.province.as_deref())),
        postal_code: non_empty(a.zip.as_deref()),
        country: country.map(|c| c.to_ascii_uppercase()),
        phone: non_empty(a.phone.as_deref()),
    };
    (out != Address::default()).then_some(out)
}

fn address_name(a: &model::Address) -> Option<String> {
    non_empty(a.name.as_deref())
        .or_else(|| full_name(a.first_name.as_deref(), a.last_name.as_deref()))
}

/// Shopify tags are one comma-separated string.
fn split_tags(tags: Option<&str>) -> Vec<String> {
    dedup_in_order(
        tags.unwrap_or("")
            .split(',')
            .filter_map(|t| non_empty(Some(t))),
    )
}

fn first_non_empty<const N: usize>(candidates: [Option<&str>; N]) -> Option<String> {
    candidates.into_iter().find_map(non_empty)
}

fn opt_time(field: &str, s: Option<&str>) -> Result<Option<OffsetDateTime>, MapError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => parse_time(field, s).map(Some),
        None => Ok(None),
    }
}

fn money_in(field: &str, a: &model::Amount, currency: Currency) -> Result<Money, MapError> {
    Money::parse(&a.0, currency).map_err(|e| MapError::InvalidField {
        field: field.to_string(),
        reason: crate::money_reason(&e),
    })
}

/// An amount from its money bag (shop side, which names its currency) or, for
/// payloads without bags, from the REST string in the shop currency.
fn money_of(
    field: &str,
    rest: Option<&model::Amount>,
    set: Option<&model::MoneySet>,
    currency: Currency,
) -> Result<Option<Money>, MapError> {
    if let Some(shop) = set.and_then(|s| s.shop_money.as_ref()) {
        return crate::money(field, &shop.amount.0, &shop.currency_code).map(Some);
    }
    match rest.filter(|a| !a.0.is_empty()) {
        Some(a) => money_in(field, a, currency).map(Some),
        None => Ok(None),
    }
}

/// An amount in `currency`: the side of its money bag in that currency, else,
/// when `currency` is the shop's, the REST string (always in the shop currency).
fn amount_in(
    field: &str,
    rest: Option<&model::Amount>,
    set: Option<&model::MoneySet>,
    currency: Currency,
    shop: Currency,
) -> Result<Option<Money>, MapError> {
    if let Some(m) = bag_side(field, set, currency)? {
        return Ok(Some(m));
    }
    match rest.filter(|a| !a.0.is_empty()) {
        Some(a) if currency == shop => money_in(field, a, shop).map(Some),
        _ => Ok(None),
    }
}

/// The side of a money bag in `currency`, if it has one.
fn bag_side(
    field: &str,
    set: Option<&model::MoneySet>,
    currency: Currency,
) -> Result<Option<Money>, MapError> {
    let Some(set) = set else {
        return Ok(None);
    };
    for side in [&set.presentment_money, &set.shop_money]
        .into_iter()
        .flatten()
    {
        let m = crate::money(field, &side.amount.0, &side.currency_code)?;
        if m.currency == currency {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// A refund's amount in the refund's currency: from the money bag when there is
/// one (`None` when neither side is in that currency), else the REST string,
/// which only payloads from before multi-currency selling lack a bag for (one
/// currency throughout).
fn money_in_currency(
    field: &str,
    rest: Option<&model::Amount>,
    set: Option<&model::MoneySet>,
    currency: Currency,
) -> Result<Option<Money>, MapError> {
    if set.is_some_and(|s| s.shop_money.is_some() || s.presentment_money.is_some()) {
        return bag_side(field, set, currency);
    }
    match rest.filter(|a| !a.0.is_empty()) {
        Some(a) => money_in(field, a, currency).map(Some),
        None => Ok(None),
    }
}

/// The first of several (REST, bag) pairs that is present, e.g. `current_*` first.
fn first_money<const N: usize>(
    field: &str,
    pairs: [(Option<&model::Amount>, Option<&model::MoneySet>); N],
    currency: Currency,
) -> Result<Option<Money>, MapError> {
    for (rest, set) in pairs {
        if let Some(m) = money_of(field, rest, set, currency)? {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// A query parameter of a URL or path (`gclid`, `fbclid`).
fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| non_empty(Some(&v)))
}
