//! Starting the system under test as child processes on a free port, sampling their
//! resident memory, and stopping them gracefully.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::scenario::{Scheme, Scenario, SpawnMode};

pub struct System {
    children: Vec<Child>,
    pub base: String,
    /// Where each worker process serves its own /api/stats (split mode).
    pub workers: Vec<String>,
    /// Kept alive for the children's data and logs.
    pub dir: tempfile::TempDir,
    pub rss: Arc<RssSamples>,
}

/// Resident memory of the spawned processes, summed, sampled twice a second.
#[derive(Debug, Default)]
pub struct RssSamples {
    pub peak_kb: AtomicU64,
    pub samples: std::sync::Mutex<Vec<u64>>,
}

fn binary(s: &Scenario) -> PathBuf {
    if let Some(b) = &s.target.bin {
        return PathBuf::from(b);
    }
    if let Ok(b) = std::env::var("WEBHOOKS_BIN") {
        return PathBuf::from(b);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/release/loadgen -> target/release/webhooks; tests run from target/release/deps.
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let beside = dir.join("webhooks");
    if beside.exists() {
        return beside;
    }
    dir.parent().map(|d| d.join("webhooks")).unwrap_or(beside)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl System {
    pub fn spawn(s: &Scenario, mode: SpawnMode) -> anyhow::Result<Self> {
        let bin = binary(s);
        anyhow::ensure!(bin.exists(), "webhooks binary not found at {} (build it with `cargo build --release -p system`, or set WEBHOOKS_BIN)", bin.display());
        let dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let data = dir.path().to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = s.target.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        match s.signing.scheme {
            Scheme::Standard => env.push(("WEBHOOK_SECRET".into(), s.signing.secret.clone())),
            Scheme::Stripe => env.push(("STRIPE_WEBHOOK_SECRET".into(), s.signing.secret.clone())),
            Scheme::None => {}
        }
        let start = |args: Vec<&str>, log: String| -> anyhow::Result<Child> {
            let path = dir.path().join(log);
            let out = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            let err = out.try_clone()?;
            Ok(Command::new(&bin)
                .args(&args)
                .args(&s.target.args)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env_remove("DATABASE_URL")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()?)
        };
        let mut workers = Vec::new();
        let children = match mode {
            SpawnMode::Standalone => vec![start(vec!["standalone", "--listen", &listen, "--data-dir", &data], "standalone.log".into())?],
            SpawnMode::Split => {
                let mut all = vec![start(vec!["server", "--listen", &listen, "--data-dir", &data], "server.log".into())?];
                for n in 0..s.target.workers.unwrap_or(1).max(1) {
                    let stats = format!("127.0.0.1:{}", free_port()?);
                    all.push(start(vec!["worker", "--data-dir", &data, "--metrics-listen", &stats], format!("worker-{n}.log"))?);
                    workers.push(format!("http://{stats}"));
                }
                all
            }
        };
        let rss = Arc::new(RssSamples::default());
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        tokio::spawn(sample_rss(pids, rss.clone()));
        Ok(Self { children, base: format!("http://{listen}"), workers, dir, rss })
    }

    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
        logs.sort();
        for path in logs {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Ok(text) = std::fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {name} ---\n{}\n", lines[lines.len().saturating_sub(20)..].join("\n")));
            }
        }
        out
    }

    /// CPU seconds the spawned processes have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.children.iter().map(|c| cpu_seconds_of(&c.id().to_string())).sum()
    }

    /// SIGTERM, then wait; whether every process exited 0 within the timeout.
    pub async fn stop(mut self) -> bool {
        terminate(&mut self.children);
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        let mut clean = true;
        for c in &mut self.children {
            loop {
                match c.try_wait() {
                    Ok(Some(status)) => {
                        clean &= status.success();
                        break;
                    }
                    Ok(None) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        clean = false;
                        break;
                    }
                }
            }
        }
        clean
    }
}

/// How long the spawned system gets to finish its batch and exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// SIGTERM to the children still running; one already reaped may have passed its pid on.
fn terminate(children: &mut [Child]) {
    for c in children {
        if let Ok(None) = c.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
    }
}

/// Reached on an error, a panic, or a signal (see [`unless_signalled`]): the children get
/// the same graceful stop, bounded, and are reaped before `dir` is removed after this, so
/// nothing is left running under PID 1 and no process still writes into a deleted directory.
impl Drop for System {
    fn drop(&mut self) {
        terminate(&mut self.children);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Why a run ended early: SIGINT or SIGTERM reached loadgen.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {name}; spawned processes stopped and temporary files removed")]
pub struct Signalled {
    name: &'static str,
    /// The shell's convention: 128 + the signal number.
    pub exit_code: i32,
}

/// Runs `work` unless SIGINT or SIGTERM arrives first. Then `work` is dropped, and with it
/// any [`System`] it spawned, whose `Drop` stops the children and removes their directory.
pub async fn unless_signalled<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<Result<T, Signalled>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        done = work => Ok(done),
        _ = int.recv() => Err(Signalled { name: "SIGINT", exit_code: 130 }),
        _ = term.recv() => Err(Signalled { name: "SIGTERM", exit_code: 143 }),
    })
}

async fn sample_rss(pids: Vec<u32>, into: Arc<RssSamples>) {
    loop {
        let kb: Option<u64> = pids.iter().map(|p| vm_rss_kb(*p)).sum();
        let Some(kb) = kb else { return };
        into.peak_kb.fetch_max(kb, Ordering::Relaxed);
        if let Ok(mut s) = into.samples.lock() {
            s.push(kb);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

fn cpu_seconds_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}
