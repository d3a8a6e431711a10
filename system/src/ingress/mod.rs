//! The HTTP side: routes, request limits, signature checks, and the JSON error shape.

mod admin;
mod body;
mod console;
pub mod error;
mod ops;
pub use ops::worker_routes;
mod reads;
mod refusals;
pub mod request_id;
pub use refusals::{AdminRefusal, Refusals};
pub mod serve;
pub mod signature;
pub mod stripe;
mod webhook;

use std::sync::Arc;

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{BoxError, Router};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

pub use error::{ApiError, REJECT_REASONS};
pub use signature::Verifier;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Metrics, ReasonLabels, RouteLabels};
use crate::queue::Producer;
use crate::store::Store;

/// The routes whose refusals count as rejected webhooks.
const WEBHOOK_ROUTE: &str = "/api/webhooks/payment";
const STRIPE_ROUTE: &str = "/api/webhooks/stripe";

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
    /// Bearer token for management and read endpoints; `None` leaves them open.
    pub admin_token: Option<Arc<str>>,
    /// What this server leaves open; `/readyz` shows it when `--insecure` let it start.
    pub exposure: Arc<crate::config::Exposure>,
    /// Counts, logs and budgets of refused callers, shared by every request.
    pub refusals: Arc<Refusals>,
    /// How Stripe's events name their order, and which of Stripe's modes is accepted.
    pub stripe: Arc<stripe::StripeSettings>,
}

/// Protection against overload and slow clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests in flight beyond this are answered 429 at once instead of queueing.
    pub max_in_flight: usize,
    /// A request (body read included) taking longer than this is answered 408.
    pub request_timeout: Duration,
    /// A connection whose request headers take longer than this is closed.
    pub header_timeout: Duration,
}

/// Every refusal reason exposed from the start at 0: an alert on `increase()` misses the first
/// refusal of a series that appears with it.
fn expose_reasons(metrics: &Metrics) {
    let families: [(&Family<ReasonLabels, Counter>, &[&str]); 3] = [
        (&metrics.webhooks_rejected, REJECT_REASONS),
        (&metrics.signatures_refused, &signature::SignatureError::reasons()),
        (&metrics.admin_refused, &AdminRefusal::ALL.map(|r| r.reason())),
    ];
    for (family, reasons) in families {
        for reason in reasons {
            let _ = family.get_or_create(&ReasonLabels { reason: reason.to_string() });
        }
    }
}

pub fn router(state: AppState, limits: Limits) -> Router {
    // Management and read endpoints sit behind the admin token; webhooks are guarded by
    // signatures; liveness, readiness and metrics stay open for orchestrators and scrapers,
    // and so do the console's static assets, which hold no data.
    // The probes are merged after the limits: a saturated server must still answer its
    // liveness probe (or it is restarted in the middle of the incident) and its metrics.
    expose_reasons(&state.metrics);
    let admin = Router::new()
        .route("/api/orders", post(reads::create_order))
        .route("/api/orders/lookup", post(reads::orders_lookup))
        .route("/api/orders/{id}", get(reads::order))
        .route("/api/payments/lookup", post(reads::payments_lookup))
        .route("/api/payments/{id}", get(reads::payment))
        .route("/api/dead-letters", get(reads::dead_letters))
        .route("/api/dead-letters/replay", post(reads::replay))
        .route("/api/dead-letters/{id}", get(reads::dead_letter))
        .route("/api/dead-letters/{id}/replay", post(reads::replay))
        .route("/api/stats", get(ops::stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin::require_token));
    Router::new()
        .route(WEBHOOK_ROUTE, post(webhook::receive))
        .route(STRIPE_ROUTE, post(stripe::receive))
        .merge(admin)
        .merge(console::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .route_layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new({
                    let metrics = state.metrics.clone();
                    move |path: Option<MatchedPath>, err: BoxError| refused(metrics.clone(), path, err)
                }))
                .load_shed()
                // Global: `Router::layer` copies layers per route, and the bound is for the process.
                .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight.max(1)))
                .timeout(limits.request_timeout),
        )
        .merge(ops::routes().route_layer(middleware::from_fn_with_state(state.clone(), count_requests)))
        .with_state(state)
}

/// Shedding and timeouts answer outside the routes, where `count_requests` never sees the
/// response, so they are counted here: per route and status, and as rejected webhooks.
async fn refused(metrics: Metrics, path: Option<MatchedPath>, err: BoxError) -> ApiError {
    let error = if err.is::<tower::timeout::error::Elapsed>() { ApiError::Timeout } else { ApiError::Overloaded };
    let route = path.map(|p| p.as_str().to_owned()).unwrap_or_default();
    if route == WEBHOOK_ROUTE || route == STRIPE_ROUTE {
        metrics.reject(error.code());
    }
    metrics.http_requests.get_or_create(&RouteLabels { route, status: error.status().as_u16() }).inc();
    error
}

/// Unknown routes and wrong methods answer in the same JSON error shape as every other error.
async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute(format!("{method} {}", uri.path()))
}

async fn wrong_method(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let response = next.run(req).await;
    state.metrics.http_requests.get_or_create(&RouteLabels { route, status: response.status().as_u16() }).inc();
    response
}
