//! A spool schedule: the Kafka mode's server in front of a [`SimBroker`]. Clients post
//! through the real [`SpoolingProducer`], which sends to the broker while it answers and to
//! the spool (the segment log, on the [`SimDisk`]) while it does not; the spool's real
//! [`Drainer`] is stepped by the schedule, in simulated time. The spool's appender is the
//! log's [`Writer`] stepped directly, one group per append, as in the durable path's
//! schedule. A seed chooses the posts, the drainer's rounds, the broker going down and up
//! and its lost, late and partial acknowledgements, kills, power cuts and disk faults.
//!
//! The oracle: every acknowledged event reaches the broker at least once (the worker
//! deduplicates by id); the spool never lets an event go (its consumed position) before the
//! broker acknowledged it; no spool offset is given out twice; no panic; and once faults stop,
//! everything drains within a bounded simulated time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webhooks::disk::Disk;
use webhooks::domain::PaymentEvent;
use webhooks::metrics::Metrics;
use webhooks::queue::embedded::{self, EmbeddedConfig, EmbeddedConsumer};
use webhooks::queue::log::appender::{Fault, Writer};
use webhooks::queue::log::WriterLock;
use webhooks::queue::spool::{Drainer, SpoolingProducer};
use webhooks::queue::{Producer, QueueError};

use crate::broker::{BrokerFaults, SimBroker};
use crate::disk::SimDisk;
use crate::rng::Rng;
use crate::schedule::{Checked, Config};
use crate::trace::Trace;

const DATA: &str = "/sim/spool";
/// How long, in simulated time, the spool gets to drain once faults stop.
const DRAIN_WITHIN: Duration = Duration::from_secs(600);
/// The appender thread's wait between retries of a failed publish.
const PUBLISH_RETRY: Duration = Duration::from_millis(100);

/// Whether the schedule of `seed` is a spool schedule: one in five.
pub fn chosen(seed: u64) -> bool {
    Rng::new(seed ^ 0x5b00_15ed).chance(0.2)
}

/// The spool's appender: every append is a group of its own, written and synced before it
/// returns, as the real appender acknowledges.
struct SpoolLog {
    writer: Arc<Mutex<Writer>>,
    /// A write or fsync failed: nothing more is taken, as the real appender stops.
    failed: Arc<Mutex<bool>>,
    wake: Arc<Notify>,
    /// Offsets acknowledged, with the event under each, over every run of the schedule.
    offsets: Arc<Mutex<Offsets>>,
}

#[derive(Default)]
struct Offsets {
    events: BTreeMap<u64, String>,
    reused: Option<String>,
}

#[async_trait]
impl Producer for SpoolLog {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if *failed {
            return Err(QueueError::Unavailable("the spool's appender stopped after a failed write".into()));
        }
        let payload = serde_json::to_vec(event).map_err(|e| QueueError::Storage(e.to_string()))?;
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match writer.write(std::iter::once(payload.as_slice())) {
            Ok(offset) => {
                writer.publish(offset);
                self.wake.notify_one();
                let mut offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(earlier) = offsets.events.insert(offset, event.event_id.clone()) {
                    offsets.reused.get_or_insert(format!("spool offset {offset} acknowledged twice: for {earlier} and for {}", event.event_id));
                }
                Ok(())
            }
            Err(fault) => {
                *failed |= matches!(fault, Fault::Fatal(_));
                Err(QueueError::Storage(format!("{fault:?}")))
            }
        }
    }

    async fn ready(&self) -> Result<(), QueueError> {
        match *self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            true => Err(QueueError::Unavailable("the spool's appender stopped".into())),
            false => Ok(()),
        }
    }
}

struct Server {
    producer: SpoolingProducer,
    drainer: Drainer,
    /// The spool's writer, as its appender thread holds it between appends.
    writer: Arc<Mutex<Writer>>,
    wake: Arc<Notify>,
    /// Its appender stopped after a failed write or fsync: readiness fails until a restart.
    failed: Arc<Mutex<bool>>,
}

impl Server {
    fn failed(&self) -> bool {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the appender thread does while no append comes: retry a failed publish.
    fn idle(&self) {
        if self.writer.lock().unwrap_or_else(|p| p.into_inner()).publish_again() {
            self.wake.notify_one();
        }
    }
}

struct SpoolSim {
    cfg: Config,
    rng: Rng,
    trace: Trace,
    disk: SimDisk,
    broker: Arc<SimBroker>,
    dir: PathBuf,
    server: Option<Server>,
    /// What every event is made from.
    template: PaymentEvent,
    events: Vec<PaymentEvent>,
    /// Acknowledged to the client: must reach the broker.
    acked: BTreeSet<usize>,
    /// Refused: the client sends them again.
    unacked: BTreeSet<usize>,
    offsets: Arc<Mutex<Offsets>>,
    crashes: u64,
    ops: u64,
}

/// Runs the spool schedule of `seed`.
pub async fn run(seed: u64, trace: Trace) -> Checked<(u64, u64)> {
    let cfg = Config::from_seed(seed);
    let mut rng = Rng::new(seed ^ 0x5b00_1000);
    let level = [0.0, 0.05, 0.15, 0.3][rng.below(4) as usize];
    let faults = BrokerFaults { lost_ack: level * rng.below(2) as f64, late_ack: level * rng.below(2) as f64, late_by: Duration::from_millis(rng.range(1, 3000)), partial: level * rng.below(2) as f64 };
    let disk = SimDisk::new(rng.fork(), cfg.disk, trace.clone());
    let broker = Arc::new(SimBroker::new(rng.fork(), faults, trace.clone()));
    disk.create_dir(Path::new("/sim")).and_then(|_| disk.sync_dir(Path::new("/"))).map_err(|e| format!("the simulated disk's root: {e}"))?;
    let dir = Path::new(DATA).join("log");
    let template = r#"{"event_id":"evt","event_type":"payment.success","payment_id":"pay","order_id":"o","amount":100,"currency":"USD","received_at_us":0}"#;
    let template = serde_json::from_str(template).map_err(|e| format!("the schedule's event does not decode: {e}"))?;
    let sim = SpoolSim {
        cfg,
        rng,
        trace,
        disk,
        broker,
        dir,
        server: None,
        template,
        events: Vec::new(),
        acked: BTreeSet::new(),
        unacked: BTreeSet::new(),
        offsets: Arc::default(),
        crashes: 0,
        ops: 0,
    };
    sim.run().await
}

impl SpoolSim {
    async fn run(mut self) -> Checked<(u64, u64)> {
        self.disk.set_faults(true);
        self.broker.set_faults(true);
        for _ in 0..self.cfg.ops {
            self.step().await?;
        }
        self.disk.set_faults(false);
        self.broker.set_faults(false);
        self.broker.set_up(true);
        self.trace.record("faults-stop", "", 0, 0);
        self.drain().await?;
        self.power_cut();
        self.drain().await?;
        self.check()?;
        Ok((self.ops, self.crashes))
    }

    async fn step(&mut self) -> Checked<()> {
        self.ops += 1;
        match self.rng.below(100) {
            0..=34 => {
                for _ in 0..self.rng.range(1, 4) {
                    self.post().await;
                }
            }
            35..=59 => self.drain_round().await?,
            60..=67 => {
                let up = !self.broker.is_up();
                self.broker.set_up(up);
            }
            68..=70 => self.kill(),
            71..=72 => self.power_cut(),
            73 => self.power_cut_in_a_sync().await?,
            74..=85 => self.restart().await,
            _ => {
                let d = Duration::from_millis(self.rng.range(1, 2000));
                self.trace.record("advance", "", d.as_millis() as u64, 0);
                tokio::time::advance(d).await;
            }
        }
        Ok(())
    }

    /// A client posts a new event or, now and then, one it posted before.
    async fn post(&mut self) {
        let event = match self.events.len() {
            n if n > 0 && self.rng.chance(0.1) => self.rng.below(n as u64) as usize,
            n => {
                let e = PaymentEvent { event_id: format!("evt_{n}"), payment_id: format!("pay_{n}"), order_id: format!("o{}", n % 6), ..self.template.clone() };
                self.events.push(e);
                n
            }
        };
        self.send(event).await;
    }

    async fn send(&mut self, event: usize) {
        let Some(server) = &self.server else {
            self.unacked.insert(event);
            return;
        };
        let answer = server.producer.append(&self.events[event]).await;
        self.trace.record("post", "", event as u64, answer.is_ok() as u64);
        match answer {
            Ok(()) => {
                self.acked.insert(event);
                self.unacked.remove(&event);
            }
            Err(_) => {
                self.unacked.insert(event);
            }
        }
    }

    /// One round of the drainer, then the check that it let nothing go unacknowledged.
    async fn drain_round(&mut self) -> Checked<()> {
        if let Some(server) = self.server.as_mut() {
            server.idle();
            let round = server.drainer.step().await;
            self.trace.record("drainer", &format!("{round:?}"), server.producer.depth(), 0);
        }
        self.released_only_acknowledged()
    }

    /// The spool's consumed position never passes an event the broker has not acknowledged.
    fn released_only_acknowledged(&self) -> Checked<()> {
        let consumed = embedded::own_position(&self.disk, &self.dir);
        let offsets = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &offsets.reused {
            return Err(why.clone());
        }
        match offsets.events.range(..=consumed).find(|(_, id)| !self.broker.acknowledged(id)) {
            Some((offset, id)) => Err(format!("the spool let {id} (offset {offset}) go at consumed position {consumed} before the broker acknowledged it")),
            None => Ok(()),
        }
    }

    fn kill(&mut self) {
        if self.server.take().is_some() {
            self.crashes += 1;
            self.trace.record("kill", "spool-server", 0, 0);
        }
    }

    fn power_cut(&mut self) {
        self.kill();
        self.crashes += 1;
        self.disk.power_cut();
    }

    /// The power goes inside the next sync: a spooled append's, or the drainer's position's.
    async fn power_cut_in_a_sync(&mut self) -> Checked<()> {
        self.disk.cut_in_next_sync();
        match self.rng.chance(0.5) {
            true => self.post().await,
            false => self.drain_round().await?,
        }
        self.power_cut();
        Ok(())
    }

    /// Starts the server, as `SpoolingProducer::open` does but over the simulated disk and
    /// broker, with the drainer handed to the schedule.
    async fn restart(&mut self) {
        // Its readiness fails once the spool's appender stopped; the supervisor restarts it.
        if self.server.as_ref().is_some_and(Server::failed) {
            self.kill();
        }
        if self.server.is_some() {
            return;
        }
        match self.open().await {
            Ok(server) => {
                self.trace.record("spool-up", "", server.producer.depth(), 0);
                self.server = Some(server);
            }
            Err(why) => self.trace.record("spool-down", &why, 0, 0),
        }
    }

    async fn open(&mut self) -> Result<Server, String> {
        let disk: Arc<dyn Disk> = Arc::new(self.disk.clone());
        let log = EmbeddedConfig { segment_bytes: self.cfg.segment_bytes, own_position: true, disk: disk.clone(), ..EmbeddedConfig::in_dir(Path::new(DATA)) };
        let lock = WriterLock::acquire_on(disk.clone(), &self.dir).map_err(|e| e.to_string())?;
        let stored = embedded::own_position(&*disk, &self.dir);
        let (writer, _damage) = Writer::open(lock, stored + 1, self.cfg.segment_bytes).map_err(|e| e.to_string())?;
        let wake = Arc::new(Notify::new());
        let writer = Arc::new(Mutex::new(writer));
        let failed = Arc::new(Mutex::new(false));
        let spool = SpoolLog { writer: writer.clone(), failed: failed.clone(), wake: wake.clone(), offsets: self.offsets.clone() };
        let reader = EmbeddedConsumer::open(&log, wake.clone()).map_err(|e| e.to_string())?;
        let max_events = self.rng.range(5, 200);
        let broker: Arc<dyn Producer> = self.broker.clone();
        let (producer, drainer) = SpoolingProducer::assemble(broker, Box::new(spool), reader, max_events, Metrics::new(), CancellationToken::new()).await.map_err(|e| e.to_string())?;
        Ok(Server { producer, drainer: drainer.with_jitter_seed(self.rng.next_u64()), writer, wake, failed })
    }

    /// Faults have stopped: restart, resend what was refused, and let the drainer forward
    /// everything, within a bounded simulated time.
    async fn drain(&mut self) -> Checked<()> {
        let deadline = tokio::time::Instant::now() + DRAIN_WITHIN;
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("liveness: the spool did not drain within {DRAIN_WITHIN:?} of simulated time after faults stopped"));
            }
            self.restart().await;
            if self.server.is_none() {
                tokio::time::advance(Duration::from_secs(1)).await;
                continue;
            }
            let retry: Vec<usize> = std::mem::take(&mut self.unacked).into_iter().collect();
            for event in retry {
                self.send(event).await;
            }
            // No client sends anything new until every acknowledged event is at the broker:
            // an event whose publish failed must get there without an append after it
            // (docs/simulator.md, what it found).
            self.drain_round().await?;
            if self.drained() {
                return Ok(());
            }
            if self.delivered() {
                // Offsets recovery numbered past at the spool's end are counted in its depth
                // until a record after them is forwarded: the next client's event.
                self.post().await;
            }
            tokio::time::advance(PUBLISH_RETRY).await;
        }
    }

    fn drained(&self) -> bool {
        self.delivered() && self.server.as_ref().is_some_and(|s| s.producer.depth() == 0)
    }

    /// Every event the server acknowledged is at the broker.
    fn delivered(&self) -> bool {
        let stored = self.broker.stored();
        self.unacked.is_empty() && self.acked.iter().all(|&e| stored.contains(&self.events[e].event_id))
    }

    /// The oracle, after the last drain.
    fn check(&self) -> Checked<()> {
        self.released_only_acknowledged()?;
        let stored = self.broker.stored();
        match self.acked.iter().find(|&&e| !stored.contains(&self.events[e].event_id)) {
            Some(&e) => Err(format!("{} acknowledged but never reached the broker", self.events[e].event_id)),
            None => Ok(()),
        }
    }
}
