//! `loadgen compare BASE.json NEW.json`: the differences that matter, a verdict, and
//! optionally a page with both runs' charts overlaid.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::charts::{self, ChartError, RunData};

/// Reads a report.json; every error names the file.
pub fn read_report(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a loadgen report.json", path.display()))
}

/// A metric, where it is in report.json, and whether more is better.
const METRICS: &[(&str, &str, bool)] = &[
    ("accepted/s", "/throughput/accepted_per_s", true),
    ("applied/s", "/throughput/applied_per_s", true),
    ("ack p50 ms", "/ack_latency_ms/2xx/p50_ms", false),
    ("ack p99 ms", "/ack_latency_ms/2xx/p99_ms", false),
    ("ack p99.9 ms", "/ack_latency_ms/2xx/p999_ms", false),
    ("e2e p99 ms", "/system/e2e_latency_ms/p99", false),
    ("drain s", "/drain_s", false),
    ("peak RSS MB", "/system/rss_peak_mb", false),
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

/// Prints the table; whether NEW is within `tolerance` (0.2 = 20 %) of BASE everywhere.
pub fn compare(base: &Value, new: &Value, tolerance: f64) -> (String, bool) {
    let mut out = format!("{:<22} {:>12} {:>12} {:>9}\n", "metric", "base", "new", "change");
    let mut ok = true;
    for (name, path, higher_is_better) in METRICS {
        let (Some(b), Some(n)) = (base.pointer(path).and_then(Value::as_f64), new.pointer(path).and_then(Value::as_f64)) else { continue };
        let change = if b.abs() > f64::EPSILON { (n - b) / b } else { 0.0 };
        let worse = if *higher_is_better { change < -tolerance } else { change > tolerance };
        ok &= !worse;
        out.push_str(&format!("{name:<22} {b:>12.2} {n:>12.2} {:>8.1}% {}\n", change * 100.0, if worse { "REGRESSION" } else { "" }));
    }
    for (name, path) in CORRECTNESS {
        let get = |v: &Value| v.pointer(path).and_then(Value::as_u64).unwrap_or(0);
        let (b, n) = (get(base), get(new));
        let worse = n > b;
        ok &= !worse;
        out.push_str(&format!("{name:<22} {b:>12} {n:>12} {:>9} {}\n", "", if worse { "REGRESSION" } else { "" }));
    }
    (out, ok)
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
        json!({"throughput": {"accepted_per_s": rate, "applied_per_s": rate}, "ack_latency_ms": {"2xx": {"p99_ms": p99}},
               "verification": {"lost": lost}})
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
        assert!(compare(&report(1000.0, 5.0, 0), &report(900.0, 5.5, 0), 0.2).1);
        assert!(!compare(&report(1000.0, 5.0, 0), &report(700.0, 5.0, 0), 0.2).1);
        assert!(!compare(&report(1000.0, 5.0, 0), &report(1000.0, 7.0, 0), 0.2).1);
        assert!(compare(&report(1000.0, 5.0, 0), &report(2000.0, 1.0, 0), 0.2).1);
        let (table, ok) = compare(&report(1000.0, 5.0, 0), &report(1000.0, 5.0, 1), 0.2);
        assert!(!ok && table.contains("lost"));
    }
}
