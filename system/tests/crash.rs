//! Crash safety with real processes: SIGKILL the worker mid-run, or the server right after
//! it answered 200; afterwards every accepted event is applied exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Split {
    dir: tempfile::TempDir,
    base: String,
    listen: String,
}

impl Split {
    fn new() -> Self {
        let addr = free_addr();
        Self { dir: tempfile::tempdir().expect("temp dir"), base: format!("http://{addr}"), listen: addr.to_string() }
    }

    fn data(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    fn server(&self, n: usize) -> Proc {
        let log = self.dir.path().join(format!("server-{n}.log"));
        Proc::spawn("server", &["server", "--data-dir", self.data(), "--listen", &self.listen], &[], &log)
    }

    fn worker(&self, n: usize) -> Proc {
        let log = self.dir.path().join(format!("worker-{n}.log"));
        Proc::spawn("worker", &["worker", "--data-dir", self.data(), "--batch-size", "200"], &[], &log)
    }

    fn worker_with_metrics(&self, n: usize, addr: &str) -> Proc {
        let log = self.dir.path().join(format!("worker-{n}.log"));
        Proc::spawn("worker", &["worker", "--data-dir", self.data(), "--metrics-listen", addr], &[], &log)
    }
}

/// Event ids accepted per payment: what must be applied, each exactly once.
type Ledger = BTreeMap<String, Vec<String>>;

async fn send_all(http: &reqwest::Client, base: &str, events: Vec<Value>) -> Ledger {
    let url = format!("{base}/api/webhooks/payment");
    let mut ledger = Ledger::new();
    let mut in_flight = tokio::task::JoinSet::new();
    for e in events {
        if in_flight.len() >= 32 {
            record(&mut ledger, in_flight.join_next().await);
        }
        let (http, url) = (http.clone(), url.clone());
        in_flight.spawn(async move { (post(&http, url, &e).await.0, e) });
    }
    while let Some(done) = in_flight.join_next().await {
        record(&mut ledger, Some(done));
    }
    ledger
}

fn record(ledger: &mut Ledger, done: Option<Result<(u16, Value), tokio::task::JoinError>>) {
    let (status, e) = done.expect("a task").expect("task ran");
    assert_eq!(status, 200, "every valid event is accepted: {e}");
    let ids = ledger.entry(e["payment_id"].as_str().unwrap().to_owned()).or_default();
    let id = e["event_id"].as_str().unwrap().to_owned();
    if !ids.contains(&id) {
        ids.push(id);
    }
}

/// Events for `payments` payments: pending then success, plus every tenth resent.
fn workload(prefix: &str, payments: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..payments {
        let (p, o) = (format!("{prefix}p{i}"), format!("{prefix}o{i}"));
        out.push(event("payment.pending", &p, &o, 100, &format!("{p}-1")));
        out.push(event("payment.success", &p, &o, 100, &format!("{p}-2")));
        if i % 10 == 0 {
            out.push(event("payment.success", &p, &o, 100, &format!("{p}-2")));
        }
    }
    out
}

/// Every accepted event is recorded once and applied once, for every payment.
async fn assert_exactly_once(http: &reqwest::Client, base: &str, ledger: &Ledger) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for (payment, ids) in ledger {
        loop {
            let (status, p) = get(http, format!("{base}/api/payments/{payment}")).await;
            let recorded: Vec<&str> = p["events"].as_array().map(|e| e.iter().filter_map(|x| x["event_id"].as_str()).collect()).unwrap_or_default();
            if status == 200 && recorded.len() >= ids.len() {
                let mut sorted = recorded.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), recorded.len(), "an event recorded twice: {p}");
                assert!(ids.iter().all(|id| recorded.contains(&id.as_str())), "lost event: {ids:?} vs {p}");
                assert_eq!(p["applied_events"].as_u64(), Some(ids.len() as u64), "applied twice: {p}");
                break;
            }
            assert!(Instant::now() < deadline, "events of {payment} not applied in time: {p}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_run_loses_nothing_and_applies_nothing_twice() {
    let sys = Split::new();
    let _server = sys.server(0);
    let http = client();
    wait_healthy(&http, &sys.base).await;
    let mut worker = sys.worker(0);

    let sender = tokio::spawn({
        let (http, base) = (http.clone(), sys.base.clone());
        async move { send_all(&http, &base, workload("k", 1500)).await }
    });
    for n in 1..=3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        worker.kill9();
        worker = sys.worker(n);
    }
    let ledger = sender.await.expect("sender");
    assert_eq!(ledger.values().map(Vec::len).sum::<usize>(), 3000);
    assert_exactly_once(&http, &sys.base, &ledger).await;
    assert!(worker.terminate().is_some_and(|s| s.success()), "graceful worker exit");

    // A restarted worker finds nothing left to do: the stored position covers everything.
    let metrics = free_addr();
    let mut last = sys.worker_with_metrics(9, &metrics.to_string());
    let base = format!("http://{metrics}");
    wait_healthy(&http, &base).await;
    let stats = eventually(&http, format!("{base}/api/stats"), Duration::from_secs(10), |s| s["queue"]["depth"] == 0).await;
    assert_eq!(stats["worker"]["processed"], 0, "{stats}");
    assert!(last.terminate().is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_right_after_200_keeps_the_event() {
    let sys = Split::new();
    let mut server = sys.server(0);
    let http = client();
    wait_healthy(&http, &sys.base).await;
    let ledger = send_all(&http, &sys.base, workload("s", 50)).await;
    server.kill9();

    let _server = sys.server(1);
    wait_healthy(&http, &sys.base).await;
    let _worker = sys.worker(0);
    assert_exactly_once(&http, &sys.base, &ledger).await;
}
