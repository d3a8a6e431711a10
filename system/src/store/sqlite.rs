//! The SQLite store: one file in WAL mode; one writer connection (SQLite allows one writer
//! at a time anyway) and one reader so that API reads do not queue behind batches.
//!
//! When commits reach the disk is the caller's choice ([`Durability`]): each commit, or
//! only at checkpoints when the queue keeps every event until the store has synced it.

use std::ffi::c_int;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::hooks::Wal;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};

use super::schema::Upgrade;
use super::{reused_id, Applied, Purged, ConsumerName, DeadLetter, DeadLetterFilter, DeadLetterView, EventRecord, OrderView, PaymentSummary, PaymentView, Store, StoreError};
use crate::domain::redelivery::Recorded;
use crate::domain::state::{self, status_from_payments};
use crate::domain::{CreateOutcome, EventType, NewOrder, OrderStatus, OrderTerms, Payment, PaymentEvent, PaymentStatus};
use crate::queue::Position;
use crate::sqlite_conn::ConnThread;

/// Schema versions, applied in order at start-up; the index + 1 is the version number.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE orders (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    items         TEXT NOT NULL,
    total_amount  INTEGER NOT NULL CHECK (total_amount >= 0),
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);
CREATE TABLE payments (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL,
    status         TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    currency       TEXT NOT NULL,
    applied_events INTEGER NOT NULL,
    created_at_us  INTEGER NOT NULL,
    updated_at_us  INTEGER NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);
CREATE TABLE payment_events (
    event_id       TEXT PRIMARY KEY,
    payment_id     TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    amount         INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    received_at_us INTEGER NOT NULL,
    applied_at_us  INTEGER NOT NULL
);
CREATE INDEX payment_events_by_payment ON payment_events (payment_id);
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    payment_id   TEXT,
    order_id     TEXT,
    payload      TEXT NOT NULL,
    error        TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    failed_at_us INTEGER NOT NULL
);
CREATE TABLE consumer_positions (
    consumer  TEXT NOT NULL,
    partition INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition)
);
"#,
    // Dead letters can be replayed; a replayed event that fails again is waiting again.
    "ALTER TABLE dead_letters ADD COLUMN replayed_at_us INTEGER;
     CREATE INDEX dead_letters_by_time ON dead_letters (failed_at_us);",
    // Two events of one rank disagreed on amount or currency (domain::state::same_rank).
    "ALTER TABLE payments ADD COLUMN conflicted INTEGER NOT NULL DEFAULT 0;",
    // The provider's created time of the event that set the state (domain::state::precedence).
    "ALTER TABLE payments ADD COLUMN created INTEGER;",
];

/// When the worker's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is synced: for queues that forget what the worker commits (Kafka).
    EveryCommit,
    /// Batches commit without a sync (`synchronous=NORMAL`) and are synced at checkpoints
    /// ([`Store::make_durable`]): for the embedded log, which keeps every event until the
    /// worker releases it after such a checkpoint. A power cut rolls effects and stored
    /// positions back together, and the log delivers those events again. Orders and
    /// operators' writes are still synced when they commit: they are on no log.
    Checkpoint,
}

pub struct SqliteStore {
    writer: ConnThread,
    reader: ConnThread,
    durability: Durability,
    /// Why a checkpoint failed, once one has: see [`checkpoint_in_steps`].
    failed: Failed,
}

type Failed = Arc<Mutex<Option<String>>>;

fn classify(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Transient(e.to_string()),
        // The file system, not the event: a full disk still answers `SELECT 1`.
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::ReadOnly) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Permanent(e.to_string()),
    }
}

/// With commits unsynced, SQLite's automatic checkpoint is where the store's writes reach the
/// disk: it syncs the WAL, copies it and syncs the database. The log's group fsync shares the
/// disk and waits behind such a sync, so smaller checkpoints keep the acknowledgement's tail
/// short: every 250 pages (about 1 MiB of WAL) instead of SQLite's 1,000, at the price of more
/// store CPU (the interleaved pairs are in docs/measurements/2026-12-02-http-floor-and-closed-loop.md).
const CHECKPOINT_PAGES: c_int = 250;

fn connect(path: &Path, durability: Durability, failed: &Failed) -> Result<Connection, rusqlite::Error> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=ON;")?;
    conn.pragma_update(None, "synchronous", synchronous(durability))?;
    if durability == Durability::Checkpoint {
        checkpoint_in_steps(&mut conn, failed.clone())?;
    }
    Ok(conn)
}

/// SQLite's automatic checkpoint ignores its own errors: after a failed sync of the WAL or the
/// database, a later checkpoint can report success over pages the kernel dropped or never
/// wrote (PostgreSQL's "fsyncgate"), and the log would then delete events whose effects are
/// not on disk. So the store runs the same checkpoint from the WAL hook, at the same step,
/// and remembers a failure: from then on it refuses to call itself durable until a restart,
/// when SQLite recovers from its WAL.
fn checkpoint_in_steps(conn: &mut Connection, failed: Failed) -> Result<(), rusqlite::Error> {
    conn.wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
        if pages < CHECKPOINT_PAGES {
            return Ok(());
        }
        if let Err(e) = wal.checkpoint() {
            remember_io_failure(&failed, &e);
        }
        Ok(())
    }))
}

/// A failed write or sync leaves the disk's state unknown; busy or locked (another connection
/// checkpointing, a reader in the way) only postpones the work.
fn remember_io_failure(failed: &Failed, e: &rusqlite::Error) {
    if e.sqlite_error_code() != Some(ErrorCode::SystemIoFailure) {
        return;
    }
    tracing::error!(error = %e, "the store's checkpoint failed; consumed events stay on the log until a restart");
    if let Ok(mut f) = failed.lock() {
        f.get_or_insert_with(|| e.to_string());
    }
}

/// In WAL mode NORMAL still syncs the WAL before every checkpoint and the database after
/// it, so the file is never corrupted; it only lets the last commits be lost at a power cut.
fn synchronous(durability: Durability) -> &'static str {
    match durability {
        Durability::EveryCommit => "FULL",
        Durability::Checkpoint => "NORMAL",
    }
}

/// Runs `f` (which commits) with every commit synced, whatever the connection's setting:
/// for writes no log can repeat. The sync also makes earlier unsynced commits durable.
fn synced<T>(c: &mut Connection, durability: Durability, f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>) -> Result<T, rusqlite::Error> {
    if durability == Durability::EveryCommit {
        return f(c);
    }
    c.pragma_update(None, "synchronous", "FULL")?;
    let result = f(c);
    c.pragma_update(None, "synchronous", synchronous(durability))?;
    result
}

/// A FULL checkpoint syncs the WAL and then the database file; it waits (busy timeout) for
/// the reader to leave older snapshots, and a checkpoint that could not finish is an error.
fn checkpoint(c: &mut Connection) -> Result<(), rusqlite::Error> {
    let busy: i64 = c.query_row("PRAGMA wal_checkpoint(FULL)", [], |r| r.get(0))?;
    if busy != 0 {
        return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), Some("checkpoint blocked by a reader".into())));
    }
    Ok(())
}

fn migrate(conn: &mut Connection, upgrade: Upgrade) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
    super::schema::check(current as u32, MIGRATIONS.len(), upgrade).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", params![i as i64 + 1])?;
    }
    tx.commit()
}

/// Processes that open a new database together (a split server and worker) race to switch it
/// to WAL and to migrate it, and SQLite answers the loser "database is locked" at once, without
/// waiting in its busy handler. Opening again a moment later finds the work done.
fn retry_while_locked<T>(mut open: impl FnMut() -> Result<T, rusqlite::Error>) -> Result<T, StoreError> {
    const ATTEMPTS: u32 = 50;
    let mut attempt = 1;
    loop {
        match open().map_err(classify) {
            Err(StoreError::Transient(why)) if attempt < ATTEMPTS => {
                tracing::debug!(error = %why, attempt, "store busy while opening; trying again");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 * attempt as u64));
            }
            other => return other,
        }
    }
}

impl SqliteStore {
    /// A store whose every commit is durable when it returns.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::EveryCommit)
    }

    /// A store that brings an older schema up to date as it opens.
    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        Self::open_as(path, durability, Upgrade::Migrate)
    }

    /// A store whose older schema is migrated or refused, as `upgrade` says.
    pub fn open_as(path: &Path, durability: Durability, upgrade: Upgrade) -> Result<Self, StoreError> {
        let failed = Failed::default();
        let writer = retry_while_locked(|| {
            let mut c = connect(path, durability, &failed)?;
            migrate(&mut c, upgrade)?;
            Ok(c)
        })?;
        let reader = retry_while_locked(|| connect(path, durability, &failed))?;
        let thread = |name, conn| ConnThread::spawn(name, conn).map_err(|e| StoreError::Permanent(format!("start {name}: {e}")));
        Ok(Self { writer: thread("store-writer", writer)?, reader: thread("store-reader", reader)?, durability, failed })
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let v: i64 = self.reader.run(|c| c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))).await.map_err(classify)?;
        Ok(v as u32)
    }

    /// An error once any checkpoint failed: nothing this process syncs from then on is trusted.
    fn check_not_failed(&self) -> Result<(), StoreError> {
        match self.failed.lock().map(|f| f.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(StoreError::Unavailable(format!("a checkpoint failed earlier ({why}); restart to recover the store from its WAL"))),
            Err(_) => Err(StoreError::Unavailable("the checkpoint state is poisoned; restart".into())),
        }
    }
}

fn apply_one(tx: &Transaction<'_>, e: &PaymentEvent, now: i64) -> Result<Applied, rusqlite::Error> {
    if let Some(recorded) = load_recorded(tx, &e.event_id)? {
        return match reused_id(&recorded, e) {
            None => Ok(Applied::Duplicate),
            Some(letter) => {
                insert_dead_letter(tx, &letter, now)?;
                Ok(Applied::IdReused(letter.error))
            }
        };
    }
    let payment = load_payment(tx, &e.payment_id)?;
    let order = load_order_terms(tx, &e.order_id)?;
    let effect = match state::decide(e, payment.as_ref(), order.as_ref()) {
        Ok(effect) => effect,
        Err(conflict) => {
            let letter = DeadLetter::for_event(e, conflict.to_string(), 1);
            insert_dead_letter(tx, &letter, now)?;
            return Ok(Applied::DeadLettered(letter.error));
        }
    };
    let p = &effect.payment;
    tx.prepare_cached(
        "INSERT INTO payments (id, order_id, status, amount, currency, conflicted, created, applied_events, created_at_us, updated_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, 1, ?7, ?7)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, amount = excluded.amount, currency = excluded.currency,
             conflicted = excluded.conflicted, created = excluded.created, applied_events = applied_events + 1,
             updated_at_us = excluded.updated_at_us",
    )?
    .execute(params![e.payment_id, p.order_id, p.status.as_str(), p.amount, p.currency, p.conflicted, now, p.created])?;
    tx.prepare_cached(
        "INSERT INTO payment_events (event_id, payment_id, event_type, amount, currency, outcome, received_at_us, applied_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![e.event_id, e.payment_id, e.event_type.as_str(), e.amount, e.currency, effect.outcome.as_str(), e.received_at_us, now])?;
    if let Some(status) = effect.order_status {
        tx.prepare_cached("UPDATE orders SET status = ?1, updated_at_us = ?2 WHERE id = ?3")?
            .execute(params![status.as_str(), now, e.order_id])?;
    }
    Ok(effect.outcome.into())
}

fn corrupt(what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("unknown {what} {value:?}").into())
}

/// One table only: with a join (plain or CROSS) this SQLite build (STAT4) prepared the
/// statement again on every run in a writing transaction, about a sixth of the writer
/// thread's CPU.
const RECORDED: &str = "SELECT payment_id, event_type, amount, currency FROM payment_events WHERE event_id = ?1";

/// What was recorded under an event id; the payment's order is the event's, since a
/// payment never moves to another order.
fn load_recorded(tx: &Connection, event_id: &str) -> Result<Option<Recorded>, rusqlite::Error> {
    let row = tx
        .prepare_cached(RECORDED)?
        .query_row(params![event_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((payment_id, event_type, amount, currency)) = row else { return Ok(None) };
    let event_type = EventType::parse(&event_type).ok_or_else(|| corrupt("event type", &event_type))?;
    let order_id = load_payment(tx, &payment_id)?.ok_or_else(|| corrupt("payment of a recorded event", &payment_id))?.order_id;
    Ok(Some(Recorded { payment_id, order_id, event_type, amount, currency }))
}

fn load_payment(tx: &Connection, id: &str) -> Result<Option<Payment>, rusqlite::Error> {
    let row = tx
        .prepare_cached("SELECT order_id, status, amount, currency, conflicted, created FROM payments WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    row.map(|(order_id, status, amount, currency, conflicted, created)| {
        let status = PaymentStatus::parse(&status).ok_or_else(|| corrupt("payment status", &status))?;
        Ok(Payment { order_id, status, amount, currency, conflicted, created })
    })
    .transpose()
}

fn load_order_terms(tx: &Connection, id: &str) -> Result<Option<OrderTerms>, rusqlite::Error> {
    let row = tx
        .prepare_cached("SELECT total_amount, currency, status FROM orders WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))
        .optional()?;
    row.map(|(total_amount, currency, status)| {
        let status = OrderStatus::parse(&status).ok_or_else(|| corrupt("order status", &status))?;
        Ok(OrderTerms { total_amount, currency, status })
    })
    .transpose()
}

fn insert_dead_letter(tx: &Connection, d: &DeadLetter, now: i64) -> Result<(), rusqlite::Error> {
    // One row per event: a redelivered or replayed event that fails again updates it.
    tx.prepare_cached(
        "INSERT INTO dead_letters (event_id, payment_id, order_id, payload, error, attempts, failed_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (event_id) DO UPDATE SET error = excluded.error, failed_at_us = excluded.failed_at_us,
             attempts = dead_letters.attempts + excluded.attempts, replayed_at_us = NULL",
    )?
    .execute(params![d.event_id, d.payment_id, d.order_id, d.payload, d.error, d.attempts, now])?;
    Ok(())
}

fn save_positions(tx: &Connection, consumer: &str, positions: &[Position]) -> Result<(), rusqlite::Error> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO consumer_positions (consumer, partition, position) VALUES (?1, ?2, ?3)
         ON CONFLICT (consumer, partition) DO UPDATE SET position = excluded.position",
    )?;
    for p in positions {
        stmt.execute(params![consumer, p.partition, p.offset])?;
    }
    Ok(())
}

fn create_order(conn: &mut Connection, o: &NewOrder) -> Result<CreateOutcome, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let items = serde_json::to_string(&o.items).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let existing = tx
        .query_row("SELECT user_id, items, total_amount, currency FROM orders WHERE id = ?1", params![o.id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
        })
        .optional()?;
    if let Some(row) = existing {
        let same = row == (o.user_id.clone(), items, o.total_amount, o.currency.clone());
        return Ok(if same { CreateOutcome::AlreadyExists } else { CreateOutcome::Conflict });
    }
    let terms = OrderTerms { total_amount: o.total_amount, currency: o.currency.clone(), status: OrderStatus::Pending };
    let payments = payments_of_order(&tx, &o.id)?;
    let status = status_from_payments(&terms, payments.iter().map(|(_, p)| p));
    let now = super::now_us();
    tx.execute(
        "INSERT INTO orders (id, user_id, items, total_amount, currency, status, created_at_us, updated_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![o.id, o.user_id, items, o.total_amount, o.currency, status.as_str(), now],
    )?;
    tx.commit()?;
    Ok(CreateOutcome::Created)
}

fn payments_of_order(conn: &Connection, order_id: &str) -> Result<Vec<(String, Payment)>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT id, status, amount, currency, conflicted, created FROM payments WHERE order_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map(params![order_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
    })?;
    rows.map(|row| {
        let (id, status, amount, currency, conflicted, created) = row?;
        let status = PaymentStatus::parse(&status).ok_or_else(|| corrupt("payment status", &status))?;
        Ok((id, Payment { order_id: order_id.to_owned(), status, amount, currency, conflicted, created }))
    })
    .collect()
}

fn read_order(conn: &Connection, id: &str) -> Result<Option<OrderView>, rusqlite::Error> {
    let row = conn
        .prepare_cached("SELECT user_id, items, total_amount, currency, status FROM orders WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((user_id, items, total_amount, currency, status)) = row else { return Ok(None) };
    let items: Vec<String> = serde_json::from_str(&items).map_err(|_| corrupt("items", &items))?;
    let payments = payments_of_order(conn, id)?
        .into_iter()
        .map(|(payment_id, p)| PaymentSummary::of(payment_id, p))
        .collect();
    Ok(Some(OrderView { id: id.into(), user_id, items, total_amount, currency, status, payments }))
}

fn read_payment(conn: &Connection, id: &str) -> Result<Option<PaymentView>, rusqlite::Error> {
    let row = conn
        .prepare_cached("SELECT order_id, status, amount, currency, conflicted, applied_events FROM payments WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    let Some((order_id, status, amount, currency, conflicted, applied_events)) = row else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT event_id, event_type, outcome, received_at_us, applied_at_us FROM payment_events
         WHERE payment_id = ?1 ORDER BY applied_at_us, event_id",
    )?;
    let events = stmt
        .query_map(params![id], |r| {
            Ok(EventRecord { event_id: r.get(0)?, event_type: r.get(1)?, outcome: r.get(2)?, received_at_us: r.get(3)?, applied_at_us: r.get(4)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(PaymentView { id: id.into(), order_id, status, amount, currency, conflicted, applied_events, events }))
}

fn read_dead_letters(conn: &Connection, f: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), rusqlite::Error> {
    const MATCH: &str = "(?1 IS NULL OR id = ?1) AND (?2 IS NULL OR failed_at_us >= ?2) AND (?3 OR replayed_at_us IS NULL)
        AND (?4 IS NULL OR payment_id = ?4) AND (?5 IS NULL OR order_id = ?5) AND (?6 IS NULL OR substr(error, 1, length(?6)) = ?6)";
    let args = params![f.id, f.since_us, f.include_replayed, f.payment_id, f.order_id, f.error_prefix];
    let count: i64 = conn.prepare_cached(&format!("SELECT COUNT(*) FROM dead_letters WHERE {MATCH}"))?.query_row(args, |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, event_id, payment_id, order_id, error, attempts, failed_at_us, payload, replayed_at_us
         FROM dead_letters WHERE {MATCH} ORDER BY id DESC LIMIT ?7"
    ))?;
    let items = stmt
        .query_map(params![f.id, f.since_us, f.include_replayed, f.payment_id, f.order_id, f.error_prefix, f.limit()], |r| {
            Ok(DeadLetterView {
                id: r.get(0)?,
                event_id: r.get(1)?,
                payment_id: r.get(2)?,
                order_id: r.get(3)?,
                error: r.get(4)?,
                attempts: r.get(5)?,
                failed_at_us: r.get(6)?,
                payload: r.get(7)?,
                replayed_at_us: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok((count as u64, items))
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply_batch(&self, consumer: &ConsumerName, events: &[PaymentEvent], positions: &[Position]) -> Result<Vec<Applied>, StoreError> {
        let (consumer, events, positions) = (consumer.to_owned(), events.to_vec(), positions.to_vec());
        self.writer
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = super::now_us();
                let outcomes = events.iter().map(|e| apply_one(&tx, e, now)).collect::<Result<Vec<_>, _>>()?;
                save_positions(&tx, &consumer, &positions)?;
                tx.commit()?;
                Ok(outcomes)
            })
            .await
            .map_err(classify)
    }

    async fn dead_letter(&self, consumer: &ConsumerName, letters: &[DeadLetter], positions: &[Position]) -> Result<(), StoreError> {
        let (consumer, letters, positions) = (consumer.to_owned(), letters.to_vec(), positions.to_vec());
        self.writer
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = super::now_us();
                for d in &letters {
                    insert_dead_letter(&tx, d, now)?;
                }
                save_positions(&tx, &consumer, &positions)?;
                tx.commit()
            })
            .await
            .map_err(classify)
    }

    async fn positions(&self, consumer: &ConsumerName) -> Result<Vec<Position>, StoreError> {
        let consumer = consumer.to_owned();
        self.reader
            .run(move |c| {
                let mut stmt = c.prepare_cached("SELECT partition, position FROM consumer_positions WHERE consumer = ?1")?;
                let rows = stmt.query_map(params![consumer], |r| Ok(Position { partition: r.get(0)?, offset: r.get(1)? }))?;
                rows.collect()
            })
            .await
            .map_err(classify)
    }

    async fn log_position(&self, log_id: &str) -> Result<u64, StoreError> {
        let pattern = format!("%@{log_id}");
        self.reader
            .run(move |c| {
                let sql = "SELECT COALESCE(MAX(position), 0) FROM consumer_positions WHERE consumer LIKE ?1 AND partition = 0";
                c.query_row(sql, params![pattern], |r| r.get::<_, i64>(0))
            })
            .await
            .map(|p| p.max(0) as u64)
            .map_err(classify)
    }

    async fn create_order(&self, order: &NewOrder) -> Result<CreateOutcome, StoreError> {
        let (order, durability) = (order.clone(), self.durability);
        self.writer.run(move |c| synced(c, durability, |c| create_order(c, &order))).await.map_err(classify)
    }

    async fn order(&self, id: &str) -> Result<Option<OrderView>, StoreError> {
        let id = id.to_owned();
        self.reader.run(move |c| read_order(c, &id)).await.map_err(classify)
    }

    async fn payment(&self, id: &str) -> Result<Option<PaymentView>, StoreError> {
        let id = id.to_owned();
        self.reader.run(move |c| read_payment(c, &id)).await.map_err(classify)
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<(u64, Vec<DeadLetterView>), StoreError> {
        let filter = filter.clone();
        self.reader.run(move |c| read_dead_letters(c, &filter)).await.map_err(classify)
    }

    async fn mark_replayed(&self, letters: &[(i64, u32)]) -> Result<(), StoreError> {
        let (letters, durability) = (letters.to_vec(), self.durability);
        self.writer
            .run(move |c| {
                synced(c, durability, |c| {
                    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    let now = super::now_us();
                    for (id, attempts) in &letters {
                        tx.prepare_cached("UPDATE dead_letters SET replayed_at_us = ?1 WHERE id = ?2 AND attempts = ?3")?.execute(params![now, id, attempts])?;
                    }
                    tx.commit()
                })
            })
            .await
            .map_err(classify)
    }

    async fn make_durable(&self) -> Result<(), StoreError> {
        self.check_not_failed()?;
        match self.durability {
            Durability::EveryCommit => Ok(()),
            Durability::Checkpoint => {
                let failed = self.failed.clone();
                self.writer
                    .run(move |c| {
                        let done = checkpoint(c);
                        if let Err(e) = &done {
                            remember_io_failure(&failed, e);
                        }
                        done
                    })
                    .await
                    .map_err(classify)?;
                // The hook may have failed meanwhile, behind this checkpoint's success.
                self.check_not_failed()
            }
        }
    }

    async fn purge(&self, applied_before_us: Option<i64>, replayed_before_us: Option<i64>) -> Result<Purged, StoreError> {
        // Rowids follow insertion, so the oldest rows are found first without an index.
        let events = "DELETE FROM payment_events WHERE rowid IN (SELECT rowid FROM payment_events WHERE applied_at_us < ?1 LIMIT ?2)";
        let letters = "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE replayed_at_us < ?1 LIMIT ?2)";
        let mut purged = Purged::default();
        for (sql, before, count) in [(events, applied_before_us, &mut purged.applied_events), (letters, replayed_before_us, &mut purged.dead_letters)] {
            let Some(before) = before else { continue };
            loop {
                let deleted = self.writer.run(move |c| c.execute(sql, params![before, super::PURGE_CHUNK])).await.map_err(classify)?;
                *count += deleted as u64;
                if (deleted as i64) < super::PURGE_CHUNK {
                    break;
                }
            }
        }
        Ok(purged)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_not_failed()?;
        self.reader.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// A split server and worker open a new database at the same moment: both set WAL mode
    /// and migrate. Many rounds of four at once, each on a fresh file.
    #[test]
    fn processes_opening_a_new_database_together_all_succeed() {
        for round in 0..40 {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("store.db");
            let barrier = std::sync::Barrier::new(4);
            let results: Vec<_> = std::thread::scope(|s| {
                let opens: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            SqliteStore::open_with(&path, Durability::Checkpoint).map(|_| ())
                        })
                    })
                    .collect();
                opens.into_iter().map(|h| h.join().expect("thread")).collect()
            });
            for r in results {
                r.unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
    }

    /// A database an earlier release left one version behind is refused unless migrating; an
    /// empty one is created at the current version either way.
    #[tokio::test]
    async fn an_older_schema_is_migrated_only_when_asked_and_an_empty_one_is_created() {
        let dir = tempfile::tempdir().expect("dir");
        let old = dir.path().join("old.db");
        {
            let mut c = Connection::open(&old).expect("open");
            let tx = c.transaction().expect("transaction");
            tx.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)").expect("versions");
            for (i, sql) in MIGRATIONS[..MIGRATIONS.len() - 1].iter().enumerate() {
                tx.execute_batch(sql).expect("migration");
                tx.execute("INSERT INTO schema_version (version) VALUES (?1)", params![i as i64 + 1]).expect("version");
            }
            tx.commit().expect("commit");
        }
        let Err(refused) = SqliteStore::open_as(&old, Durability::EveryCommit, Upgrade::Refuse) else { panic!("an older schema was opened") };
        assert!(refused.to_string().contains("webhooks migrate"), "{refused}");
        let migrated = SqliteStore::open_as(&old, Durability::EveryCommit, Upgrade::Migrate).expect("migrated");
        assert_eq!(migrated.schema_version().await.expect("version") as usize, MIGRATIONS.len());
        let fresh = SqliteStore::open_as(&dir.path().join("new.db"), Durability::EveryCommit, Upgrade::Refuse).expect("created");
        assert_eq!(fresh.schema_version().await.expect("version") as usize, MIGRATIONS.len());
    }

    fn event(i: i64) -> PaymentEvent {
        PaymentEvent {
            event_id: format!("e{i}"),
            event_type: EventType::Success,
            payment_id: format!("p{}", i % 7),
            order_id: format!("o{}", i % 3),
            amount: 100,
            currency: "USD".into(),
            created_at: None,
            received_at_us: 1,
            request_id: None,
            traceparent: None,
        }
    }

    /// Unsynced commits pile up in the WAL until a checkpoint syncs them; each checkpoint
    /// must stay small (see CHECKPOINT_PAGES), so the WAL never grows far past it.
    #[test]
    fn the_wal_is_checkpointed_in_small_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut c = connect(&path, Durability::Checkpoint, &Failed::default()).unwrap();
        migrate(&mut c, Upgrade::Migrate).unwrap();
        let scattered = |i: i64| (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for batch in 0..200 {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
            for i in batch * 50..(batch + 1) * 50 {
                let e = PaymentEvent { event_id: format!("e{:016x}", scattered(i)), payment_id: format!("p{:016x}", scattered(i / 3)), ..event(i) };
                apply_one(&tx, &e, 1).unwrap();
            }
            tx.commit().unwrap();
        }
        let frames: i64 = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap();
        let wal = std::fs::metadata(dir.path().join("s.db-wal")).unwrap().len();
        let limit = 2 * CHECKPOINT_PAGES as u64 * (4096 + 24);
        assert!(wal <= limit, "WAL grew to {wal} bytes, more than {limit} ({frames} frames left)");
    }

    /// SQLite re-prepares a statement whose plan depends on its bound values; the batch's
    /// statements must not, or parsing costs more than the work.
    #[test]
    fn applying_events_prepares_each_statement_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = connect(&dir.path().join("s.db"), Durability::Checkpoint, &Failed::default()).unwrap();
        migrate(&mut c, Upgrade::Migrate).unwrap();
        for i in 0..50 {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
            apply_one(&tx, &event(i), 1).unwrap();
            apply_one(&tx, &event(i), 1).unwrap();
            save_positions(&tx, "w", &[Position { partition: 0, offset: i }]).unwrap();
            tx.commit().unwrap();
        }
        let recorded = c.prepare_cached(RECORDED).unwrap();
        assert_eq!(recorded.get_status(StatementStatus::RePrepare), 0);
        assert_eq!(recorded.get_status(StatementStatus::Run), 100);
    }
}
