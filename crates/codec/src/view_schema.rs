//! The `view` field of the projection schemas, generated from the Rust views.
//!
//! The typed Customer 360 and order views ([`CustomerView`], [`OrderView`] and
//! the records inside them) are declared once, in Rust; the type of the `view`
//! field of `schemas/customer_projection.avsc` and
//! `schemas/order_projection.avsc` is derived from them ([`view_type`]).
//! [`regenerate`] puts it into a schema file and leaves the rest of the file
//! as it is (the projection's own fields stay written by hand). Run
//! [`COMMAND`] after changing a view; a test fails while a checked-in file
//! differs from its regeneration.

use std::fmt::Write as _;

use crate::records::avro_type::{AvroJson, AvroType, Names};
use crate::schema::RecordKind;
use crate::{CustomerView, OrderView};

/// The command that rewrites the schema files from the Rust views.
pub const COMMAND: &str = "cargo run -p storefold-codec --example schemas";

/// The records whose `view` field is generated.
pub const KINDS: [RecordKind; 2] = [RecordKind::CustomerProjection, RecordKind::OrderProjection];

/// Why a schema file could not be regenerated.
#[derive(Debug, thiserror::Error)]
pub enum ViewSchemaError {
    /// The record has no generated view.
    #[error("{kind} has no generated view field")]
    NotGenerated {
        /// The record.
        kind: RecordKind,
    },
    /// The file is not JSON.
    #[error("{file} is not JSON: {cause}")]
    Json {
        /// The schema file's name.
        file: &'static str,
        /// What the JSON parser said.
        cause: serde_json::Error,
    },
    /// The file's record has no field named `view`.
    #[error("{file} has no field named view in its fields")]
    NoViewField {
        /// The schema file's name.
        file: &'static str,
    },
}

/// The schema of the `view` field of `kind` (a union of `null` and the view
/// record), derived from the Rust types; `None` for a record without one.
pub fn view_type(kind: RecordKind) -> Option<AvroJson> {
    let mut names = Names::new();
    match kind {
        RecordKind::CustomerProjection => Some(Option::<CustomerView>::avro_schema(&mut names)),
        RecordKind::OrderProjection => Some(Option::<OrderView>::avro_schema(&mut names)),
        _ => None,
    }
}

/// The schema file of `kind` whose text is `current`, with the type and
/// default of its `view` field generated from the Rust views; the other
/// fields and attributes are kept in their order. The text is laid out as
/// the schema files are (see [`AvroJson::pretty`]) and ends with a newline.
pub fn regenerate(kind: RecordKind, current: &str) -> Result<String, ViewSchemaError> {
    let file = kind.file_name();
    let view = view_type(kind).ok_or(ViewSchemaError::NotGenerated { kind })?;
    let mut schema: AvroJson =
        serde_json::from_str(current).map_err(|cause| ViewSchemaError::Json { file, cause })?;
    let AvroJson::Object(members) = &mut schema else {
        return Err(ViewSchemaError::NoViewField { file });
    };
    let field = members
        .iter_mut()
        .find(|(k, _)| k == "fields")
        .and_then(|(_, fields)| match fields {
            AvroJson::Array(fields) => fields
                .iter_mut()
                .find(|f| f.get("name").and_then(AvroJson::as_str) == Some("view")),
            _ => None,
        })
        .ok_or(ViewSchemaError::NoViewField { file })?;
    field.set("type", view, "name");
    // The view is optional: records written before it existed read as null.
    field.set("default", AvroJson::Null, "type");
    let mut out = schema.pretty();
    out.push('\n');
    Ok(out)
}

/// Where `generated` first differs from `current`, as a short report for a
/// failing check: the line number and both lines.
pub fn first_difference(current: &str, generated: &str) -> Option<String> {
    let mut a = current.lines();
    let mut b = generated.lines();
    let mut n = 0;
    loop {
        n += 1;
        match (a.next(), b.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => {
                let mut out = format!("line {n}:\n");
                let _ = writeln!(out, "  checked in: {}", x.unwrap_or("(end of file)"));
                let _ = write!(out, "  generated:  {}", y.unwrap_or("(end of file)"));
                return Some(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::Schema;

    use super::*;

    /// The checked-in schema files are what the Rust views generate: a view
    /// changed without regenerating the files fails here.
    #[test]
    fn the_checked_in_view_schemas_are_generated_from_the_rust_views() {
        for kind in KINDS {
            let current = kind.embedded_json();
            let generated = regenerate(kind, current).expect("regenerates");
            if let Some(diff) = first_difference(current, &generated) {
                panic!(
                    "schemas/{} differs from what the Rust views of \
                     crates/codec/src/records/view.rs generate; run `{COMMAND}` (or `make \
                     schemas`) and commit the result. First difference at {diff}",
                    kind.file_name()
                );
            }
        }
    }

    /// Regenerating changes only the view field: a file whose view is
    /// damaged gets it back, and the projection's own fields stay.
    #[test]
    fn regenerating_replaces_only_the_view_field() {
        for kind in KINDS {
            let mut v: serde_json::Value = serde_json::from_str(kind.embedded_json()).unwrap();
            let fields = v["fields"].as_array_mut().unwrap();
            let view = fields.iter_mut().find(|f| f["name"] == "view").unwrap();
            view["type"] = serde_json::json!(["null", "string"]);
            view.as_object_mut().unwrap().remove("default");
            let damaged = serde_json::to_string(&v).unwrap();
            let repaired = regenerate(kind, &damaged).expect("regenerates");
            let fresh = regenerate(kind, kind.embedded_json()).expect("regenerates");
            // The damaged copy went through serde_json, which sorts members:
            // compare contents, not layout.
            let a: serde_json::Value = serde_json::from_str(&repaired).unwrap();
            let b: serde_json::Value = serde_json::from_str(&fresh).unwrap();
            assert!(a == b, "{kind}: the damaged view was not replaced");
            Schema::parse_str(&repaired).expect("valid Avro");
        }
    }

    /// Every named type of a generated view is defined once (Avro refuses a
    /// second definition), the first time it is met.
    #[test]
    fn each_named_type_is_defined_once() {
        fn count(v: &AvroJson, defined: &mut Vec<String>) {
            match v {
                AvroJson::Object(m) => {
                    if v.get("type").and_then(AvroJson::as_str) == Some("record") {
                        let name = v.get("name").and_then(AvroJson::as_str).unwrap();
                        defined.push(name.to_owned());
                    }
                    for (_, x) in m {
                        count(x, defined);
                    }
                }
                AvroJson::Array(a) => a.iter().for_each(|x| count(x, defined)),
                _ => {}
            }
        }
        for kind in KINDS {
            let mut defined = Vec::new();
            count(&view_type(kind).unwrap(), &mut defined);
            let mut unique = defined.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(defined.len(), unique.len(), "{kind}: {defined:?}");
            assert!(defined.contains(&"Money".to_owned()), "{kind}");
            assert!(defined.contains(&"Touch".to_owned()), "{kind}");
        }
    }

    #[test]
    fn a_record_without_a_view_or_a_file_without_one_is_an_error() {
        assert!(matches!(
            regenerate(RecordKind::Trigger, RecordKind::Trigger.embedded_json()),
            Err(ViewSchemaError::NotGenerated { .. })
        ));
        let no_view = r#"{"type": "record", "name": "CustomerProjection", "fields": []}"#;
        assert!(matches!(
            regenerate(RecordKind::CustomerProjection, no_view),
            Err(ViewSchemaError::NoViewField { .. })
        ));
        assert!(matches!(
            regenerate(RecordKind::CustomerProjection, "{"),
            Err(ViewSchemaError::Json { .. })
        ));
        assert_eq!(first_difference("a\nb", "a\nb"), None);
        let diff = first_difference("a\nb", "a\nc\nd").unwrap();
        assert!(diff.starts_with("line 2:"), "{diff}");
    }
}
