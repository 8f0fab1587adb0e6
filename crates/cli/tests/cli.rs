//! The `storefold` binary as a newcomer runs it.

use std::process::Command;

fn storefold() -> Command {
    Command::new(env!("CARGO_BIN_EXE_storefold"))
}

fn fixture(path: &str) -> String {
    format!("{}/../providers/src/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_and_version_work() {
    let out = storefold().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("normalize") && help.contains("schemas"),
        "{help}"
    );
    let out = storefold().arg("--version").output().unwrap();
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("storefold ")
    );
}

#[test]
fn normalize_prints_versioned_canonical_events() {
    let out = storefold()
        .args([
            "normalize",
            "--provider",
            "shopify",
            "--topic",
            "orders/create",
        ])
        .args(["--header", "X-Shopify-Event-Id: evt-1"])
        .arg(fixture("shopify/fixtures/orders_create.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"OrderUpserted"), "{types:?}");
    assert!(lines.iter().all(|l| l["v"] == 1 && l["tenant"] == "demo"));
    let order = lines.iter().find(|l| l["type"] == "OrderUpserted").unwrap();
    assert!(
        order["data"]["order_id"]
            .as_str()
            .unwrap()
            .starts_with("shopify:")
    );
    assert!(
        order["event_id"]
            .as_str()
            .unwrap()
            .starts_with("evt-1:orders/create")
    );
}

#[test]
fn normalize_reads_the_topic_from_stripe_bodies_and_folds() {
    let out = storefold()
        .args(["normalize", "--provider", "stripe", "--fold"])
        .args(["--received-at", "2025-01-01T00:00:00Z"])
        .arg(fixture("stripe/fixtures/charge.refunded.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("\"RefundIssued\""), "{stdout}");
    // Without the store's order the refund is parked, and the fold says so.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("Parked") || stderr.contains("Applied"),
        "{stderr}"
    );
}

#[test]
fn unknown_providers_and_missing_files_are_clear_errors() {
    let out = storefold()
        .args(["normalize", "--provider", "magento", "x.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown provider") && err.contains("shopify"),
        "{err}"
    );
    let out = storefold()
        .args([
            "normalize",
            "--provider",
            "shopify",
            "--topic",
            "orders/create",
            "/nonexistent.json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("/nonexistent.json")
    );
}
