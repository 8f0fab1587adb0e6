//! Shippo webhooks (`track_updated` is mapped).
//!
//! Shippo signs nothing. The tenant's webhook URL carries a per-tenant token
//! (`?token=…`), compared in constant time with [`Credentials::secret`](crate::Credentials::secret); a missing
//! or wrong token is [`VerifyError::BadToken`](crate::VerifyError::BadToken). Shippo events carry no id either, so
//! the idempotency id is a hash of what identifies a tracking update: tracking
//! number, status and status date.

use storefold_core::identity::content_hash;

use crate::{Inbound, MapError, WebhookRequest};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "shippo";

/// Nothing in the headers is needed for mapping.
pub(crate) const HEADERS: &[&str] = &[];

/// Topic = `event`; for `track_updated` the id is a hash of tracking number,
/// status and status date, and occurred_at is the status date; other events get a
/// hash of the body.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let hook: model::Webhook = crate::parse_json(req.body)?;
    let topic = crate::non_empty(hook.event.as_deref())
        .ok_or_else(|| MapError::MissingField("event".into()))?;
    if topic != map::TRACK_UPDATED {
        return Ok(Inbound {
            topic,
            event_id: content_hash(req.body),
            occurred_at: None,
        });
    }
    let track = map::track_of(&hook)?;
    let number = crate::non_empty(track.tracking_number.as_deref())
        .ok_or_else(|| MapError::MissingField("data.tracking_number".into()))?;
    let status = track.tracking_status.unwrap_or_default();
    let status_name = status.status.unwrap_or_default();
    let status_date = status.status_date.unwrap_or_default();
    let key = format!("{number}\u{0}{status_name}\u{0}{status_date}");
    Ok(Inbound {
        topic,
        event_id: format!("shippo:{}", content_hash(key.as_bytes())),
        occurred_at: crate::lenient_time(&status_date),
    })
}

pub(crate) use map::map;

/// The token in the URL is all there is to check: nothing is signed.
pub(crate) use crate::{sign_url_token as sign, verify_url_token as verify};

/// Shippo (tracking updates; verified by URL token).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shippo;

impl crate::Provider for Shippo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("url-token")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "track_updated",
            body: include_bytes!("fixtures/track_updated__out_for_delivery.json"),
        }
    }

    crate::provider::entry_points!();
}
