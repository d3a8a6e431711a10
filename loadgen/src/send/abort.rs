//! `abort_on_fail`: the gates that can be judged while the load runs, checked as it runs,
//! so that a run already failed (k6's `abortOnFail`) stops instead of loading on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::scenario::{AbortGate, Gates};
use crate::send::engine::Live;

const EVERY: Duration = Duration::from_millis(100);

/// The failed gate and its value, if one of `gates.abort_on_fail` has failed on `live`.
pub fn failed(gates: &Gates, live: &[Arc<Live>]) -> Option<String> {
    let sum = |f: fn(&Live) -> u64| live.iter().map(|l| f(l)).sum::<u64>();
    gates.abort_on_fail.iter().find_map(|gate| {
        let (name, value, limit) = match gate {
            AbortGate::MaxUnexpectedStatus => ("max_unexpected_status", sum(|l| l.unexpected_status.load(Ordering::Relaxed)) as f64, gates.max_unexpected_status? as f64),
            AbortGate::MaxInvalidAccepted => ("max_invalid_accepted", sum(|l| l.invalid_accepted.load(Ordering::Relaxed)) as f64, gates.max_invalid_accepted? as f64),
            AbortGate::MaxP99AckMs => {
                let p99 = live.iter().map(|l| l.ack_p99_us.load(Ordering::Relaxed)).max().unwrap_or(0) as f64 / 1000.0;
                ("max_p99_ack_ms", p99, gates.max_p99_ack_ms?)
            }
        };
        (value > limit).then(|| format!("gate {name} failed during the load: {value:.2} against {limit:.2}"))
    })
}

/// Checks every 100 ms until `stop` is set by the load's end or by a failure found here;
/// returns the failure.
pub fn watch(gates: Gates, live: Vec<Arc<Live>>, stop: Arc<AtomicBool>) -> JoinHandle<Option<String>> {
    tokio::spawn(async move {
        if gates.abort_on_fail.is_empty() {
            return None;
        }
        while !stop.load(Ordering::Relaxed) {
            if let Some(why) = failed(&gates, &live) {
                stop.store(true, Ordering::Relaxed);
                return Some(why);
            }
            tokio::time::sleep(EVERY).await;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chosen_gates_past_their_limit_abort() {
        let live = vec![Arc::new(Live::default()), Arc::new(Live::default())];
        let mut gates = Gates { max_unexpected_status: Some(3), max_p99_ack_ms: Some(50.0), ..Gates::default() };
        live[0].unexpected_status.store(2, Ordering::Relaxed);
        live[1].unexpected_status.store(2, Ordering::Relaxed);
        live[1].ack_p99_us.store(80_000, Ordering::Relaxed);
        assert_eq!(failed(&gates, &live), None, "no gate chosen");
        gates.abort_on_fail = vec![AbortGate::MaxP99AckMs];
        assert!(failed(&gates, &live).is_some_and(|w| w.contains("max_p99_ack_ms") && w.contains("80.00")));
        gates.abort_on_fail = vec![AbortGate::MaxUnexpectedStatus];
        assert!(failed(&gates, &live).is_some_and(|w| w.contains("max_unexpected_status") && w.contains("4.00 against 3.00")), "threads add up");
        gates.max_unexpected_status = Some(4);
        assert_eq!(failed(&gates, &live), None);
    }
}
