//! The ingest's HTTP contract (ARCHITECTURE §3): every status of the table with its
//! JSON error body, tenant isolation, the body limit, CORS and the rate limit. The
//! ingest runs on a real socket and produces to librdkafka's mock cluster.

use crate::common::{OTHER, Running, TENANT, config, create_topics, json, raw_events};
use storefold_providers::ProviderKind;
use storefold_testkit::broker::MockBroker;
use storefold_testkit::samples::{self, SHOP_ORIGIN, sample, signed, signed_with};
use storefold_testkit::{http_client, send};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

async fn expect_error(resp: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body = json(resp).await;
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_of_the_http_table() {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "max_body_bytes = 65536");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let shopify = sample(ProviderKind::Shopify);

    // 200: verified and acknowledged by Kafka.
    let ok = signed(TENANT, &shopify, now());
    let resp = send(&client, &ing.base, &ok).await;
    assert_eq!(resp.status(), 200);

    // 401: wrong secret, and no signature at all.
    let forged = signed_with(TENANT, &shopify, "not-the-secret", now()).unwrap();
    expect_error(
        send(&client, &ing.base, &forged).await,
        401,
        "signature_mismatch",
    )
    .await;
    let mut unsigned = ok.clone();
    unsigned
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("x-shopify-hmac-sha256"));
    expect_error(
        send(&client, &ing.base, &unsigned).await,
        401,
        "missing_signature",
    )
    .await;
    // A tampered body no longer matches its signature.
    let mut tampered = ok.clone();
    tampered.body[10] ^= 1;
    expect_error(
        send(&client, &ing.base, &tampered).await,
        401,
        "signature_mismatch",
    )
    .await;

    // 400: a required header is missing (the topic is not part of Shopify's HMAC).
    let mut no_topic = ok.clone();
    no_topic
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("x-shopify-topic"));
    expect_error(
        send(&client, &ing.base, &no_topic).await,
        400,
        "missing_header",
    )
    .await;
    // 400: a correctly signed body that is not JSON.
    let garbage = samples::Sample {
        provider: ProviderKind::Stripe,
        topic: "charge.succeeded",
        body: b"{not json".to_vec(),
    };
    let garbage = signed(TENANT, &garbage, now());
    expect_error(
        send(&client, &ing.base, &garbage).await,
        400,
        "malformed_json",
    )
    .await;

    // 404: unknown tenant, unknown provider, provider not configured for the tenant.
    let mut elsewhere = ok.clone();
    elsewhere.path = "/v1/webhooks/nobody/shopify".into();
    expect_error(
        send(&client, &ing.base, &elsewhere).await,
        404,
        "unknown_tenant",
    )
    .await;
    elsewhere.path = format!("/v1/webhooks/{TENANT}/bigcommerce");
    expect_error(
        send(&client, &ing.base, &elsewhere).await,
        404,
        "unknown_provider",
    )
    .await;
    elsewhere.path = format!("/v1/webhooks/{TENANT}/collect");
    expect_error(
        send(&client, &ing.base, &elsewhere).await,
        404,
        "unknown_provider",
    )
    .await;
    let adyen_for_other = signed(OTHER, &sample(ProviderKind::Adyen), now());
    expect_error(
        send(&client, &ing.base, &adyen_for_other).await,
        404,
        "provider_not_configured",
    )
    .await;

    // Outside the table: unknown paths and wrong methods still answer JSON.
    let resp = client
        .get(format!("{}/v1/webhooks/{TENANT}/shopify", ing.base))
        .send()
        .await
        .unwrap();
    expect_error(resp, 405, "method_not_allowed").await;
    let resp = client
        .post(format!("{}/v1/webhooks/{TENANT}", ing.base))
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "no_such_endpoint").await;

    // 413: over the limit, with and without a Content-Length.
    let big = samples::Sample {
        provider: ProviderKind::Shopify,
        topic: "orders/create",
        body: vec![b' '; 70_000],
    };
    let big = signed(TENANT, &big, now());
    expect_error(send(&client, &ing.base, &big).await, 413, "body_too_large").await;
    let (status, body) = post_chunked(ing.addr, &big.path, &big.headers, &big.body).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"reason\":\"body_too_large\""), "{body}");

    // Only the one good request was stored.
    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.body, shopify.body);

    // The metrics saw it all, labelled by provider and status.
    let metrics = client
        .get(format!("{}/metrics", ing.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "storefold_ingest_requests_total{provider=\"shopify\",status=\"200\"} 1",
        "storefold_ingest_requests_total{provider=\"shopify\",status=\"401\"} 3",
        "storefold_ingest_requests_total{provider=\"shopify\",status=\"413\"} 2",
        "storefold_ingest_requests_total{provider=\"unknown\",status=\"404\"} 1",
        "storefold_ingest_signature_failures_total{provider=\"shopify\",reason=\"signature_mismatch\"} 2",
        "storefold_ingest_signature_failures_total{provider=\"shopify\",reason=\"missing_signature\"} 1",
        "storefold_ingest_publish_duration_seconds_count{outcome=\"acked\",provider=\"shopify\"} 1",
        "storefold_ingest_in_flight_requests 0",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    // When Shopify last got through (Unix seconds); no other provider did.
    let last: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "storefold_ingest_last_accepted_timestamp_seconds{provider=\"shopify\"} ",
            )
        })
        .unwrap_or_else(|| panic!("no last-accepted time for shopify in\n{metrics}"))
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(last > now - 600.0 && last <= now, "{last} vs now {now}");
    assert_eq!(
        metrics
            .matches("storefold_ingest_last_accepted_timestamp_seconds{")
            .count(),
        1,
        "{metrics}"
    );
    assert!(!metrics.contains(samples::verify_secret(ProviderKind::Shopify).as_str()));
    ing.stop().await;
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw
/// socket; returns the status and the response text.
async fn post_chunked(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(1000) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if sock.write_all(&framed).await.is_err() {
            break; // the server may answer and close before the end
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_secret_never_authenticates_another_tenant() {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    for provider in [ProviderKind::Shopify, ProviderKind::Stripe] {
        // Signed correctly for acme, sent to globex's URL.
        let mut req = signed(TENANT, &sample(provider), now());
        req.path = req.path.replace(TENANT, OTHER);
        expect_error(
            send(&client, &ing.base, &req).await,
            401,
            "signature_mismatch",
        )
        .await;
        // And globex's own secret works for globex only.
        let secret = if provider == ProviderKind::Shopify {
            "globex-shopify-secret"
        } else {
            "whsec_globex"
        };
        let own = signed_with(OTHER, &sample(provider), secret, now()).unwrap();
        assert_eq!(send(&client, &ing.base, &own).await.status(), 200);
        let mut cross = own.clone();
        cross.path = cross.path.replace(OTHER, TENANT);
        expect_error(
            send(&client, &ing.base, &cross).await,
            401,
            "signature_mismatch",
        )
        .await;
    }
    // URL-token providers: acme's token is not globex's (globex has no shippo at all).
    let mut shippo = signed(TENANT, &sample(ProviderKind::Shippo), now());
    shippo.path = shippo.path.replace("token=", "token=x");
    expect_error(send(&client, &ing.base, &shippo).await, 401, "bad_token").await;
    let stored: Vec<String> = raw_events(broker.bootstrap(), &cfg, ProviderKind::Shopify)
        .into_iter()
        .map(|(_, ev)| ev.tenant)
        .collect();
    assert_eq!(stored, vec![OTHER.to_string()]);
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adyen_is_answered_accepted() {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let resp = send(
        &client,
        &ing.base,
        &signed(TENANT, &sample(ProviderKind::Adyen), now()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "[accepted]");
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_applies_cors_and_the_rate_limit() {
    let broker = MockBroker::start(1);
    let cfg = config(
        broker.bootstrap(),
        "[ingest.collect]\nrequests_per_second = 1\nburst = 3\ntrusted_proxies = [\"127.0.0.1\"]\n\
         # the sample touch is dated 2025\nmax_past_secs = 4000000000\n",
    );
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    let url = format!("{}/v1/collect/{TENANT}", ing.base);

    // Preflight: the allowed origin gets CORS headers, another origin does not.
    let pre = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", SHOP_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], SHOP_ORIGIN);
    assert_eq!(pre.headers()["access-control-allow-methods"], "POST");
    let evil = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://evil.test")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    expect_error(evil, 403, "origin_not_allowed").await;
    // globex's origin is not acme's.
    let other = client
        .post(&url)
        .header("origin", "https://other.test")
        .body(sample(ProviderKind::Collect).body)
        .send()
        .await
        .unwrap();
    expect_error(other, 403, "origin_not_allowed").await;
    let no_origin = client
        .post(&url)
        .body(sample(ProviderKind::Collect).body)
        .send()
        .await
        .unwrap();
    expect_error(no_origin, 403, "origin_required").await;

    // Burst of 3 from one client, then 429 with Retry-After; another client is not
    // affected.
    let touch = |ip: &'static str| {
        client
            .post(&url)
            .header("origin", SHOP_ORIGIN)
            .header("x-forwarded-for", ip)
            .header("content-type", "application/json")
            .body(sample(ProviderKind::Collect).body)
            .send()
    };
    for _ in 0..3 {
        let r = touch("203.0.113.7").await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["access-control-allow-origin"], SHOP_ORIGIN);
    }
    let limited = touch("203.0.113.7").await.unwrap();
    assert!(limited.headers().get("retry-after").is_some());
    assert_eq!(
        limited.headers()["access-control-allow-origin"],
        SHOP_ORIGIN
    );
    expect_error(limited, 429, "rate_limited").await;
    assert_eq!(touch("198.51.100.1").await.unwrap().status(), 204);

    // A touch that is not a touch is 400.
    let bad = client
        .post(&url)
        .header("origin", SHOP_ORIGIN)
        .header("x-forwarded-for", "192.0.2.9")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Collect);
    assert_eq!(stored.len(), 4);
    assert!(
        stored
            .iter()
            .all(|(_, ev)| ev.headers.get("origin").map(String::as_str) == Some(SHOP_ORIGIN))
    );
    assert!(
        stored
            .iter()
            .all(|(_, ev)| ev.verification.scheme.is_none())
    );
    ing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_trace_context() {
    let broker = MockBroker::start(1);
    let cfg = config(broker.bootstrap(), "");
    create_topics(&broker, &cfg);
    let ing = Running::start(&cfg).await;
    let client = http_client();
    for path in ["/healthz", "/readyz"] {
        let r = client
            .get(format!("{}{path}", ing.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let mut req = signed(TENANT, &sample(ProviderKind::Stripe), now());
    req.headers.push((
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    ));
    assert_eq!(send(&client, &ing.base, &req).await.status(), 200);
    let stored = raw_events(broker.bootstrap(), &cfg, ProviderKind::Stripe);
    let (record, ev) = &stored[0];
    let trace = ev.trace_context.as_deref().unwrap();
    assert!(
        trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{trace}"
    );
    assert_eq!(record.header("traceparent"), Some(trace.as_bytes()));
    assert_eq!(
        record.header("storefold-event-id"),
        Some(ev.event_id.as_bytes())
    );
    ing.stop().await;
}
