//! `storefold dev --exit-after-sample`: the embedded broker, the ingest and the
//! processor in one process fold the bundled sample (sent through the HTTP ingest
//! with real signatures) and print the Customer 360 summary. With
//! `--postgres-url`: the sample also lands in PostgreSQL, and the Inspector the
//! summary points to shows it in headless Chromium.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use storefold_testkit::browser::{chromium, dump_dom, text_between};
use storefold_testkit::postgres::PgServer;

#[test]
fn dev_folds_the_sample_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    // A stale state from an earlier run must be wiped, not resumed.
    std::fs::create_dir_all(dir.path().join(".storefold/dev-state/task-0")).unwrap();
    std::fs::write(dir.path().join(".storefold/dev-state/task-0/stale"), b"x").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .args([
            "dev",
            "--exit-after-sample",
            "--broker-port",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--operator-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .env_remove("STOREFOLD_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("storefold dev did not exit within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The banner: limits, fresh state, how to use a real Kafka.
    for needle in [
        "5 MiB per partition",
        "offset-out-of-range",
        "wiped at every start",
        "bootstrap_servers",
        "Customer 360 of tenant demo (30 customers)",
        "/ui#token=sft_",
        "/metrics",
        "Operator token         sft_",
        "Authorization: Bearer",
        "Identity merges: Felix Lopez",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    // (customer, orders, net revenue, open tickets)
    let expected = [
        // A split shipment (one parcel with an exception), a solved Zendesk ticket.
        ("ana.ito@demo.example", "1", "$93.95", "0"),
        // Two orders, a partial refund (a return) in Shopify.
        ("ben.berg@demo.example", "2", "$82.90", "0"),
        // Paid in euros, the shipping refunded in Stripe.
        ("dev.dubois@demo.example", "1", "€22.00", "0"),
        // An open Zendesk ticket.
        ("emma.khan@demo.example", "2", "$76.90", "1"),
        // A parcel returned to sender and refunded.
        ("ivan.novak@demo.example", "2", "$94.90", "0"),
        // An open dispute: nothing lost yet.
        ("lea.walsh@demo.example", "1", "$26.95", "0"),
    ];
    for (email, orders, net, open) in expected {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("<{email}>")))
            .unwrap_or_else(|| panic!("no row for {email}:\n{stdout}"));
        let cells: Vec<&str> = line
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cells.get(1), Some(&orders), "orders of {email}: {line}");
        assert_eq!(cells.get(2), Some(&net), "net revenue of {email}: {line}");
        assert_eq!(cells.get(3), Some(&open), "open tickets of {email}: {line}");
    }
    // The stale state is gone.
    assert!(
        !dir.path()
            .join(".storefold/dev-state/task-0/stale")
            .exists()
    );
}

/// A `storefold dev` that keeps running, killed when dropped.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_postgres_fills_the_database_and_the_inspector_shows_the_sample() {
    let browser = chromium();
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let public = storefold_testkit::free_port();
    let port = storefold_testkit::free_port();
    let mut dev = Dev(Command::new(env!("CARGO_BIN_EXE_storefold"))
        .args(["dev", "--broker-port", "0", "--listen"])
        .arg(format!("127.0.0.1:{public}"))
        .arg("--operator-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--postgres-url")
        .arg(pg.url())
        .current_dir(dir.path())
        .env_remove("STOREFOLD_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap());
    // Everything it prints, read as it comes.
    let out = Arc::new(Mutex::new(String::new()));
    {
        let out = out.clone();
        let stdout = dev.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
    let started = Instant::now();
    loop {
        if out.lock().unwrap().contains("Running; Ctrl-C") {
            break;
        }
        if let Some(s) = dev.0.try_wait().unwrap() {
            panic!("storefold dev exited ({s}):\n{}", out.lock().unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "storefold dev did not finish the sample within 180 s:\n{}",
            out.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let printed = out.lock().unwrap().clone();
    for needle in [
        "the PostgreSQL sink",
        "The PostgreSQL sink wrote every projection",
        "Customer 360 of tenant demo (30 customers)",
    ] {
        assert!(printed.contains(needle), "{needle:?} missing:\n{printed}");
    }

    // Other Kafka clients reach the embedded broker on the port the banner names:
    // the sample's Shopify webhooks are in the raw topic, exact bytes and all.
    let broker = printed
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Embedded broker"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the banner names the broker's address:\n{printed}"))
        .to_string();
    let raw = tokio::task::spawn_blocking(move || {
        storefold_testkit::broker::read_topic(
            &broker,
            "storefold.raw.shopify",
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap();
    let shopify = printed
        .lines()
        .find_map(|l| l.split("shopify ").nth(1))
        .and_then(|rest| rest.split([',', ')']).next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("the sample line counts the Shopify requests:\n{printed}"));
    assert_eq!(raw.len(), shopify, "every Shopify request of the sample");

    // The sink had written the sample before the summary was printed.
    let client = pg.client().await;
    let row = client
        .query_one(
            "SELECT c.doc->>'orders_count', count(o.order_id) \
             FROM storefold.customers c LEFT JOIN storefold.orders o \
               ON o.tenant = c.tenant AND o.customer_id = c.customer_id \
             WHERE c.tenant = 'demo' AND c.email = 'ben.berg@demo.example' \
             GROUP BY c.doc",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("2"));
    assert_eq!(row.get::<_, i64>(1), 2, "Ben's two orders");
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM storefold.customers \
             WHERE tenant = 'demo' AND merged_into IS NULL AND email LIKE '%@demo.example'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 30, "one row per sample customer");

    // The Inspector the summary points to, signed in with the dev token the
    // banner prints: Ben, his net revenue after the return.
    let token = printed
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Operator token"))
        .map(|rest| rest.trim().to_string())
        .unwrap_or_else(|| panic!("the banner prints the dev token:\n{printed}"));
    assert!(token.starts_with("sft_"), "{token}");
    assert!(printed.contains(&format!("http://127.0.0.1:{port}/ui#token={token}")));
    // The public address serves no operator route; the operator one needs the token.
    let http = storefold_testkit::http_client();
    for path in ["/ui", "/metrics", "/v1/tenants"] {
        let r = http
            .get(format!("http://127.0.0.1:{public}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "public {path}");
    }
    let tenants = |t: Option<String>| {
        let mut r = http.get(format!("http://127.0.0.1:{port}/v1/tenants"));
        if let Some(t) = t {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(tenants(None).await.unwrap().status(), 401);
    assert_eq!(tenants(Some(token.clone())).await.unwrap().status(), 200);
    let url = format!(
        "http://127.0.0.1:{port}/ui?tenant=demo&email=ben.berg%40demo.example#token={token}"
    );
    let profile = tempfile::tempdir().unwrap();
    let dom = {
        let profile = profile.path().to_path_buf();
        tokio::task::spawn_blocking(move || dump_dom(&browser, &profile, &url))
            .await
            .unwrap()
    };
    assert!(
        dom.contains("data-state=\"customer\""),
        "the page should have loaded Ben:\n{dom}"
    );
    assert!(text_between(&dom, "profile", "revenue").contains("ben.berg@demo.example"));
    assert!(
        dom.contains("data-net=\"82.90 USD\""),
        "Ben's net revenue 82.90 USD:\n{dom}"
    );

    // Ctrl-C (SIGINT): everything stops, exit 0.
    let status = Command::new("kill")
        .args(["-INT", &dev.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = dev.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "dev did not stop within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(exit.success(), "exit {exit}:\n{}", out.lock().unwrap());
}
