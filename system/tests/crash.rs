//! Crash safety with real processes: SIGKILL the worker mid-run, or the server right after
//! it answered 200; afterwards every accepted event is applied exactly once.

mod common;

use std::time::Duration;

use common::*;

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
