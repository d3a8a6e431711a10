//! The suite's results: a table a person reads in seconds, the reports that keep the
//! evidence (JSON, Markdown, HTML), and the comparison with the failures known beforehand.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::execute::{Outcome, Verdict};

pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Skipped => "skipped",
        Verdict::Unfinished => "UNFINISHED",
    }
}

/// The first piece of evidence of a rule, shortened to fit a terminal line.
fn first_evidence(o: &Outcome) -> String {
    let first = o.notes.first().cloned().or_else(|| o.broke.first().map(|b| format!("{}: {}", b.case, b.what.join("; "))));
    let mut s: String = first.unwrap_or_default().chars().take(90).collect();
    if o.broke.len() > 1 {
        let _ = write!(s, " (+{} more)", o.broke.len() - 1);
    }
    s
}

/// The table printed at the end of a run.
pub fn table(url: &str, outcomes: &[Outcome]) -> String {
    let mut s = format!("conformance of {url}\n\n  {:<22} {:<10} {:>6} {:>6} {:>7}  first evidence\n", "rule", "result", "cases", "broke", "time s");
    for o in outcomes {
        let _ = writeln!(s, "  {:<22} {:<10} {:>6} {:>6} {:>7.1}  {}", o.name, verdict_word(o.verdict), o.payments, o.broke.len(), o.took_s, first_evidence(o));
    }
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    // Not "N passed, N failed": a receiver's broken rules are findings, and CI reads that shape
    // as its own test runner's verdict.
    let _ = writeln!(s, "\n  rules kept {}, broken {}, unfinished {}, skipped {}", count(Verdict::Pass), count(Verdict::Fail), count(Verdict::Unfinished), count(Verdict::Skipped));
    s
}

/// Rules that did not pass (failed or unfinished), by name.
pub fn failing(outcomes: &[Outcome]) -> BTreeSet<String> {
    outcomes.iter().filter(|o| matches!(o.verdict, Verdict::Fail | Verdict::Unfinished)).map(|o| o.name.clone()).collect()
}

/// The rule names of an expected-failures file: one a line, `#` starts a comment.
pub fn read_expected(text: &str) -> BTreeSet<String> {
    text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// How the failures differ from the expected ones: (newly failing, newly passing), among
/// the rules that ran.
pub fn against_expected(outcomes: &[Outcome], expected: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let failing = failing(outcomes);
    let ran: BTreeSet<&String> = outcomes.iter().filter(|o| o.verdict != Verdict::Skipped).map(|o| &o.name).collect();
    let new_failures = failing.difference(expected).cloned().collect();
    let new_passes = expected.iter().filter(|n| ran.contains(n) && !failing.contains(*n)).cloned().collect();
    (new_failures, new_passes)
}

#[derive(Serialize)]
struct Json<'a> {
    url: &'a str,
    rules: &'a [Outcome],
}

fn markdown(url: &str, outcomes: &[Outcome]) -> String {
    let mut s = format!("# Conformance of {url}\n\n| rule | result | cases | broke | time s |\n|---|---|---:|---:|---:|\n");
    for o in outcomes {
        let _ = writeln!(s, "| {} | {} | {} | {} | {:.1} |", o.name, verdict_word(o.verdict), o.payments, o.broke.len(), o.took_s);
    }
    for o in outcomes {
        let _ = writeln!(s, "\n## {} ({})\n\n{}\n", o.name, verdict_word(o.verdict), o.about);
        for n in &o.notes {
            let _ = writeln!(s, "- {n}");
        }
        for b in &o.broke {
            let _ = writeln!(s, "- `{}` ({}): {}", b.payment, b.case, b.what.join("; "));
        }
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(url: &str, outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "<!doctype html><meta charset=utf-8><title>Conformance of {0}</title><style>body{{font:14px system-ui;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.pass{{color:#060}}.fail{{color:#b00;font-weight:bold}}li{{margin:.2em 0}}</style><h1>Conformance of {0}</h1><table><tr><th>rule<th>result<th>cases<th>broke<th>time s</tr>",
        escape(url)
    );
    for o in outcomes {
        let class = if o.verdict == Verdict::Pass { "pass" } else { "fail" };
        let _ = write!(s, "<tr><td><a href=\"#{0}\">{0}</a><td class={class}>{1}<td>{2}<td>{3}<td>{4:.1}</tr>", escape(&o.name), verdict_word(o.verdict), o.payments, o.broke.len(), o.took_s);
    }
    s.push_str("</table>");
    for o in outcomes {
        let _ = write!(s, "<h2 id=\"{0}\">{0}: {1}</h2><p>{2}</p><ul>", escape(&o.name), verdict_word(o.verdict), escape(&o.about));
        for n in &o.notes {
            let _ = write!(s, "<li>{}", escape(n));
        }
        for b in &o.broke {
            let _ = write!(s, "<li><code>{}</code> ({}): {}", escape(&b.payment), escape(&b.case), escape(&b.what.join("; ")));
        }
        s.push_str("</ul>");
    }
    s
}

/// Writes report.json, report.md and report.html into `dir`.
pub fn write(dir: &Path, url: &str, outcomes: &[Outcome]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&Json { url, rules: outcomes })?)?;
    std::fs::write(dir.join("report.md"), markdown(url, outcomes))?;
    std::fs::write(dir.join("report.html"), html(url, outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conform::execute::Broken;

    fn outcome(name: &str, verdict: Verdict) -> Outcome {
        let broke = if verdict == Verdict::Fail { vec![Broken { payment: "p<1>".into(), case: "late pending".into(), what: vec!["payment is pending, expected failed".into()] }] } else { Vec::new() };
        Outcome { name: name.into(), about: "a rule".into(), verdict, notes: Vec::new(), payments: 3, broke, took_s: 1.0, verify_s: 0.1 }
    }

    #[test]
    fn a_change_either_way_from_the_expected_failures_shows() {
        let outcomes = [outcome("a", Verdict::Fail), outcome("b", Verdict::Pass), outcome("c", Verdict::Skipped), outcome("d", Verdict::Unfinished)];
        let expected = read_expected("# known\nb\nc  # skipped here\nd\n");
        let (new_failures, new_passes) = against_expected(&outcomes, &expected);
        assert_eq!((new_failures, new_passes), (vec!["a".to_string()], vec!["b".to_string()]));
    }

    #[test]
    fn the_table_and_the_reports_carry_the_evidence() {
        let outcomes = [outcome("out-of-order", Verdict::Fail), outcome("duplicates", Verdict::Pass)];
        let t = table("http://x", &outcomes);
        assert!(t.contains("out-of-order") && t.contains("FAIL") && t.contains("late pending: payment is pending") && t.contains("rules kept 1, broken 1"), "{t}");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "http://x", &outcomes).unwrap();
        let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(page.contains("<code>p&lt;1&gt;</code>"), "escaped evidence");
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(json["rules"][0]["broke"][0]["payment"], "p<1>");
    }
}
