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
--json FILE writes the same figures as one JSON object.

    .venv/bin/python benchmarks/quality.py [--qualities balanced fast] [--precisions fp32 bf16]
                                           [--pastiche-steps 100] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylize_core.contract.settings import BY_NAME

from results import write_results

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


def run_ours(args) -> dict[str, tuple[Path, float]]:
    """Each quality and precision through the CLI: label -> (output, wall seconds)."""
    ours = {}
    for preset in args.qualities:
        for precision in args.precisions:
            label = preset if precision == "auto" else f"{preset} {precision}"
            output = args.out / f"ours-{label.replace(' ', '-')}.png"
            ours[label] = (output, timed([sys.executable, "-m", "stylize_core", str(CONTENT), str(STYLE),
                                          "-o", str(output), "--size", str(args.size), "--quality", preset,
                                          "--precision", precision, "--progress", "none"]))
            print(f"ours {label}: {ours[label][1]:.1f} s", flush=True)
    return ours


def run_pastiche(args) -> tuple[float | None, list[tuple[int, Path]]]:
    """pastiche once, with checkpoints: its wall seconds and (step, picture) for each checkpoint."""
    if args.skip_pastiche:
        return None, []
    workspace = args.out / "pastiche"
    workspace.mkdir(exist_ok=True)
    for old in workspace.glob("*.png"):
        old.unlink()
    seconds = timed([sys.executable, "-m", "pastiche", "--content", str(CONTENT),
                     "--styles", str(STYLE), "--output", str(args.out / "pastiche.png"),
                     "--size", str(args.size), "--num-steps", str(args.pastiche_steps),
                     "--workspace", str(workspace), "--workspace-step", str(args.checkpoint),
                     "--seed", "0", "--no-verbose"])
    print(f"pastiche {args.pastiche_steps} steps: {seconds:.1f} s", flush=True)
    checkpoints = []
    for path in sorted(workspace.glob("*.png")):
        step = int("".join(ch for ch in path.stem if ch.isdigit()) or 0)
        if step > 0:
            checkpoints.append((step, path))
    return seconds, sorted(checkpoints)


def score_row(score: dict, seconds: float) -> dict:
    return {"wall_s": seconds, "style_gram": score["style_gram"], "style_swd": score["style_swd"],
            "content": score["content"], "meets_bar": meets(score, BAR)}


def print_table(runs: dict[str, dict]) -> None:
    print()
    print(f"{'run':24s} {'wall s':>8s} {'style_gram':>10s} {'style_swd':>9s} {'content':>8s}  bar")
    for name, row in runs.items():
        print(f"{name:24s} {row['wall_s']:8.1f} {row['style_gram']:10.4f} {row['style_swd']:9.4f} "
              f"{row['content']:8.4f}  {'yes' if row['meets_bar'] else 'no'}")


def compare(args, ours: dict[str, dict], checkpoints: list[tuple[int, dict]], pastiche_seconds: float) -> dict:
    """For each of our runs: the first pastiche checkpoint at our style_gram or better, printed and returned."""
    comparisons = {}
    print()
    if not checkpoints:
        return comparisons
    for label, mine in ours.items():
        first = next(((step, theirs) for step, theirs in checkpoints if theirs["style_gram"] <= mine["style_gram"]),
                     None)
        if first is None:
            ratio = pastiche_seconds / mine["wall_s"]
            comparisons[label] = {"pastiche_step": None, "faster_than_pastiche_at_least": ratio}
            print(f"{label}: pastiche never reached our style_gram {mine['style_gram']:.4f} within "
                  f"{args.pastiche_steps} steps ({pastiche_seconds:.1f} s): ratio > {ratio:.2f}x")
            continue
        step, theirs = first
        comparisons[label] = {"pastiche_step": step, "pastiche_s": theirs["wall_s"],
                              "faster_than_pastiche": theirs["wall_s"] / mine["wall_s"]}
        print(f"{label}: pastiche first reaches our style_gram at step {step} ({theirs['wall_s']:.1f} s, "
              f"content {theirs['content']:.3f} vs our {mine['content']:.3f}): we are "
              f"{theirs['wall_s'] / mine['wall_s']:.2f}x faster")
    return comparisons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qualities", nargs="+", default=["balanced", "fast"])
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=BY_NAME["precision"].choices,
                        help="e.g. fp32 bf16: mixed precision's scores beside full precision's")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pastiche-steps", type=int, default=100)
    parser.add_argument("--checkpoint", type=int, default=10)
    parser.add_argument("--evaluator", type=Path, default=ROOT.parent / "shared" / "tools" / "evaluate.py",
                        help="the independent evaluator (default: ../shared/tools/evaluate.py beside the checkout)")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmark")
    parser.add_argument("--skip-pastiche", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    args = parser.parse_args()
    if not args.evaluator.is_file():
        parser.error(f"the shared evaluator is not at {args.evaluator} (../shared/tools/ beside the checkout, "
                     "or pass --evaluator)")
    args.out.mkdir(parents=True, exist_ok=True)

    ours = run_ours(args)
    pastiche_seconds, checkpoints = run_pastiche(args)
    scores = evaluate(args.evaluator, [o for o, _ in ours.values()] + [p for _, p in checkpoints])
    runs = {label: score_row(scores[str(output)], seconds) for label, (output, seconds) in ours.items()}
    theirs = [(step, score_row(scores[str(path)], pastiche_seconds * step / args.pastiche_steps))
              for step, path in checkpoints]
    print_table({"ours " + label: row for label, row in runs.items()}
                | {f"pastiche step {step}": row for step, row in theirs})
    comparisons = compare(args, runs, theirs, pastiche_seconds)
    write_results(args.json, {"size": args.size, "bar": BAR, "runs": runs,
                              "pastiche": {"steps": args.pastiche_steps, "wall_s": pastiche_seconds,
                                           "checkpoints": {str(step): row for step, row in theirs}} if theirs else None,
                              "against_pastiche": comparisons})
    return 0


if __name__ == "__main__":
    sys.exit(main())
