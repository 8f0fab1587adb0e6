//! WooCommerce: signatures, the creation ping, topics and exact canonical values,
//! from our own fixtures and from the shared conformance corpus (read in place).

use storefold_core::event::{
    Address, Attribution, Consent, CustomerUpserted, LineItem, OrderLink, OrderStatus, OrderTotals,
    OrderUpserted, PaymentRef, Refund, RefundLine, RefundStatus, Utm,
};
use storefold_core::identity::ExternalId;
use storefold_core::{Currency, Envelope, Event, Identity, Money};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::{self, conformance_dir, json_file_names, read_file};
use crate::{
    Credentials, Headers, Inbound, MapContext, MapError, MapOptions, ProviderKind, RawInput,
    VerifyError, WebhookRequest,
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
    let signed = ProviderKind::WooCommerce
        .sign(SECRET, topic, body, NOW)
        .unwrap();
    let mut headers = Headers::from_pairs(signed.headers.iter().map(|(k, v)| (k, v)));
    headers.insert("X-WC-Webhook-Source", "https://shop.example.com/");
    headers.insert("User-Agent", "WooCommerce/9.4.2 Hookshot (WordPress/6.7)");
    let req = request(&headers, &signed.body);
    ProviderKind::WooCommerce
        .verify(&Credentials::new(SECRET), &req, NOW)
        .expect("signature verifies");
    let inbound = ProviderKind::WooCommerce.describe(&req).expect("describes");
    let kept = headers.select(ProviderKind::WooCommerce.kept_headers());
    assert!(kept.get("user-agent").is_none());
    assert!(kept.get("x-wc-webhook-signature").is_none());
    let options = MapOptions::default();
    let ctx = MapContext {
        tenant: "acme",
        options: &options,
    };
    let input = RawInput {
        topic: &inbound.topic,
        event_id: &inbound.event_id,
        headers: &kept,
        body: &signed.body,
        received_at: RECEIVED,
    };
    let mapped = ProviderKind::WooCommerce.map(&ctx, &input);
    (inbound, mapped)
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
        "product.updated",
        br#"{"id": 77, "date_modified_gmt": "2025-05-01T00:00:00"}"#,
    );
    assert_eq!(
        mapped,
        Err(MapError::UnsupportedTopic("product.updated".into()))
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
        store_money: None,
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
            store_money: None,
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
    let jpy = |m| money(m, "JPY");
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
fn assert_order_727(events: &[Envelope], status: OrderStatus, modified: OffsetDateTime) {
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
    assert_order_727(
        &events,
        OrderStatus::Open,
        datetime!(2017-03-22 19:28:08 UTC),
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
    let env = super::map_refund_resource(&ctx, "backfill:refund:726", None, "USD", &body).unwrap();
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
        created_at: None,
        gateway: None,
    };
    assert_eq!(env.event, Event::RefundIssued(expected.clone()));
    assert_eq!(env.event_id, "backfill:refund:726");
    assert_eq!(env.provider, "woocommerce");
    assert_eq!(env.occurred_at, datetime!(2017-03-21 20:07:11 UTC));
    let explicit = super::map_refund_resource(&ctx, "e", Some("723"), "USD", &body).unwrap();
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
            // The list has no refund date: the order's modification time stands in.
            at: datetime!(2017-03-22 19:30:35 UTC),
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
    let env = super::map_refund_resource(&ctx, "e", None, "EUR", body).unwrap();
    match env.event {
        Event::RefundIssued(r) => {
            assert_eq!(r.links, order_link("4102"));
            assert_eq!(r.amount, eur(1234));
            assert_eq!(r.reason.as_deref(), Some("Too small"));
            assert_eq!(
                r.lines,
                vec![RefundLine {
                    line_item_id: "601".into(),
                    quantity: 1,
                    amount: Some(eur(1234)),
                    restock: false,
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    let no_order = br#"{"id": 1, "date_created_gmt": "2025-05-10T09:00:00", "amount": "1.00"}"#;
    assert_eq!(
        super::map_refund_resource(&ctx, "e", None, "EUR", no_order).unwrap_err(),
        MapError::MissingField("_links.up".into())
    );
}
