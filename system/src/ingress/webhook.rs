//! `POST /api/webhooks/payment`: verify, validate, append durably, then acknowledge.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Serialize;
use tracing::Instrument;

use super::body::{parse, read_limited, require_json};
use super::error::ApiError;
use super::request_id::Trail;
use super::AppState;
use super::signature::STANDARD_ID;
use crate::domain::event::type_list;
use crate::domain::{Invalid, WebhookBody};
use crate::traces;

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub status: &'static str,
    pub event_id: String,
}

/// `peer` is absent only for requests made without a socket (in-process tests).
pub async fn receive(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let trail = Trail::of(&headers, super::WEBHOOK_ROUTE);
    // Without an exporter the request runs as it did, outside any span: nothing to pay.
    let result = if traces::exporting() {
        accept(&app, &headers, body, &trail).instrument(trail.span.clone()).await
    } else {
        accept(&app, &headers, body, &trail).await
    };
    count(&app, started, peer, &trail, &result);
    trail.answer(result.map(Json))
}

/// Counts a webhook's answer: accepted with its latency, or refused by reason (and a bad
/// signature against its sender's address), logged with the request's id.
pub(super) fn count<T>(app: &AppState, started: Instant, peer: Option<Extension<ConnectInfo<SocketAddr>>>, trail: &Trail, result: &Result<T, ApiError>) {
    match result {
        Ok(_) => {
            app.metrics.webhooks_accepted.inc();
            app.metrics.record_ack(started.elapsed());
        }
        Err(e) => {
            app.metrics.reject(e.code());
            let from = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
            let request_id = trail.request_id.as_str();
            match e {
                ApiError::Signature(refused) => app.refusals.signature(&app.metrics, refused, from, request_id),
                // A provider's dashboard shows these; the log must too. 5xx are logged already.
                refused if refused.status().is_client_error() => app.refusals.webhook(refused, from, request_id),
                _ => {}
            }
        }
    }
}

async fn accept(app: &AppState, headers: &HeaderMap, body: Body, trail: &Trail) -> Result<Accepted, ApiError> {
    crate::fault::busy_work();
    require_json(headers)?;
    let bytes = read_limited(headers, body, app.max_body).await?;
    readable_transport_id(headers)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let verified = app.verifier.verify(headers, &bytes, now.as_secs() as i64)?;
    let parsed: WebhookBody = parse(&bytes, field_rules)?;
    let mut event = parsed.into_event(verified.message_id.as_deref(), now.as_micros() as i64)?;
    trail.stamp(&mut event);
    if traces::exporting() {
        app.producer.append(&event).instrument(trail.append_span()).await?;
    } else {
        app.producer.append(&event).await?;
    }
    Ok(Accepted { status: "accepted", event_id: event.event_id })
}

/// Rules worth more than a type name; a provider that sends `status` instead of `event_type`
/// learns what to send.
fn field_rules(field: &str) -> Option<String> {
    match field {
        "event_type" => Some(format!("one of {}", type_list())),
        "amount" => Some("an integer in minor units (cents)".to_owned()),
        _ => None,
    }
}

/// A `webhook-id` that is present but not text must not silently fall back to another identity.
fn readable_transport_id(headers: &HeaderMap) -> Result<(), Invalid> {
    match headers.get(STANDARD_ID).map(|v| v.to_str()) {
        Some(Err(_)) => Err(Invalid { field: "webhook-id", reason: "must be printable ASCII".into() }),
        _ => Ok(()),
    }
}
