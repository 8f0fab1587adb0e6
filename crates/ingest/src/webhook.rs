//! `POST /v1/webhooks/{tenant}/{provider}`: a provider's signed webhook,
//! verified with the tenant's secret and stored before it is answered.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefold_providers::{ProviderKind, WebhookRequest};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::response::{Rejection, finish, loggable_tenant, provider_label};
use crate::store::{raw_event, store, to_headers};
use crate::{Ingest, metrics, trace};

/// The webhook endpoint: sheds load, then verifies and stores.
pub(crate) async fn webhook(
    State(ingest): State<Arc<Ingest>>,
    Path((tenant, provider)): Path<(String, String)>,
    request: Request,
) -> Response {
    let kind = provider.parse::<ProviderKind>().ok();
    let trace = trace::TraceContext::continue_or_new(request.headers());
    let span = tracing::info_span!(
        "webhook",
        tenant = %loggable_tenant(&tenant),
        provider = provider_label(kind),
        trace_id = %trace.trace_id(),
    );
    let _in_flight = metrics::InFlight::new(&ingest.metrics.in_flight);
    let result = match ingest.shed_load() {
        Some(rejection) => Err(rejection),
        None => {
            handle_webhook(&ingest, &tenant, kind, &trace, request)
                .instrument(span.clone())
                .await
        }
    };
    finish(&ingest, kind, result, &span)
}

/// Checks tenant, provider, body and signature; stores the raw event and
/// answers as the provider expects.
async fn handle_webhook(
    ingest: &Ingest,
    tenant_id: &str,
    kind: Option<ProviderKind>,
    trace: &trace::TraceContext,
    request: Request,
) -> Result<Response, Rejection> {
    let tenant = ingest.tenant(tenant_id)?;
    let kind = kind.filter(|k| k.is_webhook()).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!(
                "unknown provider; known: {}",
                ProviderKind::names(&ProviderKind::WEBHOOK)
            ),
        )
    })?;
    let creds = tenant.providers.get(&kind).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "provider_not_configured",
            format!("{} is not configured for this tenant", kind.name()),
        )
    })?;
    let (parts, body) = request.into_parts();
    let (body, _reserved) = ingest
        .read_body(body, &parts.headers, ingest.settings.max_body_bytes)
        .await?;
    let headers = to_headers(&parts.headers);
    let url_token = parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: url_token.as_deref(),
    };
    let now = OffsetDateTime::now_utc();
    if let Err(e) = kind.verify(creds, &req, now) {
        if matches!(e, storefold_providers::VerifyError::BadCredentials(_)) {
            tracing::error!(error = %e, "the configured credentials cannot verify requests");
            return Err(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unusable_credentials",
                "the tenant's credentials for this provider are unusable; see the ingest log",
            ));
        }
        ingest
            .metrics
            .signature_failures
            .with_label_values(&[kind.name(), e.code()])
            .inc();
        return Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            e.code(),
            e.to_string(),
        ));
    }
    let inbound = kind
        .describe(&req)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    if kind.is_handshake(&inbound) {
        // A creation ping says only "this URL answers": answered, not stored,
        // and not counted (anyone can send one unsigned).
        tracing::info!(provider = kind.name(), "handshake answered");
        return Ok(StatusCode::OK.into_response());
    }
    // Counted once verified: a flood of forged requests must not use up the
    // tenant's budget and get its real provider's deliveries refused.
    ingest.limit_webhooks(tenant_id, kind)?;
    let raw = raw_event(tenant_id, kind, inbound, &headers, &body, now, trace);
    store(ingest, kind, raw).await?;
    Ok(match kind {
        ProviderKind::Adyen => (
            [(header::CONTENT_TYPE, "text/plain")],
            storefold_providers::adyen::ACCEPTED_BODY,
        )
            .into_response(),
        _ => StatusCode::OK.into_response(),
    })
}
