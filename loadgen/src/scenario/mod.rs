//! Scenarios: what to run against, the load shape, the workload, and the gates, from TOML.
//! Unknown keys are errors, so a typo cannot silently disable a gate.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid scenario {path}")]
    Parse { path: String, source: Box<toml::de::Error> },
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Makes the event stream reproducible.
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub start_rate: f64,
    /// Added to the offered rate at every step.
    pub step_rate: f64,
    pub step_duration_s: f64,
    pub max_steps: usize,
    /// A step whose ack p99 (from schedule, 2xx) passes this is past the knee.
    pub max_p99_ack_ms: f64,
    /// A step that sent this much less than offered is past the knee.
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
                Phase { name: format!("step {rate:.0}/s"), shape: Shape::Constant { rate }, duration_s: self.step_duration_s }
            })
            .collect()
    }
}

fn default_seed() -> u64 {
    42
}

/// Either a running system (`url`) or one to start (`spawn`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub url: Option<String>,
    /// `standalone`, or `split` (server + worker processes on one data directory).
    pub spawn: Option<SpawnMode>,
    /// Worker processes in `split` mode (default 1); more than one needs a queue that
    /// shares partitions among a consumer group (Kafka in `args`).
    pub workers: Option<usize>,
    /// Extra flags for the spawned process(es).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The webhooks binary; default: $WEBHOOKS_BIN, else next to the loadgen executable.
    pub bin: Option<String>,
    /// Bearer token for reads when the system has ADMIN_TOKEN set.
    pub admin_token: Option<String>,
    /// Where the load's requests go (default /api/webhooks/payment). A cheap path such as
    /// /healthz (its 405 answers fail the run) measures the generator's own cost apart.
    pub webhook_path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpawnMode {
    Standalone,
    Split,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    #[default]
    None,
    Standard,
    Stripe,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    #[serde(default)]
    pub scheme: Scheme,
    /// `whsec_...`; passed to a spawned system as WEBHOOK_SECRET or STRIPE_WEBHOOK_SECRET.
    #[serde(default)]
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Orders created before the load starts.
    pub orders: usize,
    /// How each payment's life goes, by weight: pending then success (`paid`), pending then
    /// failed (`failed`), pending, failed, success (`retried`), pending, success, refunded (`refunded`).
    #[serde(default)]
    pub stories: Stories,
    #[serde(default)]
    pub duplicate_fraction: f64,
    /// Of the duplicates, those sent right behind the original (concurrently).
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
    /// rank that disagree (README "conflicts": the smaller pair wins, the payment is flagged).
    #[serde(default)]
    pub amount_variation_fraction: f64,
    /// Events whose id is sent again later with another amount: the later one recorded must
    /// become a "conflict: event id reused" dead letter.
    #[serde(default)]
    pub id_reuse_fraction: f64,
}

fn half() -> f64 {
    0.5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stories {
    pub paid: f64,
    pub failed: f64,
    pub retried: f64,
    pub refunded: f64,
}

impl Default for Stories {
    fn default() -> Self {
        Self { paid: 0.7, failed: 0.1, retried: 0.1, refunded: 0.1 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Connections, each with one request in flight at most and its share of the schedule;
    /// a request due while its connection is busy waits, but its latency still counts from
    /// the scheduled time.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// 429/503 answers are expected (overload scenarios) rather than unexpected.
    #[serde(default)]
    pub allow_shedding: bool,
    /// Threads running the connection loops (default 1): one sends tens of thousands of
    /// requests a second, and a second one takes a core from the system it measures.
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub phases: Vec<Phase>,
}

fn default_in_flight() -> usize {
    256
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawPhase")]
pub struct Phase {
    pub name: String,
    pub shape: Shape,
    pub duration_s: f64,
}

/// The TOML form of a phase: one flat table, so that an unknown or mistyped key is an
/// error that names it (serde cannot combine `flatten` or tagged enums with that).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    kind: Kind,
    #[serde(default)]
    name: String,
    rate: Option<f64>,
    from: Option<f64>,
    to: Option<f64>,
    duration_s: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Constant,
    Ramp,
    Burst,
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
        Ok(Self { name: r.name, shape, duration_s: r.duration_s })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    Constant { rate: f64 },
    Ramp { from: f64, to: f64 },
    /// A constant rate, named apart so that reports show the burst.
    Burst { rate: f64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "three")]
    pub duration_s: f64,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drain {
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    pub max_lost: Option<u64>,
    pub max_double_applied: Option<u64>,
    pub max_wrong_state: Option<u64>,
    pub max_unexpected_status: Option<u64>,
    pub max_invalid_accepted: Option<u64>,
    pub min_accepted_per_s: Option<f64>,
    pub min_applied_per_s: Option<f64>,
    pub max_p99_ack_ms: Option<f64>,
    pub max_p999_ack_ms: Option<f64>,
    pub max_p99_e2e_ms: Option<f64>,
    pub max_drain_s: Option<f64>,
    pub max_rss_mb: Option<f64>,
    pub min_ceiling_ratio: Option<f64>,
    /// Most CPU the spawned system may spend per accepted event over the load and drain, µs.
    pub max_system_cpu_us_per_event: Option<f64>,
    /// Most the achieved send rate may fall behind the target, in percent.
    pub max_send_shortfall_pct: Option<f64>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { source, .. } => ScenarioError::Parse { path: path.display().to_string(), source },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse { path: "<text>".into(), source: Box::new(e) })?;
        if let Some(c) = &s.capacity {
            if !s.load.phases.is_empty() {
                return Err(ScenarioError::Invalid("a [capacity] scenario makes its own steps: leave load.phases out".into()));
            }
            s.load.phases = c.phases();
        }
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.target.url.is_some() == self.target.spawn.is_some() {
            return bad("target: set exactly one of `url` and `spawn`".into());
        }
        if self.load.phases.is_empty() {
            return bad("load.phases: at least one phase".into());
        }
        for (i, p) in self.load.phases.iter().enumerate() {
            let rates = match p.shape {
                Shape::Constant { rate } | Shape::Burst { rate } => vec![rate],
                Shape::Ramp { from, to } => vec![from, to],
            };
            if !(p.duration_s > 0.0 && p.duration_s <= 3600.0) || rates.iter().any(|r| !(*r >= 0.0 && *r <= 1e6)) {
                return bad(format!("load.phases[{i}]: duration_s must be in (0, 3600] and rates in [0, 1e6]"));
            }
        }
        let w = &self.workload;
        let fractions = [
            ("duplicate_fraction", w.duplicate_fraction),
            ("concurrent_duplicate_fraction", w.concurrent_duplicate_fraction),
            ("out_of_order_fraction", w.out_of_order_fraction),
            ("invalid_fraction", w.invalid_fraction),
            ("bad_signature_fraction", w.bad_signature_fraction),
            ("mismatch_fraction", w.mismatch_fraction),
            ("unknown_order_fraction", w.unknown_order_fraction),
            ("failing_fraction", w.failing_fraction),
            ("amount_variation_fraction", w.amount_variation_fraction),
            ("id_reuse_fraction", w.id_reuse_fraction),
        ];
        if let Some((name, _)) = fractions.iter().find(|(_, f)| !(0.0..=1.0).contains(f)) {
            return bad(format!("workload.{name} must be between 0 and 1"));
        }
        if w.invalid_fraction + w.bad_signature_fraction + w.failing_fraction >= 0.9 {
            return bad("workload: invalid + bad_signature + failing fractions leave no valid traffic".into());
        }
        if w.orders == 0 {
            return bad("workload.orders must be at least 1".into());
        }
        if w.bad_signature_fraction > 0.0 && self.signing.scheme == Scheme::None {
            return bad("workload.bad_signature_fraction needs signing.scheme = standard or stripe".into());
        }
        if self.load.max_in_flight == 0 {
            return bad("load.max_in_flight must be at least 1".into());
        }
        Ok(())
    }

    /// Planned requests over all phases.
    pub fn planned_requests(&self) -> u64 {
        self.load.phases.iter().map(|p| crate::plan::phase_count(p)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
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
