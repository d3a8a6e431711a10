#!/usr/bin/env bash
# CPU seconds per process while a command runs, to tell which process holds the CPU in a
# multi-process load run (server, workers, brokers, PostgreSQL, loadgen):
#   scripts/cpu-share.sh ./target/release/loadgen run scenarios/kafka.toml
# Samples `ps` every second; a process's share is its CPU time at its last sample minus its
# CPU time when first seen (from 0 if it started during the run). Processes are labelled by
# role: a Kafka JVM by its data directory, webhooks by its command, PostgreSQL backends together.
# Only webhooks and loadgen processes run from this checkout count (other checkouts on a shared
# machine run their own); brokers and PostgreSQL may be shared, and then include others' work.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,6p' "$0" >&2; exit 2; }

samples="$(mktemp)"
trap 'rm -f "$samples"' EXIT
sample() { ps -eo pid=,cputimes=,args= | sed "s/^/$1 /" >>"$samples"; }

sample 0
"$@" &
cmd=$!
i=1
while kill -0 "$cmd" 2>/dev/null; do sample "$i"; i=$((i + 1)); sleep 1; done
wait "$cmd" && rc=0 || rc=$?

awk -v root="$(cd "$(dirname "$0")/.." && pwd)" '
  function ours(args) { return index(args, root "/target/") > 0 || args ~ /^\.\/target\// }
  function label(args,   a, n) {
    if (args ~ /kafka\.Kafka/) { n = split(args, a, "/"); return "kafka " (args ~ /kafka-cluster/ ? a[n-1] : "single") }
    # Before the checkout filter: the title of a backend names its role and database, webhooks.
    if (args ~ /^(postgres|\/usr\/lib\/postgresql)/) return "postgresql"
    if (!ours(args) && args ~ /(webhooks|loadgen)/) return ""
    if (args ~ /webhooks (server|worker|standalone)/) { match(args, /webhooks (server|worker|standalone)/); return substr(args, RSTART, RLENGTH) }
    if (args ~ /loadgen/) return "loadgen"
    return ""
  }
  {
    t = $1; pid = $2; cpu = $3; $1 = $2 = $3 = ""; l = label(substr($0, 4))
    if (l == "") next
    if (!(pid in first)) { first[pid] = (t == 0 ? cpu : 0); who[pid] = l }
    last[pid] = cpu
  }
  END {
    for (p in first) { used[who[p]] += last[p] - first[p]; total += last[p] - first[p] }
    for (l in used) if (used[l] > 0) printf "%6d s CPU  %5.1f %%  %s\n", used[l], 100 * used[l] / total, l
    printf "%6d s CPU  100.0 %%  total\n", total
  }' "$samples" | sort -nr
exit "$rc"
