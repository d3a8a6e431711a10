//! The bearer token that guards management and read endpoints when `ADMIN_TOKEN` is set.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::refusals::AdminRefusal;
use super::AppState;

pub async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = app.admin_token.as_deref() else { return next.run(req).await };
    let from = peer(&req);
    // Before the token is read: a throttled guesser must not learn whether it was right.
    if let Some(wait) = app.refusals.admin_wait(from) {
        app.refusals.admin(&app.metrics, AdminRefusal::Throttled, from, req.uri().path());
        return ApiError::Throttled(wait.as_secs_f64().ceil().max(1.0) as u64).into_response();
    }
    let offered = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let why = match offered {
        Some(token) if same_secret(token, expected) => return next.run(req).await,
        Some(_) => AdminRefusal::WrongToken,
        None => AdminRefusal::MissingToken,
    };
    app.refusals.admin(&app.metrics, why, from, req.uri().path());
    ApiError::Unauthorized.into_response()
}

/// The address the connection came from; requests made without a socket (in-process tests)
/// share one budget.
fn peer(req: &Request) -> IpAddr {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
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
