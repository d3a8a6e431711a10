//! The broker stopped while the server runs without the spool (`--spool false`): 503 within
//! the produce timeout, never a 200 for an event that is not stored; after the broker is
//! back, events flow again and every event that got a 200 is applied. Its own test binary,
//! because it stops the shared broker.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_gets_503s_and_every_200_is_applied_after_recovery() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    let http = client();
    let _server = sys.server(0, &["--kafka-produce-timeout-ms", "3000", "--spool", "false"]);
    wait_healthy(&http, &sys.base).await;
    let _worker = sys.worker(0, free_addr());
    let mut ledger = send_all(&http, &sys.base, workload("before", 50)).await;

    services(&["down", "kafka"]);
    let url = format!("{}/api/webhooks/payment", sys.base);
    let started = Instant::now();
    let r = http.post(&url).json(&event("payment.pending", "out-p", "out-o", 1, "out-1")).send().await.expect("answer");
    let waited = started.elapsed();
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    services(&["up", "kafka"]);
    assert_eq!(status, 503, "no 200 while the broker is down");
    assert!(retry_after, "503 carries Retry-After");
    assert!(waited < Duration::from_secs(10), "answered within the produce timeout, not a hang: {waited:?}");

    // The broker is back: new events flow (the first may still meet a reconnecting producer).
    let deadline = Instant::now() + Duration::from_secs(60);
    while post(&http, url.clone(), &event("payment.pending", "after-p", "after-o", 1, "after-1")).await.0 != 200 {
        assert!(Instant::now() < deadline, "events do not flow after the broker came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ledger.entry("after-p".into()).or_default().push("after-1".into());
    ledger.extend(send_all(&http, &sys.base, workload("after", 50)).await);
    assert_exactly_once(&http, &sys.base, &ledger).await;
}
