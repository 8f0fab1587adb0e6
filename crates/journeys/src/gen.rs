//! Generated journeys: [`world`] draws an abstract [`World`] from a seed (the
//! cases of the library mixed: Shopify and WooCommerce, no provider or Stripe,
//! Adyen, PayPal, authorisations captured once or several times, voids,
//! captures failing after success, refunds that succeed, stay pending or fail,
//! disputes won, lost, reversed then lost again, inquiries answered with a
//! refund, presentment currencies, edits, cancellations, redactions, browser
//! touches), and [`render`] writes it as the webhooks each provider sends,
//! bodies and headers, in the order they happened.
//!
//! The rendering follows the providers' documented payloads (see
//! `data/SOURCES.md`); the model ([`crate::model`]) never sees it.

use serde_json::{Value, json};
use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use storefold_providers::{
    AdyenCapture, Headers, MapError, MapOptions, OrderReference, ProviderKind, ReferencePattern,
    WebhookRequest,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Rng;
use crate::model::{
    AuthEnd, Capture, Customer, Dispute, DisputeStatus, DisputeStep, Edit, Flow, Movement, Order,
    Payment, Provider, Refund, RefundOutcome, Store, StoreRefund, Touch, World,
};

/// 2025-03-01T00:00:00Z.
const T0: i64 = 1_740_787_200;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

const FIRST: [&str; 8] = ["Ana", "Ben", "Cara", "Dan", "Eli", "Fay", "Gus", "Hana"];
const LAST: [&str; 8] = [
    "Silva",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Dubois",
    "Ferreira",
    "Kim",
];

/// One webhook, as the provider sends it, and what the ingest learns of it.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub provider: ProviderKind,
    pub topic: String,
    pub event_id: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it happened (unix seconds).
    pub at: i64,
    pub received_at: OffsetDateTime,
}

impl Webhook {
    pub fn headers(&self) -> Headers {
        Headers::from_pairs(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Maps the webhook through its provider's real mapper for `tenant`.
    pub fn map(&self, tenant: &str, options: &MapOptions) -> Result<Vec<Envelope>, MapError> {
        crate::map_raw(
            self.provider,
            &self.topic,
            &self.event_id,
            &self.headers,
            &self.body,
            self.received_at,
            tenant,
            options,
        )
    }
}

/// The tenant's mapping options for a world: its stores, and each payment
/// provider's references naming orders of the store it serves.
pub fn options(w: &World) -> MapOptions {
    let mut o = MapOptions::for_stores(w.stores.iter().map(|s| s.name()));
    let store_of = |p: Provider| {
        w.orders
            .iter()
            .find(|o| o.payments.iter().any(|x| x.provider == p))
            .map(|o| o.store.name().to_string())
    };
    o.stripe = OrderReference {
        fields: vec!["order_id".into()],
        store: store_of(Provider::Stripe),
        pattern: None,
    };
    o.paypal = OrderReference {
        fields: vec!["custom_id".into(), "invoice_id".into()],
        store: store_of(Provider::Paypal),
        pattern: ReferencePattern::new(r"^(?:WC-)?(?P<order>\d+)$").ok(),
    };
    o.adyen = OrderReference {
        fields: Vec::new(),
        store: store_of(Provider::Adyen),
        pattern: ReferencePattern::new(r"^(?P<order>\d+)(?:-\d+)?$").ok(),
    };
    o.adyen_capture = if w.adyen_manual {
        AdyenCapture::Manual
    } else {
        AdyenCapture::Automatic
    };
    o
}

// ---------------------------------------------------------------------------
// Drawing a world
// ---------------------------------------------------------------------------

struct Ids<'a> {
    rng: &'a mut Rng,
    seq: u64,
}

impl Ids<'_> {
    fn alnum(&mut self, len: usize) -> String {
        const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
        self.seq += 1;
        let mut s: String = (0..len.saturating_sub(3))
            .map(|_| A[self.rng.below(A.len() as u64) as usize] as char)
            .collect();
        s.push_str(&format!("{:03}", self.seq % 1000));
        s
    }
}

/// Draws the world of `seed`.
pub fn world(seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let r = &mut rng;
    let stores = match r.below(4) {
        0 => vec![Store::Shopify],
        1 => vec![Store::WooCommerce],
        2 => vec![Store::Shopify, Store::WooCommerce],
        _ => vec![Store::WooCommerce, Store::Shopify],
    };
    // Each payment provider serves one store's orders.
    let provider_store: Vec<(Provider, Store)> =
        [Provider::Stripe, Provider::Adyen, Provider::Paypal]
            .into_iter()
            .map(|p| (p, *r.pick(&stores)))
            .collect();
    let adyen_manual = r.chance(50);
    let n_customers = 1 + r.below(3) as usize;
    let tag = seed % 100_000;
    let mut customers = Vec::new();
    for i in 0..n_customers {
        let first = FIRST[(seed as usize + i) % FIRST.len()];
        let last = LAST[(seed as usize / 8 + i) % LAST.len()];
        customers.push(Customer {
            email: format!(
                "{}.{}.{tag}.{i}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            first_name: first.to_string(),
            last_name: last.to_string(),
            shopify_id: 7_300_000_000 + tag * 10 + i as u64,
            woo_id: if r.chance(60) { 100 + i as u64 } else { 0 },
            anonymous_id: None,
            touches: Vec::new(),
            identifies: false,
            redacted: false,
        });
    }
    let mut ids = Ids {
        rng: r,
        seq: seed % 1000,
    };
    let mut orders = Vec::new();
    let n_orders = 1 + ids.rng.below(4) as usize;
    for k in 0..n_orders {
        let customer = ids.rng.below(n_customers as u64) as usize;
        let store = *ids.rng.pick(&stores);
        let created = T0 + (k as i64) * 3 * DAY + ids.rng.range(0, 20 * HOUR);
        let shop_currency = *ids.rng.pick(&["USD", "EUR", "GBP"]);
        let currency = if store == Store::Shopify && ids.rng.chance(20) {
            *ids.rng.pick(&["USD", "EUR", "GBP", "CAD"])
        } else {
            shop_currency
        };
        let total = ids.rng.range(1_500, 40_000);
        let id = match store {
            Store::Shopify => 5_900_000_000 + tag * 10 + k as u64,
            Store::WooCommerce => 40_000 + tag % 10_000 * 10 + k as u64,
        };
        let mut o = Order {
            store,
            id,
            number: 1000 + k as u64 + 1,
            customer,
            created,
            shop_currency,
            currency,
            total,
            edit: None,
            store_refunds: Vec::new(),
            payments: Vec::new(),
            test: store == Store::Shopify && ids.rng.chance(5),
            cancelled: false,
            authorised_first: false,
            duplicate_snapshot: ids.rng.chance(10),
        };
        let choices: Vec<Provider> = provider_store
            .iter()
            .filter(|(_, s)| *s == store)
            .map(|(p, _)| *p)
            .collect();
        let provider = if choices.is_empty() || ids.rng.chance(35) {
            None
        } else {
            Some(*ids.rng.pick(&choices))
        };
        match provider {
            None => store_only(&mut ids, &mut o),
            Some(p) => with_provider(&mut ids, &mut o, p, adyen_manual),
        }
        orders.push(o);
    }
    // Touches, identification and erasure.
    for (i, c) in customers.iter_mut().enumerate() {
        if ids.rng.chance(50) {
            c.anonymous_id = Some(format!("anon-{tag}-{i}-{}", ids.alnum(6).to_lowercase()));
            let n = 1 + ids.rng.below(2);
            for t in 0..n {
                c.touches.push(Touch {
                    touch_id: format!("tch_{}", ids.alnum(10)),
                    at: T0 - DAY + t as i64 * HOUR + ids.rng.range(0, 1000),
                    source: ids
                        .rng
                        .pick(&["google", "newsletter", "facebook"])
                        .to_string(),
                    campaign: ids.rng.pick(&["spring", "retarget", "brand"]).to_string(),
                    with_email: ids.rng.chance(30),
                    sent_twice: ids.rng.chance(20),
                });
            }
            c.identifies = ids.rng.chance(60);
        }
        let shopify_orders = orders
            .iter()
            .any(|o| o.customer == i && o.store == Store::Shopify);
        c.redacted = shopify_orders && ids.rng.chance(12);
    }
    World {
        tenant: "acme".into(),
        stores,
        adyen_manual,
        customers,
        orders,
    }
}

/// A store-only order: the store's word is the money.
fn store_only(ids: &mut Ids<'_>, o: &mut Order) {
    let r = &mut *ids.rng;
    let mut t = o.created + HOUR;
    if o.store == Store::Shopify {
        o.authorised_first = r.chance(30);
        if r.chance(15) {
            o.edit = Some(Edit {
                delta: r.range(500, 3_000),
                // Shopify's REST order gives `total_outstanding` only in the
                // shop's currency: an amount still owed in another currency can
                // be recovered only to within a minor unit, so it is not drawn.
                collected: o.currency != o.shop_currency || r.chance(70),
                at: o.created + 2 * HOUR,
            });
        }
    }
    let mut room = o.total + o.edit.map_or(0, |e| if e.collected { e.delta } else { 0 });
    let n = r.below(3);
    for k in 0..n {
        if room <= 0 {
            break;
        }
        let amount = r.range(1, room.min(room / 2 + 1_000));
        t += DAY + r.range(0, 5 * HOUR);
        let gateway = match o.store {
            Store::Shopify => Some(
                r.pick(&["shopify_payments", "manual", "gift_card"])
                    .to_string(),
            ),
            Store::WooCommerce => None,
        };
        o.store_refunds.push(StoreRefund {
            id: 960_000 + o.id % 1000 * 10 + k,
            amount,
            gateway,
            at: t,
        });
        room -= amount;
    }
    if o.store == Store::Shopify && r.chance(10) {
        // Cancelled, with a refund of what was left.
        if room > 0 {
            o.store_refunds.push(StoreRefund {
                id: 960_000 + o.id % 1000 * 10 + 9,
                amount: room,
                gateway: Some("shopify_payments".into()),
                at: t + DAY,
            });
        }
        o.cancelled = true;
    }
}

fn paypal_fee(amount: i64) -> i64 {
    // 3.49% + 0.49, rounded to the minor unit.
    (amount * 349 + 5_000) / 10_000 + 49
}

/// An order paid through `p`: flows, refunds and disputes as `p` reports them.
fn with_provider(ids: &mut Ids<'_>, o: &mut Order, p: Provider, adyen_manual: bool) {
    let at = o.created + 5;
    let id = match p {
        Provider::Stripe => format!("pi_3{}", ids.alnum(23)),
        Provider::Adyen => ids.alnum(16),
        Provider::Paypal => ids.alnum(17),
    };
    let a = o.total;
    let r_flow = ids.rng.below(100);
    let flow = match p {
        Provider::Stripe if r_flow < 70 => Flow::Immediate { itemised: false },
        Provider::Stripe if r_flow < 88 => Flow::Captures {
            captures: vec![Capture {
                id: String::new(),
                amount: if ids.rng.chance(50) {
                    a
                } else {
                    ids.rng.range(a / 2, a - 1)
                },
                fails_later: false,
                at: at + 2 * DAY,
            }],
            end: AuthEnd::Voided,
        },
        Provider::Stripe => Flow::AuthOnly {
            end: if ids.rng.chance(60) {
                AuthEnd::Voided
            } else {
                AuthEnd::Open
            },
        },
        Provider::Adyen if !adyen_manual => Flow::Immediate {
            itemised: ids.rng.chance(40),
        },
        Provider::Adyen if r_flow < 80 => {
            let n = 1 + ids.rng.below(3) as usize;
            let mut left = a;
            let mut captures = Vec::new();
            for k in 0..n {
                if left <= 0 {
                    break;
                }
                let amount = if k + 1 == n && ids.rng.chance(60) {
                    left
                } else {
                    ids.rng.range(1, left)
                };
                left -= amount;
                captures.push(Capture {
                    id: ids.alnum(16),
                    amount,
                    fails_later: false,
                    at: at + (k as i64 + 1) * DAY,
                });
            }
            if captures.len() > 1
                && ids.rng.chance(25)
                && let Some(last) = captures.last_mut()
            {
                last.fails_later = true;
            }
            let end = if left > 0 && ids.rng.chance(50) {
                AuthEnd::Voided
            } else {
                AuthEnd::Open
            };
            Flow::Captures { captures, end }
        }
        Provider::Adyen => Flow::AuthOnly {
            end: if ids.rng.chance(60) {
                AuthEnd::Voided
            } else {
                AuthEnd::Open
            },
        },
        Provider::Paypal if r_flow < 70 => Flow::Immediate { itemised: false },
        Provider::Paypal if r_flow < 90 => {
            let amount = if ids.rng.chance(60) {
                a
            } else {
                ids.rng.range(a / 2, a - 1)
            };
            let end = if amount < a && ids.rng.chance(50) {
                AuthEnd::Voided
            } else {
                AuthEnd::Open
            };
            Flow::Captures {
                captures: vec![Capture {
                    id: ids.alnum(17),
                    amount,
                    fails_later: false,
                    at: at + 2 * DAY,
                }],
                end,
            }
        }
        Provider::Paypal => Flow::AuthOnly {
            end: AuthEnd::Voided,
        },
    };
    let captured: i64 = match &flow {
        Flow::Immediate { .. } => a,
        Flow::Captures { captures, .. } => captures
            .iter()
            .filter(|c| !c.fails_later)
            .map(|c| c.amount)
            .sum(),
        Flow::AuthOnly { .. } => 0,
    };
    let fee = match p {
        Provider::Paypal if captured > 0 => Some((paypal_fee(captured), o.currency)),
        _ => None,
    };
    let mut pay = Payment {
        provider: p,
        id,
        currency: o.currency,
        amount: a,
        flow,
        declined_first: matches!(p, Provider::Stripe | Provider::Adyen) && ids.rng.chance(15),
        fee,
        refunds: Vec::new(),
        disputes: Vec::new(),
        reversal: None,
        names_order: p != Provider::Stripe || o.store == Store::Shopify || ids.rng.chance(50),
        refunds_as_total_only: p == Provider::Stripe && ids.rng.chance(25),
        at,
    };
    let gateway_name = p.name().to_string();
    let mut room = captured;
    let mut t = at + 3 * DAY;
    if captured > 0 {
        // Refunds.
        let n = ids.rng.below(3);
        for _ in 0..n {
            if room <= 0 {
                break;
            }
            let amount = ids.rng.range(1, room.min(room / 2 + 500));
            let outcome = if pay.refunds_as_total_only {
                RefundOutcome::Succeeded
            } else {
                let options: &[RefundOutcome] = match p {
                    Provider::Stripe => &[
                        RefundOutcome::Succeeded,
                        RefundOutcome::Succeeded,
                        RefundOutcome::Pending,
                        RefundOutcome::PendingThenSucceeded,
                        RefundOutcome::FailedAfterSucceeded,
                    ],
                    Provider::Adyen => &[
                        RefundOutcome::Succeeded,
                        RefundOutcome::Succeeded,
                        RefundOutcome::FailedAfterSucceeded,
                        RefundOutcome::Failed,
                    ],
                    Provider::Paypal => &[RefundOutcome::Succeeded],
                };
                *ids.rng.pick(options)
            };
            t += DAY + ids.rng.range(0, 3 * HOUR);
            let rid = match p {
                Provider::Stripe => format!("re_3{}", ids.alnum(23)),
                Provider::Adyen => ids.alnum(16),
                Provider::Paypal => ids.alnum(17),
            };
            pay.refunds.push(Refund {
                id: rid,
                amount,
                outcome,
                at: t,
                settled_at: t + 2 * DAY,
            });
            if outcome.counts() {
                room -= amount;
                // Refunded from the store's admin: the store records it too.
                if ids.rng.chance(50) {
                    o.store_refunds.push(StoreRefund {
                        id: 960_000 + o.id % 1000 * 10 + o.store_refunds.len() as u64,
                        amount,
                        gateway: (o.store == Store::Shopify).then(|| gateway_name.clone()),
                        at: t + 1,
                    });
                }
            }
        }
        // A dispute.
        if room > 0 && ids.rng.chance(35) {
            let d_at = t + 7 * DAY;
            let amount = if ids.rng.chance(60) {
                room
            } else {
                ids.rng.range(1, room)
            };
            let d = dispute(ids, &mut pay, o.currency, amount, d_at);
            pay.disputes.push(d);
        }
    }
    // Refunds the store makes outside the provider (store credit, cash).
    if o.store_refunds.iter().map(|r| r.amount).sum::<i64>() < o.total && ids.rng.chance(12) {
        let left = o.total - o.store_refunds.iter().map(|r| r.amount).sum::<i64>();
        let amount = ids.rng.range(1, left.min(2_000));
        o.store_refunds.push(StoreRefund {
            id: 960_000 + o.id % 1000 * 10 + 8,
            amount,
            gateway: (o.store == Store::Shopify)
                .then(|| ids.rng.pick(&["gift_card", "manual"]).to_string()),
            at: t + 20 * DAY,
        });
    }
    o.payments.push(pay);
}

fn step(at: i64, status: DisputeStatus, movement: Option<Movement>) -> DisputeStep {
    DisputeStep {
        at,
        status,
        movement,
    }
}

/// A dispute of `amount` on `pay`, with the course its provider reports.
fn dispute(
    ids: &mut Ids<'_>,
    pay: &mut Payment,
    cur: &'static str,
    amount: i64,
    at: i64,
) -> Dispute {
    use DisputeStatus::*;
    let fee = 1_500;
    let course = match pay.provider {
        Provider::Stripe => {
            let w = Movement {
                id: format!("txn_1{}", ids.alnum(23)),
                amount: -amount,
                fee: Some((fee, cur)),
            };
            match ids.rng.below(5) {
                0 => vec![
                    step(at, Inquiry, None),
                    step(at + 5 * DAY, WarningClosed, None),
                ],
                1 => {
                    // The merchant refunds instead of contesting.
                    pay.refunds.push(Refund {
                        id: format!("re_3{}", ids.alnum(23)),
                        amount,
                        outcome: RefundOutcome::Succeeded,
                        at: at + DAY,
                        settled_at: at + DAY,
                    });
                    let close = if ids.rng.chance(50) {
                        WarningClosed
                    } else {
                        MerchantRefunded
                    };
                    vec![step(at, Inquiry, None), step(at + 2 * DAY, close, None)]
                }
                2 => vec![
                    step(at, NeedsResponse, Some(w.clone())),
                    step(at + 1, NeedsResponse, Some(w.clone())),
                    step(at + 5 * DAY, UnderReview, Some(w.clone())),
                    step(at + 40 * DAY, Lost, Some(w)),
                ],
                3 => {
                    let back = Movement {
                        id: format!("txn_1{}", ids.alnum(23)),
                        amount,
                        fee: Some((-fee, cur)),
                    };
                    vec![
                        step(at, NeedsResponse, Some(w.clone())),
                        step(at + 1, NeedsResponse, Some(w.clone())),
                        step(at + 5 * DAY, UnderReview, Some(w.clone())),
                        step(at + 40 * DAY, Won, Some(back.clone())),
                        step(at + 40 * DAY + 1, Won, Some(back)),
                    ]
                }
                _ => vec![
                    step(at, NeedsResponse, Some(w.clone())),
                    step(at + 1, NeedsResponse, Some(w)),
                ],
            }
        }
        Provider::Adyen => {
            let mv = |code: &str, sign: i64| Movement {
                id: code.to_string(),
                amount: sign * amount,
                fee: None,
            };
            let notice = ids.rng.chance(50);
            let mut c = Vec::new();
            if notice {
                c.push(step(at - DAY, Inquiry, None));
            }
            match ids.rng.below(5) {
                0 => {
                    if !notice {
                        c.push(step(at - DAY, Inquiry, None));
                    }
                }
                1 => c.push(step(at, NeedsResponse, Some(mv("CHARGEBACK", -1)))),
                2 => c.push(step(at, Lost, Some(mv("CHARGEBACK", -1)))),
                3 => {
                    c.push(step(at, NeedsResponse, Some(mv("CHARGEBACK", -1))));
                    c.push(step(at + 20 * DAY, Won, Some(mv("CHARGEBACK_REVERSED", 1))));
                }
                _ => {
                    c.push(step(at, NeedsResponse, Some(mv("CHARGEBACK", -1))));
                    c.push(step(at + 20 * DAY, Won, Some(mv("CHARGEBACK_REVERSED", 1))));
                    c.push(step(at + 50 * DAY, Lost, Some(mv("SECOND_CHARGEBACK", -1))));
                }
            }
            c
        }
        Provider::Paypal => match ids.rng.below(4) {
            0 => vec![step(at, Inquiry, None), step(at + 8 * DAY, Won, None)],
            1 => {
                if ids.rng.chance(50) {
                    pay.reversal = Some(amount);
                }
                vec![
                    step(at, NeedsResponse, None),
                    step(at + 3 * DAY, UnderReview, None),
                    step(at + 30 * DAY, Lost, None),
                ]
            }
            2 => {
                pay.refunds.push(Refund {
                    id: ids.alnum(17),
                    amount,
                    outcome: RefundOutcome::Succeeded,
                    at: at + 2 * DAY,
                    settled_at: at + 2 * DAY,
                });
                vec![
                    step(at, Inquiry, None),
                    step(at + 2 * DAY + 60, MerchantRefunded, None),
                ]
            }
            _ => vec![step(at, Inquiry, None)],
        },
    };
    let id = match pay.provider {
        Provider::Stripe => format!("dp_1{}", ids.alnum(23)),
        Provider::Adyen => ids.alnum(16),
        Provider::Paypal => format!("PP-D-{}", 10_000 + ids.rng.below(90_000)),
    };
    Dispute { id, amount, course }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

fn iso(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// WooCommerce's `*_gmt` form (no offset).
fn gmt(t: i64) -> String {
    iso(t).trim_end_matches('Z').to_string()
}

fn dec(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

/// Shop amount of a presentment amount (fixed illustrative rates).
fn to_shop(minor: i64, pres: &str, shop: &str) -> i64 {
    if pres == shop {
        return minor;
    }
    let per_usd = |c: &str| match c {
        "EUR" => 92,
        "GBP" => 79,
        "CAD" => 137,
        _ => 100,
    };
    (minor * per_usd(shop) + per_usd(pres) / 2) / per_usd(pres)
}

fn money_set(shop: i64, shop_cur: &str, pres: i64, pres_cur: &str) -> Value {
    json!({
        "shop_money": {"amount": dec(shop), "currency_code": shop_cur},
        "presentment_money": {"amount": dec(pres), "currency_code": pres_cur},
    })
}

struct Out<'a> {
    w: &'a World,
    rng: Rng,
    hooks: Vec<Webhook>,
}

impl Out<'_> {
    fn push(
        &mut self,
        provider: ProviderKind,
        at: i64,
        headers: Vec<(String, String)>,
        body: Value,
    ) {
        let body = serde_json::to_vec_pretty(&body).unwrap_or_default();
        let received = at + 1 + self.rng.range(0, 20);
        self.hooks.push(Webhook {
            provider,
            topic: String::new(),
            event_id: String::new(),
            headers,
            body,
            at,
            received_at: OffsetDateTime::from_unix_timestamp(received)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        });
    }

    fn uuid(&mut self) -> String {
        let h = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn shopify(&mut self, topic: &str, at: i64, body: Value) {
        let event = self.uuid();
        let headers = vec![
            ("X-Shopify-Topic".to_string(), topic.to_string()),
            (
                "X-Shopify-Shop-Domain".to_string(),
                "acme-outfitters.myshopify.com".to_string(),
            ),
            ("X-Shopify-API-Version".to_string(), "2025-04".to_string()),
            ("X-Shopify-Event-Id".to_string(), event.clone()),
            (
                "X-Shopify-Webhook-Id".to_string(),
                format!("b{}", &event[1..]),
            ),
            ("X-Shopify-Triggered-At".to_string(), iso(at)),
        ];
        self.push(ProviderKind::Shopify, at, headers, body);
    }

    fn woo(&mut self, topic: &str, at: i64, body: Value) {
        let delivery = self.uuid();
        let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
        let headers = vec![
            (
                "X-WC-Webhook-Source".to_string(),
                "https://shop.acme-outfitters.example/".to_string(),
            ),
            ("X-WC-Webhook-Topic".to_string(), topic.to_string()),
            ("X-WC-Webhook-Resource".to_string(), resource.to_string()),
            ("X-WC-Webhook-Event".to_string(), event.to_string()),
            ("X-WC-Webhook-ID".to_string(), "14".to_string()),
            ("X-WC-Webhook-Delivery-ID".to_string(), delivery),
        ];
        self.push(ProviderKind::WooCommerce, at, headers, body);
    }

    fn stripe(&mut self, kind: &str, at: i64, object: Value) {
        let id = format!("evt_{}", &self.uuid().replace('-', "")[..24]);
        let body = json!({
            "id": id,
            "object": "event",
            "api_version": "2025-03-31.basil",
            "created": at,
            "data": {"object": object},
            "livemode": true,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
        });
        self.push(ProviderKind::Stripe, at, Vec::new(), body);
    }

    #[allow(clippy::too_many_arguments)]
    fn adyen(
        &mut self,
        code: &str,
        at: i64,
        psp: &str,
        original: Option<&str>,
        reference: &str,
        amount: i64,
        cur: &str,
        success: bool,
        extra: Value,
    ) {
        let mut item = json!({
            "additionalData": extra,
            "amount": {"currency": cur, "value": amount},
            "eventCode": code,
            "eventDate": iso(at),
            "merchantAccountCode": "AcmeOutfittersEU",
            "merchantReference": reference,
            "paymentMethod": "visa",
            "pspReference": psp,
            "reason": if success { "" } else { "Refused" },
            "success": if success { "true" } else { "false" },
        });
        if let Some(o) = original {
            item["originalReference"] = json!(o);
        }
        let body =
            json!({"live": "true", "notificationItems": [{"NotificationRequestItem": item}]});
        self.push(ProviderKind::Adyen, at, Vec::new(), body);
    }

    fn paypal(&mut self, kind: &str, at: i64, resource_type: &str, resource: Value) {
        let id = format!(
            "WH-{}-{}",
            self.uuid().replace('-', "")[..17].to_uppercase(),
            self.uuid().replace('-', "")[..17].to_uppercase()
        );
        let body = json!({
            "id": id,
            "event_version": "1.0",
            "create_time": iso(at),
            "resource_type": resource_type,
            "resource_version": if resource_type == "dispute" { "1.0" } else { "2.0" },
            "event_type": kind,
            "summary": kind,
            "resource": resource,
        });
        self.push(ProviderKind::Paypal, at, Vec::new(), body);
    }
}

/// The webhooks of `w`, in the order they happened, with the topic and event id
/// the ingest's `describe` finds for each. Panics (naming the webhook) when
/// `describe` refuses one: the generator must write what providers send.
pub fn render(w: &World, seed: u64) -> Vec<Webhook> {
    let mut out = Out {
        w,
        rng: Rng::new(seed ^ 0x005E_ED0F_F00D),
        hooks: Vec::new(),
    };
    for c in &w.customers {
        render_touches(&mut out, c);
    }
    for o in &w.orders {
        match o.store {
            Store::Shopify => render_shopify(&mut out, o),
            Store::WooCommerce => render_woo(&mut out, o),
        }
        for p in &o.payments {
            match p.provider {
                Provider::Stripe => render_stripe(&mut out, o, p),
                Provider::Adyen => render_adyen(&mut out, o, p),
                Provider::Paypal => render_paypal(&mut out, o, p),
            }
        }
    }
    let end = w.orders.iter().map(|o| o.created).max().unwrap_or(T0) + 200 * DAY;
    for (i, c) in w.customers.iter().enumerate() {
        if c.redacted {
            let orders: Vec<u64> = w
                .orders
                .iter()
                .filter(|o| o.customer == i && o.store == Store::Shopify)
                .map(|o| o.id)
                .collect();
            let body = json!({
                "shop_id": 954_889,
                "shop_domain": "acme-outfitters.myshopify.com",
                "customer": {"id": c.shopify_id, "email": c.email, "phone": null},
                "orders_to_redact": orders,
            });
            out.shopify("customers/redact", end + i as i64, body);
        }
    }
    let mut hooks = out.hooks;
    hooks.sort_by_key(|h| h.at);
    for h in &mut hooks {
        let headers = h.headers();
        let req = WebhookRequest {
            headers: &headers,
            body: &h.body,
            url_token: None,
        };
        let inbound = h.provider.describe(&req).unwrap_or_else(|e| {
            panic!(
                "describe refused a generated {} webhook: {e}\n{}",
                h.provider,
                String::from_utf8_lossy(&h.body)
            )
        });
        h.topic = inbound.topic;
        h.event_id = inbound.event_id;
    }
    hooks
}

fn render_touches(out: &mut Out<'_>, c: &Customer) {
    let Some(anon) = &c.anonymous_id else { return };
    // Stored as the ingest stores beacons of a tenant that accepts their emails.
    let vouched = || {
        vec![(
            storefold_providers::collect::IDENTITY_HEADER.to_string(),
            storefold_providers::collect::IDENTITY_OPTED_IN.to_string(),
        )]
    };
    for t in &c.touches {
        let mut body = json!({
            "anonymous_id": anon,
            "touch_id": t.touch_id,
            "at": iso(t.at),
            "landing_page": format!(
                "https://shop.acme-outfitters.example/?utm_source={}&utm_medium=cpc&utm_campaign={}",
                t.source, t.campaign
            ),
            "referrer": "https://www.google.com/",
        });
        if t.with_email {
            body["email"] = json!(c.email);
        }
        out.push(ProviderKind::Collect, t.at, vouched(), body.clone());
        if t.sent_twice {
            out.push(ProviderKind::Collect, t.at, vouched(), body);
        }
    }
    if c.identifies {
        let at = c.touches.iter().map(|t| t.at).max().unwrap_or(T0) + 600;
        out.push(
            ProviderKind::Collect,
            at,
            vouched(),
            json!({"anonymous_id": anon, "email": c.email, "at": iso(at)}),
        );
    }
}

/// A Shopify order snapshot as of `at`.
struct ShopifyState {
    at: i64,
    financial_status: &'static str,
    extra: i64,
    outstanding: i64,
    refunds: usize,
    cancelled: bool,
}

fn shopify_refund_body(o: &Order, r: &StoreRefund) -> Value {
    let shop = to_shop(r.amount, o.currency, o.shop_currency);
    json!({
        "id": r.id,
        "admin_graphql_api_id": format!("gid://shopify/Refund/{}", r.id),
        "order_id": o.id,
        "created_at": iso(r.at),
        "processed_at": iso(r.at),
        "note": "Refund",
        "restock": false,
        "user_id": 84_210_001,
        "refund_line_items": [],
        "order_adjustments": [{
            "id": r.id * 10 + 1,
            "order_id": o.id,
            "refund_id": r.id,
            "kind": "refund_discrepancy",
            "reason": "Refund discrepancy",
            "amount": dec(-shop),
            "amount_set": money_set(-shop, o.shop_currency, -r.amount, o.currency),
            "tax_amount": "0.00",
            "tax_amount_set": money_set(0, o.shop_currency, 0, o.currency),
        }],
        "transactions": [{
            "id": r.id * 10 + 2,
            "order_id": o.id,
            "kind": "refund",
            "status": "success",
            "gateway": r.gateway.clone().unwrap_or_else(|| "manual".into()),
            "amount": dec(r.amount),
            "currency": o.currency,
            "created_at": iso(r.at),
            "processed_at": iso(r.at),
            "parent_id": o.id * 10 + 1,
            "test": o.test,
            "message": "Refunded",
            "source_name": "web",
        }],
        "duties": [],
    })
}

fn shopify_order_body(w: &World, o: &Order, s: &ShopifyState) -> Value {
    let c = &w.customers[o.customer];
    let total = o.total;
    let refunded: i64 = o.store_refunds[..s.refunds].iter().map(|r| r.amount).sum();
    let current = total + s.extra - refunded;
    let sc = |m: i64| to_shop(m, o.currency, o.shop_currency);
    let address = json!({
        "first_name": c.first_name, "last_name": c.last_name, "address1": "1 Market St", "address2": "",
        "city": "Springfield", "zip": "62701", "province": "Illinois", "province_code": "IL",
        "country": "United States", "country_code": "US", "phone": null, "company": null,
        "name": format!("{} {}", c.first_name, c.last_name),
    });
    let gateways: Vec<&str> = if o.payments.is_empty() {
        vec!["shopify_payments"]
    } else {
        o.payments.iter().map(|p| p.provider.name()).collect()
    };
    let mut lines = vec![json!({
        "id": o.id * 10 + 3,
        "title": "Trail jacket",
        "name": "Trail jacket",
        "sku": "TJ-1",
        "quantity": 1,
        "current_quantity": 1,
        "price": dec(sc(total)),
        "price_set": money_set(sc(total), o.shop_currency, total, o.currency),
        "total_discount": "0.00",
        "total_discount_set": money_set(0, o.shop_currency, 0, o.currency),
        "fulfillment_status": null,
        "product_id": 632_910_392,
        "variant_id": 39_072_856,
    })];
    if s.extra > 0 {
        lines.push(json!({
            "id": o.id * 10 + 4,
            "title": "Added item",
            "name": "Added item",
            "sku": "ADD-1",
            "quantity": 1,
            "current_quantity": 1,
            "price": dec(sc(s.extra)),
            "price_set": money_set(sc(s.extra), o.shop_currency, s.extra, o.currency),
            "total_discount": "0.00",
            "fulfillment_status": null,
        }));
    }
    let refunds: Vec<Value> = o.store_refunds[..s.refunds]
        .iter()
        .map(|r| shopify_refund_body(o, r))
        .collect();
    json!({
        "id": o.id,
        "admin_graphql_api_id": format!("gid://shopify/Order/{}", o.id),
        "name": format!("#{}", o.number),
        "order_number": o.number,
        "number": o.number - 1000,
        "email": c.email,
        "contact_email": c.email,
        "phone": null,
        "created_at": iso(o.created),
        "processed_at": iso(o.created),
        "updated_at": iso(s.at),
        "cancelled_at": if s.cancelled { json!(iso(s.at)) } else { Value::Null },
        "cancel_reason": if s.cancelled { json!("customer") } else { Value::Null },
        "closed_at": null,
        "currency": o.shop_currency,
        "presentment_currency": o.currency,
        "financial_status": s.financial_status,
        "fulfillment_status": null,
        "test": o.test,
        "taxes_included": false,
        "payment_gateway_names": gateways,
        "total_price": dec(sc(total)),
        "total_price_set": money_set(sc(total), o.shop_currency, total, o.currency),
        "subtotal_price": dec(sc(total)),
        "subtotal_price_set": money_set(sc(total), o.shop_currency, total, o.currency),
        "current_total_price": dec(sc(current)),
        "current_total_price_set": money_set(sc(current), o.shop_currency, current, o.currency),
        "current_subtotal_price": dec(sc(current)),
        "current_subtotal_price_set": money_set(sc(current), o.shop_currency, current, o.currency),
        "total_discounts": "0.00",
        "current_total_discounts": "0.00",
        "total_tax": "0.00",
        "current_total_tax": "0.00",
        "total_outstanding": dec(sc(s.outstanding)),
        "total_shipping_price_set": money_set(0, o.shop_currency, 0, o.currency),
        "landing_site": "/?utm_source=newsletter&utm_medium=email",
        "referring_site": "",
        "source_name": "web",
        "tags": "",
        "note": null,
        "note_attributes": [],
        "discount_codes": [],
        "customer": {
            "id": c.shopify_id,
            "email": c.email,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "created_at": iso(T0 - 30 * DAY),
            "updated_at": iso(s.at),
            "state": "enabled",
            "verified_email": true,
            "tags": "",
            "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
            "admin_graphql_api_id": format!("gid://shopify/Customer/{}", c.shopify_id),
        },
        "billing_address": address.clone(),
        "shipping_address": address,
        "line_items": lines,
        "shipping_lines": [],
        "fulfillments": [],
        "refunds": refunds,
    })
}

fn render_shopify(out: &mut Out<'_>, o: &Order) {
    let w = out.w;
    let provider_manual = o
        .payments
        .iter()
        .any(|p| !matches!(p.flow, Flow::Immediate { .. }));
    let paid_status = |refunds: usize, extra_outstanding: bool| -> &'static str {
        let refunded: i64 = o.store_refunds[..refunds].iter().map(|r| r.amount).sum();
        if refunds > 0 && refunded >= o.total + o.edit.map_or(0, |e| e.delta) {
            "refunded"
        } else if refunds > 0 {
            "partially_refunded"
        } else if extra_outstanding {
            "partially_paid"
        } else {
            "paid"
        }
    };
    let first = if o.authorised_first || provider_manual {
        "authorized"
    } else {
        "paid"
    };
    let mut s = ShopifyState {
        at: o.created,
        financial_status: first,
        extra: 0,
        outstanding: if first == "authorized" { o.total } else { 0 },
        refunds: 0,
        cancelled: false,
    };
    out.shopify("orders/create", s.at, shopify_order_body(w, o, &s));
    // With a payment provider, Shopify marks the order paid when the money is
    // captured, and leaves a hold that is never captured authorised.
    let captured_at = o.payments.iter().find_map(|p| match &p.flow {
        Flow::Immediate { .. } => Some(p.at),
        Flow::Captures { captures, .. } => captures.first().map(|c| c.at),
        Flow::AuthOnly { .. } => None,
    });
    let paid_at = if o.payments.is_empty() {
        Some(o.created + 30 * 60)
    } else {
        captured_at.map(|t| t.max(o.created) + 60)
    };
    if first == "authorized"
        && let Some(paid_at) = paid_at
    {
        s.at = paid_at;
        s.financial_status = "paid";
        s.outstanding = 0;
        out.shopify("orders/paid", s.at, shopify_order_body(w, o, &s));
    }
    if let Some(e) = o.edit {
        s.at = e.at;
        s.extra = e.delta;
        s.outstanding = e.delta;
        s.financial_status = "partially_paid";
        out.shopify("orders/updated", s.at, shopify_order_body(w, o, &s));
        if e.collected {
            s.at = e.at + HOUR;
            s.outstanding = 0;
            s.financial_status = "paid";
            out.shopify("orders/paid", s.at, shopify_order_body(w, o, &s));
        }
    }
    for (k, r) in o.store_refunds.iter().enumerate() {
        out.shopify("refunds/create", r.at, shopify_refund_body(o, r));
        s.at = r.at + 5;
        s.refunds = k + 1;
        s.financial_status = paid_status(s.refunds, s.outstanding > 0);
        let last = k + 1 == o.store_refunds.len();
        if last && o.cancelled {
            s.cancelled = true;
            out.shopify("orders/cancelled", s.at, shopify_order_body(w, o, &s));
        } else {
            out.shopify("orders/updated", s.at, shopify_order_body(w, o, &s));
        }
    }
    if o.duplicate_snapshot {
        // The same snapshot again under another event id (Shopify sends
        // orders/updated for changes storefold does not read, too).
        out.shopify("orders/updated", s.at, shopify_order_body(w, o, &s));
    }
}

fn woo_body(w: &World, o: &Order, status: &str, at: i64, refunds: usize) -> Value {
    let c = &w.customers[o.customer];
    let (method, title, txn) = match o.payments.first() {
        Some(p) => match p.provider {
            Provider::Stripe => ("stripe", "Credit / Debit Card", p.id.clone()),
            Provider::Adyen => ("adyen_cc", "Credit Card (Adyen)", p.id.clone()),
            Provider::Paypal => (
                "ppcp-gateway",
                "PayPal",
                match &p.flow {
                    Flow::Captures { captures, .. } => {
                        captures.first().map(|c| c.id.clone()).unwrap_or_default()
                    }
                    _ => p.id.clone(),
                },
            ),
        },
        None => ("cod", "Cash on delivery", String::new()),
    };
    let paid = status != "pending";
    let address = json!({
        "first_name": c.first_name, "last_name": c.last_name, "company": "", "address_1": "969 Market",
        "address_2": "", "city": "San Francisco", "state": "CA", "postcode": "94103", "country": "US",
    });
    let mut billing = address.clone();
    billing["email"] = json!(c.email);
    billing["phone"] = json!("");
    let refunds: Vec<Value> = o.store_refunds[..refunds]
        .iter()
        .map(|r| json!({"id": r.id, "reason": "", "total": dec(-r.amount)}))
        .collect();
    json!({
        "id": o.id,
        "parent_id": 0,
        "number": o.id.to_string(),
        "order_key": format!("wc_order_{}", o.id),
        "created_via": "checkout",
        "version": "9.8.5",
        "status": status,
        "currency": o.currency,
        "date_created_gmt": gmt(o.created),
        "date_modified_gmt": gmt(at),
        "discount_total": "0.00",
        "shipping_total": "0.00",
        "total": dec(o.total),
        "total_tax": "0.00",
        "prices_include_tax": false,
        "customer_id": c.woo_id,
        "customer_note": "",
        "billing": billing,
        "shipping": address,
        "payment_method": method,
        "payment_method_title": title,
        "transaction_id": if paid { txn } else { String::new() },
        "date_paid_gmt": if paid { json!(gmt(o.created + 10)) } else { Value::Null },
        "meta_data": [],
        "line_items": [{
            "id": o.id * 10 + 1, "name": "Trail jacket", "product_id": 93, "variation_id": 0,
            "quantity": 1, "tax_class": "", "subtotal": dec(o.total), "subtotal_tax": "0.00",
            "total": dec(o.total), "total_tax": "0.00", "taxes": [], "meta_data": [], "sku": "TJ-1",
            "price": o.total as f64 / 100.0,
        }],
        "tax_lines": [],
        "shipping_lines": [],
        "fee_lines": [],
        "coupon_lines": [],
        "refunds": refunds,
    })
}

fn render_woo(out: &mut Out<'_>, o: &Order) {
    let w = out.w;
    let paid_status = |refunds: usize| {
        let refunded: i64 = o.store_refunds[..refunds].iter().map(|r| r.amount).sum();
        if refunds > 0 && refunded >= o.total {
            "refunded"
        } else {
            "processing"
        }
    };
    if o.payments.is_empty() {
        // Cash on delivery: processing at once.
        out.woo(
            "order.created",
            o.created,
            woo_body(w, o, "processing", o.created, 0),
        );
    } else {
        out.woo(
            "order.created",
            o.created,
            woo_body(w, o, "pending", o.created, 0),
        );
        let p = &o.payments[0];
        let status = if matches!(p.flow, Flow::AuthOnly { .. }) {
            "on-hold"
        } else {
            "processing"
        };
        out.woo(
            "order.updated",
            o.created + 10,
            woo_body(w, o, status, o.created + 10, 0),
        );
    }
    let mut last = o.created + 10;
    for (k, r) in o.store_refunds.iter().enumerate() {
        last = r.at + 2;
        out.woo(
            "order.updated",
            last,
            woo_body(w, o, paid_status(k + 1), last, k + 1),
        );
    }
    if o.duplicate_snapshot {
        let n = o.store_refunds.len();
        out.woo(
            "order.updated",
            last + 3,
            woo_body(w, o, paid_status(n), last + 3, n),
        );
    }
}

fn stripe_charge(w: &World, o: &Order, p: &Payment, ch: &str, extra: Value) -> Value {
    let c = &w.customers[o.customer];
    let mut v = json!({
        "id": ch,
        "object": "charge",
        "amount": p.amount,
        "amount_captured": p.amount,
        "amount_refunded": 0,
        "balance_transaction": format!("txn_{}", &ch[3..]),
        "billing_details": {"email": c.email, "name": format!("{} {}", c.first_name, c.last_name),
                            "address": {"country": "US"}, "phone": null},
        "captured": true,
        "created": p.at,
        "currency": p.currency.to_lowercase(),
        "customer": null,
        "disputed": false,
        "failure_code": null,
        "failure_message": null,
        "livemode": true,
        "metadata": stripe_metadata(o, p),
        "outcome": {"network_status": "approved_by_network", "reason": null, "risk_level": "normal",
                    "seller_message": "Payment complete.", "type": "authorized"},
        "paid": true,
        "payment_intent": p.id,
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
        "receipt_email": c.email,
        "refunded": false,
        "status": "succeeded",
    });
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            obj.insert(k.clone(), x.clone());
        }
    }
    v
}

fn stripe_metadata(o: &Order, p: &Payment) -> Value {
    if p.names_order {
        json!({"order_id": o.id.to_string(), "site_url": "https://shop.acme-outfitters.example"})
    } else {
        json!({})
    }
}

fn stripe_intent(o: &Order, p: &Payment, status: &str, received: i64, ch: &str) -> Value {
    json!({
        "id": p.id,
        "object": "payment_intent",
        "amount": p.amount,
        "amount_capturable": 0,
        "amount_received": received,
        "capture_method": if matches!(p.flow, Flow::Immediate { .. }) { "automatic" } else { "manual" },
        "created": p.at,
        "currency": p.currency.to_lowercase(),
        "customer": null,
        "last_payment_error": null,
        "latest_charge": ch,
        "livemode": true,
        "metadata": stripe_metadata(o, p),
        "payment_method_types": ["card"],
        "status": status,
    })
}

fn render_stripe(out: &mut Out<'_>, o: &Order, p: &Payment) {
    let w = out.w;
    let ch = format!("ch_{}", &p.id[3..]);
    let cur = p.currency.to_lowercase();
    if p.declined_first {
        let ch_f = format!("ch_{}F", &p.id[3..p.id.len() - 1]);
        let mut pi = stripe_intent(o, p, "requires_payment_method", 0, &ch_f);
        pi["last_payment_error"] = json!({
            "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.", "charge": ch_f,
        });
        out.stripe("payment_intent.payment_failed", p.at - 60, pi);
        let charge = stripe_charge(
            w,
            o,
            p,
            &ch_f,
            json!({
                "status": "failed", "paid": false, "captured": false, "amount_captured": 0,
                "failure_code": "card_declined", "failure_message": "Your card has insufficient funds.",
                "outcome": {"network_status": "declined_by_network", "reason": "insufficient_funds",
                            "type": "issuer_declined", "seller_message": "The bank returned the decline code `insufficient_funds`."},
            }),
        );
        out.stripe("charge.failed", p.at - 60, charge);
    }
    // What was captured and released.
    let (captured, released) = match &p.flow {
        Flow::Immediate { .. } => {
            out.stripe(
                "payment_intent.succeeded",
                p.at,
                stripe_intent(o, p, "succeeded", p.amount, &ch),
            );
            out.stripe(
                "charge.succeeded",
                p.at,
                stripe_charge(w, o, p, &ch, json!({})),
            );
            (p.amount, 0)
        }
        Flow::Captures { captures, .. } => {
            let auth = json!({"captured": false, "amount_captured": 0});
            out.stripe("charge.succeeded", p.at, stripe_charge(w, o, p, &ch, auth));
            let c = &captures[0];
            let released = p.amount - c.amount;
            let captured_charge = json!({
                "captured": true, "amount_captured": c.amount, "amount_refunded": released,
            });
            out.stripe(
                "charge.captured",
                c.at,
                stripe_charge(w, o, p, &ch, captured_charge),
            );
            out.stripe(
                "payment_intent.succeeded",
                c.at,
                stripe_intent(o, p, "succeeded", c.amount, &ch),
            );
            (c.amount, released)
        }
        Flow::AuthOnly { end } => {
            let auth = json!({"captured": false, "amount_captured": 0});
            out.stripe("charge.succeeded", p.at, stripe_charge(w, o, p, &ch, auth));
            if *end == AuthEnd::Voided {
                let t = p.at + 3 * DAY;
                let mut pi = stripe_intent(o, p, "canceled", 0, &ch);
                pi["cancellation_reason"] = json!("requested_by_customer");
                out.stripe("payment_intent.canceled", t, pi);
                let released = json!({
                    "captured": false, "amount_captured": 0, "amount_refunded": p.amount, "refunded": true,
                });
                out.stripe("charge.refunded", t, stripe_charge(w, o, p, &ch, released));
            }
            (0, 0)
        }
    };
    // The charge's refunded total at `t`: the released rest, and every refund
    // created by then that had not failed by then.
    let refunded_at = |t: i64| -> i64 {
        released
            + p.refunds
                .iter()
                .filter(|r| r.at <= t)
                .filter(|r| {
                    !(r.outcome == RefundOutcome::FailedAfterSucceeded && r.settled_at <= t)
                })
                .map(|r| r.amount)
                .sum::<i64>()
    };
    let mut refunds: Vec<&Refund> = p.refunds.iter().collect();
    refunds.sort_by_key(|r| r.at);
    for r in refunds {
        let total = refunded_at(r.at);
        let charge = stripe_charge(
            w,
            o,
            p,
            &ch,
            json!({
                "amount_captured": captured,
                "amount_refunded": total,
                "refunded": total >= p.amount,
                "captured": true,
            }),
        );
        let refund = |status: &str, extra: Value| {
            let mut v = json!({
                "id": r.id, "object": "refund", "amount": r.amount, "charge": ch,
                "created": r.at, "currency": cur, "metadata": {}, "payment_intent": p.id,
                "reason": "requested_by_customer", "status": status,
                "balance_transaction": format!("txn_{}", &r.id[3..]),
            });
            if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                for (k, x) in extra {
                    obj.insert(k.clone(), x.clone());
                }
            }
            v
        };
        if p.refunds_as_total_only {
            out.stripe("charge.refunded", r.at, charge);
            continue;
        }
        let first = match r.outcome {
            RefundOutcome::Pending | RefundOutcome::PendingThenSucceeded => "pending",
            _ => "succeeded",
        };
        out.stripe("refund.created", r.at, refund(first, json!({})));
        out.stripe("charge.refunded", r.at, charge);
        match r.outcome {
            RefundOutcome::PendingThenSucceeded => {
                out.stripe(
                    "refund.updated",
                    r.settled_at,
                    refund("succeeded", json!({})),
                );
                out.stripe(
                    "charge.refund.updated",
                    r.settled_at,
                    refund("succeeded", json!({})),
                );
            }
            RefundOutcome::FailedAfterSucceeded | RefundOutcome::Failed => {
                let failed = json!({"failure_reason": "expired_or_canceled_card"});
                out.stripe(
                    "refund.failed",
                    r.settled_at,
                    refund("failed", failed.clone()),
                );
                out.stripe(
                    "charge.refund.updated",
                    r.settled_at,
                    refund("failed", failed),
                );
            }
            _ => {}
        }
    }
    for d in &p.disputes {
        let mut bts: Vec<Value> = Vec::new();
        let mut opened = false;
        for (k, s) in d.course.iter().enumerate() {
            if let Some(m) = &s.movement
                && !bts.iter().any(|b| b["id"] == json!(m.id))
            {
                let fee = m.fee.map_or(0, |f| f.0);
                bts.push(json!({
                    "id": m.id, "object": "balance_transaction", "amount": m.amount, "currency": cur,
                    "created": s.at, "fee": fee, "net": m.amount - fee,
                    "type": "adjustment", "reporting_category": if m.amount < 0 { "dispute" } else { "dispute_reversal" },
                    "fee_details": if fee != 0 { json!([{"amount": fee, "currency": cur, "type": "stripe_fee", "description": "Dispute fee"}]) } else { json!([]) },
                }));
            }
            let status = match s.status {
                DisputeStatus::Inquiry => "warning_needs_response",
                DisputeStatus::NeedsResponse => "needs_response",
                DisputeStatus::UnderReview => "under_review",
                DisputeStatus::Won => "won",
                DisputeStatus::Lost => "lost",
                DisputeStatus::WarningClosed => "warning_closed",
                DisputeStatus::MerchantRefunded => "charge_refunded",
            };
            let case_type = if d.course[0].status == DisputeStatus::Inquiry {
                "inquiry"
            } else {
                "chargeback"
            };
            let obj = json!({
                "id": d.id, "object": "dispute", "amount": d.amount, "currency": cur,
                "charge": ch, "payment_intent": p.id, "created": d.course[0].at,
                "status": status, "reason": "fraudulent", "metadata": {},
                "balance_transactions": bts,
                "is_charge_refundable": case_type == "inquiry",
                "payment_method_details": {"type": "card", "card": {"brand": "visa", "case_type": case_type}},
            });
            let prev = k.checked_sub(1).map(|i| &d.course[i]);
            let kind = if !opened {
                opened = true;
                "charge.dispute.created"
            } else if s.status.closed() && prev.is_some_and(|p| p.status == s.status) {
                "charge.dispute.closed"
            } else if s.movement.as_ref().is_some_and(|m| m.amount < 0)
                && prev.is_some_and(|p| p.status == s.status)
            {
                "charge.dispute.funds_withdrawn"
            } else if s.movement.as_ref().is_some_and(|m| m.amount > 0) {
                "charge.dispute.funds_reinstated"
            } else if s.status.closed() {
                "charge.dispute.closed"
            } else {
                "charge.dispute.updated"
            };
            out.stripe(kind, s.at, obj);
        }
    }
}

fn render_adyen(out: &mut Out<'_>, o: &Order, p: &Payment) {
    let c = &out.w.customers[o.customer];
    let reference = format!("{}-{}", o.id, 1 + p.declined_first as u8);
    let cur = p.currency;
    let shopper = json!({"shopperEmail": c.email, "shopperReference": c.shopify_id.to_string(), "authCode": "058259"});
    if p.declined_first {
        let psp = format!("{}X", &p.id[..15]);
        out.adyen(
            "AUTHORISATION",
            p.at - 60,
            &psp,
            None,
            &format!("{}-1", o.id),
            p.amount,
            cur,
            false,
            json!({"shopperEmail": c.email}),
        );
    }
    out.adyen(
        "AUTHORISATION",
        p.at,
        &p.id,
        None,
        &reference,
        p.amount,
        cur,
        true,
        shopper,
    );
    let mut t = p.at;
    match &p.flow {
        Flow::Immediate { itemised: true } => {
            let psp = format!("{}C", &p.id[..15]);
            out.adyen(
                "CAPTURE",
                p.at + HOUR,
                &psp,
                Some(&p.id),
                &reference,
                p.amount,
                cur,
                true,
                json!({}),
            );
        }
        Flow::Immediate { .. } => {}
        Flow::Captures { captures, end } => {
            for cap in captures {
                out.adyen(
                    "CAPTURE",
                    cap.at,
                    &cap.id,
                    Some(&p.id),
                    &reference,
                    cap.amount,
                    cur,
                    true,
                    json!({}),
                );
                t = t.max(cap.at);
                if cap.fails_later {
                    out.adyen(
                        "CAPTURE_FAILED",
                        cap.at + DAY,
                        &cap.id,
                        Some(&p.id),
                        &reference,
                        cap.amount,
                        cur,
                        true,
                        json!({"failureReason": "Issuer Unavailable"}),
                    );
                    t = t.max(cap.at + DAY);
                }
            }
            if *end == AuthEnd::Voided {
                let psp = format!("{}V", &p.id[..15]);
                out.adyen(
                    "CANCELLATION",
                    t + HOUR,
                    &psp,
                    Some(&p.id),
                    &reference,
                    p.amount,
                    cur,
                    true,
                    json!({}),
                );
            }
        }
        Flow::AuthOnly { end } => {
            if *end == AuthEnd::Voided {
                let psp = format!("{}V", &p.id[..15]);
                out.adyen(
                    "CANCELLATION",
                    p.at + DAY,
                    &psp,
                    Some(&p.id),
                    &reference,
                    p.amount,
                    cur,
                    true,
                    json!({}),
                );
            }
        }
    }
    for r in &p.refunds {
        match r.outcome {
            RefundOutcome::Failed => {
                out.adyen(
                    "REFUND",
                    r.at,
                    &r.id,
                    Some(&p.id),
                    &reference,
                    r.amount,
                    cur,
                    false,
                    json!({}),
                );
            }
            outcome => {
                out.adyen(
                    "REFUND",
                    r.at,
                    &r.id,
                    Some(&p.id),
                    &reference,
                    r.amount,
                    cur,
                    true,
                    json!({}),
                );
                if outcome == RefundOutcome::FailedAfterSucceeded {
                    out.adyen(
                        "REFUND_FAILED",
                        r.settled_at,
                        &r.id,
                        Some(&p.id),
                        &reference,
                        r.amount,
                        cur,
                        true,
                        json!({}),
                    );
                }
            }
        }
    }
    for d in &p.disputes {
        for s in &d.course {
            let (code, status) = match (&s.movement, s.status) {
                (None, _) => ("NOTIFICATION_OF_CHARGEBACK", "Undefended"),
                (Some(m), DisputeStatus::Lost) if m.id == "SECOND_CHARGEBACK" => {
                    ("SECOND_CHARGEBACK", "Lost")
                }
                (Some(_), DisputeStatus::Lost) => ("CHARGEBACK", "Accepted"),
                (Some(_), DisputeStatus::Won) => ("CHARGEBACK_REVERSED", "Won"),
                (Some(_), _) => ("CHARGEBACK", "Undefended"),
            };
            let extra = json!({
                "disputeStatus": status, "chargebackReasonCode": "10.4", "chargebackSchemeCode": "visa",
                "shopperEmail": c.email,
            });
            out.adyen(
                code,
                s.at,
                &d.id,
                Some(&p.id),
                &reference,
                d.amount,
                cur,
                true,
                extra,
            );
        }
    }
}

fn render_paypal(out: &mut Out<'_>, o: &Order, p: &Payment) {
    let api = "https://api.paypal.com";
    let cur = p.currency;
    let amount = |m: i64| json!({"currency_code": cur, "value": dec(m)});
    let pp_order = format!("{}O", &p.id[..16]);
    let (custom, invoice) = (o.id.to_string(), format!("WC-{}", o.id));
    let capture_body = |id: &str, m: i64, at: i64, auth: Option<&str>, final_capture: bool| {
        let fee = paypal_fee_of(p, m);
        let mut related = json!({"order_id": pp_order});
        let up = match auth {
            Some(a) => {
                related["authorization_id"] = json!(a);
                format!("{api}/v2/payments/authorizations/{a}")
            }
            None => format!("{api}/v2/checkout/orders/{pp_order}"),
        };
        json!({
            "id": id,
            "amount": amount(m),
            "final_capture": final_capture,
            "seller_protection": {"status": "ELIGIBLE", "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"]},
            "seller_receivable_breakdown": {
                "gross_amount": amount(m),
                "paypal_fee": amount(fee),
                "net_amount": amount(m - fee),
            },
            "custom_id": custom,
            "invoice_id": invoice,
            "status": "COMPLETED",
            "supplementary_data": {"related_ids": related},
            "create_time": iso(at),
            "update_time": iso(at),
            "links": [
                {"href": format!("{api}/v2/payments/captures/{id}"), "rel": "self", "method": "GET"},
                {"href": format!("{api}/v2/payments/captures/{id}/refund"), "rel": "refund", "method": "POST"},
                {"href": up, "rel": "up", "method": "GET"},
            ],
        })
    };
    let authorization = |status: &str, at: i64| {
        json!({
            "id": p.id,
            "status": status,
            "amount": amount(p.amount),
            "custom_id": custom,
            "invoice_id": invoice,
            "seller_protection": {"status": "ELIGIBLE"},
            "supplementary_data": {"related_ids": {"order_id": pp_order}},
            "expiration_time": iso(p.at + 29 * DAY),
            "create_time": iso(p.at),
            "update_time": iso(at),
            "links": [
                {"href": format!("{api}/v2/payments/authorizations/{}", p.id), "rel": "self", "method": "GET"},
                {"href": format!("{api}/v2/payments/authorizations/{}/capture", p.id), "rel": "capture", "method": "POST"},
                {"href": format!("{api}/v2/payments/authorizations/{}/void", p.id), "rel": "void", "method": "POST"},
                {"href": format!("{api}/v2/checkout/orders/{pp_order}"), "rel": "up", "method": "GET"},
            ],
        })
    };
    // The capture the refunds and disputes name.
    let capture_id = match &p.flow {
        Flow::Immediate { .. } => {
            out.paypal(
                "PAYMENT.CAPTURE.COMPLETED",
                p.at,
                "capture",
                capture_body(&p.id, p.amount, p.at, None, true),
            );
            p.id.clone()
        }
        Flow::Captures { captures, end } => {
            out.paypal(
                "PAYMENT.AUTHORIZATION.CREATED",
                p.at,
                "authorization",
                authorization("CREATED", p.at),
            );
            let c = &captures[0];
            out.paypal(
                "PAYMENT.CAPTURE.COMPLETED",
                c.at,
                "capture",
                capture_body(&c.id, c.amount, c.at, Some(&p.id), c.amount == p.amount),
            );
            if *end == AuthEnd::Voided {
                out.paypal(
                    "PAYMENT.AUTHORIZATION.VOIDED",
                    c.at + DAY,
                    "authorization",
                    authorization("VOIDED", c.at + DAY),
                );
            }
            c.id.clone()
        }
        Flow::AuthOnly { end } => {
            out.paypal(
                "PAYMENT.AUTHORIZATION.CREATED",
                p.at,
                "authorization",
                authorization("CREATED", p.at),
            );
            if *end == AuthEnd::Voided {
                out.paypal(
                    "PAYMENT.AUTHORIZATION.VOIDED",
                    p.at + DAY,
                    "authorization",
                    authorization("VOIDED", p.at + DAY),
                );
            }
            return;
        }
    };
    let refund_body = |id: &str, m: i64, status: &str, at: i64, note: &str| {
        json!({
            "id": id,
            "amount": amount(m),
            "status": status,
            "custom_id": custom,
            "invoice_id": invoice,
            "note_to_payer": note,
            "create_time": iso(at),
            "update_time": iso(at),
            "links": [
                {"href": format!("{api}/v2/payments/refunds/{id}"), "rel": "self", "method": "GET"},
                {"href": format!("{api}/v2/payments/captures/{capture_id}"), "rel": "up", "method": "GET"},
            ],
        })
    };
    for r in &p.refunds {
        out.paypal(
            "PAYMENT.CAPTURE.REFUNDED",
            r.at,
            "refund",
            refund_body(&r.id, r.amount, "COMPLETED", r.at, "Refund"),
        );
    }
    for d in &p.disputes {
        let chargeback = d.course[0].status != DisputeStatus::Inquiry;
        for (k, s) in d.course.iter().enumerate() {
            let resolved = s.status.closed();
            let outcome = match s.status {
                DisputeStatus::Won => Some("RESOLVED_SELLER_FAVOUR"),
                DisputeStatus::Lost => Some("RESOLVED_BUYER_FAVOUR"),
                DisputeStatus::MerchantRefunded => Some("ACCEPTED"),
                DisputeStatus::WarningClosed => Some("CANCELED_BY_BUYER"),
                _ => None,
            };
            let mut body = json!({
                "dispute_id": d.id,
                "create_time": iso(d.course[0].at),
                "update_time": iso(s.at),
                "disputed_transactions": [{
                    "seller_transaction_id": capture_id,
                    "gross_amount": amount(p.amount),
                    "custom": custom,
                    "invoice_number": invoice,
                }],
                "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
                "status": if resolved { "RESOLVED" } else if s.status == DisputeStatus::UnderReview { "UNDER_REVIEW" } else if chargeback { "WAITING_FOR_SELLER_RESPONSE" } else { "OPEN" },
                "dispute_amount": amount(d.amount),
                "dispute_life_cycle_stage": if chargeback { "CHARGEBACK" } else { "INQUIRY" },
                "dispute_channel": if chargeback { "EXTERNAL" } else { "INTERNAL" },
            });
            if let Some(code) = outcome {
                body["dispute_outcome"] = json!({"outcome_code": code});
            }
            let kind = if k == 0 {
                "CUSTOMER.DISPUTE.CREATED"
            } else if resolved {
                "CUSTOMER.DISPUTE.RESOLVED"
            } else {
                "CUSTOMER.DISPUTE.UPDATED"
            };
            out.paypal(kind, s.at, "dispute", body);
        }
        if let Some(rev) = p.reversal {
            let at = d.course.last().map_or(p.at, |s| s.at) + 1;
            let id = format!("{}R", &p.id[..16]);
            out.paypal(
                "PAYMENT.CAPTURE.REVERSED",
                at,
                "refund",
                refund_body(&id, rev, "COMPLETED", at, "Payment reversed"),
            );
        }
    }
}

/// The fee PayPal takes on a capture of `m` (the model is told the same).
fn paypal_fee_of(p: &Payment, m: i64) -> i64 {
    match p.fee {
        Some(_) => paypal_fee(m),
        None => 0,
    }
}

/// A one-line account of a world, for failure messages.
pub fn describe(w: &World) -> String {
    let mut s = format!(
        "tenant stores {:?}, adyen manual {}\n",
        w.stores, w.adyen_manual
    );
    for (i, c) in w.customers.iter().enumerate() {
        s.push_str(&format!(
            "  customer {i}: {} anon {:?} touches {} identifies {} redacted {}\n",
            c.email,
            c.anonymous_id,
            c.touches.len(),
            c.identifies,
            c.redacted
        ));
    }
    for o in &w.orders {
        s.push_str(&format!(
            "  order {} (customer {}) shop {} paid in {} total {} {}{}{}{}\n",
            o.order_id(),
            o.customer,
            o.shop_currency,
            o.currency,
            dec(o.total),
            if o.test { " TEST" } else { "" },
            if o.cancelled { " cancelled" } else { "" },
            o.edit
                .map(|e| format!(" edit +{} collected {}", dec(e.delta), e.collected))
                .unwrap_or_default(),
            if o.authorised_first {
                " authorised first"
            } else {
                ""
            },
        ));
        for r in &o.store_refunds {
            s.push_str(&format!(
                "    store refund {} {} via {:?}\n",
                r.id,
                dec(r.amount),
                r.gateway
            ));
        }
        for p in &o.payments {
            s.push_str(&format!(
                "    {} payment {} {} {} {:?} declined_first {} fee {:?} names_order {} total_only {}\n",
                p.provider.name(),
                p.id,
                p.currency,
                dec(p.amount),
                p.flow,
                p.declined_first,
                p.fee,
                p.names_order,
                p.refunds_as_total_only
            ));
            for r in &p.refunds {
                s.push_str(&format!(
                    "      refund {} {} {:?}\n",
                    r.id,
                    dec(r.amount),
                    r.outcome
                ));
            }
            for d in &p.disputes {
                let course: Vec<String> =
                    d.course.iter().map(|s| format!("{:?}", s.status)).collect();
                s.push_str(&format!(
                    "      dispute {} {} {}\n",
                    d.id,
                    dec(d.amount),
                    course.join(" > ")
                ));
            }
            if let Some(r) = p.reversal {
                s.push_str(&format!("      reversal {}\n", dec(r)));
            }
        }
    }
    s
}

/// Content hash of a body (the event id of collect beacons without a touch id).
pub fn body_hash(body: &[u8]) -> String {
    content_hash(body)
}
