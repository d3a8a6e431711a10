//! Hostile input: a checked-in corpus of nasty requests with the status each must get, and
//! property tests over the request path and both signature header parsers. Every input ends
//! in a 2xx or a 4xx, and nothing invalid is enqueued.

mod common;

use std::sync::Arc;

use axum::body::Body;
use common::*;
use http::{HeaderMap, HeaderValue, Request};
use proptest::prelude::*;
use serde_json::Value;
use tokio::sync::Notify;
use tower::ServiceExt;
use webhooks::domain::WebhookBody;
use webhooks::ingress::signature::Verifier;
use webhooks::ingress::{router, AppState, Limits};
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{EmbeddedConfig, EmbeddedProducer};
use webhooks::store::sqlite::SqliteStore;

fn expand(template: &str) -> String {
    template
        .replace("{X129}", &"x".repeat(129))
        .replace("{X70000}", &"x".repeat(70_000))
        .replace("{NEST}", &format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)))
}

#[tokio::test]
async fn the_nasty_corpus_gets_the_expected_statuses_and_only_valid_events_are_queued() {
    let app = TestApp::start(&[]).await;
    let corpus: Vec<Value> = serde_json::from_str(include_str!("corpus/nasty_requests.json")).expect("corpus is JSON");
    let mut expected_accepted = 0;
    for case in &corpus {
        let name = case["name"].as_str().expect("name");
        let body = case["body"].as_str().map(str::to_owned).unwrap_or_else(|| expand(case["body_template"].as_str().expect("body")));
        let ctype = case["content_type"].as_str().unwrap_or("application/json");
        let mut req = app.http.post(format!("{}/api/webhooks/payment", app.base)).body(body);
        if !ctype.is_empty() {
            req = req.header("content-type", ctype);
        }
        for (k, v) in case["headers"].as_object().into_iter().flatten() {
            let raw: Vec<u8> = v.as_str().expect("header").chars().map(|c| c as u32 as u8).collect();
            req = req.header(k.as_str(), HeaderValue::from_bytes(&raw).expect("header bytes"));
        }
        let r = req.send().await.expect("send");
        let status = r.status().as_u16();
        assert_eq!(status, case["status"].as_u64().expect("status") as u16, "{name}");
        if status == 200 {
            expected_accepted += 1;
        } else {
            let err: Value = r.json().await.expect("JSON error body");
            assert!(err["error"].is_string() && err["message"].is_string(), "{name}: {err}");
        }
    }
    let stats = drained(&app.http, &app.base).await;
    assert_eq!(stats["ingress"]["accepted"], expected_accepted);
    assert_eq!(stats["worker"]["processed"].as_u64().unwrap() + stats["worker"]["duplicates"].as_u64().unwrap(), expected_accepted);
}

/// The app in process, for thousands of cases without sockets.
fn app(dir: &std::path::Path, verifier: Verifier) -> (axum::Router, Metrics) {
    let metrics = Metrics::new();
    let state = AppState {
        producer: Arc::new(EmbeddedProducer::open(&EmbeddedConfig::in_dir(dir), 0, metrics.clone(), Arc::new(Notify::new())).expect("queue")),
        store: Arc::new(SqliteStore::open(&dir.join("store.db")).expect("store")),
        verifier: Arc::new(verifier),
        metrics: metrics.clone(),
        max_body: 64 * 1024,
        admin_token: None,
        exposure: Default::default(),
        refusals: Default::default(),
        stripe: Default::default(),
    };
    (router(state, Limits { max_in_flight: 1024, request_timeout: std::time::Duration::from_secs(10), header_timeout: std::time::Duration::from_secs(10) }), metrics)
}

/// Bodies near the valid shape: random field values, types and extra bytes.
fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof!["[a-z_0-9]{1,12}", ".{0,140}", Just(String::new())];
    let amount = prop_oneof![any::<i64>().prop_map(|a| a.to_string()), "[0-9.eE+-]{1,25}", Just("\"1\"".to_owned())];
    let event_type = prop_oneof![Just("payment.success".to_owned()), Just("payment.pending".to_owned()), ".{0,20}"];
    let shaped = (event_type, id.clone(), id, amount, "[A-Za-z]{0,4}").prop_map(|(t, p, o, a, c)| {
        format!(r#"{{"event_type":{},"payment_id":{},"order_id":{},"amount":{a},"currency":{}}}"#, Value::from(t), Value::from(p), Value::from(o), Value::from(c))
            .into_bytes()
    });
    prop_oneof![shaped, proptest::collection::vec(any::<u8>(), 0..300)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn any_body_ends_in_2xx_or_4xx_and_only_valid_events_are_queued(body in bodies()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (app, metrics) = rt.block_on(async { app(dir.path(), Verifier::default()) });
        let req = Request::post("/api/webhooks/payment").header("content-type", "application/json").body(Body::from(body.clone())).unwrap();
        let status = rt.block_on(app.oneshot(req)).unwrap().status();
        prop_assert!(status.is_success() || status.is_client_error(), "status {status}");
        let valid = serde_json::from_slice::<WebhookBody>(&body).ok().and_then(|b| b.into_event(None, 0).ok()).is_some();
        prop_assert_eq!(status.is_success(), valid);
        prop_assert_eq!(metrics.webhooks_accepted.get(), u64::from(valid));
    }

    #[test]
    fn signature_header_parsers_never_panic_and_never_accept_garbage(
        sig in ".{0,200}", stripe in "[tv0-9=,a-f ]{0,200}", id in "[a-z_0-9]{1,20}", ts in any::<i64>(), body in proptest::collection::vec(any::<u8>(), 0..100)
    ) {
        let v = Verifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_stripe", 300).unwrap();
        let now = 1_700_000_000;
        let mut standard = HeaderMap::new();
        if let (Ok(id), Ok(ts), Ok(sig)) = (HeaderValue::from_str(&id), HeaderValue::from_str(&ts.to_string()), HeaderValue::from_str(&sig)) {
            standard.insert("webhook-id", id);
            standard.insert("webhook-timestamp", ts);
            standard.insert("webhook-signature", sig);
            prop_assert!(v.verify(&standard, &body, now).is_err());
        }
        let mut s = HeaderMap::new();
        if let Ok(h) = HeaderValue::from_str(&stripe) {
            s.insert("stripe-signature", h);
            prop_assert!(v.verify(&s, &body, now).is_err());
        }
    }
}
