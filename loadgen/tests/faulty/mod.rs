//! The deliberately wrong build (`webhooks-fault`, the system with the `fault-injection`
//! feature), shared by the tests that show loadgen's oracle catching it.

use std::path::PathBuf;

use loadgen::scenario::Scenario;

/// Points `s` at the faulty build with `fault` (a `--fault-...` flag) switched on.
pub fn aim(s: &mut Scenario, fault: &str) {
    let bin = std::env::var_os("WEBHOOKS_FAULT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/webhooks-fault"));
    assert!(bin.exists(), "{} missing: `cargo test --release -p system --features fault-injection --test cli --no-run` builds it", bin.display());
    s.target.bin = Some(bin.display().to_string());
    s.target.args = vec![fault.into()];
}
