//! Whether the worker keeps ahead of the topic's retention. Kafka deletes old segments
//! whether or not a group has read them: a worker that falls behind by more than the
//! retention loses acknowledged events, and a consumer whose committed offset was deleted
//! starts again at the oldest one still kept. So the worker watches two things, from what
//! it is handed anyway (no extra requests to the broker):
//! - the age of its oldest unapplied event (the record timestamp retention also goes by),
//!   against the retention: a gauge, and a warning (log, `/readyz`) past a fraction of it;
//! - gaps in the offsets it is handed: events deleted before they were applied, said
//!   loudly (error log, `webhooks_log_damaged_records`, the `kafka_events_lost` alarm in
//!   `/readyz`) instead of skipped.

use std::collections::BTreeMap;
use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::Metrics;

/// How often the gauge and the warning are refreshed; independent of the worker's loop,
/// which may be stuck (a store outage) exactly while the age grows.
const REFRESH: Duration = Duration::from_secs(10);
/// The alarms' names in `webhooks_alarm` and `/readyz`.
const ALARM: &str = "kafka_retention_near";
const LOST_ALARM: &str = "kafka_events_lost";

#[derive(Debug)]
pub struct RetentionWatch {
    /// The topic's effective retention; `None` when it keeps everything.
    retention: Option<Duration>,
    warn_fraction: f64,
    heads: Mutex<BTreeMap<i32, Head>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Head {
    /// The offset the next delivery of this partition should have, once known.
    next: Option<i64>,
    /// Record timestamp (ms since the epoch) of the oldest delivery not yet committed.
    oldest_pending_ms: Option<i64>,
}

/// Offsets `from..to` of a partition were never delivered: deleted before they were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl RetentionWatch {
    pub fn new(retention: Option<Duration>, warn_fraction: f64) -> Self {
        Self { retention, warn_fraction, heads: Mutex::new(BTreeMap::new()) }
    }

    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }

    fn heads(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Head>> {
        self.heads.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Partitions assigned or revoked: where they continue is learnt again.
    pub fn forget(&self, partitions: &[i32]) {
        let mut heads = self.heads();
        for p in partitions {
            heads.remove(p);
        }
    }

    /// Whether the next offset of `partition` is unknown (just assigned): then the caller
    /// asks the group's committed offset and passes it to [`RetentionWatch::delivered`].
    pub fn needs_start(&self, partition: i32) -> bool {
        self.heads().get(&partition).is_none_or(|h| h.next.is_none())
    }

    /// One delivery: `committed` is the group's offset when the partition's start was
    /// unknown (`None` for a group that never committed there, which starts at the oldest
    /// event kept without losing any of its own).
    pub fn delivered(&self, partition: i32, offset: i64, timestamp_ms: Option<i64>, committed: Option<i64>) -> Option<Gap> {
        let mut heads = self.heads();
        let head = heads.entry(partition).or_default();
        let expected = head.next.or(committed);
        head.next = Some(offset + 1);
        if head.oldest_pending_ms.is_none() {
            head.oldest_pending_ms = timestamp_ms;
        }
        expected.filter(|e| offset > *e).map(|from| Gap { partition, from, to: offset })
    }

    /// Everything delivered on these partitions is committed.
    pub fn committed(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut heads = self.heads();
        for p in partitions {
            if let Some(h) = heads.get_mut(&p) {
                h.oldest_pending_ms = None;
            }
        }
    }

    /// The age of the oldest event delivered and not yet committed, on any partition.
    pub fn oldest_pending_age(&self, now_ms: i64) -> Duration {
        let oldest = self.heads().values().filter_map(|h| h.oldest_pending_ms).min();
        oldest.map_or(Duration::ZERO, |ms| Duration::from_millis(now_ms.saturating_sub(ms).max(0) as u64))
    }

    /// Why the age is a concern, when it is past the warning fraction of the retention.
    pub fn concern(&self, age: Duration) -> Option<String> {
        let retention = self.retention?;
        (age.as_secs_f64() > retention.as_secs_f64() * self.warn_fraction).then(|| {
            format!(
                "the oldest unapplied Kafka event is {} s old, {:.0} % of the topic's retention ({} s): past it, Kafka deletes events before they are applied",
                age.as_secs(),
                100.0 * age.as_secs_f64() / retention.as_secs_f64(),
                retention.as_secs()
            )
        })
    }
}

/// Reports a gap: acknowledged events that will never be applied.
pub fn report_gap(metrics: Option<&Metrics>, gap: Gap) {
    let lost = (gap.to - gap.from) as u64;
    let why = format!(
        "Kafka partition {} skipped offsets {}..{} ({lost} events): deleted by the topic's retention before the worker applied them",
        gap.partition, gap.from, gap.to
    );
    tracing::error!(partition = gap.partition, from = gap.from, to = gap.to, lost, "{why}; acknowledged events are lost, recover them from the provider");
    if let Some(m) = metrics {
        m.degrade(lost, why.clone());
        // A worker-only process shows alarms in its `/readyz`; this one stays until restart.
        m.set_alarm(LOST_ALARM, Some(why));
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Refreshes the gauges and the warning until the watch is dropped with its consumer.
pub fn spawn_refresh(watch: Weak<RetentionWatch>, metrics: Metrics) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            let Some(watch) = watch.upgrade() else { break };
            metrics.kafka_retention_seconds.set(watch.retention().map_or(0, |r| r.as_secs() as i64));
            let age = watch.oldest_pending_age(now_ms());
            metrics.kafka_oldest_unconsumed_age_seconds.set(age.as_secs() as i64);
            let concern = watch.concern(age);
            let logged = concern.clone();
            if metrics.set_alarm(ALARM, concern) {
                match logged {
                    Some(why) => tracing::warn!(age_s = age.as_secs(), "{why}"),
                    None => tracing::info!(age_s = age.as_secs(), "the oldest unapplied Kafka event is well within the topic's retention again"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn skipped_offsets_are_a_gap_and_contiguous_ones_are_not() {
        let w = RetentionWatch::new(Some(DAY), 0.5);
        assert_eq!(w.delivered(0, 10, None, Some(10)), None, "starts where the group committed");
        assert_eq!(w.delivered(0, 11, None, None), None);
        assert_eq!(w.delivered(0, 15, None, None), Some(Gap { partition: 0, from: 12, to: 15 }));
        assert_eq!(w.delivered(1, 40, None, Some(25)), Some(Gap { partition: 1, from: 25, to: 40 }), "committed offset deleted");
        assert_eq!(w.delivered(2, 40, None, None), None, "a new group starts at the oldest event kept");
        w.forget(&[0]);
        assert!(w.needs_start(0));
        assert_eq!(w.delivered(0, 100, None, Some(100)), None, "reassigned: starts again from the committed offset");
    }

    #[test]
    fn the_age_is_the_oldest_uncommitted_delivery_and_a_commit_clears_it() {
        let w = RetentionWatch::new(Some(DAY), 0.5);
        w.delivered(0, 0, Some(1_000), None);
        w.delivered(0, 1, Some(5_000), None);
        w.delivered(1, 0, Some(3_000), None);
        assert_eq!(w.oldest_pending_age(11_000), Duration::from_secs(10));
        w.committed([0]);
        assert_eq!(w.oldest_pending_age(11_000), Duration::from_secs(8));
        w.committed([1]);
        assert_eq!(w.oldest_pending_age(11_000), Duration::ZERO);
    }

    #[test]
    fn a_concern_only_past_the_fraction_of_a_finite_retention() {
        let w = RetentionWatch::new(Some(DAY), 0.5);
        assert_eq!(w.concern(DAY / 3), None);
        let why = w.concern(DAY * 3 / 4).expect("past half");
        assert!(why.contains("75 %"), "{why}");
        assert_eq!(RetentionWatch::new(None, 0.5).concern(DAY * 100), None, "infinite retention");
    }
}
