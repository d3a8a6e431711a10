#!/usr/bin/env python3
"""Writes REPORT.md's generated blocks from what scripts/report.sh measured into reports/.

  scripts/report.py            rewrite every generated block of REPORT.md
  scripts/report.py --check    exit 1 when a block differs from what reports/ gives (a block
                               edited by hand, or reports/ changed without REPORT.md)

A block sits between `<!-- generated:NAME ... -->` and `<!-- /generated:NAME -->`; change
its generator below, never its text.
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
SCENARIOS = ["ci", "steady", "burst", "duplicates", "failures", "overload", "capacity", "soak", "postgres", "kafka",
             "kafka-postgres"]
RUN = "scripts/report.sh"
# Cores other processes may use during a part before its figures count as measured on a busy
# machine (an idle broker and PostgreSQL stay well below).
BUSY_CORES = 0.2


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def load(name):
    p = REPORTS / name
    return json.loads(p.read_text()) if p.exists() else None


def scenario(name):
    return load(f"{name}/report.json")


def part(name):
    return ((load("run.json") or {}).get("parts") or {}).get(name)


def provenance(name):
    p = part(name)
    if not p:
        return f"Not measured yet: run `{RUN} --only {name}`."
    return f"Measured on commit {p['commit']}, {p['cores']} cores {p['cpu']}, {p['date']}; {beside(p)}."


def beside(p):
    """How busy the rest of the machine was during a part."""
    others = max(p["others_cores"], 0.0)
    if "services_cores" not in p:
        return f"other processes, the services included, used {others:.2f} cores meanwhile"
    services = f"; Kafka and PostgreSQL used {p['services_cores']:.2f}" if p["services_cores"] >= 0.01 else ""
    return f"other processes used {others:.2f} cores meanwhile{services}"


def busy(p):
    return p["others_cores"] > BUSY_CORES


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines


def wrong(v):
    return v["wrong_payment_state"] + v["wrong_order_state"] + v["unexpected_applied"]


# --- blocks ---------------------------------------------------------------------------

def block_run():
    run = load("run.json")
    if not run or "machine" not in run:
        return [f"No figures generated yet: `{RUN}`."]
    m = run["machine"]
    parts = run.get("parts") or {}
    took = f" A whole run took {run['duration_min']} minutes." if "duration_min" in run else ""
    commits = {}
    for n, p in parts.items():
        commits.setdefault(p["commit"], []).append(n)
    built = "; ".join(f"commit {c} for {', '.join(ns)}" for c, ns in commits.items()) if len(commits) > 1 else f"commit {m['commit']}"
    lines = [f"Figures in the generated tables: `{RUN}` on {built}; {m['cores']} cores {m['cpu']}, last part finished "
             f"{m['date']}.{took} Each table repeats its commit and how busy the rest of the machine was."]
    crowded = {n: p for n, p in parts.items() if busy(p)}
    if crowded:
        cores = [p["others_cores"] for p in crowded.values()]
        which = "every part" if len(crowded) == len(parts) else ", ".join(crowded)
        counted = ", the services included," if any("services_cores" not in p for p in crowded.values()) else ""
        amount = f": other processes{counted} used {min(cores):.2f}-{max(cores):.2f} cores"
        lines += ["", f"**Measured on a busy machine**{amount} beside {which}. Latencies and rates there are the "
                  "system's and its neighbours'; CPU per event suffers less. "
                  f"Re-run `{RUN}` on a quiet machine before judging a target on them."]
    return lines


def verdict(ok):
    return "**met**" if ok else "**not met**"


def flag(*names):
    """Marks a figure measured while other work used the machine (see the run line)."""
    return " (busy machine)" if any(part(n) and busy(part(n)) for n in names) else ""


def summary_rows():
    rows = []
    runs = {n: scenario(n) for n in SCENARIOS}
    done = {n: r for n, r in runs.items() if r}
    if done:
        lost = sum(r["verification"]["lost"] for r in done.values())
        doubled = sum(r["verification"]["double_applied"] for r in done.values())
        bad = sum(wrong(r["verification"]) for r in done.values())
        checked = sum(r["verification"]["payments_checked"] for r in done.values())
        rows.append(["nothing acknowledged is lost or applied twice",
                     f"{lost} lost, {doubled} doubled, {bad} wrong over {checked:,} payments in {len(done)} scenarios",
                     "loadgen's model of every payment and order", verdict(lost + doubled + bad == 0),
                     "`loadgen run scenarios/NAME.toml`"])
    s = runs.get("steady")
    if s:
        ack = s["ack_latency_ms"]["2xx"]
        e2e = s["system"].get("e2e_latency_ms") or {}
        own = (s["system"].get("ack_latency_ms") or {}).get("p99")
        rows.append(["ack p99 ≤ 5 ms at 10,000/s for 60 s", f"{fmt(ack['p99_ms'], 2)} ms" + flag("scenario:steady"),
                     f"the server's own ack p99 {fmt(own, 2)} ms", verdict(ack["p99_ms"] <= 5),
                     "`loadgen run scenarios/steady.toml`"])
        rows.append(["ack p99.9 ≤ 20 ms at 10,000/s", f"{fmt(ack['p999_ms'], 2)} ms" + flag("scenario:steady"), "as above",
                     verdict(ack["p999_ms"] <= 20), "as above"])
        if e2e.get("p99") is not None:
            rows.append(["end-to-end p99 ≤ 20 ms at 10,000/s", f"{fmt(e2e['p99'], 2)} ms" + flag("scenario:steady"), "—",
                         verdict(e2e["p99"] <= 20), "as above"])
    s = runs.get("soak")
    if s:
        e2e = s["system"].get("e2e_latency_ms") or {}
        rss = s["system"].get("rss_samples_mb") or [0]
        half = rss[len(rss) // 2:] or rss
        rows.append(["10-minute soak at 5,000/s: no end-to-end above 250 ms, flat memory",
                     f"end-to-end max {fmt(e2e.get('max'), 1)} ms; RSS {fmt(min(half), 0)}-{fmt(max(half), 0)} MB "
                     f"over the second half" + flag("scenario:soak"), "—", verdict((e2e.get("max") or 1e9) <= 250),
                     "`loadgen run scenarios/soak.toml`"])
    f = load("floors.json")
    for r in (f or {}).get("rows", []):
        rows.append([f"≤ 40 µs CPU per event at {r['rate']:,}/s", f"{fmt(r['us_per_event'])} µs" + flag("floors"),
                     f"HTTP floor of the same binary {fmt(r['floor_us_per_request'])} µs per request "
                     f"(ratio {r['us_per_event'] / r['floor_us_per_request']:.2f})", verdict(r["us_per_event"] <= 40),
                     f"`scripts/measure-cpu.sh BIN L {r['rate']}`, `scripts/http-floor.sh BIN {r['rate']}`"])
    c = load("closed-loop.json")
    if c:
        rows.append(["closed loop ≥ 0.6 × `GET /healthz`", f"{c['ratio']:.2f} ({fmt(c['webhooks_per_s'], 0)} accepted/s)" + flag("closed-loop"),
                     f"`/healthz` of the same process, same wrk: {fmt(c['healthz_per_s'], 0)}/s", verdict(c["ratio"] >= 0.6),
                     "`scripts/closed-loop.sh BIN 10`"])
    b = runs.get("burst")
    if b:
        peak = max((t["accepted"] for t in b.get("timeline") or []), default=0)
        rows.append(["≥ 40,000 events/s accepted and applied", f"busiest second {peak:,} accepted; "
                     f"{fmt(b['throughput']['applied_per_s'], 0)}/s applied on average" + flag("scenario:burst"), "—", verdict(peak >= 40000),
                     "`loadgen run scenarios/burst.toml`"])
    k = runs.get("kafka-postgres")
    if k:
        t = k["throughput"]
        rows.append(["Kafka + PostgreSQL, two workers, ≥ 15,000/s",
                     f"{fmt(t['accepted_per_s'], 0)}/s accepted, {fmt(t['applied_per_s'], 0)}/s applied" + flag("scenario:kafka-postgres"), "—",
                     verdict(t["accepted_per_s"] >= 15000), "`loadgen run scenarios/kafka-postgres.toml`"])
    return rows


def block_summary():
    rows = summary_rows()
    if not rows:
        return [f"Not measured yet: `{RUN}`."]
    return table(["claim (target)", "measured", "compared with, same run", "met?", "command"], rows)


def scenario_row(name, r):
    t = r["throughput"]
    ack = r["ack_latency_ms"].get("2xx", {})
    e2e = r["system"].get("e2e_latency_ms") or {}
    v = r["verification"]
    return [
        name, fmt(r["sent"]), f"{fmt(t['target_send_rate'], 0)} / {fmt(t['achieved_send_rate'], 0)}",
        fmt(t["accepted_per_s"], 0), fmt(t["applied_per_s"], 0),
        f"{fmt(ack.get('p50_ms'), 2)} / {fmt(ack.get('p99_ms'), 1)} / {fmt(ack.get('p999_ms'), 1)}",
        fmt(r["service_time_ms"]["p99_ms"], 1),
        f"{fmt(e2e.get('p50'), 1)} / {fmt(e2e.get('p99'), 1)} / {fmt(e2e.get('p999'), 1)}",
        fmt(r["drain_s"], 2), f"{v['lost']} / {v['double_applied']} / {wrong(v)}", fmt(r["unexpected_status"]),
        fmt(r["system"].get("rss_peak_mb"), 0), fmt(r["system"].get("cpu_s"), 1), fmt(r["loadgen_cores_used"], 2),
    ]


def scenario_provenance():
    """Which build and machine each row comes from: scenarios can be re-run a few at a time."""
    groups = {}
    for n in SCENARIOS:
        p = part(f"scenario:{n}")
        if p:
            groups.setdefault((p["commit"], p["cores"], p["cpu"]), []).append((n, p))
    if not groups:
        return provenance("scenarios")
    return " ".join(
        f"{', '.join(n for n, _ in rows)}: commit {commit}, {cores} cores {cpu}, "
        + "; ".join(f"{n} {p['date']}, {beside(p)}" for n, p in rows) + "."
        for (commit, cores, cpu), rows in groups.items())


def block_scenarios():
    header = ["scenario", "requests", "send/s target / achieved", "accepted/s", "applied/s", "ack ms p50 / p99 / p99.9",
              "service p99 ms", "e2e ms p50 / p99 / p99.9", "drain s", "lost / doubled / wrong", "unexpected status",
              "peak RSS MB", "system CPU s", "loadgen cores"]
    rows = [scenario_row(n, scenario(n)) for n in SCENARIOS if scenario(n)]
    if not rows:
        return [provenance("scenarios")]
    lines = table(header, rows)
    ceilings = [f"{n} {fmt(scenario(n)['ceiling_rps'], 0)}/s" for n in SCENARIOS if scenario(n) and scenario(n).get("ceiling_rps")]
    if ceilings:
        lines += ["", "Bare-HTTP ceilings measured in the same runs (closed loop, `GET /healthz`): " + ", ".join(ceilings) + "."]
    lines += ["", scenario_provenance(),
              "Command: `./target/release/loadgen run scenarios/<scenario>.toml --out reports/<scenario>`; the full "
              "reports (JSON, Markdown, HTML charts, latency.hlog) are in `reports/<scenario>/`."]
    return lines


def block_floors():
    f = load("floors.json")
    if not f:
        return [provenance("floors")]
    rows = [[f"{r['rate']:,}", fmt(r["us_per_event"]), fmt(r["floor_us_per_request"]),
             f"{r['us_per_event'] / r['floor_us_per_request']:.2f}"] for r in f["rows"]]
    return table(["offered/s", "system µs CPU per applied event", "HTTP floor µs per request", "ratio"], rows) + [
        "", provenance("floors"),
        "Commands: `scripts/measure-cpu.sh ./target/release/webhooks L RATE`, `scripts/http-floor.sh ./target/release/webhooks RATE`."]


def block_components():
    f = load("floors.json")
    if not f:
        return [provenance("floors")]
    names = sorted({n for r in f["rows"] for n in r["thread_cpu_ms"]})
    rows = [[n] + [fmt(r["thread_cpu_ms"].get(n, 0)) for r in f["rows"]] for n in names]
    return table(["thread"] + [f"CPU ms at {r['rate']:,}/s" for r in f["rows"]], rows) + [
        "", "Whole runs of `scripts/measure-cpu.sh` (set-up and verification included), by thread name; " + provenance("floors")]


def block_closed_loop():
    c = load("closed-loop.json")
    if not c:
        return [provenance("closed-loop")]
    return table(["webhooks accepted/s", "non-2xx", "`/healthz`/s", "ratio", "processed of accepted", "µs CPU per accepted event"],
                 [[fmt(c["webhooks_per_s"], 0), c["non_2xx"], fmt(c["healthz_per_s"], 0), f"{c['ratio']:.2f}",
                   f"{c['processed']:,} of {c['accepted']:,}", fmt(c["us_per_event"])]]) + [
        "", provenance("closed-loop"), "Command: `scripts/closed-loop.sh ./target/release/webhooks 10` (wrk, one thread, 64 connections)."]


def duration(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def rate(per_s):
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.2f} {unit}/s"
    return f"{per_s:.0f}/s"


def block_benches():
    b = load("benches.json")
    if not b:
        return [provenance("benches")]
    rows = [[k, duration(v["mean_ns"]), rate((v["elements"] or 1) * 1e9 / v["mean_ns"])] for k, v in b["rows"].items()]
    return table(["bench", "mean time per iteration", "elements per second"], rows) + [
        "", provenance("benches"),
        "Command: `cargo bench -p benches --bench NAME -- --warm-up-time 1 --measurement-time 3` "
        "(PostgreSQL and Kafka local, from `scripts/services.sh up`)."]


def block_instructions():
    i = load("instructions.json")
    if not i:
        return [provenance("instructions")]
    rows = []
    for k, v in i["rows"].items():
        change = "-" if not v["run"] else f"{100 * (v['run'] - v['baseline']) / v['baseline']:+.2f} %"
        rows.append([k, fmt(v["baseline"]), v["baseline_commit"], fmt(v["run"]), change, v["threads"]])
    return table(["benchmark", "checked-in baseline", "baseline recorded", "this run", "change", "threads"], rows) + [
        "", provenance("instructions"), "Command: `scripts/instructions.sh check` (the CI gate: fails above +3 %)."]


def block_charts():
    charts = sorted((REPORTS / "charts").glob("*.png"))
    if not charts:
        return [f"No charts yet: `{RUN} --only charts`."]
    return [f"![{c.stem}](reports/charts/{c.name})" for c in charts]


BLOCKS = {"run": block_run, "summary": block_summary, "scenarios": block_scenarios, "floors": block_floors,
          "components": block_components, "closed-loop": block_closed_loop, "benches": block_benches,
          "instructions": block_instructions, "charts": block_charts}
PATTERN = re.compile(r"(<!-- generated:([\w-]+)[^>]*-->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


def render(text):
    def fill(m):
        name = m.group(2)
        if name not in BLOCKS:
            raise SystemExit(f"REPORT.md: unknown generated block {name!r}")
        return m.group(1) + "\n".join(BLOCKS[name]()) + "\n" + m.group(4)
    return PATTERN.sub(fill, text)


def main():
    target = ROOT / "REPORT.md"
    text = target.read_text()
    found = {m.group(2) for m in PATTERN.finditer(text)}
    missing = set(BLOCKS) - found
    if missing:
        sys.exit(f"REPORT.md lacks the generated blocks {sorted(missing)}")
    new = render(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            old_blocks = {m.group(2): m.group(3) for m in PATTERN.finditer(text)}
            new_blocks = {m.group(2): m.group(3) for m in PATTERN.finditer(new)}
            edited = [n for n in old_blocks if old_blocks[n] != new_blocks.get(n)]
            sys.exit(f"REPORT.md: generated blocks {edited} differ from what reports/ gives: "
                     f"edit scripts/report.py, not the block, and run scripts/report.py")
        return
    target.write_text(new)


if __name__ == "__main__":
    main()
