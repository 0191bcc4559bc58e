"""How well the time shown before a run predicts it: predicted against measured, at several sizes.

Calibrates afresh (in a temporary cache folder, so the user's calibration is left alone), then
runs the engine at each working size and prints the plan's prediction beside the time the
optimisation took. A timing, so a benchmark and not a test: on a shared machine it is noisy.

    .venv/bin/python benchmarks/prediction.py [--sizes 160 320 512] [--device cpu]
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
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 320, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=12)
    args = parser.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="stylize-prediction-")

    from stylize_core import Settings, stylize
    from stylize_core.imageio import load_picture, resize_rgb

    content = load_picture(ROOT / "examples" / "tubingen.jpg").rgb
    style = load_picture(ROOT / "examples" / "starry_night.jpg").rgb
    print(f"{'working size':>12s} {'predicted s':>11s} {'measured s':>10s} {'ratio':>6s}")
    for size in args.sizes:
        marks = {}

        def watch(event):
            if event.stage == "plan":
                marks["predicted"], marks["planned"] = event.predicted_s, time.perf_counter()
        picture = resize_rgb(content, (size, round(size * content.shape[0] / content.shape[1])))
        stylize(picture, style, Settings(max_size=size, scales=2, iterations=args.iterations, stall_tolerance=0,
                                         device=args.device), progress=watch)
        measured = time.perf_counter() - marks["planned"]
        print(f"{size:12d} {marks['predicted']:11.1f} {measured:10.1f} {marks['predicted'] / measured:6.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
