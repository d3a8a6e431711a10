#!/usr/bin/env bash
# Regenerates every figure REPORT.md shows, on the current commit, and rewrites its generated
# blocks: the load scenarios (system spawned by loadgen), the CPU per event against the HTTP
# floor of the same binary, the closed loop against /healthz, the criterion benches, the
# instruction counts, and the charts drawn from them. Everything it measures lands in
# reports/ (the raw reports, kept in git so that scripts/report.py --check can tell a
# hand-edited block from a generated one), then scripts/report.py writes REPORT.md.
#
#   scripts/report.sh            everything (about 45 minutes on two cores)
#   scripts/report.sh --only X   one part again: scenarios, floors, closed-loop, benches,
#                                instructions, charts (the others keep their last figures;
#                                REPORT_SCENARIOS="a b" limits the scenarios)
#
# Starts Kafka and PostgreSQL (scripts/services.sh up) for the scale-out scenarios. Run it on a
# quiet machine: each table records how busy the rest of the machine was meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

only=
case "${1:-}" in
  --only) only=${2:?--only needs a part}; shift 2 ;;
  "") ;;
  *) echo "usage: $0 [--only scenarios|floors|closed-loop|benches|instructions|charts]" >&2; exit 2 ;;
esac
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

# REPORT_SCENARIOS="kafka postgres" re-runs only those with --only scenarios.
read -ra SCENARIOS <<<"${REPORT_SCENARIOS:-ci steady burst duplicates failures overload capacity soak postgres kafka kafka-postgres}"
RATES=(5000 20000)
out=reports
bin=./target/release/webhooks
started=$(date +%s)

scripts/services.sh up >/dev/null
# shellcheck source=scripts/env.sh
source scripts/env.sh
command -v wrk >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build --release -p system -p loadgen
mkdir -p "$out" target/report

# One record per measured part: when, on what, how many cores Kafka and PostgreSQL used (part of
# the system under test in the scale-out scenarios), and how many other processes used: the
# machine's busy time less this script's and its children's and the services'. Children's time
# is counted once they are reaped, so a small negative is read as 0.
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
own_jiffies() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$$/stat"; }
service_jiffies() {
  local pids
  pids=$( { pgrep -x postgres; pgrep -f 'kafka\.Kafka'; } 2>/dev/null | sed 's|.*|/proc/&/stat|' || true)
  # shellcheck disable=SC2086 # one path per pid
  [ -n "$pids" ] && awk '{ s += $14 + $15 + $16 + $17 } END { print s + 0 }' $pids 2>/dev/null || echo 0
}
begin() { echo "--- $1"; t0=$(date +%s.%N) b0=$(busy_jiffies) o0=$(own_jiffies) s0=$(service_jiffies); }
note() {
  local shares
  shares=$(awk -v b0="$b0" -v b1="$(busy_jiffies)" -v o0="$o0" -v o1="$(own_jiffies)" -v s0="$s0" -v s1="$(service_jiffies)" \
    -v t0="$t0" -v t1="$(date +%s.%N)" -v hz="$(getconf CLK_TCK)" 'BEGIN {
      t = hz * (t1 - t0); svc = (s1 - s0) / t; c = ((b1 - b0) - (o1 - o0)) / t - svc
      printf "%.2f %.2f", c < 0 ? 0 : c, svc < 0 ? 0 : svc }')
  # shellcheck disable=SC2086 # two numbers
  python3 scripts/report_collect.py note "$out/run.json" "$1" $shares
}

if want scenarios; then
  for s in "${SCENARIOS[@]}"; do
    begin "scenario $s"
    rm -rf "${out:?}/$s"
    sync
    ./target/release/loadgen run "scenarios/$s.toml" --out "$out/$s" || echo "scenario $s: gates failed (kept in its report)"
    note "scenario:$s"
  done
fi

if want floors; then
  begin floors
  for r in "${RATES[@]}"; do
    echo "--- CPU per event and HTTP floor at $r/s"
    scripts/measure-cpu.sh "$bin" "report-$r" "$r" >"target/report/cpu-$r.txt" 2>&1
    scripts/http-floor.sh "$bin" "$r" >"target/report/floor-$r.txt" 2>&1
  done
  python3 scripts/report_collect.py floors "$out/floors.json" target/report "${RATES[@]}"
  note floors
fi

if want closed-loop; then
  begin closed-loop
  scripts/closed-loop.sh "$bin" 10 | tee target/report/closed-loop.txt
  python3 scripts/report_collect.py closed-loop "$out/closed-loop.json" target/report/closed-loop.txt
  note closed-loop
fi

if want benches; then
  begin benches
  rm -rf target/criterion
  cargo bench -p benches --bench hot_paths --bench embedded_queue --bench store_apply --bench ingress --bench kafka_produce \
    -- --warm-up-time 1 --measurement-time 3 --noplot
  python3 scripts/report_collect.py benches "$out/benches.json" target/criterion
  note benches
fi

if want instructions; then
  begin instructions
  scripts/instructions.sh check | tee target/report/instructions.txt || echo "instruction gate tripped (kept in the report)"
  python3 scripts/report_collect.py instructions "$out/instructions.json" benches/instructions
  note instructions
fi

if want charts; then
  echo "--- charts"
  venv=target/report-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install -q matplotlib==3.9.2
  "$venv/bin/python" scripts/report_charts.py "$out"
fi

python3 scripts/report_collect.py finish "$out/run.json" "$started" "$only"
scripts/report.py
echo "REPORT.md regenerated in $(( ($(date +%s) - started) / 60 )) minutes"
