//! Adyen standard notification payloads. Tolerant: unknown fields are ignored and
//! scalar fields accept a string, a number or a boolean (Adyen sends `"success":
//! "true"` as a string, some proxies re-encode it as a boolean).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A JSON scalar read as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    pub(crate) fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn text(s: &Option<Scalar>) -> String {
    s.as_ref().map(Scalar::text).unwrap_or_default()
}

/// What verification reads: the fields of the signing string and the signature,
/// nothing else.
#[derive(Debug, Deserialize)]
pub(crate) struct SignedNotification {
    #[serde(rename = "notificationItems")]
    pub(crate) items: Vec<SignedItemWrapper>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignedItemWrapper {
    #[serde(rename = "NotificationRequestItem")]
    pub(crate) item: SignedItem,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignedItem {
    psp_reference: Option<Scalar>,
    original_reference: Option<Scalar>,
    merchant_account_code: Option<Scalar>,
    merchant_reference: Option<Scalar>,
    amount: Option<SignedAmount>,
    event_code: Option<Scalar>,
    success: Option<Scalar>,
    pub(crate) additional_data: Option<SignatureData>,
}

#[derive(Debug, Deserialize)]
struct SignedAmount {
    value: Option<Scalar>,
    currency: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignatureData {
    #[serde(rename = "hmacSignature")]
    pub(crate) hmac_signature: Option<String>,
}

impl SignedItem {
    /// `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`,
    /// a missing field being empty.
    pub(crate) fn signing_string(&self) -> String {
        let (value, currency) = match &self.amount {
            Some(a) => (text(&a.value), text(&a.currency)),
            None => (String::new(), String::new()),
        };
        [
            text(&self.psp_reference),
            text(&self.original_reference),
            text(&self.merchant_account_code),
            text(&self.merchant_reference),
            value,
            currency,
            text(&self.event_code),
            text(&self.success),
        ]
        .join(":")
    }
}

/// A whole notification, read after verification.
#[derive(Debug, Deserialize)]
pub(crate) struct Notification {
    #[serde(rename = "notificationItems", default)]
    pub(crate) items: Vec<ItemWrapper>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ItemWrapper {
    #[serde(rename = "NotificationRequestItem")]
    pub(crate) item: Item,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Item {
    pub(crate) psp_reference: Option<Scalar>,
    pub(crate) original_reference: Option<Scalar>,
    pub(crate) merchant_reference: Option<Scalar>,
    pub(crate) amount: Option<Amount>,
    pub(crate) event_code: Option<Scalar>,
    pub(crate) event_date: Option<String>,
    pub(crate) success: Option<Scalar>,
    pub(crate) payment_method: Option<Scalar>,
    pub(crate) reason: Option<Scalar>,
    #[serde(default)]
    pub(crate) additional_data: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Amount {
    pub(crate) value: Option<Scalar>,
    pub(crate) currency: Option<String>,
}

impl Item {
    pub(crate) fn psp(&self) -> String {
        text(&self.psp_reference)
    }

    pub(crate) fn original(&self) -> String {
        text(&self.original_reference)
    }

    pub(crate) fn code(&self) -> String {
        text(&self.event_code)
    }

    pub(crate) fn success_text(&self) -> String {
        text(&self.success)
    }

    pub(crate) fn succeeded(&self) -> bool {
        self.success_text().eq_ignore_ascii_case("true")
    }

    pub(crate) fn merchant_reference(&self) -> String {
        text(&self.merchant_reference)
    }

    pub(crate) fn payment_method(&self) -> String {
        text(&self.payment_method)
    }

    pub(crate) fn reason(&self) -> String {
        text(&self.reason)
    }

    /// An `additionalData` entry as text (Adyen sends strings).
    pub(crate) fn extra(&self, key: &str) -> Option<String> {
        match self.additional_data.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}
