use super::*;
use secrecy::ExposeSecret;
use storefold_core::money::Currency;
use storefold_providers::AdyenCapture;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_apply_to_an_empty_file() {
    let c = Config::from_toml_str("", env(&[])).unwrap();
    assert_eq!(c.kafka.partitions, 12);
    assert_eq!(c.ingest.max_body_bytes, 1024 * 1024);
    assert!(c.tenants.is_empty());
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let err = Config::from_toml_str("[kafka]\nbootstrap_server = \"x\"\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bootstrap_server"), "{err}");
    let err = Config::from_toml_str(
        "[tenants.a.providers.shopify]\nsecret = \"s\"\nsecrte = \"t\"\n",
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tenants.a.providers.shopify"), "{err}");
    assert!(err.contains("secrte"), "{err}");
}

#[test]
fn env_substitution_and_missing_variables() {
    let toml = "[tenants.a.providers.stripe]\nsecret = \"whsec_${K}x\"\n";
    let c = Config::from_toml_str(toml, env(&[("K", "abc")])).unwrap();
    assert_eq!(
        c.tenants["a"].providers["stripe"].secret.expose_secret(),
        "whsec_abcx"
    );
    let err = Config::from_toml_str(toml, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenants.a.providers.stripe.secret"), "{err}");
    assert!(err.contains("K is not set"), "{err}");
    let lit = Config::from_toml_str(
        "[tenants.a.providers.stripe]\nsecret = \"$${NOT}\"\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(
        lit.tenants["a"].providers["stripe"].secret.expose_secret(),
        "${NOT}"
    );
}

#[test]
fn storefold_env_overrides_nested_keys_and_types() {
    let c = Config::from_toml_str(
        "[kafka]\npartitions = 3\n",
        env(&[
            ("STOREFOLD_KAFKA__PARTITIONS", "6"),
            ("STOREFOLD_KAFKA__BOOTSTRAP_SERVERS", "broker:9093"),
            ("STOREFOLD_TENANTS__B__PROVIDERS__SHOPIFY__SECRET", "xyz"),
            ("STOREFOLD_CONFIG", "ignored: a command-line option"),
        ]),
    )
    .unwrap();
    assert_eq!(c.kafka.partitions, 6);
    assert_eq!(c.kafka.bootstrap_servers, "broker:9093");
    assert_eq!(
        c.tenants["b"].providers["shopify"].secret.expose_secret(),
        "xyz"
    );
    let err = Config::from_toml_str("", env(&[("STOREFOLD_KAFKA__NOPE", "1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_configured_provider_without_a_secret_refuses_to_start() {
    let err = Config::from_toml_str("[tenants.a.providers.shopify]\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenants.a.providers.shopify.secret"), "{err}");
    let err = Config::from_toml_str("[tenants.a.providers.paypal]\nsecret = \"pem\"\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("webhook_id"), "{err}");
    let err = Config::from_toml_str("[tenants.a.providers.shopifyy]\nsecret = \"s\"\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown provider"), "{err}");
}

#[test]
fn tenant_ids_and_origins_are_checked() {
    let err = Config::from_toml_str("[tenants.Acme]\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenant id"), "{err}");
    let err = Config::from_toml_str(
        "[tenants.a]\ncollect_origins = [\"shop.example\"]\n",
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not an origin"), "{err}");
}

#[test]
fn tenant_stores_and_payments_become_map_options() {
    let c = Config::from_toml_str("[tenants.a]\n", env(&[])).unwrap();
    assert_eq!(
        c.tenants["a"].map_options().unwrap(),
        MapOptions::default(),
        "the defaults are the providers' defaults"
    );
    let c = Config::from_toml_str(
        r#"
[tenants.woo]
stores = ["woocommerce", "shopify"]
reporting_currency = "eur"
cost_currency = "chf"
[tenants.woo.payments.stripe]
order_metadata_keys = ["woo_order", "order_id"]
order_pattern = '^WC-(?P<order>\d+)$'
[tenants.woo.payments.paypal]
order_fields = ["invoice_id"]
store = "shopify"
[tenants.woo.payments.adyen]
capture = "manual"
merchant_reference_pattern = '^(\d+)-\d+$'
store = "woocommerce"
"#,
        env(&[]),
    )
    .unwrap();
    let o = c.map_options().unwrap().remove("woo").unwrap();
    assert_eq!(o.stores, ["woocommerce", "shopify"]);
    assert_eq!(o.stripe.fields, ["woo_order", "order_id"]);
    assert_eq!(o.stripe.store, None);
    assert_eq!(o.store_for("stripe"), "woocommerce");
    let p = o.stripe.pattern.as_ref().unwrap();
    assert_eq!(p.order_id("WC-727"), Some("727"));
    assert_eq!(o.paypal.fields, ["invoice_id"]);
    assert_eq!(o.store_for("paypal"), "shopify");
    assert_eq!(o.adyen_capture, AdyenCapture::Manual);
    assert_eq!(o.cost_currency, Some(Currency::from_code("CHF").unwrap()));
    assert_eq!(
        o.adyen.pattern.as_ref().unwrap().order_id("1001-2"),
        Some("1001")
    );
    let fold = c.fold_config().unwrap();
    assert_eq!(fold.reporting["woo"].code(), "EUR");
    assert!(fold.rates.is_empty());
}

#[test]
fn unusable_tenant_settings_name_their_key() {
    for (toml, key, says) in [
        (
            "[tenants.a]\nstores = [\"magento\"]\n",
            "tenants.a.stores",
            "magento",
        ),
        ("[tenants.a]\nstores = []\n", "tenants.a.stores", "empty"),
        (
            "[tenants.a]\nreporting_currency = \"EURO\"\n",
            "tenants.a.reporting_currency",
            "EURO",
        ),
        (
            "[tenants.a]\ncost_currency = \"XAU\"\n",
            "tenants.a.cost_currency",
            "XAU",
        ),
        (
            "[tenants.a.payments.stripe]\norder_pattern = \"^WC-\\\\d+$\"\n",
            "tenants.a.payments.stripe.order_pattern",
            "no group",
        ),
        (
            "[tenants.a.payments.paypal]\norder_pattern = \"(\"\n",
            "tenants.a.payments.paypal.order_pattern",
            "regex",
        ),
        (
            "[tenants.a.payments.adyen]\nmerchant_reference_pattern = \"x\"\n",
            "tenants.a.payments.adyen.merchant_reference_pattern",
            "no group",
        ),
        (
            "[tenants.a.payments.stripe]\nstore = \"woocommerce\"\n",
            "tenants.a.payments.stripe.store",
            "not one of the tenant's stores",
        ),
        (
            "[tenants.a.payments.paypal]\norder_fields = [\"reference_id\"]\n",
            "tenants.a.payments.paypal.order_fields",
            "reference_id",
        ),
        (
            "[tenants.a.payments.adyen]\ncapture = \"delayed\"\n",
            "tenants.a.payments.adyen.capture",
            "delayed",
        ),
        (
            "[tenants.a.payments.klarna]\n",
            "tenants.a.payments",
            "klarna",
        ),
        (
            "[processor]\npark_timeout_hours = 0\n",
            "processor.park_timeout_hours",
            "positive",
        ),
    ] {
        let err = Config::from_toml_str(toml, env(&[]))
            .expect_err(toml)
            .to_string();
        assert!(err.contains(key), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
    }
}

#[test]
fn the_rates_file_is_read_at_fold_config_and_a_bad_one_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("rates.csv");
    std::fs::write(&good, "date,from,to,rate\n2025-03-01,USD,EUR,0.92\n").unwrap();
    let toml = |path: &Path| {
        format!(
            "[rates]\nfile = {:?}\nmax_age_days = 3\n[tenants.a]\nreporting_currency = \"EUR\"\n",
            path.display().to_string()
        )
    };
    let c = Config::from_toml_str(&toml(&good), env(&[])).unwrap();
    assert_eq!(c.rates.max_age_days, 3);
    let fold = c.fold_config().unwrap();
    let usd = Currency::from_code("USD").unwrap();
    let eur = Currency::from_code("EUR").unwrap();
    let at = time::macros::datetime!(2025-03-03 12:00 UTC);
    assert_eq!(
        fold.rates
            .convert(storefold_core::Money::new(1000, usd), eur, at)
            .map(|c| c.amount),
        Some(920),
        "three days later, within max_age_days"
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "2025-03-01,USD,EUR,zero\n").unwrap();
    let err = Config::from_toml_str(&toml(&bad), env(&[]))
        .unwrap()
        .fold_config()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rates.file") && err.contains("line 1"),
        "{err}"
    );
    let missing = dir.path().join("missing.csv");
    let err = Config::from_toml_str(&toml(&missing), env(&[]))
        .unwrap()
        .fold_config()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rates.file") && err.contains("cannot read"),
        "{err}"
    );
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "date,from,to,rate\n").unwrap();
    let err = Config::from_toml_str(&toml(&empty), env(&[]))
        .unwrap()
        .fold_config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("no rate"), "{err}");
}

#[test]
fn secrets_never_reach_debug_output() {
    let c = Config::from_toml_str(
        "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n[tenants.a.providers.shopify]\nsecret = \"topsecret\"\n",
        env(&[]),
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("topsecret"), "{shown}");
}

#[test]
fn the_schema_registry_section_is_read_and_checked() {
    let c = Config::from_toml_str(
        "[schema_registry]\nurl = \"https://sr.example\"\nsubject_name_strategy = \"record_name\"\nusername = \"key\"\npassword = \"${SR_SECRET}\"\n",
        env(&[("SR_SECRET", "hunter2")]),
    )
    .unwrap();
    let sr = c.schema_registry.as_ref().unwrap();
    assert_eq!(
        sr.subject_name_strategy,
        storefold_codec::registry::SubjectNameStrategy::RecordName
    );
    assert_eq!(sr.password.as_ref().unwrap().expose_secret(), "hunter2");
    assert_eq!(sr.timeout_ms, 10_000);
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(sr.client().unwrap().url(), "https://sr.example");
    let default =
        Config::from_toml_str("[schema_registry]\nurl = \"http://sr:8081\"\n", env(&[])).unwrap();
    assert_eq!(
        default.schema_registry.unwrap().subject_name_strategy,
        storefold_codec::registry::SubjectNameStrategy::TopicName
    );
    for (toml, needle) in [
        ("url = \"sr:8081\"", "http(s) URL"),
        ("url = \"http://u:p@sr:8081\"", "credentials"),
        ("url = \"http://sr\"\nusername = \"key\"", "go together"),
        ("url = \"http://sr\"\ntimeout_ms = 0", "timeout_ms"),
        (
            "url = \"http://sr\"\nsubject_name_strategy = \"topic\"",
            "subject_name_strategy",
        ),
    ] {
        let err = Config::from_toml_str(&format!("[schema_registry]\n{toml}\n"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn sink_sections_are_kept_raw_and_never_shown() {
    let c = Config::from_toml_str(
        "[sinks]\nretry_max_ms = 900\n[sinks.webhook]\nurl = \"https://hooks.example/in\"\nsecret = \"whk-${HOOK}\"\n\
         [sinks.hubspot.tenants.a]\ntoken = \"pat-hunter2\"\n",
        env(&[
            ("HOOK", "hunter2"),
            ("STOREFOLD_SINKS__WEBHOOK__BATCH_SIZE", "25"),
            ("STOREFOLD_SINKS__POSTGRES__URL", "postgres://u:p@db/crm"),
        ]),
    )
    .unwrap();
    assert_eq!(c.sinks.retry_max_ms, 900);
    assert_eq!(c.sinks.retry_initial_ms, 200, "the default");
    let names: Vec<&String> = c.sinks.sections.keys().collect();
    assert_eq!(names, ["hubspot", "postgres", "webhook"]);
    let webhook = c.sinks.section("webhook").unwrap();
    assert_eq!(
        webhook["secret"].as_str(),
        Some("whk-hunter2"),
        "substituted"
    );
    assert_eq!(webhook["batch_size"].as_integer(), Some(25), "overridden");
    assert_eq!(
        c.sinks.section("postgres").unwrap()["url"].as_str(),
        Some("postgres://u:p@db/crm"),
        "an override alone creates the section"
    );
    assert!(c.sinks.section("nowhere").is_none());
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("u:p@"), "{shown}");
    assert!(shown.contains("\"webhook\""), "{shown}");
}

#[test]
fn a_value_under_sinks_is_a_shared_setting_or_an_error() {
    for (toml, says) in [
        (
            "[sinks]\nretry_max = 5\n",
            "unknown setting sinks.retry_max",
        ),
        (
            "[sinks]\npostgres = \"db\"\n",
            "unknown setting sinks.postgres",
        ),
        ("[sinks]\nretry_max_ms = \"soon\"\n", "sinks.retry_max_ms"),
        ("[sinks]\nretry_initial_ms = 0\n", "sinks.retry_initial_ms"),
        (
            "[sinks]\nmax_retry_after_secs = 0\n",
            "max_retry_after_secs",
        ),
        ("[sinks]\ncircuit_open_ms = 0\n", "circuit_open_ms"),
    ] {
        let err = Config::from_toml_str(toml, env(&[]))
            .expect_err(toml)
            .to_string();
        assert!(err.contains(says), "{toml}: {err}");
    }
    let err = Config::from_toml_str("", env(&[("STOREFOLD_SINKS__LISTN", "127.0.0.1:1")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown setting sinks.listn"), "{err}");
    let c = Config::from_toml_str("", env(&[("STOREFOLD_SINKS__LISTEN", "127.0.0.1:9")])).unwrap();
    assert_eq!(c.sinks.listen.port(), 9);
}

#[test]
fn the_processor_memory_budget_defaults_parses_overrides_and_refuses_nonsense() {
    let c = Config::from_toml_str("", env(&[])).unwrap();
    assert_eq!(c.processor.memory_budget_mb, 1024);
    assert_eq!(c.processor.memory_budget_bytes(), 1 << 30);

    let c = Config::from_toml_str("[processor]\nmemory_budget_mb = 256\n", env(&[])).unwrap();
    assert_eq!(c.processor.memory_budget_mb, 256);
    assert_eq!(c.processor.memory_budget_bytes(), 256 << 20);

    let c = Config::from_toml_str(
        "[processor]\nmemory_budget_mb = 256\n",
        env(&[("STOREFOLD_PROCESSOR__MEMORY_BUDGET_MB", "4096")]),
    )
    .unwrap();
    assert_eq!(c.processor.memory_budget_mb, 4096, "the environment wins");

    for (toml, says) in [
        ("[processor]\nmemory_budget_mb = 0\n", "must be positive"),
        (
            "[processor]\nmemory_budget_mb = 1073741824\n",
            "give the budget in MiB",
        ),
    ] {
        let err = Config::from_toml_str(toml, env(&[]))
            .expect_err(toml)
            .to_string();
        assert!(err.contains("processor.memory_budget_mb"), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
    }
    let err = Config::from_toml_str("", env(&[("STOREFOLD_PROCESSOR__MEMORY_BUDGET_MB", "0")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("processor.memory_budget_mb"), "{err}");
    let err = Config::from_toml_str("[processor]\nmemory_budget_mb = -1\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory_budget_mb"), "{err}");
}

#[test]
fn tenant_identity_rules_default_parse_and_refuse_nonsense() {
    let c = Config::from_toml_str("[tenants.a]\n[tenants.b.identity]\nlink_sources = [\"shopify\", \"zendesk\"]\nlink_max_emails = 3\n", env(&[])).unwrap();
    let fold = c.fold_config().unwrap();
    let a = fold.identity_rules("a");
    assert_eq!(
        a.link_sources
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["shopify", "woocommerce"]
    );
    assert_eq!(a.link_max_emails, 10);
    let b = fold.identity_rules("b");
    assert!(b.link_sources.contains("zendesk"));
    assert!(!b.link_sources.contains("woocommerce"));
    assert_eq!(b.link_max_emails, 3);
    assert!(!a.rewrites_emails(), "aliases are off by default");
    let c = Config::from_toml_str(
        "[tenants.g.identity]\nemail_plus_addressing = true\nemail_dots_domains = [\"GMail.com\"]\n",
        env(&[]),
    )
    .unwrap();
    let fold = c.fold_config().unwrap();
    let g = fold.identity_rules("g");
    assert_eq!(
        g.canonical_email("a.nn+shop@gmail.com").as_deref(),
        Some("ann@gmail.com")
    );
    let k = Config::from_toml_str(
        "[tenants.k.identity]\nsecret = \"${ID_KEY}\"\n",
        env(&[("ID_KEY", "a-random-32-byte-key-from-vault!")]),
    )
    .unwrap();
    let fold = k.fold_config().unwrap();
    assert!(fold.key_scope("k").secret.is_some());
    assert!(fold.key_scope("g").secret.is_none());
    assert!(
        !format!("{:?}", fold.identity_rules("k")).contains("vault"),
        "the secret is never printed"
    );
    for (toml, needle) in [
        (
            "[tenants.a.identity]\nlink_sources = [\"phone\"]\n",
            "tenants.a.identity.link_sources: \"phone\"",
        ),
        (
            "[tenants.a.identity]\nlink_max_emails = 1\n",
            "tenants.a.identity.link_max_emails = 1",
        ),
        (
            "[tenants.a.identity]\nemail_dots_domains = [\"@gmail\"]\n",
            "tenants.a.identity.email_dots_domains",
        ),
        (
            "[tenants.a.identity]\nsecret = \"short\"\n",
            "tenants.a.identity.secret must be at least 16",
        ),
    ] {
        let err = Config::from_toml_str(toml, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{toml}: {err}");
    }
}

#[test]
fn raw_encryption_needs_a_long_key_and_an_identity_secret() {
    let ok = "[tenants.a.identity]\nsecret = \"an-identity-secret-1\"\n\
              [tenants.a.raw_encryption]\nkey = \"${RAW}\"\n";
    let c = Config::from_toml_str(ok, env(&[("RAW", &"k".repeat(32))])).unwrap();
    assert_eq!(
        c.tenants["a"].raw_encryption.as_ref().unwrap().key.0,
        "k".repeat(32)
    );
    assert!(
        !format!("{c:?}").contains(&"k".repeat(32)),
        "the key is never shown"
    );
    let err = Config::from_toml_str(ok, env(&[("RAW", "short")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tenants.a.raw_encryption.key must be at least 32 characters"),
        "{err}"
    );
    let err = Config::from_toml_str(
        &format!("[tenants.a.raw_encryption]\nkey = \"{}\"\n", "k".repeat(32)),
        env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("tenants.a.raw_encryption needs tenants.a.identity.secret"),
        "{err}"
    );
}

/// storefold.example.toml with its commented `[tenants.demo.reconcile.*]`
/// sections uncommented: they load, and each source has what it needs.
#[test]
fn the_example_reconcile_sources_load_and_check() {
    let text = include_str!("../../../../storefold.example.toml");
    let (head, tail) = text
        .split_once("# [tenants.demo.reconcile.stripe]")
        .expect("the example has reconcile sources");
    let uncommented: String = std::iter::once("[tenants.demo.reconcile.stripe]".to_string())
        .chain(tail.lines().map(|l| {
            l.strip_prefix("# ")
                .filter(|rest| rest.contains(" = ") || rest.starts_with('['))
                .map_or(String::new(), str::to_string)
        }))
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_toml_str(
        &format!("{head}\n{uncommented}\n"),
        env(&[
            ("DEMO_STRIPE_API_KEY", "rk_test_x"),
            ("DEMO_SHOPIFY_ADMIN_TOKEN", "shpat_x"),
            ("DEMO_WC_CONSUMER_KEY", "ck_x"),
            ("DEMO_WC_CONSUMER_SECRET", "cs_x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.reconcile.listen.port(), 8083);
    let sources = &c.tenants["demo"].reconcile;
    assert_eq!(
        sources.keys().map(String::as_str).collect::<Vec<_>>(),
        ["shopify", "stripe", "woocommerce"]
    );
    for (p, s) in sources {
        s.check("demo", p).unwrap();
    }
    assert_eq!(sources["shopify"].leak_per_second, 2.0);
}

#[test]
fn a_reconcile_source_without_credentials_is_refused_by_name() {
    let c = Config::from_toml_str(
        "[tenants.a.reconcile.stripe]\napi_key = \"${EMPTY}\"\n[tenants.a.reconcile.woocommerce]\nconsumer_key = \"ck\"\nconsumer_secret = \"cs\"\n",
        env(&[("EMPTY", "")]),
    )
    .unwrap();
    let r = &c.tenants["a"].reconcile;
    let err = r["stripe"].check("a", "stripe").unwrap_err();
    assert!(err.contains("tenants.a.reconcile.stripe.api_key"), "{err}");
    let err = r["woocommerce"].check("a", "woocommerce").unwrap_err();
    assert!(err.contains("base_url"), "{err}");
    let err = Config::from_toml_str("[tenants.a.reconcile.paypal]\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenants.a.reconcile.paypal"), "{err}");
}
