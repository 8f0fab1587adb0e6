//! The public endpoints under abuse (README: "The public endpoints under abuse"):
//! slow headers and bodies, floods, the body budget, forged Origin and
//! X-Forwarded-For, touches dated far away, beacon emails with and without a
//! token, WooCommerce pings, oversized bodies, a body limit the producer cannot
//! send, the cached readiness answer and error texts without payload values.
//! The ingest runs on a real socket and produces to librdkafka's mock cluster.

use std::time::{Duration, Instant};

use crate::common::{OTHER, Running, TENANT, config, create_topics, json, raw_events};
use storefold_ingest::Ingest;
use storefold_providers::collect::{IDENTITY_HEADER, IDENTITY_OPTED_IN, IDENTITY_SIGNED};
use storefold_providers::{Headers, MapContext, MapOptions, ProviderKind, RawInput};
use storefold_runtime::config::Config;
use storefold_runtime::net::Secret;
use storefold_testkit::broker::MockBroker;
use storefold_testkit::samples::{self, SHOP_ORIGIN, SignedRequest, sample, signed};
use storefold_testkit::{http_client, send};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDENTITY_KEY: &str = "acme-backend-identity-key";

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn expect_error(resp: reqwest::Response, status: u16, reason: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let body = json(resp).await;
    assert_eq!(body["reason"], reason, "{body}");
    body
}

async fn start(extra: &str) -> (MockBroker, Config, Running) {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), extra);
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    (broker, cfg, ing)
}

/// Reads what the server sends until it closes the connection (or `within`
/// passed: then the connection was still open).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn header_block(req: &SignedRequest, content_length: usize) -> String {
    let mut head = format!("POST {} HTTP/1.1\r\nhost: ingest\r\n", req.path);
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {content_length}\r\n\r\n"));
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_lose_their_connection() {
    let (_broker, _cfg, ing) = start("header_timeout_ms = 300").await;
    let mut slow = TcpStream::connect(ing.addr).await.unwrap();
    slow.write_all(b"POST /v1/webhooks/acme/shopify HTTP/1.1\r\nhost: ingest\r\nx-a: ")
        .await
        .unwrap();
    // Never finishes its headers: closed by the server long before the
    // generous bound.
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(15)).await;
    assert!(closed, "a connection trickling its headers stays open");
    // Meanwhile a real webhook is served.
    let client = http_client();
    let resp = send(
        &client,
        &ing.base,
        &signed(TENANT, &sample(ProviderKind::Shopify), now()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_and_frees_its_share_of_the_budget() {
    // The budget holds one body of the limit: a slow upload holding it makes
    // the next request 503, until its deadline frees it.
    let (broker, cfg, ing) = start(
        "body_timeout_ms = 1500\nmax_body_bytes = 65536\nmax_buffered_bytes = 65536\n\
         [ingest.collect]\nmax_body_bytes = 4096",
    )
    .await;
    let shopify = signed(TENANT, &sample(ProviderKind::Shopify), now());
    let mut slow = TcpStream::connect(ing.addr).await.unwrap();
    slow.write_all(header_block(&shopify, 65536).as_bytes())
        .await
        .unwrap();
    slow.write_all(b"{\"id\":").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = http_client();
    let refused = send(&client, &ing.base, &shopify).await;
    assert!(refused.headers().get("retry-after").is_some());
    expect_error(refused, 503, "overloaded").await;

    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(20)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(closed, "the slow client's connection is closed");
    assert_eq!(ing.ingest.metrics().in_flight.get(), 0, "its slot is free");

    let resp = send(&client, &ing.base, &shopify).await;
    assert_eq!(resp.status(), 200, "the budget was given back");
    assert_eq!(
        raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify).len(),
        1
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_flood_is_limited_per_tenant_and_provider() {
    let (_broker, _cfg, ing) = start("webhook_requests_per_second = 1\nwebhook_burst = 3").await;
    let client = http_client();
    let shopify = signed(TENANT, &sample(ProviderKind::Shopify), now());
    // Forged requests are refused without using the tenant's budget...
    let forged =
        samples::signed_with(TENANT, &sample(ProviderKind::Shopify), "guess", now()).unwrap();
    for _ in 0..10 {
        assert_eq!(send(&client, &ing.base, &forged).await.status(), 401);
    }
    // ...so the real provider still gets its burst.
    for _ in 0..3 {
        assert_eq!(send(&client, &ing.base, &shopify).await.status(), 200);
    }
    let limited = send(&client, &ing.base, &shopify).await;
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    expect_error(limited, 429, "rate_limited").await;
    // Another provider of the tenant, and another tenant, have their own buckets.
    let stripe = signed(TENANT, &sample(ProviderKind::Stripe), now());
    assert_eq!(send(&client, &ing.base, &stripe).await.status(), 200);
    let globex = samples::signed_with(
        OTHER,
        &sample(ProviderKind::Shopify),
        "globex-shopify-secret",
        now(),
    )
    .unwrap();
    assert_eq!(send(&client, &ing.base, &globex).await.status(), 200);
    ing.stop().await;
}

fn touch_body(extra: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::json!({
        "anonymous_id": "anon-abuse",
        "landing_page": "https://shop.example/?utm_source=news",
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

fn post_touch(
    client: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> impl Future<Output = reqwest::Response> + use<> {
    let mut r = client
        .post(format!("{base}/v1/collect/{TENANT}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let sent = r.body(body).send();
    async move { sent.await.unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_origin_and_forwarded_for() {
    let (_broker, _cfg, ing) = start(
        "[ingest.collect]\nrequests_per_second = 1\nburst = 1\ntrusted_proxies = [\"127.0.0.0/8\"]",
    )
    .await;
    let client = http_client();
    let base = &ing.base;
    let forged = post_touch(
        &client,
        base,
        touch_body(serde_json::json!({})),
        &[("origin", "https://evil.test")],
    )
    .await;
    expect_error(forged, 403, "origin_not_allowed").await;

    // Behind our proxy (127.0.0.1) the client is the rightmost untrusted hop;
    // changing the leftmost, client-written entry does not buy a new bucket.
    let touch = |xff: &'static str| {
        post_touch(
            &client,
            base,
            touch_body(serde_json::json!({})),
            &[("origin", SHOP_ORIGIN), ("x-forwarded-for", xff)],
        )
    };
    assert_eq!(touch("1.1.1.1, 203.0.113.5").await.status(), 204);
    let again = touch("9.9.9.9, 203.0.113.5").await;
    expect_error(again, 429, "rate_limited").await;
    let again = touch("203.0.113.5, 127.0.0.9").await;
    expect_error(again, 429, "rate_limited").await;
    assert_eq!(touch("203.0.113.6").await.status(), 204);
    ing.stop().await;

    // Without trusted proxies the header is ignored: every request is the peer's.
    let (_broker, _cfg, ing) = start("[ingest.collect]\nrequests_per_second = 1\nburst = 1").await;
    let first = post_touch(
        &client,
        &ing.base,
        touch_body(serde_json::json!({})),
        &[("origin", SHOP_ORIGIN), ("x-forwarded-for", "198.51.100.1")],
    )
    .await;
    assert_eq!(first.status(), 204);
    let second = post_touch(
        &client,
        &ing.base,
        touch_body(serde_json::json!({})),
        &[("origin", SHOP_ORIGIN), ("x-forwarded-for", "198.51.100.2")],
    )
    .await;
    expect_error(second, 429, "rate_limited").await;
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_limit_holds_however_many_addresses() {
    let (_broker, _cfg, ing) = start(
        "[ingest.collect]\ntenant_requests_per_second = 1\ntenant_burst = 3\nmax_clients = 2\n\
         trusted_proxies = [\"127.0.0.1\"]",
    )
    .await;
    let client = http_client();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let xff = format!("203.0.113.{i}");
        let r = post_touch(
            &client,
            &ing.base,
            touch_body(serde_json::json!({})),
            &[("origin", SHOP_ORIGIN), ("x-forwarded-for", xff.as_str())],
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..3], &[204, 204, 204]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(
        ing.ingest.tracked_clients() <= 3,
        "the client table is bounded: {}",
        ing.ingest.tracked_clients()
    );
    ing.stop().await;
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_dated_far_away_are_refused() {
    let (broker, cfg, ing) = start("").await;
    let client = http_client();
    let at = |t: OffsetDateTime| touch_body(serde_json::json!({"at": rfc3339(t)}));
    let origin = [("origin", SHOP_ORIGIN)];
    for far in [
        at(OffsetDateTime::parse(
            "2099-01-01T00:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()),
        at(now() + time::Duration::minutes(30)),
        at(now() - time::Duration::days(3)),
        at(OffsetDateTime::UNIX_EPOCH),
    ] {
        let r = post_touch(&client, &ing.base, far, &origin).await;
        expect_error(r, 400, "at_out_of_window").await;
    }
    let unreadable = post_touch(
        &client,
        &ing.base,
        touch_body(serde_json::json!({"at": "next tuesday"})),
        &origin,
    )
    .await;
    expect_error(unreadable, 400, "invalid_field").await;
    let fine = post_touch(
        &client,
        &ing.base,
        at(now() - time::Duration::hours(2)),
        &origin,
    )
    .await;
    assert_eq!(fine.status(), 204);
    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Collect);
    assert_eq!(
        stored.len(),
        1,
        "only the touch inside the window is stored"
    );
    ing.stop().await;
}

/// The canonical touch or identify the processor would fold from a stored beacon.
fn fold_input(ev: &storefold_codec::RawEvent) -> Vec<storefold_core::Envelope> {
    let headers = Headers::from_pairs(ev.headers.iter());
    let options = MapOptions::default();
    ProviderKind::Collect
        .map(
            &MapContext {
                tenant: &ev.tenant,
                options: &options,
            },
            &RawInput {
                topic: &ev.topic,
                event_id: &ev.event_id,
                headers: &headers,
                body: &ev.body,
                received_at: now(),
            },
        )
        .unwrap()
}

fn email_of(e: &storefold_core::Envelope) -> Option<String> {
    match &e.event {
        storefold_core::Event::Touch(t) => t.identity.email.clone(),
        storefold_core::Event::Identify(i) => i.identity.email.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_emails_need_a_token_or_the_tenants_opt_in() {
    let broker = MockBroker::start(1);
    let mut cfg = config(broker.bootstrap(), "");
    cfg.tenants.get_mut(TENANT).unwrap().collect_identity_secret =
        Some(Secret(IDENTITY_KEY.into()));
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let origin = ("origin", SHOP_ORIGIN);
    let email = "victim@example.com";
    let later = now().unix_timestamp() + 600;
    let token = storefold_providers::collect::identity_token(IDENTITY_KEY, TENANT, email, later);

    // 1. A touch with an email and no token: stored, but the email is not the
    //    fold's (even with a forged mark header).
    let r = post_touch(
        &client,
        &ing.base,
        touch_body(serde_json::json!({"email": email, "touch_id": "t-plain"})),
        &[origin, (IDENTITY_HEADER, IDENTITY_OPTED_IN)],
    )
    .await;
    assert_eq!(r.status(), 204);
    // 2. An identify without a token says nothing but the email: refused.
    let r = post_touch(
        &client,
        &ing.base,
        serde_json::to_vec(&serde_json::json!({"anonymous_id": "a1", "email": email})).unwrap(),
        &[origin],
    )
    .await;
    expect_error(r, 403, "identify_not_allowed").await;
    // 3. A forged token, a token for another email, an expired token: 401.
    for bad in [
        format!("{later}.{}", "0".repeat(64)),
        storefold_providers::collect::identity_token(
            IDENTITY_KEY,
            TENANT,
            "eve@example.com",
            later,
        ),
        storefold_providers::collect::identity_token(IDENTITY_KEY, TENANT, email, later - 3600),
        storefold_providers::collect::identity_token(IDENTITY_KEY, OTHER, email, later),
    ] {
        let r = post_touch(
            &client,
            &ing.base,
            touch_body(serde_json::json!({"email": email, "email_token": bad})),
            &[origin],
        )
        .await;
        let body = expect_error(r, 401, "bad_email_token").await;
        assert!(!body.to_string().contains(email), "{body}");
    }
    // 4. A valid token: the identify is stored and its email counts.
    let r = post_touch(
        &client,
        &ing.base,
        serde_json::to_vec(
            &serde_json::json!({"anonymous_id": "a1", "email": email, "email_token": token}),
        )
        .unwrap(),
        &[origin],
    )
    .await;
    assert_eq!(r.status(), 204);

    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Collect);
    assert_eq!(stored.len(), 2, "the plain touch and the signed identify");
    let plain = stored
        .iter()
        .find(|(_, ev)| ev.event_id == "t-plain")
        .map(|(_, ev)| ev)
        .unwrap();
    assert_eq!(
        plain.headers.get(IDENTITY_HEADER),
        None,
        "the client's mark is dropped"
    );
    let events = fold_input(plain);
    assert_eq!(events.len(), 1);
    assert_eq!(email_of(&events[0]), None);
    let signed_identify = stored
        .iter()
        .find(|(_, ev)| ev.topic == "identify")
        .map(|(_, ev)| ev)
        .unwrap();
    assert_eq!(
        signed_identify
            .headers
            .get(IDENTITY_HEADER)
            .map(String::as_str),
        Some(IDENTITY_SIGNED)
    );
    let events = fold_input(signed_identify);
    assert_eq!(email_of(&events[0]).as_deref(), Some(email));
    ing.stop().await;

    // A tenant that opted in: emails count without a token.
    let broker = MockBroker::start(1);
    let mut cfg = config(broker.bootstrap(), "");
    cfg.tenants.get_mut(TENANT).unwrap().collect_identify = true;
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let r = post_touch(
        &client,
        &ing.base,
        serde_json::to_vec(&serde_json::json!({"anonymous_id": "a2", "email": email})).unwrap(),
        &[origin],
    )
    .await;
    assert_eq!(r.status(), 204);
    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Collect);
    assert_eq!(
        stored[0].1.headers.get(IDENTITY_HEADER).map(String::as_str),
        Some(IDENTITY_OPTED_IN)
    );
    assert_eq!(
        email_of(&fold_input(&stored[0].1)[0]).as_deref(),
        Some(email)
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woocommerce_ping_is_answered_and_not_stored() {
    let (broker, cfg, ing) = start("").await;
    let client = http_client();
    let path = storefold_providers::webhook_path(TENANT, "woocommerce", None);
    // What WC_Webhook::deliver_ping sends: the form body, no signature.
    let ping = client
        .post(format!("{}{path}", ing.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", "WooCommerce/9.0 Hookshot (WordPress/6.5)")
        .body("webhook_id=42")
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    // A ping with a wrong signature is held to it.
    let forged = client
        .post(format!("{}{path}", ing.base))
        .header(
            "x-wc-webhook-signature",
            "bm90IHRoZSBzaWduYXR1cmUgYXQgYWxsIGF0IGFsbCE=",
        )
        .body("webhook_id=42")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // A real delivery still lands, and it is the only record.
    let order = signed(TENANT, &sample(ProviderKind::WooCommerce), now());
    assert_eq!(send(&client, &ing.base, &order).await.status(), 200);
    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::WooCommerce);
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].1.topic, "ping");
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let (broker, cfg, ing) = start("max_body_bytes = 8192").await;
    let client = http_client();
    let mut big = signed(TENANT, &sample(ProviderKind::Shopify), now());
    big.body = vec![b' '; 9000];
    expect_error(send(&client, &ing.base, &big).await, 413, "body_too_large").await;
    // Without a Content-Length (chunked), cut off at the limit.
    let mut stream = TcpStream::connect(ing.addr).await.unwrap();
    let mut head = format!("POST {} HTTP/1.1\r\nhost: ingest\r\n", big.path);
    for (k, v) in &big.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("transfer-encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..20 {
        let chunk = format!("3e8\r\n{}\r\n", " ".repeat(1000));
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify).is_empty());
    ing.stop().await;
}

#[test]
fn a_body_limit_the_producer_cannot_send_refuses_to_start() {
    let mut cfg = config("127.0.0.1:9", "max_body_bytes = 1048576");
    cfg.kafka
        .properties
        .insert("message.max.bytes".into(), "1000000".into());
    let err = Ingest::new(&cfg, &prometheus::Registry::new()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ingest.max_body_bytes = 1048576"), "{text}");
    assert!(text.contains("message.max.bytes = 1000000"), "{text}");
    // Within the producer's limit it starts.
    cfg.ingest.max_body_bytes = 900_000;
    assert!(Ingest::new(&cfg, &prometheus::Registry::new()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_cached() {
    let (_broker, _cfg, ing) = start("ready_cache_ms = 600000").await;
    let client = http_client();
    for _ in 0..25 {
        let r = client
            .get(format!("{}/readyz", ing.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let checks = ing.ingest.metrics().ready_checks.get();
    assert_eq!(checks, 1, "one Kafka check for 25 probes");
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_hold_no_payload_value() {
    let (_broker, _cfg, ing) = start("").await;
    let client = http_client();
    let email = "jane.doe@example.com";
    let body = format!(r#"{{"id":"evt_1","type":"charge.succeeded","created":"{email}"}}"#);
    let bad = samples::Sample {
        provider: ProviderKind::Stripe,
        topic: "charge.succeeded",
        body: body.into_bytes(),
    };
    let resp = send(&client, &ing.base, &signed(TENANT, &bad, now())).await;
    let answer = expect_error(resp, 400, "malformed_json").await;
    let text = answer["error"].as_str().unwrap();
    assert!(!text.contains(email) && !text.contains("jane"), "{text}");
    assert!(text.contains("created"), "names the field: {text}");
    ing.stop().await;
}
