//! One rule against a receiver: create the orders, send every case's steps, restart the
//! worker if the rule asks, wait for a later event to show, then read and judge each payment.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::cases::{self, Case, Step};
use super::rule::{Check, Rule};
use super::send::{Answer, Event, Sender};
use crate::target::check::{self, Finding};
use crate::target::read::Observed;
use crate::target::Reader;
use crate::workload::oracle::EventType;

/// What a rule needs of the receiver.
pub struct Target {
    pub sender: Sender,
    pub reader: Reader,
    /// A shell command that kills the receiver's worker and starts it again.
    pub restart: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Skipped,
    /// The rule's limit passed first.
    Unfinished,
}

/// One payment that broke the rule, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Broken {
    pub payment: String,
    pub case: String,
    pub what: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub about: String,
    pub verdict: Verdict,
    /// Why it was skipped or unfinished, or what went wrong beyond single payments.
    pub notes: Vec<String>,
    pub payments: usize,
    pub broke: Vec<Broken>,
    pub took_s: f64,
    /// Reading the end state, all rounds.
    pub verify_s: f64,
}

/// Cases sent at once.
const CASES_IN_FLIGHT: usize = 16;
const POLL: Duration = Duration::from_millis(200);

/// Evidence gathered while the rule runs, kept when its limit cuts it short.
#[derive(Default)]
struct Evidence {
    by_case: Vec<Vec<String>>,
    notes: Vec<String>,
    verify: Duration,
}

type Shared = Arc<Mutex<Evidence>>;

fn note(ev: &Shared, f: impl FnOnce(&mut Evidence)) {
    if let Ok(mut e) = ev.lock() {
        f(&mut e);
    }
}

pub async fn run(target: &Target, rule: &Rule, prefix: &str) -> Outcome {
    let started = Instant::now();
    let cases = cases::plan(&rule.check, prefix);
    let mut out = Outcome { name: rule.name.clone(), about: rule.about.clone(), verdict: Verdict::Pass, notes: Vec::new(), payments: cases.len(), broke: Vec::new(), took_s: 0.0, verify_s: 0.0 };
    if matches!(rule.check, Check::Crash { .. }) && target.restart.is_none() {
        out.verdict = Verdict::Skipped;
        out.notes.push("no restart command (--restart)".into());
        return out;
    }
    let evidence: Shared = Arc::new(Mutex::new(Evidence { by_case: vec![Vec::new(); cases.len()], ..Default::default() }));
    let limit = started + Duration::from_secs_f64(rule.limit_s);
    // Sending and waiting stop early enough to leave the last reads their time, so that a
    // receiver that never applies anything is still judged payment by payment.
    let deadline = limit - Duration::from_secs_f64(rule.limit_s / 4.0).min(Duration::from_secs(10));
    let finished = tokio::time::timeout_at(limit, exercise(target, rule, &cases, &evidence, deadline)).await.is_ok();
    let ev = evidence.lock().map(|e| (e.by_case.clone(), e.notes.clone(), e.verify)).unwrap_or_default();
    let (by_case, notes, verify) = ev;
    out.notes = notes;
    out.broke = cases.iter().zip(by_case).filter(|(_, what)| !what.is_empty()).map(|(c, what)| Broken { payment: c.payment.clone(), case: c.label.clone(), what }).collect();
    out.verdict = if !finished {
        out.notes.push(format!("did not finish within its limit of {} s", rule.limit_s));
        Verdict::Unfinished
    } else if out.broke.is_empty() && out.notes.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    out.took_s = started.elapsed().as_secs_f64();
    out.verify_s = verify.as_secs_f64();
    out
}

async fn exercise(target: &Target, rule: &Rule, cases: &[Case], ev: &Shared, deadline: Instant) {
    create_orders(target, cases, ev).await;
    match rule.check {
        Check::Crash { rate, .. } => crash(target, cases, rate, ev).await,
        _ => send_cases(target, cases, ev, deadline).await,
    }
    let sentinel = Event { id: format!("{}-sentinel-e0", cases.first().map_or("", |c| c.payment.as_str())), ty: EventType::Pending, payment: format!("{}-sentinel", cases.first().map_or("", |c| c.payment.as_str())), order: "sentinel-order".into(), amount: 1, currency: cases::CURRENCY };
    if let Err(why) = barrier(target, &sentinel, deadline, ev).await {
        note(ev, |e| e.notes.push(why));
    }
    judge(target, cases, ev, (Instant::now() + Duration::from_secs_f64(rule.settle_s)).min(deadline)).await;
}

async fn create_orders(target: &Target, cases: &[Case], ev: &Shared) {
    let path = target.reader.receiver().create_order_path.clone();
    let sem = Arc::new(Semaphore::new(CASES_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let (sender, path, sem, order, total) = (target.sender.clone(), path.clone(), sem.clone(), c.order.clone(), c.total);
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            (i, order.clone(), sender.order(&path, &order, total).await)
        });
    }
    while let Some(Ok((i, order, answer))) = tasks.join_next().await {
        if !answer.accepted() {
            note(ev, |e| e.by_case[i].push(format!("creating order {order}: answered {answer}")));
        }
    }
}

async fn send_cases(target: &Target, cases: &[Case], ev: &Shared, deadline: Instant) {
    let sem = Arc::new(Semaphore::new(CASES_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let (sender, reader, sem, c, ev) = (target.sender.clone(), target.reader.clone(), sem.clone(), c.clone(), ev.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            for step in &c.steps {
                if let Some(problem) = perform(&sender, &reader, &c, step, deadline).await {
                    note(&ev, |e| e.by_case[i].push(problem));
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One step; what went wrong, if anything.
async fn perform(sender: &Sender, reader: &Reader, c: &Case, step: &Step, deadline: Instant) -> Option<String> {
    match step {
        Step::Send(e) => must_accept(e, &sender.event(e).await),
        Step::Concurrent(e, n) => {
            let answers = futures_join(sender, e, *n).await;
            let broken: Vec<String> = answers.iter().filter(|a| !matches!(a, Answer::Status(s) if *s < 500)).map(Answer::to_string).collect();
            if !answers.iter().any(Answer::accepted) {
                Some(format!("{} {}: no copy accepted ({})", e.ty.as_str(), e.id, answers.iter().map(Answer::to_string).collect::<Vec<_>>().join(", ")))
            } else if !broken.is_empty() {
                Some(format!("{} {}: copies answered {}", e.ty.as_str(), e.id, broken.join(", ")))
            } else {
                None
            }
        }
        Step::Abandon(e) => match sender.abandon(e).await {
            Answer::Broken(why) => Some(format!("{} {}: could not be written: {why}", e.ty.as_str(), e.id)),
            _ => None,
        },
        Step::AwaitStatus(ty) => await_status(reader, c, *ty, deadline).await,
        Step::Forged(e, how) => must_refuse(&sender.forged(e, *how).await),
        Step::Malformed { id, body } => must_refuse(&sender.raw(id, body.clone().into_bytes()).await),
    }
}

async fn futures_join(sender: &Sender, e: &Event, n: usize) -> Vec<Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (sender, e) = (sender.clone(), e.clone());
        tasks.spawn(async move { sender.event(&e).await });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        out.extend(done.ok());
    }
    out
}

fn must_accept(e: &Event, a: &Answer) -> Option<String> {
    (!a.accepted()).then(|| format!("{} {}: answered {a}, expected 2xx", e.ty.as_str(), e.id))
}

/// The case's label says what was sent; this says what came back.
fn must_refuse(a: &Answer) -> Option<String> {
    if a.refused() {
        None
    } else if a.accepted() {
        Some(format!("accepted ({a})"))
    } else {
        Some(format!("answered {a}, expected 4xx"))
    }
}

/// Waits until the receiver shows the payment at `ty`.
async fn await_status(reader: &Reader, c: &Case, ty: EventType, deadline: Instant) -> Option<String> {
    let ids = [c.payment.clone()];
    let mut last = Observed::Missing;
    while Instant::now() < deadline {
        last = reader.payments(&ids).await.observed.remove(&c.payment).unwrap_or(Observed::Missing);
        if matches!(&last, Observed::Found(n) if n.status == ty.status()) {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
    Some(format!("never showed {} before the next event (last read: {last:?})", ty.status()))
}

/// Sends a later event and waits until it shows: a receiver that processes in order has then
/// processed everything sent before it.
async fn barrier(target: &Target, sentinel: &Event, deadline: Instant, ev: &Shared) -> Result<(), String> {
    let answer = target.sender.event(sentinel).await;
    if !answer.accepted() {
        return Err(format!("a later event ({}) was answered {answer}", sentinel.id));
    }
    let ids = [sentinel.payment.clone()];
    loop {
        let r = target.reader.payments(&ids).await;
        note(ev, |e| e.verify += r.took);
        match r.observed.get(&sentinel.payment) {
            Some(Observed::Found(_)) => return Ok(()),
            Some(Observed::Bad(why)) if Instant::now() >= deadline => return Err(why.clone()),
            _ if Instant::now() >= deadline => return Err(format!("a later event ({}) never showed", sentinel.id)),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Reads every case until all are right or `settle` passes, then records what is not.
async fn judge(target: &Target, cases: &[Case], ev: &Shared, settle: Instant) {
    let mut pending: Vec<usize> = (0..cases.len()).collect();
    let mut findings: Vec<Vec<Finding>> = vec![Vec::new(); cases.len()];
    loop {
        let payments: Vec<String> = pending.iter().map(|i| cases[*i].payment.clone()).collect();
        let orders: Vec<String> = pending.iter().map(|i| cases[*i].order.clone()).collect();
        let (p, o) = (target.reader.payments(&payments).await, target.reader.orders(&orders).await);
        note(ev, |e| e.verify += p.took + o.took);
        for i in &pending {
            let c = &cases[*i];
            let seen = |r: &crate::target::Reading, id: &str| r.observed.get(id).cloned().unwrap_or(Observed::Missing);
            findings[*i] = [check::payment(c.expected().as_ref(), &seen(&p, &c.payment)), check::order(c.expected_order(), &seen(&o, &c.order))].into_iter().filter(|f| !f.is_right()).collect();
        }
        pending.retain(|i| !findings[*i].is_empty());
        if pending.is_empty() || Instant::now() >= settle {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    note(ev, |e| {
        for (i, f) in findings.iter().enumerate() {
            e.by_case[i].extend(f.iter().map(Finding::describe));
        }
    });
}

/// The crash rule: the cases' events paced at `rate` per second, in groups (pendings, then
/// their successes), with the worker killed and restarted halfway.
async fn crash(target: &Target, cases: &[Case], rate: f64, ev: &Shared) {
    let mut order: Vec<(usize, Event)> = Vec::new();
    for (g, group) in cases.chunks(10).enumerate() {
        for step in 0..2 {
            for (k, c) in group.iter().enumerate() {
                if let Some(Step::Send(e)) = c.steps.get(step) {
                    order.push((g * 10 + k, e.clone()));
                }
            }
        }
    }
    let half = order.len() / 2;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    let mut restart = None;
    for (n, (i, e)) in order.into_iter().enumerate() {
        if n == half {
            restart = target.restart.clone().map(|cmd| tokio::spawn(run_restart(cmd)));
        }
        tokio::time::sleep_until(start + gap * n as u32).await;
        let (sender, ev, permit) = (target.sender.clone(), ev.clone(), sem.clone().acquire_owned().await.ok());
        tasks.spawn(async move {
            let a = sender.event(&e).await;
            drop(permit);
            if let Some(problem) = must_accept(&e, &a) {
                note(&ev, |x| x.by_case[i].push(problem));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    if let Some(Ok(Err(why))) = match restart {
        Some(h) => Some(h.await),
        None => None,
    } {
        note(ev, |e| e.notes.push(why));
    }
}

async fn run_restart(cmd: String) -> Result<(), String> {
    let out = tokio::process::Command::new("sh").arg("-c").arg(&cmd).kill_on_drop(true).output().await.map_err(|e| format!("restart command `{cmd}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("restart command `{cmd}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}
