//! The capacity search's figures: each step's, the knee, and its ratio to the bare-HTTP
//! ceiling of the same run, written into the JSON report under `capacity`.

use serde::{Deserialize, Serialize};

use crate::measure::stats::{LoadTiming, Recorder, GENERATOR_LAG_MS};
use crate::scenario::{Capacity, Phase};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub offered_rate: f64,
    pub achieved_send_rate: f64,
    pub send_shortfall_pct: f64,
    pub accepted_per_s: f64,
    /// 2xx answers, from each request's scheduled instant.
    pub ack_p99_ms: f64,
    /// The spawned system's CPU during the step, per event accepted in it.
    pub system_cpu_us_per_event: Option<f64>,
    pub loadgen_us_per_request: f64,
    /// The generator sent late with connections free: a shortfall here is loadgen's limit.
    pub generator_limited: bool,
    pub within_limits: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityReport {
    pub steps: Vec<StepResult>,
    /// The highest step within both limits; `None` when even the first step was past them.
    pub knee: Option<StepResult>,
    pub ceiling_rps: Option<f64>,
    /// The knee's accepted rate over the bare-HTTP ceiling measured in the same run.
    pub knee_ceiling_ratio: Option<f64>,
}

/// CPU seconds of loadgen and of the spawned system, when known.
pub(crate) type Cpu = (f64, Option<f64>);

impl StepResult {
    pub(crate) fn of(c: &Capacity, phase: &Phase, r: &Recorder, t: LoadTiming, cpu: Cpu) -> Self {
        let offered_rate = phase.target_rate();
        let achieved_send_rate = r.sent as f64 / t.send_window_s.max(phase.duration_s.min(t.send_window_s + 1.0));
        let send_shortfall_pct = ((1.0 - achieved_send_rate / offered_rate) * 100.0).max(0.0);
        let ack_p99_ms = r.accepted_latency().p99_ms;
        Self {
            offered_rate,
            achieved_send_rate,
            send_shortfall_pct,
            accepted_per_s: r.accepted as f64 / t.send_window_s,
            ack_p99_ms,
            system_cpu_us_per_event: cpu.1.map(|s| s * 1e6 / r.accepted.max(1) as f64),
            loadgen_us_per_request: cpu.0 * 1e6 / r.sent.max(1) as f64,
            generator_limited: r.send_lag().p99_ms > GENERATOR_LAG_MS,
            within_limits: ack_p99_ms <= c.max_p99_ack_ms && send_shortfall_pct <= c.max_shortfall_pct,
        }
    }
}

impl CapacityReport {
    pub(crate) fn new(steps: Vec<StepResult>, ceiling_rps: Option<f64>) -> Self {
        let knee = steps.iter().take_while(|s| s.within_limits).last().cloned();
        let knee_ceiling_ratio = knee.as_ref().zip(ceiling_rps.filter(|c| *c > 0.0)).map(|(k, c)| k.accepted_per_s / c);
        Self { steps, knee, ceiling_rps, knee_ceiling_ratio }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: f64, accepted: f64, ok: bool) -> StepResult {
        StepResult {
            offered_rate: rate,
            achieved_send_rate: rate,
            send_shortfall_pct: 0.0,
            accepted_per_s: accepted,
            ack_p99_ms: 1.0,
            system_cpu_us_per_event: None,
            loadgen_us_per_request: 1.0,
            generator_limited: false,
            within_limits: ok,
        }
    }

    #[test]
    fn the_knee_is_the_last_step_within_limits_before_the_first_past_them() {
        let r = CapacityReport::new(vec![step(1000.0, 1000.0, true), step(2000.0, 1990.0, true), step(3000.0, 2500.0, false)], Some(10_000.0));
        assert_eq!(r.knee.as_ref().map(|k| k.offered_rate), Some(2000.0));
        assert_eq!(r.knee_ceiling_ratio, Some(0.199));
        let none = CapacityReport::new(vec![step(1000.0, 10.0, false)], Some(10_000.0));
        assert!(none.knee.is_none() && none.knee_ceiling_ratio.is_none());
    }
}
