"""How well the time shown before a run predicts it: predicted against measured, at several sizes.

Calibrates afresh (in a temporary cache folder, so the user's calibration is left alone) and keeps
that first calibration for every run (the engine's learning from each run is switched off here), so
each line shows what a first run on a new computer is told. The runs are the shipped example at the
default settings: restyled at working sizes up to 512, and at full resolution up to 1024 (the detail
stage). A timing, so a benchmark and not a test: on a shared machine it is noisy.

    .venv/bin/python benchmarks/prediction.py [--cases working:256 working:512 full:1024] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["working:256", "working:512", "full:1024"],
                        help="resolution:long side of the content")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="stylize-prediction-")

    from stylize_core import Settings, stylize
    from stylize_core.engine import api as engine
    from stylize_core.engine.imageio import load_picture, resize_rgb
    from stylize_core.contract.timing import read_calibrations

    engine.learn_from_run = lambda calibration, predicted, measured: None
    content = load_picture(ROOT / "examples" / "tubingen.jpg").rgb
    style = load_picture(ROOT / "examples" / "starry_night.jpg").rgb
    print(f"{'run':>14s} {'size':>9s} {'predicted s':>11s} {'measured s':>10s} {'ratio':>6s}")
    for case in args.cases:
        resolution, side = case.split(":")
        marks = {}

        def watch(event):
            if event.stage == "plan" and "predicted" not in marks:
                marks["predicted"], marks["planned"] = event.predicted_s, time.perf_counter()
        size = (int(side), round(int(side) * content.shape[0] / content.shape[1]))
        stylize(resize_rgb(content, size), style, Settings(resolution=resolution, device=args.device), progress=watch)
        measured = time.perf_counter() - marks["planned"]
        print(f"{resolution:>14s} {size[0]:4d}x{size[1]:<4d} {marks['predicted']:11.1f} {measured:10.1f} "
              f"{marks['predicted'] / measured:6.2f}", flush=True)
    calibration = read_calibrations()[-1]
    print("calibration, (megapixels, s per iteration): composition",
          ", ".join(f"({mp:.3f}, {s:.3f})" for mp, s in calibration.composition),
          "; detail", ", ".join(f"({mp:.3f}, {s:.3f})" for mp, s in calibration.detail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
