//! The answer to a refused request (a JSON body with a machine-readable
//! reason), and the log line and metrics every request ends with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefold_providers::ProviderKind;
use storefold_runtime::config::valid_tenant_id;

use crate::Ingest;

/// A non-2xx answer: status, machine-readable reason and a message.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) retry_after: Option<u64>,
    /// Close the connection after answering (the request was not read to its end).
    pub(crate) close: bool,
}

impl Rejection {
    /// A refusal with `status`, `reason` and `message`.
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.message, "reason": self.reason});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.close {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The provider label of the metrics (`unknown` when the path names none).
pub(crate) fn provider_label(provider: Option<ProviderKind>) -> &'static str {
    provider.map_or("unknown", ProviderKind::name)
}

/// Logs a refusal, counts the answer by provider and status, and notes when
/// the provider last got through.
pub(crate) fn finish(
    ingest: &Ingest,
    kind: Option<ProviderKind>,
    result: Result<Response, Rejection>,
    span: &tracing::Span,
) -> Response {
    let _enter = span.enter();
    let response = match result {
        Ok(r) => r,
        Err(rejection) => {
            if rejection.status.is_server_error() {
                tracing::warn!(status = rejection.status.as_u16(), reason = rejection.reason, error = %rejection.message, "request not stored");
            } else {
                tracing::info!(
                    status = rejection.status.as_u16(),
                    reason = rejection.reason,
                    "request rejected"
                );
            }
            rejection.into_response()
        }
    };
    ingest
        .metrics
        .requests
        .with_label_values(&[provider_label(kind), response.status().as_str()])
        .inc();
    if response.status().is_success() {
        // Operators' clock, not the fold's: when did this provider last get through.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        ingest
            .metrics
            .last_accepted
            .with_label_values(&[provider_label(kind)])
            .set(now);
    }
    response
}

/// A tenant id from a URL as it may be logged: as it is when it is a valid id,
/// else escaped and cut (it is whatever the client sent).
pub(crate) fn loggable_tenant(tenant: &str) -> String {
    if valid_tenant_id(tenant) {
        tenant.to_string()
    } else {
        let cut: String = tenant.chars().take(64).collect();
        format!("invalid:{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_tenant;

    #[test]
    fn tenants_from_urls_are_logged_escaped() {
        assert_eq!(loggable_tenant("acme"), "acme");
        let forged = "acme\n2026-01-01T00:00:00Z INFO admin logged in";
        let shown = loggable_tenant(forged);
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.starts_with("invalid:\""), "{shown}");
        assert!(loggable_tenant(&"x".repeat(500)).len() < 100);
        assert!(!loggable_tenant("a\u{1b}[31mred").contains('\u{1b}'));
    }
}
