//! A store model that answers the same trait as the real stores ([`webhooks::store::Store`]),
//! with the durability of each:
//!
//! - SQLite in WAL mode with syncs at checkpoints: a commit is visible at once and survives a
//!   killed process, but a power cut keeps only a prefix of the commits since the last
//!   checkpoint (WAL frames are written in order, and the cut may land anywhere in them); a
//!   checkpoint that fails says so and makes nothing durable.
//! - PostgreSQL: every commit is durable.
//!
//! What an event does is reduced to what the durable path's oracle needs: an event id is
//! applied once (a repeat is a duplicate), an event whose order does not exist yet is
//! dead-lettered (so that a replay after the order arrives applies it), and the consumer's
//! positions are written in the same transaction as the effects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use webhooks::domain::{CreateOutcome, NewOrder, PaymentEvent};
use webhooks::queue::Position;
use webhooks::store::{Applied, ConsumerName, DeadLetter, DeadLetterFilter, DeadLetterView, OrderView, PaymentView, Store, StoreError};

use crate::rng::Rng;
use crate::trace::Trace;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// How often each store fault strikes while faults are on.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreFaults {
    pub transient: f64,
    /// The store goes away for up to `outage` of simulated time.
    pub outage: f64,
    pub outage_for: Duration,
    pub failed_checkpoint: f64,
}

#[derive(Debug, Clone)]
pub struct Letter {
    pub id: i64,
    pub event_id: String,
    pub payload: String,
    pub attempts: u32,
    pub replayed: bool,
}

/// What a transaction leaves behind.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Event id: how many times its effect was applied.
    pub applied: BTreeMap<String, u32>,
    pub positions: BTreeMap<String, Vec<Position>>,
    pub letters: Vec<Letter>,
    pub orders: BTreeSet<String>,
    next_letter: i64,
}

#[derive(Debug, Clone)]
enum Txn {
    Apply { consumer: String, applied: Vec<String>, letters: Vec<DeadLetter>, positions: Vec<Position> },
    DeadLetter { consumer: String, letters: Vec<DeadLetter>, positions: Vec<Position> },
    Order(String),
    Replayed(Vec<(i64, u32)>),
}

impl Tables {
    fn apply(&mut self, txn: &Txn) {
        match txn {
            Txn::Apply { consumer, applied, letters, positions } => {
                for id in applied {
                    *self.applied.entry(id.clone()).or_default() += 1;
                }
                self.letter(letters);
                self.position(consumer, positions);
            }
            Txn::DeadLetter { consumer, letters, positions } => {
                self.letter(letters);
                self.position(consumer, positions);
            }
            Txn::Order(id) => {
                self.orders.insert(id.clone());
            }
            Txn::Replayed(ids) => {
                for (id, attempts) in ids {
                    if let Some(l) = self.letters.iter_mut().find(|l| l.id == *id && l.attempts == *attempts) {
                        l.replayed = true;
                    }
                }
            }
        }
    }

    fn letter(&mut self, letters: &[DeadLetter]) {
        for l in letters {
            self.next_letter += 1;
            self.letters.push(Letter { id: self.next_letter, event_id: l.event_id.clone(), payload: l.payload.clone(), attempts: l.attempts, replayed: false });
        }
    }

    fn position(&mut self, consumer: &str, positions: &[Position]) {
        if positions.is_empty() {
            return;
        }
        let stored = self.positions.entry(consumer.to_owned()).or_default();
        for p in positions {
            match stored.iter_mut().find(|s| s.partition == p.partition) {
                Some(s) => *s = *p,
                None => stored.push(*p),
            }
        }
    }
}

#[derive(Debug)]
struct State {
    rng: Rng,
    faults: StoreFaults,
    faults_on: bool,
    /// As of the last checkpoint (SQLite) or of the last commit (PostgreSQL).
    durable: Tables,
    /// Committed since, in order.
    pending: Vec<Txn>,
    /// What readers see: `durable` with `pending` applied.
    live: Tables,
    down_until: Option<Instant>,
}

#[derive(Debug)]
pub struct StoreModel {
    kind: Kind,
    state: Mutex<State>,
    trace: Trace,
}

impl StoreModel {
    pub fn new(kind: Kind, rng: Rng, faults: StoreFaults, trace: Trace) -> Self {
        let state = State { rng, faults, faults_on: false, durable: Tables::default(), pending: Vec::new(), live: Tables::default(), down_until: None };
        Self { kind, state: Mutex::new(state), trace }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_faults(&self, on: bool) {
        let mut s = self.state();
        s.faults_on = on;
        if !on {
            s.down_until = None;
        }
    }

    /// A power cut: SQLite keeps a seeded prefix of the commits since its last checkpoint.
    pub fn power_cut(&self) {
        let mut s = self.state();
        let committed = s.pending.len() as u64;
        let kept = s.rng.range(0, committed) as usize;
        self.trace.record("store-power-cut", "", kept as u64, s.pending.len() as u64);
        let pending = std::mem::take(&mut s.pending);
        for txn in &pending[..kept] {
            s.durable.apply(txn);
        }
        s.live = s.durable.clone();
        s.down_until = None;
    }

    /// What readers see now.
    pub fn tables(&self) -> Tables {
        self.state().live.clone()
    }

    /// Refuses while an outage lasts; starts one now and then, or fails transiently.
    fn admit(&self, what: &'static str) -> Result<(), StoreError> {
        let mut s = self.state();
        let now = Instant::now();
        if s.down_until.is_some_and(|t| now < t) {
            return Err(StoreError::Unavailable(format!("{what}: store down (simulated)")));
        }
        let (outage, transient, down_for) = (s.faults.outage, s.faults.transient, s.faults.outage_for);
        if s.faults_on && s.rng.chance(outage) {
            let d = Duration::from_micros(s.rng.below(down_for.as_micros() as u64 + 1));
            s.down_until = Some(now + d);
            self.trace.record("!store-outage", what, d.as_micros() as u64, 0);
            return Err(StoreError::Unavailable(format!("{what}: store down (simulated)")));
        }
        if s.faults_on && s.rng.chance(transient) {
            self.trace.record("!store-transient", what, 0, 0);
            return Err(StoreError::Transient(format!("{what}: busy (simulated)")));
        }
        Ok(())
    }

    fn commit(&self, txn: Txn) {
        let mut s = self.state();
        s.live.apply(&txn);
        match self.kind {
            Kind::Postgres => s.durable.apply(&txn),
            Kind::Sqlite => s.pending.push(txn),
        }
    }
}

fn not_modelled(what: &str) -> StoreError {
    StoreError::Permanent(format!("{what} is not part of the store model (the durable path never asks)"))
}

#[async_trait]
impl Store for StoreModel {
    async fn apply_batch(&self, consumer: &ConsumerName, events: &[PaymentEvent], positions: &[Position]) -> Result<Vec<Applied>, StoreError> {
        self.admit("apply")?;
        let s = self.state();
        let live = &s.live;
        let mut seen = BTreeSet::new();
        let (mut outcomes, mut applied, mut letters) = (Vec::new(), Vec::new(), Vec::new());
        for e in events {
            if live.applied.contains_key(&e.event_id) || !seen.insert(e.event_id.clone()) {
                outcomes.push(Applied::Duplicate);
            } else if !live.orders.contains(&e.order_id) {
                let error = format!("order {} not found", e.order_id);
                letters.push(DeadLetter::for_event(e, error.clone(), 1));
                outcomes.push(Applied::DeadLettered(error));
                seen.remove(&e.event_id);
            } else {
                applied.push(e.event_id.clone());
                outcomes.push(Applied::Applied);
            }
        }
        drop(s);
        let last = positions.iter().map(|p| p.offset.max(0) as u64).max().unwrap_or(0);
        self.trace.record("store-apply", consumer.split('@').next().unwrap_or(""), applied.len() as u64, last);
        self.commit(Txn::Apply { consumer: consumer.to_owned(), applied, letters, positions: positions.to_vec() });
        Ok(outcomes)
    }

    async fn dead_letter(&self, consumer: &ConsumerName, letters: &[DeadLetter], positions: &[Position]) -> Result<(), StoreError> {
        self.admit("dead-letter")?;
        self.trace.record("store-dead-letter", "", letters.len() as u64, 0);
        self.commit(Txn::DeadLetter { consumer: consumer.to_owned(), letters: letters.to_vec(), positions: positions.to_vec() });
        Ok(())
    }

    async fn positions(&self, consumer: &ConsumerName) -> Result<Vec<Position>, StoreError> {
        self.admit("positions")?;
        Ok(self.state().live.positions.get(consumer).cloned().unwrap_or_default())
    }

    async fn log_position(&self, log_id: &str) -> Result<u64, StoreError> {
        self.admit("log position")?;
        let s = self.state();
        let suffix = format!("@{log_id}");
        let stored = s.live.positions.iter().filter(|(c, _)| c.ends_with(&suffix)).flat_map(|(_, ps)| ps.iter().map(|p| p.offset.max(0) as u64));
        Ok(stored.max().unwrap_or(0))
    }

    async fn create_order(&self, order: &NewOrder) -> Result<CreateOutcome, StoreError> {
        self.admit("create order")?;
        if self.state().live.orders.contains(&order.id) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        self.commit(Txn::Order(order.id.clone()));
        Ok(CreateOutcome::Created)
    }

    async fn order(&self, _id: &str) -> Result<Option<OrderView>, StoreError> {
        Err(not_modelled("reading an order"))
    }

    async fn payment(&self, _id: &str) -> Result<Option<PaymentView>, StoreError> {
        Err(not_modelled("reading a payment"))
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), StoreError> {
        self.admit("dead letters")?;
        let s = self.state();
        let matching: Vec<DeadLetterView> = s
            .live
            .letters
            .iter()
            .rev()
            .filter(|l| filter.include_replayed || !l.replayed)
            .map(|l| DeadLetterView {
                id: l.id,
                event_id: l.event_id.clone(),
                payment_id: None,
                order_id: None,
                error: String::new(),
                attempts: l.attempts,
                failed_at_us: 0,
                payload: l.payload.clone(),
                replayed_at_us: None,
            })
            .collect();
        let total = matching.len() as u64;
        Ok((total, matching.into_iter().take(filter.limit() as usize).collect()))
    }

    async fn mark_replayed(&self, letters: &[(i64, u32)]) -> Result<(), StoreError> {
        self.admit("mark replayed")?;
        self.commit(Txn::Replayed(letters.to_vec()));
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let s = self.state();
        match s.down_until {
            Some(t) if Instant::now() < t => Err(StoreError::Unavailable("store down (simulated)".into())),
            _ => Ok(()),
        }
    }

    async fn make_durable(&self) -> Result<(), StoreError> {
        self.admit("checkpoint")?;
        let mut s = self.state();
        let p = s.faults.failed_checkpoint;
        if s.faults_on && s.rng.chance(p) {
            self.trace.record("!checkpoint-failed", "", s.pending.len() as u64, 0);
            return Err(StoreError::Unavailable("checkpoint failed (simulated)".into()));
        }
        let pending = std::mem::take(&mut s.pending);
        for txn in &pending {
            s.durable.apply(txn);
        }
        self.trace.record("checkpoint", "", pending.len() as u64, 0);
        Ok(())
    }
}
