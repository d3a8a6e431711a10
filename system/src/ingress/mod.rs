//! The HTTP side: routes, request limits, signature checks, and the JSON error shape.

mod body;
pub mod error;
mod ops;
mod reads;
pub mod signature;
mod webhook;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use error::{ApiError, REJECT_REASONS};
pub use signature::Verifier;

use crate::metrics::{Metrics, RouteLabels};
use crate::queue::Producer;
use crate::store::Store;

/// Webhook bodies above this are refused (413): real payment events are a few hundred bytes.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub producer: Arc<dyn Producer>,
    pub store: Arc<dyn Store>,
    pub verifier: Arc<Verifier>,
    pub metrics: Metrics,
    /// Bodies above this many bytes get 413.
    pub max_body: usize,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/webhooks/payment", post(webhook::receive))
        .route("/api/orders", post(reads::create_order))
        .route("/api/orders/{id}", get(reads::order))
        .route("/api/payments/{id}", get(reads::payment))
        .route("/api/dead-letters", get(reads::dead_letters))
        .merge(ops::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let response = next.run(req).await;
    state.metrics.http_requests.get_or_create(&RouteLabels { route, status: response.status().as_u16() }).inc();
    response
}
