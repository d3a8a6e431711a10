//! Per-phase gates and `abort_on_fail` against the real system (`webhooks standalone`,
//! built by `cargo build --release -p system`), on loopback, for a second or two each.

use std::process::Command;

use loadgen::experiment::run;
use loadgen::scenario::Scenario;

const TWO_PHASES: &str = r#"
name = "phases"
[target]
spawn = "standalone"
[workload]
orders = 50
[load]
max_in_flight = 8
[[load.phases]]
name = "gentle"
kind = "constant"
rate = 100
duration_s = 1
gates = { max_p99_ack_ms = 10000, max_unexpected_status = 0 }
[[load.phases]]
name = "impossible"
kind = "constant"
rate = 100
duration_s = 1
gates = { max_p99_ack_ms = 0.0001, min_accepted_per_s = 100000 }
[drain]
timeout_s = 30
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_phase_is_judged_on_its_own_requests() {
    let s = Scenario::parse(TWO_PHASES).expect("scenario");
    let mut m = run::run(&s, false).await.expect("run");
    assert!(!m.judge(&s.gates), "{}", m.summary());
    let gate = |name: &str| m.gates.iter().find(|g| g.gate == name).unwrap_or_else(|| panic!("{name} in {:?}", m.gates));
    assert!(gate("phase gentle: max_p99_ack_ms").pass && gate("phase gentle: max_unexpected_status").pass);
    assert!(!gate("phase impossible: max_p99_ack_ms").pass && !gate("phase impossible: min_accepted_per_s").pass);
    assert_eq!(m.phases[0].sent + m.phases[1].sent, m.sent);
    assert_eq!(m.phases[1].ack_latency_ms.count, m.phases[1].accepted);
    assert!(m.aborted.is_none());
}

/// Sent to /healthz, every request gets a 405, an unexpected status: the load must stop at
/// once rather than run its ten seconds, with the report written and exit code 98.
#[test]
fn a_failed_abort_on_fail_gate_ends_the_run_and_still_writes_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("abort.toml");
    std::fs::write(
        &scenario,
        r#"
name = "abort"
[target]
spawn = "standalone"
webhook_path = "/healthz"
[workload]
orders = 10
[load]
max_in_flight = 4
[[load.phases]]
kind = "constant"
rate = 200
duration_s = 10
[gates]
max_unexpected_status = 5
abort_on_fail = ["max_unexpected_status"]
"#,
    )
    .expect("write scenario");
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_loadgen")).arg("run").arg(&scenario).arg("--out").arg(&out).output().expect("loadgen runs");
    let said = String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(loadgen::ABORTED), "{said}");
    assert!(started.elapsed().as_secs() < 9, "stopped early: {said}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("json");
    assert!(report["aborted"].as_str().is_some_and(|a| a.contains("max_unexpected_status")), "{}", report["aborted"]);
    assert!(report["sent"].as_u64().is_some_and(|n| n < 2000), "{}", report["sent"]);
    assert!(said.contains("ABORTED"), "{said}");
    for file in ["timeline.ndjson", "timeline.csv", "latency.hlog"] {
        assert!(std::fs::metadata(out.join(file)).is_ok_and(|m| m.len() > 0), "{file} written");
    }
    let junit = std::fs::read_to_string(out.join("gates.junit.xml")).expect("gates.junit.xml");
    let doc = roxmltree::Document::parse(&junit).expect("JUnit XML parses");
    let failed: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("failure")).filter_map(|n| n.parent()?.attribute("name")).collect();
    assert!(failed.contains(&"abort_on_fail") && failed.contains(&"max_unexpected_status"), "{failed:?}");
}
