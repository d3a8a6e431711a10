#!/usr/bin/env bash
# The same load scenario against the seed design's stack (peers/seed) and our system, one
# after the other on the local broker (scenarios/peer-seed.toml, scenarios/peer-webhooks.toml),
# with both processes' CPU (server + worker, from /proc) per accepted event. Needs
# `scripts/services.sh up kafka` and release builds of webhooks and loadgen.
#
# Usage: scripts/peer-load.sh [OUT]    (default target/peer-load; a folder per target)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOADGEN="${LOADGEN_BIN:-$ROOT/target/release/loadgen}"
OUT="${1:-$ROOT/target/peer-load}"
# Our receiver file names the signing secret conformance signs with; the load signs with the
# scenario's own, the same test key.
export CONFORM_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

cpu_ticks() { # pids...: utime + stime of each, summed, in clock ticks
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

measure() { # name start-command stop-command pids-command
  local name=$1 pids before after accepted
  eval "$2"
  trap "$3" EXIT
  pids=$(eval "$4")
  # shellcheck disable=SC2086
  before=$(cpu_ticks $pids)
  "$LOADGEN" run "scenarios/peer-$name.toml" --out "$OUT/$name" | tee "$OUT/$name.txt" || true
  # shellcheck disable=SC2086
  after=$(cpu_ticks $pids)
  eval "$3"; trap - EXIT
  accepted=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accepted'])" "$OUT/$name/report.json")
  python3 -c "import sys; t=int(sys.argv[1]); a=int(sys.argv[2]); hz=int(sys.argv[3]); print(f'{sys.argv[4]}: server + worker CPU {t/hz:.2f} s, {t/hz*1e6/max(a,1):.0f} us per accepted event ({a} accepted)')" \
    "$((after - before))" "$accepted" "$(getconf CLK_TCK)" "$name" | tee -a "$OUT/cpu.txt"
}

mkdir -p "$OUT"; : >"$OUT/cpu.txt"
measure seed "scripts/seed.sh up" "scripts/seed.sh down" "scripts/seed.sh pids"
measure webhooks "scripts/conform.sh webhooks-up" "scripts/conform.sh webhooks-down" "scripts/conform.sh webhooks-pids"
cat "$OUT/cpu.txt"
