#!/usr/bin/env python3
"""Time until a run starts optimising: a cold child process, a cold worker, a warm worker.

This is what a painter waits before the progress bar moves: importing torch,
initialising the device, loading the weights, reading the images, computing the
style targets. Each path runs the same small job; the time is taken to its first
"optimize" progress event.

    .venv/bin/python benchmarks/worker_latency.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from stylize_core.client import connect, run_in_worker  # noqa: E402

JOB = [str(ROOT / "examples" / "tubingen.jpg"), str(ROOT / "examples" / "starry_night.jpg"),
       "--max-size", "256", "--resolution", "working", "--iterations", "2", "--progress", "json"]


def until_first_iteration(start_run) -> float:
    started = time.perf_counter()
    first = []

    def on_event(event: dict) -> None:
        if event.get("stage") == "optimize" and not first:
            first.append(time.perf_counter() - started)
    start_run(on_event)
    return first[0]


def child_process(output: Path):
    def run(on_event):
        process = subprocess.Popen([sys.executable, "-m", "stylize_core", *JOB, "-o", str(output)],
                                   stdout=subprocess.PIPE, text=True)
        for line in process.stdout:
            on_event(json.loads(line))
        process.wait()
    return run


def worker(output: Path, socket_path: Path, start: bool):
    return lambda on_event: run_in_worker(sys.executable, [*JOB, "-o", str(output)], on_event,
                                          socket_path=socket_path, start=start, idle_timeout=120)


def stop_worker(socket_path: Path) -> None:
    connection = connect(socket_path)
    if connection:
        connection.sendall(b'{"ping": true}\n')
        pid = json.loads(connection.makefile().readline())["pid"]
        connection.close()
        os.kill(pid, signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        socket_path = folder / "sock" / "worker.sock"
        rows = {"child process (cold)": [], "worker, first run (starts it)": [], "worker, warm run": []}
        for run in range(args.runs):
            output = folder / f"out{run}.png"
            rows["child process (cold)"].append(until_first_iteration(child_process(output)))
            rows["worker, first run (starts it)"].append(until_first_iteration(worker(output, socket_path, True)))
            rows["worker, warm run"].append(until_first_iteration(worker(output, socket_path, False)))
            stop_worker(socket_path)
            time.sleep(0.5)
    print(f"{'path':32s} {'seconds to first iteration (median of %d)' % args.runs}")
    medians = {name: sorted(values)[len(values) // 2] for name, values in rows.items()}
    for name, value in medians.items():
        print(f"{name:32s} {value:6.2f}   ({', '.join(f'{v:.2f}' for v in rows[name])})")
    print(f"warm worker vs cold child: {medians['child process (cold)'] / medians['worker, warm run']:.1f}x sooner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
