//! storefold-scenario: test and demo data, not domain code.
//!
//! This crate holds generated histories and the small demo shop they are built
//! from. Tests, property tests, benchmarks, examples and `storefold dev`'s sample
//! use it; the fold and the aggregates never do, which is why it lives outside
//! `storefold-core`. Nothing here is read at run time by the processor.
//!
//! Deterministic scenario builder: realistic histories of canonical events for
//! tests, property tests and benchmarks. A seed fully decides the output (a small
//! SplitMix64 generator; no global randomness).

use time::{Duration, OffsetDateTime};

use storefold_core::event::*;
use storefold_core::identity::Identity;
use storefold_core::money::{Currency, Money};

/// A small demo shop shared by the generated histories (tests, benchmarks) and
/// `storefold dev`'s sample: customers' first and last names.
pub const FIRST_NAMES: [&str; 12] = [
    "Ana", "Ben", "Chloe", "Dev", "Emma", "Felix", "Hana", "Ivan", "Jun", "Lea", "Omar", "Sofia",
];
/// The demo shop's customers' last names (paired with [`FIRST_NAMES`]).
pub const LAST_NAMES: [&str; 10] = [
    "Ito", "Berg", "Costa", "Dubois", "Khan", "Lopez", "Meyer", "Novak", "Sato", "Walsh",
];
/// The demo shop's products: (sku, title, price in minor units of a two-decimal
/// currency).
pub const PRODUCTS: [(&str, &str, i64); 6] = [
    ("TEE", "Organic Tee", 2500),
    ("MUG", "Stoneware Mug", 1800),
    ("HOOD", "Zip Hoodie", 6400),
    ("CAP", "Canvas Cap", 2200),
    ("SOCK", "Wool Socks", 1200),
    ("BAG", "Tote Bag", 3000),
];
/// Where the demo shop's visitors come from: (utm_source, utm_medium,
/// utm_campaign, referrer).
pub const CAMPAIGNS: [(&str, &str, &str, &str); 5] = [
    ("google", "cpc", "spring", "https://www.google.com/"),
    ("newsletter", "email", "drop", "https://mail.example.com/"),
    ("instagram", "social", "reels", "https://l.instagram.com/"),
    ("tiktok", "social", "ugc", "https://www.tiktok.com/"),
    ("bing", "cpc", "brand", "https://www.bing.com/"),
];

/// SplitMix64: tiny, fast, and good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output is decided by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1).max(1) as u64) as i64
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Knobs of a generated history.
#[derive(Clone, Debug)]
pub struct ScenarioSpec {
    /// Tenant stamped on every generated envelope.
    pub tenant: String,
    /// How many customers the history follows.
    pub customers: usize,
    /// Upper bound of orders per customer (each customer gets at least one).
    pub max_orders_per_customer: usize,
    /// Percent of events delivered twice (provider retries).
    pub duplicate_pct: u64,
    /// Percent of customers sharing a phone with another (ambiguous phones).
    pub shared_phone_pct: u64,
    /// Percent of customers who change their email in the store (a later
    /// profile with a new email and the same store customer id; later orders
    /// carry the new email). 0 draws nothing: older histories stay the same.
    pub email_change_pct: u64,
    /// Percent of customers who also write to the helpdesk without an email
    /// (a ticket naming their helpdesk user id and phone, then one naming the
    /// id only). 0 draws nothing.
    pub helpdesk_phone_pct: u64,
    /// Percent of customers the store later asks to erase (a redaction naming
    /// their first email, sometimes their first order). 0 draws nothing.
    pub redaction_pct: u64,
    /// Percent of customers about whom the operator decides something (a
    /// merge with another customer, a split of an email change, a phone
    /// blocked from them, sometimes a later decision on the same pair that
    /// overrules it). 0 draws nothing.
    pub decision_pct: u64,
    /// How many cost reports the history holds for the SKU its orders sell
    /// (`SKU-1`): unit costs from times spread over the history, some at the
    /// same time, in any of its currencies, half of them with the stock (out
    /// of stock with a restock date, often). 0 draws nothing.
    pub cost_reports: usize,
}

impl Default for ScenarioSpec {
    fn default() -> Self {
        ScenarioSpec {
            tenant: "acme".into(),
            customers: 6,
            max_orders_per_customer: 3,
            duplicate_pct: 10,
            shared_phone_pct: 20,
            email_change_pct: 0,
            helpdesk_phone_pct: 0,
            redaction_pct: 0,
            decision_pct: 0,
            cost_reports: 0,
        }
    }
}

struct Ctx {
    tenant: String,
    seq: u64,
    events: Vec<Envelope>,
}

impl Ctx {
    fn push(&mut self, provider: &str, at: OffsetDateTime, event: Event) {
        self.seq += 1;
        self.events.push(Envelope {
            tenant: self.tenant.clone(),
            provider: provider.to_string(),
            event_id: format!("{provider}-{}", self.seq),
            occurred_at: at,
            event,
        });
    }
}

fn cur(code: &str) -> Currency {
    Currency::from_code(code).unwrap_or_else(|_| unreachable!("static code {code}"))
}

/// Generates a history of `spec.customers` customers: profiles (with stale
/// updates), touches and identifies, a phone-only profile that merges, orders with
/// payments (before or after the order), partial refunds, disputes won and lost,
/// split shipments with exceptions and returns, tickets with CSAT, and duplicates.
/// The order of the returned events is the "in-order" history.
pub fn generate(seed: u64, spec: &ScenarioSpec) -> Vec<Envelope> {
    let mut rng = Rng::new(seed);
    let mut cx = Ctx {
        tenant: spec.tenant.clone(),
        seq: 0,
        events: Vec::new(),
    };
    let base =
        time::macros::datetime!(2025-01-01 0:00 UTC) + Duration::hours(rng.below(1000) as i64);
    let currencies = ["USD", "EUR", "JPY", "KWD"];
    let mut order_no = 1000u64 + rng.below(1000);
    let shared_phone = format!("+1613555{:04}", rng.below(10_000));
    // Each customer's email, phone and new email when it changes one.
    let mut people: Vec<(String, String, Option<String>)> = Vec::new();
    for c in 0..spec.customers {
        let email = format!("customer{c}.{}@example.com", seed % 1000);
        let phone = if rng.chance(spec.shared_phone_pct) {
            shared_phone.clone()
        } else {
            format!("+1613555{:04}", 1000 + (c as u64 * 37 + seed) % 9000)
        };
        let t0 = base + Duration::days(rng.below(60) as i64);
        let anon = format!("anon-{seed}-{c}");
        let ext = format!("{}", 7_000_000 + c as u64 * 13 + seed % 997);
        // A phone-only profile from the store before the customer gave an email.
        if rng.chance(40) {
            cx.push(
                "woocommerce",
                t0 - Duration::days(3),
                Event::CustomerUpserted(CustomerUpserted {
                    identity: Identity::default().with_phone(Some(&phone), None),
                    first_name: Some("Guest".into()),
                    last_name: None,
                    addresses: vec![],
                    consent: Consent::default(),
                    tags: vec![],
                    note: None,
                    deleted: false,
                    created_at: Some(t0 - Duration::days(3)),
                    updated_at: t0 - Duration::days(3),
                }),
            );
        }
        // Anonymous touches, then an identify.
        for i in 0..rng.below(3) {
            let sources = ["google", "newsletter", "facebook", "tiktok"];
            let src = sources[rng.below(sources.len() as u64) as usize];
            cx.push(
                "collect",
                t0 - Duration::hours(10 - i as i64),
                Event::Touch(Touch {
                    touch_id: format!("touch-{seed}-{c}-{i}"),
                    identity: Identity::default().with_anonymous_id(Some(&anon)),
                    utm: Utm {
                        source: Some(src.into()),
                        medium: Some("cpc".into()),
                        campaign: Some(format!("camp{}", rng.below(5))),
                        term: None,
                        content: None,
                    },
                    landing_page: Some(format!("https://shop.example/?utm_source={src}")),
                    referrer: None,
                    gclid: None,
                    fbclid: None,
                    cart_token: None,
                    at: t0 - Duration::hours(10 - i as i64),
                }),
            );
        }
        if rng.chance(70) {
            cx.push(
                "collect",
                t0 - Duration::hours(1),
                Event::Identify(Identify {
                    identity: Identity::default()
                        .with_anonymous_id(Some(&anon))
                        .with_email(Some(&email)),
                    at: t0 - Duration::hours(1),
                }),
            );
        }
        // Profile, with an older update that must not win.
        for (i, name) in [("Ann", 2i64), ("Anne", 5)].iter().enumerate() {
            cx.push(
                "shopify",
                t0 + Duration::days(name.1),
                Event::CustomerUpserted(CustomerUpserted {
                    identity: Identity::default()
                        .with_email(Some(&email))
                        .with_phone(Some(&phone), None)
                        .with_external("shopify", ext.clone()),
                    first_name: Some(name.0.to_string()),
                    last_name: Some(format!("Doe{c}")),
                    addresses: vec![Address {
                        city: Some("Ottawa".into()),
                        country: Some("CA".into()),
                        ..Address::default()
                    }],
                    consent: Consent {
                        email_marketing: Some(i == 1),
                        sms_marketing: None,
                    },
                    tags: vec![],
                    note: None,
                    deleted: false,
                    created_at: Some(t0),
                    updated_at: t0 + Duration::days(name.1),
                }),
            );
        }
        // A new email in the store, from `changed_at` on.
        let changed_at = t0 + Duration::days(20);
        let new_email = format!("customer{c}.renamed.{}@example.com", seed % 1000);
        let changes_email = spec.email_change_pct > 0 && rng.chance(spec.email_change_pct);
        people.push((
            email.clone(),
            phone.clone(),
            changes_email.then(|| new_email.clone()),
        ));
        if changes_email {
            cx.push(
                "shopify",
                changed_at,
                Event::CustomerUpserted(CustomerUpserted {
                    identity: Identity::default()
                        .with_email(Some(&new_email))
                        .with_phone(Some(&phone), None)
                        .with_external("shopify", ext.clone()),
                    first_name: Some("Anne".into()),
                    last_name: Some(format!("Doe{c}")),
                    addresses: vec![],
                    consent: Consent::default(),
                    tags: vec![],
                    note: None,
                    deleted: false,
                    created_at: Some(t0),
                    updated_at: changed_at,
                }),
            );
        }
        if spec.helpdesk_phone_pct > 0 && rng.chance(spec.helpdesk_phone_pct) {
            let user = format!("zd-{seed}-{c}");
            for (k, requester) in [
                Identity::default()
                    .with_external("zendesk", user.clone())
                    .with_phone(Some(&phone), None),
                Identity::default().with_external("zendesk", user.clone()),
            ]
            .into_iter()
            .enumerate()
            {
                let at = t0 + Duration::days(4 + k as i64);
                cx.push(
                    "zendesk",
                    at,
                    Event::TicketUpdated(Ticket {
                        provider: "zendesk".into(),
                        ticket_id: format!("phone-{seed}-{c}-{k}"),
                        requester,
                        order_links: vec![],
                        status: TicketStatus::Open,
                        subject: Some("Called about my order".into()),
                        reasons: vec![ReasonCode::Other],
                        tags: vec![],
                        created_at: at,
                        updated_at: at,
                        first_response_at: None,
                        solved_at: None,
                        csat: None,
                    }),
                );
            }
        }
        let n_orders = 1 + rng.below(spec.max_orders_per_customer as u64) as usize;
        for o in 0..n_orders {
            order_no += 1;
            let order_id = format!("shopify:{order_no}");
            let currency = cur(currencies[rng.below(currencies.len() as u64) as usize]);
            let unit = 10i64.pow(u32::from(currency.exponent()));
            let total = Money::new(
                (20 + rng.below(300) as i64) * unit + rng.below(unit as u64) as i64,
                currency,
            );
            let placed = t0 + Duration::days(7 + o as i64 * 30);
            let pi = format!("pi_{seed}_{order_no}");
            let ch = format!("ch_{seed}_{order_no}");
            let track_a = format!("1Z{seed}{order_no}A");
            let track_b = format!("1Z{seed}{order_no}B");
            let split = rng.chance(50);
            let email = if changes_email && placed >= changed_at {
                new_email.as_str()
            } else {
                email.as_str()
            };
            let mk_order =
                |status: OrderStatus, fs: &str, updated: OffsetDateTime, tracks: Vec<String>| {
                    Event::OrderUpserted(Box::new(OrderUpserted {
                        order_id: order_id.clone(),
                        number: Some(format!("#{order_no}")),
                        customer: Identity::default()
                            .with_email(Some(email))
                            .with_external("shopify", ext.clone()),
                        customer_name: Some(format!("Ann Doe{c}")),
                        status,
                        financial_status: Some(fs.to_string()),
                        fulfillment_status: None,
                        totals: OrderTotals {
                            total,
                            subtotal: None,
                            discounts: None,
                            shipping: None,
                            tax: None,
                            presentment_total: None,
                        },
                        line_items: vec![LineItem {
                            id: format!("li-{order_no}-1"),
                            sku: Some("SKU-1".into()),
                            title: "Shirt".into(),
                            quantity: 1,
                            unit_price: total,
                            total_discount: None,
                        }],
                        discount_codes: vec![],
                        payment_refs: vec![PaymentRef {
                            provider: "stripe".into(),
                            reference: pi.clone(),
                        }],
                        tracking_numbers: tracks,
                        attribution: Attribution::default(),
                        cart_token: Some(format!("cart-{seed}-{order_no}")),
                        shipping_address: None,
                        billing_address: None,
                        note: None,
                        tags: vec![],
                        test: false,
                        created_at: placed,
                        updated_at: updated,
                        cancelled_at: None,
                        cancel_reason: None,
                        store_money: None,
                    }))
                };
            cx.push(
                "shopify",
                placed,
                mk_order(OrderStatus::Pending, "pending", placed, vec![]),
            );
            cx.push(
                "shopify",
                placed + Duration::hours(2),
                mk_order(
                    OrderStatus::Open,
                    "paid",
                    placed + Duration::hours(2),
                    vec![],
                ),
            );
            let fee = Money::new(total.minor / 30 + 30, currency);
            cx.push(
                "stripe",
                placed + Duration::minutes(1),
                Event::PaymentSucceeded(Payment {
                    provider: "stripe".into(),
                    payment_id: pi.clone(),
                    links: vec![
                        OrderLink::Payment {
                            provider: "stripe".into(),
                            reference: pi.clone(),
                        },
                        OrderLink::Payment {
                            provider: "stripe".into(),
                            reference: ch.clone(),
                        },
                    ],
                    status: PaymentStatus::Succeeded,
                    amount: total,
                    fee: rng.chance(70).then_some(fee),
                    net: None,
                    amount_refunded: None,
                    method: Some("card".into()),
                    failure_reason: None,
                    payer: Identity::default(),
                    at: placed + Duration::minutes(1),
                    captured: None,
                    capture_id: None,
                    auto_capture: false,
                }),
            );
            if rng.chance(15) {
                cx.push(
                    "stripe",
                    placed,
                    Event::PaymentFailed(Payment {
                        provider: "stripe".into(),
                        payment_id: format!("pi_failed_{seed}_{order_no}"),
                        links: vec![OrderLink::Order {
                            order_id: order_id.clone(),
                        }],
                        status: PaymentStatus::Failed,
                        amount: total,
                        fee: None,
                        net: None,
                        amount_refunded: None,
                        method: Some("card".into()),
                        failure_reason: Some("card_declined".into()),
                        payer: Identity::default(),
                        at: placed,
                        captured: None,
                        capture_id: None,
                        auto_capture: false,
                    }),
                );
            }
            // Fulfillments: the store knows the tracking numbers...
            let tracks: Vec<String> = if split {
                vec![track_a.clone(), track_b.clone()]
            } else {
                vec![track_a.clone()]
            };
            for t in &tracks {
                cx.push(
                    "shopify",
                    placed + Duration::days(1),
                    Event::ShipmentUpdated(Shipment {
                        provider: "shopify".into(),
                        tracking_number: t.clone(),
                        carrier: Some("UPS".into()),
                        links: vec![
                            OrderLink::Order {
                                order_id: order_id.clone(),
                            },
                            OrderLink::Tracking { number: t.clone() },
                        ],
                        fulfillment_id: Some(format!("ful-{t}")),
                        status: ShipmentStatus::LabelCreated,
                        checkpoints: vec![],
                        line_item_ids: vec![format!("li-{order_no}-1")],
                        estimated_delivery: None,
                        at: placed + Duration::days(1),
                    }),
                );
            }
            // ...the carrier only the tracking number.
            for (i, t) in tracks.iter().enumerate() {
                let exception = rng.chance(25);
                let returned = rng.chance(10);
                let mut statuses = vec![ShipmentStatus::InTransit];
                if exception {
                    statuses.push(ShipmentStatus::Exception);
                }
                statuses.push(if returned {
                    ShipmentStatus::Returned
                } else {
                    ShipmentStatus::Delivered
                });
                for (j, st) in statuses.iter().enumerate() {
                    let at = placed + Duration::days(2 + j as i64) + Duration::hours(i as i64);
                    cx.push(
                        "aftership",
                        at,
                        Event::ShipmentUpdated(Shipment {
                            provider: "aftership".into(),
                            tracking_number: t.clone(),
                            carrier: Some("ups".into()),
                            links: vec![OrderLink::Tracking { number: t.clone() }],
                            fulfillment_id: None,
                            status: *st,
                            checkpoints: vec![Checkpoint {
                                at,
                                status: *st,
                                message: Some(format!("{} scan", st.as_str())),
                                location: Some("Ottawa".into()),
                            }],
                            line_item_ids: vec![],
                            estimated_delivery: None,
                            at,
                        }),
                    );
                }
            }
            if rng.chance(40) {
                let amount = Money::new(total.minor / 3, currency);
                let re = format!("re_{seed}_{order_no}");
                for (k, status) in [RefundStatus::Pending, RefundStatus::Succeeded]
                    .iter()
                    .enumerate()
                {
                    cx.push(
                        "stripe",
                        placed + Duration::days(10 + k as i64),
                        Event::RefundIssued(Refund {
                            provider: "stripe".into(),
                            refund_id: re.clone(),
                            payment_id: Some(pi.clone()),
                            links: vec![OrderLink::Payment {
                                provider: "stripe".into(),
                                reference: ch.clone(),
                            }],
                            amount,
                            status: *status,
                            reason: Some("requested_by_customer".into()),
                            lines: vec![],
                            adjustments: None,
                            at: placed + Duration::days(10),
                            created_at: None,
                            gateway: None,
                        }),
                    );
                }
                cx.push(
                    "shopify",
                    placed + Duration::days(9),
                    Event::ReturnRequested(Return {
                        provider: "zendesk".into(),
                        return_id: format!("ret-{order_no}"),
                        links: vec![OrderLink::Number {
                            number: format!("#{order_no}"),
                        }],
                        reason: [ReasonCode::Size, ReasonCode::Defect, ReasonCode::Late]
                            [rng.below(3) as usize],
                        resolution: None,
                        line_item_ids: vec![format!("li-{order_no}-1")],
                        note: Some("too small".into()),
                        at: placed + Duration::days(9),
                    }),
                );
                cx.push(
                    "shopify",
                    placed + Duration::days(12),
                    Event::ReturnResolved(Return {
                        provider: "shopify".into(),
                        return_id: format!("ret-{order_no}"),
                        links: vec![OrderLink::Order {
                            order_id: order_id.clone(),
                        }],
                        reason: ReasonCode::Other,
                        resolution: Some(ReturnResolution::Refund),
                        line_item_ids: vec![],
                        note: None,
                        at: placed + Duration::days(12),
                    }),
                );
            }
            if rng.chance(15) {
                let dp = format!("dp_{seed}_{order_no}");
                let won = rng.chance(50);
                let mk = |status: DisputeStatus, at: OffsetDateTime, withdrawn: bool| Dispute {
                    provider: "stripe".into(),
                    dispute_id: dp.clone(),
                    payment_id: Some(pi.clone()),
                    links: vec![OrderLink::Payment {
                        provider: "stripe".into(),
                        reference: pi.clone(),
                    }],
                    amount: total,
                    status,
                    reason: Some("fraudulent".into()),
                    funds_withdrawn: withdrawn,
                    funds_reinstated: won && status == DisputeStatus::Won,
                    at,
                    movements: vec![],
                };
                let d0 = placed + Duration::days(20);
                cx.push(
                    "stripe",
                    d0,
                    Event::DisputeOpened(mk(DisputeStatus::NeedsResponse, d0, true)),
                );
                cx.push(
                    "stripe",
                    d0 + Duration::days(30),
                    Event::DisputeClosed(mk(
                        if won {
                            DisputeStatus::Won
                        } else {
                            DisputeStatus::Lost
                        },
                        d0 + Duration::days(30),
                        false,
                    )),
                );
            }
        }
        if rng.chance(50) {
            let opened = t0 + Duration::days(15);
            for (k, status) in [TicketStatus::Open, TicketStatus::Solved]
                .iter()
                .enumerate()
            {
                let updated = opened + Duration::hours(5 * k as i64 + 1);
                cx.push(
                    "zendesk",
                    updated,
                    Event::TicketUpdated(Ticket {
                        provider: "zendesk".into(),
                        ticket_id: format!("{seed}{c}"),
                        requester: Identity::default().with_email(Some(&email)),
                        order_links: vec![],
                        status: *status,
                        subject: Some("Where is my order?".into()),
                        reasons: vec![ReasonCode::Late],
                        tags: vec!["wismo".into()],
                        created_at: opened,
                        updated_at: updated,
                        first_response_at: Some(opened + Duration::minutes(42)),
                        solved_at: (*status == TicketStatus::Solved).then_some(updated),
                        csat: (*status == TicketStatus::Solved).then_some(Csat {
                            score: 1 + rng.below(5) as u8,
                        }),
                    }),
                );
            }
        }
    }
    // The operator's decisions, late in the history (the fold must give the
    // same result wherever they arrive).
    if spec.decision_pct > 0 {
        for c in 0..people.len() {
            if !rng.chance(spec.decision_pct) {
                continue;
            }
            let (email, phone, new_email) = people[c].clone();
            let other = people[(c + 1 + rng.below(people.len() as u64) as usize) % people.len()]
                .0
                .clone();
            let at = base + Duration::days(300) + Duration::hours(rng.below(500) as i64);
            let (decision, b) = match (rng.below(3), new_email) {
                (0, Some(new)) => (IdentityDecision::Split, Party::Email(new)),
                (1, _) => (IdentityDecision::Block, Party::Phone(phone)),
                _ if other != email => (IdentityDecision::Merge, Party::Email(other)),
                _ => continue,
            };
            let decide = |decision| {
                Event::IdentityDecided(IdentityDecided {
                    decision,
                    a: Party::Email(email.clone()),
                    b: b.clone(),
                    requested_by: "operator".into(),
                })
            };
            cx.push("operator", at, decide(decision));
            // Sometimes the operator changes its mind, before or after.
            if rng.chance(30) {
                let again = if decision == IdentityDecision::Merge {
                    IdentityDecision::Split
                } else {
                    IdentityDecision::Merge
                };
                let when = if rng.chance(50) {
                    at + Duration::days(1)
                } else {
                    at - Duration::days(1)
                };
                cx.push("operator", when, decide(again));
            }
        }
    }
    // Erasure requests, after everything else of the customer (the fold
    // must give the same result wherever they arrive).
    if spec.redaction_pct > 0 {
        for c in 0..spec.customers {
            if rng.chance(spec.redaction_pct) {
                let email = format!("customer{c}.{}@example.com", seed % 1000);
                let orders = if rng.chance(50) {
                    cx.events
                        .iter()
                        .find_map(|e| match &e.event {
                            Event::OrderUpserted(o)
                                if o.customer.email.as_deref() == Some(email.as_str()) =>
                            {
                                Some(o.order_id.clone())
                            }
                            _ => None,
                        })
                        .into_iter()
                        .collect()
                } else {
                    Vec::new()
                };
                cx.push(
                    "shopify",
                    base + Duration::days(400),
                    Event::CustomerRedacted(CustomerRedacted {
                        identity: Identity::default().with_email(Some(&email)),
                        orders,
                        requested_by: "shopify".into(),
                        keys: Vec::new(),
                    }),
                );
            }
        }
    }
    // Cost reports, drawn apart so that the rest of the history stays the same.
    let mut crng = Rng::new(seed ^ 0xC057_C057);
    for _ in 0..spec.cost_reports {
        // Some say the stock too: out of stock (with a restock date), or not.
        let available = crng.chance(50).then(|| crng.below(4) as i64 * 5);
        let eta = match available {
            Some(0) if crng.chance(70) => Some(base + Duration::days(crng.below(150) as i64)),
            _ => None,
        };
        let at = base
            + Duration::days(crng.below(150) as i64 - 10)
            + Duration::hours(crng.below(3) as i64 * 8);
        let currency = cur(currencies[crng.below(currencies.len() as u64) as usize]);
        let provider = if crng.chance(50) { "erp" } else { "shopify" };
        cx.push(
            provider,
            at,
            Event::InventoryUpdated(InventoryUpdated {
                sku: "SKU-1".into(),
                item_id: None,
                unit_cost: Some(Money::new(100 + crng.below(900) as i64, currency)),
                available,
                backorder: None,
                eta,
                at,
            }),
        );
    }
    // Provider retries: the same event again, later in the stream.
    let n = cx.events.len();
    for i in 0..n {
        if rng.chance(spec.duplicate_pct) {
            let e = cx.events[i].clone();
            cx.events.push(e);
        }
    }
    cx.events
}
