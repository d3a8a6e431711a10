//! Helpers shared by the integration tests: start the real system (in process or as child
//! processes) on free loopback ports with temporary data, and talk HTTP to it.
#![allow(dead_code)] // each test binary uses a different subset

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
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become healthy within 30 s");
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
