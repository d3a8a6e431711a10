//! What an incident leaves behind: every refused webhook is in the log with its reason, at a
//! bounded rate, and a timestamp outside the tolerance is told apart from a forged signature.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use webhooks::ingress::signature::sign;

const SECRET: &str = "whsec_c2VjcmV0LWZvci10cmFpbA==";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

async fn signed(http: &reqwest::Client, base: &str, id: &str, secret: &str, ts: i64) -> u16 {
    let body = event("payment.pending", "p1", "o1", 1, id).to_string();
    let sig = sign::standard(secret, id, ts, body.as_bytes()).expect("sign");
    let req = http.post(format!("{base}/api/webhooks/payment")).header("content-type", "application/json");
    let req = req.header("webhook-id", id).header("webhook-timestamp", ts.to_string()).header("webhook-signature", sig);
    req.body(body).send().await.expect("send").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_webhooks_are_logged_with_their_reason_and_clock_skew_is_not_a_forgery() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (addr, data) = (free_addr().to_string(), dir.path().to_str().expect("utf-8").to_owned());
    let log = dir.path().join("standalone.log");
    let mut proc = Proc::spawn("standalone", &["standalone", "--listen", &addr, "--data-dir", &data], &[("WEBHOOK_SECRET", SECRET)], &log);
    let (http, base) = (client(), format!("http://{addr}"));
    wait_healthy(&http, &base).await;

    for _ in 0..12 {
        let r = http.post(format!("{base}/api/webhooks/payment")).header("content-type", "text/plain").body("{}").send().await.expect("send");
        assert_eq!(r.status().as_u16(), 415);
    }
    assert_eq!(signed(&http, &base, "late", SECRET, now() - 3600).await, 401, "an hour late");
    assert_eq!(signed(&http, &base, "forged", "whsec_b3RoZXItc2VjcmV0", now()).await, 401, "another secret");

    let (_, stats) = get(&http, format!("{base}/api/stats")).await;
    let rejected = &stats["ingress"]["rejected"];
    assert_eq!((rejected["expired_timestamp"].as_u64(), rejected["bad_signature"].as_u64()), (Some(1), Some(1)), "{stats}");
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("webhooks_rejected_total{reason=\"expired_timestamp\"} 1"), "{metrics}");

    assert!(proc.terminate().is_some_and(|s| s.success()), "clean stop");
    let text = std::fs::read_to_string(&log).expect("log");
    let refused = text.lines().filter(|l| l.contains("webhook refused") && l.contains("unsupported_media_type")).count();
    assert!((1..=7).contains(&refused), "a burst of lines, then a bounded rate: {refused} for 12 refusals\n{text}");
    assert!(text.contains("held_back"), "{text}");
    assert!(text.contains("clock skew"), "the late one is told apart: {text}");
    assert!(text.contains("webhook signature refused") && text.contains("reason=\"mismatch\""), "{text}");
}
