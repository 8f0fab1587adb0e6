//! `settlement`: the settlement reports a merchant's finance team downloads
//! from its payment providers, posted as they are (CSV) to
//! `/v1/webhooks/{tenant}/settlement`, verified by the ingest, kept in
//! `raw.settlement` and folded with the payments they settle. Like the `erp`
//! feed it is storefold's own contract, not a third party's webhook: the
//! finance team (or `storefold settlement load`, or any script holding the
//! tenant's settlement secret) posts the file.
//!
//! Topic: the report's format, in `X-Storefold-Topic` as the operator's
//! commands carry theirs, one of
//!
//! - [`STRIPE_PAYOUT_RECONCILIATION`]: Stripe's itemized payout
//!   reconciliation report (`payout_reconciliation.itemized.5`), one
//!   balance transaction per row;
//! - [`ADYEN_SETTLEMENT_DETAILS`]: Adyen's settlement details report, one
//!   journal entry of one settlement batch per row.
//!
//! Every row becomes one `PayoutLine` (Adyen's `MerchantPayout` row: one
//! `PayoutUpdated`); see `stripe_report.rs` and `adyen_report.rs` for the
//! columns read. A row that cannot be read refuses the whole body, with an
//! error naming its line (the spreadsheet's row number, the header being
//! line 1) and column; the body then goes to the dead-letter topic and
//! nothing of it is folded.
//!
//! Signature: storefold's own scheme, as the operator's: `X-Storefold-Signature:
//! sha256=<hex>`, the HMAC-SHA256 keyed with the tenant's settlement secret of
//! `<timestamp>\n<topic>\n<body>`. The format is signed so that a body cannot
//! be read again as another report.
//!
//! Idempotency: the request's id is `settlement:<topic>:<SHA-256 of the
//! body>`; each row's event id is the provider's own id of the movement,
//! `settlement:<provider>:<line id>` (a payout: `settlement:<provider>:payout:<payout id>`),
//! the same whatever file or chunk it comes in, so reports that overlap fold
//! each movement once.

use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapError, SignError, Signed, VerifyError, WebhookRequest,
    sign_storefold_topic, storefold_topic_signature, verify_storefold_topic,
};

mod adyen_report;
mod csv;
mod map;
mod stripe_report;
#[cfg(test)]
mod tests;

pub(crate) use map::map;
pub use map::{RowSpan, line_event_id, payout_event_id, row_spans};

pub(crate) const PROVIDER: &str = "settlement";

/// Stripe's itemized payout reconciliation report
/// (`payout_reconciliation.itemized.5`).
pub const STRIPE_PAYOUT_RECONCILIATION: &str = "stripe.payout_reconciliation";
/// Adyen's settlement details report (one settlement batch).
pub const ADYEN_SETTLEMENT_DETAILS: &str = "adyen.settlement_details";
/// Every report format the feed reads.
pub const TOPICS: [&str; 2] = [STRIPE_PAYOUT_RECONCILIATION, ADYEN_SETTLEMENT_DETAILS];

/// The signature header: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = crate::STOREFOLD_SIGNATURE_HEADER;
/// The signed Unix time, in seconds.
pub const TIMESTAMP_HEADER: &str = crate::STOREFOLD_TIMESTAMP_HEADER;
/// The report's format ([`TOPICS`]).
pub const TOPIC_HEADER: &str = crate::STOREFOLD_TOPIC_HEADER;
/// How far the signed timestamp may be from the time of the check, either way.
pub const TOLERANCE_SECS: i64 = crate::STOREFOLD_TOLERANCE_SECS;

const SECRET_IS_EMPTY: &str = "empty settlement secret";

/// The format and the signed time are kept; the signature is not (the raw
/// event records the verification).
pub(crate) const HEADERS: &[&str] = &["x-storefold-topic", "x-storefold-timestamp"];

pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    verify_storefold_topic(creds, req, now, SECRET_IS_EMPTY)
}

/// The request's idempotency id: the format and the SHA-256 of the exact body.
pub fn body_id(topic: &str, body: &[u8]) -> String {
    format!("{PROVIDER}:{topic}:{}", content_hash(body))
}

/// Topic from `X-Storefold-Topic` (one of [`TOPICS`], else refused at the
/// ingest); id [`body_id`]. The rows are read by `map`: a body with a row that
/// cannot be read is stored and goes to the dead-letter topic with the row's
/// line and column.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let topic = crate::non_empty(req.headers.get(TOPIC_HEADER))
        .ok_or(MapError::MissingHeader(TOPIC_HEADER))?;
    if !TOPICS.contains(&topic.as_str()) {
        return Err(MapError::UnsupportedTopic(topic));
    }
    Ok(Inbound {
        event_id: body_id(&topic, req.body),
        topic,
        occurred_at: None,
    })
}

/// The `X-Storefold-Signature` value for `body` of format `topic` signed at
/// Unix time `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, topic: &str, body: &[u8]) -> String {
    storefold_topic_signature(secret, timestamp, topic, body)
}

/// The headers a settlement report is sent with.
pub(crate) fn sign(
    secret: &str,
    topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    sign_storefold_topic(secret, topic, body, now, SECRET_IS_EMPTY)
}

/// Payment providers' settlement reports (Stripe's payout reconciliation,
/// Adyen's settlement details), as CSV signed with the tenant's settlement
/// secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settlement;

impl crate::Provider for Settlement {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("storefold-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: STRIPE_PAYOUT_RECONCILIATION,
            body: include_bytes!("fixtures/stripe.payout_reconciliation.csv"),
        }
    }

    fn topic_header(&self) -> Option<&'static str> {
        Some(TOPIC_HEADER)
    }

    crate::provider::entry_points!();
}
