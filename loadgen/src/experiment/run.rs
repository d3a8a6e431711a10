//! One experiment, start to end: target, setup, optional ceiling, open-loop load, drain,
//! end-state verification, and the measured figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::abort;
use crate::capacity::Search;
use crate::engine::{self, Live};
use crate::plan::{self, Schedule};
use crate::report::{Measured, SystemSide};
use crate::sampler::Sampler;
use crate::scenario::Scenario;
use crate::spawn::{own_cpu_seconds, System};
use crate::sign::Signer;
use crate::stats::Recorder;
use crate::verify::{self, Verdict};
use crate::window::Snapshot;
use crate::workload::{Generator, OrderRef, Planned, Renderer};

const LOOKUP_CHUNK: usize = 1000;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Stats addresses of worker processes, whose counters the server cannot report.
    workers: Vec<String>,
}

impl Client {
    fn new(base: &str, token: Option<String>, pool: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            // Below the server's 10 s header-read timeout, which also closes idle keep-alive
            // connections: reusing one just as the server closes it fails the request.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token, workers: Vec::new() })
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.authed(self.http.get(format!("{}{path}", self.base))).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    /// The system's /api/stats; a server-only target's worker side is filled in from its
    /// workers' own stats when loadgen started them.
    pub(crate) async fn stats(&self) -> Option<Value> {
        let mut stats = self.get_json("/api/stats").await.ok()?;
        if stats["worker"].is_null() && !self.workers.is_empty() {
            let mut each = Vec::with_capacity(self.workers.len());
            for w in &self.workers {
                let r = self.http.get(format!("{w}/api/stats")).send().await.ok()?;
                each.push(r.json::<Value>().await.ok()?);
            }
            stats["worker"] = crate::stats::merge_workers(&each);
            stats["queue"]["depth"] = each.iter().map(|w| w["queue"]["depth"].as_u64()).sum::<Option<u64>>().map_or(Value::Null, Value::from);
        }
        Some(stats)
    }

    /// The system's histograms now: the server's, with its workers' end-to-end ones added
    /// when it runs none itself.
    pub(crate) async fn histograms(&self) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot::of(&self.get_json("/api/stats?histograms=true").await?)?;
        if snap.e2e.is_none() {
            for w in &self.workers {
                let stats: Value = self.http.get(format!("{w}/api/stats?histograms=true")).send().await?.error_for_status()?.json().await?;
                snap.add_e2e(Snapshot::of(&stats)?.e2e)?;
            }
        }
        Ok(snap)
    }

    /// The Prometheus text of the server and of every worker process loadgen started.
    pub(crate) async fn metrics_texts(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(1 + self.workers.len());
        for base in std::iter::once(&self.base).chain(&self.workers) {
            if let Ok(r) = self.authed(self.http.get(format!("{base}/metrics"))).send().await {
                out.extend(r.text().await.ok());
            }
        }
        out
    }

    async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.authed(self.http.post(format!("{}{path}", self.base))).json(body).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Sends one rendered request through the control client (setup only; the load goes
    /// through the engine's own connections).
    async fn send(&self, r: &Renderer) -> Option<u16> {
        let mut req = self.http.post(format!("{}/api/webhooks/payment", self.base)).header("content-type", "application/json");
        for (k, v) in r.headers() {
            req = req.header(k, v);
        }
        req.body(r.body.clone()).send().await.ok().map(|resp| resp.status().as_u16())
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub async fn run(s: &Scenario, progress: bool) -> anyhow::Result<Measured> {
    let system = match s.target.spawn {
        Some(mode) => Some(System::spawn(s, mode)?),
        None => None,
    };
    let base = system.as_ref().map(|sys| sys.base.clone()).or_else(|| s.target.url.clone()).context("no target")?;
    let token = s.target.admin_token.clone().or_else(|| s.target.env.get("ADMIN_TOKEN").cloned());
    let mut client = Client::new(&base, token, s.load.max_in_flight)?;
    client.workers = system.as_ref().map(|sys| sys.workers.clone()).unwrap_or_default();
    if let Err(e) = wait_healthy(&client).await {
        let logs = system.as_ref().map(System::log_tail).unwrap_or_default();
        anyhow::bail!("{e}\n{logs}");
    }
    let system_cpu = || system.as_ref().map(System::cpu_seconds);
    let result = experiment(s, &client, progress, &system_cpu).await;
    let system_cpu_s = system.as_ref().map(System::cpu_seconds);
    let (rss_peak_kb, rss_samples) = match &system {
        Some(sys) => (sys.rss.peak_kb.load(Ordering::Relaxed), sys.rss.samples.lock().map(|s| s.clone()).unwrap_or_default()),
        None => (0, Vec::new()),
    };
    let clean_exit = match system {
        Some(sys) => {
            if result.is_err() {
                eprintln!("{}", sys.log_tail());
            }
            Some(sys.stop().await)
        }
        None => None,
    };
    let mut m = result?;
    m.system.rss_peak_mb = (rss_peak_kb > 0).then(|| rss_peak_kb as f64 / 1024.0);
    m.system.rss_samples_mb = rss_samples.iter().map(|kb| *kb as f64 / 1024.0).collect();
    m.system.clean_exit = clean_exit;
    m.system.cpu_s = system_cpu_s;
    Ok(m)
}

async fn wait_healthy(c: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = c.http.get(format!("{}/healthz", c.base)).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{} did not answer /healthz within 30 s", c.base)
}

/// `system_cpu` reads the spawned system's CPU seconds so far, if loadgen spawned it.
async fn experiment(s: &Scenario, client: &Client, progress: bool, system_cpu: &dyn Fn() -> Option<f64>) -> anyhow::Result<Measured> {
    let prefix = format!("{}-{}-{:x}", s.name, s.seed, unix_now() % 0xFF_FFFF);
    let planned = s.planned_requests();
    let mut generator = Generator::new(&s.workload, s.seed, prefix, planned);
    let signer = Signer::new(s.signing.scheme, &s.signing.secret)?;
    let setup_started = Instant::now();
    let step = Step::start(progress, format!("creating {} orders", generator.orders.len()));
    create_orders(client, &generator).await?;
    step.next("claiming payments for their orders");
    let claims = generator.claims(unix_now());
    let mut renderer = Renderer::new(generator.ids.clone(), signer);
    let claimed_ledger = send_claims(client, &generator, &mut renderer, claims).await?;
    step.done();
    let setup_s = setup_started.elapsed().as_secs_f64();

    let ceiling_rps = if s.ceiling.enabled { Some(ceiling(client, s.ceiling.connections, s.ceiling.duration_s).await) } else { None };
    let before = client.stats().await;
    let histograms_before = client.histograms().await;

    let system_cpu_before = system_cpu();
    let load_started_unix_s = (SystemTime::now() + LOAD_LEAD).duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let sampler = Sampler::start(client.clone(), Instant::now() + LOAD_LEAD);
    let cpu_before = own_cpu_seconds();
    let (mut recorder, generator, load, capacity, ran) = match &s.capacity {
        Some(capacity) => {
            let search = Search { scenario: s, capacity, client, progress, system_cpu, ceiling_rps };
            let found = search.run(generator, renderer).await?;
            // The report describes the steps that ran, not the ones the search did not need.
            let mut ran = s.clone();
            ran.load.phases.truncate(found.steps_run);
            (found.recorder, found.generator, found.timing, Some(found.report), ran)
        }
        None => {
            let (recorder, generator, timing) = load(s, client, generator, renderer, planned, progress).await?;
            (recorder, generator, timing, None, s.clone())
        }
    };
    let cpu_used = own_cpu_seconds() - cpu_before;
    for e in claimed_ledger {
        // Setup events are answered before the load starts.
        recorder.ledger.accept(e, false, verify::Window { sent: Duration::ZERO, answered: Duration::ZERO });
    }

    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs_f64(s.drain.timeout_s);
    let step = Step::start(progress, "draining: waiting until the system has applied what it accepted");
    let drained = drain(client, before.as_ref(), deadline).await;
    let system_cpu_s = system_cpu().zip(system_cpu_before).map(|(after, before)| after - before);
    step.next(format!("verifying the final state of {} orders and every payment sent", generator.orders.len()));
    let (drained, drain_s, verdict) = match drained {
        Some(drained) => {
            let drain_s = drain_started.elapsed().as_secs_f64();
            (drained, drain_s, verify_all(client, &generator, &mut recorder).await?)
        }
        // A server-only target cannot say what its workers did: wait for the end state itself
        // (the drain time then includes the verification rounds).
        None => loop {
            let v = verify_all(client, &generator, &mut recorder).await?;
            if v.lost == 0 || Instant::now() > deadline {
                break (v.lost == 0, drain_started.elapsed().as_secs_f64(), v);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        },
    };
    step.done();
    let after = client.stats().await;
    let window = run_window(histograms_before, client.histograms().await);
    let system = SystemSide { timeline: sampler.finish().await, ..SystemSide::from_stats(after.as_ref(), window.as_ref()) };
    let mut m = Measured::new(&ran, &recorder, load, setup_s, ceiling_rps, cpu_used, drain_s, drained, verdict, system);
    m.system_cpu_us_per_event = system_cpu_s.map(|cpu| cpu * 1e6 / recorder.accepted.max(1) as f64);
    m.capacity = capacity;
    m.load_started_unix_s = load_started_unix_s;
    Ok(m)
}

/// The system's histograms over the run; `None`, with a warning, when it cannot say (too old
/// to send them, or restarted), and the report then shows its lifetime figures as such.
fn run_window(start: anyhow::Result<Snapshot>, end: anyhow::Result<Snapshot>) -> Option<Snapshot> {
    match start.and_then(|start| Ok(end?.since(&start)?)) {
        Ok(window) => Some(window),
        Err(e) => {
            tracing::warn!("the system's latency covers its lifetime, not this run: {e:#}");
            None
        }
    }
}

async fn create_orders(c: &Client, g: &Generator) -> anyhow::Result<()> {
    let bodies: Vec<Value> = g
        .orders
        .iter()
        .enumerate()
        .map(|(i, total)| json!({"id": g.ids.order(OrderRef::Created(i as u32)), "user_id": "loadgen", "items": ["item"], "total_amount": total, "currency": "USD"}))
        .collect();
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let (c, permit) = (c.clone(), sem.clone().acquire_owned().await?);
        tasks.spawn(async move {
            let r = c.post_json("/api/orders", &body).await;
            drop(permit);
            r
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done??;
        anyhow::ensure!(status == 201 || status == 200, "creating an order failed: {status} {body}");
    }
    Ok(())
}

/// Claims payments for their owner orders and waits until they are applied, so that the
/// load's events naming another order are dead letters whatever the arrival order.
async fn send_claims(c: &Client, g: &Generator, r: &mut Renderer, claims: Vec<Planned>) -> anyhow::Result<Vec<crate::workload::EventRef>> {
    let mut accepted = Vec::new();
    for p in claims {
        r.render(&p);
        let status = c.send(r).await;
        anyhow::ensure!(status == Some(200), "setup event refused: {status:?}");
        accepted.extend(p.event());
    }
    let ids: Vec<String> = accepted.iter().map(|e| g.ids.payment(e.payment)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        loop {
            let (_, found) = c.post_json("/api/payments/lookup", &json!({ "ids": chunk })).await?;
            if found.as_array().map(Vec::len) == Some(chunk.len()) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "setup payments not applied within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(accepted)
}

/// Closed loop against `/healthz` with `connections` loops: the bare-HTTP ceiling.
async fn ceiling(c: &Client, connections: usize, duration_s: f64) -> f64 {
    let ok = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(duration_s);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (c, ok) = (c.clone(), ok.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                if let Ok(r) = c.http.get(format!("{}/healthz", c.base)).send().await {
                    if r.status().is_success() && r.bytes().await.is_ok() {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    ok.load(Ordering::Relaxed) as f64 / duration_s
}

/// From the start of the load's set-up to its first scheduled instant.
const LOAD_LEAD: Duration = Duration::from_millis(500);

/// Timing of the load itself.
#[derive(Debug, Clone, Copy)]
pub struct LoadTiming {
    /// From the first scheduled instant to the last actual send.
    pub send_window_s: f64,
    /// From the first scheduled instant to the last response.
    pub wall_s: f64,
}

pub(crate) async fn load(s: &Scenario, client: &Client, generator: Generator, renderer: Renderer, planned: u64, progress: bool) -> anyhow::Result<(Recorder, Generator, LoadTiming)> {
    let threads = s.load.threads.unwrap_or(1);
    let live: Vec<Arc<Live>> = (0..threads).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now() + LOAD_LEAD;
    let load = engine::Load {
        base: client.base.clone(),
        path: s.target.webhook_path.clone().unwrap_or_else(|| "/api/webhooks/payment".into()),
        schedule: Schedule::new(&s.load.phases),
        generator,
        renderer,
        connections: s.load.max_in_flight,
        threads,
        phases: s.load.phases.len(),
        allow_shedding: s.load.allow_shedding,
        start_unix: unix_now() + 1,
        t0,
        stop: stop.clone(),
    };
    let bar = progress_bar(s, planned, progress, live.clone());
    let watcher = abort::watch(s.gates.clone(), live.clone(), stop.clone());
    let (mut recorder, generator) = {
        let live = live.clone();
        tokio::task::spawn_blocking(move || engine::run(load, &live)).await??
    };
    stop.store(true, Ordering::Relaxed);
    recorder.aborted = watcher.await?;
    bar.finish_and_clear();
    let timing = LoadTiming { send_window_s: recorder.last_send.as_secs_f64().max(1e-3), wall_s: t0.elapsed().as_secs_f64() };
    Ok((recorder, generator, timing))
}

fn progress_bar(s: &Scenario, planned: u64, enabled: bool, live: Vec<Arc<Live>>) -> ProgressBar {
    let bar = ProgressBar::new(planned);
    if !enabled {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    // `wide_msg` takes what the terminal has left and cuts the rest, so the line never wraps.
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:20} {pos}/{len} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let phases: Vec<(String, f64)> = s.load.phases.iter().enumerate().map(|(i, p)| (if p.name.is_empty() { format!("phase {i}") } else { p.name.clone() }, plan::target_rate(p))).collect();
    let ticker = bar.clone();
    tokio::spawn(async move {
        let mut last = 0;
        while !ticker.is_finished() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sum = |f: fn(&Live) -> u64| live.iter().map(|l| f(l)).sum::<u64>();
            let done = sum(|l| l.done.load(Ordering::Relaxed));
            let phase = live.iter().map(|l| l.phase.load(Ordering::Relaxed)).max().unwrap_or(0);
            let (name, target) = phases.get(phase as usize).cloned().unwrap_or_default();
            ticker.set_position(done);
            ticker.set_message(format!(
                "{name} {target:.0}/s: done {}/s, p99 {:.1} ms, {} errors",
                (done - last) * 2,
                live.iter().map(|l| l.p99_us.load(Ordering::Relaxed)).max().unwrap_or(0) as f64 / 1000.0,
                sum(|l| l.errors.load(Ordering::Relaxed))
            ));
            last = done;
        }
    });
    bar
}

/// A spinner saying what loadgen is doing between the load phases, where it would otherwise
/// be silent; hidden when progress is off (not a terminal).
struct Step(ProgressBar);

impl Step {
    fn start(enabled: bool, what: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        let bar = if enabled { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    fn next(&self, what: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.set_message(what);
    }

    fn done(&self) {
        self.0.finish_and_clear();
    }
}

/// Waits until the system has an outcome for every event it accepted since `before`;
/// `None` when the target runs no worker and cannot tell.
async fn drain(c: &Client, before: Option<&Value>, deadline: Instant) -> Option<bool> {
    let seen = |v: &Value| v["worker"]["processed"].as_u64().unwrap_or(0) + v["worker"]["duplicates"].as_u64().unwrap_or(0);
    let accepted = |v: &Value| v["ingress"]["accepted"].as_u64().unwrap_or(0);
    let (seen0, accepted0) = before.map(|b| (seen(b), accepted(b))).unwrap_or((0, 0));
    while Instant::now() < deadline {
        if let Some(v) = c.stats().await {
            if v["worker"].is_null() {
                return None;
            }
            let caught_up = seen(&v).saturating_sub(seen0) >= accepted(&v).saturating_sub(accepted0);
            if v["queue"]["depth"].as_u64() == Some(0) && caught_up {
                return Some(true);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(false)
}

async fn lookup(c: &Client, path: &'static str, ids: Vec<String>) -> anyhow::Result<HashMap<String, Value>> {
    let mut found = HashMap::with_capacity(ids.len());
    let mut tasks = tokio::task::JoinSet::new();
    let sem = Arc::new(Semaphore::new(4));
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let (c, chunk, permit) = (c.clone(), chunk.to_vec(), sem.clone().acquire_owned().await?);
        tasks.spawn(async move {
            let r = c.post_json(path, &json!({ "ids": chunk })).await;
            drop(permit);
            r
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (status, items) = done??;
        anyhow::ensure!(status == 200, "{path}: {status}");
        for item in items.as_array().into_iter().flatten() {
            if let Some(id) = item["id"].as_str() {
                found.insert(id.to_owned(), item.clone());
            }
        }
    }
    Ok(found)
}

/// The error prefix the README promises for a reused event id's dead letter.
const REUSE_CONFLICT: &str = "conflict: event id reused";

async fn verify_all(c: &Client, g: &Generator, r: &mut Recorder) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    if r.ledger.reused.values().any(|u| u.original.is_some() && u.second.is_some()) {
        let listed = c.get_json(&format!("/api/dead-letters?include_replayed=true&limit=10000&error_prefix={}", REUSE_CONFLICT.replace(' ', "%20"))).await?;
        r.ledger.settle_reuses(&mut v, &g.ids, listed["items"].as_array().map(Vec::as_slice).unwrap_or_default());
    }
    let payments: Vec<u32> = r.ledger.applied.keys().copied().collect();
    let stored = lookup(c, "/api/payments/lookup", payments.iter().map(|p| g.ids.payment(*p)).collect()).await?;
    for p in &payments {
        verify::check_payment(&mut v, &g.ids, &r.ledger.applied[p], stored.get(&g.ids.payment(*p)));
    }
    let expected = verify::expected_orders(&g.orders, &g.payments, &r.ledger);
    let order_ids: Vec<String> = (0..g.orders.len()).map(|i| g.ids.order(OrderRef::Created(i as u32))).collect();
    let stored_orders = lookup(c, "/api/orders/lookup", order_ids.clone()).await?;
    for (id, status) in order_ids.iter().zip(expected) {
        verify::check_order(&mut v, status, stored_orders.get(id));
    }
    if !r.ledger.dead.is_empty() {
        let listed = c.get_json("/api/dead-letters?include_replayed=true&limit=10000").await?;
        verify::check_dead_letters(&mut v, &g.ids, &r.ledger, listed["items"].as_array().map(Vec::as_slice).unwrap_or_default());
    }
    Ok(v)
}
