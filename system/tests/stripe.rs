//! Stripe's events end to end: objects as Stripe's official API mock (stripe-mock) serves them,
//! wrapped in Stripe's documented event envelope, signed as Stripe's libraries sign, sent to
//! `POST /api/webhooks/stripe` of the whole system in process; then the orders and payments.
//!
//! The objects come from a running stripe-mock at `STRIPE_MOCK_URL` (scripts/test.sh starts
//! one); without it, from copies captured from stripe-mock in `tests/stripe_fixtures/`.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use webhooks::ingress::signature::sign;

const SECRET: &str = "whsec_stripe_test_secret";

/// A PaymentIntent, a charge and a dispute, as stripe-mock serves them.
struct Objects {
    payment_intent: Value,
    charge: Value,
    dispute: Value,
}

async fn objects() -> Objects {
    let Some(base) = std::env::var("STRIPE_MOCK_URL").ok().filter(|u| !u.is_empty()) else {
        assert!(std::env::var_os("REQUIRE_SERVICES").is_none(), "REQUIRE_SERVICES is set but STRIPE_MOCK_URL is not: start stripe-mock");
        let file = |name: &str| -> Value {
            let path = format!("{}/tests/stripe_fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
            serde_json::from_str(&std::fs::read_to_string(&path).expect("captured fixture")).expect("fixture is JSON")
        };
        return Objects { payment_intent: file("payment_intent"), charge: file("charge"), dispute: file("dispute") };
    };
    let http = reqwest::Client::new();
    let fetch = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http.get(format!("{base}/v1/{path}")).bearer_auth("sk_test_123").send().await.expect("stripe-mock answers");
            assert!(r.status().is_success(), "stripe-mock {path}: {}", r.status());
            r.json::<Value>().await.expect("stripe-mock JSON")
        }
    };
    Objects { payment_intent: fetch("payment_intents/pi_123").await, charge: fetch("charges/ch_123").await, dispute: fetch("disputes/dp_123").await }
}

impl Objects {
    /// The mock's PaymentIntent as this purchase's: its id, amount and order.
    fn intent(&self, pi: &str, order: Option<&str>, amount: i64, status: &str) -> Value {
        let mut o = self.payment_intent.clone();
        o["id"] = json!(pi);
        o["amount"] = json!(amount);
        o["status"] = json!(status);
        o["metadata"] = order.map_or(json!({}), |order| json!({ "order_id": order }));
        o
    }

    /// The mock's charge as this purchase's, refunded by `refunded` so far.
    fn charge(&self, pi: &str, order: &str, amount: i64, refunded: i64) -> Value {
        let mut o = self.charge.clone();
        o["id"] = json!(format!("ch_{pi}"));
        o["payment_intent"] = json!(pi);
        o["amount"] = json!(amount);
        o["amount_refunded"] = json!(refunded);
        o["refunded"] = json!(refunded == amount);
        o["metadata"] = json!({ "order_id": order });
        o
    }

    /// The mock's dispute on this purchase: its metadata names no order, as a real one's rarely does.
    fn dispute(&self, pi: &str, amount: i64, status: &str) -> Value {
        let mut o = self.dispute.clone();
        o["id"] = json!(format!("dp_{pi}"));
        o["charge"] = json!(format!("ch_{pi}"));
        o["payment_intent"] = json!(pi);
        o["amount"] = json!(amount);
        o["status"] = json!(status);
        o
    }
}

/// Stripe's event envelope, as documented (https://docs.stripe.com/api/events/object).
fn envelope(id: &str, event_type: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
    })
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Posts `body` as Stripe does: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`.
async fn deliver(app: &TestApp, body: &[u8]) -> (u16, Value) {
    let signature = sign::stripe(SECRET, now(), body).expect("sign");
    let r = app
        .http
        .post(format!("{}/api/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn send(app: &TestApp, event: &Value) -> Value {
    let (status, answer) = deliver(app, event.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn start() -> TestApp {
    TestApp::start(&["--stripe-webhook-secret", SECRET]).await
}

async fn create_order(app: &TestApp, id: &str, total: i64) {
    let (status, body) = post(&app.http, format!("{}/api/orders", app.base), &order(id, total)).await;
    assert_eq!(status, 201, "{body}");
}

async fn order_status(app: &TestApp, id: &str) -> String {
    drained(&app.http, &app.base).await;
    let (_, o) = get(&app.http, format!("{}/api/orders/{id}", app.base)).await;
    o["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_order_is_paid_partly_refunded_refunded_then_disputed() {
    let (app, mock) = (start().await, objects().await);
    create_order(&app, "order_s1", 2000).await;
    let t = now();
    let answer = send(&app, &envelope("evt_s1_ok", "payment_intent.succeeded", t, mock.intent("pi_s1", Some("order_s1"), 2000, "succeeded"))).await;
    assert_eq!((answer["status"].as_str(), answer["event_id"].as_str()), (Some("accepted"), Some("evt_s1_ok")));
    send(&app, &envelope("evt_s1_ch", "charge.succeeded", t, mock.charge("pi_s1", "order_s1", 2000, 0))).await;
    assert_eq!(order_status(&app, "order_s1").await, "paid");

    send(&app, &envelope("evt_s1_r1", "charge.refunded", t + 1, mock.charge("pi_s1", "order_s1", 2000, 500))).await;
    assert_eq!(order_status(&app, "order_s1").await, "partially_refunded", "a partial refund leaves the order standing");
    send(&app, &envelope("evt_s1_r2", "charge.refunded", t + 2, mock.charge("pi_s1", "order_s1", 2000, 2000))).await;
    assert_eq!(order_status(&app, "order_s1").await, "refunded");

    send(&app, &envelope("evt_s1_d1", "charge.dispute.created", t + 3, mock.dispute("pi_s1", 2000, "needs_response"))).await;
    assert_eq!(order_status(&app, "order_s1").await, "disputed", "the dispute's order is its payment's");
    send(&app, &envelope("evt_s1_d2", "charge.dispute.closed", t + 4, mock.dispute("pi_s1", 2000, "lost"))).await;
    assert_eq!(order_status(&app, "order_s1").await, "dispute_lost");
    let (_, p) = get(&app.http, format!("{}/api/payments/pi_s1", app.base)).await;
    assert_eq!((p["status"].as_str(), p["currency"].as_str(), p["events"].as_array().map(Vec::len)), (Some("dispute_lost"), Some("USD"), Some(6)));
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn redeliveries_are_duplicates_and_arrival_order_does_not_matter() {
    let (app, mock) = (start().await, objects().await);
    create_order(&app, "order_s2", 2000).await;
    let t = now();
    let events = [
        envelope("evt_s2_won", "charge.dispute.closed", t + 4, {
            // A closed dispute can name its order itself; the order need not be known yet.
            let mut d = mock.dispute("pi_s2", 2000, "won");
            d["metadata"] = json!({ "order_id": "order_s2" });
            d
        }),
        envelope("evt_s2_refund", "charge.refunded", t + 2, mock.charge("pi_s2", "order_s2", 2000, 300)),
        envelope("evt_s2_ok", "payment_intent.succeeded", t, mock.intent("pi_s2", Some("order_s2"), 2000, "succeeded")),
        envelope("evt_s2_proc", "payment_intent.processing", t - 1, mock.intent("pi_s2", Some("order_s2"), 2000, "processing")),
    ];
    for e in events.iter().chain(events.iter()) {
        send(&app, e).await;
    }
    let stats = drained(&app.http, &app.base).await;
    assert_eq!((stats["worker"]["processed"].as_u64(), stats["worker"]["duplicates"].as_u64()), (Some(4), Some(4)), "{stats}");
    assert_eq!(order_status(&app, "order_s2").await, "dispute_won", "the highest rank wins, whatever came first");
    let (_, p) = get(&app.http, format!("{}/api/payments/pi_s2", app.base)).await;
    assert_eq!(p["applied_events"], 4, "each event applied once: {p}");
    app.stop().await.expect("clean stop");
}

/// Before money moved, Stripe's `created` decides: a retry after a failure is pending again,
/// and a failure created before the retry, delivered after it, changes nothing.
#[tokio::test]
async fn created_orders_the_attempts_before_money_moves() {
    let (app, mock) = (start().await, objects().await);
    let t = now();
    let intent = |status| mock.intent("pi_s7", Some("order_s7"), 2000, status);
    send(&app, &envelope("evt_s7_retry", "payment_intent.processing", t + 2, intent("processing"))).await;
    send(&app, &envelope("evt_s7_fail", "payment_intent.payment_failed", t + 1, intent("requires_payment_method"))).await;
    send(&app, &envelope("evt_s7_first", "payment_intent.processing", t, intent("processing"))).await;
    drained(&app.http, &app.base).await;
    let (_, p) = get(&app.http, format!("{}/api/payments/pi_s7", app.base)).await;
    assert_eq!(p["status"], "pending", "{p}");
    send(&app, &envelope("evt_s7_fail2", "payment_intent.payment_failed", t + 3, intent("requires_payment_method"))).await;
    drained(&app.http, &app.base).await;
    let (_, p) = get(&app.http, format!("{}/api/payments/pi_s7", app.base)).await;
    assert_eq!(p["status"], "failed", "{p}");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn unhandled_types_are_answered_200_and_counted_by_type() {
    let (app, mock) = (start().await, objects().await);
    for (i, t) in ["customer.created", "customer.created", "invoice.paid"].iter().enumerate() {
        let answer = send(&app, &envelope(&format!("evt_s3_{i}"), t, now(), mock.payment_intent.clone())).await;
        assert_eq!(answer["status"], "ignored");
    }
    let shapeless = send(&app, &envelope("evt_s3_x", "invoice.paid", now(), json!({ "id": "in_1" }))).await;
    assert_eq!(shapeless["status"], "ignored", "an ignored type's object is not read");
    let (_, stats) = get(&app.http, format!("{}/api/stats", app.base)).await;
    let stripe = &stats["ingress"]["stripe"];
    assert_eq!((&stripe["ignored"]["customer.created"], &stripe["ignored"]["invoice.paid"]), (&json!(2), &json!(2)), "{stats}");
    assert_eq!(stripe["api_versions"]["2024-06-20"], 4);
    assert_eq!(stats["ingress"]["accepted"], 0, "nothing queued, so nothing for the worker to meet");
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains(r#"webhooks_stripe_ignored_total{event_type="customer.created"} 2"#), "{text}");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_event_without_an_order_is_kept_for_an_operator() {
    let (app, mock) = (start().await, objects().await);
    let event = envelope("evt_s4", "payment_intent.succeeded", now(), mock.intent("pi_s4", None, 2000, "succeeded"));
    for _ in 0..2 {
        let answer = send(&app, &event).await;
        assert_eq!(answer["status"], "recorded_for_operator", "{answer}");
        assert!(answer["reason"].as_str().is_some_and(|r| r.starts_with("no order id: metadata.order_id is missing")), "{answer}");
    }
    let (_, letters) = get(&app.http, format!("{}/api/dead-letters", app.base)).await;
    assert_eq!(letters["count"], 1, "one letter per event, however often Stripe sends it: {letters}");
    let letter = &letters["items"][0];
    assert_eq!((letter["event_id"].as_str(), letter["payment_id"].as_str(), letter["attempts"].as_u64()), (Some("evt_s4"), Some("pi_s4"), Some(2)));
    assert!(letter["payload"].as_str().is_some_and(|p| p.contains("\"api_version\"")), "the whole event is kept");
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_order_key_is_configurable() {
    let app = TestApp::start(&["--stripe-webhook-secret", SECRET, "--stripe-order-key", "shop_order"]).await;
    let mock = objects().await;
    create_order(&app, "order_s5", 2000).await;
    let mut pi = mock.intent("pi_s5", None, 2000, "succeeded");
    pi["metadata"] = json!({ "shop_order": "order_s5" });
    pi["currency"] = json!("USD");
    send(&app, &envelope("evt_s5", "payment_intent.succeeded", now(), pi)).await;
    assert_eq!(order_status(&app, "order_s5").await, "paid", "currency compared whatever its case");
    app.stop().await.expect("clean stop");
}

/// Each bad event is refused with the field and what it must be, and leaves no trace behind.
#[tokio::test]
async fn bad_events_name_the_field_and_apply_nothing() {
    let app = TestApp::start(&["--stripe-webhook-secret", SECRET, "--max-body-bytes", "16384"]).await;
    let mock = objects().await;
    let good = envelope("evt_s6", "payment_intent.succeeded", now(), mock.intent("pi_s6", Some("order_s6"), 2000, "succeeded"));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = good.clone();
        f(&mut e);
        e.to_string().into_bytes()
    };
    let cases: Vec<(Vec<u8>, u16, &str, &str)> = vec![
        (with(&|e| e["data"]["object"]["amount"] = json!("2000")), 400, "wrong_shape", "data.object.amount must be an integer in the smallest currency unit"),
        (with(&|e| e["data"]["object"]["amount"] = json!(20.5)), 400, "wrong_shape", "data.object.amount must be an integer"),
        (with(&|e| drop(e["data"]["object"].as_object_mut().map(|o| o.remove("currency")))), 400, "wrong_shape", "missing field data.object.currency"),
        (with(&|e| drop(e.as_object_mut().map(|o| o.remove("created")))), 400, "wrong_shape", "created is required: an integer"),
        (with(&|e| e["data"]["object"]["object"] = json!("charge")), 400, "wrong_shape", "data.object.object must be \"payment_intent\" for payment_intent.succeeded"),
        (with(&|e| drop(e["data"]["object"].as_object_mut().map(|o| o.remove("object")))), 400, "wrong_shape", "data.object.object must be \"payment_intent\""),
        (with(&|e| e["livemode"] = json!(true)), 422, "invalid", "invalid livemode: a live-mode event sent to an endpoint that serves test mode"),
        (with(&|e| e["data"]["object"]["description"] = json!("x".repeat(20_000))), 413, "payload_too_large", "body larger than 16384 bytes"),
    ];
    for (body, status, code, message) in cases {
        let (got, answer) = deliver(&app, &body).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{answer}");
        assert!(answer["message"].as_str().is_some_and(|m| m.starts_with(message)), "want {message:?}, got {answer}");
    }
    let signature = sign::stripe("whsec_wrong", now(), good.to_string().as_bytes()).expect("sign");
    let r = app.http.post(format!("{}/api/webhooks/stripe", app.base)).header("content-type", "application/json").header("stripe-signature", signature).body(good.to_string()).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401, "a wrong secret is refused");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get(&app.http, format!("{}/api/payments/pi_s6", app.base)).await;
    assert_eq!(status, 404, "nothing half applied");
    let (_, letters) = get(&app.http, format!("{}/api/dead-letters", app.base)).await;
    assert_eq!(letters["count"], 0);
    app.stop().await.expect("clean stop");
}
