#!/usr/bin/env python3
"""A layer bigger than memory allows: 4096x4096 on this device, measured peak against the estimate.

Upscales examples/tubingen.jpg to SIZE x SIZE (a synthetic big layer), stylizes it
with --size SIZE --max-size SIZE (coarse to fine, the top scales tiled when the
memory model says so), and prints the plan, the wall time, the measured peak
(the engine process's max RSS on the CPU) and the estimate's error, and the resident memory's
peak in each phase (sampled every 0.1 s, where /proc is) to show which one exceeds it. The result
and a full-resolution crop for looking at seams go to artifacts/big/.

    .venv/bin/python benchmarks/big_layer.py [--size 4096] [--iterations 3] [--memory-limit MB]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_SECONDS = 0.1


class PhasePeaks:
    """The child's resident memory, sampled from /proc, its peak kept per phase (setup up to the plan, each
    scale, save)."""

    def __init__(self, pid: int):
        self.status = Path(f"/proc/{pid}/status")
        self.phase = "setup"
        self.peaks: dict[str, int] = {}
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self):
        while True:
            try:
                rss_line = next(line for line in self.status.read_text().splitlines() if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                return  # exited (or no /proc here)
            rss = int(rss_line.split()[1]) * 1024
            self.peaks[self.phase] = max(rss, self.peaks.get(self.phase, 0))
            time.sleep(SAMPLE_SECONDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--scales", type=int, default=4)
    parser.add_argument("--memory-limit", type=int, help="MB to plan for (default: what is free)")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "big")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    content = args.out / f"content-{args.size}.png"
    Image.open(ROOT / "examples" / "tubingen.jpg").convert("RGB").resize(
        (args.size, args.size), Image.BICUBIC).save(content)
    result = args.out / f"result-{args.size}.png"
    command = [sys.executable, "-m", "stylize_core", str(content), str(ROOT / "examples" / "starry_night.jpg"),
               "-o", str(result), "--size", str(args.size), "--max-size", str(args.size),
               "--scales", str(args.scales), "--iterations", str(args.iterations), "--progress", "json",
               *(["--memory-limit", str(args.memory_limit)] if args.memory_limit else [])]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peaks = PhasePeaks(process.pid)
    plans, last_scale = [], 0
    for line in process.stdout:
        event = json.loads(line)
        if event["stage"] == "plan":
            plans.append(event["message"])
            peaks.phase = "scale 1"
            print(event["message"], flush=True)
        elif event["stage"] == "optimize":
            if event["scale"] != last_scale:
                last_scale = event["scale"]
                print(f"  scale {event['scale']}/{event['scales']}: {event['width']}x{event['height']} "
                      f"at {time.perf_counter() - started:.0f} s", flush=True)
            if event["iteration"] == event["total"]:
                # A scale's first event comes after its first iteration (and its style statistics):
                # its phase starts when the scale before reports its last.
                peaks.phase = f"scale {last_scale + 1}" if last_scale < event["scales"] else "save"
        elif event["stage"] == "error":
            print("error:", event["message"])
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        print(f"engine failed (status {status})")
        return 1
    peak = usage.ru_maxrss * 1024
    estimate = float(re.search(r"about ([\d.]+) GB", plans[0]).group(1)) * 2**30
    print(f"\n{args.size}x{args.size}: {seconds:.0f} s, peak RSS {peak / 2**30:.2f} GB, "
          f"estimate {estimate / 2**30:.2f} GB ({(estimate - peak) / peak * 100:+.0f} %)")
    print("  resident peak by phase: " + ", ".join(f"{phase} {rss / 2**30:.2f} GB" for phase, rss in peaks.peaks.items()))
    crop = args.out / f"crop-{args.size}.png"
    Image.open(result).crop((args.size // 2 - 512, args.size // 2 - 512, args.size // 2 + 512,
                             args.size // 2 + 512)).save(crop)
    print(f"result {result}, 1024 px crop from the middle {crop}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
