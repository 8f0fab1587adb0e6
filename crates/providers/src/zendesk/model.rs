//! Zendesk webhook bodies, tolerant of unknown fields and of ids as numbers or
//! strings. Two shapes:
//!
//! * Event webhooks: `{"type": "zen:event-type:ticket.…", "id", "time", "subject",
//!   "detail": {ticket}, "event": {…}}`.
//! * Trigger/automation webhooks, whose JSON the admin writes. storefold reads
//!   `{"ticket": {…}}` (or the same fields at the top level) with the fields of
//!   [`TicketIn`]; the recommended template is in `mod.rs`.

use serde::Deserialize;

use crate::serde_util::{loose_string, loose_vec};

#[derive(Debug, Deserialize)]
pub(crate) struct Body {
    #[serde(default, rename = "type", deserialize_with = "loose_string")]
    pub(crate) event_type: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) time: Option<String>,
    #[serde(default)]
    pub(crate) detail: Option<TicketIn>,
    #[serde(default)]
    pub(crate) event: Option<serde_json::Value>,
    /// Trigger body wrapper.
    #[serde(default)]
    pub(crate) ticket: Option<TicketIn>,
}

/// A ticket, in either shape. Fields read:
/// `id`, `status`, `subject` (or `title`), `requester_id`, `requester{id,email}`
/// (or `requester_email`), `tags` (list or space-separated string), `created_at`,
/// `updated_at`, `custom_fields[{id,value}]`, `order_number`,
/// `satisfaction_rating` (`{"score": "good"|"bad"}` or the bare score),
/// `first_response_at`, `solved_at`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TicketIn {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) subject: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) title: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) requester_id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) requester_email: Option<String>,
    #[serde(default)]
    pub(crate) requester: Option<Requester>,
    #[serde(default)]
    pub(crate) tags: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) created_at: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) updated_at: Option<String>,
    #[serde(default, deserialize_with = "loose_vec")]
    pub(crate) custom_fields: Vec<CustomField>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) order_number: Option<String>,
    #[serde(default)]
    pub(crate) satisfaction_rating: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) first_response_at: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) solved_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Requester {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) email: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CustomField {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) value: Option<String>,
}
