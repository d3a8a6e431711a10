//! The capacity search (`[capacity]` in a scenario, scenarios/capacity.toml): constant steps
//! of rising offered rate, one load each on the same system and event stream, stopped at the
//! first step past the knee (ack p99 or send shortfall over its limit). Each step's figures,
//! the knee and its ratio to the bare-HTTP ceiling of the same run go into the JSON report
//! under `capacity`.

use serde::{Deserialize, Serialize};

use crate::plan;
use crate::run::{self, Client, LoadTiming};
use crate::scenario::{Capacity, Phase, Scenario};
use crate::spawn::own_cpu_seconds;
use crate::stats::Recorder;
use crate::workload::{Generator, Renderer};

/// A send-lag p99 above this, with connections free, means the generator could not keep the
/// schedule (as for a whole run, see `report`).
const GENERATOR_LAG_MS: f64 = 5.0;

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
type Cpu = (f64, Option<f64>);

impl StepResult {
    fn of(c: &Capacity, phase: &Phase, r: &Recorder, t: LoadTiming, cpu: Cpu) -> Self {
        let offered_rate = plan::target_rate(phase);
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
    fn new(steps: Vec<StepResult>, ceiling_rps: Option<f64>) -> Self {
        let knee = steps.iter().take_while(|s| s.within_limits).last().cloned();
        let knee_ceiling_ratio = knee.as_ref().zip(ceiling_rps.filter(|c| *c > 0.0)).map(|(k, c)| k.accepted_per_s / c);
        Self { steps, knee, ceiling_rps, knee_ceiling_ratio }
    }
}

/// What the search hands back to the run: the steps' records merged into one timeline, the
/// generator (for the oracle), the combined timing, the steps run, and the report.
pub struct Searched {
    pub recorder: Recorder,
    pub generator: Generator,
    pub timing: LoadTiming,
    pub steps_run: usize,
    pub report: CapacityReport,
}

/// What one search needs from the run.
pub struct Search<'a> {
    pub scenario: &'a Scenario,
    pub capacity: &'a Capacity,
    pub client: &'a Client,
    pub progress: bool,
    pub system_cpu: &'a dyn Fn() -> Option<f64>,
    pub ceiling_rps: Option<f64>,
}

impl Search<'_> {
    pub async fn run(&self, mut generator: Generator, renderer: Renderer) -> anyhow::Result<Searched> {
        let mut merged: Option<Recorder> = None;
        let mut steps = Vec::new();
        let (mut offset_s, mut send_window_s) = (0u64, 0.0);
        for (k, phase) in self.scenario.load.phases.iter().enumerate() {
            let mut one = self.scenario.clone();
            one.load.phases = vec![phase.clone()];
            let before: Cpu = (own_cpu_seconds(), (self.system_cpu)());
            let (rec, g, t) = run::load(&one, self.client, generator, renderer.clone(), plan::phase_count(phase), self.progress).await?;
            generator = g;
            let cpu: Cpu = (own_cpu_seconds() - before.0, (self.system_cpu)().zip(before.1).map(|(a, b)| a - b));
            let step = StepResult::of(self.capacity, phase, &rec, t, cpu);
            tracing::info!(rate = step.offered_rate, p99_ms = step.ack_p99_ms, shortfall_pct = step.send_shortfall_pct, "capacity step");
            let past_knee = !step.within_limits;
            steps.push(step);
            send_window_s = offset_s as f64 + t.send_window_s;
            let rec = rec.shifted(offset_s, k);
            offset_s += t.wall_s.ceil() as u64;
            match merged.as_mut() {
                Some(m) => m.merge(rec),
                None => merged = Some(rec),
            }
            if past_knee {
                break;
            }
        }
        let recorder = merged.ok_or_else(|| anyhow::anyhow!("a capacity search needs at least one step"))?;
        let timing = LoadTiming { send_window_s, wall_s: offset_s as f64 };
        Ok(Searched { recorder, generator, timing, steps_run: steps.len(), report: CapacityReport::new(steps, self.ceiling_rps) })
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
