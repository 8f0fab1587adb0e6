//! WooCommerce: signatures, the creation ping, topics and exact canonical values,
//! from our own fixtures and from the shared conformance corpus (read in place).

use storefold_core::event::{
    Address, Attribution, Consent, CustomerUpserted, InventoryUpdated, LineItem, OrderLink,
    OrderStatus, OrderTotals, OrderUpserted, PaymentRef, Refund, RefundLine, RefundStatus, StoreMoney, Utm,
};
use storefold_core::identity::ExternalId;
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::Harness;
use crate::test_support::{self, conformance_dir, json_file_names, read_file};
use crate::{
    Credentials, Headers, Inbound, MapContext, MapError, MapOptions, ProviderKind, VerifyError,
    WebhookRequest,
};

const SECRET: &str = "wc-secret-9f3b1d";
const NOW: OffsetDateTime = datetime!(2025-05-02 14:14:10 UTC);
const RECEIVED: OffsetDateTime = datetime!(2025-05-02 14:14:11 UTC);

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("woocommerce", name)
}

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, Currency::from_code(code).unwrap())
}

fn usd(minor: i64) -> Money {
    money(minor, "USD")
}

fn eur(minor: i64) -> Money {
    money(minor, "EUR")
}

fn jpy(minor: i64) -> Money {
    money(minor, "JPY")
}

fn gbp(minor: i64) -> Money {
    money(minor, "GBP")
}

fn ext(id: &str) -> ExternalId {
    ExternalId {
        source: "woocommerce".into(),
        id: id.into(),
    }
}

fn order_link(id: &str) -> Vec<OrderLink> {
    vec![OrderLink::Order {
        order_id: format!("woocommerce:{id}"),
    }]
}

fn request<'a>(headers: &'a Headers, body: &'a [u8]) -> WebhookRequest<'a> {
    WebhookRequest {
        headers,
        body,
        url_token: None,
    }
}

/// Signs `body` as WooCommerce would, verifies, describes and maps it.
fn deliver(topic: &str, body: &[u8]) -> (Inbound, Result<Vec<Envelope>, MapError>) {
    let bench = Harness::new(ProviderKind::WooCommerce, SECRET, NOW)
        .tenant("acme")
        .received_at(RECEIVED)
        .header("X-WC-Webhook-Source", "https://shop.example.com/")
        .header("User-Agent", "WooCommerce/9.4.2 Hookshot (WordPress/6.7)");
    let delivery = bench.receive(topic, body).expect("describes");
    assert!(delivery.kept.get("user-agent").is_none());
    assert!(delivery.kept.get("x-wc-webhook-signature").is_none());
    let mapped = bench.map(&delivery);
    (delivery.inbound, mapped)
}

fn map_ok(topic: &str, body: &[u8]) -> (Inbound, Vec<Envelope>) {
    let (inbound, mapped) = deliver(topic, body);
    assert_eq!(inbound.topic, topic);
    let events = mapped.unwrap_or_else(|e| panic!("{topic}: {e}"));
    for e in &events {
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.provider, "woocommerce");
        assert!(e.event_id.starts_with(&inbound.event_id), "{}", e.event_id);
    }
    (inbound, events)
}

fn the_order(events: &[Envelope]) -> &OrderUpserted {
    let orders: Vec<&OrderUpserted> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::OrderUpserted(o) => Some(o.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(orders.len(), 1, "{events:?}");
    orders[0]
}

fn refunds(events: &[Envelope]) -> Vec<&Refund> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::RefundIssued(r) => Some(r),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- signatures

#[test]
fn verify_matches_an_independently_computed_hmac() {
    // base64(HMAC-SHA256("wc&secret", '{"id":7}')), computed with Python's hmac.
    let headers = Headers::from_pairs([(
        "X-WC-Webhook-Signature",
        "H6R6YGobcOxsfxkZBpTMVzctI+aetTY4JJ9x9OcmWjw=",
    )]);
    let body = br#"{"id":7}"#;
    assert_eq!(
        ProviderKind::WooCommerce.verify(
            &Credentials::new("wc&secret"),
            &request(&headers, body),
            NOW
        ),
        Ok(())
    );
    // The secret as the admin screen escapes it: WooCommerce decodes it before use.
    assert_eq!(
        ProviderKind::WooCommerce.verify(
            &Credentials::new("wc&amp;secret"),
            &request(&headers, body),
            NOW
        ),
        Ok(())
    );
    assert_eq!(
        ProviderKind::WooCommerce.verify(
            &Credentials::new("wc-secret"),
            &request(&headers, body),
            NOW
        ),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn verify_rejects_wrong_secret_tampered_body_and_bad_headers() {
    let body = fixture("order_created.json");
    let signed = ProviderKind::WooCommerce
        .sign(SECRET, "order.created", &body, NOW)
        .unwrap();
    let headers = Headers::from_pairs(signed.headers.iter().map(|(k, v)| (k, v)));
    let good = Credentials::new(SECRET);
    assert_eq!(
        ProviderKind::WooCommerce.verify(&good, &request(&headers, &body), NOW),
        Ok(())
    );
    assert_eq!(
        ProviderKind::WooCommerce.verify(&Credentials::new("nope"), &request(&headers, &body), NOW),
        Err(VerifyError::Mismatch)
    );
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("\"38.18\"", "\"0.01\"");
    assert_eq!(
        ProviderKind::WooCommerce.verify(&good, &request(&headers, tampered.as_bytes()), NOW),
        Err(VerifyError::Mismatch)
    );
    let missing = Headers::from_pairs([("X-WC-Webhook-Topic", "order.created")]);
    assert_eq!(
        ProviderKind::WooCommerce.verify(&good, &request(&missing, &body), NOW),
        Err(VerifyError::MissingHeader("X-WC-Webhook-Signature"))
    );
    let garbled = Headers::from_pairs([("X-WC-Webhook-Signature", "%%%")]);
    assert!(matches!(
        ProviderKind::WooCommerce.verify(&good, &request(&garbled, &body), NOW),
        Err(VerifyError::MalformedHeader {
            header: "X-WC-Webhook-Signature",
            ..
        })
    ));
    // A SHA-512 signature (changed hash filter) is 64 bytes: not ours to check.
    let sha512 = Headers::from_pairs([(
        "X-WC-Webhook-Signature",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 64]),
    )]);
    assert!(matches!(
        ProviderKind::WooCommerce.verify(&good, &request(&sha512, &body), NOW),
        Err(VerifyError::MalformedHeader { .. })
    ));
    assert!(matches!(
        ProviderKind::WooCommerce.verify(&Credentials::new(""), &request(&headers, &body), NOW),
        Err(VerifyError::BadCredentials(_))
    ));
}

#[test]
fn the_creation_ping_is_accepted_and_maps_to_nothing() {
    let ping = b"webhook_id=17";
    // Older WooCommerce versions send no signature and no topic with the ping.
    let headers = Headers::from_pairs([("Content-Type", "application/x-www-form-urlencoded")]);
    let req = request(&headers, ping);
    assert_eq!(
        ProviderKind::WooCommerce.verify(&Credentials::new(SECRET), &req, NOW),
        Ok(())
    );
    let inbound = ProviderKind::WooCommerce.describe(&req).unwrap();
    assert_eq!(
        inbound,
        Inbound {
            topic: "ping".into(),
            event_id: "ping:17".into(),
            occurred_at: None,
        }
    );
    let (inbound, events) = map_ok("ping", ping);
    assert_eq!(inbound.event_id, "ping:17");
    assert!(events.is_empty());
    assert!(ProviderKind::WooCommerce.is_handshake(&inbound));

    // A ping that carries a signature anyway must carry the right one.
    let forged = Headers::from_pairs([("X-WC-Webhook-Signature", "AAAA")]);
    assert!(
        ProviderKind::WooCommerce
            .verify(&Credentials::new(SECRET), &request(&forged, ping), NOW)
            .is_err()
    );
    let signed = ProviderKind::WooCommerce
        .sign(SECRET, "order.updated", ping, NOW)
        .unwrap();
    let good = Headers::from_pairs(signed.headers);
    assert_eq!(
        ProviderKind::WooCommerce.verify(&Credentials::new(SECRET), &request(&good, ping), NOW),
        Ok(())
    );

    // Only exactly the ping form is let through unsigned.
    for not_ping in [
        &b"webhook_id="[..],
        b"webhook_id=17&x=1",
        b"webhook_id=17\n",
        b"webhook_id=abc",
        b" webhook_id=17",
        br#"{"webhook_id":17}"#,
    ] {
        assert_eq!(
            ProviderKind::WooCommerce.verify(
                &Credentials::new(SECRET),
                &request(&headers, not_ping),
                NOW
            ),
            Err(VerifyError::MissingHeader("X-WC-Webhook-Signature")),
            "{}",
            String::from_utf8_lossy(not_ping)
        );
    }
}

#[test]
fn sign_sends_what_woocommerce_sends() {
    let signed = ProviderKind::WooCommerce
        .sign(SECRET, "order.updated", b"{}", NOW)
        .unwrap();
    let h = Headers::from_pairs(signed.headers.iter().map(|(k, v)| (k, v)));
    assert_eq!(h.get("x-wc-webhook-topic"), Some("order.updated"));
    assert_eq!(h.get("x-wc-webhook-resource"), Some("order"));
    assert_eq!(h.get("x-wc-webhook-event"), Some("updated"));
    assert_eq!(h.get("x-wc-webhook-delivery-id").map(str::len), Some(32));
    assert_eq!(h.get("content-type"), Some("application/json"));
    assert!(h.get("x-wc-webhook-signature").is_some());
    let ping = ProviderKind::WooCommerce
        .sign(SECRET, "ping", b"webhook_id=3", NOW)
        .unwrap();
    assert_eq!(
        ping.headers,
        vec![(
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string()
        )]
    );
    assert!(
        ProviderKind::WooCommerce
            .sign("", "order.updated", b"{}", NOW)
            .is_err()
    );
}

// ------------------------------------------------------------------ describe

#[test]
fn describe_derives_the_event_id_from_resource_id_and_modification() {
    let (inbound, _) = map_ok("order.created", &fixture("order_created.json"));
    assert_eq!(inbound.event_id, "order:4101:2025-05-02T14:14:09");
    assert_eq!(
        inbound.occurred_at,
        Some(datetime!(2025-05-02 14:14:09 UTC))
    );

    // order.updated for the same modification is the same event.
    let (updated, _) = map_ok("order.updated", &fixture("order_created.json"));
    assert_eq!(updated.event_id, inbound.event_id);

    let (customer, _) = map_ok("customer.updated", &fixture("customer_updated.json"));
    assert_eq!(customer.event_id, "customer:43:2025-05-10T07:20:00");

    // A deletion has no modification time: the delivery id stands in.
    let body = fixture("order_deleted.json");
    let headers = Headers::from_pairs([
        ("X-WC-Webhook-Topic", "order.deleted"),
        ("X-WC-Webhook-Resource", "order"),
        (
            "X-WC-Webhook-Delivery-ID",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ),
    ]);
    let d = ProviderKind::WooCommerce
        .describe(&request(&headers, &body))
        .unwrap();
    assert_eq!(d.event_id, "order:4103:0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    assert_eq!(d.occurred_at, None);
    // ... else a hash of the body; the resource from the topic.
    let headers = Headers::from_pairs([("X-WC-Webhook-Topic", "order.deleted")]);
    let d = ProviderKind::WooCommerce
        .describe(&request(&headers, &body))
        .unwrap();
    assert_eq!(
        d.event_id,
        format!(
            "order:4103:{}",
            storefold_core::identity::content_hash(&body)
        )
    );

    // Custom action topics have no id at all.
    let action = br#"{"action":"woocommerce_add_to_cart","arg":"a1b2"}"#;
    let headers = Headers::from_pairs([("X-WC-Webhook-Topic", "action.woocommerce_add_to_cart")]);
    let d = ProviderKind::WooCommerce
        .describe(&request(&headers, action))
        .unwrap();
    assert_eq!(
        d.event_id,
        format!("action:{}", storefold_core::identity::content_hash(action))
    );

    let no_topic = Headers::new();
    assert_eq!(
        ProviderKind::WooCommerce.describe(&request(&no_topic, &body)),
        Err(MapError::MissingHeader("X-WC-Webhook-Topic"))
    );
    let headers = Headers::from_pairs([("X-WC-Webhook-Topic", "order.updated")]);
    assert!(matches!(
        ProviderKind::WooCommerce.describe(&request(&headers, b"<html>")),
        Err(MapError::Json(_))
    ));
}

#[test]
fn unsupported_topics_are_refused() {
    let (_, mapped) = deliver(
        "product.deleted",
        br#"{"id": 77, "date_modified_gmt": "2025-05-01T00:00:00"}"#,
    );
    assert_eq!(
        mapped,
        Err(MapError::UnsupportedTopic("product.deleted".into()))
    );
    let (_, mapped) = deliver("coupon.created", br#"{"id": 5}"#);
    assert_eq!(
        mapped,
        Err(MapError::UnsupportedTopic("coupon.created".into()))
    );
}

// -------------------------------------------------------------------- orders

fn katherine() -> Identity {
    Identity {
        email: Some("k.johnson@example.com".into()),
        phone: Some("+12125550147".into()),
        external: vec![ext("42")],
        anonymous_id: None,
        keyed: Vec::new(),
    }
}

fn orbit_way() -> Address {
    Address {
        name: Some("Katherine Johnson".into()),
        company: None,
        line1: Some("12 Orbit Way".into()),
        line2: Some("Apt 3".into()),
        city: Some("Hampton".into()),
        region: Some("VA".into()),
        postal_code: Some("23666".into()),
        country: Some("US".into()),
        phone: None,
    }
}

fn expected_order_4101() -> OrderUpserted {
    OrderUpserted {
        order_id: "woocommerce:4101".into(),
        number: Some("4101".into()),
        customer: katherine(),
        customer_name: Some("Katherine Johnson".into()),
        status: OrderStatus::Open,
        financial_status: None,
        fulfillment_status: None,
        totals: OrderTotals {
            total: usd(3818),
            subtotal: Some(usd(3450)),
            discounts: Some(usd(345)),
            shipping: Some(usd(495)),
            tax: Some(usd(218)),
            presentment_total: None,
        },
        line_items: vec![
            LineItem {
                id: "501".into(),
                sku: Some("MUG-EN-01".into()),
                title: "Enamel Mug".into(),
                quantity: 3,
                // 10.00 / 3, to the cent.
                unit_price: usd(333),
                total_discount: Some(usd(100)),
            },
            LineItem {
                id: "502".into(),
                sku: None,
                title: "Pour-over Kettle".into(),
                quantity: 1,
                unit_price: usd(2450),
                total_discount: Some(usd(245)),
            },
        ],
        discount_codes: vec!["welcome10".into()],
        payment_refs: vec![PaymentRef {
            provider: "stripe".into(),
            reference: "pi_3PqR7sT2uV9wX1yZ0aBcDeFg".into(),
        }],
        tracking_numbers: vec![],
        attribution: Attribution {
            landing_site: Some(
                "https://shop.example.com/mugs/?utm_source=google&utm_medium=cpc&utm_campaign=brand-us&utm_term=enamel+mug&gclid=Cj0KCQ"
                    .into(),
            ),
            referring_site: Some("https://www.google.com/".into()),
            source_name: Some("utm".into()),
            utm: Utm {
                source: Some("google".into()),
                medium: Some("cpc".into()),
                campaign: Some("brand-us".into()),
                // Not in the meta; read from the landing URL.
                term: Some("enamel mug".into()),
                content: None,
            },
            note_attributes: vec![],
        },
        cart_token: None,
        shipping_address: Some(orbit_way()),
        billing_address: Some(Address {
            phone: Some("(212) 555-0147".into()),
            ..orbit_way()
        }),
        note: Some("Ring twice, please".into()),
        tags: vec![],
        test: false,
        created_at: datetime!(2025-05-02 14:14:07 UTC),
        updated_at: datetime!(2025-05-02 14:14:09 UTC),
        cancelled_at: None,
        cancel_reason: None,
        // Processing: the payment is complete, the total received.
        store_money: Some(received(usd(3818), "status:processing")),
    }
}

/// The store's account of an order that received `total`.
fn received(total: Money, basis: &str) -> StoreMoney {
    StoreMoney {
        received: total,
        authorized: None,
        outstanding: None,
        shop_received: None,
        basis: basis.into(),
    }
}

/// The store's account of an order that received nothing (holding `authorized`).
fn nothing_received(zero: Money, authorized: Option<Money>, basis: &str) -> StoreMoney {
    StoreMoney {
        received: zero,
        authorized,
        outstanding: None,
        shop_received: None,
        basis: basis.into(),
    }
}

#[test]
fn order_created_maps_customer_and_order() {
    let (inbound, events) = map_ok("order.created", &fixture("order_created.json"));
    assert_eq!(events.len(), 2);
    let at = datetime!(2025-05-02 14:14:09 UTC);
    assert_eq!(events[0].event_id, format!("{}#customer", inbound.event_id));
    assert_eq!(events[0].occurred_at, at);
    assert_eq!(
        events[0].event,
        Event::CustomerUpserted(CustomerUpserted {
            identity: katherine(),
            first_name: Some("Katherine".into()),
            last_name: Some("Johnson".into()),
            addresses: vec![
                Address {
                    phone: Some("(212) 555-0147".into()),
                    ..orbit_way()
                },
                orbit_way(),
            ],
            consent: Consent::default(),
            tags: vec![],
            note: None,
            deleted: false,
            created_at: None,
            updated_at: at,
        })
    );
    assert_eq!(events[1].event_id, inbound.event_id);
    assert_eq!(events[1].occurred_at, at);
    assert_eq!(
        events[1].event,
        Event::OrderUpserted(Box::new(expected_order_4101()))
    );
}

#[test]
fn order_updated_maps_refunds_paypal_and_tracking() {
    let (inbound, events) = map_ok("order.updated", &fixture("order_updated.json"));
    assert_eq!(events.len(), 4);
    let at = datetime!(2025-05-09 16:45:30 UTC);
    let order = the_order(&events);
    assert_eq!(
        order,
        &OrderUpserted {
            order_id: "woocommerce:4102".into(),
            number: Some("4102".into()),
            // A guest order: no external id.
            customer: Identity {
                email: Some("emmy@example.de".into()),
                phone: Some("+4930901820".into()),
                external: vec![],
                anonymous_id: None,
                keyed: Vec::new(),
            },
            customer_name: Some("Emmy Noether".into()),
            status: OrderStatus::Completed,
            financial_status: None,
            fulfillment_status: None,
            totals: OrderTotals {
                total: eur(5990),
                subtotal: Some(eur(5034)),
                discounts: Some(eur(0)),
                shipping: Some(eur(0)),
                tax: Some(eur(956)),
                presentment_total: None,
            },
            line_items: vec![LineItem {
                id: "601".into(),
                sku: Some("APRON-LN".into()),
                title: "Linen Apron".into(),
                quantity: 2,
                unit_price: eur(2517),
                total_discount: Some(eur(0)),
            }],
            discount_codes: vec![],
            payment_refs: vec![PaymentRef {
                provider: "paypal".into(),
                reference: "8AB12345CD6789012".into(),
            }],
            tracking_numbers: vec!["00340434161094042557".into()],
            attribution: Attribution {
                source_name: Some("checkout".into()),
                ..Attribution::default()
            },
            cart_token: None,
            shipping_address: None,
            billing_address: Some(Address {
                name: Some("Emmy Noether".into()),
                company: None,
                line1: Some("Bunsenstrasse 3".into()),
                line2: None,
                city: Some("Goettingen".into()),
                region: None,
                postal_code: Some("37073".into()),
                country: Some("DE".into()),
                phone: Some("030 901820".into()),
            }),
            note: None,
            tags: vec![],
            test: false,
            created_at: datetime!(2025-05-03 08:00:00 UTC),
            updated_at: at,
            cancelled_at: None,
            cancel_reason: None,
            // Completed: the whole 59.90 received; the two refunds below are
            // their own events and come off in the fold (WooCommerce leaves the
            // order total as it was).
            store_money: Some(received(eur(5990), "status:completed")),
        }
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.type_name() == "RefundIssued")
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>(),
        vec![
            format!("{}#refund:4110", inbound.event_id),
            format!("{}#refund:4111", inbound.event_id),
        ]
    );
    assert_eq!(
        refunds(&events),
        vec![
            &Refund {
                provider: "woocommerce".into(),
                refund_id: "4110".into(),
                payment_id: None,
                links: order_link("4102"),
                amount: eur(550),
                status: RefundStatus::Succeeded,
                reason: Some("Damaged in transit".into()),
                lines: vec![],
                adjustments: None,
                at,
                created_at: None,
                gateway: None,
            },
            &Refund {
                provider: "woocommerce".into(),
                refund_id: "4111".into(),
                payment_id: None,
                links: order_link("4102"),
                amount: eur(200),
                status: RefundStatus::Succeeded,
                reason: None,
                lines: vec![],
                adjustments: None,
                at,
                created_at: None,
                gateway: None,
            },
        ]
    );
}

#[test]
fn order_restored_without_email_or_payment_reference() {
    let (_, events) = map_ok("order.restored", &fixture("order_restored.json"));
    // No billing email: no customer event, the order alone.
    assert_eq!(events.len(), 1);
    let order = the_order(&events);
    assert_eq!(order.status, OrderStatus::OnHold);
    assert_eq!(
        order.customer,
        Identity {
            external: vec![ext("57")],
            ..Identity::default()
        }
    );
    assert_eq!(order.totals.total, jpy(3800));
    assert_eq!(order.totals.shipping, Some(jpy(500)));
    assert_eq!(order.line_items[0].unit_price, jpy(3000));
    assert!(order.payment_refs.is_empty());
    assert_eq!(order.attribution.source_name.as_deref(), Some("admin"));
    assert_eq!(
        order.billing_address.as_ref().unwrap().country.as_deref(),
        Some("JP")
    );
    assert_eq!(order.updated_at, datetime!(2025-06-02 09:00:00 UTC));
    // On hold for a bank transfer that has not come (no payment date): nothing
    // received, and no card authorisation held either.
    assert_eq!(
        order.store_money,
        Some(nothing_received(jpy(0), None, "status:on-hold"))
    );
}

#[test]
fn order_deleted_with_only_an_id_changes_nothing() {
    let (_, events) = map_ok("order.deleted", &fixture("order_deleted.json"));
    assert!(events.is_empty());
    // A deletion that carries the full order (plugins can send it) is a snapshot.
    let mut full: serde_json::Value =
        serde_json::from_slice(&fixture("order_restored.json")).unwrap();
    full["status"] = "trash".into();
    let (_, events) = map_ok("order.deleted", &serde_json::to_vec(&full).unwrap());
    assert_eq!(the_order(&events).status, OrderStatus::Cancelled);
}

#[test]
fn order_statuses_and_gateways_map() {
    use super::map::{order_status as s, payment_provider as p};
    for (given, expected) in [
        ("pending", OrderStatus::Pending),
        ("processing", OrderStatus::Open),
        ("on-hold", OrderStatus::OnHold),
        ("completed", OrderStatus::Completed),
        ("cancelled", OrderStatus::Cancelled),
        ("refunded", OrderStatus::Refunded),
        ("failed", OrderStatus::Failed),
        ("checkout-draft", OrderStatus::Pending),
        ("awaiting-shipment", OrderStatus::Open),
    ] {
        assert_eq!(s(given), expected, "{given}");
    }
    for (given, expected) in [
        ("stripe", "stripe"),
        ("stripe_sepa", "stripe"),
        ("woocommerce_payments", "stripe"),
        ("ppcp-gateway", "paypal"),
        ("paypal", "paypal"),
        ("ppcp-card-button-gateway", "paypal"),
        ("adyen_cc", "adyen"),
        ("cod", "cod"),
    ] {
        assert_eq!(p(given), expected, "{given}");
    }
}

#[test]
fn order_amounts_are_exact_or_refused() {
    let mut o: serde_json::Value = serde_json::from_slice(&fixture("order_created.json")).unwrap();
    // Shops may be set to more decimals than the currency has: trailing zeros pass.
    o["total"] = "38.1800".into();
    let (_, events) = map_ok("order.updated", &serde_json::to_vec(&o).unwrap());
    assert_eq!(the_order(&events).totals.total, usd(3818));
    o["total"] = "38.185".into();
    let (_, mapped) = deliver("order.updated", &serde_json::to_vec(&o).unwrap());
    assert!(matches!(mapped, Err(MapError::InvalidField { field, .. }) if field == "total"));
    o["total"] = "38.18".into();
    o["currency"] = "ZZZ".into();
    let (_, mapped) = deliver("order.updated", &serde_json::to_vec(&o).unwrap());
    assert!(matches!(mapped, Err(MapError::InvalidField { .. })));
}

// ------------------------------------------------------- the store's money

/// A guest order of the small fixtures: a billing name, email and country, one
/// line, shipping, no tax, no discount, from the checkout.
#[allow(clippy::too_many_arguments)]
fn guest_order(
    id: &str,
    (first, last, email, country): (&str, &str, &str, &str),
    status: OrderStatus,
    (line, subtotal): (LineItem, Money),
    shipping: Money,
    total: Money,
    payment_refs: Vec<PaymentRef>,
    (created_at, updated_at): (OffsetDateTime, OffsetDateTime),
    store_money: StoreMoney,
) -> OrderUpserted {
    let zero = Money::zero(total.currency);
    OrderUpserted {
        order_id: format!("woocommerce:{id}"),
        number: Some(id.into()),
        customer: Identity {
            email: Some(email.into()),
            ..Identity::default()
        },
        customer_name: Some(format!("{first} {last}")),
        status,
        financial_status: None,
        fulfillment_status: None,
        totals: OrderTotals {
            total,
            subtotal: Some(subtotal),
            discounts: Some(zero),
            shipping: Some(shipping),
            tax: Some(zero),
            presentment_total: None,
        },
        line_items: vec![line],
        discount_codes: vec![],
        payment_refs,
        tracking_numbers: vec![],
        attribution: Attribution {
            source_name: Some("checkout".into()),
            ..Attribution::default()
        },
        cart_token: None,
        shipping_address: None,
        billing_address: Some(Address {
            name: Some(format!("{first} {last}")),
            country: Some(country.into()),
            ..Address::default()
        }),
        note: None,
        tags: vec![],
        test: false,
        created_at,
        updated_at,
        cancelled_at: None,
        cancel_reason: None,
        store_money: Some(store_money),
    }
}

/// Every event of a guest order delivery: the customer, the order, then its refunds.
fn assert_guest_delivery(
    topic: &str,
    fixture_name: &str,
    order: &OrderUpserted,
    refunds: &[Refund],
) {
    let (inbound, events) = map_ok(topic, &fixture(fixture_name));
    let billing = order.billing_address.clone().unwrap();
    let (first, last) = order
        .customer_name
        .as_deref()
        .unwrap()
        .split_once(' ')
        .unwrap();
    let mut expected = vec![
        (
            format!("{}#customer", inbound.event_id),
            Event::CustomerUpserted(CustomerUpserted {
                identity: order.customer.clone(),
                first_name: Some(first.into()),
                last_name: Some(last.into()),
                addresses: vec![billing],
                consent: Consent::default(),
                tags: vec![],
                note: None,
                deleted: false,
                created_at: None,
                updated_at: order.updated_at,
            }),
        ),
        (
            inbound.event_id.clone(),
            Event::OrderUpserted(Box::new(order.clone())),
        ),
    ];
    for r in refunds {
        expected.push((
            format!("{}#refund:{}", inbound.event_id, r.refund_id),
            Event::RefundIssued(r.clone()),
        ));
    }
    let got: Vec<(String, Event)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.occurred_at, order.updated_at);
            (e.event_id.clone(), e.event.clone())
        })
        .collect();
    assert_eq!(got, expected);
}

fn order_4120(status: OrderStatus, updated_at: OffsetDateTime, basis: &str) -> OrderUpserted {
    guest_order(
        "4120",
        ("Joan", "Clarke", "joan.c@example.co.uk", "GB"),
        status,
        (
            LineItem {
                id: "701".into(),
                sku: Some("TEAPOT-CER".into()),
                title: "Ceramic Teapot".into(),
                quantity: 1,
                unit_price: gbp(3750),
                total_discount: Some(gbp(0)),
            },
            gbp(3750),
        ),
        gbp(750),
        gbp(4500),
        vec![PaymentRef {
            provider: "stripe".into(),
            reference: "pi_3Fx4120aBcDeF".into(),
        }],
        (datetime!(2025-08-04 10:00:00 UTC), updated_at),
        // WooCommerce keeps the total after refunds: received stays 45.00.
        received(gbp(4500), basis),
    )
}

fn refund_4120(id: &str, reason: &str, minor: i64, at: OffsetDateTime) -> Refund {
    Refund {
        provider: "woocommerce".into(),
        refund_id: id.into(),
        payment_id: None,
        links: order_link("4120"),
        amount: gbp(minor),
        status: RefundStatus::Succeeded,
        reason: Some(reason.into()),
        lines: vec![],
        adjustments: None,
        at,
        created_at: None,
        // The order's list does not say whether the gateway moved the money.
        gateway: None,
    }
}

#[test]
fn processing_then_partly_then_fully_refunded_keeps_the_total_received() {
    let paid = datetime!(2025-08-04 10:00:05 UTC);
    assert_guest_delivery(
        "order.created",
        "order_4120_processing.json",
        &order_4120(OrderStatus::Open, paid, "status:processing"),
        &[],
    );

    let part = datetime!(2025-08-06 14:30:00 UTC);
    assert_guest_delivery(
        "order.updated",
        "order_4120_partially_refunded.json",
        &order_4120(OrderStatus::Open, part, "status:processing"),
        &[refund_4120("4121", "Lid arrived chipped", 1000, part)],
    );

    // Refunded: both refunds listed (newest first), the total still 45.00 and
    // received; 45.00 − 35.00 − 10.00 nets to zero in the fold.
    let all = datetime!(2025-08-09 09:12:00 UTC);
    assert_guest_delivery(
        "order.updated",
        "order_4120_refunded.json",
        &order_4120(OrderStatus::Refunded, all, "status:refunded"),
        &[
            refund_4120("4122", "Teapot sent back", 3500, all),
            refund_4120("4121", "Lid arrived chipped", 1000, all),
        ],
    );
}

fn order_4130(status: OrderStatus, updated_at: OffsetDateTime, money: StoreMoney) -> OrderUpserted {
    guest_order(
        "4130",
        ("Hedy", "Lamarr", "hedy.l@example.at", "AT"),
        status,
        (
            LineItem {
                id: "702".into(),
                sku: Some("LAMP-BRS".into()),
                title: "Brass Lamp".into(),
                quantity: 1,
                unit_price: eur(5990),
                total_discount: Some(eur(0)),
            },
            eur(5990),
        ),
        eur(500),
        eur(6490),
        vec![PaymentRef {
            provider: "stripe".into(),
            reference: "ch_3Fx4130gHiJkL".into(),
        }],
        (datetime!(2025-08-11 19:45:00 UTC), updated_at),
        money,
    )
}

#[test]
fn on_hold_card_authorisation_then_captured() {
    // The Stripe gateway puts an order whose charge it only authorised on hold,
    // with `_stripe_charge_captured: no`: the total is held, nothing received.
    assert_guest_delivery(
        "order.created",
        "order_4130_on_hold_authorized.json",
        &order_4130(
            OrderStatus::OnHold,
            datetime!(2025-08-11 19:45:03 UTC),
            nothing_received(
                eur(0),
                Some(eur(6490)),
                "status:on-hold, _stripe_charge_captured=no",
            ),
        ),
        &[],
    );
    // Captured: processing, paid.
    assert_guest_delivery(
        "order.updated",
        "order_4130_captured.json",
        &order_4130(
            OrderStatus::Open,
            datetime!(2025-08-12 08:05:00 UTC),
            received(eur(6490), "status:processing"),
        ),
        &[],
    );
}

#[test]
fn cancelled_before_payment_received_nothing() {
    let sek = |m| money(m, "SEK");
    assert_guest_delivery(
        "order.updated",
        "order_4140_cancelled_unpaid.json",
        &guest_order(
            "4140",
            ("Lise", "Meitner", "lise.m@example.se", "SE"),
            OrderStatus::Cancelled,
            (
                LineItem {
                    id: "703".into(),
                    sku: Some("NOTE-SET3".into()),
                    title: "Notebook Set".into(),
                    quantity: 3,
                    // 219.00 for three.
                    unit_price: sek(7300),
                    total_discount: Some(sek(0)),
                },
                sek(21900),
            ),
            sek(3000),
            sek(24900),
            // A bank transfer never made: no transaction id to link.
            vec![],
            (
                datetime!(2025-08-14 07:30:00 UTC),
                datetime!(2025-08-21 07:30:00 UTC),
            ),
            nothing_received(sek(0), None, "status:cancelled"),
        ),
        &[],
    );
}

#[test]
fn store_money_by_status_payment_date_and_authorisation() {
    let base: serde_json::Value =
        serde_json::from_slice(&fixture("order_4130_captured.json")).unwrap();
    let money_of = |changes: serde_json::Value| {
        let mut o = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            o[k] = v.clone();
        }
        let (_, events) = map_ok("order.updated", &serde_json::to_vec(&o).unwrap());
        the_order(&events).store_money.clone().unwrap()
    };
    let paid = received(eur(6490), "status:completed");
    assert_eq!(money_of(serde_json::json!({"status": "completed"})), paid);

    // Paid (a payment date), then put on hold or cancelled without a refund:
    // the money stayed.
    for status in ["on-hold", "cancelled", "awaiting-shipment"] {
        assert_eq!(
            money_of(serde_json::json!({"status": status})),
            received(eur(6490), &format!("date_paid_gmt, status:{status}")),
            "{status}"
        );
    }
    // Failed or pending: no money now, whatever the payment date says.
    for status in ["failed", "pending"] {
        assert_eq!(
            money_of(serde_json::json!({"status": status})),
            nothing_received(eur(0), None, &format!("status:{status}")),
            "{status}"
        );
    }
    // No payment date, not a paid status: nothing.
    assert_eq!(
        money_of(serde_json::json!({"status": "on-hold", "date_paid_gmt": null})),
        nothing_received(eur(0), None, "status:on-hold")
    );
    // WooPayments marks an authorised-only card payment with its intent status.
    assert_eq!(
        money_of(serde_json::json!({
            "status": "on-hold", "date_paid_gmt": null, "payment_method": "woocommerce_payments",
            "meta_data": [{"id": 1, "key": "_intention_status", "value": "requires_capture"}]
        })),
        nothing_received(
            eur(0),
            Some(eur(6490)),
            "status:on-hold, _intention_status=requires_capture"
        )
    );
}

// ----------------------------------------------------------------- customers

#[test]
fn customer_created_maps_profile() {
    let (inbound, events) = map_ok("customer.created", &fixture("customer_created.json"));
    // A new customer has no modification date yet: its creation date stands in.
    assert_eq!(inbound.event_id, "customer:42:2025-05-02T14:10:00");
    assert_eq!(events.len(), 1);
    let created = datetime!(2025-05-02 14:10:00 UTC);
    assert_eq!(events[0].occurred_at, created);
    assert_eq!(
        events[0].event,
        Event::CustomerUpserted(CustomerUpserted {
            identity: katherine(),
            first_name: Some("Katherine".into()),
            last_name: Some("Johnson".into()),
            addresses: vec![
                Address {
                    phone: Some("(212) 555-0147".into()),
                    ..orbit_way()
                },
                orbit_way(),
            ],
            consent: Consent::default(),
            tags: vec![],
            note: None,
            deleted: false,
            created_at: Some(created),
            updated_at: created,
        })
    );
}

#[test]
fn customer_updated_takes_names_from_billing() {
    let (_, events) = map_ok("customer.updated", &fixture("customer_updated.json"));
    assert_eq!(
        events[0].event,
        Event::CustomerUpserted(CustomerUpserted {
            identity: Identity {
                email: Some("dorothy.v@example.com".into()),
                phone: None,
                external: vec![ext("43")],
                anonymous_id: None,
                keyed: Vec::new(),
            },
            first_name: Some("Dorothy".into()),
            last_name: Some("Vaughan".into()),
            addresses: vec![Address {
                name: Some("Dorothy Vaughan".into()),
                company: Some("West Computing".into()),
                line1: Some("1 Langley Blvd".into()),
                line2: None,
                city: Some("Hampton".into()),
                region: Some("VA".into()),
                postal_code: Some("23681".into()),
                country: Some("US".into()),
                phone: None,
            }],
            consent: Consent::default(),
            tags: vec![],
            note: None,
            deleted: false,
            created_at: Some(datetime!(2024-12-24 18:00:00 UTC)),
            updated_at: datetime!(2025-05-10 07:20:00 UTC),
        })
    );
}

#[test]
fn customer_deleted_marks_the_record_deleted() {
    let (_, events) = map_ok("customer.deleted", &fixture("customer_deleted.json"));
    assert_eq!(events[0].occurred_at, RECEIVED);
    assert_eq!(
        events[0].event,
        Event::CustomerUpserted(CustomerUpserted {
            identity: Identity {
                external: vec![ext("43")],
                ..Identity::default()
            },
            first_name: None,
            last_name: None,
            addresses: vec![],
            consent: Consent::default(),
            tags: vec![],
            note: None,
            deleted: true,
            created_at: None,
            updated_at: RECEIVED,
        })
    );
}

// -------------------------------------------------------- conformance corpus

#[test]
fn conformance_every_woocommerce_file_is_checked() {
    let Some(dir) = conformance_dir("woocommerce") else {
        return;
    };
    let names = json_file_names(&dir);
    assert_eq!(
        names,
        [
            "order_refund_create.json",
            "order_retrieve.json",
            "order_update_completed.json"
        ]
    );
}

/// What both real order payloads share (they are the same order, 727).
fn assert_order_727(
    events: &[Envelope],
    status: OrderStatus,
    modified: OffsetDateTime,
    store_money: StoreMoney,
) {
    assert_eq!(events.len(), 2, "customer + order");
    let order = the_order(events);
    assert_eq!(order.order_id, "woocommerce:727");
    assert_eq!(order.number.as_deref(), Some("727"));
    assert_eq!(order.status, status);
    // A guest order (customer_id 0); "(555) 555-5555" is no valid number.
    assert_eq!(
        order.customer,
        Identity {
            email: Some("john.doe@example.com".into()),
            ..Identity::default()
        }
    );
    assert_eq!(order.customer_name.as_deref(), Some("John Doe"));
    assert_eq!(
        order.totals,
        OrderTotals {
            total: usd(2935),
            subtotal: Some(usd(1800)),
            discounts: Some(usd(0)),
            shipping: Some(usd(1000)),
            tax: Some(usd(135)),
            presentment_total: None,
        }
    );
    assert_eq!(
        order.line_items,
        vec![
            LineItem {
                id: "315".into(),
                sku: None,
                title: "Woo Single #1".into(),
                quantity: 2,
                unit_price: usd(300),
                total_discount: Some(usd(0)),
            },
            LineItem {
                id: "316".into(),
                sku: Some("Bar3".into()),
                title: "Ship Your Idea &ndash; Color: Black, Size: M Test".into(),
                quantity: 1,
                unit_price: usd(1200),
                total_discount: Some(usd(0)),
            },
        ]
    );
    assert!(order.discount_codes.is_empty());
    // bacs with an empty transaction id: nothing to link payments by.
    assert!(order.payment_refs.is_empty());
    assert_eq!(order.attribution.source_name.as_deref(), Some("rest-api"));
    assert!(order.attribution.utm.is_empty());
    let billing = order.billing_address.as_ref().unwrap();
    assert_eq!(billing.line1.as_deref(), Some("969 Market"));
    assert_eq!(billing.city.as_deref(), Some("San Francisco"));
    assert_eq!(billing.region.as_deref(), Some("CA"));
    assert_eq!(billing.postal_code.as_deref(), Some("94103"));
    assert_eq!(billing.country.as_deref(), Some("US"));
    assert_eq!(billing.phone.as_deref(), Some("(555) 555-5555"));
    assert_eq!(order.note, None);
    assert_eq!(order.created_at, datetime!(2017-03-22 19:28:02 UTC));
    assert_eq!(order.updated_at, modified);
    assert_eq!(order.store_money.as_ref(), Some(&store_money));
    assert!(refunds(events).is_empty());

    match &events[0].event {
        Event::CustomerUpserted(c) => {
            assert_eq!(c.identity.email.as_deref(), Some("john.doe@example.com"));
            assert_eq!(c.first_name.as_deref(), Some("John"));
            assert_eq!(c.last_name.as_deref(), Some("Doe"));
            assert_eq!(c.addresses.len(), 2);
            assert_eq!(c.updated_at, modified);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn conformance_order_retrieve_as_order_created() {
    let Some(dir) = conformance_dir("woocommerce") else {
        return;
    };
    let (inbound, events) = map_ok("order.created", &read_file(&dir, "order_retrieve.json"));
    assert_eq!(inbound.event_id, "order:727:2017-03-22T19:28:08");
    // Processing, paid by bank transfer (date_paid set): 29.35 received.
    assert_order_727(
        &events,
        OrderStatus::Open,
        datetime!(2017-03-22 19:28:08 UTC),
        received(usd(2935), "status:processing"),
    );
}

#[test]
fn conformance_order_update_completed() {
    let Some(dir) = conformance_dir("woocommerce") else {
        return;
    };
    let (inbound, events) = map_ok(
        "order.updated",
        &read_file(&dir, "order_update_completed.json"),
    );
    assert_eq!(inbound.event_id, "order:727:2017-03-22T19:30:35");
    assert_order_727(
        &events,
        OrderStatus::Completed,
        datetime!(2017-03-22 19:30:35 UTC),
        received(usd(2935), "status:completed"),
    );
}

#[test]
fn conformance_refund_resource_and_the_orders_refund_list_agree() {
    let Some(dir) = conformance_dir("woocommerce") else {
        return;
    };
    let options = MapOptions::default();
    let ctx = MapContext {
        tenant: "acme",
        options: &options,
    };
    let body = read_file(&dir, "order_refund_create.json");
    // The resource names its order only in `_links.up` (orders/723).
    let env =
        super::map_refund_resource(&ctx, "backfill:refund:726", None, "USD", None, &body).unwrap();
    let expected = Refund {
        provider: "woocommerce".into(),
        refund_id: "726".into(),
        payment_id: None,
        links: order_link("723"),
        amount: usd(1000),
        status: RefundStatus::Succeeded,
        reason: None,
        lines: vec![],
        adjustments: None,
        at: datetime!(2017-03-21 20:07:11 UTC),
        created_at: Some(datetime!(2017-03-21 20:07:11 UTC)),
        // `refunded_payment: false`: recorded in the shop, not sent through a
        // gateway, so it names none.
        gateway: None,
    };
    assert_eq!(env.event, Event::RefundIssued(expected.clone()));
    assert_eq!(env.event_id, "backfill:refund:726");
    assert_eq!(env.provider, "woocommerce");
    assert_eq!(env.occurred_at, datetime!(2017-03-21 20:07:11 UTC));
    // Even with the order's payment method known: the gateway did not move it.
    let explicit =
        super::map_refund_resource(&ctx, "e", Some("723"), "USD", Some("bacs"), &body).unwrap();
    assert_eq!(explicit.event, env.event);

    // The same refund as a webhook sees it: an entry of order 723's `refunds`,
    // with the negative total WooCommerce lists there. Same id, same amount.
    let mut order: serde_json::Value =
        serde_json::from_slice(&read_file(&dir, "order_update_completed.json")).unwrap();
    order["id"] = 723.into();
    order["status"] = "refunded".into();
    order["refunds"] = serde_json::json!([{ "id": 726, "reason": "", "total": "-10.00" }]);
    let (_, events) = map_ok("order.updated", &serde_json::to_vec(&order).unwrap());
    assert_eq!(the_order(&events).status, OrderStatus::Refunded);
    let listed = refunds(&events);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0],
        &Refund {
            // The list has no refund date: the order's modification time stands
            // in, and the creation time is unknown.
            at: datetime!(2017-03-22 19:30:35 UTC),
            created_at: None,
            ..expected
        }
    );
}

#[test]
fn refund_resource_lines_point_at_the_order_lines() {
    let options = MapOptions::default();
    let ctx = MapContext {
        tenant: "acme",
        options: &options,
    };
    let body = br#"{
        "id": 4112, "date_created_gmt": "2025-05-10T09:00:00", "amount": "12.34",
        "reason": "Too small", "refunded_payment": true,
        "line_items": [{"id": 4113, "quantity": -1, "total": "-12.34",
            "meta_data": [{"id": 1, "key": "_refunded_item_id", "value": "601"}]}],
        "_links": {"up": [{"href": "https://shop.example.com/wp-json/wc/v3/orders/4102"}]}
    }"#;
    let env = super::map_refund_resource(&ctx, "e", None, "EUR", Some("stripe"), body).unwrap();
    let at = datetime!(2025-05-10 09:00:00 UTC);
    let expected = Refund {
        provider: "woocommerce".into(),
        refund_id: "4112".into(),
        payment_id: None,
        links: order_link("4102"),
        amount: eur(1234),
        status: RefundStatus::Succeeded,
        reason: Some("Too small".into()),
        lines: vec![RefundLine {
            line_item_id: "601".into(),
            quantity: 1,
            amount: Some(eur(1234)),
            restock: false,
        }],
        adjustments: None,
        at,
        created_at: Some(at),
        // `refunded_payment: true`: the order's gateway sent the money back.
        gateway: Some("stripe".into()),
    };
    assert_eq!(env.event, Event::RefundIssued(expected.clone()));
    // Without the order's payment method the gateway stays unknown.
    let env = super::map_refund_resource(&ctx, "e", None, "EUR", None, body).unwrap();
    assert_eq!(
        env.event,
        Event::RefundIssued(Refund {
            gateway: None,
            ..expected
        })
    );
    let no_order = br#"{"id": 1, "date_created_gmt": "2025-05-10T09:00:00", "amount": "1.00"}"#;
    assert_eq!(
        super::map_refund_resource(&ctx, "e", None, "EUR", None, no_order).unwrap_err(),
        MapError::MissingField("_links.up".into())
    );
}

// ------------------------------------------------------------------ products

fn costs_in(code: &str) -> MapOptions {
    MapOptions {
        cost_currency: Some(Currency::from_code(code).unwrap()),
        ..MapOptions::default()
    }
}

/// Delivers `body` for tenant `acme` with `options`.
fn deliver_with(
    options: MapOptions,
    topic: &str,
    body: &[u8],
) -> (Inbound, Result<Vec<Envelope>, MapError>) {
    let bench = Harness::new(ProviderKind::WooCommerce, SECRET, NOW)
        .tenant("acme")
        .received_at(RECEIVED)
        .options(options);
    let delivery = bench.receive(topic, body).expect("describes");
    let mapped = bench.map(&delivery);
    (delivery.inbound, mapped)
}

fn the_inventory(events: &[Envelope]) -> &InventoryUpdated {
    match events {
        [e] => match &e.event {
            Event::InventoryUpdated(i) => i,
            other => panic!("expected an inventory update, got {other:?}"),
        },
        other => panic!("expected one event, got {other:?}"),
    }
}

#[test]
fn products_carry_stock_and_the_cost_of_goods_meta_in_the_cost_currency() {
    let (inbound, mapped) = deliver_with(
        costs_in("EUR"),
        "product.created",
        &fixture("product_created.json"),
    );
    assert_eq!(inbound.event_id, "product:812:2025-02-20T10:04:12");
    let events = mapped.unwrap();
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].provider, "woocommerce");
    assert_eq!(events[0].occurred_at, datetime!(2025-02-20 10:04:12 UTC));
    assert_eq!(
        the_inventory(&events),
        &InventoryUpdated {
            sku: "APRON-LIN-NAT".into(),
            item_id: Some("812".into()),
            unit_cost: Some(eur(1180)),
            available: Some(25),
            backorder: Some(false),
            eta: None,
            at: datetime!(2025-02-20 10:04:12 UTC),
        }
    );

    // A variation, out of stock and taking backorders (`notify` takes them too).
    let (_, mapped) = deliver_with(
        costs_in("GBP"),
        "product.updated",
        &fixture("product_updated.json"),
    );
    assert_eq!(
        the_inventory(&mapped.unwrap()),
        &InventoryUpdated {
            sku: "BEANIE-WOOL-RUST".into(),
            item_id: Some("905".into()),
            unit_cost: Some(gbp(705)),
            available: Some(0),
            backorder: Some(true),
            eta: None,
            at: datetime!(2025-03-05 14:31:40 UTC),
        }
    );

    // No cost (an empty meta value): no currency needed. Stock not managed but
    // out of stock: nothing available.
    let (_, mapped) = deliver(
        "product.updated",
        &fixture("product_updated__no_cost.json"),
    );
    assert_eq!(
        the_inventory(&mapped.unwrap()),
        &InventoryUpdated {
            sku: "WRAP-GIFT".into(),
            item_id: Some("833".into()),
            unit_cost: None,
            available: Some(0),
            backorder: Some(false),
            eta: None,
            at: datetime!(2025-03-06 09:15 UTC),
        }
    );
}

#[test]
fn a_product_cost_without_a_cost_currency_is_refused_naming_the_key() {
    let (_, mapped) = deliver("product.created", &fixture("product_created.json"));
    let err = mapped.unwrap_err();
    assert_eq!(err.code(), "invalid_field");
    assert_eq!(
        err.to_string(),
        "invalid field meta_data._wc_cog_cost: the payload does not say the cost's currency \
         (it is the shop's): set tenants.acme.cost_currency"
    );
}

#[test]
fn products_without_a_sku_and_groups_map_to_nothing() {
    // Order lines find costs and stock by SKU.
    for options in [MapOptions::default(), costs_in("EUR")] {
        let (_, mapped) = deliver_with(
            options,
            "product.updated",
            &fixture("product_updated__no_sku.json"),
        );
        assert_eq!(mapped, Ok(vec![]));
    }
    for kind in ["grouped", "external"] {
        let body = format!(
            r#"{{"id": 3, "sku": "SET-1", "type": "{kind}", "date_modified_gmt": "2025-03-06T10:00:00"}}"#
        );
        let (_, mapped) = deliver_with(costs_in("EUR"), "product.updated", body.as_bytes());
        assert_eq!(mapped, Ok(vec![]), "{kind}");
    }
}

#[test]
fn product_costs_are_exact() {
    for (value, expected) in [
        (r#""7.5""#, Ok(Some(750))),
        (r#"7.5"#, Ok(Some(750))),
        (r#""  ""#, Ok(None)),
        (r#"null"#, Ok(None)),
        (
            r#""7.055""#,
            Err("invalid field meta_data._wc_cog_cost: more decimals than EUR allows (2)"),
        ),
        (
            r#"["7.05"]"#,
            Err("invalid field meta_data._wc_cog_cost: expected a decimal string"),
        ),
        (
            r#""-7.05""#,
            Err("invalid field meta_data._wc_cog_cost: a cost is not negative"),
        ),
    ] {
        let body = format!(
            r#"{{"id": 4, "sku": "CAP-1", "type": "simple", "date_modified_gmt": "2025-03-06T10:00:00",
                "meta_data": [{{"id": 1, "key": "_wc_cog_cost", "value": {value}}}]}}"#
        );
        let (_, mapped) = deliver_with(costs_in("EUR"), "product.updated", body.as_bytes());
        let got = mapped
            .map(|events| the_inventory(&events).unit_cost.map(|m| m.minor))
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "value {value}");
    }
}
