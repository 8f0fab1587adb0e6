//! The PostgreSQL sink: customers, orders and payouts upserted (a payout's
//! lines rewritten with it), triggers appended.
//!
//! Tables (ARCHITECTURE §3), in schema `sinks.postgres.schema`, created by the
//! migrations at start:
//!
//! - `customers(tenant, customer_id, generation, version, email, phone, redacted,
//!   merged_into, updated_at, doc jsonb)`, primary key `(tenant, customer_id)`,
//!   indexed on `(tenant, email)` and `(tenant, phone)`;
//! - `orders(tenant, order_id, customer_id, generation, version, updated_at, doc
//!   jsonb)`, primary key `(tenant, order_id)`, indexed on `(tenant, customer_id)`;
//! - `triggers(trigger_id, tenant, customer_id, order_id, kind, occurred_at,
//!   source_event_id, data jsonb)`, primary key `trigger_id`, append-only;
//! - `payouts(tenant, provider, payout_id, generation, version, status,
//!   currency, amount, difference, reconciled, updated_at, doc jsonb)`, primary
//!   key `(tenant, provider, payout_id)`, amounts in minor units;
//! - `payout_lines(tenant, provider, payout_id, line_id, kind, order_id,
//!   currency, gross, fee, net, at)`, primary key `(tenant, provider,
//!   payout_id, line_id)`, indexed on `(tenant, order_id)`: the `lines` of the
//!   payout's document, one row each, in minor units of `currency`.
//!
//! A batch is one transaction with one statement per table: `INSERT … SELECT …
//! FROM unnest($1, $2, …) ON CONFLICT … DO UPDATE … WHERE (row.generation,
//! row.version) < (new.generation, new.version)`, so a redelivered or replayed
//! older projection never replaces a newer row, and a newer generation (a
//! replay) replaces it whatever its version. Triggers are `ON CONFLICT DO
//! NOTHING`.
//!
//! A payout's lines follow its row: the payouts statement returns the keys it
//! inserted or replaced, and in the same transaction those payouts' lines are
//! deleted and inserted again from the stored document (`doc->'lines'`), so a
//! line the newer version no longer has is gone, and an older or repeated
//! delivery, which replaces no row, leaves the lines alone. A document whose
//! lines lack a field (or repeat a `line_id`) is that record's fault: it is
//! dead-lettered like any refused row.
//!
//! TLS follows libpq's `sslmode` (`sinks.postgres.sslmode`, or `sslmode` in the
//! URL): `disable`, `prefer` (the default), `require`, `verify-ca`,
//! `verify-full`, with rustls; `sslrootcert` names the trusted roots (else the
//! system's). A certificate that is not trusted, or a server without TLS when
//! TLS is required, is fatal at once rather than retried forever.
//!
//! A redacted customer (a GDPR erasure) overwrites its row like any newer
//! version, with `email` and `phone` NULL and the document's personal fields
//! (email, phone, names, addresses, identities, tags) emptied even when the
//! projection still carried them; its orders' rows are overwritten by their
//! own redacted versions, whose documents the processor has cleaned.
//!
//! Errors say whether a retry helps: a lost connection, a serialization failure
//! or a deadlock is retryable (the next attempt reconnects); a row PostgreSQL
//! refuses (invalid JSON, a NUL byte, a value too long) is found by splitting the
//! batch, and only those rows are returned as rejections (code = the SQLSTATE);
//! a missing permission or a table missing after the migrations is fatal.

use std::borrow::Cow;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use secrecy::ExposeSecret;
use storefold_runtime::config::redact_url;
use storefold_runtime::register;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::{Item, Rejection, Sink, SinkRecord, Stream, WriteError};
use tls::{RustlsConnect, SslMode, connector, split_ssl_params, tls_refusal};

mod config;
mod spec;
mod tls;

pub use config::PostgresSinkConfig;
pub use spec::PostgresSpec;

/// How long one write (a batch's transaction) may take before the connection is
/// dropped and the write retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The migrations, in order. Each runs in its own transaction, once
/// (`schema_migrations`); `{schema}` is replaced by the configured schema.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "customers, orders and triggers",
        r#"
CREATE TABLE {schema}.customers (
    tenant       text        NOT NULL,
    customer_id  text        NOT NULL,
    generation   bigint      NOT NULL,
    version      bigint      NOT NULL,
    email        text,
    phone        text,
    redacted     boolean     NOT NULL DEFAULT false,
    merged_into  text,
    updated_at   timestamptz NOT NULL,
    doc          jsonb       NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
CREATE INDEX customers_email ON {schema}.customers (tenant, email);
CREATE INDEX customers_phone ON {schema}.customers (tenant, phone);
CREATE TABLE {schema}.orders (
    tenant       text        NOT NULL,
    order_id     text        NOT NULL,
    customer_id  text,
    generation   bigint      NOT NULL,
    version      bigint      NOT NULL,
    updated_at   timestamptz NOT NULL,
    doc          jsonb       NOT NULL,
    PRIMARY KEY (tenant, order_id)
);
CREATE INDEX orders_customer ON {schema}.orders (tenant, customer_id);
CREATE TABLE {schema}.triggers (
    trigger_id       text        PRIMARY KEY,
    tenant           text        NOT NULL,
    customer_id      text        NOT NULL,
    order_id         text,
    kind             text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    source_event_id  text        NOT NULL,
    data             jsonb       NOT NULL
);
CREATE INDEX triggers_customer ON {schema}.triggers (tenant, customer_id, occurred_at);
"#,
    ),
    (
        2,
        "payouts and payout_lines",
        r#"
CREATE TABLE {schema}.payouts (
    tenant       text        NOT NULL,
    provider     text        NOT NULL,
    payout_id    text        NOT NULL,
    generation   bigint      NOT NULL,
    version      bigint      NOT NULL,
    status       text,
    currency     text,
    amount       bigint,
    difference   bigint,
    reconciled   boolean     NOT NULL,
    updated_at   timestamptz NOT NULL,
    doc          jsonb       NOT NULL,
    PRIMARY KEY (tenant, provider, payout_id)
);
CREATE TABLE {schema}.payout_lines (
    tenant       text        NOT NULL,
    provider     text        NOT NULL,
    payout_id    text        NOT NULL,
    line_id      text        NOT NULL,
    kind         text        NOT NULL,
    order_id     text,
    currency     text        NOT NULL,
    gross        bigint      NOT NULL,
    fee          bigint      NOT NULL,
    net          bigint      NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (tenant, provider, payout_id, line_id)
);
CREATE INDEX payout_lines_order ON {schema}.payout_lines (tenant, order_id);
"#,
    ),
];

const UPSERT_CUSTOMERS: &str = r#"
INSERT INTO {schema}.customers AS t
    (tenant, customer_id, generation, version, email, phone, redacted, merged_into, updated_at, doc)
SELECT u.tenant, u.customer_id, u.generation, u.version, u.email, u.phone, u.redacted, u.merged_into,
       'epoch'::timestamptz + u.updated_at_ms * interval '1 millisecond', u.doc::jsonb
FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::bool[],
            $8::text[], $9::int8[], $10::text[])
     AS u(tenant, customer_id, generation, version, email, phone, redacted, merged_into, updated_at_ms, doc)
ON CONFLICT (tenant, customer_id) DO UPDATE SET
    generation = EXCLUDED.generation, version = EXCLUDED.version, email = EXCLUDED.email,
    phone = EXCLUDED.phone, redacted = EXCLUDED.redacted, merged_into = EXCLUDED.merged_into,
    updated_at = EXCLUDED.updated_at, doc = EXCLUDED.doc
WHERE (t.generation, t.version) < (EXCLUDED.generation, EXCLUDED.version)
"#;

const UPSERT_ORDERS: &str = r#"
INSERT INTO {schema}.orders AS t
    (tenant, order_id, customer_id, generation, version, updated_at, doc)
SELECT u.tenant, u.order_id, u.customer_id, u.generation, u.version,
       'epoch'::timestamptz + u.updated_at_ms * interval '1 millisecond', u.doc::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::text[])
     AS u(tenant, order_id, customer_id, generation, version, updated_at_ms, doc)
ON CONFLICT (tenant, order_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, generation = EXCLUDED.generation,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at, doc = EXCLUDED.doc
WHERE (t.generation, t.version) < (EXCLUDED.generation, EXCLUDED.version)
"#;

/// Returns the keys it inserted or replaced: their lines are rewritten.
const UPSERT_PAYOUTS: &str = r#"
INSERT INTO {schema}.payouts AS t
    (tenant, provider, payout_id, generation, version, status, currency, amount, difference,
     reconciled, updated_at, doc)
SELECT u.tenant, u.provider, u.payout_id, u.generation, u.version, u.status, u.currency,
       u.amount, u.difference, u.reconciled,
       'epoch'::timestamptz + u.updated_at_ms * interval '1 millisecond', u.doc::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[],
            $8::int8[], $9::int8[], $10::bool[], $11::int8[], $12::text[])
     AS u(tenant, provider, payout_id, generation, version, status, currency, amount, difference,
          reconciled, updated_at_ms, doc)
ON CONFLICT (tenant, provider, payout_id) DO UPDATE SET
    generation = EXCLUDED.generation, version = EXCLUDED.version, status = EXCLUDED.status,
    currency = EXCLUDED.currency, amount = EXCLUDED.amount, difference = EXCLUDED.difference,
    reconciled = EXCLUDED.reconciled, updated_at = EXCLUDED.updated_at, doc = EXCLUDED.doc
WHERE (t.generation, t.version) < (EXCLUDED.generation, EXCLUDED.version)
RETURNING t.tenant, t.provider, t.payout_id
"#;

const DELETE_PAYOUT_LINES: &str = r#"
DELETE FROM {schema}.payout_lines AS l
USING unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, provider, payout_id)
WHERE l.tenant = k.tenant AND l.provider = k.provider AND l.payout_id = k.payout_id
"#;

/// A line's `currency` is that of its `net` (`fee` is in it, and `net = gross −
/// fee`). A line lacking a field inserts a NULL and is refused (23502).
const INSERT_PAYOUT_LINES: &str = r#"
INSERT INTO {schema}.payout_lines
    (tenant, provider, payout_id, line_id, kind, order_id, currency, gross, fee, net, at)
SELECT p.tenant, p.provider, p.payout_id, l->>'line_id', l->>'kind', l->>'order_id',
       l->'net'->>'currency', (l->'gross'->>'minor')::bigint, (l->'fee'->>'minor')::bigint,
       (l->'net'->>'minor')::bigint, (l->>'at')::timestamptz
FROM unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, provider, payout_id)
JOIN {schema}.payouts AS p
  ON p.tenant = k.tenant AND p.provider = k.provider AND p.payout_id = k.payout_id
CROSS JOIN LATERAL jsonb_array_elements(COALESCE(p.doc->'lines', '[]'::jsonb)) AS l
"#;

const INSERT_TRIGGERS: &str = r#"
INSERT INTO {schema}.triggers
    (trigger_id, tenant, customer_id, order_id, kind, occurred_at, source_event_id, data)
SELECT u.trigger_id, u.tenant, u.customer_id, u.order_id, u.kind,
       'epoch'::timestamptz + u.occurred_at_ms * interval '1 millisecond', u.source_event_id,
       u.data::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[],
            $8::text[])
     AS u(trigger_id, tenant, customer_id, order_id, kind, occurred_at_ms, source_event_id, data)
ON CONFLICT (trigger_id) DO NOTHING
"#;

/// The sink's own metrics.
#[derive(Clone, Debug)]
struct PgMetrics {
    /// `storefold_sink_postgres_rows_total{table,outcome}`: applied, or
    /// skipped because the table held the same or a newer version (customers,
    /// orders, payouts) or the trigger already (triggers); `payout_lines`
    /// counts the lines inserted (applied) only.
    rows: IntCounterVec,
    reconnects: IntCounter,
}

impl PgMetrics {
    fn new(registry: &Registry) -> Self {
        Self {
            rows: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "storefold_sink_postgres_rows_total",
                        "Rows of the PostgreSQL sink's statements by table and outcome (applied, skipped: the table held the same or a newer version, or the trigger)"
                    ),
                    &["table", "outcome"]
                )
            ),
            reconnects: register!(
                registry,
                IntCounter::new(
                    "storefold_sink_postgres_connects_total",
                    "Connections the PostgreSQL sink opened"
                )
            ),
        }
    }

    fn rows(&self, table: &str, total: usize, applied: u64) {
        self.rows
            .with_label_values(&[table, "applied"])
            .inc_by(applied);
        self.rows
            .with_label_values(&[table, "skipped"])
            .inc_by((total as u64).saturating_sub(applied));
    }
}

struct Statements {
    customers: Statement,
    orders: Statement,
    payouts: Statement,
    delete_payout_lines: Statement,
    insert_payout_lines: Statement,
    triggers: Statement,
}

struct Connection {
    client: Client,
    /// Prepared once the migrations ran.
    statements: Option<Statements>,
}

/// The PostgreSQL sink. See the module documentation.
pub struct PostgresSink {
    pg: tokio_postgres::Config,
    tls: RustlsConnect,
    sslmode: SslMode,
    url: String,
    schema: String,
    triggers: bool,
    conn: Option<Connection>,
    migrated: bool,
    metrics: PgMetrics,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("url", &self.url)
            .field("sslmode", &self.sslmode)
            .field("schema", &self.schema)
            .field("triggers", &self.triggers)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// How a failed statement is handled.
enum Failure {
    /// The connection or the server: try again later.
    Retryable(String),
    /// A row's data: find it and dead-letter it.
    Data { sqlstate: String, message: String },
    /// Retrying cannot help.
    Fatal(String),
}

fn classify(e: &tokio_postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        // I/O, a closed connection, a timeout: the server or the network.
        return Failure::Retryable(e.to_string());
    };
    let sqlstate = db.code().code().to_string();
    let message = match db.detail() {
        Some(d) => format!("{}: {} ({d})", sqlstate, db.message()),
        None => format!("{}: {}", sqlstate, db.message()),
    };
    match &sqlstate[..2] {
        // Data exception, integrity constraint violation, program limit
        // exceeded (e.g. an index row too large): one row's fault.
        "22" | "23" | "54" => Failure::Data { sqlstate, message },
        // Invalid authorization, catalog or schema; syntax error or access rule
        // violation (permission denied, undefined table or column): the
        // deployment's, and no retry changes it.
        "28" | "3D" | "3F" | "42" => Failure::Fatal(message),
        // Connection exception, transaction rollback (serialization failure,
        // deadlock), insufficient resources, operator intervention (shutdown,
        // statement timeout), lock not available, and anything else.
        _ => Failure::Retryable(message),
    }
}

impl From<Failure> for WriteError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Retryable(message) => WriteError::Retryable {
                message,
                retry_after: None,
            },
            Failure::Data { message, .. } => WriteError::Retryable {
                message,
                retry_after: None,
            },
            Failure::Fatal(message) => WriteError::Fatal { message },
        }
    }
}

/// A stable advisory-lock key per schema (FNV-1a), so that sinks migrating the
/// same schema take turns while different schemas do not wait for each other.
fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"storefold-sink-postgres-migrations:"
        .iter()
        .chain(schema.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The columns of one table's statement, borrowed from the batch.
#[derive(Default)]
struct Columns<'a> {
    customers: CustomerColumns<'a>,
    orders: OrderColumns<'a>,
    payouts: PayoutColumns<'a>,
    triggers: TriggerColumns<'a>,
}

#[derive(Default)]
struct CustomerColumns<'a> {
    tenant: Vec<&'a str>,
    id: Vec<&'a str>,
    generation: Vec<i64>,
    version: Vec<i64>,
    email: Vec<Option<&'a str>>,
    phone: Vec<Option<&'a str>>,
    redacted: Vec<bool>,
    merged_into: Vec<Option<&'a str>>,
    updated_at: Vec<i64>,
    /// Owned only when a redacted customer's document had to be cleaned.
    doc: Vec<Cow<'a, str>>,
}

#[derive(Default)]
struct OrderColumns<'a> {
    tenant: Vec<&'a str>,
    id: Vec<&'a str>,
    customer_id: Vec<Option<&'a str>>,
    generation: Vec<i64>,
    version: Vec<i64>,
    updated_at: Vec<i64>,
    doc: Vec<&'a str>,
}

#[derive(Default)]
struct PayoutColumns<'a> {
    tenant: Vec<&'a str>,
    provider: Vec<&'a str>,
    id: Vec<&'a str>,
    generation: Vec<i64>,
    version: Vec<i64>,
    status: Vec<Option<&'a str>>,
    currency: Vec<Option<&'a str>>,
    amount: Vec<Option<i64>>,
    difference: Vec<Option<i64>>,
    reconciled: Vec<bool>,
    updated_at: Vec<i64>,
    doc: Vec<&'a str>,
}

#[derive(Default)]
struct TriggerColumns<'a> {
    id: Vec<&'a str>,
    tenant: Vec<&'a str>,
    customer_id: Vec<&'a str>,
    order_id: Vec<Option<&'a str>>,
    kind: Vec<&'a str>,
    occurred_at: Vec<i64>,
    source_event_id: Vec<&'a str>,
    data: Vec<&'a str>,
}

/// Fields of the Customer 360 that hold the customer's personal data: values
/// (`null` once erased) and lists (`[]` once erased).
const PERSONAL_VALUES: &[&str] = &["email", "phone", "first_name", "last_name"];
const PERSONAL_LISTS: &[&str] = &["addresses", "identities", "tags"];

/// A redacted customer's document with its personal fields emptied, whatever
/// the projection still carries (the processor empties them already; this
/// keeps an older or faulty producer's leftovers out of the table too). The
/// document as it is when it holds none, or is not a JSON object (PostgreSQL
/// then judges it).
fn redacted_doc(doc: &str) -> Cow<'_, str> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(doc) else {
        return Cow::Borrowed(doc);
    };
    let erased = PERSONAL_VALUES
        .iter()
        .map(|f| (*f, serde_json::Value::Null))
        .chain(
            PERSONAL_LISTS
                .iter()
                .map(|f| (*f, serde_json::Value::Array(Vec::new()))),
        );
    let mut changed = false;
    for (name, empty) in erased {
        if let Some(v) = fields.get_mut(name)
            && *v != empty
        {
            *v = empty;
            changed = true;
        }
    }
    if !changed {
        return Cow::Borrowed(doc);
    }
    Cow::Owned(serde_json::Value::Object(fields).to_string())
}

impl<'a> Columns<'a> {
    fn of(records: &[&'a SinkRecord]) -> Self {
        let mut c = Columns::default();
        for r in records {
            match &r.item {
                Item::Customer(p) => {
                    let t = &mut c.customers;
                    t.tenant.push(&p.tenant);
                    t.id.push(&p.customer_id);
                    t.generation.push(p.generation);
                    t.version.push(p.version);
                    // A redacted customer's contact data is erased here too,
                    // whatever the projection still carries.
                    t.email.push(p.email.as_deref().filter(|_| !p.redacted));
                    t.phone.push(p.phone.as_deref().filter(|_| !p.redacted));
                    t.redacted.push(p.redacted);
                    t.merged_into.push(p.merged_into.as_deref());
                    t.updated_at.push(p.updated_at);
                    t.doc.push(if p.redacted {
                        redacted_doc(&p.doc)
                    } else {
                        Cow::Borrowed(&p.doc)
                    });
                }
                Item::Order(p) => {
                    let t = &mut c.orders;
                    t.tenant.push(&p.tenant);
                    t.id.push(&p.order_id);
                    t.customer_id.push(p.customer_id.as_deref());
                    t.generation.push(p.generation);
                    t.version.push(p.version);
                    t.updated_at.push(p.updated_at);
                    t.doc.push(&p.doc);
                }
                Item::Payout(p) => {
                    let t = &mut c.payouts;
                    t.tenant.push(&p.tenant);
                    t.provider.push(&p.provider);
                    t.id.push(&p.payout_id);
                    t.generation.push(p.generation);
                    t.version.push(p.version);
                    t.status.push(p.status.as_deref());
                    t.currency.push(p.currency.as_deref());
                    t.amount.push(p.amount);
                    t.difference.push(p.difference);
                    t.reconciled.push(p.reconciled);
                    t.updated_at.push(p.updated_at);
                    t.doc.push(&p.doc);
                }
                Item::Trigger(p) => {
                    let t = &mut c.triggers;
                    t.id.push(&p.trigger_id);
                    t.tenant.push(&p.tenant);
                    t.customer_id.push(&p.customer_id);
                    t.order_id.push(p.order_id.as_deref());
                    t.kind.push(&p.kind);
                    t.occurred_at.push(p.occurred_at);
                    t.source_event_id.push(&p.source_event_id);
                    t.data.push(&p.data);
                }
            }
        }
        c
    }
}

impl PostgresSink {
    /// A sink for `cfg`, its metrics registered in `registry`. Connects at once
    /// when it can; a server that cannot be reached yet is left to
    /// [`Sink::prepare`], which the runner retries. Fails (fatally) on a URL that
    /// does not parse and on credentials or a database the server refuses.
    pub async fn connect(
        cfg: &PostgresSinkConfig,
        registry: &Registry,
    ) -> Result<Self, WriteError> {
        let url = redact_url(cfg.url.expose_secret());
        let fatal = |message: String| WriteError::Fatal { message };
        // tokio-postgres knows neither the verifying modes nor root files.
        let (rest, url_mode, url_root) = split_ssl_params(cfg.url.expose_secret());
        let mut pg: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| fatal(format!("sinks.postgres.url ({url}) does not parse: {e}")))?;
        let mode_name = cfg.sslmode.clone().or(url_mode);
        let sslmode = match mode_name.as_deref() {
            None => SslMode::Prefer,
            Some(m) => SslMode::parse(m).map_err(|e| fatal(format!("sinks.postgres: {e}")))?,
        };
        let rootcert = cfg
            .sslrootcert
            .clone()
            .or(url_root.map(std::path::PathBuf::from));
        if rootcert.is_some() && !matches!(sslmode, SslMode::VerifyCa | SslMode::VerifyFull) {
            tracing::warn!(
                sslmode = sslmode.as_str(),
                "sinks.postgres.sslrootcert is only used by sslmode verify-ca and verify-full"
            );
        }
        let tls = connector(sslmode, rootcert.as_ref()).map_err(|e| {
            fatal(format!(
                "sinks.postgres ({url}, sslmode={}): {e}",
                sslmode.as_str()
            ))
        })?;
        pg.ssl_mode(sslmode.driver());
        pg.connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if pg.get_application_name().is_none() {
            pg.application_name("storefold-sink-postgres");
        }
        let mut sink = PostgresSink {
            pg,
            tls,
            sslmode,
            url,
            schema: cfg.schema.clone(),
            triggers: cfg.triggers,
            conn: None,
            migrated: false,
            metrics: PgMetrics::new(registry),
        };
        match sink.open().await {
            Ok(client) => {
                sink.conn = Some(Connection {
                    client,
                    statements: None,
                })
            }
            Err(Failure::Fatal(message)) => return Err(WriteError::Fatal { message }),
            Err(Failure::Retryable(m) | Failure::Data { message: m, .. }) => {
                tracing::warn!(url = %sink.url, error = %m, "PostgreSQL not reachable yet; will retry");
            }
        }
        Ok(sink)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    async fn open(&self) -> Result<Client, Failure> {
        let (client, connection) = self.pg.connect(self.tls.clone()).await.map_err(|e| {
            if let Some(why) = tls_refusal(&e) {
                return Failure::Fatal(format!(
                    "connect to {} (sslmode={}): {why}",
                    self.url,
                    self.sslmode.as_str()
                ));
            }
            let f = classify(&e);
            match f {
                Failure::Fatal(m)
                    if m.contains("no encryption")
                        && matches!(self.sslmode, SslMode::Disable | SslMode::Prefer) =>
                {
                    Failure::Fatal(format!(
                        "connect to {} (sslmode={}): {m} (the server accepts only TLS \
                         connections: set sinks.postgres.sslmode = \"verify-full\")",
                        self.url,
                        self.sslmode.as_str()
                    ))
                }
                Failure::Fatal(m) => Failure::Fatal(format!("connect to {}: {m}", self.url)),
                Failure::Retryable(m) | Failure::Data { message: m, .. } => {
                    Failure::Retryable(format!("connect to {}: {m}", self.url))
                }
            }
        })?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(url = %url, error = %e, "PostgreSQL connection closed");
            }
        });
        self.metrics.reconnects.inc();
        Ok(client)
    }

    fn sql(&self, template: &str) -> String {
        template.replace("{schema}", &self.schema)
    }

    async fn statements(&self, client: &Client) -> Result<Statements, Failure> {
        let prep = |sql: String| async move {
            client.prepare(&sql).await.map_err(|e| match classify(&e) {
                Failure::Fatal(m) | Failure::Data { message: m, .. } => Failure::Fatal(format!(
                    "{m}: the tables of the migrations are gone or not accessible"
                )),
                r => r,
            })
        };
        Ok(Statements {
            customers: prep(self.sql(UPSERT_CUSTOMERS)).await?,
            orders: prep(self.sql(UPSERT_ORDERS)).await?,
            payouts: prep(self.sql(UPSERT_PAYOUTS)).await?,
            delete_payout_lines: prep(self.sql(DELETE_PAYOUT_LINES)).await?,
            insert_payout_lines: prep(self.sql(INSERT_PAYOUT_LINES)).await?,
            triggers: prep(self.sql(INSERT_TRIGGERS)).await?,
        })
    }

    /// The live connection, reconnecting when there is none.
    async fn connection(&mut self) -> Result<&mut Connection, Failure> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = self.open().await?;
            tracing::info!(url = %self.url, "connected to PostgreSQL");
            self.conn = Some(Connection {
                client,
                statements: None,
            });
        }
        let migrated = self.migrated;
        let needs_statements = self.conn.as_ref().is_some_and(|c| c.statements.is_none());
        if migrated && needs_statements {
            let conn = self.conn.as_ref().expect("connected above");
            let statements = self.statements(&conn.client).await?;
            self.conn.as_mut().expect("connected above").statements = Some(statements);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs the migrations that `schema_migrations` does not list yet, each in
    /// its own transaction, under a session advisory lock so that sinks starting
    /// together take turns.
    async fn migrate(&mut self) -> Result<(), Failure> {
        let schema = self.schema.clone();
        let key = lock_key(&schema);
        let conn = self.connection().await?;
        let client = &mut conn.client;
        let db = |e: tokio_postgres::Error| classify(&e);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .map_err(db)?;
        let result = async {
            // `CREATE SCHEMA IF NOT EXISTS` checks the CREATE privilege even when
            // the schema exists: look first, so a schema a DBA created works.
            let exists = client
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
                .await
                .map_err(db)?
                .is_some();
            if !exists {
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .map_err(db)?;
            }
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                         version integer PRIMARY KEY,
                         name text NOT NULL,
                         applied_at timestamptz NOT NULL DEFAULT now())"
                ))
                .await
                .map_err(db)?;
            let done: Vec<i32> = client
                .query(
                    &format!("SELECT version FROM {schema}.schema_migrations"),
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for (version, name, sql) in MIGRATIONS {
                if done.contains(version) {
                    continue;
                }
                let tx = client.transaction().await.map_err(db)?;
                tx.batch_execute(&sql.replace("{schema}", &schema))
                    .await
                    .map_err(db)?;
                tx.execute(
                    &format!(
                        "INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"
                    ),
                    &[version, name],
                )
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                tracing::info!(schema = %schema, version, name, "PostgreSQL migration applied");
            }
            Ok::<(), Failure>(())
        }
        .await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await;
        result?;
        unlocked.map_err(db)?;
        Ok(())
    }

    /// One transaction, one statement per table present in `records`.
    async fn write_rows(&mut self, records: &[&SinkRecord]) -> Result<(), Failure> {
        let cols = Columns::of(records);
        let metrics = self.metrics.clone();
        let conn = self.connection().await?;
        let db = |e: tokio_postgres::Error| classify(&e);
        let Some(st) = &conn.statements else {
            return Err(Failure::Fatal("write before the migrations ran".into()));
        };
        let tx = conn.client.transaction().await.map_err(db)?;
        let c = &cols.customers;
        if !c.id.is_empty() {
            let docs: Vec<&str> = c.doc.iter().map(|d| d.as_ref()).collect();
            let params: [&(dyn ToSql + Sync); 10] = [
                &c.tenant,
                &c.id,
                &c.generation,
                &c.version,
                &c.email,
                &c.phone,
                &c.redacted,
                &c.merged_into,
                &c.updated_at,
                &docs,
            ];
            let n = tx.execute(&st.customers, &params).await.map_err(db)?;
            metrics.rows("customers", c.id.len(), n);
        }
        let o = &cols.orders;
        if !o.id.is_empty() {
            let params: [&(dyn ToSql + Sync); 7] = [
                &o.tenant,
                &o.id,
                &o.customer_id,
                &o.generation,
                &o.version,
                &o.updated_at,
                &o.doc,
            ];
            let n = tx.execute(&st.orders, &params).await.map_err(db)?;
            metrics.rows("orders", o.id.len(), n);
        }
        let p = &cols.payouts;
        if !p.id.is_empty() {
            let params: [&(dyn ToSql + Sync); 12] = [
                &p.tenant,
                &p.provider,
                &p.id,
                &p.generation,
                &p.version,
                &p.status,
                &p.currency,
                &p.amount,
                &p.difference,
                &p.reconciled,
                &p.updated_at,
                &p.doc,
            ];
            let replaced = tx.query(&st.payouts, &params).await.map_err(db)?;
            metrics.rows("payouts", p.id.len(), replaced.len() as u64);
            if !replaced.is_empty() {
                let mut keys: [Vec<String>; 3] = Default::default();
                for row in &replaced {
                    for (i, k) in keys.iter_mut().enumerate() {
                        k.push(row.get(i));
                    }
                }
                let params: [&(dyn ToSql + Sync); 3] = [&keys[0], &keys[1], &keys[2]];
                tx.execute(&st.delete_payout_lines, &params)
                    .await
                    .map_err(db)?;
                let n = tx
                    .execute(&st.insert_payout_lines, &params)
                    .await
                    .map_err(db)?;
                metrics
                    .rows
                    .with_label_values(&["payout_lines", "applied"])
                    .inc_by(n);
            }
        }
        let t = &cols.triggers;
        if !t.id.is_empty() {
            let params: [&(dyn ToSql + Sync); 8] = [
                &t.id,
                &t.tenant,
                &t.customer_id,
                &t.order_id,
                &t.kind,
                &t.occurred_at,
                &t.source_event_id,
                &t.data,
            ];
            let n = tx.execute(&st.triggers, &params).await.map_err(db)?;
            metrics.rows("triggers", t.id.len(), n);
        }
        tx.commit().await.map_err(db)
    }

    /// `write_rows` under the write timeout; a timeout drops the connection.
    async fn write_timed(&mut self, records: &[&SinkRecord]) -> Result<(), Failure> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.write_rows(records)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => {
                if matches!(f, Failure::Retryable(_)) {
                    self.conn = None;
                }
                Err(f)
            }
            Err(_) => {
                self.conn = None;
                Err(Failure::Retryable(format!(
                    "the write did not finish within {WRITE_TIMEOUT:?}"
                )))
            }
        }
    }

    /// After a data error: writes the halves of `records` separately, down to
    /// single rows, and collects the rows PostgreSQL refuses. Halves that pass
    /// are committed (the upserts are idempotent, so a retry of the whole batch
    /// later is harmless).
    async fn isolate(
        &mut self,
        batch: &[SinkRecord],
        indexes: Vec<usize>,
        rejections: &mut Vec<Rejection>,
    ) -> Result<(), WriteError> {
        let mut stack = vec![indexes];
        while let Some(part) = stack.pop() {
            let rows: Vec<&SinkRecord> = part.iter().map(|&i| &batch[i]).collect();
            match self.write_timed(&rows).await {
                Ok(()) => {}
                Err(Failure::Data { sqlstate, message }) => {
                    if part.len() == 1 {
                        rejections.push(Rejection {
                            index: part[0],
                            code: sqlstate,
                            reason: message,
                        });
                    } else {
                        let (a, b) = part.split_at(part.len() / 2);
                        stack.push(b.to_vec());
                        stack.push(a.to_vec());
                    }
                }
                Err(f) => return Err(f.into()),
            }
        }
        Ok(())
    }
}

impl Sink for PostgresSink {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn streams(&self) -> Vec<Stream> {
        let mut s = vec![Stream::Customers, Stream::Orders, Stream::Payouts];
        if self.triggers {
            s.push(Stream::Triggers);
        }
        s
    }

    async fn prepare(&mut self) -> Result<(), WriteError> {
        if let Err(f) = self.migrate().await {
            if matches!(f, Failure::Retryable(_)) {
                self.conn = None;
            }
            return Err(f.into());
        }
        self.migrated = true;
        self.connection().await.map_err(WriteError::from)?;
        Ok(())
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, WriteError> {
        if !self.migrated {
            self.prepare().await?;
        }
        let rows: Vec<&SinkRecord> = batch.iter().collect();
        match self.write_timed(&rows).await {
            Ok(()) => Ok(Vec::new()),
            Err(Failure::Data { sqlstate, message }) => {
                tracing::info!(
                    sqlstate = %sqlstate,
                    error = %message,
                    records = batch.len(),
                    "PostgreSQL refused a row of the batch; finding it"
                );
                let mut rejections = Vec::new();
                self.isolate(batch, (0..batch.len()).collect(), &mut rejections)
                    .await?;
                rejections.sort_by_key(|r| r.index);
                Ok(rejections)
            }
            Err(f) => Err(f.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_eq!(lock_key("storefold"), lock_key("storefold"));
        assert_ne!(lock_key("storefold"), lock_key("crm"));
    }

    #[tokio::test]
    async fn bad_tls_settings_and_bad_urls_are_refused_at_start() {
        let cfg = |url: &str| PostgresSinkConfig {
            url: url.into(),
            schema: "storefold".into(),
            group_id: "g".into(),
            batch_size: 10,
            linger_ms: 10,
            triggers: true,
            sslmode: None,
            sslrootcert: None,
        };
        let err = PostgresSink::connect(
            &cfg("postgres://u:secret@db:5432/crm?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"),
            &Registry::new(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("fatal:") && msg.contains("sslrootcert /nonexistent/ca.pem"),
            "{msg}"
        );
        assert!(!msg.contains("secret"), "the password is redacted: {msg}");
        let err = PostgresSink::connect(
            &cfg("postgres://u:secret@db:5432/crm?sslmode=allow"),
            &Registry::new(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("\"allow\" is not one of"), "{err}");
        let err = PostgresSink::connect(&cfg("postgres://db:notaport/crm"), &Registry::new())
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("fatal:"), "{err}");
    }

    #[test]
    fn a_redacted_customer_s_document_keeps_no_personal_field() {
        let doc = r#"{"customer_id":"cus_em_1","email":"ada@example.com","phone":"+14155550100",
            "first_name":"Ada","last_name":"Lovelace","addresses":[{"line1":"12 St James's Sq"}],
            "identities":[{"kind":"email","value":"ada@example.com"}],"tags":["vip-ada"],
            "orders_count":3}"#;
        let clean = redacted_doc(doc);
        let v: serde_json::Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"customer_id": "cus_em_1", "email": null, "phone": null,
                "first_name": null, "last_name": null, "addresses": [], "identities": [],
                "tags": [], "orders_count": 3})
        );
        // Already clean, or not a document: left as it is.
        let scrubbed = r#"{"customer_id":"cus_em_1","email":null,"addresses":[]}"#;
        assert!(matches!(redacted_doc(scrubbed), Cow::Borrowed(_)));
        assert!(matches!(redacted_doc("{not json"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_statement_names_the_schema() {
        for t in [
            UPSERT_CUSTOMERS,
            UPSERT_ORDERS,
            UPSERT_PAYOUTS,
            DELETE_PAYOUT_LINES,
            INSERT_PAYOUT_LINES,
            INSERT_TRIGGERS,
        ] {
            assert!(t.contains("{schema}."));
        }
        for (_, _, sql) in MIGRATIONS {
            assert!(!sql.replace("{schema}.", "").contains("{schema}"));
        }
    }
}
