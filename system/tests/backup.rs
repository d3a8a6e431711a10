//! Backups and restores of the embedded log and SQLite: `webhooks backup` runs while the
//! system does and restores whole; a store restored without its log, from before the log's
//! oldest segment, is refused at start with the missing offsets, or resumed on purpose.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const SMALL_SEGMENTS: [&str; 2] = ["--queue-segment-bytes", "4096"];

fn standalone(data: &Path, addr: &str, extra: &[&str], log: &Path) -> Proc {
    let data = data.to_str().expect("utf-8");
    let mut args = vec!["standalone", "--listen", addr, "--data-dir", data];
    args.extend_from_slice(&SMALL_SEGMENTS);
    args.extend_from_slice(extra);
    Proc::spawn("standalone", &args, &[], log)
}

fn webhooks(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("run webhooks")
}

fn oldest_segment(data: &Path) -> u64 {
    let mut bases: Vec<u64> = std::fs::read_dir(data.join("log"))
        .expect("log dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    bases.sort_unstable();
    bases[0]
}

/// Replaces the store (and, when `with_log`, the log) of `data` with the backup's.
fn restore(backup: &Path, data: &Path, with_log: bool) {
    for f in ["store.db", "store.db-wal", "store.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    std::fs::copy(backup.join("store.db"), data.join("store.db")).expect("restore the store");
    if with_log {
        std::fs::remove_dir_all(data.join("log")).expect("remove the log");
        std::fs::create_dir(data.join("log")).expect("log dir");
        for e in std::fs::read_dir(backup.join("log")).expect("backup log") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), data.join("log").join(e.file_name())).expect("restore the log");
        }
    }
}

async fn run_until_drained(data: &Path, prefix: &str, payments: usize) -> Ledger {
    let addr = free_addr().to_string();
    let mut proc = standalone(data, &addr, &[], &data.join(format!("{prefix}.log")));
    let (http, base) = (client(), format!("http://{addr}"));
    wait_healthy(&http, &base).await;
    let ledger = send_all(&http, &base, workload(prefix, payments)).await;
    drained(&http, &base).await;
    assert_exactly_once(&http, &base, &ledger).await;
    assert!(proc.terminate().is_some_and(|s| s.success()));
    ledger
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_whole_and_a_store_older_than_the_log_is_refused_or_resumed_on_purpose() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, saved) = (dir.path().join("data"), dir.path().join("backup"));

    // A backup taken while the system runs and takes webhooks.
    let addr = free_addr().to_string();
    let mut proc = standalone(&data, &addr, &[], &dir.path().join("first.log"));
    let (http, base) = (client(), format!("http://{addr}"));
    wait_healthy(&http, &base).await;
    let first = send_all(&http, &base, workload("a", 60)).await;
    drained(&http, &base).await;
    let out = webhooks(&["backup", "--data-dir", data.to_str().expect("utf-8"), saved.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let position: u64 = said.split("log position ").nth(1).and_then(|s| s.split(',').next()).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{said}"));
    assert!(proc.terminate().is_some_and(|s| s.success()));

    // Later events, until the log has released what the backup's store position points at.
    run_until_drained(&data, "b", 120).await;
    assert!(oldest_segment(&data) > position + 1, "the log moved past the backup");

    // The store alone, older than the log: refused at start, naming the gap.
    restore(&saved, &data, false);
    let refused = webhooks(&["standalone", "--listen", &free_addr().to_string(), "--data-dir", data.to_str().expect("utf-8"), SMALL_SEGMENTS[0], SMALL_SEGMENTS[1]]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("the store is behind the log") && why.contains(&format!("offset {position}")), "{why}");

    // Accepted on purpose: it starts, and later webhooks apply.
    let addr = free_addr().to_string();
    let mut proc = standalone(&data, &addr, &["--accept-log-gap"], &dir.path().join("accepted.log"));
    let base = format!("http://{addr}");
    wait_healthy(&http, &base).await;
    let later = send_all(&http, &base, workload("c", 10)).await;
    assert_exactly_once(&http, &base, &later).await;
    assert!(proc.terminate().is_some_and(|s| s.success()));

    // The store with its log, as backed up: whole, and what it had acknowledged is applied.
    restore(&saved, &data, true);
    let addr = free_addr().to_string();
    let mut proc = standalone(&data, &addr, &[], &dir.path().join("restored.log"));
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy_within(&http, &base, Duration::from_millis(200)).await {
        assert!(Instant::now() < deadline && proc.child.try_wait().expect("wait").is_none(), "the restored system did not start");
    }
    assert_exactly_once(&http, &base, &first).await;
    assert!(proc.terminate().is_some_and(|s| s.success()));
}
