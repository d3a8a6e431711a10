#!/usr/bin/env python3
"""Shows that each durable-path test in system/tests/log_faults.rs can fail: takes one fix out
of the source (a one-line change), runs that fix's test, and puts the source back, whatever
happens. Every case must FAIL; a case that passes means its test no longer sees the hole.

    scripts/unfix.py            # every case
    scripts/unfix.py h5 h9      # some

Run it on a clean tree: it edits tracked files in place for the duration of each run.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name: (file, the fix's line, the line without the fix, the test that must then fail)
CASES = {
    "h5": ("system/src/queue/log/recovery.rs",
           '    file.sync_all().map_err(LogError::io("sync segment", &path))?;\n', "",
           "what_recovery_reads_as_durable_it_makes_durable"),
    "h6": ("system/src/queue/log/appender.rs",
           "self.allocated = match self.file.set_len(from) {", "self.allocated = match Ok::<(), ()>(()) {",
           "a_short_preallocation_at_a_full_disk_leaves_no_zeros_in_a_finished_segment"),
    "h8": ("system/src/queue/log/appender.rs",
           "segment::sync_dir_on(&*self.disk, &self.dir).map_err(|e| Fault::Fatal(e.to_string()))?;",
           "segment::sync_dir_on(&*self.disk, &self.dir).map_err(|e| Fault::Unwritten(e.to_string()))?;",
           "a_failed_directory_sync_at_a_roll_stops_the_log_until_restarted"),
    "h9": ("system/src/store/sqlite.rs",
           "        checkpoint_in_steps(&mut conn, failed.clone())?;",
           '        let _ = failed; conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;',
           "a_failed_checkpoint_keeps_the_store_from_calling_itself_durable"),
    "h10": ("system/src/queue/log/appender.rs",
            "            self.unsynced(why)\n",
            "            Fault::Fatal(why)\n",
            "pages_a_failed_sync_left_readable_are_not_taken_for_records"),
}


def run(name: str) -> bool:
    path, fixed, unfixed, test = CASES[name]
    file = ROOT / path
    original = file.read_text()
    if original.count(fixed) != 1:
        sys.exit(f"{name}: the fix's line is not in {path} exactly once; update this script")
    file.write_text(original.replace(fixed, unfixed))
    try:
        cmd = ["cargo", "test", "--release", "-p", "system", "--test", "log_faults", "--", "--exact", test]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    finally:
        file.write_text(original)
    failed = result.returncode != 0 and "test result: FAILED" in result.stdout
    print(f"{name}: {test} {'fails without its fix (good)' if failed else 'PASSES without its fix'}", flush=True)
    return failed


if __name__ == "__main__":
    names = sys.argv[1:] or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {list(CASES)}")
    sys.exit(0 if all([run(n) for n in names]) else 1)
