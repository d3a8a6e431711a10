//! Orders (create and read), payments and dead letters.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::body::{no_rules, parse, read_limited, require_json};
use super::error::ApiError;
use super::AppState;
use crate::domain::{CreateOutcome, NewOrder};
use crate::dlq::{self, DlqError, ReplayReport};
use crate::store::{DeadLetterFilter, DeadLetterView, OrderView, PaymentView};

pub async fn create_order(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_json(&headers)?;
    let bytes = read_limited(&headers, body, app.max_body).await?;
    let order: NewOrder = parse(&bytes, no_rules)?;
    order.validate()?;
    match app.store.create_order(&order).await? {
        CreateOutcome::Created => Ok((StatusCode::CREATED, Json(json!({"status": "created", "id": order.id})))),
        CreateOutcome::AlreadyExists => Ok((StatusCode::OK, Json(json!({"status": "exists", "id": order.id})))),
        CreateOutcome::Conflict => Err(ApiError::Conflict(format!("order {} exists with different content", order.id))),
    }
}

pub async fn order(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<OrderView>, ApiError> {
    app.store.order(&id).await?.map(Json).ok_or(ApiError::NotFound("order"))
}

pub async fn payment(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<PaymentView>, ApiError> {
    app.store.payment(&id).await?.map(Json).ok_or(ApiError::NotFound("payment"))
}

pub async fn dead_letters(State(app): State<AppState>, Query(filter): Query<DeadLetterFilter>) -> Result<Json<Value>, ApiError> {
    let (count, items) = app.store.dead_letters(&filter).await?;
    Ok(Json(json!({ "count": count, "items": items })))
}

pub async fn dead_letter(State(app): State<AppState>, Path(id): Path<i64>) -> Result<Json<DeadLetterView>, ApiError> {
    let filter = DeadLetterFilter { id: Some(id), include_replayed: true, ..Default::default() };
    let (_, mut items) = app.store.dead_letters(&filter).await?;
    items.pop().map(Json).ok_or(ApiError::NotFound("dead letter"))
}

/// `POST /api/dead-letters/replay?since_us=..` or `/api/dead-letters/{id}/replay`.
pub async fn replay(State(app): State<AppState>, id: Option<Path<i64>>, Query(mut filter): Query<DeadLetterFilter>) -> Result<Json<ReplayReport>, ApiError> {
    if let Some(Path(id)) = id {
        filter = DeadLetterFilter { id: Some(id), include_replayed: true, ..filter };
    }
    dlq::replay(app.store.as_ref(), app.producer.as_ref(), &filter).await.map(Json).map_err(|e| match e {
        DlqError::Store(e) => ApiError::Store(e),
        DlqError::Queue(e) => ApiError::Queue(e),
        // Only the command line replays through a server.
        e @ DlqError::Server { .. } => ApiError::Queue(crate::queue::QueueError::Unavailable(e.to_string())),
    })
}

/// Most ids one lookup may ask for: bounds the work of one request.
pub const MAX_LOOKUP: usize = 1000;

#[derive(Debug, serde::Deserialize)]
pub struct Lookup {
    ids: Vec<String>,
}

/// `POST /api/payments/lookup {"ids": [...]}`: many payments in one request, for
/// verification tools that check every payment they produced; unknown ids are left out.
pub async fn payments_lookup(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<Vec<PaymentView>>, ApiError> {
    let ids = lookup_ids(&app, &headers, body).await?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.extend(app.store.payment(&id).await?);
    }
    Ok(Json(found))
}

/// `POST /api/orders/lookup {"ids": [...]}`: many orders in one request; unknown ids are left out.
pub async fn orders_lookup(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<Vec<OrderView>>, ApiError> {
    let ids = lookup_ids(&app, &headers, body).await?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        found.extend(app.store.order(&id).await?);
    }
    Ok(Json(found))
}

async fn lookup_ids(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<String>, ApiError> {
    require_json(headers)?;
    let bytes = read_limited(headers, body, app.max_body.max(256 * 1024)).await?;
    let lookup: Lookup = parse(&bytes, no_rules)?;
    if lookup.ids.len() > MAX_LOOKUP {
        return Err(ApiError::Invalid(crate::domain::Invalid { field: "ids", reason: format!("at most {MAX_LOOKUP} ids") }));
    }
    Ok(lookup.ids)
}
