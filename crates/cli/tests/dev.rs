//! `storefold dev --exit-after-sample`: the embedded broker, the ingest and the
//! processor in one process fold the bundled sample (sent through the HTTP ingest
//! with real signatures) and print the Customer 360 summary.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
        "/ui",
        "/metrics",
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
