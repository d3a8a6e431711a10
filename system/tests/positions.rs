//! Stored queue positions belong to one log. A new data directory (a replaced disk or
//! container) against a store that holds another log's position, and two instances sharing
//! one database under one consumer name, must still apply every event.

mod common;

use common::*;

fn standalone(data: &std::path::Path, listen: &str, database: &str, log: &std::path::Path) -> Proc {
    let data = data.to_string_lossy().into_owned();
    Proc::spawn("standalone", &["standalone", "--data-dir", &data, "--listen", listen, "--database", database], &[], log)
}

/// Sends `n` events for new payments of `prefix` and checks each is applied once.
async fn applied(base: &str, prefix: &str, n: usize) {
    let http = client();
    wait_healthy(&http, base).await;
    let events: Vec<_> = (0..n).map(|i| event("payment.success", &format!("{prefix}-p{i}"), &format!("{prefix}-o{i}"), 100, &format!("{prefix}-e{i}"))).collect();
    let ledger = send_all(&http, base, events).await;
    assert_exactly_once(&http, base, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_against_a_used_postgres_store_applies_its_events() {
    let Some(admin) = postgres_url() else { return };
    let db = FreshDatabase::create(&admin).await;
    let (old, new, logs) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let addr = free_addr().to_string();
    let base = format!("http://{addr}");

    let mut first = standalone(old.path(), &addr, &db.url, &logs.path().join("first.log"));
    applied(&base, "before", 300).await;
    assert!(first.terminate().is_some_and(|s| s.success()));

    // The replaced disk: its log starts again at sequence 1, below the stored position.
    let mut second = standalone(new.path(), &addr, &db.url, &logs.path().join("second.log"));
    applied(&base, "after", 5).await;
    assert!(second.terminate().is_some_and(|s| s.success()));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_one_database_apply_each_others_events_never_skip_them() {
    let Some(admin) = postgres_url() else { return };
    let db = FreshDatabase::create(&admin).await;
    let (a_dir, b_dir, logs) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let (a_addr, b_addr) = (free_addr().to_string(), free_addr().to_string());
    let _a = standalone(a_dir.path(), &a_addr, &db.url, &logs.path().join("a.log"));
    let _b = standalone(b_dir.path(), &b_addr, &db.url, &logs.path().join("b.log"));
    // A runs ahead of B: with one shared position B would skip its first events.
    applied(&format!("http://{a_addr}"), "a", 400).await;
    applied(&format!("http://{b_addr}"), "b", 50).await;
    applied(&format!("http://{a_addr}"), "a2", 20).await;
    db.drop_now().await;
}
