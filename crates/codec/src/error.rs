//! The codec's errors. Every one is final for the bytes or schema at hand: retrying
//! the same call cannot help. [`Error::is_data_error`] tells a record that must go to
//! a dead-letter topic from a deployment problem (schema files, unregistered ids).
//!
//! Messages carry their causes (so a log line with `%err` says everything), and the
//! causes are fields rather than `source()`s, so that error-chain printers do not
//! repeat them.

use std::path::PathBuf;

use crate::schema::{Fingerprint, RecordKind};

/// Result with the codec's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong encoding, decoding or loading schemas.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A schema file could not be read.
    #[error("cannot read schema {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A schema is not valid Avro.
    #[error("schema {name} does not parse: {}", chain(cause))]
    SchemaParse {
        /// File or record name.
        name: String,
        /// Parser error.
        cause: apache_avro::Error,
    },
    /// A schema parsed but is not the record it should be.
    #[error("schema is {found}, expected {expected}")]
    WrongSchemaName {
        /// Expected full name.
        expected: String,
        /// Full name found.
        found: String,
    },
    /// A name that is no record kind of storefold.
    #[error("unknown record {0:?}")]
    UnknownRecord(String),
    /// A writer schema that the current schema of its record cannot read.
    #[error("{kind} writer schema {fingerprint} cannot be read by the current schema: {reason}")]
    IncompatibleWriter {
        /// The record.
        kind: RecordKind,
        /// The writer schema's fingerprint.
        fingerprint: Fingerprint,
        /// Why.
        reason: String,
    },
    /// A Confluent schema id registered twice with different schemas.
    #[error("schema id {id} is already registered with another schema")]
    SchemaIdConflict {
        /// The id.
        id: u32,
    },
    /// A value could not be encoded with its schema (a bug or a schema that no longer
    /// matches the Rust struct).
    #[error("cannot encode {kind}: {}", chain(cause))]
    Encode {
        /// The record.
        kind: RecordKind,
        /// Avro error.
        cause: apache_avro::Error,
    },
    /// Encoding with a Confluent schema id that is not registered for the current
    /// schema of the record.
    #[error("schema id {id} is not registered for the current {kind} schema")]
    SchemaIdMismatch {
        /// The id.
        id: u32,
        /// The record being encoded.
        kind: RecordKind,
    },
    /// An empty payload.
    #[error("empty payload")]
    Empty,
    /// The payload starts with neither `C3 01` (single object) nor `00` (Confluent).
    #[error("unknown wire format (first bytes {0:02x?})")]
    UnknownFormat(Vec<u8>),
    /// The payload ends inside its header.
    #[error("payload of {len} bytes is shorter than its {needed}-byte header")]
    TruncatedHeader {
        /// Payload length.
        len: usize,
        /// Header length.
        needed: usize,
    },
    /// A single-object fingerprint of no known schema.
    #[error("unknown schema fingerprint {0}")]
    UnknownFingerprint(Fingerprint),
    /// A Confluent schema id that was never registered with the codec.
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    /// The payload holds another record than the one asked for.
    #[error("expected a {expected} but the payload holds a {found}")]
    WrongRecord {
        /// The record asked for.
        expected: RecordKind,
        /// The record whose schema the header names.
        found: RecordKind,
    },
    /// The datum does not decode with its writer schema (corrupt or truncated).
    #[error("cannot decode {kind}: {}", chain(cause))]
    Decode {
        /// The record.
        kind: RecordKind,
        /// Avro error.
        cause: apache_avro::Error,
    },
    /// The datum ends before its last field.
    #[error("truncated {kind} datum")]
    TruncatedDatum {
        /// The record.
        kind: RecordKind,
    },
    /// Bytes left over after the datum.
    #[error("{count} trailing bytes after the {kind} datum")]
    TrailingBytes {
        /// The record.
        kind: RecordKind,
        /// How many.
        count: usize,
    },
}

impl Error {
    /// True when the payload itself is at fault (corrupt, truncated, wrong record or
    /// unknown schema): the record belongs in a dead-letter topic. False for schema
    /// files, registration and encoding problems, which are the deployment's fault.
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            Error::Empty
                | Error::UnknownFormat(_)
                | Error::TruncatedHeader { .. }
                | Error::UnknownFingerprint(_)
                | Error::UnknownSchemaId(_)
                | Error::WrongRecord { .. }
                | Error::Decode { .. }
                | Error::TruncatedDatum { .. }
                | Error::TrailingBytes { .. }
        )
    }
}

impl Error {
    /// The error's text without anything read from the payload: a datum that does
    /// not decode is named by its record, not by the Avro error (whose text can
    /// quote a value it met, such as a string where a number was due). For dead
    /// letters and logs, which must not carry personal data.
    pub fn without_values(&self) -> String {
        match self {
            Error::Decode { kind, .. } => {
                format!("cannot decode {kind}: the datum does not match its writer schema")
            }
            other => other.to_string(),
        }
    }
}

/// `err` and its sources, joined with ": ", skipping a source whose text the message
/// already contains.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use apache_avro::error::Details;
    use apache_avro::types::Value;

    use super::*;

    #[test]
    fn a_datum_that_does_not_decode_is_named_without_what_it_held() {
        let cause = apache_avro::Error::new(Details::GetString(Value::String(
            "jane.doe@example.com".into(),
        )));
        let err = Error::Decode {
            kind: RecordKind::RawEvent,
            cause,
        };
        // The full text quotes the value (what a log at debug may show) …
        assert!(err.to_string().contains("jane.doe@example.com"), "{err}");
        // … the text for dead letters does not.
        let text = err.without_values();
        assert!(!text.contains("jane.doe"), "{text}");
        assert!(text.contains("cannot decode"), "{text}");
        // Errors that hold nothing from the payload's values keep their text.
        let wrong = Error::TrailingBytes {
            kind: RecordKind::RawEvent,
            count: 3,
        };
        assert_eq!(wrong.without_values(), wrong.to_string());
    }
}
