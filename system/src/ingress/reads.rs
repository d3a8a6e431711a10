//! Orders (create and read), payments and dead letters.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{parse, read_limited, require_json};
use super::error::ApiError;
use super::AppState;
use crate::domain::{CreateOutcome, NewOrder};
use crate::store::{OrderView, PaymentView};

pub async fn create_order(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_json(&headers)?;
    let bytes = read_limited(&headers, body, app.max_body).await?;
    let order: NewOrder = parse(&bytes)?;
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

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

pub async fn dead_letters(State(app): State<AppState>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let (count, items) = app.store.dead_letters(page.limit.min(10_000)).await?;
    Ok(Json(json!({ "count": count, "items": items })))
}
