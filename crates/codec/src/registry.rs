//! A client of a Confluent-compatible schema registry, and the binding of an
//! [`AvroCodec`] to it.
//!
//! With a registry, every topic value is framed in Confluent's wire format
//! ([`WireFormat::Confluent`]): a zero byte, the 4-byte id the registry gave the
//! writer schema, then the Avro datum. Any Confluent deserializer (Kafka Connect's
//! `AvroConverter`, ksqlDB, `kafka-avro-console-consumer`) can then read storefold's
//! topics by fetching the schema of that id.
//!
//! The client speaks the registry's REST contract (media type
//! `application/vnd.schemaregistry.v1+json`):
//!
//! - `POST /subjects/{subject}/versions` with `{"schema": "<json>"}` registers a
//!   schema (idempotent: the same schema gets the same id) and answers `{"id": n}`;
//! - `GET /schemas/ids/{id}` answers `{"schema": "<json>"}`;
//! - `GET /subjects/{subject}/versions` lists a subject's versions and
//!   `GET /subjects/{subject}/versions/{version}` answers one of them with its id;
//! - errors carry `{"error_code": n, "message": "..."}`: 40401 unknown subject,
//!   40402 unknown version, 40403 unknown schema, 409 incompatible schema, 42201
//!   invalid schema.
//!
//! Ids are cached both ways (schema under a subject to id, id to schema), so a
//! process asks the registry once per schema.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::codec::{AvroCodec, WireFormat};
use crate::schema::RecordKind;

/// The media type of the registry's requests and answers.
pub const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// `error_code` of an unknown subject.
pub const SUBJECT_NOT_FOUND: i64 = 40401;
/// `error_code` of an unknown version of a known subject.
pub const VERSION_NOT_FOUND: i64 = 40402;
/// `error_code` of an unknown schema id.
pub const SCHEMA_NOT_FOUND: i64 = 40403;
/// `error_code` of a schema the subject's compatibility rule refuses.
pub const INCOMPATIBLE_SCHEMA: i64 = 409;
/// `error_code` of a schema that is not valid.
pub const INVALID_SCHEMA: i64 = 42201;

/// How the subject a schema is registered under is named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectNameStrategy {
    /// `<topic>-value`: Confluent's default (`TopicNameStrategy`); one record type
    /// per topic, compatibility checked per topic.
    #[default]
    TopicName,
    /// The record's full name, e.g. `io.storefold.CustomerProjection`
    /// (`RecordNameStrategy`): one subject per record type, whatever the topic.
    RecordName,
}

impl SubjectNameStrategy {
    /// The subject of the values of `topic` holding `kind` records.
    pub fn subject(self, topic: &str, kind: RecordKind) -> String {
        match self {
            SubjectNameStrategy::TopicName => format!("{topic}-value"),
            SubjectNameStrategy::RecordName => kind.full_name(),
        }
    }
}

impl FromStr for SubjectNameStrategy {
    type Err = String;

    /// `topic_name` or `record_name`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "topic_name" => Ok(SubjectNameStrategy::TopicName),
            "record_name" => Ok(SubjectNameStrategy::RecordName),
            other => Err(format!(
                "unknown subject name strategy {other:?} (topic_name or record_name)"
            )),
        }
    }
}

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry URL is not usable.
    #[error("schema registry url {url:?}: {message}")]
    Url {
        /// The URL as configured (without credentials).
        url: String,
        /// Why.
        message: String,
    },
    /// The request did not get an answer (connection refused, timeout, TLS).
    #[error("schema registry {method} {path}: {message}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// The client's error.
        message: String,
    },
    /// The registry answered with an error.
    #[error("schema registry {method} {path}: HTTP {status}, error_code {error_code}: {message}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The registry's `error_code` (the HTTP status when the body had none).
        error_code: i64,
        /// The registry's `message`.
        message: String,
    },
    /// An answer that is not what the contract says.
    #[error("schema registry {method} {path}: unexpected answer: {message}")]
    Body {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: String,
        /// What was wrong with it.
        message: String,
    },
    /// The same schema got different ids under two subjects, so one id per record
    /// could not be written.
    #[error(
        "schema registry gave the current {kind} schema id {first} under one subject and {second} under another"
    )]
    Ambiguous {
        /// The record.
        kind: RecordKind,
        /// The first id.
        first: u32,
        /// The other id.
        second: u32,
    },
    /// The codec refused an id or schema the registry gave.
    #[error("schema registry id {id}: {source}")]
    Codec {
        /// The id.
        id: u32,
        /// The codec's error.
        #[source]
        source: crate::Error,
    },
}

impl RegistryError {
    /// The registry's `error_code`, when it answered with one.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            RegistryError::Status { error_code, .. } => Some(*error_code),
            _ => None,
        }
    }

    /// Whether the registry refused a schema as incompatible with the subject's
    /// earlier versions.
    pub fn is_incompatible(&self) -> bool {
        self.error_code() == Some(INCOMPATIBLE_SCHEMA)
    }
}

/// Basic-auth credentials of the registry (Confluent Cloud: an API key and secret).
#[derive(Clone)]
pub struct RegistryAuth {
    /// The user name (API key).
    pub username: String,
    /// The password (API secret).
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error_code: Option<i64>,
    message: Option<String>,
}

/// One version of a subject, as `GET /subjects/{subject}/versions/{version}`
/// answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version within the subject.
    pub version: i32,
    /// The schema's global id.
    pub id: u32,
    /// The schema JSON.
    pub schema: String,
}

/// A client of a Confluent-compatible schema registry, with its answers cached.
#[derive(Debug)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    auth: Option<RegistryAuth>,
    /// (subject, schema JSON) -> id.
    ids: Mutex<HashMap<(String, String), u32>>,
    /// id -> schema JSON.
    schemas: Mutex<HashMap<u32, String>>,
}

impl RegistryClient {
    /// A client of the registry at `url` (`http(s)://host:port[/path]`). Requests
    /// give up after `timeout`.
    pub fn new(
        url: &str,
        auth: Option<RegistryAuth>,
        timeout: Duration,
    ) -> Result<Self, RegistryError> {
        let base = url.trim_end_matches('/').to_owned();
        let url_err = |message: &str| RegistryError::Url {
            url: base.split('@').next_back().unwrap_or_default().to_owned(),
            message: message.to_owned(),
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(url_err("must start with http:// or https://"));
        }
        if base.contains('@') {
            return Err(url_err(
                "must not hold credentials; set schema_registry.username and password",
            ));
        }
        // reqwest is built without a default TLS crypto provider; a second
        // installation (by another part of the process) is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| url_err(&e.to_string()))?;
        Ok(RegistryClient {
            base,
            http,
            auth,
            ids: Mutex::new(HashMap::new()),
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Registers `schema` (Avro schema JSON) under `subject` and returns its id. The
    /// registry answers the existing id when the schema is already registered, and
    /// refuses ([`RegistryError::is_incompatible`]) a schema its compatibility rule
    /// does not allow.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.to_owned());
        if let Some(id) = lock(&self.ids).get(&key) {
            return Ok(*id);
        }
        let path = format!("/subjects/{}/versions", encode_segment(subject));
        let body = serde_json::json!({ "schema": schema }).to_string();
        let answer: IdAnswer = self.call("POST", &path, Some(body)).await?;
        lock(&self.ids).insert(key, answer.id);
        lock(&self.schemas).insert(answer.id, schema.to_owned());
        Ok(answer.id)
    }

    /// The schema JSON of id `id`.
    pub async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        if let Some(s) = lock(&self.schemas).get(&id) {
            return Ok(s.clone());
        }
        let path = format!("/schemas/ids/{id}");
        let answer: SchemaAnswer = self.call("GET", &path, None).await?;
        lock(&self.schemas).insert(id, answer.schema.clone());
        Ok(answer.schema)
    }

    /// The versions registered under `subject`, oldest first; an unknown subject
    /// has none.
    pub async fn versions(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        let path = format!("/subjects/{}/versions", encode_segment(subject));
        match self.call::<Vec<i32>>("GET", &path, None).await {
            Err(e) if e.error_code() == Some(SUBJECT_NOT_FOUND) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Version `version` of `subject`, with its id and schema.
    pub async fn version(
        &self,
        subject: &str,
        version: i32,
    ) -> Result<SubjectVersion, RegistryError> {
        let path = format!("/subjects/{}/versions/{version}", encode_segment(subject));
        let v: SubjectVersion = self.call("GET", &path, None).await?;
        lock(&self.schemas).insert(v.id, v.schema.clone());
        Ok(v)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut req = match body {
            Some(b) => self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, REGISTRY_CONTENT_TYPE)
                .body(b),
            None => self.http.get(&url),
        }
        .header(reqwest::header::ACCEPT, REGISTRY_CONTENT_TYPE);
        if let Some(a) = &self.auth {
            req = req.basic_auth(&a.username, Some(&a.password));
        }
        let transport = |e: reqwest::Error| RegistryError::Transport {
            method,
            path: path.to_owned(),
            message: e.without_url().to_string(),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let parsed: Option<ErrorAnswer> = serde_json::from_slice(&bytes).ok();
            let (code, message) = match parsed {
                Some(e) => (
                    e.error_code.unwrap_or(i64::from(status.as_u16())),
                    e.message.unwrap_or_default(),
                ),
                None => (
                    i64::from(status.as_u16()),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                ),
            };
            return Err(RegistryError::Status {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                error_code: code,
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Body {
            method,
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves a consistent map (inserts only).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Percent-encodes a path segment (subjects may hold characters such as `/`).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which wire format each record is written in: single-object encoding without a
/// registry, Confluent's with the id the registry gave the current schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Framing {
    ids: HashMap<RecordKind, u32>,
}

impl Framing {
    /// Every record in single-object encoding (no registry).
    pub fn single_object() -> Self {
        Framing::default()
    }

    /// The format `kind` is written in.
    pub fn format(&self, kind: RecordKind) -> WireFormat {
        match self.ids.get(&kind) {
            Some(id) => WireFormat::Confluent { schema_id: *id },
            None => WireFormat::SingleObject,
        }
    }

    /// The registry id of the current schema of `kind`, when it is bound to one.
    pub fn schema_id(&self, kind: RecordKind) -> Option<u32> {
        self.ids.get(&kind).copied()
    }
}

/// What [`bind_topics`] did.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// The formats to write with.
    pub framing: Framing,
    /// Ids of older versions of the subjects that the current schemas cannot read
    /// (data written with them cannot be decoded), with why.
    pub unreadable: Vec<(u32, String)>,
}

/// Registers the current schema of each `(topic, kind)` under its subject, binds
/// the ids into `codec` (so it writes and reads Confluent payloads with them) and
/// teaches it the subjects' earlier versions (so data written with them is
/// resolved to the current schema).
pub async fn bind_topics(
    client: &RegistryClient,
    strategy: SubjectNameStrategy,
    codec: &mut AvroCodec,
    topics: &[(String, RecordKind)],
) -> Result<Binding, RegistryError> {
    let mut binding = Binding::default();
    for (topic, kind) in topics {
        let subject = strategy.subject(topic, *kind);
        let json = codec.schema_json(*kind);
        let id = client.register(&subject, &json).await?;
        if let Some(first) = binding.framing.ids.insert(*kind, id)
            && first != id
        {
            return Err(RegistryError::Ambiguous {
                kind: *kind,
                first,
                second: id,
            });
        }
        codec
            .bind_schema_id(id, *kind)
            .map_err(|source| RegistryError::Codec { id, source })?;
        for version in client.versions(&subject).await? {
            let v = client.version(&subject, version).await?;
            if v.id == id {
                continue;
            }
            if let Err(e) = codec.register_schema_id(v.id, *kind, &v.schema) {
                binding.unreadable.push((v.id, e.to_string()));
            }
        }
    }
    Ok(binding)
}

/// Makes sure `codec` knows the writer schema of a Confluent `payload` of `kind`,
/// fetching it from the registry when its id is new (a schema registered after
/// this process started). Single-object payloads and known ids need no request.
pub async fn learn_writer(
    client: &RegistryClient,
    codec: &mut AvroCodec,
    kind: RecordKind,
    payload: &[u8],
) -> Result<(), RegistryError> {
    let Ok(WireFormat::Confluent { schema_id }) = WireFormat::detect(payload) else {
        return Ok(());
    };
    if codec.knows_schema_id(schema_id) {
        return Ok(());
    }
    let schema = client.schema(schema_id).await?;
    codec
        .register_schema_id(schema_id, kind, &schema)
        .map_err(|source| RegistryError::Codec {
            id: schema_id,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_strategy() {
        assert_eq!(
            SubjectNameStrategy::TopicName.subject("storefold.customers", RecordKind::Trigger),
            "storefold.customers-value"
        );
        assert_eq!(
            SubjectNameStrategy::RecordName.subject("any", RecordKind::CustomerProjection),
            "io.storefold.CustomerProjection"
        );
        assert_eq!(
            "record_name".parse::<SubjectNameStrategy>(),
            Ok(SubjectNameStrategy::RecordName)
        );
        assert!("record".parse::<SubjectNameStrategy>().is_err());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("a.b-value"), "a.b-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn urls_with_credentials_or_no_scheme_are_refused() {
        let t = Duration::from_secs(1);
        let e = RegistryClient::new("registry:8081", None, t).unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        let e = RegistryClient::new("https://key:secret@registry", None, t).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("username"), "{e}");
    }

    #[test]
    fn framing_without_ids_is_single_object() {
        let f = Framing::single_object();
        assert_eq!(f.format(RecordKind::RawEvent), WireFormat::SingleObject);
        let mut f = Framing::default();
        f.ids.insert(RecordKind::RawEvent, 7);
        assert_eq!(
            f.format(RecordKind::RawEvent),
            WireFormat::Confluent { schema_id: 7 }
        );
        assert_eq!(f.schema_id(RecordKind::Trigger), None);
    }

    #[test]
    fn the_registered_json_is_the_current_schema_with_its_defaults() {
        let codec = AvroCodec::embedded().unwrap();
        for kind in RecordKind::ALL {
            let json = codec.schema_json(kind);
            let parsed = apache_avro::Schema::parse_str(&json).unwrap();
            assert_eq!(
                crate::Fingerprint::of(&parsed),
                codec.fingerprint(kind),
                "{kind}"
            );
            let embedded: serde_json::Value = serde_json::from_str(kind.embedded_json()).unwrap();
            let has_default = embedded.to_string().contains("\"default\"");
            assert_eq!(json.contains("\"default\""), has_default, "{kind}");
        }
    }

    #[test]
    fn auth_never_shows_its_password() {
        let a = RegistryAuth {
            username: "key".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
