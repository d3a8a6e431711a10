#!/usr/bin/env python3
"""Turns the text the measurement scripts print into the JSON files under reports/ that
scripts/report.py draws REPORT.md's tables from (called by scripts/report.sh).

  report_collect.py note RUN_JSON PART OTHERS_CORES      when, and beside how much other work
  report_collect.py floors OUT DIR RATE...                  measure-cpu.sh + http-floor.sh
  report_collect.py closed-loop OUT FILE                    closed-loop.sh
  report_collect.py benches OUT CRITERION_DIR               criterion's estimates
  report_collect.py instructions OUT GUNGRAUN_HOME          callgrind totals, run and baseline
  report_collect.py finish RUN_JSON STARTED ONLY            commit, CPU, duration
"""
import json
import pathlib
import platform
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load(path):
    p = pathlib.Path(path)
    return json.loads(p.read_text()) if p.exists() else {}


def save(path, value):
    pathlib.Path(path).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def cpu_model():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine():
    commit = git("rev-parse", "--short", "HEAD")
    # reports/ and REPORT.md are this run's own output, not a change to what is measured.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports", ":!REPORT.md"))
    return {
        "commit": commit + ("+dirty" if dirty else ""),
        "cpu": cpu_model(),
        "cores": len([l for l in pathlib.Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("processor")]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def note(run_json, part, others_cores, services_cores):
    run = load(run_json)
    shares = {"others_cores": float(others_cores), "services_cores": float(services_cores)}
    run.setdefault("parts", {})[part] = {**machine(), **shares}
    save(run_json, run)


def first(pattern, text, cast=float):
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"report_collect: no match for {pattern!r}")
    return cast(m.group(1).replace(",", ""))


def floors(out, directory, *rates):
    rows = []
    for r in rates:
        cpu = (pathlib.Path(directory) / f"cpu-{r}.txt").read_text()
        floor = (pathlib.Path(directory) / f"floor-{r}.txt").read_text()
        threads = {k: int(v) for k, v in re.findall(r" (\S+)=(\d+) ms", cpu.split("threads:", 1)[1].splitlines()[0])}
        rows.append({
            "rate": int(r),
            "us_per_event": first(r"= ([\d.]+) us/event", cpu),
            "floor_us_per_request": first(r"= ([\d.]+) us/request", floor),
            "thread_cpu_ms": threads,
        })
    save(out, {"rows": rows})


def closed_loop(out, path):
    text = pathlib.Path(path).read_text()
    save(out, {
        "webhooks_per_s": first(r"webhooks (\d+)/s", text),
        "non_2xx": first(r"non-2xx (\d+)", text, int),
        "healthz_per_s": first(r"healthz (\d+)/s", text),
        "ratio": first(r"ratio ([\d.]+)", text),
        "processed": first(r"processed (\d+) of", text, int),
        "accepted": first(r"of (\d+) accepted", text, int),
        "us_per_event": first(r"CPU ([\d.]+) us per accepted", text),
    })


def benches(out, directory):
    rows = {}
    for bench in sorted(pathlib.Path(directory).glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements")
        rows[meta["full_id"]] = {"mean_ns": est["mean"]["point_estimate"], "elements": elements}
    if not rows:
        raise SystemExit("report_collect: no criterion results")
    save(out, {"rows": rows})


def callgrind_total(files):
    total = 0
    for f in files:
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("summary:"):
                total += int(line.split()[1])
    return total


def instructions(out, home):
    rows = {}
    for d in sorted(pathlib.Path(home).glob("benches/*/*/*")):
        if not d.is_dir():
            continue
        base = sorted(d.glob("*.out.base@checked_in"))
        run = sorted(d.glob("*.out"))
        if base:
            rows[d.name] = {
                "baseline": callgrind_total(base),
                "run": callgrind_total(run) if run else None,
                "threads": len(base),
                "baseline_commit": git("log", "-1", "--format=%h %cs", "--", str(d)),
            }
    save(out, {"rows": rows})


def finish(run_json, started, only):
    run = load(run_json)
    run["machine"] = machine()
    if not only:
        run["duration_min"] = round((time.time() - int(started)) / 60, 1)
    save(run_json, run)


COMMANDS = {"note": note, "floors": floors, "closed-loop": closed_loop, "benches": benches,
            "instructions": instructions, "finish": finish}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
