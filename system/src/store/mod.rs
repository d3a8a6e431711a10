//! Where effects live: `payments`, `orders`, the record of applied events, dead letters and
//! the worker's queue positions. One interface, two backends (SQLite, PostgreSQL); both
//! persist what [`crate::domain::state::decide`] decides, so they behave alike by construction.

pub mod batch;
pub mod postgres;
pub mod postgres_tls;
pub mod schema;
pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::redelivery::{self, Recorded};
use crate::domain::{CreateOutcome, NewOrder, PaymentEvent};
use crate::queue::Position;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: busy, locked, serialization failure.
    #[error("transient store error: {0}")]
    Transient(String),
    /// The store as a whole cannot work now (disk full, I/O error, server gone): waited out,
    /// never a reason to dead-letter an event, because every event would fail alike.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Retrying will not help: constraint violations, corrupt data, bad configuration.
    #[error("store error: {0}")]
    Permanent(String),
}

impl StoreError {
    /// Worth retrying this batch a few times; an outage is waited out instead.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Moved the payment's state (and maybe the order's).
    Applied,
    /// Recorded but older than the current state: no change.
    Stale,
    /// Already processed before (same event id): skipped.
    Duplicate,
    /// Recorded, but it disagrees with another event of the payment's rank on amount or
    /// currency: the payment keeps the smaller pair and is marked conflicted.
    Conflict,
    /// Its id was recorded before for another event: recorded as a dead letter, never applied.
    IdReused(String),
    /// Can never apply (for example the payment belongs to another order): recorded as a dead letter.
    DeadLettered(String),
}

impl From<crate::domain::Outcome> for Applied {
    fn from(o: crate::domain::Outcome) -> Self {
        match o {
            crate::domain::Outcome::Applied => Self::Applied,
            crate::domain::Outcome::Stale => Self::Stale,
            crate::domain::Outcome::Conflict => Self::Conflict,
        }
    }
}

/// An event whose id is already recorded: `None` for a redelivery (a duplicate), the dead
/// letter to record when the id was reused for another event.
pub fn reused_id(recorded: &Recorded, event: &PaymentEvent) -> Option<DeadLetter> {
    redelivery::check(recorded, event).err().map(|c| DeadLetter::for_event(event, c.to_string(), 1))
}

/// An event the worker gave up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub event_id: String,
    pub payment_id: Option<String>,
    pub order_id: Option<String>,
    pub payload: String,
    pub error: String,
    pub attempts: u32,
}

impl DeadLetter {
    pub fn for_event(event: &PaymentEvent, error: String, attempts: u32) -> Self {
        Self {
            event_id: event.event_id.clone(),
            payment_id: Some(event.payment_id.clone()),
            order_id: Some(event.order_id.clone()),
            payload: serde_json::to_string(event).unwrap_or_default(),
            error,
            attempts,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    pub id: i64,
    pub event_id: String,
    pub payment_id: Option<String>,
    pub order_id: Option<String>,
    pub error: String,
    pub attempts: u32,
    pub failed_at_us: i64,
    pub payload: String,
    /// When it was last put back on the queue; `None` while it waits for an operator.
    pub replayed_at_us: Option<i64>,
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DeadLetterFilter {
    pub id: Option<i64>,
    /// Only those that failed at or after this time (µs since the epoch).
    pub since_us: Option<i64>,
    /// Include those already replayed.
    #[serde(default)]
    pub include_replayed: bool,
    pub limit: Option<u32>,
    /// Only those of this payment (the console's event history of one payment).
    pub payment_id: Option<String>,
    pub order_id: Option<String>,
    /// Only those whose error starts with this, e.g. `conflict:`.
    pub error_prefix: Option<String>,
}

impl DeadLetterFilter {
    pub const MAX_LIMIT: u32 = 10_000;

    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(100).min(Self::MAX_LIMIT)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PaymentSummary {
    pub payment_id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    /// Events of its current rank disagree on amount or currency; see `Applied::Conflict`.
    pub conflicted: bool,
}

impl PaymentSummary {
    pub fn of(payment_id: String, p: crate::domain::Payment) -> Self {
        Self { payment_id, status: p.status.as_str().into(), amount: p.amount, currency: p.currency, conflicted: p.conflicted }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: String,
    pub user_id: String,
    pub items: Vec<String>,
    pub total_amount: i64,
    pub currency: String,
    pub status: String,
    pub payments: Vec<PaymentSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: String,
    pub outcome: String,
    pub received_at_us: i64,
    pub applied_at_us: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PaymentView {
    pub id: String,
    pub order_id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub conflicted: bool,
    /// How many events' effects were applied to this payment; equals `events.len()` unless
    /// something applied an event twice.
    pub applied_events: i64,
    pub events: Vec<EventRecord>,
}

/// What one purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub applied_events: u64,
    pub dead_letters: u64,
}

/// Rows deleted per statement by a purge, so that the worker's batches interleave with it.
pub const PURGE_CHUNK: i64 = 5_000;

/// The name under which a consumer's positions are stored.
pub type ConsumerName = str;

#[async_trait]
pub trait Store: Send + Sync {
    /// Applies a batch in one transaction, together with the consumer's new positions:
    /// all of it or none of it. Durable when it returns, unless the store defers syncing to
    /// [`Store::make_durable`] (SQLite under [`sqlite::Durability::Checkpoint`]); then a power
    /// cut may roll back the effects and the positions together.
    async fn apply_batch(
        &self,
        consumer: &ConsumerName,
        events: &[PaymentEvent],
        positions: &[Position],
    ) -> Result<Vec<Applied>, StoreError>;

    /// Records dead letters together with the consumer's new positions.
    async fn dead_letter(&self, consumer: &ConsumerName, letters: &[DeadLetter], positions: &[Position]) -> Result<(), StoreError>;

    /// The positions recorded by the last committed batch.
    async fn positions(&self, consumer: &ConsumerName) -> Result<Vec<Position>, StoreError>;

    /// The highest position any consumer stored in the embedded log with identity `log_id`
    /// (positions are stored as `<consumer>@<log id>`), 0 if none: the log never gives out an
    /// offset at or below it again, so no new event hides behind a stored position.
    async fn log_position(&self, log_id: &str) -> Result<u64, StoreError>;

    async fn create_order(&self, order: &NewOrder) -> Result<CreateOutcome, StoreError>;
    async fn order(&self, id: &str) -> Result<Option<OrderView>, StoreError>;
    async fn payment(&self, id: &str) -> Result<Option<PaymentView>, StoreError>;
    /// Matching dead letters, newest first, with the number that match in all.
    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), StoreError>;
    /// Notes that these dead letters (id, attempts as listed) were put back on the queue,
    /// except those that failed again meanwhile: a replay the worker dead-letters before this
    /// runs must stay waiting, not be marked as replayed.
    async fn mark_replayed(&self, letters: &[(i64, u32)]) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;

    /// Deletes the record of events applied before `applied_before_us` (their ids stop
    /// deduplicating redeliveries, so the caller keeps them for the provider's retry window),
    /// and dead letters replayed before `replayed_before_us`. A dead letter never replayed waits
    /// for an operator and is kept. A store that keeps everything (a model) has nothing to do.
    async fn purge(&self, applied_before_us: Option<i64>, replayed_before_us: Option<i64>) -> Result<Purged, StoreError> {
        let _ = (applied_before_us, replayed_before_us);
        Ok(Purged::default())
    }

    /// Makes every committed transaction durable. The worker calls it before the queue may
    /// forget events behind the stored positions. A store whose commits are durable already
    /// has nothing to do.
    async fn make_durable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
