//! What the probes report beyond "the process is up": whether a server is draining after
//! SIGTERM, whether the worker's loop still turns, and the alarms raised (the disk nearly
//! full). A worker that waits forever on a store or a queue answers its liveness probe like a
//! healthy one; only the time since its loop last advanced tells them apart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default for how long a worker's loop may stand still before it reports itself stalled.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Health {
    /// Set on SIGTERM: `/readyz` fails so that the load balancer stops sending, while
    /// requests are still served for the drain period.
    draining: AtomicBool,
    /// Milliseconds after `started` at the worker loop's last turn (0: not yet).
    last_turn_ms: AtomicU64,
    /// Past this much time without a turn, the worker reports itself stalled.
    stall_after_ms: AtomicU64,
    started: Instant,
    /// Conditions an operator must act on before they become an outage, by name, with why:
    /// shown by `/readyz`, which stays ready, since refusing traffic would not fix them.
    alarms: Mutex<BTreeMap<&'static str, String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            draining: AtomicBool::new(false),
            last_turn_ms: AtomicU64::new(0),
            stall_after_ms: AtomicU64::new(DEFAULT_STALL_AFTER.as_millis() as u64),
            started: Instant::now(),
            alarms: Mutex::default(),
        }
    }
}

impl Health {
    /// Called by the worker loop at every turn: a poll (empty or not) or a batch applied.
    pub fn beat(&self) {
        self.last_turn_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_stall_after(&self, after: Duration) {
        self.stall_after_ms.store(after.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// How long the worker loop has stood still: since its last turn, or since the process
    /// started if it has not turned yet (a worker stuck opening its store counts too).
    pub fn since_last_turn(&self) -> Duration {
        let last = Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Raises the alarm `name` with why (`Some`) or clears it (`None`); true when that changed
    /// whether it is raised.
    pub fn set_alarm(&self, name: &'static str, why: Option<String>) -> bool {
        let Ok(mut alarms) = self.alarms.lock() else { return false };
        match why {
            Some(why) => alarms.insert(name, why).is_none(),
            None => alarms.remove(name).is_some(),
        }
    }

    /// The alarms raised, by name.
    pub fn alarms(&self) -> BTreeMap<&'static str, String> {
        self.alarms.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// `Some(why)` when the worker loop has stood still longer than allowed.
    pub fn stalled(&self) -> Option<String> {
        let still = self.since_last_turn();
        let limit = Duration::from_millis(self.stall_after_ms.load(Ordering::Relaxed));
        (still > limit).then(|| format!("the worker loop has not advanced for {} s (limit {} s)", still.as_secs(), limit.as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_turning_is_reported_and_a_turn_clears_it() {
        let h = Health::default();
        h.set_stall_after(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        let why = h.stalled().expect("no turn since start: stalled");
        assert!(why.contains("has not advanced"), "{why}");
        h.set_stall_after(Duration::from_secs(3600));
        h.beat();
        assert_eq!(h.stalled(), None);
    }

    #[test]
    fn an_alarm_is_shown_until_cleared_and_says_when_it_changes() {
        let h = Health::default();
        assert!(h.set_alarm("disk_near_full", Some("5% free".into())));
        assert!(!h.set_alarm("disk_near_full", Some("4% free".into())), "raised already");
        assert_eq!(h.alarms().get("disk_near_full").map(String::as_str), Some("4% free"));
        assert!(h.set_alarm("disk_near_full", None));
        assert!(!h.set_alarm("disk_near_full", None));
        assert!(h.alarms().is_empty());
    }

    #[test]
    fn draining_is_one_way() {
        let h = Health::default();
        assert!(!h.draining());
        h.start_draining();
        assert!(h.draining());
    }
}
