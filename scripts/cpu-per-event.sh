#!/usr/bin/env bash
# CPU per applied event of a running system process, over the seconds in which it applied
# events: samples user+system CPU (/proc/PID/stat) and the worker's processed count
# (/api/stats) once a second, and divides the CPU of the busy seconds by their events.
# Setup (creating orders) and verification (lookups) apply no events, so they are left out.
#
#   scripts/cpu-per-event.sh PID BASE_URL SECONDS [ADMIN_TOKEN]
#
# COUNT=requests counts HTTP requests served (/metrics) instead of applied events, for the
# HTTP floor (scripts/http-floor.sh); MIN_PER_SECOND (default 500) is what a busy second
# must count. Prints one line per second (t, cpu_s, count) and then the summary.
set -euo pipefail
pid=$1 base=$2 seconds=$3 token=${4:-}
count=${COUNT:-processed} min=${MIN_PER_SECOND:-500}
case $count in processed | requests) ;; *) echo "COUNT is processed or requests, not $count" >&2; exit 2 ;; esac
tick=$(getconf CLK_TCK)
auth=()
[[ -n $token ]] && auth=(-H "authorization: Bearer $token")

cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$pid/stat"; }
processed() { curl -sf "${auth[@]}" "$base/api/stats" | sed -n 's/.*"processed":\([0-9]*\).*/\1/p'; }
requests() { curl -sf "$base/metrics" | awk '/^webhooks_http_requests_total/ { n += $2 } END { printf "%d", n }'; }

busy_cpu=0 busy_events=0
prev_cpu=$(cpu) prev_n=$($count)
for ((t = 1; t <= seconds; t++)); do
  sleep 1
  [[ -d /proc/$pid ]] || break
  now_cpu=$(cpu) now_n=$($count)
  d_n=$((now_n - prev_n))
  printf '%3d cpu %.2f s %s %d (+%d)\n' "$t" "$now_cpu" "$count" "$now_n" "$d_n"
  # A second counts when it served a meaningful number (not a trickle of retries).
  if ((d_n >= min)); then
    busy_cpu=$(awk -v a="$busy_cpu" -v b="$now_cpu" -v c="$prev_cpu" 'BEGIN { print a + b - c }')
    busy_events=$((busy_events + d_n))
  fi
  prev_cpu=$now_cpu prev_n=$now_n
done
if ((busy_events == 0)); then
  echo "no busy seconds: nothing measured" >&2
  exit 1
fi
unit=event
[[ $count == requests ]] && unit=request
awk -v c="$busy_cpu" -v n="$busy_events" -v u="$unit" 'BEGIN { printf "busy seconds: %.2f CPU-s for %d %ss = %.1f us/%s\n", c, n, u, c / n * 1e6, u }'
