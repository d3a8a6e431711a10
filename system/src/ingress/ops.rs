//! Operational endpoints: liveness, readiness, Prometheus metrics, JSON stats.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::metrics::Metrics;

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
    let mut body = json!({ "queue": show(queue), "store": show(store) });
    if let Some(depth) = app.producer.spool_depth() {
        body["spool"] = json!({ "depth": depth });
    }
    // Ready all the same: running open was the operator's choice, shown where they look.
    if app.exposure.insecure {
        body["insecure"] = json!(app.exposure.open.iter().map(|s| s.code()).collect::<Vec<_>>());
    }
    // Still ready: refusing traffic would not bring damaged records back.
    let degraded = app.metrics.degraded();
    if !degraded.is_empty() {
        body["degraded"] = json!(degraded);
    }
    (status, Json(body))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    prometheus_text(&app.metrics)
}

/// `?histograms=true` adds the serialized histograms, for a reader that subtracts or merges them.
#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    #[serde(default)]
    histograms: bool,
}

fn stats_of(m: &Metrics, q: &StatsQuery) -> crate::metrics::Stats {
    let mut stats = m.stats();
    stats.histograms = q.histograms.then(|| m.histograms());
    stats
}

pub async fn stats(State(app): State<AppState>, Query(q): Query<StatsQuery>) -> impl IntoResponse {
    let mut stats = stats_of(&app.metrics, &q);
    stats.queue.spool_depth = app.producer.spool_depth();
    Json(stats)
}

fn prometheus_text(m: &Metrics) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render())
}

/// What a worker-only process serves: it has no queue producer or HTTP API of its own, so its
/// console shows the live view only.
pub fn worker_routes(metrics: Metrics) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(|State(m): State<Metrics>| async move { prometheus_text(&m) }))
        .route("/api/stats", get(|State(m): State<Metrics>, Query(q): Query<StatsQuery>| async move { Json(stats_of(&m, &q)) }))
        .merge(super::console::routes())
        .with_state(metrics)
}
