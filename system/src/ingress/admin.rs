//! The bearer token that guards management and read endpoints when `ADMIN_TOKEN` is set.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

pub async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = app.admin_token.as_deref() else { return next.run(req).await };
    let offered = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if same_secret(offered, expected) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Compares digests in constant time, so neither the content nor the length of the token
/// leaks through timing.
fn same_secret(offered: &str, expected: &str) -> bool {
    Sha256::digest(offered.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_exact_token_matches() {
        assert!(super::same_secret("s3cret", "s3cret"));
        assert!(!super::same_secret("s3cre", "s3cret"));
        assert!(!super::same_secret("", "s3cret"));
    }
}
