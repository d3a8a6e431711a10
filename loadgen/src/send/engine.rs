//! The open-loop sender, shaped like wrk2: a few threads, each running a fixed set of
//! connection loops (one task each on the thread's own runtime); each loop owns one
//! HTTP/1.1 keep-alive connection (`wire`) and, when free, claims the next due slot of the
//! schedule (one queue served by every connection, so one slow answer holds back no other
//! slot). A request is rendered into the loop's reused buffers before it is due, and its
//! outcome is recorded in its thread's recorder; the recorders are merged at the end.
//! Nothing is spawned, sent over a channel or locked per request: the plan is shared in
//! chunks, taken once per chunk.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::LocalSet;
use tokio::time::Instant;

use crate::measure::stats::{Outcome, Recorder};
use crate::send::alarm::Alarm;
use crate::send::schedule::{Schedule, Slot};
use crate::send::wire::{Conn, Template};
use crate::workload::generator::{Generator, Planned, Renderer};

/// Slots planned per connection and chunk: a connection takes the plan's lock only when its
/// claims move into another chunk, about once per this many of its requests.
const SLOTS_PER_CONNECTION_AND_CHUNK: u64 = 32;
/// A request with no answer by then counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the target {0} is not an http://host:port URL")]
    Target(String),
    #[error("a load thread could not start: {0}")]
    Thread(#[from] std::io::Error),
    #[error("a load thread panicked")]
    Panicked,
}

/// Progress counters a thread publishes for the live line; written by one thread only.
#[derive(Default)]
pub struct Live {
    /// Requests answered or failed.
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub p99_us: AtomicU64,
    pub phase: AtomicU64,
    /// For `abort_on_fail`: kept current at every answer, but for the p99, refreshed with `p99_us`.
    pub unexpected_status: AtomicU64,
    pub invalid_accepted: AtomicU64,
    pub ack_p99_us: AtomicU64,
}

/// The request stream, generated in chunks on demand and dropped once every connection
/// has taken its share.
struct Plan {
    schedule: Schedule,
    chunk: u64,
    start_unix: i64,
    /// The next unclaimed slot: a free connection claims the next due slot, so one slow
    /// answer does not hold back slots another connection could send (one queue, many servers).
    next_slot: AtomicU64,
    state: Mutex<PlanState>,
}

/// Consecutive slots of the schedule with their requests.
type Chunk = Arc<[(Slot, Planned)]>;

/// A chunk in use: its index in the schedule, its slots, and how many of them are done with
/// (by every connection, in the plan's list; by one connection, in its cursor).
struct HeldChunk {
    index: u64,
    slots: Chunk,
    used: u64,
}

struct PlanState {
    generator: Generator,
    /// The next chunk to generate.
    next_chunk: u64,
    ready: VecDeque<HeldChunk>,
}

impl Plan {
    /// Chunk `k`, after `done` slots of chunk `left` were used; a chunk is dropped once all
    /// its slots are.
    fn take(&self, k: u64, left: Option<(u64, u64)>) -> Option<Chunk> {
        let mut st = self.state.lock().ok()?;
        if let Some((old, done)) = left {
            if let Some(pos) = st.ready.iter().position(|c| c.index == old) {
                st.ready[pos].used += done;
                if st.ready[pos].used >= st.ready[pos].slots.len() as u64 {
                    st.ready.remove(pos);
                }
            }
        }
        while st.next_chunk <= k {
            let first = st.next_chunk * self.chunk;
            let last = (first + self.chunk).min(self.schedule.len());
            let made: Chunk = (first..last)
                .map(|i| {
                    let slot = self.schedule.slot(i);
                    (slot, st.generator.next(self.start_unix + slot.at.as_secs() as i64))
                })
                .collect();
            let index = st.next_chunk;
            st.ready.push_back(HeldChunk { index, slots: made, used: 0 });
            st.next_chunk += 1;
        }
        st.ready.iter().find(|c| c.index == k).map(|c| c.slots.clone())
    }
}

/// What every connection loop needs, shared read-only.
struct Shared {
    plan: Plan,
    addr: String,
    request: Template,
    t0: Instant,
    stop: Arc<AtomicBool>,
}

/// The load's inputs.
pub struct Load {
    pub base: String,
    pub path: String,
    pub schedule: Schedule,
    pub generator: Generator,
    pub renderer: Renderer,
    pub connections: usize,
    pub threads: usize,
    pub phases: usize,
    pub allow_shedding: bool,
    pub start_unix: i64,
    pub t0: Instant,
    /// Set to end the load early: every connection stops after its answer in flight.
    pub stop: Arc<AtomicBool>,
}

/// `host:port` of an `http://host:port` base URL.
fn authority(base: &str) -> Result<String, EngineError> {
    let url = reqwest::Url::parse(base).map_err(|_| EngineError::Target(base.into()))?;
    match (url.scheme(), url.host_str(), url.port_or_known_default()) {
        ("http", Some(host), Some(port)) => Ok(format!("{host}:{port}")),
        _ => Err(EngineError::Target(base.into())),
    }
}

/// Runs the whole schedule; returns the merged record and the generator (for the oracle).
pub fn run(load: Load, live: &[Arc<Live>]) -> Result<(Recorder, Generator), EngineError> {
    let addr = authority(&load.base)?;
    let connections = load.connections.max(1) as u64;
    let shared = Arc::new(Shared {
        plan: Plan {
            chunk: connections * SLOTS_PER_CONNECTION_AND_CHUNK,
            next_slot: AtomicU64::new(0),
            start_unix: load.start_unix,
            state: Mutex::new(PlanState { generator: load.generator, next_chunk: 0, ready: VecDeque::new() }),
            schedule: load.schedule,
        },
        request: Template::post(&addr, &load.path),
        addr,
        t0: load.t0,
        stop: load.stop,
    });
    let threads = load.threads.clamp(1, load.connections.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (shared, renderer, live) = (shared.clone(), load.renderer.clone(), live.get(t).cloned().unwrap_or_default());
        let (phases, shedding) = (load.phases, load.allow_shedding);
        let mine = (t as u64..connections).step_by(threads).count();
        handles.push(std::thread::Builder::new().name(format!("loadgen-{t}")).spawn(move || -> std::io::Result<Recorder> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let rec = Rc::new(RefCell::new(Recorder::new(phases, shedding)));
            let loops = LocalSet::new();
            for _ in 0..mine {
                let (shared, renderer, rec, live) = (shared.clone(), renderer.clone(), rec.clone(), live.clone());
                loops.spawn_local(async move { connection(&shared, renderer, &rec, &live).await });
            }
            // A LocalSet, awaited, runs until every task spawned on it has finished.
            rt.block_on(loops);
            Ok(Rc::try_unwrap(rec).map(RefCell::into_inner).unwrap_or_else(|rc| rc.replace(Recorder::new(phases, shedding))))
        })?);
    }
    let mut merged: Option<Recorder> = None;
    for h in handles {
        let r = h.join().map_err(|_| EngineError::Panicked)??;
        match merged.as_mut() {
            Some(m) => m.merge(r),
            None => merged = Some(r),
        }
    }
    let shared = Arc::try_unwrap(shared).map_err(|_| EngineError::Panicked)?;
    let generator = shared.plan.state.into_inner().map_err(|_| EngineError::Panicked)?.generator;
    Ok((merged.unwrap_or_else(|| Recorder::new(load.phases, load.allow_shedding)), generator))
}

/// A connection's claimed slot and its current chunk of the plan, with how many of that
/// chunk's slots it used.
struct Cursor {
    claimed: Option<u64>,
    chunk: Option<HeldChunk>,
}

impl Cursor {
    /// The slot this connection holds, claiming the next one first if it holds none.
    fn current(&mut self, plan: &Plan) -> Option<(Slot, Planned)> {
        let i = match self.claimed {
            Some(i) => i,
            None => {
                let i = plan.next_slot.fetch_add(1, Ordering::Relaxed);
                self.claimed = Some(i);
                i
            }
        };
        if i >= plan.schedule.len() {
            return None;
        }
        let k = i / plan.chunk;
        if self.chunk.as_ref().map(|c| c.index) != Some(k) {
            let left = self.chunk.take().map(|c| (c.index, c.used));
            self.chunk = Some(HeldChunk { index: k, slots: plan.take(k, left)?, used: 0 });
        }
        self.chunk.as_ref()?.slots.get((i % plan.chunk) as usize).copied()
    }

    /// The held slot is done with (sent or failed).
    fn advance(&mut self) {
        self.claimed = None;
        if let Some(c) = self.chunk.as_mut() {
            c.used += 1;
        }
    }
}

/// One connection loop: sends its claimed slots in turn on its connection, opening it
/// ahead of the next due instant, and again after a transport error or a close by the server.
async fn connection(sh: &Shared, mut renderer: Renderer, rec: &RefCell<Recorder>, live: &Live) {
    let mut cur = Cursor { claimed: None, chunk: None };
    let mut conn: Option<Conn> = None;
    let mut request = Vec::with_capacity(1024);
    let mut free_at = Instant::now();
    let alarm = Alarm::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let Some((slot, p)) = cur.current(&sh.plan) else { break };
        if conn.is_none() {
            conn = open(&sh.addr).await;
            // A slow connect is the server's delay, not the generator's lateness.
            free_at = Instant::now();
        }
        renderer.render(&p);
        sh.request.write(&mut request, renderer.headers(), &renderer.body);
        let due = sh.t0 + slot.at;
        alarm.until(due).await;
        if conn.as_ref().is_some_and(Conn::closed_while_idle) {
            conn = open(&sh.addr).await;
            free_at = Instant::now();
        }
        let sent = Instant::now();
        live.phase.store(slot.phase as u64, Ordering::Relaxed);
        let answer = match conn.as_mut() {
            Some(c) => tokio::time::timeout(REQUEST_TIMEOUT, c.exchange(&request)).await.ok().and_then(Result::ok),
            // Refused: recorded as an error at once; the next slot tries to connect again.
            None => None,
        };
        if !answer.is_some_and(|a| a.keep_alive) {
            // A failed or closing connection is not reused: the next slot opens another.
            conn = None;
        }
        let status = answer.map(|a| a.status);
        let done = Instant::now();
        let lag = sent.saturating_duration_since(due.max(free_at));
        record(rec, live, outcome(slot, &p, done - due, done - sent, lag, status), sent - sh.t0);
        free_at = done;
        cur.advance();
    }
}

/// A new connection, or `None` when it is refused or not accepted within a request's timeout
/// (a server whose accept queue is full leaves the connect pending, not refused).
async fn open(addr: &str) -> Option<Conn> {
    tokio::time::timeout(REQUEST_TIMEOUT, Conn::open(addr)).await.ok()?.ok()
}

fn outcome(slot: Slot, p: &Planned, latency: Duration, service: Duration, send_lag: Duration, status: Option<u16>) -> Outcome {
    Outcome { phase: slot.phase, scheduled: slot.at, latency, service, send_lag, status, expect: p.expect, event: p.event() }
}

fn record(rec: &RefCell<Recorder>, live: &Live, o: Outcome, sent_at: Duration) {
    let mut r = rec.borrow_mut();
    r.record(&o);
    r.last_send = r.last_send.max(sent_at);
    live.done.store(r.sent, Ordering::Relaxed);
    live.unexpected_status.store(r.unexpected_status, Ordering::Relaxed);
    live.invalid_accepted.store(r.invalid_accepted, Ordering::Relaxed);
    if r.sent.is_multiple_of(1000) {
        live.p99_us.store((r.p99_ms() * 1000.0) as u64, Ordering::Relaxed);
        live.ack_p99_us.store((r.ack_p99_ms() * 1000.0) as u64, Ordering::Relaxed);
        live.errors.store(r.errors() + r.unexpected_status, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use crate::workload::sign::Signer;
    use crate::workload::generator::Ids;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SCENARIO: &str = r#"
name = "engine"
[target]
url = "http://127.0.0.1:1"
[signing]
scheme = "standard"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[workload]
orders = 20
[[load.phases]]
kind = "constant"
rate = 400
duration_s = 1
"#;

    /// A server on loopback that answers every request 200 and closes each connection after
    /// its third answer (saying so with `connection: close`), as a server draining its
    /// keep-alive connections would.
    fn closing_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((mut s, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let mut buf = Vec::with_capacity(4096);
                        for answered in 1..=3 {
                            while !complete(&buf) {
                                if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                                    return;
                                }
                            }
                            buf.clear();
                            let close = if answered == 3 { "connection: close\r\n" } else { "" };
                            let answer = format!("HTTP/1.1 200 OK\r\n{close}content-length: 2\r\n\r\nok");
                            if s.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        });
        format!("http://{addr}")
    }

    /// Whether `buf` holds a whole request: its head and Content-Length bytes of body.
    fn complete(buf: &[u8]) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = req.parse(buf) else { return false };
        let length = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")).and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        length.is_some_and(|n| buf.len() >= head + n)
    }

    #[test]
    fn connections_closed_by_the_server_are_reopened_and_no_request_is_lost() {
        let s = Scenario::parse(SCENARIO).expect("scenario");
        let planned = s.planned_requests();
        let generator = Generator::new(&s.workload, s.seed, "engine".into(), planned);
        let signer = Signer::new(s.signing.scheme, &s.signing.secret).expect("signer");
        let load = Load {
            base: closing_server(),
            path: "/api/webhooks/payment".into(),
            schedule: Schedule::new(&s.load.phases),
            generator,
            renderer: Renderer::new(Ids { prefix: "engine".into(), format: crate::scenario::Format::Flat }, signer),
            connections: 8,
            threads: 2,
            phases: 1,
            allow_shedding: false,
            start_unix: 1_700_000_000,
            t0: Instant::now() + Duration::from_millis(100),
            stop: Arc::default(),
        };
        let live: Vec<Arc<Live>> = (0..2).map(|_| Arc::default()).collect();
        let (rec, _) = run(load, &live).expect("load");
        assert_eq!(rec.sent, planned);
        assert_eq!(rec.statuses().get("200"), Some(&planned), "every request answered 200 despite {} closes: {:?}", planned / 3, rec.statuses());
        assert_eq!(live.iter().map(|l| l.done.load(Ordering::Relaxed)).sum::<u64>(), planned);
    }
}
