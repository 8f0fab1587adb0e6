//! Shopify: signatures, topics and exact canonical values, from our own fixtures
//! and from the shared conformance corpus (real payloads, read in place).

use storefold_core::event::{
    Address, Attribution, Checkpoint, Consent, CustomerRedacted, CustomerUpserted, InventoryUpdated,
    LineItem,
    OrderLink, OrderStatus, OrderTotals, OrderUpserted, Payment, PaymentStatus, ReasonCode, Refund,
    RefundLine, RefundStatus, Return, ReturnResolution, Shipment, ShipmentStatus, StoreMoney,
    Touch, Utm,
};
use storefold_core::identity::ExternalId;
use storefold_core::{Envelope, Event, Identity, Money};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::Harness;
use crate::test_support::{self, conformance_dir, json_file_names, read_file};
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "shpss_storefold_test_3c9a";
const NOW: OffsetDateTime = datetime!(2025-03-14 14:02:12 UTC);
const RECEIVED: OffsetDateTime = datetime!(2025-03-14 14:02:13 UTC);

fn fixture(name: &str) -> Vec<u8> {
    test_support::fixture("shopify", name)
}

fn usd(minor: i64) -> Money {
    money(minor, "USD")
}

fn eur(minor: i64) -> Money {
    money(minor, "EUR")
}

fn cad(minor: i64) -> Money {
    money(minor, "CAD")
}

fn money(minor: i64, code: &str) -> Money {
    Money::new(minor, storefold_core::Currency::from_code(code).unwrap())
}

fn ext(id: &str) -> ExternalId {
    ExternalId {
        source: "shopify".into(),
        id: id.into(),
    }
}

fn order_link(id: &str) -> Vec<OrderLink> {
    vec![OrderLink::Order {
        order_id: format!("shopify:{id}"),
    }]
}

/// Signs `body` as Shopify would, verifies it, describes it and maps it: the
/// whole path a webhook takes through ingest and processor.
fn deliver(topic: &str, body: &[u8]) -> (Inbound, Result<Vec<Envelope>, MapError>) {
    let bench = Harness::new(ProviderKind::Shopify, SECRET, NOW)
        .tenant("acme")
        .received_at(RECEIVED)
        .header("X-Shopify-Shop-Domain", "storefold-demo.myshopify.com")
        .header("X-Shopify-API-Version", "2025-01")
        .header("Content-Type", "application/json");
    let delivery = bench.receive(topic, body).expect("describes");
    assert_eq!(delivery.inbound.topic, topic);
    assert!(delivery.kept.get("content-type").is_none());
    assert_eq!(delivery.kept.get("x-shopify-api-version"), Some("2025-01"));
    let mapped = bench.map(&delivery);
    (delivery.inbound, mapped)
}

fn map_ok(topic: &str, body: &[u8]) -> (Inbound, Vec<Envelope>) {
    let (inbound, mapped) = deliver(topic, body);
    let events = mapped.unwrap_or_else(|e| panic!("{topic}: {e}"));
    for e in &events {
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.provider, "shopify");
        assert!(e.event_id.starts_with(&inbound.event_id), "{}", e.event_id);
    }
    (inbound, events)
}

fn only<'a>(events: &'a [Envelope], type_name: &str) -> Vec<&'a Event> {
    events
        .iter()
        .map(|e| &e.event)
        .filter(|e| e.type_name() == type_name)
        .collect()
}

fn the_order(events: &[Envelope]) -> &OrderUpserted {
    match only(events, "OrderUpserted").as_slice() {
        [Event::OrderUpserted(o)] => o,
        other => panic!("expected one order, got {other:?}"),
    }
}

fn the_customer(events: &[Envelope]) -> &CustomerUpserted {
    match only(events, "CustomerUpserted").as_slice() {
        [Event::CustomerUpserted(c)] => c,
        other => panic!("expected one customer, got {other:?}"),
    }
}

fn shipments(events: &[Envelope]) -> Vec<&Shipment> {
    events
        .iter()
        .map(|e| match &e.event {
            Event::ShipmentUpdated(s) => s,
            other => panic!("expected shipments only, got {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------- signatures

fn request<'a>(headers: &'a Headers, body: &'a [u8]) -> WebhookRequest<'a> {
    WebhookRequest {
        headers,
        body,
        url_token: None,
    }
}

#[test]
fn verify_matches_an_independently_computed_hmac() {
    // base64(HMAC-SHA256("hush", '{"id":1}')), computed with Python's hmac module.
    let headers = Headers::from_pairs([(
        "X-Shopify-Hmac-SHA256",
        "VnKUjZsLuN5iZWjn5EntcBVCF9kMN43LglzCE1/GSeY=",
    )]);
    let creds = Credentials::new("hush");
    assert_eq!(
        ProviderKind::Shopify.verify(&creds, &request(&headers, br#"{"id":1}"#), NOW),
        Ok(())
    );
    assert_eq!(
        ProviderKind::Shopify.verify(&creds, &request(&headers, br#"{"id":2}"#), NOW),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn verify_rejects_wrong_secret_tampered_body_and_bad_headers() {
    let body = fixture("orders_create.json");
    let signed = ProviderKind::Shopify
        .sign(SECRET, "orders/create", &body, NOW)
        .unwrap();
    let headers = Headers::from_pairs(signed.headers.iter().map(|(k, v)| (k, v)));
    let good = Credentials::new(SECRET);
    assert_eq!(
        ProviderKind::Shopify.verify(&good, &request(&headers, &body), NOW),
        Ok(())
    );
    assert_eq!(
        ProviderKind::Shopify.verify(&Credentials::new("other"), &request(&headers, &body), NOW),
        Err(VerifyError::Mismatch)
    );
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'7').unwrap();
    tampered[at] = b'8';
    assert_eq!(
        ProviderKind::Shopify.verify(&good, &request(&headers, &tampered), NOW),
        Err(VerifyError::Mismatch)
    );
    // A body that is not even JSON is rejected by the signature, not by a parser.
    assert_eq!(
        ProviderKind::Shopify.verify(&good, &request(&headers, b"\xff\xfe not json"), NOW),
        Err(VerifyError::Mismatch)
    );

    let missing = Headers::from_pairs([("X-Shopify-Topic", "orders/create")]);
    assert_eq!(
        ProviderKind::Shopify.verify(&good, &request(&missing, &body), NOW),
        Err(VerifyError::MissingHeader("X-Shopify-Hmac-Sha256"))
    );
    let empty = Headers::from_pairs([("X-Shopify-Hmac-Sha256", "  ")]);
    assert_eq!(
        ProviderKind::Shopify.verify(&good, &request(&empty, &body), NOW),
        Err(VerifyError::MissingHeader("X-Shopify-Hmac-Sha256"))
    );
    let garbled = Headers::from_pairs([("X-Shopify-Hmac-Sha256", "not*base64!")]);
    assert!(matches!(
        ProviderKind::Shopify.verify(&good, &request(&garbled, &body), NOW),
        Err(VerifyError::MalformedHeader {
            header: "X-Shopify-Hmac-Sha256",
            ..
        })
    ));
    // Valid base64 of the wrong length (a hex digest pasted by mistake, say).
    let short = Headers::from_pairs([("X-Shopify-Hmac-Sha256", "c2hvcnQ=")]);
    assert!(matches!(
        ProviderKind::Shopify.verify(&good, &request(&short, &body), NOW),
        Err(VerifyError::MalformedHeader { .. })
    ));
    assert!(matches!(
        ProviderKind::Shopify.verify(&Credentials::new(""), &request(&headers, &body), NOW),
        Err(VerifyError::BadCredentials(_))
    ));
}

#[test]
fn sign_sends_what_shopify_sends() {
    let signed = ProviderKind::Shopify
        .sign(SECRET, "orders/create", b"{}", NOW)
        .unwrap();
    let headers = Headers::from_pairs(signed.headers.iter().map(|(k, v)| (k, v)));
    assert_eq!(headers.get("x-shopify-topic"), Some("orders/create"));
    assert_eq!(
        headers.get("x-shopify-triggered-at"),
        Some("2025-03-14T14:02:12Z")
    );
    let webhook_id = headers.get("x-shopify-webhook-id").unwrap();
    assert_eq!(webhook_id.len(), 36);
    assert!(headers.get("x-shopify-hmac-sha256").is_some());
    assert_eq!(signed.body, b"{}");
    assert_eq!(signed.url_token, None);
    // Deterministic: the same input signs the same way.
    assert_eq!(
        ProviderKind::Shopify
            .sign(SECRET, "orders/create", b"{}", NOW)
            .unwrap(),
        signed
    );
    assert!(
        ProviderKind::Shopify
            .sign("", "orders/create", b"{}", NOW)
            .is_err()
    );
}

// ------------------------------------------------------------------ describe

#[test]
fn describe_prefers_the_event_id_then_the_webhook_id_then_a_hash() {
    let body = br#"{"id":1}"#;
    let both = Headers::from_pairs([
        ("X-Shopify-Topic", "orders/updated"),
        ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Triggered-At", "2025-03-14T14:02:12.123456789Z"),
    ]);
    let d = ProviderKind::Shopify
        .describe(&request(&both, body))
        .unwrap();
    assert_eq!(d.topic, "orders/updated");
    assert_eq!(
        d.event_id,
        "98880550-7158-44d4-b7cd-2c97c8a091b5:orders/updated"
    );
    assert_eq!(
        d.occurred_at,
        Some(datetime!(2025-03-14 14:02:12.123456789 UTC))
    );

    let webhook_only = Headers::from_pairs([
        ("X-Shopify-Topic", "orders/updated"),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Triggered-At", "yesterday"),
    ]);
    let d = ProviderKind::Shopify
        .describe(&request(&webhook_only, body))
        .unwrap();
    assert_eq!(
        d.event_id,
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043:orders/updated"
    );
    assert_eq!(d.occurred_at, None);

    let bare = Headers::from_pairs([("X-Shopify-Topic", "orders/updated")]);
    let d = ProviderKind::Shopify
        .describe(&request(&bare, body))
        .unwrap();
    assert_eq!(
        d.event_id,
        format!(
            "{}:orders/updated",
            storefold_core::identity::content_hash(body)
        )
    );

    let no_topic = Headers::from_pairs([("X-Shopify-Event-Id", "e1")]);
    assert_eq!(
        ProviderKind::Shopify.describe(&request(&no_topic, body)),
        Err(MapError::MissingHeader("X-Shopify-Topic"))
    );
}

#[test]
fn unknown_topics_are_refused_and_compliance_topics_accepted() {
    let (_, mapped) = deliver("collections/update", br#"{"id":1}"#);
    assert_eq!(
        mapped,
        Err(MapError::UnsupportedTopic("collections/update".into()))
    );
    let (_, events) = map_ok(
        "customers/data_request",
        &fixture("customers_data_request.json"),
    );
    assert!(events.is_empty());
    let (_, events) = map_ok("shop/redact", &fixture("shop_redact.json"));
    assert!(events.is_empty());
}

#[test]
fn malformed_json_is_a_map_error_after_verification() {
    let (_, mapped) = deliver("orders/create", b"{\"id\": ");
    assert!(matches!(mapped, Err(MapError::Json(_))));
    let (_, mapped) = deliver("orders/create", br#"{"id": 1, "currency": "USD"}"#);
    assert!(
        matches!(mapped, Err(MapError::MissingField(_))),
        "{mapped:?}"
    );
    let (_, mapped) = deliver(
        "orders/create",
        br#"{"id": 1, "currency": "USD", "total_price": "1.005", "created_at": "2025-01-01T00:00:00Z"}"#,
    );
    assert!(
        matches!(mapped, Err(MapError::InvalidField { .. })),
        "{mapped:?}"
    );
}

// -------------------------------------------------------------------- orders

fn ada_identity() -> Identity {
    Identity {
        email: Some("ada.lovelace@example.org".into()),
        phone: Some("+4930901820".into()),
        external: vec![ext("8200000001")],
        anonymous_id: None,
        keyed: Vec::new(),
    }
}

fn expected_order() -> OrderUpserted {
    OrderUpserted {
        order_id: "shopify:5012345678901".into(),
        number: Some("#2047".into()),
        customer: ada_identity(),
        customer_name: Some("Ada Lovelace".into()),
        status: OrderStatus::Open,
        financial_status: Some("paid".into()),
        fulfillment_status: Some("partial".into()),
        totals: OrderTotals {
            total: usd(5758),
            subtotal: Some(usd(4500)),
            discounts: Some(usd(500)),
            shipping: Some(usd(700)),
            tax: Some(usd(558)),
            presentment_total: Some(money(5297, "EUR")),
        },
        line_items: vec![
            LineItem {
                id: "13001".into(),
                sku: Some("TEE-BLK-M".into()),
                title: "Organic Tee".into(),
                quantity: 2,
                unit_price: usd(2500),
                total_discount: Some(usd(500)),
            },
            LineItem {
                id: "13002".into(),
                sku: None,
                title: "Canvas Cap".into(),
                quantity: 1,
                unit_price: usd(1850),
                total_discount: Some(usd(0)),
            },
        ],
        discount_codes: vec!["SPRING10".into()],
        payment_refs: vec![],
        tracking_numbers: vec!["1Z999AA10123456784".into(), "1Z999AA10123456785".into()],
        attribution: Attribution {
            landing_site: Some(
                "/collections/tees?utm_source=newsletter&utm_medium=email&utm_campaign=spring+drop&gclid=abc123"
                    .into(),
            ),
            referring_site: Some("https://mail.example.net/".into()),
            source_name: Some("web".into()),
            utm: Utm {
                source: Some("newsletter".into()),
                medium: Some("email".into()),
                campaign: Some("spring drop".into()),
                term: None,
                content: Some("hero-banner".into()),
            },
            note_attributes: vec![
                ("gift_wrap".into(), "yes".into()),
                ("utm_content".into(), "hero-banner".into()),
            ],
        },
        cart_token: Some("c1-7f3a9e0b52d14c8e".into()),
        shipping_address: Some(Address {
            name: Some("Ada Lovelace".into()),
            company: None,
            line1: Some("Hauptstrasse 12".into()),
            line2: Some("Hinterhaus".into()),
            city: Some("Potsdam".into()),
            region: Some("BB".into()),
            postal_code: Some("14467".into()),
            country: Some("DE".into()),
            phone: None,
        }),
        billing_address: Some(Address {
            name: Some("Ada Lovelace".into()),
            company: Some("Analytical Engines GmbH".into()),
            line1: Some("Unter den Linden 5".into()),
            line2: None,
            city: Some("Berlin".into()),
            region: Some("BE".into()),
            postal_code: Some("10117".into()),
            country: Some("DE".into()),
            phone: Some("030 901820".into()),
        }),
        note: Some("Leave at the side door".into()),
        tags: vec!["vip".into(), "spring-drop".into()],
        test: false,
        created_at: datetime!(2025-03-14 09:26:53 -4),
        updated_at: datetime!(2025-03-14 10:02:11 -4),
        cancelled_at: None,
        cancel_reason: None,
        // Paid, and no `total_outstanding` to work the received money out from
        // the current total: what the checkout charged, in the customer's euros
        // (total_price_set), and in the shop's dollars.
        store_money: Some(StoreMoney {
            received: money(6999, "EUR"),
            authorized: None,
            outstanding: None,
            shop_received: Some(usd(7608)),
            basis: "financial_status:paid, total_price".into(),
        }),
    }
}

#[test]
fn orders_create_maps_customer_and_full_order_snapshot() {
    let (inbound, events) = map_ok("orders/create", &fixture("orders_create.json"));
    assert_eq!(events.len(), 2);

    let customer = &events[0];
    assert_eq!(customer.event_id, format!("{}#customer", inbound.event_id));
    assert_eq!(customer.occurred_at, datetime!(2025-03-14 09:27:00 -4));
    assert_eq!(
        customer.event,
        Event::CustomerUpserted(CustomerUpserted {
            identity: ada_identity(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            addresses: vec![Address {
                name: Some("Ada Lovelace".into()),
                company: None,
                line1: Some("Unter den Linden 5".into()),
                line2: None,
                city: Some("Berlin".into()),
                region: Some("BE".into()),
                postal_code: Some("10117".into()),
                country: Some("DE".into()),
                phone: Some("030 901820".into()),
            }],
            consent: Consent {
                email_marketing: Some(true),
                sms_marketing: Some(false),
            },
            tags: vec!["vip".into()],
            note: None,
            deleted: false,
            created_at: Some(datetime!(2024-11-02 15:40:00 -4)),
            updated_at: datetime!(2025-03-14 09:27:00 -4),
        })
    );

    let order = &events[1];
    assert_eq!(order.event_id, inbound.event_id);
    assert_eq!(order.occurred_at, datetime!(2025-03-14 10:02:11 -4));
    assert_eq!(
        order.event,
        Event::OrderUpserted(Box::new(expected_order()))
    );
}

#[test]
fn every_order_topic_maps_the_snapshot() {
    for topic in [
        "orders/updated",
        "orders/paid",
        "orders/partially_fulfilled",
    ] {
        let (_, events) = map_ok(topic, &fixture("orders_create.json"));
        assert_eq!(the_order(&events), &expected_order(), "{topic}");
    }
    let mut fulfilled: serde_json::Value =
        serde_json::from_slice(&fixture("orders_create.json")).unwrap();
    fulfilled["fulfillment_status"] = "fulfilled".into();
    let (_, events) = map_ok("orders/fulfilled", &serde_json::to_vec(&fulfilled).unwrap());
    let order = the_order(&events);
    assert_eq!(order.status, OrderStatus::Completed);
    assert_eq!(order.fulfillment_status.as_deref(), Some("fulfilled"));
}

#[test]
fn orders_cancelled_guest_order_in_jpy() {
    let (_, events) = map_ok("orders/cancelled", &fixture("orders_cancelled.json"));
    // A guest checkout has no customer record: only the order.
    assert_eq!(events.len(), 1);
    let jpy = |m| money(m, "JPY");
    assert_eq!(
        the_order(&events),
        &OrderUpserted {
            order_id: "shopify:5012345679000".into(),
            number: Some("#2051".into()),
            customer: Identity {
                email: Some("guest.buyer@example.com".into()),
                phone: Some("+12125550199".into()),
                external: vec![],
                anonymous_id: None,
                keyed: Vec::new(),
            },
            customer_name: None,
            status: OrderStatus::Cancelled,
            financial_status: Some("refunded".into()),
            fulfillment_status: None,
            totals: OrderTotals {
                total: jpy(4500),
                subtotal: Some(jpy(4000)),
                discounts: Some(jpy(0)),
                shipping: None,
                tax: Some(jpy(500)),
                presentment_total: None,
            },
            line_items: vec![LineItem {
                id: "13101".into(),
                sku: Some("MUG-01".into()),
                title: "Stoneware Mug".into(),
                quantity: 2,
                unit_price: jpy(2000),
                total_discount: Some(jpy(0)),
            }],
            discount_codes: vec![],
            payment_refs: vec![],
            tracking_numbers: vec![],
            attribution: Attribution {
                landing_site: None,
                referring_site: None,
                source_name: Some("shopify_draft_order".into()),
                utm: Utm::default(),
                note_attributes: vec![],
            },
            cart_token: None,
            shipping_address: None,
            billing_address: None,
            note: None,
            tags: vec![],
            test: true,
            created_at: datetime!(2025-04-01 08:00:00 UTC),
            updated_at: datetime!(2025-04-01 09:15:00 UTC),
            cancelled_at: Some(datetime!(2025-04-01 09:14:59 UTC)),
            cancel_reason: Some("customer".into()),
            // An old shape: refunded, so the total was received (the refund that
            // gave it back is its own event).
            store_money: Some(StoreMoney {
                received: jpy(4500),
                authorized: None,
                outstanding: None,
                shop_received: None,
                basis: "financial_status:refunded, total_price".into(),
            }),
        }
    );
}

#[test]
fn order_status_follows_cancellation_money_then_fulfillment() {
    let base: serde_json::Value = serde_json::from_slice(&fixture("orders_create.json")).unwrap();
    let cases: &[(&str, Option<&str>, Option<&str>, OrderStatus)] = &[
        ("pending", None, None, OrderStatus::Pending),
        ("authorized", None, None, OrderStatus::Open),
        ("paid", None, None, OrderStatus::Open),
        ("partially_paid", Some("partial"), None, OrderStatus::Open),
        ("partially_refunded", None, None, OrderStatus::Open),
        ("paid", Some("fulfilled"), None, OrderStatus::Completed),
        ("refunded", Some("fulfilled"), None, OrderStatus::Refunded),
        ("voided", None, None, OrderStatus::Cancelled),
        ("expired", None, None, OrderStatus::Failed),
        (
            "paid",
            Some("fulfilled"),
            Some("2025-03-15T00:00:00Z"),
            OrderStatus::Cancelled,
        ),
    ];
    for (financial, fulfillment, cancelled, expected) in cases {
        let mut o = base.clone();
        o["financial_status"] = (*financial).into();
        o["fulfillment_status"] = fulfillment
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null);
        o["cancelled_at"] = cancelled.map(Into::into).unwrap_or(serde_json::Value::Null);
        let (_, events) = map_ok("orders/updated", &serde_json::to_vec(&o).unwrap());
        assert_eq!(
            the_order(&events).status,
            *expected,
            "{financial} {fulfillment:?} {cancelled:?}"
        );
    }
}

#[test]
fn order_totals_fall_back_to_rest_strings_and_original_totals() {
    let mut o: serde_json::Value = serde_json::from_slice(&fixture("orders_create.json")).unwrap();
    let obj = o.as_object_mut().unwrap();
    for key in [
        "current_total_price",
        "current_total_price_set",
        "current_subtotal_price",
        "current_subtotal_price_set",
        "total_price_set",
        "subtotal_price_set",
        "total_shipping_price_set",
    ] {
        obj.remove(key);
    }
    let (_, events) = map_ok("orders/updated", &serde_json::to_vec(&o).unwrap());
    let totals = &the_order(&events).totals;
    assert_eq!(totals.total, usd(7608));
    assert_eq!(totals.subtotal, Some(usd(6350)));
    // Shipping from the shipping lines when there is no money bag.
    assert_eq!(totals.shipping, Some(usd(700)));
    assert_eq!(totals.presentment_total, None);

    // Same currency on both sides: no separate presentment total.
    let mut same: serde_json::Value =
        serde_json::from_slice(&fixture("orders_create.json")).unwrap();
    same["current_total_price_set"]["presentment_money"] =
        serde_json::json!({"amount": "57.58", "currency_code": "USD"});
    let (_, events) = map_ok("orders/updated", &serde_json::to_vec(&same).unwrap());
    assert_eq!(the_order(&events).totals.presentment_total, None);
}

// ------------------------------------------------------------------- refunds

#[test]
fn refunds_create_maps_refund_and_resolved_return() {
    let (inbound, events) = map_ok("refunds/create", &fixture("refunds_create.json"));
    assert_eq!(events.len(), 2);
    let at = datetime!(2025-03-20 11:30:00 -4);
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].occurred_at, at);
    assert_eq!(
        events[0].event,
        Event::RefundIssued(Refund {
            provider: "shopify".into(),
            refund_id: "9300000001".into(),
            payment_id: None,
            links: order_link("5012345678901"),
            // Only the successful refund transaction counts; the failed one and
            // the sale do not. In euros, the currency the customer paid in and
            // the refund transactions are in; lines and the shipping adjustment
            // from the euro side of their money bags.
            amount: eur(4582),
            status: RefundStatus::Succeeded,
            reason: Some("Customer returned the tee: wrong size".into()),
            lines: vec![
                RefundLine {
                    line_item_id: "13001".into(),
                    quantity: 1,
                    amount: Some(eur(2070)),
                    restock: true,
                },
                RefundLine {
                    line_item_id: "13002".into(),
                    quantity: 1,
                    amount: Some(eur(1702)),
                    restock: false,
                },
            ],
            adjustments: Some(eur(644)),
            at,
            created_at: Some(at),
            gateway: Some("shopify_payments".into()),
        })
    );
    assert_eq!(events[1].event_id, format!("{}#return", inbound.event_id));
    assert_eq!(
        events[1].event,
        Event::ReturnResolved(Return {
            provider: "shopify".into(),
            return_id: "refund:9300000001".into(),
            links: order_link("5012345678901"),
            reason: ReasonCode::Size,
            resolution: Some(ReturnResolution::Refund),
            line_item_ids: vec!["13001".into()],
            note: Some("Customer returned the tee: wrong size".into()),
            at,
        })
    );
}

#[test]
fn refund_status_and_return_reason_variants() {
    let base: serde_json::Value = serde_json::from_slice(&fixture("refunds_create.json")).unwrap();

    let mut pending = base.clone();
    pending["transactions"] = serde_json::json!([
        {"kind": "refund", "status": "pending", "amount": "45.82", "currency": "EUR"}
    ]);
    pending["note"] = "Arrived broken".into();
    let (_, events) = map_ok("refunds/create", &serde_json::to_vec(&pending).unwrap());
    match &events[0].event {
        Event::RefundIssued(r) => {
            assert_eq!(r.status, RefundStatus::Pending);
            assert_eq!(r.amount, eur(0));
        }
        other => panic!("{other:?}"),
    }
    match &events[1].event {
        Event::ReturnResolved(r) => assert_eq!(r.reason, ReasonCode::Defect),
        other => panic!("{other:?}"),
    }

    let mut failed = base.clone();
    failed["transactions"] = serde_json::json!([
        {"kind": "refund", "status": "failure", "amount": "45.82", "currency": "EUR"}
    ]);
    failed["note"] = serde_json::Value::Null;
    failed["refund_line_items"][0]["restock_type"] = "cancel".into();
    let (_, events) = map_ok("refunds/create", &serde_json::to_vec(&failed).unwrap());
    // No line came back as a return: no ReturnResolved.
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::RefundIssued(r) => {
            assert_eq!(r.status, RefundStatus::Failed);
            assert_eq!(r.reason, None);
            assert!(r.lines[0].restock);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        super::map::reason_from_note("parcel came too late"),
        ReasonCode::Late
    );
    assert_eq!(
        super::map::reason_from_note("changed my mind"),
        ReasonCode::Other
    );
}

// ------------------------------------------------------- the store's money
//
// Order #3101: a shop in Canadian dollars, a customer paying in euros.
// Authorised at checkout, captured the next day, the gloves sent back and
// refunded. Every amount of the store's account is in euros, the currency the
// customer paid and was refunded in.

fn lines_3101() -> Vec<LineItem> {
    vec![
        LineItem {
            id: "21001".into(),
            sku: Some("SCARF-MER".into()),
            title: "Merino Scarf".into(),
            quantity: 1,
            unit_price: cad(5920),
            total_discount: Some(cad(0)),
        },
        LineItem {
            id: "21002".into(),
            sku: Some("GLOVE-LND".into()),
            title: "Lined Gloves".into(),
            quantity: 1,
            unit_price: cad(4440),
            total_discount: Some(cad(0)),
        },
    ]
}

/// A guest order of the small fixtures: an email, no addresses, from the web.
fn guest_order(id: &str, number: &str, email: &str) -> OrderUpserted {
    OrderUpserted {
        order_id: format!("shopify:{id}"),
        number: Some(number.into()),
        customer: Identity {
            email: Some(email.into()),
            ..Identity::default()
        },
        customer_name: None,
        status: OrderStatus::Open,
        financial_status: None,
        fulfillment_status: None,
        totals: OrderTotals {
            total: usd(0),
            subtotal: None,
            discounts: None,
            shipping: None,
            tax: None,
            presentment_total: None,
        },
        line_items: vec![],
        discount_codes: vec![],
        payment_refs: vec![],
        tracking_numbers: vec![],
        attribution: Attribution {
            source_name: Some("web".into()),
            ..Attribution::default()
        },
        cart_token: None,
        shipping_address: None,
        billing_address: None,
        note: None,
        tags: vec![],
        test: false,
        created_at: datetime!(2000-01-01 0:00 UTC),
        updated_at: datetime!(2000-01-01 0:00 UTC),
        cancelled_at: None,
        cancel_reason: None,
        store_money: None,
    }
}

fn order_3101(financial: &str, updated_at: OffsetDateTime) -> OrderUpserted {
    OrderUpserted {
        financial_status: Some(financial.into()),
        totals: OrderTotals {
            total: cad(11840),
            subtotal: Some(cad(10360)),
            discounts: Some(cad(0)),
            shipping: Some(cad(1480)),
            tax: Some(cad(0)),
            presentment_total: Some(eur(8000)),
        },
        line_items: lines_3101(),
        created_at: datetime!(2025-06-10 09:00:00 +2),
        updated_at,
        ..guest_order("6200000000101", "#3101", "grace.h@example.net")
    }
}

fn the_only_order(topic: &str, fixture_name: &str) -> (Inbound, OrderUpserted) {
    let (inbound, events) = map_ok(topic, &fixture(fixture_name));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_id, inbound.event_id);
    match &events[0].event {
        Event::OrderUpserted(o) => {
            assert_eq!(events[0].occurred_at, o.updated_at);
            (inbound, (**o).clone())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn authorized_order_received_nothing_and_holds_the_total() {
    let (_, order) = the_only_order("orders/create", "orders_create_authorized.json");
    assert_eq!(
        order,
        OrderUpserted {
            // Nothing captured: the whole total is held, and still outstanding
            // (118.40 CAD at the order's own rate, 80.00 EUR for 118.40 CAD).
            store_money: Some(StoreMoney {
                received: eur(0),
                authorized: Some(eur(8000)),
                outstanding: Some(eur(8000)),
                shop_received: Some(cad(0)),
                basis: "financial_status:authorized".into(),
            }),
            ..order_3101("authorized", datetime!(2025-06-10 09:00:07 +2))
        }
    );
}

#[test]
fn paid_order_received_its_current_total() {
    let (_, order) = the_only_order("orders/paid", "orders_paid.json");
    assert_eq!(
        order,
        OrderUpserted {
            // 80.00 + no refunds − 0 outstanding; the shop side from the
            // dollar side of the same money bags.
            store_money: Some(StoreMoney {
                received: eur(8000),
                authorized: None,
                outstanding: Some(eur(0)),
                shop_received: Some(cad(11840)),
                basis: "current_total+refunds-outstanding".into(),
            }),
            ..order_3101("paid", datetime!(2025-06-11 08:30:02 +2))
        }
    );
}

fn refund_3101() -> Refund {
    let at = datetime!(2025-06-12 15:20:00 +2);
    Refund {
        provider: "shopify".into(),
        refund_id: "9400000201".into(),
        payment_id: None,
        links: order_link("6200000000101"),
        amount: eur(3000),
        status: RefundStatus::Succeeded,
        reason: Some("Gloves too small, sent back".into()),
        lines: vec![RefundLine {
            line_item_id: "21002".into(),
            quantity: 1,
            amount: Some(eur(3000)),
            restock: true,
        }],
        adjustments: None,
        created_at: Some(at),
        gateway: Some("shopify_payments".into()),
        at,
    }
}

fn return_3101() -> Return {
    Return {
        provider: "shopify".into(),
        return_id: "refund:9400000201".into(),
        links: order_link("6200000000101"),
        reason: ReasonCode::Size,
        resolution: Some(ReturnResolution::Refund),
        line_item_ids: vec!["21002".into()],
        note: Some("Gloves too small, sent back".into()),
        at: datetime!(2025-06-12 15:20:00 +2),
    }
}

#[test]
fn partial_refund_is_in_the_presentment_currency_with_its_gateway() {
    let (inbound, events) = map_ok("refunds/create", &fixture("refunds_create_partial.json"));
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].occurred_at, datetime!(2025-06-12 15:20:00 +2));
    assert_eq!(events[0].event, Event::RefundIssued(refund_3101()));
    assert_eq!(events[1].event_id, format!("{}#return", inbound.event_id));
    assert_eq!(events[1].event, Event::ReturnResolved(return_3101()));
}

#[test]
fn updated_after_a_partial_refund_still_received_the_full_amount() {
    let (inbound, events) = map_ok(
        "orders/updated",
        &fixture("orders_updated_partially_refunded.json"),
    );
    assert_eq!(events.len(), 3);
    let order = match &events[0].event {
        Event::OrderUpserted(o) => o.as_ref(),
        other => panic!("{other:?}"),
    };
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(
        order,
        &OrderUpserted {
            totals: OrderTotals {
                total: cad(7400),
                subtotal: Some(cad(5920)),
                presentment_total: Some(eur(5000)),
                ..order_3101("x", datetime!(2025-06-12 15:20:04 +2)).totals
            },
            // The current total (50.00 EUR) already has the gloves taken off:
            // 50.00 + the 30.00 refunded − 0 outstanding = the 80.00 the
            // customer paid. The refund comes off once, in the fold: net 50.00.
            // No shop-currency figure: the refund transaction has only euros.
            store_money: Some(StoreMoney {
                received: eur(8000),
                authorized: None,
                outstanding: Some(eur(0)),
                shop_received: None,
                basis: "current_total+refunds-outstanding".into(),
            }),
            ..order_3101("partially_refunded", datetime!(2025-06-12 15:20:04 +2))
        }
    );
    let received = order.store_money.as_ref().unwrap().received;
    assert_eq!(
        received.checked_sub(refund_3101().amount).unwrap(),
        order.totals.presentment_total.unwrap(),
        "net of the refund is the current total, never negative"
    );

    // The snapshot's refund is the refund refunds/create reported: same id,
    // same amount, currency, gateway and time. The fold sees one refund.
    assert_eq!(
        events[1].event_id,
        format!("{}#refund:9400000201", inbound.event_id)
    );
    assert_eq!(events[1].occurred_at, datetime!(2025-06-12 15:20:00 +2));
    assert_eq!(events[1].event, Event::RefundIssued(refund_3101()));
    assert_eq!(
        events[2].event_id,
        format!("{}#refund:9400000201:return", inbound.event_id)
    );
    assert_eq!(events[2].event, Event::ReturnResolved(return_3101()));
}

fn payment_3101(status: PaymentStatus, at: OffsetDateTime) -> Payment {
    Payment {
        provider: "shopify".into(),
        payment_id: "7800000201".into(),
        links: order_link("6200000000101"),
        status,
        amount: eur(8000),
        fee: None,
        net: None,
        amount_refunded: None,
        captured: None,
        capture_id: None,
        auto_capture: false,
        method: Some("shopify_payments".into()),
        failure_reason: None,
        payer: Identity::default(),
        at,
    }
}

fn one_event(topic: &str, body: &[u8]) -> Envelope {
    let (inbound, mut events) = map_ok(topic, body);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = events.remove(0);
    assert_eq!(e.event_id, inbound.event_id);
    e
}

#[test]
fn order_transactions_authorise_then_capture() {
    let auth_at = datetime!(2025-06-10 09:00:04 +2);
    let e = one_event(
        "order_transactions/create",
        &fixture("order_transactions_authorization.json"),
    );
    assert_eq!(e.occurred_at, auth_at);
    assert_eq!(
        e.event,
        Event::PaymentSucceeded(payment_3101(PaymentStatus::Authorized, auth_at))
    );

    // The capture is one capture of the authorisation it names as its parent.
    let capture_at = datetime!(2025-06-11 08:30:00 +2);
    let e = one_event(
        "order_transactions/create",
        &fixture("order_transactions_capture.json"),
    );
    assert_eq!(e.occurred_at, capture_at);
    assert_eq!(
        e.event,
        Event::PaymentSucceeded(Payment {
            capture_id: Some("7800000202".into()),
            ..payment_3101(PaymentStatus::Succeeded, capture_at)
        })
    );
}

#[test]
fn order_transaction_kinds_and_failures() {
    let capture: serde_json::Value =
        serde_json::from_slice(&fixture("order_transactions_capture.json")).unwrap();
    let at = datetime!(2025-06-11 08:30:00 +2);
    let with = |changes: serde_json::Value| {
        let mut t = capture.clone();
        for (k, v) in changes.as_object().unwrap() {
            t[k] = v.clone();
        }
        serde_json::to_vec(&t).unwrap()
    };

    // A void ends the authorisation it names.
    let e = one_event(
        "order_transactions/create",
        &with(serde_json::json!({"id": 7_800_000_209_u64, "kind": "void", "message": "Voided"})),
    );
    assert_eq!(
        e.event,
        Event::PaymentFailed(payment_3101(PaymentStatus::Cancelled, at))
    );

    // A capture that failed: that capture brought nothing; the reason is the
    // gateway's message.
    let e = one_event(
        "order_transactions/create",
        &with(serde_json::json!({"status": "failure", "message": "Capture declined"})),
    );
    assert_eq!(
        e.event,
        Event::PaymentFailed(Payment {
            capture_id: Some("7800000202".into()),
            failure_reason: Some("Capture declined".into()),
            ..payment_3101(PaymentStatus::Failed, at)
        })
    );

    // A sale is a payment of its own, captured at once.
    let e = one_event(
        "order_transactions/create",
        &with(serde_json::json!({"kind": "sale", "parent_id": null})),
    );
    assert_eq!(
        e.event,
        Event::PaymentSucceeded(Payment {
            payment_id: "7800000202".into(),
            ..payment_3101(PaymentStatus::Succeeded, at)
        })
    );

    // An authorisation that errored, with only an error code to say why.
    let e = one_event(
        "order_transactions/create",
        &with(serde_json::json!({
            "kind": "authorization", "status": "error", "parent_id": null,
            "message": null, "error_code": "card_declined"
        })),
    );
    assert_eq!(
        e.event,
        Event::PaymentFailed(Payment {
            payment_id: "7800000202".into(),
            failure_reason: Some("card_declined".into()),
            ..payment_3101(PaymentStatus::Failed, at)
        })
    );

    // No event: a refund (refunds/create reports it, with its lines), a void
    // that failed (the authorisation stands), a pending transaction, a
    // suggested refund.
    for changes in [
        serde_json::json!({"kind": "refund"}),
        serde_json::json!({"kind": "void", "status": "failure"}),
        serde_json::json!({"status": "pending"}),
        serde_json::json!({"kind": "suggested_refund"}),
    ] {
        let (_, events) = map_ok("order_transactions/create", &with(changes.clone()));
        assert!(events.is_empty(), "{changes}");
    }

    // A capture must name its authorisation; money must name its currency.
    let (_, mapped) = deliver(
        "order_transactions/create",
        &with(serde_json::json!({"parent_id": null})),
    );
    assert_eq!(mapped, Err(MapError::MissingField("parent_id".into())));
    let (_, mapped) = deliver(
        "order_transactions/create",
        &with(serde_json::json!({"currency": null})),
    );
    assert_eq!(mapped, Err(MapError::MissingField("currency".into())));
}

// Order #3102: an edit adds a line to a paid order (shop CAD, customer EUR).

#[test]
fn order_edit_maps_nothing_and_the_following_update_says_what_is_owed() {
    // orders/edited names the lines an edit added or removed, no totals: no event.
    let (_, events) = map_ok("orders/edited", &fixture("orders_edited.json"));
    assert!(events.is_empty());
    let (_, mapped) = deliver("orders/edited", br#"{"order_edit": {"id": 1}}"#);
    assert!(matches!(mapped, Err(MapError::Json(_))), "{mapped:?}");
    let (_, mapped) = deliver("orders/edited", br#"{"id": 1, "total_price": "1.00"}"#);
    assert!(matches!(mapped, Err(MapError::Json(_))), "{mapped:?}");

    let (_, order) = the_only_order("orders/updated", "orders_updated_after_edit.json");
    assert_eq!(
        order,
        OrderUpserted {
            status: OrderStatus::Open,
            financial_status: Some("partially_paid".into()),
            totals: OrderTotals {
                total: cad(5551),
                subtotal: Some(cad(4811)),
                discounts: Some(cad(0)),
                shipping: Some(cad(740)),
                tax: Some(cad(0)),
                presentment_total: Some(eur(3750)),
            },
            line_items: vec![
                LineItem {
                    id: "21011".into(),
                    sku: Some("SOCK-WL".into()),
                    title: "Wool Socks".into(),
                    quantity: 1,
                    unit_price: cad(2960),
                    total_discount: Some(cad(0)),
                },
                LineItem {
                    id: "21012".into(),
                    sku: Some("SOCK-BOX".into()),
                    title: "Sock Gift Box".into(),
                    quantity: 1,
                    unit_price: cad(1851),
                    total_discount: Some(cad(0)),
                },
            ],
            created_at: datetime!(2025-06-19 18:40:00 -4),
            updated_at: datetime!(2025-06-20 10:02:03 -4),
            // 18.51 CAD still owed is 12.50 EUR at the order's own rate
            // (37.50 EUR for 55.51 CAD: 1851 × 3750 / 5551 = 1250.45, rounded
            // to 1250): received 37.50 − 12.50 = 25.00 EUR, what was paid
            // before the edit; 55.51 − 18.51 = 37.00 CAD in the shop's money.
            store_money: Some(StoreMoney {
                received: eur(2500),
                authorized: None,
                outstanding: Some(eur(1250)),
                shop_received: Some(cad(3700)),
                basis: "current_total+refunds-outstanding, outstanding converted at the order's own rate"
                    .into(),
            }),
            ..guest_order("6200000000102", "#3102", "ken.t@example.net")
        }
    );
}

// Order #3103: an edit removes two pins from a paid order (dollars only): a
// refund is owed, then made.

fn order_3103(financial: &str, updated_at: OffsetDateTime, outstanding: i64) -> OrderUpserted {
    OrderUpserted {
        financial_status: Some(financial.into()),
        totals: OrderTotals {
            total: usd(2900),
            subtotal: Some(usd(2400)),
            discounts: Some(usd(0)),
            shipping: Some(usd(500)),
            tax: Some(usd(0)),
            presentment_total: None,
        },
        line_items: vec![
            LineItem {
                id: "21021".into(),
                sku: Some("TOTE-CNV".into()),
                title: "Canvas Tote".into(),
                quantity: 1,
                unit_price: usd(2400),
                total_discount: Some(usd(0)),
            },
            LineItem {
                id: "21022".into(),
                sku: Some("PIN-ENM".into()),
                title: "Enamel Pin".into(),
                quantity: 2,
                unit_price: usd(600),
                total_discount: Some(usd(0)),
            },
        ],
        created_at: datetime!(2025-07-01 12:00:00 UTC),
        updated_at,
        // The 41.00 paid, before and after the refund of the removed pins.
        store_money: Some(StoreMoney {
            received: usd(4100),
            authorized: None,
            outstanding: Some(usd(outstanding)),
            shop_received: None,
            basis: "current_total+refunds-outstanding".into(),
        }),
        ..guest_order("6200000000103", "#3103", "ada.b@example.com")
    }
}

#[test]
fn removed_item_owes_a_refund_then_the_refund_is_made() {
    // 29.00 current − (−12.00 owed to the customer) = 41.00 received.
    let (_, order) = the_only_order("orders/updated", "orders_updated_item_removed.json");
    assert_eq!(
        order,
        order_3103("paid", datetime!(2025-07-02 09:15:00 UTC), -1200)
    );

    // 29.00 current + 12.00 refunded − 0 = 41.00 received; the refund (through
    // PayPal, no lines: the pins were already off the order) comes off once.
    let (inbound, events) = map_ok(
        "orders/updated",
        &fixture("orders_updated_removed_refunded.json"),
    );
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].event,
        Event::OrderUpserted(Box::new(order_3103(
            "partially_refunded",
            datetime!(2025-07-02 11:40:01 UTC),
            0
        )))
    );
    let at = datetime!(2025-07-02 11:40:00 UTC);
    assert_eq!(
        events[1].event_id,
        format!("{}#refund:9400000301", inbound.event_id)
    );
    assert_eq!(events[1].occurred_at, at);
    assert_eq!(
        events[1].event,
        Event::RefundIssued(Refund {
            provider: "shopify".into(),
            refund_id: "9400000301".into(),
            payment_id: None,
            links: order_link("6200000000103"),
            amount: usd(1200),
            status: RefundStatus::Succeeded,
            reason: None,
            lines: vec![],
            adjustments: None,
            created_at: Some(at),
            gateway: Some("paypal".into()),
            at,
        })
    );
}

#[test]
fn cancelled_order_with_everything_refunded() {
    let gbp = |m| money(m, "GBP");
    let (inbound, events) = map_ok(
        "orders/cancelled",
        &fixture("orders_cancelled_refunded.json"),
    );
    assert_eq!(events.len(), 2);
    let at = datetime!(2025-07-05 18:10:00 +1);
    assert_eq!(
        events[0].event,
        Event::OrderUpserted(Box::new(OrderUpserted {
            status: OrderStatus::Cancelled,
            financial_status: Some("refunded".into()),
            totals: OrderTotals {
                total: gbp(0),
                subtotal: Some(gbp(0)),
                discounts: Some(gbp(0)),
                shipping: Some(gbp(495)),
                tax: Some(gbp(0)),
                presentment_total: None,
            },
            line_items: vec![LineItem {
                id: "21031".into(),
                sku: Some("SHIRT-LIN".into()),
                title: "Linen Shirt".into(),
                quantity: 1,
                unit_price: gbp(4500),
                total_discount: Some(gbp(0)),
            }],
            created_at: datetime!(2025-07-05 16:00:00 +1),
            updated_at: datetime!(2025-07-05 18:10:02 +1),
            cancelled_at: Some(at),
            cancel_reason: Some("customer".into()),
            // Nothing is left of the order (current total 0.00), the 49.95
            // refunded was received first: received 49.95, refunded 49.95, net 0.
            store_money: Some(StoreMoney {
                received: gbp(4995),
                authorized: None,
                outstanding: Some(gbp(0)),
                shop_received: None,
                basis: "current_total+refunds-outstanding".into(),
            }),
            ..guest_order("6200000000104", "#3104", "mary.s@example.co.uk")
        }))
    );
    // The cancellation's refund: the shirt (back to stock, not a return) and
    // the shipping, through Shopify Payments.
    assert_eq!(
        events[1].event_id,
        format!("{}#refund:9400000401", inbound.event_id)
    );
    assert_eq!(
        events[1].event,
        Event::RefundIssued(Refund {
            provider: "shopify".into(),
            refund_id: "9400000401".into(),
            payment_id: None,
            links: order_link("6200000000104"),
            amount: gbp(4995),
            status: RefundStatus::Succeeded,
            reason: Some("Order cancelled by the customer".into()),
            lines: vec![RefundLine {
                line_item_id: "21031".into(),
                quantity: 1,
                amount: Some(gbp(4500)),
                restock: true,
            }],
            adjustments: Some(gbp(495)),
            created_at: Some(at),
            gateway: Some("shopify_payments".into()),
            at,
        })
    );
}

#[test]
fn store_money_by_financial_status_and_shape() {
    let base: serde_json::Value = serde_json::from_slice(&fixture("orders_paid.json")).unwrap();
    let money_of = |o: &serde_json::Value| {
        let (_, events) = map_ok("orders/updated", &serde_json::to_vec(o).unwrap());
        the_order(&events).store_money.clone()
    };

    // Pending, voided, expired: nothing received, nothing held.
    for status in ["pending", "voided", "expired"] {
        let mut o = base.clone();
        o["financial_status"] = status.into();
        o["total_outstanding"] = "118.40".into();
        assert_eq!(
            money_of(&o),
            Some(StoreMoney {
                received: eur(0),
                authorized: None,
                outstanding: Some(eur(8000)),
                shop_received: Some(cad(0)),
                basis: format!("financial_status:{status}"),
            }),
            "{status}"
        );
    }

    // Without `total_outstanding`, paid means the total the checkout charged;
    // partially paid says some money came but not how much: no account.
    let mut old = base.clone();
    old.as_object_mut().unwrap().remove("total_outstanding");
    assert_eq!(
        money_of(&old),
        Some(StoreMoney {
            received: eur(8000),
            authorized: None,
            outstanding: None,
            shop_received: Some(cad(11840)),
            basis: "financial_status:paid, total_price".into(),
        })
    );
    old["financial_status"] = "partially_paid".into();
    assert_eq!(money_of(&old), None);

    // An outstanding amount in dollars with no bag giving both sides of the
    // order's rate cannot be put in euros: the status rule applies instead
    // (paid: the euro total; the dollar total from the REST string).
    let mut no_rate = base.clone();
    no_rate["total_outstanding"] = "10.00".into();
    for key in ["total_price_set", "current_total_price_set"] {
        no_rate[key].as_object_mut().unwrap().remove("shop_money");
    }
    assert_eq!(
        money_of(&no_rate),
        Some(StoreMoney {
            received: eur(8000),
            authorized: None,
            outstanding: None,
            shop_received: Some(cad(11840)),
            basis: "financial_status:paid, total_price".into(),
        })
    );
    // Without any euro figure there is nothing to account in euros.
    for key in ["total_price_set", "current_total_price_set"] {
        no_rate.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(money_of(&no_rate), None);

    // A refund in a currency other than the customer's cannot be added to the
    // euro totals exactly: no account rather than a wrong one.
    let mut mixed: serde_json::Value =
        serde_json::from_slice(&fixture("orders_updated_partially_refunded.json")).unwrap();
    mixed["refunds"][0]["transactions"][0]["currency"] = "CAD".into();
    mixed["refunds"][0]["transactions"][0]["amount"] = "44.40".into();
    let (_, events) = map_ok("orders/updated", &serde_json::to_vec(&mixed).unwrap());
    assert_eq!(the_order(&events).store_money, None);
}

// --------------------------------------------------------------- fulfillments

#[test]
fn fulfillments_create_gives_one_shipment_per_tracking_number() {
    let (inbound, events) = map_ok("fulfillments/create", &fixture("fulfillments_create.json"));
    let at = datetime!(2025-03-15 08:05:00 +1);
    let expected = |number: &str| Shipment {
        provider: "shopify".into(),
        tracking_number: number.into(),
        carrier: Some("DHL Express".into()),
        links: order_link("5012345678901"),
        fulfillment_id: Some("6100000003".into()),
        status: ShipmentStatus::LabelCreated,
        checkpoints: vec![],
        line_item_ids: vec!["13001".into(), "13002".into()],
        estimated_delivery: None,
        at,
    };
    assert_eq!(
        shipments(&events),
        vec![
            &expected("JD014600006281230714"),
            &expected("JD014600006281230715")
        ]
    );
    assert_eq!(
        events[0].event_id,
        format!("{}#shipment:JD014600006281230714", inbound.event_id)
    );
    assert_ne!(events[0].event_id, events[1].event_id);
}

#[test]
fn fulfillments_update_reads_shipment_status_and_single_tracking_number() {
    let (_, events) = map_ok("fulfillments/update", &fixture("fulfillments_update.json"));
    assert_eq!(
        shipments(&events),
        vec![&Shipment {
            provider: "shopify".into(),
            tracking_number: "JD014600006281230714".into(),
            carrier: Some("DHL Express".into()),
            links: order_link("5012345678901"),
            fulfillment_id: Some("6100000003".into()),
            status: ShipmentStatus::Exception,
            checkpoints: vec![],
            line_item_ids: vec!["13001".into()],
            estimated_delivery: Some(datetime!(2025-03-18 18:00:00 +1)),
            at: datetime!(2025-03-17 14:12:00 +1),
        }]
    );
}

#[test]
fn shipment_statuses_map_to_the_canonical_set() {
    use super::map::shipment_status as s;
    for (given, expected) in [
        ("label_printed", ShipmentStatus::LabelCreated),
        ("label_purchased", ShipmentStatus::LabelCreated),
        ("confirmed", ShipmentStatus::LabelCreated),
        ("in_transit", ShipmentStatus::InTransit),
        ("carrier_picked_up", ShipmentStatus::InTransit),
        ("delayed", ShipmentStatus::InTransit),
        ("out_for_delivery", ShipmentStatus::OutForDelivery),
        ("ready_for_pickup", ShipmentStatus::OutForDelivery),
        ("delivered", ShipmentStatus::Delivered),
        ("picked_up", ShipmentStatus::Delivered),
        ("attempted_delivery", ShipmentStatus::Exception),
        ("failure", ShipmentStatus::Exception),
    ] {
        assert_eq!(s(Some(given), None), expected, "{given}");
    }
    assert_eq!(s(None, Some("pending")), ShipmentStatus::LabelCreated);
    assert_eq!(s(None, Some("success")), ShipmentStatus::LabelCreated);
    assert_eq!(s(None, Some("cancelled")), ShipmentStatus::Exception);
    assert_eq!(s(None, Some("failure")), ShipmentStatus::Exception);
    assert_eq!(s(None, None), ShipmentStatus::LabelCreated);
}

#[test]
fn fulfillment_without_tracking_is_keyed_by_fulfillment() {
    let mut f: serde_json::Value =
        serde_json::from_slice(&fixture("fulfillments_update.json")).unwrap();
    f["tracking_number"] = serde_json::Value::Null;
    let (_, events) = map_ok("fulfillments/update", &serde_json::to_vec(&f).unwrap());
    let s = shipments(&events);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].tracking_number, "fulfillment:6100000003");
}

#[test]
fn fulfillment_events_create_adds_a_checkpoint() {
    let (inbound, events) = map_ok(
        "fulfillment_events/create",
        &fixture("fulfillment_events_create.json"),
    );
    let at = datetime!(2025-03-17 07:45:00 +1);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].occurred_at, at);
    assert_eq!(
        shipments(&events),
        vec![&Shipment {
            provider: "shopify".into(),
            tracking_number: "fulfillment:6100000003".into(),
            carrier: None,
            links: order_link("5012345678901"),
            fulfillment_id: Some("6100000003".into()),
            status: ShipmentStatus::OutForDelivery,
            checkpoints: vec![Checkpoint {
                at,
                status: ShipmentStatus::OutForDelivery,
                message: Some("With courier for delivery today".into()),
                location: Some("Potsdam, Brandenburg, Germany".into()),
            }],
            line_item_ids: vec![],
            estimated_delivery: Some(datetime!(2025-03-17 18:00:00 +1)),
            at,
        }]
    );
}

// ----------------------------------------------------------------- customers

#[test]
fn customers_create_maps_profile_consent_and_addresses() {
    let (inbound, events) = map_ok("customers/create", &fixture("customers_create.json"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(
        the_customer(&events),
        &CustomerUpserted {
            identity: Identity {
                email: Some("ada.lovelace@example.org".into()),
                phone: Some("+4930901820".into()),
                external: vec![ext("8200000001")],
                anonymous_id: None,
                keyed: Vec::new(),
            },
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            addresses: vec![
                Address {
                    name: Some("Ada Lovelace".into()),
                    company: None,
                    line1: Some("Unter den Linden 5".into()),
                    line2: None,
                    city: Some("Berlin".into()),
                    region: Some("BE".into()),
                    postal_code: Some("10117".into()),
                    country: Some("DE".into()),
                    phone: Some("030 901820".into()),
                },
                Address {
                    name: None,
                    company: None,
                    line1: Some("Hauptstrasse 12".into()),
                    line2: None,
                    city: Some("Potsdam".into()),
                    region: Some("BB".into()),
                    postal_code: Some("14467".into()),
                    country: Some("DE".into()),
                    phone: None,
                },
            ],
            // Double opt-in not confirmed yet is no consent.
            consent: Consent {
                email_marketing: Some(false),
                sms_marketing: Some(true),
            },
            tags: vec!["vip".into(), "wholesale".into()],
            note: Some("Prefers DHL".into()),
            deleted: false,
            created_at: Some(datetime!(2024-11-02 15:40:00 -4)),
            updated_at: datetime!(2024-11-02 15:40:05 -4),
        }
    );
}

#[test]
fn customers_update_uses_legacy_accepts_marketing() {
    let (_, events) = map_ok("customers/update", &fixture("customers_update.json"));
    let c = the_customer(&events);
    assert_eq!(
        c.identity,
        Identity {
            email: Some("grace@example.com".into()),
            phone: None,
            external: vec![ext("8200000002")],
            anonymous_id: None,
            keyed: Vec::new(),
        }
    );
    assert_eq!(
        c.consent,
        Consent {
            email_marketing: Some(false),
            sms_marketing: None
        }
    );
    assert!(c.addresses.is_empty());
    assert!(c.tags.is_empty());
    assert_eq!(c.updated_at, datetime!(2025-02-10 16:20:00 UTC));
}

#[test]
fn customers_delete_marks_the_record_deleted() {
    let (_, events) = map_ok("customers/delete", &fixture("customers_delete.json"));
    // The payload has no time: the trigger time Shopify sent stands in.
    assert_eq!(events[0].occurred_at, NOW);
    assert_eq!(
        the_customer(&events),
        &CustomerUpserted {
            identity: Identity {
                external: vec![ext("8200000002")],
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
            updated_at: NOW,
        }
    );
}

// ----------------------------------------------------------------- checkouts

#[test]
fn checkouts_create_is_a_touch_with_campaign_and_cart_token() {
    let (_, events) = map_ok("checkouts/create", &fixture("checkouts_create.json"));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].event,
        Event::Touch(Touch {
            touch_id: "shopify-checkout:ck_84f2a1c9d7e0".into(),
            identity: Identity {
                email: Some("ada.lovelace@example.org".into()),
                phone: None,
                external: vec![],
                anonymous_id: Some("c1-7f3a9e0b52d14c8e".into()),
                keyed: Vec::new(),
            },
            utm: Utm {
                source: Some("instagram".into()),
                medium: Some("social".into()),
                campaign: Some("spring drop".into()),
                term: None,
                content: Some("reel-3".into()),
            },
            landing_page: Some(
                "/products/organic-tee?utm_source=instagram&utm_medium=social&utm_campaign=spring%20drop&utm_content=reel-3&fbclid=IwAR0xyz"
                    .into()
            ),
            referrer: Some("https://l.instagram.com/".into()),
            gclid: None,
            fbclid: Some("IwAR0xyz".into()),
            cart_token: Some("c1-7f3a9e0b52d14c8e".into()),
            at: datetime!(2025-03-14 09:24:30 -4),
        })
    );
}

#[test]
fn checkouts_update_without_email_or_cart_token() {
    let (_, events) = map_ok("checkouts/update", &fixture("checkouts_update.json"));
    assert_eq!(
        events[0].event,
        Event::Touch(Touch {
            touch_id: "shopify-checkout:ck_anon_55aa".into(),
            identity: Identity::default(),
            utm: Utm::default(),
            landing_page: Some("/".into()),
            referrer: None,
            gclid: None,
            fbclid: None,
            cart_token: None,
            at: datetime!(2025-03-14 11:00:00 UTC),
        })
    );
}

// -------------------------------------------------------------------- redact

#[test]
fn customers_redact_names_the_customer_and_orders() {
    let (_, events) = map_ok("customers/redact", &fixture("customers_redact.json"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].occurred_at, NOW);
    assert_eq!(
        events[0].event,
        Event::CustomerRedacted(CustomerRedacted {
            identity: Identity {
                email: Some("ada.lovelace@example.org".into()),
                phone: Some("+4930901820".into()),
                external: vec![ext("8200000001")],
                anonymous_id: None,
                keyed: Vec::new(),
            },
            orders: vec![
                "shopify:5012345678901".into(),
                "shopify:5012345679000".into()
            ],
            requested_by: "shopify".into(),
            keys: Vec::new(),
        })
    );
    let (_, mapped) = deliver("customers/redact", br#"{"shop_id": 1, "customer": {}}"#);
    assert_eq!(mapped, Err(MapError::MissingField("customer".into())));
}

// -------------------------------------------------------- conformance corpus

#[test]
fn conformance_every_shopify_file_is_checked() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    let names = json_file_names(&dir);
    // Each of these has its own test below; a new file fails here until it has one.
    assert_eq!(
        names,
        [
            "customers_create__customer.json",
            "customers_data_request.json",
            "customers_redact.json",
            "fulfillment_events_create__fulfillment_event.json",
            "fulfillments_create__fulfillment.json",
            "fulfillments_webhook__fulfillment_integration.json",
            "order_transactions_create__transaction.json",
            "orders_create__order.json",
            "refunds_create__refund.json",
            "shop_redact.json",
        ]
    );
}

#[test]
fn conformance_orders_create() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    let (_, events) = map_ok(
        "orders/create",
        &read_file(&dir, "orders_create__order.json"),
    );
    assert_eq!(events.len(), 2);
    let order = the_order(&events);
    assert_eq!(order.order_id, "shopify:450789469");
    assert_eq!(order.number.as_deref(), Some("#1001"));
    assert_eq!(
        order.customer.email.as_deref(),
        Some("bob.norman@hostmail.com")
    );
    assert_eq!(order.customer.external, vec![ext("207119551")]);
    assert_eq!(order.customer_name.as_deref(), Some("Bob Norman"));
    // authorized, unfulfilled, not cancelled.
    assert_eq!(order.status, OrderStatus::Open);
    assert_eq!(order.financial_status.as_deref(), Some("authorized"));
    assert_eq!(order.fulfillment_status, None);
    assert_eq!(
        order.totals,
        OrderTotals {
            total: usd(40994),
            subtotal: Some(usd(39800)),
            discounts: Some(usd(0)),
            shipping: Some(usd(0)),
            tax: Some(usd(1194)),
            presentment_total: None,
        }
    );
    assert_eq!(order.line_items.len(), 3);
    assert_eq!(
        order
            .line_items
            .iter()
            .map(|l| (l.id.as_str(), l.sku.as_deref(), l.quantity, l.unit_price))
            .collect::<Vec<_>>(),
        vec![
            ("466157049", Some("IPOD2008GREEN"), 1, usd(19900)),
            ("518995019", Some("IPOD2008RED"), 1, usd(19900)),
            ("703073504", Some("IPOD2008BLACK"), 1, usd(19900)),
        ]
    );
    assert_eq!(order.discount_codes, vec!["TENOFF".to_string()]);
    // The embedded fulfillment failed but was not cancelled: its number is known.
    assert_eq!(order.tracking_numbers, vec!["1Z2345".to_string()]);
    assert_eq!(
        order.attribution.landing_site.as_deref(),
        Some("http://www.example.com?source=abc")
    );
    assert!(order.attribution.utm.is_empty());
    assert_eq!(
        order.attribution.referring_site.as_deref(),
        Some("http://www.otherexample.com")
    );
    assert_eq!(order.attribution.source_name.as_deref(), Some("web"));
    assert_eq!(
        order.attribution.note_attributes,
        vec![
            ("custom engraving".to_string(), "Happy Birthday".to_string()),
            ("colour".to_string(), "green".to_string()),
        ]
    );
    assert_eq!(
        order.cart_token.as_deref(),
        Some("68778783ad298f1c80c3bafcddeea02f")
    );
    let shipping = order.shipping_address.as_ref().unwrap();
    assert_eq!(shipping.line1.as_deref(), Some("Chestnut Street 92"));
    assert_eq!(shipping.city.as_deref(), Some("Louisville"));
    assert_eq!(shipping.region.as_deref(), Some("KY"));
    assert_eq!(shipping.postal_code.as_deref(), Some("40202"));
    assert_eq!(shipping.country.as_deref(), Some("US"));
    assert!(!order.test);
    assert!(order.tags.is_empty());
    assert_eq!(order.created_at, datetime!(2008-01-10 11:00:00 -5));
    assert_eq!(order.updated_at, datetime!(2008-01-10 11:00:00 -5));
    assert_eq!(order.cancelled_at, None);
    // An old shape (no `current_*`, no `total_outstanding`, one currency):
    // authorised, so nothing received yet and the total held.
    assert_eq!(
        order.store_money,
        Some(StoreMoney {
            received: usd(0),
            authorized: Some(usd(40994)),
            outstanding: None,
            shop_received: None,
            basis: "financial_status:authorized".into(),
        })
    );

    let customer = the_customer(&events);
    assert_eq!(
        customer.identity.email.as_deref(),
        Some("bob.norman@hostmail.com")
    );
    assert_eq!(customer.first_name.as_deref(), Some("Bob"));
    assert_eq!(customer.last_name.as_deref(), Some("Norman"));
    assert_eq!(customer.consent.email_marketing, Some(false));
    assert_eq!(customer.addresses.len(), 1);
    assert_eq!(customer.updated_at, datetime!(2014-01-22 15:58:27 -5));
}

#[test]
fn conformance_refunds_create() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    let (_, events) = map_ok(
        "refunds/create",
        &read_file(&dir, "refunds_create__refund.json"),
    );
    // No line carries restock_type "return": a refund, no resolved return.
    assert_eq!(events.len(), 1);
    let at = datetime!(2016-06-20 13:35:06 -4);
    assert_eq!(
        events[0].event,
        Event::RefundIssued(Refund {
            provider: "shopify".into(),
            refund_id: "509562969".into(),
            payment_id: None,
            links: order_link("450789469"),
            amount: usd(20900),
            status: RefundStatus::Succeeded,
            reason: Some("it broke during shipping".into()),
            // This old shape has only the refund-level `restock: true`.
            lines: vec![
                RefundLine {
                    line_item_id: "703073504".into(),
                    quantity: 1,
                    amount: None,
                    restock: true,
                },
                RefundLine {
                    line_item_id: "466157049".into(),
                    quantity: 1,
                    amount: None,
                    restock: true,
                },
            ],
            adjustments: None,
            at,
            created_at: Some(at),
            gateway: Some("bogus".into()),
        })
    );
}

#[test]
fn conformance_customers_create() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    let (_, events) = map_ok(
        "customers/create",
        &read_file(&dir, "customers_create__customer.json"),
    );
    let c = the_customer(&events);
    assert_eq!(c.identity.email.as_deref(), Some("bob.norman@hostmail.com"));
    assert_eq!(c.identity.external, vec![ext("207119551")]);
    // The customer has no phone of its own (only an address phone).
    assert_eq!(c.identity.phone, None);
    assert_eq!(c.first_name.as_deref(), Some("Bob"));
    assert_eq!(c.last_name.as_deref(), Some("Norman"));
    assert_eq!(
        c.consent,
        Consent {
            email_marketing: Some(false),
            sms_marketing: None
        }
    );
    assert_eq!(
        c.addresses,
        vec![Address {
            name: None,
            company: None,
            line1: Some("Chestnut Street 92".into()),
            line2: None,
            city: Some("Louisville".into()),
            region: Some("KY".into()),
            postal_code: Some("40202".into()),
            country: Some("US".into()),
            phone: Some("555-625-1199".into()),
        }]
    );
    assert!(c.tags.is_empty());
    assert_eq!(c.note, None);
    assert!(!c.deleted);
    assert_eq!(c.created_at, Some(datetime!(2015-05-27 18:11:24 -4)));
    assert_eq!(c.updated_at, datetime!(2015-05-27 18:11:24 -4));
}

#[test]
fn conformance_fulfillments() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    for (file, carrier, at) in [
        (
            "fulfillments_create__fulfillment.json",
            Some("null-company"),
            datetime!(2013-11-01 16:06:08 -4),
        ),
        (
            "fulfillments_webhook__fulfillment_integration.json",
            None,
            datetime!(2014-04-28 13:28:03 -4),
        ),
    ] {
        for topic in ["fulfillments/create", "fulfillments/update"] {
            let (_, events) = map_ok(topic, &read_file(&dir, file));
            assert_eq!(
                shipments(&events),
                vec![&Shipment {
                    provider: "shopify".into(),
                    tracking_number: "1Z2345".into(),
                    carrier: carrier.map(Into::into),
                    links: order_link("450789469"),
                    fulfillment_id: Some("255858046".into()),
                    // status "pending" and no shipment_status yet.
                    status: ShipmentStatus::LabelCreated,
                    checkpoints: vec![],
                    line_item_ids: vec!["466157049".into()],
                    estimated_delivery: None,
                    at,
                }],
                "{file} {topic}"
            );
        }
    }
}

#[test]
fn conformance_fulfillment_event() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    let (_, events) = map_ok(
        "fulfillment_events/create",
        &read_file(&dir, "fulfillment_events_create__fulfillment_event.json"),
    );
    let at = datetime!(2021-01-25 16:32:23 -5);
    assert_eq!(
        shipments(&events),
        vec![&Shipment {
            provider: "shopify".into(),
            tracking_number: "fulfillment:2608403447971".into(),
            carrier: None,
            links: order_link("2776493818019"),
            fulfillment_id: Some("2608403447971".into()),
            status: ShipmentStatus::LabelCreated,
            checkpoints: vec![Checkpoint {
                at,
                status: ShipmentStatus::LabelCreated,
                message: None,
                location: None,
            }],
            line_item_ids: vec![],
            estimated_delivery: None,
            at,
        }]
    );
}

#[test]
fn conformance_compliance_webhooks() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    let (_, events) = map_ok(
        "customers/redact",
        &read_file(&dir, "customers_redact.json"),
    );
    assert_eq!(
        events[0].event,
        Event::CustomerRedacted(CustomerRedacted {
            // "555-625-1199" has no country code and the payload names no country:
            // it cannot be made E.164, so only email and id identify the customer.
            identity: Identity {
                email: Some("john@example.com".into()),
                phone: None,
                external: vec![ext("191167")],
                anonymous_id: None,
                keyed: Vec::new(),
            },
            orders: vec![
                "shopify:299938".into(),
                "shopify:280263".into(),
                "shopify:220458".into()
            ],
            requested_by: "shopify".into(),
            keys: Vec::new(),
        })
    );
    let (_, events) = map_ok(
        "customers/data_request",
        &read_file(&dir, "customers_data_request.json"),
    );
    assert!(events.is_empty());
    let (_, events) = map_ok("shop/redact", &read_file(&dir, "shop_redact.json"));
    assert!(events.is_empty());
}

#[test]
fn conformance_order_transaction_needs_its_currency() {
    let Some(dir) = conformance_dir("shopify") else {
        return;
    };
    // This old transaction names no currency. An amount without one is not
    // money: it is refused, not guessed (the shop's and the customer's currency
    // can differ).
    let body = read_file(&dir, "order_transactions_create__transaction.json");
    let (inbound, mapped) = deliver("order_transactions/create", &body);
    assert_eq!(inbound.topic, "order_transactions/create");
    assert_eq!(mapped, Err(MapError::MissingField("currency".into())));

    // The same transaction as Shopify sends it today, with its currency: a
    // successful authorisation of the order, by the `bogus` test gateway.
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["currency"] = "USD".into();
    let (inbound, events) = map_ok(
        "order_transactions/create",
        &serde_json::to_vec(&v).unwrap(),
    );
    let at = datetime!(2005-08-01 11:57:11 -4);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].occurred_at, at);
    assert_eq!(
        events[0].event,
        Event::PaymentSucceeded(Payment {
            provider: "shopify".into(),
            payment_id: "389404469".into(),
            links: order_link("450789469"),
            status: PaymentStatus::Authorized,
            amount: usd(40994),
            fee: None,
            net: None,
            amount_refunded: None,
            captured: None,
            capture_id: None,
            auto_capture: false,
            method: Some("bogus".into()),
            failure_reason: None,
            payer: Identity::default(),
            at,
        })
    );
}

// ----------------------------------------------------------------- inventory

fn usd_costs() -> crate::MapOptions {
    crate::MapOptions {
        cost_currency: Some(storefold_core::Currency::from_code("USD").unwrap()),
        ..crate::MapOptions::default()
    }
}

/// Delivers `body` for tenant `acme` with `options`: sign, verify, describe, map.
fn deliver_with(
    options: crate::MapOptions,
    topic: &str,
    body: &[u8],
) -> (Inbound, Result<Vec<Envelope>, MapError>) {
    let bench = Harness::new(ProviderKind::Shopify, SECRET, NOW)
        .tenant("acme")
        .received_at(RECEIVED)
        .options(options);
    let delivery = bench.receive(topic, body).expect("describes");
    let mapped = bench.map(&delivery);
    (delivery.inbound, mapped)
}

fn inventory(events: &[Envelope]) -> Vec<&InventoryUpdated> {
    events
        .iter()
        .map(|e| match &e.event {
            Event::InventoryUpdated(i) => i,
            other => panic!("expected inventory updates only, got {other:?}"),
        })
        .collect()
}

#[test]
fn inventory_items_carry_their_cost_in_the_tenants_cost_currency() {
    for (topic, file, minor, at) in [
        (
            "inventory_items/create",
            "inventory_items_create.json",
            840,
            datetime!(2025-02-03 14:12:44 UTC),
        ),
        (
            "inventory_items/update",
            "inventory_items_update.json",
            915,
            datetime!(2025-03-10 20:05:09 UTC),
        ),
    ] {
        let (inbound, mapped) = deliver_with(usd_costs(), topic, &fixture(file));
        let events = mapped.unwrap_or_else(|e| panic!("{topic}: {e}"));
        assert_eq!(events.len(), 1, "{topic}");
        assert_eq!(events[0].event_id, inbound.event_id);
        assert_eq!(events[0].provider, "shopify");
        assert_eq!(events[0].occurred_at, at, "{topic}");
        assert_eq!(
            inventory(&events),
            [&InventoryUpdated {
                sku: "TEE-ORG-M".into(),
                item_id: Some("44871203915".into()),
                unit_cost: Some(usd(minor)),
                available: None,
                backorder: None,
                eta: None,
                at,
            }],
            "{topic}"
        );
    }
    // The same payload for a tenant whose shop sells in euros.
    let eur_costs = crate::MapOptions {
        cost_currency: Some(storefold_core::Currency::from_code("EUR").unwrap()),
        ..crate::MapOptions::default()
    };
    let (_, mapped) = deliver_with(
        eur_costs,
        "inventory_items/update",
        &fixture("inventory_items_update.json"),
    );
    assert_eq!(inventory(&mapped.unwrap())[0].unit_cost, Some(eur(915)));
}

#[test]
fn an_inventory_item_cost_without_a_cost_currency_is_refused_naming_the_key() {
    let (_, mapped) = deliver_with(
        crate::MapOptions::default(),
        "inventory_items/update",
        &fixture("inventory_items_update.json"),
    );
    let err = mapped.unwrap_err();
    assert_eq!(err.code(), "invalid_field");
    assert_eq!(
        err.to_string(),
        "invalid field cost: the payload does not say the cost's currency (it is the \
         shop's): set tenants.acme.cost_currency"
    );
    // Without a cost there is nothing to put a currency on.
    let (_, mapped) = deliver_with(
        crate::MapOptions::default(),
        "inventory_items/update",
        &fixture("inventory_items_update__no_cost.json"),
    );
    assert_eq!(
        inventory(&mapped.unwrap()),
        [&InventoryUpdated {
            sku: "MUG-STONE-350".into(),
            item_id: Some("44871204011".into()),
            unit_cost: None,
            available: None,
            backorder: None,
            eta: None,
            at: datetime!(2025-03-11 12:30 UTC),
        }]
    );
}

#[test]
fn an_inventory_item_without_a_sku_maps_to_nothing() {
    // Order lines find costs by SKU: a cost without one is kept in the raw log
    // only, whatever the tenant's options.
    for options in [crate::MapOptions::default(), usd_costs()] {
        let (_, mapped) = deliver_with(
            options,
            "inventory_items/update",
            &fixture("inventory_items_update__no_sku.json"),
        );
        assert_eq!(mapped, Ok(vec![]));
    }
    let (_, mapped) = deliver_with(
        usd_costs(),
        "inventory_items/create",
        br#"{"id": 5, "sku": null, "cost": "1.00", "updated_at": "2025-03-11T09:45:30Z"}"#,
    );
    assert_eq!(mapped, Ok(vec![]));
}

#[test]
fn inventory_item_costs_are_exact() {
    for (cost, expected) in [
        (r#""12.5""#, Ok(1250)),
        (r#"12.50"#, Ok(1250)),
        (r#""0.00""#, Ok(0)),
        (
            r#""8.405""#,
            Err("invalid field cost: more decimals than USD allows (2)"),
        ),
        (r#""-1.00""#, Err("invalid field cost: a cost is not negative")),
        (
            r#""8,40""#,
            Err(
                "invalid field cost: not a decimal amount (digits with an optional '.' and \
                 fraction)",
            ),
        ),
    ] {
        let body = format!(
            r#"{{"id": 7, "sku": "CAP-1", "cost": {cost}, "updated_at": "2025-03-11T09:45:30Z"}}"#
        );
        let (_, mapped) = deliver_with(usd_costs(), "inventory_items/update", body.as_bytes());
        let got = mapped
            .map(|events| inventory(&events)[0].unit_cost.map(|m| m.minor))
            .map_err(|e| e.to_string());
        assert_eq!(
            got,
            expected.map(Some).map_err(str::to_string),
            "cost {cost}"
        );
    }
}

#[test]
fn products_report_each_variant_with_a_sku() {
    let (inbound, events) = map_ok("products/update", &fixture("products_update.json"));
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(
        ids,
        [
            format!("{}#variant:48110736523307", inbound.event_id),
            format!("{}#variant:48110736556075", inbound.event_id),
        ]
    );
    assert_eq!(
        inventory(&events),
        [
            &InventoryUpdated {
                sku: "TEE-ORG-M".into(),
                item_id: Some("44871203915".into()),
                unit_cost: None,
                available: Some(37),
                backorder: Some(false),
                eta: None,
                at: datetime!(2025-03-12 14:19:58 UTC),
            },
            // No variant time of its own: the product's. Oversold (-2) and
            // still selling (`inventory_policy: continue`).
            &InventoryUpdated {
                sku: "TEE-ORG-L".into(),
                item_id: Some("44871203982".into()),
                unit_cost: None,
                available: Some(-2),
                backorder: Some(true),
                eta: None,
                at: datetime!(2025-03-12 14:20:00 UTC),
            },
        ]
    );
    assert_eq!(events[0].occurred_at, datetime!(2025-03-12 14:19:58 UTC));

    // A product has no costs: no cost_currency is needed.
    let (_, events) = map_ok("products/create", &fixture("products_create.json"));
    assert_eq!(
        inventory(&events),
        [&InventoryUpdated {
            sku: "MUG-STONE-350".into(),
            item_id: Some("44871204011".into()),
            unit_cost: None,
            available: Some(120),
            backorder: Some(false),
            eta: None,
            at: datetime!(2025-02-03 14:20:02 UTC),
        }]
    );

    // A product without variants with a SKU reports nothing; a bad variant
    // time names the variant.
    let (_, mapped) = deliver(
        "products/update",
        br#"{"id": 1, "updated_at": "2025-03-12T10:20:00Z", "variants": [{"id": 2, "sku": " "}]}"#,
    );
    assert_eq!(mapped, Ok(vec![]));
    let (_, mapped) = deliver(
        "products/update",
        br#"{"id": 1, "variants": [{"id": 2, "sku": "A"}, {"id": 3, "sku": "B", "updated_at": "yesterday"}]}"#,
    );
    assert!(
        mapped
            .unwrap_err()
            .to_string()
            .starts_with("invalid field variants[1].updated_at"),
    );
}
