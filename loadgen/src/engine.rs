//! The open-loop sender, shaped like wrk2: a few threads, each running a fixed set of
//! connection loops; each loop owns one HTTP/1.1 keep-alive connection (hyper's client
//! connection API) and, when free, claims the next due slot of the schedule (one queue
//! served by every connection, so one slow answer holds back no other slot). A request is rendered
//! into the loop's reused buffers when it is due, and its outcome is recorded in its
//! thread's recorder; the recorders are merged at the end. Nothing is spawned, sent over a
//! channel or locked per request: the plan is shared in chunks, taken once per chunk.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::plan::{Schedule, Slot};
use crate::stats::{Outcome, Recorder};
use crate::workload::{Generator, Planned, Renderer};

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
}

/// The request stream, generated in chunks on demand and dropped once every connection
/// has taken its share.
struct Plan {
    schedule: Schedule,
    chunk: u64,
    start_unix: i64,
    /// The next unclaimed slot: a free connection claims the next due slot, so one slow
    /// answer does not hold back slots another connection could send (one queue, many servers).
    next: AtomicU64,
    state: Mutex<PlanState>,
}

/// Consecutive slots of the schedule with their requests.
type Chunk = Arc<[(Slot, Planned)]>;

struct PlanState {
    generator: Generator,
    next: u64,
    /// Chunk index, its slots, and how many of its slots connections have finished with.
    ready: VecDeque<(u64, Chunk, u64)>,
}

impl Plan {
    /// Chunk `k`, after `done` slots of chunk `left` were used; a chunk is dropped once all
    /// its slots are.
    fn take(&self, k: u64, left: Option<(u64, u64)>) -> Option<Chunk> {
        let mut st = self.state.lock().ok()?;
        if let Some((old, done)) = left {
            if let Some(pos) = st.ready.iter().position(|(i, _, _)| *i == old) {
                st.ready[pos].2 += done;
                if st.ready[pos].2 >= st.ready[pos].1.len() as u64 {
                    st.ready.remove(pos);
                }
            }
        }
        while st.next <= k {
            let first = st.next * self.chunk;
            let last = (first + self.chunk).min(self.schedule.len());
            let made: Chunk = (first..last)
                .map(|i| {
                    let slot = self.schedule.slot(i);
                    (slot, st.generator.next(self.start_unix + slot.at.as_secs() as i64))
                })
                .collect();
            let n = st.next;
            st.ready.push_back((n, made, 0));
            st.next += 1;
        }
        st.ready.iter().find(|(i, _, _)| *i == k).map(|(_, c, _)| c.clone())
    }
}

/// What every connection loop needs, shared read-only.
struct Shared {
    plan: Plan,
    addr: String,
    host: HeaderValue,
    uri: Uri,
    t0: Instant,
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
}

/// Runs the whole schedule; returns the merged record and the generator (for the oracle).
pub fn run(load: Load, live: &[Arc<Live>]) -> Result<(Recorder, Generator), EngineError> {
    let uri: Uri = load.base.parse().map_err(|_| EngineError::Target(load.base.clone()))?;
    let authority = uri.authority().ok_or_else(|| EngineError::Target(load.base.clone()))?.clone();
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| EngineError::Target(load.base.clone()))?;
    let connections = load.connections.max(1) as u64;
    let shared = Arc::new(Shared {
        plan: Plan {
            chunk: connections * SLOTS_PER_CONNECTION_AND_CHUNK,
            next: AtomicU64::new(0),
            start_unix: load.start_unix,
            state: Mutex::new(PlanState { generator: load.generator, next: 0, ready: VecDeque::new() }),
            schedule: load.schedule,
        },
        addr,
        host,
        uri: load.path.parse().map_err(|_| EngineError::Target(load.path.clone()))?,
        t0: load.t0,
    });
    let threads = load.threads.clamp(1, load.connections.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (shared, renderer, live) = (shared.clone(), load.renderer.clone(), live.get(t).cloned().unwrap_or_default());
        let (phases, shedding) = (load.phases, load.allow_shedding);
        let mine = (t as u64..connections).step_by(threads).count();
        handles.push(std::thread::Builder::new().name(format!("loadgen-{t}")).spawn(move || -> std::io::Result<Recorder> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let rec = RefCell::new(Recorder::new(phases, shedding));
            rt.block_on(futures_util::future::join_all((0..mine).map(|_| connection(&shared, renderer.clone(), &rec, &live))));
            Ok(rec.into_inner())
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
    chunk: Option<(u64, Chunk, u64)>,
}

impl Cursor {
    /// The slot this connection holds, claiming the next one first if it holds none.
    fn current(&mut self, plan: &Plan) -> Option<(Slot, Planned)> {
        let i = match self.claimed {
            Some(i) => i,
            None => {
                let i = plan.next.fetch_add(1, Ordering::Relaxed);
                self.claimed = Some(i);
                i
            }
        };
        if i >= plan.schedule.len() {
            return None;
        }
        let k = i / plan.chunk;
        if self.chunk.as_ref().map(|(n, _, _)| *n) != Some(k) {
            let left = self.chunk.take().map(|(n, _, used)| (n, used));
            self.chunk = Some((k, plan.take(k, left)?, 0));
        }
        let (_, slots, _) = self.chunk.as_ref()?;
        slots.get((i % plan.chunk) as usize).copied()
    }

    /// The held slot is done with (sent or failed).
    fn advance(&mut self) {
        self.claimed = None;
        if let Some((_, _, used)) = self.chunk.as_mut() {
            *used += 1;
        }
    }
}

/// One connection loop: connect, send its slots in turn on that connection, and reconnect
/// after a transport error or a close by the server.
async fn connection(sh: &Shared, mut renderer: Renderer, rec: &RefCell<Recorder>, live: &Live) {
    let mut cur = Cursor { claimed: None, chunk: None };
    while let Some((slot, _)) = cur.current(&sh.plan) {
        match connect(&sh.addr).await {
            Ok((sender, conn)) => {
                let driver = async move {
                    // Its error, if any, is the one the pending request sees.
                    let _ = conn.await;
                };
                futures_util::future::join(driver, send_on(sender, &mut cur, sh, &mut renderer, rec, live)).await;
            }
            Err(_) => {
                // Recorded at its due instant, so a refused connection cannot spin ahead
                // of the schedule.
                let due = sh.t0 + slot.at;
                tokio::time::sleep_until(due).await;
                if let Some((slot, p)) = cur.current(&sh.plan) {
                    let now = Instant::now();
                    record(rec, live, outcome(slot, &p, now - due, Duration::ZERO, Duration::ZERO, None), now - sh.t0);
                }
                cur.advance();
            }
        }
    }
}

type Conn = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

async fn connect(addr: &str) -> std::io::Result<(SendRequest<Full<Bytes>>, Conn)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)
}

/// Sends this connection's slots until the schedule ends or the connection fails; the
/// sender is dropped on return, which closes the connection.
async fn send_on(mut sender: SendRequest<Full<Bytes>>, cur: &mut Cursor, sh: &Shared, r: &mut Renderer, rec: &RefCell<Recorder>, live: &Live) {
    let mut free_at = Instant::now();
    while let Some((slot, p)) = cur.current(&sh.plan) {
        let due = sh.t0 + slot.at;
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        if sender.ready().await.is_err() {
            // Closed by the server while idle: reconnect and send this slot on the new one.
            return;
        }
        r.render(&p);
        let req = request(sh, r);
        let sent = Instant::now();
        live.phase.store(slot.phase as u64, Ordering::Relaxed);
        let status = match tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut sender, req)).await {
            Ok(Ok(s)) => Some(s),
            _ => None,
        };
        let done = Instant::now();
        let lag = sent.saturating_duration_since(due.max(free_at));
        record(rec, live, outcome(slot, &p, done - due, done - sent, lag, status), sent - sh.t0);
        free_at = done;
        cur.advance();
        if status.is_none() {
            return;
        }
    }
}

fn request(sh: &Shared, r: &Renderer) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::copy_from_slice(&r.body)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = sh.uri.clone();
    let h = req.headers_mut();
    h.insert(HOST, sh.host.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, v) in r.headers() {
        // Rendered values are ASCII ids, digits and base64 or hex: always valid.
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    req
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Result<u16, hyper::Error> {
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    // Read to the end so the connection is free for the next request.
    resp.into_body().collect().await?;
    Ok(status)
}

fn outcome(slot: Slot, p: &Planned, latency: Duration, service: Duration, send_lag: Duration, status: Option<u16>) -> Outcome {
    Outcome { phase: slot.phase, scheduled: slot.at, latency, service, send_lag, status, expect: p.expect, event: p.event() }
}

fn record(rec: &RefCell<Recorder>, live: &Live, o: Outcome, sent_at: Duration) {
    let mut r = rec.borrow_mut();
    r.record(&o);
    r.last_send = r.last_send.max(sent_at);
    live.done.store(r.sent, Ordering::Relaxed);
    if r.sent.is_multiple_of(1000) {
        live.p99_us.store((r.p99_ms() * 1000.0) as u64, Ordering::Relaxed);
        live.errors.store(r.errors() + r.unexpected_status, Ordering::Relaxed);
    }
}
