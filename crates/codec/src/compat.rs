//! Backward compatibility of schema changes: a reader with the new schema must read
//! every datum written with the old one (Avro schema resolution, checked with
//! apache-avro's `schema_compatibility`).

use std::fmt;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::error::chain;
use crate::schema::RecordKind;

/// Which side of a comparison a schema is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The previous (committed) version.
    Previous,
    /// The current (new) version.
    Current,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Previous => "previous",
            Side::Current => "current",
        })
    }
}

/// Why a schema change is not backward compatible.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    /// One of the two schemas is not valid Avro.
    #[error("the {side} schema does not parse: {}", chain(cause))]
    Parse {
        /// Which one.
        side: Side,
        /// Parser error.
        cause: apache_avro::Error,
    },
    /// The record's full name changed (it names the record in registries and in
    /// storefold's codec).
    #[error("the record was renamed from {previous} to {current}")]
    Renamed {
        /// Previous full name.
        previous: String,
        /// Current full name.
        current: String,
    },
    /// The new schema cannot read data written with the old one.
    #[error("data written with the previous schema cannot be read: {}", chain(.0))]
    Incompatible(CompatibilityError),
    /// The new schema can read only some of the data written with the old one
    /// (e.g. an enum lost symbols and has no default, a union lost a branch).
    #[error(
        "only some data written with the previous schema can be read (a removed enum symbol or union branch?)"
    )]
    Partial,
    /// A schema file is named for one of storefold's records but holds another.
    #[error("{file} must hold {expected}, found {found}")]
    WrongRecord {
        /// The file name.
        file: String,
        /// Expected full name.
        expected: String,
        /// Found full name.
        found: String,
    },
}

fn full_name(schema: &Schema) -> Option<String> {
    schema.name().map(|n| n.fullname(None))
}

/// Checks that `current` can read every datum written with `previous` (both schema
/// JSON). New fields need defaults, removed fields are fine, types change only by
/// Avro's promotions (int → long → float → double, string ↔ bytes), a renamed field
/// needs the old name as an alias, an enum that loses symbols needs a default, and
/// the record keeps its full name.
///
/// ```
/// use storefold_codec::check_backward;
/// let v1 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
/// let v2 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},
///             {"name":"b","type":"long","default":0}]}"#;
/// assert!(check_backward(v1, v2).is_ok());
/// assert!(check_backward(v1, &v2.replace(r#","default":0"#, "")).is_err());
/// ```
pub fn check_backward(previous: &str, current: &str) -> Result<(), CompatError> {
    let previous = Schema::parse_str(previous).map_err(|cause| CompatError::Parse {
        side: Side::Previous,
        cause,
    })?;
    let current = Schema::parse_str(current).map_err(|cause| CompatError::Parse {
        side: Side::Current,
        cause,
    })?;
    check_schemas(&previous, &current)
}

fn check_schemas(previous: &Schema, current: &Schema) -> Result<(), CompatError> {
    // Avro resolution matches unqualified names only; a changed namespace would still
    // change the fingerprint and the registry subject, so the full name must stay.
    let (p, c) = (full_name(previous), full_name(current));
    if p != c {
        return Err(CompatError::Renamed {
            previous: p.unwrap_or_else(|| "<unnamed>".to_owned()),
            current: c.unwrap_or_else(|| "<unnamed>".to_owned()),
        });
    }
    match SchemaCompatibility::can_read(previous, current) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(CompatError::Partial),
        Err(e) => Err(CompatError::Incompatible(e)),
    }
}

/// What [`check_dir`] found for one schema file.
#[derive(Debug)]
pub struct SchemaReport {
    /// File name, e.g. `raw_event.avsc`.
    pub file_name: String,
    /// Full name of the record, when the file parses.
    pub record: Option<String>,
    /// The verdict.
    pub outcome: SchemaOutcome,
}

impl SchemaReport {
    /// True unless the schema is broken or incompatible.
    pub fn is_ok(&self) -> bool {
        !matches!(self.outcome, SchemaOutcome::Failed(_))
    }
}

/// The verdict on one schema file.
#[derive(Debug)]
pub enum SchemaOutcome {
    /// No previous version: the schema parses and is new.
    New,
    /// The same JSON as the previous version (formatting aside).
    Unchanged,
    /// Changed, and backward compatible with the previous version.
    Compatible,
    /// Broken or not backward compatible.
    Failed(CompatError),
}

/// Why [`check_dir`] could not check a directory at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckDirError {
    /// The directory or one of its files could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The directory holds no `*.avsc` file.
    #[error("no *.avsc file in {}", .0.display())]
    Empty(PathBuf),
}

/// Parses every `*.avsc` in `dir` (sorted by file name) and checks each against its
/// previous version, `previous(file_name)`, when there is one (`None`: a new schema).
/// A file named for one of storefold's records ([`RecordKind::file_name`]) must
/// hold that record. Broken or incompatible schemas are reported in their
/// [`SchemaReport`], not as an `Err`: the `Err` is for a directory that cannot be
/// read.
pub fn check_dir(
    dir: &Path,
    previous: impl Fn(&str) -> Option<String>,
) -> Result<Vec<SchemaReport>, CheckDirError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| CheckDirError::Io { path, cause }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "avsc") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(CheckDirError::Empty(dir.to_path_buf()));
    }
    files.sort();

    let mut reports = Vec::with_capacity(files.len());
    for path in files {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let json = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let (record, outcome) = check_file(&file_name, &json, previous(&file_name).as_deref());
        reports.push(SchemaReport {
            file_name,
            record,
            outcome,
        });
    }
    Ok(reports)
}

fn check_file(
    file_name: &str,
    json: &str,
    previous: Option<&str>,
) -> (Option<String>, SchemaOutcome) {
    let current = match Schema::parse_str(json) {
        Ok(s) => s,
        Err(cause) => {
            let err = CompatError::Parse {
                side: Side::Current,
                cause,
            };
            return (None, SchemaOutcome::Failed(err));
        }
    };
    let record = full_name(&current);
    if let Some(kind) = RecordKind::from_file_name(file_name)
        && record.as_deref() != Some(kind.full_name().as_str())
    {
        let err = CompatError::WrongRecord {
            file: file_name.to_owned(),
            expected: kind.full_name(),
            found: record.clone().unwrap_or_else(|| "<unnamed>".to_owned()),
        };
        return (record, SchemaOutcome::Failed(err));
    }
    let Some(previous) = previous else {
        return (record, SchemaOutcome::New);
    };
    let unchanged = serde_json::from_str::<serde_json::Value>(previous).ok()
        == serde_json::from_str::<serde_json::Value>(json).ok();
    let previous = match Schema::parse_str(previous) {
        Ok(s) => s,
        Err(cause) => {
            let err = CompatError::Parse {
                side: Side::Previous,
                cause,
            };
            return (record, SchemaOutcome::Failed(err));
        }
    };
    let outcome = match check_schemas(&previous, &current) {
        Ok(()) if unchanged => SchemaOutcome::Unchanged,
        Ok(()) => SchemaOutcome::Compatible,
        Err(e) => SchemaOutcome::Failed(e),
    };
    (record, outcome)
}
