"""Full-resolution results on real photos: (a) the working size upscaled, (b) the detail stage,
(c) optimisation at full size from the start, side by side in one run.

For each photo x painting and each variant: wall time, the predicted time (the plan's),
peak memory (RSS of the engine process) against the plan's estimate, the independent
evaluator's scores of the result downscaled to 512 px (composition kept?), and the
fine-texture distance at full resolution: the Gram distance at relu1_1 and relu2_1
(layers that see 3-10 px) between the result and the painting at its own resolution,
measured with the evaluator's VGG19. A 100 % crop of the same region from each variant
goes into one PNG.

    .venv/bin/python benchmarks/full_resolution.py                       # the shared 2560x1600 photos
    .venv/bin/python benchmarks/full_resolution.py --variants a b --pairs garden:starry_night

The photos and the evaluator come from ../shared (never shipped with the project).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sheets import side_by_side

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EVALUATOR = SHARED / "tools" / "evaluate.py"
PHOTOS = {"garden": SHARED / "images" / "garden.jpg", "ladybird": SHARED / "images" / "ladybird.jpg"}
PAINTINGS = {"starry_night": ROOT / "examples" / "starry_night.jpg", "the_scream": ROOT / "examples" / "the_scream.jpg"}
VARIANTS = {
    "a": ("working size, upscaled", ["--resolution", "working"]),
    "b": ("detail stage", ["--resolution", "full"]),
    "c": ("full size from the start", ["--resolution", "working", "--max-size", "FULL"]),
}
FINE_LAYERS = ["relu1_1", "relu2_1"]
CROP = 384


def load_evaluator():
    spec = importlib.util.spec_from_file_location("shared_evaluate", EVALUATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENGINE_REPORTING_ITS_PEAK = """
import atexit, runpy, sys
def report_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    print("peak-kib", peak, file=sys.stderr)
atexit.register(report_peak)
sys.argv[0] = "stylize"
runpy.run_module("stylize_core", run_name="__main__")
"""
"""The CLI, saying its own peak RSS as it exits. The child's ru_maxrss from wait4 will not do: exec
records the parent's high-water RSS into it (the spawning process shares the parent's memory until
exec), and this benchmark's process holds the evaluator's VGG19 and full-size activations."""


def run_engine(content: Path, style: Path, output: Path, extra: list[str], quality: str) -> dict:
    """One CLI run in its own process: wall time, peak RSS, the plan's prediction and estimate."""
    full = str(max(Image.open(content).size))
    command = [sys.executable, "-c", ENGINE_REPORTING_ITS_PEAK, str(content), str(style), "-o", str(output),
               "--quality", quality, "--device", "cpu", "--progress", "json",
               *[full if a == "FULL" else a for a in extra]]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    planned_at = None
    plan = None
    for line in process.stdout:
        event = json.loads(line)
        if event["stage"] == "plan" and plan is None:
            plan, planned_at = event, time.perf_counter()
    errors = process.stderr.read()
    status = process.wait()
    finished = time.perf_counter()
    if status != 0:
        raise RuntimeError(f"{command}: {errors}")
    peak_kib = int(re.search(r"^peak-kib (\d+)$", errors, re.MULTILINE).group(1))
    estimate_gb = float(re.search(r"about ([\d.]+) GB", plan["message"]).group(1))
    # The prediction covers what follows the plan line (the optimisation): compare it with that.
    return {"seconds": finished - started, "after_plan_s": finished - planned_at, "predicted_s": plan["predicted_s"],
            "plan": plan["message"], "peak_gb": peak_kib / 2**20, "estimate_gb": estimate_gb}


def fine_texture_distance(evaluator, network, result: Path, style: Path) -> float:
    """Mean relative Gram distance at relu1_1 and relu2_1: the result at full size, the painting at its own."""
    with torch.no_grad():
        out = network(evaluator.to_caffe(evaluator.load_rgb(result)), FINE_LAYERS)
        sty = network(evaluator.to_caffe(evaluator.load_rgb(style)), FINE_LAYERS)
    distances = []
    for layer in FINE_LAYERS:
        go, gs = evaluator.gram(out[layer]), evaluator.gram(sty[layer])
        distances.append(((go - gs).norm() / gs.norm()).item())
    return float(np.mean(distances))


def scores_at_512(evaluator, scorer, result: Path, content: Path, style: Path, folder: Path) -> dict:
    small = folder / f"{result.stem}-512.png"
    image = Image.open(result).convert("RGB")
    image.thumbnail((512, 512), Image.BICUBIC)
    image.save(small)
    scores = scorer.evaluate(str(small), str(content), str(style))
    return {"style_gram": scores["style_gram"], "content": scores["content"]}


def crop_strip(paths: list[Path], labels: list[str], box: tuple[int, int], target: Path) -> None:
    """The same 100 % region of each picture, side by side, labelled."""
    left, top = box
    side_by_side([Image.open(p).convert("RGB").crop((left, top, left + CROP, top + CROP)) for p in paths],
                 labels, target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=[f"{p}:{s}" for p in PHOTOS for s in PAINTINGS],
                        help="photo:painting pairs (default: all four)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--quality", default="balanced")
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "full_resolution")
    args = parser.parse_args()
    missing = [path for path in (EVALUATOR, *PHOTOS.values()) if not path.is_file()]
    if missing:
        print(f"needs the shared evaluator and photos (../shared/ beside the checkout): {missing[0]} is missing",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    evaluator = load_evaluator()
    scorer = evaluator.Evaluator()
    network = scorer.net
    rows = []
    for pair in args.pairs:
        photo, painting = pair.split(":")
        content, style = PHOTOS[photo], PAINTINGS[painting]
        outputs = []
        for variant in args.variants:
            label, extra = VARIANTS[variant]
            output = args.out / f"{photo}-{painting}-{variant}.png"
            measured = run_engine(content, style, output, extra, args.quality)
            measured.update(scores_at_512(evaluator, scorer, output, content, style, args.out))
            measured["fine_texture"] = fine_texture_distance(evaluator, network, output, style)
            rows.append({"pair": pair, "variant": variant, "label": label, **measured})
            outputs.append((output, f"({variant}) {label}"))
            print(json.dumps(rows[-1]), flush=True)
        width, height = Image.open(content).size
        crop_strip([content] + [o for o, _ in outputs], ["photo"] + [l for _, l in outputs],
                   (width // 2 - CROP // 2, height // 2 - CROP // 2), args.out / f"{photo}-{painting}-crops.png")
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'pair':26s} {'variant':26s} {'wall s':>7s} {'pred s':>7s} {'pred/run':>9s} {'peak GB':>7s} "
          f"{'est GB':>6s} {'style':>6s} {'content':>7s} {'fine':>6s}")
    for row in rows:
        print(f"{row['pair']:26s} {row['label']:26s} {row['seconds']:7.1f} {row['predicted_s']:7.1f} "
              f"{row['predicted_s'] / row['after_plan_s']:9.2f} {row['peak_gb']:7.2f} {row['estimate_gb']:6.2f} "
              f"{row['style_gram']:6.3f} {row['content']:7.3f} {row['fine_texture']:6.3f}")
    print("\nagainst (a), per pair: time ratio, style_gram ratio, content ratio, fine-texture ratio")
    for pair in args.pairs:
        by_variant = {row["variant"]: row for row in rows if row["pair"] == pair}
        if "a" not in by_variant:
            continue
        base = by_variant["a"]
        for variant, row in by_variant.items():
            if variant != "a":
                print(f"{pair:26s} ({variant}) {row['seconds'] / base['seconds']:6.2f}x time  "
                      f"{row['style_gram'] / base['style_gram']:5.2f} style  {row['content'] / base['content']:5.2f} "
                      f"content  {row['fine_texture'] / base['fine_texture']:5.2f} fine texture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
