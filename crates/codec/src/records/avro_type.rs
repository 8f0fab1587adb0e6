//! Avro schemas derived from Rust types, so that the typed views of
//! [`view`](super::view) are the one place their Avro records are defined.
//!
//! [`AvroType`] gives the schema of a type: the primitives the views use
//! (`i64` → `long`, `i32` → `int`, `bool` → `boolean`, `String` → `string`),
//! `Option<T>` → `["null", T]` with a `null` default, `Vec<T>` → `array`,
//! `BTreeMap<String, T>` → `map`, and every record declared with
//! `avro_view!`. That macro keeps the struct as written (derives, serde
//! attributes, doc comments) and implements [`AvroType`] for it: the record's
//! doc and each field's doc are the Rust doc comments, field names are the
//! Rust names (the names serde writes), and a named type is written out the
//! first time a schema meets it and referenced by name afterwards, as Avro
//! requires.
//!
//! Two field options go between a field's doc comment and its serde
//! attributes:
//!
//! - `#[avro(timestamp_millis)]` on an `i64` or `Option<i64>` field: a `long`
//!   with the `timestamp-millis` logical type;
//! - `#[avro(default_empty)]` on a `Vec` or `BTreeMap` field: the field gets
//!   `[]` or `{}` as its default, so records written before the field existed
//!   stay readable;
//! - `#[avro(default = 0)]` (or `false`, `"text"`): that literal as the
//!   field's default, for a `long`, `int`, `boolean` or `string` field.
//!
//! A default given here is for Avro readers; give the field
//! `#[serde(default)]` as well so that JSON without it reads the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps the order of object members as written, for
/// schema files that people read (`serde_json::Value` sorts the keys).
#[derive(Debug, Clone, PartialEq)]
pub enum AvroJson {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json read it.
    Number(serde_json::Number),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<AvroJson>),
    /// An object, members in order.
    Object(Vec<(String, AvroJson)>),
}

/// Width the schema files are laid out to: a value stays on one line when the
/// line fits in it, else its members go one per line.
const WIDTH: usize = 120;

impl AvroJson {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        AvroJson::Str(s.into())
    }

    /// An object from `(key, value)` pairs, in that order.
    pub fn object<K: Into<String>>(members: impl IntoIterator<Item = (K, AvroJson)>) -> Self {
        AvroJson::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&AvroJson> {
        match self {
            AvroJson::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AvroJson::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Sets the member `key` of an object: in place when present, else after
    /// the member `after` (or last). Does nothing on a value that is not an
    /// object.
    pub fn set(&mut self, key: &str, value: AvroJson, after: &str) {
        let AvroJson::Object(members) = self else {
            return;
        };
        if let Some(slot) = members.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
            return;
        }
        let at = members
            .iter()
            .position(|(k, _)| k == after)
            .map_or(members.len(), |i| i + 1);
        members.insert(at, (key.to_owned(), value));
    }

    /// The value laid out as the schema files are: two-space indents, a
    /// value on one line when it fits in 120 columns (its key and a trailing
    /// comma included), `": "` and `", "` as separators. No final newline.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0, 0, 0);
        out
    }

    /// The value on one line.
    pub fn compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    fn write_compact(&self, out: &mut String) {
        match self {
            AvroJson::Null => out.push_str("null"),
            AvroJson::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            AvroJson::Number(n) => out.push_str(&n.to_string()),
            AvroJson::Str(s) => push_string(out, s),
            AvroJson::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_compact(out);
                }
                out.push(']');
            }
            AvroJson::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    push_string(out, k);
                    out.push_str(": ");
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }

    /// Writes the value at column `indent + lead` of a line indented by
    /// `indent`, followed on that line by `tail` more characters.
    fn write_pretty(&self, out: &mut String, indent: usize, lead: usize, tail: usize) {
        let one_line = self.compact();
        let empty = matches!(self, AvroJson::Array(a) if a.is_empty())
            || matches!(self, AvroJson::Object(m) if m.is_empty());
        let nested = matches!(self, AvroJson::Array(_) | AvroJson::Object(_));
        if !nested || empty || indent + lead + one_line.chars().count() + tail <= WIDTH {
            out.push_str(&one_line);
            return;
        }
        let pad = " ".repeat(indent + 2);
        match self {
            AvroJson::Array(items) => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    let last = i + 1 == items.len();
                    out.push_str(&pad);
                    v.write_pretty(out, indent + 2, 0, usize::from(!last));
                    out.push_str(if last { "\n" } else { ",\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push(']');
            }
            AvroJson::Object(members) => {
                out.push_str("{\n");
                for (i, (k, v)) in members.iter().enumerate() {
                    let last = i + 1 == members.len();
                    out.push_str(&pad);
                    let mut key = String::new();
                    push_string(&mut key, k);
                    key.push_str(": ");
                    out.push_str(&key);
                    v.write_pretty(out, indent + 2, key.chars().count(), usize::from(!last));
                    out.push_str(if last { "\n" } else { ",\n" });
                }
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
            _ => out.push_str(&one_line),
        }
    }
}

/// Appends `s` as a JSON string literal.
fn push_string(out: &mut String, s: &str) {
    // Serialising a string to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

impl From<i32> for AvroJson {
    fn from(n: i32) -> Self {
        AvroJson::Number(n.into())
    }
}

impl From<i64> for AvroJson {
    fn from(n: i64) -> Self {
        AvroJson::Number(n.into())
    }
}

impl From<bool> for AvroJson {
    fn from(b: bool) -> Self {
        AvroJson::Bool(b)
    }
}

impl From<&str> for AvroJson {
    fn from(s: &str) -> Self {
        AvroJson::str(s)
    }
}

impl From<&AvroJson> for serde_json::Value {
    fn from(v: &AvroJson) -> Self {
        match v {
            AvroJson::Null => serde_json::Value::Null,
            AvroJson::Bool(b) => serde_json::Value::Bool(*b),
            AvroJson::Number(n) => serde_json::Value::Number(n.clone()),
            AvroJson::Str(s) => serde_json::Value::String(s.clone()),
            AvroJson::Array(a) => serde_json::Value::Array(a.iter().map(Into::into).collect()),
            AvroJson::Object(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.into())).collect())
            }
        }
    }
}

impl<'de> Deserialize<'de> for AvroJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AvroJson;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<AvroJson, E> {
                Ok(AvroJson::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<AvroJson, E> {
                Ok(AvroJson::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<AvroJson, E> {
                Ok(AvroJson::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<AvroJson, E> {
                Ok(AvroJson::Number(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<AvroJson, E> {
                Ok(AvroJson::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<AvroJson, E> {
                serde_json::Number::from_f64(n)
                    .map(AvroJson::Number)
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AvroJson, E> {
                Ok(AvroJson::Str(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<AvroJson, E> {
                Ok(AvroJson::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AvroJson, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(AvroJson::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AvroJson, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, AvroJson>()? {
                    members.push((k, v));
                }
                Ok(AvroJson::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// The named types a schema has defined so far: Avro allows one definition
/// of a name per schema, later uses name it.
#[derive(Debug, Default, Clone)]
pub struct Names {
    defined: BTreeSet<&'static str>,
}

impl Names {
    /// No name defined yet: the start of a schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `name` as defined; `false` when it already was.
    fn define(&mut self, name: &'static str) -> bool {
        self.defined.insert(name)
    }
}

/// A Rust type with an Avro schema.
pub trait AvroType {
    /// The type's schema within a schema whose named types so far are
    /// `names` (a record defined before is referenced by its name).
    fn avro_schema(names: &mut Names) -> AvroJson;

    /// The default a field of this type gets in the schema, if any.
    fn avro_default() -> Option<AvroJson> {
        None
    }
}

/// A type that can be written as Avro `timestamp-millis` (milliseconds since
/// the Unix epoch): `i64`, and `Option<i64>` as a nullable one.
pub trait TimestampMillis {
    /// The schema of the type as a timestamp.
    fn timestamp_millis_schema() -> AvroJson;
}

/// A collection type whose empty value can be a field default.
pub trait EmptyDefault {
    /// The empty value as a schema default (`[]` or `{}`).
    fn empty_default() -> AvroJson;
}

macro_rules! primitive {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl AvroType for $t {
            fn avro_schema(_: &mut Names) -> AvroJson {
                AvroJson::str($name)
            }
        })*
    };
}

primitive!(i64 => "long", i32 => "int", bool => "boolean", String => "string");

impl<T: AvroType> AvroType for Option<T> {
    fn avro_schema(names: &mut Names) -> AvroJson {
        AvroJson::Array(vec![AvroJson::str("null"), T::avro_schema(names)])
    }

    fn avro_default() -> Option<AvroJson> {
        Some(AvroJson::Null)
    }
}

impl<T: AvroType> AvroType for Vec<T> {
    fn avro_schema(names: &mut Names) -> AvroJson {
        AvroJson::object([
            ("type", AvroJson::str("array")),
            ("items", T::avro_schema(names)),
        ])
    }
}

impl<T: AvroType> AvroType for BTreeMap<String, T> {
    fn avro_schema(names: &mut Names) -> AvroJson {
        AvroJson::object([
            ("type", AvroJson::str("map")),
            ("values", T::avro_schema(names)),
        ])
    }
}

impl TimestampMillis for i64 {
    fn timestamp_millis_schema() -> AvroJson {
        AvroJson::object([
            ("type", AvroJson::str("long")),
            ("logicalType", AvroJson::str("timestamp-millis")),
        ])
    }
}

impl TimestampMillis for Option<i64> {
    fn timestamp_millis_schema() -> AvroJson {
        AvroJson::Array(vec![AvroJson::str("null"), i64::timestamp_millis_schema()])
    }
}

impl<T> EmptyDefault for Vec<T> {
    fn empty_default() -> AvroJson {
        AvroJson::Array(Vec::new())
    }
}

impl<T> EmptyDefault for BTreeMap<String, T> {
    fn empty_default() -> AvroJson {
        AvroJson::Object(Vec::new())
    }
}

/// One field of a record schema being built by `avro_view!`.
#[derive(Debug)]
pub(crate) struct FieldSpec {
    name: &'static str,
    doc: String,
    /// The field's type.
    pub(crate) schema: AvroJson,
    /// The field's default, if it has one.
    pub(crate) default: Option<AvroJson>,
}

impl FieldSpec {
    /// A field of type `T` named `name`, documented by the lines `doc`.
    pub(crate) fn new<T: AvroType>(names: &mut Names, name: &'static str, doc: &[&str]) -> Self {
        Self {
            name,
            doc: doc_text(doc),
            schema: T::avro_schema(names),
            default: T::avro_default(),
        }
    }

    fn into_json(self) -> AvroJson {
        let mut members = vec![
            ("name".to_owned(), AvroJson::str(self.name)),
            ("type".to_owned(), self.schema),
        ];
        if let Some(d) = self.default {
            members.push(("default".to_owned(), d));
        }
        if !self.doc.is_empty() {
            members.push(("doc".to_owned(), AvroJson::Str(self.doc)));
        }
        AvroJson::Object(members)
    }
}

/// The schema of the record `name` documented by the lines `doc`: its
/// definition the first time `names` meets it, else its name.
pub(crate) fn record_schema(
    names: &mut Names,
    name: &'static str,
    doc: &[&str],
    fields: impl FnOnce(&mut Names) -> Vec<FieldSpec>,
) -> AvroJson {
    if !names.define(name) {
        return AvroJson::str(name);
    }
    let fields = fields(names);
    let mut members = vec![
        ("type".to_owned(), AvroJson::str("record")),
        ("name".to_owned(), AvroJson::str(name)),
    ];
    let doc = doc_text(doc);
    if !doc.is_empty() {
        members.push(("doc".to_owned(), AvroJson::Str(doc)));
    }
    members.push((
        "fields".to_owned(),
        AvroJson::Array(fields.into_iter().map(FieldSpec::into_json).collect()),
    ));
    AvroJson::Object(members)
}

/// A Rust doc comment (one string per `///` line) as one line of plain text
/// for an Avro `doc`: lines joined by spaces, Markdown code ticks dropped.
fn doc_text(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('`', "")
}

/// Declares a typed view record: the struct exactly as written, and its
/// [`AvroType`] implementation with the Avro record `name`.
///
/// ```ignore
/// avro_view! {
///     /// Record doc.
///     #[avro(name = "Money")]
///     #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
///     pub struct MoneyView {
///         /// Field doc.
///         pub minor: i64,
///         /// A time.
///         #[avro(timestamp_millis)]
///         pub at: i64,
///     }
/// }
/// ```
///
/// Attribute order matters: doc comments first, then `#[avro(...)]`, then
/// the rest (`#[derive]` on the struct, `#[serde(...)]` on a field).
macro_rules! avro_view {
    (
        $(#[doc = $doc:literal])*
        #[avro(name = $avro_name:literal)]
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $fdoc:literal])*
                $(#[avro($($fopt:tt)*)])*
                $(#[serde($($serde:tt)*)])*
                $fvis:vis $field:ident : $fty:ty
            ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        $(#[$attr])*
        $vis struct $name {
            $(
                $(#[doc = $fdoc])*
                $(#[serde($($serde)*)])*
                $fvis $field: $fty,
            )*
        }

        impl $crate::records::avro_type::AvroType for $name {
            fn avro_schema(
                names: &mut $crate::records::avro_type::Names,
            ) -> $crate::records::avro_type::AvroJson {
                $crate::records::avro_type::record_schema(
                    names,
                    $avro_name,
                    &[$($doc),*],
                    |names| {
                        vec![$({
                            #[allow(unused_mut)]
                            let mut field = $crate::records::avro_type::FieldSpec::new::<$fty>(
                                names,
                                stringify!($field),
                                &[$($fdoc),*],
                            );
                            $(avro_field_option!(field, $fty, $($fopt)*);)*
                            field
                        }),*]
                    },
                )
            }
        }
    };
}

/// Applies one `#[avro(...)]` option of a field declared in `avro_view!`; an
/// unknown option does not compile.
macro_rules! avro_field_option {
    ($field:ident, $ty:ty, timestamp_millis) => {
        $field.schema =
            <$ty as $crate::records::avro_type::TimestampMillis>::timestamp_millis_schema();
    };
    ($field:ident, $ty:ty, default_empty) => {
        $field.default = Some(<$ty as $crate::records::avro_type::EmptyDefault>::empty_default());
    };
    ($field:ident, $ty:ty, default = $value:literal) => {
        $field.default = Some($crate::records::avro_type::AvroJson::from($value));
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_break_at_the_width_and_short_ones_stay_on_a_line() {
        let short = AvroJson::object([
            ("name", AvroJson::str("a")),
            ("type", AvroJson::str("long")),
        ]);
        assert_eq!(short.pretty(), r#"{"name": "a", "type": "long"}"#);
        let long = AvroJson::object([
            ("name", AvroJson::str("a")),
            ("doc", AvroJson::str("x".repeat(120))),
        ]);
        let text = long.pretty();
        assert_eq!(
            text,
            format!(
                "{{\n  \"name\": \"a\",\n  \"doc\": \"{}\"\n}}",
                "x".repeat(120)
            )
        );
        let back: AvroJson = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, long);
    }

    #[test]
    fn member_order_survives_a_parse() {
        let text = r#"{"z": 1, "a": [true, null, -2.5], "m": {"y": "s", "b": {}}}"#;
        let v: AvroJson = serde_json::from_str(text).expect("parses");
        assert_eq!(v.compact(), text);
    }

    #[test]
    fn a_member_is_replaced_in_place_or_added_after_another() {
        let mut v = AvroJson::object([
            ("name", AvroJson::str("view")),
            ("type", AvroJson::str("string")),
            ("doc", AvroJson::str("d")),
        ]);
        v.set("type", AvroJson::str("long"), "name");
        v.set("default", AvroJson::Null, "type");
        assert_eq!(
            v.compact(),
            r#"{"name": "view", "type": "long", "default": null, "doc": "d"}"#
        );
    }

    avro_view! {
        /// An inner record,
        /// over two lines.
        #[avro(name = "Inner")]
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        struct Inner {
            /// A `code`.
            code: String,
        }
    }

    avro_view! {
        /// Outer.
        #[avro(name = "Outer")]
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        struct Outer {
            /// First.
            first: Inner,
            /// Second, by name.
            second: Option<Inner>,
            /// When.
            #[avro(timestamp_millis)]
            at: Option<i64>,
            /// Added later.
            #[avro(default_empty)]
            #[serde(default)]
            later: Vec<i32>,
            /// Counts.
            counts: BTreeMap<String, i64>,
            /// A flag added later.
            #[avro(default = false)]
            #[serde(default)]
            flag: bool,
            /// A count added later.
            #[avro(default = 0)]
            #[serde(default)]
            count: i64,
        }
    }

    #[test]
    fn a_record_defines_each_name_once_with_docs_defaults_and_logical_types() {
        let schema = Outer::avro_schema(&mut Names::new());
        let expected = r#"{"type": "record", "name": "Outer", "doc": "Outer.", "fields": [{"name": "first", "type": {"type": "record", "name": "Inner", "doc": "An inner record, over two lines.", "fields": [{"name": "code", "type": "string", "doc": "A code."}]}, "doc": "First."}, {"name": "second", "type": ["null", "Inner"], "default": null, "doc": "Second, by name."}, {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null, "doc": "When."}, {"name": "later", "type": {"type": "array", "items": "int"}, "default": [], "doc": "Added later."}, {"name": "counts", "type": {"type": "map", "values": "long"}, "doc": "Counts."}, {"name": "flag", "type": "boolean", "default": false, "doc": "A flag added later."}, {"name": "count", "type": "long", "default": 0, "doc": "A count added later."}]}"#;
        assert_eq!(schema.compact(), expected);
        apache_avro::Schema::parse(&serde_json::Value::from(&schema)).expect("valid Avro");
    }
}
