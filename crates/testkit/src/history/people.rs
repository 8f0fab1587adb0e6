//! Customer stories without an order of their own: signing up, visiting the
//! shop's site, helpdesk tickets, and guest orders placed with a phone number.

use super::generator::*;
use serde_json::{Value, json};
use storefold_providers::ProviderKind;
use storefold_scenario::CAMPAIGNS;

impl Gen {
    pub(super) fn signup(&mut self, t: usize, c: usize, at: i64) {
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

    pub(super) fn touch_body(&mut self, anon: &str, email: Option<&str>, at: i64) -> Value {
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
    pub(super) fn visit_story(&mut self, t: usize, c: usize, start: i64) {
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

    /// A helpdesk ticket (Zendesk for some tenants, Gorgias for others), often
    /// about one of the customer's orders, in one or two versions.
    pub(super) fn ticket_story(&mut self, t: usize, c: usize, start: i64) {
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
    pub(super) fn guest_phone_order(&mut self, t: usize, c: usize, start: i64) {
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
}
