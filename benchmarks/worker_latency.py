#!/usr/bin/env python3
"""Time until a run starts optimising: a cold child process, a cold local server, a warm server
on each transport (Unix socket, loopback TCP with a token, TLS with a token), and, for the floor,
the same run in a warm process of its own with no server at all (the difference is what the
server's path costs: sending, decoding, queueing).

This is what a painter waits before the progress bar moves: importing torch, initialising
the device, loading the weights, sending the pixels, computing the style targets. Each path
runs the same small job on the example photo, sent as the plug-in sends a layer (float32
RGBA .npy, 1024x768: 12 MB); the time is taken from the request to its first "optimize" event.
--json FILE writes the same figures as one JSON object.

    .venv/bin/python benchmarks/worker_latency.py [--runs 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from stylize_core.contract import client  # noqa: E402

from results import write_results  # noqa: E402

SETTINGS = {"max_size": 256, "resolution": "working", "iterations": 2}
CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"


def layer_bytes(path: Path) -> bytes:
    rgba = np.asarray(Image.open(path).convert("RGBA"), np.float32) / 255
    stream = io.BytesIO()
    np.save(stream, rgba)
    return stream.getvalue()


def until_first_iteration(start_run) -> float:
    started = time.perf_counter()
    first = []

    def on_event(event: dict) -> None:
        if event.get("stage") == "optimize" and not first:
            first.append(time.perf_counter() - started)
    start_run(on_event)
    return first[0]


def child_process(output: Path):
    def run(on_event):
        process = subprocess.Popen([sys.executable, "-m", "stylize_core", str(CONTENT), str(STYLE), "-o", str(output),
                                    "--max-size", "256", "--resolution", "working", "--iterations", "2", "--progress", "json"],
                                   stdout=subprocess.PIPE, text=True)
        for line in process.stdout:
            on_event(json.loads(line))
        process.wait()
    return run


def on_server(address_of, images: list[bytes]):
    return lambda on_event: client.run_on_server(address_of(), images, SETTINGS, on_event)


def in_this_process(images: list[bytes]):
    from stylize_core.engine.api import stylize_picture
    from stylize_core.engine.imageio import load_picture_bytes
    from stylize_core.contract.settings import Settings

    def run(on_event):
        content, style = (load_picture_bytes(image) for image in images)
        stylize_picture(content, [style], Settings(**SETTINGS), lambda event: on_event(event.fields()))
    return run


def serve(*arguments: str) -> tuple[subprocess.Popen, client.Address]:
    process = subprocess.Popen([sys.executable, "-m", "stylize_core", "serve", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    ready = json.loads(process.stdout.readline())
    address_file = ready["address_files"][0]  # a TCP server's address, token included, is never printed
    return process, client.read_address_file(Path(address_file)) if address_file else client.parse_address(
        ready["addresses"][0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    args = parser.parse_args()
    images = [layer_bytes(CONTENT), STYLE.read_bytes()]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        os.environ["XDG_RUNTIME_DIR"] = str(folder / "runtime")
        os.environ["XDG_STATE_HOME"] = str(folder / "state")
        (folder / "runtime").mkdir(mode=0o700)
        rows = {name: [] for name in ("child process (cold)", "local server, first run (starts it)",
                                      "warm: Unix socket", "warm: loopback TCP + token", "warm: TLS + token",
                                      "warm: in this process, no server")}
        until_first_iteration(in_this_process(images))  # this process's own warm-up
        for run in range(args.runs):
            rows["child process (cold)"].append(until_first_iteration(child_process(folder / f"out{run}.png")))
            started = {}

            def start_and_address():
                started["address"] = client.start_local_server(sys.executable, idle_timeout=120)
                return started["address"]
            rows["local server, first run (starts it)"].append(
                until_first_iteration(on_server(start_and_address, images)))
            rows["warm: Unix socket"].append(until_first_iteration(on_server(lambda: started["address"], images)))
            os.kill(client.ping(started["address"])["pid"], signal.SIGTERM)
            for name, arguments in (("warm: loopback TCP + token", ["--loopback"]),
                                    ("warm: TLS + token", ["--listen", "127.0.0.1:0"])):
                process, address = serve(*arguments)
                until_first_iteration(on_server(lambda: address, images))  # warms the style cache too
                rows[name].append(until_first_iteration(on_server(lambda: address, images)))
                process.terminate()
                process.wait()
            rows["warm: in this process, no server"].append(until_first_iteration(in_this_process(images)))
            time.sleep(0.5)
    print(f"{'path':38s} {'seconds to first iteration (median of %d)' % args.runs}")
    medians = {name: sorted(values)[len(values) // 2] for name, values in rows.items()}
    for name, value in medians.items():
        print(f"{name:38s} {value:6.2f}   ({', '.join(f'{v:.2f}' for v in rows[name])})")
    write_results(args.json, {"runs": args.runs, "seconds_to_first_iteration": medians, "each_run": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
