//! The `loadgen` binary's own subcommands, run as a user runs them.

use std::process::Command;

fn loadgen(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args).env_remove("LOADGEN_TEST_SECRET").output().expect("loadgen runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn validate_passes_the_ci_scenario_and_names_every_bad_field() {
    let ci = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/ci.toml");
    let (code, out) = loadgen(&["validate", ci]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(ci).unwrap();
    let text = text.replace("timeout_s = ", "timeout_s = -").replace("[ceiling]\nenabled = true\nduration_s = ", "[ceiling]\nenabled = true\nduration_s = -");
    std::fs::write(&bad, text.replace("[signing]", "[signing]\nsecret_env = \"LOADGEN_TEST_SECRET\"")).unwrap();
    let (code, out) = loadgen(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    for field in ["drain.timeout_s: must be above 0", "ceiling.duration_s: must be above 0", "signing.secret_env"] {
        assert!(out.contains(field), "{field} in {out}");
    }
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let (code, out) = loadgen(&["schema"]);
    assert_eq!(code, 0);
    assert_eq!(out, std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/scenario.schema.json")).unwrap());
}

#[test]
fn compare_refuses_other_seeds_and_gates_on_a_chosen_figure() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, seed: u64, p99: f64| {
        let report = serde_json::json!({"scenario": {"name": "ci", "seed": seed}, "machine": {"host": "h", "cpu": "c", "cores": 2},
            "throughput": {"accepted_per_s": 1000.0}, "ack_latency_ms": {"2xx": {"p99_ms": p99}}, "system": {"latency_covers": "run"}});
        let path = dir.path().join(name);
        std::fs::write(&path, report.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (base, other_seed, slower) = (write("base.json", 1, 5.0), write("seed.json", 2, 5.0), write("slower.json", 1, 6.0));
    let (code, out) = loadgen(&["compare", &base, &other_seed]);
    assert_eq!(code, loadgen::NOT_COMPARABLE, "{out}");
    assert!(out.contains("seed differs: base 1, new 2"), "{out}");
    let (code, out) = loadgen(&["compare", &base, &other_seed, "--allow-different"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("!!! NOT COMPARABLE: seed differs"), "{out}");
    let (code, out) = loadgen(&["compare", &base, &slower, "--fail-on", "ack_p99_ms=0.1"]);
    assert_eq!(code, loadgen::GATES_FAILED, "{out}");
    assert!(out.contains("REGRESSION ack_p99_ms"), "{out}");
    let (code, out) = loadgen(&["compare", &base, &slower, "--fail-on", "ack_p99_ms=0.25"]);
    assert_eq!(code, 0, "{out}");
}
