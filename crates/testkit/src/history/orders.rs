//! Order stories: a Shopify order and what follows it (payment through Stripe,
//! fulfilment and tracking, refunds, disputes).

use super::generator::*;
use serde_json::{Value, json};
use storefold_providers::ProviderKind;
use storefold_scenario::{CAMPAIGNS, PRODUCTS};

impl Gen {
    pub(super) fn line_items(&mut self, currency: &str) -> (Vec<Value>, i64) {
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
    pub(super) fn order_story(&mut self, t: usize, c: usize, start: i64) {
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
    pub(super) fn stripe_refund(
        &mut self,
        t: usize,
        charge: &Charge,
        amount: i64,
        at: i64,
    ) -> usize {
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
}
