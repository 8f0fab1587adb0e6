//! HubSpot's HTTP API: one POST, and what its answer means for the sink.
//!
//! How HubSpot answers (developers.hubspot.com, "Error handling"):
//! - 200/201: done (204 No Content: a GDPR delete done); 207 Multi-Status: some
//!   inputs failed, listed in `errors` (given a unique `objectWriteTraceId` per
//!   input);
//! - 404 from the GDPR delete: no such contact (anymore); from any other
//!   endpoint: the base URL is wrong (fatal);
//! - 400 (409, 422): the request was refused, usually a `VALIDATION_ERROR` whose
//!   body has `category`, `message` and `errors[]` with `code` and `context`;
//! - 401/403: bad token or missing scope: fatal, retrying cannot help;
//! - 423 Locked: wait at least 2 seconds; 429: over a rate limit
//!   (`policyName` `TEN_SECONDLY_ROLLING` or `DAILY`); 477: portal migration,
//!   with `Retry-After`; 502/503/504/521 and timeouts: pause and retry.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use super::HubSpotMetrics;

/// Which HubSpot endpoint a request went to (the `endpoint` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /crm/v3/objects/contacts/batch/upsert`
    ContactsUpsert,
    /// `POST /crm/v3/objects/contacts/batch/read`
    ContactsRead,
    /// `POST /crm/v3/objects/deals/batch/upsert`
    DealsUpsert,
    /// `POST /crm/v4/associations/deals/contacts/batch/associate/default`
    Associations,
    /// `POST /crm/v4/associations/deals/contacts/batch/archive`: `{"inputs":
    /// [{"from": {"id": deal}, "to": [{"id": contact}]}]}`, 204 No Content.
    AssociationsArchive,
    /// `POST /crm/v3/objects/contacts/gdpr-delete`: one contact, `{"objectId":
    /// …, "idProperty": …}` (a property with unique values), 204 No Content.
    ContactsGdprDelete,
}

impl Endpoint {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Endpoint::ContactsUpsert => "contacts_upsert",
            Endpoint::ContactsRead => "contacts_read",
            Endpoint::DealsUpsert => "deals_upsert",
            Endpoint::Associations => "associations",
            Endpoint::AssociationsArchive => "associations_archive",
            Endpoint::ContactsGdprDelete => "contacts_gdpr_delete",
        }
    }

    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::ContactsUpsert => "/crm/v3/objects/contacts/batch/upsert",
            Endpoint::ContactsRead => "/crm/v3/objects/contacts/batch/read",
            Endpoint::DealsUpsert => "/crm/v3/objects/deals/batch/upsert",
            // v4 "Associate records (default)": the most generic association type,
            // no type id needed (developers.hubspot.com/docs/api-reference/legacy/
            // crm/associations/associate-records/batch/create-associations).
            Endpoint::Associations => "/crm/v4/associations/deals/contacts/batch/associate/default",
            // v4 "Remove associations" (batch): every association between each
            // pair, whatever its type (developers.hubspot.com/docs/api-reference/
            // crm-associations-v4/batch/post-crm-v4-associations-fromObjectType-
            // toObjectType-batch-archive).
            Endpoint::AssociationsArchive => "/crm/v4/associations/deals/contacts/batch/archive",
            // "Permanently delete a contact (GDPR-compliant)"
            // (developers.hubspot.com/docs/api-reference/crm-contacts-v3/basic/
            // post-crm-v3-objects-contacts-gdpr-delete).
            Endpoint::ContactsGdprDelete => "/crm/v3/objects/contacts/gdpr-delete",
        }
    }
}

/// A request HubSpot answered with something other than a transient failure.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// 200/201, or 204 (no body: `Null`).
    Done(Value),
    /// 207 Multi-Status: `results` and per-input `errors`.
    Partial(Value),
    /// 400, 409 or 422: the request's records were refused; and 404 from the
    /// GDPR delete: no such contact.
    Invalid { status: u16, body: Value },
}

/// Why a request did not get an [`Answer`].
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// 429: wait `retry_after` (HubSpot's `Retry-After`, else a full window).
    RateLimited {
        retry_after: Duration,
        policy: String,
        message: String,
    },
    /// Timeouts, connection errors, 423, 477, 5xx.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// 401, 403, other 4xx (404 but from the GDPR delete): the configuration
    /// is wrong.
    Fatal { message: String },
}

/// The HTTP client of one portal.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    metrics: HubSpotMetrics,
    /// The longest `Retry-After` honoured (`sinks.max_retry_after_secs`).
    pub(crate) max_retry_after: Duration,
}

/// reqwest is built without a default TLS crypto provider (`rustls-no-provider`):
/// install ring's, once per process, before the first client is built.
pub(crate) fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // Err means another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Parses `Retry-After`: delay-seconds (integer or decimal) or an HTTP date,
/// and cuts it to `max`. Never panics: a negative, `NaN` or infinite number is
/// ignored (`None`), a number or date too far away for a [`Duration`] is `max`,
/// a date in the past is zero.
pub(crate) fn parse_retry_after(v: &str, max: Duration) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::try_from_secs_f64(secs).unwrap_or(max).min(max));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    if wait.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from(wait).unwrap_or(max).min(max))
}

/// A short excerpt of a body for messages (never the whole of a large body).
pub(crate) fn excerpt(body: &str) -> String {
    const MAX: usize = 512;
    if body.len() <= MAX {
        return body.to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

impl Client {
    pub(crate) fn new(
        base_url: &str,
        token: &str,
        timeout: Duration,
        metrics: HubSpotMetrics,
    ) -> Result<Self, String> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("storefold/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                "sinks.hubspot.token holds characters a header cannot carry".to_string()
            })?;
        auth.set_sensitive(true);
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            auth,
            metrics,
            max_retry_after: crate::DEFAULT_MAX_RETRY_AFTER,
        })
    }

    /// POSTs `body` to `endpoint`.
    pub(crate) async fn post(&self, endpoint: Endpoint, body: &Value) -> Result<Answer, Failure> {
        let url = format!("{}{}", self.base, endpoint.path());
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let sent = self
            .http
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let label = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect_error"
                } else {
                    "transport_error"
                };
                self.count(endpoint, label);
                return Err(Failure::Transient {
                    message: format!("{} {}: {label}: {e}", endpoint.label(), self.base),
                    retry_after: None,
                });
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.max_retry_after));
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                self.count(endpoint, "transport_error");
                return Err(Failure::Transient {
                    message: format!("{}: reading the answer: {e}", endpoint.label()),
                    retry_after: None,
                });
            }
        };
        self.count(endpoint, status.as_str());
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = || {
            let m = body
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| excerpt(&text));
            format!("{} answered {}: {m}", endpoint.label(), status.as_u16())
        };
        match status.as_u16() {
            200 | 201 | 204 => Ok(Answer::Done(body)),
            207 => Ok(Answer::Partial(body)),
            400 | 409 | 422 => Ok(Answer::Invalid {
                status: status.as_u16(),
                body,
            }),
            // The contact to delete does not exist (any more); elsewhere a 404
            // means a wrong base URL, below.
            404 if endpoint == Endpoint::ContactsGdprDelete => Ok(Answer::Invalid {
                status: status.as_u16(),
                body,
            }),
            429 => Err(Failure::RateLimited {
                retry_after: retry_after
                    .unwrap_or(super::planner::WINDOW.min(self.max_retry_after)),
                policy: body
                    .get("policyName")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                message: message(),
            }),
            // 423: "Locks will last for 2 seconds".
            423 => Err(Failure::Transient {
                message: message(),
                retry_after: Some(retry_after.unwrap_or(Duration::from_secs(2))),
            }),
            401 | 403 => Err(Failure::Fatal {
                message: format!(
                    "{} (check sinks.hubspot.token and the private app's scopes)",
                    message()
                ),
            }),
            408 | 477 => Err(Failure::Transient {
                message: message(),
                retry_after,
            }),
            s if s >= 500 => Err(Failure::Transient {
                message: message(),
                retry_after,
            }),
            _ => Err(Failure::Fatal { message: message() }),
        }
    }

    fn count(&self, endpoint: Endpoint, status: &str) {
        self.metrics
            .requests
            .with_label_values(&[endpoint.label(), status])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(900);

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("3", MAX), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", MAX),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-1", MAX), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", MAX),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", MAX), None);
    }

    #[test]
    fn retry_after_is_bounded_and_never_panics() {
        // Huge numbers: beyond what a Duration holds, and merely years.
        assert_eq!(parse_retry_after("1e300", MAX), Some(MAX));
        assert_eq!(parse_retry_after("18446744073709551616", MAX), Some(MAX));
        assert_eq!(parse_retry_after("315360000", MAX), Some(MAX));
        assert_eq!(
            parse_retry_after("899", MAX),
            Some(Duration::from_secs(899))
        );
        // Negative, NaN and infinities are not delays.
        assert_eq!(parse_retry_after("-1e300", MAX), None);
        assert_eq!(parse_retry_after("-0.5", MAX), None);
        assert_eq!(parse_retry_after("NaN", MAX), None);
        assert_eq!(parse_retry_after("inf", MAX), None);
        assert_eq!(parse_retry_after("-inf", MAX), None);
        // An HTTP date far in the future.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", MAX),
            Some(MAX)
        );
        // A date a minute ahead stays below the maximum.
        let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(60);
        let text = soon
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        let got = parse_retry_after(&text, MAX).unwrap();
        assert!(
            got <= Duration::from_secs(60) && got >= Duration::from_secs(55),
            "{got:?}"
        );
    }

    #[test]
    fn excerpts_cut_on_char_boundaries() {
        let long = "é".repeat(400);
        let e = excerpt(&long);
        assert!(e.len() <= 512 + '…'.len_utf8());
        assert!(e.ends_with('…'));
    }
}
