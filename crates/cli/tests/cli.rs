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

/// Every command of the CLI contract has help, and every option and argument of
/// every command says what it does (`-h` puts the description on the flag's line).
#[test]
fn every_command_and_option_is_described() {
    let out = storefold().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let commands: &[&[&str]] = &[
        &["dev"],
        &["run"],
        &["ingest"],
        &["process"],
        &["replay"],
        &["sink"],
        &["topics", "create"],
        &["topics", "check"],
        &["webhook", "send"],
        &["normalize"],
        &["schemas", "check"],
    ];
    for command in commands {
        assert!(
            help.contains(&format!("\n  {} ", command[0])),
            "`storefold --help` lists {}:\n{help}",
            command[0]
        );
        let out = storefold().args(*command).arg("-h").output().unwrap();
        assert!(out.status.success(), "{command:?} -h");
        let text = String::from_utf8(out.stdout).unwrap();
        let about = text.lines().next().unwrap_or("");
        assert!(
            about.split_whitespace().count() >= 3,
            "{command:?} has a description:\n{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut section = "";
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            if !(section.starts_with("Options") || section.starts_with("Arguments")) {
                continue;
            }
            // An item starts at a small indent; its description follows on the
            // same line after two spaces, or on the next, further indented line.
            if indent(line) > 6 {
                continue;
            }
            let item = line.trim_start();
            let same_line = item
                .split_once("  ")
                .is_some_and(|(_, rest)| !rest.trim().is_empty());
            let next_line = lines
                .get(i + 1)
                .is_some_and(|n| indent(n) > indent(line) + 2 && !n.trim().is_empty());
            assert!(
                same_line || next_line,
                "{command:?}: `{item}` has no description:\n{text}"
            );
        }
    }
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
