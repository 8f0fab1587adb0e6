//! AfterShip Tracking webhook payloads (`tracking_update`), tolerant of unknown
//! fields and of ids sent as numbers or strings.

use serde::Deserialize;

use crate::serde_util::{loose_string, loose_vec};

/// The webhook body: `{"event_id", "event", "is_tracking_first_tag", "msg", "ts"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Webhook {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) event: Option<String>,
    /// UUID v4 of this webhook event (newer webhook versions send it).
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) event_id: Option<String>,
    /// Unix seconds when the event occurred.
    #[serde(default)]
    pub(crate) ts: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) msg: Option<Tracking>,
}

/// The tracking object in `msg`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Tracking {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) tracking_number: Option<String>,
    /// Carrier slug (`ups`, `usps`, `dhl`, ...).
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) slug: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) tag: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) subtag: Option<String>,
    /// True once any checkpoint has subtag Exception_010 / Exception_011.
    #[serde(default)]
    pub(crate) return_to_sender: Option<bool>,
    /// The store's order id, as the store integration recorded it.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) order_id: Option<String>,
    /// The store's human order number (`#1001`).
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) order_number: Option<String>,
    /// Empty, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` or with a zone.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) expected_delivery: Option<String>,
    #[serde(default, deserialize_with = "loose_vec")]
    pub(crate) checkpoints: Vec<CheckpointIn>,
}

/// One element of `msg.checkpoints`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CheckpointIn {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) checkpoint_time: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) tag: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) subtag: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) message: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) location: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) city: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) state: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) country_name: Option<String>,
}
