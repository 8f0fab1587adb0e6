//! The schemas of `schemas/`: which record each file holds, embedded copies, loading
//! from a directory.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema::{DecimalSchema, FixedSchema, InnerDecimalSchema, UuidSchema};

use crate::{Error, Result};

/// Namespace of every storefold schema.
pub const NAMESPACE: &str = "io.storefold";

/// One record type with a schema in `schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// `raw_event.avsc`: values of the raw topics.
    RawEvent,
    /// `customer_projection.avsc`: values of the customers topic.
    CustomerProjection,
    /// `order_projection.avsc`: values of the orders topic.
    OrderProjection,
    /// `payout_projection.avsc`: values of the payouts topic.
    PayoutProjection,
    /// `trigger.avsc`: values of the triggers topic.
    Trigger,
    /// `state_record.avsc`: values of the changelog topic.
    StateRecord,
    /// `commit_marker.avsc`: the commit marker carried by a changelog record.
    CommitMarker,
}

impl RecordKind {
    /// Every record kind, in a fixed order.
    pub const ALL: [RecordKind; 7] = [
        RecordKind::RawEvent,
        RecordKind::CustomerProjection,
        RecordKind::OrderProjection,
        RecordKind::PayoutProjection,
        RecordKind::Trigger,
        RecordKind::StateRecord,
        RecordKind::CommitMarker,
    ];

    /// File name of the schema in `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            RecordKind::RawEvent => "raw_event.avsc",
            RecordKind::CustomerProjection => "customer_projection.avsc",
            RecordKind::OrderProjection => "order_projection.avsc",
            RecordKind::PayoutProjection => "payout_projection.avsc",
            RecordKind::Trigger => "trigger.avsc",
            RecordKind::StateRecord => "state_record.avsc",
            RecordKind::CommitMarker => "commit_marker.avsc",
        }
    }

    /// Unqualified record name.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::RawEvent => "RawEvent",
            RecordKind::CustomerProjection => "CustomerProjection",
            RecordKind::OrderProjection => "OrderProjection",
            RecordKind::PayoutProjection => "PayoutProjection",
            RecordKind::Trigger => "Trigger",
            RecordKind::StateRecord => "StateRecord",
            RecordKind::CommitMarker => "CommitMarker",
        }
    }

    /// Full name, e.g. `io.storefold.RawEvent` (also the Confluent record name).
    pub fn full_name(self) -> String {
        format!("{NAMESPACE}.{}", self.name())
    }

    /// The schema JSON compiled into this build (from `schemas/`).
    pub fn embedded_json(self) -> &'static str {
        match self {
            RecordKind::RawEvent => include_str!("../../../schemas/raw_event.avsc"),
            RecordKind::CustomerProjection => {
                include_str!("../../../schemas/customer_projection.avsc")
            }
            RecordKind::OrderProjection => include_str!("../../../schemas/order_projection.avsc"),
            RecordKind::PayoutProjection => {
                include_str!("../../../schemas/payout_projection.avsc")
            }
            RecordKind::Trigger => include_str!("../../../schemas/trigger.avsc"),
            RecordKind::StateRecord => include_str!("../../../schemas/state_record.avsc"),
            RecordKind::CommitMarker => include_str!("../../../schemas/commit_marker.avsc"),
        }
    }

    /// The kind whose schema lives in `file_name`, if any.
    pub fn from_file_name(file_name: &str) -> Option<RecordKind> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.file_name() == file_name)
    }

    /// The kind whose schema has the full name `full_name`, if any.
    pub fn from_full_name(full_name: &str) -> Option<RecordKind> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.full_name() == full_name)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RecordKind {
    type Err = Error;

    /// Accepts the record name (`RawEvent`), the full name or the file name.
    fn from_str(s: &str) -> Result<Self> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.name() == s || k.full_name() == s || k.file_name() == s)
            .ok_or_else(|| Error::UnknownRecord(s.to_owned()))
    }
}

/// The CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form, as the
/// `u64` whose little-endian bytes follow `C3 01` in single-object encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// Fingerprint of `schema`: CRC-64-AVRO of [`parsing_canonical_form`].
    pub fn of(schema: &Schema) -> Fingerprint {
        Fingerprint(crc64_avro(parsing_canonical_form(schema).as_bytes()))
    }

    /// Every fingerprint other implementations may write for `schema`: ours (Java's)
    /// first, then the one of apache-avro 0.22 and Python's avro 1.12, whose canonical
    /// forms keep `{"type":"long"}` for a logical type (see
    /// [`parsing_canonical_form`]). Decoding accepts both.
    pub fn accepted(schema: &Schema) -> Vec<Fingerprint> {
        let ours = Fingerprint::of(schema);
        let theirs = Fingerprint(crc64_avro(schema.canonical_form().as_bytes()));
        if ours == theirs {
            vec![ours]
        } else {
            vec![ours, theirs]
        }
    }

    /// The 8 bytes as written in a single-object header.
    pub fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Parses a schema and checks that it is the named record expected for `kind`.
pub(crate) fn parse_for_kind(kind: RecordKind, json: &str) -> Result<Schema> {
    let schema = Schema::parse_str(json).map_err(|cause| Error::SchemaParse {
        name: kind.file_name().to_owned(),
        cause,
    })?;
    let found = schema
        .name()
        .map(|n| n.fullname(None))
        .unwrap_or_else(|| "<unnamed>".to_owned());
    if found != kind.full_name() {
        return Err(Error::WrongSchemaName {
            expected: kind.full_name(),
            found,
        });
    }
    Ok(schema)
}

/// Reads `<dir>/<file_name>` for `kind`.
pub(crate) fn read_from_dir(dir: &Path, kind: RecordKind) -> Result<String> {
    let path = dir.join(kind.file_name());
    std::fs::read_to_string(&path).map_err(|cause| Error::Io { path, cause })
}

/// The Parsing Canonical Form of `schema`, as the Avro specification defines it and
/// Java's reference implementation (`SchemaNormalization.toParsingForm`, used by its
/// single-object `BinaryMessageEncoder`) writes it.
///
/// Implementations disagree on logical types: Java reduces
/// `{"type":"long","logicalType":"timestamp-millis"}` to `"long"` (the spec's
/// `[PRIMITIVES]` rule once `[STRIP]` removed `logicalType`), while apache-avro 0.22's
/// `Schema::canonical_form` and Python's avro 1.12 leave `{"type":"long"}`. The
/// single-object headers storefold writes follow Java; decoding accepts both (see
/// [`Fingerprint::accepted`]). Schemas without logical types give the same text
/// everywhere.
pub fn parsing_canonical_form(schema: &Schema) -> String {
    let mut out = String::with_capacity(512);
    let mut defined = std::collections::HashSet::new();
    write_pcf(schema, &mut out, &mut defined);
    out
}

fn write_pcf(schema: &Schema, out: &mut String, defined: &mut std::collections::HashSet<String>) {
    let primitive = |out: &mut String, name: &str| {
        out.push('"');
        out.push_str(name);
        out.push('"');
    };
    match schema {
        Schema::Null => primitive(out, "null"),
        Schema::Boolean => primitive(out, "boolean"),
        Schema::Int | Schema::Date | Schema::TimeMillis => primitive(out, "int"),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => primitive(out, "long"),
        Schema::Float => primitive(out, "float"),
        Schema::Double => primitive(out, "double"),
        Schema::Bytes
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        }) => primitive(out, "bytes"),
        Schema::String | Schema::Uuid(UuidSchema::String) => primitive(out, "string"),
        Schema::Fixed(fixed)
        | Schema::Uuid(UuidSchema::Fixed(fixed))
        | Schema::Duration(fixed)
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(fixed),
            ..
        }) => write_fixed(fixed, out, defined),
        Schema::Array(array) => {
            out.push_str(r#"{"type":"array","items":"#);
            write_pcf(&array.items, out, defined);
            out.push('}');
        }
        Schema::Map(map) => {
            out.push_str(r#"{"type":"map","values":"#);
            write_pcf(&map.types, out, defined);
            out.push('}');
        }
        Schema::Union(union) => {
            out.push('[');
            for (i, variant) in union.variants().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_pcf(variant, out, defined);
            }
            out.push(']');
        }
        Schema::Record(record) => {
            let name = record.name.fullname(None);
            if !defined.insert(name.clone()) {
                return primitive(out, &name);
            }
            out.push_str(r#"{"name":""#);
            out.push_str(&name);
            out.push_str(r#"","type":"record","fields":["#);
            for (i, field) in record.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"name":""#);
                out.push_str(&field.name);
                out.push_str(r#"","type":"#);
                write_pcf(&field.schema, out, defined);
                out.push('}');
            }
            out.push_str("]}");
        }
        Schema::Enum(e) => {
            let name = e.name.fullname(None);
            if !defined.insert(name.clone()) {
                return primitive(out, &name);
            }
            out.push_str(r#"{"name":""#);
            out.push_str(&name);
            out.push_str(r#"","type":"enum","symbols":["#);
            for (i, symbol) in e.symbols.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                primitive(out, symbol);
            }
            out.push_str("]}");
        }
        Schema::Ref { name } => primitive(out, &name.fullname(None)),
    }
}

fn write_fixed(
    fixed: &FixedSchema,
    out: &mut String,
    defined: &mut std::collections::HashSet<String>,
) {
    let name = fixed.name.fullname(None);
    if !defined.insert(name.clone()) {
        out.push('"');
        out.push_str(&name);
        out.push('"');
        return;
    }
    out.push_str(r#"{"name":""#);
    out.push_str(&name);
    out.push_str(r#"","type":"fixed","size":"#);
    out.push_str(&fixed.size.to_string());
    out.push('}');
}

/// CRC-64-AVRO, the 64-bit Rabin fingerprint of the Avro specification ("Schema
/// Fingerprints").
pub fn crc64_avro(data: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    const TABLE: [u64; 256] = {
        let mut table = [0u64; 256];
        let mut i = 0;
        while i < 256 {
            let mut fp = i as u64;
            let mut j = 0;
            while j < 8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
                j += 1;
            }
            table[i] = fp;
            i += 1;
        }
        table
    };
    let mut fp = EMPTY;
    for &b in data {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}
