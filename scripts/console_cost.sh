#!/usr/bin/env bash
# Is the console cheap to serve? One standalone system; loadgen windows at a fixed rate
# alternate between "console closed" and "console open in headless Chromium" (polling
# /api/stats every 2 s). For each window: server CPU per accepted event (from /proc), the
# console's own requests, accepted/s and ack p50/p99 from loadgen's report. Ratios within this
# one run are the result; absolute figures move with whatever else the machine runs.
# Usage: scripts/console_cost.sh [ROUNDS]   (needs chromium and a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
bin=target/release/webhooks
loadgen=target/release/loadgen
for tool in "$bin" "$loadgen"; do [ -x "$tool" ] || { echo "build first: cargo build --release --workspace --bins" >&2; exit 1; }; done
command -v chromium >/dev/null || { echo "chromium missing: apt-get install -y chromium" >&2; exit 1; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$bin" standalone --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/system.log" 2>&1 &
system=$!
browser=""
cleanup() {
  [ -n "$browser" ] && kill -- "-$browser" 2>/dev/null || true
  kill "$system" 2>/dev/null || true
  wait "$system" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$system/stat"; }
stats_requests() { curl -fs "$base/metrics" | awk '/^webhooks_http_requests_total\{route="\/api\/stats"/ {n += $2} END {print n + 0}'; }

open_console() {
  setsid chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$work/chrome" --remote-debugging-port=0 "$base/console" >/dev/null 2>&1 &
  browser=$!
  # Wait until the page is polling, so the window measures an open console.
  local before; before=$(stats_requests)
  for _ in $(seq 100); do [ "$(stats_requests)" -gt "$before" ] && return; sleep 0.2; done
  echo "the console never polled /api/stats" >&2; exit 1
}

close_console() { kill -- "-$browser" 2>/dev/null || true; browser=""; sleep 1; }

window() {
  local mode=$1 n=$2 out="$work/$1-$2"
  local t0 r0; t0=$(cpu_ticks); r0=$(stats_requests)
  "$loadgen" run scenarios/console-cost.toml --url "$base" --out "$out" >"$out.log" 2>&1 || true
  local t1 r1; t1=$(cpu_ticks); r1=$(stats_requests)
  python3 - "$out/report.json" "$mode" "$n" "$((t1 - t0))" "$(getconf CLK_TCK)" "$((r1 - r0))" <<'PY'
import json, sys
path, mode, n, ticks, hz, console = sys.argv[1:]
r = json.load(open(path))
ack = r["ack_latency_ms"]["2xx"]
cpu_ms = int(ticks) * 1000 / int(hz)
print(f"| {mode} | {n} | {r['accepted']} | {r['throughput']['accepted_per_s']:.0f} | {cpu_ms:.0f} | "
      f"{cpu_ms * 1000 / max(1, r['accepted']):.0f} | {ack['p50_ms']:.2f} | {ack['p99_ms']:.2f} | {console} | "
      f"{'ok' if r['verification'].get('lost', 1) == 0 else 'LOST'} |")
PY
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; rounds: $rounds"
echo "| console | round | accepted | accepted/s | server CPU ms | CPU µs/event | ack p50 ms | ack p99 ms | /api/stats requests | verified |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in $(seq "$rounds"); do
  window closed "$n"
  open_console
  window open "$n"
  close_console
done
