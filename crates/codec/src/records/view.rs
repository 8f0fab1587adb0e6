//! The typed Customer 360 and order views carried by the projection records
//! (the `view` field of `customer_projection.avsc` and `order_projection.avsc`).
//!
//! Each type mirrors one Avro record of those schemas, field for field: amounts
//! are longs in minor units of the currency named next to them (ISO 4217),
//! times are milliseconds since the Unix epoch, maps have string keys, and the
//! enums of storefold-core travel as their snake_case names (open sets of
//! strings, so a new status stays backward compatible). The views are built
//! from storefold-core's types by `From` impls that name every field, so a
//! field renamed or removed in the core fails to compile here, and a field
//! renamed here fails to compile in the sinks that read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use storefold_core::aggregate::{self, Customer};
use storefold_core::event;
use storefold_core::ledger::{
    Converted, LedgerEntry, OrderFigures, ReportingFigures, ReportingRevenue,
};
use storefold_core::money::MoneyBag;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch of a time.
pub fn epoch_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn opt_millis(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(epoch_millis)
}

/// The serde name of one of the core's unit enums (`open`, `in_transit`, …).
fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counts(m: &BTreeMap<String, u64>) -> BTreeMap<String, i64> {
    m.iter().map(|(k, n)| (k.clone(), count(*n))).collect()
}

fn bag(b: &MoneyBag) -> BTreeMap<String, i64> {
    b.0.iter().map(|(c, n)| (c.code().to_owned(), *n)).collect()
}

/// An amount in minor units of a currency (Avro record `Money`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyView {
    /// Minor units (cents for USD, yen for JPY).
    pub minor: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

impl From<&storefold_core::Money> for MoneyView {
    fn from(m: &storefold_core::Money) -> Self {
        Self {
            minor: m.minor,
            currency: m.currency.code().to_owned(),
        }
    }
}

/// A postal address (Avro record `Address`); every part may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressView {
    /// Addressee.
    pub name: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// First street line.
    pub line1: Option<String>,
    /// Second street line.
    pub line2: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Region, state or province.
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// ISO 3166 alpha-2 country code.
    pub country: Option<String>,
    /// Phone number given with the address.
    pub phone: Option<String>,
}

impl From<&event::Address> for AddressView {
    fn from(a: &event::Address) -> Self {
        let event::Address {
            name,
            company,
            line1,
            line2,
            city,
            region,
            postal_code,
            country,
            phone,
        } = a.clone();
        Self {
            name,
            company,
            line1,
            line2,
            city,
            region,
            postal_code,
            country,
            phone,
        }
    }
}

/// Marketing consent as the source reported it (Avro record `Consent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    /// Email marketing opt-in; `None` when the source did not say.
    pub email_marketing: Option<bool>,
    /// SMS marketing opt-in; `None` when the source did not say.
    pub sms_marketing: Option<bool>,
}

/// One identity value known for the customer (Avro record `IdentityValue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityValueView {
    /// `email`, `phone`, `anonymous_id` or the source of an external id.
    pub kind: String,
    /// The value.
    pub value: String,
}

/// A customer id merged into this one (Avro record `Merged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedView {
    /// The former customer id.
    pub merged_id: String,
    /// Why identity resolution merged it.
    pub reason: String,
}

/// Campaign parameters of a touch (Avro record `Utm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtmView {
    /// `utm_source`.
    pub source: Option<String>,
    /// `utm_medium`.
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// `utm_term`.
    pub term: Option<String>,
    /// `utm_content`.
    pub content: Option<String>,
}

/// A marketing touch: a visit with its campaign (Avro record `Touch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchView {
    /// When it happened, milliseconds since the Unix epoch.
    pub at: i64,
    /// The collector's id of the touch.
    pub touch_id: String,
    /// Its campaign parameters.
    pub utm: UtmView,
    /// The page the visit landed on.
    pub landing_page: Option<String>,
    /// The referring page.
    pub referrer: Option<String>,
    /// Google Ads click id (erased on redaction).
    pub gclid: Option<String>,
    /// Meta click id (erased on redaction).
    pub fbclid: Option<String>,
}

impl From<&aggregate::TouchEntry> for TouchView {
    fn from(t: &aggregate::TouchEntry) -> Self {
        let event::Utm {
            source,
            medium,
            campaign,
            term,
            content,
        } = t.utm.clone();
        Self {
            at: epoch_millis(t.at),
            touch_id: t.touch_id.clone(),
            utm: UtmView {
                source,
                medium,
                campaign,
                term,
                content,
            },
            landing_page: t.landing_page.clone(),
            referrer: t.referrer.clone(),
            gclid: t.gclid.clone(),
            fbclid: t.fbclid.clone(),
        }
    }
}

/// Touch events counted by UTM value (Avro record `TouchCounts`); rare values
/// beyond the configured bound are counted under `(other)`, touches without
/// the parameter under `(none)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchCountsView {
    /// By `utm_source`.
    pub source: BTreeMap<String, i64>,
    /// By `utm_medium`.
    pub medium: BTreeMap<String, i64>,
    /// By `utm_campaign`.
    pub campaign: BTreeMap<String, i64>,
}

/// One order in the customer's list (Avro record `OrderSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummaryView {
    /// Order id namespaced by store.
    pub order_id: String,
    /// The store's order number, e.g. `#1001`.
    pub number: Option<String>,
    /// Order status name (`pending`, `open`, `on_hold`, `completed`, …).
    pub status: String,
    /// The order total in the shop currency.
    pub total: MoneyView,
    /// When it was placed, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// The customer's revenue in one currency (Avro record `CurrencyRevenue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyRevenueView {
    /// ISO 4217 code the amounts are in.
    pub currency: String,
    /// Captured money that counts.
    pub gross: i64,
    /// Refunded.
    pub refunded: i64,
    /// Lost to chargebacks.
    pub chargeback_lost: i64,
    /// `gross − refunded − chargeback_lost`.
    pub net: i64,
    /// Orders paid in this currency.
    pub orders: i64,
    /// Average order value (`gross / orders`, rounded down).
    pub aov: i64,
}

/// Revenue in the tenant's reporting currency (Avro record `ReportingRevenue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingRevenueView {
    /// The reporting currency.
    pub currency: String,
    /// Converted gross.
    pub gross: i64,
    /// Converted refunds.
    pub refunded: i64,
    /// Converted chargeback losses.
    pub chargeback_lost: i64,
    /// Converted net.
    pub net: i64,
    /// Converted fees.
    pub fees: i64,
    /// Amounts without a usable rate: figure name → currency code → minor units.
    pub unconverted: BTreeMap<String, BTreeMap<String, i64>>,
}

impl From<&ReportingRevenue> for ReportingRevenueView {
    fn from(r: &ReportingRevenue) -> Self {
        Self {
            currency: r.currency.code().to_owned(),
            gross: r.gross,
            refunded: r.refunded,
            chargeback_lost: r.chargeback_lost,
            net: r.net,
            fees: r.fees,
            unconverted: r
                .unconverted
                .iter()
                .map(|(k, b)| (k.clone(), bag(b)))
                .collect(),
        }
    }
}

/// A support ticket (Avro record `TicketSummary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    /// Help desk, e.g. `zendesk`.
    pub provider: String,
    /// The help desk's ticket id.
    pub ticket_id: String,
    /// Status name (`new`, `open`, `pending`, `solved`, `closed`, …).
    pub status: String,
    /// Contact reasons (`shipping`, `refund`, …).
    pub reasons: Vec<String>,
    /// When it was opened, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Seconds to the first agent response, when answered.
    pub first_response_secs: Option<i64>,
    /// Satisfaction score 1–5, when rated.
    pub csat: Option<i32>,
}

/// The Customer 360 (Avro record `CustomerView`): everything storefold knows
/// of one customer. The tenant, id, email, phone and redaction flag are the
/// projection's own fields and are not repeated here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Postal addresses from the store's customer record.
    pub addresses: Vec<AddressView>,
    /// Marketing consent.
    pub consent: ConsentView,
    /// The store's tags.
    pub tags: Vec<String>,
    /// Every identity value resolved to this customer.
    pub identities: Vec<IdentityValueView>,
    /// Customer ids merged into this one.
    pub merged: Vec<MergedView>,
    /// The earliest touch.
    pub first_touch: Option<TouchView>,
    /// The newest touch.
    pub last_touch: Option<TouchView>,
    /// Touches folded in (distinct touch ids).
    pub touches: i64,
    /// Touches by campaign parameter.
    pub touch_counts: TouchCountsView,
    /// Orders that count (placed, not test, not cancelled unpaid).
    pub orders_count: i64,
    /// The newest orders, oldest first (cut to the configured length: see
    /// `truncated`).
    pub orders: Vec<OrderSummaryView>,
    /// Revenue per currency.
    pub revenue: Vec<CurrencyRevenueView>,
    /// Revenue in the reporting currency, when the tenant has one.
    pub revenue_reporting: Option<ReportingRevenueView>,
    /// When the first counted order was placed.
    pub first_order_at: Option<i64>,
    /// When the newest counted order was placed.
    pub last_order_at: Option<i64>,
    /// The first counted order.
    pub first_order_id: Option<String>,
    /// The newest counted order.
    pub last_order_id: Option<String>,
    /// Returns asked for.
    pub returns: i64,
    /// Returns by reason.
    pub return_reasons: BTreeMap<String, i64>,
    /// The newest tickets.
    pub tickets: Vec<TicketView>,
    /// Tickets not solved or closed.
    pub open_tickets: i64,
    /// Tickets by contact reason.
    pub ticket_reasons: BTreeMap<String, i64>,
    /// Average satisfaction ×100 (450 = 4.5), when any ticket was rated.
    pub csat_avg_x100: Option<i64>,
    /// Rated tickets.
    pub csat_count: i64,
    /// Disputes opened.
    pub chargebacks: i64,
    /// Disputes lost.
    pub chargebacks_lost: i64,
    /// Segment names (`new`, `repeat`, `vip`, `lapsed`, …).
    pub segments: Vec<String>,
    /// The store deleted its customer record.
    pub deleted_at_source: bool,
    /// The earliest event time of the customer.
    pub first_seen_at: Option<i64>,
    /// The newest event time of the customer.
    pub last_event_at: Option<i64>,
    /// `orders` or `tickets` were cut to their newest entries (the figures
    /// above still count everything).
    pub truncated: bool,
    /// Entries each cut list left out, by list name.
    pub omitted: BTreeMap<String, i64>,
}

impl From<&Customer> for CustomerView {
    fn from(c: &Customer) -> Self {
        Self {
            first_name: c.first_name.clone(),
            last_name: c.last_name.clone(),
            addresses: c.addresses.iter().map(AddressView::from).collect(),
            consent: ConsentView {
                email_marketing: c.consent.email_marketing,
                sms_marketing: c.consent.sms_marketing,
            },
            tags: c.tags.clone(),
            identities: c
                .identities
                .iter()
                .map(|i| IdentityValueView {
                    kind: i.kind.clone(),
                    value: i.value.clone(),
                })
                .collect(),
            merged: c
                .merged
                .iter()
                .map(|m| MergedView {
                    merged_id: m.merged_id.clone(),
                    reason: m.reason.clone(),
                })
                .collect(),
            first_touch: c.first_touch.as_ref().map(TouchView::from),
            last_touch: c.last_touch.as_ref().map(TouchView::from),
            touches: count(c.touches),
            touch_counts: TouchCountsView {
                source: counts(&c.touch_counts.source.0),
                medium: counts(&c.touch_counts.medium.0),
                campaign: counts(&c.touch_counts.campaign.0),
            },
            orders_count: count(c.orders_count),
            orders: c
                .orders
                .iter()
                .map(|o| OrderSummaryView {
                    order_id: o.order_id.clone(),
                    number: o.number.clone(),
                    status: name(&o.status),
                    total: MoneyView::from(&o.total),
                    created_at: epoch_millis(o.created_at),
                })
                .collect(),
            revenue: c
                .revenue
                .iter()
                .map(|r| CurrencyRevenueView {
                    currency: r.currency.code().to_owned(),
                    gross: r.gross,
                    refunded: r.refunded,
                    chargeback_lost: r.chargeback_lost,
                    net: r.net,
                    orders: count(r.orders),
                    aov: r.aov,
                })
                .collect(),
            revenue_reporting: c.revenue_reporting.as_ref().map(ReportingRevenueView::from),
            first_order_at: opt_millis(c.first_order_at),
            last_order_at: opt_millis(c.last_order_at),
            first_order_id: c.first_order_id.clone(),
            last_order_id: c.last_order_id.clone(),
            returns: count(c.returns),
            return_reasons: counts(&c.return_reasons),
            tickets: c
                .tickets
                .iter()
                .map(|t| TicketView {
                    provider: t.provider.clone(),
                    ticket_id: t.ticket_id.clone(),
                    status: name(&t.status),
                    reasons: t.reasons.iter().map(name).collect(),
                    created_at: epoch_millis(t.created_at),
                    first_response_secs: t.first_response_secs,
                    csat: t.csat.map(i32::from),
                })
                .collect(),
            open_tickets: count(c.open_tickets),
            ticket_reasons: counts(&c.ticket_reasons),
            csat_avg_x100: c.csat_avg_x100.map(i64::from),
            csat_count: count(c.csat_count),
            chargebacks: count(c.chargebacks),
            chargebacks_lost: count(c.chargebacks_lost),
            segments: c.segments.clone(),
            deleted_at_source: c.deleted_at_source,
            first_seen_at: opt_millis(c.first_seen_at),
            last_event_at: opt_millis(c.last_event_at),
            truncated: c.truncated,
            omitted: counts(&c.omitted),
        }
    }
}

impl CustomerView {
    /// The view of a Customer 360 JSON document (the projection's `doc`), for
    /// records written before the typed view existed; `None` when the
    /// document is not a Customer 360 (e.g. a merge notice).
    pub fn from_doc(doc: &str) -> Option<CustomerView> {
        let c: Customer = serde_json::from_str(doc).ok()?;
        if c.customer_id.is_empty() || c.tenant.is_empty() {
            return None;
        }
        Some(CustomerView::from(&c))
    }
}

/// An order's totals as the store reported them (Avro record `Totals`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalsView {
    /// Total charged, in the shop currency.
    pub total: MoneyView,
    /// Before discounts, shipping and tax.
    pub subtotal: Option<MoneyView>,
    /// Discounts.
    pub discounts: Option<MoneyView>,
    /// Shipping.
    pub shipping: Option<MoneyView>,
    /// Tax.
    pub tax: Option<MoneyView>,
    /// The total in the currency the customer saw, when it differs.
    pub presentment_total: Option<MoneyView>,
}

/// One line of an order (Avro record `LineItem`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItemView {
    /// The store's line id.
    pub id: String,
    /// Stock keeping unit.
    pub sku: Option<String>,
    /// Product title.
    pub title: String,
    /// Quantity ordered.
    pub quantity: i64,
    /// Price of one unit.
    pub unit_price: MoneyView,
    /// Discount on the whole line.
    pub total_discount: Option<MoneyView>,
}

/// Figures in the tenant's reporting currency (Avro record `ReportingFigures`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingFiguresView {
    /// The reporting currency.
    pub currency: String,
    /// Converted paid.
    pub paid: i64,
    /// Converted refunds.
    pub refunded: i64,
    /// Converted chargeback losses.
    pub chargeback_lost: i64,
    /// Converted net.
    pub net: i64,
    /// Converted fees.
    pub fees: i64,
    /// `net − fees` when every fee is known.
    pub net_after_fees: Option<i64>,
    /// Amounts without a usable rate: figure name → currency code → minor units.
    pub unconverted: BTreeMap<String, BTreeMap<String, i64>>,
}

impl From<&ReportingFigures> for ReportingFiguresView {
    fn from(r: &ReportingFigures) -> Self {
        Self {
            currency: r.currency.code().to_owned(),
            paid: r.paid,
            refunded: r.refunded,
            chargeback_lost: r.chargeback_lost,
            net: r.net,
            fees: r.fees,
            net_after_fees: r.net_after_fees,
            unconverted: r
                .unconverted
                .iter()
                .map(|(k, b)| (k.clone(), bag(b)))
                .collect(),
        }
    }
}

/// An order's money figures from its books (Avro record `OrderFigures`); each
/// amount is a map currency code → minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFiguresView {
    /// Captured money that counts.
    pub paid: BTreeMap<String, i64>,
    /// Where `paid` comes from: `provider`, `store` or `none`.
    pub paid_source: String,
    /// Authorised, not captured yet.
    pub authorized: BTreeMap<String, i64>,
    /// Refunds that count.
    pub refunded: BTreeMap<String, i64>,
    /// Lost disputes and reversals.
    pub chargeback_lost: BTreeMap<String, i64>,
    /// Disputes still open.
    pub disputed: BTreeMap<String, i64>,
    /// `paid − refunded − chargeback_lost`.
    pub net: BTreeMap<String, i64>,
    /// Processing and dispute fees.
    pub fees: BTreeMap<String, i64>,
    /// Every payment with captured money has a known fee.
    pub fees_known: bool,
    /// `net − fees`; `None` when unknown (not zero).
    pub net_after_fees: Option<BTreeMap<String, i64>>,
    /// The figures in the reporting currency, when the tenant has one.
    pub reporting: Option<ReportingFiguresView>,
}

impl From<&OrderFigures> for OrderFiguresView {
    fn from(f: &OrderFigures) -> Self {
        Self {
            paid: bag(&f.paid),
            paid_source: f.paid_source.clone(),
            authorized: bag(&f.authorized),
            refunded: bag(&f.refunded),
            chargeback_lost: bag(&f.chargeback_lost),
            disputed: bag(&f.disputed),
            net: bag(&f.net),
            fees: bag(&f.fees),
            fees_known: f.fees_known,
            net_after_fees: f.net_after_fees.as_ref().map(bag),
            reporting: f.reporting.as_ref().map(ReportingFiguresView::from),
        }
    }
}

/// A ledger amount expressed in the tenant's reporting currency (Avro record
/// `Converted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvertedView {
    /// The converted amount, in minor units of the reporting currency.
    pub amount: MoneyView,
    /// Day of the exchange rate applied, `YYYY-MM-DD`.
    pub rate_date: String,
}

impl From<&Converted> for ConvertedView {
    fn from(c: &Converted) -> Self {
        let Converted { amount, rate_date } = c;
        Self {
            amount: MoneyView::from(amount),
            rate_date: rate_date.clone(),
        }
    }
}

/// One line of an order's books (Avro record `LedgerEntry`): an amount a
/// provider or the store reported, whether a figure counts it, and why. The
/// figures of [`OrderFiguresView`] are the sums of the counted lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntryView {
    /// What the line records, as the core's snake_case name (`captured`,
    /// `refund`, `dispute_lost`, `fee`, …); an open set.
    pub kind: String,
    /// Who reported it (`stripe`, `adyen`, `paypal`, `shopify`, …).
    pub provider: String,
    /// The provider's id of the payment, capture, refund, dispute or balance
    /// transaction the line is about.
    pub reference: String,
    /// The canonical event the amount comes from (the newest of several).
    pub source_event_id: String,
    /// A magnitude in minor units; the kind gives the direction (only a dispute
    /// fee handed back is negative).
    pub amount: MoneyView,
    /// When it happened, milliseconds since the Unix epoch.
    pub at: i64,
    /// The amount is part of a figure.
    pub counted: bool,
    /// The figure it goes into, or would if counted (`paid`, `authorized`,
    /// `refunded`, `chargeback_lost`, `disputed`, `fees`).
    pub figure: Option<String>,
    /// Why it is counted or left out, in words.
    pub why: String,
    /// The amount in the reporting currency, when the tenant has one and a
    /// rate was found.
    pub converted: Option<ConvertedView>,
}

impl From<&LedgerEntry> for LedgerEntryView {
    fn from(e: &LedgerEntry) -> Self {
        let LedgerEntry {
            kind,
            provider,
            reference,
            source_event_id,
            amount,
            at,
            counted,
            figure,
            why,
            converted,
        } = e;
        Self {
            kind: name(kind),
            provider: provider.clone(),
            reference: reference.clone(),
            source_event_id: source_event_id.clone(),
            amount: MoneyView::from(amount),
            at: epoch_millis(*at),
            counted: *counted,
            figure: figure.map(|f| f.as_str().to_owned()),
            why: why.clone(),
            converted: converted.as_ref().map(ConvertedView::from),
        }
    }
}

/// One step of a tracking timeline (Avro record `Checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// When, milliseconds since the Unix epoch.
    pub at: i64,
    /// Shipment status name (`label_created`, `in_transit`, `delivered`, …).
    pub status: String,
    /// The carrier's words.
    pub message: Option<String>,
    /// Where (erased on redaction).
    pub location: Option<String>,
}

/// A shipment with its merged timeline (Avro record `Shipment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentView {
    /// Tracking number (`fulfillment:<id>` for a fulfillment without one).
    pub tracking_number: String,
    /// Carrier name.
    pub carrier: Option<String>,
    /// Status of the newest checkpoint.
    pub status: Option<String>,
    /// Expected delivery, milliseconds since the Unix epoch.
    pub estimated_delivery: Option<i64>,
    /// Lines of the order in the parcel.
    pub line_item_ids: Vec<String>,
    /// The timeline, oldest first.
    pub checkpoints: Vec<CheckpointView>,
}

impl From<&aggregate::ShipmentView> for ShipmentView {
    fn from(s: &aggregate::ShipmentView) -> Self {
        Self {
            tracking_number: s.tracking_number.clone(),
            carrier: s.carrier.clone(),
            status: s.status.map(|s| s.as_str().to_owned()),
            estimated_delivery: opt_millis(s.estimated_delivery),
            line_item_ids: s.line_item_ids.clone(),
            checkpoints: s
                .checkpoints
                .iter()
                .map(|c| CheckpointView {
                    at: epoch_millis(c.at),
                    status: c.status.as_str().to_owned(),
                    message: c.message.clone(),
                    location: c.location.clone(),
                })
                .collect(),
        }
    }
}

/// A return (Avro record `Return`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnView {
    /// The provider's return id.
    pub return_id: String,
    /// Who reported it.
    pub provider: String,
    /// Reason name (`damaged`, `wrong_item`, …).
    pub reason: String,
    /// The resolution's name once resolved (`refund`, `exchange`, …).
    pub resolution: Option<String>,
    /// The return was resolved.
    pub resolved: bool,
    /// Lines returned.
    pub line_item_ids: Vec<String>,
    /// Time of the newest report, milliseconds since the Unix epoch.
    pub at: i64,
}

/// The order as the CRM sees it (Avro record `OrderView`). The tenant, order
/// id, customer id and status are the projection's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The store's order number, e.g. `#1001`.
    pub number: Option<String>,
    /// When it was placed; `None` before the store's order arrived.
    pub created_at: Option<i64>,
    /// The store's financial status (kept; the payment providers decide money).
    pub financial_status: Option<String>,
    /// The store's fulfillment status.
    pub fulfillment_status: Option<String>,
    /// A test order (never counted).
    pub test: bool,
    /// Totals; `None` before the store's order arrived.
    pub totals: Option<TotalsView>,
    /// Order lines.
    pub line_items: Vec<LineItemView>,
    /// Discount codes used.
    pub discount_codes: Vec<String>,
    /// Money figures from the order's books.
    pub figures: OrderFiguresView,
    /// The order's books: every amount reported, counted or not, with why
    /// (empty in records written before the ledger was typed).
    #[serde(default)]
    pub ledger: Vec<LedgerEntryView>,
    /// Shipments, store fulfillments merged with carrier tracking.
    pub shipments: Vec<ShipmentView>,
    /// Returns.
    pub returns: Vec<ReturnView>,
    /// The customer's first touch as of the order.
    pub first_touch: Option<TouchView>,
    /// The customer's last touch before the order.
    pub last_touch: Option<TouchView>,
    /// Personal data was erased from the order.
    pub redacted: bool,
}

impl From<&storefold_core::engine::OrderView> for OrderView {
    fn from(v: &storefold_core::engine::OrderView) -> Self {
        let snapshot = v.order.snapshot.as_ref().map(|s| &s.value);
        let money = |m: &Option<storefold_core::Money>| m.as_ref().map(MoneyView::from);
        Self {
            number: snapshot.and_then(|s| s.number.clone()),
            created_at: snapshot.map(|s| epoch_millis(s.created_at)),
            financial_status: snapshot.and_then(|s| s.financial_status.clone()),
            fulfillment_status: snapshot.and_then(|s| s.fulfillment_status.clone()),
            test: snapshot.is_some_and(|s| s.test),
            totals: snapshot.map(|s| TotalsView {
                total: MoneyView::from(&s.totals.total),
                subtotal: money(&s.totals.subtotal),
                discounts: money(&s.totals.discounts),
                shipping: money(&s.totals.shipping),
                tax: money(&s.totals.tax),
                presentment_total: money(&s.totals.presentment_total),
            }),
            line_items: snapshot
                .map(|s| {
                    s.line_items
                        .iter()
                        .map(|l| LineItemView {
                            id: l.id.clone(),
                            sku: l.sku.clone(),
                            title: l.title.clone(),
                            quantity: l.quantity,
                            unit_price: MoneyView::from(&l.unit_price),
                            total_discount: money(&l.total_discount),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            discount_codes: snapshot
                .map(|s| s.discount_codes.clone())
                .unwrap_or_default(),
            figures: OrderFiguresView::from(&v.figures),
            ledger: v.ledger.iter().map(LedgerEntryView::from).collect(),
            shipments: v.shipments.iter().map(ShipmentView::from).collect(),
            returns: v
                .order
                .returns
                .values()
                .filter_map(|r| {
                    let resolved = r.resolved.is_some();
                    let reg = r.resolved.as_ref().or(r.requested.as_ref())?;
                    let x = &reg.value;
                    Some(ReturnView {
                        return_id: x.return_id.clone(),
                        provider: x.provider.clone(),
                        reason: name(&x.reason),
                        resolution: x.resolution.as_ref().map(name),
                        resolved,
                        line_item_ids: x.line_item_ids.clone(),
                        at: epoch_millis(x.at),
                    })
                })
                .collect(),
            first_touch: v
                .touches
                .as_ref()
                .and_then(|t| t.first.as_ref())
                .map(TouchView::from),
            last_touch: v
                .touches
                .as_ref()
                .and_then(|t| t.last.as_ref())
                .map(TouchView::from),
            redacted: v.order.redacted,
        }
    }
}

impl OrderView {
    /// The view of an order JSON document (the projection's `doc`), for
    /// records written before the typed view existed.
    pub fn from_doc(doc: &str) -> Option<OrderView> {
        let v: storefold_core::engine::OrderView = serde_json::from_str(doc).ok()?;
        Some(OrderView::from(&v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use apache_avro::Schema;
    use storefold_core::engine::{Engine, MemStore};
    use storefold_scenario::{self as scenario, ScenarioSpec};

    use super::*;
    use crate::{AvroCodec, CustomerProjection, OrderProjection, RecordKind, WireFormat};

    /// A folded history: its customers and its orders as the CRM sees them.
    fn folded() -> (Vec<Customer>, Vec<storefold_core::engine::OrderView>) {
        let events = scenario::generate(
            5,
            &ScenarioSpec {
                customers: 8,
                ..ScenarioSpec::default()
            },
        );
        let mut store = MemStore::default();
        let mut engine = Engine::new();
        for e in &events {
            engine.apply(&store, e).expect("fold");
        }
        let out = engine.finish(&store);
        store.commit(out.changes);
        (
            store.customers().into_values().collect(),
            store.order_views().into_values().collect(),
        )
    }

    /// The field names of the record `name` anywhere in a projection schema.
    fn record_fields(kind: RecordKind, name: &str) -> BTreeSet<String> {
        fn find(s: &Schema, name: &str) -> Option<Vec<String>> {
            match s {
                Schema::Record(r) => {
                    if r.name.name() == name {
                        return Some(r.fields.iter().map(|f| f.name.clone()).collect());
                    }
                    r.fields.iter().find_map(|f| find(&f.schema, name))
                }
                Schema::Union(u) => u.variants().iter().find_map(|v| find(v, name)),
                Schema::Array(a) => find(&a.items, name),
                Schema::Map(m) => find(&m.types, name),
                _ => None,
            }
        }
        let schema = Schema::parse_str(kind.embedded_json()).expect("schema");
        find(&schema, name)
            .unwrap_or_else(|| panic!("{name} in {kind}"))
            .into_iter()
            .collect()
    }

    fn keys<T: Serialize>(v: &T) -> BTreeSet<String> {
        match serde_json::to_value(v).expect("json") {
            serde_json::Value::Object(o) => o.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    /// Every field of the core's Customer 360 is in the schema: in the typed
    /// view, or a field of the projection itself.
    #[test]
    fn every_customer_360_field_is_in_the_schema() {
        let mut c = Customer {
            truncated: true,
            ..Customer::default()
        };
        c.omitted.insert("orders".into(), 1);
        c.touch_counts.source.add("ads", 1);
        c.revenue_reporting = Some(ReportingRevenue {
            currency: storefold_core::Currency::from_code("EUR").unwrap(),
            gross: 0,
            refunded: 0,
            chargeback_lost: 0,
            net: 0,
            fees: 0,
            unconverted: BTreeMap::new(),
        });
        let mut schema = record_fields(RecordKind::CustomerProjection, "CustomerView");
        let own = ["tenant", "customer_id", "email", "phone", "redacted"];
        for f in own {
            assert!(
                record_fields(RecordKind::CustomerProjection, "CustomerProjection").contains(f),
                "{f}"
            );
            schema.insert(f.to_owned());
        }
        let missing: Vec<String> = keys(&c).difference(&schema).cloned().collect();
        assert!(missing.is_empty(), "not in the schema: {missing:?}");
    }

    /// The Rust records have exactly the fields of their Avro records.
    #[test]
    fn the_rust_views_mirror_the_schema_records() {
        let (customers, orders) = folded();
        let c = customers
            .iter()
            .max_by_key(|c| c.orders.len())
            .expect("a customer");
        let view = CustomerView::from(c);
        let kind = RecordKind::CustomerProjection;
        assert_eq!(keys(&view), record_fields(kind, "CustomerView"));
        assert_eq!(keys(&view.consent), record_fields(kind, "Consent"));
        assert_eq!(keys(&view.touch_counts), record_fields(kind, "TouchCounts"));
        assert_eq!(keys(&view.orders[0]), record_fields(kind, "OrderSummary"));
        assert_eq!(keys(&view.orders[0].total), record_fields(kind, "Money"));
        assert_eq!(
            keys(&view.revenue[0]),
            record_fields(kind, "CurrencyRevenue")
        );
        let o = orders
            .iter()
            .find(|o| !o.shipments.is_empty() && o.order.snapshot.is_some())
            .expect("a shipped order");
        let view = OrderView::from(o);
        let kind = RecordKind::OrderProjection;
        assert_eq!(keys(&view), record_fields(kind, "OrderView"));
        assert_eq!(keys(&view.figures), record_fields(kind, "OrderFigures"));
        assert_eq!(keys(&view.shipments[0]), record_fields(kind, "Shipment"));
        assert_eq!(
            keys(&view.shipments[0].checkpoints[0]),
            record_fields(kind, "Checkpoint")
        );
        assert_eq!(
            keys(view.totals.as_ref().unwrap()),
            record_fields(kind, "Totals")
        );
        // Every figure of the core is typed.
        assert_eq!(
            keys(&o.figures)
                .difference(&keys(&view.figures))
                .collect::<Vec<_>>(),
            Vec::<&String>::new()
        );
    }

    /// Projections of a folded history encode with the embedded schemas and
    /// decode to the same typed views.
    #[test]
    fn typed_projections_round_trip_through_avro() {
        let codec = AvroCodec::embedded().expect("codec");
        let (customers, orders) = folded();
        assert!(customers.len() >= 4 && orders.len() >= 4);
        for c in &customers {
            let p = CustomerProjection {
                tenant: c.tenant.clone(),
                customer_id: c.customer_id.clone(),
                generation: 1,
                version: 3,
                email: c.email.clone(),
                phone: c.phone.clone(),
                redacted: c.redacted,
                merged_into: None,
                updated_at: opt_millis(c.last_event_at).unwrap_or(0),
                doc: serde_json::to_string(c).unwrap(),
                view: Some(CustomerView::from(c)),
            };
            let bytes = codec.encode(&p, WireFormat::SingleObject).expect("encode");
            let back: CustomerProjection = codec.decode(&bytes).expect("decode");
            assert_eq!(back, p);
        }
        for o in &orders {
            let p = OrderProjection {
                tenant: o.tenant.clone(),
                order_id: o.order_id.clone(),
                customer_id: o.customer_id.clone(),
                generation: 1,
                version: 2,
                status: "open".into(),
                updated_at: opt_millis(o.order.last_event_at).unwrap_or(0),
                doc: serde_json::to_string(o).unwrap(),
                view: Some(OrderView::from(o)),
            };
            let bytes = codec.encode(&p, WireFormat::SingleObject).expect("encode");
            let back: OrderProjection = codec.decode(&bytes).expect("decode");
            assert_eq!(back, p);
        }
    }

    /// A record written before the typed view (no `view`) gives the same
    /// typed view from its JSON document.
    #[test]
    fn an_older_record_reads_its_view_from_the_document() {
        let (customers, orders) = folded();
        for c in &customers {
            let p = CustomerProjection {
                tenant: c.tenant.clone(),
                customer_id: c.customer_id.clone(),
                generation: 0,
                version: 1,
                email: None,
                phone: None,
                redacted: false,
                merged_into: None,
                updated_at: 0,
                doc: serde_json::to_string(c).unwrap(),
                view: None,
            };
            assert_eq!(p.customer_view().as_deref(), Some(&CustomerView::from(c)));
        }
        for o in &orders {
            let doc = serde_json::to_string(o).unwrap();
            assert_eq!(OrderView::from_doc(&doc), Some(OrderView::from(o)));
        }
        let merge = r#"{"customer_id":"cus_1","merged_into":"cus_2","reason":"email"}"#;
        assert_eq!(CustomerView::from_doc(merge), None);
    }

    /// A record written with the previous schema (no `view` field) decodes
    /// with the new one, its view `None`.
    #[test]
    fn the_previous_schema_s_records_decode_without_a_view() {
        let previous = r#"{"type":"record","name":"CustomerProjection","namespace":"io.storefold","fields":[
            {"name":"tenant","type":"string"},{"name":"customer_id","type":"string"},
            {"name":"generation","type":"long"},{"name":"version","type":"long"},
            {"name":"email","type":["null","string"],"default":null},
            {"name":"phone","type":["null","string"],"default":null},
            {"name":"redacted","type":"boolean","default":false},
            {"name":"merged_into","type":["null","string"],"default":null},
            {"name":"updated_at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"doc","type":"string"}]}"#;
        crate::check_backward(previous, RecordKind::CustomerProjection.embedded_json())
            .expect("backward compatible");
        let previous_order = r#"{"type":"record","name":"OrderProjection","namespace":"io.storefold","fields":[
            {"name":"tenant","type":"string"},{"name":"order_id","type":"string"},
            {"name":"customer_id","type":["null","string"],"default":null},
            {"name":"generation","type":"long"},{"name":"version","type":"long"},
            {"name":"status","type":"string"},
            {"name":"updated_at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"doc","type":"string"}]}"#;
        crate::check_backward(previous_order, RecordKind::OrderProjection.embedded_json())
            .expect("backward compatible");
        let mut codec = AvroCodec::embedded().expect("codec");
        codec
            .register_writer_schema(RecordKind::CustomerProjection, previous)
            .expect("writer schema");
        let old = Schema::parse_str(previous).unwrap();
        let value = apache_avro::types::Value::Record(vec![
            ("tenant".into(), "acme".into()),
            ("customer_id".into(), "cus_1".into()),
            ("generation".into(), apache_avro::types::Value::Long(0)),
            ("version".into(), apache_avro::types::Value::Long(1)),
            (
                "email".into(),
                apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
            ),
            (
                "phone".into(),
                apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
            ),
            ("redacted".into(), false.into()),
            (
                "merged_into".into(),
                apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
            ),
            (
                "updated_at".into(),
                apache_avro::types::Value::TimestampMillis(5),
            ),
            ("doc".into(), "{}".into()),
        ]);
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&old)
            .build()
            .expect("writer")
            .write_value_to_vec(value)
            .expect("datum");
        let mut single = vec![0xC3, 0x01];
        single.extend_from_slice(&crate::Fingerprint::of(&old).to_le_bytes());
        single.extend_from_slice(&datum);
        let p: CustomerProjection = codec.decode(&single).expect("decode");
        assert_eq!(p.view, None);
        assert_eq!(p.customer_id, "cus_1");
    }
}
