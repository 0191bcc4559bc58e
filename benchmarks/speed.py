#!/usr/bin/env python3
"""Seconds per iteration and peak memory, side by side in one run on one device.

For each size (default 512x512 and 1024x1024) and precision (default fp32 and bf16) it
measures, each in a fresh process:
  floor     the bare VGG19 forward to relu5_1 plus the input-gradient backward
  ours      one iteration of our optimisation (losses, Grams, L-BFGS step)
  nchw      the same with the network in NCHW memory layout (ours runs NHWC)
  torch     the same with torch.optim.LBFGS, which reads values back from the
            device every step (what our sync-free L-BFGS saves; equal on a CPU)
  pastiche  one step of pastiche (difference of two runs, so start-up cancels)
and prints ours/floor, nchw/ours, torch/ours and pastiche/ours, with peak memory (CPU
RSS, or GPU max_memory_allocated) next to our memory model's estimate, and each
precision's speed-up over fp32. --json FILE writes the same rows as one JSON object.

    .venv/bin/python benchmarks/speed.py [--sizes 512 1024] [--precisions fp32 bf16]
                                         [--device auto] [--iterations 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_results

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"

MEASURE = r'''
import json, resource, sys, time
import numpy as np, torch
from PIL import Image
from stylize_core.engine.device import pick_device
from stylize_core.engine.api import prepared_network, to_tensor
from stylize_core.contract.settings import Settings
from stylize_core.engine.imageio import load_picture, resize_rgb
from stylize_core.engine.memory import estimate_peak_bytes
from stylize_core.engine.optimize import LBFGS_HISTORY, Objective, autocast_for, optimize
from stylize_core.engine.losses import STYLE_LAYERS, CONTENT_LAYER, gram_matrix

what, size, iterations, device_name, precision = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
device = pick_device(device_name)
network = prepared_network(Settings(), device)
if what == "nchw":
    network.channels_last = False
    network.to(memory_format=torch.contiguous_format)
content = to_tensor(resize_rgb(load_picture(sys.argv[6]).rgb, (size, size)), device)
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

if what == "floor":
    image = content.clone().requires_grad_(True)
    def step():
        with autocast_for(image, precision):
            out = network(image, {"relu5_1"})["relu5_1"]
        out.float().sum().backward()
    run = lambda n: [step() for _ in range(n)]
else:
    with torch.no_grad(), autocast_for(content, precision):
        style = to_tensor(resize_rgb(load_picture(sys.argv[7]).rgb, (size, size)), device)
        targets = {k: gram_matrix(v) for k, v in network(style, set(STYLE_LAYERS)).items()}
        content_target = network(content, {CONTENT_LAYER})[CONTENT_LAYER]
    objective = Objective(network, targets, content_target, 1.0, 1.0, 1.0, precision)
    if what in ("ours", "nchw"):
        run = lambda n: optimize(content, objective, n, "lbfgs", 0, lambda i, loss: None)
    else:
        image = content.clone().requires_grad_(True)
        solver = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=LBFGS_HISTORY,
                                   tolerance_grad=-1, tolerance_change=-1)
        def closure():
            solver.zero_grad()
            return objective.evaluate(image)
        run = lambda n: [float(solver.step(closure)) for _ in range(n)]

run(2)  # warm-up: allocator, cuDNN autotuning
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
sync(); started = time.perf_counter()
run(iterations)
sync(); seconds = (time.perf_counter() - started) / iterations
peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else \
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak": peak, "device": device.type, "precision": precision,
                  "estimate": estimate_peak_bytes(size, size, device.type, "lbfgs", LBFGS_HISTORY, precision)}))
'''


def measure(what: str, size: int, iterations: int, device: str, precision: str) -> dict:
    output = subprocess.run([sys.executable, "-c", MEASURE, what, str(size), str(iterations), device, precision,
                             str(CONTENT), str(STYLE)], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def pastiche_seconds_per_step(size: int, steps: int, device: str) -> float:
    def wall(n: int) -> float:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pastiche", "--content", str(CONTENT), "--styles", str(STYLE),
                            "--output", str(Path(folder) / "p.png"), "--size-pixels", str(size * size),
                            "--num-steps", str(n), "--no-verbose", "--seed", "0",
                            *(["--device", device] if device not in ("auto", "cpu") else [])],
                           check=True, capture_output=True)
            return time.perf_counter() - started
    return (wall(1 + steps) - wall(1)) / steps


def measure_row(size: int, precision: str, iterations: int, device: str, pastiche: float | None,
                full_precision: float | None) -> dict:
    """One size and precision: the four measurements, as one row of the table."""
    floor, ours, nchw, with_torch_lbfgs = (measure(what, size, iterations, device, precision)
                                           for what in ("floor", "ours", "nchw", "torch"))
    seconds = ours["seconds"]
    fp32 = seconds if precision == "fp32" else full_precision
    return {"size": size, "precision": precision, "iterations": iterations, "device": ours["device"],
            "floor_s_per_it": floor["seconds"], "ours_s_per_it": seconds, "ours_over_floor": seconds / floor["seconds"],
            "nchw_over_ours": nchw["seconds"] / seconds, "torch_lbfgs_over_ours": with_torch_lbfgs["seconds"] / seconds,
            "pastiche_s_per_it": pastiche, "pastiche_over_ours": None if pastiche is None else pastiche / seconds,
            "peak_gb": ours["peak"] / 2**30, "estimate_gb": ours["estimate"] / 2**30,
            "speedup_over_fp32": None if fp32 is None else fp32 / seconds}


def print_row(row: dict) -> None:
    text = lambda value, digits: "-" if value is None else f"{value:.{digits}f}"
    print(f"{row['size']}x{row['size']:<4d} {row['precision']:>9s} {row['floor_s_per_it']:10.3f} "
          f"{row['ours_s_per_it']:10.3f} {row['ours_over_floor']:10.2f} {row['nchw_over_ours']:9.2f} "
          f"{row['torch_lbfgs_over_ours']:10.2f} {text(row['pastiche_s_per_it'], 3):>13s} "
          f"{text(row['pastiche_over_ours'], 2):>13s} {row['peak_gb']:8.2f} {row['estimate_gb']:11.2f} "
          f"{text(row['speedup_over_fp32'], 2):>7s}   ({row['device']})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-pastiche", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="write the rows to FILE as JSON")
    args = parser.parse_args()
    print(f"{'size':>9s} {'precision':>9s} {'floor s/it':>10s} {'ours s/it':>10s} {'ours/floor':>10s} "
          f"{'nchw/ours':>9s} {'torch/ours':>10s} {'pastiche s/it':>13s} {'pastiche/ours':>13s} {'peak GB':>8s} "
          f"{'estimate GB':>11s} {'vs fp32':>7s}")
    rows = []
    for size in args.sizes:
        iterations = max(2, args.iterations * 512 * 512 // (size * size)) if args.device == "cpu" else args.iterations
        theirs = None if args.skip_pastiche else pastiche_seconds_per_step(size, iterations, args.device)
        full_precision = None
        for precision in args.precisions:
            rows.append(measure_row(size, precision, iterations, args.device, theirs, full_precision))
            if precision == "fp32":
                full_precision = rows[-1]["ours_s_per_it"]
            print_row(rows[-1])
            write_results(args.json, {"device": args.device, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
