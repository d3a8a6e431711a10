//! A simulated Kafka broker for the spool's drainer: what the [`Producer`] trait lets the
//! spool see of Kafka. It goes down and comes back; while faults are on an acknowledgement
//! is lost (the events are stored, the producer hears a timeout), comes late (in simulated
//! time), or a batch is stored only in part; a retried send stores an event again. It
//! remembers every event it stored, in order, and the ones it acknowledged.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use webhooks::domain::PaymentEvent;
use webhooks::queue::{Producer, QueueError};

use crate::rng::Rng;
use crate::trace::Trace;

/// How often each broker fault strikes per send while faults are on.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerFaults {
    /// Stored, but the producer's answer is lost: it hears a timeout.
    pub lost_ack: f64,
    /// Acknowledged after a delay of up to `late_by`.
    pub late_ack: f64,
    pub late_by: Duration,
    /// A batch stops part way: what came before is stored, the send fails.
    pub partial: f64,
}

#[derive(Debug)]
struct State {
    rng: Rng,
    faults: BrokerFaults,
    faults_on: bool,
    up: bool,
    /// Event ids as stored, in order; an id appears again when it was sent again.
    log: Vec<String>,
    /// Event ids whose send the producer heard succeed.
    acked: BTreeSet<String>,
}

#[derive(Debug)]
pub struct SimBroker {
    state: Mutex<State>,
    trace: Trace,
}

impl SimBroker {
    pub fn new(rng: Rng, faults: BrokerFaults, trace: Trace) -> Self {
        Self { state: Mutex::new(State { rng, faults, faults_on: false, up: true, log: Vec::new(), acked: BTreeSet::new() }), trace }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, on: bool) {
        self.state().faults_on = on;
    }

    pub fn set_up(&self, up: bool) {
        let mut s = self.state();
        if s.up != up {
            self.trace.record(if up { "broker-up" } else { "!broker-down" }, "", s.log.len() as u64, 0);
        }
        s.up = up;
    }

    pub fn is_up(&self) -> bool {
        self.state().up
    }

    /// Every event id it stored, as often as it stored it.
    pub fn stored(&self) -> BTreeSet<String> {
        self.state().log.iter().cloned().collect()
    }

    pub fn acknowledged(&self, event_id: &str) -> bool {
        self.state().acked.contains(event_id)
    }

    /// How long the answer to this send is late, if it is.
    fn lateness(&self) -> Option<Duration> {
        let mut s = self.state();
        let (p, by) = (s.faults.late_ack, s.faults.late_by);
        (s.faults_on && s.rng.chance(p)).then(|| Duration::from_micros(s.rng.below(by.as_micros() as u64 + 1)))
    }

    /// Stores a send's events in order; the answer, as the producer hears it.
    fn take(&self, events: &[&PaymentEvent]) -> Result<(), QueueError> {
        let mut s = self.state();
        if !s.up {
            return Err(QueueError::Timeout);
        }
        let on = s.faults_on;
        let (partial, lost) = (s.faults.partial, s.faults.lost_ack);
        let stored = if on && events.len() > 1 && s.rng.chance(partial) { s.rng.below(events.len() as u64) as usize } else { events.len() };
        s.log.extend(events[..stored].iter().map(|e| e.event_id.clone()));
        if stored < events.len() {
            self.trace.record("!broker-partial", "", stored as u64, events.len() as u64);
            return Err(QueueError::Unavailable("broker: batch stored in part (simulated)".into()));
        }
        if on && s.rng.chance(lost) {
            self.trace.record("!broker-lost-ack", "", stored as u64, 0);
            return Err(QueueError::Timeout);
        }
        s.acked.extend(events.iter().map(|e| e.event_id.clone()));
        self.trace.record("broker-ack", "", stored as u64, s.log.len() as u64);
        Ok(())
    }

    async fn send(&self, events: &[&PaymentEvent]) -> Result<(), QueueError> {
        if let Some(d) = self.lateness() {
            self.trace.record("!broker-late-ack", "", d.as_micros() as u64, 0);
            tokio::time::sleep(d).await;
        }
        self.take(events)
    }
}

#[async_trait]
impl Producer for SimBroker {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        self.send(&[event]).await
    }

    async fn append_all(&self, events: &[&PaymentEvent]) -> Result<(), QueueError> {
        self.send(events).await
    }

    async fn ready(&self) -> Result<(), QueueError> {
        match self.is_up() {
            true => Ok(()),
            false => Err(QueueError::Unavailable("broker down (simulated)".into())),
        }
    }
}
