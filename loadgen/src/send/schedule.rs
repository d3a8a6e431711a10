//! The open-loop schedule: the instant, relative to the start of the load, at which each
//! request must be sent, whatever happened to the requests before it.

use std::time::Duration;

use crate::scenario::{Phase, Shape};

/// When the i-th request of a phase is due, from the phase's start. For a ramp the rate
/// grows linearly, so the count sent by time t is `from*t + (to-from)*t²/(2d)`; inverting
/// it gives the instant of the i-th request.
pub fn offset_in_phase(p: &Phase, i: u64) -> Duration {
    let i = i as f64;
    let secs = match p.shape {
        Shape::Constant { rate } | Shape::Burst { rate } => i / rate,
        Shape::Ramp { from, to } if (to - from).abs() < f64::EPSILON => i / from,
        Shape::Ramp { from, to } => {
            let a = (to - from) / (2.0 * p.duration_s);
            (-from + (from * from + 4.0 * a * i).max(0.0).sqrt()) / (2.0 * a)
        }
    };
    Duration::from_secs_f64(secs.clamp(0.0, p.duration_s))
}

/// The schedule's resolution: requests due within one tick leave together at its end. This
/// keeps the load's shape of every earlier measurement (one sender thread on tokio's
/// millisecond timer sent each millisecond's requests together, and the system's CPU per
/// event depends on how arrivals bunch), while latency is measured from the tick itself.
pub const TICK: Duration = Duration::from_millis(1);

/// The tick at or after `at`, taken to the microsecond first: an instant computed in floating
/// point (a ramp's square root) may land a fraction of a microsecond past a tick, and would
/// otherwise move to the next tick.
fn tick_up(at: Duration) -> Duration {
    let (us, tick) = ((at.as_nanos() + 500) / 1000, TICK.as_micros());
    Duration::from_micros((us.div_ceil(tick) * tick) as u64)
}

/// One scheduled request: its phase and its due instant from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slot {
    pub phase: usize,
    pub at: Duration,
}

/// The whole schedule, indexable: any connection finds the instant of its i-th slot
/// without walking the ones before it, and a long soak plans in constant memory.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Each phase with the index of its first slot and its start from the load's start.
    phases: Vec<(u64, Duration, Phase)>,
    len: u64,
}

impl Schedule {
    pub fn new(phases: &[Phase]) -> Self {
        let (mut first, mut start, mut out) = (0, Duration::ZERO, Vec::with_capacity(phases.len()));
        for p in phases {
            out.push((first, start, p.clone()));
            first += p.requests();
            start += Duration::from_secs_f64(p.duration_s);
        }
        Self { phases: out, len: first }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th slot; `i` must be below `len()` (beyond it, the last phase's end).
    pub fn slot(&self, i: u64) -> Slot {
        let idx = self.phases.partition_point(|(first, _, _)| *first <= i).saturating_sub(1);
        match self.phases.get(idx) {
            Some((first, start, p)) => Slot { phase: idx, at: tick_up(*start + offset_in_phase(p, i - first)) },
            None => Slot { phase: 0, at: Duration::ZERO },
        }
    }
}

/// Every slot of every phase, in order.
pub fn slots(phases: &[Phase]) -> impl Iterator<Item = Slot> {
    let s = Schedule::new(phases);
    (0..s.len()).map(move |i| s.slot(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(shape: Shape, duration_s: f64) -> Phase {
        Phase { name: String::new(), shape, duration_s, gates: Default::default() }
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let p = phase(Shape::Constant { rate: 1000.0 }, 2.0);
        assert_eq!(p.requests(), 2000);
        assert_eq!(offset_in_phase(&p, 0), Duration::ZERO);
        assert_eq!(offset_in_phase(&p, 500), Duration::from_millis(500));
        assert_eq!(offset_in_phase(&p, 1999), Duration::from_millis(1999));
    }

    #[test]
    fn a_ramp_sends_the_average_count_and_speeds_up() {
        let p = phase(Shape::Ramp { from: 100.0, to: 300.0 }, 10.0);
        assert_eq!(p.requests(), 2000);
        let first_half = (0..2000).filter(|i| offset_in_phase(&p, *i) < Duration::from_secs(5)).count();
        // 100 -> 200 over the first half: 750 requests; 200 -> 300 over the second: 1250.
        assert!((745..=755).contains(&first_half), "{first_half}");
        let last = offset_in_phase(&p, 1999);
        assert!(last <= Duration::from_secs(10) && last > Duration::from_millis(9990), "{last:?}");
    }

    #[test]
    fn slots_fall_on_ticks_never_before_their_instant() {
        let s = Schedule::new(&[phase(Shape::Constant { rate: 3000.0 }, 1.0)]);
        assert_eq!(s.slot(0).at, Duration::ZERO);
        // 1/3 ms and 2/3 ms leave with the request due at 1 ms.
        assert_eq!([1, 2, 3].map(|i| s.slot(i).at), [Duration::from_millis(1); 3]);
        assert_eq!(s.slot(4).at, Duration::from_millis(2));
        let exact = Schedule::new(&[phase(Shape::Constant { rate: 1000.0 }, 60.0)]);
        assert!((0..60_000).all(|i| exact.slot(i).at == Duration::from_millis(i)), "a request a tick stays on its tick");
    }

    #[test]
    fn slots_are_ordered_across_phases() {
        let phases = [phase(Shape::Constant { rate: 10.0 }, 1.0), phase(Shape::Burst { rate: 100.0 }, 0.5), phase(Shape::Ramp { from: 10.0, to: 30.0 }, 1.0)];
        let all: Vec<Slot> = slots(&phases).collect();
        assert_eq!(all.len(), 10 + 50 + 20);
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(all[10], Slot { phase: 1, at: Duration::from_secs(1) });
        assert_eq!(all[60].phase, 2);
        assert!(all[60].at >= Duration::from_millis(1500));
    }
}
