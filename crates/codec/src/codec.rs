//! [`AvroCodec`]: encodes and decodes the records of `schemas/` in the two wire
//! formats storefold's topics use.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::writer::datum::GenericDatumWriter;

use crate::records::AvroRecord;
use crate::schema::{
    Fingerprint, RecordKind, parse_for_kind, parsing_canonical_form, read_from_dir,
};
use crate::{Error, Result};

/// First two bytes of an Avro single-object encoding (spec: "Single object encoding").
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// Length of a single-object header: marker plus 8-byte fingerprint.
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;
/// First byte of the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// Length of a Confluent header: magic byte plus 4-byte big-endian schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// How a value is framed on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// Avro single-object encoding: `C3 01`, the 8-byte little-endian CRC-64-AVRO
    /// fingerprint of the schema's Parsing Canonical Form, then the datum. Used when
    /// no schema registry is configured.
    SingleObject,
    /// Confluent's wire format: `00`, the 4-byte big-endian schema id, then the datum.
    /// Used with `schema_registry.url`.
    Confluent {
        /// The id the schema registry gave the record's current schema.
        schema_id: u32,
    },
}

impl WireFormat {
    /// The format of an encoded payload, told from its first bytes (the two formats
    /// cannot be confused: `C3` vs `00`).
    pub fn detect(payload: &[u8]) -> Result<WireFormat> {
        match payload {
            [] => Err(Error::Empty),
            [0xC3, 0x01, ..] => Ok(WireFormat::SingleObject),
            [0xC3] => Err(Error::TruncatedHeader {
                len: 1,
                needed: SINGLE_OBJECT_HEADER_LEN,
            }),
            [CONFLUENT_MAGIC, rest @ ..] => {
                let id: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or(
                    Error::TruncatedHeader {
                        len: payload.len(),
                        needed: CONFLUENT_HEADER_LEN,
                    },
                )?;
                Ok(WireFormat::Confluent {
                    schema_id: u32::from_be_bytes(id),
                })
            }
            _ => Err(Error::UnknownFormat(
                payload[..payload.len().min(2)].to_vec(),
            )),
        }
    }
}

/// A schema the codec can read data of, with what encoding and decoding need
/// built once: the resolved names of its named types, a writer (used when it is
/// the current schema of its kind) and a reader that resolves its data to the
/// current schema of its kind (plain when it is the current one).
struct WriterSchema {
    kind: RecordKind,
    fingerprint: Fingerprint,
    schema: &'static Schema,
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
    /// Length of the latest encoding, to size the next one's buffer.
    size_hint: AtomicUsize,
}

impl std::fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSchema")
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl WriterSchema {
    /// The entry of `schema`, whose data a decoder resolves to `current` (the
    /// current schema of `kind`; `None` when `schema` is that schema).
    fn new(
        kind: RecordKind,
        schema: &'static Schema,
        current: Option<&'static Schema>,
    ) -> Result<Self> {
        let invalid = |cause| Error::SchemaParse {
            name: kind.file_name().to_owned(),
            cause,
        };
        let names = ResolvedSchema::try_from(schema).map_err(invalid)?;
        let writer = GenericDatumWriter::builder(schema)
            .resolved_schemata(names.clone())
            .build()
            .map_err(invalid)?;
        let reader = GenericDatumReader::builder(schema)
            .resolved_writer_schemata(names)
            .maybe_reader_schema(current)
            .build()
            .map_err(invalid)?;
        Ok(WriterSchema {
            kind,
            fingerprint: Fingerprint::of(schema),
            schema,
            writer,
            reader,
            size_hint: AtomicUsize::new(128),
        })
    }
}

/// The schema `json` of `kind`, parsed once per process.
///
/// Every distinct (kind, text) pair is parsed once and kept for the life of the
/// process, so that a codec can keep readers and writers that borrow it instead
/// of rebuilding them (and re-resolving the schema's names) for every record.
/// What is kept is bounded by the schemas a process is given: one per record
/// kind, plus the older versions and registry schemas it registers.
fn interned(kind: RecordKind, json: &str) -> Result<&'static Schema> {
    type Interned = HashMap<(RecordKind, String), &'static Schema>;
    static SCHEMAS: OnceLock<Mutex<Interned>> = OnceLock::new();
    let mut schemas = SCHEMAS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(schema) = schemas.get(&(kind, json.to_owned())) {
        return Ok(schema);
    }
    let schema: &'static Schema = Box::leak(Box::new(parse_for_kind(kind, json)?));
    schemas.insert((kind, json.to_owned()), schema);
    Ok(schema)
}

/// Encodes and decodes storefold's records.
///
/// Holds the current schema of every [`RecordKind`] (the one new data is written
/// with and every decoded value is resolved to) and the writer schemas it can read:
/// by fingerprint for single-object payloads, by id for Confluent payloads. It does
/// no I/O after construction; a runtime that talks to a schema registry registers the
/// ids it gets with [`bind_schema_id`](Self::bind_schema_id) and
/// [`register_schema_id`](Self::register_schema_id).
///
/// ```
/// use storefold_codec::{AvroCodec, Trigger, WireFormat};
/// let codec = AvroCodec::embedded()?;
/// let trigger = Trigger {
///     trigger_id: "t1".into(),
///     tenant: "acme".into(),
///     customer_id: "c1".into(),
///     order_id: None,
///     kind: "first_order".into(),
///     occurred_at: 1_700_000_000_000,
///     source_event_id: "e1".into(),
///     data: "{}".into(),
/// };
/// let bytes = codec.encode(&trigger, WireFormat::SingleObject)?;
/// assert_eq!(&bytes[..2], &[0xC3, 0x01]);
/// assert_eq!(codec.decode::<Trigger>(&bytes)?, trigger);
/// # Ok::<(), storefold_codec::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AvroCodec {
    current: HashMap<RecordKind, Arc<WriterSchema>>,
    by_fingerprint: HashMap<Fingerprint, Arc<WriterSchema>>,
    by_id: HashMap<u32, Arc<WriterSchema>>,
}

impl AvroCodec {
    /// A codec with the schemas compiled into this build.
    pub fn embedded() -> Result<Self> {
        Self::from_sources(|kind| Ok(kind.embedded_json().to_owned()))
    }

    /// A codec with the schemas read from `dir` (one `<record>.avsc` per
    /// [`RecordKind::file_name`]). They must describe this build's records (the
    /// structs of this crate are serialized field by field against them); this is for
    /// tests and tools that check a schema directory, not a way to change contracts
    /// without a rebuild.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_sources(|kind| read_from_dir(dir, kind))
    }

    fn from_sources(mut source: impl FnMut(RecordKind) -> Result<String>) -> Result<Self> {
        let mut codec = AvroCodec {
            current: HashMap::new(),
            by_fingerprint: HashMap::new(),
            by_id: HashMap::new(),
        };
        for kind in RecordKind::ALL {
            let schema = interned(kind, &source(kind)?)?;
            let entry = Arc::new(WriterSchema::new(kind, schema, None)?);
            for fingerprint in Fingerprint::accepted(entry.schema) {
                codec.by_fingerprint.insert(fingerprint, entry.clone());
            }
            codec.current.insert(kind, entry);
        }
        Ok(codec)
    }

    fn current_entry(&self, kind: RecordKind) -> &Arc<WriterSchema> {
        // `from_sources` fills every kind, so the lookup cannot miss.
        &self.current[&kind]
    }

    /// The current schema of `kind`.
    pub fn schema(&self, kind: RecordKind) -> &Schema {
        self.current_entry(kind).schema
    }

    /// Fingerprint of the current schema of `kind`.
    pub fn fingerprint(&self, kind: RecordKind) -> Fingerprint {
        self.current_entry(kind).fingerprint
    }

    /// The Parsing Canonical Form of the current schema of `kind`: the text whose
    /// CRC-64-AVRO is [`fingerprint`](Self::fingerprint).
    pub fn canonical_form(&self, kind: RecordKind) -> String {
        parsing_canonical_form(self.schema(kind))
    }

    /// The current schema of `kind` as JSON with its docs and defaults (what a
    /// schema registry stores and checks compatibility on; not the canonical form,
    /// which drops defaults).
    pub fn schema_json(&self, kind: RecordKind) -> String {
        // A parsed schema always serializes.
        serde_json::to_string(self.schema(kind)).unwrap_or_default()
    }

    /// Whether Confluent payloads with schema id `id` can be read.
    pub fn knows_schema_id(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Adds an older schema of `kind` so that single-object data written with it can
    /// be read (resolved to the current schema). Returns its fingerprint. Fails when
    /// the current schema cannot read data written with it.
    pub fn register_writer_schema(&mut self, kind: RecordKind, json: &str) -> Result<Fingerprint> {
        let entry = self.writer_entry(kind, json)?;
        for fingerprint in Fingerprint::accepted(entry.schema) {
            self.by_fingerprint
                .entry(fingerprint)
                .or_insert_with(|| entry.clone());
        }
        Ok(entry.fingerprint)
    }

    /// Records that the schema registry's id `id` names the schema `json` of `kind`
    /// (fetched from the registry, e.g. `GET /schemas/ids/{id}`), so Confluent payloads
    /// with that id can be read; when `json` is the current schema, `id` can also be
    /// used to encode. Fails when the current schema cannot read data written with it,
    /// or when `id` is already registered with another schema.
    pub fn register_schema_id(&mut self, id: u32, kind: RecordKind, json: &str) -> Result<()> {
        let entry = self.writer_entry(kind, json)?;
        self.insert_id(id, entry)
    }

    /// Records that the schema registry's id `id` names the *current* schema of
    /// `kind` (the id the registry answered when the current schema was registered).
    pub fn bind_schema_id(&mut self, id: u32, kind: RecordKind) -> Result<()> {
        let entry = self.current_entry(kind).clone();
        self.insert_id(id, entry)
    }

    fn insert_id(&mut self, id: u32, entry: Arc<WriterSchema>) -> Result<()> {
        if let Some(existing) = self.by_id.get(&id)
            && (existing.kind != entry.kind || existing.fingerprint != entry.fingerprint)
        {
            return Err(Error::SchemaIdConflict { id });
        }
        self.by_id.insert(id, entry);
        Ok(())
    }

    fn writer_entry(&self, kind: RecordKind, json: &str) -> Result<Arc<WriterSchema>> {
        let schema = interned(kind, json)?;
        let fingerprint = Fingerprint::of(schema);
        let current = self.current_entry(kind);
        if fingerprint == current.fingerprint {
            return Ok(current.clone());
        }
        match SchemaCompatibility::can_read(schema, current.schema) {
            Ok(Compatibility::Full) => {}
            Ok(Compatibility::Partial) => {
                return Err(Error::IncompatibleWriter {
                    kind,
                    fingerprint,
                    reason: "only some of its data can be read".to_owned(),
                });
            }
            Err(e) => {
                return Err(Error::IncompatibleWriter {
                    kind,
                    fingerprint,
                    reason: e.to_string(),
                });
            }
        }
        Ok(Arc::new(WriterSchema::new(
            kind,
            schema,
            Some(current.schema),
        )?))
    }

    /// Encodes `value` with the current schema of its record, framed as `format`.
    pub fn encode<T: AvroRecord>(&self, value: &T, format: WireFormat) -> Result<Vec<u8>> {
        let kind = T::KIND;
        let entry = self.current_entry(kind);
        let mut out = Vec::with_capacity(entry.size_hint.load(Ordering::Relaxed));
        match format {
            WireFormat::SingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MARKER);
                out.extend_from_slice(&entry.fingerprint.to_le_bytes());
            }
            WireFormat::Confluent { schema_id } => {
                match self.by_id.get(&schema_id) {
                    Some(e) if e.kind == kind && e.fingerprint == entry.fingerprint => {}
                    _ => {
                        return Err(Error::SchemaIdMismatch {
                            id: schema_id,
                            kind,
                        });
                    }
                }
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&schema_id.to_be_bytes());
            }
        }
        let encode_err = |cause| Error::Encode { kind, cause };
        // Serialize straight from the struct (not through `Value`, whose maps are
        // hash maps) so that equal values always give equal bytes.
        entry
            .writer
            .write_ser(&mut out, value)
            .map_err(encode_err)?;
        entry.size_hint.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }

    /// Decodes a payload in either wire format into `T`, resolving data written with
    /// an older registered schema to the current one. Never panics on bad input: every
    /// failure is an [`Error`] (see [`Error::is_data_error`]). On
    /// [`Error::UnknownSchemaId`] a runtime with a schema registry can fetch the
    /// schema, [`register_schema_id`](Self::register_schema_id) it and decode again.
    pub fn decode<T: AvroRecord>(&self, payload: &[u8]) -> Result<T> {
        let kind = T::KIND;
        let (entry, datum) = self.writer_of(payload)?;
        if entry.kind != kind {
            return Err(Error::WrongRecord {
                expected: kind,
                found: entry.kind,
            });
        }
        let decode_err = |cause| Error::Decode { kind, cause };
        // The entry's reader resolves data of an older schema to the current one.
        let mut input = EofGuard::new(datum);
        let value = entry.reader.read_value(&mut input).map_err(decode_err)?;
        if input.hit_eof {
            return Err(Error::TruncatedDatum { kind });
        }
        if !input.rest.is_empty() {
            return Err(Error::TrailingBytes {
                kind,
                count: input.rest.len(),
            });
        }
        apache_avro::from_value::<T>(&value).map_err(decode_err)
    }

    /// The record kind a payload holds, from its header alone.
    pub fn kind_of(&self, payload: &[u8]) -> Result<RecordKind> {
        Ok(self.writer_of(payload)?.0.kind)
    }

    fn writer_of<'p>(&self, payload: &'p [u8]) -> Result<(&WriterSchema, &'p [u8])> {
        match WireFormat::detect(payload)? {
            WireFormat::SingleObject => {
                let (header, datum) = payload.split_at_checked(SINGLE_OBJECT_HEADER_LEN).ok_or(
                    Error::TruncatedHeader {
                        len: payload.len(),
                        needed: SINGLE_OBJECT_HEADER_LEN,
                    },
                )?;
                let mut fp = [0u8; 8];
                fp.copy_from_slice(&header[2..]);
                let fingerprint = Fingerprint(u64::from_le_bytes(fp));
                let entry = self
                    .by_fingerprint
                    .get(&fingerprint)
                    .ok_or(Error::UnknownFingerprint(fingerprint))?;
                Ok((entry, datum))
            }
            WireFormat::Confluent { schema_id } => {
                let entry = self
                    .by_id
                    .get(&schema_id)
                    .ok_or(Error::UnknownSchemaId(schema_id))?;
                Ok((entry, &payload[CONFLUENT_HEADER_LEN..]))
            }
        }
    }
}

/// The datum being decoded, remembering whether the decoder ever asked for bytes past
/// its end. apache-avro 0.22 decodes a union whose index is cut off by the end of the
/// input as `null` instead of failing, so a datum truncated just before trailing
/// nullable fields would otherwise decode "successfully" with those fields lost. A
/// complete datum is never read past its end, so any such read means truncation.
struct EofGuard<'a> {
    rest: &'a [u8],
    hit_eof: bool,
}

impl<'a> EofGuard<'a> {
    fn new(datum: &'a [u8]) -> Self {
        EofGuard {
            rest: datum,
            hit_eof: false,
        }
    }
}

impl Read for EofGuard<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && buf.len() > self.rest.len() {
            self.hit_eof = true;
        }
        self.rest.read(buf)
    }
}
