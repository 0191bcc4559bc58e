#!/usr/bin/env python3
"""Does the preview predict the final? The dialog's preview (resolution "preview": two small scales,
few iterations) against the full run with the same settings, shrunk to the preview's size.

For each shipped painting and each (Strength, Stroke size), one full run at the working size
(balanced quality, the dialog's default), shrunk to the preview's size (PIL bicubic, as the
evaluator resizes), then the preview with each candidate schedule of iterations. Both are scored
by the independent evaluator (../shared/tools/evaluate.py: style_gram and content, lower is
better); the table gives each score and the preview's relative difference from the final's. The
issue's bar: at most 15 % on both. Also each preview's wall time in this warm process (the
style's statistics cached, as on a warm server) and a sheet of final | previews to look at.

    .venv/bin/python benchmarks/preview.py                           # the current schedule
    .venv/bin/python benchmarks/preview.py --schedules 40,10 20,8 60,15
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from stylize_core import Settings  # noqa: E402
from stylize_core.contract import schedule as pyramid  # noqa: E402
from stylize_core.engine import plan  # noqa: E402
from stylize_core.engine.api import stylize_picture  # noqa: E402
from stylize_core.engine.imageio import load_picture, to_pil  # noqa: E402

from sheets import side_by_side  # noqa: E402

EVALUATOR = ROOT.parent / "shared" / "tools" / "evaluate.py"
CONTENT = ROOT / "examples" / "tubingen.jpg"
PAINTINGS = ("starry_night", "the_scream")
KNOBS = ("1:1", "3:1", "0.3:1", "1:2", "1:0.5")
"""Strength:Stroke size pairs: the default, a strong and a light touch, big and small strokes."""


def load_evaluator():
    """The evaluator's Evaluator (it turns autograd off for the whole process: the runs turn it back on)."""
    spec = importlib.util.spec_from_file_location("shared_evaluate", EVALUATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Evaluator()


def scores(scorer, image: Image.Image, path: Path, style: Path) -> dict:
    image.save(path)
    result = scorer.evaluate(str(path), str(CONTENT), str(style))
    return {"style_gram": result["style_gram"], "content": result["content"]}


def relative(preview: float, final: float) -> float:
    return (preview - final) / final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", nargs="+", default=[",".join(map(str, pyramid.PREVIEW_ITERATIONS))],
                        help="preview iterations per scale, coarsest first, e.g. 40,10")
    parser.add_argument("--knobs", nargs="+", default=list(KNOBS), help="Strength:Stroke size pairs")
    parser.add_argument("--paintings", nargs="+", default=list(PAINTINGS))
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "preview-bench")
    parser.add_argument("--reuse-finals", action="store_true",
                        help="score the full runs an earlier call left in --out instead of running them again")
    args = parser.parse_args()
    if not EVALUATOR.is_file():
        parser.error(f"the shared evaluator is not at {EVALUATOR} (../shared/tools/ beside the checkout)")
    args.out.mkdir(parents=True, exist_ok=True)
    schedules = [tuple(int(n) for n in text.split(",")) for text in args.schedules]
    scorer = load_evaluator()
    content = load_picture(CONTENT, "content")
    rows, worst = [], {schedule: 0.0 for schedule in schedules}
    for painting in args.paintings:
        style_path = ROOT / "examples" / f"{painting}.jpg"
        style = load_picture(style_path, "style")
        for knob in args.knobs:
            strength, stroke = (float(v) for v in knob.split(":"))
            settings = Settings(strength=strength, style_scale=stroke, device="cpu")
            size = pyramid.preview_size(content.size)
            name = f"{painting}-s{strength:g}-z{stroke:g}"
            final_path = args.out / f"{name}-final.png"
            started = time.perf_counter()
            if args.reuse_finals and final_path.exists():
                final_small = Image.open(final_path).convert("RGB")
            else:
                with torch.enable_grad():
                    final = to_pil(stylize_picture(content, [style], settings.replace(resolution="working")))
                final_small = final.convert("RGB").resize(size, Image.BICUBIC)
            final_seconds = time.perf_counter() - started
            final_scores = scores(scorer, final_small, final_path, style_path)
            row = {"painting": painting, "strength": strength, "stroke": stroke, "final": final_scores,
                   "final_seconds": final_seconds, "previews": {}}
            sheet = [args.out / f"{name}-final.png"]
            for schedule in schedules:
                plan.PREVIEW_ITERATIONS = schedule
                started = time.perf_counter()
                with torch.enable_grad():
                    preview = to_pil(stylize_picture(content, [style], settings.replace(resolution="preview")))
                seconds = time.perf_counter() - started
                path = args.out / f"{name}-preview-{'-'.join(map(str, schedule))}.png"
                preview_scores = scores(scorer, preview.convert("RGB"), path, style_path)
                differences = {key: relative(preview_scores[key], final_scores[key]) for key in final_scores}
                worst[schedule] = max(worst[schedule], *(abs(d) for d in differences.values()))
                row["previews"][",".join(map(str, schedule))] = {**preview_scores, "seconds": seconds,
                                                                "difference": differences}
                sheet.append(path)
                print(f"{name:28s} preview {schedule}: {seconds:5.2f} s  style_gram {preview_scores['style_gram']:.3f} "
                      f"vs {final_scores['style_gram']:.3f} ({differences['style_gram']:+.1%})  content "
                      f"{preview_scores['content']:.3f} vs {final_scores['content']:.3f} "
                      f"({differences['content']:+.1%})", flush=True)
            side_by_side([Image.open(path).convert("RGB") for path in sheet],
                         ["final, shrunk"] + [f"preview {s}" for s in schedules], args.out / f"{name}-sheet.png")
            rows.append(row)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    for schedule, value in worst.items():
        seconds = sorted(r["previews"][",".join(map(str, schedule))]["seconds"] for r in rows)
        print(f"schedule {schedule}: worst difference {value:.1%} (bar 15 %), median preview {seconds[len(seconds) // 2]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
