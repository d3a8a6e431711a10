//! What keeps a year of traffic from filling the disk, and the gauges that show it coming:
//! a purge of old applied events and replayed dead letters, run by the worker on a timer, and
//! the disk and log sizes, refreshed on a timer by every process (not only after a batch,
//! which stops when the store does, exactly when they matter), with an alarm when the disk
//! is nearly full. (The logs' byte caps are `queue::cap`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{now_us, Store};

/// Stripe retries a webhook for three days: an event id must deduplicate at least that long.
pub const PROVIDER_RETRY_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
/// How often the purge runs.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often the disk and log gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(15);
/// The alarm raised while the data directory's filesystem is nearly full.
pub const DISK_NEAR_FULL: &str = "disk_near_full";
/// Below this share of the filesystem free the alarm is raised (the WebhooksDiskLow alert's line)...
const NEAR_FULL_FREE: f64 = 0.10;
/// ...and it clears once this much is free again, so that a disk hovering at the line does not flap.
const CLEAR_FREE: f64 = 0.12;

/// How long the store keeps what the worker is done with; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    pub applied_events: Option<Duration>,
    pub replayed_dead_letters: Option<Duration>,
}

impl Retention {
    /// Days as configured (0: forever); applied events are kept at least the provider's retry
    /// window whatever is asked, since their ids are what makes a redelivery a duplicate.
    pub fn from_days(applied_events: u64, replayed_dead_letters: u64) -> Self {
        let days = |d: u64| (d > 0).then(|| Duration::from_secs(d * 24 * 3600));
        let applied = days(applied_events).map(|d| {
            if d < PROVIDER_RETRY_WINDOW {
                tracing::warn!(days = applied_events, "applied events are kept at least 3 days, the provider's retry window");
            }
            d.max(PROVIDER_RETRY_WINDOW)
        });
        Self { applied_events: applied, replayed_dead_letters: days(replayed_dead_letters) }
    }

    /// The cut-offs of a purge run at `now_us`.
    pub fn before_us(&self, now_us: i64) -> (Option<i64>, Option<i64>) {
        let cut = |d: Option<Duration>| d.map(|d| now_us - d.as_micros() as i64);
        (cut(self.applied_events), cut(self.replayed_dead_letters))
    }
}

/// Purges on a timer until `shutdown`; a failed purge is logged and tried at the next turn.
pub fn spawn_purge(store: Arc<dyn Store>, metrics: Metrics, retention: Retention, shutdown: CancellationToken) {
    if retention.applied_events.is_none() && retention.replayed_dead_letters.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let (applied, replayed) = retention.before_us(now_us());
            match store.purge(applied, replayed).await {
                Ok(purged) => {
                    metrics.purged_events.inc_by(purged.applied_events);
                    metrics.purged_dead_letters.inc_by(purged.dead_letters);
                    if purged.applied_events + purged.dead_letters > 0 {
                        tracing::info!(applied_events = purged.applied_events, dead_letters = purged.dead_letters, "purged past retention");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "purge failed; trying again at the next turn"),
            }
        }
    });
}

/// Refreshes the disk and log gauges of `data_dir` on a timer until `shutdown`.
pub fn spawn_gauges(data_dir: PathBuf, metrics: Metrics, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(GAUGES_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let dir = data_dir.clone();
            let Ok(sizes) = tokio::task::spawn_blocking(move || Sizes::of(&dir)).await else { continue };
            sizes.publish(&metrics);
        }
    });
}

/// The data directory's filesystem and the logs in it.
#[derive(Debug, Default)]
struct Sizes {
    disk: Option<(u64, u64)>,
    log_bytes: u64,
}

impl Sizes {
    fn of(data_dir: &Path) -> Self {
        let disk = rustix::fs::statvfs(data_dir).ok().map(|s| (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize));
        let log_bytes = ["log", "spool"].iter().map(|d| dir_bytes(&data_dir.join(d))).sum();
        Self { disk, log_bytes }
    }

    fn publish(&self, m: &Metrics) {
        if let Some((size, free)) = self.disk {
            m.disk_size_bytes.set(size as i64);
            m.disk_free_bytes.set(free as i64);
            disk_alarm(m, size, free);
        }
        m.log_bytes.set(self.log_bytes as i64);
    }
}

/// Raises or clears the disk-near-full alarm, and logs when it changes.
fn disk_alarm(m: &Metrics, size: u64, free: u64) {
    let share = free as f64 / size.max(1) as f64;
    let raised = m.health.alarms().contains_key(DISK_NEAR_FULL);
    if share < NEAR_FULL_FREE || (raised && share < CLEAR_FREE) {
        let why = format!(
            "{:.1}% of the data directory's filesystem is free ({free} of {size} bytes): free space before the log refuses appends or the store cannot write",
            100.0 * share
        );
        if m.set_alarm(DISK_NEAR_FULL, Some(why.clone())) {
            tracing::warn!(free, size, "{why}");
        }
    } else if m.set_alarm(DISK_NEAR_FULL, None) {
        tracing::info!(free, size, "the data directory's filesystem has room again; disk alarm cleared");
    }
}

/// Bytes in the files of `dir` (not recursive: a log keeps its files flat).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_events_are_kept_at_least_the_retry_window_and_zero_keeps_forever() {
        let r = Retention::from_days(1, 0);
        assert_eq!(r.applied_events, Some(PROVIDER_RETRY_WINDOW));
        assert_eq!(r.replayed_dead_letters, None);
        let r = Retention::from_days(30, 7);
        let now = 1_000_000_000_000_000;
        let (applied, replayed) = r.before_us(now);
        assert_eq!(applied, Some(now - 30 * 24 * 3600 * 1_000_000));
        assert_eq!(replayed, Some(now - 7 * 24 * 3600 * 1_000_000));
        assert_eq!(Retention::from_days(0, 0).before_us(now), (None, None));
    }

    #[test]
    fn the_disk_alarm_is_raised_under_a_tenth_free_and_cleared_with_some_margin() {
        let m = Metrics::new();
        disk_alarm(&m, 1000, 500);
        assert!(m.health.alarms().is_empty());
        assert!(m.render().contains("webhooks_alarm{alarm=\"disk_near_full\"} 0"), "exposed before it is ever raised");
        disk_alarm(&m, 1000, 90);
        assert!(m.health.alarms()[DISK_NEAR_FULL].contains("9.0% of the data directory's filesystem is free"));
        assert!(m.render().contains("webhooks_alarm{alarm=\"disk_near_full\"} 1"));
        disk_alarm(&m, 1000, 110);
        assert!(m.health.alarms().contains_key(DISK_NEAR_FULL), "not cleared at the line");
        disk_alarm(&m, 1000, 130);
        assert!(m.health.alarms().is_empty());
    }

    #[test]
    fn the_sizes_count_the_logs_and_read_the_filesystem() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("log")).expect("log");
        std::fs::write(dir.path().join("log").join("1.seg"), [0u8; 1000]).expect("write");
        std::fs::write(dir.path().join("store.db"), [0u8; 5000]).expect("write");
        let sizes = Sizes::of(dir.path());
        assert_eq!(sizes.log_bytes, 1000, "the store is not a log");
        let (size, free) = sizes.disk.expect("statvfs");
        assert!(size >= free && size > 0, "{size} {free}");
    }
}
