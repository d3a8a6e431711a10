//! The embedded log's byte cap, over real processes. With no worker running, a server fills a
//! small cap and then answers 503 + `Retry-After`, never a 200 it could not keep, and its
//! readiness fails; once a worker applies the backlog and deletes the segments, the provider's
//! retry gets 200, and every event acknowledged before and after is applied exactly once.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_refuses_with_retry_after_until_the_worker_frees_it_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let addr = free_addr().to_string();
    let base = format!("http://{addr}");
    let url = format!("{base}/api/webhooks/payment");
    let _server = Proc::spawn(
        "server",
        &["server", "--data-dir", data, "--listen", &addr, "--queue-segment-bytes", "4096", "--max-log-bytes", "32768"],
        &[],
        &log("server"),
    );
    let http = client();
    wait_healthy(&http, &base).await;

    let mut ledger = Ledger::new();
    let mut i = 0;
    let (refused, retry_after, body) = loop {
        let e = event("payment.success", &format!("cap_p{i}"), &format!("cap_o{i}"), 100, &format!("cap_e{i}"));
        let r = http.post(&url).json(&e).send().await.expect("request");
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        match status {
            200 => note_accepted(&mut ledger, &format!("cap_p{i}"), &format!("cap_e{i}")),
            503 => break (e, retry_after, body),
            other => panic!("event {i}: {other} {body}"),
        }
        i += 1;
        assert!(i < 2_000, "32 KiB never filled");
    };
    assert!(i > 10, "the cap refused early, after {i} events");
    assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("--max-log-bytes")), "{body}");
    let (ready, why) = get(&http, format!("{base}/readyz")).await;
    assert_eq!(ready, 503, "not ready while full: {why}");
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("webhooks_log_cap_refused_total 1"), "{metrics}");

    let worker_metrics = free_addr().to_string();
    let _worker = Proc::spawn("worker", &["worker", "--data-dir", data, "--metrics-listen", &worker_metrics], &[], &log("worker"));
    // The provider retries the refused event until it is taken.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = post(&http, url.clone(), &refused).await;
        if status == 200 {
            note_accepted(&mut ledger, &format!("cap_p{i}"), &format!("cap_e{i}"));
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "still refused once the worker ran: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&http, format!("{base}/readyz")).await.0, 200, "ready again");
    for j in i + 1..i + 20 {
        let (status, body) = post(&http, url.clone(), &event("payment.success", &format!("cap_p{j}"), &format!("cap_o{j}"), 100, &format!("cap_e{j}"))).await;
        assert_eq!(status, 200, "{body}");
        note_accepted(&mut ledger, &format!("cap_p{j}"), &format!("cap_e{j}"));
    }
    assert_exactly_once(&http, &base, &ledger).await;
}
