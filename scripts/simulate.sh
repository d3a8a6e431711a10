#!/usr/bin/env bash
# The deterministic simulator of the durable path (docs/simulator.md).
#
#   scripts/simulate.sh                  the CI budget: fixed seeds, then fresh ones
#   scripts/simulate.sh --minutes N      random seeds for N minutes
#   scripts/simulate.sh --seed S         replay one seed, printing its trace
#   scripts/simulate.sh --bugs           reopen each fixed hole and count the schedules to find it
#
# Any other flags go to the simulator (`--help`). A failure prints its seed and the command
# that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p simulator
sim=target/release/simulator

if [ $# -gt 0 ]; then
  exec "$sim" "$@"
fi
# CI: fixed seeds, the same on every run, then as many fresh ones (printed first), so the
# budget both guards against regressions and explores.
"$sim" --schedules "${SIM_CI_FIXED:-50000}" --first-seed 1
"$sim" --schedules "${SIM_CI_FRESH:-50000}"
