#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the services the tests need (installing them
# on a fresh machine), builds everything once in release mode, runs the tests, then the
# loadgen CI scenario with its gates, and checks that the benches build.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh up
# shellcheck source=scripts/env.sh
source scripts/env.sh
# Tests that need Kafka or PostgreSQL fail instead of skipping when these are missing.
export REQUIRE_SERVICES=1

on_failure() {
  echo "--- tests failed; service logs follow ---" >&2
  scripts/services.sh logs >&2 || true
}
trap on_failure ERR

# The report's browser test (loadgen/tests/report_browser.rs) drives headless Chromium
# through chromedriver; Debian packages both.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

# loadgen's oracle test (loadgen/tests/oracle.rs) needs a deliberately wrong system: built
# with the test-only feature and kept apart, before the real one is built over it.
cargo build --release -p system --features fault-injection --bin webhooks
cp target/release/webhooks target/release/webhooks-fault
cargo build --release --workspace --bins
cargo test --release --workspace

# Dependency policy (deny.toml): licenses, bans and sources. Advisories need the RustSec
# database from GitHub, which these machines cannot reach.
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo deny check licenses bans sources

cargo bench --workspace --no-run

# Instruction counts of the hot paths against the checked-in baseline (Callgrind: the same
# figure on a busy machine); installs valgrind and the pinned gungraun-runner if missing.
scripts/instructions.sh check

# The CI load gate: strict correctness, loose speed floors (scenarios/ci.toml). The build
# left gigabytes of dirty pages; flush them first, so that their writeback does not compete
# with the fsyncs the gate measures.
sync
mkdir -p target/loadgen
./target/release/loadgen run scenarios/ci.toml --out target/loadgen/ci
