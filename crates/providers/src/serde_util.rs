//! Lenient serde helpers the provider models share: ids and amounts that arrive
//! as numbers or strings (amounts read exactly from the JSON text), and loose
//! strings and lists for payloads whose types drift (carriers, helpdesk
//! templates, the collect beacon).

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
/// (ids are on every line of every order: this is the hot path). Amounts do not
/// use it: a JSON decimal reaches `visit_f64` already rounded.
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
/// number (`409.94`, `12`). Kept as trimmed text, exactly as sent, so
/// [`Money::parse`](storefold_core::Money::parse) reads it without rounding: a
/// JSON number is taken from the raw JSON text and never through `f64` (which
/// would turn `90071992547409.93` into `90071992547409.94`). `null` is refused
/// (an `Option<Amount>` field reads `null` as `None`); an exponent form (`1e3`)
/// is kept and refused by the money parser with the field's name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Amount(pub(crate) String);

impl Amount {
    /// The amount in one JSON value's text: a string's content or a number's
    /// literal, trimmed.
    fn from_json_text(raw: &str) -> Result<Amount, String> {
        let raw = raw.trim();
        match raw.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(raw)
                .map(|s| Amount(s.trim().to_string()))
                .map_err(|_| "an amount string that is not valid JSON".to_string()),
            Some(b'-' | b'0'..=b'9') => Ok(Amount(raw.to_string())),
            Some(b'n') => Err("expected an amount, found null".into()),
            Some(b't' | b'f') => Err("expected an amount, found a boolean".into()),
            Some(b'{') => Err("expected an amount, found an object".into()),
            Some(b'[') => Err("expected an amount, found an array".into()),
            _ => Err("expected an amount".into()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The raw text of the value, whatever its type: numbers stay exact.
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Amount::from_json_text(raw.get()).map_err(serde::de::Error::custom)
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

    fn amount(json: &str) -> Amount {
        serde_json::from_str::<Amount>(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn usd(a: &Amount) -> Result<storefold_core::Money, crate::MapError> {
        crate::money("total", &a.0, "USD")
    }

    /// 2^53 + 1 = 9007199254740993 is the first integer an f64 cannot hold.
    #[test]
    fn amounts_beyond_two_to_the_53_minor_units_are_exact() {
        // A decimal string and a JSON decimal number: 9007199254740993 cents.
        for json in [r#""90071992547409.93""#, "90071992547409.93"] {
            let a = amount(json);
            assert_eq!(a, Amount("90071992547409.93".into()), "{json}");
            assert_eq!(usd(&a).unwrap().minor, 9_007_199_254_740_993, "{json}");
        }
        // A JSON integer (whole units), in a struct as the models read it.
        let r: Row = serde_json::from_str(r#"{"id": 1, "total": 9007199254740993}"#).unwrap();
        let total = r.total.unwrap();
        assert_eq!(total, Amount("9007199254740993".into()));
        let jpy = crate::money("total", &total.0, "JPY").unwrap();
        assert_eq!(jpy.minor, 9_007_199_254_740_993);
        // Through f64 the same text would have lost its last digit.
        assert_ne!(
            "90071992547409.93".parse::<f64>().unwrap().to_string(),
            "90071992547409.93"
        );
        // The largest amount that fits: i64::MAX minor units.
        let max = amount("92233720368547758.07");
        assert_eq!(usd(&max).unwrap().minor, i64::MAX);
        let over = amount("92233720368547758.08");
        assert!(matches!(
            usd(&over),
            Err(crate::MapError::InvalidField { .. })
        ));
    }

    #[test]
    fn every_amount_form_the_providers_send() {
        // Decimal strings (Shopify, WooCommerce, PayPal), padded or negative.
        assert_eq!(usd(&amount(r#""409.94""#)).unwrap().minor, 40_994);
        assert_eq!(usd(&amount(r#"" 9.50 ""#)).unwrap().minor, 950);
        assert_eq!(usd(&amount(r#""-5.00""#)).unwrap().minor, -500);
        assert_eq!(usd(&amount(r#""0""#)).unwrap().minor, 0);
        // JSON decimals and integers (WooCommerce plugins, older Shopify payloads).
        assert_eq!(usd(&amount("409.94")).unwrap().minor, 40_994);
        assert_eq!(usd(&amount("0.1")).unwrap().minor, 10);
        assert_eq!(usd(&amount("12")).unwrap().minor, 1_200);
        assert_eq!(usd(&amount("-0.01")).unwrap().minor, -1);
        // A JSON number keeps its literal: trailing zeros are not rounded away
        // and more decimals than the currency has are refused, not rounded.
        assert_eq!(amount("1.10"), Amount("1.10".into()));
        assert!(usd(&amount("0.105")).is_err());
        assert!(usd(&amount(r#""0.105""#)).is_err());
    }

    #[test]
    fn exponent_forms_are_refused_by_name() {
        // No provider sends them; a JSON number in exponent form is kept as sent
        // and the money parser refuses it, naming the field.
        for json in ["1e3", "1.5E2", "-2e-2", r#""1e3""#] {
            let a = amount(json);
            let err = usd(&a).unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{json}");
            let text = err.to_string();
            assert!(
                text.contains("total") && text.contains("not a decimal amount"),
                "{json}: {text}"
            );
        }
    }

    #[test]
    fn non_amounts_are_refused_without_quoting_them() {
        for (json, expected) in [
            ("null", "found null"),
            ("true", "found a boolean"),
            ("{}", "found an object"),
            ("[1]", "found an array"),
        ] {
            let err = serde_json::from_str::<Amount>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
        // Inside a model: the failing path is named by parse_json.
        let err = crate::parse_json::<Row>(br#"{"id": 1, "total": ["secret"]}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("total") && !text.contains("secret"), "{text}");
        // An Option<Amount> reads null as absent, and Amounts read from a
        // serde_json::Value (no model does so today) still work.
        let r: Row = serde_json::from_value(serde_json::json!({"id": 1, "total": "1.25"})).unwrap();
        assert_eq!(r.total, Some(Amount("1.25".into())));
    }
}
