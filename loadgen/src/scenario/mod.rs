//! Scenarios: what to run against, the load shape, the workload, and the gates, from TOML.
//! Unknown keys are errors, so a typo cannot silently disable a gate.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod validate;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid scenario {path}")]
    Parse { path: String, source: Box<toml::de::Error> },
    /// Every field that failed its check, each named with its allowed range.
    #[error("invalid scenario:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Names the run in reports and prefixes its ids: 1 to 64 letters, digits, spaces or `-_./`.
    pub name: String,
    /// Makes the event stream reproducible; default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub target: Target,
    #[serde(default)]
    pub signing: Signing,
    pub workload: Workload,
    pub load: Load,
    #[serde(default)]
    pub ceiling: Ceiling,
    #[serde(default)]
    pub drain: Drain,
    #[serde(default)]
    pub gates: Gates,
    /// A capacity search instead of a fixed load: `load.phases` are then the steps.
    #[serde(default)]
    pub capacity: Option<Capacity>,
}

/// Steps the offered rate up, one constant step after another, and stops past the knee:
/// the first step whose ack p99 or send shortfall passes its limit.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// The first step's offered rate, per second: above 0 and at most 1,000,000.
    pub start_rate: f64,
    /// Added to the offered rate at every step, 0 to 1,000,000.
    pub step_rate: f64,
    /// Seconds per step, above 0 and at most 3600.
    pub step_duration_s: f64,
    /// Steps at most, 1 to 1000.
    pub max_steps: usize,
    /// A step whose ack p99 (from schedule, 2xx) passes this is past the knee; ms, above 0 and at most 600000.
    pub max_p99_ack_ms: f64,
    /// A step that sent this much less than offered is past the knee; percent, 0 to 100, default 5.
    #[serde(default = "five")]
    pub max_shortfall_pct: f64,
}

fn five() -> f64 {
    5.0
}

impl Capacity {
    /// The steps as constant phases, named by their offered rate.
    pub fn phases(&self) -> Vec<Phase> {
        (0..self.max_steps)
            .map(|k| {
                let rate = self.start_rate + self.step_rate * k as f64;
                Phase { name: format!("step {rate:.0}/s"), shape: Shape::Constant { rate }, duration_s: self.step_duration_s, gates: PhaseGates::default() }
            })
            .collect()
    }
}

fn default_seed() -> u64 {
    42
}

/// Either a running system (`url`) or one to start (`spawn`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A running system, http:// or https://; exclusive with `spawn`.
    pub url: Option<String>,
    /// `standalone`, or `split` (server + worker processes on one data directory).
    pub spawn: Option<SpawnMode>,
    /// Worker processes in `split` mode only, 1 to 64 (default 1); more than one needs a queue that
    /// shares partitions among a consumer group (Kafka in `args`).
    pub workers: Option<usize>,
    /// Extra flags for the spawned process(es).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of the spawned process(es). Written to reports: keep secrets out.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The webhooks binary; default: $WEBHOOKS_BIN, else next to the loadgen executable.
    pub bin: Option<String>,
    /// Bearer token for reads when the system has ADMIN_TOKEN set. Never written to reports.
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// The environment variable holding `admin_token`, which then stays out of the file.
    pub admin_token_env: Option<String>,
    /// Where the load's requests go, starting with / (default /api/webhooks/payment, or
    /// /api/webhooks/stripe for `workload.format = "stripe"`). A cheap path such as
    /// /healthz (its 405 answers fail the run) measures the generator's own cost apart.
    pub webhook_path: Option<String>,
    /// A receiver that is not ours (with `url`): a TOML file of its paths, field names and
    /// status values (docs/conformance.md). Its end state is then read one order and payment
    /// at a time; it has no stats, dead letters or health check of ours to use.
    pub receiver: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpawnMode {
    Standalone,
    Split,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    None,
    Standard,
    Stripe,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// How requests are signed: `none` (default), `standard` (Standard Webhooks) or `stripe`.
    #[serde(default)]
    pub scheme: Scheme,
    /// `whsec_...`; passed to a spawned system as WEBHOOK_SECRET or STRIPE_WEBHOOK_SECRET.
    /// Never written to reports.
    #[serde(default, skip_serializing)]
    pub secret: String,
    /// The environment variable holding `secret`, which then stays out of the file.
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// What the requests look like: `flat` (default), the seed's body, or `stripe`, Stripe's
    /// event envelope (needs `signing.scheme = "stripe"`).
    #[serde(default)]
    pub format: Format,
    /// Orders created before the load starts, 1 to 1,000,000.
    pub orders: usize,
    /// How each payment's story goes, by weight: pending then success (`paid`), pending then
    /// failed (`failed`), pending, failed, success (`retried`), pending, success, refunded
    /// (`refunded`); Stripe only: pending, success, one or two refunds of part of it, the second
    /// sometimes of the rest (`partially_refunded`); pending, success, a dispute, mostly closed
    /// won or lost (`disputed`).
    #[serde(default)]
    pub stories: Stories,
    /// Events sent twice. Every `*_fraction` is 0 to 1, default 0 unless said.
    #[serde(default)]
    pub duplicate_fraction: f64,
    /// Of the duplicates, those sent right behind the original (concurrently); default 0.5.
    #[serde(default = "half")]
    pub concurrent_duplicate_fraction: f64,
    /// Payments whose events are sent in a shuffled order.
    #[serde(default)]
    pub out_of_order_fraction: f64,
    /// Requests that must be refused with 400/415/422.
    #[serde(default)]
    pub invalid_fraction: f64,
    /// Requests with a wrong signature (only with a signing scheme): must get 401.
    #[serde(default)]
    pub bad_signature_fraction: f64,
    /// Payments whose amount differs from their order's.
    #[serde(default)]
    pub mismatch_fraction: f64,
    /// Payments for orders that are never created.
    #[serde(default)]
    pub unknown_order_fraction: f64,
    /// Events for a payment claimed by another order: accepted, then dead-lettered.
    #[serde(default)]
    pub failing_fraction: f64,
    /// Payments whose events carry different amounts or currencies, with two events of one
    /// rank that disagree (the smaller pair wins, the payment is flagged).
    #[serde(default)]
    pub amount_variation_fraction: f64,
    /// Events whose id is sent again later with another amount: the later one recorded must
    /// become a "conflict: event id reused" dead letter.
    #[serde(default)]
    pub id_reuse_fraction: f64,
    /// Stripe only: requests of event types the system does not handle, naming payments of the
    /// run: each must be answered 200, counted as ignored, and never applied.
    #[serde(default)]
    pub ignored_fraction: f64,
}

/// The body format of the load's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Flat,
    Stripe,
}

fn half() -> f64 {
    0.5
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stories {
    /// Weights, 0 or more with a sum above 0; default 0.7, 0.1, 0.1, 0.1, 0, 0.
    pub paid: f64,
    pub failed: f64,
    pub retried: f64,
    pub refunded: f64,
    #[serde(default)]
    pub partially_refunded: f64,
    #[serde(default)]
    pub disputed: f64,
}

impl Default for Stories {
    fn default() -> Self {
        Self { paid: 0.7, failed: 0.1, retried: 0.1, refunded: 0.1, partially_refunded: 0.0, disputed: 0.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Connections (1 to 65536, default 256), each with one request in flight at most and its share of the schedule;
    /// a request due while its connection is busy waits, but its latency still counts from
    /// the scheduled time.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// 429/503 answers are expected (overload scenarios) rather than unexpected.
    #[serde(default)]
    pub allow_shedding: bool,
    /// Threads running the connection loops (1 to 64, default 1): one sends tens of thousands of
    /// requests a second, and a second one takes a core from the system it measures.
    #[serde(default)]
    pub threads: Option<usize>,
    /// The load's phases, in order; at least one (none with `[capacity]`).
    #[serde(default)]
    pub phases: Vec<Phase>,
}

fn default_in_flight() -> usize {
    256
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "RawPhase")]
pub struct Phase {
    pub name: String,
    pub shape: Shape,
    pub duration_s: f64,
    pub gates: PhaseGates,
}

/// Thresholds on one phase's requests alone (by scheduled instant), beside the run's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseGates {
    /// Most ack latency at p99 (from schedule, 2xx) of this phase's requests, ms; 0 or more.
    pub max_p99_ack_ms: Option<f64>,
    /// Most ack latency at p99.9 (from schedule, 2xx) of this phase's requests, ms; 0 or more.
    pub max_p999_ack_ms: Option<f64>,
    /// Most answers in this phase other than the workload expected.
    pub max_unexpected_status: Option<u64>,
    /// Fewest 200s per second of the phase's duration; 0 or more.
    pub min_accepted_per_s: Option<f64>,
}

// The TOML form of a phase is one flat table, so that an unknown or mistyped key is an
// error that names it (serde cannot combine `flatten` or tagged enums with that).
/// One phase of the load: `constant` and `burst` take `rate`, `ramp` takes `from` and `to`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    kind: Kind,
    /// Shown in reports; default "phase N".
    #[serde(default)]
    name: String,
    /// Requests per second, 0 to 1,000,000 (`constant`, `burst`).
    rate: Option<f64>,
    /// Requests per second at the start of a `ramp`, 0 to 1,000,000.
    from: Option<f64>,
    /// Requests per second at the end of a `ramp`, 0 to 1,000,000.
    to: Option<f64>,
    /// Seconds, above 0 and at most 3600.
    duration_s: f64,
    /// Thresholds on this phase alone.
    #[serde(default)]
    gates: PhaseGates,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// A steady `rate`.
    Constant,
    /// From `from` to `to`, linearly.
    Ramp,
    /// A steady `rate`, named apart so that reports show the burst.
    Burst,
}

impl Phase {
    /// Requests the phase plans.
    pub fn requests(&self) -> u64 {
        let n = match self.shape {
            Shape::Constant { rate } | Shape::Burst { rate } => rate * self.duration_s,
            Shape::Ramp { from, to } => (from + to) / 2.0 * self.duration_s,
        };
        n.floor().max(0.0) as u64
    }

    /// The rate the phase's planned requests average out to.
    pub fn target_rate(&self) -> f64 {
        self.requests() as f64 / self.duration_s
    }
}

impl TryFrom<RawPhase> for Phase {
    type Error = String;

    fn try_from(r: RawPhase) -> Result<Self, String> {
        let shape = match (r.kind, r.rate, r.from, r.to) {
            (Kind::Constant, Some(rate), None, None) => Shape::Constant { rate },
            (Kind::Burst, Some(rate), None, None) => Shape::Burst { rate },
            (Kind::Ramp, None, Some(from), Some(to)) => Shape::Ramp { from, to },
            (Kind::Ramp, ..) => return Err("a `ramp` phase takes `from` and `to` (and no `rate`)".into()),
            _ => return Err("a `constant` or `burst` phase takes `rate` (and no `from`/`to`)".into()),
        };
        Ok(Self { name: r.name, shape, duration_s: r.duration_s, gates: r.gates })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    Constant { rate: f64 },
    Ramp { from: f64, to: f64 },
    /// A constant rate, named apart so that reports show the burst.
    Burst { rate: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    /// Measure the bare-HTTP ceiling (closed loop on /healthz) before the load.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds, above 0 and at most 600; default 3.
    #[serde(default = "three")]
    pub duration_s: f64,
    /// Closed-loop connections, 1 to 4096; default 64.
    #[serde(default = "default_connections")]
    pub connections: usize,
}

impl Default for Ceiling {
    fn default() -> Self {
        Self { enabled: false, duration_s: 3.0, connections: default_connections() }
    }
}

fn three() -> f64 {
    3.0
}

fn default_connections() -> usize {
    64
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    /// Seconds to wait after the load until the system has applied what it accepted, above
    /// 0 and at most 86400; default 60.
    #[serde(default = "sixty")]
    pub timeout_s: f64,
}

impl Default for Drain {
    fn default() -> Self {
        Self { timeout_s: sixty() }
    }
}

fn sixty() -> f64 {
    60.0
}

/// Thresholds; a run that crosses one exits with code 99.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// Accepted events never applied; 0 when unset.
    pub max_lost: Option<u64>,
    /// Events applied twice; 0 when unset.
    pub max_double_applied: Option<u64>,
    /// Payments or orders whose stored state is not the expected one, plus events applied that should not have been.
    pub max_wrong_state: Option<u64>,
    /// Answers other than the workload expected for the request.
    pub max_unexpected_status: Option<u64>,
    /// Invalid requests answered 2xx.
    pub max_invalid_accepted: Option<u64>,
    /// Fewest 200s per second over the send window; 0 or more.
    pub min_accepted_per_s: Option<f64>,
    /// Fewest distinct events applied per second, load and drain; 0 or more.
    pub min_applied_per_s: Option<f64>,
    /// Most ack latency at p99 (from schedule, 2xx), ms; 0 or more.
    pub max_p99_ack_ms: Option<f64>,
    /// Most ack latency at p99.9 (from schedule, 2xx), ms; 0 or more.
    pub max_p999_ack_ms: Option<f64>,
    /// Most end-to-end latency at p99 (the system's, over the run), ms; 0 or more.
    pub max_p99_e2e_ms: Option<f64>,
    /// Most seconds the drain may take (a run that did not drain fails); 0 or more.
    pub max_drain_s: Option<f64>,
    /// Most peak resident memory of the spawned system, MB; 0 or more.
    pub max_rss_mb: Option<f64>,
    /// Fewest accepted per second as a fraction of the bare-HTTP ceiling (needs `[ceiling]`); 0 or more.
    pub min_ceiling_ratio: Option<f64>,
    /// Most CPU the spawned system may spend per accepted event over the load and drain, µs.
    pub max_system_cpu_us_per_event: Option<f64>,
    /// Most the achieved send rate may fall behind the target, in percent, 0 to 100.
    pub max_send_shortfall_pct: Option<f64>,
    /// Gates of this table that end the load as soon as they fail, checked every 100 ms
    /// while it runs; the report is still written, and loadgen exits 98. Each must be set.
    #[serde(default)]
    pub abort_on_fail: Vec<AbortGate>,
}

/// The gates that can be judged while the load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AbortGate {
    MaxUnexpectedStatus,
    MaxInvalidAccepted,
    /// Judged on the accepted requests' p99 so far, refreshed every 1000 requests per thread.
    MaxP99AckMs,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { source, .. } => ScenarioError::Parse { path: path.display().to_string(), source },
            other => other,
        })
    }

    /// Parses and checks a scenario, reading `*_env` secrets from the process environment.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        Self::parse_with_env(text, &|name| std::env::var(name).ok())
    }

    /// As [`Scenario::parse`], with `env` standing for the environment.
    pub fn parse_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse { path: "<text>".into(), source: Box::new(e) })?;
        let mut problems = s.resolve_secrets(env);
        match &s.capacity {
            Some(_) if !s.load.phases.is_empty() => problems.push("load.phases: leave out in a [capacity] scenario, which makes its own steps".into()),
            Some(c) => s.load.phases = c.phases(),
            None => {}
        }
        problems.extend(validate::problems(&s));
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(ScenarioError::Invalid(problems))
        }
    }

    /// Fills `secret` and `admin_token` from the variables their `*_env` fields name.
    fn resolve_secrets(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut resolve = |field: &str, name: &Option<String>, inline: bool| -> Option<String> {
            let name = name.as_ref()?;
            if inline {
                problems.push(format!("{field}_env: set either {field} or {field}_env, not both"));
                return None;
            }
            match env(name).filter(|v| !v.is_empty()) {
                Some(v) => Some(v),
                None => {
                    problems.push(format!("{field}_env: the environment variable {name} is not set or empty"));
                    None
                }
            }
        };
        if let Some(v) = resolve("signing.secret", &self.signing.secret_env, !self.signing.secret.is_empty()) {
            self.signing.secret = v;
        }
        if let Some(v) = resolve("target.admin_token", &self.target.admin_token_env, self.target.admin_token.is_some()) {
            self.target.admin_token = Some(v);
        }
        problems
    }

    /// The JSON Schema of the scenario format, as checked in at scenarios/scenario.schema.json.
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Scenario);
        // A schema of plain structs always serializes.
        serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n"
    }

    /// Where the load's events go, unless the scenario says.
    pub fn webhook_path(&self) -> String {
        let default = match self.workload.format {
            Format::Flat => "/api/webhooks/payment",
            Format::Stripe => "/api/webhooks/stripe",
        };
        self.target.webhook_path.clone().unwrap_or_else(|| default.into())
    }

    /// Planned requests over all phases.
    pub fn planned_requests(&self) -> u64 {
        self.load.phases.iter().map(Phase::requests).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MINIMAL: &str = r#"
        name = "t"
        [target]
        spawn = "standalone"
        [workload]
        orders = 10
        [load]
        [[load.phases]]
        kind = "constant"
        rate = 100
        duration_s = 1
    "#;

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(s.seed, 42);
        assert_eq!(s.load.phases[0].shape, Shape::Constant { rate: 100.0 });
        assert_eq!(s.planned_requests(), 100);
    }

    #[test]
    fn errors_name_the_field() {
        let typo = MINIMAL.replace("orders = 10", "orders = 10\nduplicate_fractoin = 0.1");
        let e = anyhow::Error::from(Scenario::parse(&typo).unwrap_err());
        assert!(format!("{e:#}").contains("duplicate_fractoin"), "{e:#}");
        let wrong_type = MINIMAL.replace("rate = 100", "rate = \"fast\"");
        let e = anyhow::Error::from(Scenario::parse(&wrong_type).unwrap_err());
        assert!(format!("{e:#}").contains("rate"), "{e:#}");
        let phase_typo = MINIMAL.replace("rate = 100", "rate = 100\nduraton_s = 2");
        let e = anyhow::Error::from(Scenario::parse(&phase_typo).unwrap_err());
        assert!(format!("{e:#}").contains("duraton_s"), "{e:#}");
        let bad_fraction = MINIMAL.replace("orders = 10", "orders = 10\ninvalid_fraction = 2.0");
        assert!(Scenario::parse(&bad_fraction).unwrap_err().to_string().contains("invalid_fraction"));
        let both = MINIMAL.replace("spawn = \"standalone\"", "spawn = \"standalone\"\nurl = \"http://x\"");
        assert!(Scenario::parse(&both).unwrap_err().to_string().contains("target"));
    }

    const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/scenario.schema.json");

    #[test]
    fn the_checked_in_schema_is_what_the_types_generate() {
        let checked_in = std::fs::read_to_string(SCHEMA).unwrap();
        assert!(checked_in == Scenario::json_schema(), "scenarios/scenario.schema.json is stale: run `loadgen schema > scenarios/scenario.schema.json`");
    }

    /// Every field path in the schema (`load.phases[].rate`), following references.
    fn field_paths(schema: &serde_json::Value, defs: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        let target = |v: &serde_json::Value| {
            let r = v["$ref"].as_str().or_else(|| v["anyOf"].as_array()?.iter().find_map(|x| x["$ref"].as_str()))?;
            defs.get(r.rsplit('/').next()?).filter(|d| d.get("properties").is_some())
        };
        for (k, v) in schema["properties"].as_object().into_iter().flatten() {
            let path = format!("{prefix}{k}");
            match (target(v), target(&v["items"])) {
                (Some(d), _) => field_paths(d, defs, &format!("{path}."), out),
                (None, Some(d)) => field_paths(d, defs, &format!("{path}[]."), out),
                (None, None) => out.push(path),
            }
        }
    }

    #[test]
    fn the_reference_page_lists_every_field() {
        let schema: serde_json::Value = serde_json::from_str(&Scenario::json_schema()).unwrap();
        let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/scenario-format.md")).unwrap();
        let mut paths = Vec::new();
        field_paths(&schema, &schema["$defs"], "", &mut paths);
        assert!(paths.len() > 50 && paths.contains(&"load.phases[].duration_s".to_owned()), "{paths:?}");
        let missing: Vec<&String> = paths.iter().filter(|p| !page.contains(&format!("| `{p}` |"))).collect();
        assert!(missing.is_empty(), "docs/scenario-format.md has no row for {missing:?}");
    }

    #[test]
    fn every_shipped_scenario_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 6, "{seen} scenarios");
    }
}
