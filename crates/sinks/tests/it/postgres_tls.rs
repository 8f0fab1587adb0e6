//! The PostgreSQL sink over TLS, against a real PostgreSQL whose TCP listener
//! takes only TLS (`hostssl`), with a certificate authority and a server
//! certificate made by the test (`openssl`): `verify-full` connects and writes;
//! a certificate from another authority, a certificate for another host name,
//! and plain TCP are each refused at once with an error that says why.

use std::path::{Path, PathBuf};
use std::process::Command;

use prometheus::Registry;
use storefold_codec::CustomerProjection;
use storefold_sinks::postgres::PostgresSink;
use storefold_sinks::postgres::PostgresSinkConfig;
use storefold_sinks::{Item, Sink, SinkRecord, SourcePosition, WriteError};
use storefold_testkit::postgres::PgServer;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority `<name>-ca.pem` and a server certificate it signed,
/// `<name>-server.pem` / `<name>-server.key`, valid for `san`.
fn authority(dir: &Path, name: &str, san: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-server.key");
    let csr = format!("{name}-server.csr");
    let cert = format!("{name}-server.pem");
    let ext = format!("{name}-ext.cnf");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN=storefold test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=storefold test server",
        ],
    );
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &ext,
        ],
    );
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn cfg(url: &str, sslmode: &str, root: Option<PathBuf>) -> PostgresSinkConfig {
    PostgresSinkConfig {
        url: url.into(),
        schema: "storefold".into(),
        group_id: "g".into(),
        batch_size: 10,
        linger_ms: 10,
        triggers: true,
        sslmode: Some(sslmode.into()),
        sslrootcert: root,
    }
}

fn customer(id: &str) -> SinkRecord {
    SinkRecord {
        item: Item::Customer(CustomerProjection {
            tenant: "acme".into(),
            customer_id: id.into(),
            generation: 1,
            version: 1,
            email: Some(format!("{id}@example.com")),
            phone: None,
            redacted: false,
            merged_into: None,
            updated_at: 1_700_000_000_000,
            doc: format!(r#"{{"customer_id":"{id}"}}"#),
            view: None,
        }),
        key: format!("acme/{id}").into_bytes(),
        value: Vec::new(),
        headers: Vec::new(),
        source: SourcePosition {
            topic: "storefold.customers".into(),
            partition: 0,
            offset: 0,
        },
        received_at_ms: None,
    }
}

async fn refused(cfg: &PostgresSinkConfig) -> String {
    match PostgresSink::connect(cfg, &Registry::new()).await {
        Err(e @ WriteError::Fatal { .. }) => e.to_string(),
        Err(e) => panic!("expected a fatal error, got {e}"),
        Ok(mut sink) => match sink.prepare().await {
            Err(e @ WriteError::Fatal { .. }) => e.to_string(),
            other => panic!("expected a fatal refusal, got {other:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_writes_and_wrong_certificates_or_plain_tcp_are_refused() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    authority(dir, "good", "IP:127.0.0.1,DNS:localhost");
    authority(dir, "other", "IP:127.0.0.1,DNS:localhost");
    let pg = PgServer::start_tls(&read(dir, "good-server.pem"), &read(dir, "good-server.key"));
    let url = pg.url();
    let good_ca = dir.join("good-ca.pem");

    // verify-full with the right authority: connects, migrates, writes.
    let mut sink = PostgresSink::connect(
        &cfg(&url, "verify-full", Some(good_ca.clone())),
        &Registry::new(),
    )
    .await
    .expect("connect over TLS");
    sink.prepare().await.expect("migrations over TLS");
    let batch = vec![customer("c1"), customer("c2")];
    let rejected = sink.write(&batch).await.expect("write over TLS");
    assert!(rejected.is_empty(), "{rejected:?}");
    let rows = pg
        .query("SELECT customer_id FROM storefold.customers ORDER BY customer_id")
        .await;
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, ["c1", "c2"]);
    // The server saw the sink's connection encrypted.
    let ssl = pg
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'storefold-sink-postgres'",
        )
        .await;
    assert!(!ssl.is_empty(), "the sink's connection is listed");
    assert!(
        ssl.iter().all(|r| r.get::<_, bool>(0)),
        "every sink connection uses TLS"
    );

    // The same through the URL's own parameters.
    let in_url = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        good_ca.display()
    );
    let mut sink = PostgresSink::connect(
        &PostgresSinkConfig {
            sslmode: None,
            ..cfg(&in_url, "verify-full", None)
        },
        &Registry::new(),
    )
    .await
    .expect("connect with sslmode in the URL");
    sink.prepare().await.expect("prepare");

    // verify-ca accepts a certificate for another name; verify-full does not.
    let by_name = url.replace("127.0.0.1", "localhost");
    assert!(by_name.contains("@localhost:"), "{by_name}");
    let mut sink = PostgresSink::connect(
        &cfg(&by_name, "verify-full", Some(good_ca.clone())),
        &Registry::new(),
    )
    .await
    .expect("the certificate names localhost too");
    sink.prepare().await.expect("prepare");

    // Another authority's roots: refused, fatally, saying why.
    let msg = refused(&cfg(&url, "verify-full", Some(dir.join("other-ca.pem")))).await;
    assert!(
        msg.starts_with("fatal:")
            && msg.contains("certificate")
            && msg.contains("sslmode=verify-full"),
        "{msg}"
    );
    let msg = refused(&cfg(&url, "verify-ca", Some(dir.join("other-ca.pem")))).await;
    assert!(msg.contains("certificate"), "{msg}");

    // A server certificate for another host.
    authority(dir, "elsewhere", "DNS:db.elsewhere.example");
    let pg2 = PgServer::start_tls(
        &read(dir, "elsewhere-server.pem"),
        &read(dir, "elsewhere-server.key"),
    );
    let ca2 = dir.join("elsewhere-ca.pem");
    let msg = refused(&cfg(&pg2.url(), "verify-full", Some(ca2.clone()))).await;
    assert!(
        msg.contains("certificate") && msg.to_lowercase().contains("not valid for name"),
        "{msg}"
    );
    // verify-ca checks the chain only: the same server is accepted.
    let mut sink =
        PostgresSink::connect(&cfg(&pg2.url(), "verify-ca", Some(ca2)), &Registry::new())
            .await
            .expect("verify-ca ignores the name");
    sink.prepare().await.expect("prepare");

    // Plain TCP to a server that takes only TLS: refused, with the fix named.
    let msg = refused(&cfg(&url, "disable", None)).await;
    assert!(
        msg.starts_with("fatal:") && msg.contains("no encryption") && msg.contains("sslmode"),
        "{msg}"
    );
    // require: encrypted, the certificate not verified (libpq's meaning).
    let mut sink = PostgresSink::connect(&cfg(&url, "require", None), &Registry::new())
        .await
        .expect("require");
    sink.prepare().await.expect("prepare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_but_the_server_has_none_is_refused() {
    let pg = PgServer::start();
    let msg = refused(&cfg(&pg.url(), "require", None)).await;
    assert!(
        msg.starts_with("fatal:") && msg.contains("does not support TLS"),
        "{msg}"
    );
    // prefer falls back to plain TCP, as libpq does.
    let mut sink = PostgresSink::connect(&cfg(&pg.url(), "prefer", None), &Registry::new())
        .await
        .expect("prefer");
    sink.prepare().await.expect("prepare");
}

#[test]
fn the_configuration_refuses_unknown_tls_modes_and_a_zero_retry_after_cap() {
    let load = |toml: &str| -> Result<storefold_runtime::config::Config, String> {
        let config = storefold_runtime::config::Config::from_toml_str(toml, Vec::new())
            .map_err(|e| e.to_string())?;
        storefold_sinks::registry::check(&config).map_err(|e| e.to_string())?;
        Ok(config)
    };
    let parse = |extra: &str| {
        load(&format!(
            "[sinks]\n{extra}\n[sinks.postgres]\nurl = \"postgres://db/crm\"\nsslmode = \"verify-full\"\n"
        ))
    };
    let ok = parse("").expect("verify-full is a mode");
    assert_eq!(
        PostgresSinkConfig::from_config(&ok)
            .unwrap()
            .unwrap()
            .sslmode
            .as_deref(),
        Some("verify-full")
    );
    assert_eq!(ok.sinks.max_retry_after_secs, 900);
    let err = parse("max_retry_after_secs = 0").unwrap_err();
    assert!(err.contains("max_retry_after_secs"), "{err}");
    let err =
        load("[sinks.postgres]\nurl = \"postgres://db/crm\"\nsslmode = \"allow\"\n").unwrap_err();
    assert!(err.contains("sinks.postgres.sslmode"), "{err}");
}
