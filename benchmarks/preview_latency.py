#!/usr/bin/env python3
"""How soon the dialog's preview follows a change: the plug-in's own preview code (nst/preview.py)
against a warm engine server, as the dialog drives it.

The example photo is sent as the dialog sends the layer (float32 RGBA, at most 256 px), the style
as its file. The first preview computes the style's statistics; then Strength changes five times,
and for each the time from the change to the picture (the dialog's wait before asking, the request,
the run and the reply) is printed, with the median: the issue's bar is 3 s on a CPU, 0.5 s on a GPU.
--json FILE writes the same figures as one JSON object.

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

STRENGTHS = (4.0, 0.3, 8.0, 2.0, 6.0)


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

            def preview(strength: float) -> float:
                """Seconds from the change to the picture, as the dialog makes them."""
                done = threading.Event()
                changed = time.perf_counter()
                runner.cancel()
                time.sleep(runner.wait_ms() / 1000)
                runner.request({**values, "strength": strength}, content, [style], address,
                               lambda outcome: outcome.final and done.set())
                done.wait(600)
                return time.perf_counter() - changed

            first = preview(1.0)
            print(f"first preview (the style's statistics computed): {first:.2f} s")
            seconds = []
            for strength in STRENGTHS:
                seconds.append(preview(strength))
                print(f"Strength {strength:g}: {seconds[-1]:.2f} s", flush=True)
            median = statistics.median(seconds)
            print(f"median from a change to the preview: {median:.2f} s "
                  f"(the dialog's wait, {runner.wait_ms()} ms, included; bar: 3 s on a CPU, 0.5 s on a GPU)")
            write_results(args.json, {"device": args.device, "first_s": round(first, 3), "median_s": round(median, 3),
                                      "wait_ms": runner.wait_ms(),
                                      "by_strength": [{"strength": strength, "seconds": round(value, 3)}
                                                      for strength, value in zip(STRENGTHS, seconds)]})
        finally:
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
