//! The figures of a run, the gates over them, and the files a person reads: report.json
//! (everything), report.md (tables) and report.html (charts, self-contained), and beside
//! them the files for other tools (`export`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub mod capacity;
pub mod charts;
pub mod compare;
pub mod export;
pub mod gate;

use crate::measure::sampler::SystemSample;
use crate::measure::stats::{LoadTiming, Percentiles, Recorder, Second, GENERATOR_LAG_MS};
use crate::measure::window::{self, Coverage, Snapshot};
use crate::scenario::{Gates, Scenario, Shape};
use crate::verify::Verdict;
use capacity::CapacityReport;
use gate::GateResult;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// The host name, so that `compare` can tell two machines of one CPU model apart.
    pub host: String,
    pub cores: usize,
    pub cpu: String,
    pub os: String,
}

impl Machine {
    pub fn this() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_owned()))
            .unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|c| c.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|s| s.trim_matches('"').to_owned()))
            .unwrap_or_else(|| std::env::consts::OS.into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        Self { host, cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1), cpu, os }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub kind: String,
    pub duration_s: f64,
    pub target_rate: f64,
    pub sent: u64,
    pub accepted: u64,
    /// 200s per second of the phase's planned duration.
    pub accepted_per_s: f64,
    /// The phase's accepted requests' latency from schedule.
    pub ack_latency_ms: Percentiles,
    pub unexpected_status: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub target_send_rate: f64,
    pub achieved_send_rate: f64,
    /// How far the achieved send rate fell behind the target, in percent.
    pub send_shortfall_pct: f64,
    /// 200s per second over the send window.
    pub accepted_per_s: f64,
    /// Distinct accepted events per second from the first send until all were applied.
    pub applied_per_s: f64,
}

/// What the system itself reported (`/api/stats`) and how its processes behaved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SystemSide {
    /// What the two latencies below cover: the run, or (from a system that does not send its
    /// histograms) its whole life.
    pub latency_covers: Coverage,
    /// Whose clocks the end-to-end latency subtracts: the server stamps acceptance on its
    /// host's clock and the worker its commit on its own.
    pub e2e_clocks: Clocks,
    pub e2e_latency_ms: Option<BTreeMap<String, f64>>,
    /// Each worker process's own end-to-end figures over the run, when there are several;
    /// `e2e_latency_ms` is their exact merge, not the largest of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub e2e_latency_ms_by_worker: Vec<BTreeMap<String, f64>>,
    pub ack_latency_ms: Option<BTreeMap<String, f64>>,
    pub worker: Option<Value>,
    pub rss_peak_mb: Option<f64>,
    pub rss_samples_mb: Vec<f64>,
    pub clean_exit: Option<bool>,
    /// CPU seconds the spawned system used over the whole run (setup and verification included).
    pub cpu_s: Option<f64>,
    /// Queue depth, processing rate and end-to-end latency once a second.
    pub timeline: Vec<SystemSample>,
}

/// Which clocks the system's end-to-end latency was measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clocks {
    /// loadgen spawned every process on this host: one clock.
    OneHost,
    /// A running system (`target.url`): its server and workers may run on other hosts, so the
    /// figure may subtract two clocks and carry their skew.
    #[default]
    CrossHost,
}

impl Clocks {
    pub fn of(target: &crate::scenario::Target) -> Self {
        if target.spawn.is_some() {
            Self::OneHost
        } else {
            Self::CrossHost
        }
    }
}

fn ms_percentiles(v: &Value) -> Option<BTreeMap<String, f64>> {
    let obj = v.as_object()?;
    Some(obj.iter().filter_map(|(k, n)| n.as_f64().map(|n| (k.clone(), if k == "count" { n } else { n / 1000.0 }))).collect())
}

impl SystemSide {
    /// `window`, the system's histograms over the run, gives the latencies when there is one;
    /// `stats`' lifetime percentiles otherwise.
    pub fn from_stats(stats: Option<&Value>, window: Option<&Snapshot>) -> Self {
        let Some(s) = stats else { return Self::default() };
        let worker = (!s["worker"].is_null()).then(|| s["worker"].clone());
        match window {
            Some(w) => Self {
                latency_covers: Coverage::Run,
                e2e_latency_ms: w.e2e.as_ref().map(window::ms_percentiles),
                e2e_latency_ms_by_worker: if w.e2e_by_worker.len() > 1 { w.e2e_by_worker.iter().map(window::ms_percentiles).collect() } else { Vec::new() },
                ack_latency_ms: w.ack.as_ref().map(window::ms_percentiles),
                worker,
                ..Self::default()
            },
            None => Self {
                latency_covers: Coverage::Lifetime,
                e2e_latency_ms: ms_percentiles(&s["worker"]["e2e_latency_us"]),
                ack_latency_ms: ms_percentiles(&s["ingress"]["ack_latency_us"]),
                worker,
                ..Self::default()
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub scenario: Scenario,
    pub machine: Machine,
    pub finished_at_unix: u64,
    pub planned: u64,
    pub sent: u64,
    pub accepted: u64,
    pub statuses: BTreeMap<String, u64>,
    pub unexpected_status: u64,
    pub invalid_accepted: u64,
    pub phases: Vec<PhaseReport>,
    pub throughput: Throughput,
    /// From each request's scheduled instant (corrected for coordinated omission), by status class.
    pub ack_latency_ms: BTreeMap<String, Percentiles>,
    /// From each request's actual send, all classes: the gap to the above shows client-side queueing.
    pub service_time_ms: Percentiles,
    /// Accepted requests' latency from schedule, `(percentile, ms)`, for the distribution chart.
    pub ack_distribution: Vec<(f64, f64)>,
    pub setup_s: f64,
    pub drain_s: f64,
    pub drained: bool,
    pub ceiling_rps: Option<f64>,
    /// accepted_per_s / ceiling_rps.
    pub ceiling_ratio: Option<f64>,
    pub loadgen_cpu_s: f64,
    pub loadgen_cores_used: f64,
    /// loadgen's CPU over the load (planning, rendering, signing, sending, recording) per request sent.
    pub loadgen_us_per_request: f64,
    /// The spawned system's CPU from the start of the load to the end of the drain, per
    /// accepted event; `None` for a target loadgen did not start.
    pub system_cpu_us_per_event: Option<f64>,
    /// The steps of a capacity search and its knee (`[capacity]` scenarios only).
    pub capacity: Option<CapacityReport>,
    /// How late requests went while their connection was free: the generator's own lateness.
    pub send_lag_ms: Percentiles,
    /// The shortfall, if any, is the generator's: it sent late with connections free.
    pub generator_limited: bool,
    pub verification: Verdict,
    pub system: SystemSide,
    pub timeline: Vec<Second>,
    pub gates: Vec<GateResult>,
    /// Why the load ended early, when an `abort_on_fail` gate failed during it.
    pub aborted: Option<String>,
    /// The load's first scheduled instant, seconds since the epoch (the interval log's base).
    pub load_started_unix_s: f64,
    /// Each second's latency from schedule, written as latency.hlog.
    #[serde(skip)]
    pub latency_per_second: Vec<hdrhistogram::Histogram<u64>>,
}

impl Measured {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        s: &Scenario,
        r: &Recorder,
        load: LoadTiming,
        setup_s: f64,
        ceiling_rps: Option<f64>,
        cpu_s: f64,
        drain_s: f64,
        drained: bool,
        verification: Verdict,
        system: SystemSide,
    ) -> Self {
        let planned_duration: f64 = s.load.phases.iter().map(|p| p.duration_s).sum();
        let planned = s.planned_requests();
        let target = planned as f64 / planned_duration;
        let achieved = r.sent as f64 / load.send_window_s.max(planned_duration.min(load.send_window_s + 1.0));
        let applied_events: usize = r.ledger.applied.values().map(|e| e.len()).sum::<usize>() + r.ledger.dead.len();
        let accepted_per_s = r.accepted as f64 / load.send_window_s;
        let phases = s
            .load
            .phases
            .iter()
            .zip(&r.phases)
            .enumerate()
            .map(|(i, (p, t))| PhaseReport {
                name: if p.name.is_empty() { format!("phase {i}") } else { p.name.clone() },
                kind: match p.shape {
                    Shape::Constant { .. } => "constant".into(),
                    Shape::Ramp { .. } => "ramp".into(),
                    Shape::Burst { .. } => "burst".into(),
                },
                duration_s: p.duration_s,
                target_rate: p.target_rate(),
                sent: t.sent,
                accepted: t.accepted,
                accepted_per_s: t.accepted as f64 / p.duration_s,
                ack_latency_ms: Percentiles::of(&t.ack),
                unexpected_status: t.unexpected_status,
            })
            .collect();
        Self {
            scenario: s.clone(),
            machine: Machine::this(),
            finished_at_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            planned,
            sent: r.sent,
            accepted: r.accepted,
            statuses: r.statuses(),
            unexpected_status: r.unexpected_status,
            invalid_accepted: r.invalid_accepted,
            phases,
            throughput: Throughput {
                target_send_rate: target,
                achieved_send_rate: achieved,
                send_shortfall_pct: ((1.0 - achieved / target) * 100.0).max(0.0),
                accepted_per_s,
                applied_per_s: applied_events as f64 / (load.send_window_s + drain_s),
            },
            ack_latency_ms: r.latency_by_class(),
            service_time_ms: r.service_time(),
            ack_distribution: r.ack_distribution(),
            setup_s,
            drain_s,
            drained,
            ceiling_rps,
            ceiling_ratio: ceiling_rps.filter(|c| *c > 0.0).map(|c| accepted_per_s / c),
            loadgen_cpu_s: cpu_s,
            loadgen_cores_used: cpu_s / load.wall_s,
            loadgen_us_per_request: cpu_s * 1e6 / r.sent.max(1) as f64,
            system_cpu_us_per_event: None,
            capacity: None,
            send_lag_ms: r.send_lag(),
            generator_limited: r.send_lag().p99_ms > GENERATOR_LAG_MS,
            verification,
            system,
            timeline: r.timeline_out(),
            gates: Vec::new(),
            aborted: r.aborted.clone(),
            load_started_unix_s: 0.0,
            latency_per_second: r.per_second_histograms(),
        }
    }

    /// Applies the scenario's gates; whether all passed.
    pub fn judge(&mut self, g: &Gates) -> bool {
        let v = &self.verification;
        let e2e_p99 = self.system.e2e_latency_ms.as_ref().and_then(|m| m.get("p99").copied());
        let ack = self.ack_latency_ms.get("2xx").cloned().unwrap_or_default();
        let mut out = Vec::new();
        let mut max = |name: &str, limit: Option<u64>, value: u64| {
            if let Some(l) = limit {
                out.push(GateResult { gate: name.into(), limit: l as f64, value: value as f64, pass: value <= l });
            }
        };
        max("max_lost", g.max_lost, v.lost);
        max("max_double_applied", g.max_double_applied, v.double_applied);
        max("max_wrong_state", g.max_wrong_state, v.wrong_state() + v.unexpected_applied);
        max("max_unexpected_status", g.max_unexpected_status, self.unexpected_status);
        max("max_invalid_accepted", g.max_invalid_accepted, self.invalid_accepted);
        let mut fmax = |name: &str, limit: Option<f64>, value: Option<f64>| {
            if let Some(l) = limit {
                let value = value.unwrap_or(f64::INFINITY);
                out.push(GateResult { gate: name.into(), limit: l, value, pass: value <= l });
            }
        };
        fmax("max_p99_ack_ms", g.max_p99_ack_ms, Some(ack.p99_ms));
        fmax("max_p999_ack_ms", g.max_p999_ack_ms, Some(ack.p999_ms));
        fmax("max_p99_e2e_ms", g.max_p99_e2e_ms, e2e_p99);
        fmax("max_drain_s", g.max_drain_s, Some(self.drain_s).filter(|_| self.drained));
        fmax("max_rss_mb", g.max_rss_mb, self.system.rss_peak_mb);
        fmax("max_send_shortfall_pct", g.max_send_shortfall_pct, Some(self.throughput.send_shortfall_pct));
        fmax("max_system_cpu_us_per_event", g.max_system_cpu_us_per_event, self.system_cpu_us_per_event);
        let mut fmin = |name: &str, limit: Option<f64>, value: Option<f64>| {
            if let Some(l) = limit {
                let value = value.unwrap_or(0.0);
                out.push(GateResult { gate: name.into(), limit: l, value, pass: value >= l });
            }
        };
        fmin("min_accepted_per_s", g.min_accepted_per_s, Some(self.throughput.accepted_per_s));
        fmin("min_applied_per_s", g.min_applied_per_s, Some(self.throughput.applied_per_s));
        fmin("min_ceiling_ratio", g.min_ceiling_ratio, self.ceiling_ratio);
        // Correctness is never optional: a lost or doubled event fails every run.
        if g.max_lost.is_none() {
            out.push(GateResult { gate: "max_lost (always)".into(), limit: 0.0, value: v.lost as f64, pass: v.lost == 0 });
        }
        if g.max_double_applied.is_none() {
            out.push(GateResult { gate: "max_double_applied (always)".into(), limit: 0.0, value: v.double_applied as f64, pass: v.double_applied == 0 });
        }
        out.extend(self.phase_gates());
        self.gates = out;
        self.gates.iter().all(|g| g.pass)
    }

    /// Each phase's own gates, named `phase NAME: gate`.
    fn phase_gates(&self) -> Vec<GateResult> {
        let mut out = Vec::new();
        for (p, r) in self.scenario.load.phases.iter().zip(&self.phases) {
            let g = &p.gates;
            let named = |gate: &str| format!("phase {}: {gate}", r.name);
            let mut max = |gate: &str, limit: Option<f64>, value: f64| {
                if let Some(l) = limit {
                    out.push(GateResult { gate: named(gate), limit: l, value, pass: value <= l });
                }
            };
            max("max_p99_ack_ms", g.max_p99_ack_ms, r.ack_latency_ms.p99_ms);
            max("max_p999_ack_ms", g.max_p999_ack_ms, r.ack_latency_ms.p999_ms);
            max("max_unexpected_status", g.max_unexpected_status.map(|n| n as f64), r.unexpected_status as f64);
            if let Some(l) = g.min_accepted_per_s {
                out.push(GateResult { gate: named("min_accepted_per_s"), limit: l, value: r.accepted_per_s, pass: r.accepted_per_s >= l });
            }
        }
        out
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let t = &self.throughput;
        let ack = self.ack_latency_ms.get("2xx").cloned().unwrap_or_default();
        let e2e = |k: &str| self.system.e2e_latency_ms.as_ref().and_then(|m| m.get(k).copied()).map_or("-".into(), |v| format!("{v:.1}"));
        let v = &self.verification;
        let _ = writeln!(s, "scenario {} on {} cores ({})", self.scenario.name, self.machine.cores, self.machine.cpu);
        if let Some(why) = &self.aborted {
            let _ = writeln!(s, "  ABORTED: {why}");
        }
        let _ = writeln!(s, "  sent {} / planned {}, accepted {}, statuses {:?}", self.sent, self.planned, self.accepted, self.statuses);
        let _ = writeln!(s, "  send rate {:.0}/s of {:.0}/s target (shortfall {:.1}%), accepted {:.0}/s, applied {:.0}/s end to end", t.achieved_send_rate, t.target_send_rate, t.send_shortfall_pct, t.accepted_per_s, t.applied_per_s);
        let _ = writeln!(
            s,
            "  loadgen cores {:.2}, {:.1} µs CPU per request; send lag with a free connection p99 {:.2} ms{}",
            self.loadgen_cores_used,
            self.loadgen_us_per_request,
            self.send_lag_ms.p99_ms,
            match (self.generator_limited, t.send_shortfall_pct > 1.0) {
                (true, _) => " (GENERATOR-LIMITED: the shortfall and latency include loadgen's own limit)",
                (false, true) => " (shortfall with connections busy: the system's limit)",
                (false, false) => "",
            }
        );
        let _ = writeln!(s, "  ack latency (from schedule) p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms; service time p99 {:.2} ms", ack.p50_ms, ack.p99_ms, ack.p999_ms, ack.max_ms, self.service_time_ms.p99_ms);
        let covers = match self.system.latency_covers {
            Coverage::Run => "",
            Coverage::Lifetime => " (SYSTEM LIFETIME, not this run)",
        };
        let clocks = match self.system.e2e_clocks {
            Clocks::OneHost => "",
            Clocks::CrossHost => " (CROSS-HOST: the server's acceptance stamp against the worker's clock; their skew is in it)",
        };
        let _ = writeln!(s, "  end-to-end (system) p50 {} p99 {} p99.9 {} ms{covers}{clocks}; drain {:.2} s{}", e2e("p50"), e2e("p99"), e2e("p999"), self.drain_s, if self.drained { "" } else { " (NOT drained)" });
        if let (Some(c), Some(r)) = (self.ceiling_rps, self.ceiling_ratio) {
            let _ = writeln!(s, "  bare-HTTP ceiling {c:.0}/s; accepted/ceiling {:.2}", r);
        }
        if let Some(c) = &self.capacity {
            for st in &c.steps {
                let _ = writeln!(
                    s,
                    "  step {:.0}/s: sent {:.0}/s, accepted {:.0}/s, ack p99 {:.1} ms, system {} µs/event, loadgen {:.1} µs/request{}",
                    st.offered_rate,
                    st.achieved_send_rate,
                    st.accepted_per_s,
                    st.ack_p99_ms,
                    st.system_cpu_us_per_event.map_or("-".into(), |u| format!("{u:.0}")),
                    st.loadgen_us_per_request,
                    if st.within_limits { "" } else if st.generator_limited { " PAST THE KNEE (generator-limited)" } else { " PAST THE KNEE" }
                );
            }
            match (&c.knee, c.knee_ceiling_ratio) {
                (Some(k), Some(r)) => {
                    let _ = writeln!(s, "  knee {:.0}/s offered, {:.0}/s accepted: {r:.2} of the bare-HTTP ceiling", k.offered_rate, k.accepted_per_s);
                }
                (Some(k), None) => {
                    let _ = writeln!(s, "  knee {:.0}/s offered, {:.0}/s accepted (no ceiling measured)", k.offered_rate, k.accepted_per_s);
                }
                (None, _) => {
                    let _ = writeln!(s, "  no knee: the first step was already past the limits");
                }
            }
        }
        if let Some(us) = self.system_cpu_us_per_event {
            let _ = writeln!(s, "  system CPU {us:.0} µs per accepted event (load and drain)");
        }
        let _ = writeln!(s, "  verified {} payments, {} orders: lost {}, double-applied {}, wrong state {}, unexpected applied {}, dead letters {}", v.payments_checked, v.orders_checked, v.lost, v.double_applied, v.wrong_state(), v.unexpected_applied, v.dead_letters_found);
        if v.ignored_checked > 0 {
            let _ = writeln!(s, "  {} Stripe events of unhandled types answered 200 and counted as ignored", v.ignored_checked);
        }
        if v.conflicted_expected + v.reuses_checked > 0 {
            let _ = writeln!(s, "  conflicts: {} payments conflicted, {} reused ids settled ({} sent overlapping)", v.conflicted_expected, v.reuses_checked, v.reuses_overlapped);
        }
        let _ = writeln!(
            s,
            "  unexpected statuses {}, invalid accepted {}; system peak RSS {}, CPU {}",
            self.unexpected_status,
            self.invalid_accepted,
            self.system.rss_peak_mb.map_or("-".into(), |m| format!("{m:.0} MB")),
            self.system.cpu_s.map_or("-".into(), |c| format!("{c:.1} s")),
        );
        for g in &self.gates {
            let _ = writeln!(s, "  gate {:<28} {:>12.2} vs {:>10.2}  {}", g.gate, g.value, g.limit, if g.pass { "ok" } else { "FAILED" });
        }
        for e in &v.examples {
            let _ = writeln!(s, "  example: {e}");
        }
        s
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("report.html"), self.html()?)?;
        std::fs::write(dir.join("timeline.ndjson"), export::timeline_ndjson(&self.timeline))?;
        std::fs::write(dir.join("timeline.csv"), export::timeline_csv(&self.timeline))?;
        std::fs::write(dir.join("latency.hlog"), export::interval_log(self.load_started_unix_s, &self.latency_per_second)?)?;
        std::fs::write(dir.join("gates.junit.xml"), export::junit(&self.scenario.name, &self.gates, self.aborted.as_deref()))?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut s = format!("# loadgen: {}\n\n```\n{}```\n\n", self.scenario.name, self.summary());
        let _ = writeln!(s, "| phase | kind | duration s | target/s | sent | accepted | ack p99 ms | unexpected status |\n|---|---|---|---|---|---|---|---|");
        for p in &self.phases {
            let _ = writeln!(s, "| {} | {} | {} | {:.0} | {} | {} | {:.2} | {} |", p.name, p.kind, p.duration_s, p.target_rate, p.sent, p.accepted, p.ack_latency_ms.p99_ms, p.unexpected_status);
        }
        let _ = writeln!(s, "\n| latency from schedule (ms) | count | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|");
        for (k, p) in &self.ack_latency_ms {
            let _ = writeln!(s, "| {k} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |", p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms);
        }
        let _ = writeln!(s, "\nMachine: {} cores, {}, {}.", self.machine.cores, self.machine.cpu, self.machine.os);
        s
    }

    fn html(&self) -> Result<String, charts::ChartError> {
        let data = charts::RunData {
            timeline: self.timeline.clone(),
            ack_distribution: self.ack_distribution.clone(),
            system: charts::SystemData { timeline: self.system.timeline.clone(), rss_samples_mb: self.system.rss_samples_mb.clone() },
            capacity: self.capacity.clone(),
        };
        Ok(charts::page(&format!("loadgen: {}", self.scenario.name), &self.summary(), &charts::of_run(&data)?))
    }
}
