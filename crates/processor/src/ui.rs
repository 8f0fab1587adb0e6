//! The Inspector (`GET /ui`): a page over the query API to look a customer up
//! by email or phone and read its profile, revenue, journey and orders. Plain
//! HTML, CSS and a little JavaScript, embedded in the binary (no CDN).

use axum::Json;
use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::json;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// `/ui`, `/ui/`, its assets, and `GET /v1/tenants` (the configured tenant
/// ids, which the page offers in its tenant field).
pub fn router(tenants: Vec<String>) -> Router {
    let list = json!({ "tenants": tenants });
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
        .route("/v1/tenants", get(move || async move { Json(list) }))
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
