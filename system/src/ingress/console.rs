//! The operator console at `/console`: one page, its script and style, compiled into the
//! binary so that nothing is built or fetched on the operator's machine.
//!
//! The assets are public and hold no data: everything the page shows comes from the JSON API,
//! which sits behind the admin token when one is set. The server never puts the token in a
//! page; the operator types it and the script keeps it in the tab's session storage.

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");

/// Same-origin only, no inline script: a payload that slipped markup into the page could not run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, for any router state: the server's and the worker's.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/console/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/console/console.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/console/console.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            // No validators, so each load fetches them again: about 20 KB, and a new binary's
            // console is in use at once, never mixed with a cached older script.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY")),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn fetch(path: &str) -> (StatusCode, String, String) {
        let app: axum::Router = super::routes();
        let res = app.oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("infallible");
        let status = res.status();
        let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("body");
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_page_and_the_assets_it_names_are_served() {
        let (status, ct, page) = fetch("/console").await;
        assert_eq!((status, ct.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
        for asset in ["/console/console.js", "/console/console.css"] {
            assert!(page.contains(asset), "the page loads {asset}");
            let (status, _, body) = fetch(asset).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert!(!body.is_empty(), "{asset}");
        }
    }

    #[test]
    fn the_page_has_no_inline_script_for_the_policy_to_block() {
        assert!(!super::INDEX.contains("<script>"), "inline scripts are refused by the CSP");
        let handler = super::INDEX.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert_eq!(handler, None, "inline handlers are refused by the CSP");
    }
}
