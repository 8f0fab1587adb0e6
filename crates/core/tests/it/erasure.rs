//! Erasure: after a redaction, no personal string of the subject is left in any
//! record the fold keeps or in the newest projection of anything, whatever the
//! order the events arrived in; the subject's figures stay (anonymously) and
//! another customer's data is untouched.

use std::collections::BTreeMap;

use storefold_core::engine::{FoldConfig, Item, Projection};
use storefold_core::event::*;
use storefold_core::identity::{ExternalId, Identity, IdentityKey, IdentityKind};
use storefold_core::money::{Currency, Money};
use storefold_core::state::encode;
use storefold_core::{Engine, Envelope, MemStore};
use storefold_scenario::Rng;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2025-05-01 09:00 UTC);

/// A shopper whose every personal string carries `mark` (the phone its digits).
struct Person {
    n: u32,
    mark: &'static str,
    phone_digits: &'static str,
}

impl Person {
    fn email(&self) -> String {
        format!("{}.q@erase.test", self.mark)
    }
    fn phone(&self) -> String {
        format!("+1{}", self.phone_digits)
    }
    fn order_id(&self) -> String {
        format!("shopify:{}", 500 + self.n)
    }
    fn identity(&self) -> Identity {
        let mut id = Identity::default()
            .with_email(Some(&self.email()))
            .with_phone(Some(&self.phone()), None);
        id.external.push(ExternalId {
            source: "shopify".into(),
            id: format!("83000{}{}", self.n, self.phone_digits),
        });
        id
    }
    fn address(&self) -> Address {
        Address {
            name: Some(format!("{} Quist", self.mark)),
            company: Some(format!("{} GmbH", self.mark)),
            line1: Some(format!("7 {}straat", self.mark)),
            line2: Some(format!("flat {}", self.mark)),
            city: Some(format!("{}ville", self.mark)),
            region: Some(format!("{} county", self.mark)),
            postal_code: Some(format!("{}-1011", self.mark)),
            country: Some("NL".into()),
            phone: Some(self.phone()),
        }
    }

    /// The shopper's history: a campaign visit, the store's profile, an order
    /// paid at Stripe (the payment arriving before the order, as checkouts
    /// do), a partial refund with the merchant's note, a fulfillment and the
    /// carrier's tracking, a return, a ticket, and a payment naming an order
    /// that never arrives (it stays parked).
    fn history(&self) -> Vec<Envelope> {
        let n = self.n;
        let m = self.mark;
        let usd = |minor| Money::new(minor, Currency::from_code("USD").unwrap());
        let oid = self.order_id();
        let pi = format!("pi_{n}");
        let track = format!("1Z{n}");
        let anon = format!("anon-{m}");
        let cart = format!("cart-{m}");
        let landing = format!(
            "https://shop.example/welcome?email={m}.q%40erase.test&utm_source=mail&utm_campaign=spring"
        );
        let ev = |id: &str, at: OffsetDateTime, event: Event| Envelope {
            tenant: "acme".into(),
            provider: "test".into(),
            event_id: format!("p{n}-{id}"),
            occurred_at: at,
            event,
        };
        let payment = |payment_id: &str, links: Vec<OrderLink>, at| {
            Event::PaymentSucceeded(Payment {
                provider: "stripe".into(),
                payment_id: payment_id.into(),
                links,
                status: PaymentStatus::Succeeded,
                amount: usd(12_000),
                fee: Some(usd(378)),
                net: None,
                amount_refunded: None,
                captured: None,
                capture_id: None,
                method: Some("card".into()),
                failure_reason: None,
                payer: Identity::default()
                    .with_email(Some(&self.email()))
                    .with_phone(Some(&self.phone()), None),
                at,
                auto_capture: false,
            })
        };
        let checkpoint = |at, status| Checkpoint {
            at,
            status,
            message: Some(format!("Signed for by {m}")),
            location: Some(format!("{m}ville depot")),
        };
        vec![
            ev(
                "touch",
                T0 - Duration::days(2),
                Event::Touch(Touch {
                    touch_id: format!("tch-{n}"),
                    identity: Identity::default().with_anonymous_id(Some(&anon)),
                    utm: Utm {
                        source: Some("mail".into()),
                        medium: Some("email".into()),
                        campaign: Some("spring".into()),
                        term: None,
                        content: None,
                    },
                    landing_page: Some(landing.clone()),
                    referrer: Some(format!("https://mail.example/inbox/{m}")),
                    gclid: Some(format!("gclid-{m}")),
                    fbclid: Some(format!("fbclid-{m}")),
                    cart_token: Some(cart.clone()),
                    at: T0 - Duration::days(2),
                }),
            ),
            ev(
                "identify",
                T0 - Duration::days(2) + Duration::minutes(3),
                Event::Identify(Identify {
                    identity: Identity::default()
                        .with_anonymous_id(Some(&anon))
                        .with_email(Some(&self.email())),
                    at: T0 - Duration::days(2) + Duration::minutes(3),
                }),
            ),
            ev(
                "profile",
                T0 - Duration::days(1),
                Event::CustomerUpserted(CustomerUpserted {
                    identity: self.identity(),
                    first_name: Some(m.to_string()),
                    last_name: Some(format!("{m}-Quist")),
                    addresses: vec![self.address()],
                    consent: Consent {
                        email_marketing: Some(true),
                        sms_marketing: None,
                    },
                    tags: vec![format!("vip-{m}")],
                    note: Some(format!("{m} prefers evening delivery")),
                    deleted: false,
                    created_at: Some(T0 - Duration::days(1)),
                    updated_at: T0 - Duration::days(1),
                }),
            ),
            ev(
                "payment",
                T0 - Duration::minutes(1),
                payment(
                    &pi,
                    vec![OrderLink::Payment {
                        provider: "stripe".into(),
                        reference: pi.clone(),
                    }],
                    T0 - Duration::minutes(1),
                ),
            ),
            ev(
                "order",
                T0,
                Event::OrderUpserted(Box::new(OrderUpserted {
                    order_id: oid.clone(),
                    number: Some(format!("#{}", 500 + n)),
                    customer: self.identity(),
                    customer_name: Some(format!("{m} Quist")),
                    status: OrderStatus::Open,
                    financial_status: Some("paid".into()),
                    fulfillment_status: None,
                    totals: OrderTotals {
                        total: usd(12_000),
                        subtotal: None,
                        discounts: Some(usd(1_000)),
                        shipping: None,
                        tax: None,
                        presentment_total: None,
                    },
                    line_items: vec![LineItem {
                        id: format!("li-{n}"),
                        sku: Some("SHIRT-M".into()),
                        title: "Shirt".into(),
                        quantity: 1,
                        unit_price: usd(13_000),
                        total_discount: Some(usd(1_000)),
                    }],
                    discount_codes: vec![format!("{m}-WELCOME")],
                    payment_refs: vec![PaymentRef {
                        provider: "stripe".into(),
                        reference: pi.clone(),
                    }],
                    tracking_numbers: vec![track.clone()],
                    attribution: Attribution {
                        landing_site: Some(landing.clone()),
                        referring_site: Some(format!("https://mail.example/inbox/{m}")),
                        source_name: Some("web".into()),
                        utm: Utm::default(),
                        note_attributes: vec![("gift_message".into(), format!("for {m}"))],
                    },
                    cart_token: Some(cart.clone()),
                    shipping_address: Some(self.address()),
                    billing_address: Some(self.address()),
                    note: Some(format!("leave it with {m}'s neighbour")),
                    tags: vec![format!("{m}-tag")],
                    test: false,
                    created_at: T0,
                    updated_at: T0,
                    cancelled_at: None,
                    cancel_reason: None,
                    store_money: None,
                })),
            ),
            ev(
                "refund",
                T0 + Duration::days(3),
                Event::RefundIssued(Refund {
                    provider: "stripe".into(),
                    refund_id: format!("re_{n}"),
                    payment_id: Some(pi.clone()),
                    links: vec![OrderLink::Payment {
                        provider: "stripe".into(),
                        reference: pi.clone(),
                    }],
                    amount: usd(2_500),
                    status: RefundStatus::Succeeded,
                    reason: Some(format!("{m} found a hole in the sleeve")),
                    lines: vec![],
                    adjustments: None,
                    at: T0 + Duration::days(3),
                    created_at: None,
                    gateway: None,
                }),
            ),
            ev(
                "fulfillment",
                T0 + Duration::days(1),
                Event::ShipmentUpdated(Shipment {
                    provider: "shopify".into(),
                    tracking_number: track.clone(),
                    carrier: Some("UPS".into()),
                    links: vec![OrderLink::Order {
                        order_id: oid.clone(),
                    }],
                    fulfillment_id: Some(format!("ful-{n}")),
                    status: ShipmentStatus::InTransit,
                    checkpoints: vec![checkpoint(
                        T0 + Duration::days(1),
                        ShipmentStatus::InTransit,
                    )],
                    line_item_ids: vec![format!("li-{n}")],
                    estimated_delivery: None,
                    at: T0 + Duration::days(1),
                }),
            ),
            ev(
                "tracking",
                T0 + Duration::days(2),
                Event::ShipmentUpdated(Shipment {
                    provider: "aftership".into(),
                    tracking_number: track.clone(),
                    carrier: Some("ups".into()),
                    links: vec![OrderLink::Tracking {
                        number: track.clone(),
                    }],
                    fulfillment_id: None,
                    status: ShipmentStatus::Delivered,
                    checkpoints: vec![checkpoint(
                        T0 + Duration::days(2),
                        ShipmentStatus::Delivered,
                    )],
                    line_item_ids: vec![],
                    estimated_delivery: None,
                    at: T0 + Duration::days(2),
                }),
            ),
            ev(
                "return",
                T0 + Duration::days(4),
                Event::ReturnRequested(Return {
                    provider: "shopify".into(),
                    return_id: format!("ret-{n}"),
                    links: vec![OrderLink::Order {
                        order_id: oid.clone(),
                    }],
                    reason: ReasonCode::Defect,
                    resolution: None,
                    line_item_ids: vec![format!("li-{n}")],
                    note: Some(format!("{m} wants a refund")),
                    at: T0 + Duration::days(4),
                }),
            ),
            ev(
                "ticket",
                T0 + Duration::days(4),
                Event::TicketUpdated(Ticket {
                    provider: "zendesk".into(),
                    ticket_id: format!("zd-{n}"),
                    requester: Identity::default().with_email(Some(&self.email())),
                    order_links: vec![],
                    status: TicketStatus::Open,
                    subject: Some(format!("{m}: my shirt has a hole")),
                    reasons: vec![ReasonCode::Defect],
                    tags: vec![format!("{m}-ticket")],
                    created_at: T0 + Duration::days(4),
                    updated_at: T0 + Duration::days(4),
                    first_response_at: None,
                    solved_at: None,
                    csat: None,
                }),
            ),
            ev(
                "stray-payment",
                T0 + Duration::days(5),
                payment(
                    &format!("pi_stray_{n}"),
                    vec![OrderLink::Order {
                        order_id: format!("woocommerce:{}", 900 + n),
                    }],
                    T0 + Duration::days(5),
                ),
            ),
        ]
    }

    fn redaction(&self) -> Envelope {
        Envelope {
            tenant: "acme".into(),
            provider: "shopify".into(),
            event_id: format!("p{}-redact", self.n),
            occurred_at: T0 + Duration::days(10),
            event: Event::CustomerRedacted(CustomerRedacted {
                identity: Identity::default().with_email(Some(&self.email())),
                orders: vec![self.order_id()],
                requested_by: "shopify".into(),
                keys: Vec::new(),
            }),
        }
    }

    /// Where `text` (lowercased) shows something of this person.
    fn found_in(&self, text: &str) -> Vec<&'static str> {
        [self.mark, self.phone_digits]
            .into_iter()
            .filter(|s| text.contains(s))
            .collect()
    }

    fn customer_id(&self) -> String {
        IdentityKey::new("acme", IdentityKind::Email, &self.email())
            .customer_id()
            .0
    }
}

const ANNIKA: Person = Person {
    n: 1,
    mark: "annika",
    phone_digits: "4155550101",
};
const BOBBERT: Person = Person {
    n: 2,
    mark: "bobbert",
    phone_digits: "4155550202",
};

struct Run {
    store: MemStore,
    /// The newest projection of every key.
    newest: BTreeMap<String, Projection>,
}

fn fold(events: &[Envelope], batches: &[usize]) -> Run {
    let mut store = MemStore::default();
    let mut newest = BTreeMap::new();
    let mut rest = events;
    let mut sizes = batches.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        let mut engine = Engine::new();
        for e in &rest[..n] {
            engine.apply(&store, e).expect("fold");
        }
        rest = &rest[n..];
        let out = engine.finish(&store);
        store.commit(out.changes);
        for p in out.projections {
            newest.insert(p.key(), p);
        }
    }
    Run { store, newest }
}

/// Every stored record (key and value, as the processor stores them) and every
/// newest projection, each lowercased with what names it.
fn dump(run: &Run) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = run
        .store
        .records
        .iter()
        .map(|(k, v)| {
            let text = format!("{} {}", k.encode(), String::from_utf8_lossy(&encode(v)));
            (k.encode(), text.to_lowercase())
        })
        .collect();
    for (k, p) in &run.newest {
        let text = serde_json::to_string(p).expect("projection serialises");
        out.push((format!("-/projection/{k}"), text.to_lowercase()));
    }
    out.sort();
    out
}

/// The arrival orders tried: as generated, reversed, the redaction first,
/// and shuffles; one event per batch, all at once, and random batches.
fn arrivals(events: &[Envelope]) -> Vec<(String, Vec<Envelope>, Vec<usize>)> {
    let mut out = Vec::new();
    let n = events.len();
    out.push(("in order, one by one".into(), events.to_vec(), vec![1]));
    out.push(("in order, one batch".into(), events.to_vec(), vec![n]));
    let mut rev = events.to_vec();
    rev.reverse();
    out.push(("reversed, one by one".into(), rev, vec![1]));
    let mut first = events.to_vec();
    let r = first.pop().expect("the redaction is last");
    first.insert(0, r);
    out.push(("redaction first, one by one".into(), first, vec![1]));
    let mut rng = Rng::new(18);
    for i in 0..24 {
        let mut shuffled = events.to_vec();
        rng.shuffle(&mut shuffled);
        let sizes: Vec<usize> = (0..8).map(|_| 1 + rng.below(5) as usize).collect();
        out.push((format!("shuffle {i}, batches {sizes:?}"), shuffled, sizes));
    }
    out
}

#[test]
fn a_redaction_leaves_no_personal_string_of_the_subject_and_touches_no_one_else() {
    let mut events = ANNIKA.history();
    events.extend(BOBBERT.history());
    // Without the redaction: what Bobbert's records are, and proof that the
    // history does put Annika's personal data everywhere the test looks.
    let plain = fold(&events, &[1]);
    let plain_dump = dump(&plain);
    let holding_annika: Vec<&str> = plain_dump
        .iter()
        .filter(|(_, t)| !ANNIKA.found_in(t).is_empty())
        .map(|(k, _)| k.split('/').nth(1).unwrap_or(k))
        .collect();
    for kind in ["frag", "order", "parcel", "parked", "cust", "projection"] {
        assert!(
            holding_annika.iter().any(|k| k.starts_with(kind)),
            "before the redaction, Annika's data is in a {kind} record: {holding_annika:?}"
        );
    }
    let bob_customer = plain.store.customers()[&BOBBERT.customer_id()].clone();
    let bob_order = plain.store.orders()[&BOBBERT.order_id()].clone();

    events.push(ANNIKA.redaction());
    for (how, evs, sizes) in arrivals(&events) {
        let run = fold(&evs, &sizes);
        for (what, text) in dump(&run) {
            let left = ANNIKA.found_in(&text);
            assert!(
                left.is_empty(),
                "{how}: {what} still holds {left:?} of the erased subject:\n{text}"
            );
        }
        // The subject's figures stay, anonymously.
        let orders = run.store.orders();
        let order = &orders[&ANNIKA.order_id()];
        assert!(order.redacted, "{how}");
        assert_eq!(order.payments.len(), 1, "{how}: the payment stays");
        assert_eq!(order.refunds.len(), 1, "{how}: the refund stays");
        let customers = run.store.customers();
        let annika = &customers[&ANNIKA.customer_id()];
        assert!(annika.redacted, "{how}");
        assert_eq!(annika.email, None, "{how}");
        assert_eq!(annika.orders.len(), 1, "{how}: the order stays counted");
        // The payment still waiting for its order waits, without the payer.
        let parked = run
            .store
            .records
            .keys()
            .filter(|k| matches!(&k.item, Item::Parked(id) if id == "p1-stray-payment"))
            .count();
        assert_eq!(parked, 1, "{how}: the stray payment is still parked");
        // Bobbert is untouched.
        assert_eq!(
            customers[&BOBBERT.customer_id()],
            bob_customer,
            "{how}: Bobbert's customer"
        );
        assert_eq!(orders[&BOBBERT.order_id()], bob_order, "{how}: his order");
        let bob_left: Vec<&str> = dump(&run)
            .iter()
            .flat_map(|(_, t)| BOBBERT.found_in(t))
            .collect();
        assert!(
            bob_left.contains(&"bobbert") && bob_left.contains(&"4155550202"),
            "{how}: Bobbert's data stays"
        );
    }
}

/// A redaction of an email the store never sent: whatever arrives for it
/// later is kept without its personal data (a payment waiting for its order
/// included).
#[test]
fn events_after_a_redaction_are_kept_without_the_subjects_data() {
    let mut events = vec![ANNIKA.redaction()];
    events.extend(ANNIKA.history());
    let run = fold(&events, &[1]);
    for (what, text) in dump(&run) {
        let left = ANNIKA.found_in(&text);
        assert!(left.is_empty(), "{what} holds {left:?}:\n{text}");
    }
    assert_eq!(run.store.orders()[&ANNIKA.order_id()].payments.len(), 1);
}

/// A shopper who changed email at the store (the store customer id links the
/// two) is one person: a redaction naming the old email alone erases what
/// came under the new one too, in any arrival order; another shopper is
/// untouched.
#[test]
fn a_redaction_erases_the_emails_a_store_customer_id_links() {
    let renamed = "annika.renamed@erase.test";
    let mut events = ANNIKA.history();
    let at = T0 + Duration::days(6);
    let mut identity = Identity::default().with_email(Some(renamed));
    identity.external = ANNIKA.identity().external;
    events.push(Envelope {
        tenant: "acme".into(),
        provider: "test".into(),
        event_id: "p1-renamed".into(),
        occurred_at: at,
        event: Event::CustomerUpserted(CustomerUpserted {
            identity: identity.with_phone(Some("+14155550199"), None),
            first_name: Some("annika".into()),
            last_name: Some("annika-Quist".into()),
            addresses: vec![ANNIKA.address()],
            consent: Consent::default(),
            tags: vec![],
            note: None,
            deleted: false,
            created_at: None,
            updated_at: at,
        }),
    });
    events.extend(BOBBERT.history());
    events.push(ANNIKA.redaction());
    for (how, evs, sizes) in arrivals(&events) {
        let run = fold(&evs, &sizes);
        for (what, text) in dump(&run) {
            let left: Vec<&str> = ["annika", "4155550101", "4155550199"]
                .into_iter()
                .filter(|s| text.contains(s))
                .collect();
            assert!(
                left.is_empty(),
                "{how}: {what} still holds {left:?}:\n{text}"
            );
        }
        let bob_left = dump(&run)
            .iter()
            .any(|(_, t)| !BOBBERT.found_in(t).is_empty());
        assert!(bob_left, "{how}: Bobbert's data stays");
    }
}

/// An email in a link (a newsletter's `?email=`) is not kept, even for a
/// visitor no erasure could find: an anonymous touch and an order's landing
/// site keep the rest of the link.
#[test]
fn emails_in_landing_pages_and_referrers_are_never_kept() {
    let at = T0;
    let link = "https://shop.example/welcome?email=carla%40erase.test&utm_source=mail";
    let mut order = match &ANNIKA.history()[4].event {
        Event::OrderUpserted(o) => o.clone(),
        other => panic!("the history's fifth event is its order, not {other:?}"),
    };
    order.attribution.landing_site = Some(link.into());
    order.attribution.referring_site = Some("https://mail.example/?to=carla@erase.test".into());
    let events = vec![
        Envelope {
            tenant: "acme".into(),
            provider: "collect".into(),
            event_id: "anon-touch".into(),
            occurred_at: at,
            event: Event::Touch(Touch {
                touch_id: "tch-c-1".into(),
                identity: Identity::default().with_anonymous_id(Some("anon-c-1")),
                utm: Utm::default(),
                landing_page: Some(link.into()),
                referrer: Some("https://mail.example/?to=carla@erase.test".into()),
                gclid: None,
                fbclid: None,
                cart_token: None,
                at,
            }),
        },
        Envelope {
            tenant: "acme".into(),
            provider: "shopify".into(),
            event_id: "order".into(),
            occurred_at: at,
            event: Event::OrderUpserted(order),
        },
    ];
    let run = fold(&events, &[1]);
    let all = dump(&run);
    for (what, text) in &all {
        assert!(!text.contains("carla"), "{what}: {text}");
    }
    assert!(
        all.iter()
            .any(|(_, t)| t.contains("https://shop.example/welcome?utm_source=mail")),
        "the rest of the link is kept"
    );
}

/// What the processor folds for a raw event whose data key was shredded: the
/// residue the ingest kept beside the ciphertext, and a redaction of the
/// subject by its key.
pub(crate) fn shredded(config: &FoldConfig, raw: &Envelope) -> Vec<Envelope> {
    let mut out = config.residue(std::slice::from_ref(raw));
    if let Some(subject) = config.subject(std::slice::from_ref(raw)) {
        out.push(Envelope {
            event_id: format!("{}#shredded", raw.event_id),
            event: Event::CustomerRedacted(CustomerRedacted::shredded(subject)),
            ..raw.clone()
        });
    }
    out
}

/// A replay after crypto-shredding: every raw event of the erased shopper
/// (her redaction included) can no longer be decrypted, and folds as its
/// residue. The result holds nothing of her, and is the erased result the
/// live fold reached: her customer, her order with its payment and refund,
/// the same figures; the other shopper's data identical.
#[test]
fn a_shredded_history_folds_as_the_erased_history_did() {
    let config = FoldConfig::default();
    let mut live = ANNIKA.history();
    live.extend(BOBBERT.history());
    live.push(ANNIKA.redaction());
    let erased = fold(&live, &[1]);

    let mut replayed: Vec<Envelope> = Vec::new();
    for raw in ANNIKA.history().iter().chain([&ANNIKA.redaction()]) {
        let residue = shredded(&config, raw);
        for e in &residue {
            let text = serde_json::to_string(e).unwrap().to_lowercase();
            let left = ANNIKA.found_in(&text);
            assert!(left.is_empty(), "the residue keeps {left:?}: {text}");
        }
        replayed.extend(residue);
    }
    replayed.extend(BOBBERT.history());
    let orders = erased.store.orders();
    let customers = erased.store.customers();
    for (how, evs, sizes) in arrivals(&replayed) {
        let run = fold(&evs, &sizes);
        for (what, text) in dump(&run) {
            let left = ANNIKA.found_in(&text);
            assert!(left.is_empty(), "{how}: {what} holds {left:?}:\n{text}");
        }
        let got_orders = run.store.orders();
        let got_customers = run.store.customers();
        let order = &got_orders[&ANNIKA.order_id()];
        assert!(order.redacted, "{how}");
        assert_eq!(
            order.figures(),
            orders[&ANNIKA.order_id()].figures(),
            "{how}: the erased order's figures"
        );
        assert_eq!(order.payments.len(), 1, "{how}");
        assert_eq!(order.refunds.len(), 1, "{how}");
        let annika = &got_customers[&ANNIKA.customer_id()];
        // All of it, not only the figures: the very customer and order.
        assert_eq!(
            annika,
            &customers[&ANNIKA.customer_id()],
            "{how}: her customer"
        );
        assert_eq!(order, &orders[&ANNIKA.order_id()], "{how}: her order");
        assert!(annika.redacted, "{how}");
        assert_eq!(
            annika.orders,
            customers[&ANNIKA.customer_id()].orders,
            "{how}: her order stays hers"
        );
        assert_eq!(
            annika.revenue,
            customers[&ANNIKA.customer_id()].revenue,
            "{how}: her revenue"
        );
        assert_eq!(
            got_customers[&BOBBERT.customer_id()],
            customers[&BOBBERT.customer_id()],
            "{how}: Bobbert's customer"
        );
        assert_eq!(
            got_orders[&BOBBERT.order_id()],
            orders[&BOBBERT.order_id()],
            "{how}: his order"
        );
    }
}

/// An order a redaction named that never arrives: the refund waiting for it
/// waits, then leaves (expires to the dead-letter topic), without the
/// merchant's note, whether the redaction came before or after the refund; a
/// refund waiting for another order keeps its note.
#[test]
fn a_parked_event_of_an_order_a_redaction_named_expires_scrubbed() {
    let refund = |n: u32, order: &str, note: &str| Envelope {
        tenant: "acme".into(),
        provider: "stripe".into(),
        event_id: format!("refund-{n}"),
        occurred_at: T0,
        event: Event::RefundIssued(Refund {
            provider: "stripe".into(),
            refund_id: format!("re_w{n}"),
            payment_id: None,
            links: vec![OrderLink::Order {
                order_id: order.into(),
            }],
            amount: Money::new(900, Currency::from_code("EUR").unwrap()),
            status: RefundStatus::Succeeded,
            reason: Some(note.to_string()),
            lines: vec![],
            adjustments: None,
            at: T0,
            created_at: None,
            gateway: None,
        }),
    };
    let redaction = Envelope {
        tenant: "acme".into(),
        provider: "shopify".into(),
        event_id: "redact-w".into(),
        occurred_at: T0 + Duration::days(1),
        event: Event::CustomerRedacted(CustomerRedacted {
            identity: Identity::default().with_email(Some(&ANNIKA.email())),
            orders: vec!["woocommerce:4711".into()],
            requested_by: "shopify".into(),
            keys: Vec::new(),
        }),
    };
    for redaction_first in [true, false] {
        let mut events = vec![
            refund(1, "woocommerce:4711", "annika asked by phone 4155550101"),
            refund(2, "woocommerce:4712", "torn seam"),
        ];
        if redaction_first {
            events.insert(0, redaction.clone());
        } else {
            events.push(redaction.clone());
        }
        let mut run = fold(&events, &[1]);
        // While it waits, the stored event holds nothing of the subject.
        for (what, text) in dump(&run) {
            let left = ANNIKA.found_in(&text);
            assert!(
                left.is_empty(),
                "{redaction_first}: {what} holds {left:?}: {text}"
            );
        }
        let mut engine = Engine::new();
        let named = engine
            .expire_parked(&run.store, "acme", "refund-1")
            .expect("the refund was parked");
        let other = engine
            .expire_parked(&run.store, "acme", "refund-2")
            .expect("the other refund was parked");
        run.store.commit(engine.finish(&run.store).changes);
        let text = serde_json::to_string(&named.envelope)
            .unwrap()
            .to_lowercase();
        assert!(
            ANNIKA.found_in(&text).is_empty(),
            "redaction first: {redaction_first}: {text}"
        );
        match &named.envelope.event {
            Event::RefundIssued(r) => {
                assert_eq!(r.reason, None);
                assert_eq!(r.amount.minor, 900, "the money stays");
            }
            e => panic!("{e:?}"),
        }
        match &other.envelope.event {
            Event::RefundIssued(r) => assert_eq!(r.reason.as_deref(), Some("torn seam")),
            e => panic!("{e:?}"),
        }
    }
}
