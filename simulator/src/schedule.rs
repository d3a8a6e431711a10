//! One schedule: a seed chooses the workload, the interleaving of the server's group commits
//! and the worker's turns, the crashes and the faults; the oracle judges the outcome.
//!
//! The server is the log's group-commit [`Writer`] stepped directly (a group is whatever the
//! clients sent since the last one); the worker is the real [`Worker`] over the real
//! [`EmbeddedConsumer`], turned one step at a time; both run over the [`SimDisk`] and the
//! [`StoreModel`], in simulated time (tokio's paused clock, which jumps when everything waits).
//! After the main phase the faults stop, everything that is down is restarted, the clients
//! resend what was never acknowledged, and dead letters are replayed; then a last power cut
//! and a last drain. The oracle then checks: every acknowledged event applied exactly once
//! (unless the disk flipped bits and the log reported the event's offset damaged, gone or
//! possibly acknowledged), nothing applied that was never written, no offset acknowledged
//! twice, no stored position beyond the log's end, no damage reported where the disk damaged
//! nothing, no panic, and that it all drained within a bounded simulated time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webhooks::disk::Disk;
use webhooks::dlq;
use webhooks::domain::{EventType, NewOrder, PaymentEvent};
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{EmbeddedConfig, EmbeddedConsumer};
use webhooks::queue::log::appender::{Fault, Writer};
use webhooks::queue::log::recovery::Damage;
use webhooks::queue::log::{identity, reader, WriterLock};
use webhooks::queue::{Producer, QueueError};
use webhooks::store::{DeadLetterFilter, Store};
use webhooks::worker::{RetryPolicy, Step, Worker, WorkerConfig};

use crate::disk::{Faults, SimDisk};
use crate::rng::Rng;
use crate::store::{Kind, StoreFaults, StoreModel};
use crate::trace::Trace;

const DATA: &str = "/sim/data";
const CONSUMER: &str = "webhooks-worker";
/// Orders events name; some exist from the start, the rest arrive during the run.
const ORDERS: u64 = 6;
/// How long, in simulated time, the system gets to drain once faults stop.
const DRAIN_WITHIN: Duration = Duration::from_secs(600);

/// What a seed chose.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub ops: u64,
    pub store: Kind,
    pub segment_bytes: u64,
    pub disk: Faults,
    pub store_faults: StoreFaults,
    /// Bits flip on the medium: damage to acknowledged records is then allowed, if reported.
    pub flips: bool,
}

impl Config {
    /// Most schedules are short; one in a hundred is long.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = Rng::new(seed ^ 0x5eed_5eed);
        let ops = if r.chance(0.01) { r.range(1000, 3000) } else { r.range(30, 200) };
        let store = if r.chance(0.7) { Kind::Sqlite } else { Kind::Postgres };
        let segment_bytes = [600, 1200, 4096, 16384][r.below(4) as usize];
        let level = [0.0, 0.005, 0.02, 0.06][r.below(4) as usize];
        let disk = Faults {
            write_error: level * r.below(2) as f64,
            short_write: level * r.below(2) as f64,
            read_error: level * r.below(3) as f64,
            sync_error: level * r.below(2) as f64,
            keep_pages: [0.0, 0.5, 1.0][r.below(3) as usize],
            dir_sync_error: level * r.below(2) as f64,
        };
        let transient = level * r.below(2) as f64;
        let store_faults = StoreFaults { transient, permanent: transient / 2.0, outage: level * 0.5 * r.below(2) as f64, outage_for: Duration::from_secs(r.range(0, 5)), failed_checkpoint: level * 2.0 * r.below(2) as f64 };
        let flips = r.chance(0.2);
        Self { seed, ops, store, segment_bytes, disk, store_faults, flips }
    }
}

/// How a schedule went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub hash: u64,
    pub ops: u64,
    pub crashes: u64,
    pub faults: u64,
    /// What the oracle found wrong, if anything.
    pub violation: Option<String>,
    /// The last operations, readable.
    pub tail: String,
    /// A spool schedule ([`crate::spool`]) rather than the durable path's.
    pub spool: bool,
}

/// Runs the schedule of `seed`: a spool schedule for some seeds ([`crate::spool`]), the
/// durable path's for the rest.
pub fn run(seed: u64) -> Outcome {
    if crate::spool::chosen(seed) {
        return Outcome { spool: true, ..execute(seed, |trace| crate::spool::run(seed, trace)) };
    }
    let cfg = Config::from_seed(seed);
    execute(seed, |trace| Sim::new(&cfg, trace).run())
}

/// Runs a schedule in simulated time on one thread, catching a panic as a violation.
pub(crate) fn execute<F: std::future::Future<Output = Checked<(u64, u64)>>>(seed: u64, schedule: impl FnOnce(Trace) -> F) -> Outcome {
    let trace = Trace::default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
    let result = match runtime {
        Ok(rt) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(schedule(trace.clone())))),
        Err(e) => Ok(Err(format!("cannot build the runtime: {e}"))),
    };
    let (violation, ops, crashes) = match result {
        Ok(Ok((ops, crashes))) => (None, ops, crashes),
        Ok(Err(v)) => (Some(v), 0, 0),
        Err(panic) => {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            (Some(format!("panic: {why}")), 0, 0)
        }
    };
    Outcome { seed, hash: trace.hash(), ops, crashes, faults: trace.faults(), violation, tail: trace.tail(), spool: false }
}

/// One simulated event, as a client sends it.
struct Event {
    id: String,
    payload: Vec<u8>,
}

/// An append waiting for the server's next group.
struct Sent {
    event: usize,
}

struct Server {
    writer: Writer,
    /// A write or fsync failed: nothing is accepted until it is restarted.
    failed: bool,
}

struct Sim {
    cfg: Config,
    rng: Rng,
    trace: Trace,
    disk: SimDisk,
    store: Arc<StoreModel>,
    dir: PathBuf,
    wake: Arc<Notify>,
    server: Option<Server>,
    worker: Option<Worker>,
    events: Vec<Event>,
    /// Sent to the server, waiting for its next group.
    pending: Vec<Sent>,
    /// Never acknowledged (refused, or the server died): the client sends them again.
    unacked: BTreeSet<usize>,
    /// Offset: the event acknowledged under it.
    acked: BTreeMap<u64, usize>,
    /// Event ids that reached a write: the only ones that may ever be applied.
    written: BTreeSet<String>,
    /// Offsets the system reported damaged or gone.
    reported: BTreeSet<u64>,
    /// Offsets recovery cut at the log's end and reported as possibly acknowledged: a torn
    /// write, or damage it cannot tell from one.
    possibly: BTreeSet<u64>,
    orders: u64,
    crashes: u64,
    ops: u64,
    flipped: bool,
}

pub(crate) type Checked<T> = Result<T, String>;

impl Sim {
    fn new(cfg: &Config, trace: Trace) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let disk = SimDisk::new(rng.fork(), cfg.disk, trace.clone());
        let store = Arc::new(StoreModel::new(cfg.store, rng.fork(), cfg.store_faults, trace.clone()));
        let dir = Path::new(DATA).join("log");
        let sim = Self {
            cfg: cfg.clone(),
            rng,
            trace,
            disk,
            store,
            dir,
            wake: Arc::default(),
            server: None,
            worker: None,
            events: Vec::new(),
            pending: Vec::new(),
            unacked: BTreeSet::new(),
            acked: BTreeMap::new(),
            written: BTreeSet::new(),
            reported: BTreeSet::new(),
            possibly: BTreeSet::new(),
            orders: 0,
            crashes: 0,
            ops: 0,
            flipped: false,
        };
        sim.disk.create_dir(Path::new("/sim")).and_then(|_| sim.disk.sync_dir(Path::new("/"))).expect("the simulated disk's root");
        sim
    }

    async fn run(mut self) -> Checked<(u64, u64)> {
        self.orders = 2;
        for k in 0..self.orders {
            self.create_order(k).await;
        }
        self.disk.set_faults(true);
        self.store.set_faults(true);
        for _ in 0..self.cfg.ops {
            self.step().await?;
        }
        self.disk.set_faults(false);
        self.store.set_faults(false);
        self.trace.record("faults-stop", "", 0, 0);
        self.drain().await?;
        self.power_cut();
        self.drain().await?;
        self.check().await?;
        Ok((self.ops, self.crashes))
    }

    async fn step(&mut self) -> Checked<()> {
        self.ops += 1;
        match self.rng.below(100) {
            0..=29 => {
                let n = self.rng.range(1, 6);
                for _ in 0..n {
                    self.post();
                }
            }
            30..=54 => self.group()?,
            55..=79 => self.worker_turn().await,
            80..=81 => self.kill_server(),
            82..=83 => self.kill_worker(),
            84 => self.power_cut(),
            85 => self.power_cut_in_a_sync()?,
            86..=91 => self.restart().await,
            92..=93 => self.second_writer().await?,
            94..=95 => self.replay().await?,
            96..=97 => {
                if self.orders < ORDERS {
                    self.create_order(self.orders).await;
                }
            }
            98 if self.cfg.flips && !self.flipped => self.flip(),
            _ => {
                let d = Duration::from_millis(self.rng.range(1, 2000));
                self.trace.record("advance", "", d.as_millis() as u64, 0);
                tokio::time::advance(d).await;
            }
        }
        Ok(())
    }

    /// Bit rot, long after the write: the kernel has written everything back by then.
    fn flip(&mut self) {
        self.flipped = true;
        self.disk.write_back();
        // Any byte of any segment: lengths, offsets, checksums, the magic, records not yet
        // provably durable. The log must report what it cannot read and never reuse an offset.
        self.disk.flip_bit(".seg", |_, medium| vec![0..medium.len()]);
    }

    async fn create_order(&mut self, k: u64) {
        let order = NewOrder { id: format!("o{k}"), user_id: "u".into(), items: vec!["i".into()], total_amount: 100, currency: "USD".into() };
        if self.store.create_order(&order).await.is_ok() && k >= self.orders {
            self.orders = k + 1;
        }
    }

    /// A client sends a new event or, now and then, one sent before (a provider's retry).
    fn post(&mut self) {
        let event = match self.events.len() {
            n if n > 0 && self.rng.chance(0.1) => self.rng.below(n as u64) as usize,
            _ => self.new_event(),
        };
        self.send(Sent { event });
    }

    fn new_event(&mut self) -> usize {
        let n = self.events.len();
        let order = self.rng.below(ORDERS);
        let e = PaymentEvent {
                    event_id: format!("evt_{n}"),
                    event_type: EventType::Success,
                    payment_id: format!("pay_{n}"),
                    order_id: format!("o{order}"),
                    amount: 100,
                    currency: "USD".into(),
                    created_at: None,
                    received_at_us: 0,
                    request_id: None,
                    traceparent: None,
                };
        let payload = serde_json::to_vec(&e).unwrap_or_default();
        self.events.push(Event { id: e.event_id, payload });
        n
    }

    fn send(&mut self, sent: Sent) {
        match &self.server {
            Some(s) if !s.failed => {
                self.unacked.remove(&sent.event);
                self.pending.push(sent);
            }
            _ => {
                // 503: the client keeps it and tries again later.
                self.unacked.insert(sent.event);
            }
        }
    }

    /// The server writes and syncs what the clients sent since its last group.
    fn group(&mut self) -> Checked<()> {
        let Some(server) = self.server.as_mut().filter(|s| !s.failed) else { return Ok(()) };
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = (self.rng.range(1, self.pending.len() as u64) as usize).min(self.pending.len());
        let group: Vec<Sent> = self.pending.drain(..n).collect();
        for s in &group {
            self.written.insert(self.events[s.event].id.clone());
        }
        let events = &self.events;
        let outcome = server.writer.write(group.iter().map(|s| events[s.event].payload.as_slice()));
        match outcome {
            Ok(first) => {
                server.writer.publish(first + group.len() as u64 - 1);
                self.wake.notify_one();
                self.trace.record("group-acked", "", first, group.len() as u64);
                for (i, s) in group.iter().enumerate() {
                    self.acknowledge(first + i as u64, s)?;
                }
            }
            Err(fault) => {
                let fatal = matches!(fault, Fault::Fatal(_));
                if fatal {
                    server.failed = true;
                    self.unacked.extend(self.pending.drain(..).map(|s| s.event));
                }
                self.trace.record("group-refused", "", fatal as u64, group.len() as u64);
                self.unacked.extend(group.iter().map(|s| s.event));
            }
        }
        Ok(())
    }

    fn acknowledge(&mut self, offset: u64, sent: &Sent) -> Checked<()> {
        if let Some(earlier) = self.acked.insert(offset, sent.event) {
            return Err(format!("offset {offset} acknowledged twice: for {} and for {}", self.events[earlier].id, self.events[sent.event].id));
        }
        self.unacked.remove(&sent.event);
        Ok(())
    }

    async fn worker_turn(&mut self) {
        if let Some(w) = self.worker.as_mut() {
            let step = w.step().await;
            self.trace.record("worker-step", "", matches!(step, Step::Applied(n) if n > 0) as u64, 0);
        }
    }

    fn kill_server(&mut self) {
        if self.server.take().is_some() {
            self.crashes += 1;
            self.trace.record("kill", "server", 0, 0);
            self.unacked.extend(self.pending.drain(..).map(|s| s.event));
        }
    }

    fn kill_worker(&mut self) {
        if self.worker.take().is_some() {
            self.crashes += 1;
            self.trace.record("kill", "worker", 0, 0);
            self.store.process_gone();
        }
    }

    fn power_cut(&mut self) {
        self.kill_server();
        self.kill_worker();
        self.crashes += 1;
        self.disk.power_cut();
        self.store.power_cut();
    }

    /// The power goes while the server's group waits for its fsync: its pages torn, never
    /// acknowledged.
    fn power_cut_in_a_sync(&mut self) -> Checked<()> {
        self.disk.cut_in_next_sync();
        self.group()?;
        self.power_cut();
        Ok(())
    }

    /// An operator (or a supervisor) starts what is down and restarts a failed server.
    async fn restart(&mut self) {
        if self.server.as_ref().is_some_and(|s| s.failed) {
            self.kill_server();
        }
        // Its readiness fails after a failed checkpoint; the supervisor restarts it.
        if self.store.needs_restart() {
            self.kill_worker();
        }
        if self.server.is_none() {
            match self.open_writer().await {
                Ok(writer) => {
                    self.trace.record("server-up", "", writer.next(), 0);
                    self.server = Some(Server { writer, failed: false });
                }
                Err(why) => self.trace.record("server-down", &why, 0, 0),
            }
        }
        if self.worker.is_none() {
            match self.open_worker().await {
                Ok(worker) => {
                    self.trace.record("worker-up", "", 0, 0);
                    self.worker = Some(worker);
                }
                Err(why) => self.trace.record("worker-down", &why, 0, 0),
            }
        }
    }

    /// What the server does at start: identity, the highest stored position, the log.
    async fn open_writer(&mut self) -> Result<Writer, String> {
        let disk: Arc<dyn Disk> = Arc::new(self.disk.clone());
        let lock = WriterLock::acquire_on(disk.clone(), &self.dir).map_err(|e| e.to_string())?;
        let id = identity::load_or_create_on(&*disk, &self.dir).map_err(|e| e.to_string())?;
        let stored = self.store.log_position(&id).await.map_err(|e| e.to_string())?;
        let (writer, damage) = Writer::open(lock, stored + 1, self.cfg.segment_bytes).map_err(|e| e.to_string())?;
        self.report(&damage);
        Ok(writer)
    }

    fn report(&mut self, damage: &Damage) {
        self.reported.extend(damage.unreadable.iter().copied());
        if let Some((first, last)) = damage.cut {
            self.reported.extend(first..=last);
        }
        if let Some((first, last)) = damage.possibly {
            self.possibly.extend(first..=last);
        }
    }

    async fn open_worker(&mut self) -> Result<Worker, String> {
        let cfg = EmbeddedConfig { segment_bytes: self.cfg.segment_bytes, disk: Arc::new(self.disk.clone()), ..EmbeddedConfig::in_dir(Path::new(DATA)) };
        let consumer = EmbeddedConsumer::open(&cfg, self.wake.clone()).map_err(|e| e.to_string())?;
        let retry = RetryPolicy { base: Duration::from_millis(5), cap: Duration::from_millis(500), max_attempts: self.rng.range(2, 6) as u32 };
        let worker_cfg = WorkerConfig {
            consumer: CONSUMER.into(),
            batch_size: self.rng.range(1, 64) as usize,
            linger: Duration::from_millis(self.rng.range(0, 5)),
            poll_wait: Duration::from_millis(self.rng.range(1, 100)),
            retry,
        };
        let store: Arc<dyn Store> = self.store.clone();
        let mut worker = Worker::new(Box::new(consumer), store, Metrics::new(), worker_cfg, CancellationToken::new()).with_jitter_seed(self.rng.next_u64());
        worker.start().await.map_err(|e| e.to_string())?;
        Ok(worker)
    }

    /// Another process tries to write the log beside the server (an old `dlq replay`, a
    /// second server on the same directory): refused by the log's lock.
    async fn second_writer(&mut self) -> Checked<()> {
        let Ok(mut writer) = self.open_writer().await else {
            self.trace.record("second-writer-refused", "", 0, 0);
            return Ok(());
        };
        let sent = Sent { event: self.new_event() };
        self.written.insert(self.events[sent.event].id.clone());
        if let Ok(offset) = writer.write(std::iter::once(self.events[sent.event].payload.as_slice())) {
            writer.publish(offset);
            self.wake.notify_one();
            self.trace.record("second-writer-acked", "", offset, 0);
            self.acknowledge(offset, &sent)?;
        } else {
            self.unacked.insert(sent.event);
        }
        Ok(())
    }

    /// Dead letters back onto the log through the server, by the production replay
    /// ([`dlq::replay`], which `POST /api/dead-letters/replay` runs), each appended as a group.
    async fn replay(&mut self) -> Checked<()> {
        let Some(server) = self.server.take_if(|s| !s.failed) else { return Ok(()) };
        let producer = ReplayProducer { server: Mutex::new(server), events: &self.events, appended: Mutex::default(), wake: &self.wake };
        let filter = DeadLetterFilter { limit: Some(50), ..DeadLetterFilter::default() };
        let report = dlq::replay(&*self.store, &producer, &filter).await;
        let (server, appended) = (producer.server.into_inner().unwrap_or_else(|p| p.into_inner()), producer.appended.into_inner().unwrap_or_default());
        if server.failed {
            self.unacked.extend(self.pending.drain(..).map(|s| s.event));
        }
        self.server = Some(server);
        let replayed = report.map_or(0, |r| r.replayed.len());
        self.trace.record("replay", "", replayed as u64, appended.len() as u64);
        for (offset, event) in appended {
            self.written.insert(self.events[event].id.clone());
            if let Some(offset) = offset {
                self.acknowledge(offset, &Sent { event })?;
            }
        }
        Ok(())
    }

    /// Faults have stopped: restart what is down, resend what was never acknowledged, replay
    /// dead letters, until the worker has applied everything on the log.
    async fn drain(&mut self) -> Checked<()> {
        let deadline = tokio::time::Instant::now() + DRAIN_WITHIN;
        for k in 0..ORDERS {
            self.create_order(k).await;
        }
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("liveness: not drained within {DRAIN_WITHIN:?} of simulated time after faults stopped"));
            }
            self.restart().await;
            if self.server.is_none() || self.worker.is_none() {
                tokio::time::advance(Duration::from_secs(1)).await;
                continue;
            }
            let retry: Vec<usize> = std::mem::take(&mut self.unacked).into_iter().collect();
            for event in retry {
                self.send(Sent { event });
            }
            while !self.pending.is_empty() && self.server.as_ref().is_some_and(|s| !s.failed) {
                self.group()?;
            }
            self.replay().await?;
            while !self.pending.is_empty() && self.server.as_ref().is_some_and(|s| !s.failed) {
                self.group()?;
            }
            // What the appender thread does while no append comes: retry a failed publish.
            if self.server.as_mut().is_some_and(|s| s.writer.publish_again()) {
                self.wake.notify_one();
            }
            if let Some(w) = self.worker.as_mut() {
                while w.step().await != Step::Applied(0) {}
            }
            if self.drained().await {
                return Ok(());
            }
        }
    }

    async fn drained(&mut self) -> bool {
        if !self.unacked.is_empty() || !self.pending.is_empty() {
            return false;
        }
        let Ok(id) = identity::load_or_create_on(&self.disk, &self.dir) else { return false };
        let durable = reader::durable_on(&self.disk, &self.dir).unwrap_or(u64::MAX);
        // Offsets recovery cut and reported are passed over, never delivered: a position
        // goes past them only with the record after them.
        let mut stored = self.stored(&id);
        while stored < durable && (self.reported.contains(&(stored + 1)) || self.possibly.contains(&(stored + 1))) {
            stored += 1;
        }
        let waiting = self.store.tables().letters.iter().any(|l| l.replayed_at.is_none() && !l.event_id.starts_with("undecodable:"));
        stored >= durable && !waiting && self.store.make_durable().await.is_ok()
    }

    fn stored(&self, log_id: &str) -> u64 {
        let positions = self.store.tables().positions;
        positions.get(&format!("{CONSUMER}@{log_id}")).into_iter().flatten().map(|p| p.offset.max(0) as u64).max().unwrap_or(0)
    }

    /// The oracle.
    async fn check(&mut self) -> Checked<()> {
        let tables = self.store.tables();
        for l in tables.letters.iter().filter_map(|l| l.event_id.strip_prefix("undecodable:0:")) {
            self.reported.extend(l.parse::<u64>().ok());
        }
        if !self.cfg.flips && !self.reported.is_empty() {
            return Err(format!("damage reported at offsets {:?} though no bit flipped", self.reported));
        }
        let mut offsets: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for (&offset, &event) in &self.acked {
            offsets.entry(event).or_default().push(offset);
        }
        for (event, at) in offsets {
            let id = &self.events[event].id;
            let times = tables.applied.get(id).copied().unwrap_or(0);
            // Earlier copies that did not apply were dead-lettered (their order had not come)
            // and replayed: the last copy is the one that counts. Possibly acknowledged
            // offsets excuse only damage: a torn write never holds an acknowledged record.
            let excused = at.last().is_some_and(|o| self.reported.contains(o) || (self.flipped && self.possibly.contains(o)));
            if times != 1 && !(times == 0 && excused) {
                let reported: Vec<u64> = at.iter().copied().filter(|o| self.reported.contains(o)).collect();
                let possibly: Vec<u64> = at.iter().copied().filter(|o| self.possibly.contains(o)).collect();
                return Err(format!("{id} acknowledged at offsets {at:?} (reported damaged: {reported:?}, possibly: {possibly:?}) was applied {times} times"));
            }
        }
        if let Some(id) = tables.applied.keys().find(|id| !self.written.contains(*id)) {
            return Err(format!("{id} applied but never written to the log"));
        }
        let log = identity::load_or_create_on(&self.disk, &self.dir).map_err(|e| e.to_string())?;
        let durable = reader::durable_on(&self.disk, &self.dir).map_err(|e| e.to_string())?;
        let stored = self.stored(&log);
        if stored > durable {
            return Err(format!("stored position {stored} is beyond the log's end {durable}"));
        }
        Ok(())
    }
}

/// The server's producer for a replay: appends each event as a group of its own, so that it
/// is durable when [`dlq::replay`] marks its letter. It writes the bytes the client sent:
/// the replay's fresh arrival stamp is wall-clock time, which would make the schedule depend
/// on when it runs.
struct ReplayProducer<'a> {
    server: Mutex<Server>,
    events: &'a [Event],
    /// The events a write was tried for, with the offset when it was acknowledged.
    appended: Mutex<Vec<(Option<u64>, usize)>>,
    wake: &'a Notify,
}

#[async_trait]
impl<'a> Producer for ReplayProducer<'a> {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        let Some(i) = self.events.iter().position(|e| e.id == event.event_id) else {
            return Err(QueueError::Storage(format!("{} was never sent", event.event_id)));
        };
        let mut server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        let mut appended = self.appended.lock().unwrap_or_else(|p| p.into_inner());
        match server.writer.write(std::iter::once(self.events[i].payload.as_slice())) {
            Ok(offset) => {
                server.writer.publish(offset);
                self.wake.notify_one();
                appended.push((Some(offset), i));
                Ok(())
            }
            Err(fault) => {
                server.failed |= matches!(fault, Fault::Fatal(_));
                appended.push((None, i));
                Err(QueueError::Storage(format!("{fault:?}")))
            }
        }
    }

    async fn ready(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
