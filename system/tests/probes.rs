//! What orchestrators and on-call engineers see: liveness, readiness and metrics answer while
//! the webhooks are saturated; SIGTERM drains before it stops; a worker whose loop stands
//! still says so; a Kafka-mode server starts without its database; the schema is migrated by
//! a command, and a newer one than the binary knows is refused.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Polls `url` until `check` holds on its status and JSON body, or panics after `within`.
async fn until(http: &reqwest::Client, url: &str, within: Duration, check: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(url).send().await {
            let status = r.status().as_u16();
            let body = r.json().await.unwrap_or(Value::Null);
            if check(status, &body) {
                return (status, body);
            }
            assert!(Instant::now() < deadline, "{url}: condition not met within {within:?}; last {status} {body}");
        }
        assert!(Instant::now() < deadline, "{url}: no answer within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook whose body never finishes: it holds a slot once the server has it.
fn hold(addr: &str) -> std::net::TcpStream {
    let mut held = std::net::TcpStream::connect(addr).expect("connect");
    write!(held, "POST /api/webhooks/payment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").expect("send");
    held.set_nonblocking(true).expect("non-blocking");
    held
}

/// Whether the server answered (or closed) a held request.
fn answered(held: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!((&*held).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_every_webhook_slot_is_taken() {
    let app = TestApp::start(&["--max-in-flight", "1", "--request-timeout-ms", "60000"]).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut held = hold(&addr);
    let url = format!("{}/api/webhooks/payment", app.base);
    // Once the held request has reached the server, every other webhook is shed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A webhook that had the slot when the held one arrived got it shed: hold it again.
        if answered(&held) {
            held = hold(&addr);
        }
        let (status, body) = post(&app.http, url.clone(), &event("payment.success", "p1", "o1", 100, "e1")).await;
        if status == 429 {
            break;
        }
        assert!(Instant::now() < deadline, "webhooks were never shed; last answer {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = app.http.get(format!("{}{path}", app.base)).send().await.expect("probe");
        assert_eq!(r.status().as_u16(), 200, "{path} answers beside a saturated webhook route");
    }
    drop(held);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_and_keeps_serving_for_the_drain_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = free_addr().to_string();
    let base = format!("http://{addr}");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let mut proc = Proc::spawn(
        "standalone",
        &["standalone", "--listen", &addr, "--data-dir", &data, "--shutdown-drain-ms", "3000"],
        &[],
        &dir.path().join("standalone.log"),
    );
    let http = client();
    wait_healthy(&http, &base).await;
    assert_eq!(get(&http, format!("{base}/readyz")).await.0, 200);
    let pid = proc.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let (_, ready) = until(&http, &format!("{base}/readyz"), Duration::from_secs(10), |s, _| s == 503).await;
    assert_eq!(ready["draining"], true, "{ready}");
    // New requests are still served while the load balancer catches up.
    let (status, _) = post(&http, format!("{base}/api/webhooks/payment"), &event("payment.success", "p1", "o1", 100, "e1")).await;
    assert_eq!(status, 200, "a webhook during the drain period is acknowledged");
    assert_eq!(get(&http, format!("{base}/healthz")).await.0, 200, "still alive while draining");
    assert!(proc.child.try_wait().expect("wait").is_none(), "still running inside the drain period");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = proc.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop after the drain period");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a drained stop is clean: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stuck_on_its_store_reports_it_and_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8").to_owned();
    let (listen, metrics) = (free_addr().to_string(), free_addr().to_string());
    let (base, worker_base) = (format!("http://{listen}"), format!("http://{metrics}"));
    let _server = Proc::spawn("server", &["server", "--listen", &listen, "--data-dir", &data], &[], &dir.path().join("server.log"));
    let http = client();
    wait_healthy(&http, &base).await;
    let worker_args = ["worker", "--data-dir", &data, "--metrics-listen", &metrics, "--stall-secs", "1", "--max-attempts", "1000", "--retry-cap-ms", "200"];
    let _worker = Proc::spawn("worker", &worker_args, &[], &dir.path().join("worker.log"));
    until(&http, &format!("{worker_base}/readyz"), Duration::from_secs(30), |s, _| s == 200).await;

    // Another writer holds the database: every batch the worker tries waits and fails.
    let lock = rusqlite::Connection::open(dir.path().join("store.db")).expect("open store");
    lock.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS held (x INTEGER);").expect("hold the write lock");
    let (status, _) = post(&http, format!("{base}/api/webhooks/payment"), &event("payment.success", "p1", "o1", 100, "e1")).await;
    assert_eq!(status, 200);
    let (_, ready) = until(&http, &format!("{worker_base}/readyz"), Duration::from_secs(30), |s, _| s == 503).await;
    assert!(ready["worker"].as_str().is_some_and(|w| w.contains("has not advanced")), "{ready}");
    let text = http.get(format!("{worker_base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let since: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("webhooks_worker_seconds_since_progress "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the gauge is exposed");
    assert!(since >= 1, "{since}");

    lock.execute_batch("ROLLBACK").expect("release");
    drop(lock);
    until(&http, &format!("{worker_base}/readyz"), Duration::from_secs(60), |s, _| s == 200).await;
    eventually(&http, format!("{base}/api/payments/p1"), Duration::from_secs(30), |p| p["status"] == "success").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_mode_server_starts_and_acknowledges_without_its_database() {
    let Some(brokers) = kafka_brokers() else { return };
    let sys = KafkaSystem::new(&brokers);
    // Nothing listens on port 1: the database is away for the whole test.
    let _server = sys.server(0, &["--database", "postgres://webhooks@127.0.0.1:1/absent"]);
    let http = client();
    wait_healthy(&http, &sys.base).await;
    let (status, ready) = until(&http, &format!("{}/readyz", sys.base), Duration::from_secs(30), |s, _| s == 200).await;
    assert_eq!(status, 200);
    assert_eq!(ready["queue"], "ok");
    assert_ne!(ready["store"], "ok", "the store's state is shown, not decisive: {ready}");
    let (status, _) = post(&http, format!("{}/api/webhooks/payment", sys.base), &event("payment.success", "p1", "o1", 100, "e1")).await;
    assert_eq!(status, 200);
}

fn webhooks(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("run webhooks")
}

#[test]
fn migrate_is_a_command_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let first = webhooks(&["migrate", "--data-dir", data]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let said = String::from_utf8_lossy(&first.stdout).into_owned();
    let version: u32 = said.trim().rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no version in {said:?}"));
    assert!(version > 0);
    assert_eq!(String::from_utf8_lossy(&webhooks(&["migrate", "--data-dir", data]).stdout), said, "migrating twice changes nothing");

    // A newer binary migrated this store further.
    let db = rusqlite::Connection::open(dir.path().join("store.db")).expect("open");
    db.execute("INSERT INTO schema_version (version) VALUES (?1)", [version + 1]).expect("newer version");
    drop(db);
    let refused = webhooks(&["migrate", "--data-dir", data]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("newer than this binary knows"), "{why}");
    let addr = free_addr().to_string();
    let standalone = webhooks(&["standalone", "--listen", &addr, "--data-dir", data]);
    assert!(!standalone.status.success(), "a process refuses it too");
    assert!(String::from_utf8_lossy(&standalone.stderr).contains("newer than this binary knows"));
}
