//! Kafka with a local safety net. When the broker cannot take an event (down, or silent past
//! the produce timeout), the server appends it to the spool, a durable local log (the
//! embedded queue's segment log: fsync'd, group commit), and still answers 200. A drainer forwards the
//! spool to the broker, oldest first, as soon as the broker answers again.
//!
//! Order per order key: once anything is spooled, every new event goes in behind it until
//! the drainer has emptied the spool, so an event acknowledged after another reaches the
//! broker after it. Forwarding may deliver an event twice (a batch that partly failed is
//! resent whole); the worker's idempotency absorbs that.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use super::embedded::{EmbeddedConfig, EmbeddedConsumer, EmbeddedProducer};
use super::{Consumer, Delivery, Producer, QueueError};
use crate::domain::PaymentEvent;
use crate::metrics::Metrics;
use crate::worker::RetryPolicy;

/// Events forwarded per round; the producer pipelines them.
const DRAIN_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub log: EmbeddedConfig,
    /// Past this many spooled events, appends are refused (503).
    pub max_events: u64,
}

fn full() -> QueueError {
    QueueError::Unavailable("broker unreachable and the spool is full".into())
}

struct Shared {
    /// While set, new events go to the spool rather than to the broker.
    spooling: AtomicBool,
    /// Spool appends hold it shared; the drainer holds it alone to decide that the spool is
    /// empty and new events may go to the broker directly again.
    gate: RwLock<()>,
    /// Spooled and not yet forwarded; reserved before an append, so it can dip below the
    /// true count only while an append is in flight.
    depth: AtomicI64,
    max_events: u64,
    metrics: Metrics,
}

impl Shared {
    fn add_depth(&self, n: i64) -> i64 {
        let depth = self.depth.fetch_add(n, Ordering::AcqRel) + n;
        self.metrics.spool_depth.set(depth.max(0));
        depth
    }
}

/// The server's producer in Kafka mode: the broker when it answers, the spool when not.
pub struct SpoolingProducer {
    broker: Arc<dyn Producer>,
    spool: Box<dyn Producer>,
    shared: Arc<Shared>,
}

impl SpoolingProducer {
    /// Opens the spool (resuming whatever an earlier run left in it) and starts its drainer,
    /// which runs until `shutdown`; what is left then stays on disk for the next start.
    pub async fn open(broker: Arc<dyn Producer>, cfg: &SpoolConfig, metrics: Metrics, shutdown: CancellationToken) -> Result<Self, QueueError> {
        let log = EmbeddedConfig { own_position: true, ..cfg.log.clone() };
        let wake = Arc::new(Notify::new());
        let spool = EmbeddedProducer::open(&log, super::embedded::own_position(&*log.disk, &log.dir), metrics.clone(), wake.clone())?;
        let reader = EmbeddedConsumer::open(&log, wake)?;
        let (producer, drainer) = Self::assemble(broker, Box::new(spool), reader, cfg.max_events, metrics, shutdown).await?;
        tokio::spawn(drainer.run());
        Ok(producer)
    }

    /// The producer and its drainer over a spool that `spool` appends to and `reader` (a
    /// consumer keeping its own position) reads; the caller runs the drainer
    /// ([`Drainer::run`]) or steps it ([`Drainer::step`]), as the simulator does on its clock.
    pub async fn assemble(
        broker: Arc<dyn Producer>,
        spool: Box<dyn Producer>,
        mut reader: EmbeddedConsumer,
        max_events: u64,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<(Self, Drainer), QueueError> {
        let left = reader.backlog().await?;
        if left > 0 {
            tracing::warn!(events = left, "spool holds events from an earlier run; forwarding them first");
        }
        let shared = Arc::new(Shared { spooling: AtomicBool::new(left > 0), gate: RwLock::new(()), depth: AtomicI64::new(0), max_events, metrics });
        shared.add_depth(left as i64);
        let forwarded_through = reader.position();
        let drainer = Drainer { reader, broker: broker.clone(), shared: shared.clone(), shutdown, pending: Vec::new(), forwarded_through, failures: 0, jitter: rand::make_rng() };
        Ok((Self { broker, spool, shared }, drainer))
    }

    pub fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Acquire).max(0) as u64
    }

    async fn spool(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        let _appending = self.shared.gate.read().await;
        // Set again under the gate: the drainer may just have resumed direct production, and
        // whatever is acknowledged after this event must queue behind it.
        self.shared.spooling.store(true, Ordering::Release);
        if self.shared.add_depth(1) > self.shared.max_events as i64 {
            self.shared.add_depth(-1);
            return Err(full());
        }
        let stored = self.spool.append(event).await;
        if stored.is_err() {
            self.shared.add_depth(-1);
        }
        stored
    }
}

#[async_trait]
impl Producer for SpoolingProducer {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        if !self.shared.spooling.load(Ordering::Acquire) {
            match self.broker.append(event).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(error = %e, event_id = %event.event_id, "broker did not take the event; spooling it"),
            }
        }
        self.spool(event).await
    }

    /// Ready while events can be stored somewhere: the broker may be down.
    async fn ready(&self) -> Result<(), QueueError> {
        self.spool.ready().await?;
        if self.depth() >= self.shared.max_events {
            return Err(full());
        }
        Ok(())
    }

    fn spool_depth(&self) -> Option<u64> {
        Some(self.depth())
    }
}

/// Forwards the spool to the broker, oldest first.
pub struct Drainer {
    reader: EmbeddedConsumer,
    broker: Arc<dyn Producer>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    /// A batch read but not yet forwarded: the reader has moved past it, so it is kept and
    /// sent again until the broker takes it.
    pending: Vec<Delivery>,
    /// The last offset forwarded (or where reading started): the depth goes down by offsets,
    /// as the backlog it started from was counted, offsets that recovery numbered past
    /// included.
    forwarded_through: u64,
    /// Rounds failed in a row.
    failures: u32,
    /// Draws the backoff's jitter; seeded by the simulator, from the OS otherwise.
    jitter: StdRng,
}

/// What one round of the drainer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// The broker took this many events, and the spool let them go.
    Forwarded(usize),
    /// Nothing was waiting.
    Idle,
    /// The spool could not be read or the broker did not take the batch: kept, after a backoff.
    Failed,
}

const BACKOFF: RetryPolicy = RetryPolicy { base: Duration::from_millis(200), cap: Duration::from_secs(5), max_attempts: u32::MAX };

impl Drainer {
    /// Draws the backoff's jitter from `seed`, so that a simulated run replays.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter = StdRng::seed_from_u64(seed);
        self
    }

    pub async fn run(mut self) {
        while !self.shutdown.is_cancelled() {
            self.step().await;
        }
    }

    /// One round: read a batch (or take the one the broker refused), forward it, and let the
    /// spool go past it once the broker has it all.
    pub async fn step(&mut self) -> Drained {
        if self.pending.is_empty() {
            self.pending = match self.reader.poll(DRAIN_BATCH, Duration::from_millis(200)).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    return self.back_off().await;
                }
            };
            if self.pending.is_empty() {
                self.pass_gaps();
                self.resume_direct().await;
                return Drained::Idle;
            }
        }
        match forward(self.broker.as_ref(), &self.pending).await {
            Ok(()) => {
                self.failures = 0;
                if let Err(e) = self.reader.commit(&self.pending).await {
                    // The position may come back older after a restart: duplicates, which the worker skips.
                    tracing::warn!(error = %e, "cannot record the spool's forwarded position");
                }
                let through = self.pending.last().map_or(self.forwarded_through, |d| d.position.offset as u64);
                self.shared.add_depth(-(through.saturating_sub(self.forwarded_through) as i64));
                self.forwarded_through = through;
                let n = self.pending.len();
                self.pending.clear();
                Drained::Forwarded(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, spooled = self.shared.depth.load(Ordering::Relaxed), "broker still unreachable; spool kept");
                self.back_off().await
            }
        }
    }

    async fn back_off(&mut self) -> Drained {
        self.failures += 1;
        let delay = BACKOFF.delay_from(self.failures, &mut self.jitter);
        self.pause(delay).await;
        Drained::Failed
    }

    /// Caught up: offsets the reader passed over since the last forward held no record (recovery
    /// numbered past a torn tail) and leave the depth, which counted them at start. Else they
    /// stay until an event after them is forwarded, and a spool they fill refuses that event.
    fn pass_gaps(&mut self) {
        let Ok(through) = self.reader.read_through() else { return };
        if through > self.forwarded_through {
            self.shared.add_depth(-((through - self.forwarded_through) as i64));
            self.forwarded_through = through;
        }
    }

    /// Goes back to producing directly once nothing is spooled and no spool append is in flight.
    async fn resume_direct(&mut self) {
        if !self.shared.spooling.load(Ordering::Acquire) {
            return;
        }
        let _alone = self.shared.gate.write().await;
        match self.reader.backlog().await {
            // The backlog counts to the published durable offset, which lags an append whose
            // publish failed; what was spooled and not forwarded is counted here too, and
            // resuming past it would let later events overtake it and strand it.
            Ok(0) if self.shared.depth.load(Ordering::Acquire) <= 0 => {
                self.shared.spooling.store(false, Ordering::Release);
                tracing::info!("spool drained; producing to the broker directly again");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the spool"),
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}

/// Sends a batch in spool order: the producer queues it in that order, and per partition the
/// broker keeps it.
async fn forward(broker: &dyn Producer, batch: &[Delivery]) -> Result<(), QueueError> {
    let events: Vec<&PaymentEvent> = batch
        .iter()
        .filter_map(|d| match &d.event {
            Ok(e) => Some(e),
            Err(why) => {
                tracing::error!(offset = d.position.offset, error = %why, "unreadable spool entry skipped");
                None
            }
        })
        .collect();
    broker.append_all(&events).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::queue::test_event as event;

    /// A broker that can be switched off, and remembers what it took, in order.
    #[derive(Default)]
    struct Broker {
        down: AtomicBool,
        took: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Producer for Broker {
        async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(QueueError::Timeout);
            }
            self.took.lock().expect("lock").push(event.event_id.clone());
            Ok(())
        }

        async fn ready(&self) -> Result<(), QueueError> {
            Ok(())
        }
    }

    async fn open(broker: &Arc<Broker>, dir: &std::path::Path, max_events: u64, stop: &CancellationToken) -> SpoolingProducer {
        let cfg = SpoolConfig { log: EmbeddedConfig::in_dir(dir), max_events };
        SpoolingProducer::open(broker.clone(), &cfg, Metrics::new(), stop.clone()).await.expect("spool opens")
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_is_spooled_then_forwarded_in_acknowledgement_order() {
        let (dir, stop, broker) = (tempfile::tempdir().expect("dir"), CancellationToken::new(), Arc::new(Broker::default()));
        let producer = open(&broker, dir.path(), 1000, &stop).await;
        producer.append(&event(0)).await.expect("direct");
        broker.down.store(true, Ordering::SeqCst);
        for i in 1..50 {
            producer.append(&event(i)).await.expect("spooled, so acknowledged");
        }
        assert!(producer.depth() > 0, "the outage's events wait in the spool");
        broker.down.store(false, Ordering::SeqCst);
        // Sent while the backlog drains: they must queue behind it.
        for i in 50..100 {
            producer.append(&event(i)).await.expect("acknowledged");
        }
        until("the spool drains", || producer.depth() == 0 && broker.took.lock().expect("lock").len() >= 100).await;
        let took = broker.took.lock().expect("lock").clone();
        let mut firsts: Vec<&String> = Vec::new();
        for id in &took {
            if !firsts.contains(&id) {
                firsts.push(id);
            }
        }
        let expected: Vec<String> = (0..100).map(|i| format!("evt_{i}")).collect();
        assert_eq!(firsts, expected.iter().collect::<Vec<_>>(), "first arrivals follow acknowledgement order");
        until("direct production resumes", || !producer.shared.spooling.load(Ordering::SeqCst)).await;
        producer.append(&event(100)).await.expect("direct");
        assert_eq!(producer.depth(), 0, "back to the broker directly");
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_spool_refuses_and_a_restart_forwards_what_was_left() {
        let (dir, broker) = (tempfile::tempdir().expect("dir"), Arc::new(Broker::default()));
        broker.down.store(true, Ordering::SeqCst);
        let stop = CancellationToken::new();
        let producer = open(&broker, dir.path(), 3, &stop).await;
        for i in 0..3 {
            producer.append(&event(i)).await.expect("spooled");
        }
        assert!(producer.append(&event(3)).await.is_err(), "no 200 past the spool's limit");
        assert!(producer.ready().await.is_err(), "not ready while full");
        stop.cancel();
        drop(producer);

        broker.down.store(false, Ordering::SeqCst);
        let stop = CancellationToken::new();
        let producer = open(&broker, dir.path(), 3, &stop).await;
        until("the earlier run's spool is forwarded", || broker.took.lock().expect("lock").len() >= 3).await;
        assert_eq!(broker.took.lock().expect("lock")[..3], ["evt_0", "evt_1", "evt_2"]);
        until("the spool is empty", || producer.depth() == 0).await;
        stop.cancel();
    }
}
