//! Dead letters an operator can act on, over HTTP and the `webhooks dlq` command.

mod common;

use std::process::Command;

use common::*;
use webhooks::domain::{EventType, PaymentEvent};
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::{DeadLetter, Store};

fn payment_event(id: &str, payment: &str, order: &str) -> PaymentEvent {
    PaymentEvent {
        event_id: id.into(),
        event_type: EventType::Success,
        payment_id: payment.into(),
        order_id: order.into(),
        amount: 100,
        currency: "USD".into(),
        created_at: None,
        received_at_us: 1,
        request_id: None,
        traceparent: None,
    }
}

#[tokio::test]
async fn replay_applies_what_never_applied_and_does_nothing_for_what_did() {
    let app = TestApp::start(&[]).await;
    let hook = format!("{}/api/webhooks/payment", app.base);
    post(&app.http, hook, &event("payment.success", "pa", "oa", 100, "applied-1")).await;
    drained(&app.http, &app.base).await;

    // As if a bug had made these fail: one was in fact applied, one never was.
    let store = SqliteStore::open(&app.dir.path().join("store.db")).expect("store");
    let letters = [
        DeadLetter::for_event(&payment_event("applied-1", "pa", "oa"), "simulated".into(), 8),
        DeadLetter::for_event(&payment_event("never-1", "pb", "ob"), "simulated".into(), 8),
    ];
    store.dead_letter("ops", &letters, &[]).await.expect("dead letters");
    let (_, listed) = get(&app.http, format!("{}/api/dead-letters", app.base)).await;
    assert_eq!(listed["count"], 2);

    let (s, report) = post(&app.http, format!("{}/api/dead-letters/replay", app.base), &serde_json::json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["replayed"].as_array().map(Vec::len), Some(2));
    // Replays bypass ingress, so wait for the worker's outcomes rather than for `accepted`.
    let stats = eventually(&app.http, format!("{}/api/stats", app.base), std::time::Duration::from_secs(20), |s| {
        s["worker"]["processed"].as_u64().unwrap_or(0) + s["worker"]["duplicates"].as_u64().unwrap_or(0) == 3
    })
    .await;
    assert_eq!(stats["worker"]["duplicates"], 1, "the applied one did nothing: {stats}");
    let (_, pb) = get(&app.http, format!("{}/api/payments/pb", app.base)).await;
    assert_eq!((pb["status"].as_str(), pb["applied_events"].as_i64()), (Some("success"), Some(1)));
    let (_, pa) = get(&app.http, format!("{}/api/payments/pa", app.base)).await;
    assert_eq!(pa["applied_events"], 1);
    let (_, waiting) = get(&app.http, format!("{}/api/dead-letters", app.base)).await;
    assert_eq!(waiting["count"], 0, "both replayed: {waiting}");
    let (_, everything) = get(&app.http, format!("{}/api/dead-letters?include_replayed=true", app.base)).await;
    assert_eq!(everything["count"], 2);
}

// Several threads: `dlq replay` goes through this process's server while the test waits on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_that_fails_again_waits_again_and_the_cli_sees_it() {
    let app = TestApp::start(&[]).await;
    let hook = format!("{}/api/webhooks/payment", app.base);
    post(&app.http, hook.clone(), &event("payment.pending", "pc", "oc", 100, "first")).await;
    drained(&app.http, &app.base).await;
    post(&app.http, hook, &event("payment.success", "pc", "elsewhere", 100, "conflict")).await;
    drained(&app.http, &app.base).await;

    let data = app.dir.path().to_str().expect("utf-8");
    let list = Command::new(BIN).args(["dlq", "--data-dir", data, "list"]).output().expect("dlq list");
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && out.contains("1 dead letter(s)") && out.contains("conflict"), "{out}");
    let id = out.lines().nth(1).and_then(|l| l.split_whitespace().next()).expect("an id").to_owned();
    let show = Command::new(BIN).args(["dlq", "--data-dir", data, "show", &id]).output().expect("dlq show");
    assert!(String::from_utf8_lossy(&show.stdout).contains("belongs to order oc"));

    let replay = Command::new(BIN).args(["dlq", "--data-dir", data, "replay", "--all"]).output().expect("dlq replay");
    let out = String::from_utf8_lossy(&replay.stdout);
    assert!(out.contains("replayed 1 event(s) through the running server at"), "{replay:?}");
    // The running worker picks the replay up from the shared queue file and fails it again.
    let d = eventually(&app.http, format!("{}/api/dead-letters", app.base), std::time::Duration::from_secs(20), |d| {
        d["count"] == 1 && d["items"][0]["attempts"].as_i64() >= Some(2)
    })
    .await;
    assert!(d["items"][0]["replayed_at_us"].is_null(), "waiting again: {d}");
    let (_, pc) = get(&app.http, format!("{}/api/payments/pc", app.base)).await;
    assert_eq!((pc["status"].as_str(), pc["order_id"].as_str()), (Some("pending"), Some("oc")));

    // A replay that opened a second writer on the live log once made the next acknowledged
    // webhook vanish: both writers numbered from the same end.
    let hook = format!("{}/api/webhooks/payment", app.base);
    for i in 0..5 {
        let (s, _) = post(&app.http, hook.clone(), &event("payment.success", &format!("after-{i}"), &format!("oa-{i}"), 100, &format!("after-{i}"))).await;
        assert_eq!(s, 200);
    }
    // The replay bypassed ingress, so `accepted` does not count it: wait for the outcomes.
    let within = std::time::Duration::from_secs(20);
    eventually(&app.http, format!("{}/api/stats", app.base), within, |s| s["worker"]["applied"] == 6).await;
    for i in 0..5 {
        let (s, p) = get(&app.http, format!("{}/api/payments/after-{i}", app.base)).await;
        assert_eq!((s, p["status"].as_str()), (200, Some("success")), "event {i} after the replay: {p}");
    }
}
