//! WooCommerce: order, customer and product (stock and unit cost) webhooks.
//!
//! WooCommerce signs the exact body with the webhook's secret:
//! `X-WC-Webhook-Signature` is the base64 HMAC-SHA256 (`WC_Webhook::generate_signature`).
//! When a webhook is created it first posts a ping, `webhook_id=<n>` as a form,
//! without a signature: that one is accepted and changes nothing. Deliveries carry
//! no event id (`X-WC-Webhook-Delivery-ID` changes with every attempt), so the
//! idempotency id is derived from the resource and its modification time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use storefold_core::Envelope;
use storefold_core::identity::content_hash;
use time::OffsetDateTime;

use crate::{
    Credentials, Inbound, MapContext, MapError, RawInput, SignError, Signed, VerifyError,
    WebhookRequest, hmac_sha256, parse_json, signing_secret, verify_base64_hmac, verifying_secret,
};

mod map;
mod model;
#[cfg(test)]
mod tests;

pub use map::map_refund_resource;

pub(crate) const HEADERS: &[&str] = &[
    "x-wc-webhook-topic",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
    "x-wc-webhook-delivery-id",
    "x-wc-webhook-id",
    "x-wc-webhook-source",
];

const SIGNATURE_HEADER: &str = "X-WC-Webhook-Signature";
const TOPIC_HEADER: &str = "X-WC-Webhook-Topic";
const SECRET_IS_EMPTY: &str = "the WooCommerce webhook secret is empty";

/// The topic given to the creation ping.
pub const PING_TOPIC: &str = "ping";

/// The creation ping: exactly `webhook_id=` followed by digits.
fn ping_webhook_id(body: &[u8]) -> Option<&str> {
    let id = body.strip_prefix(b"webhook_id=")?;
    if id.is_empty() || !id.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(id).ok()
}

/// Checks `X-WC-Webhook-Signature` over the exact body; the unsigned creation
/// ping is let through (it carries no data and maps to nothing; the ingest
/// answers it without storing it).
pub(crate) fn verify(
    creds: &Credentials,
    req: &WebhookRequest<'_>,
    _now: OffsetDateTime,
) -> Result<(), VerifyError> {
    // WooCommerce sends its ping unsigned (`WC_Webhook::deliver_ping`); one that
    // carries a signature anyway is held to it.
    if ping_webhook_id(req.body).is_some() && req.headers.get(SIGNATURE_HEADER).is_none() {
        return Ok(());
    }
    let secret = verifying_secret(creds, SECRET_IS_EMPTY)?;
    let header = req.headers.get(SIGNATURE_HEADER);
    // The `woocommerce_webhook_hash_algorithm` filter can switch the hash; only the
    // default SHA-256 is supported (anything but 32 bytes is a malformed header).
    match verify_base64_hmac(SIGNATURE_HEADER, header, secret.as_bytes(), &[req.body]) {
        Err(VerifyError::Mismatch) => {
            // WooCommerce keys the HMAC with `wp_specialchars_decode($secret)`: a
            // secret copied from the admin screen with `&amp;` in it signs with `&`.
            let decoded = specialchars_decode(secret);
            if decoded == secret {
                return Err(VerifyError::Mismatch);
            }
            verify_base64_hmac(SIGNATURE_HEADER, header, decoded.as_bytes(), &[req.body])
        }
        checked => checked,
    }
}

/// `wp_specialchars_decode($s, ENT_QUOTES)`: the five entities it knows.
fn specialchars_decode(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Topic from `X-WC-Webhook-Topic` (`ping` for the creation ping); event id
/// `<resource>:<id>:<date_modified_gmt>` from the body (`date_created_gmt` when
/// never modified). A deletion has neither: its delivery id (else a body hash)
/// stands in.
pub(crate) fn describe(req: &WebhookRequest<'_>) -> Result<Inbound, MapError> {
    if let Some(id) = ping_webhook_id(req.body) {
        return Ok(Inbound {
            topic: PING_TOPIC.to_string(),
            event_id: format!("{PING_TOPIC}:{id}"),
            occurred_at: None,
        });
    }
    let header = |name: &str| {
        req.headers
            .get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let topic = header(TOPIC_HEADER).ok_or(MapError::MissingHeader(TOPIC_HEADER))?;
    let resource = header("x-wc-webhook-resource")
        .unwrap_or_else(|| topic.split('.').next().unwrap_or(&topic).to_string());
    // Verified already: reading the body is safe now. Custom `action.*` topics
    // send other shapes, so every field is optional.
    let stamp: model::Stamp = match parse_json::<serde_json::Value>(req.body)? {
        v @ serde_json::Value::Object(_) => serde_json::from_value(v).unwrap_or_default(),
        _ => model::Stamp::default(),
    };
    // A resource's version is its modification time; a new customer has none yet
    // and is versioned by its creation time.
    let version = [&stamp.date_modified_gmt, &stamp.date_created_gmt]
        .into_iter()
        .flatten()
        .map(|raw| raw.trim())
        .find_map(|raw| {
            let at = map::gmt("date_modified_gmt", Some(raw)).ok().flatten()?;
            Some((raw.to_string(), at))
        });
    let event_id = match (&stamp.id, &version) {
        (Some(id), Some((raw, _))) => format!("{resource}:{}:{raw}", id.0),
        (Some(id), None) => format!(
            "{resource}:{}:{}",
            id.0,
            header("x-wc-webhook-delivery-id").unwrap_or_else(|| content_hash(req.body))
        ),
        (None, _) => format!("{resource}:{}", content_hash(req.body)),
    };
    let modified = version.map(|(_, at)| at);
    Ok(Inbound {
        topic,
        event_id,
        occurred_at: modified,
    })
}

/// Maps a verified WooCommerce webhook by its topic.
pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    if input.topic == PING_TOPIC || ping_webhook_id(input.body).is_some() {
        return Ok(Vec::new());
    }
    match input.topic {
        "order.created" | "order.updated" | "order.deleted" | "order.restored" => {
            map::order(ctx, input)
        }
        "customer.created" | "customer.updated" | "customer.deleted" => map::customer(ctx, input),
        "product.created" | "product.updated" => map::product(ctx, input),
        other => Err(MapError::UnsupportedTopic(other.to_string())),
    }
}

/// The headers WooCommerce sends with `body` for `topic` (`order.updated`, ...).
/// For the topic `ping` the body is sent unsigned as a form, as WooCommerce does.
pub(crate) fn sign(
    secret: &str,
    topic: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Signed, SignError> {
    if topic == PING_TOPIC {
        return Ok(Signed {
            headers: vec![(
                "Content-Type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            )],
            url_token: None,
            body: body.to_vec(),
        });
    }
    let secret = signing_secret(secret, SECRET_IS_EMPTY)?;
    let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
    let mac = hmac_sha256(secret.as_bytes(), &[body]);
    // WooCommerce's delivery id is a hash of the webhook id and the time.
    let delivery_id = content_hash(
        &[
            topic.as_bytes(),
            b"\0",
            now.unix_timestamp().to_string().as_bytes(),
            b"\0",
            body,
        ]
        .concat(),
    )[..32]
        .to_string();
    Ok(Signed {
        headers: vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (SIGNATURE_HEADER.to_string(), BASE64.encode(mac)),
            (TOPIC_HEADER.to_string(), topic.to_string()),
            ("X-WC-Webhook-Resource".to_string(), resource.to_string()),
            ("X-WC-Webhook-Event".to_string(), event.to_string()),
            ("X-WC-Webhook-ID".to_string(), "1".to_string()),
            ("X-WC-Webhook-Delivery-ID".to_string(), delivery_id),
        ],
        url_token: None,
        body: body.to_vec(),
    })
}

/// WooCommerce (orders, refunds, customers, products; the creation ping is a
/// handshake).
#[derive(Clone, Copy, Debug, Default)]
pub struct WooCommerce;

impl crate::Provider for WooCommerce {
    fn name(&self) -> &'static str {
        "woocommerce"
    }

    fn scheme(&self) -> Option<&'static str> {
        Some("woocommerce-hmac-sha256")
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        HEADERS
    }

    fn example(&self) -> crate::Example {
        crate::Example {
            topic: "order.created",
            body: include_bytes!("fixtures/order_created.json"),
        }
    }

    fn topic_header(&self) -> Option<&'static str> {
        Some(TOPIC_HEADER)
    }

    fn is_handshake(&self, inbound: &crate::Inbound) -> bool {
        inbound.topic == PING_TOPIC
    }

    crate::provider::entry_points!();
}
