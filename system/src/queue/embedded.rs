//! The embedded queue: an append-only log in a local SQLite file (WAL, full fsync).
//!
//! One appender thread owns the write connection. Requests hand it their event and wait;
//! while it commits one batch, the next requests pile up and go in the next commit, so
//! concurrent requests share one fsync (group commit). The server and the worker may be
//! separate processes on the same data directory: SQLite's locking keeps them consistent.
//!
//! Every connection that can checkpoint syncs `queue.db` before the WAL restarts: a checkpoint
//! that copied frames without syncing (as the consumer once did, on `synchronous=OFF`) let the
//! appender's next commit overwrite the only synced copy, and a power cut then corrupted the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, Notify};

use super::{Consumer, Delivery, Position, Producer, QueueError};
use crate::domain::PaymentEvent;
use crate::metrics::Metrics;
use crate::sqlite_conn::SharedConn;

/// Most events one group commit takes; bounds a commit's latency.
const MAX_GROUP: usize = 2048;
/// Consumed rows are deleted in steps of at least this many, to keep the file small
/// without taking the write lock after every batch.
const TRUNCATE_EVERY: i64 = 5_000;
/// Truncations slower than this are logged.
const SLOW_TRUNCATION: Duration = Duration::from_millis(200);
/// Longest pause between polls of an empty log written by another process.
const MAX_NAP: Duration = Duration::from_millis(20);
/// After a failed write, the appender tries to reopen and verify the log at most this often,
/// answering 503 in between.
const RECOVERY_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub path: PathBuf,
    /// Appends waiting for the appender beyond this are refused at once (503).
    pub max_pending: usize,
    /// An append not durable within this time is answered 503.
    pub append_timeout: Duration,
    /// Consumed rows are deleted once this many have piled up; 1 makes the log hold exactly
    /// what is not consumed yet, which a log without a stored position (the spool) needs.
    pub truncate_every: i64,
}

impl EmbeddedConfig {
    pub fn in_dir(dir: &Path) -> Self {
        Self { path: dir.join("queue.db"), max_pending: 50_000, append_timeout: Duration::from_secs(5), truncate_every: TRUNCATE_EVERY }
    }
}

/// Who opens the log decides how it syncs and checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Group commits: fsync on every commit, and no checkpoint work on this hot path
    /// except as a backstop when no consumer has checkpointed for a long time.
    Appender,
    /// Reads and truncation: deletions need no fsync of their own (rows reappearing after a
    /// crash are skipped by the stored position, and the appender's next commit syncs the
    /// WAL anyway), and checkpoints run here, off the appender's path. `NORMAL`, not `OFF`:
    /// in WAL mode it syncs the WAL before a checkpoint and `queue.db` after it, before the
    /// WAL may restart.
    Consumer,
}

fn open(path: &Path, role: Role) -> Result<Connection, QueueError> {
    let conn = Connection::open(path).map_err(storage)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(storage)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;
         CREATE TABLE IF NOT EXISTS log (
             seq INTEGER PRIMARY KEY AUTOINCREMENT, -- AUTOINCREMENT: never reuse a consumed seq
             payload BLOB NOT NULL
         );
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )
    .map_err(storage)?;
    let tuning = match role {
        Role::Appender => "PRAGMA wal_autocheckpoint=20000;",
        Role::Consumer => "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=1000;",
    };
    conn.execute_batch(tuning).map_err(storage)?;
    Ok(conn)
}

/// The log's identity, made with it: stored queue positions name it, so that a position
/// from another log (a replaced data directory, another instance) is never used.
fn log_id(conn: &Connection) -> Result<String, QueueError> {
    let fresh = format!("{:032x}", rand::random::<u128>());
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', ?1)", params![fresh]).map_err(storage)?;
    conn.query_row("SELECT value FROM meta WHERE key = 'log_id'", [], |r| r.get(0)).map_err(storage)
}

/// Opens the appender's connection anew after a failed write and proves the log sound
/// before it takes another append. A failed fsync may have dropped data that the page
/// cache still shows (PostgreSQL's "fsyncgate"), so nothing is retried on the old
/// connection: the new one copies every committed frame into `queue.db` and syncs it
/// (a `TRUNCATE` checkpoint, which also restarts the WAL), then checks the file.
fn reopen_verified(path: &Path) -> Result<Connection, QueueError> {
    let conn = open(path, Role::Appender)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).map_err(storage)?;
    if busy != 0 {
        return Err(QueueError::Storage("log checkpoint could not complete".into()));
    }
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(storage)?;
    if check != "ok" {
        return Err(QueueError::Storage(format!("log failed its integrity check: {check}")));
    }
    Ok(conn)
}

fn storage(e: rusqlite::Error) -> QueueError {
    QueueError::Storage(e.to_string())
}

struct Append {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<(), QueueError>>,
}

/// The server's handle: hands events to the appender thread.
pub struct EmbeddedProducer {
    tx: mpsc::Sender<Append>,
    append_timeout: Duration,
}

impl EmbeddedProducer {
    /// Opens (creating if needed) the log and starts its appender thread, which stops
    /// after the last producer handle is dropped and every pending append is written.
    pub fn open(cfg: &EmbeddedConfig, metrics: Metrics, wake: Arc<Notify>) -> Result<Self, QueueError> {
        let conn = open(&cfg.path, Role::Appender)?;
        log_id(&conn)?;
        let (tx, rx) = mpsc::channel(cfg.max_pending.max(1));
        let appender = Appender { path: cfg.path.clone(), conn: Some(conn), last_recovery: None };
        std::thread::Builder::new()
            .name("queue-appender".into())
            .spawn(move || appender.run(rx, metrics, wake))
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        Ok(Self { tx, append_timeout: cfg.append_timeout })
    }
}

#[async_trait]
impl Producer for EmbeddedProducer {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(event).map_err(|e| QueueError::Storage(e.to_string()))?;
        let (done, wait) = oneshot::channel();
        self.tx.try_send(Append { payload, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Unavailable("appender stopped".into()),
        })?;
        match tokio::time::timeout(self.append_timeout, wait).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(QueueError::Unavailable("appender stopped".into())),
            // The append may still become durable; the provider's retry is deduplicated downstream.
            Err(_) => Err(QueueError::Timeout),
        }
    }

    async fn ready(&self) -> Result<(), QueueError> {
        if self.tx.is_closed() {
            return Err(QueueError::Unavailable("appender stopped".into()));
        }
        Ok(())
    }
}

/// The thread that owns the write connection; `conn` is `None` after a failed write, until
/// the log has been reopened and verified.
struct Appender {
    path: PathBuf,
    conn: Option<Connection>,
    last_recovery: Option<Instant>,
}

impl Appender {
    fn run(mut self, mut rx: mpsc::Receiver<Append>, metrics: Metrics, wake: Arc<Notify>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(a) => group.push(a),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let result = self.write(&group);
            metrics.queue_append_latency.observe(started.elapsed().as_secs_f64());
            metrics.queue_append_batch.observe(group.len() as f64);
            for a in group.drain(..) {
                let _ = a.done.send(result.clone());
            }
            wake.notify_one();
        }
        tracing::debug!("queue appender stopped");
    }

    fn write(&mut self, group: &[Append]) -> Result<(), QueueError> {
        let conn = self.usable()?;
        let written = write_group(conn, group);
        written.map_err(|e| {
            tracing::error!(error = %e, events = group.len(), "queue group commit failed; answering 503 and reopening the log");
            // Never commit again on a connection whose write or fsync failed.
            self.conn = None;
            QueueError::Storage(e.to_string())
        })
    }

    /// The connection, reopened and verified first if the last write failed.
    fn usable(&mut self) -> Result<&Connection, QueueError> {
        if self.conn.is_none() {
            if self.last_recovery.is_some_and(|t| t.elapsed() < RECOVERY_INTERVAL) {
                return Err(QueueError::Unavailable("the log is recovering from a failed write".into()));
            }
            self.last_recovery = Some(Instant::now());
            match reopen_verified(&self.path) {
                Ok(conn) => {
                    tracing::info!("queue log reopened and verified; accepting appends again");
                    self.conn = Some(conn);
                }
                Err(e) => {
                    tracing::error!(error = %e, "queue log cannot be reopened yet; answering 503");
                    return Err(e);
                }
            }
        }
        self.conn.as_ref().ok_or_else(|| QueueError::Unavailable("no log connection".into()))
    }
}

fn write_group(conn: &Connection, group: &[Append]) -> Result<(), rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO log (payload) VALUES (?1)")?;
        for a in group {
            insert.execute(params![a.payload])?;
        }
    }
    tx.commit()
}

/// The worker's handle: reads the log in order from the position the store recorded.
pub struct EmbeddedConsumer {
    conn: SharedConn,
    log_id: String,
    position: i64,
    truncated_to: i64,
    truncate_every: i64,
    /// Set by an appender in the same process; across processes the consumer polls.
    wake: Arc<Notify>,
}

impl EmbeddedConsumer {
    pub fn open(cfg: &EmbeddedConfig, wake: Arc<Notify>) -> Result<Self, QueueError> {
        let conn = open(&cfg.path, Role::Consumer)?;
        let log_id = log_id(&conn)?;
        Ok(Self { conn: SharedConn::new(conn), log_id, position: 0, truncated_to: 0, truncate_every: cfg.truncate_every.max(1), wake })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.conn.run(move |c| f(c)).await.map_err(storage)
    }

    /// Events after the current position, counted.
    pub async fn backlog(&self) -> Result<u64, QueueError> {
        let position = self.position;
        self.blocking(move |c| c.query_row("SELECT COUNT(*) FROM log WHERE seq > ?1", params![position], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| n.max(0) as u64)
    }

    async fn read_after(&self, position: i64, max: usize) -> Result<Vec<Delivery>, QueueError> {
        self.blocking(move |c| {
            let mut stmt = c.prepare_cached("SELECT seq, payload FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt.query_map(params![position, max as i64], |r| {
                Ok(Delivery::decode(Position { partition: 0, offset: r.get(0)? }, r.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    fn log_id(&self) -> Option<String> {
        Some(self.log_id.clone())
    }

    async fn resume(&mut self, stored: &[Position]) -> Result<(), QueueError> {
        self.position = stored.iter().filter(|p| p.partition == 0).map(|p| p.offset).max().unwrap_or(0);
        self.truncated_to = self.position;
        Ok(())
    }

    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        // An appender in this process wakes us at once; a separate server process cannot,
        // so we poll, backing off while the log stays empty.
        let mut nap = Duration::from_millis(1);
        loop {
            let batch = self.read_after(self.position, max).await?;
            let now = tokio::time::Instant::now();
            if !batch.is_empty() || now >= deadline {
                return Ok(batch);
            }
            let _ = tokio::time::timeout(nap.min(deadline - now), self.wake.notified()).await;
            nap = (nap * 2).min(MAX_NAP);
        }
    }

    async fn commit(&mut self, batch: &[Delivery]) -> Result<(), QueueError> {
        if let Some(last) = batch.iter().map(|d| d.position.offset).max() {
            self.position = self.position.max(last);
        }
        if self.position - self.truncated_to >= self.truncate_every {
            let (upto, started) = (self.position, Instant::now());
            self.blocking(move |c| c.execute("DELETE FROM log WHERE seq <= ?1", params![upto])).await?;
            let took = started.elapsed();
            if took > SLOW_TRUNCATION {
                // The worker waits for this; a long wait shows as end-to-end latency.
                tracing::warn!(ms = took.as_millis() as u64, rows = upto - self.truncated_to, "queue truncation was slow");
            }
            self.truncated_to = upto;
        }
        Ok(())
    }

    async fn depth(&mut self) -> Option<u64> {
        let position = self.position;
        let last: Option<i64> = self
            .blocking(|c| {
                c.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'log'", [], |r| r.get(0)).optional()
            })
            .await
            .ok()?;
        Some(last.unwrap_or(0).saturating_sub(position).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::test_event as event;

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        let metrics = Metrics::new();
        let wake = Arc::new(Notify::new());
        let producer = Arc::new(EmbeddedProducer::open(&cfg, metrics.clone(), wake.clone()).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let p = producer.clone();
                tokio::spawn(async move { p.append(&event(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Fewer commits than events proves that appends were grouped.
        let rendered = metrics.render();
        let commits: f64 = rendered
            .lines()
            .find(|l| l.starts_with("webhooks_queue_append_batch_size_count"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(commits < 200.0, "{commits} commits for 200 appends");

        let mut consumer = EmbeddedConsumer::open(&cfg, wake).unwrap();
        consumer.resume(&[]).await.unwrap();
        let batch = consumer.poll(1000, Duration::from_millis(10)).await.unwrap();
        assert_eq!(batch.len(), 200);
        assert!(batch.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(consumer.depth().await, Some(200));
        consumer.commit(&batch).await.unwrap();
        assert_eq!(consumer.depth().await, Some(0));
    }

    #[tokio::test]
    async fn resume_skips_what_the_store_recorded_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        let wake = Arc::new(Notify::new());
        {
            let producer = EmbeddedProducer::open(&cfg, Metrics::new(), wake.clone()).unwrap();
            for i in 0..10 {
                producer.append(&event(i)).await.unwrap();
            }
        }
        let mut consumer = EmbeddedConsumer::open(&cfg, wake).unwrap();
        consumer.resume(&[Position { partition: 0, offset: 4 }]).await.unwrap();
        let batch = consumer.poll(100, Duration::from_millis(10)).await.unwrap();
        let ids: Vec<_> = batch.iter().map(|d| d.event.as_ref().unwrap().event_id.clone()).collect();
        assert_eq!(ids, (4..10).map(|i| format!("evt_{i}")).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_buffering() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig { max_pending: 1, ..EmbeddedConfig::in_dir(dir.path()) };
        let producer = Arc::new(EmbeddedProducer::open(&cfg, Metrics::new(), Arc::new(Notify::new())).unwrap());
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let p = producer.clone();
                tokio::spawn(async move { p.append(&event(i)).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert!(results.iter().any(|r| matches!(r, Err(QueueError::Full))));
        assert!(results.iter().any(|r| r.is_ok()));
    }
}
