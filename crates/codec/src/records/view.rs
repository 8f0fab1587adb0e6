//! The typed Customer 360 and order views carried by the projection records:
//! the type of the `view` field of `schemas/customer_projection.avsc` and
//! `schemas/order_projection.avsc`.
//!
//! These Rust types are the single source of that part of the contract. Each
//! is declared with `avro_view!` (see `avro_type.rs`), which derives its Avro
//! record from the struct: field names, types, doc comments, `null` defaults
//! of the optional fields, and the `#[avro(...)]` options written on a field
//! (`timestamp_millis`, `default = ...`, `default_empty`). `cargo run -p storefold-codec --example
//! schemas` (or `make schemas`) writes the result into the two `.avsc` files,
//! and a test fails while a checked-in file differs from what the types
//! generate.
//!
//! Conventions: counts and amounts are `i64` (amounts in minor units next to
//! their ISO 4217 currency code), times are `i64` milliseconds since the Unix
//! epoch marked `#[avro(timestamp_millis)]`, maps have string keys, and the
//! enums of storefold-core travel as their snake_case names (an open set of
//! strings, so a new variant stays backward compatible). The views are built
//! from storefold-core's types by `From` impls that name every field, so a
//! field renamed or removed in the core fails to compile here, and a field
//! renamed here fails to compile in the sinks that read it.
//!
//! # Adding a field to the Customer 360 (or to the order view)
//!
//! 1. New data: compute it in storefold-core (`Customer::build` in
//!    `aggregate/customer.rs` for the 360, `engine` for the order view). The
//!    `Customer` is persisted with its customer, so the new field needs
//!    `#[serde(default, skip_serializing_if = ...)]` (skip its empty or zero
//!    value): state written without it then decodes
//!    (`state::tests::every_golden_fixture_of_every_version_decodes`) and
//!    state written with the current version still encodes byte for byte
//!    (`state::tests::the_current_version_round_trips_its_fixtures_byte_for_byte`
//!    fails otherwise). `storefold_core::state` has the rules.
//! 2. Here: `From<&Customer> for CustomerView` names every field of the
//!    core's `Customer` (and the order view's `From` every field of the
//!    engine's `OrderView`), so after step 1 this crate does not compile until
//!    the field is handled here. Add it, with a doc comment, to `CustomerView` (or
//!    `OrderView`, or a nested record), and fill it in the `From` impl (its
//!    struct literal does not compile until you do). An `Option` gets a
//!    `null` default by itself; a time is an `i64` marked
//!    `#[avro(timestamp_millis)]`. Any other new field needs a default, so
//!    that records written before it stay readable: `#[avro(default = 0)]`
//!    (or `false`, `"..."`) on a number, flag or string, `#[avro(default_empty)]`
//!    on a `Vec` or map, each with `#[serde(default)]`.
//! 3. Run `make schemas` (`cargo run -p storefold-codec --example schemas`)
//!    and commit the regenerated `.avsc` files with the code. The codec's
//!    tests fail until then; `storefold schemas check` and the codec test
//!    `repository_schemas_are_new_or_compatible_with_git_head` fail if the
//!    change is not backward compatible (e.g. a field without a default).
//! 4. Only if HubSpot should receive it: a row in `CONTACT_FIELDS` of
//!    `crates/sinks/src/hubspot/mapping.rs` and its arm in
//!    `Mapping::contact`.

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

avro_view! {
    /// An amount of money.
    #[avro(name = "Money")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct MoneyView {
        /// The amount in minor units of its currency (cents for USD, yen for
        /// JPY, fils for KWD).
        pub minor: i64,
        /// The currency's ISO 4217 code, e.g. `USD`.
        pub currency: String,
    }
}

impl From<&storefold_core::Money> for MoneyView {
    fn from(m: &storefold_core::Money) -> Self {
        Self {
            minor: m.minor,
            currency: m.currency.code().to_owned(),
        }
    }
}

avro_view! {
    /// A postal address; any part of it may be missing.
    #[avro(name = "Address")]
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

avro_view! {
    /// Marketing consent as the source reported it.
    #[avro(name = "Consent")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ConsentView {
        /// Opted in to email marketing; null when the source did not say.
        pub email_marketing: Option<bool>,
        /// Opted in to SMS marketing; null when the source did not say.
        pub sms_marketing: Option<bool>,
    }
}

avro_view! {
    /// One identity value resolved to the customer.
    #[avro(name = "IdentityValue")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct IdentityValueView {
        /// `email`, `phone`, `anonymous_id`, or the source of an external id
        /// (e.g. `shopify`).
        pub kind: String,
        /// The value.
        pub value: String,
    }
}

avro_view! {
    /// A customer id merged into this one.
    #[avro(name = "Merged")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct MergedView {
        /// The former customer id.
        pub merged_id: String,
        /// The rule that merged it: `phone`, `external_id`, `anonymous_id`,
        /// for an email `<source>_customer_id` (the store customer id it
        /// shares with this customer), or `operator` (an operator's merge).
        pub reason: String,
        /// When the evidence was complete: the newest of its events' times.
        #[avro(timestamp_millis)]
        pub at: Option<i64>,
        /// Ids of the events that showed the identities together, oldest
        /// first.
        #[avro(default_empty)]
        pub evidence: Vec<String>,
    }
}

avro_view! {
    /// An operator's decision about one of the customer's identities and
    /// another identity (`storefold identity merge|split|block`): the latest
    /// for that pair.
    #[avro(name = "IdentityDecision")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct IdentityDecisionView {
        /// The customer's identity key (`em_<hex>`, `ph_<hex>`, ...).
        pub key: String,
        /// The identity key it was merged with or kept apart from.
        pub other: String,
        /// `merge`, `split` or `block`.
        pub decision: String,
        /// When the operator decided (the command's time).
        #[avro(timestamp_millis)]
        pub at: i64,
        /// The command's event id.
        pub event_id: String,
    }
}

avro_view! {
    /// An identity of the customer that other customers claim too, so that it
    /// merged nothing (a phone two people used).
    #[avro(name = "SharedIdentity")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SharedIdentityView {
        /// Its identity key (`ph_<hex>`, `ex_<hex>`, `an_<hex>`), which
        /// carries no personal data.
        pub key: String,
        /// `phone`, `external_id` or `anonymous_id`.
        pub kind: String,
        /// When the claims in `evidence` were all seen: it merged nothing
        /// from then on.
        #[avro(timestamp_millis)]
        pub at: Option<i64>,
        /// Ids of the events that claimed it, oldest first (at most ten).
        #[avro(default_empty)]
        pub evidence: Vec<String>,
    }
}

avro_view! {
    /// Campaign parameters of a visit (the `utm_*` parameters of its URL).
    #[avro(name = "Utm")]
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
}

avro_view! {
    /// A marketing touch: one visit that named the customer, with its
    /// campaign.
    #[avro(name = "Touch")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TouchView {
        /// When the visit happened.
        #[avro(timestamp_millis)]
        pub at: i64,
        /// The collector's id of the touch.
        pub touch_id: String,
        /// Its campaign parameters.
        pub utm: UtmView,
        /// The page the visit landed on.
        pub landing_page: Option<String>,
        /// The page that referred the visit.
        pub referrer: Option<String>,
        /// Google Ads click id; erased when the customer is redacted.
        pub gclid: Option<String>,
        /// Meta click id; erased when the customer is redacted.
        pub fbclid: Option<String>,
    }
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

avro_view! {
    /// Touches counted by campaign parameter value. A touch without the
    /// parameter counts under `(none)`; rare values past the configured bound
    /// count under `(other)`.
    #[avro(name = "TouchCounts")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TouchCountsView {
        /// By `utm_source`.
        pub source: BTreeMap<String, i64>,
        /// By `utm_medium`.
        pub medium: BTreeMap<String, i64>,
        /// By `utm_campaign`.
        pub campaign: BTreeMap<String, i64>,
    }
}

avro_view! {
    /// One order in the customer's list.
    #[avro(name = "OrderSummary")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderSummaryView {
        /// Order id namespaced by store, e.g. `shopify:450789469`.
        pub order_id: String,
        /// The store's order number, e.g. `#1001`.
        pub number: Option<String>,
        /// Order status: `pending`, `open`, `on_hold`, `completed`,
        /// `cancelled`, `refunded`, `failed` (an open set).
        pub status: String,
        /// The order total in the shop currency.
        pub total: MoneyView,
        /// When the order was placed.
        #[avro(timestamp_millis)]
        pub created_at: i64,
    }
}

avro_view! {
    /// The customer's revenue in one currency, in its minor units.
    #[avro(name = "CurrencyRevenue")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CurrencyRevenueView {
        /// ISO 4217 code of the currency the amounts are in.
        pub currency: String,
        /// Captured money that counts.
        pub gross: i64,
        /// Refunded.
        pub refunded: i64,
        /// Lost to chargebacks and reversals.
        pub chargeback_lost: i64,
        /// `gross` minus `refunded` minus `chargeback_lost`.
        pub net: i64,
        /// Orders paid in this currency.
        pub orders: i64,
        /// Average order value: `gross` divided by `orders`, rounded down.
        pub aov: i64,
        /// Cost of goods sold of the orders in this currency.
        #[avro(default = 0)]
        pub cogs: i64,
        /// `net` minus `cogs`, when every order paid in this currency has a
        /// known gross margin; null when unknown (which is not zero).
        pub gross_margin: Option<i64>,
    }
}

avro_view! {
    /// The customer's revenue converted to the tenant's reporting currency,
    /// in its minor units.
    #[avro(name = "ReportingRevenue")]
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
        /// Converted cost of goods sold.
        #[avro(default = 0)]
        pub cogs: i64,
        /// `net` minus `cogs`, when every paid order's margin is known and
        /// converted.
        pub gross_margin: Option<i64>,
        /// Amounts for which no usable exchange rate was found, by figure name
        /// and then currency code, in minor units. They are kept here rather
        /// than added to the sums above.
        pub unconverted: BTreeMap<String, BTreeMap<String, i64>>,
    }
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
            cogs: r.cogs,
            gross_margin: r.gross_margin,
            unconverted: r
                .unconverted
                .iter()
                .map(|(k, b)| (k.clone(), bag(b)))
                .collect(),
        }
    }
}

avro_view! {
    /// A support ticket.
    #[avro(name = "TicketSummary")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TicketView {
        /// Help desk, e.g. `zendesk`.
        pub provider: String,
        /// The help desk's ticket id.
        pub ticket_id: String,
        /// Ticket status: `new`, `open`, `pending`, `on_hold`, `solved`,
        /// `closed` (an open set).
        pub status: String,
        /// Contact reasons (`shipping`, `refund`, ...).
        pub reasons: Vec<String>,
        /// When the ticket was opened.
        #[avro(timestamp_millis)]
        pub created_at: i64,
        /// Seconds until the first agent response, once answered.
        pub first_response_secs: Option<i64>,
        /// Satisfaction score from 1 to 5, once rated.
        pub csat: Option<i32>,
    }
}

avro_view! {
    /// The Customer 360 as typed fields: everything storefold knows of one
    /// customer. Its tenant, id, email, phone and redaction flag are fields of
    /// the projection itself and are not repeated here. Counts are longs;
    /// amounts are longs in minor units next to their ISO 4217 currency code;
    /// times are milliseconds since the Unix epoch.
    #[avro(name = "CustomerView")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CustomerView {
        /// Given name (from the store's customer record, else from the newest
        /// order).
        pub first_name: Option<String>,
        /// Family name.
        pub last_name: Option<String>,
        /// Postal addresses of the store's customer record.
        pub addresses: Vec<AddressView>,
        /// Marketing consent.
        pub consent: ConsentView,
        /// The store's tags on the customer.
        pub tags: Vec<String>,
        /// Every identity value resolved to this customer (personal data:
        /// empty once the customer is redacted).
        pub identities: Vec<IdentityValueView>,
        /// Customer ids merged into this one.
        pub merged: Vec<MergedView>,
        /// Identities other customers claim too, which therefore merged
        /// nothing.
        #[avro(default_empty)]
        pub shared_identities: Vec<SharedIdentityView>,
        /// The operator's merges, splits and blocks of its identities.
        #[avro(default_empty)]
        pub identity_decisions: Vec<IdentityDecisionView>,
        /// The customer's earliest touch.
        pub first_touch: Option<TouchView>,
        /// The customer's newest touch.
        pub last_touch: Option<TouchView>,
        /// Touches folded in (distinct touch ids).
        pub touches: i64,
        /// Touches by campaign parameter.
        pub touch_counts: TouchCountsView,
        /// Orders that count: placed, not test orders, not cancelled unpaid.
        pub orders_count: i64,
        /// The customer's newest orders, oldest first, cut to the configured
        /// length (see `truncated`).
        pub orders: Vec<OrderSummaryView>,
        /// Revenue per currency.
        pub revenue: Vec<CurrencyRevenueView>,
        /// Revenue in the tenant's reporting currency, when it has one.
        pub revenue_reporting: Option<ReportingRevenueView>,
        /// When the first counted order was placed.
        #[avro(timestamp_millis)]
        pub first_order_at: Option<i64>,
        /// When the newest counted order was placed.
        #[avro(timestamp_millis)]
        pub last_order_at: Option<i64>,
        /// The first counted order.
        pub first_order_id: Option<String>,
        /// The newest counted order.
        pub last_order_id: Option<String>,
        /// Returns asked for.
        pub returns: i64,
        /// Returns by reason (`damaged`, `wrong_item`, ...).
        pub return_reasons: BTreeMap<String, i64>,
        /// The newest tickets, cut to the configured length (see
        /// `truncated`).
        pub tickets: Vec<TicketView>,
        /// Tickets not solved or closed.
        pub open_tickets: i64,
        /// Tickets by contact reason.
        pub ticket_reasons: BTreeMap<String, i64>,
        /// Average satisfaction times 100 (450 means 4.5), once any ticket was
        /// rated.
        pub csat_avg_x100: Option<i64>,
        /// Rated tickets.
        pub csat_count: i64,
        /// Disputes opened.
        pub chargebacks: i64,
        /// Disputes lost.
        pub chargebacks_lost: i64,
        /// Segments the customer's figures put it in (`prospect`, `new`,
        /// `repeat`, `vip`, `lapsed`, `refund_heavy`, `chargeback`,
        /// `support_heavy`, `unhappy`, `engaged_prospect`; an open set).
        pub segments: Vec<String>,
        /// The store deleted its customer record.
        pub deleted_at_source: bool,
        /// Time of the customer's earliest event.
        #[avro(timestamp_millis)]
        pub first_seen_at: Option<i64>,
        /// Time of the customer's newest event.
        #[avro(timestamp_millis)]
        pub last_event_at: Option<i64>,
        /// `orders` or `tickets` were cut to their newest entries; every count
        /// and figure above still covers all of them.
        pub truncated: bool,
        /// Entries each cut list left out, by list name.
        pub omitted: BTreeMap<String, i64>,
    }
}

impl From<&Customer> for CustomerView {
    fn from(c: &Customer) -> Self {
        // Every field of the core's Customer 360 is named here, so a field
        // added there fails to compile until it is mapped below (or, for a
        // field of the projection itself, ignored here).
        let Customer {
            tenant: _,
            customer_id: _,
            email: _,
            phone: _,
            redacted: _,
            first_name,
            last_name,
            addresses,
            consent,
            tags,
            identities,
            merged,
            shared_identities,
            identity_decisions,
            first_touch,
            last_touch,
            touches,
            touch_counts,
            orders_count,
            orders,
            revenue,
            revenue_reporting,
            first_order_at,
            last_order_at,
            first_order_id,
            last_order_id,
            returns,
            return_reasons,
            tickets,
            open_tickets,
            ticket_reasons,
            csat_avg_x100,
            csat_count,
            chargebacks,
            chargebacks_lost,
            segments,
            deleted_at_source,
            first_seen_at,
            last_event_at,
            truncated,
            omitted,
        } = c;
        Self {
            first_name: first_name.clone(),
            last_name: last_name.clone(),
            addresses: addresses.iter().map(AddressView::from).collect(),
            consent: ConsentView {
                email_marketing: consent.email_marketing,
                sms_marketing: consent.sms_marketing,
            },
            tags: tags.clone(),
            identities: identities
                .iter()
                .map(|i| IdentityValueView {
                    kind: i.kind.clone(),
                    value: i.value.clone(),
                })
                .collect(),
            merged: merged
                .iter()
                .map(|m| MergedView {
                    merged_id: m.merged_id.clone(),
                    reason: m.reason.clone(),
                    at: opt_millis(m.at),
                    evidence: m.evidence.clone(),
                })
                .collect(),
            shared_identities: shared_identities
                .iter()
                .map(|x| SharedIdentityView {
                    key: x.key.clone(),
                    kind: x.kind.clone(),
                    at: opt_millis(x.at),
                    evidence: x.evidence.clone(),
                })
                .collect(),
            identity_decisions: identity_decisions
                .iter()
                .map(|d| IdentityDecisionView {
                    key: d.key.clone(),
                    other: d.other.clone(),
                    decision: d.decision.clone(),
                    at: epoch_millis(d.at),
                    event_id: d.event_id.clone(),
                })
                .collect(),
            first_touch: first_touch.as_ref().map(TouchView::from),
            last_touch: last_touch.as_ref().map(TouchView::from),
            touches: count(*touches),
            touch_counts: TouchCountsView {
                source: counts(&touch_counts.source.0),
                medium: counts(&touch_counts.medium.0),
                campaign: counts(&touch_counts.campaign.0),
            },
            orders_count: count(*orders_count),
            orders: orders
                .iter()
                .map(|o| OrderSummaryView {
                    order_id: o.order_id.clone(),
                    number: o.number.clone(),
                    status: name(&o.status),
                    total: MoneyView::from(&o.total),
                    created_at: epoch_millis(o.created_at),
                })
                .collect(),
            revenue: revenue
                .iter()
                .map(|r| CurrencyRevenueView {
                    currency: r.currency.code().to_owned(),
                    gross: r.gross,
                    refunded: r.refunded,
                    chargeback_lost: r.chargeback_lost,
                    net: r.net,
                    orders: count(r.orders),
                    aov: r.aov,
                    cogs: r.cogs,
                    gross_margin: r.gross_margin,
                })
                .collect(),
            revenue_reporting: revenue_reporting.as_ref().map(ReportingRevenueView::from),
            first_order_at: opt_millis(*first_order_at),
            last_order_at: opt_millis(*last_order_at),
            first_order_id: first_order_id.clone(),
            last_order_id: last_order_id.clone(),
            returns: count(*returns),
            return_reasons: counts(return_reasons),
            tickets: tickets
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
            open_tickets: count(*open_tickets),
            ticket_reasons: counts(ticket_reasons),
            csat_avg_x100: csat_avg_x100.map(i64::from),
            csat_count: count(*csat_count),
            chargebacks: count(*chargebacks),
            chargebacks_lost: count(*chargebacks_lost),
            segments: segments.clone(),
            deleted_at_source: *deleted_at_source,
            first_seen_at: opt_millis(*first_seen_at),
            last_event_at: opt_millis(*last_event_at),
            truncated: *truncated,
            omitted: counts(omitted),
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

avro_view! {
    /// The order's totals as the store reported them.
    #[avro(name = "Totals")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TotalsView {
        /// Total charged to the customer, in the shop currency.
        pub total: MoneyView,
        /// Before discounts, shipping and tax.
        pub subtotal: Option<MoneyView>,
        /// Discounts.
        pub discounts: Option<MoneyView>,
        /// Shipping.
        pub shipping: Option<MoneyView>,
        /// Tax.
        pub tax: Option<MoneyView>,
        /// The total in the currency the customer saw, when that differs.
        pub presentment_total: Option<MoneyView>,
    }
}

avro_view! {
    /// One line of the order.
    #[avro(name = "LineItem")]
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
        /// What one unit cost the merchant: the SKU's cost in force when the
        /// order was placed; null when none is known.
        pub unit_cost: Option<MoneyView>,
        /// The SKU was out of stock when the order was placed.
        #[avro(default = false)]
        pub backordered: bool,
        /// For a backordered line, the restock time in force when the order
        /// was placed; null when none was given.
        #[avro(timestamp_millis)]
        pub promised_eta: Option<i64>,
        /// For a backordered line, the newest restock time reported since.
        #[avro(timestamp_millis)]
        pub eta: Option<i64>,
    }
}

avro_view! {
    /// The figures converted to the tenant's reporting currency, in its minor
    /// units.
    #[avro(name = "ReportingFigures")]
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
        /// `net` minus `fees`, when every fee is known.
        pub net_after_fees: Option<i64>,
        /// Converted cost of goods sold.
        #[avro(default = 0)]
        pub cogs: i64,
        /// `net` minus `cogs`, when the cost of goods is known and every
        /// amount was converted.
        pub gross_margin: Option<i64>,
        /// Amounts for which no usable exchange rate was found, by figure name
        /// and then currency code, in minor units.
        pub unconverted: BTreeMap<String, BTreeMap<String, i64>>,
    }
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
            cogs: r.cogs,
            gross_margin: r.gross_margin,
            unconverted: r
                .unconverted
                .iter()
                .map(|(k, b)| (k.clone(), bag(b)))
                .collect(),
        }
    }
}

avro_view! {
    /// The order's money figures, summed from the counted lines of its books
    /// (docs/books.md). Each amount is a map from currency code to minor
    /// units.
    #[avro(name = "OrderFigures")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderFiguresView {
        /// Captured money that counts.
        pub paid: BTreeMap<String, i64>,
        /// Where `paid` comes from: `provider`, `store` or `none`.
        pub paid_source: String,
        /// Authorised and not yet captured, voided or released.
        pub authorized: BTreeMap<String, i64>,
        /// Refunds that count (succeeded or pending).
        pub refunded: BTreeMap<String, i64>,
        /// Lost disputes and reversals.
        pub chargeback_lost: BTreeMap<String, i64>,
        /// Disputes still open.
        pub disputed: BTreeMap<String, i64>,
        /// `paid` minus `refunded` minus `chargeback_lost`.
        pub net: BTreeMap<String, i64>,
        /// Processing and dispute fees, in the currencies they were charged
        /// in.
        pub fees: BTreeMap<String, i64>,
        /// Every payment with captured money has a known fee.
        pub fees_known: bool,
        /// `net` minus `fees`; null when unknown (which is not zero).
        pub net_after_fees: Option<BTreeMap<String, i64>>,
        /// Cost of goods sold: the lines' quantities at the unit costs in
        /// force at the order's time, less what refunds put back in stock, in
        /// the currencies the costs are in.
        #[avro(default_empty)]
        pub cogs: BTreeMap<String, i64>,
        /// Every line has a unit cost and the cost of goods counts (the order
        /// is paid for and not cancelled).
        #[avro(default = false)]
        pub cogs_known: bool,
        /// The lines without a known unit cost: their SKU, or `line:<id>` for
        /// a line without one.
        #[avro(default_empty)]
        pub cogs_unknown: Vec<String>,
        /// `net` minus `cogs`; null when unknown (which is not zero).
        pub gross_margin: Option<BTreeMap<String, i64>>,
        /// What payouts settled of the order's money (net of their fees and
        /// of the refunds and disputes they took back), per currency.
        #[avro(default_empty)]
        #[serde(default)]
        pub paid_out: BTreeMap<String, i64>,
        /// The payouts that carried its money, as `provider:payout_id`.
        #[avro(default_empty)]
        #[serde(default)]
        pub payouts: Vec<String>,
        /// The figures in the reporting currency, when the tenant has one.
        pub reporting: Option<ReportingFiguresView>,
    }
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
            cogs: bag(&f.cogs),
            cogs_known: f.cogs_known,
            cogs_unknown: f.cogs_unknown.clone(),
            gross_margin: f.gross_margin.as_ref().map(bag),
            paid_out: bag(&f.paid_out),
            payouts: f.payouts.clone(),
            reporting: f.reporting.as_ref().map(ReportingFiguresView::from),
        }
    }
}

avro_view! {
    /// A ledger amount expressed in the tenant's reporting currency.
    #[avro(name = "Converted")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ConvertedView {
        /// The converted amount, in minor units of the reporting currency.
        pub amount: MoneyView,
        /// Day of the exchange rate applied, as `YYYY-MM-DD`.
        pub rate_date: String,
    }
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

avro_view! {
    /// One line of the order's books: an amount a payment provider or the
    /// store reported, whether a figure counts it, and why (docs/books.md).
    /// The order's figures are the sums of its counted lines.
    #[avro(name = "LedgerEntry")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct LedgerEntryView {
        /// What the line records, as storefold-core's snake_case name:
        /// `authorized`, `captured`, `capture_failed`, `payment_failed`,
        /// `voided`, `released`, `reversed`, `store_received`, `refund`,
        /// `refund_pending`, `refund_failed`, `refund_total_only`,
        /// `store_refund_beyond_provider`, `dispute_opened`,
        /// `dispute_withdrawn`, `dispute_reinstated`, `dispute_lost`,
        /// `dispute_won`, `dispute_merchant_refunded`, `fee`, `dispute_fee`,
        /// `cost_of_goods` (a line's quantity at its unit cost) or `restocked`
        /// (goods a refund put back in stock, taken off the cost of goods).
        /// An open set: readers keep the kinds they do not know.
        pub kind: String,
        /// Who reported the amount (`stripe`, `adyen`, `paypal`, `shopify`,
        /// `woocommerce`, ...).
        pub provider: String,
        /// That provider's id of what the line is about: a payment, capture,
        /// refund, dispute or balance transaction; the SKU for a cost of goods.
        pub reference: String,
        /// Id of the canonical event the amount was taken from (the newest one
        /// when several carried it).
        pub source_event_id: String,
        /// The amount as a magnitude in minor units, with its currency; the
        /// kind gives the direction the money moved. Only a dispute fee that
        /// was handed back is negative.
        pub amount: MoneyView,
        /// When the provider says the movement happened.
        #[avro(timestamp_millis)]
        pub at: i64,
        /// The amount is part of a figure.
        pub counted: bool,
        /// The figure the line goes into, or would go into if it were counted:
        /// `paid`, `authorized`, `refunded`, `chargeback_lost`, `disputed`,
        /// `fees` or `cogs`. Null for a line that belongs to no figure.
        pub figure: Option<String>,
        /// A short sentence saying why the line is counted or left out.
        pub why: String,
        /// The amount in the reporting currency; null when the tenant has none
        /// or no usable rate was found.
        pub converted: Option<ConvertedView>,
    }
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

avro_view! {
    /// One step of a tracking timeline.
    #[avro(name = "Checkpoint")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CheckpointView {
        /// When.
        #[avro(timestamp_millis)]
        pub at: i64,
        /// Shipment status at that step (`label_created`, `in_transit`,
        /// `delivered`, ...).
        pub status: String,
        /// The carrier's words.
        pub message: Option<String>,
        /// Where; erased when the order is redacted.
        pub location: Option<String>,
    }
}

avro_view! {
    /// A shipment: the store's fulfillment merged with the carrier's tracking
    /// of the same parcel.
    #[avro(name = "Shipment")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ShipmentView {
        /// Tracking number (`fulfillment:<id>` for a fulfillment without one).
        pub tracking_number: String,
        /// Carrier name.
        pub carrier: Option<String>,
        /// Status of the newest checkpoint (`label_created`, `in_transit`,
        /// `out_for_delivery`, `delivered`, `exception`, `returned`; an open
        /// set).
        pub status: Option<String>,
        /// Expected delivery.
        #[avro(timestamp_millis)]
        pub estimated_delivery: Option<i64>,
        /// Lines of the order in the parcel.
        pub line_item_ids: Vec<String>,
        /// The tracking timeline, oldest first.
        pub checkpoints: Vec<CheckpointView>,
    }
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

avro_view! {
    /// A return.
    #[avro(name = "Return")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ReturnView {
        /// The provider's return id.
        pub return_id: String,
        /// Who reported it.
        pub provider: String,
        /// Reason (`damaged`, `wrong_item`, ...; an open set).
        pub reason: String,
        /// How it was resolved (`refund`, `exchange`, ...), once resolved.
        pub resolution: Option<String>,
        /// The return was resolved.
        pub resolved: bool,
        /// Lines returned.
        pub line_item_ids: Vec<String>,
        /// Time of the newest report of the return.
        #[avro(timestamp_millis)]
        pub at: i64,
    }
}

avro_view! {
    /// The order as typed fields, as the CRM sees it. Its tenant, id, customer
    /// and status are fields of the projection itself. Amounts are longs in
    /// minor units next to their ISO 4217 currency code (a money map goes from
    /// currency code to minor units); times are milliseconds since the Unix
    /// epoch.
    #[avro(name = "OrderView")]
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct OrderView {
        /// The store's order number, e.g. `#1001`.
        pub number: Option<String>,
        /// When the order was placed; null until the store's order arrived.
        #[avro(timestamp_millis)]
        pub created_at: Option<i64>,
        /// The store's own financial status, kept as reported (the payment
        /// providers' events decide the figures).
        pub financial_status: Option<String>,
        /// The store's fulfillment status.
        pub fulfillment_status: Option<String>,
        /// A test order, never counted in revenue.
        pub test: bool,
        /// Totals; null until the store's order arrived.
        pub totals: Option<TotalsView>,
        /// Order lines.
        pub line_items: Vec<LineItemView>,
        /// Discount codes used.
        pub discount_codes: Vec<String>,
        /// Money figures.
        pub figures: OrderFiguresView,
        /// The order's books: every amount reported for it, counted or not,
        /// from which the figures are summed. Empty in records written before
        /// the ledger was added.
        #[avro(default_empty)]
        #[serde(default)]
        pub ledger: Vec<LedgerEntryView>,
        /// Shipments.
        pub shipments: Vec<ShipmentView>,
        /// Returns.
        pub returns: Vec<ReturnView>,
        /// The customer's first touch as of the order.
        pub first_touch: Option<TouchView>,
        /// The customer's last touch before the order was placed.
        pub last_touch: Option<TouchView>,
        /// Personal data was erased from the order (its figures stay).
        pub redacted: bool,
    }
}

impl From<&storefold_core::engine::OrderView> for OrderView {
    fn from(v: &storefold_core::engine::OrderView) -> Self {
        // Named field by field, like the customer's view: a field added to the
        // core's order view does not compile here until the typed view has it
        // (or says why not).
        let storefold_core::engine::OrderView {
            // The projection's own fields, not repeated in the view.
            tenant: _,
            order_id: _,
            customer_id: _,
            figures,
            ledger,
            shipments,
            touches,
            order,
        } = v;
        let snapshot = order.snapshot.as_ref().map(|s| &s.value);
        let money = |m: &Option<storefold_core::Money>| m.as_ref().map(MoneyView::from);
        let backorder =
            |l: &storefold_core::event::LineItem| l.sku_key().and_then(|k| order.backorders.get(k));
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
                            unit_cost: l
                                .sku_key()
                                .and_then(|k| order.costs.get(k))
                                .map(|c| MoneyView::from(&c.unit_cost)),
                            backordered: backorder(l).is_some(),
                            promised_eta: backorder(l).and_then(|b| b.promised).map(epoch_millis),
                            eta: backorder(l).and_then(|b| b.eta).map(epoch_millis),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            discount_codes: snapshot
                .map(|s| s.discount_codes.clone())
                .unwrap_or_default(),
            figures: OrderFiguresView::from(figures),
            ledger: ledger.iter().map(LedgerEntryView::from).collect(),
            shipments: shipments.iter().map(ShipmentView::from).collect(),
            returns: order
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
            first_touch: touches
                .as_ref()
                .and_then(|t| t.first.as_ref())
                .map(TouchView::from),
            last_touch: touches
                .as_ref()
                .and_then(|t| t.last.as_ref())
                .map(TouchView::from),
            redacted: order.redacted,
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
            cogs: 0,
            gross_margin: None,
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

    /// The schema's field names are the Rust field names (`avro_view!`
    /// generates them), and serde must write the same names: a serde rename
    /// on a view would break the encoding, and fails here.
    #[test]
    fn serde_writes_the_avro_field_names_of_the_views() {
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
