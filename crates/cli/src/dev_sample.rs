//! The sample history `storefold dev` sends through the ingest: a small shop's
//! webhooks and browser touches for tenant `demo`, deterministic (no clock, no
//! randomness), with the figures the fold must reach for every customer.
//!
//! Bodies are the compact JSON each provider's mapper reads (the same shapes the
//! testkit's history generator writes), with ids, emails and amounts filled in.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use storefold_core::money::{Currency, decimal_string};
use storefold_providers::ProviderKind;
use storefold_scenario::{CAMPAIGNS, FIRST_NAMES, LAST_NAMES, PRODUCTS};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The tenant the sample is sent to.
pub(crate) const TENANT: &str = "demo";

/// 2025-03-03T00:00:00Z.
const EPOCH: i64 = 1_740_960_000;
const DAY: i64 = 86_400;
const CUSTOMERS: usize = 30;
const SHIPPING: i64 = 495;

/// One request to send: a provider webhook, or a browser touch
/// (`ProviderKind::Collect`).
#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub(crate) provider: ProviderKind,
    /// The provider topic (Shopify's travels in a header).
    pub(crate) topic: &'static str,
    pub(crate) body: Vec<u8>,
}

/// What the fold must show for one customer.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) orders: u64,
    /// Net revenue per currency (ISO code), minor units.
    pub(crate) net: BTreeMap<&'static str, i64>,
    pub(crate) open_tickets: u64,
}

/// The sample: requests in sending order, and the expected customers.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) posts: Vec<Post>,
    pub(crate) customers: Vec<Expected>,
}

impl Sample {
    /// How many requests of each provider the sample sends, as `name n, …`.
    pub(crate) fn describe(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.posts {
            *counts.entry(p.provider.name()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A two-decimal amount (the sample's currencies, USD and EUR) as the stores
/// write it in their payloads.
fn decimal(minor: i64) -> String {
    decimal_string(minor, 2)
}

struct Builder {
    posts: Vec<Post>,
    next_number: u64,
    next_id: u64,
}

impl Builder {
    fn push(&mut self, provider: ProviderKind, topic: &'static str, body: Value) {
        self.posts.push(Post {
            provider,
            topic,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        });
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_demo{:06}", self.next_id)
    }

    fn touch(&mut self, anon: &str, email: Option<&str>, campaign: usize, at: i64) {
        let (source, medium, name, referrer) = CAMPAIGNS[campaign % CAMPAIGNS.len()];
        let mut body = json!({
            "anonymous_id": anon,
            "at": rfc3339(at),
            "landing_page": format!(
                "https://shop.example/?utm_source={source}&utm_medium={medium}&utm_campaign={name}"
            ),
            "referrer": referrer,
        });
        if let Some(e) = email {
            body["email"] = json!(e);
        }
        self.push(ProviderKind::Collect, "touch", body);
    }

    /// An AfterShip tracking update of `tracking` with the given tag.
    fn tracking(&mut self, tracking: &str, number: u64, tag: &str, subtag: &str, at: i64) {
        let message = match tag {
            "Delivered" => "Delivered, front door",
            "Exception" if subtag == "Exception_011" => "Returned to sender",
            "Exception" => "Address incomplete",
            _ => "Departed facility",
        };
        self.next_id += 1;
        let body = json!({
            "event_id": format!("5f1e6c1a-demo-4000-a000-{:012}", self.next_id),
            "event": "tracking_update",
            "ts": at,
            "msg": {
                "id": format!("demotracking{:06}", self.next_id),
                "tracking_number": tracking,
                "slug": "ups",
                "tag": tag,
                "subtag": subtag,
                "order_number": format!("#{number}"),
                "checkpoints": [{
                    "checkpoint_time": rfc3339(at),
                    "tag": tag,
                    "subtag": subtag,
                    "message": message,
                    "location": "Louisville, KY",
                }],
            },
        });
        self.push(ProviderKind::Aftership, "tracking_update", body);
    }
}

/// The sample history (always the same).
pub(crate) fn sample() -> Sample {
    let mut b = Builder {
        posts: Vec::new(),
        next_number: 1001,
        next_id: 0,
    };
    let mut customers = Vec::with_capacity(CUSTOMERS);
    for i in 0..CUSTOMERS {
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        let last = LAST_NAMES[(i + i / FIRST_NAMES.len()) % LAST_NAMES.len()];
        let email = format!(
            "{}.{}@demo.example",
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase()
        );
        let shopify_id = 7_000_000_000u64 + i as u64;
        let helpdesk_id = 380_000_000u64 + i as u64;
        let visitor = format!("v-demo-{i:03}");
        let t0 = EPOCH + i as i64 * DAY / 2;
        let currency = if i % 7 == 3 { "EUR" } else { "USD" };
        let cur_lower = currency.to_ascii_lowercase();
        let mut exp = Expected {
            name: format!("{first} {last}"),
            email: email.clone(),
            orders: 0,
            net: BTreeMap::new(),
            open_tickets: 0,
        };

        // The account.
        b.push(
            ProviderKind::Shopify,
            "customers/create",
            json!({
                "id": shopify_id,
                "email": email,
                "first_name": first,
                "last_name": last,
                "created_at": rfc3339(t0 - DAY),
                "updated_at": rfc3339(t0 - DAY),
                "email_marketing_consent": {"state": if i % 3 == 0 { "subscribed" } else { "not_subscribed" }},
                "default_address": {"city": "Springfield", "country_code": "US"},
            }),
        );

        // UTM touches. Customer 5 browses anonymously, then identifies: the
        // visitor's profile merges into the customer (the sample's identity merge).
        if i == 5 {
            b.touch(&visitor, None, i, t0 - 7200);
            b.touch(&visitor, None, i + 1, t0 - 3600);
            b.push(
                ProviderKind::Collect,
                "identify",
                json!({"anonymous_id": visitor, "email": email, "at": rfc3339(t0 - 1800)}),
            );
        } else if i % 3 != 2 {
            b.touch(&visitor, Some(&email), i, t0 - 3600);
        }

        let orders = 1 + i % 3;
        let mut last_number = 0;
        for k in 0..orders {
            let number = b.next_number;
            b.next_number += 1;
            last_number = number;
            let order_id = 5_000_000_000_000u64 + number;
            let at = t0 + k as i64 * 5 * DAY;
            let split = i == 0 && k == 0;
            let mut picks = vec![PRODUCTS[(i + k) % PRODUCTS.len()]];
            if split || (i + k) % 4 == 0 {
                picks.push(PRODUCTS[(i + k + 2) % PRODUCTS.len()]);
            }
            let mut items = Vec::new();
            let mut subtotal = 0;
            for (n, (sku, title, price)) in picks.iter().enumerate() {
                subtotal += price;
                items.push(json!({
                    "id": 13_000_000_000u64 + number * 10 + n as u64,
                    "sku": sku,
                    "title": title,
                    "quantity": 1,
                    "price": decimal(*price),
                }));
            }
            let total = subtotal + SHIPPING;
            let (source, medium, campaign, _) = CAMPAIGNS[(i + k) % CAMPAIGNS.len()];
            b.push(
                ProviderKind::Shopify,
                "orders/create",
                json!({
                    "id": order_id,
                    "name": format!("#{number}"),
                    "email": email,
                    "currency": currency,
                    "financial_status": "paid",
                    "total_price": decimal(total),
                    "subtotal_price": decimal(subtotal),
                    "line_items": items,
                    "customer": {"id": shopify_id, "first_name": first, "last_name": last},
                    "shipping_address": {"country_code": "US"},
                    "landing_site": format!("/?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"),
                    "created_at": rfc3339(at),
                    "updated_at": rfc3339(at),
                }),
            );
            exp.orders += 1;
            *exp.net.entry(currency).or_default() += total;

            // The Stripe payment.
            let charge_id = b.id("ch");
            let pi_id = b.id("pi");
            let evt = b.id("evt");
            b.push(
                ProviderKind::Stripe,
                "charge.succeeded",
                json!({
                    "id": evt,
                    "type": "charge.succeeded",
                    "created": at + 5,
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
                }),
            );

            // Shipments: one per order, two for the split order.
            let shipped = at + DAY;
            let parcels = if split { 2 } else { 1 };
            let mut trackings = Vec::new();
            for (s, item) in items.iter().enumerate().take(parcels) {
                let tracking = format!("1ZDEMO{number:06}{s:02}");
                let mut body = json!({
                    "id": 6_100_000_000u64 + number * 10 + s as u64,
                    "order_id": order_id,
                    "status": "success",
                    "shipment_status": "label_purchased",
                    "tracking_company": "UPS",
                    "tracking_number": tracking,
                    "created_at": rfc3339(shipped + s as i64 * 3600),
                    "updated_at": rfc3339(shipped + s as i64 * 3600),
                });
                if split {
                    body["line_items"] = json!([{"id": item["id"], "quantity": 1}]);
                }
                b.push(ProviderKind::Shopify, "fulfillments/create", body);
                trackings.push(tracking);
            }
            if k == 0 {
                for (s, tracking) in trackings.iter().enumerate() {
                    b.tracking(
                        tracking,
                        number,
                        "InTransit",
                        "InTransit_001",
                        shipped + 7200,
                    );
                    if split && s == 1 {
                        // The second parcel of the split order hits an exception.
                        b.tracking(
                            tracking,
                            number,
                            "Exception",
                            "Exception_001",
                            shipped + DAY,
                        );
                    } else if i == 7 {
                        // This one goes back to the shop.
                        b.tracking(
                            tracking,
                            number,
                            "Exception",
                            "Exception_011",
                            shipped + 3 * DAY,
                        );
                    } else {
                        b.tracking(
                            tracking,
                            number,
                            "Delivered",
                            "Delivered_001",
                            shipped + DAY,
                        );
                    }
                }
            }

            if k == 0 {
                // Partial refunds: a return refunded in Shopify, or a goodwill
                // refund of the shipping made in Stripe's dashboard.
                if i % 5 == 1 || i == 7 {
                    let amount = picks[0].2 / 2;
                    let refund_id = 8_800_000_000u64 + number;
                    b.push(
                        ProviderKind::Shopify,
                        "refunds/create",
                        json!({
                            "id": refund_id,
                            "order_id": order_id,
                            "note": if i == 7 { "Returned to sender" } else { "Wrong size" },
                            "created_at": rfc3339(shipped + 4 * DAY),
                            "refund_line_items": [{"line_item_id": items[0]["id"], "quantity": 1, "restock_type": "return"}],
                            "transactions": [{"kind": "refund", "status": "success", "amount": decimal(amount), "currency": currency}],
                        }),
                    );
                    *exp.net.entry(currency).or_default() -= amount;
                } else if i % 5 == 3 {
                    let evt = b.id("evt");
                    let re = b.id("re");
                    b.push(
                        ProviderKind::Stripe,
                        "charge.refunded",
                        json!({
                            "id": evt,
                            "type": "charge.refunded",
                            "created": at + 2 * DAY,
                            "data": {"object": {
                                "id": charge_id,
                                "amount": total,
                                "currency": cur_lower,
                                "captured": true,
                                "payment_intent": pi_id,
                                "amount_refunded": SHIPPING,
                                "metadata": {"order_id": order_id.to_string()},
                                "refunds": {"data": [{"id": re, "amount": SHIPPING, "currency": cur_lower, "status": "succeeded", "reason": "requested_by_customer"}]},
                            }},
                        }),
                    );
                    *exp.net.entry(currency).or_default() -= SHIPPING;
                }
                // One dispute, still open (its amount is not lost yet).
                if i == 9 {
                    let evt = b.id("evt");
                    let dp = b.id("dp");
                    b.push(
                        ProviderKind::Stripe,
                        "charge.dispute.created",
                        json!({
                            "id": evt,
                            "type": "charge.dispute.created",
                            "created": at + 12 * DAY,
                            "data": {"object": {
                                "id": dp,
                                "amount": total,
                                "currency": cur_lower,
                                "status": "needs_response",
                                "reason": "product_not_received",
                                "charge": charge_id,
                                "payment_intent": pi_id,
                            }},
                        }),
                    );
                }
            }
        }

        // Support tickets: Zendesk for some, Gorgias for others; half are solved.
        let ticket_at = t0 + 2 * DAY;
        let ticket_id = 50_000 + i as u64;
        match i % 8 {
            0 | 4 => {
                let solved = i % 8 == 0;
                for v in 0..(if solved { 2 } else { 1 }) {
                    let updated = ticket_at + v as i64 * DAY;
                    let mut ticket = json!({
                        "id": ticket_id,
                        "status": if v == 1 { "solved" } else { "open" },
                        "title": format!("Where is order #{last_number}?"),
                        "tags": "wismo",
                        "requester": {"id": helpdesk_id, "email": email},
                        "created_at": rfc3339(ticket_at),
                        "updated_at": rfc3339(updated),
                    });
                    if v == 1 {
                        ticket["first_response_at"] = json!(rfc3339(ticket_at + 1800));
                        ticket["solved_at"] = json!(rfc3339(updated));
                        ticket["satisfaction_rating"] = json!("good");
                    }
                    b.push(ProviderKind::Zendesk, "ticket", json!({"ticket": ticket}));
                }
                if !solved {
                    exp.open_tickets += 1;
                }
            }
            2 | 6 => {
                let solved = i % 8 == 2;
                for v in 0..(if solved { 2 } else { 1 }) {
                    let updated = ticket_at + v as i64 * DAY;
                    let topic = if v == 0 {
                        "ticket-created"
                    } else {
                        "ticket-updated"
                    };
                    let mut ticket = json!({
                        "id": ticket_id.to_string(),
                        "status": if v == 1 { "closed" } else { "open" },
                        "subject": format!("Return for order #{last_number}"),
                        "customer": {"id": helpdesk_id.to_string(), "email": email},
                        "tags": "return size",
                        "order_number": last_number.to_string(),
                        "created_datetime": rfc3339(ticket_at),
                        "updated_datetime": rfc3339(updated),
                        "messages": [{"from_agent": false, "created_datetime": rfc3339(ticket_at)}],
                    });
                    if v == 1 {
                        ticket["closed_datetime"] = json!(rfc3339(updated));
                        ticket["satisfaction_survey"] = json!({"score": 4});
                    }
                    b.push(
                        ProviderKind::Gorgias,
                        topic,
                        json!({"event": topic, "ticket": ticket}),
                    );
                }
                if !solved {
                    exp.open_tickets += 1;
                }
            }
            _ => {}
        }
        customers.push(exp);
    }
    Sample {
        posts: b.posts,
        customers,
    }
}

/// `minor` units of `currency` as people write them: `$1,234.50`, `€12.00`,
/// `12.345 KWD` (the digits are the currency's ISO 4217 exponent).
pub(crate) fn format_money(minor: i64, currency: &str) -> String {
    let exponent = Currency::from_code(currency).map_or(2, |c| u32::from(c.exponent()));
    let symbol = match currency {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        _ => "",
    };
    let exact = decimal_string(minor.unsigned_abs().min(i64::MAX as u64) as i64, exponent);
    let (whole, fraction) = match exact.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (exact.as_str(), None),
    };
    let mut amount = String::new();
    for (n, c) in whole.chars().enumerate() {
        if n > 0 && (whole.len() - n).is_multiple_of(3) {
            amount.push(',');
        }
        amount.push(c);
    }
    if let Some(f) = fraction {
        amount.push('.');
        amount.push_str(f);
    }
    let sign = if minor < 0 { "-" } else { "" };
    if symbol.is_empty() {
        format!("{sign}{amount} {currency}")
    } else {
        format!("{sign}{symbol}{amount}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_deterministic_and_distinct() {
        let a = sample();
        let b = sample();
        assert_eq!(a.posts.len(), b.posts.len());
        assert!(a.posts.iter().zip(&b.posts).all(|(x, y)| x.body == y.body));
        let emails: std::collections::BTreeSet<_> =
            a.customers.iter().map(|c| c.email.clone()).collect();
        assert_eq!(emails.len(), CUSTOMERS);
        for p in &a.posts {
            let v: Value = serde_json::from_slice(&p.body).unwrap();
            assert!(v.is_object());
        }
    }

    #[test]
    fn money_is_formatted_from_minor_units() {
        assert_eq!(format_money(123_450, "USD"), "$1,234.50");
        assert_eq!(format_money(1200, "EUR"), "€12.00");
        assert_eq!(format_money(-5, "USD"), "-$0.05");
        assert_eq!(format_money(1500, "JPY"), "¥1,500");
        assert_eq!(format_money(1500, "CHF"), "15.00 CHF");
        assert_eq!(format_money(12_345, "KWD"), "12.345 KWD");
    }
}
