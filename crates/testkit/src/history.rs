//! A seeded, multi-tenant history of raw provider webhooks, and the result the
//! processor must reach from it.
//!
//! [`history`] writes the webhooks a few small shops would receive over some
//! weeks, as the ingest would have stored them ([`RawEvent`]s, in arrival order):
//! Shopify orders, updates, fulfillments, refunds and customers; Stripe charges,
//! partial refunds and disputes for those orders; AfterShip tracking updates;
//! Zendesk and Gorgias tickets; and browser touches from the shops' own sites.
//! Bodies are the smallest JSON each mapper accepts (a few hundred bytes), not
//! full provider payloads, so that large histories stay cheap to store and encode.
//!
//! The history is realistic in the ways that matter to the fold: webhooks arrive
//! a little out of order, some are delivered twice, some Stripe and AfterShip
//! events arrive before what they refer to (so the engine parks them and releases
//! them later), visitors become known customers, and guest orders placed with a
//! phone number join the customer that owns that phone. Everything comes from the
//! seed: no clock, no global randomness.
//!
//! [`pure_fold`] is the reference: it maps and folds the raw events in memory, the
//! way the processor does, in one batch.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use storefold_codec::{RawEvent, Verification};
use storefold_core::engine::{Item, StateValue};
use storefold_core::identity::normalize_phone;
use storefold_core::scenario::{CAMPAIGNS, FIRST_NAMES, LAST_NAMES, PRODUCTS, Rng};
use storefold_core::{Engine, MemStore, Outcome};
use storefold_providers::{
    Headers, MapContext, MapOptions, ProviderKind, RawInput, WebhookRequest,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The size and shape of a generated history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySpec {
    /// Number of tenants, named `t000`, `t001`, ... (at least one is made).
    pub tenants: usize,
    /// Customers each tenant knows by email (at least two are made).
    pub customers_per_tenant: usize,
    /// Number of raw events returned, redeliveries included.
    pub events: usize,
    /// Percent of the distinct events that are delivered a second time.
    pub duplicate_pct: u64,
    /// Decides everything else.
    pub seed: u64,
}

impl Default for HistorySpec {
    fn default() -> Self {
        Self {
            tenants: 3,
            customers_per_tenant: 200,
            events: 5000,
            duplicate_pct: 5,
            seed: 7,
        }
    }
}

/// What [`pure_fold`] did with the raw events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldCounts {
    /// Raw events read.
    pub events: u64,
    /// Raw events skipped because the same (tenant, provider, event id) was read
    /// before: the processor's idempotency check.
    pub duplicates: u64,
    /// Raw events the provider mapper refused (nothing of them is folded).
    pub map_errors: u64,
    /// Canonical events the mappers produced.
    pub envelopes: u64,
    /// Envelopes the engine folded into state (`Outcome::Applied`).
    pub applied: u64,
    /// Envelopes the engine found already folded (`Outcome::Duplicate`). The
    /// raw idempotency check catches every redelivery first, so this stays zero
    /// unless two distinct raw events map to the same canonical event id.
    pub unchanged: u64,
    /// Envelopes the engine parked because their order was not known yet.
    pub parked: u64,
    /// `parked`, by the provider of the parked envelope.
    pub parked_by_provider: BTreeMap<String, u64>,
    /// Parked envelopes that a later event released into their order (counted
    /// at the end: parked minus still parked).
    pub released: u64,
    /// Parked envelopes still waiting at the end.
    pub still_parked: u64,
    /// Envelopes the engine rejected (no identity, no order link).
    pub fold_errors: u64,
}

/// The raw events of a history, in the order the processor reads them.
///
/// The result has exactly `spec.events` entries: `events * 100 / (100 +
/// duplicate_pct)` distinct events (the story generated last may be cut short,
/// but never so that a kept event loses what it refers to), and the rest are
/// redeliveries of some of them, further on in the list, with the same event id
/// and the same body. `received_at` never goes backwards along the list.
pub fn history(spec: &HistorySpec) -> Vec<RawEvent> {
    let tenants = spec.tenants.max(1);
    let base_count = spec.events * 100 / (100 + spec.duplicate_pct as usize);
    let dup_count = spec.events - base_count;
    let mut g = Gen::new(spec.seed, tenants, spec.customers_per_tenant.max(2));
    while g.drafts.len() < base_count {
        g.story();
    }
    g.drafts.truncate(base_count);
    let drafts = std::mem::take(&mut g.drafts);
    let order = arrival_order(&mut g.rng, &drafts, dup_count);
    let mut out = Vec::with_capacity(order.len());
    let mut received: i64 = 0;
    for i in order {
        let d = &drafts[i];
        received = (received + 1 + g.rng.below(40) as i64).max(d.arrive);
        out.push(g.finish(d, received));
    }
    out
}

/// Maps and folds `events` the way the processor does, in memory and in one
/// batch: events whose (tenant, provider, event id) was already folded are
/// skipped (an event that failed to map is not remembered, as in the processor);
/// each other event is mapped by its provider with the default [`MapOptions`]
/// and every envelope is applied to one [`Engine`], which is finished into a
/// [`MemStore`] at the end. Events that do not map, and envelopes the engine
/// rejects, are counted and left out.
pub fn pure_fold(events: &[RawEvent]) -> (MemStore, FoldCounts) {
    let options = MapOptions::default();
    let mut store = MemStore::default();
    let mut engine = Engine::new();
    let mut counts = FoldCounts::default();
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    let mut parked: Vec<(String, String)> = Vec::new();
    for raw in events {
        counts.events += 1;
        let Ok(provider) = raw.provider.parse::<ProviderKind>() else {
            counts.map_errors += 1;
            continue;
        };
        let idem = (
            raw.tenant.clone(),
            provider.name().to_string(),
            raw.event_id.clone(),
        );
        if seen.contains(&idem) {
            counts.duplicates += 1;
            continue;
        }
        let headers =
            Headers::from_pairs(raw.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let received_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(raw.received_at) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let ctx = MapContext {
            tenant: &raw.tenant,
            options: &options,
        };
        let input = RawInput {
            topic: &raw.topic,
            event_id: &raw.event_id,
            headers: &headers,
            body: &raw.body,
            received_at,
        };
        let envelopes = match provider.map(&ctx, &input) {
            Ok(e) => e,
            Err(_) => {
                counts.map_errors += 1;
                continue;
            }
        };
        for env in &envelopes {
            counts.envelopes += 1;
            match engine.apply(&store, env) {
                Ok(Outcome::Applied) => counts.applied += 1,
                Ok(Outcome::Duplicate) => counts.unchanged += 1,
                Ok(Outcome::Parked(_)) => {
                    counts.parked += 1;
                    *counts
                        .parked_by_provider
                        .entry(env.provider.clone())
                        .or_default() += 1;
                    parked.push((env.tenant.clone(), env.event_id.clone()));
                }
                Err(_) => counts.fold_errors += 1,
            }
        }
        seen.insert(idem);
    }
    let out = engine.finish(&store);
    store.commit(out.changes);
    let waiting: HashSet<(&str, &str)> = store
        .records
        .iter()
        .filter_map(|(k, v)| match (&k.item, v) {
            (Item::Parked(id), StateValue::Parked(_)) => Some((k.tenant.as_str(), id.as_str())),
            _ => None,
        })
        .collect();
    counts.still_parked = waiting.len() as u64;
    counts.released = parked
        .iter()
        .filter(|(t, e)| !waiting.contains(&(t.as_str(), e.as_str())))
        .count() as u64;
    (store, counts)
}

/// Number of raw events per `provider topic` (e.g. `shopify orders/create`).
pub fn topic_counts(events: &[RawEvent]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry(format!("{} {}", e.provider, e.topic))
            .or_default() += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------

const SHOPIFY_SECRET: &str = "history-shopify-secret";
const STRIPE_SECRET: &str = "whsec_history";
/// 2025-03-03T00:00:00Z.
const EPOCH: i64 = 1_740_960_000;
const DAY: i64 = 86_400;

const PAGES: [&str; 4] = ["/", "/products/tee", "/collections/new", "/products/hoodie"];

/// A tenant's shop.
struct Shop {
    name: String,
    currency: &'static str,
    country: &'static str,
    customers: Vec<Cust>,
    next_number: u64,
}

struct Cust {
    email: String,
    /// E.164.
    phone: Option<String>,
    first: &'static str,
    last: &'static str,
    shopify_id: u64,
    helpdesk_id: u64,
    visitor: String,
    signed_up: bool,
    orders: Vec<OrderRef>,
}

/// A Stripe charge paying a Shopify order.
struct Charge {
    id: String,
    payment_intent: String,
    order_id: u64,
    total: i64,
    currency: String,
}

#[derive(Clone)]
struct OrderRef {
    number: u64,
    at: i64,
}

/// One raw event before it is delivered.
struct Draft {
    tenant: usize,
    provider: ProviderKind,
    topic: &'static str,
    body: Vec<u8>,
    /// Event time, unix seconds.
    at: i64,
    /// When it reaches the ingest, unix milliseconds (before the window shuffle).
    arrive: i64,
    /// Shopify's `X-Shopify-Event-Id`.
    shopify_event: Option<String>,
}

struct Gen {
    rng: Rng,
    salt: u64,
    counter: u64,
    shops: Vec<Shop>,
    drafts: Vec<Draft>,
}

/// SplitMix64's finaliser: a bijection, so distinct counters give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn base36(mut n: u64, len: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![b'0'; len];
    for c in s.iter_mut().rev() {
        *c = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(s).unwrap_or_default()
}

fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Minor units as the decimal string Shopify sends.
fn decimal(minor: i64, currency: &str) -> String {
    if currency == "JPY" {
        minor.to_string()
    } else {
        format!("{}.{:02}", minor / 100, minor % 100)
    }
}

impl Gen {
    fn new(seed: u64, tenants: usize, customers: usize) -> Self {
        let mut rng = Rng::new(seed);
        let salt = rng.next_u64();
        let mut g = Gen {
            rng,
            salt,
            counter: 0,
            shops: Vec::new(),
            drafts: Vec::new(),
        };
        for t in 0..tenants {
            let (currency, country) = match t % 3 {
                0 => ("USD", "US"),
                1 => ("EUR", "DE"),
                _ => ("JPY", "JP"),
            };
            let name = format!("t{t:03}");
            let mut custs: Vec<Cust> = Vec::with_capacity(customers);
            for c in 0..customers {
                let phone = if c > 0 && g.rng.chance(4) {
                    // A household: two customers, one phone (ambiguous, merges nothing).
                    custs[c - 1].phone.clone().or_else(|| g.phone(country))
                } else if g.rng.chance(55) {
                    g.phone(country)
                } else {
                    None
                };
                let visitor = format!("v{}", base36(g.uid(), 10));
                custs.push(Cust {
                    email: format!("c{c}.{}@{name}.example", base36(g.uid() % 1296, 2)),
                    phone,
                    first: FIRST_NAMES[g.rng.below(FIRST_NAMES.len() as u64) as usize],
                    last: LAST_NAMES[g.rng.below(LAST_NAMES.len() as u64) as usize],
                    shopify_id: 7_000_000_000 + t as u64 * 1_000_000 + c as u64,
                    helpdesk_id: 380_000_000 + t as u64 * 1_000_000 + c as u64,
                    visitor,
                    signed_up: false,
                    orders: Vec::new(),
                });
            }
            g.shops.push(Shop {
                name,
                currency,
                country,
                customers: custs,
                next_number: 1001,
            });
        }
        g
    }

    fn uid(&mut self) -> u64 {
        self.counter += 1;
        mix(self.salt ^ self.counter)
    }

    fn uuid(&mut self) -> String {
        let a = self.uid();
        let b = self.uid();
        let h = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    fn stripe_id(&mut self, prefix: &str) -> String {
        let a = self.uid();
        format!("{prefix}_3Q{}", base36(a, 12))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len() as u64) as usize]
    }

    /// A valid phone number of `country`, in E.164.
    fn phone(&mut self, country: &str) -> Option<String> {
        for _ in 0..32 {
            let candidate = match country {
                "US" => format!(
                    "+1{}{}{:04}",
                    self.pick(&[212, 415, 617, 312, 503]),
                    220 + self.rng.below(770),
                    self.rng.below(10_000)
                ),
                "DE" => format!(
                    "+49{}{:07}",
                    self.pick(&[30, 40, 89, 221]),
                    1_000_000 + self.rng.below(8_999_999)
                ),
                _ => format!(
                    "+81{}{:04}{:04}",
                    self.pick(&[3, 6]),
                    1000 + self.rng.below(8999),
                    self.rng.below(10_000)
                ),
            };
            if let Some(p) = normalize_phone(&candidate, None) {
                return Some(p);
            }
        }
        None
    }

    /// Queues a draft; `delay_ms` is how long after its event time it arrives.
    fn push(
        &mut self,
        tenant: usize,
        provider: ProviderKind,
        topic: &'static str,
        body: Value,
        at: i64,
        delay_ms: i64,
    ) -> usize {
        let shopify_event = (provider == ProviderKind::Shopify).then(|| self.uuid());
        self.drafts.push(Draft {
            tenant,
            provider,
            topic,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            at,
            arrive: at * 1000 + delay_ms,
            shopify_event,
        });
        self.drafts.len() - 1
    }

    /// A usual delivery delay: a second or two, sometimes minutes.
    fn delay(&mut self) -> i64 {
        if self.rng.chance(8) {
            10_000 + self.rng.below(600_000) as i64
        } else {
            150 + self.rng.below(3_000) as i64
        }
    }

    /// One story: a customer signing up, an order and what follows it, a visit,
    /// a ticket, or a guest order by phone.
    fn story(&mut self) {
        let t = self.rng.below(self.shops.len() as u64) as usize;
        let c = self.rng.below(self.shops[t].customers.len() as u64) as usize;
        let start = EPOCH + self.rng.below(28 * DAY as u64) as i64;
        if !self.shops[t].customers[c].signed_up && self.rng.chance(25) {
            let at = start - DAY - self.rng.below(DAY as u64) as i64;
            self.signup(t, c, at);
        }
        match self.rng.below(100) {
            0..=57 => self.order_story(t, c, start),
            58..=74 => self.visit_story(t, c, start),
            75..=93 => self.ticket_story(t, c, start),
            _ => self.guest_phone_order(t, c, start),
        }
    }

    fn signup(&mut self, t: usize, c: usize, at: i64) {
        self.shops[t].customers[c].signed_up = true;
        let shop = &self.shops[t];
        let cu = &shop.customers[c];
        let mut body = json!({
            "id": cu.shopify_id,
            "email": cu.email,
            "first_name": cu.first,
            "last_name": cu.last,
            "created_at": rfc3339(at),
            "updated_at": rfc3339(at),
            "email_marketing_consent": {"state": if cu.shopify_id.is_multiple_of(3) { "subscribed" } else { "not_subscribed" }},
            "default_address": {"city": "Springfield", "country_code": shop.country},
        });
        if let Some(p) = &cu.phone {
            body["phone"] = json!(p);
        }
        let d = self.delay();
        self.push(t, ProviderKind::Shopify, "customers/create", body, at, d);
    }

    fn touch_body(&mut self, anon: &str, email: Option<&str>, at: i64) -> Value {
        let (source, medium, campaign, referrer) = self.pick(&CAMPAIGNS);
        let page = self.pick(&PAGES);
        let host = "https://shop.example";
        let mut body = json!({
            "anonymous_id": anon,
            "at": rfc3339(at),
            "landing_page": format!("{host}{page}?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"),
            "referrer": referrer,
        });
        if self.rng.chance(30) {
            body["cart_token"] = json!(format!("c1-{}", base36(self.uid(), 8)));
        }
        if let Some(e) = email {
            body["email"] = json!(e);
        }
        body
    }

    /// Browsing: anonymous touches, then often an identify that ties the visitor
    /// to the customer's email (which merges the visitor's touches into them).
    fn visit_story(&mut self, t: usize, c: usize, start: i64) {
        let anon = if self.rng.chance(60) {
            self.shops[t].customers[c].visitor.clone()
        } else {
            format!("v{}", base36(self.uid(), 10))
        };
        let email = self.shops[t].customers[c].email.clone();
        let n = 1 + self.rng.below(3) as i64;
        let mut at = start;
        for i in 0..n {
            let with_email = i == n - 1 && self.rng.chance(15);
            let body = self.touch_body(&anon, with_email.then_some(email.as_str()), at);
            let d = self.delay();
            self.push(t, ProviderKind::Collect, "touch", body, at, d);
            at += 60 + self.rng.below(3 * 3600) as i64;
        }
        if self.rng.chance(45) {
            let body = json!({"anonymous_id": anon, "email": email, "at": rfc3339(at)});
            let d = self.delay();
            self.push(t, ProviderKind::Collect, "identify", body, at, d);
        }
    }

    fn line_items(&mut self, currency: &str) -> (Vec<Value>, i64) {
        let n = 1 + self.rng.below(2);
        let mut items = Vec::new();
        let mut subtotal = 0;
        for _ in 0..n {
            let (sku, title, cents) = self.pick(&PRODUCTS);
            let price = if currency == "JPY" {
                cents * 3 / 2
            } else {
                cents
            };
            let qty = 1 + self.rng.below(2) as i64;
            subtotal += price * qty;
            items.push(json!({
                "id": 13_000_000_000u64 + self.uid() % 1_000_000_000,
                "sku": sku,
                "title": title,
                "quantity": qty,
                "price": decimal(price, currency),
            }));
        }
        (items, subtotal)
    }

    /// An order and what follows: the Stripe charge, a fulfillment and the order
    /// update that records its tracking number, carrier updates, sometimes a
    /// partial refund (Shopify and Stripe) and a chargeback.
    fn order_story(&mut self, t: usize, c: usize, start: i64) {
        let currency = if self.rng.chance(12) {
            self.pick(&["USD", "EUR", "JPY"])
        } else {
            self.shops[t].currency
        };
        let cur_lower = currency.to_ascii_lowercase();
        let number = self.shops[t].next_number;
        self.shops[t].next_number += 1;
        let order_id = 5_000_000_000_000u64 + t as u64 * 1_000_000_000 + number;
        let (items, subtotal) = self.line_items(currency);
        let shipping = if currency == "JPY" { 600 } else { 495 };
        let total = subtotal + shipping;
        let (email, phone, first, last, shopify_id, visitor) = {
            let cu = &self.shops[t].customers[c];
            (
                cu.email.clone(),
                cu.phone.clone(),
                cu.first,
                cu.last,
                cu.shopify_id,
                cu.visitor.clone(),
            )
        };
        let country = self.shops[t].country;

        // A visit before the order; the site uses the visitor id as cart token.
        let cart_token = if self.rng.chance(35) {
            let at = start - 600 - self.rng.below(3600) as i64;
            let body = self.touch_body(&visitor, None, at);
            let d = self.delay();
            self.push(t, ProviderKind::Collect, "touch", body, at, d);
            Some(visitor.clone())
        } else {
            None
        };
        let (source, medium, campaign, _) = self.pick(&CAMPAIGNS);
        let mut order = json!({
            "id": order_id,
            "name": format!("#{number}"),
            "email": email,
            "currency": currency,
            "financial_status": "paid",
            "total_price": decimal(total, currency),
            "subtotal_price": decimal(subtotal, currency),
            "line_items": items,
            "customer": {"id": shopify_id, "first_name": first, "last_name": last},
            "shipping_address": {"country_code": country},
            "landing_site": format!("/?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"),
            "created_at": rfc3339(start),
            "updated_at": rfc3339(start),
        });
        if let Some(p) = &phone {
            order["phone"] = json!(p);
        }
        if let Some(ct) = &cart_token {
            order["cart_token"] = json!(ct);
        }
        self.shops[t].customers[c]
            .orders
            .push(OrderRef { number, at: start });
        let d = self.delay();
        let create = self.push(
            t,
            ProviderKind::Shopify,
            "orders/create",
            order.clone(),
            start,
            d,
        );
        let mut shopify_orders = vec![create];

        // The payment, a few seconds before the order.
        let paid_by_stripe = self.rng.chance(88);
        let charge = Charge {
            id: self.stripe_id("ch"),
            payment_intent: self.stripe_id("pi"),
            order_id,
            total,
            currency: cur_lower.clone(),
        };
        let (charge_id, pi_id) = (charge.id.clone(), charge.payment_intent.clone());
        let mut charge_draft = None;
        if paid_by_stripe {
            let at = start - 5 - self.rng.below(60) as i64;
            let body = json!({
                "id": self.stripe_id("evt"),
                "type": "charge.succeeded",
                "created": at,
                "data": {"object": {
                    "id": charge_id,
                    "amount": total,
                    "currency": cur_lower,
                    "captured": true,
                    "paid": true,
                    "status": "succeeded",
                    "payment_intent": pi_id,
                    "metadata": {"order_id": order_id.to_string()},
                    "billing_details": {"email": email},
                    "payment_method_details": {"type": "card"},
                }},
            });
            let d = self.delay();
            charge_draft =
                Some(self.push(t, ProviderKind::Stripe, "charge.succeeded", body, at, d));
        }
        let mut dependents: Vec<usize> = Vec::new();

        // Fulfillment, the order update that records it, carrier updates.
        let mut shipped_at = start;
        if self.rng.chance(85) {
            shipped_at = start + 3600 + self.rng.below(2 * DAY as u64) as i64;
            let (slug, company) =
                self.pick(&[("ups", "UPS"), ("dhl", "DHL Express"), ("usps", "USPS")]);
            let tracking = match slug {
                "ups" => format!("1Z{}", base36(self.uid(), 14).to_ascii_uppercase()),
                "dhl" => format!("JD{:018}", self.uid() % 1_000_000_000_000_000_000),
                _ => format!(
                    "94{:020}",
                    u128::from(self.uid()) * 7 % 100_000_000_000_000_000_000
                ),
            };
            let fulfillment_id = 6_100_000_000u64 + self.uid() % 100_000_000;
            let body = json!({
                "id": fulfillment_id,
                "order_id": order_id,
                "status": "success",
                "shipment_status": "label_purchased",
                "tracking_company": company,
                "tracking_number": tracking,
                "created_at": rfc3339(shipped_at),
                "updated_at": rfc3339(shipped_at),
            });
            // Not every shop subscribes to fulfillments/*: the order update says it too.
            if self.rng.chance(65) {
                let d = self.delay();
                self.push(
                    t,
                    ProviderKind::Shopify,
                    "fulfillments/create",
                    body,
                    shipped_at,
                    d,
                );
            }
            let mut updated = order.clone();
            updated["fulfillment_status"] = json!("fulfilled");
            updated["updated_at"] = json!(rfc3339(shipped_at + 30));
            updated["fulfillments"] =
                json!([{"id": fulfillment_id, "status": "success", "tracking_number": tracking}]);
            let d = self.delay();
            let u = self.push(
                t,
                ProviderKind::Shopify,
                "orders/updated",
                updated,
                shipped_at + 30,
                d,
            );
            shopify_orders.push(u);

            if self.rng.chance(50) {
                let steps: &[(&str, &str)] = &[
                    ("InTransit", "Departed facility"),
                    ("OutForDelivery", "Out for delivery"),
                    ("Delivered", "Delivered, front door"),
                ];
                let exception = self.rng.chance(6);
                let n = 1 + self.rng.below(2) as usize;
                let by_number = self.rng.chance(50);
                let mut checkpoints: Vec<Value> = Vec::new();
                let mut at = shipped_at + 4 * 3600;
                for (i, (tag, message)) in steps.iter().enumerate().take(n) {
                    let (tag, message) = if exception && i == n - 1 {
                        ("Exception", "Address incomplete")
                    } else {
                        (*tag, *message)
                    };
                    at += 3600 + self.rng.below(DAY as u64) as i64;
                    checkpoints.push(json!({
                        "checkpoint_time": rfc3339(at),
                        "tag": tag,
                        "message": message,
                        "location": self.pick(&["Memphis, TN", "Leipzig, DE", "Osaka, JP", "Louisville, KY"]),
                    }));
                    // AfterShip sends the latest checkpoints only up to a few.
                    let recent: Vec<Value> =
                        checkpoints.iter().rev().take(2).rev().cloned().collect();
                    let mut msg = json!({
                        "id": base36(self.uid(), 16),
                        "tracking_number": tracking,
                        "slug": slug,
                        "tag": tag,
                        "checkpoints": recent,
                    });
                    if by_number {
                        msg["order_number"] = json!(format!("#{number}"));
                    }
                    let body = json!({
                        "event_id": self.uuid(),
                        "event": "tracking_update",
                        "ts": at + 60,
                        "msg": msg,
                    });
                    let d = self.delay();
                    let a = self.push(
                        t,
                        ProviderKind::Aftership,
                        "tracking_update",
                        body,
                        at + 60,
                        d,
                    );
                    dependents.push(a);
                }
            }
        }

        // A partial refund: a return refunded in Shopify (which Stripe reports
        // too), or a goodwill refund made in Stripe's dashboard only.
        let refund_kind = self.rng.below(100);
        if refund_kind < 28 {
            let at = shipped_at + 3 * DAY + self.rng.below(7 * DAY as u64) as i64;
            let amount = (subtotal / 4).max(1);
            let note = self.pick(&[
                "Wrong size",
                "Arrived damaged",
                "Changed mind",
                "Arrived late",
            ]);
            let line_id = order["line_items"][0]["id"].clone();
            let body = json!({
                "id": 8_800_000_000u64 + self.uid() % 100_000_000,
                "order_id": order_id,
                "note": note,
                "created_at": rfc3339(at),
                "refund_line_items": [{"line_item_id": line_id, "quantity": 1, "restock_type": if note == "Changed mind" { "no_restock" } else { "return" }}],
                "transactions": [{"kind": "refund", "status": "success", "amount": decimal(amount, currency), "currency": currency}],
            });
            let d = self.delay();
            self.push(t, ProviderKind::Shopify, "refunds/create", body, at, d);
            if paid_by_stripe {
                let r = self.stripe_refund(t, &charge, amount, at + 20);
                dependents.push(r);
            }
        } else if refund_kind < 43 && paid_by_stripe {
            let at = start + 2 * DAY + self.rng.below(10 * DAY as u64) as i64;
            let r = self.stripe_refund(t, &charge, shipping, at);
            dependents.push(r);
        }

        // A chargeback, which knows only the charge and the payment intent.
        if paid_by_stripe && self.rng.chance(8) {
            let at = start + 10 * DAY + self.rng.below(20 * DAY as u64) as i64;
            let body = json!({
                "id": self.stripe_id("evt"),
                "type": "charge.dispute.created",
                "created": at,
                "data": {"object": {
                    "id": self.stripe_id("dp"),
                    "amount": total,
                    "currency": cur_lower,
                    "status": "needs_response",
                    "reason": self.pick(&["fraudulent", "product_not_received", "duplicate"]),
                    "charge": charge_id,
                    "payment_intent": pi_id,
                }},
            });
            let d = self.delay();
            let x = self.push(
                t,
                ProviderKind::Stripe,
                "charge.dispute.created",
                body,
                at,
                d,
            );
            dependents.push(x);
        }

        // Late deliveries: Shopify's order webhooks, or Stripe's charge, held up
        // until after what refers to them (their endpoint was down; they retried).
        let latest = dependents.iter().map(|&i| self.drafts[i].arrive).max();
        if let Some(latest) = latest
            && self.rng.chance(12)
        {
            let late = latest + 1000 + self.rng.below(3_600_000) as i64;
            if let Some(ch) = charge_draft
                && self.rng.chance(50)
            {
                self.drafts[ch].arrive = late;
            } else {
                for &i in &shopify_orders {
                    self.drafts[i].arrive = late + self.rng.below(60_000) as i64;
                }
            }
        }
    }

    /// Stripe's `charge.refunded` for a partial refund of `amount`. Half of them
    /// carry the order in the charge's metadata; the others name only the charge
    /// and its payment intent, so they wait for the `charge.succeeded` that tied
    /// those to the order.
    fn stripe_refund(&mut self, t: usize, charge: &Charge, amount: i64, at: i64) -> usize {
        let mut object = json!({
            "id": charge.id,
            "amount": charge.total,
            "currency": charge.currency,
            "captured": true,
            "payment_intent": charge.payment_intent,
            "amount_refunded": amount,
            "refunds": {"data": [{"id": self.stripe_id("re"), "amount": amount, "currency": charge.currency, "status": "succeeded", "reason": "requested_by_customer"}]},
        });
        if self.rng.chance(50) {
            object["metadata"] = json!({"order_id": charge.order_id.to_string()});
        }
        let body = json!({
            "id": self.stripe_id("evt"),
            "type": "charge.refunded",
            "created": at,
            "data": {"object": object},
        });
        let d = self.delay();
        self.push(t, ProviderKind::Stripe, "charge.refunded", body, at, d)
    }

    /// A helpdesk ticket (Zendesk for some tenants, Gorgias for others), often
    /// about one of the customer's orders, in one or two versions.
    fn ticket_story(&mut self, t: usize, c: usize, start: i64) {
        let (email, helpdesk_id, last_order) = {
            let cu = &self.shops[t].customers[c];
            (cu.email.clone(), cu.helpdesk_id, cu.orders.last().cloned())
        };
        let order = last_order.filter(|_| self.rng.chance(70));
        let created = match &order {
            Some(o) => o.at + DAY + self.rng.below(10 * DAY as u64) as i64,
            None => start,
        };
        let (subject, mut tags) = match (&order, self.rng.below(4)) {
            (Some(o), 0) => (
                format!("Return for order #{}", o.number),
                vec!["return", "size"],
            ),
            (Some(o), 1) => (format!("Where is order #{}?", o.number), vec!["wismo"]),
            (Some(o), 2) => (
                format!("Order #{} arrived damaged", o.number),
                vec!["damaged", "refund"],
            ),
            (_, _) => ("Question about sizing".to_string(), vec!["presale"]),
        };
        if helpdesk_id.is_multiple_of(5) {
            tags.push("vip");
        }
        let tags = tags.join(" ");
        let versions = 1 + self.rng.below(2);
        // Sometimes the first version knows the requester only by the helpdesk id;
        // the next one (with the email) merges that profile into the customer.
        let anonymous_first = versions == 2 && self.rng.chance(25);
        let ticket_id = 50_000 + self.uid() % 1_000_000;
        let zendesk = t.is_multiple_of(2);
        for v in 0..versions {
            let updated = created + (v as i64) * (3600 + self.rng.below(2 * DAY as u64) as i64);
            let solved = v == 1;
            let email_known = !(anonymous_first && v == 0);
            if zendesk {
                let mut ticket = json!({
                    "id": ticket_id,
                    "status": if solved { "solved" } else { "open" },
                    "title": subject,
                    "tags": tags,
                    "requester": {"id": helpdesk_id},
                    "created_at": rfc3339(created),
                    "updated_at": rfc3339(updated),
                });
                if email_known {
                    ticket["requester"]["email"] = json!(email);
                }
                if solved {
                    ticket["first_response_at"] = json!(rfc3339(created + 1800));
                    ticket["solved_at"] = json!(rfc3339(updated));
                    ticket["satisfaction_rating"] = json!(self.pick(&["good", "good", "bad"]));
                }
                let d = self.delay();
                self.push(
                    t,
                    ProviderKind::Zendesk,
                    "ticket",
                    json!({"ticket": ticket}),
                    updated,
                    d,
                );
            } else {
                let mut ticket = json!({
                    "id": ticket_id.to_string(),
                    "status": if solved { "closed" } else { "open" },
                    "subject": subject,
                    "customer": {"id": helpdesk_id.to_string()},
                    "tags": tags,
                    "created_datetime": rfc3339(created),
                    "updated_datetime": rfc3339(updated),
                    "messages": [{"from_agent": false, "created_datetime": rfc3339(created)}],
                });
                if email_known {
                    ticket["customer"]["email"] = json!(email);
                }
                if let Some(o) = &order {
                    ticket["order_number"] = json!(o.number.to_string());
                }
                if solved {
                    ticket["closed_datetime"] = json!(rfc3339(updated));
                    ticket["satisfaction_survey"] = json!({"score": 2 + self.rng.below(4)});
                }
                let topic = if v == 0 {
                    "ticket-created"
                } else {
                    "ticket-updated"
                };
                let d = self.delay();
                self.push(
                    t,
                    ProviderKind::Gorgias,
                    topic,
                    json!({"event": topic, "ticket": ticket}),
                    updated,
                    d,
                );
            }
        }
    }

    /// An order placed by phone (no email, no customer account): it belongs to
    /// whoever owns the phone, or to nobody when a household shares it.
    fn guest_phone_order(&mut self, t: usize, c: usize, start: i64) {
        let Some(phone) = self.shops[t].customers[c].phone.clone() else {
            return self.order_story(t, c, start);
        };
        let currency = self.shops[t].currency;
        let country = self.shops[t].country;
        // As typed at the till: country code, a space, the rest.
        let cc_len = match country {
            "US" => 2,
            _ => 3,
        };
        let typed = format!("{} {}", &phone[..cc_len], &phone[cc_len..]);
        let number = self.shops[t].next_number;
        self.shops[t].next_number += 1;
        let order_id = 5_000_000_000_000u64 + t as u64 * 1_000_000_000 + number;
        let (items, subtotal) = self.line_items(currency);
        let body = json!({
            "id": order_id,
            "name": format!("#{number}"),
            "phone": typed,
            "currency": currency,
            "financial_status": "paid",
            "total_price": decimal(subtotal, currency),
            "line_items": items,
            "source_name": "pos",
            "shipping_address": {"country_code": country},
            "created_at": rfc3339(start),
            "updated_at": rfc3339(start),
        });
        let d = self.delay();
        self.push(t, ProviderKind::Shopify, "orders/create", body, start, d);
    }

    /// The raw event of a draft delivered at `received_ms`: the headers the
    /// provider sends (the ones the ingest keeps), the event id and topic as the
    /// ingest's `describe` gives them.
    fn finish(&self, d: &Draft, received_ms: i64) -> RawEvent {
        let shop = &self.shops[d.tenant];
        let received =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(received_ms) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut pairs: Vec<(String, String)> = Vec::new();
        match d.provider {
            ProviderKind::Shopify => {
                let at =
                    OffsetDateTime::from_unix_timestamp(d.at).unwrap_or(OffsetDateTime::UNIX_EPOCH);
                if let Ok(s) = d.provider.sign(SHOPIFY_SECRET, d.topic, &d.body, at) {
                    pairs.extend(s.headers);
                }
                pairs.push((
                    "X-Shopify-Shop-Domain".into(),
                    format!("{}.myshopify.com", shop.name),
                ));
                pairs.push(("X-Shopify-Api-Version".into(), "2025-01".into()));
                if let Some(e) = &d.shopify_event {
                    pairs.push(("X-Shopify-Event-Id".into(), e.clone()));
                }
            }
            ProviderKind::Stripe => {
                if let Ok(s) = d.provider.sign(STRIPE_SECRET, d.topic, &d.body, received) {
                    pairs.extend(s.headers);
                }
            }
            ProviderKind::Zendesk => {
                pairs.push((
                    "X-Zendesk-Webhook-Id".into(),
                    format!("01HZ{}WEBHOOK", shop.name.to_ascii_uppercase()),
                ));
            }
            ProviderKind::Collect => {
                pairs.push((
                    "Origin".into(),
                    format!("https://{}.shop.example", shop.name),
                ));
            }
            _ => {}
        }
        let all = Headers::from_pairs(pairs);
        let inbound = d
            .provider
            .describe(&WebhookRequest {
                headers: &all,
                body: &d.body,
                url_token: None,
            })
            .unwrap_or_else(|e| panic!("a generated {} body is not describable: {e}", d.provider));
        assert_eq!(inbound.topic, d.topic, "generated {} topic", d.provider);
        RawEvent {
            event_id: inbound.event_id,
            tenant: shop.name.clone(),
            provider: d.provider.name().to_string(),
            topic: inbound.topic,
            received_at: received_ms,
            headers: all
                .select(d.provider.kept_headers())
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                // The shops accept beacon emails (`collect_identify`), as the
                // ingest marks their beacons.
                .chain((d.provider == ProviderKind::Collect).then(|| {
                    (
                        storefold_providers::collect::IDENTITY_HEADER.to_string(),
                        storefold_providers::collect::IDENTITY_OPTED_IN.to_string(),
                    )
                }))
                .collect(),
            body: d.body.clone(),
            verification: d
                .provider
                .scheme()
                .map_or_else(Verification::unsigned, Verification::verified),
            trace_context: None,
        }
    }
}

/// The delivery order: by arrival time, then shuffled within windows of 50, then
/// `dups` events delivered once more a little later. Indexes into `drafts`.
fn arrival_order(rng: &mut Rng, drafts: &[Draft], dups: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&i| (drafts[i].arrive, i));
    for window in order.chunks_mut(50) {
        // Most neighbours keep their order; a few swap places.
        for _ in 0..window.len() / 5 {
            let a = rng.below(window.len() as u64) as usize;
            let b = rng.below(window.len() as u64) as usize;
            window.swap(a, b);
        }
    }
    let mut picks: Vec<usize> = (0..order.len()).collect();
    rng.shuffle(&mut picks);
    picks.truncate(dups.min(order.len()));
    // Positions doubled: originals at even slots, redeliveries at odd slots after.
    let mut slots: Vec<(usize, usize)> =
        order.iter().enumerate().map(|(p, &i)| (2 * p, i)).collect();
    for p in picks {
        let later = p + 1 + rng.below(400) as usize;
        slots.push((2 * later.min(order.len()) + 1, order[p]));
    }
    slots.sort_by_key(|s| s.0);
    slots.into_iter().map(|(_, i)| i).collect()
}
