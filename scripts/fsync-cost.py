#!/usr/bin/env python3
"""What one group commit of the log costs the disk path: `write` of 4 KB then `fdatasync`,
N times in a row, into a file that grows with each write against one zero-filled ahead of
time (the appender's preallocation). Prints wall and CPU time per sync.

    scripts/fsync-cost.py [DIR] [N]      (DIR defaults to the current directory)
"""
import os
import sys
import tempfile
import time

SIZE = 4000


def run(directory, n, preallocated):
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        fd = f.fileno()
        if preallocated:
            os.write(fd, b"\0" * (n * SIZE + 8192))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        buf = b"x" * SIZE
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            os.write(fd, buf)
            os.fdatasync(fd)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    label = "preallocated" if preallocated else "growing"
    print(f"{label:12} wall {wall / n * 1e6:6.0f} us/sync   cpu {cpu / n * 1e6:5.0f} us/sync")


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    for _ in range(2):
        run(directory, n, False)
        run(directory, n, True)
