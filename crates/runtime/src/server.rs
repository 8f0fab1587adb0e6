//! The operational endpoints every role serves: `/healthz`, `/readyz`, `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::Registry;

/// A readiness probe: `Ok` when the role can do its work, else why not.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// `/healthz` (the process is alive) and `/readyz` (`ready` passes): what a
/// public listener may answer.
pub fn probes_router(ready: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ready)
}

/// `/metrics`: what `registry` holds, in Prometheus' text format.
pub fn metrics_router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
}

/// The probes and `/metrics`.
pub fn ops_router(registry: Registry, ready: ReadyCheck) -> Router {
    probes_router(ready).merge(metrics_router(registry))
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn readyz(State(ready): State<ReadyCheck>) -> Response {
    match ready().await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready", "error": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::encode(&registry),
    )
}
