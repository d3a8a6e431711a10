#!/usr/bin/env python3
"""The log's group sync as the disk alone serves it: `write` of 4 KB then `fdatasync`, every
2 ms, 5,000 times, into a file zero-filled ahead of time (the appender's preallocation);
first alone, then beside a thread that writes 30 and 60 MB/s in 1 MiB writes, each
`fsync`ed (about what the store writes at 10,000 events/s). Prints the sync's percentiles.
Its runs are in docs/measurements/2026-12-02-preallocation-step.md.

    scripts/fsync-tail.py DIR
"""
import os
import sys
import tempfile
import threading
import time


def background(directory, mb_per_s, stop):
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        fd, chunk, n = f.fileno(), b"y" * (1 << 20), 0
        while not stop.is_set():
            started = time.perf_counter()
            os.pwrite(fd, chunk, (n % 64) << 20)
            n += 1
            os.fsync(fd)
            left = 1.0 / mb_per_s - (time.perf_counter() - started)
            if left > 0:
                time.sleep(left)


def syncs(directory, n, interval):
    latencies = []
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        fd = f.fileno()
        os.write(fd, b"\0" * (n * 4096 + 8192))
        os.fsync(fd)
        buf = b"x" * 4000
        for i in range(n):
            started = time.perf_counter()
            os.pwrite(fd, buf, i * 4000)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
            time.sleep(interval)
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3
    return f"p50 {q(.5):.2f} p99 {q(.99):.2f} p99.9 {q(.999):.2f} max {latencies[-1] * 1e3:.2f} ms"


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    for rate in [0, 30, 60]:
        stop, beside = threading.Event(), None
        if rate:
            beside = threading.Thread(target=background, args=(directory, rate, stop))
            beside.start()
        print(f"background {rate} MB/s: write+fdatasync {syncs(directory, 5000, 0.002)}", flush=True)
        stop.set()
        if beside:
            beside.join()
