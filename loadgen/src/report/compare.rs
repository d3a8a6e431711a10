//! `loadgen compare BASE.json NEW.json`: the differences that matter, a verdict, and
//! optionally a page with both runs' charts overlaid.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::report::charts::{self, ChartError, RunData};

/// Reads a report.json; every error names the file.
pub fn read_report(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a loadgen report.json", path.display()))
}

/// A figure: its name on the command line and in the table, where it is in report.json,
/// and whether more is better.
pub const FIGURES: &[(&str, &str, bool)] = &[
    ("accepted_per_s", "/throughput/accepted_per_s", true),
    ("applied_per_s", "/throughput/applied_per_s", true),
    ("ack_p50_ms", "/ack_latency_ms/2xx/p50_ms", false),
    ("ack_p99_ms", "/ack_latency_ms/2xx/p99_ms", false),
    ("ack_p999_ms", "/ack_latency_ms/2xx/p999_ms", false),
    ("e2e_p99_ms", "/system/e2e_latency_ms/p99", false),
    ("drain_s", "/drain_s", false),
    ("rss_peak_mb", "/system/rss_peak_mb", false),
    ("system_cpu_us_per_event", "/system_cpu_us_per_event", false),
    ("loadgen_us_per_request", "/loadgen_us_per_request", false),
];

/// Counts that must never grow.
const CORRECTNESS: &[(&str, &str)] = &[
    ("lost", "/verification/lost"),
    ("double applied", "/verification/double_applied"),
    ("wrong payment state", "/verification/wrong_payment_state"),
    ("wrong order state", "/verification/wrong_order_state"),
    ("unexpected status", "/unexpected_status"),
    ("invalid accepted", "/invalid_accepted"),
];

/// What must be equal for two runs' figures to be comparable: the load (scenario less its
/// target, whose binary, address and flags are what an A/B run changes), and the machine.
const SAME: &[(&str, &str)] = &[
    ("scenario name", "/scenario/name"),
    ("seed", "/scenario/seed"),
    ("workload", "/scenario/workload"),
    ("load", "/scenario/load"),
    ("capacity search", "/scenario/capacity"),
    ("ceiling", "/scenario/ceiling"),
    ("signing scheme", "/scenario/signing/scheme"),
    ("machine", "/machine/host"),
    ("CPU", "/machine/cpu"),
    ("cores", "/machine/cores"),
];

/// How strict a comparison is.
#[derive(Debug, Clone)]
pub struct Options {
    /// Allowed relative change for every figure (0.2 = 20 %) when `fail_on` is empty.
    pub tolerance: f64,
    /// Only these figures fail the comparison, each with its own allowed relative change.
    pub fail_on: Vec<(String, f64)>,
}

impl Options {
    /// The allowed change for `figure`, if it is one that fails the comparison.
    fn threshold(&self, figure: &str) -> Option<f64> {
        if self.fail_on.is_empty() {
            return Some(self.tolerance);
        }
        self.fail_on.iter().find(|(f, _)| f == figure).map(|(_, t)| *t)
    }
}

/// A `--fail-on` value: `FIGURE` or `FIGURE=TOLERANCE`, the figure one of [`FIGURES`].
pub fn parse_fail_on(arg: &str, default_tolerance: f64) -> Result<(String, f64), String> {
    let (name, tolerance) = match arg.split_once('=') {
        Some((n, t)) => (n, t.parse::<f64>().map_err(|_| format!("{arg}: the tolerance after = must be a number, such as 0.1 for 10 %"))?),
        None => (arg, default_tolerance),
    };
    if !FIGURES.iter().any(|(f, ..)| *f == name) {
        let known: Vec<&str> = FIGURES.iter().map(|(f, ..)| *f).collect();
        return Err(format!("{name}: not a figure; one of {}", known.join(", ")));
    }
    if !(tolerance >= 0.0 && tolerance.is_finite()) {
        return Err(format!("{arg}: the tolerance must be 0 or more"));
    }
    Ok((name.to_owned(), tolerance))
}

/// The outcome of comparing two reports.
#[derive(Debug, Default)]
pub struct Comparison {
    /// What differs between the runs so that their figures do not compare; empty if nothing.
    pub mismatches: Vec<String>,
    /// Figures that regressed beyond their threshold, gates newly failed, correctness counts
    /// that grew, and chosen figures that one report lacks.
    pub regressions: Vec<String>,
    /// The table a person reads, with the warnings above it.
    pub table: String,
}

impl Comparison {
    pub fn comparable(&self) -> bool {
        self.mismatches.is_empty()
    }
}

pub fn compare(base: &Value, new: &Value, opts: &Options) -> Comparison {
    let mut c = Comparison { mismatches: mismatches(base, new), ..Default::default() };
    let mut rows = format!("{:<26} {:>12} {:>12} {:>9}\n", "figure", "base", "new", "change");
    for (name, path, higher_is_better) in FIGURES {
        figure_row(&mut c, &mut rows, (name, path, *higher_is_better), base, new, opts);
    }
    for (name, path) in CORRECTNESS {
        let get = |v: &Value| v.pointer(path).and_then(Value::as_u64).unwrap_or(0);
        let (b, n) = (get(base), get(new));
        if n > b {
            c.regressions.push(format!("{name}: {b} -> {n}"));
        }
        rows.push_str(&format!("{name:<26} {b:>12} {n:>12} {:>9} {}\n", "", if n > b { "REGRESSION" } else { "" }));
    }
    gate_rows(&mut c, &mut rows, base, new);
    let flag = |v: &Value| v["generator_limited"].as_bool().map_or("?", |l| if l { "YES" } else { "no" });
    rows.push_str(&format!("{:<26} {:>12} {:>12}\n", "generator limited", flag(base), flag(new)));
    c.table = warnings(&c, base, new) + &rows;
    c
}

fn mismatches(base: &Value, new: &Value) -> Vec<String> {
    let show = |v: Option<&Value>| v.map_or("(missing)".to_owned(), |v| v.to_string());
    SAME.iter()
        .filter(|(_, path)| base.pointer(path) != new.pointer(path))
        .map(|(what, path)| format!("{what} differs: base {}, new {}", show(base.pointer(path)), show(new.pointer(path))))
        .collect()
}

fn figure_row(c: &mut Comparison, rows: &mut String, (name, path, higher_is_better): (&str, &str, bool), base: &Value, new: &Value, opts: &Options) {
    let threshold = opts.threshold(name);
    let (b, n) = (base.pointer(path).and_then(Value::as_f64), new.pointer(path).and_then(Value::as_f64));
    let (Some(b), Some(n)) = (b, n) else {
        let missing = match (b, n) {
            (None, None) => "missing in both",
            (None, _) => "missing in base",
            _ => "missing in new",
        };
        if threshold.is_some() && !opts.fail_on.is_empty() {
            c.regressions.push(format!("{name}: {missing}, so it cannot be judged"));
        }
        rows.push_str(&format!("{name:<26} {:>12} {:>12} {:>9} {}\n", fmt(b), fmt(n), "", missing.to_uppercase()));
        return;
    };
    let change = if b.abs() > f64::EPSILON { (n - b) / b } else { 0.0 };
    let worse = threshold.is_some_and(|t| if higher_is_better { change < -t } else { change > t });
    if worse {
        c.regressions.push(format!("{name}: {b:.2} -> {n:.2} ({:+.1} %)", change * 100.0));
    }
    rows.push_str(&format!("{name:<26} {b:>12.2} {n:>12.2} {:>8.1}% {}\n", change * 100.0, if worse { "REGRESSION" } else { "" }));
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// Every gate either run judged: one newly failed is a regression; one only one run has is shown so.
fn gate_rows(c: &mut Comparison, rows: &mut String, base: &Value, new: &Value) {
    let gates = |v: &Value| -> Vec<(String, f64, bool)> {
        v["gates"].as_array().into_iter().flatten().filter_map(|g| Some((g["gate"].as_str()?.to_owned(), g["value"].as_f64().unwrap_or(f64::NAN), g["pass"].as_bool()?))).collect()
    };
    let (b, n) = (gates(base), gates(new));
    let mut names: Vec<&String> = b.iter().chain(&n).map(|(g, ..)| g).collect();
    names.sort();
    names.dedup();
    for name in names {
        let find = |gs: &[(String, f64, bool)]| gs.iter().find(|(g, ..)| g == name).map(|(_, v, p)| (*v, *p));
        let (bg, ng) = (find(&b), find(&n));
        let show = |g: Option<(f64, bool)>| g.map_or("-".into(), |(v, p)| format!("{v:.2} {}", if p { "ok" } else { "FAIL" }));
        let note = match (bg, ng) {
            (Some((_, true)), Some((_, false))) | (None, Some((_, false))) => {
                c.regressions.push(format!("gate {name} fails in new"));
                "REGRESSION"
            }
            (Some(_), None) => "NOT IN NEW",
            (None, Some(_)) => "NOT IN BASE",
            _ => "",
        };
        rows.push_str(&format!("{:<26} {:>12} {:>12} {:>9} {note}\n", format!("gate {name}"), show(bg), show(ng), ""));
    }
}

/// The loud part above the table: runs that do not compare, a generator that fell behind,
/// system latency that covers a lifetime rather than the run.
fn warnings(c: &Comparison, base: &Value, new: &Value) -> String {
    let mut out = String::new();
    for m in &c.mismatches {
        out.push_str(&format!("!!! NOT COMPARABLE: {m}\n"));
    }
    for (which, v) in [("base", base), ("new", new)] {
        if v["generator_limited"].as_bool() == Some(true) {
            out.push_str(&format!("!!! {which} was GENERATOR-LIMITED: its throughput and latency include loadgen's own limit\n"));
        }
        if v.pointer("/system/latency_covers").and_then(Value::as_str) != Some("run") {
            out.push_str(&format!("!!! {which}'s end-to-end figures cover the system's lifetime, not the run\n"));
        }
        if v.pointer("/system/e2e_clocks").and_then(Value::as_str) == Some("cross_host") {
            out.push_str(&format!("!!! {which}'s end-to-end figures may subtract two hosts' clocks (a running system, not one loadgen spawned)\n"));
        }
    }
    out
}

/// compare.html: the table, then each chart with base and new overlaid. A report without
/// some series (an older loadgen's) draws those lines empty rather than failing.
pub fn html(base: &Value, new: &Value, table: &str) -> Result<String, ChartError> {
    let data = |v: &Value| RunData::deserialize(v).unwrap_or_default();
    Ok(charts::page("loadgen compare: base and new", table, &charts::compared(&data(base), &data(new))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(rate: f64, p99: f64, lost: u64) -> Value {
        json!({"scenario": {"name": "ci", "seed": 1}, "machine": {"host": "h", "cpu": "c", "cores": 2},
               "throughput": {"accepted_per_s": rate, "applied_per_s": rate}, "ack_latency_ms": {"2xx": {"p99_ms": p99}},
               "system_cpu_us_per_event": 100.0, "generator_limited": false, "system": {"latency_covers": "run"},
               "gates": [{"gate": "max_p99_ack_ms", "limit": 6.0, "value": p99, "pass": p99 <= 6.0}],
               "verification": {"lost": lost}})
    }

    fn all(tolerance: f64) -> Options {
        Options { tolerance, fail_on: Vec::new() }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("base").join("report.json");
        let e = format!("{:#}", read_report(&missing).unwrap_err());
        assert!(e.contains(&missing.display().to_string()) && e.contains("No such file"), "{e}");
        let garbage = dir.path().join("report.json");
        std::fs::write(&garbage, "not json").unwrap();
        let e = format!("{:#}", read_report(&garbage).unwrap_err());
        assert!(e.contains(&garbage.display().to_string()), "{e}");
    }

    #[test]
    fn regressions_beyond_the_tolerance_fail_and_improvements_pass() {
        let ok = |b: &Value, n: &Value| compare(b, n, &all(0.2)).regressions.is_empty();
        assert!(ok(&report(1000.0, 5.0, 0), &report(900.0, 5.5, 0)));
        assert!(!ok(&report(1000.0, 5.0, 0), &report(700.0, 5.0, 0)));
        assert!(!ok(&report(1000.0, 4.0, 0), &report(1000.0, 5.5, 0)), "37 % slower, within the gate");
        assert!(ok(&report(1000.0, 5.0, 0), &report(2000.0, 1.0, 0)));
        let c = compare(&report(1000.0, 5.0, 0), &report(1000.0, 5.0, 1), &all(0.2));
        assert!(!c.regressions.is_empty() && c.table.contains("lost"));
    }

    #[test]
    fn runs_of_other_scenarios_seeds_machines_or_cpus_do_not_compare() {
        let base = report(1000.0, 5.0, 0);
        assert!(compare(&base, &base, &all(0.2)).comparable());
        for (path, other) in [("/scenario/name", json!("steady")), ("/scenario/seed", json!(2)), ("/machine/host", json!("other")), ("/machine/cpu", json!("EPYC"))] {
            let mut new = base.clone();
            *new.pointer_mut(path).unwrap() = other;
            let c = compare(&base, &new, &all(0.2));
            assert!(!c.comparable() && c.table.contains("NOT COMPARABLE"), "{path}: {}", c.table);
        }
    }

    #[test]
    fn a_chosen_figure_gates_alone_and_a_missing_one_is_never_skipped() {
        let (base, new) = (report(1000.0, 5.0, 0), report(700.0, 5.4, 0));
        let only_p99 = Options { tolerance: 0.2, fail_on: vec![parse_fail_on("ack_p99_ms=0.05", 0.2).unwrap()] };
        let c = compare(&base, &new, &only_p99);
        assert_eq!(c.regressions.len(), 1, "accepted/s fell 30 % but is not chosen: {:?}", c.regressions);
        assert!(c.regressions[0].starts_with("ack_p99_ms"));
        let cpu = Options { tolerance: 0.2, fail_on: vec![parse_fail_on("e2e_p99_ms", 0.2).unwrap()] };
        let c = compare(&base, &new, &cpu);
        assert!(c.regressions.iter().any(|r| r.contains("e2e_p99_ms") && r.contains("missing in both")), "{:?}", c.regressions);
        assert!(c.table.contains("MISSING IN BOTH"), "{}", c.table);
        assert!(parse_fail_on("p99", 0.2).unwrap_err().contains("ack_p99_ms"));
    }

    #[test]
    fn cpu_per_event_the_generator_flag_and_every_gate_are_in_the_table() {
        let mut new = report(1000.0, 7.0, 0);
        new["generator_limited"] = json!(true);
        new["system_cpu_us_per_event"] = json!(150.0);
        let c = compare(&report(1000.0, 5.0, 0), &new, &all(0.2));
        assert!(c.table.contains("system_cpu_us_per_event") && c.table.contains("new was GENERATOR-LIMITED"), "{}", c.table);
        assert!(c.regressions.iter().any(|r| r == "gate max_p99_ack_ms fails in new"), "{:?}", c.regressions);
        assert!(c.regressions.iter().any(|r| r.starts_with("system_cpu_us_per_event")), "{:?}", c.regressions);
    }
}
