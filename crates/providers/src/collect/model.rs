//! The collect beacon body the shop's site posts.

use serde::Deserialize;

use crate::serde_util::loose_string;

/// `{"anonymous_id", "touch_id"?, "at"?, "landing_page"?, "referrer"?,
/// "utm_source"… or "utm": {…}, "gclid"?, "fbclid"?, "email"?, "email_token"?, "cart_token"?}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Beacon {
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) anonymous_id: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) touch_id: Option<String>,
    /// RFC 3339.
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) at: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) landing_page: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) referrer: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) utm_source: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) utm_medium: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) utm_campaign: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) utm_term: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) utm_content: Option<String>,
    #[serde(default)]
    pub(crate) utm: Option<UtmIn>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) gclid: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) fbclid: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) email: Option<String>,
    /// The shop backend's signature of `email` (see `collect::identity_token`).
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) email_token: Option<String>,
    #[serde(default, deserialize_with = "loose_string")]
    pub(crate) cart_token: Option<String>,
}

/// `"utm": {"source", "medium", "campaign", "term", "content"}` (the `utm_`
/// prefixed names are accepted too).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UtmIn {
    #[serde(default, alias = "utm_source", deserialize_with = "loose_string")]
    pub(crate) source: Option<String>,
    #[serde(default, alias = "utm_medium", deserialize_with = "loose_string")]
    pub(crate) medium: Option<String>,
    #[serde(default, alias = "utm_campaign", deserialize_with = "loose_string")]
    pub(crate) campaign: Option<String>,
    #[serde(default, alias = "utm_term", deserialize_with = "loose_string")]
    pub(crate) term: Option<String>,
    #[serde(default, alias = "utm_content", deserialize_with = "loose_string")]
    pub(crate) content: Option<String>,
}
