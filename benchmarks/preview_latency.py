#!/usr/bin/env python3
"""How soon the dialog's preview follows a change: the plug-in's own preview code (nst/preview.py)
against a warm engine server, as the dialog drives it.

The example photo is sent as the dialog sends the layer (float32 RGBA, at most 256 px), the style
as its file. The first preview computes the style's statistics; then Strength changes seven times,
and for each the time from the change to the first picture the pane shows (the coarse scale's, sent
as soon as it is done) and to the final preview (the dialog's wait before asking, the request, the
run and the reply) are printed side by side, with their medians: the bar is 3 s to the first
picture on a CPU, 0.5 s on a GPU. --json FILE writes the same figures as one JSON object.

    .venv/bin/python benchmarks/preview_latency.py [--device cpu] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugin" / "neural-style-transfer"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(PLUGIN))
from nst import pixels, widgets  # noqa: E402
from nst.preview import PreviewRunner  # noqa: E402
from stylize_core.contract.schedule import PREVIEW_SIDE  # noqa: E402

from results import write_results  # noqa: E402

STRENGTHS = (4.0, 0.3, 8.0, 2.0, 6.0, 1.5, 3.0)


def layer_npy(path: Path) -> bytes:
    image = Image.open(path).convert("RGBA")
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.BICUBIC)
    rgba = (np.asarray(image, np.float32) / 255).astype("<f4")
    return pixels.npy_bytes(rgba.tobytes(), rgba.shape[0], rgba.shape[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    args = parser.parse_args()
    content = layer_npy(ROOT / "examples" / "tubingen.jpg")
    style = ROOT / "examples" / "starry_night.jpg"
    values = {widgets.argument_name(option.name): option.default for option, _ in widgets.dialog_options()}
    values["device"] = args.device
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen([sys.executable, "-m", "stylize_core", "serve", "--socket",
                                   str(Path(folder) / "run" / "server.sock")], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        address = json.loads(server.stdout.readline())["addresses"][0]
        try:
            runner = PreviewRunner({"python": "", "project": str(ROOT)}, lambda f: f())

            def preview(strength: float) -> tuple[float, float]:
                """Seconds from the change to the first picture and to the final one, as the dialog makes them."""
                done, shown = threading.Event(), []
                changed = time.perf_counter()
                runner.cancel()
                time.sleep(runner.wait_ms() / 1000)

                def on_outcome(outcome) -> None:
                    if outcome.rgba is not None and not shown:
                        shown.append(time.perf_counter() - changed)
                    if outcome.final:
                        done.set()
                runner.request({**values, "strength": strength}, content, [style], address, on_outcome)
                done.wait(600)
                return shown[0] if shown else float("nan"), time.perf_counter() - changed

            first_sketch, first = preview(1.0)
            print(f"first preview (the style's statistics computed): first picture {first_sketch:.2f} s, "
                  f"final {first:.2f} s")
            sketches, seconds = [], []
            print("Strength   first picture   final preview")
            for strength in STRENGTHS:
                sketch, final = preview(strength)
                sketches.append(sketch)
                seconds.append(final)
                print(f"{strength:8g}   {sketch:11.2f} s   {final:11.2f} s", flush=True)
            median_sketch, median = statistics.median(sketches), statistics.median(seconds)
            print(f"median from a change: first picture {median_sketch:.2f} s, final preview {median:.2f} s "
                  f"(ratio {median_sketch / median:.2f}; the dialog's wait, {runner.wait_ms()} ms, included; "
                  "bar: first picture 3 s on a CPU, 0.5 s on a GPU)")
            write_results(args.json, {"device": args.device, "first_s": round(first, 3), "median_s": round(median, 3),
                                      "first_picture_median_s": round(median_sketch, 3), "wait_ms": runner.wait_ms(),
                                      "by_strength": [{"strength": strength, "first_picture_s": round(sketch, 3),
                                                       "seconds": round(value, 3)}
                                                      for strength, sketch, value in zip(STRENGTHS, sketches, seconds)]})
        finally:
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
