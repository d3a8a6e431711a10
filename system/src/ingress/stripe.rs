//! `POST /api/webhooks/stripe`: Stripe's event envelope, verified with `Stripe-Signature`,
//! mapped to a payment event (domain::stripe), appended durably, then acknowledged.
//!
//! Stripe retries anything but a 2xx for days and then disables the endpoint, so only what a
//! retry could fix, or what is plainly not Stripe's event, is refused: types this system does
//! not handle are answered 200 and counted, and events it can never apply are recorded as dead
//! letters for an operator and answered 200.

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
use crate::domain::stripe::{self as map, Charge, Dispute, Envelope, ForOperator, Kind, Mapped, PaymentIntent, Typed};
use crate::domain::{Invalid, PaymentEvent};
use crate::store::DeadLetter;
use crate::traces;

/// The consumer name under which ingress records Stripe events for an operator.
const OPERATOR_CONSUMER: &str = "stripe-ingress";


/// How Stripe's events are read.
#[derive(Debug, Clone)]
pub struct StripeSettings {
    /// The metadata key naming the order.
    pub order_key: String,
    /// Accept live-mode events (true) or test-mode ones (false).
    pub livemode: bool,
}

impl Default for StripeSettings {
    fn default() -> Self {
        Self { order_key: map::DEFAULT_ORDER_KEY.to_owned(), livemode: false }
    }
}

#[derive(Debug, Serialize)]
pub struct Answer {
    /// `accepted` (queued), `ignored` (a type this system does not handle) or
    /// `recorded_for_operator` (a dead letter, with the reason).
    pub status: &'static str,
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `peer` is absent only for requests made without a socket (in-process tests).
pub async fn receive(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let trail = Trail::of(&headers, super::STRIPE_ROUTE);
    // Without an exporter the request runs as it did, outside any span: nothing to pay.
    let result = if traces::exporting() {
        accept(&app, &headers, body, &trail).instrument(trail.span.clone()).await
    } else {
        accept(&app, &headers, body, &trail).await
    };
    match &result {
        // Answered 200 but never queued: not "accepted", which the worker's counts must meet.
        Ok(answer) if answer.status != "accepted" => app.metrics.record_ack(started.elapsed()),
        _ => super::webhook::count(&app, started, peer, &trail, &result),
    }
    trail.answer(result.map(Json))
}

async fn accept(app: &AppState, headers: &HeaderMap, body: Body, trail: &Trail) -> Result<Answer, ApiError> {
    require_json(headers)?;
    let bytes = read_limited(headers, body, app.max_body).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    app.verifier.verify_stripe_request(headers, &bytes, now.as_secs() as i64)?;
    let head: Envelope = parse(&bytes, field_rules)?;
    check_head(&head, app.stripe.livemode)?;
    app.metrics.stripe.api_version(head.api_version.as_deref());
    let Some(kind) = map::kind_of(&head.event_type) else {
        app.metrics.stripe.ignored(&head.event_type);
        return Ok(Answer { status: "ignored", event_id: head.id, reason: None });
    };
    let mapped = read_object(kind, &head, &bytes, &app.stripe.order_key, now.as_micros() as i64)?;
    let event = match mapped {
        Ok(m) => with_order(app, m).await?,
        Err(why) => Err((None, why)),
    };
    match event {
        Ok(mut event) => {
            trail.stamp(&mut event);
            if traces::exporting() {
                app.producer.append(&event).instrument(trail.append_span()).await?;
            } else {
                app.producer.append(&event).await?;
            }
            Ok(Answer { status: "accepted", event_id: event.event_id, reason: None })
        }
        Err((payment_id, why)) => record_for_operator(app, &head, payment_id, &bytes, why).await,
    }
}

fn check_head(head: &Envelope, livemode: bool) -> Result<(), ApiError> {
    if head.object != "event" {
        return Err(ApiError::WrongShape(format!("object must be \"event\", not {:?}", head.object)));
    }
    if head.livemode != livemode {
        let (sent, served) = if head.livemode { ("a live-mode", "test") } else { ("a test-mode", "live") };
        let reason = format!("{sent} event sent to an endpoint that serves {served} mode (--stripe-livemode {livemode})");
        return Err(Invalid { field: "livemode", reason }.into());
    }
    Ok(())
}

/// Reads `data.object` as the type the event names, so that errors name the Stripe field.
fn read_object(kind: Kind, head: &Envelope, bytes: &[u8], key: &str, received: i64) -> Result<Result<Mapped, ForOperator>, ApiError> {
    let found = &head.data.object.object;
    if found != kind.object_name() {
        let want = kind.object_name();
        return Err(ApiError::WrongShape(format!("data.object.object must be \"{want}\" for {}, not {found:?}", head.event_type)));
    }
    let t = head.event_type.as_str();
    Ok(match kind {
        Kind::PaymentIntent => Ok(map::payment_intent(t, parse::<Typed<PaymentIntent>>(bytes, field_rules)?.data.object, head, key, received)?),
        Kind::Charge => Ok(map::charge(t, parse::<Typed<Charge>>(bytes, field_rules)?.data.object, head, key, received)?),
        Kind::Dispute => map::dispute(t, parse::<Typed<Dispute>>(bytes, field_rules)?.data.object, head, key, received)?,
    })
}

/// The order from the metadata, else the one the payment was recorded with: a dispute's own
/// metadata rarely names it. The payment id comes back with a failure, for the dead letter.
async fn with_order(app: &AppState, m: Mapped) -> Result<Result<PaymentEvent, (Option<String>, ForOperator)>, ApiError> {
    let recorded = match m.order_id {
        Some(_) => None,
        None => app.store.payment(&m.event.payment_id).await?.map(|p| p.order_id),
    };
    let payment_id = m.event.payment_id.clone();
    Ok(m.with_order(&app.stripe.order_key, recorded).map_err(|why| (Some(payment_id), why)))
}

async fn record_for_operator(app: &AppState, head: &Envelope, payment_id: Option<String>, bytes: &[u8], why: ForOperator) -> Result<Answer, ApiError> {
    let reason = why.to_string();
    tracing::warn!(event_id = %head.id, event_type = %head.event_type, api_version = ?head.api_version, %reason, "Stripe event recorded for an operator");
    let letter = DeadLetter {
        event_id: head.id.clone(),
        payment_id,
        order_id: None,
        payload: String::from_utf8_lossy(bytes).into_owned(),
        error: reason.clone(),
        attempts: 1,
    };
    app.store.dead_letter(OPERATOR_CONSUMER, &[letter], &[]).await?;
    app.metrics.stripe.for_operator();
    Ok(Answer { status: "recorded_for_operator", event_id: head.id.clone(), reason: Some(reason) })
}

/// What a field must be, in Stripe's terms, where the generic type name would say too little.
fn field_rules(field: &str) -> Option<String> {
    match field {
        "type" => Some("a Stripe event type such as payment_intent.succeeded".to_owned()),
        "created" => Some("an integer (seconds since the Unix epoch)".to_owned()),
        "data.object.amount" | "data.object.amount_refunded" => Some("an integer in the smallest currency unit (cents for usd)".to_owned()),
        _ => None,
    }
}
