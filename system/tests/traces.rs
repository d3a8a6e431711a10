//! Following one payment from the provider's delivery to the worker's transaction: the request
//! id comes back in the answer and stays with the event's dead letter; with a collector
//! configured, one OpenTelemetry trace holds the request's span and the worker's. The collector
//! here is a real OTLP/HTTP receiver on loopback that decodes the protobuf export requests.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use common::*;

/// The provider's own trace context, as its HTTP client would send it.
const PROVIDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PROVIDER_SPAN: &str = "00f067aa0ba902b7";

/// Every span the collector was sent, with its resource's service name.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<(String, Span)>>>);

impl Collected {
    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().expect("collector lock").clone()
    }
}

async fn export(State(collected): State<Collected>, body: Bytes) -> ([(axum::http::HeaderName, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    let mut spans = collected.0.lock().expect("collector lock");
    for resource_spans in request.resource_spans {
        let service = resource_spans.resource.as_ref().and_then(|r| attribute(&r.attributes, "service.name")).unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push((service.clone(), span));
        }
    }
    ([(CONTENT_TYPE, "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
}

/// A collector on a free loopback port; spans arrive at `<base>/v1/traces`.
async fn collector() -> (String, Collected) {
    let collected = Collected::default();
    let app = Router::new().route("/v1/traces", axum::routing::post(export)).with_state(collected.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, collected)
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    match value {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// The spans named `name` for one request id, by the request id attribute.
fn of_request<'a>(spans: &'a [(String, Span)], name: &str, request_id: &str) -> Vec<&'a Span> {
    spans.iter().map(|(_, s)| s).filter(|s| s.name == name && attribute(&s.attributes, "request_id").as_deref() == Some(request_id)).collect()
}

async fn post_webhook(http: &reqwest::Client, base: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> String {
    let mut request = http.post(format!("{base}/api/webhooks/payment")).json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200);
    response.headers().get("x-request-id").expect("every answer names its request").to_str().expect("ascii").to_owned()
}

/// Waits until the collector holds a `webhook.apply` span for each request id.
async fn applied_spans(collected: &Collected, request_ids: &[&str]) -> Vec<(String, Span)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collected.spans();
        if request_ids.iter().all(|id| !of_request(&spans, "webhook.apply", id).is_empty()) {
            return spans;
        }
        let names: BTreeMap<&str, usize> = spans.iter().fold(BTreeMap::new(), |mut m, (_, s)| {
            *m.entry(s.name.as_str()).or_default() += 1;
            m
        });
        assert!(Instant::now() < deadline, "no apply span for every request within 30 s; the collector has {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_holds_the_request_and_the_worker_transaction() {
    let (endpoint, collected) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = free_addr().to_string();
    let data = dir.path().to_str().expect("utf-8");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_SERVICE_NAME", "webhooks-traces-test"), ("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let mut proc = Proc::spawn("standalone", &["standalone", "--listen", &addr, "--data-dir", data], &env, &dir.path().join("standalone.log"));
    let (http, base) = (client(), format!("http://{addr}"));
    wait_healthy(&http, &base).await;
    assert_eq!(post(&http, format!("{base}/api/orders"), &order("order_t", 1000)).await.0, 201);

    let traceparent = format!("00-{PROVIDER_TRACE}-{PROVIDER_SPAN}-01");
    let given = [("x-request-id", "provider-delivery-42"), ("traceparent", traceparent.as_str())];
    let kept = post_webhook(&http, &base, &event("payment.pending", "pay_t", "order_t", 1000, "evt_t1"), &given).await;
    assert_eq!(kept, "provider-delivery-42", "a plain id from the caller is kept");
    let made = post_webhook(&http, &base, &event("payment.success", "pay_t", "order_t", 1000, "evt_t2"), &[]).await;
    assert!(made.starts_with("req-"), "an id is made when none is sent: {made}");

    // A refusal names its request too: in its answer and in its log line.
    let refused = http.post(format!("{base}/api/webhooks/payment")).header("x-request-id", "refused-7").body("x").send().await.expect("request");
    assert!(refused.status().is_client_error());
    assert_eq!(refused.headers().get("x-request-id").map(|v| v.as_bytes()), Some(&b"refused-7"[..]));

    let spans = applied_spans(&collected, &[&kept, &made]).await;
    assert!(spans.iter().all(|(service, _)| service == "webhooks-traces-test"), "the configured service name");
    for (request_id, caller_trace) in [(kept.as_str(), Some(PROVIDER_TRACE)), (made.as_str(), None)] {
        let [receive] = of_request(&spans, "webhook.receive", request_id)[..] else { panic!("one receive span for {request_id}") };
        let [apply] = of_request(&spans, "webhook.apply", request_id)[..] else { panic!("one apply span for {request_id}") };
        if let Some(trace) = caller_trace {
            assert_eq!(hex(&receive.trace_id), trace, "the request's span joins the provider's trace");
            assert_eq!(hex(&receive.parent_span_id), PROVIDER_SPAN);
        } else {
            assert!(receive.parent_span_id.is_empty(), "without a traceparent the request starts the trace");
        }
        assert_eq!(apply.trace_id, receive.trace_id, "the worker's span is in the request's trace");
        assert_eq!(apply.parent_span_id, receive.span_id, "through the queue record, a child of the request's span");
        assert_eq!(attribute(&apply.attributes, "outcome").as_deref(), Some("applied"));
        let appends: Vec<_> = spans.iter().map(|(_, s)| s).filter(|s| s.name == "queue.append" && s.parent_span_id == receive.span_id).collect();
        assert_eq!(appends.len(), 1, "the durable append sits inside the request's span");
    }
    assert!(proc.terminate().is_some_and(|s| s.success()));
    let log = std::fs::read_to_string(dir.path().join("standalone.log")).expect("log");
    assert!(log.lines().any(|l| l.contains("webhook refused") && l.contains("request_id=\"refused-7\"")), "{log}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_dead_letter_keeps_the_id_of_the_request_that_brought_it() {
    let app = TestApp::start(&[]).await;
    let (http, base) = (&app.http, app.base.as_str());
    assert_eq!(post(http, format!("{base}/api/orders"), &order("order_d", 1000)).await.0, 201);
    post_webhook(http, base, &event("payment.success", "pay_d", "order_d", 1000, "evt_d"), &[("x-request-id", "first-delivery")]).await;
    drained(http, base).await;
    // The same event id for another amount: a reuse, dead-lettered by the worker.
    post_webhook(http, base, &event("payment.success", "pay_d", "order_d", 999, "evt_d"), &[("x-request-id", "second-delivery")]).await;
    let letters = eventually(http, format!("{base}/api/dead-letters"), Duration::from_secs(30), |v| v["count"] == 1).await;
    let payload: serde_json::Value = serde_json::from_str(letters["items"][0]["payload"].as_str().expect("payload")).expect("a payment event");
    assert_eq!(payload["request_id"], "second-delivery");
    assert_eq!(webhooks::dlq::request_id(&payload.to_string()).as_deref(), Some("second-delivery"));
    app.stop().await.expect("clean stop");
}
