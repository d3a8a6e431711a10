//! Operational endpoints: liveness, readiness, Prometheus metrics, JSON stats.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::metrics::{Metrics, Reasons};
use crate::store::Store;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// A probe's look at the store is bounded: a store that does not answer must not hang it.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

async fn ping(store: &dyn Store) -> Result<(), String> {
    match tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", STORE_PING_TIMEOUT.as_secs())),
    }
}

fn show(r: Result<(), String>) -> String {
    r.err().unwrap_or_else(|| "ok".into())
}

/// A server is ready when it can acknowledge: its queue takes appends and it is not draining.
/// The store is shown but never decides: ingress does not depend on it, and a database blip
/// must not take every server out of the load balancer.
async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    let queue = app.producer.ready().await.map_err(|e| e.to_string());
    let draining = app.metrics.health.draining();
    let status = if queue.is_ok() && !draining { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({ "queue": show(queue), "store": show(ping(app.store.as_ref()).await) });
    if draining {
        body["draining"] = json!(true);
    }
    if let Some(depth) = app.producer.spool_depth() {
        body["spool"] = json!({ "depth": depth });
    }
    // Ready all the same: running open was the operator's choice, shown where they look.
    if app.exposure.insecure {
        body["insecure"] = json!(app.exposure.open.iter().map(|s| s.code()).collect::<Vec<_>>());
    }
    // Ready all the same, shown: a worker in this process is its operator's concern, not
    // the load balancer's.
    if let Some(stalled) = app.metrics.worker_here().then(|| app.metrics.health.stalled()).flatten() {
        body["worker"] = json!(stalled);
    }
    // Still ready: refusing traffic would not bring damaged records back.
    let degraded = app.metrics.degraded();
    if !degraded.is_empty() {
        body["degraded"] = json!(degraded);
    }
    show_alarms(&app.metrics, &mut body);
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
    let (admin, signatures) = (super::AdminRefusal::ALL.map(|r| r.reason()), super::signature::SignatureError::reasons());
    let mut stats = m.stats(&Reasons { rejected: super::REJECT_REASONS, admin: &admin, signatures: &signatures });
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
/// console shows the live view only. Its `/readyz` is what it needs to apply events: a store
/// that answers and a loop that advances.
pub fn worker_routes(metrics: Metrics, store: Arc<dyn Store>) -> Router {
    let stats = |State(w): State<WorkerProbe>, Query(q): Query<StatsQuery>| async move { Json(stats_of(&w.metrics, &q)) };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(worker_ready))
        .route("/metrics", get(|State(w): State<WorkerProbe>| async move { prometheus_text(&w.metrics) }))
        .route("/api/stats", get(stats))
        .merge(super::console::routes())
        .with_state(WorkerProbe { metrics, store })
}

#[derive(Clone)]
struct WorkerProbe {
    metrics: Metrics,
    store: Arc<dyn Store>,
}

async fn worker_ready(State(w): State<WorkerProbe>) -> impl IntoResponse {
    let store = ping(w.store.as_ref()).await;
    let stalled = w.metrics.health.stalled();
    let status = if store.is_ok() && stalled.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = json!({ "store": show(store), "worker": stalled.unwrap_or_else(|| "ok".into()) });
    show_alarms(&w.metrics, &mut body);
    (status, Json(body))
}

/// Alarms raised (the disk nearly full) are shown, and the probe stays as it was: refusing
/// traffic would not fix them.
fn show_alarms(m: &Metrics, body: &mut serde_json::Value) {
    let alarms = m.health.alarms();
    if !alarms.is_empty() {
        body["alarms"] = json!(alarms);
    }
}
