//! The Customer 360, built from a customer's fragments and orders, and its segments.

use super::*;

/// Revenue figures of a customer in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyRevenue {
    pub currency: Currency,
    pub gross: i64,
    pub refunded: i64,
    pub chargeback_lost: i64,
    pub net: i64,
    /// Orders paid in this currency.
    pub orders: u64,
    /// Average order value (gross / orders), minor units, rounded down.
    pub aov: i64,
    /// Cost of goods sold of the orders in this currency.
    #[serde(default)]
    pub cogs: i64,
    /// `net − cogs`, when every order paid in this currency has a known gross
    /// margin; `None` is unknown, not zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_margin: Option<i64>,
}

/// A merged-in customer: its former id and why it merged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MergeRecord {
    pub merged_id: String,
    /// The rule that merged it: `phone`, `external_id`, `anonymous_id`, or for
    /// an email `<source>_customer_id` (the store's customer id it shares).
    pub reason: String,
    /// When the evidence was complete: the newest of its events' times.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<OffsetDateTime>,
    /// The events that showed the identities together, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// An identity of this customer that another customer claims too, so it
/// merged nothing (a phone two people used): its hashed key and kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SharedIdentity {
    /// `ph_<hex>`, `ex_<hex>`, `an_<hex>` (the identity key, no personal data).
    pub key: String,
    /// `phone`, `external_id`, `anonymous_id`.
    pub kind: String,
    /// When the claims below were all seen: from then on it merged nothing
    /// (a customer that had it lost it then, with its guest orders).
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<OffsetDateTime>,
    /// The events that claimed it, by the emails or identities of the
    /// customers that share it, oldest first (at most ten).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// An operator's decision about one of this customer's identities and
/// another identity (`storefold identity merge|split|block`): the latest for
/// that pair. Keys only, no personal data.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The customer's identity: `em_<hex>`, `ph_<hex>`, ...
    pub key: String,
    /// The identity it was merged with or kept apart from.
    pub other: String,
    /// `merge`, `split` or `block`.
    pub decision: String,
    /// The decision's time (the command's `requested_at`).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The command's event id (`operator:identity/split:<command id>`).
    pub event_id: String,
}

/// One order in a customer's list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: OrderId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub status: OrderStatus,
    pub total: Money,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A ticket in a customer's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketSummary {
    pub provider: String,
    pub ticket_id: String,
    pub status: TicketStatus,
    pub reasons: Vec<ReasonCode>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Seconds to the first response, when answered.
    pub first_response_secs: Option<i64>,
    pub csat: Option<u8>,
}

/// The Customer 360: what the CRM sees. Stored with its customer (to publish
/// only changes), so every field may be missing in older state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Customer {
    pub tenant: String,
    pub customer_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub addresses: Vec<Address>,
    pub consent: Consent,
    pub tags: Vec<String>,
    pub identities: Vec<IdentityValue>,
    pub merged: Vec<MergeRecord>,
    /// Identities shared with other customers, which therefore merged nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_identities: Vec<SharedIdentity>,
    /// The operator's merges, splits and blocks of its identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_decisions: Vec<DecisionRecord>,
    pub first_touch: Option<TouchEntry>,
    pub last_touch: Option<TouchEntry>,
    pub touches: u64,
    /// Touch events by UTM source, medium and campaign.
    #[serde(default, skip_serializing_if = "TouchCounts::is_empty")]
    pub touch_counts: TouchCounts,
    pub orders_count: u64,
    pub orders: Vec<OrderSummary>,
    pub revenue: Vec<CurrencyRevenue>,
    /// Revenue in the tenant's reporting currency, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_reporting: Option<ReportingRevenue>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_order_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_order_at: Option<OffsetDateTime>,
    pub first_order_id: Option<String>,
    pub last_order_id: Option<String>,
    pub returns: u64,
    pub return_reasons: BTreeMap<String, u64>,
    pub tickets: Vec<TicketSummary>,
    pub open_tickets: u64,
    pub ticket_reasons: BTreeMap<String, u64>,
    /// Average CSAT ×100 (e.g. 450 = 4.5), when any rating exists.
    pub csat_avg_x100: Option<u32>,
    pub csat_count: u64,
    pub chargebacks: u64,
    pub chargebacks_lost: u64,
    pub segments: Vec<String>,
    pub redacted: bool,
    pub deleted_at_source: bool,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_seen_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_event_at: Option<OffsetDateTime>,
    /// Lists were cut to their newest entries (`orders`, `tickets`); the
    /// figures and counts above still cover everything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// How many entries each cut list left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub omitted: BTreeMap<String, u64>,
}

fn reason_name(r: ReasonCode) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "other".into())
}

impl Customer {
    /// Builds the 360 view from the fragments that resolve to one customer and
    /// the orders placed by it with their books. Pure and order-independent:
    /// inputs are sorted and joined.
    pub fn build(
        tenant: &str,
        anchor: &IdentityKey,
        fragments: &[&Fragment],
        orders: &[(&Order, &Books)],
        merged: Vec<MergeRecord>,
        limits: &Limits,
    ) -> Customer {
        // The customer is erased when its anchor is: a member erased on its own
        // (a phone named in a redaction) loses its data, not the customer's.
        let redacted = fragments.iter().any(|f| f.key == *anchor && f.redacted);
        let mut identities: BTreeSet<IdentityValue> = BTreeSet::new();
        let mut profile: Option<&Reg<Profile>> = None;
        let mut touches: BTreeMap<&str, &TouchEntry> = BTreeMap::new();
        let mut first_touch: Option<&TouchEntry> = None;
        let mut touch_ids: BTreeSet<u64> = BTreeSet::new();
        let mut touch_counts = TouchCounts::default();
        let mut tickets: BTreeMap<&str, &Reg<Ticket>> = BTreeMap::new();
        let mut first_seen: Option<OffsetDateTime> = None;
        let mut last_event: Option<OffsetDateTime> = None;
        for f in fragments {
            identities.extend(f.identities.iter().cloned());
            if let Some(p) = &f.profile
                && profile.is_none_or(|cur| cur.stamp < p.stamp)
            {
                profile = Some(p);
            }
            for t in f.first_touch.iter().chain(f.touches.values()) {
                if first_touch.is_none_or(|cur| t < cur) {
                    first_touch = Some(t);
                }
            }
            touch_ids.extend(f.touch_ids.0.iter().copied());
            touch_counts.absorb(&f.touch_counts, limits.touch_values);
            for (k, t) in &f.touches {
                match touches.get(k.as_str()) {
                    Some(cur) if *cur >= t => {}
                    _ => {
                        touches.insert(k, t);
                    }
                }
            }
            for (k, t) in &f.tickets {
                match tickets.get(k.as_str()) {
                    Some(cur) if cur.stamp >= t.stamp => {}
                    _ => {
                        tickets.insert(k, t);
                    }
                }
            }
            first_seen = match (first_seen, f.first_event_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            last_event = last_event.max(f.last_event_at);
        }
        let mut sorted_orders: Vec<(&Order, &Books)> =
            orders.iter().copied().filter(|(o, _)| o.counts()).collect();
        sorted_orders.sort_by(|a, b| {
            (a.0.created_at(), &a.0.order_id).cmp(&(b.0.created_at(), &b.0.order_id))
        });
        let mut revenue: BTreeMap<Currency, CurrencyRevenue> = BTreeMap::new();
        // Currencies (and the reporting sum) with an order whose margin is unknown.
        let mut margin_unknown: BTreeSet<Currency> = BTreeSet::new();
        let mut reporting_margin_unknown = false;
        let mut reporting: Option<ReportingRevenue> = None;
        let mut summaries = Vec::new();
        let mut counted: Vec<&Order> = Vec::new();
        let mut returns = 0u64;
        let mut return_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut chargebacks = 0u64;
        let mut chargebacks_lost = 0u64;
        for (o, books) in &sorted_orders {
            let Some(snap) = &o.snapshot else { continue };
            let s = &snap.value;
            last_event = last_event.max(o.last_event_at);
            let figures = &books.figures;
            summaries.push(OrderSummary {
                order_id: o.order_id.clone(),
                number: s.number.clone(),
                status: s.status,
                total: s.totals.total,
                created_at: s.created_at,
            });
            for r in o.returns.values() {
                returns += 1;
                *return_reasons.entry(reason_name(r.reason())).or_default() += 1;
            }
            for e in &books.entries {
                match e.kind {
                    EntryKind::DisputeOpened => chargebacks += 1,
                    EntryKind::DisputeLost => chargebacks_lost += 1,
                    _ => {}
                }
            }
            let cancelled_unpaid = matches!(s.status, OrderStatus::Cancelled | OrderStatus::Failed)
                && figures.paid.is_empty();
            if cancelled_unpaid {
                continue;
            }
            counted.push(o);
            fn slot(
                revenue: &mut BTreeMap<Currency, CurrencyRevenue>,
                c: Currency,
            ) -> &mut CurrencyRevenue {
                revenue.entry(c).or_insert(CurrencyRevenue {
                    currency: c,
                    gross: 0,
                    refunded: 0,
                    chargeback_lost: 0,
                    net: 0,
                    orders: 0,
                    aov: 0,
                    cogs: 0,
                    gross_margin: None,
                })
            }
            for m in figures.cogs.iter() {
                let e = slot(&mut revenue, m.currency);
                e.cogs = e.cogs.saturating_add(m.minor);
            }
            if figures.gross_margin.is_none() {
                margin_unknown.extend(figures.paid.iter().map(|m| m.currency));
                margin_unknown.extend(figures.cogs.iter().map(|m| m.currency));
                reporting_margin_unknown |= !figures.paid.is_empty();
            }
            if figures
                .reporting
                .as_ref()
                .is_some_and(|r| r.gross_margin.is_none())
            {
                reporting_margin_unknown |= !figures.paid.is_empty();
            }
            for m in figures.paid.iter() {
                let e = slot(&mut revenue, m.currency);
                e.gross = e.gross.saturating_add(m.minor);
                if m.minor > 0 {
                    e.orders += 1;
                }
            }
            for m in figures.refunded.iter() {
                let e = slot(&mut revenue, m.currency);
                e.refunded = e.refunded.saturating_add(m.minor);
            }
            for m in figures.chargeback_lost.iter() {
                let e = slot(&mut revenue, m.currency);
                e.chargeback_lost = e.chargeback_lost.saturating_add(m.minor);
            }
            if let Some(rf) = &figures.reporting {
                let r = reporting.get_or_insert_with(|| ReportingRevenue {
                    currency: rf.currency,
                    gross: 0,
                    refunded: 0,
                    chargeback_lost: 0,
                    net: 0,
                    fees: 0,
                    cogs: 0,
                    gross_margin: None,
                    unconverted: BTreeMap::new(),
                });
                r.cogs = r.cogs.saturating_add(rf.cogs);
                r.gross = r.gross.saturating_add(rf.paid);
                r.refunded = r.refunded.saturating_add(rf.refunded);
                r.chargeback_lost = r.chargeback_lost.saturating_add(rf.chargeback_lost);
                r.fees = r.fees.saturating_add(rf.fees);
                for (fig, bag) in &rf.unconverted {
                    let slot = r.unconverted.entry(fig.clone()).or_default();
                    for m in bag.iter() {
                        slot.add(m);
                    }
                }
            }
        }
        if let Some(r) = &mut reporting {
            r.net = r.gross - r.refunded - r.chargeback_lost;
            r.gross_margin = (!reporting_margin_unknown).then_some(r.net - r.cogs);
        }
        let revenue: Vec<CurrencyRevenue> = revenue
            .into_values()
            .map(|mut e| {
                e.net = e.gross - e.refunded - e.chargeback_lost;
                e.gross_margin = (!margin_unknown.contains(&e.currency)).then_some(e.net - e.cogs);
                e.aov = if e.orders > 0 {
                    e.gross / e.orders as i64
                } else {
                    0
                };
                e
            })
            .collect();
        let first = counted.first();
        let last = counted.last();
        let mut ticket_list = Vec::new();
        let mut ticket_reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut csat_sum = 0u32;
        let mut csat_count = 0u64;
        let mut open_tickets = 0u64;
        for t in tickets.values() {
            let v = &t.value;
            if v.status.is_open() {
                open_tickets += 1;
            }
            for r in &v.reasons {
                *ticket_reasons.entry(reason_name(*r)).or_default() += 1;
            }
            if let Some(c) = v.csat {
                csat_sum += u32::from(c.score);
                csat_count += 1;
            }
            ticket_list.push(TicketSummary {
                provider: v.provider.clone(),
                ticket_id: v.ticket_id.clone(),
                status: v.status,
                reasons: v.reasons.clone(),
                created_at: v.created_at,
                first_response_secs: v
                    .first_response_at
                    .map(|r| (r - v.created_at).whole_seconds()),
                csat: v.csat.map(|c| c.score),
            });
        }
        let touch_list: Vec<&TouchEntry> = {
            let mut v: Vec<&TouchEntry> = touches.values().copied().collect();
            v.sort();
            v
        };
        let touch_count = (touch_ids.len() as u64).max(touch_list.len() as u64);
        // Lists are cut to their newest entries; everything above counted all.
        let mut omitted: BTreeMap<String, u64> = BTreeMap::new();
        let listed = limits.listed_orders.max(1);
        if summaries.len() > listed {
            let cut = summaries.len() - listed;
            summaries.drain(..cut);
            omitted.insert("orders".into(), cut as u64);
        }
        let listed = limits.tickets.max(1);
        if ticket_list.len() > listed {
            ticket_list.sort_by(|a, b| {
                (a.created_at, &a.provider, &a.ticket_id).cmp(&(
                    b.created_at,
                    &b.provider,
                    &b.ticket_id,
                ))
            });
            let cut = ticket_list.len() - listed;
            ticket_list.drain(..cut);
            omitted.insert("tickets".into(), cut as u64);
        }
        let email = identities
            .iter()
            .find(|i| i.kind == "email")
            .map(|i| i.value.clone());
        let phone = identities
            .iter()
            .find(|i| i.kind == "phone")
            .map(|i| i.value.clone());
        let (first_name, last_name) = match profile {
            Some(p) => (p.value.first_name.clone(), p.value.last_name.clone()),
            None => {
                // Fall back on the name of the newest order.
                let name = sorted_orders
                    .iter()
                    .rev()
                    .find_map(|(o, _)| o.snapshot.as_ref()?.value.customer_name.clone());
                match name {
                    Some(n) => match n.split_once(' ') {
                        Some((f, l)) => (Some(f.to_string()), Some(l.to_string())),
                        None => (Some(n), None),
                    },
                    None => (None, None),
                }
            }
        };
        let mut c = Customer {
            tenant: tenant.to_string(),
            customer_id: anchor.customer_id().0,
            email,
            phone,
            first_name,
            last_name,
            addresses: profile
                .map(|p| p.value.addresses.clone())
                .unwrap_or_default(),
            consent: profile.map(|p| p.value.consent.clone()).unwrap_or_default(),
            tags: profile.map(|p| p.value.tags.clone()).unwrap_or_default(),
            identities: identities.into_iter().collect(),
            merged,
            shared_identities: Vec::new(),
            identity_decisions: Vec::new(),
            first_touch: first_touch.cloned(),
            last_touch: touch_list.last().map(|t| (*t).clone()),
            touches: touch_count,
            touch_counts,
            orders_count: counted.len() as u64,
            orders: summaries,
            revenue,
            revenue_reporting: reporting,
            first_order_at: first.and_then(|o| o.created_at()),
            last_order_at: last.and_then(|o| o.created_at()),
            first_order_id: first.map(|o| o.order_id.clone()),
            last_order_id: last.map(|o| o.order_id.clone()),
            returns,
            return_reasons,
            tickets: ticket_list,
            open_tickets,
            ticket_reasons,
            csat_avg_x100: (csat_count > 0).then(|| csat_sum * 100 / csat_count as u32),
            csat_count,
            chargebacks,
            chargebacks_lost,
            segments: Vec::new(),
            redacted,
            deleted_at_source: profile.is_some_and(|p| p.value.deleted),
            first_seen_at: first_seen,
            last_event_at: last_event,
            truncated: !omitted.is_empty(),
            omitted,
        };
        if redacted {
            c.email = None;
            c.phone = None;
            c.first_name = None;
            c.last_name = None;
            c.addresses.clear();
            c.tags.clear();
            c.identities.clear();
        }
        c.segments = segments(&c);
        c
    }
}

/// Every segment [`segments`] can give, in the order it gives them (a CRM's
/// options for the segments property).
pub const SEGMENTS: [&str; 10] = [
    "prospect",
    "new",
    "repeat",
    "vip",
    "lapsed",
    "refund_heavy",
    "chargeback",
    "support_heavy",
    "unhappy",
    "engaged_prospect",
];

/// Segments from the customer's own figures and event times (never the clock).
pub fn segments(c: &Customer) -> Vec<String> {
    let mut s = Vec::new();
    match c.orders_count {
        0 => s.push("prospect"),
        1 => s.push("new"),
        _ => s.push("repeat"),
    }
    let vip_net = c.revenue.iter().any(|r| {
        let unit = 10i64.pow(u32::from(r.currency.exponent()));
        r.net >= 1000 * unit
    });
    if c.orders_count >= 5 || vip_net {
        s.push("vip");
    }
    if let (Some(last_order), Some(last_event)) = (c.last_order_at, c.last_event_at)
        && last_event - last_order >= time::Duration::days(120)
    {
        s.push("lapsed");
    }
    if c.revenue
        .iter()
        .any(|r| r.gross > 0 && r.refunded.saturating_mul(2) >= r.gross)
    {
        s.push("refund_heavy");
    }
    if c.chargebacks > 0 {
        s.push("chargeback");
    }
    if c.tickets.len() >= 3 {
        s.push("support_heavy");
    }
    if c.csat_avg_x100.is_some_and(|a| a <= 200) {
        s.push("unhappy");
    }
    if c.touches > 0 && c.orders_count == 0 {
        s.push("engaged_prospect");
    }
    debug_assert!(s.iter().all(|x| SEGMENTS.contains(x)), "{s:?}");
    s.into_iter().map(str::to_string).collect()
}
