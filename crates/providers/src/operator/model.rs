//! The operator's command bodies. Unlike a third party's payloads these are
//! storefold's own contract, so an unknown field is refused rather than skipped:
//! a misspelt `phone` must not turn an erasure of two identities into one of a
//! single identity without anyone noticing, nor a misspelt side of a merge
//! leave it naming nothing.

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

/// `identity/merge`, `identity/split`, `identity/block`: the operator's
/// decision (the topic) about the two identities `a` and `b`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionCommand {
    /// As for [`EraseCommand::command_id`]: the same command sent twice is one
    /// decision.
    #[serde(default)]
    pub(crate) command_id: Option<String>,
    #[serde(default)]
    pub(crate) a: Option<Side>,
    #[serde(default)]
    pub(crate) b: Option<Side>,
    /// RFC 3339: when the decision was taken (the event's time; the latest
    /// decision on a pair is the one that holds).
    #[serde(default)]
    pub(crate) requested_at: Option<String>,
    /// Free text for the audit trail, as for [`EraseCommand::reason`].
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

/// One side of a decision: exactly one of its fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Side {
    #[serde(default)]
    pub(crate) email: Option<String>,
    /// International form, as for [`EraseCommand::phone`].
    #[serde(default)]
    pub(crate) phone: Option<String>,
    /// A source system's id of the customer (`{"source": "shopify", "id": "42"}`).
    #[serde(default)]
    pub(crate) external: Option<External>,
    /// A customer id storefold published (`cus_em_<hex>`, `cus_ph_<hex>`, ...).
    #[serde(default)]
    pub(crate) customer_id: Option<String>,
}

/// An external id: the source system and its id, both strings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct External {
    #[serde(default)]
    pub(crate) source: Option<String>,
    #[serde(default)]
    pub(crate) id: Option<String>,
}
