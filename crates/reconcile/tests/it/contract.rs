//! Each poller against its stand-in: it pages through everything in the
//! window, honours the 429 and the rate-limit headers, and never breaks the
//! API's contract.

use std::time::Duration;

use serde_json::json;
use storefold_reconcile::{Metrics, Window};
use time::macros::datetime;

use crate::standins;

fn window() -> Window {
    Window {
        since: datetime!(2025-05-01 0:00 UTC),
        until: datetime!(2025-05-31 0:00 UTC),
    }
}

fn counter(m: &Metrics, name: &str, labels: &[&str]) -> f64 {
    match name {
        "rate_limited" => m.rate_limited.with_label_values(labels).get() as f64,
        "throttle" => m.throttle_seconds.with_label_values(labels).get(),
        "requests" => m.requests.with_label_values(labels).get() as f64,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn stripe_pages_with_starting_after_until_has_more_is_false() {
    // 7 events in May (one of a type the mapper does not read), 1 outside the window.
    let mut events: Vec<_> = (0..6)
        .map(|i| {
            json!({"id": format!("evt_{i}"), "object": "event", "type": "charge.succeeded",
            "created": 1_746_100_000 + i * 60, "data": {"object": {"id": format!("ch_{i}")}}})
        })
        .collect();
    events.push(json!({"id": "evt_x", "object": "event", "type": "customer.created", "created": 1_746_100_000, "data": {"object": {}}}));
    events.push(json!({"id": "evt_old", "object": "event", "type": "charge.succeeded", "created": 1_700_000_000, "data": {"object": {}}}));
    let api = standins::stripe(events).await;
    let m = Metrics::unregistered();
    let found = crate::stripe_poller(&api.base_url, 2, &m)
        .list(window())
        .await
        .unwrap();
    let ids: Vec<_> = found.iter().map(|f| f.event_id.as_str()).collect();
    assert_eq!(ids, ["evt_5", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]);
    assert!(
        found
            .iter()
            .all(|f| f.topic == "charge.succeeded" && f.fact == f.event_id)
    );
    let log = api.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    // The 429, then three pages of two, each after the previous page's last id.
    assert_eq!(log.requests.len(), 4);
    assert!(
        log.requests[2].0.contains("starting_after=evt_4"),
        "{}",
        log.requests[2].0
    );
    assert!(log.requests[3].0.contains("starting_after=evt_2"));
    assert!(
        log.requests[1].1 - log.requests[0].1 >= Duration::from_millis(990),
        "Retry-After: 1 honoured"
    );
    assert_eq!(counter(&m, "rate_limited", &["stripe"]), 1.0);
    assert_eq!(counter(&m, "requests", &["stripe", "200"]), 3.0);
}

fn shopify_order(id: u64, updated: &str) -> serde_json::Value {
    json!({"id": id, "name": format!("#{id}"), "updated_at": updated, "created_at": "2025-05-02T10:00:00-04:00",
        "currency": "USD", "total_price": "10.00", "line_items": [], "refunds": []})
}

#[tokio::test]
async fn shopify_follows_link_headers_and_slows_down_near_the_call_limit() {
    let orders: Vec<_> = (1..=5)
        .map(|i| shopify_order(1000 + i, &format!("2025-05-0{i}T12:00:00-04:00")))
        .chain([shopify_order(999, "2025-06-10T12:00:00-04:00")])
        .collect();
    let api = standins::shopify(orders).await;
    let m = Metrics::unregistered();
    let found = crate::shopify_poller(&api.base_url, 2, &m)
        .list(window())
        .await
        .unwrap();
    let facts: Vec<_> = found.iter().map(|f| f.fact.clone()).collect();
    assert_eq!(facts.len(), 5);
    assert_eq!(facts[0], "shopify-order:1001@1746115200");
    assert!(found.iter().all(|f| f.topic == "orders/updated"
        && f.event_id.starts_with("reconciled-order-")
        && f.headers["x-shopify-shop-domain"] == "acme-outfitters.myshopify.com"));
    let log = api.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    // 429, then pages 1..3 through page_info.
    assert_eq!(log.requests.len(), 4);
    assert!(
        log.requests[2].0.contains("page_info=") && !log.requests[2].0.contains("updated_at_min")
    );
    assert!(
        log.requests[1].1 - log.requests[0].1 >= Duration::from_millis(990),
        "Retry-After: 1.0 honoured"
    );
    // 39/40 with 2 in reserve and 10/s leaking: wait (39 - 38 + 1) / 10 = 0.2 s.
    assert!(log.requests[2].1 - log.requests[1].1 >= Duration::from_millis(190));
    assert!(
        (counter(&m, "throttle", &["shopify"]) - 1.2).abs() < 1e-6,
        "1 s of 429 + 0.2 s of call limit"
    );
}

fn woo_order(id: u64, modified: &str) -> serde_json::Value {
    json!({"id": id, "status": "processing", "currency": "USD", "total": "10.00",
        "date_created_gmt": "2025-05-01T09:00:00", "date_modified_gmt": modified,
        "billing": {"email": "a@example.com"}, "line_items": [], "refunds": []})
}

#[tokio::test]
async fn woocommerce_pages_to_x_wp_totalpages_and_keeps_the_webhook_ids() {
    let orders: Vec<_> = (1..=5)
        .map(|i| woo_order(4000 + i, &format!("2025-05-0{i}T12:00:00")))
        .chain([woo_order(3999, "2025-04-01T12:00:00")])
        .collect();
    let api = standins::woocommerce(orders).await;
    let m = Metrics::unregistered();
    let found = crate::woo_poller(&api.base_url, 2, &m)
        .list(window())
        .await
        .unwrap();
    let ids: Vec<_> = found.iter().map(|f| f.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "order:4001:2025-05-01T12:00:00",
            "order:4002:2025-05-02T12:00:00",
            "order:4003:2025-05-03T12:00:00",
            "order:4004:2025-05-04T12:00:00",
            "order:4005:2025-05-05T12:00:00"
        ]
    );
    assert!(found.iter().all(|f| f.topic == "order.updated"));
    let log = api.log.lock().unwrap();
    assert!(log.violations.is_empty(), "{:?}", log.violations);
    assert_eq!(log.requests.len(), 4, "the 429, then pages 1, 2 and 3 of 3");
    assert!(log.requests[3].0.contains("page=3"));
    assert!(log.requests[1].1 - log.requests[0].1 >= Duration::from_millis(990));
}

#[tokio::test]
async fn wrong_credentials_fail_the_pass_with_the_status() {
    let api = standins::stripe(vec![]).await;
    let m = Metrics::unregistered();
    let p = storefold_reconcile::Poller::Stripe(
        storefold_reconcile::stripe::Stripe::new(&api.base_url, "sk_wrong", 10, crate::limits(), m)
            .unwrap(),
    );
    let err = p.list(window()).await.unwrap_err();
    assert!(
        matches!(err, storefold_reconcile::Error::Status { status: 401, .. }),
        "{err}"
    );
}
