//! Two runs against one long-running system: each reports the system's latency over its own
//! load, not since the system started (which is what `/api/stats` percentiles cover).

use loadgen::experiment::run;
use loadgen::scenario::{Scenario, SpawnMode};
use loadgen::experiment::spawn::System;
use loadgen::measure::window::Coverage;
use loadgen::report::Clocks;

fn scenario(rate: u32, duration_s: u32) -> Scenario {
    Scenario::parse(&format!(
        r#"
name = "window"
seed = {rate}
[target]
spawn = "standalone"
[workload]
orders = 50
[load]
max_in_flight = 16
[[load.phases]]
kind = "constant"
rate = {rate}
duration_s = {duration_s}
[drain]
timeout_s = 30
"#
    ))
    .expect("scenario")
}

async fn lifetime_ack_count(base: &str) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{base}/api/stats")).await.expect("stats").json().await.expect("json");
    stats["ingress"]["ack_latency_us"]["count"].as_u64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_against_the_same_system_reports_its_own_figures() {
    let system = System::spawn(&scenario(1, 1), SpawnMode::Standalone).expect("spawn");
    let against = |mut s: Scenario| {
        s.target.spawn = None;
        s.target.url = Some(system.base.clone());
        s
    };
    let first = run::run(&against(scenario(400, 2)), false).await.expect("first run");
    let second = run::run(&against(scenario(100, 1)), false).await.expect("second run");
    let lifetime = lifetime_ack_count(&system.base).await;
    system.stop().await;

    for m in [&first, &second] {
        let sys = &m.system;
        assert_eq!(sys.latency_covers, Coverage::Run, "{}", m.summary());
        // A running system's server and worker may be on other hosts than each other.
        assert_eq!(sys.e2e_clocks, Clocks::CrossHost);
        assert!(m.summary().contains("end-to-end (system)") && m.summary().contains("CROSS-HOST"), "{}", m.summary());
        let ack = sys.ack_latency_ms.as_ref().expect("ack latency");
        // Every 200 the load got, and nothing from set-up or the other run.
        assert_eq!(ack["count"], m.accepted as f64, "{}", m.summary());
        let e2e = sys.e2e_latency_ms.as_ref().expect("end-to-end latency");
        assert!(e2e["count"] > 0.0 && e2e["count"] <= m.accepted as f64, "{e2e:?} {}", m.summary());
    }
    let counted = |m: &loadgen::report::Measured| m.system.ack_latency_ms.as_ref().map_or(0.0, |a| a["count"]) as u64;
    // This workload sends nothing at set-up: the two windows split the lifetime exactly.
    assert_eq!(counted(&first) + counted(&second), lifetime);
    assert!(counted(&second) < counted(&first), "the second, smaller run is counted apart");
}
