//! Gorgias HTTP integrations.
//!
//! Gorgias signs nothing: the integration's URL carries a per-tenant token
//! (`?token=…`), compared in constant time with [`Credentials::secret`](crate::Credentials::secret), exactly as
//! for Shippo. The body is the ticket JSON the integration sends (see `model.rs`).

use storefold_core::identity::content_hash;

use crate::{Inbound, MapError, WebhookRequest};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const NAME: &str = "gorgias";

/// Nothing in the headers is needed for mapping.
pub(crate) const HEADERS: &[&str] = &[];

/// Topic = the wrapper's `event`, else `ticket`. Id = `gorgias:<ticket id>:<updated
/// datetime>` (one id per ticket version, so retries and re-sends of the same
/// version are one event), else a hash of the body. occurred_at = updated_datetime.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let (topic, ticket) = map::parse(req.body)?;
    let updated = crate::non_empty(ticket.updated_datetime.as_deref());
    let event_id = match (crate::non_empty(ticket.id.as_deref()), &updated) {
        (Some(id), Some(at)) => format!("gorgias:{id}:{at}"),
        _ => content_hash(req.body),
    };
    Ok(Inbound {
        topic,
        event_id,
        occurred_at: updated.as_deref().and_then(crate::lenient_time),
    })
}

pub(crate) use map::map;

/// The token in the URL is all there is to check: nothing is signed.
pub(crate) use crate::{sign_url_token as sign, verify_url_token as verify};

/// Gorgias (ticket webhooks; verified by URL token).
#[derive(Clone, Copy, Debug, Default)]
pub struct Gorgias;

impl crate::Provider for Gorgias {
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
            topic: "ticket-updated",
            body: include_bytes!("fixtures/ticket_closed__return.json"),
        }
    }

    crate::provider::entry_points!();
}
