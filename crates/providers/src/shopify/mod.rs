//! Shopify: orders (with the store's own account of their money), order edits,
//! refunds, order transactions, fulfillments, customers, checkouts, inventory
//! items and products (unit costs and stock) and the mandatory compliance
//! webhooks.
//!
//! Shopify signs the exact body with the app's client secret: the header
//! `X-Shopify-Hmac-Sha256` holds the base64 HMAC-SHA256. The topic is in
//! `X-Shopify-Topic`; `X-Shopify-Event-Id` is the same for every delivery of one
//! event (Shopify's documented duplicate key), `X-Shopify-Webhook-Id` names one
//! delivery and is the fallback for older deliveries without an event id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, hmac_sha256, parse_time, signing_secret, uuid_from_hash, verify_base64_hmac,
    verifying_secret,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub(crate) const HEADERS: &[&str] = &[
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "x-shopify-api-version",
];

const HMAC_HEADER: &str = "X-Shopify-Hmac-Sha256";
const TOPIC_HEADER: &str = "X-Shopify-Topic";
const SECRET_IS_EMPTY: &str = "the Shopify app secret is empty";

/// Checks `X-Shopify-Hmac-Sha256` over the exact body. Nothing is parsed first.
pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    verify_base64_hmac(
        HMAC_HEADER,
        req.headers.get(HMAC_HEADER),
        secret.as_bytes(),
        &[req.body],
    )
}

/// Topic from `X-Shopify-Topic`; event id `<event id>:<topic>` from
/// `X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`, else a hash of the body.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    let topic = req
        .headers
        .get(TOPIC_HEADER)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(MapError::MissingHeader(TOPIC_HEADER))?
        .to_string();
    let header = |name: &str| {
        req.headers
            .get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let id = header("x-shopify-event-id")
        .or_else(|| header("x-shopify-webhook-id"))
        .unwrap_or_else(|| content_hash(req.body));
    // A garbled timestamp does not make the webhook unusable: the payload has its own.
    let occurred_at = header("x-shopify-triggered-at")
        .and_then(|t| parse_time("X-Shopify-Triggered-At", &t).ok());
    Ok(Inbound {
        event_id: format!("{id}:{topic}"),
        topic,
        occurred_at,
    })
}

/// Maps a verified Shopify webhook by its topic.
pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    match input.topic {
        "orders/create"
        | "orders/updated"
        | "orders/paid"
        | "orders/cancelled"
        | "orders/fulfilled"
        | "orders/partially_fulfilled" => map::order(ctx, input),
        "orders/edited" => map::order_edited(ctx, input),
        "refunds/create" => map::refund(ctx, input),
        "order_transactions/create" => map::order_transaction(ctx, input),
        "fulfillments/create" | "fulfillments/update" => map::fulfillment(ctx, input),
        "fulfillment_events/create" => map::fulfillment_event(ctx, input),
        "customers/create" | "customers/update" => map::customer(ctx, input),
        "customers/delete" => map::customer_deleted(ctx, input),
        "checkouts/create" | "checkouts/update" => map::checkout(ctx, input),
        "customers/redact" => map::customer_redact(ctx, input),
        "inventory_items/create" | "inventory_items/update" => map::inventory_item(ctx, input),
        "products/create" | "products/update" => map::product(ctx, input),
        // Mandatory compliance webhooks that change no state here. A data request
        // asks the app to hand the merchant what it stores about a customer: that is
        // answered from the query API (GET /customers?email=...), not from the log.
        // shop/redact arrives 48 hours after uninstall and asks to erase the shop's
        // data: that is a tenant deletion, an operator action, not a customer event.
        // Both are accepted (so Shopify sees a 200) and kept in the raw log as proof.
        "customers/data_request" | "shop/redact" => Ok(Vec::new()),
        other => Err(MapError::UnsupportedTopic(other.to_string())),
    }
}

/// The headers Shopify sends with `body`: the HMAC, the topic, a delivery id and
/// the trigger time. The delivery id is derived from the content and `now`, so
/// signing is deterministic.
pub(crate) fn sign(
    secret: &str,
    topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
    let mac = hmac_sha256(secret.as_bytes(), &[body]);
    // RFC 3339 can only fail for years beyond 9999; such a clock is not worth a header.
    let triggered_at = now
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default();
    let seed = content_hash(
        &[
            topic.as_bytes(),
            b"\0",
            triggered_at.as_bytes(),
            b"\0",
            body,
        ]
        .concat(),
    );
    let webhook_id = uuid_from_hash(&seed);
    Ok(Signed {
        headers: vec![
            (HMAC_HEADER.to_string(), BASE64.encode(mac)),
            (TOPIC_HEADER.to_string(), topic.to_string()),
            ("X-Shopify-Webhook-Id".to_string(), webhook_id),
            ("X-Shopify-Triggered-At".to_string(), triggered_at),
        ],
        url_token: None,
        body: body.to_vec(),
    })
}

/// Shopify (orders, refunds, transactions, fulfillments, customers, checkouts).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shopify;

impl crate::Provider for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("shopify-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "orders/create",
            body: include_bytes!("fixtures/orders_create.json"),
        }
    }

    fn topic_header(&self) -> Option<&'static str> {
        Some(TOPIC_HEADER)
    }

    crate::provider::entry_points!();
}
