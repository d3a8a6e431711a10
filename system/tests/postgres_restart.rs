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

    // Half the traffic before the outage, half during it: ingress only needs the embedded
    // queue, so every webhook is accepted, and the worker is certain to meet the outage.
    let mut events = workload("pg", 1500);
    let during = events.split_off(events.len() / 2);
    let mut ledger = send_all(&http, &base, events).await;
    services(&["down", "postgres"]);
    ledger.extend(send_all(&http, &base, during).await);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    services(&["up", "postgres"]);
    assert_exactly_once(&http, &base, &ledger).await;
    let (_, stats) = get(&http, format!("{base}/api/stats")).await;
    assert!(stats["worker"]["retries"].as_u64().unwrap_or(0) > 0, "the worker met the outage and retried: {stats}");
    assert!(system.terminate().is_some_and(|s| s.success()), "the worker survived and shut down cleanly");
    db.drop_now().await;
}
