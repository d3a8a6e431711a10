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
