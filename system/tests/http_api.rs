//! The HTTP API and worker semantics end to end, in process: real SQLite files in a temp
//! dir, a real HTTP server on loopback.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use webhooks::ingress::signature::sign;

const WAIT: Duration = Duration::from_secs(20);

fn hook(app: &TestApp) -> String {
    format!("{}/api/webhooks/payment", app.base)
}

async fn payment(app: &TestApp, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(&app.http, format!("{}/api/payments/{id}", app.base), WAIT, check).await
}

async fn order_status(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&app.http, format!("{}/api/orders/{id}", app.base), WAIT, |o| o["status"] == status).await
}

#[tokio::test]
async fn the_original_curl_flow_pays_the_order() {
    let app = TestApp::start(&[]).await;
    let (s, _) = post(&app.http, format!("{}/api/orders", app.base), &order("order_12345", 1000)).await;
    assert_eq!(s, 201);
    let body = json!({"event_type":"payment.success","payment_id":"pay_xyz789","order_id":"order_12345","amount":1000,"currency":"USD"});
    let (s, ack) = post(&app.http, hook(&app), &body).await;
    assert_eq!(s, 200);
    assert_eq!(ack["status"], "accepted");
    assert!(ack["event_id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    let o = order_status(&app, "order_12345", "paid").await;
    assert_eq!(o["payments"][0]["payment_id"], "pay_xyz789");
    let p = payment(&app, "pay_xyz789", |p| p["status"] == "success").await;
    assert_eq!(p["events"][0]["event_id"], ack["event_id"]);
    let (s, found) = post(&app.http, format!("{}/api/payments/lookup", app.base), &json!({"ids": ["pay_xyz789", "nope"]})).await;
    assert_eq!((s, found.as_array().map(Vec::len)), (200, Some(1)));
    let (_, orders) = post(&app.http, format!("{}/api/orders/lookup", app.base), &json!({"ids": ["order_12345"]})).await;
    assert_eq!(orders[0]["status"], "paid");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_same_event_sent_ten_times_concurrently_applies_once() {
    let app = TestApp::start(&[]).await;
    post(&app.http, format!("{}/api/orders", app.base), &order("o1", 500)).await;
    let body = event("payment.success", "p1", "o1", 500, "evt_dup");
    let sends = (0..10).map(|_| {
        let (http, url, body) = (app.http.clone(), hook(&app), body.clone());
        tokio::spawn(async move { post(&http, url, &body).await.0 })
    });
    for s in sends.collect::<Vec<_>>() {
        assert_eq!(s.await.unwrap(), 200);
    }
    // Without an explicit id, the payload hash is the identity: resends dedupe too.
    let anonymous = json!({"event_type":"payment.pending","payment_id":"p1","order_id":"o1","amount":500,"currency":"USD"});
    let (_, a) = post(&app.http, hook(&app), &anonymous).await;
    let (_, b) = post(&app.http, hook(&app), &anonymous).await;
    assert_eq!(a["event_id"], b["event_id"]);
    let stats = drained(&app.http, &app.base).await;
    assert_eq!(stats["worker"]["processed"], 2, "{stats}");
    assert_eq!(stats["worker"]["duplicates"], 10, "{stats}");
    let p = payment(&app, "p1", |p| p["events"].as_array().is_some_and(|e| e.len() == 2)).await;
    assert_eq!(p["applied_events"], 2);
    assert_eq!(p["status"], "success");
    order_status(&app, "o1", "paid").await;
}

#[tokio::test]
async fn out_of_order_arrivals_keep_the_right_final_state() {
    let app = TestApp::start(&[]).await;
    post(&app.http, format!("{}/api/orders", app.base), &order("o2", 700)).await;
    for (t, id) in [("payment.refunded", "e3"), ("payment.pending", "e1"), ("payment.success", "e2")] {
        assert_eq!(post(&app.http, hook(&app), &event(t, "p2", "o2", 700, id)).await.0, 200);
    }
    let p = payment(&app, "p2", |p| p["events"].as_array().is_some_and(|e| e.len() == 3)).await;
    assert_eq!(p["status"], "refunded");
    let stale: Vec<_> = p["events"].as_array().unwrap().iter().filter(|e| e["outcome"] == "stale").map(|e| e["event_id"].clone()).collect();
    assert_eq!(stale.len(), 2, "pending and success arrived after the refund: {p}");
    order_status(&app, "o2", "refunded").await;
}

#[tokio::test]
async fn mismatch_refund_and_late_orders() {
    let app = TestApp::start(&[]).await;
    let orders = format!("{}/api/orders", app.base);
    post(&app.http, orders.clone(), &order("o3", 1000)).await;
    post(&app.http, hook(&app), &event("payment.success", "p3", "o3", 999, "m1")).await;
    order_status(&app, "o3", "payment_mismatch").await;

    post(&app.http, orders.clone(), &order("o4", 100)).await;
    post(&app.http, hook(&app), &event("payment.success", "p4", "o4", 100, "r1")).await;
    order_status(&app, "o4", "paid").await;
    post(&app.http, hook(&app), &event("payment.refunded", "p4", "o4", 100, "r2")).await;
    order_status(&app, "o4", "refunded").await;

    // A payment for an order that does not exist yet is kept; the order picks it up.
    post(&app.http, hook(&app), &event("payment.success", "p5", "o5", 300, "u1")).await;
    payment(&app, "p5", |p| p["status"] == "success").await;
    assert_eq!(get(&app.http, format!("{}/api/orders/o5", app.base)).await.0, 404);
    assert_eq!(post(&app.http, orders, &order("o5", 300)).await.0, 201);
    order_status(&app, "o5", "paid").await;
}

#[tokio::test]
async fn a_payment_claimed_by_another_order_is_dead_lettered_and_the_queue_moves_on() {
    let app = TestApp::start(&[]).await;
    post(&app.http, hook(&app), &event("payment.pending", "p6", "o6", 100, "c1")).await;
    payment(&app, "p6", |_| true).await;
    post(&app.http, hook(&app), &event("payment.success", "p6", "other", 100, "c2")).await;
    post(&app.http, hook(&app), &event("payment.success", "p6", "o6", 100, "c3")).await;
    let p = payment(&app, "p6", |p| p["status"] == "success").await;
    assert_eq!(p["applied_events"], 2);
    let (_, dl) = get(&app.http, format!("{}/api/dead-letters", app.base)).await;
    assert_eq!(dl["count"], 1);
    assert_eq!(dl["items"][0]["event_id"], "c2");
    assert!(dl["items"][0]["error"].as_str().unwrap().contains("belongs to order o6"));
}

#[tokio::test]
async fn conflicts_are_counted_logged_and_visible() {
    let app = TestApp::start(&[]).await;
    post(&app.http, format!("{}/api/orders", app.base), &order("o9", 100)).await;
    post(&app.http, hook(&app), &event("payment.success", "p9", "o9", 100, "k1")).await;
    payment(&app, "p9", |_| true).await;
    // The same id for another amount, then a second success for less under a new id.
    post(&app.http, hook(&app), &event("payment.success", "p9", "o9", 1, "k1")).await;
    post(&app.http, hook(&app), &event("payment.success", "p9", "o9", 90, "k2")).await;
    let o = order_status(&app, "o9", "payment_conflict").await;
    assert_eq!((o["payments"][0]["amount"].as_i64(), o["payments"][0]["conflicted"].as_bool()), (Some(90), Some(true)), "{o}");
    let p = payment(&app, "p9", |p| p["applied_events"] == 2).await;
    assert_eq!(p["events"][1]["outcome"], "conflict", "{p}");
    let stats = drained(&app.http, &app.base).await;
    assert_eq!((stats["worker"]["conflicts"].as_u64(), stats["worker"]["duplicates"].as_u64()), (Some(2), Some(0)), "{stats}");
    let (_, dl) = get(&app.http, format!("{}/api/dead-letters", app.base)).await;
    assert_eq!((dl["count"].as_u64(), dl["items"][0]["event_id"].as_str()), (Some(1), Some("k1")), "{dl}");
    assert!(dl["items"][0]["error"].as_str().unwrap().starts_with("conflict: event id reused"), "{dl}");
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.lines().any(|l| l == "webhooks_worker_events_total{outcome=\"conflict\"} 2"), "{text}");
}

#[tokio::test]
async fn orders_are_idempotent_and_conflicts_are_refused() {
    let app = TestApp::start(&[]).await;
    let url = format!("{}/api/orders", app.base);
    assert_eq!(post(&app.http, url.clone(), &order("o7", 100)).await.0, 201);
    assert_eq!(post(&app.http, url.clone(), &order("o7", 100)).await.0, 200);
    let (s, body) = post(&app.http, url, &order("o7", 101)).await;
    assert_eq!((s, body["error"].as_str()), (409, Some("conflict")));
    assert_eq!(get(&app.http, format!("{}/api/payments/nope", app.base)).await.0, 404);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_nothing_is_enqueued() {
    let app = TestApp::start(&["--max-body-bytes", "65536"]).await;
    let valid = r#"{"event_type":"payment.success","payment_id":"p","order_id":"o","amount":1,"currency":"USD"}"#;
    let huge = format!(r#"{{"event_type":"payment.success","payment_id":"p","order_id":"o","amount":1,"currency":"USD","pad":"{}"}}"#, "x".repeat(70_000));
    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        ("not json", "{".into(), "application/json", 400, "malformed"),
        ("trailing garbage", format!("{valid}x"), "application/json", 400, "malformed"),
        ("missing amount", r#"{"event_type":"payment.success","payment_id":"p","order_id":"o","currency":"USD"}"#.into(), "application/json", 400, "amount"),
        ("amount as string", valid.replace("\"amount\":1", "\"amount\":\"1\""), "application/json", 400, "amount"),
        ("fractional amount", valid.replace("\"amount\":1", "\"amount\":1.5"), "application/json", 400, "amount"),
        ("amount beyond i64", valid.replace("\"amount\":1", "\"amount\":99999999999999999999"), "application/json", 400, "amount"),
        ("duplicated key", valid.replace("\"amount\":1", "\"amount\":1,\"amount\":2"), "application/json", 400, "duplicate field"),
        ("negative amount", valid.replace("\"amount\":1", "\"amount\":-5"), "application/json", 422, "amount"),
        ("lower-case currency", valid.replace("USD", "usd"), "application/json", 422, "currency"),
        ("unknown type", valid.replace("payment.success", "payment.stolen"), "application/json", 422, "event_type"),
        ("empty payment id", valid.replace("\"p\"", "\"\""), "application/json", 422, "payment_id"),
        ("control char in id", valid.replace("\"o\"", "\"o\\u0000\""), "application/json", 422, "order_id"),
        ("deep nesting", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), "application/json", 400, "must be a JSON object"),
        ("wrong content type", valid.into(), "text/plain", 415, "application/json"),
        ("too large", huge, "application/json", 413, "larger than"),
    ];
    for (name, body, ctype, status, needle) in cases {
        let r = app.http.post(hook(&app)).header("content-type", ctype).body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let err: Value = r.json().await.unwrap();
        let text = format!("{} {}", err["error"], err["message"]);
        assert!(text.contains(needle), "{name}: {text}");
    }
    let (_, stats) = get(&app.http, format!("{}/api/stats", app.base)).await;
    assert_eq!(stats["ingress"]["accepted"], 0, "{stats}");
    assert_eq!(stats["worker"]["processed"], 0);
    assert_eq!(stats["queue"]["depth"], 0);
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STRIPE: &str = "whsec_stripe_secret_for_tests";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn signatures_are_enforced_in_both_schemes_with_rotation() {
    let both = format!("whsec_b2xkLXNlY3JldA==,{SECRET}");
    let app = TestApp::start(&["--webhook-secret", &both, "--stripe-webhook-secret", STRIPE]).await;
    let body = event("payment.pending", "ps", "os", 1, "ignored-body-id").to_string();
    let send = |headers: Vec<(&'static str, String)>, body: String| {
        let mut r = app.http.post(hook(&app)).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let std_headers = |secret: &str, ts: i64, b: &str| {
        vec![("webhook-id", "msg_1".to_string()), ("webhook-timestamp", ts.to_string()), ("webhook-signature", sign::standard(secret, "msg_1", ts, b.as_bytes()).unwrap())]
    };
    let (s, ack) = send(std_headers(SECRET, now(), &body), body.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(ack["event_id"], "msg_1", "the webhook-id header is the event's identity");
    assert_eq!(send(std_headers("whsec_b2xkLXNlY3JldA==", now(), &body), body.clone()).await.0, 200, "rotated secret");
    let (s, err) = send(std_headers("whsec_d3Jvbmc=", now(), &body), body.clone()).await;
    assert_eq!((s, err["error"].as_str()), (401, Some("bad_signature")));
    assert!(!err["message"].as_str().unwrap().contains("MfKQ"), "no secret in errors");
    assert_eq!(send(std_headers(SECRET, now() - 301, &body), body.clone()).await.0, 401, "expired");
    let tampered = body.replace("\"amount\":1", "\"amount\":2");
    assert_eq!(send(std_headers(SECRET, now(), &body), tampered).await.0, 401, "tampered");
    let stripe = vec![("stripe-signature", sign::stripe(STRIPE, now(), body.as_bytes()).unwrap())];
    assert_eq!(send(stripe, body.clone()).await.0, 200);
    assert_eq!(send(vec![], body.clone()).await.0, 401, "unsigned");
    let (_, stats) = get(&app.http, format!("{}/api/stats", app.base)).await;
    assert_eq!(stats["ingress"]["accepted"], 3);
    assert_eq!(stats["ingress"]["rejected"]["bad_signature"], 3);
    assert_eq!(stats["ingress"]["rejected"]["expired_timestamp"], 1, "clock skew is counted apart from forgeries");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::start(&[]).await;
    assert_eq!(readiness(&app.http, &app.base).await, (200, json!({"queue":"ok","store":"ok"})));
    post(&app.http, hook(&app), &event("payment.pending", "pm", "om", 1, "x1")).await;
    drained(&app.http, &app.base).await;
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for name in ["webhooks_http_requests_total", "webhooks_accepted_total", "webhooks_queue_append_batch_size", "webhooks_worker_batch_size", "webhooks_e2e_latency_seconds", "webhooks_queue_depth"] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(text.contains(r#"route="/api/webhooks/payment",status="200""#), "{text}");
}

#[tokio::test]
async fn the_admin_token_guards_management_and_reads_but_not_webhooks() {
    let app = TestApp::start(&["--admin-token", "t0ken"]).await;
    let orders = format!("{}/api/orders", app.base);
    let (s, err) = post(&app.http, orders.clone(), &order("oa", 1)).await;
    assert_eq!((s, err["error"].as_str()), (401, Some("unauthorized")));
    assert!(!err.to_string().contains("t0ken"));
    for path in ["/api/orders/oa", "/api/payments/pa", "/api/stats", "/api/dead-letters"] {
        assert_eq!(get(&app.http, format!("{}{path}", app.base)).await.0, 401, "{path}");
        let wrong = app.http.get(format!("{}{path}", app.base)).bearer_auth("t0ke").send().await.unwrap();
        assert_eq!(wrong.status().as_u16(), 401, "{path}");
    }
    let r = app.http.post(orders).bearer_auth("t0ken").json(&order("oa", 1)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(post(&app.http, hook(&app), &event("payment.success", "pa", "oa", 1, "a1")).await.0, 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.http.get(format!("{}{path}", app.base)).send().await.unwrap().status().as_u16(), 200, "{path}");
    }
    let r = app.http.get(format!("{}/api/orders/oa", app.base)).bearer_auth("t0ken").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_429_and_nothing_accepted_is_lost() {
    let app = TestApp::start(&["--max-in-flight", "2"]).await;
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let (http, url) = (app.http.clone(), hook(&app));
            tokio::spawn(async move {
                let r = http.post(url).json(&event("payment.pending", &format!("pl{i}"), "ol", 1, &format!("l{i}"))).send().await.unwrap();
                (i, r.status().as_u16(), r.headers().contains_key("retry-after"))
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut shed = 0;
    for s in sends {
        match s.await.unwrap() {
            (i, 200, _) => accepted.push(i),
            (_, 429, true) => shed += 1,
            other => panic!("unexpected answer under overload: {other:?}"),
        }
    }
    assert!(shed > 0, "300 concurrent requests over a limit of 2 must shed some");
    assert!(!accepted.is_empty());
    let stats = drained(&app.http, &app.base).await;
    assert_eq!(stats["ingress"]["rejected"]["too_many_requests"], shed, "every 429 counted once: {stats}");
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for line in [
        format!("webhooks_rejected_total{{reason=\"too_many_requests\"}} {shed}"),
        format!("webhooks_http_requests_total{{route=\"/api/webhooks/payment\",status=\"429\"}} {shed}"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from /metrics");
    }
    for i in accepted {
        payment(&app, &format!("pl{i}"), |p| p["applied_events"] == 1).await;
    }
}

#[tokio::test]
async fn slow_clients_cannot_hold_a_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start(&["--header-read-timeout-ms", "300", "--request-timeout-ms", "600"]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // Headers trickled and never finished: the server closes the connection.
    let mut headers = tokio::net::TcpStream::connect(&addr).await.unwrap();
    headers.write_all(b"POST /api/webhooks/payment HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), headers.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after the header timeout");

    // Headers complete, body never sent: 408 within the request timeout.
    let mut body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    body.write_all(b"POST /api/webhooks/payment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), body.read(&mut buf)).await.expect("answered").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf[..n]));
    let (_, stats) = get(&app.http, format!("{}/api/stats", app.base)).await;
    assert_eq!(stats["ingress"]["rejected"]["timeout"], 1, "the 408 is counted: {stats}");
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("webhooks_http_requests_total{route=\"/api/webhooks/payment\",status=\"408\"} 1"), "{text}");
}

#[tokio::test]
async fn shape_errors_speak_of_the_api_not_of_rust() {
    let app = TestApp::start(&[]).await;
    let valid = r#"{"event_type":"payment.success","payment_id":"p","order_id":"o","amount":1,"currency":"USD"}"#;
    let types = "one of payment.pending, payment.success, payment.failed, payment.refunded";
    let cases: Vec<(String, &str, String)> = vec![
        (valid.replace("\"event_type\"", "\"status\""), "wrong_shape", format!("event_type is required: {types}")),
        (valid.replace("\"amount\":1", "\"amount\":\"1\""), "wrong_shape", "amount must be an integer in minor units (cents)".into()),
        (valid.replace("\"p\"", "7"), "wrong_shape", "payment_id must be a string".into()),
        (valid.replace(",\"currency\":\"USD\"", ""), "wrong_shape", "missing field currency".into()),
        ("[1]".into(), "wrong_shape", "the body must be a JSON object, not an array".into()),
        (valid[..40].into(), "malformed", "malformed JSON: the body ends before the JSON is complete (line 1, column 40)".into()),
    ];
    for (body, code, message) in cases {
        let r = app.http.post(hook(&app)).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!((err["error"].as_str(), err["message"].as_str()), (Some(code), Some(message.as_str())), "{body}");
    }
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let app = TestApp::start(&[]).await;
    let r = app.http.get(format!("{}/api/nothing-here", app.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let err: Value = r.json().await.unwrap();
    assert_eq!((err["error"].as_str(), err["message"].as_str()), (Some("not_found"), Some("no route GET /api/nothing-here")));
    let r = app.http.get(hook(&app)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"].as_str(), Some("method_not_allowed"), "{err}");
}
