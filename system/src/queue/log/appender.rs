//! The appender thread: group commit with one `write` and one `fdatasync` per group.
//!
//! Requests wait in a channel while a group is written; the next group is everything that
//! piled up meanwhile, so concurrent appends share one fsync, and a group's completions are
//! answered together once it is synced. Under load a group may also wait for company: syncs
//! start at most once per `min_sync_interval`, which bounds the fsyncs a second (each one a
//! trip to the disk and a wake-up of every reader) at the cost of that much added latency;
//! an append after a quiet moment, or from a lone client, is synced at once.
//!
//! The segment is zero-filled ahead of its records, a step at a time (Kafka's and PostgreSQL's
//! preallocation): most groups then overwrite blocks that are allocated already, inside the
//! file's size, so their `fdatasync` writes the data alone and no inode, one synchronous disk
//! write fewer (docs/measurements/2026-12-02-listen-backlog-and-preallocation.md). Zeros never
//! read as a record ([`record`]), and a
//! finished segment is cut back to its records before the next one starts.
//!
//! Failures: a write that fails (a full disk) is undone by cutting the segment back to its
//! last synced length, and the group gets an error (503); later groups may succeed. A failed
//! fsync (of the segment or of the directory a new segment was created in), or a write that
//! cannot be undone, stops the appender for good: pending and later appends fail (503) and
//! readiness fails until the process restarts and recovery verifies the tail. Retrying the
//! fsync could report success for pages the kernel already dropped, or kept readable and
//! clean without writing them; so the appender also cuts the segment back to what it had
//! synced and leaves a marker ([`recovery::UNSYNCED_FILE`]) for recovery to do the same.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};

use super::recovery::Damage;
use super::{record, recovery, segment, LogError, WriterLock};
use crate::disk::{Disk, DiskFile, Open};
use crate::holes::{self, Hole};
use crate::metrics::Metrics;

/// Most appends in one group; bounds one group's latency.
const MAX_GROUP: usize = 2048;
/// A group this large shares its fsync well enough: no waiting for more.
const FULL_ENOUGH: usize = 16;
/// Zeros written ahead of the records at a time: one fsync in this many bytes changes the size.
/// That group's `fdatasync` carries the step's zeros and the new size to the disk while the
/// requests behind it queue, so the step is small enough not to stall that queue and large
/// enough that most groups still write inside the file (the steps compared are in
/// docs/measurements/2026-12-02-preallocation-step.md).
const PREALLOCATE: u64 = 128 * 1024;

/// How often a failed publish of the durable offset is retried while no append comes.
const PUBLISH_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct AppenderConfig {
    pub segment_bytes: u64,
    /// Appends waiting beyond this are refused at once.
    pub max_pending: usize,
    /// Least time between the starts of two syncs; zero syncs each group as soon as the
    /// previous one is done.
    pub min_sync_interval: Duration,
}

struct Request {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<u64, LogError>>,
}

/// The handle appends go through. Dropping it stops the thread once what was pending is
/// written, and waits for that: the log's writer lock is free when the drop returns, so the
/// same process can open the log again at once.
pub struct Appender {
    /// `None` only while dropping.
    tx: Option<mpsc::Sender<Request>>,
    /// Set when the thread stopped after a failed write or fsync.
    failed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the log's appender thread panicked");
            }
        }
    }
}

impl Appender {
    /// Recovers the log's tail, then starts the thread, which wakes `wake` after every synced
    /// group. Offsets start at `at_least` or later: one past the highest stored position.
    pub fn start(lock: WriterLock, at_least: u64, cfg: &AppenderConfig, metrics: Metrics, wake: Arc<Notify>) -> Result<Self, LogError> {
        let dir = lock.dir().to_owned();
        let (writer, damage) = Writer::open(lock, at_least, cfg.segment_bytes)?;
        if !damage.is_empty() {
            let why = format!("log {}: acknowledged records damaged or lost ({damage}); their payments may never apply", dir.display());
            tracing::error!(records = damage.count(), "{why}");
            metrics.degrade(damage.count(), why);
        }
        if let Some((first, last)) = damage.possibly {
            // A write torn by the crash, or acknowledged records damaged at the very end: the
            // bytes cannot tell. Most often nothing was lost, so this is not a degradation.
            tracing::warn!(first, last, log = %dir.display(), "recovery cut bytes at the log's end that may have held acknowledged records: offsets {first}..={last} are never reused; check their payments if the disk was not cut off mid-write");
            metrics.log_possibly_lost_records.inc_by(last - first + 1);
        }
        let min_sync_interval = cfg.min_sync_interval;
        let (tx, rx) = mpsc::channel(cfg.max_pending.max(1));
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("log-appender".into())
            .spawn(move || run(writer, rx, &Notifier { failed: flag, wake, metrics, min_sync_interval }))
            .map_err(LogError::io("start appender for", &dir))?;
        Ok(Self { tx: Some(tx), failed, thread: Some(thread) })
    }

    /// Returns the record's offset once it is synced.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, LogError> {
        let (done, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(LogError::Stopped)?;
        tx.try_send(Request { payload, done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LogError::Full,
            mpsc::error::TrySendError::Closed(_) => self.stopped(),
        })?;
        answer.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    pub fn ready(&self) -> Result<(), LogError> {
        // The flag is set before the failed group is answered: no request sees a ready log after its own failure.
        if self.failed.load(Ordering::Acquire) || self.tx.as_ref().is_none_or(|tx| tx.is_closed()) {
            return Err(self.stopped());
        }
        Ok(())
    }

    fn stopped(&self) -> LogError {
        if self.failed.load(Ordering::Acquire) {
            LogError::Failed("an earlier write or fsync failed".into())
        } else {
            LogError::Stopped
        }
    }
}

/// Tells the others about each group: readers woken, a failure flagged, metrics.
struct Notifier {
    failed: Arc<AtomicBool>,
    wake: Arc<Notify>,
    metrics: Metrics,
    min_sync_interval: Duration,
}

fn run(mut writer: Writer, mut rx: mpsc::Receiver<Request>, out: &Notifier) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut last_start: Option<Instant> = None;
    let mut last_len = 0;
    while let Some(first) = next_request(&mut rx, &mut writer, out) {
        group.push(first);
        take_waiting(&mut rx, &mut group);
        if let Some(wait) = company_wait(last_start, Instant::now(), last_len, group.len(), out.min_sync_interval) {
            std::thread::sleep(wait);
            take_waiting(&mut rx, &mut group);
        }
        let started = Instant::now();
        last_start = Some(started);
        last_len = group.len();
        let outcome = writer.write(group.iter().map(|r| r.payload.as_slice()));
        out.metrics.queue_append_latency.observe(started.elapsed().as_secs_f64());
        out.metrics.queue_append_batch.observe(group.len() as f64);
        match outcome {
            Ok(first) => {
                writer.publish(first + group.len() as u64 - 1);
                for (i, r) in group.drain(..).enumerate() {
                    let _ = r.done.send(Ok(first + i as u64));
                }
                out.wake.notify_one();
            }
            Err(Fault::Unwritten(why)) => {
                tracing::error!(error = %why, events = group.len(), "log write failed and was undone; answering 503");
                for r in group.drain(..) {
                    let _ = r.done.send(Err(LogError::Unwritten(why.clone())));
                }
            }
            Err(Fault::Fatal(why)) => {
                tracing::error!(error = %why, events = group.len(), "log write or fsync failed; the log accepts nothing until restarted");
                out.failed.store(true, Ordering::Release);
                for r in group.drain(..) {
                    let _ = r.done.send(Err(LogError::Failed(why.clone())));
                }
                // Dropping the receiver fails every pending and later append.
                return;
            }
        }
    }
    tracing::debug!("log appender stopped");
}

/// The next append, or `None` once every handle is gone. While a failed publish holds synced
/// records back from readers, it is retried meanwhile: an acknowledged record with no append
/// after it would otherwise wait for the next append, or a restart, to be read.
fn next_request(rx: &mut mpsc::Receiver<Request>, writer: &mut Writer, out: &Notifier) -> Option<Request> {
    while writer.unpublished() {
        match rx.try_recv() {
            Ok(r) => return Some(r),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(PUBLISH_RETRY);
                if writer.publish_again() {
                    out.wake.notify_one();
                }
            }
        }
    }
    rx.blocking_recv()
}

/// Company is worth waiting for only when appends overlap (a lone client that sends one
/// event after another's acknowledgement would wait out every interval alone) and groups are
/// still small: once a group fills during a sync, waiting would only cap a closed-loop
/// client's rate at its connections per interval. Returns how long to wait, if at all; `now`
/// comes from the caller's clock (the simulator's is simulated).
pub fn company_wait(last_start: Option<Instant>, now: Instant, last_len: usize, len: usize, interval: Duration) -> Option<Duration> {
    let overlapping_and_small = (last_len > 1 || len > 1) && last_len < FULL_ENOUGH && len < FULL_ENOUGH;
    let left = interval.checked_sub(now.saturating_duration_since(last_start?)).filter(|d| !d.is_zero())?;
    overlapping_and_small.then_some(left)
}

fn take_waiting(rx: &mut mpsc::Receiver<Request>, group: &mut Vec<Request>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
}

/// Why a group was not written.
#[derive(Debug)]
pub enum Fault {
    /// Nothing of the group is in the file; later groups may succeed.
    Unwritten(String),
    /// The file's durable state is unknown.
    Fatal(String),
}

/// The group-commit state machine over the newest segment, which only it writes: the
/// appender thread feeds it groups; the simulator steps it directly.
pub struct Writer {
    /// Held while the writer lives: no other process appends to this log.
    _lock: WriterLock,
    disk: Arc<dyn Disk>,
    /// The last durable offset, for readers ([`super::reader::DURABLE_FILE`]). Written after each fsync and
    /// never synced itself: whatever value survives a power cut is at most what is on disk.
    durable: Box<dyn DiskFile>,
    dir: PathBuf,
    path: PathBuf,
    file: Box<dyn DiskFile>,
    /// The newest segment's first offset.
    base: u64,
    /// Bytes written and synced.
    len: u64,
    /// The file's size: records, then zeros.
    allocated: u64,
    /// The offset the next record gets.
    next: u64,
    segment_bytes: u64,
    buf: Vec<u8>,
    /// What preallocation writes (a step of zeros), kept between steps.
    zeros: Vec<u8>,
    /// The last synced offset, when writing it to the `durable` file failed.
    unpublished: Option<u64>,
}

impl Writer {
    /// Recovers the log's tail and publishes its end; offsets start at `at_least` or later.
    /// Returns the acknowledged records recovery found damaged or gone, for the caller to report.
    pub fn open(lock: WriterLock, at_least: u64, segment_bytes: u64) -> Result<(Self, Damage), LogError> {
        let disk = lock.disk().clone();
        let dir = lock.dir().to_owned();
        let durable = dir.join(super::reader::DURABLE_FILE);
        // Created before recovery, which syncs the directory and so makes its entry durable.
        let durable = disk.open(&durable, Open::Create).map_err(LogError::io("open", &durable))?;
        let tail = recovery::recover(&*disk, &dir, at_least)?;
        let mut writer = Writer {
            _lock: lock,
            disk,
            durable,
            path: segment::path(&dir, tail.base),
            dir,
            file: tail.file,
            base: tail.base,
            len: tail.len,
            allocated: tail.allocated,
            next: tail.next,
            segment_bytes: segment_bytes.max(1),
            buf: Vec::new(),
            zeros: Vec::new(),
            unpublished: None,
        };
        writer.publish(tail.next - 1);
        Ok((writer, tail.damage))
    }

    /// The offset the next record gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Writes and syncs a group; returns the offset of its first record.
    pub fn write<'a>(&mut self, group: impl ExactSizeIterator<Item = &'a [u8]>) -> Result<u64, Fault> {
        let count = group.len() as u64;
        self.buf.clear();
        for (i, payload) in group.enumerate() {
            record::encode_into(&mut self.buf, self.next + i as u64, payload, i == 0);
        }
        if self.len > record::MAGIC.len() as u64 && self.len + self.buf.len() as u64 > self.segment_bytes {
            self.roll()?;
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            return Err(self.undo(e));
        }
        let end = self.len + self.buf.len() as u64;
        if end > self.allocated {
            self.preallocate(end);
        }
        self.sync()?;
        self.len = end;
        let first = self.next;
        self.next += count;
        Ok(first)
    }

    /// Tells readers that every offset up to `last` is durable. A value that cannot be written
    /// never misleads a reader, but holds the records after the old one back from every reader
    /// until a publish succeeds: [`Writer::unpublished`] says so, [`Writer::publish_again`] retries.
    pub fn publish(&mut self, last: u64) {
        match self.durable.write_all_at(&last.to_le_bytes(), 0) {
            Ok(()) => self.unpublished = None,
            Err(e) => {
                if self.unpublished.is_none() {
                    tracing::warn!(error = %e, last, "cannot publish the durable offset; readers wait for the records after the last one published");
                }
                self.unpublished = Some(last);
            }
        }
    }

    /// Whether readers wait for synced records because their publish failed.
    pub fn unpublished(&self) -> bool {
        self.unpublished.is_some()
    }

    /// Retries a publish that failed; true once readers see every synced record.
    pub fn publish_again(&mut self) -> bool {
        if let Some(last) = self.unpublished {
            self.publish(last);
            if self.unpublished.is_none() {
                tracing::info!(last, "the durable offset is published again");
            }
        }
        self.unpublished.is_none()
    }

    fn sync(&self) -> Result<(), Fault> {
        self.file.sync_data().map_err(|e| {
            let why = format!("fdatasync {}: {e}", self.path.display());
            if holes::open(Hole::KeptUnsyncedPages) {
                return Fault::Fatal(why);
            }
            self.unsynced(why)
        })
    }

    /// After a failed sync the pages written since the last good one may read back although
    /// they never reached the disk: cut them off, and tell recovery where the synced part ends
    /// in case the cut does not hold.
    fn unsynced(&self, why: String) -> Fault {
        if let Err(e) = self.file.set_len(self.len) {
            tracing::error!(error = %e, file = %self.path.display(), "cannot cut the unsynced pages off");
        }
        if let Err(e) = recovery::mark_unsynced(&*self.disk, &self.dir, self.base, self.len) {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot record where the synced part of the log ends");
        }
        Fault::Fatal(why)
    }

    /// Zeros from `from` on, up to a step ahead (not past the segment's size), synced with the
    /// group. Failing (a full disk) only means the next groups grow the file themselves.
    fn preallocate(&mut self, from: u64) {
        let to = (from + PREALLOCATE).min(self.segment_bytes).max(from);
        if self.zeros.is_empty() {
            // Allocated zeroed (calloc: fresh pages, no memset), once.
            self.zeros = vec![0; PREALLOCATE as usize];
        }
        match self.file.write_all_at(&self.zeros[..(to - from) as usize], from) {
            Ok(()) => self.allocated = to,
            Err(e) => {
                tracing::debug!(error = %e, "cannot preallocate the segment; it grows with its records");
                // A short write at a full disk left some zeros: cut them, or let the roll do it,
                // since a finished segment must end at its last record.
                self.allocated = match self.file.set_len(from) {
                    Ok(()) => from,
                    Err(_) => self.segment_bytes.max(from + 1),
                };
            }
        }
    }

    /// Starts the next segment once the current one ends at its last record, durably: a
    /// finished segment's end is where its reader goes on to the next.
    fn roll(&mut self) -> Result<(), Fault> {
        if self.allocated > self.len {
            let cut = format!("cut {} back to its records", self.path.display());
            self.file.set_len(self.len).map_err(|e| Fault::Unwritten(format!("{cut}: {e}")))?;
            self.sync()?;
            self.allocated = self.len;
        }
        self.file = segment::create_file(&*self.disk, &self.dir, self.next).map_err(|e| match e {
            LogError::Failed(why) => Fault::Fatal(why),
            e => Fault::Unwritten(e.to_string()),
        })?;
        self.path = segment::path(&self.dir, self.next);
        self.base = self.next;
        // Its magic is synced with its first group.
        self.len = record::MAGIC.len() as u64;
        // The new name must be durable before records in it are acknowledged; a failed
        // directory sync is a failed sync like any other.
        segment::sync_dir_on(&*self.disk, &self.dir).map_err(|e| Fault::Fatal(e.to_string()))?;
        self.allocated = self.len;
        Ok(())
    }

    /// Cuts a partly written group off, so the file ends at its last synced record again.
    fn undo(&mut self, e: std::io::Error) -> Fault {
        let why = format!("write {}: {e}", self.path.display());
        match self.file.set_len(self.len) {
            Ok(()) => {
                self.allocated = self.len;
                Fault::Unwritten(why)
            }
            Err(cut) => Fault::Fatal(format!("{why}; cutting it back failed too: {cut}")),
        }
    }
}

/// An appender on the log in `dir`, for tests: the lock taken, no stored position.
#[cfg(test)]
pub(crate) fn start_in(dir: &std::path::Path, cfg: &AppenderConfig, metrics: Metrics, wake: Arc<Notify>) -> Result<Appender, LogError> {
    Appender::start(WriterLock::acquire(dir)?, 0, cfg, metrics, wake)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[tokio::test]
    async fn a_second_writer_is_refused_by_the_log_itself() {
        let dir = tempfile::tempdir().expect("dir");
        let first = start_in(dir.path(), &cfg(1 << 20), Metrics::new(), Arc::default()).expect("start");
        assert!(matches!(start_in(dir.path(), &cfg(1 << 20), Metrics::new(), Arc::default()), Err(LogError::Writer(_))));
        first.append(b"one".to_vec()).await.expect("append");
        drop(first);
        // The thread lets go of the lock once it has written what was pending.
        let deadline = Instant::now() + Duration::from_secs(5);
        let second = loop {
            match start_in(dir.path(), &cfg(1 << 20), Metrics::new(), Arc::default()) {
                Ok(a) => break a,
                Err(e) => assert!(Instant::now() < deadline, "still refused after the first writer stopped: {e}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(second.append(b"two".to_vec()).await.expect("append"), 2, "numbering goes on");
    }

    fn cfg(segment_bytes: u64) -> AppenderConfig {
        AppenderConfig { segment_bytes, max_pending: 10_000, min_sync_interval: Duration::ZERO }
    }

    /// The real file system, but writes to the `durable` file fail while `failing` is set.
    #[derive(Debug, Default)]
    struct DurableFails {
        failing: Arc<AtomicBool>,
    }

    struct FailingFile {
        file: Box<dyn DiskFile>,
        failing: Arc<AtomicBool>,
    }

    impl Disk for DurableFails {
        fn open(&self, path: &Path, how: Open) -> std::io::Result<Box<dyn DiskFile>> {
            let file = crate::disk::Os.open(path, how)?;
            if path.file_name() == Some(std::ffi::OsStr::new(super::super::reader::DURABLE_FILE)) {
                return Ok(Box::new(FailingFile { file, failing: self.failing.clone() }));
            }
            Ok(file)
        }
        fn list(&self, dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
            crate::disk::Os.list(dir)
        }
        fn exists(&self, path: &Path) -> bool {
            crate::disk::Os.exists(path)
        }
        fn create_dir(&self, dir: &Path) -> std::io::Result<()> {
            crate::disk::Os.create_dir(dir)
        }
        fn remove_file(&self, path: &Path) -> std::io::Result<()> {
            crate::disk::Os.remove_file(path)
        }
        fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            crate::disk::Os.hard_link(from, to)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            crate::disk::Os.sync_dir(dir)
        }
        fn lock(&self, dir: &Path, name: &str, holder: &'static str) -> Result<Box<dyn std::fmt::Debug + Send + Sync>, crate::datadir::LockError> {
            crate::disk::Os.lock(dir, name, holder)
        }
    }

    impl DiskFile for FailingFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
            self.file.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
            if self.failing.load(Ordering::Acquire) {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            self.file.write_at(buf, offset)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }
        fn sync_all(&self) -> std::io::Result<()> {
            self.file.sync_all()
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
    }

    /// An acknowledged record whose publish failed reaches readers once the durable file can
    /// be written again, with no append after it (the simulator found it waiting for a restart).
    #[tokio::test]
    async fn a_failed_publish_is_retried_without_another_append() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = Arc::new(DurableFails::default());
        let failing = disk.failing.clone();
        let wake = Arc::new(Notify::new());
        let lock = WriterLock::acquire_on(disk, dir.path()).expect("lock");
        let appender = Appender::start(lock, 0, &cfg(1 << 20), Metrics::new(), wake.clone()).expect("start");
        failing.store(true, Ordering::Release);
        assert_eq!(appender.append(b"one".to_vec()).await.expect("acknowledged: the record is synced"), 1);
        assert_eq!(super::super::reader::durable(dir.path()).expect("durable"), 0, "not published while the file fails");
        wake.notified().await; // the group's own wake-up, before its publish was retried
        failing.store(false, Ordering::Release);
        tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("readers woken once it is published");
        assert_eq!(super::super::reader::durable(dir.path()).expect("durable"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_fsyncs_and_get_consecutive_offsets() {
        let dir = tempfile::tempdir().expect("dir");
        let metrics = Metrics::new();
        let appender = Arc::new(start_in(dir.path(), &cfg(1 << 20), metrics.clone(), Arc::default()).expect("start"));
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let a = appender.clone();
                tokio::spawn(async move { a.append(format!("event {i}").into_bytes()).await })
            })
            .collect();
        let mut offsets = Vec::new();
        for t in tasks {
            offsets.push(t.await.expect("task").expect("append"));
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (1..=300).collect::<Vec<u64>>());
        assert_eq!(super::super::reader::durable(dir.path()).expect("durable"), 300);
        let groups = groups(&metrics);
        assert!(groups < 300.0, "{groups} fsyncs for 300 appends");
    }

    fn groups(metrics: &Metrics) -> f64 {
        let line = metrics.render().lines().find(|l| l.starts_with("webhooks_queue_append_batch_size_count")).map(str::to_owned);
        line.and_then(|l| l.split_whitespace().last()?.parse().ok()).expect("group count")
    }

    /// Under overlapping appends a sync waits until the interval since the previous one has
    /// passed. Each burst sends four appends at once; a sync may skip the wait only when its
    /// group and the one before held a single event, which the appender's race with a burst
    /// allows at most every other group: over a run of `elapsed`, at most
    /// `2 * (elapsed / interval + 1)` groups (a bound from the clock, not a speed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_load_a_sync_waits_for_company_until_the_interval_has_passed() {
        let dir = tempfile::tempdir().expect("dir");
        let metrics = Metrics::new();
        let interval = std::time::Duration::from_millis(20);
        let cfg = AppenderConfig { min_sync_interval: interval, ..cfg(1 << 20) };
        let appender = Arc::new(start_in(dir.path(), &cfg, metrics.clone(), Arc::default()).expect("start"));
        let started = Instant::now();
        let mut bursts = Vec::new();
        for b in 0..50 {
            let a = appender.clone();
            bursts.push(tokio::spawn(async move {
                let appends = (0..4).map(|i| a.append(format!("event {b}.{i}").into_bytes()));
                futures_util::future::join_all(appends).await.into_iter().collect::<Result<Vec<_>, _>>()
            }));
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        for b in bursts {
            b.await.expect("task").expect("appends");
        }
        let bound = 2.0 * (started.elapsed().as_secs_f64() / interval.as_secs_f64() + 1.0);
        let groups = groups(&metrics);
        assert!(groups <= bound, "{groups} groups in {:?}: syncs did not wait for company", started.elapsed());
        assert_eq!(super::super::reader::durable(dir.path()).expect("durable"), 200);
    }

    #[test]
    fn company_is_awaited_only_for_small_overlapping_groups_within_the_interval() {
        let interval = std::time::Duration::from_secs(60);
        let now = Instant::now();
        let just_now = Some(now);
        assert!(company_wait(None, now, 0, 5, interval).is_none(), "the first sync never waits");
        assert!(company_wait(just_now, now, 1, 1, interval).is_none(), "a lone client");
        assert!(company_wait(just_now, now, 1, 2, interval).is_some_and(|w| w <= interval), "appends overlap now");
        assert!(company_wait(just_now, now, 4, 1, interval).is_some_and(|w| w <= interval), "appends overlapped before");
        assert!(company_wait(just_now, now, FULL_ENOUGH, 3, interval).is_none(), "the last group filled by itself");
        assert!(company_wait(just_now, now, 3, FULL_ENOUGH, interval).is_none(), "this group is full enough");
        assert!(company_wait(just_now, now, 4, 4, std::time::Duration::ZERO).is_none(), "no interval set");
    }

    /// A client that sends the next event only after the previous one's acknowledgement has
    /// no company to wait for: with an interval of a minute, ten appends would take ten minutes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_client_never_waits_for_company() {
        let dir = tempfile::tempdir().expect("dir");
        let interval = std::time::Duration::from_secs(60);
        let cfg = AppenderConfig { min_sync_interval: interval, ..cfg(1 << 20) };
        let appender = start_in(dir.path(), &cfg, Metrics::new(), Arc::default()).expect("start");
        let started = Instant::now();
        for i in 0..10 {
            appender.append(format!("event {i}").into_bytes()).await.expect("append");
        }
        assert!(started.elapsed() < interval, "a lone client waited out an interval");
    }

    /// An appender whose segment is `/dev/full`: every write fails with ENOSPC, and the
    /// partial write cannot be cut back (a device has no length), so the log must stop.
    fn appender_on_a_full_device(dir: &Path) -> Appender {
        let file = Box::new(std::fs::OpenOptions::new().append(true).open("/dev/full").expect("/dev/full"));
        let durable = Box::new(std::fs::File::create(dir.join(super::super::reader::DURABLE_FILE)).expect("durable"));
        let lock = WriterLock::acquire(dir).expect("lock");
        let disk = lock.disk().clone();
        let writer = Writer { _lock: lock, disk, durable, dir: dir.to_owned(), path: "/dev/full".into(), file, base: 1, len: 0, allocated: 0, next: 1, segment_bytes: 1 << 20, buf: Vec::new(), zeros: Vec::new(), unpublished: None };
        let (tx, rx) = mpsc::channel(16);
        let failed = Arc::new(AtomicBool::new(false));
        let notifier = Notifier { failed: failed.clone(), wake: Arc::default(), metrics: Metrics::new(), min_sync_interval: Duration::ZERO };
        let thread = std::thread::spawn(move || run(writer, rx, &notifier));
        Appender { tx: Some(tx), failed, thread: Some(thread) }
    }

    #[tokio::test]
    async fn a_full_disk_is_an_error_and_a_write_that_cannot_be_undone_stops_the_log() {
        let dir = tempfile::tempdir().expect("dir");
        let appender = appender_on_a_full_device(dir.path());
        assert!(matches!(appender.append(b"event".to_vec()).await, Err(LogError::Failed(_))));
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while appender.ready().is_ok() {
            assert!(Instant::now() < deadline, "the log still says it is ready");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(matches!(appender.append(b"later".to_vec()).await, Err(LogError::Failed(_))), "nothing accepted until restarted");
    }

    /// The newest segment runs ahead of its records in zeros; a finished one ends at its last
    /// record; a restart keeps the zeros and writes over them.
    #[tokio::test]
    async fn the_newest_segment_is_preallocated_and_a_finished_one_is_cut_to_its_records() {
        let dir = tempfile::tempdir().expect("dir");
        let size = |base| std::fs::metadata(segment::path(dir.path(), base)).expect("stat").len();
        {
            let appender = start_in(dir.path(), &cfg(4 * PREALLOCATE), Metrics::new(), Arc::default()).expect("start");
            appender.append(vec![b'x'; 100]).await.expect("append");
            assert_eq!(size(1), PREALLOCATE + 120, "one step of zeros after the magic and the first record");
            appender.append(vec![b'y'; 4 * PREALLOCATE as usize - 200]).await.expect("append");
            appender.append(vec![b'z'; 100]).await.expect("append");
        }
        let bases = segment::list(dir.path()).expect("list");
        assert_eq!(bases, [1, 3]);
        assert_eq!(size(1), 120 + 16 + 4 * PREALLOCATE - 200, "cut back to its two records");
        assert_eq!(size(3), PREALLOCATE + 120);
        let appender = start_in(dir.path(), &cfg(4 * PREALLOCATE), Metrics::new(), Arc::default()).expect("restart");
        assert_eq!(appender.append(b"more".to_vec()).await.expect("append"), 4);
        assert_eq!(size(3), PREALLOCATE + 120, "written over the zeros");
        let mut reader = super::super::reader::Reader::open(dir.path(), 0);
        let read: Vec<u64> = reader.read(10).expect("read").into_iter().map(|(offset, _)| offset).collect();
        assert_eq!(read, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn segments_roll_at_the_size_limit_and_a_restart_continues_the_numbering() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let appender = start_in(dir.path(), &cfg(130), Metrics::new(), Arc::default()).expect("start");
            for _ in 0..10 {
                appender.append(vec![b'x'; 40]).await.expect("append");
            }
        }
        let bases = segment::list(dir.path()).expect("list");
        assert_eq!(bases, (1..=10).step_by(2).collect::<Vec<u64>>(), "the magic and two 56-byte records per 130-byte segment");
        let appender = start_in(dir.path(), &cfg(130), Metrics::new(), Arc::default()).expect("restart");
        assert_eq!(appender.append(b"more".to_vec()).await.expect("append"), 11);
    }
}
