//! Operating storefold: the files under deploy/ and the metrics they rely on.
//!
//! - promtool accepts the alert rules and the Prometheus configuration, and the
//!   rules' unit tests (deploy/prometheus/alerts_test.yaml) pass;
//! - every PromQL expression of the Grafana dashboard is valid PromQL, and the
//!   dashboard and the alerts name only metrics the binaries export. The exported
//!   set is read from the metric registrations in crates/*/src (a metric that only
//!   appears after a rare event, such as a dead letter, is in no scrape of a short
//!   run); a real scrape of running roles then confirms that reading;
//! - real `/metrics` scrapes of the ingest, the processor and two sinks, each run
//!   as a process of the storefold binary against a broker process, pass
//!   `promtool check metrics`;
//! - the compose file validates against the compose-spec schema and agrees with its
//!   storefold.toml, the Dockerfile, Prometheus' and Grafana's configuration;
//! - the Helm chart renders and lints (strict) with Helm's own SDK, with the default
//!   values and with every option on; the manifests validate against Kubernetes'
//!   schemas and agree with what the binary expects (ports, probes, configuration,
//!   state directory, non-root);
//! - the Dockerfile: its stages, a non-root user, and a runtime stage that has every
//!   library the binary links.
//!
//! The tools come from `make deps`: promtool from Debian's prometheus package, the
//! Python ones from deploy/requirements-test.txt. A missing tool fails the test with
//! a message that says so; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use regex::Regex;
use serde::Deserialize as _;
use serde_json::{Value, json};
use storefold_providers::ProviderKind;
use storefold_runtime::config::Config;
use storefold_runtime::kafka::topic_specs;
use storefold_sinks::postgres::PostgresSinkConfig;
use storefold_sinks::registry;
use storefold_testkit::broker::BrokerProcess;
use storefold_testkit::{free_port, samples};

// ------------------------------------------------------------------ files, tools

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A YAML file as JSON values, with `<<` merge keys applied (compose uses them).
fn yaml(path: &Path) -> Value {
    let mut v: serde_norway::Value = serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
    serde_json::to_value(v).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every non-empty document of a multi-document YAML text.
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| {
            let v = serde_norway::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}\n{text}"));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{what}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Where a tool the checks need comes from.
fn install_hint(program: &str) -> &'static str {
    match program {
        "promtool" => "promtool comes with Debian's prometheus package",
        "readelf" => "readelf comes with Debian's binutils (build-essential)",
        _ => "the Python tools come from deploy/requirements-test.txt",
    }
}

/// Runs `program`, feeding `stdin`; panics naming `make deps` when it is missing.
fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{program} is not installed: run `make deps` ({})",
            install_hint(program)
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    };
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).expect("write tool input");
    }
    child.wait_with_output().expect("wait for the tool")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a tool that must succeed; returns its stdout.
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run_tool(program, args, None);
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics naming `make deps` unless python3 can import every module.
fn require_python(modules: &[&str]) {
    let code = format!("import {}", modules.join(", "));
    let out = run_tool("python3", &["-c", &code], None);
    assert!(
        out.status.success(),
        "python3 cannot import {}: run `make deps` (it installs deploy/requirements-test.txt)\n{}",
        modules.join(", "),
        text(&out)
    );
}

/// Every `${NAME}` a configuration text references.
fn env_references(toml: &str) -> BTreeSet<String> {
    let re = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").unwrap();
    re.captures_iter(toml).map(|c| c[1].to_string()).collect()
}

/// Loads a storefold configuration with every variable it references set to `x`
/// (or to `given`'s value); a `…_SHA256` variable (an operator token's hash) to
/// a hash of its name.
fn load_config(toml: &str, given: &BTreeMap<String, String>, what: &str) -> Config {
    let env = env_references(toml)
        .into_iter()
        .map(|k| {
            let v = given.get(&k).cloned().unwrap_or_else(|| {
                if k.ends_with("_SHA256") {
                    storefold_runtime::operator::hash_token(&k)
                } else {
                    "x".into()
                }
            });
            (k, v)
        })
        .collect::<Vec<_>>();
    let config = Config::from_toml_str(toml, env)
        .unwrap_or_else(|e| panic!("{what} is not a configuration storefold loads: {e}"));
    registry::check(&config)
        .unwrap_or_else(|e| panic!("{what}: a sink section storefold refuses: {e}"));
    config
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

// ------------------------------------------------------------------ metrics

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Histogram,
    /// A counter or a gauge: one series per label set, under its own name.
    Single,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The metrics the binaries register, read from crates/*/src: every `storefold_…`
/// literal that is the first argument of a metric constructor (`Opts::new`,
/// `HistogramOpts::new`, `IntGauge::new`, … or a helper whose name says gauge,
/// counter or histogram). HubSpot property names and the like, also `storefold_…`,
/// are no constructor's argument.
fn exported_metrics() -> BTreeMap<String, Kind> {
    let call = Regex::new(
        r#"([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)\s*\(\s*"(storefold_[a-z0-9_]+)""#,
    )
    .unwrap();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(repo().join("crates"))
        .expect("crates/")
        .flatten()
    {
        rust_files(&krate.path().join("src"), &mut files);
    }
    let mut found = BTreeMap::new();
    for file in files {
        let source = read(&file);
        for c in call.captures_iter(&source) {
            let callee = &c[1];
            let last = callee.rsplit("::").next().unwrap_or(callee);
            let lower = last.to_ascii_lowercase();
            let constructor = last == "new"
                || last == "with_opts"
                || ["gauge", "counter", "histogram"]
                    .iter()
                    .any(|k| lower.contains(k));
            if !constructor {
                continue;
            }
            let kind = if callee.ends_with("HistogramOpts::new") {
                Kind::Histogram
            } else {
                Kind::Single
            };
            if let Some(before) = found.insert(c[2].to_string(), kind) {
                assert_eq!(
                    before,
                    kind,
                    "{} is registered both as a histogram and not ({})",
                    &c[2],
                    file.display()
                );
            }
        }
    }
    assert!(
        found.len() >= 20,
        "found only {} metric registrations in crates/*/src; has the registration style changed? {found:?}",
        found.len()
    );
    found
}

/// The metric names a PromQL expression selects.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*""#).unwrap();
    let braces = Regex::new(r"\{[^}]*\}").unwrap();
    let ranges = Regex::new(r"\[[^\]]*\]").unwrap();
    let grouping =
        Regex::new(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)").unwrap();
    let ident = Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    ];
    let s = strings.replace_all(expr, "\"\"");
    let s = braces.replace_all(&s, " ");
    let s = ranges.replace_all(&s, " ");
    let s = grouping.replace_all(&s, " ");
    let mut names = BTreeSet::new();
    for m in ident.find_iter(&s) {
        let preceded_by_digit = s[..m.start()]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit() || c == '.');
        let is_call = s[m.end()..].trim_start().starts_with('(');
        let word = m.as_str();
        if preceded_by_digit || is_call || KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
            continue;
        }
        names.insert(word.to_string());
    }
    names
}

/// Why `name` is not a series the binaries export, if it is not.
fn not_exported(name: &str, exported: &BTreeMap<String, Kind>) -> Option<String> {
    // Prometheus' own series for every target.
    if name == "up" {
        return None;
    }
    match exported.get(name) {
        Some(Kind::Single) => return None,
        Some(Kind::Histogram) => {
            return Some(format!(
                "{name} is a histogram: select {name}_bucket, _sum or _count"
            ));
        }
        None => {}
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && exported.get(base) == Some(&Kind::Histogram)
        {
            return None;
        }
    }
    Some(format!(
        "{name} is not a metric any storefold binary exports"
    ))
}

/// The name a series belongs to (`x_bucket` of histogram `x` is `x`).
fn family(name: &str, exported: &BTreeMap<String, Kind>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && exported.get(base) == Some(&Kind::Histogram)
        {
            return base.to_string();
        }
    }
    name.to_string()
}

/// (where, expression) of every alert rule.
fn alert_exprs() -> Vec<(String, String)> {
    let rules = yaml(&deploy("prometheus/alerts.yaml"));
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("alert or record name");
            out.push((
                format!("alert {name}"),
                str_of(&rule["expr"], name).to_string(),
            ));
        }
    }
    out
}

fn dashboard() -> Value {
    let path = deploy("grafana/storefold.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// (where, expression) of every query of the dashboard.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push((format!("panel {title:?}"), e.clone()));
                }
                for child in m.values() {
                    walk(child, title, out);
                }
            }
            Value::Array(a) => {
                for child in a {
                    walk(child, title, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard(), "", &mut out);
    out
}

/// Grafana's interval variables replaced by durations, for promtool.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

// ------------------------------------------------------------------ Prometheus

#[test]
fn alert_rules_and_prometheus_config_pass_promtool() {
    let rules = deploy("prometheus/alerts.yaml");
    let out = run_ok("promtool", &["check", "rules", rules.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    // The rules' own unit tests: each alert fires on the shape it is meant for,
    // and not on its look-alikes.
    let tests = deploy("prometheus/alerts_test.yaml");
    let out = run_ok("promtool", &["test", "rules", tests.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
    // The compose stack's Prometheus configuration, with its rule file.
    let config = deploy("prometheus/prometheus.yml");
    let out = run_ok("promtool", &["check", "config", config.to_str().unwrap()]);
    assert!(out.contains("1 rule files found"), "{out}");

    // Every alert the operators were promised exists.
    let names: BTreeSet<String> = alert_exprs()
        .into_iter()
        .map(|(w, _)| w.trim_start_matches("alert ").to_string())
        .collect();
    for required in [
        "StorefoldIngestServerErrors",
        "StorefoldIngestSignatureFailureSpike",
        "StorefoldIngestNoEventsFromProvider",
        "StorefoldProcessorLagGrowing",
        "StorefoldProcessorDeadLetters",
        "StorefoldProcessorTaskFailures",
        "StorefoldProcessorRestoreStuck",
        "StorefoldSinkDeadLetters",
        "StorefoldSinkCircuitOpen",
        "StorefoldTargetDown",
    ] {
        assert!(names.contains(required), "alerts.yaml has no {required}");
    }
}

#[test]
fn dashboard_queries_are_valid_promql_and_the_dashboard_is_well_formed() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "storefold");
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "the dashboard needs its datasource variable"
    );
    let mut ids = BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let title = str_of(&panel["title"], "panel title");
        assert!(
            ids.insert(panel["id"].as_i64().expect("panel id")),
            "duplicate panel id at {title:?}"
        );
        assert!(panel["gridPos"].is_object(), "{title:?} has no gridPos");
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{title:?} must use the datasource variable"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title:?} has no query");
        }
    }

    // promtool has no "check expression": each query becomes a recording rule.
    let exprs = dashboard_exprs();
    assert!(exprs.len() > 30, "only {} queries", exprs.len());
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| {
            json!({"record": format!("storefold_dashboard:query_{i}"), "expr": without_grafana_variables(e)})
        })
        .collect();
    let doc = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard_rules.yaml");
    std::fs::write(&path, serde_norway::to_string(&doc).unwrap()).unwrap();
    let out = run_tool(
        "promtool",
        &["check", "rules", path.to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}\nqueries:\n{}",
        text(&out),
        exprs
            .iter()
            .enumerate()
            .map(|(i, (w, e))| format!("query_{i} ({w}): {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn dashboard_and_alerts_name_only_exported_metrics() {
    let exported = exported_metrics();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in alert_exprs().into_iter().chain(dashboard_exprs()) {
        let names = metric_names(&without_grafana_variables(&expr));
        assert!(!names.is_empty(), "{place}: no metric found in {expr}");
        for n in names {
            if let Some(why) = not_exported(&n, &exported) {
                problems.push(format!("{place}: {why}"));
            }
            if n.ends_with("_bucket") && !expr.contains("histogram_quantile") {
                problems.push(format!(
                    "{place}: {n} outside histogram_quantile (buckets are cumulative counters)"
                ));
            }
            used.insert(family(&n, &exported));
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboard or the alerts use what the binaries do not export:\n{}\n\nexported: {:?}",
        problems.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );

    // What ARCHITECTURE §7 and the issue ask the dashboard to show.
    let on_dashboard: BTreeSet<String> = dashboard_exprs()
        .into_iter()
        .flat_map(|(_, e)| metric_names(&without_grafana_variables(&e)))
        .map(|n| family(&n, &exported))
        .collect();
    for required in [
        "storefold_ingest_requests_total",
        "storefold_ingest_signature_failures_total",
        "storefold_ingest_publish_duration_seconds",
        "storefold_processor_events_total",
        "storefold_processor_commit_duration_seconds",
        "storefold_processor_batch_events",
        "storefold_processor_consumer_lag",
        "storefold_processor_restore_remaining_records",
        "storefold_processor_rocksdb_live_bytes",
        "storefold_processor_outbox_depth",
        "storefold_processor_dlq_total",
        "storefold_sink_writes_total",
        "storefold_sink_retries_total",
        "storefold_sink_dlq_total",
        "storefold_sink_circuit_state",
        "storefold_sink_end_to_end_seconds",
    ] {
        assert!(
            on_dashboard.contains(required),
            "the dashboard does not show {required}"
        );
    }
    let unused: Vec<&String> = exported.keys().filter(|k| !used.contains(*k)).collect();
    eprintln!("exported but on no panel and in no alert: {unused:?}");
}

// ------------------------------------------------------------------ a real scrape

/// A process of the storefold binary, killed when dropped.
struct Role {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Role {
    fn start(bin: &Path, dir: &Path, config: &Path, name: &str, args: &[&str]) -> Role {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Role {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        format!(
            "--- {} log ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early ({status})\n{}", self.name, self.log());
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator token of the scrape test's configuration (metrics scope): the
/// processor's `/metrics` answers 401 without it, the other roles ignore it.
const METRICS_TOKEN: &str = "sft_ops-test-metrics-token";

/// GET over HTTP/1.0 with [`METRICS_TOKEN`]: (status, body), or None when
/// nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {METRICS_TOKEN}\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The value of the first sample of `series_prefix` (a name with some labels).
fn sample_value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

fn wait_for(
    what: &str,
    timeout: Duration,
    roles: &mut [&mut Role],
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return;
        }
        for r in roles.iter_mut() {
            r.assert_running();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = roles.iter().map(|r| r.log()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A webhook receiver for the webhook sink: answers 200 to every POST.
struct Receiver {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if answer(stream).is_ok() {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Receiver {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (headers, then Content-Length bytes) and answers 200.
fn answer(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

/// The storefold binary the workspace's test build made (`cargo nextest run
/// --workspace` builds it for crates/cli's tests), else built now with the same
/// profile, so that RocksDB is not compiled a second time.
fn storefold_binary() -> PathBuf {
    storefold_testkit::workspace_binary("storefold", "storefold")
}

#[test]
fn real_metrics_scrapes_pass_promtool_and_match_the_registrations() {
    let bin = storefold_binary();
    let exported = exported_metrics();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(1);
    let receiver = Receiver::start();
    let (ingest_port, processor_port, webhook_port, hubspot_port) =
        (free_port(), free_port(), free_port(), free_port());
    // Nothing listens here: the HubSpot sink's requests fail, are counted and retried.
    let nowhere = free_port();
    let toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\npartitions = 2\n\
         [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
         [ingest]\nlisten = \"127.0.0.1:{ingest_port}\"\n\
         [processor]\nlisten = \"127.0.0.1:{processor_port}\"\nstate_dir = \"{state}\"\ncommit_interval_ms = 200\n\
         [sinks]\nretry_initial_ms = 50\nretry_max_ms = 500\ncircuit_failure_threshold = 2\ncircuit_open_ms = 500\n\
         [sinks.webhook]\nurl = \"http://127.0.0.1:{recv}/storefold\"\nsecret = \"receiver-secret\"\nlinger_ms = 20\n\
         [sinks.hubspot]\ntoken = \"test-token\"\nbase_url = \"http://127.0.0.1:{nowhere}\"\nlinger_ms = 20\n\
         [log]\nlevel = \"warn,librdkafka=error,rdkafka=error\"\n\
         [[operator.tokens]]\nname = \"prometheus\"\nsha256 = \"{metrics_hash}\"\nmetrics = true\n{tenants}",
        metrics_hash = storefold_runtime::operator::hash_token(METRICS_TOKEN),
        bootstrap = broker.bootstrap(),
        state = dir.path().join("state").display(),
        recv = receiver.port,
        tenants = samples::tenant_toml("demo"),
    );
    let config_path = dir.path().join("storefold.toml");
    std::fs::write(&config_path, &toml).unwrap();
    let config = Config::from_toml_str(&toml, Vec::new()).expect("test configuration");
    for spec in topic_specs(&config.kafka, &registry::names()) {
        broker
            .create_topic(&spec.name, spec.partitions)
            .expect("create topic");
    }

    let cfg = config_path.as_path();
    let mut ingest = Role::start(&bin, dir.path(), cfg, "ingest", &["ingest"]);
    let mut processor = Role::start(&bin, dir.path(), cfg, "processor", &["process"]);
    let hook_listen = format!("127.0.0.1:{webhook_port}");
    let mut webhook = Role::start(
        &bin,
        dir.path(),
        cfg,
        "sink-webhook",
        &["sink", "webhook", "--listen", &hook_listen],
    );
    let hub_listen = format!("127.0.0.1:{hubspot_port}");
    let mut hubspot = Role::start(
        &bin,
        dir.path(),
        cfg,
        "sink-hubspot",
        &["sink", "hubspot", "--listen", &hub_listen],
    );
    wait_for(
        "the ingest to be ready",
        Duration::from_secs(60),
        &mut [&mut ingest],
        || http_get(ingest_port, "/readyz").is_some_and(|(s, _)| s == 200),
    );

    // Signed webhooks through the real CLI, one with a wrong secret (401).
    let send = |provider: ProviderKind, secret: Option<&str>| -> Output {
        let sample = samples::sample(provider);
        let file = dir.path().join(format!("{}.json", provider.name()));
        std::fs::write(&file, &sample.body).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg("--config")
            .arg(cfg)
            .args(["webhook", "send", "--provider", provider.name()])
            .args(["--topic", sample.topic, "--tenant", "demo"]);
        if let Some(s) = secret {
            cmd.args(["--secret", s]);
        }
        cmd.arg(&file).output().expect("storefold webhook send")
    };
    for p in [ProviderKind::Shopify, ProviderKind::Stripe] {
        let out = send(p, None);
        assert!(
            out.status.success(),
            "{p:?} webhook refused: {}",
            text(&out)
        );
    }
    let out = send(ProviderKind::Shopify, Some("not-the-secret"));
    assert!(
        !out.status.success(),
        "a wrong signature was accepted: {}",
        text(&out)
    );

    let scrape = |port: u16| -> String {
        match http_get(port, "/metrics") {
            Some((200, body)) => body,
            other => panic!("GET /metrics on {port}: {other:?}"),
        }
    };
    let mut roles = [&mut ingest, &mut processor, &mut webhook, &mut hubspot];
    wait_for(
        "the processor to apply the webhooks",
        Duration::from_secs(120),
        &mut roles,
        || {
            http_get(processor_port, "/metrics").is_some_and(|(_, m)| {
                sample_value(
                    &m,
                    "storefold_processor_events_total",
                    &[("outcome", "applied")],
                )
                .is_some_and(|v| v >= 1.0)
            })
        },
    );
    // The processor measures its lag every few seconds.
    wait_for(
        "the processor to report its lag",
        Duration::from_secs(60),
        &mut roles,
        || {
            http_get(processor_port, "/metrics").is_some_and(|(_, m)| {
                sample_value(&m, "storefold_processor_consumer_lag", &[]).is_some()
            })
        },
    );
    wait_for(
        "the webhook sink to deliver a projection",
        Duration::from_secs(120),
        &mut roles,
        || {
            receiver.requests.load(Ordering::SeqCst) > 0
                && http_get(webhook_port, "/metrics").is_some_and(|(_, m)| {
                    sample_value(
                        &m,
                        "storefold_sink_writes_total",
                        &[("sink", "webhook"), ("outcome", "written")],
                    )
                    .is_some_and(|v| v >= 1.0)
                })
        },
    );
    wait_for(
        "the HubSpot sink to retry its unreachable API",
        Duration::from_secs(120),
        &mut roles,
        || {
            http_get(hubspot_port, "/metrics").is_some_and(|(_, m)| {
                sample_value(&m, "storefold_sink_retries_total", &[("sink", "hubspot")])
                    .is_some_and(|v| v >= 1.0)
            })
        },
    );

    let mut seen = BTreeSet::new();
    let type_line = Regex::new(r"(?m)^# TYPE (\S+) (\S+)$").unwrap();
    for (role, port) in [
        ("ingest", ingest_port),
        ("processor", processor_port),
        ("sink webhook", webhook_port),
        ("sink hubspot", hubspot_port),
    ] {
        let body = scrape(port);
        let lint = run_tool("promtool", &["check", "metrics"], Some(&body));
        assert!(
            lint.status.success() && text(&lint).trim().is_empty(),
            "promtool check metrics on the {role}'s /metrics:\n{}\n--- scrape ---\n{body}",
            text(&lint)
        );
        for c in type_line.captures_iter(&body) {
            let (name, kind) = (&c[1], &c[2]);
            if !name.starts_with("storefold_") {
                continue;
            }
            let expected = if kind == "histogram" {
                Kind::Histogram
            } else {
                Kind::Single
            };
            assert_eq!(
                exported.get(name),
                Some(&expected),
                "the {role} exports {name} ({kind}), which the reading of crates/*/src \
                 does not find as such: the registration check would miss it"
            );
            seen.insert(name.to_string());
        }
    }
    let referenced: BTreeSet<String> = alert_exprs()
        .into_iter()
        .chain(dashboard_exprs())
        .flat_map(|(_, e)| metric_names(&without_grafana_variables(&e)))
        .map(|n| family(&n, &exported))
        .filter(|n| n.starts_with("storefold_"))
        .collect();
    let unseen: Vec<&String> = referenced.difference(&seen).collect();
    eprintln!(
        "scraped {} storefold metric families; used by the dashboard or alerts but in no \
         scrape of this short run (they appear with their first event, e.g. a dead \
         letter, or belong to the PostgreSQL sink, which this test does not run): {unseen:?}",
        seen.len()
    );
    for must in [
        "storefold_ingest_requests_total",
        "storefold_ingest_signature_failures_total",
        "storefold_ingest_publish_duration_seconds",
        "storefold_processor_events_total",
        "storefold_processor_commit_duration_seconds",
        "storefold_processor_consumer_lag",
        "storefold_sink_writes_total",
        "storefold_sink_end_to_end_seconds",
        "storefold_sink_circuit_state",
        "storefold_sink_webhook_requests_total",
        "storefold_sink_hubspot_requests_total",
    ] {
        assert!(seen.contains(must), "no role exported {must} in this run");
    }
}

// ------------------------------------------------------------------ compose

#[test]
fn compose_stack_validates_and_agrees_with_its_configuration() {
    require_python(&["check_jsonschema"]);
    let compose_path = deploy("compose/compose.yaml");
    let schema = run_tool(
        "python3",
        &[
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            compose_path.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        schema.status.success(),
        "compose.yaml does not validate against the compose-spec schema:\n{}",
        text(&schema)
    );

    let compose_dir = deploy("compose");
    let compose = yaml(&compose_path);
    let services = compose["services"].as_object().expect("services");
    for s in [
        "kafka",
        "topics",
        "postgres",
        "ingest",
        "processor",
        "sink-postgres",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(s), "compose.yaml has no service {s}");
    }
    let declared_volumes: BTreeSet<&String> = compose["volumes"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();

    // Variables compose interpolates must all have a value in .env.example.
    let dotenv: BTreeMap<String, String> = read(&compose_dir.join(".env.example"))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let interpolated = Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    for c in interpolated.captures_iter(&read(&compose_path)) {
        assert!(
            dotenv.contains_key(&c[1]),
            "compose.yaml uses ${{{}}}, which .env.example does not set",
            &c[1]
        );
    }

    // Kafka in KRaft mode, advertising the address the configuration uses.
    let kafka = &services["kafka"];
    assert!(str_of(&kafka["image"], "kafka image").starts_with("apache/kafka:"));
    let roles = str_of(&kafka["environment"]["KAFKA_PROCESS_ROLES"], "roles");
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{roles}"
    );
    assert!(
        !read(&compose_path)
            .to_ascii_lowercase()
            .contains("zookeeper"),
        "KRaft: no ZooKeeper"
    );

    // The configuration every storefold container mounts.
    let toml_path = compose_dir.join("storefold.toml");
    let toml = read(&toml_path);
    let config = load_config(&toml, &dotenv, "deploy/compose/storefold.toml");
    let advertised = str_of(
        &kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"],
        "advertised",
    );
    assert!(
        advertised.contains(&format!("PLAINTEXT://{}", config.kafka.bootstrap_servers)),
        "the configuration's bootstrap {} is not what Kafka advertises ({advertised})",
        config.kafka.bootstrap_servers
    );
    assert_eq!(config.kafka.replication_factor, 1, "one broker");

    let port_of = |name: &str| -> u16 {
        match name {
            "ingest" => config.ingest.listen.port(),
            "processor" => config.processor.listen.port(),
            _ => config.sinks.listen.port(),
        }
    };
    let storefold_services = ["topics", "ingest", "processor", "sink-postgres"];
    for name in storefold_services {
        let svc = &services[name];
        assert_eq!(svc["image"], "storefold:local", "{name}");
        let build = &svc["build"];
        let dockerfile = compose_dir
            .join(str_of(&build["context"], "build context"))
            .join(str_of(&build["dockerfile"], "dockerfile"));
        assert!(
            dockerfile.is_file(),
            "{name}: {} is missing",
            dockerfile.display()
        );
        let mounts: Vec<&str> = svc["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| str_of(v, "volume"))
            .collect();
        let target = str_of(&svc["environment"]["STOREFOLD_CONFIG"], "STOREFOLD_CONFIG");
        assert!(
            mounts.contains(&format!("./storefold.toml:{target}:ro").as_str()),
            "{name} does not mount storefold.toml at {target}: {mounts:?}"
        );
        for var in env_references(&toml) {
            assert!(
                svc["environment"].get(&var).is_some(),
                "{name}: the configuration references ${{{var}}} but the container does not get it"
            );
        }
        let command: Vec<&str> = svc["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(|v| str_of(v, "command"))
            .collect();
        if name != "topics" {
            assert_eq!(
                svc["depends_on"]["topics"]["condition"], "service_completed_successfully",
                "{name} must wait for the topics"
            );
            let port = port_of(name);
            let ports: Vec<&str> = svc["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(|v| str_of(v, "port"))
                .collect();
            // Only the ingest (the public listener) is published on every
            // interface; the processor's operator port and the sink's port
            // are for this host only.
            let published = if name == "ingest" {
                format!("{port}:{port}")
            } else {
                format!("127.0.0.1:{port}:{port}")
            };
            assert_eq!(
                ports,
                [published.as_str()],
                "{name} listens on {port} (storefold.toml) but publishes {ports:?}"
            );
            let check = svc["healthcheck"]["test"].to_string();
            assert!(
                check.contains(&format!(":{port}/readyz")),
                "{name}'s health check does not ask /readyz on {port}: {check}"
            );
        }
        match name {
            "topics" => assert_eq!(command[..2], ["topics", "create"]),
            "ingest" => assert_eq!(command, ["ingest"]),
            "processor" => {
                assert_eq!(command, ["process"]);
                let state_volume = mounts
                    .iter()
                    .filter_map(|m| m.split_once(':'))
                    .find(|(_, path)| config.processor.state_dir.starts_with(path))
                    .unwrap_or_else(|| {
                        panic!(
                            "no volume holds the processor's state_dir {}: {mounts:?}",
                            config.processor.state_dir.display()
                        )
                    });
                assert!(
                    declared_volumes.contains(&state_volume.0.to_string()),
                    "the state must be on a named volume, not {}",
                    state_volume.0
                );
            }
            "sink-postgres" => {
                assert_eq!(command, ["sink", "postgres"]);
                let pg = PostgresSinkConfig::from_config(&config)
                    .expect("valid [sinks.postgres]")
                    .expect("[sinks.postgres]");
                let url = storefold_runtime::config::ExposeSecret::expose_secret(&pg.url);
                assert!(url.contains("@postgres:5432/"), "{url}");
                assert_eq!(
                    services["postgres"]["environment"]["POSTGRES_DB"],
                    url.rsplit('/').next().unwrap()
                );
                assert_eq!(
                    svc["depends_on"]["postgres"]["condition"],
                    "service_healthy"
                );
            }
            _ => unreachable!(),
        }
    }

    // Every bind-mounted file exists.
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let source = str_of(v, "volume").split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(
                    compose_dir.join(source).exists(),
                    "{name} mounts {source}, which does not exist"
                );
            } else {
                assert!(
                    declared_volumes.contains(&source.to_string()),
                    "{name}: volume {source} is not declared"
                );
            }
        }
    }

    // Prometheus scrapes each role where compose runs it, under the job names the
    // alerts expect.
    let prom = yaml(&deploy("prometheus/prometheus.yml"));
    let mut targets = BTreeMap::new();
    for job in prom["scrape_configs"].as_array().expect("scrape_configs") {
        for sc in job["static_configs"].as_array().into_iter().flatten() {
            for t in sc["targets"].as_array().into_iter().flatten() {
                targets.insert(
                    str_of(t, "target").to_string(),
                    str_of(&job["job_name"], "job").to_string(),
                );
            }
        }
    }
    for (svc, job) in [
        ("ingest", "storefold-ingest"),
        ("processor", "storefold-processor"),
        ("sink-postgres", "storefold-sink"),
    ] {
        let target = format!("{svc}:{}", port_of(svc));
        assert_eq!(
            targets.get(&target).map(String::as_str),
            Some(job),
            "Prometheus does not scrape {target} as {job}: {targets:?}"
        );
    }
    let prom_mounts = services["prometheus"]["volumes"].to_string();
    assert!(prom_mounts.contains("alerts.yaml:/etc/prometheus/alerts.yaml"));

    // The processor's port is its operator listener: tokens are configured (it
    // refuses 0.0.0.0 without), and Prometheus scrapes it with a token the
    // configuration gives the metrics scope.
    assert!(
        !config.operator.tokens.is_empty(),
        "compose's storefold.toml has no [[operator.tokens]]"
    );
    let processor_job = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "storefold-processor")
        .expect("the processor job");
    assert_eq!(processor_job["authorization"]["type"], "Bearer");
    let token_file = str_of(
        &processor_job["authorization"]["credentials_file"],
        "credentials_file",
    );
    let token = read(&deploy("prometheus").join(token_file));
    let access = storefold_runtime::operator::Access::new(&config.operator);
    let caller = access
        .authenticate(token.trim())
        .expect("Prometheus's token is one of compose's [[operator.tokens]]");
    assert!(
        caller.scope.may_read_metrics() && !caller.scope.admin && caller.scope.tenants.is_empty(),
        "Prometheus's token should read /metrics and nothing else: {caller:?}"
    );
    assert!(
        prom_mounts.contains(&format!(":/etc/prometheus/{token_file}")),
        "the token file is not mounted next to prometheus.yml: {prom_mounts}"
    );

    // Grafana: the provisioned datasource is the compose Prometheus, and the
    // dashboard provider reads the directory the dashboard is mounted in.
    let ds = yaml(&deploy("grafana/provisioning/datasources/prometheus.yaml"));
    assert_eq!(ds["datasources"][0]["url"], "http://prometheus:9090");
    let provider = yaml(&deploy("grafana/provisioning/dashboards/storefold.yaml"));
    let dash_dir = str_of(&provider["providers"][0]["options"]["path"], "path");
    let grafana_mounts = services["grafana"]["volumes"].to_string();
    assert!(
        grafana_mounts.contains(&format!(
            "../grafana/storefold.json:{dash_dir}/storefold.json"
        )),
        "the dashboard is not mounted where the provider reads ({dash_dir}): {grafana_mounts}"
    );
}

// ------------------------------------------------------------------ Helm

/// Renders the chart with `values` files through Helm's SDK; returns the manifests.
fn render_chart(values: &[PathBuf]) -> Vec<Value> {
    require_python(&["helm_python", "kubernetes_validate"]);
    let out_dir = tempfile::tempdir().unwrap();
    let script = repo().join("tests/tools/helm_render.py");
    let chart = deploy("helm/storefold");
    let mut args: Vec<String> = vec![
        script.display().to_string(),
        chart.display().to_string(),
        out_dir.path().display().to_string(),
    ];
    args.extend(values.iter().map(|v| v.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_tool("python3", &args, None);
    assert!(
        out.status.success(),
        "helm lint/render failed for values {values:?}:\n{}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("render report");
    assert_eq!(
        report["lint"]["errors"],
        json!([]),
        "helm lint (strict): {report}"
    );
    let files: Vec<&str> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| str_of(f, "file"))
        .collect();
    assert!(!files.is_empty(), "nothing rendered");

    // Kubernetes' own schemas, strict (unknown fields are errors). ServiceMonitor is
    // a CRD the schemas do not have: its shape is checked below.
    let mut validate = vec!["-m", "kubernetes_validate", "--strict", "--quiet"];
    validate.extend(files.iter().copied());
    let out = run_tool("python3", &validate, None);
    assert!(
        out.status.success() && !text(&out).contains("ERROR"),
        "rendered manifests do not validate against Kubernetes' schemas:\n{}",
        text(&out)
    );
    for line in text(&out).lines() {
        assert!(
            line.is_empty() || line.contains("kind ServiceMonitor"),
            "kubernetes-validate: {line}"
        );
    }
    files
        .iter()
        .flat_map(|f| yaml_docs(&read(Path::new(f)), f))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> Option<&'a Value> {
    docs.iter().find(|d| {
        d["kind"] == kind
            && d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(name_suffix))
    })
}

fn must<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    find(docs, kind, name_suffix).unwrap_or_else(|| {
        let have: Vec<String> = docs
            .iter()
            .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
            .collect();
        panic!("no {kind} named *{name_suffix}; rendered: {have:?}")
    })
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?
        .get("value")?
        .as_str()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// What every rendered workload must do, whatever the values.
fn check_workloads(docs: &[Value], values: &Value) {
    let secret_name = values["config"]["existingSecret"]
        .as_str()
        .filter(|s| !s.is_empty());
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let pod = match kind {
            "Deployment" | "StatefulSet" | "Job" => &doc["spec"]["template"],
            _ => continue,
        };
        let name = str_of(&doc["metadata"]["name"], "name");
        let spec = &pod["spec"];
        let psc = &spec["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}: runAsNonRoot");
        assert!(
            psc["runAsUser"].as_i64().unwrap_or(0) > 0,
            "{name}: runAsUser"
        );
        if kind != "Job" {
            assert!(
                labels_match(
                    &doc["spec"]["selector"]["matchLabels"],
                    &pod["metadata"]["labels"]
                ),
                "{name}: the selector does not match the pod's labels"
            );
        }
        // The configuration Secret is mounted where STOREFOLD_CONFIG points.
        let config_volume = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "config")
            .unwrap_or_else(|| panic!("{name}: no config volume"));
        let secret = str_of(&config_volume["secret"]["secretName"], "secretName");
        match secret_name {
            Some(s) => assert_eq!(secret, s),
            None => {
                must(docs, "Secret", "-config");
                assert!(
                    find(docs, "Secret", "").is_some_and(|d| d["metadata"]["name"] == secret),
                    "{name} mounts Secret {secret}, which the chart does not render"
                );
            }
        }
        let containers = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["initContainers"].as_array().into_iter().flatten());
        for c in containers {
            let cname = format!("{name}/{}", str_of(&c["name"], "container"));
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{cname}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{cname}");
            assert_eq!(
                env_value(c, "STOREFOLD_CONFIG"),
                Some("/etc/storefold/storefold.toml"),
                "{cname}"
            );
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| { m["name"] == "config" && m["mountPath"] == "/etc/storefold" }),
                "{cname}: the configuration is not mounted at /etc/storefold"
            );
            assert!(
                c["resources"]["requests"].is_object(),
                "{cname}: no resource requests"
            );
            if kind == "Job"
                || spec["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|i| i == c)
            {
                continue;
            }
            // A role: its HTTP port is the one it listens on, probed on /healthz and /readyz.
            let port = c["ports"][0]["containerPort"]
                .as_i64()
                .expect("containerPort");
            assert_eq!(c["ports"][0]["name"], "http", "{cname}");
            let listen = env_value(c, "STOREFOLD_LISTEN")
                .unwrap_or_else(|| panic!("{cname}: STOREFOLD_LISTEN"));
            assert_eq!(listen, format!("0.0.0.0:{port}"), "{cname}");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{cname}");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{cname}");
            assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http", "{cname}");
        }
    }
    // Every Service selects some workload's pods, on the pods' named port.
    for svc in docs.iter().filter(|d| d["kind"] == "Service") {
        let name = str_of(&svc["metadata"]["name"], "service");
        let selected = docs.iter().any(|d| {
            matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet"))
                && labels_match(
                    &svc["spec"]["selector"],
                    &d["spec"]["template"]["metadata"]["labels"],
                )
        });
        assert!(selected, "Service {name} selects no workload");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http", "{name}");
    }
}

#[test]
fn helm_chart_renders_validates_and_fits_the_binary() {
    let chart = deploy("helm/storefold");
    let chart_yaml = yaml(&chart.join("Chart.yaml"));
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["name"], "storefold");
    let defaults = yaml(&chart.join("values.yaml"));
    let all = chart.join("ci/all-features-values.yaml");
    let all_values = yaml(&all);

    for (label, files, values) in [
        ("default values", vec![], defaults.clone()),
        ("every option on", vec![all.clone()], all_values.clone()),
    ] {
        let docs = render_chart(&files);
        check_workloads(&docs, &values);
        let merged_autoscaling = values["ingest"]["autoscaling"]["enabled"]
            .as_bool()
            .unwrap_or(defaults["ingest"]["autoscaling"]["enabled"] == true);

        // The configuration in the Secret is one storefold loads.
        let secret = must(&docs, "Secret", "-config");
        let encoded = str_of(&secret["data"]["storefold.toml"], "storefold.toml");
        let toml = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64"),
        )
        .unwrap();
        let config = load_config(
            &toml,
            &BTreeMap::new(),
            &format!("the chart's config ({label})"),
        );

        // Ingest: Deployment, Service, HPA when autoscaling.
        let ingest = must(&docs, "Deployment", "-ingest");
        assert_eq!(
            ingest["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["ingest"])
        );
        must(&docs, "Service", "-ingest");
        match find(&docs, "HorizontalPodAutoscaler", "-ingest") {
            Some(hpa) => {
                assert!(merged_autoscaling, "{label}: HPA without autoscaling");
                assert_eq!(
                    hpa["spec"]["scaleTargetRef"]["name"],
                    ingest["metadata"]["name"]
                );
                assert!(
                    ingest["spec"].get("replicas").is_none(),
                    "the HPA owns replicas"
                );
            }
            None => assert!(!merged_autoscaling, "{label}: autoscaling without HPA"),
        }

        // Processor: StatefulSet with a volume claim for the state, a headless
        // Service, a PodDisruptionBudget.
        let sts = must(&docs, "StatefulSet", "-processor");
        let container = &sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"], json!(["process"]));
        let state_dir = env_value(container, "STOREFOLD_STATE_DIR").expect("STOREFOLD_STATE_DIR");
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        let claim_name = str_of(&claim["metadata"]["name"], "claim");
        assert!(
            container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| {
                    m["name"] == claim_name
                        && state_dir.starts_with(m["mountPath"].as_str().unwrap_or("-"))
                }),
            "{label}: the state dir {state_dir} is not on the claimed volume"
        );
        assert!(claim["spec"]["resources"]["requests"]["storage"].is_string());
        let headless = must(&docs, "Service", "-processor-headless");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(sts["spec"]["serviceName"], headless["metadata"]["name"]);
        let pdb = must(&docs, "PodDisruptionBudget", "-processor");
        assert!(labels_match(
            &pdb["spec"]["selector"]["matchLabels"],
            &sts["spec"]["template"]["metadata"]["labels"]
        ));

        // The chart's sinks are the entries of values.yaml's `sinks` with an
        // `enabled` key: each a sink storefold has (the chart may leave some
        // out; a sink without an entry is simply not deployed by it).
        let chart_sinks: Vec<&str> = defaults["sinks"]
            .as_object()
            .expect("values.yaml: sinks")
            .iter()
            .filter(|(_, v)| v.get("enabled").is_some())
            .map(|(k, _)| k.as_str())
            .collect();
        for sink in &chart_sinks {
            assert!(
                registry::find(sink).is_some(),
                "values.yaml's sink {sink} is not one of storefold's ({})",
                registry::names().join(", ")
            );
        }
        // One Deployment per enabled sink, each with its section in the
        // configuration, read by that sink's own spec.
        for sink in chart_sinks {
            let enabled = values["sinks"][sink]["enabled"]
                .as_bool()
                .unwrap_or(defaults["sinks"][sink]["enabled"] == true);
            let deployment = find(&docs, "Deployment", &format!("-sink-{sink}"));
            assert_eq!(deployment.is_some(), enabled, "{label}: sink {sink}");
            if let Some(d) = deployment {
                assert_eq!(
                    d["spec"]["template"]["spec"]["containers"][0]["args"],
                    json!(["sink", sink])
                );
                let section = format!("[sinks.{sink}]");
                assert!(
                    toml.lines().any(|l| l.trim() == section),
                    "{label}: sink {sink} runs without [sinks.{sink}]"
                );
                let spec = registry::find(sink).expect("a registered sink");
                assert!(
                    matches!(spec.settings(&config), Ok(Some(_))),
                    "{label}: [sinks.{sink}] is not read by the {sink} sink"
                );
            }
        }

        // The ServiceMonitor scrapes the ingest, the processors and the sinks under
        // the job names the alerts use.
        let monitor = find(&docs, "ServiceMonitor", "");
        assert_eq!(
            monitor.is_some(),
            values["serviceMonitor"]["enabled"] == true,
            "{label}: ServiceMonitor"
        );
        // The processor's operator port: a ClusterIP Service only, and the
        // configuration has tokens (the processor refuses 0.0.0.0 without).
        let query = must(&docs, "Service", "-processor");
        assert_eq!(query["spec"]["type"], "ClusterIP", "{label}");
        assert!(
            !config.operator.tokens.is_empty(),
            "{label}: no [[operator.tokens]]"
        );
        assert!(
            find(&docs, "Ingress", "").is_none(),
            "{label}: no Ingress routes the operator port"
        );
        if let Some(m) = monitor {
            let secret = &values["serviceMonitor"]["bearerTokenSecret"]["name"];
            if secret.as_str().is_some_and(|s| !s.is_empty()) {
                let auth = &m["spec"]["endpoints"][0]["authorization"];
                assert_eq!(auth["type"], "Bearer", "{label}");
                assert_eq!(&auth["credentials"]["name"], secret, "{label}");
            }
            let job_label = str_of(&m["spec"]["jobLabel"], "jobLabel");
            assert_eq!(m["spec"]["endpoints"][0]["port"], "http");
            assert_eq!(m["spec"]["endpoints"][0]["path"], "/metrics");
            let scraped: Vec<&Value> = docs
                .iter()
                .filter(|d| {
                    d["kind"] == "Service"
                        && labels_match(
                            &m["spec"]["selector"]["matchLabels"],
                            &d["metadata"]["labels"],
                        )
                })
                .collect();
            let jobs: BTreeSet<&str> = scraped
                .iter()
                .map(|s| str_of(&s["metadata"]["labels"][job_label], "job label"))
                .collect();
            assert_eq!(
                jobs,
                BTreeSet::from(["storefold-ingest", "storefold-processor", "storefold-sink"]),
                "{label}"
            );
            assert!(
                !scraped.iter().any(|s| s["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-processor"))),
                "the processors would be scraped twice (query Service and headless Service)"
            );
        }
    }
}

// ------------------------------------------------------------------ Docker

#[test]
fn dockerfile_builds_a_non_root_image_with_what_the_binary_links() {
    let dockerfile = read(&deploy("docker/Dockerfile"));
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FROM "))
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let builder = lines[froms[0]..froms[froms.len() - 1]].join("\n");
    let runtime = lines[froms[froms.len() - 1]..].join("\n");
    assert!(
        lines[froms[0]].contains(" AS builder"),
        "{}",
        lines[froms[0]]
    );
    for pkg in ["cmake", "clang", "libclang-dev", "g++"] {
        assert!(
            builder.split_whitespace().any(|w| w == pkg),
            "the builder stage does not install {pkg}"
        );
    }
    assert!(builder.contains("cargo build --release --locked -p storefold"));
    // The builder's Rust is the toolchain rust-toolchain.toml pins.
    let toolchain = read(&repo().join("rust-toolchain.toml"));
    let channel = Regex::new(r#"channel\s*=\s*"([^"]+)""#)
        .unwrap()
        .captures(&toolchain)
        .expect("channel")[1]
        .to_string();
    assert!(
        dockerfile.contains(&format!("ARG RUST_VERSION={channel}")),
        "the Dockerfile's Rust is not {channel}"
    );

    assert!(
        runtime.contains("-slim"),
        "runtime stage: {}",
        lines[froms[froms.len() - 1]]
    );
    assert!(runtime.contains("COPY --from=builder"));
    assert!(runtime.contains("ENTRYPOINT [\"storefold\"]"));
    let user = runtime
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} must be numeric (runAsNonRoot checks it)"));
    assert!(uid > 0, "USER {user} is root");
    let defaults = Config::from_toml_str("", Vec::<(String, String)>::new()).unwrap();
    // The processor's default state directory (relative) lands on the volume.
    let workdir = runtime
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("WORKDIR");
    let volume = runtime
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME "))
        .expect("VOLUME");
    let state = Path::new(workdir).join(&defaults.processor.state_dir);
    assert!(
        volume.contains(&format!("\"{workdir}\"")) && state.starts_with(workdir),
        "the default state_dir {} is not on the image's volume {volume}",
        state.display()
    );
    let expose = runtime
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    for port in [
        defaults.ingest.listen.port(),
        defaults.processor.listen.port(),
        defaults.sinks.listen.port(),
    ] {
        assert!(
            expose.split_whitespace().any(|p| p == port.to_string()),
            "EXPOSE {expose} lacks the default port {port}"
        );
    }

    // Every library the binary links is in the runtime stage (or in Debian's base).
    let runtime_packages: BTreeSet<&str> = runtime.split_whitespace().collect();
    let needed = run_ok("readelf", &["-d", storefold_binary().to_str().unwrap()]);
    let lib = Regex::new(r"Shared library: \[([^\]]+)\]").unwrap();
    let mut libs = Vec::new();
    for c in lib.captures_iter(&needed) {
        let package = match &c[1] {
            "libc.so.6"
            | "libm.so.6"
            | "ld-linux-x86-64.so.2"
            | "libgcc_s.so.1"
            | "libpthread.so.0"
            | "libdl.so.2"
            | "librt.so.1"
            | "ld-linux-aarch64.so.1" => continue,
            "libstdc++.so.6" => "libstdc++6",
            "libcurl.so.4" => "libcurl4",
            "libz.so.1" => "zlib1g",
            "libssl.so.3" | "libcrypto.so.3" => "libssl3",
            other => panic!(
                "the binary links {other}: add its Debian package to the Dockerfile's runtime \
                 stage and to this table"
            ),
        };
        assert!(
            runtime_packages.contains(package),
            "the binary links {} but the runtime stage does not install {package}",
            &c[1]
        );
        libs.push(c[1].to_string());
    }
    assert!(
        !libs.is_empty(),
        "readelf found no NEEDED entries:\n{needed}"
    );

    let ignore = read(&repo().join(".dockerignore"));
    for entry in ["target/", ".storefold/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore does not exclude {entry}"
        );
    }
}

// ------------------------------------------------------------------ the checks' own parts

#[test]
fn metric_names_are_read_from_promql_as_prometheus_would() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, step) (rate(a_seconds_bucket{step="x",job=~"y|z"}[5m])))"#
        ),
        ["a_seconds_bucket"]
    );
    assert_eq!(
        names(
            "(sum by (p) (increase(x_total[1d] offset 1h)) > 0) unless on (p) (y_total > bool 3)"
        ),
        ["x_total", "y_total"]
    );
    assert_eq!(names("count(s >= 2) or vector(0)"), ["s"]);
    assert_eq!(names(r#"up{job=~"storefold-.*"} == 0"#), ["up"]);
    assert_eq!(names("sum without (instance) (rate(c[1m])) * 1e3"), ["c"]);
    let exported = BTreeMap::from([
        ("h".to_string(), Kind::Histogram),
        ("c_total".to_string(), Kind::Single),
    ]);
    assert!(not_exported("h_bucket", &exported).is_none());
    assert!(not_exported("h_count", &exported).is_none());
    assert!(not_exported("h", &exported).is_some());
    assert!(not_exported("c_total", &exported).is_none());
    assert!(not_exported("c_total_count", &exported).is_some());
    assert!(not_exported("nope", &exported).is_some());
}
