//! EasyPost `Event` objects carrying a `Tracker`, tolerant of unknown fields.

use serde::Deserialize;

use crate::serde_util::{loose_string, loose_vec};
pub(crate) use crate::tracking::Location;

/// `{"object": "Event", "id": "evt_…", "description": "tracker.updated", "result": {…}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct EventObject {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) description: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) created_at: Option<String>,
    #[serde(default)]
    pub(crate) result: Option<serde_json::Value>,
}

/// The `Tracker` in `result`.
#[derive(Debug, Deserialize)]
pub(crate) struct Tracker {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) object: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) tracking_code: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) carrier: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) est_delivery_date: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) updated_at: Option<String>,
    #[serde(default, deserialize_with = "loose_vec")]
    pub(crate) tracking_details: Vec<TrackingDetail>,
}

/// One element of `tracking_details`.
#[derive(Debug, Deserialize)]
pub(crate) struct TrackingDetail {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) datetime: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) tracking_location: Option<Location>,
}
