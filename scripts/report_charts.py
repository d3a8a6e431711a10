#!/usr/bin/env python3
"""Draws REPORT.md's charts from reports/ (called by scripts/report.sh, in a venv with a pinned
matplotlib): ack latency against offered rate from the capacity search, the HDR percentile
curves of the scenarios, and CPU per event by thread at each measured rate.

  report_charts.py REPORTS_DIR
"""
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

CURVES = ["steady", "burst", "soak", "postgres", "kafka", "kafka-postgres"]
# Run length of scripts/measure-cpu.sh's load (its default SECONDS).
CPU_RUN_S = 20


def load(path):
    return json.loads(path.read_text()) if path.exists() else None


def save(fig, out, name):
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)


def capacity(reports, out):
    r = load(reports / "capacity" / "report.json")
    steps = ((r or {}).get("capacity") or {}).get("steps")
    if not steps:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s["offered_rate"] for s in steps], [s["ack_p99_ms"] for s in steps], marker="o", label="ack p99 (from schedule)")
    ax.set_xlabel("offered rate, events/s")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot([s["offered_rate"] for s in steps], [s.get("system_cpu_us_per_event") or 0 for s in steps],
             color="tab:orange", marker="s", label="system µs CPU per event")
    ax2.set_ylabel("µs CPU per event")
    ax.set_title("Capacity search: ack p99 and CPU per event against offered rate")
    fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.9))
    save(fig, out, "capacity.png")


def percentiles(reports, out):
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = 0
    for name in CURVES:
        r = load(reports / name / "report.json")
        dist = (r or {}).get("ack_distribution")
        if not dist:
            continue
        # HDR convention: x is 1 / (1 - percentile), so the tail gets the room.
        xs = [1 / (1 - p / 100) for p, _ in dist if p < 100]
        ys = [ms for p, ms in dist if p < 100]
        ax.plot(xs, ys, label=name)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["0 %", "50 %", "90 %", "99 %", "99.9 %", "99.99 %"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("ack latency from schedule, ms")
    ax.set_title("Ack latency percentiles by scenario")
    ax.legend()
    save(fig, out, "ack-percentiles.png")


def components(reports, out):
    f = load(reports / "floors.json")
    if not f:
        return
    rows = f["rows"]
    names = sorted({n for r in rows for n in r["thread_cpu_ms"]}, key=lambda n: -sum(r["thread_cpu_ms"].get(n, 0) for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(rows)
    labels = [f"{r['rate']:,}/s" for r in rows]
    for n in names:
        per_event = [r["thread_cpu_ms"].get(n, 0) * 1000 / (r["rate"] * CPU_RUN_S) for r in rows]
        ax.bar(labels, per_event, bottom=bottom, label=n)
        bottom = [b + v for b, v in zip(bottom, per_event)]
    ax.set_ylabel("µs CPU per event sent (whole run)")
    ax.set_title("System CPU per event by thread")
    ax.legend(fontsize="small", ncol=2)
    save(fig, out, "cpu-by-thread.png")


def main():
    reports = pathlib.Path(sys.argv[1])
    out = reports / "charts"
    out.mkdir(parents=True, exist_ok=True)
    for draw in (capacity, percentiles, components):
        draw(reports, out)


if __name__ == "__main__":
    main()
