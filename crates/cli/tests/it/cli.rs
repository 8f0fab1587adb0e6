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
        &["reconcile"],
        &["topics", "create"],
        &["topics", "check"],
        &["webhook", "send"],
        &["token", "new"],
        &["token", "hash"],
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

/// Output lines of a successful `storefold` run, as JSON.
fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// With a configuration, normalize maps and folds as the processor would for
/// the tenant: its stores decide whose order a Stripe payment names, and its
/// reporting currency and the rates file give the converted figures.
#[test]
fn normalize_uses_the_configured_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let rates = dir.path().join("rates.csv");
    std::fs::write(&rates, "date,from,to,rate\n2025-04-30,USD,EUR,0.9\n").unwrap();
    let config = dir.path().join("storefold.toml");
    std::fs::write(
        &config,
        format!(
            "[rates]\nfile = {:?}\n[tenants.shop]\nstores = [\"woocommerce\"]\nreporting_currency = \"EUR\"\n",
            rates.display().to_string()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    // The order a Stripe charge names, with `args` given to normalize.
    let order = |global: &[&str], args: &[&str]| -> Option<String> {
        let out = storefold()
            .args(global)
            .args(["normalize", "--provider", "stripe"])
            .args(args)
            .arg(fixture("stripe/fixtures/charge.succeeded.json"))
            .output()
            .unwrap();
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0]["data"]["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["by"] == "order")
            .map(|l| l["order_id"].as_str().unwrap().to_string())
    };
    assert_eq!(
        order(&["--config", config_arg], &["--tenant", "shop"]).as_deref(),
        Some("woocommerce:5123000001"),
        "the tenant runs WooCommerce"
    );
    assert_eq!(
        order(&[], &[]).as_deref(),
        Some("shopify:5123000001"),
        "without a configuration: the default store"
    );
    assert_eq!(
        order(&[], &["--stores", "woocommerce,shopify"]).as_deref(),
        Some("woocommerce:5123000001"),
        "--stores says the same"
    );

    // The WooCommerce order (38.18 USD, processing) folded for the tenant:
    // its figures in EUR at 0.9, rounded half away from zero.
    let out = storefold()
        .args(["--config", config_arg, "normalize", "--tenant", "shop"])
        .args([
            "--provider",
            "woocommerce",
            "--topic",
            "order.created",
            "--fold",
        ])
        .arg(fixture("woocommerce/fixtures/order_created.json"))
        .output()
        .unwrap();
    let lines = json_lines(&out);
    let view = lines
        .iter()
        .find(|l| l["projection"]["type"] == "order")
        .map(|l| &l["projection"]["view"])
        .unwrap_or_else(|| panic!("an order projection in {lines:?}"));
    assert_eq!(view["order_id"], "woocommerce:4101");
    let f = &view["figures"];
    assert_eq!(f["paid"]["USD"], 3818, "{f}");
    assert_eq!(f["paid_source"], "store", "{f}");
    assert_eq!(f["reporting"]["currency"], "EUR", "{f}");
    assert_eq!(f["reporting"]["paid"], 3436, "{f}");
    assert_eq!(f["reporting"]["net"], 3436, "{f}");
    assert!(
        view["ledger"].as_array().is_some_and(|l| !l.is_empty()),
        "{view}"
    );

    // A rates file that cannot be used refuses, naming the key.
    std::fs::write(&rates, "2025-04-30,USD,EUR,nine tenths\n").unwrap();
    let out = storefold()
        .args(["--config", config_arg, "normalize", "--tenant", "shop"])
        .args([
            "--provider",
            "woocommerce",
            "--topic",
            "order.created",
            "--fold",
        ])
        .arg(fixture("woocommerce/fixtures/order_created.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rates.file") && err.contains("line 1"),
        "{err}"
    );
    let out = storefold()
        .args(["normalize", "--stores", "magento", "--provider", "stripe"])
        .arg(fixture("stripe/fixtures/charge.succeeded.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("magento"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A reconcile source without its credentials refuses to start, naming the
/// key, before anything connects (the Kafka address here answers nothing).
#[test]
fn reconcile_refuses_a_source_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storefold.toml");
    std::fs::write(
        &config,
        "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n\
         [reconcile]\nstate_dir = \"state\"\n\
         [tenants.acme.providers.stripe]\nsecret = \"whsec_x\"\n\
         [tenants.acme.reconcile.stripe]\napi_key = \"${EMPTY_KEY}\"\n",
    )
    .unwrap();
    let out = storefold()
        .current_dir(dir.path())
        .env("EMPTY_KEY", "")
        .arg("--config")
        .arg(&config)
        .args(["reconcile", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tenants.acme.reconcile.stripe.api_key is missing or empty"),
        "{err}"
    );
}
