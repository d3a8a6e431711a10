#!/usr/bin/env bash
# CPU per applied event of a running system process, over the seconds in which it applied
# events: samples user+system CPU (/proc/PID/stat) and the worker's processed count
# (/api/stats) once a second, and divides the CPU of the busy seconds by their events.
# Setup (creating orders) and verification (lookups) apply no events, so they are left out.
#
#   scripts/cpu-per-event.sh PID BASE_URL SECONDS [ADMIN_TOKEN]
#
# Prints one line per second (t, cpu_s, processed) and then the summary.
set -euo pipefail
pid=$1 base=$2 seconds=$3 token=${4:-}
tick=$(getconf CLK_TCK)
auth=()
[[ -n $token ]] && auth=(-H "authorization: Bearer $token")

cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$pid/stat"; }
processed() { curl -sf "${auth[@]}" "$base/api/stats" | sed -n 's/.*"processed":\([0-9]*\).*/\1/p'; }

busy_cpu=0 busy_events=0
prev_cpu=$(cpu) prev_n=$(processed)
for ((t = 1; t <= seconds; t++)); do
  sleep 1
  [[ -d /proc/$pid ]] || break
  now_cpu=$(cpu) now_n=$(processed)
  d_n=$((now_n - prev_n))
  printf '%3d cpu %.2f s processed %d (+%d)\n' "$t" "$now_cpu" "$now_n" "$d_n"
  # A second counts when it applied a meaningful number of events (not a trickle of retries).
  if ((d_n >= 500)); then
    busy_cpu=$(awk -v a="$busy_cpu" -v b="$now_cpu" -v c="$prev_cpu" 'BEGIN { print a + b - c }')
    busy_events=$((busy_events + d_n))
  fi
  prev_cpu=$now_cpu prev_n=$now_n
done
if ((busy_events == 0)); then
  echo "no busy seconds: nothing measured" >&2
  exit 1
fi
awk -v c="$busy_cpu" -v n="$busy_events" 'BEGIN { printf "busy seconds: %.2f CPU-s for %d events = %.1f us/event\n", c, n, c / n * 1e6 }'
