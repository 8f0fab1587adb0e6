//! The Inspector (`GET /ui`): a page over the query API to look a customer up
//! by email or phone and read its profile, revenue, journey and orders. Plain
//! HTML, CSS and a little JavaScript, embedded in the binary (no CDN).
//!
//! The page holds no data: it asks for an operator token (kept in the tab's
//! `sessionStorage`) and sends it as `Authorization: Bearer` with every call
//! to the query API, which checks it (`storefold_runtime::operator::guard`).
//! Every answer here carries a strict Content-Security-Policy (only the
//! page's own script and style, no inline code, no framing) and
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`.

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use storefold_runtime::operator::Caller;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The Inspector's Content-Security-Policy: its own script, style and API,
/// nothing inline, nothing from elsewhere, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// `/ui`, `/ui/`, its assets, and `GET /v1/tenants` (the configured tenant
/// ids the caller's token may read, which the page offers in its tenant
/// field). `/v1/tenants` needs the operator guard in front (it reads the
/// [`Caller`] the guard found).
pub fn router(tenants: Vec<String>) -> Router {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
        .route(
            "/v1/tenants",
            get(move |Extension(caller): Extension<Caller>| async move {
                Json(json!({ "tenants": caller.visible_tenants(&tenants) }))
            }),
        )
        .layer(axum::middleware::map_response(secure))
}

/// The security headers of every answer of this router.
async fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn index() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(INDEX))
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
}
