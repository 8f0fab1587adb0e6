//! Gorgias HTTP-integration bodies: the ticket JSON (`{{ticket}}`-style), either
//! wrapped as `{"event": "...", "ticket": {...}}` or at the top level.

use serde::Deserialize;

use crate::serde_util::{loose_string, loose_vec};

#[derive(Debug, Deserialize)]
pub(crate) struct Wrapper {
    /// Optional name the integration's template gives the trigger.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) event: Option<String>,
    #[serde(default)]
    pub(crate) ticket: Option<TicketIn>,
}

/// The fields of Gorgias' Ticket object storefold reads.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TicketIn {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    /// `open` or `closed`.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) subject: Option<String>,
    #[serde(default)]
    pub(crate) customer: Option<Customer>,
    /// `[{"name": ...}]`, a list of strings, or one comma-separated string.
    #[serde(default)]
    pub(crate) tags: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) created_datetime: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) updated_datetime: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) closed_datetime: Option<String>,
    /// `{"score": 1..=5, ...}`.
    #[serde(default)]
    pub(crate) satisfaction_survey: Option<serde_json::Value>,
    /// An order number the integration's template adds (not a Gorgias field).
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) order_number: Option<String>,
    #[serde(default, deserialize_with = "loose_vec")]
    pub(crate) messages: Vec<Message>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Customer {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) email: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Message {
    #[serde(default)]
    pub(crate) from_agent: Option<bool>,
    /// Internal notes are not public and are no response.
    #[serde(default)]
    pub(crate) public: Option<bool>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) sent_datetime: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) created_datetime: Option<String>,
}
