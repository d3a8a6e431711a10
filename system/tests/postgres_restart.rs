//! PostgreSQL restarted during a run: the worker retries with backoff, survives, and every
//! accepted event is applied exactly once. Its own test binary, because it restarts the
//! shared server.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_nothing_and_doubles_nothing() {
    let Some(admin) = postgres_url() else { return };
    let db = FreshDatabase::create(&admin).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = free_addr();
    let base = format!("http://{addr}");
    let data = dir.path().to_string_lossy().into_owned();
    let listen = addr.to_string();
    let mut system = Proc::spawn(
        "standalone",
        &["standalone", "--data-dir", &data, "--listen", &listen, "--database", &db.url, "--batch-size", "200"],
        &[],
        &dir.path().join("standalone.log"),
    );
    let http = client();
    wait_healthy(&http, &base).await;

    let sender = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { send_all(&http, &base, workload("pg", 1500)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    services(&["down", "postgres"]);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    services(&["up", "postgres"]);
    // Ingress only needs the embedded queue: every webhook was accepted during the outage.
    let ledger = sender.await.expect("sender");
    assert_exactly_once(&http, &base, &ledger).await;
    let log = std::fs::read_to_string(dir.path().join("standalone.log")).unwrap_or_default();
    assert!(log.contains("retrying") || log.contains("waiting for it"), "the worker met the outage and retried");
    assert!(system.terminate().is_some_and(|s| s.success()), "the worker survived and shut down cleanly");
    db.drop_now().await;
}
