//! `POST /v1/collect/{tenant}`: browser touches from the tenant's own pages
//! (CORS from its allowed origins only), rate limited per client and tenant,
//! dated within a window, with an email only when vouched for.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefold_providers::{ProviderKind, WebhookRequest};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::response::{Rejection, finish, loggable_tenant};
use crate::store::{raw_event, store, to_headers};
use crate::{Ingest, Tenant, metrics, trace};

/// The collect endpoint: sheds load, handles the touch, and lets an allowed
/// origin read the answer.
pub(crate) async fn collect(
    State(ingest): State<Arc<Ingest>>,
    Path(tenant): Path<String>,
    request: Request,
) -> Response {
    let kind = Some(ProviderKind::Collect);
    let trace = trace::TraceContext::continue_or_new(request.headers());
    let span = tracing::info_span!(
        "collect",
        tenant = %loggable_tenant(&tenant),
        provider = "collect",
        trace_id = %trace.trace_id(),
    );
    let _in_flight = metrics::InFlight::new(&ingest.metrics.in_flight);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let result = match ingest.shed_load() {
        Some(rejection) => Err(rejection),
        None => {
            handle_collect(&ingest, &tenant, &trace, request)
                .instrument(span.clone())
                .await
        }
    };
    let mut response = finish(&ingest, kind, result, &span);
    // The browser must be able to read errors too, but only for allowed origins.
    if let (Some(origin), Some(t)) = (origin, ingest.tenants.get(&tenant))
        && t.origins.contains(&origin)
    {
        add_cors(response.headers_mut(), &origin);
    }
    response
}

/// Checks origin, client rate, body, time and email; stores the touch.
async fn handle_collect(
    ingest: &Ingest,
    tenant_id: &str,
    trace: &trace::TraceContext,
    request: Request,
) -> Result<Response, Rejection> {
    let tenant = ingest.tenant(tenant_id)?;
    check_origin(tenant, request.headers())?;
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = storefold_runtime::net::client_addr(peer, forwarded, &ingest.trusted_proxies);
    ingest.limit_touches(tenant_id, client)?;
    let (parts, body) = request.into_parts();
    let (body, _reserved) = ingest
        .read_body(body, &parts.headers, ingest.settings.collect.max_body_bytes)
        .await?;
    let headers = to_headers(&parts.headers);
    let req = WebhookRequest {
        headers: &headers,
        body: &body,
        url_token: None,
    };
    let inbound = ProviderKind::Collect
        .describe(&req)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let claims = storefold_providers::collect::claims(&body)
        .map_err(|e| Rejection::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    check_touch_time(&ingest.settings.collect, claims.at, now)?;
    let vouched = vouch_for_email(tenant, tenant_id, &claims, now)?;
    let mut raw = raw_event(
        tenant_id,
        ProviderKind::Collect,
        inbound,
        &headers,
        &body,
        now,
        trace,
    );
    if let Some(mark) = vouched {
        raw.headers.insert(
            storefold_providers::collect::IDENTITY_HEADER.to_string(),
            mark.to_string(),
        );
    }
    store(ingest, ProviderKind::Collect, raw).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 400 when a touch's `at` lies outside `[now - max_past_secs, now +
/// max_future_secs]`: a beacon dated years ahead would stay a customer's last
/// touch, one dated years back their first.
fn check_touch_time(
    c: &storefold_runtime::config::CollectConfig,
    at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), Rejection> {
    let Some(at) = at else { return Ok(()) };
    let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
    let earliest = now.checked_sub(secs(c.max_past_secs));
    let latest = now.checked_add(secs(c.max_future_secs));
    if earliest.is_some_and(|e| at < e) || latest.is_some_and(|l| at > l) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "at_out_of_window",
            format!(
                "at must lie between {} seconds before and {} seconds after the time the touch is received",
                c.max_past_secs, c.max_future_secs
            ),
        ));
    }
    Ok(())
}

/// Whether the beacon's email may identify the visitor, as the mark stored
/// with it: a valid `email_token` (`signed`; a wrong, expired or unverifiable
/// one is 401), else the tenant's opt-in. An email nobody vouches for is kept
/// out of the fold; a beacon that would say nothing else (an identify) is 403.
fn vouch_for_email(
    tenant: &Tenant,
    tenant_id: &str,
    claims: &storefold_providers::collect::Claims,
    now: OffsetDateTime,
) -> Result<Option<&'static str>, Rejection> {
    use storefold_providers::collect::{IDENTITY_OPTED_IN, IDENTITY_SIGNED};
    let Some(email) = claims.email.as_deref() else {
        return Ok(None);
    };
    if let Some(token) = claims.email_token.as_deref() {
        let secret = tenant.identity_secret.as_deref().unwrap_or_default();
        return match storefold_providers::collect::verify_identity_token(
            secret, tenant_id, email, token, now,
        ) {
            Ok(()) => Ok(Some(IDENTITY_SIGNED)),
            Err(e) => Err(Rejection::new(
                StatusCode::UNAUTHORIZED,
                "bad_email_token",
                format!("email_token does not verify for this tenant and email: {e}"),
            )),
        };
    }
    if tenant.collect_identify {
        return Ok(Some(IDENTITY_OPTED_IN));
    }
    if !claims.visit {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "identify_not_allowed",
            "this tenant takes beacon emails only with an email_token signed by the shop's backend",
        ));
    }
    Ok(None)
}

/// CORS preflight for the collect endpoint: allowed origins only.
pub(crate) async fn collect_preflight(
    State(ingest): State<Arc<Ingest>>,
    Path(tenant_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = match ingest.tenants.get(&tenant_id) {
        None => Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            "unknown tenant",
        )),
        Some(tenant) => check_origin(tenant, &headers).and_then(|origin| {
            let method_ok = headers
                .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                .is_none_or(|m| m == Method::POST.as_str());
            if method_ok {
                Ok(origin)
            } else {
                Err(Rejection::new(
                    StatusCode::FORBIDDEN,
                    "method_not_allowed",
                    "only POST is allowed",
                ))
            }
        }),
    };
    match result {
        Ok(origin) => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            add_cors(h, &origin);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            resp
        }
        Err(r) => r.into_response(),
    }
}

/// The request's `Origin` when the tenant allows it, else 403.
fn check_origin(tenant: &Tenant, headers: &HeaderMap) -> Result<String, Rejection> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Rejection::new(
                StatusCode::FORBIDDEN,
                "origin_required",
                "touches are accepted from the shop's pages only (no Origin header)",
            )
        })?;
    if tenant.origins.iter().any(|o| o == origin) {
        Ok(origin.to_string())
    } else {
        Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not post touches for this tenant",
        ))
    }
}

/// Lets `origin` read the answer.
fn add_cors(headers: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
