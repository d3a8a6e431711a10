//! Every field of a parsed scenario against its allowed range, all at once: a file is
//! fixed in one pass, and nothing out of range reaches the run (a negative duration would
//! panic in `Duration::from_secs_f64`, the drain's after the whole load had run).
//! docs/scenario-format.md lists the same ranges.

use super::{AbortGate, Format, Scenario, Scheme, Shape, SpawnMode, Workload};

/// Most requests a second loadgen is asked to plan for one phase.
const MAX_RATE: f64 = 1e6;
/// A phase or capacity step of more than an hour is a mistake, not a soak.
const MAX_PHASE_S: f64 = 3600.0;

/// Collects each failed check as `field: must be <range>, got <value>`.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn fail(&mut self, field: &str, allowed: &str, got: impl std::fmt::Display) {
        self.0.push(format!("{field}: must be {allowed}, got {got}"));
    }

    /// `0 < v <= max`; NaN fails.
    fn positive(&mut self, field: &str, v: f64, max: f64, unit: &str) {
        if !(v > 0.0 && v <= max) {
            self.fail(field, &format!("above 0 and at most {max}{unit}"), v);
        }
    }

    /// `lo <= v <= hi`; NaN fails.
    fn within(&mut self, field: &str, v: f64, lo: f64, hi: f64) {
        if !(lo..=hi).contains(&v) {
            self.fail(field, &format!("between {lo} and {hi}"), v);
        }
    }

    fn count(&mut self, field: &str, v: usize, lo: usize, hi: usize) {
        if !(lo..=hi).contains(&v) {
            self.fail(field, &format!("an integer from {lo} to {hi}"), v);
        }
    }

    /// A gate's limit: a finite number from 0.
    fn limit(&mut self, field: &str, v: Option<f64>) {
        if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
            self.fail(field, "a finite number, 0 or more", v);
        }
    }
}

pub(super) fn problems(s: &Scenario) -> Vec<String> {
    let mut c = Checks::default();
    name(&mut c, &s.name);
    target(&mut c, s);
    signing(&mut c, s);
    workload(&mut c, s);
    load(&mut c, s);
    c.positive("ceiling.duration_s", s.ceiling.duration_s, 600.0, " s");
    c.count("ceiling.connections", s.ceiling.connections, 1, 4096);
    c.positive("drain.timeout_s", s.drain.timeout_s, 86_400.0, " s");
    gates(&mut c, s);
    capacity(&mut c, s);
    c.0
}

fn name(c: &mut Checks, name: &str) {
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || " -_./".contains(ch);
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        c.fail("name", "1 to 64 letters, digits, spaces or -_./", format!("{name:?}"));
    }
}

fn target(c: &mut Checks, s: &Scenario) {
    let t = &s.target;
    if t.url.is_some() == t.spawn.is_some() {
        c.fail("target", "exactly one of `url` and `spawn`", if t.url.is_some() { "both" } else { "neither" });
    }
    if let Some(url) = &t.url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            c.fail("target.url", "an http:// or https:// address", format!("{url:?}"));
        }
    }
    if let Some(n) = t.workers {
        if t.spawn != Some(SpawnMode::Split) {
            c.fail("target.workers", "set only with spawn = \"split\"", n);
        }
        c.count("target.workers", n, 1, 64);
    }
    if let Some(path) = &t.webhook_path {
        if !path.starts_with('/') {
            c.fail("target.webhook_path", "a path starting with /", format!("{path:?}"));
        }
    }
}

fn signing(c: &mut Checks, s: &Scenario) {
    let g = &s.signing;
    if g.scheme != Scheme::None && g.secret.is_empty() && g.secret_env.is_none() {
        c.fail("signing.secret", "set (or signing.secret_env) when signing.scheme is standard or stripe", "nothing");
    }
}

fn workload(c: &mut Checks, s: &Scenario) {
    let w = &s.workload;
    c.count("workload.orders", w.orders, 1, 1_000_000);
    let st = &w.stories;
    let stories = [
        ("paid", st.paid),
        ("failed", st.failed),
        ("retried", st.retried),
        ("refunded", st.refunded),
        ("partially_refunded", st.partially_refunded),
        ("disputed", st.disputed),
    ];
    for (name, weight) in stories {
        c.within(&format!("workload.stories.{name}"), weight, 0.0, MAX_RATE);
    }
    if stories.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
        c.fail("workload.stories", "weights with a sum above 0", 0);
    }
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
        ("ignored_fraction", w.ignored_fraction),
    ];
    for (name, f) in fractions {
        c.within(&format!("workload.{name}"), f, 0.0, 1.0);
    }
    match w.format {
        Format::Flat => flat_only(c, w),
        Format::Stripe => stripe_only(c, s),
    }
    let refused = w.invalid_fraction + w.bad_signature_fraction + w.failing_fraction + w.ignored_fraction;
    if refused >= 0.9 {
        c.fail("workload.invalid_fraction + bad_signature_fraction + failing_fraction + ignored_fraction", "below 0.9, to leave valid traffic", refused);
    }
    if w.bad_signature_fraction > 0.0 && s.signing.scheme == Scheme::None {
        c.fail("workload.bad_signature_fraction", "0 unless signing.scheme is standard or stripe", w.bad_signature_fraction);
    }
}

/// Partial refunds, disputes and unhandled types exist only in Stripe's events.
fn flat_only(c: &mut Checks, w: &Workload) {
    let stripe_only = [("stories.partially_refunded", w.stories.partially_refunded), ("stories.disputed", w.stories.disputed), ("ignored_fraction", w.ignored_fraction)];
    zero(c, &stripe_only, "0 unless workload.format is stripe");
}

fn zero(c: &mut Checks, fields: &[(&str, f64)], allowed: &str) {
    for (name, v) in fields.iter().filter(|(_, v)| *v > 0.0) {
        c.fail(&format!("workload.{name}"), allowed, v);
    }
}

/// Stripe sends its own events, signed its way, and redelivers them byte for byte: a payment
/// claimed by another order, an id reused with another payload and amounts that vary within a
/// payment are a flat sender's mistakes, not Stripe's.
fn stripe_only(c: &mut Checks, s: &Scenario) {
    let w = &s.workload;
    if s.signing.scheme != Scheme::Stripe {
        c.fail("signing.scheme", "stripe when workload.format is stripe", format!("{:?}", s.signing.scheme).to_lowercase());
    }
    let flat_only = [("failing_fraction", w.failing_fraction), ("id_reuse_fraction", w.id_reuse_fraction), ("amount_variation_fraction", w.amount_variation_fraction)];
    zero(c, &flat_only, "0 when workload.format is stripe");
}

fn load(c: &mut Checks, s: &Scenario) {
    let l = &s.load;
    c.count("load.max_in_flight", l.max_in_flight, 1, 65_536);
    if let Some(n) = l.threads {
        c.count("load.threads", n, 1, 64);
    }
    if l.phases.is_empty() {
        c.fail("load.phases", "at least one phase", 0);
    }
    for (i, p) in l.phases.iter().enumerate() {
        c.positive(&format!("load.phases[{i}].duration_s"), p.duration_s, MAX_PHASE_S, " s");
        c.limit(&format!("load.phases[{i}].gates.max_p99_ack_ms"), p.gates.max_p99_ack_ms);
        c.limit(&format!("load.phases[{i}].gates.max_p999_ack_ms"), p.gates.max_p999_ack_ms);
        c.limit(&format!("load.phases[{i}].gates.min_accepted_per_s"), p.gates.min_accepted_per_s);
        let rates = match p.shape {
            Shape::Constant { rate } | Shape::Burst { rate } => vec![("rate", rate)],
            Shape::Ramp { from, to } => vec![("from", from), ("to", to)],
        };
        for (key, r) in rates {
            c.within(&format!("load.phases[{i}].{key}"), r, 0.0, MAX_RATE);
        }
    }
}

fn gates(c: &mut Checks, s: &Scenario) {
    let g = &s.gates;
    c.limit("gates.min_accepted_per_s", g.min_accepted_per_s);
    c.limit("gates.min_applied_per_s", g.min_applied_per_s);
    c.limit("gates.max_p99_ack_ms", g.max_p99_ack_ms);
    c.limit("gates.max_p999_ack_ms", g.max_p999_ack_ms);
    c.limit("gates.max_p99_e2e_ms", g.max_p99_e2e_ms);
    c.limit("gates.max_drain_s", g.max_drain_s);
    c.limit("gates.max_rss_mb", g.max_rss_mb);
    c.limit("gates.min_ceiling_ratio", g.min_ceiling_ratio);
    c.limit("gates.max_system_cpu_us_per_event", g.max_system_cpu_us_per_event);
    if let Some(pct) = g.max_send_shortfall_pct {
        c.within("gates.max_send_shortfall_pct", pct, 0.0, 100.0);
    }
    for gate in &g.abort_on_fail {
        let set = match gate {
            AbortGate::MaxUnexpectedStatus => g.max_unexpected_status.is_some(),
            AbortGate::MaxInvalidAccepted => g.max_invalid_accepted.is_some(),
            AbortGate::MaxP99AckMs => g.max_p99_ack_ms.is_some(),
        };
        if !set {
            c.fail("gates.abort_on_fail", "gates set in [gates]", format!("{}, which is not", serde_json::to_string(gate).unwrap_or_default()));
        }
    }
}

fn capacity(c: &mut Checks, s: &Scenario) {
    let Some(k) = &s.capacity else { return };
    c.positive("capacity.start_rate", k.start_rate, MAX_RATE, "/s");
    c.within("capacity.step_rate", k.step_rate, 0.0, MAX_RATE);
    c.positive("capacity.step_duration_s", k.step_duration_s, MAX_PHASE_S, " s");
    c.count("capacity.max_steps", k.max_steps, 1, 1000);
    c.positive("capacity.max_p99_ack_ms", k.max_p99_ack_ms, 600_000.0, " ms");
    c.within("capacity.max_shortfall_pct", k.max_shortfall_pct, 0.0, 100.0);
}

#[cfg(test)]
mod tests {
    use crate::scenario::tests::MINIMAL;
    use crate::scenario::{Scenario, ScenarioError};


    fn problems(text: &str) -> Vec<String> {
        match Scenario::parse_with_env(text, &|_| None) {
            Err(ScenarioError::Invalid(p)) => p,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    /// Each out-of-range value is reported with its field and its allowed range, and a
    /// negative duration is an error rather than a panic later in the run.
    #[test]
    fn each_out_of_range_field_is_named_with_its_range() {
        let cases = [
            ("[drain]\ntimeout_s = -1", "drain.timeout_s: must be above 0 and at most 86400 s, got -1"),
            ("[ceiling]\nenabled = true\nduration_s = -3", "ceiling.duration_s: must be above 0 and at most 600 s, got -3"),
            ("[ceiling]\nconnections = 0", "ceiling.connections: must be an integer from 1 to 4096, got 0"),
            ("[gates]\nmax_send_shortfall_pct = 150", "gates.max_send_shortfall_pct: must be between 0 and 100, got 150"),
            ("[gates]\nmax_p99_ack_ms = -5", "gates.max_p99_ack_ms: must be a finite number, 0 or more, got -5"),
        ];
        for (extra, expected) in cases {
            let p = problems(&format!("{MINIMAL}\n{extra}"));
            assert!(p.iter().any(|m| m.starts_with(expected)), "{extra}: {p:?}");
        }
        let p = problems(&MINIMAL.replace("duration_s = 1", "duration_s = -1").replace("rate = 100", "rate = nan"));
        assert!(p.iter().any(|m| m.starts_with("load.phases[0].duration_s: must be above 0")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("load.phases[0].rate: must be between 0 and 1000000")), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = MINIMAL.replace("name = \"t\"", "name = \"\"").replace("orders = 10", "orders = 0") + "\n[drain]\ntimeout_s = 0";
        let p = problems(&text);
        for field in ["name:", "workload.orders:", "drain.timeout_s:"] {
            assert!(p.iter().any(|m| m.starts_with(field)), "{field} in {p:?}");
        }
    }

    #[test]
    fn cross_field_rules_name_both_fields() {
        let p = problems(&MINIMAL.replace("spawn = \"standalone\"", "spawn = \"standalone\"\nworkers = 2"));
        assert!(p.iter().any(|m| m.contains("target.workers") && m.contains("split")), "{p:?}");
        let p = problems(&(MINIMAL.to_owned() + "\n[signing]\nscheme = \"standard\""));
        assert!(p.iter().any(|m| m.starts_with("signing.secret:") && m.contains("secret_env")), "{p:?}");
        let stripe = MINIMAL.replace("orders = 10", "orders = 10\nformat = \"stripe\"\nfailing_fraction = 0.1");
        let p = problems(&stripe);
        assert!(p.iter().any(|m| m.starts_with("signing.scheme:") && m.contains("workload.format is stripe")), "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("workload.failing_fraction:") && m.contains("stripe")), "{p:?}");
        let p = problems(&MINIMAL.replace("orders = 10", "orders = 10\nignored_fraction = 0.1"));
        assert!(p.iter().any(|m| m.starts_with("workload.ignored_fraction:") && m.contains("unless workload.format is stripe")), "{p:?}");
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let text = MINIMAL.to_owned() + "\n[signing]\nscheme = \"standard\"\nsecret_env = \"HOOK_SECRET\"";
        let s = Scenario::parse_with_env(&text, &|name| (name == "HOOK_SECRET").then(|| "whsec_abc".to_owned())).unwrap();
        assert_eq!(s.signing.secret, "whsec_abc");
        let report = serde_json::to_string(&s).unwrap();
        assert!(!report.contains("whsec_abc"), "a secret never reaches a report: {report}");
        let p = problems(&text);
        assert!(p.iter().any(|m| m.contains("signing.secret_env") && m.contains("HOOK_SECRET is not set")), "{p:?}");
        let both = text.replace("secret_env", "secret = \"whsec_x\"\nsecret_env");
        let p = problems(&both);
        assert!(p.iter().any(|m| m.contains("either signing.secret or signing.secret_env")), "{p:?}");
    }
}
