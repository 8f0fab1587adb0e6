//! Operator access against the real binary (`storefold run` with librdkafka's
//! mock cluster): the auth matrix of every operator route (no token, a wrong
//! token, another tenant's token, the tenant's token, a metrics token, an
//! admin token), the public listener answering 404 to every operator route,
//! the Inspector's security headers, and the start-up rules (no tokens on a
//! non-loopback operator address refuses to start; on loopback it starts and
//! answers 401).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use storefold_runtime::operator::hash_token;
use storefold_testkit::broker::MockBroker;
use storefold_testkit::samples::{self, shopify_order};
use storefold_testkit::{free_port, http_client};
use time::OffsetDateTime;

use crate::common::{Run, create_topics, wait_ready};

const ADMIN: &str = "sft_matrix-admin";
const ACME: &str = "sft_matrix-acme-support";
const BETA: &str = "sft_matrix-beta-support";
const METRICS: &str = "sft_matrix-prometheus";
const WRONG: &str = "sft_matrix-not-configured";

fn tokens_toml() -> String {
    let entry = |name: &str, token: &str, scope: &str| {
        format!(
            "[[operator.tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\n{scope}\n",
            hash_token(token)
        )
    };
    [
        entry("ops", ADMIN, "admin = true"),
        entry("acme-support", ACME, "tenants = [\"acme\"]"),
        entry("beta-support", BETA, "tenants = [\"beta\"]"),
        entry("prometheus", METRICS, "metrics = true"),
    ]
    .concat()
}

fn write_config(dir: &Path, bootstrap: &str, public: u16, operator: &str, tokens: &str) -> PathBuf {
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = 3\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [ingest]\nlisten = \"127.0.0.1:{public}\"\nshutdown_timeout_secs = 5\n\
         [processor]\nstate_dir = \"{state}\"\ncommit_interval_ms = 100\n\
         [operator]\nlisten = \"{operator}\"\n\
         [log]\nlevel = \"info,librdkafka=error,rdkafka=error\"\n{acme}{beta}{tokens}",
        state = dir.join("state").display(),
        acme = samples::tenant_toml("acme"),
        beta = samples::tenant_toml("beta"),
    );
    let path = dir.join("storefold.toml");
    std::fs::write(&path, &toml).unwrap();
    path
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = client.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Wrong,
    OtherTenant,
    Tenant,
    Metrics,
    Admin,
}

impl Who {
    const ALL: [Who; 6] = [
        Who::Nobody,
        Who::Wrong,
        Who::OtherTenant,
        Who::Tenant,
        Who::Metrics,
        Who::Admin,
    ];

    fn token(self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::Wrong => Some(WRONG),
            Who::OtherTenant => Some(BETA),
            Who::Tenant => Some(ACME),
            Who::Metrics => Some(METRICS),
            Who::Admin => Some(ADMIN),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_route_answers_by_token_and_the_public_listener_serves_none() {
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().unwrap();
    let (public, operator) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        broker.bootstrap(),
        public,
        &format!("127.0.0.1:{operator}"),
        &tokens_toml(),
    );
    create_topics(&broker, &config);
    let mut run = Run::start(&config, dir.path().join("run.log"), &["--no-sinks"]);
    let public_base = format!("http://127.0.0.1:{public}");
    let base = format!("http://127.0.0.1:{operator}");
    let client = http_client();
    wait_ready(&client, &public_base, &mut run, Duration::from_secs(90)).await;
    wait_ready(&client, &base, &mut run, Duration::from_secs(90)).await;

    // One acme customer with an order, through the public webhook endpoint.
    let sample = shopify_order(1, "ada@operator.example");
    let req = samples::signed("acme", &sample, OffsetDateTime::now_utc());
    let mut r = client.post(format!("{public_base}{}", req.path));
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    assert_eq!(r.body(req.body).send().await.unwrap().status(), 200);
    let by_email = "/v1/tenants/acme/customers?email=ada@operator.example";
    let deadline = Instant::now() + Duration::from_secs(120);
    let customer_id = loop {
        let (status, _, body) = get(&client, &format!("{base}{by_email}"), Some(ADMIN)).await;
        if status == 200 {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            break doc["customer_id"]
                .as_str()
                .expect("customer_id")
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the customer was not folded within 120 s ({status} {body}):\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let order = format!(
        "/v1/tenants/acme/orders/shopify:{}",
        820_982_911_946_154_508u64 + 1
    );
    let by_id = format!("/v1/tenants/acme/customers/{customer_id}");

    // (route, expected status for each caller in Who::ALL order:
    //  nobody, wrong token, beta's token, acme's token, metrics token, admin).
    let matrix: Vec<(&str, [u16; 6])> = vec![
        ("/v1/tenants", [401, 401, 200, 200, 200, 200]),
        (by_email, [401, 401, 404, 200, 404, 200]),
        (&by_id, [401, 401, 404, 200, 404, 200]),
        (&order, [401, 401, 404, 200, 404, 200]),
        (
            "/v1/tenants/acme/customers?phone=%2B14155550100",
            [401, 401, 404, 404, 404, 404],
        ),
        ("/metrics", [401, 401, 403, 403, 200, 200]),
        // The Inspector's page and assets hold no data: open to all (its
        // calls to the API carry the token).
        ("/ui", [200; 6]),
        ("/ui/app.js", [200; 6]),
        ("/ui/app.css", [200; 6]),
        ("/healthz", [200; 6]),
        ("/readyz", [200; 6]),
    ];
    let mut wrong = Vec::new();
    for (path, want) in &matrix {
        for (who, want) in Who::ALL.iter().zip(want) {
            let (status, headers, body) = get(&client, &format!("{base}{path}"), who.token()).await;
            if status != *want {
                wrong.push(format!("{path} as {who:?}: {status} (want {want}) {body}"));
            }
            if status == 401 {
                assert_eq!(
                    headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
                    Some("Bearer realm=\"storefold\""),
                    "{path} as {who:?}"
                );
                assert!(body.contains("\"reason\":\"unauthorized\""), "{body}");
            }
            if status == 200 && path.starts_with("/v1/tenants/acme") {
                assert!(
                    body.contains("ada@operator.example"),
                    "{path} as {who:?}: {body}"
                );
            }
            if status == 404 && matches!(who, Who::OtherTenant | Who::Metrics) {
                // Not a word of acme's data, the same answer whether the
                // tenant exists or not.
                assert!(!body.contains("ada@"), "{body}");
                assert!(body.contains("no_such_tenant"), "{path} as {who:?}: {body}");
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the auth matrix:\n  {}",
        wrong.join("\n  ")
    );

    // /v1/tenants lists only the caller's tenants.
    for (who, want) in [
        (Who::Tenant, serde_json::json!(["acme"])),
        (Who::OtherTenant, serde_json::json!(["beta"])),
        (Who::Metrics, serde_json::json!([])),
        (Who::Admin, serde_json::json!(["acme", "beta"])),
    ] {
        let (_, _, body) = get(&client, &format!("{base}/v1/tenants"), who.token()).await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["tenants"], want, "/v1/tenants as {who:?}");
    }
    // A tenant that does not exist looks the same to acme's token as beta.
    let (status, _, body) = get(
        &client,
        &format!("{base}/v1/tenants/nosuch/customers?email=a@b.example"),
        Some(ACME),
    )
    .await;
    assert_eq!(
        (status, body.contains("no_such_tenant")),
        (404, true),
        "{body}"
    );
    // Malformed Authorization headers are no token.
    for header in ["Basic YWRtaW46YWRtaW4=", "Bearer", ADMIN, "Bearer  "] {
        let r = client
            .get(format!("{base}/v1/tenants"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "Authorization: {header}");
    }
    // The metrics there are the whole process's.
    let (_, _, metrics) = get(&client, &format!("{base}/metrics"), Some(METRICS)).await;
    for needle in ["storefold_ingest_requests_total", "storefold_processor_"] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }

    // The Inspector's headers.
    let (_, headers, page) = get(&client, &format!("{base}/ui"), None).await;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(page.contains("id=\"login\""), "the page asks for a token");

    // The public listener: 404 for every operator route, whatever the token.
    for (path, _) in &matrix {
        if matches!(*path, "/healthz" | "/readyz") {
            continue;
        }
        for who in Who::ALL {
            let (status, _, body) =
                get(&client, &format!("{public_base}{path}"), who.token()).await;
            assert_eq!(status, 404, "public {path} as {who:?}: {body}");
            assert!(!body.contains("ada@"), "{body}");
        }
    }
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = get(&client, &format!("{public_base}{path}"), None).await;
        assert_eq!(status, 200, "public {path}");
    }

    // Tokens never reach the log; refused ones leave no trace of their value.
    let log = run.log();
    for t in [ADMIN, ACME, BETA, METRICS, WRONG] {
        assert!(!log.contains(t), "a token in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_a_public_operator_address_is_refused_and_loopback_answers_401() {
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().unwrap();
    let (public, operator) = (free_port(), free_port());

    // 0.0.0.0 without tokens: refused before anything starts.
    let config = write_config(
        dir.path(),
        broker.bootstrap(),
        public,
        &format!("0.0.0.0:{operator}"),
        "",
    );
    create_topics(&broker, &config);
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--no-sinks"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("operator.listen") && stderr.contains("storefold token new"),
        "the refusal says what to do:\n{stderr}"
    );

    // Loopback without tokens: it starts, warns, and every PII route is 401.
    let config = write_config(
        dir.path(),
        broker.bootstrap(),
        public,
        &format!("127.0.0.1:{operator}"),
        "",
    );
    let mut run = Run::start(&config, dir.path().join("run.log"), &["--no-sinks"]);
    let base = format!("http://127.0.0.1:{operator}");
    let client = http_client();
    wait_ready(&client, &base, &mut run, Duration::from_secs(90)).await;
    for path in [
        "/v1/tenants",
        "/v1/tenants/acme/customers?email=a@b.example",
        "/v1/tenants/acme/orders/shopify:1",
        "/metrics",
    ] {
        let (status, _, _) = get(&client, &format!("{base}{path}"), Some(WRONG)).await;
        assert_eq!(status, 401, "{path}");
    }
    let log = run.log();
    assert!(
        log.contains("no [[operator.tokens]] configured"),
        "the start-up warning:\n{log}"
    );
}
