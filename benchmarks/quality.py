#!/usr/bin/env python3
"""Quality and wall time of the default preset against pastiche, side by side in one run.

Stylizes examples/tubingen.jpg after examples/starry_night.jpg at 512 px long
side with our engine (each preset) and with pastiche (its defaults, L-BFGS,
same output size), scores every output with the independent evaluator
(../shared/tools/evaluate.py: style_gram, style_swd, content; lower is better),
and prints the ratio of wall times at equal or better quality.

pastiche runs once for --pastiche-steps steps and saves a checkpoint every
--checkpoint steps; the time to checkpoint k is its wall time x k / steps
(its steps cost the same; the start-up share this hands it only flatters it).

    .venv/bin/python benchmarks/quality.py [--qualities balanced fast] [--precisions fp32 bf16]
                                           [--pastiche-steps 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylize_core.options import BY_NAME

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"
BAR = {"style_gram": 0.25, "content": 1.1}  # the classic reference output's quality (issue 3)


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def evaluate(evaluator: Path, outputs: list[Path]) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "scores.json"
        subprocess.run([sys.executable, str(evaluator), "--content", str(CONTENT), "--style", str(STYLE),
                        "--json", str(report), *[str(o) for o in outputs],
                        "--label", *[str(o) for o in outputs]], check=True, stdout=subprocess.DEVNULL)
        return json.loads(report.read_text())


def meets(score: dict, reference: dict) -> bool:
    return score["style_gram"] <= reference["style_gram"] and score["content"] <= reference["content"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qualities", nargs="+", default=["balanced", "fast"])
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=BY_NAME["precision"].choices,
                        help="e.g. fp32 bf16: mixed precision's scores beside full precision's")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pastiche-steps", type=int, default=100)
    parser.add_argument("--checkpoint", type=int, default=10)
    parser.add_argument("--evaluator", type=Path, default=ROOT.parent / "shared" / "tools" / "evaluate.py")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmark")
    parser.add_argument("--skip-pastiche", action="store_true")
    args = parser.parse_args()
    if not args.evaluator.is_file():
        parser.error(f"evaluator not found: {args.evaluator} (pass --evaluator)")
    args.out.mkdir(parents=True, exist_ok=True)

    ours = {}
    for preset in args.qualities:
        for precision in args.precisions:
            label = preset if precision == "auto" else f"{preset} {precision}"
            output = args.out / f"ours-{label.replace(' ', '-')}.png"
            ours[label] = (output, timed([sys.executable, "-m", "stylize_core", str(CONTENT), str(STYLE),
                                          "-o", str(output), "--size", str(args.size), "--quality", preset,
                                          "--precision", precision, "--progress", "none"]))
            print(f"ours {label}: {ours[label][1]:.1f} s", flush=True)

    checkpoints = []
    pastiche_seconds = None
    if not args.skip_pastiche:
        workspace = args.out / "pastiche"
        workspace.mkdir(exist_ok=True)
        for old in workspace.glob("*.png"):
            old.unlink()
        pastiche_seconds = timed([sys.executable, "-m", "pastiche", "--content", str(CONTENT),
                                  "--styles", str(STYLE), "--output", str(args.out / "pastiche.png"),
                                  "--size", str(args.size), "--num-steps", str(args.pastiche_steps),
                                  "--workspace", str(workspace), "--workspace-step", str(args.checkpoint),
                                  "--seed", "0", "--no-verbose"])
        print(f"pastiche {args.pastiche_steps} steps: {pastiche_seconds:.1f} s", flush=True)
        for path in sorted(workspace.glob("*.png")):
            step = int("".join(ch for ch in path.stem if ch.isdigit()) or 0)
            if step > 0:
                checkpoints.append((step, path))
        checkpoints.sort()

    scores = evaluate(args.evaluator, [o for o, _ in ours.values()] + [p for _, p in checkpoints])
    print()
    print(f"{'run':24s} {'wall s':>8s} {'style_gram':>10s} {'style_swd':>9s} {'content':>8s}  bar")
    for preset, (output, seconds) in ours.items():
        s = scores[str(output)]
        print(f"{'ours ' + preset:24s} {seconds:8.1f} {s['style_gram']:10.4f} {s['style_swd']:9.4f} "
              f"{s['content']:8.4f}  {'yes' if meets(s, BAR) else 'no'}")
    for step, path in checkpoints:
        s = scores[str(path)]
        seconds = pastiche_seconds * step / args.pastiche_steps
        print(f"{'pastiche step %d' % step:24s} {seconds:8.1f} {s['style_gram']:10.4f} {s['style_swd']:9.4f} "
              f"{s['content']:8.4f}  {'yes' if meets(s, BAR) else 'no'}")
    print()
    for preset, (output, seconds) in ours.items():
        mine = scores[str(output)]
        first = next(((step, path) for step, path in checkpoints
                      if scores[str(path)]["style_gram"] <= mine["style_gram"]), None)
        if not checkpoints:
            continue
        if first is None:
            print(f"{preset}: pastiche never reached our style_gram {mine['style_gram']:.4f} within "
                  f"{args.pastiche_steps} steps ({pastiche_seconds:.1f} s): ratio > "
                  f"{pastiche_seconds / seconds:.2f}x")
            continue
        step, path = first
        theirs = scores[str(path)]
        their_seconds = pastiche_seconds * step / args.pastiche_steps
        print(f"{preset}: pastiche first reaches our style_gram at step {step} ({their_seconds:.1f} s, "
              f"content {theirs['content']:.3f} vs our {mine['content']:.3f}): we are "
              f"{their_seconds / seconds:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
