//! Helpers shared by the integration tests: start the real system (in process or as child
//! processes) on free loopback ports with temporary data, and talk HTTP to it.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;
pub mod power;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use webhooks::config::{ServerArgs, StorageArgs, WorkerArgs};

pub const BIN: &str = env!("CARGO_BIN_EXE_webhooks");

#[derive(Parser)]
struct StandaloneFlags {
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

/// The whole system in this process, on a free port, over a temporary data directory.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), webhooks::app::AppError>>>,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().to_str().expect("utf-8 temp path").to_owned();
        let mut args = vec!["webhooks", "--data-dir", &data];
        args.extend_from_slice(extra);
        let flags = StandaloneFlags::try_parse_from(args).expect("test flags parse");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(webhooks::app::standalone(flags.storage, flags.server, flags.worker, listener, shutdown.clone()));
        let app = Self { base, http: client(), shutdown, task: Some(task), dir };
        wait_healthy(&app.http, &app.base).await;
        app
    }

    /// Graceful shutdown; returns what the app returned.
    pub async fn stop(mut self) -> Result<(), webhooks::app::AppError> {
        self.shutdown.cancel();
        self.task.take().expect("running").await.expect("app task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    assert!(healthy_within(http, base, Duration::from_secs(30)).await, "{base} did not become healthy within 30 s");
}

/// Whether `/healthz` answered 2xx within `limit`.
pub async fn healthy_within(http: &reqwest::Client, base: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn order(id: &str, total: i64) -> Value {
    json!({"id": id, "user_id": "user_abc", "items": ["item1"], "total_amount": total})
}

pub fn event(event_type: &str, payment_id: &str, order_id: &str, amount: i64, event_id: &str) -> Value {
    json!({"event_type": event_type, "payment_id": payment_id, "order_id": order_id,
           "amount": amount, "currency": "USD", "event_id": event_id})
}

pub async fn post(http: &reqwest::Client, url: String, body: &Value) -> (u16, Value) {
    let r = http.post(url).json(body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let r = http.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `/readyz` without its `alarms`: the disk alarm depends on the machine the tests run on, not
/// on what a test checks.
pub async fn readiness(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let (status, mut body) = get(http, format!("{base}/readyz")).await;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("alarms");
    }
    (status, body)
}

/// Polls until `check` holds on the JSON at `url`, or panics with the last value after `within`.
pub async fn eventually(http: &reqwest::Client, url: String, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, v) = get(http, url.clone()).await;
        if status == 200 && check(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("condition not met within {within:?} at {url}: last {status} {v}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the in-process worker has an outcome for every accepted request.
pub async fn drained(http: &reqwest::Client, base: &str) -> Value {
    eventually(http, format!("{base}/api/stats"), Duration::from_secs(60), |s| {
        let w = &s["worker"];
        let seen = w["processed"].as_u64().unwrap_or(0) + w["duplicates"].as_u64().unwrap_or(0);
        s["queue"]["depth"] == 0 && Some(seen) == s["ingress"]["accepted"].as_u64()
    })
    .await
}

/// A child process of the real binary; killed (SIGKILL) when dropped unless stopped first.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn webhooks");
        Self { child, name: name.to_owned() }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (SIGKILL after 30 s).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Event ids accepted per payment: what must be applied, each exactly once.
pub type Ledger = BTreeMap<String, Vec<String>>;

pub async fn send_all(http: &reqwest::Client, base: &str, events: Vec<Value>) -> Ledger {
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
    note_accepted(ledger, e["payment_id"].as_str().unwrap(), e["event_id"].as_str().unwrap());
}

/// Records that `event_id` of `payment` got a 200; a resend adds nothing.
pub fn note_accepted(ledger: &mut Ledger, payment: &str, event_id: &str) {
    let ids = ledger.entry(payment.to_owned()).or_default();
    if !ids.iter().any(|id| id == event_id) {
        ids.push(event_id.to_owned());
    }
}

/// Events for `payments` payments: pending then success, plus every tenth resent.
pub fn workload(prefix: &str, payments: usize) -> Vec<Value> {
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
pub async fn assert_exactly_once(http: &reqwest::Client, base: &str, ledger: &Ledger) {
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


/// The broker address for Kafka tests, from KAFKA_TEST_BROKERS (set by scripts/env.sh).
/// Without it the test is skipped with a message, unless REQUIRE_SERVICES=1 (CI), where a
/// missing broker is a failure rather than a silent pass.
pub fn kafka_brokers() -> Option<String> {
    match std::env::var("KAFKA_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("KAFKA_TEST_BROKERS is not set but REQUIRE_SERVICES=1"),
        _ => {
            eprintln!("skipped: KAFKA_TEST_BROKERS not set (run scripts/services.sh up and source scripts/env.sh)");
            None
        }
    }
}

/// Runs `scripts/services.sh ARGS` from the workspace root.
pub fn services(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");
    let status = Command::new("bash").arg(script).args(args).status().expect("run services.sh");
    assert!(status.success(), "services.sh {args:?} failed");
}

/// Server and workers over one Kafka topic and group of their own, sharing a SQLite store.
pub struct KafkaSystem {
    pub dir: tempfile::TempDir,
    pub base: String,
    listen: String,
    brokers: String,
    topic: String,
}

impl KafkaSystem {
    pub fn new(brokers: &str) -> Self {
        let addr = free_addr();
        let unique = format!("{}-{}", std::process::id(), addr.port());
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            base: format!("http://{addr}"),
            listen: addr.to_string(),
            brokers: brokers.to_owned(),
            topic: format!("t-{unique}"),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn kafka_args(&self) -> Vec<String> {
        let data = self.dir.path().to_string_lossy().into_owned();
        ["--data-dir", &data, "--kafka-brokers", &self.brokers, "--kafka-topic", &self.topic].iter().map(|s| s.to_string()).collect()
    }

    pub fn server(&self, n: usize, extra: &[&str]) -> Proc {
        let mut args = vec!["server".to_string(), "--listen".into(), self.listen.clone()];
        args.extend(self.kafka_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn("server", &args, &[], &self.dir.path().join(format!("server-{n}.log")))
    }

    /// A worker in the test's consumer group, serving its stats on `metrics`.
    pub fn worker(&self, n: usize, metrics: SocketAddr) -> Proc {
        self.worker_with(n, metrics, &[])
    }

    pub fn worker_with(&self, n: usize, metrics: SocketAddr, extra: &[&str]) -> Proc {
        let group = format!("g-{}", self.topic);
        let metrics = metrics.to_string();
        let mut args = vec!["worker".to_string(), "--consumer".into(), group, "--metrics-listen".into(), metrics];
        args.extend(self.kafka_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn("worker", &args, &[], &self.dir.path().join(format!("worker-{n}.log")))
    }
}

/// The PostgreSQL server for tests, from TEST_DATABASE_URL (set by scripts/env.sh); skipped
/// without it unless REQUIRE_SERVICES=1.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("TEST_DATABASE_URL is not set but REQUIRE_SERVICES=1"),
        _ => {
            eprintln!("skipped: TEST_DATABASE_URL not set (run scripts/services.sh up and source scripts/env.sh)");
            None
        }
    }
}

/// A database of its own for one test, dropped at the end; returns its URL.
pub struct FreshDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl FreshDatabase {
    pub async fn create(admin_url: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("wh_test_{}_{n}", std::process::id());
        let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.expect("connect to the test server");
        tokio::spawn(conn);
        // Two statements: several in one string run as one transaction, which these refuse.
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop old test database");
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let base = admin_url.rsplit_once('/').map(|(b, _)| b).expect("URL with a database");
        Self { admin_url: admin_url.to_owned(), url: format!("{base}/{name}"), name }
    }

    pub async fn drop_now(self) {
        if let Ok((client, conn)) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
        }
    }
}
