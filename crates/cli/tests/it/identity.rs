//! `storefold identity merge|split|block` against the real binary (`storefold
//! run` with librdkafka's mock cluster): sides that cannot be carried out are
//! refused before anything is sent, with the option named; the dry run reads
//! the query API and says where each side stands and what the decision would
//! change, posting nothing; the command itself is signed with the tenant's
//! operator secret from the configuration, lands on `raw.operator` byte for
//! byte and maps to the operator's `IdentityDecided`; a wrong secret is
//! refused, and so is, at the ingest, a body the CLI would not have built.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use storefold_codec::{AvroCodec, RawEvent};
use storefold_core::Event;
use storefold_core::event::{IdentityDecision, Party};
use storefold_testkit::broker::{MockBroker, read_topic};
use storefold_testkit::free_port;
use storefold_testkit::postgres::PgServer;

use crate::common::{Run, Started, post_order, start_run};
use crate::erase::{TOKEN, get_json, operator_events, text, write_config};

const ADA: &str = "ada@identity.example";
const BEA: &str = "bea@identity.example";
const RAW: &str = "storefold.raw.operator";

fn identity(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(config)
        .arg("identity")
        .args(args)
        .env_remove("STOREFOLD_TOKEN")
        .env_remove("STOREFOLD_OPERATOR_SECRET")
        .output()
        .unwrap()
}

/// `storefold identity <decision> --tenant acme --a <a> --b <b> <more>`.
fn decide(config: &Path, decision: &str, a: &str, b: &str, more: &[&str]) -> Output {
    let mut args = vec![decision, "--tenant", "acme", "--a", a, "--b", b];
    args.extend_from_slice(more);
    identity(config, &args)
}

async fn raw_operator(bootstrap: &str, wait: Duration) -> Vec<RawEvent> {
    let b = bootstrap.to_string();
    let records = tokio::task::spawn_blocking(move || read_topic(&b, RAW, wait))
        .await
        .unwrap();
    let codec = AvroCodec::embedded().unwrap();
    records
        .iter()
        .map(|r| codec.decode(r.payload.as_deref().unwrap()).unwrap())
        .collect()
}

/// The customer id of `email`, once the fold has it.
pub(crate) async fn customer_of(
    client: &reqwest::Client,
    api: &str,
    email: &str,
    run: &mut Run,
) -> String {
    let url = format!("{api}/v1/tenants/acme/customers?email={email}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, doc) = get_json(client, &url).await;
        if status == 200 {
            return doc["customer_id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{email} was not folded within 120 s ({status}):\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Ada's and Bea's Shopify orders (customers 8300000001 and 8300000002),
/// signed and posted to the ingest.
async fn post_orders(client: &reqwest::Client, public_base: &str) {
    for (n, email) in [(1, ADA), (2, BEA)] {
        post_order(client, public_base, n, email).await;
    }
}

fn decided(ev: &RawEvent) -> storefold_core::event::IdentityDecided {
    let events = operator_events(ev);
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::IdentityDecided(d) => d.clone(),
        other => panic!("expected IdentityDecided, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_decisions_dry_run_then_signed_through_the_ingest() {
    let broker = MockBroker::start(1);
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port());
    let config = write_config(dir.path(), broker.bootstrap(), ports.0, ports.1);
    let Started {
        mut run,
        client,
        public_base,
        api,
    } = start_run(&broker, dir.path(), &config, ports, &["--no-sinks"]).await;

    // Two customers, one order each (Shopify customers 8300000001 and 8300000002).
    post_orders(&client, &public_base).await;
    let ada = customer_of(&client, &api, ADA, &mut run).await;
    let bea = customer_of(&client, &api, BEA, &mut run).await;
    assert_ne!(ada, bea);
    let bootstrap = broker.bootstrap().to_string();

    // Sides that cannot be carried out: refused before anything is sent
    // (exit 1), the option named.
    let bea_side = format!("email:{BEA}");
    for (decision, a, b, said) in [
        (
            "merge",
            "mail:x@identity.example",
            bea_side.as_str(),
            "--a names no identity",
        ),
        (
            "merge",
            "email:not-an-address",
            bea_side.as_str(),
            "--a is not a valid email address",
        ),
        (
            "block",
            "email:ada@identity.example",
            "phone:0301234567",
            "--b is not a valid phone number",
        ),
        (
            "merge",
            "email:ada@identity.example",
            "email: ADA@identity.example",
            "--a and --b name the same identity",
        ),
        (
            "split",
            "phone:+14155550100",
            "external:shopify:8300000001",
            "identity split needs an email or a cus_em_ customer id on --a or --b",
        ),
        (
            "block",
            "cus_ph_0a1b2c3d4e5f60718293a4b5",
            "external:shopify:8300000001",
            "identity block needs an email or a cus_em_ customer id",
        ),
        (
            "merge",
            "email:ada@identity.example",
            "cus_xx_12",
            "--b is not a storefold customer id",
        ),
        (
            "merge",
            "email:ada@identity.example",
            "external:shopify",
            "--b is not an external id",
        ),
    ] {
        let out = decide(&config, decision, a, b, &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{decision} {a} {b}: {stdout}{stderr}"
        );
        assert!(stderr.contains(said), "{decision} {a} {b}: {stderr}");
        assert!(!stdout.contains("command id"), "{stdout}");
    }
    // Both sides are required, and the decision.
    let out = identity(&config, &["merge", "--tenant", "acme", "--a", &bea_side]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--b"), "{}", text(&out).1);
    let out = identity(&config, &["unmerge", "--tenant", "acme"]);
    assert!(!out.status.success());

    // Dry run of a merge of two customers (API address from operator.listen,
    // the token as an option).
    let dry = ["--dry-run", "--token", TOKEN];
    let out = decide(
        &config,
        "merge",
        &format!("email:{ADA}"),
        &format!("customer:{bea}"),
        &dry,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "dry run: nothing was sent\n\
             a (email {ADA}): customer {ada}\n\
             b (customer {bea}): customer {bea}\n\
             one customer now: no (two customers)\n\
             merge: {ada} and {bea} would become one customer\n\
             decision recorded for the pair: none\n"
        )
    );
    // Bea's email is in her customer's document, and stays out of the report.
    assert!(!stdout.contains(BEA), "{stdout}");

    // A split of a customer and its own Shopify id (found among its
    // identities): one customer now, which the split would separate.
    let out = decide(
        &config,
        "split",
        &ada,
        "external:shopify:8300000001",
        &["--dry-run", "--api", &api, "--token", TOKEN],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "a (customer {ada}): customer {ada}\n\
             b (external shopify:8300000001): customer {ada} (listed among its identities)\n\
             one customer now: yes ({ada})\n\
             split: {ada} would be separated into two customers; \
             later evidence will not join them again by the merge rules\n"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains(ADA), "{stdout}");
    // Bea's Shopify id is not among Ada's identities: apart already.
    let out = decide(
        &config,
        "block",
        &format!("email:{ADA}"),
        "external:shopify:8300000002",
        &dry,
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("b (external shopify:8300000002): not known"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "one customer now: no (b is not among the identities of {ada})"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("block: they are already apart and would stay apart"),
        "{stdout}"
    );
    assert!(!stdout.contains(BEA), "{stdout}");

    // Neither side has a customer: said plainly, exit 2.
    let out = decide(
        &config,
        "block",
        "email:nobody@identity.example",
        "phone:+14155550100",
        &dry,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("a (email nobody@identity.example): no customer\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("b (phone +14155550100): no customer\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("one customer now: no (a has no customer)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("no customer of tenant acme has either side"),
        "{stderr}"
    );
    // A dry run without a token is refused before any request.
    let out = decide(
        &config,
        "merge",
        &format!("email:{ADA}"),
        &bea_side,
        &["--dry-run"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--token"), "{}", text(&out).1);
    // Nothing was posted.
    let raw = raw_operator(&bootstrap, Duration::from_secs(5)).await;
    assert!(raw.is_empty(), "a dry run posted {} records", raw.len());

    // A wrong secret: the ingest's 401 is printed, exit 4.
    let out = decide(
        &config,
        "merge",
        &format!("email:{ADA}"),
        &bea_side,
        &["--secret", "not-the-secret"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("HTTP 401"), "{stdout}");
    assert!(stdout.contains("signature_mismatch"), "{stdout}");
    // What the CLI refuses, the ingest refuses too when sent by other means
    // (signed right, with the tenant's operator secret): 400, the field named.
    let file = dir.path().join("split.json");
    std::fs::write(
        &file,
        br#"{"command_id":"split-no-email","a":{"phone":"+14155550100"},"b":{"external":{"source":"shopify","id":"8300000001"}},"requested_at":"2025-05-16T11:20:00Z"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_storefold"))
        .arg("--config")
        .arg(&config)
        .args([
            "webhook",
            "send",
            "--provider",
            "operator",
            "--topic",
            "identity/split",
            "--tenant",
            "acme",
        ])
        .arg(&file)
        .env_remove("STOREFOLD_WEBHOOK_SECRET")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("HTTP 400"), "{stdout}");
    assert!(stdout.contains("invalid_field"), "{stdout}");
    assert!(
        stdout.contains("invalid field a, b: identity/split needs an email"),
        "{stdout}"
    );

    // The merge, signed with the tenant's operator secret from the configuration.
    let out = decide(
        &config,
        "merge",
        "email:  Ada@Identity.example",
        &format!("customer:{bea}"),
        &["--reason", "ticket 4471: same person"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let merge_id = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("command id: "))
        .unwrap_or_else(|| panic!("no command id: {stdout}"))
        .to_string();
    assert_eq!(merge_id.len(), 36, "{merge_id}");
    assert!(stdout.contains("HTTP 200"), "{stdout}");
    // A block with a command id of its own.
    let out = decide(
        &config,
        "block",
        "external:Shopify:8300000002",
        "phone:+1 415 555 0100",
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no email side: {stdout}{stderr}"
    );
    let out = decide(
        &config,
        "block",
        &bea_side,
        "phone:+1 415 555 0100",
        &["--command-id", "block-bea-1"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("command id: block-bea-1\nHTTP 200"),
        "{stdout}"
    );

    // On raw.operator: the two signed bodies byte for byte, verified, keyed by
    // their command ids; they map to the operator's IdentityDecided.
    let raw = raw_operator(&bootstrap, Duration::from_secs(20)).await;
    assert_eq!(raw.len(), 2, "two decisions stored, nothing refused");
    let merge = raw
        .iter()
        .find(|e| e.topic == "identity/merge")
        .expect("the merge");
    let block = raw
        .iter()
        .find(|e| e.topic == "identity/block")
        .expect("the block");
    for ev in [merge, block] {
        assert_eq!(ev.tenant, "acme");
        assert_eq!(ev.provider, "operator");
        assert_eq!(
            ev.verification.scheme.as_deref(),
            Some("storefold-hmac-sha256")
        );
    }
    assert_eq!(
        merge.event_id,
        format!("operator:identity/merge:{merge_id}")
    );
    let body: serde_json::Value = serde_json::from_slice(&merge.body).unwrap();
    assert_eq!(body["command_id"], merge_id.as_str());
    assert_eq!(body["a"], serde_json::json!({"email": ADA}));
    assert_eq!(body["b"], serde_json::json!({"customer_id": bea}));
    assert_eq!(body["reason"], "ticket 4471: same person");
    let d = decided(merge);
    assert_eq!(d.decision, IdentityDecision::Merge);
    assert_eq!(d.a, Party::Email(ADA.into()));
    assert_eq!(d.b, Party::CustomerId(bea.clone()));
    assert_eq!(d.requested_by, "operator");

    assert_eq!(block.event_id, "operator:identity/block:block-bea-1");
    let body: serde_json::Value = serde_json::from_slice(&block.body).unwrap();
    assert!(body.get("reason").is_none(), "{body}");
    let d = decided(block);
    assert_eq!(d.decision, IdentityDecision::Block);
    assert_eq!(d.a, Party::Email(BEA.into()));
    assert_eq!(d.b, Party::Phone("+14155550100".into()));
}

/// The `storefold.customers` row of `customer_id`: its `merged_into` and the
/// `orders_count` of its doc (absent in a merge notice).
async fn row(pg: &PgServer, customer_id: &str) -> Option<(Option<String>, Option<i64>)> {
    let client = pg.client().await;
    let row = client
        .query_opt(
            "SELECT merged_into, doc::text FROM storefold.customers \
             WHERE tenant = 'acme' AND customer_id = $1",
            &[&customer_id],
        )
        .await
        .ok()??;
    let doc: serde_json::Value = serde_json::from_str(row.get::<_, &str>(1)).ok()?;
    Some((row.get(0), doc["orders_count"].as_i64()))
}

/// Waits until `want` holds of the rows of `ada` and `bea`.
async fn rows_become(
    pg: &PgServer,
    (ada, bea): (&str, &str),
    want: [(Option<&str>, Option<i64>); 2],
    run: &mut Run,
    what: &str,
) {
    let want = want.map(|(m, n)| (m.map(str::to_string), n));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = [row(pg, ada).await, row(pg, bea).await];
        if got[0].as_ref() == Some(&want[0]) && got[1].as_ref() == Some(&want[1]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: rows (merged_into, orders_count) of ada and bea are {got:?}, want {want:?}\n{}",
            run.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_then_a_split_reach_the_query_api_and_postgresql() {
    // Two customers with an order each; the operator merges them, then splits
    // them again. PostgreSQL follows: the merged row points at the survivor,
    // which has both orders; after the split each row is a customer with its
    // own order again (its version above the merge notice's, or the sink would
    // have kept the notice).
    let broker = MockBroker::start(1);
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (public, operator) = (free_port(), free_port());
    let config = write_config(dir.path(), broker.bootstrap(), public, operator);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        "\n[sinks]\nretry_initial_ms = 50\nretry_max_ms = 500\n\
         [sinks.postgres]\nurl = \"{}\"\nbatch_size = 100\nlinger_ms = 20\n",
        pg.url()
    ));
    std::fs::write(&config, toml).unwrap();
    let Started {
        mut run,
        client,
        public_base,
        api,
    } = start_run(&broker, dir.path(), &config, (public, operator), &[]).await;
    post_orders(&client, &public_base).await;
    let ada = customer_of(&client, &api, ADA, &mut run).await;
    let bea = customer_of(&client, &api, BEA, &mut run).await;
    let ids = (ada.as_str(), bea.as_str());
    rows_become(
        &pg,
        ids,
        [(None, Some(1)), (None, Some(1))],
        &mut run,
        "before",
    )
    .await;

    // Both orders were created at the same time (the fixture's); the survivor
    // is the email whose customer the fold saw first: find it from the rows.
    let out = decide(
        &config,
        "merge",
        &format!("email:{ADA}"),
        &format!("email:{BEA}"),
        &[
            "--command-id",
            "merge-1",
            "--reason",
            "same person, two stores",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(120);
    let (survivor, merged) = loop {
        let (a, b) = (row(&pg, &ada).await, row(&pg, &bea).await);
        match (a, b) {
            (Some((None, Some(2))), Some((Some(into), None))) if into == ada => break (&ada, &bea),
            (Some((Some(into), None)), Some((None, Some(2)))) if into == bea => break (&bea, &ada),
            other => assert!(
                Instant::now() < deadline,
                "the merge did not reach PostgreSQL: {other:?}\n{}",
                run.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The query API answers the merged id with the survivor, and lists the
    // operator's merge with its command as evidence.
    let (status, doc) = get_json(
        &client,
        &format!("{api}/v1/tenants/acme/customers/{merged}"),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["customer_id"], survivor.as_str());
    assert_eq!(doc["resolved_from"], merged.as_str());
    let merge = doc["merged"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["merged_id"] == merged.as_str()))
        .unwrap_or_else(|| panic!("the merge is listed: {doc}"));
    assert_eq!(merge["reason"], "operator");
    assert_eq!(merge["evidence"][0], "operator:identity/merge:merge-1");

    let out = decide(
        &config,
        "split",
        &format!("email:{BEA}"),
        &format!("email:{ADA}"),
        &["--command-id", "split-1"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    rows_become(
        &pg,
        ids,
        [(None, Some(1)), (None, Some(1))],
        &mut run,
        "after the split",
    )
    .await;
    // A dry run now names the split recorded for the pair.
    let out = decide(
        &config,
        "merge",
        &format!("email:{ADA}"),
        &format!("email:{BEA}"),
        &["--dry-run", "--token", TOKEN],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("decision recorded for the pair: split at ")
            && stdout.contains("(operator:identity/split:split-1)"),
        "{stdout}"
    );
    for id in [&ada, &bea] {
        let (status, doc) =
            get_json(&client, &format!("{api}/v1/tenants/acme/customers/{id}")).await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!(
            doc["customer_id"],
            id.as_str(),
            "no longer resolved elsewhere"
        );
        assert!(
            doc["merged"].as_array().is_none_or(|m| m.is_empty()),
            "{doc}"
        );
        let decisions = doc["identity_decisions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(decisions.len(), 1, "{doc}");
        assert_eq!(decisions[0]["decision"], "split");
        assert_eq!(decisions[0]["event_id"], "operator:identity/split:split-1");
    }
}
