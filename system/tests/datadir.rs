//! A data directory belongs to one process per role: real processes, real locks.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Waits for a process that must refuse to start; returns its exit status and output.
fn refused(mut p: Proc, log: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = p.child.try_wait() {
            assert!(!status.success(), "a second {} must not start", p.name);
            return std::fs::read_to_string(log).expect("log");
        }
        assert!(Instant::now() < deadline, "{} did not refuse within 30 s", p.name);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_refused_with_the_holders_pid_and_a_crash_frees_the_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let standalone = |n: &str, addr: &str| Proc::spawn("standalone", &["standalone", "--data-dir", data, "--listen", addr], &[], &log(n));
    let http = client();

    let first_addr = free_addr().to_string();
    let mut first = standalone("first", &first_addr);
    wait_healthy(&http, &format!("http://{first_addr}")).await;
    let pid = first.child.id();

    for (name, args) in [
        ("second", vec!["standalone", "--data-dir", data, "--listen", "127.0.0.1:0"]),
        ("server", vec!["server", "--data-dir", data, "--listen", "127.0.0.1:0"]),
        ("worker", vec!["worker", "--data-dir", data]),
    ] {
        let out = refused(Proc::spawn(name, &args, &[], &log(name)), &log(name));
        assert!(out.contains("already used by a") && out.contains(&format!("(pid {pid})")), "{name}: {out}");
    }

    // SIGKILL: no clean-up code runs, yet the OS has released the lock.
    first.kill9();
    let again_addr = free_addr().to_string();
    let mut again = standalone("again", &again_addr);
    wait_healthy(&http, &format!("http://{again_addr}")).await;
    assert!(again.terminate().is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_mode_shares_a_directory_between_one_server_and_one_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let addr = free_addr().to_string();
    let mut server = Proc::spawn("server", &["server", "--data-dir", data, "--listen", &addr], &[], &log("server"));
    let metrics = free_addr().to_string();
    let mut worker = Proc::spawn("worker", &["worker", "--data-dir", data, "--metrics-listen", &metrics], &[], &log("worker"));
    let http = client();
    wait_healthy(&http, &format!("http://{addr}")).await;
    wait_healthy(&http, &format!("http://{metrics}")).await;

    let out = refused(Proc::spawn("worker", &["worker", "--data-dir", data], &[], &log("worker2")), &log("worker2"));
    assert!(out.contains(&format!("worker process (pid {})", worker.child.id())), "{out}");
    assert!(server.terminate().is_some_and(|s| s.success()));
    assert!(worker.terminate().is_some_and(|s| s.success()));
}
