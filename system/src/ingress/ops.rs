//! Operational endpoints: liveness, readiness, Prometheus metrics, JSON stats.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    let queue = app.producer.ready().await.map_err(|e| e.to_string());
    let store = app.store.ping().await.map_err(|e| e.to_string());
    let status = if queue.is_ok() && store.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let show = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".into());
    (status, Json(json!({ "queue": show(queue), "store": show(store) })))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
}

pub async fn stats(State(app): State<AppState>) -> impl IntoResponse {
    Json(app.metrics.stats())
}
