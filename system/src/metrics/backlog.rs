//! How far behind the worker is on the embedded log, sampled on a timer: the age of the oldest
//! event not yet applied and the queue depth. The worker sets the depth after its batches too,
//! but a worker blocked on a store outage applies none, and that is when both matter most.
//!
//! The oldest unapplied event is the record after the store's position: its `received_at_us`
//! is when ingress acknowledged it. The position is read from the store when it answers and
//! kept when it does not (a store that is down cannot have moved it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::queue::log::reader::Reader;
use crate::queue::log::{identity, LogError};
use crate::store::{now_us, Store};

/// How often the gauges are sampled.
const EVERY: Duration = Duration::from_secs(5);
/// A store slower than this to give its position is sampled with the last one it gave.
const POSITION_TIMEOUT: Duration = Duration::from_secs(2);
/// Records skipped per read while the sampler catches up with the position.
const SKIP: usize = 1024;

/// Samples the log in `dir` against `store`'s position every few seconds until `shutdown`.
pub fn spawn(dir: PathBuf, store: Arc<dyn Store>, metrics: Metrics, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        let mut sampler = Some(Sampler::new(&dir));
        let mut position = None;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Some(p) = stored_position(&dir, store.as_ref()).await {
                position = Some(p);
            }
            // None until the store first answers: nothing is known to be applied before that.
            let Some(at) = position else { continue };
            let Some(mut s) = sampler.take() else { continue };
            let Ok((s, sampled)) = tokio::task::spawn_blocking(move || {
                let sampled = s.sample(at, now_us());
                (s, sampled)
            })
            .await
            else {
                sampler = Some(Sampler::new(&dir));
                continue;
            };
            sampler = Some(s);
            match sampled {
                Ok(Sample { depth, oldest_age_us }) => {
                    metrics.queue_depth.set(depth as i64);
                    metrics.oldest_unapplied_seconds.set(oldest_age_us / 1_000_000);
                }
                Err(e) => tracing::debug!(error = %e, "cannot sample the log's backlog; trying again at the next turn"),
            }
        }
    });
}

/// The store's position in the log, or `None` when it does not answer in time.
async fn stored_position(dir: &Path, store: &dyn Store) -> Option<u64> {
    let log = identity::load_or_create(dir).ok()?;
    match tokio::time::timeout(POSITION_TIMEOUT, store.log_position(&log)).await {
        Ok(Ok(p)) => Some(p),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    depth: u64,
    /// Microseconds since the oldest unapplied event was received; 0 when none waits.
    oldest_age_us: i64,
}

/// A reader kept between samples, so that each sample reads only what the worker applied
/// since the last one rather than a segment from its start.
struct Sampler {
    dir: PathBuf,
    reader: Reader,
    /// The last offset the reader handed out (0: none yet).
    after: u64,
    /// The first record after the position last sampled: its offset and when it was received.
    next: Option<(u64, i64)>,
}

#[derive(serde::Deserialize)]
struct Received {
    received_at_us: i64,
}

impl Sampler {
    fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), reader: Reader::open(dir, 0), after: 0, next: None }
    }

    fn sample(&mut self, position: u64, now_us: i64) -> Result<Sample, LogError> {
        let durable = self.reader.durable()?;
        let depth = durable.saturating_sub(position);
        if depth == 0 {
            return Ok(Sample { depth, oldest_age_us: 0 });
        }
        let received = match self.next {
            Some((offset, received)) if offset == position + 1 => received,
            _ => self.received_after(position)?,
        };
        Ok(Sample { depth, oldest_age_us: (now_us - received).max(0) })
    }

    /// When the record after `position` was received, reading on to it. A fresh reader starts
    /// at the position: the log's first segments may be gone.
    fn received_after(&mut self, position: u64) -> Result<i64, LogError> {
        if self.after > position || self.after == 0 {
            self.reader = Reader::open(&self.dir, position);
            self.after = position;
        }
        while self.after < position {
            let Some((offset, _)) = self.read((position - self.after).min(SKIP as u64) as usize)?.pop() else { break };
            self.after = offset;
        }
        let Some((offset, payload)) = self.read(1)?.pop() else { return Ok(now_us()) };
        self.after = offset;
        // A damaged record is dead-lettered by the worker: the age is its reading's, today.
        let received = payload.ok().and_then(|p| serde_json::from_slice::<Received>(&p).ok()).map_or_else(now_us, |r| r.received_at_us);
        self.next = Some((offset, received));
        Ok(received)
    }

    fn read(&mut self, max: usize) -> Result<Vec<crate::queue::log::reader::Entry>, LogError> {
        self.reader.read(max).inspect_err(|_| {
            // Deleted segments, or a log cut by recovery: start over at the next sample.
            self.reader = Reader::open(&self.dir, 0);
            self.after = 0;
            self.next = None;
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Notify;

    use super::*;
    use crate::queue::embedded::{EmbeddedConfig, EmbeddedProducer};
    use crate::queue::{test_event, Producer};

    #[tokio::test]
    async fn the_age_is_the_first_unapplied_records_and_zero_once_caught_up() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = EmbeddedConfig { segment_bytes: 1024, ..EmbeddedConfig::in_dir(dir.path()) };
        let producer = EmbeddedProducer::open(&cfg, 0, Metrics::new(), Arc::new(Notify::new())).expect("log");
        for i in 0..40 {
            producer.append(&crate::domain::PaymentEvent { received_at_us: 1_000 * (i as i64 + 1), ..test_event(i) }).await.expect("append");
        }
        let mut s = Sampler::new(&cfg.dir);
        let now = 100_000;
        assert_eq!(s.sample(0, now).expect("sample"), Sample { depth: 40, oldest_age_us: now - 1_000 });
        assert_eq!(s.sample(0, now).expect("sample"), Sample { depth: 40, oldest_age_us: now - 1_000 }, "read once, kept");
        assert_eq!(s.sample(25, now).expect("sample"), Sample { depth: 15, oldest_age_us: now - 26_000 }, "across segments");
        assert_eq!(s.sample(3, now).expect("sample"), Sample { depth: 37, oldest_age_us: now - 4_000 }, "a position back again");
        assert_eq!(s.sample(40, now).expect("sample"), Sample { depth: 0, oldest_age_us: 0 });
    }
}
