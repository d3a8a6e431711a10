#!/usr/bin/env python3
"""Regenerates the measured tables of REPORT.md from reports/*/report.json.

Usage: scripts/report.py [REPORT.md]   (rewrites the part between the table markers)
The reports come from `./target/release/loadgen run scenarios/NAME.toml --out reports/NAME`.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"
ORDER = ["ci", "steady", "burst", "duplicates", "failures", "overload", "soak", "kafka", "postgres", "kafka-postgres"]


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def row(name, r):
    t = r["throughput"]
    ack = r["ack_latency_ms"].get("2xx", {})
    e2e = r["system"].get("e2e_latency_ms") or {}
    v = r["verification"]
    wrong = v["wrong_payment_state"] + v["wrong_order_state"] + v["unexpected_applied"]
    return [
        name,
        r["machine"]["cpu"].replace("(R)", "").replace(" Processor", ""),
        fmt(r["sent"]),
        f"{fmt(t['target_send_rate'], 0)} / {fmt(t['achieved_send_rate'], 0)}",
        fmt(t["accepted_per_s"], 0),
        fmt(t["applied_per_s"], 0),
        f"{fmt(ack.get('p50_ms'), 2)} / {fmt(ack.get('p99_ms'), 1)} / {fmt(ack.get('p999_ms'), 1)}",
        fmt(r["service_time_ms"]["p99_ms"], 1),
        f"{fmt(e2e.get('p50'), 1)} / {fmt(e2e.get('p99'), 1)} / {fmt(e2e.get('p999'), 1)}",
        fmt(r["drain_s"], 2),
        f"{v['lost']} / {v['double_applied']} / {wrong}",
        fmt(r["unexpected_status"]),
        fmt(r["system"].get("rss_peak_mb"), 0),
        fmt(r["system"].get("cpu_s"), 1),
        fmt(r["loadgen_cores_used"], 2),
        fmt(r.get("ceiling_ratio"), 2),
    ]


HEADER = [
    "scenario", "CPU", "requests", "send/s target / achieved", "accepted/s", "applied/s",
    "ack ms p50 / p99 / p99.9", "service p99 ms", "e2e ms p50 / p99 / p99.9", "drain s",
    "lost / doubled / wrong", "unexpected status", "peak RSS MB", "system CPU s",
    "loadgen cores", "accepted / ceiling",
]


def tables():
    reports = {}
    for path in sorted((ROOT / "reports").glob("*/report.json")):
        reports[path.parent.name] = json.loads(path.read_text())
    names = [n for n in ORDER if n in reports] + sorted(n for n in reports if n not in ORDER)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for n in names:
        lines.append("| " + " | ".join(row(n, reports[n])) + " |")
    lines.append("")
    lines.append("Ceilings measured in the same runs (closed loop, 64 connections, `GET /healthz`): " + ", ".join(
        f"{n} {fmt(reports[n]['ceiling_rps'], 0)}/s" for n in names if reports[n].get("ceiling_rps")) + ".")
    machines = {(r["machine"]["cores"], r["machine"]["cpu"], r["machine"]["os"]) for r in reports.values()}
    lines.append("Machine: " + "; ".join(f"{c} cores, {cpu}, {os}" for c, cpu, os in machines) + ".")
    lines.append("Commands: `./target/release/loadgen run scenarios/<scenario>.toml --out reports/<scenario>`; "
                 "the full reports (JSON, Markdown, HTML charts) are in `reports/<scenario>/`.")
    return "\n".join(lines)


def main():
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "REPORT.md"
    text = target.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{target}: table markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    target.write_text(f"{head}{BEGIN}\n{tables()}\n{END}{tail}")


if __name__ == "__main__":
    main()
