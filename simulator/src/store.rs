//! A store model that answers the same trait as the real stores ([`webhooks::store::Store`]),
//! with the durability of each:
//!
//! - SQLite in WAL mode with syncs at checkpoints: a commit is visible at once and survives a
//!   killed process, but a power cut keeps only a prefix of the commits since the last
//!   checkpoint (WAL frames are written in order, and the cut may land anywhere in them); a
//!   checkpoint that fails says so and makes nothing durable; like the real store, the model
//!   then refuses to call anything durable (checkpoints and pings fail) until the process that
//!   holds it restarts, and that restart keeps only a seeded prefix of the commits since the
//!   last good checkpoint (the failed sync may have dropped WAL pages). Orders and operators' writes
//!   (marking dead letters replayed) are synced when they commit, as the real store does, and
//!   that sync makes every earlier commit durable too.
//! - PostgreSQL: every commit is durable.
//!
//! What an event does is decided by the production code, as the PostgreSQL store decides it:
//! the rows a batch touches go into a [`Snapshot`], [`Snapshot::plan`] decides every event
//! (duplicates, reused ids, state transitions, conflicts, dead letters), and the model keeps
//! the plan's net result. An order created after its payments takes its status from them by
//! [`status_from_payments`]. `system/tests/store_suite.rs` runs its cases against this model
//! as against SQLite and PostgreSQL, so that the model cannot drift from the real stores.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use webhooks::domain::redelivery::Recorded;
use webhooks::domain::state::status_from_payments;
use webhooks::domain::{CreateOutcome, NewOrder, OrderStatus, OrderTerms, Outcome, Payment, PaymentEvent};
use webhooks::queue::Position;
use webhooks::store::batch::{Plan, Snapshot};
use webhooks::store::{
    Applied, ConsumerName, DeadLetter, DeadLetterFilter, DeadLetterView, EventRecord, OrderView, PaymentSummary, PaymentView, Store, StoreError,
};

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
    /// A batch fails as retrying cannot help (a constraint, a corrupt page): the worker
    /// isolates its events and dead-letters those that fail again.
    pub permanent: f64,
    /// The store goes away for up to `outage` of simulated time.
    pub outage: f64,
    pub outage_for: Duration,
    pub failed_checkpoint: f64,
}

/// A dead letter: one per event id, updated when the event fails again.
#[derive(Debug, Clone)]
pub struct Letter {
    pub id: i64,
    pub event_id: String,
    pub payment_id: Option<String>,
    pub order_id: Option<String>,
    pub payload: String,
    pub error: String,
    pub attempts: u32,
    pub failed_at: i64,
    /// Set when it was put back on the queue; cleared when it fails again.
    pub replayed_at: Option<i64>,
}

#[derive(Debug, Clone)]
struct RecordedEvent {
    recorded: Recorded,
    outcome: Outcome,
    received_at_us: i64,
    applied_at: i64,
}

#[derive(Debug, Clone)]
struct OrderRow {
    order: NewOrder,
    status: OrderStatus,
}

/// What the committed transactions leave behind.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Event id: how many times its effect was recorded (exactly once, if all is well).
    pub applied: BTreeMap<String, u32>,
    pub positions: BTreeMap<String, Vec<Position>>,
    pub letters: Vec<Letter>,
    events: BTreeMap<String, RecordedEvent>,
    /// Payment id: its state and how many events were applied to it.
    payments: BTreeMap<String, (Payment, i64)>,
    orders: BTreeMap<String, OrderRow>,
    next_letter: i64,
    /// Counts commits: the model's timestamps, so that a schedule stays a function of its seed.
    clock: i64,
}

/// One committed transaction, as the real stores write it.
#[derive(Debug, Clone)]
enum Txn {
    Apply { consumer: String, events: Vec<(String, Recorded, Outcome, i64)>, payments: Vec<(String, Payment, i64)>, orders: Vec<(String, OrderStatus)>, letters: Vec<DeadLetter>, positions: Vec<Position> },
    DeadLetter { consumer: String, letters: Vec<DeadLetter>, positions: Vec<Position> },
    Order(NewOrder, OrderStatus),
    Replayed(Vec<(i64, u32)>),
}

impl Txn {
    fn of_plan(consumer: &str, plan: &Plan<'_>, positions: &[Position]) -> Self {
        Txn::Apply {
            consumer: consumer.to_owned(),
            events: plan.events.iter().map(|(e, o)| (e.event_id.clone(), Recorded::from(*e), *o, e.received_at_us)).collect(),
            payments: plan.payments.iter().map(|r| (r.id.clone(), r.payment.clone(), r.recorded)).collect(),
            orders: plan.orders.clone(),
            letters: plan.dead_letters.clone(),
            positions: positions.to_vec(),
        }
    }

    /// For the trace: how many events or letters it records, and the highest position it stores.
    fn summary(&self) -> (u64, u64) {
        match self {
            Txn::Apply { events, positions, .. } => (events.len() as u64, positions.iter().map(|p| p.offset.max(0) as u64).max().unwrap_or(0)),
            Txn::DeadLetter { letters, .. } => (letters.len() as u64, 0),
            Txn::Order(..) | Txn::Replayed(_) => (0, 0),
        }
    }
}

impl Tables {
    fn apply(&mut self, txn: &Txn) {
        self.clock += 1;
        let now = self.clock;
        match txn {
            Txn::Apply { consumer, events, payments, orders, letters, positions } => {
                for (id, recorded, outcome, received_at_us) in events {
                    *self.applied.entry(id.clone()).or_default() += 1;
                    self.events.insert(id.clone(), RecordedEvent { recorded: recorded.clone(), outcome: *outcome, received_at_us: *received_at_us, applied_at: now });
                }
                for (id, payment, recorded) in payments {
                    let row = self.payments.entry(id.clone()).or_insert_with(|| (payment.clone(), 0));
                    *row = (payment.clone(), row.1 + recorded);
                }
                for (id, status) in orders {
                    if let Some(row) = self.orders.get_mut(id) {
                        row.status = *status;
                    }
                }
                self.letter(letters, now);
                self.position(consumer, positions);
            }
            Txn::DeadLetter { consumer, letters, positions } => {
                self.letter(letters, now);
                self.position(consumer, positions);
            }
            Txn::Order(order, status) => {
                self.orders.insert(order.id.clone(), OrderRow { order: order.clone(), status: *status });
            }
            Txn::Replayed(ids) => {
                for (id, attempts) in ids {
                    if let Some(l) = self.letters.iter_mut().find(|l| l.id == *id && l.attempts == *attempts) {
                        l.replayed_at = Some(now);
                    }
                }
            }
        }
    }

    /// One row per event id: a repeat updates it and makes it wait again.
    fn letter(&mut self, letters: &[DeadLetter], now: i64) {
        for d in letters {
            if let Some(l) = self.letters.iter_mut().find(|l| l.event_id == d.event_id) {
                l.error = d.error.clone();
                l.failed_at = now;
                l.attempts += d.attempts;
                l.replayed_at = None;
                continue;
            }
            self.next_letter += 1;
            self.letters.push(Letter {
                id: self.next_letter,
                event_id: d.event_id.clone(),
                payment_id: d.payment_id.clone(),
                order_id: d.order_id.clone(),
                payload: d.payload.clone(),
                error: d.error.clone(),
                attempts: d.attempts,
                failed_at: now,
                replayed_at: None,
            });
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

    /// The rows a batch touches, as the real stores read them before deciding it.
    fn snapshot(&self, events: &[PaymentEvent]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for e in events {
            if let Some(r) = self.events.get(&e.event_id) {
                snapshot.recorded.insert(e.event_id.clone(), r.recorded.clone());
            }
            if let Some((p, _)) = self.payments.get(&e.payment_id) {
                snapshot.payments.insert(e.payment_id.clone(), p.clone());
            }
            if let Some(o) = self.orders.get(&e.order_id) {
                snapshot.orders.insert(e.order_id.clone(), OrderTerms { total_amount: o.order.total_amount, currency: o.order.currency.clone(), status: o.status });
            }
        }
        snapshot
    }

    fn payments_of<'a>(&'a self, order_id: &'a str) -> impl Iterator<Item = (&'a String, &'a Payment)> + 'a {
        self.payments.iter().filter(move |(_, (p, _))| p.order_id == order_id).map(|(id, (p, _))| (id, p))
    }

    fn order_view(&self, id: &str) -> Option<OrderView> {
        let row = self.orders.get(id)?;
        let o = &row.order;
        let payments = self.payments_of(id).map(|(pid, p)| PaymentSummary::of(pid.clone(), p.clone())).collect();
        Some(OrderView { id: o.id.clone(), user_id: o.user_id.clone(), items: o.items.clone(), total_amount: o.total_amount, currency: o.currency.clone(), status: row.status.as_str().into(), payments })
    }

    fn payment_view(&self, id: &str) -> Option<PaymentView> {
        let (p, applied_events) = self.payments.get(id)?;
        let mut events: Vec<EventRecord> = self
            .events
            .iter()
            .filter(|(_, e)| e.recorded.payment_id == id)
            .map(|(event_id, e)| EventRecord {
                event_id: event_id.clone(),
                event_type: e.recorded.event_type.as_str().into(),
                outcome: e.outcome.as_str().into(),
                received_at_us: e.received_at_us,
                applied_at_us: e.applied_at,
            })
            .collect();
        events.sort_by(|a, b| (a.applied_at_us, &a.event_id).cmp(&(b.applied_at_us, &b.event_id)));
        Some(PaymentView {
            id: id.into(),
            order_id: p.order_id.clone(),
            status: p.status.as_str().into(),
            amount: p.amount,
            currency: p.currency.clone(),
            conflicted: p.conflicted,
            applied_events: *applied_events,
            events,
        })
    }

    fn dead_letter_views(&self, f: &DeadLetterFilter) -> (u64, Vec<DeadLetterView>) {
        let matching: Vec<DeadLetterView> = self
            .letters
            .iter()
            .rev()
            .filter(|l| f.id.is_none_or(|id| l.id == id))
            .filter(|l| f.since_us.is_none_or(|since| l.failed_at >= since))
            .filter(|l| f.include_replayed || l.replayed_at.is_none())
            .filter(|l| f.payment_id.is_none() || l.payment_id == f.payment_id)
            .filter(|l| f.order_id.is_none() || l.order_id == f.order_id)
            .filter(|l| f.error_prefix.as_deref().is_none_or(|p| l.error.starts_with(p)))
            .map(|l| DeadLetterView {
                id: l.id,
                event_id: l.event_id.clone(),
                payment_id: l.payment_id.clone(),
                order_id: l.order_id.clone(),
                error: l.error.clone(),
                attempts: l.attempts,
                failed_at_us: l.failed_at,
                payload: l.payload.clone(),
                replayed_at_us: l.replayed_at,
            })
            .collect();
        let total = matching.len() as u64;
        (total, matching.into_iter().take(f.limit() as usize).collect())
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
    /// A checkpoint failed: nothing is called durable until a restart.
    checkpoint_failed: bool,
}

impl State {
    fn checkpoint(&mut self) -> usize {
        let pending = std::mem::take(&mut self.pending);
        for txn in &pending {
            self.durable.apply(txn);
        }
        pending.len()
    }

    /// What survives of the commits since the last checkpoint: a seeded prefix.
    fn keep_prefix(&mut self) -> (u64, u64) {
        let committed = self.pending.len() as u64;
        let kept = self.rng.range(0, committed) as usize;
        let pending = std::mem::take(&mut self.pending);
        for txn in &pending[..kept] {
            self.durable.apply(txn);
        }
        self.live = self.durable.clone();
        (kept as u64, committed)
    }

    fn refusing(&self) -> Option<StoreError> {
        self.checkpoint_failed.then(|| StoreError::Unavailable("a checkpoint failed earlier (simulated); restart to recover the store from its WAL".into()))
    }
}

#[derive(Debug)]
pub struct StoreModel {
    kind: Kind,
    state: Mutex<State>,
    trace: Trace,
}

impl StoreModel {
    pub fn new(kind: Kind, rng: Rng, faults: StoreFaults, trace: Trace) -> Self {
        let state = State { rng, faults, faults_on: false, durable: Tables::default(), pending: Vec::new(), live: Tables::default(), down_until: None, checkpoint_failed: false };
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
        let (kept, committed) = s.keep_prefix();
        self.trace.record("store-power-cut", "", kept, committed);
        s.down_until = None;
        s.checkpoint_failed = false;
    }

    /// Whether the store refuses until the process holding it restarts.
    pub fn needs_restart(&self) -> bool {
        self.state().checkpoint_failed
    }

    /// The process holding the store went away. After a failed checkpoint SQLite recovers from
    /// its WAL on the next open, and the failed sync may have dropped some of its pages.
    pub fn process_gone(&self) {
        let mut s = self.state();
        if s.checkpoint_failed {
            let (kept, committed) = s.keep_prefix();
            self.trace.record("store-reopened-after-failure", "", kept, committed);
            s.checkpoint_failed = false;
        }
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

    /// Commits `txn`: durable at once on PostgreSQL; on SQLite at the next checkpoint, or now
    /// with everything before it when the real store syncs this kind of write.
    fn commit(&self, s: &mut State, txn: Txn, synced: bool) {
        s.live.apply(&txn);
        match self.kind {
            Kind::Postgres => s.durable.apply(&txn),
            Kind::Sqlite => {
                s.pending.push(txn);
                if synced {
                    s.checkpoint();
                }
            }
        }
    }
}

#[async_trait]
impl Store for StoreModel {
    async fn apply_batch(&self, consumer: &ConsumerName, events: &[PaymentEvent], positions: &[Position]) -> Result<Vec<Applied>, StoreError> {
        self.admit("apply")?;
        let mut s = self.state();
        let permanent = s.faults.permanent;
        if s.faults_on && s.rng.chance(permanent) {
            self.trace.record("!store-permanent", "apply", events.len() as u64, 0);
            return Err(StoreError::Permanent("apply: constraint failed (simulated)".into()));
        }
        let plan = s.live.snapshot(events).plan(events);
        let txn = Txn::of_plan(consumer, &plan, positions);
        let (applied, last) = txn.summary();
        self.trace.record("store-apply", consumer.split('@').next().unwrap_or(""), applied, last);
        self.commit(&mut s, txn, false);
        Ok(plan.outcomes)
    }

    async fn dead_letter(&self, consumer: &ConsumerName, letters: &[DeadLetter], positions: &[Position]) -> Result<(), StoreError> {
        self.admit("dead-letter")?;
        let txn = Txn::DeadLetter { consumer: consumer.to_owned(), letters: letters.to_vec(), positions: positions.to_vec() };
        self.trace.record("store-dead-letter", "", txn.summary().0, 0);
        self.commit(&mut self.state(), txn, false);
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
        let stored = s.live.positions.iter().filter(|(c, _)| c.ends_with(&suffix)).flat_map(|(_, ps)| ps.iter().filter(|p| p.partition == 0).map(|p| p.offset.max(0) as u64));
        Ok(stored.max().unwrap_or(0))
    }

    async fn create_order(&self, order: &NewOrder) -> Result<CreateOutcome, StoreError> {
        self.admit("create order")?;
        let mut s = self.state();
        if let Some(existing) = s.live.orders.get(&order.id) {
            let o = &existing.order;
            let same = (&o.user_id, &o.items, o.total_amount, &o.currency) == (&order.user_id, &order.items, order.total_amount, &order.currency);
            return Ok(if same { CreateOutcome::AlreadyExists } else { CreateOutcome::Conflict });
        }
        let terms = OrderTerms { total_amount: order.total_amount, currency: order.currency.clone(), status: OrderStatus::Pending };
        let status = status_from_payments(&terms, s.live.payments_of(&order.id).map(|(_, p)| p));
        self.commit(&mut s, Txn::Order(order.clone(), status), true);
        Ok(CreateOutcome::Created)
    }

    async fn order(&self, id: &str) -> Result<Option<OrderView>, StoreError> {
        self.admit("order")?;
        Ok(self.state().live.order_view(id))
    }

    async fn payment(&self, id: &str) -> Result<Option<PaymentView>, StoreError> {
        self.admit("payment")?;
        Ok(self.state().live.payment_view(id))
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), StoreError> {
        self.admit("dead letters")?;
        Ok(self.state().live.dead_letter_views(filter))
    }

    async fn mark_replayed(&self, letters: &[(i64, u32)]) -> Result<(), StoreError> {
        self.admit("mark replayed")?;
        self.commit(&mut self.state(), Txn::Replayed(letters.to_vec()), true);
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let s = self.state();
        if let Some(e) = s.refusing() {
            return Err(e);
        }
        match s.down_until {
            Some(t) if Instant::now() < t => Err(StoreError::Unavailable("store down (simulated)".into())),
            _ => Ok(()),
        }
    }

    async fn make_durable(&self) -> Result<(), StoreError> {
        self.admit("checkpoint")?;
        let mut s = self.state();
        if let Some(e) = s.refusing() {
            return Err(e);
        }
        let p = s.faults.failed_checkpoint;
        if self.kind == Kind::Sqlite && s.faults_on && s.rng.chance(p) {
            self.trace.record("!checkpoint-failed", "", s.pending.len() as u64, 0);
            s.checkpoint_failed = true;
            return Err(StoreError::Unavailable("checkpoint failed (simulated)".into()));
        }
        let n = s.checkpoint();
        self.trace.record("checkpoint", "", n as u64, 0);
        Ok(())
    }
}
