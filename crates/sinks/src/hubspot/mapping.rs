//! storefold's projections as HubSpot property values.
//!
//! Properties are read from the projections' typed views
//! ([`CustomerProjection::customer_view`], [`OrderProjection::order_view`]):
//! renaming a view field breaks this file's build, not a CRM property at run
//! time. A record written before the typed views is read from its JSON
//! document into the same types.
//!
//! HubSpot takes every property value as a string (CRM v3 objects API):
//! - number properties: a decimal string. Money is integer minor units in
//!   storefold; it is written with the currency's exponent (USD 2, JPY 0, KWD 3),
//!   never through a float: 40994 USD is `"409.94"`.
//! - date properties: "must be set to midnight UTC for the date you want", as
//!   milliseconds since the epoch (HubSpot, "How should timestamps be formatted
//!   for HubSpot's APIs?"). storefold's order dates become the UTC midnight of
//!   their UTC day.
//! - datetime properties: any millisecond timestamp.
//! - multiple-checkbox enumerations: the options separated by `;`.

use std::collections::BTreeMap;

use super::HubSpotSinkConfig;
use storefold_codec::{
    CurrencyRevenueView, CustomerProjection, CustomerView, MoneyView, OrderProjection, OrderView,
    TouchView, Trigger, UtmView,
};
use storefold_core::{Currency, Money};
use time::OffsetDateTime;

/// How a storefold field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string as it is.
    Text,
    /// A decimal number (money with its currency's exponent).
    Number,
    /// Midnight UTC of the day, milliseconds since the epoch.
    Date,
    /// Milliseconds since the epoch.
    DateTime,
    /// A multiple-checkbox enumeration: options joined with `;`.
    Multi,
}

/// The storefold fields a contact property can be mapped from (the keys of
/// `[sinks.hubspot.contact_properties]`), with their kind and default property.
///
/// Money fields are in the customer's primary currency: the one most of the
/// customer's paid orders are in (ties: the larger gross, then the code), since
/// a HubSpot number property holds one amount and currencies are never summed.
pub const CONTACT_FIELDS: &[(&str, FieldKind, Option<&str>)] = &[
    ("first_name", FieldKind::Text, Some("firstname")),
    ("last_name", FieldKind::Text, Some("lastname")),
    ("phone", FieldKind::Text, Some("phone")),
    (
        "customer_id",
        FieldKind::Text,
        Some("storefold_customer_id"),
    ),
    ("tenant", FieldKind::Text, None),
    (
        "lifetime_value",
        FieldKind::Number,
        Some("storefold_lifetime_value"),
    ),
    ("gross_revenue", FieldKind::Number, None),
    ("refunded_amount", FieldKind::Number, None),
    ("average_order_value", FieldKind::Number, None),
    ("currency", FieldKind::Text, Some("storefold_currency")),
    (
        "orders_count",
        FieldKind::Number,
        Some("storefold_orders_count"),
    ),
    ("first_order_date", FieldKind::Date, None),
    (
        "last_order_date",
        FieldKind::Date,
        Some("storefold_last_order_date"),
    ),
    (
        "first_utm_source",
        FieldKind::Text,
        Some("storefold_first_utm_source"),
    ),
    ("first_utm_medium", FieldKind::Text, None),
    ("first_utm_campaign", FieldKind::Text, None),
    (
        "last_utm_source",
        FieldKind::Text,
        Some("storefold_last_utm_source"),
    ),
    ("last_utm_medium", FieldKind::Text, None),
    ("last_utm_campaign", FieldKind::Text, None),
    (
        "open_tickets",
        FieldKind::Number,
        Some("storefold_open_tickets"),
    ),
    (
        "chargebacks",
        FieldKind::Number,
        Some("storefold_chargebacks"),
    ),
    ("returns", FieldKind::Number, None),
    ("csat", FieldKind::Number, None),
    ("segments", FieldKind::Multi, Some("storefold_segments")),
    (
        "last_trigger",
        FieldKind::Text,
        Some("storefold_last_trigger"),
    ),
    ("last_trigger_at", FieldKind::DateTime, None),
];

/// The storefold fields a deal property can be mapped from (the keys of
/// `[sinks.hubspot.deal_properties]`), with their kind and default property.
/// `stage` is the order status translated by `deal_stages`; `pipeline` is
/// `deal_pipeline`. Amounts are in the order's currency.
pub const DEAL_FIELDS: &[(&str, FieldKind, Option<&str>)] = &[
    ("name", FieldKind::Text, Some("dealname")),
    ("amount", FieldKind::Number, Some("amount")),
    ("currency", FieldKind::Text, Some("storefold_currency")),
    ("stage", FieldKind::Text, Some("dealstage")),
    ("pipeline", FieldKind::Text, Some("pipeline")),
    ("close_date", FieldKind::DateTime, Some("closedate")),
    ("status", FieldKind::Text, Some("storefold_order_status")),
    ("order_number", FieldKind::Text, None),
    ("customer_id", FieldKind::Text, None),
    ("tenant", FieldKind::Text, None),
    ("net_amount", FieldKind::Number, None),
    ("refunded_amount", FieldKind::Number, None),
];

/// Default stages of HubSpot's default sales pipeline (internal ids).
const DEFAULT_STAGES: &[(&str, &str)] = &[
    ("pending", "contractsent"),
    ("on_hold", "contractsent"),
    ("open", "closedwon"),
    ("completed", "closedwon"),
    ("cancelled", "closedlost"),
    ("refunded", "closedlost"),
    ("failed", "closedlost"),
];
/// Stage of an order whose status is not known yet (no store snapshot).
const FALLBACK_STAGE: &str = "appointmentscheduled";

/// Which storefold field goes to which HubSpot property.
#[derive(Debug, Clone)]
pub struct Mapping {
    contact: Vec<(&'static str, FieldKind, String)>,
    deal: Vec<(&'static str, FieldKind, String)>,
    stages: BTreeMap<String, String>,
    pipeline: String,
}

fn resolve(
    table: &'static [(&'static str, FieldKind, Option<&'static str>)],
    configured: &BTreeMap<String, String>,
    section: &str,
) -> Result<Vec<(&'static str, FieldKind, String)>, String> {
    if configured.is_empty() {
        return Ok(table
            .iter()
            .filter_map(|(f, k, d)| d.map(|d| (*f, *k, d.to_string())))
            .collect());
    }
    let mut out = Vec::new();
    for (field, property) in configured {
        let Some((f, k, _)) = table.iter().find(|(f, _, _)| *f == field.as_str()) else {
            let known: Vec<&str> = table.iter().map(|(f, _, _)| *f).collect();
            return Err(format!(
                "sinks.hubspot.{section}: unknown storefold field {field:?} (known: {})",
                known.join(", ")
            ));
        };
        if property.trim().is_empty() {
            return Err(format!(
                "sinks.hubspot.{section}.{field}: empty HubSpot property name"
            ));
        }
        out.push((*f, *k, property.clone()));
    }
    Ok(out)
}

impl Mapping {
    /// The mapping of `cfg`: its `contact_properties` and `deal_properties`, or
    /// the defaults of [`CONTACT_FIELDS`] and [`DEAL_FIELDS`] where a map is empty.
    pub fn new(cfg: &HubSpotSinkConfig) -> Result<Self, String> {
        let contact = resolve(
            CONTACT_FIELDS,
            &cfg.contact_properties,
            "contact_properties",
        )?;
        let deal = resolve(DEAL_FIELDS, &cfg.deal_properties, "deal_properties")?;
        if deal.iter().any(|(_, _, p)| *p == cfg.order_id_property) {
            return Err(format!(
                "sinks.hubspot.deal_properties maps a field to {:?}, the order id property",
                cfg.order_id_property
            ));
        }
        if contact.iter().any(|(_, _, p)| p == "email") {
            return Err(
                "sinks.hubspot.contact_properties: `email` is the contact's id, not a mapped field"
                    .into(),
            );
        }
        let mut stages: BTreeMap<String, String> = DEFAULT_STAGES
            .iter()
            .map(|(s, d)| (s.to_string(), d.to_string()))
            .collect();
        stages.extend(cfg.deal_stages.clone());
        Ok(Self {
            contact,
            deal,
            stages,
            pipeline: cfg.deal_pipeline.clone(),
        })
    }

    /// The HubSpot property a contact field is mapped to, if any.
    pub fn contact_property(&self, field: &str) -> Option<&str> {
        self.contact
            .iter()
            .find(|(f, _, _)| *f == field)
            .map(|(_, _, p)| p.as_str())
    }

    /// Contact properties of a customer projection (without the trigger fields).
    pub fn contact(&self, c: &CustomerProjection) -> BTreeMap<String, String> {
        let view = c.customer_view();
        let v = view.as_deref();
        let primary = v.and_then(primary_revenue);
        let mut out = BTreeMap::new();
        for (field, kind, property) in &self.contact {
            let value = match *field {
                "first_name" => v.and_then(|v| text(&v.first_name)),
                "last_name" => v.and_then(|v| text(&v.last_name)),
                "phone" => c.phone.clone(),
                "customer_id" => Some(c.customer_id.clone()),
                "tenant" => Some(c.tenant.clone()),
                "lifetime_value" => primary.map(|r| amount(r, r.net)),
                "gross_revenue" => primary.map(|r| amount(r, r.gross)),
                "refunded_amount" => primary.map(|r| amount(r, r.refunded)),
                "average_order_value" => primary.map(|r| amount(r, r.aov)),
                "currency" => primary.map(|r| r.currency.clone()),
                "orders_count" => v.map(|v| v.orders_count.to_string()),
                "first_order_date" => v.and_then(|v| v.first_order_at).and_then(midnight_of),
                "last_order_date" => v.and_then(|v| v.last_order_at).and_then(midnight_of),
                "first_utm_source" => utm(v, |v| &v.first_touch, |u| &u.source),
                "first_utm_medium" => utm(v, |v| &v.first_touch, |u| &u.medium),
                "first_utm_campaign" => utm(v, |v| &v.first_touch, |u| &u.campaign),
                "last_utm_source" => utm(v, |v| &v.last_touch, |u| &u.source),
                "last_utm_medium" => utm(v, |v| &v.last_touch, |u| &u.medium),
                "last_utm_campaign" => utm(v, |v| &v.last_touch, |u| &u.campaign),
                "open_tickets" => v.map(|v| v.open_tickets.to_string()),
                "chargebacks" => v.map(|v| v.chargebacks.to_string()),
                "returns" => v.map(|v| v.returns.to_string()),
                "csat" => v.and_then(|v| v.csat_avg_x100).map(|x| decimal(x, 2)),
                // The full current set: an empty string clears the property.
                "segments" => v.map(|v| v.segments.join(";")),
                // Filled from triggers, see `trigger`.
                _ => None,
            };
            debug_assert!(*kind != FieldKind::Date || value.as_deref().is_none_or(is_digits));
            if let Some(v) = value {
                out.insert(property.clone(), v);
            }
        }
        out
    }

    /// Contact properties set by a trigger (`last_trigger`, `last_trigger_at`).
    pub fn trigger(&self, t: &Trigger) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (field, _, property) in &self.contact {
            match *field {
                "last_trigger" => {
                    out.insert(property.clone(), t.kind.clone());
                }
                "last_trigger_at" => {
                    out.insert(property.clone(), t.occurred_at.to_string());
                }
                _ => {}
            }
        }
        out
    }

    /// Deal properties of an order projection. None is personal data: the name
    /// is `Order <number>` (the store's order number, never the customer's
    /// name), the rest figures, status and ids; a redacted order's
    /// `customer_id` is cleared.
    pub fn deal(&self, o: &OrderProjection) -> BTreeMap<String, String> {
        let view = o.order_view();
        let v = view.as_deref();
        let total = v.and_then(deal_total);
        let number = v.and_then(|v| v.number.clone());
        let redacted = v.is_some_and(|v| v.redacted);
        let mut out = BTreeMap::new();
        for (field, _, property) in &self.deal {
            let value = match *field {
                "name" => Some(format!(
                    "Order {}",
                    number.as_deref().unwrap_or(&o.order_id)
                )),
                "amount" => total.map(|m| m.to_decimal_string()),
                "currency" => total.map(|m| m.currency.code().to_string()),
                "stage" => Some(
                    self.stages
                        .get(&o.status)
                        .cloned()
                        .unwrap_or_else(|| FALLBACK_STAGE.to_string()),
                ),
                "pipeline" => Some(self.pipeline.clone()),
                "close_date" => v
                    .and_then(|v| v.created_at)
                    .and_then(from_millis)
                    .map(datetime_ms),
                "status" => Some(o.status.clone()),
                "order_number" => number.clone(),
                // A redacted order keeps no link to the erased customer: the
                // empty string clears what an earlier version set.
                "customer_id" if redacted => Some(String::new()),
                "customer_id" => o.customer_id.clone(),
                "tenant" => Some(o.tenant.clone()),
                "net_amount" => v.zip(total).map(|(v, t)| bag(&v.figures.net, t.currency)),
                "refunded_amount" => v
                    .zip(total)
                    .map(|(v, t)| bag(&v.figures.refunded, t.currency)),
                _ => None,
            };
            if let Some(v) = value {
                out.insert(property.clone(), v);
            }
        }
        out
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

fn text(s: &Option<String>) -> Option<String> {
    s.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// A UTM parameter of the first or last touch.
fn utm(
    v: Option<&CustomerView>,
    touch: impl Fn(&CustomerView) -> &Option<TouchView>,
    param: impl Fn(&UtmView) -> &Option<String>,
) -> Option<String> {
    text(param(&touch(v?).as_ref()?.utm))
}

fn from_millis(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn midnight_of(ms: i64) -> Option<String> {
    from_millis(ms).map(midnight_ms)
}

/// Milliseconds since the epoch of the UTC midnight starting `t`'s UTC day.
pub fn midnight_ms(t: OffsetDateTime) -> String {
    let day = t.to_offset(time::UtcOffset::UTC).date();
    let midnight = day.midnight().assume_utc();
    (midnight.unix_timestamp() * 1000).to_string()
}

/// Milliseconds since the epoch.
pub fn datetime_ms(t: OffsetDateTime) -> String {
    ((t.unix_timestamp_nanos() / 1_000_000) as i64).to_string()
}

/// `minor` units with `exponent` decimals, exactly (`decimal(-1230, 2)` is `-12.30`).
pub use storefold_core::money::decimal_string as decimal;

fn money(m: &MoneyView) -> Option<Money> {
    let currency = Currency::from_code(&m.currency).ok()?;
    Some(Money::new(m.minor, currency))
}

/// The deal's amount: the order total in the currency its money is counted in.
/// A Shopify order placed in another currency than the shop's has its money in
/// the customer's (presentment) currency: the deal follows the money, so that
/// its net and refunded amounts are in the same currency as its amount.
fn deal_total(v: &OrderView) -> Option<Money> {
    let totals = v.totals.as_ref();
    let shop = totals.and_then(|t| money(&t.total));
    let presentment = totals
        .and_then(|t| t.presentment_total.as_ref())
        .and_then(money);
    // The currency with the most money paid, else the one with any figure.
    let paid = v
        .figures
        .paid
        .iter()
        .filter_map(|(c, m)| Some((*m, Currency::from_code(c).ok()?)))
        .max()
        .map(|(_, c)| c);
    match (paid, presentment, shop) {
        (Some(c), Some(p), _) if p.currency == c => Some(p),
        (Some(c), _, Some(s)) if s.currency == c => Some(s),
        (Some(c), _, _) => Some(Money::new(
            v.figures.paid.get(c.code()).copied().unwrap_or(0),
            c,
        )),
        (None, _, s) => s,
    }
}

/// The amount of `currency` in a money map (`{"USD": 1234}`), zero when absent.
fn bag(b: &BTreeMap<String, i64>, currency: Currency) -> String {
    let minor = b.get(currency.code()).copied().unwrap_or(0);
    Money::new(minor, currency).to_decimal_string()
}

/// An amount of the revenue row's currency, as a decimal string.
fn amount(r: &CurrencyRevenueView, minor: i64) -> String {
    match Currency::from_code(&r.currency) {
        Ok(c) => Money::new(minor, c).to_decimal_string(),
        // A code this build does not know: the minor units as they are.
        Err(_) => minor.to_string(),
    }
}

/// The currency most of the customer's orders were paid in.
fn primary_revenue(v: &CustomerView) -> Option<&CurrencyRevenueView> {
    v.revenue
        .iter()
        .filter(|r| Currency::from_code(&r.currency).is_ok())
        .max_by(|a, b| {
            (a.orders, a.gross)
                .cmp(&(b.orders, b.gross))
                // Ties: the alphabetically first code wins.
                .then_with(|| b.currency.cmp(&a.currency))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use storefold_codec::{OrderFiguresView, TotalsView};
    use time::format_description::well_known::Rfc3339;

    fn cfg(toml_contact: &[(&str, &str)]) -> HubSpotSinkConfig {
        let mut c: HubSpotSinkConfig = serde_json::from_value(json!({"token": "t"})).unwrap();
        c.contact_properties = toml_contact
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        c
    }

    fn customer(mut doc: Value) -> CustomerProjection {
        doc["tenant"] = json!("acme");
        doc["customer_id"] = json!("cus_em_1");
        CustomerProjection {
            tenant: "acme".into(),
            customer_id: "cus_em_1".into(),
            generation: 1,
            version: 3,
            email: Some("a@example.com".into()),
            phone: None,
            redacted: false,
            merged_into: None,
            updated_at: 0,
            doc: doc.to_string(),
            view: CustomerView::from_doc(&doc.to_string()),
        }
    }

    fn usd(minor: i64) -> MoneyView {
        MoneyView {
            minor,
            currency: "USD".into(),
        }
    }

    fn order(status: &str, view: OrderView) -> OrderProjection {
        OrderProjection {
            tenant: "acme".into(),
            order_id: "shopify:1".into(),
            customer_id: Some("cus_em_1".into()),
            generation: 1,
            version: 2,
            status: status.into(),
            updated_at: 0,
            doc: "{}".into(),
            view: Some(view),
        }
    }

    fn order_view(totals: TotalsView, created_at: &str) -> OrderView {
        OrderView {
            number: None,
            created_at: Some(
                OffsetDateTime::parse(created_at, &Rfc3339)
                    .unwrap()
                    .unix_timestamp()
                    * 1000,
            ),
            financial_status: None,
            fulfillment_status: None,
            test: false,
            totals: Some(totals),
            line_items: vec![],
            discount_codes: vec![],
            ledger: vec![],
            figures: OrderFiguresView {
                paid: BTreeMap::new(),
                paid_source: "none".into(),
                authorized: BTreeMap::new(),
                refunded: BTreeMap::new(),
                chargeback_lost: BTreeMap::new(),
                disputed: BTreeMap::new(),
                net: BTreeMap::new(),
                fees: BTreeMap::new(),
                fees_known: false,
                net_after_fees: None,
                cogs: BTreeMap::new(),
                cogs_known: false,
                cogs_unknown: vec![],
                gross_margin: None,
                paid_out: BTreeMap::new(),
                payouts: vec![],
                reporting: None,
            },
            shipments: vec![],
            returns: vec![],
            first_touch: None,
            last_touch: None,
            redacted: false,
        }
    }

    fn totals(total: MoneyView, presentment_total: Option<MoneyView>) -> TotalsView {
        TotalsView {
            total,
            subtotal: None,
            discounts: None,
            shipping: None,
            tax: None,
            presentment_total,
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(40994, 2), "409.94");
        assert_eq!(decimal(-1230, 2), "-12.30");
        assert_eq!(decimal(5, 2), "0.05");
        assert_eq!(decimal(1000, 0), "1000");
        assert_eq!(decimal(1250, 3), "1.250");
        assert_eq!(decimal(i64::MIN, 2), "-92233720368547758.08");
    }

    #[test]
    fn dates_are_utc_midnight_milliseconds() {
        let t = OffsetDateTime::parse("2015-05-01T23:30:00-02:00", &Rfc3339).unwrap();
        // 2015-05-02T01:30Z: its UTC day is May 2.
        assert_eq!(midnight_ms(t), "1430524800000");
        let t = OffsetDateTime::parse("2015-04-02T18:02:46Z", &Rfc3339).unwrap();
        assert_eq!(datetime_ms(t), "1427997766000");
    }

    #[test]
    fn customer_fields_use_the_primary_currency() {
        let m = Mapping::new(&cfg(&[])).unwrap();
        let doc = json!({
            "first_name": "Ada", "last_name": null, "orders_count": 3,
            "revenue": [
                {"currency": "JPY", "gross": 5000, "refunded": 0, "chargeback_lost": 0, "net": 5000, "orders": 1, "aov": 5000},
                {"currency": "KWD", "gross": 12500, "refunded": 250, "chargeback_lost": 0, "net": 12250, "orders": 2, "aov": 6250}
            ],
            "last_order_at": "2024-03-05T10:00:00Z",
            "first_touch": {"at": "2024-01-05T10:00:00Z", "touch_id": "t1", "utm": {"source": "google"}},
            "last_touch": {"at": "2024-03-01T10:00:00Z", "touch_id": "t2", "utm": {"source": "newsletter"}},
            "open_tickets": 1, "chargebacks": 0, "segments": ["vip", "repeat"]
        });
        let typed = customer(doc);
        assert!(typed.view.is_some());
        let p = m.contact(&typed);
        // A record written before the typed view reads the same from its doc.
        let older = CustomerProjection {
            view: None,
            ..typed.clone()
        };
        assert_eq!(m.contact(&older), p);
        assert_eq!(p["firstname"], "Ada");
        assert!(!p.contains_key("lastname"));
        assert_eq!(p["storefold_lifetime_value"], "12.250");
        assert_eq!(p["storefold_currency"], "KWD");
        assert_eq!(p["storefold_orders_count"], "3");
        assert_eq!(p["storefold_last_order_date"], "1709596800000");
        assert_eq!(p["storefold_first_utm_source"], "google");
        assert_eq!(p["storefold_last_utm_source"], "newsletter");
        assert_eq!(p["storefold_segments"], "vip;repeat");
        assert_eq!(p["storefold_customer_id"], "cus_em_1");
    }

    #[test]
    fn configured_maps_send_only_their_fields_and_refuse_unknown_ones() {
        let m = Mapping::new(&cfg(&[("orders_count", "n_orders")])).unwrap();
        let p = m.contact(&customer(json!({"orders_count": 2, "first_name": "Ada"})));
        assert_eq!(p.len(), 1);
        assert_eq!(p["n_orders"], "2");
        assert!(
            Mapping::new(&cfg(&[("ltv", "x")]))
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn deals_map_status_to_stage_and_total_to_amount() {
        let m = Mapping::new(&cfg(&[])).unwrap();
        let mut v = order_view(totals(usd(40994), None), "2015-04-02T18:02:46Z");
        v.number = Some("#1001".into());
        v.figures.net.insert("USD".into(), 0);
        let o = order("refunded", v);
        let p = m.deal(&o);
        assert_eq!(p["dealname"], "Order #1001");
        assert_eq!(p["amount"], "409.94");
        assert_eq!(p["storefold_currency"], "USD");
        assert_eq!(p["dealstage"], "closedlost");
        assert_eq!(p["pipeline"], "default");
        assert_eq!(p["closedate"], "1427997766000");
        assert_eq!(p["storefold_order_status"], "refunded");
    }

    #[test]
    fn a_redacted_order_s_deal_keeps_no_link_to_its_customer() {
        // Every deal field mapped.
        let mut c = cfg(&[]);
        c.deal_properties = DEAL_FIELDS
            .iter()
            .map(|(f, _, _)| (f.to_string(), format!("p_{f}")))
            .collect();
        let m = Mapping::new(&c).unwrap();
        let mut v = order_view(totals(usd(40994), None), "2015-04-02T18:02:46Z");
        v.number = Some("#1001".into());
        let live = m.deal(&order("open", v.clone()));
        assert_eq!(live["p_customer_id"], "cus_em_1");
        v.redacted = true;
        let erased = m.deal(&order("open", v));
        // Cleared (an empty value clears the property in HubSpot), and no other
        // property carries the customer's id.
        assert_eq!(erased["p_customer_id"], "");
        assert!(
            erased.values().all(|v| !v.contains("cus_em_1")),
            "{erased:?}"
        );
        assert_eq!(erased["p_name"], "Order #1001");
        assert_eq!(erased["p_amount"], "409.94");
    }

    #[test]
    fn a_deal_follows_the_currency_its_money_was_paid_in() {
        // A EUR shop; the customer paid 110.00 USD (the presentment total) and
        // got 30.00 USD back: the deal is 110.00 USD with net 80.00 USD, not a
        // EUR amount with a zero EUR net.
        let mut c = cfg(&[]);
        c.deal_properties = [
            ("net_amount", "net"),
            ("refunded_amount", "refunded"),
            ("amount", "amount"),
            ("currency", "deal_currency_code"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let m = Mapping::new(&c).unwrap();
        let eur = MoneyView {
            minor: 10000,
            currency: "EUR".into(),
        };
        let mut v = order_view(totals(eur, Some(usd(11000))), "2025-03-01T10:00:00Z");
        v.figures.paid.insert("USD".into(), 11000);
        v.figures.refunded.insert("USD".into(), 3000);
        v.figures.net.insert("USD".into(), 8000);
        let o = order("open", v);
        let p = m.deal(&o);
        assert_eq!(p["amount"], "110.00");
        assert_eq!(p["deal_currency_code"], "USD");
        assert_eq!(p["net"], "80.00");
        assert_eq!(p["refunded"], "30.00");
    }
}
