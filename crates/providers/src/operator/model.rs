//! The operator's command bodies. Unlike a third party's payloads these are
//! storefold's own contract, so an unknown field is refused rather than skipped:
//! a misspelt `phone` must not turn an erasure of two identities into one of a
//! single identity without anyone noticing.

use serde::Deserialize;

/// `customer/erase`: erase every trace of the customer named by `email` and/or
/// `phone`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EraseCommand {
    /// The command's unique id, chosen by whoever issues it: the event's
    /// idempotency id, so the same command sent twice is one erasure.
    #[serde(default)]
    pub(crate) command_id: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    /// International form (`+4915112345678`); there is no default country.
    #[serde(default)]
    pub(crate) phone: Option<String>,
    /// RFC 3339: when the erasure was requested (the event's time).
    #[serde(default)]
    pub(crate) requested_at: Option<String>,
    /// Free text for the audit trail (at most [`MAX_REASON_CHARS`]); kept in the
    /// raw log only, the canonical event has no place for it.
    ///
    /// [`MAX_REASON_CHARS`]: super::map::MAX_REASON_CHARS
    #[serde(default)]
    pub(crate) reason: Option<String>,
}
