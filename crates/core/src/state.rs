//! How a state record's value is stored (RocksDB and the changelog), and how
//! state written by an older build is read by a newer one.
//!
//! A stored value is one version byte followed by the JSON of a
//! [`StateValue`]. A value that starts with `{` has no version byte: it was
//! written before versions existed and reads as version 0.
//!
//! Rules for changing a persisted type (an aggregate, an index entry, a
//! record of [`crate::engine`]):
//!
//! - A new field gets `#[serde(default)]` (or is an `Option`), so that state
//!   written without it still decodes. The golden fixtures of every earlier
//!   version (`crates/core/fixtures/state/v<N>/`) must keep decoding.
//! - A change that a default cannot express (a renamed field, a new meaning)
//!   bumps [`STATE_VERSION`] and adds a step to [`upcast`] that rewrites the
//!   JSON of the previous version into the new shape. Then commit the new
//!   version's fixtures with `cargo run -p storefold-core --example
//!   state_fixtures`; never rewrite an older version's fixtures.
//! - A value written by a newer build than this one is refused with an error
//!   naming both versions, never misread.

use crate::engine::StateValue;

/// The version of the stored shape this build writes.
pub const STATE_VERSION: u8 = 1;

/// Encodes a state value: [`STATE_VERSION`], then its JSON.
pub fn encode(value: &StateValue) -> Vec<u8> {
    let mut out = vec![STATE_VERSION];
    // Our own types with string keys only: serialising them cannot fail.
    if serde_json::to_writer(&mut out, value).is_err() {
        out.truncate(1);
    }
    out
}

/// The version a stored value was written with (0: before versions existed).
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    match bytes.first() {
        None => None,
        Some(b'{') => Some(0),
        Some(v) => Some(*v),
    }
}

/// Decodes a stored state value of any version up to [`STATE_VERSION`],
/// upcasting older shapes.
pub fn decode(bytes: &[u8]) -> Result<StateValue, serde_json::Error> {
    use serde::de::Error as _;
    let Some(version) = version_of(bytes) else {
        return Err(serde_json::Error::custom("empty state value"));
    };
    let json = if version == 0 { bytes } else { &bytes[1..] };
    if version == STATE_VERSION {
        return serde_json::from_slice(json);
    }
    if version > STATE_VERSION {
        return Err(serde_json::Error::custom(format!(
            "state value of version {version} was written by a newer storefold (this build reads up to version {STATE_VERSION})"
        )));
    }
    let mut value: serde_json::Value = serde_json::from_slice(json)?;
    for from in version..STATE_VERSION {
        upcast(from, &mut value).map_err(serde_json::Error::custom)?;
    }
    serde_json::from_value(value)
}

/// Rewrites the JSON of a value of version `from` into version `from + 1`.
///
/// The hook for changes a `#[serde(default)]` cannot express. Version 0 (no
/// version byte) and version 1 have the same shape.
pub fn upcast(from: u8, value: &mut serde_json::Value) -> Result<(), String> {
    match from {
        0 => {
            let _ = value;
            Ok(())
        }
        _ => Err(format!("no upcaster from state version {from}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde::Deserialize;

    use super::*;
    use crate::engine::{IndexNode, OrderMeta};

    /// Every golden fixture: (version, kind, bytes).
    fn fixtures() -> Vec<(u8, String, Vec<u8>)> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/state");
        let mut out = Vec::new();
        for version in 0..=STATE_VERSION {
            let dir = root.join(format!("v{version}"));
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("dir entry").path())
                .collect();
            files.sort();
            for f in files {
                let kind = f
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .expect("fixture name")
                    .to_string();
                out.push((version, kind, std::fs::read(&f).expect("fixture")));
            }
        }
        out
    }

    fn kind(v: &StateValue) -> &'static str {
        match v {
            StateValue::Order(_) => "order",
            StateValue::OrderMeta(_) => "order_meta",
            StateValue::Fragment(_) => "fragment",
            StateValue::Index(_) => "index",
            StateValue::Customer(_) => "customer",
            StateValue::Ref(_) => "ref",
            StateValue::Parcel(_) => "parcel",
            StateValue::Parked(_) => "parked",
            StateValue::ParkedBy(_) => "parked_by",
            StateValue::Sku(_) => "sku",
            StateValue::Payout(_) => "payout",
        }
    }

    #[test]
    fn every_golden_fixture_of_every_version_decodes() {
        let all = fixtures();
        for version in 0..=STATE_VERSION {
            let kinds: Vec<&str> = all
                .iter()
                .filter(|(v, _, _)| *v == version)
                .map(|(_, k, _)| k.as_str())
                .collect();
            let mut expected = vec![
                "customer",
                "fragment",
                "index",
                "order",
                "order_meta",
                "parcel",
                "parked",
                "parked_by",
                "ref",
            ];
            // SKU and payout records came within version 1 (new kinds, no
            // new shape).
            if version >= 1 {
                expected.insert(8, "payout");
                expected.push("sku");
            }
            assert_eq!(kinds, expected, "fixtures of version {version}");
        }
        for (version, name, bytes) in &all {
            assert_eq!(version_of(bytes), Some(*version), "{name} v{version}");
            let value = decode(bytes).unwrap_or_else(|e| panic!("{name} v{version}: {e}"));
            assert_eq!(kind(&value), name, "v{version}");
        }
    }

    #[test]
    fn the_current_version_round_trips_its_fixtures_byte_for_byte() {
        for (version, name, bytes) in fixtures() {
            if version != STATE_VERSION {
                continue;
            }
            let value = decode(&bytes).expect("decode");
            assert_eq!(encode(&value), bytes, "{name}");
        }
    }

    #[test]
    fn versions_0_and_1_decode_to_the_same_values() {
        let all = fixtures();
        for (_, name, v0) in all.iter().filter(|(v, _, _)| *v == 0) {
            let (_, _, v1) = all
                .iter()
                .find(|(v, n, _)| *v == 1 && n == name)
                .expect("same kind in v1");
            assert_eq!(decode(v0).unwrap(), decode(v1).unwrap(), "{name}");
        }
    }

    #[test]
    fn a_newer_version_is_refused_naming_both_versions() {
        let mut bytes = encode(&StateValue::Ref(Default::default()));
        bytes[0] = STATE_VERSION + 1;
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(
            err.contains(&format!("version {}", STATE_VERSION + 1)),
            "{err}"
        );
        assert!(err.contains("newer storefold"), "{err}");
        assert!(decode(&[]).is_err());
        assert!(decode(&[STATE_VERSION]).is_err());
    }

    /// A later build adds a field with a default: the old fixture still reads.
    #[test]
    fn a_field_added_with_a_default_still_decodes_the_old_fixture() {
        #[derive(Deserialize)]
        struct OrderMetaNext {
            #[serde(flatten)]
            base: OrderMeta,
            #[serde(default)]
            added_later: BTreeMap<String, u64>,
        }
        #[derive(Deserialize)]
        #[serde(tag = "t", content = "v", rename_all = "snake_case")]
        enum Next {
            OrderMeta(OrderMetaNext),
        }
        for (version, name, bytes) in fixtures() {
            if name != "order_meta" {
                continue;
            }
            let json = if version == 0 {
                &bytes[..]
            } else {
                &bytes[1..]
            };
            let Next::OrderMeta(next) = serde_json::from_slice(json).expect("decodes");
            assert!(next.added_later.is_empty());
            let StateValue::OrderMeta(now) = decode(&bytes).unwrap() else {
                panic!("order_meta fixture holds another kind");
            };
            assert_eq!(next.base, now);
        }
    }

    /// Fields that are collections, flags or optional may be missing: state
    /// written before they existed decodes with them empty.
    #[test]
    fn defaulted_fields_may_be_missing() {
        let v: StateValue = serde_json::from_str(r#"{"t":"index","v":{}}"#).expect("index");
        assert_eq!(v, StateValue::Index(IndexNode::default()));
        let v: StateValue =
            serde_json::from_str(r#"{"t":"order_meta","v":{"version":3}}"#).expect("order meta");
        assert_eq!(
            v,
            StateValue::OrderMeta(OrderMeta {
                version: 3,
                ..OrderMeta::default()
            })
        );
        let v: StateValue =
            serde_json::from_str(r#"{"t":"order","v":{"order_id":"shopify:1"}}"#).expect("order");
        let StateValue::Order(o) = v else {
            panic!("not an order")
        };
        assert_eq!(*o, crate::aggregate::Order::new("shopify:1"));
        let v: StateValue =
            serde_json::from_str(r#"{"t":"fragment","v":{"key":{"kind":"email","hash":"0a1b"}}}"#)
                .expect("fragment");
        assert!(matches!(v, StateValue::Fragment(f) if f.identities.is_empty() && !f.redacted));
    }
}
