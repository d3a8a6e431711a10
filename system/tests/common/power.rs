//! Power cuts and disk faults for real processes: the data directory lives on faultfs, whose
//! power cut keeps only what was synced (plus a seeded part of the rest) and undoes directory
//! entries whose directory was not synced, and the system runs as child processes killed at
//! the same instant. What a 200 promised must still be there afterwards.
//!
//! Each test has fixed seeds, so CI makes the same fault choices every run; `FAULTFS_SEED`
//! replaces them with one other (a number, or `fresh` for a new one, printed). A failing test
//! prints its seed and the command that replays it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultfs::{Mounted, Options};
use serde_json::json;

use super::*;

/// A machine whose disk is faultfs: processes run on it, and its power can be cut.
pub struct Machine {
    pub fs: Mounted,
    /// Logs of the processes, outside the faulty disk so that they survive it.
    pub logs: tempfile::TempDir,
    _backing: tempfile::TempDir,
    _point: tempfile::TempDir,
    pub base: String,
    pub listen: String,
    starts: usize,
    /// What each power cut did, for a failure's message.
    cuts: Mutex<Vec<String>>,
}

/// The seeds a test runs with: its own fixed ones, unless `FAULTFS_SEED` gives one instead.
pub fn seeds(fixed: &[u64]) -> Vec<u64> {
    match std::env::var("FAULTFS_SEED") {
        Err(_) => fixed.to_vec(),
        Ok(s) if s == "fresh" => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            vec![now ^ u64::from(std::process::id()).rotate_left(32)]
        }
        Ok(s) => vec![s.parse().unwrap_or_else(|_| panic!("FAULTFS_SEED must be a number or `fresh`, not {s:?}"))],
    }
}

/// The command that runs the current test again with `seed`.
fn replay(seed: u64) -> String {
    let test = std::thread::current().name().unwrap_or("<test name>").to_owned();
    format!("FAULTFS_SEED={seed} cargo test --release -p system --test {} -- --exact {test}", env!("CARGO_CRATE_NAME"))
}

impl Machine {
    /// A disk with torn write-back and strict directory entries, its choices drawn from `seed`
    /// (see [`seeds`]).
    pub fn new(seed: u64) -> Self {
        Self::with(Options { seed, ..Options::default() })
    }

    pub fn with(options: Options) -> Self {
        let backing = tempfile::tempdir().expect("backing dir");
        let point = tempfile::tempdir().expect("mount point");
        let fs = Mounted::mount_with(backing.path(), point.path(), options).unwrap_or_else(|e| {
            panic!("these tests need FUSE (scripts/test.sh installs the fuse3 package): {e}")
        });
        eprintln!("faultfs seed {} ({options:?}); replay: {}", options.seed, replay(options.seed));
        // The data directory is not made here: the system makes it, and must make it durable.
        let addr = free_addr();
        Self {
            fs,
            logs: tempfile::tempdir().expect("log dir"),
            _backing: backing,
            _point: point,
            base: format!("http://{addr}"),
            listen: addr.to_string(),
            starts: 0,
            cuts: Mutex::default(),
        }
    }

    /// The disk itself: what survived the last power cut.
    pub fn disk(&self) -> &std::path::Path {
        self._backing.path()
    }

    pub fn data(&self) -> String {
        self.fs.path().join("data").to_string_lossy().into_owned()
    }

    /// Starts `webhooks ROLE` on the faulty disk with `extra` flags.
    pub fn start(&mut self, role: &str, extra: &[&str]) -> Proc {
        self.starts += 1;
        let data = self.data();
        let mut args = vec![role, "--data-dir", data.as_str()];
        if role != "worker" {
            args.extend(["--listen", self.listen.as_str()]);
        }
        args.extend_from_slice(extra);
        let log = self.logs.path().join(format!("{role}-{}.log", self.starts));
        Proc::spawn(role, &args, &[], &log)
    }

    /// Every process dies and every write not made durable is lost, at once (but for what
    /// the seeded write-back took to the disk).
    pub fn power_cut(&self, procs: &mut [Proc]) -> faultfs::PowerCut {
        for p in procs.iter_mut() {
            let _ = p.child.kill();
        }
        for p in procs.iter_mut() {
            let _ = p.child.wait();
        }
        let cut = self.fs.power_cut().unwrap_or_else(|e| panic!("{e}"));
        let what = format!(
            "power cut {}: {} unsynced bytes lost and {} written back in {} files; directory entries undone: {:?}",
            cut.number, cut.bytes, cut.written_back, cut.files, cut.entries
        );
        eprintln!("{what}");
        self.cuts.lock().expect("cuts").push(what);
        cut
    }

    /// Waits for the server to answer; if it does not, the failure shows the processes' logs
    /// (a process that stopped at start-up says why).
    pub async fn wait_healthy(&self) {
        if !healthy_within(&client(), &self.base, Duration::from_secs(30)).await {
            panic!("{} did not become healthy within 30 s\n{}", self.base, self.log_tail());
        }
    }

    /// The processes' logs, for a failure message: each one's error, if it stopped on one
    /// (the first lines, above the backtrace that follows it), and its last lines.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        if let Ok(dir) = std::fs::read_dir(self.logs.path()) {
            for e in dir.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if let Some(error) = text.lines().find(|l| l.starts_with("Error: ")) {
                    out += &format!("--- {}: {error}\n", e.path().display());
                }
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out += &format!("--- {}\n{}\n", e.path().display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
        out
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let cuts = self.cuts.lock().map(|c| c.join("\n")).unwrap_or_default();
            eprintln!("{cuts}\nfaultfs seed {}: replay with\n  {}", self.fs.seed(), replay(self.fs.seed()));
        }
    }
}

/// What the senders saw: acknowledged events per payment, and the other answers by status.
#[derive(Default)]
pub struct Tally {
    pub ledger: Mutex<Ledger>,
    pub statuses: Mutex<BTreeMap<u16, u64>>,
    pub retry_after_missing: AtomicU64,
    /// Requests that got no answer: in flight when the power went, or refused while down.
    pub unanswered: AtomicU64,
}

impl Tally {
    pub fn acked(&self) -> usize {
        self.ledger.lock().expect("ledger").len()
    }

    pub fn unanswered(&self) -> u64 {
        self.unanswered.load(Ordering::Relaxed)
    }

    pub fn count(&self, status: u16) -> u64 {
        self.statuses.lock().expect("statuses").get(&status).copied().unwrap_or(0)
    }
}

/// Senders posting unique `payment.success` events (one payment each) until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Load {
    pub fn start(base: &str, clients: usize, tally: Arc<Tally>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, tally, url) = (stop.clone(), tally.clone(), format!("{base}/api/webhooks/payment"));
                tokio::spawn(async move { send_until(&url, &stop, &tally).await })
            })
            .collect();
        Self { stop, tasks }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn send_until(url: &str, stop: &AtomicBool, tally: &Tally) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    while !stop.load(Ordering::SeqCst) {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (p, e) = (format!("pc{}-{n}", std::process::id()), format!("evt-pc{}-{n}", std::process::id()));
        let body = json!({"event_type": "payment.success", "payment_id": p, "order_id": format!("o-{p}"),
                          "amount": 100, "currency": "USD", "event_id": e});
        match http.post(url).json(&body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                if status == 503 && r.headers().get("retry-after").is_none() {
                    tally.retry_after_missing.fetch_add(1, Ordering::Relaxed);
                }
                *tally.statuses.lock().expect("statuses").entry(status).or_default() += 1;
                if status == 200 {
                    note_accepted(&mut tally.ledger.lock().expect("ledger"), &p, &e);
                }
            }
            // Refused or cut off: not acknowledged, so nothing is owed.
            Err(_) => {
                tally.unanswered.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await
            }
        }
    }
}

/// Waits until `n` events are acknowledged in all, or `max` passes.
pub async fn until_acked(tally: &Tally, n: usize, max: Duration) {
    let deadline = Instant::now() + max;
    while tally.acked() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged event applied exactly once, after everything has been restarted.
pub async fn verify(machine: &Machine, tally: &Tally) {
    let http = client();
    machine.wait_healthy().await;
    let ledger = tally.ledger.lock().expect("ledger").clone();
    assert!(!ledger.is_empty(), "the load acknowledged nothing: the test proved nothing\n{}", machine.log_tail());
    all_applied(machine, &ledger).await;
    let (_, dead) = get(&http, format!("{}/api/dead-letters", machine.base)).await;
    assert_eq!(dead["count"].as_u64(), Some(0), "no healthy event may be dead-lettered: {dead}\n{}", machine.log_tail());
}

/// Waits until every acknowledged event of `ledger` is applied, exactly once.
pub async fn all_applied(machine: &Machine, ledger: &Ledger) {
    until_applied(machine, ledger, ledger.len()).await;
}

/// Waits until at least `n` payments of `ledger` show their acknowledged events.
pub async fn until_applied(machine: &Machine, ledger: &Ledger, n: usize) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let missing = unapplied(&http, &machine.base, ledger).await;
        if ledger.len() - missing >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{missing} acknowledged payments not applied within 180 s\n{}", machine.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many payments of the ledger do not show their acknowledged events yet; panics on any
/// event applied twice.
async fn unapplied(http: &reqwest::Client, base: &str, ledger: &Ledger) -> usize {
    let ids: Vec<&String> = ledger.keys().collect();
    let mut missing = 0;
    for chunk in ids.chunks(500) {
        let r = http.post(format!("{base}/api/payments/lookup")).json(&json!({ "ids": chunk })).send().await.expect("lookup");
        assert_eq!(r.status().as_u16(), 200, "lookup answers");
        let found: Vec<serde_json::Value> = r.json().await.expect("lookup JSON");
        let by_id: BTreeMap<&str, &serde_json::Value> = found.iter().filter_map(|p| Some((p["id"].as_str()?, p))).collect();
        for id in chunk {
            let Some(p) = by_id.get(id.as_str()) else {
                missing += 1;
                continue;
            };
            let acked = &ledger[id.as_str()];
            let recorded: Vec<&str> = p["events"].as_array().map(|e| e.iter().filter_map(|x| x["event_id"].as_str()).collect()).unwrap_or_default();
            if !acked.iter().all(|e| recorded.contains(&e.as_str())) {
                missing += 1;
                continue;
            }
            assert_eq!(p["applied_events"].as_u64(), Some(recorded.len() as u64), "an event applied twice: {p}");
        }
    }
    missing
}
