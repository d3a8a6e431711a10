#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the services the tests need (installing them
# on a fresh machine), builds everything once in release mode, runs the tests, then the
# loadgen CI scenario with its gates, and checks that the benches build.
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite must leave the work tree as it found it (no rewritten screenshot or report):
# compared at the end.
tree_before=$(git status --porcelain 2>/dev/null || true)
# REPORT.md's generated blocks must be what reports/ gives: a hand edit fails here.
python3 scripts/report.py --check

scripts/services.sh up
# The failover tests (system/tests/kafka_cluster.rs) need the three-node cluster too. Idle, its
# three JVMs still take about a fifth of a core: stopped again after the tests if started here,
# so that it does not weigh on the load gate below.
cluster_was_up=0
if [ "$(scripts/services.sh status 2>/dev/null | grep -c 'kafka-cluster node .: up')" -eq 3 ]; then cluster_was_up=1; fi
# Its three JVMs start (about a minute) while the tests compile.
cluster_log=target/kafka-cluster-up.log
mkdir -p target
scripts/services.sh up kafka-cluster >"$cluster_log" 2>&1 &
cluster_up=$!

# The power-cut and disk-fault tests mount faultfs (FUSE): they need /dev/fuse and fusermount3.
if ! command -v fusermount3 >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 >/dev/null
fi
# shellcheck source=scripts/env.sh
source scripts/env.sh
# Tests that need Kafka or PostgreSQL fail instead of skipping when these are missing.
export REQUIRE_SERVICES=1

on_failure() {
  echo "--- tests failed; service logs follow ---" >&2
  scripts/services.sh logs >&2 || true
}
trap on_failure ERR

# loadgen's oracle and conflict tests and the CI gate demonstration need a deliberately wrong
# system: the `webhooks-fault` binary (system/Cargo.toml, `required-features`). Built through
# `cargo test --no-run` so that it shares the test build's dependency features and reuses its
# dependencies: only the system library and binaries are compiled again. It runs first
# because it also leaves a fault-enabled `webhooks` behind, which the
# `cargo test` below replaces with the real one.
cargo test --release -p system --features fault-injection --test cli --no-run

# The browser tests (system/tests/console.rs, loadgen/tests/report_browser.rs) drive headless
# Chromium through chromedriver; Debian packages both.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

# Stripe's official API mock (a Go module) serves the objects system/tests/stripe.rs wraps in
# Stripe's event envelope; pinned, installed if missing, on loopback while this script runs.
stripe_mock="$(go env GOPATH)/bin/stripe-mock"
[ -x "$stripe_mock" ] || go install github.com/stripe/stripe-mock@v0.203.0
"$stripe_mock" -http-addr 127.0.0.1:12111 >target/stripe-mock.log 2>&1 &
stripe_mock_pid=$!
trap 'kill "$stripe_mock_pid" 2>/dev/null || true' EXIT
export STRIPE_MOCK_URL=http://127.0.0.1:12111

# One build. `cargo test` also builds the binaries, with the features the dev-dependencies
# add (tokio's test-util and others); a separate `cargo build` without them compiled tokio,
# serde and their dependents a second time. The load gate below runs these same binaries.
cargo test --release --workspace --no-run
wait "$cluster_up" || { cat "$cluster_log" >&2; echo "the three-node Kafka cluster did not start" >&2; exit 1; }
# The tools of the checks after the tests (cargo-deny; valgrind and gungraun-runner) take about
# 8 minutes to compile on a fresh machine. The tests mostly wait (on brokers, fsyncs, restarts),
# so the tools compile meanwhile, at the lowest priority.
tools_log=target/tool-install.log
nice -n 19 bash -c 'command -v cargo-deny >/dev/null || cargo install cargo-deny --locked; scripts/instructions.sh install; scripts/seed.sh install' >"$tools_log" 2>&1 &
tools=$!
# promtool, for deploy/'s alert rules and dashboard: pinned, compiled meanwhile too.
promtool_log=target/promtool-install.log
nice -n 19 bash -c '[ -x "$(go env GOPATH)/bin/promtool" ] || go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0' >"$promtool_log" 2>&1 &
promtool_install=$!
cargo test --release --workspace
# The deterministic simulator of the durable path (docs/simulator.md): 100,000 schedules of
# crashes and disk faults, then each reopened hole must still be found.
scripts/simulate.sh
scripts/simulate.sh --bugs --bug-budget 50000
if [ "$cluster_was_up" -eq 0 ]; then scripts/services.sh down kafka-cluster; fi
wait "$tools" || { cat "$tools_log" >&2; echo "installing cargo-deny, gungraun-runner or the seed's stack failed" >&2; exit 1; }

# Dependency policy (deny.toml): licenses, bans and sources. Advisories need the RustSec
# database from GitHub, which these machines cannot reach.
cargo deny check licenses bans sources

cargo bench --workspace --no-run

# Instruction counts of the hot paths against the checked-in baseline (Callgrind: the same
# figure on a busy machine); installs valgrind and the pinned gungraun-runner if missing.
scripts/instructions.sh check

# docker-compose.yml, without a Docker engine: the Compose Specification's schema, the
# references between services, the variables our binary reads, and that the server cannot
# start without its secrets (scripts/check_compose.py).
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-jsonschema python3-yaml >/dev/null
fi
scripts/check_compose.py --self-test target/release/webhooks
scripts/check_compose.py target/release/webhooks

# deploy/: the Prometheus alert rules, their unit tests and the Grafana dashboard's queries,
# checked with promtool (scripts/check_deploy.sh).
wait "$promtool_install" || { cat "$promtool_log" >&2; echo "installing promtool failed" >&2; exit 1; }
scripts/check_deploy.sh

# The CI load gate: strict correctness, loose speed floors (scenarios/ci.toml). The build
# left gigabytes of dirty pages; flush them first, so that their writeback does not compete
# with the fsyncs the gate measures.
sync
mkdir -p target/loadgen
./target/release/loadgen run scenarios/ci.toml --out target/loadgen/ci

# The conformance suite (docs/conformance.md), each target as server + Kafka + worker on the
# local broker: our system must pass every rule; the seed design's stack (peers/seed) must fail
# exactly the rules in scenarios/conformance/seed-known-failures.txt.
scripts/conform.sh webhooks
scripts/conform.sh seed

if [ "$(git status --porcelain 2>/dev/null || true)" != "$tree_before" ]; then
  echo "the test suite changed the work tree:" >&2
  git status --porcelain >&2
  exit 1
fi
