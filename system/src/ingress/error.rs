//! One error type for the HTTP layer, mapped to a status and a JSON body in one place.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::signature::SignatureError;
use crate::domain::Invalid;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("could not read the request body")]
    BodyRead,
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// Valid JSON that is not what the endpoint takes: names the field and what it must be.
    #[error("{0}")]
    WrongShape(String),
    #[error("invalid {0}")]
    Invalid(#[from] Invalid),
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("event not stored, retry later: {0}")]
    Queue(#[from] QueueError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("no route {0}")]
    NoRoute(String),
    #[error("method {0} not allowed here (see the Allow header)")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("too many requests in flight, retry later")]
    Overloaded,
    #[error("request took too long")]
    Timeout,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// This address sent too many wrong admin tokens; its token is not even read until then.
    #[error("too many wrong tokens from this address, retry in {0} s")]
    Throttled(u64),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead | Self::Malformed(_) | Self::WrongShape(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Queue(_) | Self::Store(StoreError::Transient(_) | StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(StoreError::Permanent(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A stable machine-readable code, also the `reason` label of rejection metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::BodyRead => "body_read",
            Self::Malformed(_) => "malformed",
            Self::WrongShape(_) => "wrong_shape",
            Self::Invalid(_) => "invalid",
            // Apart from forged signatures: a run of these is clock skew (or replays), not an attack.
            Self::Signature(SignatureError::Expired(_)) => "expired_timestamp",
            Self::Signature(_) => "bad_signature",
            Self::Queue(QueueError::Full) => "overloaded",
            Self::Queue(_) => "queue_unavailable",
            Self::NotFound(_) | Self::NoRoute(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::Store(_) => "store_unavailable",
            Self::Overloaded => "too_many_requests",
            Self::Timeout => "timeout",
            Self::Unauthorized => "unauthorized",
            Self::Throttled(_) => "throttled",
        }
    }
}

/// Every `code` a webhook rejection can carry, for reporting counts per reason.
pub const REJECT_REASONS: &[&str] = &[
    "unsupported_media_type",
    "payload_too_large",
    "body_read",
    "malformed",
    "wrong_shape",
    "invalid",
    "bad_signature",
    "expired_timestamp",
    "overloaded",
    "queue_unavailable",
    "store_unavailable",
    "too_many_requests",
    "timeout",
];

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = Json(json!({ "error": self.code(), "message": self.to_string() }));
        if let Self::Throttled(secs) = self {
            (status, [(header::RETRY_AFTER, secs.to_string())], body).into_response()
        } else if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            (status, [(header::RETRY_AFTER, RETRY_AFTER_SECS)], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
