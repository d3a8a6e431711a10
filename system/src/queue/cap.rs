//! A byte cap on a segment log (the embedded queue's, the Kafka-mode spool's). Past it, appends
//! are refused with 503 and `Retry-After`: the provider keeps the event and retries it, instead
//! of a long store or broker outage filling the disk the store needs to catch up. Nothing
//! acknowledged is ever dropped; the refusals stop once the consumer's segments are deleted.
//!
//! The size is what the log's segment files take (the newest one's preallocated zeros
//! included, since they hold disk), counted from the directory and raised by each append in
//! between. The segments that free space are deleted by the worker, possibly in another process
//! (a split server and worker), which no hook here sees; so while the estimate says the cap is
//! reached, the segments are counted again, at most once per [`RECOUNT_EVERY`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::log::segment;
use super::QueueError;
use crate::disk::{Disk, Open};
use crate::metrics::Metrics;

/// Least time between two counts of the segments while the cap is reached.
const RECOUNT_EVERY: Duration = Duration::from_millis(500);
/// Least time between two warnings about refused appends.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Bytes a record takes beyond its payload, about: the next count corrects the estimate.
const FRAME_BYTES: u64 = 16;

/// How large a log may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// `None`: half of the filesystem the log is on, leaving the rest to the store.
    pub bytes: Option<u64>,
    /// The flag that sets it, named in refusals and warnings.
    pub flag: &'static str,
}

/// The cap of one log, shared by its appends.
pub struct Cap {
    max: u64,
    flag: &'static str,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    /// Bytes of the segments as last counted, plus what was appended since.
    used: AtomicU64,
    /// The size of the last append refused, 0 once one fits again: readiness asks whether
    /// such an append would fit now.
    refused_bytes: AtomicU64,
    state: Mutex<State>,
    metrics: Metrics,
}

struct State {
    counted: Instant,
    warned: Option<Instant>,
    /// Appends refused since the last warning.
    refused: u64,
}

impl Cap {
    /// The cap of the log in `dir` (which exists), with its segments counted now.
    pub fn open(dir: &Path, disk: Arc<dyn Disk>, limit: Limit, metrics: Metrics) -> Result<Self, QueueError> {
        let max = limit.bytes.unwrap_or_else(|| half_the_filesystem(dir));
        let used = count(&*disk, dir)?;
        metrics.log_cap_bytes.set(max.min(i64::MAX as u64) as i64);
        if used >= max {
            tracing::warn!(log = %dir.display(), used, max, flag = limit.flag, "the log starts at its byte cap: webhooks get 503 until the consumer catches up");
        }
        let state = Mutex::new(State { counted: Instant::now(), warned: None, refused: 0 });
        Ok(Self { max, flag: limit.flag, dir: dir.to_owned(), disk, used: AtomicU64::new(used), refused_bytes: AtomicU64::new(0), state, metrics })
    }

    /// Lets an append of `payload` bytes through, or refuses it (counted, warned about now and then).
    pub fn admit(&self, payload: usize) -> Result<(), QueueError> {
        let bytes = payload as u64 + FRAME_BYTES;
        if self.fits(bytes) {
            self.refused_bytes.store(0, Ordering::Relaxed);
            return Ok(());
        }
        self.refused_bytes.store(bytes, Ordering::Relaxed);
        self.metrics.log_cap_refused.inc();
        self.warn_now_and_then();
        Err(self.full())
    }

    /// Notes an append of `payload` bytes made durable.
    pub fn appended(&self, payload: usize) {
        self.used.fetch_add(payload as u64 + FRAME_BYTES, Ordering::Relaxed);
    }

    /// Whether appends get through: for readiness, so neither counted nor warned about.
    pub fn check(&self) -> Result<(), QueueError> {
        if self.fits(self.refused_bytes.load(Ordering::Relaxed).max(1)) {
            Ok(())
        } else {
            Err(self.full())
        }
    }

    fn fits(&self, bytes: u64) -> bool {
        if self.used.load(Ordering::Relaxed) + bytes <= self.max {
            return true;
        }
        self.recount_if_due();
        self.used.load(Ordering::Relaxed) + bytes <= self.max
    }

    /// Counts the segments again unless that was done lately or is being done. Appends made
    /// while counting may be missed until the next count: the cap is exact to about what is
    /// in flight.
    fn recount_if_due(&self) {
        let Ok(mut state) = self.state.try_lock() else { return };
        if state.counted.elapsed() < RECOUNT_EVERY {
            return;
        }
        state.counted = Instant::now();
        match count(&*self.disk, &self.dir) {
            Ok(used) => self.used.store(used, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "cannot count the log's segments; keeping the last count"),
        }
    }

    fn warn_now_and_then(&self) {
        let Ok(mut state) = self.state.lock() else { return };
        state.refused += 1;
        if state.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            log = %self.dir.display(),
            refused = state.refused,
            used = self.used.load(Ordering::Relaxed),
            max = self.max,
            flag = self.flag,
            "the log is at its byte cap: webhooks get 503 + Retry-After (the provider retries them) until the consumer catches up and its segments are deleted"
        );
        state.warned = Some(Instant::now());
        state.refused = 0;
    }

    fn full(&self) -> QueueError {
        QueueError::Unavailable(format!(
            "the log in {} is at its byte cap ({} = {} bytes); retry once the consumer has caught up",
            self.dir.display(),
            self.flag,
            self.max
        ))
    }
}

/// Bytes the segment files in `dir` take.
fn count(disk: &dyn Disk, dir: &Path) -> Result<u64, QueueError> {
    let mut total = 0;
    for base in segment::list_on(disk, dir).map_err(|e| QueueError::Storage(e.to_string()))? {
        let path = segment::path(dir, base);
        match disk.open(&path, Open::Read).and_then(|f| f.len()) {
            Ok(len) => total += len,
            // Deleted by the consumer since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(QueueError::Storage(format!("size of {}: {e}", path.display()))),
        }
    }
    Ok(total)
}

/// The default cap: half of the filesystem holding `dir`, so that a log grown through an
/// outage leaves the store room to apply it. No cap when the filesystem cannot be asked.
fn half_the_filesystem(dir: &Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_blocks.saturating_mul(s.f_frsize) / 2,
        Err(e) => {
            tracing::warn!(log = %dir.display(), error = %e, "cannot read the filesystem's size; the log has no byte cap");
            u64::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Os;

    fn cap_of(dir: &Path, bytes: u64, metrics: &Metrics) -> Cap {
        Cap::open(dir, Arc::new(Os), Limit { bytes: Some(bytes), flag: "--max-log-bytes" }, metrics.clone()).expect("cap")
    }

    #[test]
    fn appends_past_the_cap_are_refused_and_counted_until_segments_go() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(segment::path(dir.path(), 1), [0u8; 600]).expect("segment");
        let metrics = Metrics::new();
        let cap = cap_of(dir.path(), 1000, &metrics);
        cap.admit(300).expect("600 + 316 fits in 1000");
        cap.appended(300);
        let refused = cap.admit(300).expect_err("916 + 316 does not");
        assert!(refused.to_string().contains("--max-log-bytes = 1000"), "{refused}");
        assert!(cap.check().is_err(), "not ready while such an append is refused");
        assert_eq!(metrics.log_cap_refused.get(), 1);

        std::fs::write(segment::path(dir.path(), 2), [0u8; 100]).expect("the next segment");
        std::fs::remove_file(segment::path(dir.path(), 1)).expect("the consumer deletes the first");
        cap.state.lock().expect("state").counted = Instant::now().checked_sub(RECOUNT_EVERY).expect("uptime");
        assert!(cap.check().is_ok(), "counted again: 100 + 316 fits");
        cap.admit(300).expect("and is let through");
    }

    #[test]
    fn a_log_at_its_cap_is_not_ready_and_a_probe_is_not_a_refusal() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(segment::path(dir.path(), 1), [0u8; 1000]).expect("segment");
        let metrics = Metrics::new();
        let cap = cap_of(dir.path(), 1000, &metrics);
        assert!(cap.check().is_err());
        assert_eq!(metrics.log_cap_refused.get(), 0);
    }

    #[test]
    fn by_default_a_log_may_take_half_of_its_filesystem() {
        let dir = tempfile::tempdir().expect("dir");
        let s = rustix::fs::statvfs(dir.path()).expect("statvfs");
        assert_eq!(half_the_filesystem(dir.path()), s.f_blocks * s.f_frsize / 2);
    }
}
