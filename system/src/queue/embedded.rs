//! The embedded queue: the segment log ([`super::log`]) in the data directory.
//!
//! The server appends (group commit, one fsync per group); the worker reads behind it, in
//! the same process (woken after each group) or in another one on the same data directory
//! (polling the log's `durable` file). Segments are deleted once the consumer's committed
//! position is past them and the store has made that position durable: the worker asks for
//! [`Consumer::release`] after a store checkpoint. A consumer that keeps its own position
//! (the spool's, whose events are on the broker once committed) deletes at commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::cap::{Cap, Limit};
use super::log::appender::{Appender, AppenderConfig};
use super::log::reader::{Damaged, Reader};
use super::log::{identity, segment, LogError, WriterLock, DEFAULT_SEGMENT_BYTES};
use super::{legacy, Consumer, Delivery, Position, Producer, QueueError};
use crate::disk::{Disk, DiskFile, Open, Os};
use crate::domain::PaymentEvent;
use crate::metrics::Metrics;

/// Longest pause between polls of a log written by another process.
const MAX_NAP: Duration = Duration::from_millis(20);
/// Where a consumer without a store ([`EmbeddedConfig::own_position`]) keeps its position.
const POSITION_FILE: &str = "consumed";

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// The log's directory.
    pub dir: PathBuf,
    /// The SQLite queue file of earlier versions, drained into the log at start-up.
    pub legacy: PathBuf,
    /// Appends waiting for the appender beyond this are refused at once (503).
    pub max_pending: usize,
    /// An append not durable within this time is answered 503.
    pub append_timeout: Duration,
    pub segment_bytes: u64,
    /// Least time between two syncs of the log (group commit waiting for company under load).
    pub min_sync_interval: Duration,
    /// The consumer keeps its committed position in the log's directory: for the spool,
    /// which has no store to keep it in.
    pub own_position: bool,
    /// What the log is written on: the real file system, or the simulator's disk.
    pub disk: Arc<dyn Disk>,
    /// Past this size appends are refused (503), never dropped.
    pub cap: Limit,
}

impl EmbeddedConfig {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.join("log"),
            legacy: dir.join("queue.db"),
            max_pending: 50_000,
            append_timeout: Duration::from_secs(5),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            min_sync_interval: Duration::ZERO,
            own_position: false,
            disk: Arc::new(Os),
            cap: Limit { bytes: None, flag: "--max-log-bytes" },
        }
    }
}

fn storage(e: LogError) -> QueueError {
    match e {
        LogError::Full => QueueError::Full,
        LogError::Writer(held) => QueueError::Busy(held.to_string()),
        LogError::Stopped | LogError::Failed(_) => QueueError::Unavailable(e.to_string()),
        e => QueueError::Storage(e.to_string()),
    }
}

/// The server's handle: appends go to the log's appender thread.
pub struct EmbeddedProducer {
    appender: Appender,
    append_timeout: Duration,
    cap: Cap,
}

impl EmbeddedProducer {
    /// Takes the log's writer lock, drains an old SQLite queue if there is one, recovers the
    /// log and starts its appender, which wakes `wake` after every group and stops once this
    /// handle is dropped. `stored`: the highest position a consumer of this log has stored
    /// ([`log_position`]); no offset at or below it is given out again.
    pub fn open(cfg: &EmbeddedConfig, stored: u64, metrics: Metrics, wake: Arc<Notify>) -> Result<Self, QueueError> {
        let lock = WriterLock::acquire_on(cfg.disk.clone(), &cfg.dir).map_err(storage)?;
        identity::load_or_create_on(&*cfg.disk, &cfg.dir).map_err(storage)?;
        legacy::drain(&cfg.legacy, &cfg.dir)?;
        let appender_cfg = AppenderConfig { segment_bytes: cfg.segment_bytes, max_pending: cfg.max_pending, min_sync_interval: cfg.min_sync_interval };
        let cap = Cap::open(&cfg.dir, cfg.disk.clone(), cfg.cap, metrics.clone())?;
        let appender = Appender::start(lock, stored + 1, &appender_cfg, metrics, wake).map_err(storage)?;
        Ok(Self { appender, append_timeout: cfg.append_timeout, cap })
    }
}

#[async_trait]
impl Producer for EmbeddedProducer {
    async fn append(&self, event: &PaymentEvent) -> Result<(), QueueError> {
        let payload = serde_json::to_vec(event).map_err(|e| QueueError::Storage(e.to_string()))?;
        let bytes = payload.len();
        self.cap.admit(bytes)?;
        match tokio::time::timeout(self.append_timeout, self.appender.append(payload)).await {
            Ok(result) => result.map(|_| self.cap.appended(bytes)).map_err(storage),
            // The append may still become durable; the provider's retry is deduplicated downstream.
            Err(_) => Err(QueueError::Timeout),
        }
    }

    async fn ready(&self) -> Result<(), QueueError> {
        self.appender.ready().map_err(storage)?;
        self.cap.check()
    }
}

/// The worker's handle: reads the log in order from the position the store recorded.
pub struct EmbeddedConsumer {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    id: String,
    reader: Reader,
    position: u64,
    /// Segments before this one are deleted already.
    deleted_before: u64,
    /// The position file, for a consumer that keeps its own.
    own: Option<Box<dyn DiskFile>>,
    /// Set by an appender in the same process; across processes the consumer polls.
    wake: Arc<Notify>,
}

impl EmbeddedConsumer {
    pub fn open(cfg: &EmbeddedConfig, wake: Arc<Notify>) -> Result<Self, QueueError> {
        let disk = cfg.disk.clone();
        let id = identity::load_or_create_on(&*disk, &cfg.dir).map_err(storage)?;
        let own = cfg.own_position.then(|| open_position_file(&*disk, &cfg.dir)).transpose()?;
        let reader = Reader::open_on(disk.clone(), &cfg.dir, 0);
        let mut consumer = Self { disk, dir: cfg.dir.clone(), id, reader, position: 0, deleted_before: 0, own, wake };
        if let Some(file) = &consumer.own {
            let stored = read_position(&**file);
            // The file is not synced and may come back older than the deletions it allowed;
            // whatever was deleted had been consumed.
            let first = segment::list_on(&*consumer.disk, &cfg.dir).map_err(storage)?.first().copied().unwrap_or(1);
            consumer.seek(stored.max(first - 1));
        }
        Ok(consumer)
    }

    /// The last offset read and let go, or where reading starts.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The last offset read or passed over, up to the durable end: past the position by the
    /// offsets of a gap recovery numbered past, which hold no record to deliver.
    pub fn read_through(&mut self) -> Result<u64, QueueError> {
        Ok(self.reader.passed().min(self.reader.durable().map_err(storage)?))
    }

    /// Events durable after the current position.
    pub async fn backlog(&mut self) -> Result<u64, QueueError> {
        Ok(self.reader.durable().map_err(storage)?.saturating_sub(self.position))
    }

    fn seek(&mut self, position: u64) {
        self.position = position;
        self.reader = Reader::open_on(self.disk.clone(), &self.dir, position);
    }

    /// Deletes the segments wholly behind the committed position, when the reader has moved on.
    /// Off the runtime's threads: unlinking a 64 MiB segment took 18-21 ms on this project's
    /// ext4 disk, and every request queued on that thread would have waited it out.
    async fn delete_consumed(&mut self) -> Result<(), QueueError> {
        let Some(base) = self.reader.segment_base() else { return Ok(()) };
        if base > self.deleted_before && self.position >= base - 1 {
            let (disk, dir, through) = (self.disk.clone(), self.dir.clone(), self.position);
            tokio::task::spawn_blocking(move || segment::delete_through(&*disk, &dir, through))
                .await
                .map_err(|e| QueueError::Storage(format!("deleting consumed segments: {e}")))?
                .map_err(storage)?;
            self.deleted_before = base;
        }
        Ok(())
    }
}

fn delivery(offset: u64, payload: Result<Vec<u8>, Damaged>, dir: &Path) -> Delivery {
    let position = Position { partition: 0, offset: offset as i64 };
    match payload {
        Ok(payload) => Delivery::decode(position, payload),
        Err(Damaged { why, raw }) => {
            tracing::error!(offset, log = %dir.display(), %why, "an acknowledged record is damaged; dead-lettering what is left of it");
            Delivery { position, event: Err(format!("damaged record in the log: {why}")), raw, headers: Vec::new() }
        }
    }
}

/// The position a consumer that keeps its own ([`EmbeddedConfig::own_position`]) last wrote;
/// 0 when there is none.
pub fn own_position(disk: &dyn Disk, dir: &Path) -> u64 {
    disk.open(&dir.join(POSITION_FILE), Open::Read).map_or(0, |f| read_position(&*f))
}

fn read_position(file: &dyn DiskFile) -> u64 {
    let mut bytes = [0u8; 8];
    match file.read_at(&mut bytes, 0) {
        Ok(8) => u64::from_le_bytes(bytes),
        _ => 0,
    }
}

fn open_position_file(disk: &dyn Disk, dir: &Path) -> Result<Box<dyn DiskFile>, QueueError> {
    let path = dir.join(POSITION_FILE);
    disk.open(&path, Open::ReadWrite).map_err(|e| storage(LogError::io("open", &path)(e)))
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    fn log_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    async fn resume(&mut self, stored: &[Position]) -> Result<(), QueueError> {
        if self.own.is_some() {
            return Ok(());
        }
        let position = match stored.iter().filter(|p| p.partition == 0).map(|p| p.offset).max() {
            Some(p) => p.max(0) as u64,
            // From the log's beginning, which need not be offset 1: a log drained from the
            // old SQLite queue starts where that queue had got to.
            None => segment::list_on(&*self.disk, &self.dir).map_err(storage)?.first().map_or(0, |&base| base - 1),
        };
        let durable = self.reader.durable().map_err(storage)?;
        if position > durable {
            // The server numbers new records past the stored position, so none is skipped;
            // what lay between the log's end and the position is reported by its recovery,
            // the one judge: after a crash the published end lags until the server restarts
            // (the `durable` file is never synced), so a worker of its own often sees this.
            tracing::warn!(position, log_end = durable, dir = %self.dir.display(), "the stored position is beyond the log's published end: the server's recovery has not run yet after a crash, or the log lost acknowledged records (its recovery then reports them)");
        }
        self.seek(position);
        Ok(())
    }

    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        // An appender in this process wakes us at once; a separate server process cannot,
        // so we poll, backing off while the log stays empty.
        let mut nap = Duration::from_millis(1);
        loop {
            let records = self.reader.read(max).map_err(storage)?;
            let now = tokio::time::Instant::now();
            if !records.is_empty() || now >= deadline {
                return Ok(records.into_iter().map(|(offset, payload)| delivery(offset, payload, &self.dir)).collect());
            }
            let _ = tokio::time::timeout(nap.min(deadline - now), self.wake.notified()).await;
            nap = (nap * 2).min(MAX_NAP);
        }
    }

    async fn commit(&mut self, batch: &[Delivery]) -> Result<(), QueueError> {
        if let Some(last) = batch.iter().map(|d| d.position.offset.max(0) as u64).max() {
            self.position = self.position.max(last);
        }
        let Some(f) = &self.own else { return Ok(()) };
        let path = self.dir.join(POSITION_FILE);
        f.write_all_at(&self.position.to_le_bytes(), 0).map_err(|e| storage(LogError::io("write", &path)(e)))?;
        self.delete_consumed().await
    }

    fn wants_release(&self) -> bool {
        self.own.is_none() && self.reader.segment_base().is_some_and(|base| base > self.deleted_before && self.position >= base - 1)
    }

    async fn release(&mut self) -> Result<(), QueueError> {
        self.delete_consumed().await
    }

    async fn depth(&mut self) -> Option<u64> {
        self.backlog().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::test_event as event;

    #[tokio::test]
    async fn concurrent_appends_read_back_in_order_and_commit_empties_the_depth() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        let wake = Arc::new(Notify::new());
        let producer = Arc::new(EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake.clone()).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let p = producer.clone();
                tokio::spawn(async move { p.append(&event(i)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut consumer = EmbeddedConsumer::open(&cfg, wake).unwrap();
        consumer.resume(&[]).await.unwrap();
        let batch = consumer.poll(1000, Duration::from_millis(10)).await.unwrap();
        assert_eq!(batch.len(), 200);
        assert!(batch.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(consumer.depth().await, Some(200));
        consumer.commit(&batch).await.unwrap();
        assert_eq!(consumer.depth().await, Some(0));
        assert_eq!(consumer.log_id().map(|id| id.len()), Some(32));
    }

    #[tokio::test]
    async fn resume_skips_what_the_store_recorded_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        let wake = Arc::new(Notify::new());
        {
            let producer = EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake.clone()).unwrap();
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
        let producer = Arc::new(EmbeddedProducer::open(&cfg, 0, Metrics::new(), Arc::new(Notify::new())).unwrap());
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

    #[tokio::test]
    async fn released_segments_are_deleted_and_a_resumed_consumer_reads_on() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig { segment_bytes: 1024, ..EmbeddedConfig::in_dir(dir.path()) };
        let wake = Arc::new(Notify::new());
        let producer = EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake.clone()).unwrap();
        for i in 0..100 {
            producer.append(&event(i)).await.unwrap();
        }
        let segments = segment::list(&cfg.dir).unwrap().len();
        assert!(segments > 5, "{segments} segments");
        let mut consumer = EmbeddedConsumer::open(&cfg, wake.clone()).unwrap();
        consumer.resume(&[]).await.unwrap();
        let batch = consumer.poll(60, Duration::from_millis(10)).await.unwrap();
        consumer.commit(&batch).await.unwrap();
        assert_eq!(segment::list(&cfg.dir).unwrap().len(), segments, "nothing goes before the store is durable");
        assert!(consumer.wants_release());
        consumer.release().await.unwrap();
        assert!(!consumer.wants_release());
        let left = segment::list(&cfg.dir).unwrap();
        assert!(left.len() < segments && left[0] <= 61, "only segments wholly behind offset 60 go: {left:?}");

        let mut resumed = EmbeddedConsumer::open(&cfg, wake).unwrap();
        resumed.resume(&[Position { partition: 0, offset: 60 }]).await.unwrap();
        let rest = resumed.poll(100, Duration::from_millis(10)).await.unwrap();
        assert_eq!(rest.first().map(|d| d.position.offset), Some(61));
        assert_eq!(rest.len(), 40);
    }

    /// Writes a SQLite queue the way earlier versions did: AUTOINCREMENT, consumed rows deleted.
    fn old_queue(path: &Path, appended: usize, consumed: usize) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL);")
            .unwrap();
        for i in 0..appended {
            conn.execute("INSERT INTO log (payload) VALUES (?1)", [serde_json::to_vec(&event(i)).unwrap()]).unwrap();
        }
        conn.execute("DELETE FROM log WHERE seq <= ?1", [consumed as i64]).unwrap();
    }

    #[tokio::test]
    async fn an_old_sqlite_queue_is_drained_under_the_same_offsets_and_retired() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        old_queue(&cfg.legacy, 30, 20);
        let wake = Arc::new(Notify::new());
        let producer = EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake.clone()).unwrap();
        assert!(!cfg.legacy.exists(), "the old file is retired");
        assert!(dir.path().join("queue.db.retired").exists(), "and kept for inspection");
        producer.append(&event(30)).await.unwrap();

        // The store recorded offset 20 against the old log: the next event is the 21st.
        let mut consumer = EmbeddedConsumer::open(&cfg, wake.clone()).unwrap();
        consumer.resume(&[Position { partition: 0, offset: 20 }]).await.unwrap();
        let batch = consumer.poll(100, Duration::from_millis(10)).await.unwrap();
        let got: Vec<_> = batch.iter().map(|d| (d.position.offset, d.event.as_ref().unwrap().event_id.clone())).collect();
        let want: Vec<_> = (20..31).map(|i| (i as i64 + 1, format!("evt_{i}"))).collect();
        assert_eq!(got, want);

        drop(producer);
        let again = EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake).unwrap();
        again.append(&event(31)).await.unwrap();
        assert_eq!(consumer.depth().await, Some(12), "a restart drains nothing twice");
    }

    /// Positions stored without a log identity are not trusted, so the worker reads an
    /// upgraded log from its beginning: the drained segment's first offset, not 1, where the
    /// reader once answered "out of range" forever.
    #[tokio::test]
    async fn with_no_stored_position_a_drained_log_is_read_from_its_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        old_queue(&cfg.legacy, 30, 20);
        let wake = Arc::new(Notify::new());
        let _producer = EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake.clone()).unwrap();
        let mut consumer = EmbeddedConsumer::open(&cfg, wake).unwrap();
        consumer.resume(&[]).await.unwrap();
        let batch = consumer.poll(100, Duration::from_millis(10)).await.unwrap();
        assert_eq!(batch.iter().map(|d| d.position.offset).collect::<Vec<_>>(), (21..=30).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_empty_old_queue_continues_its_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EmbeddedConfig::in_dir(dir.path());
        old_queue(&cfg.legacy, 7, 7);
        let wake = Arc::new(Notify::new());
        let producer = EmbeddedProducer::open(&cfg, 0, Metrics::new(), wake.clone()).unwrap();
        producer.append(&event(7)).await.unwrap();
        let mut consumer = EmbeddedConsumer::open(&cfg, wake).unwrap();
        consumer.resume(&[Position { partition: 0, offset: 7 }]).await.unwrap();
        let batch = consumer.poll(100, Duration::from_millis(10)).await.unwrap();
        assert_eq!(batch.iter().map(|d| d.position.offset).collect::<Vec<_>>(), [8]);
    }
}
