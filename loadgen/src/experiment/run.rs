//! One experiment, start to end: target, setup, optional ceiling, open-loop load, drain,
//! end-state verification, and the measured figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::experiment::capacity::Search;
use crate::experiment::load::{load, unix_now, LOAD_LEAD};
use crate::experiment::spawn::{own_cpu_seconds, System};
use crate::measure::client::Client;
use crate::measure::sampler::Sampler;
use crate::measure::stats::Recorder;
use crate::measure::window::Snapshot;
use crate::report::{Clocks, Measured, SystemSide};
use crate::scenario::{Format, Scenario};
use crate::verify::{self, Verdict};
use crate::workload::generator::{EventRef, Generator, OrderRef, Planned, Renderer};
use crate::target::{Reader, Receiver};
use crate::workload::sign::Signer;

const LOOKUP_CHUNK: usize = 1000;

pub async fn run(s: &Scenario, progress: bool) -> anyhow::Result<Measured> {
    let system = match s.target.spawn {
        Some(mode) => Some(System::spawn(s, mode)?),
        None => None,
    };
    let base = system.as_ref().map(|sys| sys.base.clone()).or_else(|| s.target.url.clone()).context("no target")?;
    let token = s.target.admin_token.clone().or_else(|| s.target.env.get("ADMIN_TOKEN").cloned());
    let mut client = Client::new(&base, token, s.load.max_in_flight)?;
    client.workers = system.as_ref().map(|sys| sys.workers.clone()).unwrap_or_default();
    let ready = match &s.target.receiver {
        Some(_) => crate::target::read::wait_ready(&base, &receiver(s)?).await,
        None => wait_healthy(&client).await,
    };
    if let Err(e) = ready {
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
    let foreign = match &s.target.receiver {
        Some(_) => Some(Reader::new(&client.base, &receiver(s)?, None)?),
        None => None,
    };
    // A foreign receiver has no stats to drain by: its end state is awaited like a server-only one's.
    let drained = if foreign.is_some() { None } else { drain(client, before.as_ref(), deadline).await };
    let system_cpu_s = system_cpu().zip(system_cpu_before).map(|(after, before)| after - before);
    step.next(format!("verifying the final state of {} orders and every payment sent", generator.orders.len()));
    let (drained, drain_s, mut verdict) = match drained {
        Some(drained) => {
            let drain_s = drain_started.elapsed().as_secs_f64();
            (drained, drain_s, verify_any(client, foreign.as_ref(), &generator, &mut recorder).await?)
        }
        // A server-only target cannot say what its workers did: wait for the end state itself
        // (the drain time then includes the verification rounds).
        None => loop {
            let v = verify_any(client, foreign.as_ref(), &generator, &mut recorder).await?;
            if v.lost == 0 || Instant::now() > deadline {
                break (v.lost == 0, drain_started.elapsed().as_secs_f64(), v);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        },
    };
    step.done();
    let after = client.stats().await;
    if s.workload.format == Format::Stripe {
        verify::check_ignored(&mut verdict, &recorder.ledger, ignored_since(before.as_ref(), after.as_ref()));
    }
    let window = run_window(histograms_before, client.histograms().await);
    let system = SystemSide { timeline: sampler.finish().await, e2e_clocks: Clocks::of(&s.target), ..SystemSide::from_stats(after.as_ref(), window.as_ref()) };
    let mut m = Measured::new(&ran, &recorder, load, setup_s, ceiling_rps, cpu_used, drain_s, drained, verdict, system);
    m.system_cpu_us_per_event = system_cpu_s.map(|cpu| cpu * 1e6 / recorder.accepted.max(1) as f64);
    m.capacity = capacity;
    m.load_started_unix_s = load_started_unix_s;
    Ok(m)
}

/// Stripe events the system counted as ignored between two `/api/stats` reads, all types.
fn ignored_since(before: Option<&Value>, after: Option<&Value>) -> Option<u64> {
    let total = |v: &Value| v["ingress"]["stripe"]["ignored"].as_object().map(|m| m.values().filter_map(Value::as_u64).sum::<u64>());
    Some(total(after?)?.saturating_sub(before.and_then(total).unwrap_or(0)))
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
async fn send_claims(c: &Client, g: &Generator, r: &mut Renderer, claims: Vec<Planned>) -> anyhow::Result<Vec<EventRef>> {
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

/// The error prefix the system documents for a reused event id's dead letter.
const REUSE_CONFLICT: &str = "conflict: event id reused";

/// The scenario's foreign receiver mapping, from its file.
fn receiver(s: &Scenario) -> anyhow::Result<Receiver> {
    let path = s.target.receiver.as_deref().context("no receiver")?;
    let w = &s.workload;
    anyhow::ensure!(
        w.failing_fraction == 0.0 && w.id_reuse_fraction == 0.0 && !s.ceiling.enabled,
        "[target] receiver: failing_fraction, id_reuse_fraction and [ceiling] need our own API (dead letters, /healthz); leave them off"
    );
    Ok(Receiver::load(std::path::Path::new(path))?)
}

async fn verify_any(c: &Client, foreign: Option<&Reader>, g: &Generator, r: &mut Recorder) -> anyhow::Result<Verdict> {
    match foreign {
        Some(reader) => Ok(crate::target::verify::all(reader, g, &r.ledger).await),
        None => verify_all(c, g, r).await,
    }
}

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
