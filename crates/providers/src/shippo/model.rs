//! Shippo webhook bodies: `{"event": "track_updated", "test": bool, "data": Track}`.

use serde::Deserialize;

use crate::serde_util::{loose_string, loose_vec};
pub(crate) use crate::tracking::Location;

#[derive(Debug, Deserialize)]
pub(crate) struct Webhook {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) event: Option<String>,
    #[serde(default)]
    pub(crate) data: Option<serde_json::Value>,
}

/// Shippo's `Track` object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Track {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) tracking_number: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) carrier: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) eta: Option<String>,
    /// Free text up to 100 characters, e.g. `Order #1001`.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) metadata: Option<String>,
    #[serde(default)]
    pub(crate) tracking_status: Option<TrackingStatus>,
    /// Every status so far, earliest first.
    #[serde(default, deserialize_with = "loose_vec")]
    pub(crate) tracking_history: Vec<TrackingStatus>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TrackingStatus {
    /// PRE_TRANSIT, TRANSIT, DELIVERED, RETURNED, FAILURE, UNKNOWN.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) substatus: Option<Substatus>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status_details: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) status_date: Option<String>,
    #[serde(default)]
    pub(crate) location: Option<Location>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Substatus {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) code: Option<String>,
}
