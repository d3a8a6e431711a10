//! The capacity search (`[capacity]` in a scenario, scenarios/capacity.toml): constant steps
//! of rising offered rate, one load each on the same system and event stream, stopped at the
//! first step past the knee (ack p99 or send shortfall over its limit). Each step's figures,
//! the knee and its ratio to the bare-HTTP ceiling of the same run go into the JSON report
//! under `capacity`.

use crate::experiment::load;
use crate::experiment::spawn::own_cpu_seconds;
use crate::measure::client::Client;
use crate::measure::stats::{LoadTiming, Recorder};
use crate::report::capacity::{CapacityReport, Cpu, StepResult};
use crate::scenario::{Capacity, Scenario};
use crate::workload::generator::{Generator, Renderer};

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
            let (rec, g, t) = load::load(&one, self.client, generator, renderer.clone(), phase.requests(), self.progress).await?;
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
