//! The id that follows one webhook from its HTTP request through the queue to the worker's
//! transaction and its dead letter, and the trace context that travels with it.
//!
//! A caller's `X-Request-Id` is kept when it is short and plain (it ends up in logs and dead
//! letters); anything else is ignored and an id is made here: a random prefix per process and
//! a counter, so making one costs no system call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use tracing::Span;

use crate::domain::PaymentEvent;
use crate::traces::{self, TRACEPARENT};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
/// Longer ids from a caller are replaced: a UUID or a load balancer's trace id fits.
pub const MAX_LEN: usize = 128;

/// What a webhook's request leaves with its event, its answer and its log lines.
pub struct Trail {
    pub request_id: String,
    /// `webhook.receive` while spans are exported, else a span that records nothing.
    pub span: Span,
    /// This request's place in a trace, for the worker's span to join.
    traceparent: Option<String>,
}

impl Trail {
    /// Reads the request id and the caller's `traceparent`. Without an exporter nothing more
    /// happens: no span, and a well-formed `traceparent` is carried as it came.
    pub fn of(headers: &HeaderMap, route: &'static str) -> Self {
        let request_id = request_id(headers);
        let incoming = headers.get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok());
        if !traces::exporting() {
            let traceparent = incoming.filter(|t| traces::well_formed(t)).map(str::to_owned);
            return Self { request_id, span: Span::none(), traceparent };
        }
        let span = tracing::info_span!("webhook.receive", request_id = %request_id, http.route = route, http.response.status_code = tracing::field::Empty, otel.kind = "server");
        traces::set_parent(&span, incoming);
        let traceparent = traces::traceparent_of(&span);
        Self { request_id, span, traceparent }
    }

    /// The span around the durable append, the part of the answer the provider waits for.
    pub fn append_span(&self) -> Span {
        tracing::info_span!(parent: &self.span, "queue.append")
    }

    /// Writes the request's id and trace into the event the queue will carry.
    pub fn stamp(&self, event: &mut PaymentEvent) {
        event.request_id = Some(self.request_id.clone());
        event.traceparent.clone_from(&self.traceparent);
    }

    /// The answer, whatever it says, with the id the caller can quote.
    pub fn answer(self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        self.span.record("http.response.status_code", response.status().as_u16());
        // Checked at intake or made here from safe characters: never refused.
        if let Ok(value) = HeaderValue::try_from(self.request_id) {
            response.headers_mut().insert(HEADER, value);
        }
        response
    }
}

/// The caller's id when it is acceptable, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    match headers.get(HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) if acceptable(id) => id.to_owned(),
        _ => make(),
    }
}

/// Short, and only characters that need no escaping in a log line, a header or a URL.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// `req-<16 hex digits per process>-<counter in hex>`, written by hand: this runs per request.
fn make() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // 64 random bits: two processes picking the same prefix is not a worry.
    let prefix = PREFIX.get_or_init(|| format!("req-{:016x}-", rand::random::<u64>()));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    let mut id = String::with_capacity(prefix.len() + digits);
    id.push_str(prefix);
    for i in (0..digits).rev() {
        id.push(char::from(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_plain_caller_id_is_kept() {
        assert_eq!(request_id(&with("3f2b8c1e-9d4a-4f6b-8e2a-7c1d5b9e0a34")), "3f2b8c1e-9d4a-4f6b-8e2a-7c1d5b9e0a34");
        assert_eq!(request_id(&with("Root=1-67891233-abcdef012345678912345678")), "Root=1-67891233-abcdef012345678912345678");
    }

    #[test]
    fn an_unfit_caller_id_is_replaced_by_a_made_one() {
        for bad in ["", "has space", "quote\"d", "semi;colon", &"x".repeat(MAX_LEN + 1)] {
            let id = request_id(&with(bad));
            assert!(id.starts_with("req-") && id != bad, "{bad:?} -> {id}");
        }
    }

    #[test]
    fn made_ids_end_in_the_counter_in_hex() {
        let id = make();
        let (_, counter) = id.rsplit_once('-').expect("prefix-counter");
        let n = u64::from_str_radix(counter, 16).expect("hex");
        let next = make();
        assert!(u64::from_str_radix(next.rsplit_once('-').expect("prefix-counter").1, 16).expect("hex") > n, "{id} then {next}");
        assert!(!counter.starts_with('0') || counter == "0", "no leading zeros: {id}");
    }

    #[test]
    fn made_ids_share_the_process_prefix_and_never_repeat() {
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_ne!(a, b);
        assert_eq!(a.rsplit_once('-').map(|p| p.0), b.rsplit_once('-').map(|p| p.0));
        assert!(acceptable(&a), "a made id passes the caller's rules: {a}");
    }

    #[test]
    fn without_an_exporter_a_well_formed_traceparent_rides_along_unchanged() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut headers = with("req-x");
        headers.insert(TRACEPARENT, HeaderValue::from_static(tp));
        let mut event: PaymentEvent = serde_json::from_str(r#"{"event_id":"e","event_type":"payment.success","payment_id":"p","order_id":"o","amount":1,"currency":"USD","received_at_us":1}"#).unwrap();
        Trail::of(&headers, "/r").stamp(&mut event);
        assert_eq!((event.request_id.as_deref(), event.traceparent.as_deref()), (Some("req-x"), Some(tp)));
        headers.insert(TRACEPARENT, HeaderValue::from_static("junk"));
        Trail::of(&headers, "/r").stamp(&mut event);
        assert_eq!(event.traceparent, None);
    }
}
