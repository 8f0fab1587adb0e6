//! A stand-in for a Confluent schema registry: an in-memory HTTP server that keeps
//! the registry's documented REST contract for Avro, so storefold's registry client,
//! its roles and a Kafka Connect-style reader can be tested without a JVM.
//!
//! What it implements, as the real registry does:
//!
//! - `POST /subjects/{subject}/versions` `{"schema": "..."}` answers `{"id": n}`.
//!   Ids are global: the same schema (by Parsing Canonical Form) gets the same id
//!   under every subject, and registering a schema a subject already holds adds no
//!   version. A schema that cannot read data written with the subject's latest
//!   version (`BACKWARD`, the registry's default) is refused with 409 and
//!   `error_code` 409; one that does not parse with 422 and 42201.
//! - `GET /schemas/ids/{id}` answers `{"schema": "..."}`, or 404 with 40403.
//! - `GET /subjects/{subject}/versions` answers `[1, 2, ...]`, or 404 with 40401.
//! - `GET /subjects/{subject}/versions/{version|latest}` answers
//!   `{"subject", "version", "id", "schema"}`, or 404 with 40401 / 40402.
//! - With [`SchemaRegistryStandIn::start_with_auth`], a request without the right
//!   basic-auth credentials gets 401.
//!
//! Answers carry `Content-Type: application/vnd.schemaregistry.v1+json`; errors
//! are `{"error_code": n, "message": "..."}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use storefold_codec::apache_avro::Schema;
use storefold_codec::apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use storefold_codec::parsing_canonical_form;
use storefold_codec::registry::REGISTRY_CONTENT_TYPE;

#[derive(Debug, Default)]
struct Store {
    /// Schema JSON by id - 1.
    schemas: Vec<String>,
    /// Parsing Canonical Form -> id.
    by_form: HashMap<String, u32>,
    /// Subject -> ids of its versions, version 1 first.
    subjects: HashMap<String, Vec<u32>>,
    /// Requests served (all paths).
    requests: usize,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    /// The expected `Authorization` header, when basic auth is on.
    authorization: Option<String>,
}

/// A running stand-in registry; stops when dropped.
#[derive(Debug)]
pub struct SchemaRegistryStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SchemaRegistryStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SchemaRegistryStandIn {
    /// Starts a registry without authentication on a free local port.
    pub async fn start() -> SchemaRegistryStandIn {
        Self::launch(None).await
    }

    /// Starts a registry that requires basic auth with `username` and `password`.
    pub async fn start_with_auth(username: &str, password: &str) -> SchemaRegistryStandIn {
        use base64::Engine;
        let pair = format!("{username}:{password}");
        Self::launch(Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )))
        .await
    }

    async fn launch(authorization: Option<String>) -> SchemaRegistryStandIn {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            authorization,
        });
        let app = Router::new()
            .route("/subjects/{subject}/versions", get(versions).post(register))
            .route("/subjects/{subject}/versions/{version}", get(version))
            .route("/schemas/ids/{id}", get(schema_by_id))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the schema registry stand-in");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SchemaRegistryStandIn { addr, shared, task }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far (to see a client's cache at work).
    pub fn requests(&self) -> usize {
        self.store().requests
    }

    /// The subjects registered so far, sorted.
    pub fn subjects(&self) -> Vec<String> {
        let mut s: Vec<String> = self.store().subjects.keys().cloned().collect();
        s.sort();
        s
    }

    /// The schema JSON of `id`, if registered.
    pub fn schema(&self, id: u32) -> Option<String> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.store().schemas.get(i).cloned()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().expect("registry store")
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, REGISTRY_CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    answer(
        status,
        serde_json::json!({ "error_code": code, "message": message.into() }),
    )
}

/// Counts the request and checks its credentials: the refusal, if any.
fn admit(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    shared.store.lock().expect("registry store").requests += 1;
    match &shared.authorization {
        Some(expected)
            if headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                != Some(expected.as_str()) =>
        {
            Some(error(
                StatusCode::UNAUTHORIZED,
                401,
                "Unauthorized: basic auth credentials are missing or wrong",
            ))
        }
        _ => None,
    }
}

async fn register(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = admit(&shared, &headers) {
        return r;
    }
    let json = match serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("schema")?.as_str().map(str::to_owned))
    {
        Some(s) => s,
        None => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                "Invalid schema: the body must be {\"schema\": \"<schema JSON>\"}",
            );
        }
    };
    let schema = match Schema::parse_str(&json) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                42201,
                format!("Invalid schema: {e}"),
            );
        }
    };
    let form = parsing_canonical_form(&schema);
    let mut store = shared.store.lock().expect("registry store");
    let known = store.by_form.get(&form).copied();
    let versions = store.subjects.get(&subject).cloned().unwrap_or_default();
    if let Some(id) = known
        && versions.contains(&id)
    {
        return answer(StatusCode::OK, serde_json::json!({ "id": id }));
    }
    if let Some(latest) = versions.last() {
        let latest_json = &store.schemas[(*latest - 1) as usize];
        let latest_schema = Schema::parse_str(latest_json).expect("stored schemas parse");
        let compatible = matches!(
            SchemaCompatibility::can_read(&latest_schema, &schema),
            Ok(Compatibility::Full)
        );
        if !compatible {
            return error(
                StatusCode::CONFLICT,
                409,
                format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\" (BACKWARD)"
                ),
            );
        }
    }
    let id = match known {
        Some(id) => id,
        None => {
            store.schemas.push(json);
            let id = u32::try_from(store.schemas.len()).expect("few schemas");
            store.by_form.insert(form, id);
            id
        }
    };
    store.subjects.entry(subject).or_default().push(id);
    answer(StatusCode::OK, serde_json::json!({ "id": id }))
}

async fn versions(
    State(shared): State<Arc<Shared>>,
    Path(subject): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(&shared, &headers) {
        return r;
    }
    let store = shared.store.lock().expect("registry store");
    match store.subjects.get(&subject) {
        Some(ids) => answer(
            StatusCode::OK,
            serde_json::json!((1..=ids.len()).collect::<Vec<_>>()),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        ),
    }
}

async fn version(
    State(shared): State<Arc<Shared>>,
    Path((subject, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(&shared, &headers) {
        return r;
    }
    let store = shared.store.lock().expect("registry store");
    let Some(ids) = store.subjects.get(&subject) else {
        return error(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{subject}' not found."),
        );
    };
    let index = match version.as_str() {
        "latest" => ids.len().checked_sub(1),
        v => v
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < ids.len()),
    };
    let Some(index) = index else {
        return error(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {version} not found."),
        );
    };
    let id = ids[index];
    answer(
        StatusCode::OK,
        serde_json::json!({
            "subject": subject,
            "version": index + 1,
            "id": id,
            "schema": store.schemas[(id - 1) as usize],
        }),
    )
}

async fn schema_by_id(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(&shared, &headers) {
        return r;
    }
    let store = shared.store.lock().expect("registry store");
    let schema = id
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| store.schemas.get(i));
    match schema {
        Some(s) => answer(StatusCode::OK, serde_json::json!({ "schema": s })),
        None => error(
            StatusCode::NOT_FOUND,
            40403,
            format!("Schema {id} not found"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use storefold_codec::registry::{
        INCOMPATIBLE_SCHEMA, RegistryAuth, RegistryClient, SCHEMA_NOT_FOUND, SUBJECT_NOT_FOUND,
        SubjectNameStrategy, VERSION_NOT_FOUND, bind_topics, learn_writer,
    };
    use storefold_codec::{AvroCodec, RecordKind, Trigger, WireFormat};

    use super::*;

    fn client(sr: &SchemaRegistryStandIn) -> RegistryClient {
        RegistryClient::new(&sr.url(), None, Duration::from_secs(5)).unwrap()
    }

    fn trigger() -> Trigger {
        Trigger {
            trigger_id: "t1".into(),
            tenant: "acme".into(),
            customer_id: "c1".into(),
            order_id: Some("o1".into()),
            kind: "first_order".into(),
            occurred_at: 1_700_000_000_000,
            source_event_id: "e1".into(),
            data: "{}".into(),
        }
    }

    /// The trigger schema of an older build: without `order_id` (which the
    /// current schema defaults to null), so the current one reads its data.
    fn older_trigger_schema() -> String {
        let mut v: serde_json::Value =
            serde_json::from_str(RecordKind::Trigger.embedded_json()).unwrap();
        let fields = v["fields"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "order_id");
        v.to_string()
    }

    #[tokio::test]
    async fn registering_is_idempotent_and_ids_are_global() {
        let sr = SchemaRegistryStandIn::start().await;
        let c = client(&sr);
        let json = AvroCodec::embedded()
            .unwrap()
            .schema_json(RecordKind::Trigger);
        let id = c.register("t-value", &json).await.unwrap();
        // A second client (no cache) gets the same id and adds no version.
        let again = client(&sr).register("t-value", &json).await.unwrap();
        assert_eq!(again, id);
        assert_eq!(c.versions("t-value").await.unwrap(), vec![1]);
        // The same schema under another subject keeps its id.
        assert_eq!(client(&sr).register("u-value", &json).await.unwrap(), id);
        let v = c.version("u-value", 1).await.unwrap();
        assert_eq!((v.id, v.version, v.subject.as_str()), (id, 1, "u-value"));
        assert_eq!(c.schema(id).await.unwrap(), json);
        assert_eq!(sr.subjects(), vec!["t-value", "u-value"]);
    }

    #[tokio::test]
    async fn errors_carry_the_registrys_codes() {
        let sr = SchemaRegistryStandIn::start().await;
        let c = client(&sr);
        let codec = AvroCodec::embedded().unwrap();
        c.register("t-value", &codec.schema_json(RecordKind::Trigger))
            .await
            .unwrap();
        // Another record under the same subject cannot read the trigger's data.
        let e = c
            .register("t-value", &codec.schema_json(RecordKind::RawEvent))
            .await
            .unwrap_err();
        assert!(e.is_incompatible(), "{e}");
        assert_eq!(e.error_code(), Some(INCOMPATIBLE_SCHEMA));
        assert!(e.to_string().contains("HTTP 409"), "{e}");
        let e = c.schema(99).await.unwrap_err();
        assert_eq!(e.error_code(), Some(SCHEMA_NOT_FOUND), "{e}");
        let e = c.version("nobody-value", 1).await.unwrap_err();
        assert_eq!(e.error_code(), Some(SUBJECT_NOT_FOUND), "{e}");
        let e = c.version("t-value", 7).await.unwrap_err();
        assert_eq!(e.error_code(), Some(VERSION_NOT_FOUND), "{e}");
        // An unknown subject simply has no versions.
        assert!(c.versions("nobody-value").await.unwrap().is_empty());
        let e = c
            .register("t-value", "{\"type\": \"nope\"}")
            .await
            .unwrap_err();
        assert_eq!(e.error_code(), Some(42201), "{e}");
        // Nobody listening: a transport error naming the request.
        let gone = RegistryClient::new("http://127.0.0.1:1", None, Duration::from_secs(2)).unwrap();
        let e = gone.schema(1).await.unwrap_err();
        assert!(e.to_string().contains("GET /schemas/ids/1"), "{e}");
    }

    #[tokio::test]
    async fn answers_are_cached_both_ways() {
        let sr = SchemaRegistryStandIn::start().await;
        let c = client(&sr);
        let json = AvroCodec::embedded()
            .unwrap()
            .schema_json(RecordKind::Trigger);
        let id = c.register("t-value", &json).await.unwrap();
        let after_register = sr.requests();
        assert_eq!(c.register("t-value", &json).await.unwrap(), id);
        // The id learnt by registering also answers the schema.
        assert_eq!(c.schema(id).await.unwrap(), json);
        assert_eq!(sr.requests(), after_register);
        let other = client(&sr);
        other.schema(id).await.unwrap();
        other.schema(id).await.unwrap();
        assert_eq!(sr.requests(), after_register + 1);
    }

    #[tokio::test]
    async fn basic_auth_is_sent_and_required() {
        let sr = SchemaRegistryStandIn::start_with_auth("key", "s3cret").await;
        let json = AvroCodec::embedded()
            .unwrap()
            .schema_json(RecordKind::Trigger);
        let e = client(&sr).register("t-value", &json).await.unwrap_err();
        assert_eq!(e.error_code(), Some(401), "{e}");
        let auth = |password: &str| RegistryAuth {
            username: "key".into(),
            password: password.into(),
        };
        let wrong = RegistryClient::new(&sr.url(), Some(auth("nope")), Duration::from_secs(5));
        let e = wrong.unwrap().register("t-value", &json).await.unwrap_err();
        assert!(!e.to_string().contains("nope"), "{e}");
        let right = RegistryClient::new(&sr.url(), Some(auth("s3cret")), Duration::from_secs(5));
        assert_eq!(right.unwrap().register("t-value", &json).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_bound_codec_writes_confluent_frames_and_reads_earlier_versions() {
        let sr = SchemaRegistryStandIn::start().await;
        let c = client(&sr);
        // An older build registered its trigger schema first.
        let old_id = c
            .register("storefold.triggers-value", &older_trigger_schema())
            .await
            .unwrap();
        let mut codec = AvroCodec::embedded().unwrap();
        let topics = vec![("storefold.triggers".to_string(), RecordKind::Trigger)];
        let binding = bind_topics(&c, SubjectNameStrategy::TopicName, &mut codec, &topics)
            .await
            .unwrap();
        assert!(binding.unreadable.is_empty(), "{:?}", binding.unreadable);
        let id = binding.framing.schema_id(RecordKind::Trigger).unwrap();
        assert_ne!(id, old_id);
        assert_eq!(
            c.versions("storefold.triggers-value").await.unwrap(),
            vec![1, 2]
        );
        let bytes = codec
            .encode(&trigger(), binding.framing.format(RecordKind::Trigger))
            .unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()), id);
        assert_eq!(codec.decode::<Trigger>(&bytes).unwrap(), trigger());
        // Data the older build wrote decodes, its missing field defaulted.
        assert!(codec.knows_schema_id(old_id));
        let old = apache_avro_datum(&older_trigger_schema(), old_id);
        let read = codec.decode::<Trigger>(&old).unwrap();
        assert_eq!(read.order_id, None);
        assert_eq!(read.trigger_id, "t1");
        // The record name strategy: one subject per record, whatever the topic.
        let mut codec2 = AvroCodec::embedded().unwrap();
        let b2 = bind_topics(&c, SubjectNameStrategy::RecordName, &mut codec2, &topics)
            .await
            .unwrap();
        assert_eq!(b2.framing.schema_id(RecordKind::Trigger), Some(id));
        assert!(sr.subjects().contains(&"io.storefold.Trigger".to_string()));
    }

    #[tokio::test]
    async fn a_reader_learns_an_id_registered_after_it_started() {
        let sr = SchemaRegistryStandIn::start().await;
        let c = client(&sr);
        let mut reader = AvroCodec::embedded().unwrap();
        let old_id = c
            .register("x-value", &older_trigger_schema())
            .await
            .unwrap();
        let payload = apache_avro_datum(&older_trigger_schema(), old_id);
        assert!(reader.decode::<Trigger>(&payload).is_err());
        learn_writer(&c, &mut reader, RecordKind::Trigger, &payload)
            .await
            .unwrap();
        assert_eq!(reader.decode::<Trigger>(&payload).unwrap().trigger_id, "t1");
        // Single-object payloads need nothing from the registry.
        let before = sr.requests();
        let so = reader.encode(&trigger(), WireFormat::SingleObject).unwrap();
        learn_writer(&c, &mut reader, RecordKind::Trigger, &so)
            .await
            .unwrap();
        assert_eq!(sr.requests(), before);
    }

    /// A Confluent frame of a trigger written with `schema` (without `order_id`).
    fn apache_avro_datum(schema: &str, id: u32) -> Vec<u8> {
        use storefold_codec::apache_avro::types::{Record, Value};
        let schema = Schema::parse_str(schema).unwrap();
        let mut r = Record::new(&schema).unwrap();
        r.put("trigger_id", "t1");
        r.put("tenant", "acme");
        r.put("customer_id", "c1");
        r.put("kind", "first_order");
        r.put("occurred_at", Value::TimestampMillis(1_700_000_000_000));
        r.put("source_event_id", "e1");
        r.put("data", "{}");
        let mut out = vec![0u8];
        out.extend_from_slice(&id.to_be_bytes());
        let writer =
            storefold_codec::apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
                .build()
                .unwrap();
        out.extend(writer.write_value_to_vec(r).unwrap());
        out
    }
}
