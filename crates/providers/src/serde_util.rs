//! Lenient serde helpers the provider models share: ids and amounts that arrive
//! as numbers or strings, and loose strings and lists for payloads whose types
//! drift (carriers, helpdesk templates, the collect beacon).

use serde::{Deserialize, Deserializer};

/// An id sent as a JSON number (REST) or a string (newer payloads, plugins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Id(pub(crate) String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText("an id")).map(Id)
    }
}

/// Reads a JSON string or number as text without building a `serde_json::Value`
/// (ids and amounts are on every line of every order: this is the hot path).
struct ScalarText(&'static str);

impl serde::de::Visitor<'_> for ScalarText {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        // Same text serde_json gives a number it read: the shortest round trip.
        serde_json::Number::from_f64(v)
            .map(|n| n.to_string())
            .ok_or_else(|| E::custom(format!("expected {}, found {v}", self.0)))
    }
}

/// A decimal amount: normally a string (`"409.94"`), in a few payloads a JSON
/// number. Kept as trimmed text so it is parsed exactly later. `null` is refused
/// (an `Option<Amount>` field reads `null` as `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Amount(pub(crate) String);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText("an amount"))
            .map(|s| Amount(s.trim().to_string()))
    }
}

/// Deserialises a string, number or boolean into `Some(String)`; `null`, objects
/// and arrays into `None`. Providers send ids as numbers one month and strings the
/// next, and helpdesk templates send everything as strings.
pub(crate) fn loose_string<'de, D>(de: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(de)? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// Deserialises a list leniently: `null` or a non-list is an empty list, and list
/// elements that do not fit `T` are dropped.
pub(crate) fn loose_vec<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match serde_json::Value::deserialize(de)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Row {
        id: Id,
        #[serde(default)]
        total: Option<Amount>,
        #[serde(default, deserialize_with = "loose_string")]
        note: Option<String>,
        #[serde(default, deserialize_with = "loose_vec")]
        ids: Vec<u32>,
    }

    #[test]
    fn ids_and_amounts_as_numbers_or_strings() {
        let r: Row = serde_json::from_str(
            r#"{"id": 42, "total": " 9.50 ", "note": true, "ids": [1, "x", 3]}"#,
        )
        .unwrap();
        assert_eq!(r.id, Id("42".into()));
        assert_eq!(r.total, Some(Amount("9.50".into())));
        assert_eq!(r.note.as_deref(), Some("true"));
        assert_eq!(r.ids, vec![1, 3]);
        let r: Row =
            serde_json::from_str(r#"{"id": "gid-7", "total": null, "note": {}, "ids": "no"}"#)
                .unwrap();
        assert_eq!(r.id, Id("gid-7".into()));
        assert_eq!(r.total, None);
        assert_eq!(r.note, None);
        assert!(r.ids.is_empty());
        assert!(serde_json::from_str::<Row>(r#"{"id": null}"#).is_err());
        assert!(serde_json::from_str::<Amount>("null").is_err());
        assert_eq!(
            serde_json::from_str::<Amount>("12").unwrap(),
            Amount("12".into())
        );
    }
}
