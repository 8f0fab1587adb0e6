//! The webhook sink: projections and triggers POSTed as signed JSON.
//!
//! Each write is one `POST` to the configured URL whose body is a JSON array, one
//! element per record:
//!
//! ```json
//! [{"type": "customer", "key": "acme/cus_em_1f…", "generation": 1, "version": 7,
//!   "data": {"tenant": "acme", "customer_id": "cus_em_1f…", …, "doc": {…}}},
//!  {"type": "trigger", "key": "acme/cus_em_1f…", "generation": null, "version": null,
//!   "data": {"trigger_id": "…", "kind": "chargeback_opened", …, "data": {…}}}]
//! ```
//!
//! `data` is the decoded projection (or trigger) with its JSON `doc` (`data`)
//! parsed.
//!
//! A redacted customer (a GDPR erasure) is sent as a `customer_erased` element
//! instead of its projection, with nothing personal in it, so that the
//! receiver deletes what it holds of the customer:
//!
//! ```json
//! {"type": "customer_erased", "key": "acme/cus_em_1f…", "generation": 1, "version": 8,
//!  "data": {"tenant": "acme", "customer_id": "cus_em_1f…", "generation": 1,
//!           "version": 8, "updated_at": 1700000000000}}
//! ```
//!
//! (`updated_at`: event time, in milliseconds since the epoch, of the newest
//! event folded into the erased customer). Every later version of the customer
//! is redacted too and comes as `customer_erased` again.
//!
//! Headers:
//! - `storefold-timestamp`: Unix seconds when the request was signed;
//! - `storefold-signature`: `v1=` + hex HMAC-SHA256 with the shared secret over
//!   `"<timestamp>.<body>"` (the raw body bytes);
//! - `storefold-delivery-id`: a hash of the records' identities (type, key,
//!   generation, version or trigger id), the same for every retry of the same
//!   batch, so that a receiver can drop deliveries it already processed.
//!
//! README.md ("Sinks → Webhook") has the receiver's verification recipe.
//!
//! Answers: 2xx is delivered. 408, 429 and 5xx, timeouts and connection errors
//! are retried by the runner (honouring `Retry-After`). 401, 403, 404 and 405
//! (and redirects, which are not followed) mean the URL or the secret is wrong:
//! the sink stops (fatal) instead of dead-lettering every record. Any other 4xx
//! refuses the request's content: the batch is then sent again record by record,
//! so that only the records the receiver refuses go to `dlq.sink.webhook`, each
//! with the receiver's status and body, and the others are delivered.

use std::collections::HashSet;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use prometheus::{IntCounterVec, Opts, Registry};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::hubspot::install_crypto_provider;
use crate::{Item, Rejection, Sink, SinkRecord, Stream, WriteError};

mod config;
mod spec;

pub use config::WebhookSinkConfig;
pub use spec::WebhookSpec;

/// Unix seconds of the signature.
pub const TIMESTAMP_HEADER: &str = "storefold-timestamp";
/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "storefold-signature";
/// Identical for retries of the same records.
pub const DELIVERY_HEADER: &str = "storefold-delivery-id";

/// `v1=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `type` of the element a redacted customer is sent as.
pub const CUSTOMER_ERASED: &str = "customer_erased";

/// Why `payouts` in `sinks.webhook.streams` is refused, like any name the sink
/// does not forward: payouts are finance data for the PostgreSQL sink only.
pub(crate) const PAYOUTS_NOT_FORWARDED: &str = "sinks.webhook.streams: \"payouts\" is not one of \
     customers, orders, triggers (payouts go to the PostgreSQL sink only)";

/// The JSON element of one record (see the module docs).
pub fn record_json(item: &Item) -> Value {
    fn with_parsed(mut v: Value, field: &str) -> Value {
        if let Some(s) = v.get(field).and_then(Value::as_str)
            && let Ok(parsed) = serde_json::from_str::<Value>(s)
        {
            v[field] = parsed;
        }
        v
    }
    match item {
        // Only what identifies the erasure: no email, phone, name or doc.
        Item::Customer(c) if c.redacted => json!({
            "type": CUSTOMER_ERASED,
            "key": format!("{}/{}", c.tenant, c.customer_id),
            "generation": c.generation,
            "version": c.version,
            "data": {
                "tenant": c.tenant,
                "customer_id": c.customer_id,
                "generation": c.generation,
                "version": c.version,
                "updated_at": c.updated_at,
            },
        }),
        Item::Customer(c) => json!({
            "type": "customer",
            "key": format!("{}/{}", c.tenant, c.customer_id),
            "generation": c.generation,
            "version": c.version,
            "data": with_parsed(serde_json::to_value(c).unwrap_or(Value::Null), "doc"),
        }),
        Item::Order(o) => json!({
            "type": "order",
            "key": format!("{}/{}", o.tenant, o.order_id),
            "generation": o.generation,
            "version": o.version,
            "data": with_parsed(serde_json::to_value(o).unwrap_or(Value::Null), "doc"),
        }),
        // Never configured (`streams` refuses `payouts`); a plain envelope
        // rather than a panic should one be handed anyway.
        Item::Payout(p) => json!({
            "type": "payout",
            "key": format!("{}/{}:{}", p.tenant, p.provider, p.payout_id),
            "generation": p.generation,
            "version": p.version,
            "data": with_parsed(serde_json::to_value(p).unwrap_or(Value::Null), "doc"),
        }),
        Item::Trigger(t) => json!({
            "type": "trigger",
            "key": format!("{}/{}", t.tenant, t.customer_id),
            "generation": null,
            "version": null,
            "data": with_parsed(serde_json::to_value(t).unwrap_or(Value::Null), "data"),
        }),
    }
}

/// The delivery id of a set of records: a hash of their identities.
pub fn delivery_id<'a>(items: impl IntoIterator<Item = &'a Item>) -> String {
    let mut h = Sha256::new();
    for item in items {
        let line = match item {
            Item::Customer(c) => format!(
                "{}\n{}/{}\n{}\n{}\n",
                if c.redacted {
                    CUSTOMER_ERASED
                } else {
                    "customer"
                },
                c.tenant,
                c.customer_id,
                c.generation,
                c.version
            ),
            Item::Order(o) => format!(
                "order\n{}/{}\n{}\n{}\n",
                o.tenant, o.order_id, o.generation, o.version
            ),
            Item::Payout(p) => format!(
                "payout\n{}/{}:{}\n{}\n{}\n",
                p.tenant, p.provider, p.payout_id, p.generation, p.version
            ),
            Item::Trigger(t) => format!("trigger\n{}\n", t.trigger_id),
        };
        h.update(line.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Why one POST did not deliver.
enum PostError {
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    Fatal {
        message: String,
    },
    /// A 4xx about the content.
    Refused {
        status: u16,
        body: String,
    },
}

/// The webhook sink (see the module docs). Its `Debug` shows neither the
/// secret nor credentials in the URL.
pub struct WebhookSink {
    url: String,
    secret: SecretSlice<u8>,
    streams: Vec<Stream>,
    http: reqwest::Client,
    requests: IntCounterVec,
    /// Delivery ids of single records delivered while isolating a refused
    /// batch, so that the batch's retry does not send them again.
    delivered: HashSet<String>,
}

impl WebhookSink {
    pub fn new(cfg: &WebhookSinkConfig, registry: &Registry) -> Result<Self, WriteError> {
        let fatal = |message: String| WriteError::Fatal { message };
        if cfg.secret.expose_secret().trim().is_empty() {
            return Err(fatal("sinks.webhook.secret is empty".into()));
        }
        let streams = cfg
            .streams
            .iter()
            .map(|s| match s.as_str() {
                "customers" => Ok(Stream::Customers),
                "orders" => Ok(Stream::Orders),
                "triggers" => Ok(Stream::Triggers),
                "payouts" => Err(fatal(PAYOUTS_NOT_FORWARDED.into())),
                other => Err(fatal(format!("sinks.webhook.streams: unknown {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.clamp(1, 10_000)))
            // A POST must not turn into a GET on a 301/302.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("storefold/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fatal(format!("cannot build the HTTP client: {e}")))?;
        let requests = IntCounterVec::new(
            Opts::new(
                "storefold_sink_webhook_requests_total",
                "Webhook sink requests by answer status",
            ),
            &["status"],
        )
        .and_then(|m| registry.register(Box::new(m.clone())).map(|()| m))
        .map_err(|e| fatal(format!("cannot register the webhook metrics: {e}")))?;
        Ok(Self {
            url: cfg.url.clone(),
            secret: SecretSlice::from(cfg.secret.expose_secret().as_bytes().to_vec()),
            streams,
            http,
            requests,
            delivered: HashSet::new(),
        })
    }

    async fn post(&self, records: &[&SinkRecord]) -> Result<(), PostError> {
        let body = serde_json::to_vec(&Value::Array(
            records.iter().map(|r| record_json(&r.item)).collect(),
        ))
        .unwrap_or_default();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let sent = self
            .http
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(self.secret.expose_secret(), timestamp, &body),
            )
            .header(
                DELIVERY_HEADER,
                delivery_id(records.iter().map(|r| &r.item)),
            )
            .body(body)
            .send()
            .await;
        let url = storefold_runtime::config::redact_url(&self.url);
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let label = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport_error"
                };
                self.requests.with_label_values(&[label]).inc();
                return Err(PostError::Retryable {
                    message: format!("POST {url}: {label}: {e}"),
                    retry_after: None,
                });
            }
        };
        let status = resp.status().as_u16();
        self.requests
            .with_label_values(&[resp.status().as_str()])
            .inc();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::http::retry_after(v, Duration::MAX));
        let text = resp.text().await.unwrap_or_default();
        let body = crate::http::excerpt(&text);
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(PostError::Retryable {
                message: format!("POST {url} answered {status}: {body}"),
                retry_after,
            }),
            300..=399 | 401 | 403 | 404 | 405 => Err(PostError::Fatal {
                message: format!(
                    "POST {url} answered {status}: {body} (check sinks.webhook.url and secret)"
                ),
            }),
            _ => Err(PostError::Refused { status, body }),
        }
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn streams(&self) -> Vec<Stream> {
        self.streams.clone()
    }

    async fn write(&mut self, batch: &[SinkRecord]) -> Result<Vec<Rejection>, WriteError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<&SinkRecord> = batch.iter().collect();
        let refused = match self.post(&all).await {
            Ok(()) => {
                self.delivered.clear();
                return Ok(Vec::new());
            }
            Err(PostError::Retryable {
                message,
                retry_after,
            }) => {
                return Err(WriteError::Retryable {
                    message,
                    retry_after,
                });
            }
            Err(PostError::Fatal { message }) => return Err(WriteError::Fatal { message }),
            Err(PostError::Refused { status, body }) => (status, body),
        };
        if batch.len() == 1 {
            return Ok(vec![rejection(0, refused.0, &refused.1)]);
        }
        tracing::info!(
            records = batch.len(),
            status = refused.0,
            "webhook receiver refused a batch: sending its records one by one"
        );
        let mut rejections = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            let id = delivery_id([&r.item]);
            if self.delivered.contains(&id) {
                continue;
            }
            match self.post(&[r]).await {
                Ok(()) => {
                    self.delivered.insert(id);
                }
                Err(PostError::Refused { status, body }) => {
                    rejections.push(rejection(i, status, &body));
                }
                Err(PostError::Retryable {
                    message,
                    retry_after,
                }) => {
                    return Err(WriteError::Retryable {
                        message,
                        retry_after,
                    });
                }
                Err(PostError::Fatal { message }) => return Err(WriteError::Fatal { message }),
            }
        }
        self.delivered.clear();
        Ok(rejections)
    }
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &storefold_runtime::config::redact_url(&self.url))
            .field("secret", &self.secret)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

fn rejection(index: usize, status: u16, body: &str) -> Rejection {
    Rejection {
        index,
        code: format!("http_{status}"),
        reason: format!("webhook receiver answered {status}: {body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storefold_codec::Trigger;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let s = signature(b"secret", 1_700_000_000, b"[]");
        assert!(s.starts_with("v1="));
        assert_eq!(s.len(), 3 + 64);
        assert_ne!(s, signature(b"secret", 1_700_000_001, b"[]"));
        assert_ne!(s, signature(b"other", 1_700_000_000, b"[]"));
        // HMAC-SHA256(key "key", message "0.x"), computed independently.
        assert_eq!(
            signature(b"key", 0, b"x"),
            "v1=01648d624c0b511b0449a63394418e2d5b018e4cc2f753e42127d445f3ca5dd0"
        );
    }

    #[test]
    fn debug_shows_neither_the_secret_nor_url_credentials() {
        let config = storefold_runtime::Config::from_toml_str(
            "[sinks.webhook]\nurl = \"https://user:pa55word@hooks.example/in\"\n\
             secret = \"hunter2-secret\"\n",
            Vec::<(String, String)>::new(),
        )
        .expect("config");
        let cfg = WebhookSinkConfig::from_config(&config)
            .expect("valid")
            .expect("[sinks.webhook]");
        let sink = WebhookSink::new(&cfg, &Registry::new()).expect("sink");
        let shown = format!("{sink:?}");
        assert!(shown.contains("hooks.example"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("pa55word"), "{shown}");
    }

    #[test]
    fn an_erased_customer_is_sent_without_personal_data() {
        use storefold_codec::CustomerProjection;
        // Even a projection that still carried personal data.
        let c = CustomerProjection {
            tenant: "acme".into(),
            customer_id: "cus_em_1".into(),
            generation: 2,
            version: 9,
            email: Some("ada@example.com".into()),
            phone: Some("+14155550100".into()),
            redacted: true,
            merged_into: None,
            updated_at: 1_700_000_000_000,
            doc: r#"{"first_name":"Ada","last_name":"Lovelace"}"#.into(),
            view: None,
        };
        let erased = Item::Customer(c.clone());
        let j = record_json(&erased);
        assert_eq!(
            j,
            json!({
                "type": "customer_erased",
                "key": "acme/cus_em_1",
                "generation": 2,
                "version": 9,
                "data": {"tenant": "acme", "customer_id": "cus_em_1", "generation": 2,
                         "version": 9, "updated_at": 1_700_000_000_000_i64},
            })
        );
        let text = j.to_string();
        for pii in ["ada@example.com", "+14155550100", "Ada", "Lovelace"] {
            assert!(!text.contains(pii), "{pii} in {text}");
        }
        // Not the delivery id of the customer's projection.
        let live = Item::Customer(CustomerProjection {
            redacted: false,
            ..c
        });
        assert_ne!(delivery_id([&erased]), delivery_id([&live]));
    }

    #[test]
    fn delivery_ids_follow_the_records() {
        let t = |id: &str| {
            Item::Trigger(Trigger {
                trigger_id: id.into(),
                tenant: "acme".into(),
                customer_id: "c".into(),
                order_id: None,
                kind: "delivered".into(),
                occurred_at: 0,
                source_event_id: "e".into(),
                data: "{\"a\":1}".into(),
            })
        };
        let (a, b) = (t("a"), t("b"));
        assert_eq!(delivery_id([&a, &b]), delivery_id([&a, &b]));
        assert_ne!(delivery_id([&a, &b]), delivery_id([&b, &a]));
        assert_ne!(delivery_id([&a]), delivery_id([&b]));
        let j = record_json(&a);
        assert_eq!(j["type"], "trigger");
        assert_eq!(j["data"]["data"]["a"], 1);
        assert!(j["version"].is_null());
    }
}
