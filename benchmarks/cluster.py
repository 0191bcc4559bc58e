#!/usr/bin/env python3
"""Past one machine: 1 worker against 2 (one CPU core each) on a Ray cluster, side by side in one run.

A Ray cluster of the benchmark's own is started on this computer (`ray start --head`, 2 CPUs, token
authentication, a temporary folder; stopped, its whole process group, at the end). Then, each through
the CLI as a user runs it (`stylize --cluster ... --workers N`), and each timed from the command's start
to its end (connecting, starting the workers and loading VGG19 included):

* a clip: the first --frames frames of ../shared/videos/vtest.avi at --size px (a fixed camera, people
  walking), as a folder of frames, restyled into a folder of frames with 1 worker and with 2;
* a batch: --pictures pictures (crops of ../shared/images at --size px) with 1 worker and with 2.

Printed: the seconds of each and the ratios (the bar: 2 workers at least 1.7x faster on the batch, 1.5x
on the clip). And the seams: the warping error (../shared/tools/temporal.py: Lai et al.'s E_warp with
DIS flow on the input, occlusions left out) of the pairs of frames where two chunks join (a key frame
two pieces share: the pairs on both sides of it; a cross-faded seam: its pairs and one on each side), against
the clip's mean over all its pairs (the bar: at most 1.25x), and against the same pairs restyled in one
piece by one worker: a pair's error varies with what moves in it (someone walking into view) several
times more than any seam adds, and the second ratio takes that out. Two workers cut a scene in two
pieces that share a key frame. A cross-faded seam needs a third piece: a longer clip (the first
--seam-frames frames, 36) is restyled by 1 worker in one piece and by 2 with --chunk-frames 12, in
three pieces of 12 (a pair, then a third meeting it in a seam as long as the pieces allow: 10 frames).

    .venv/bin/python benchmarks/cluster.py [--frames 24] [--pictures 12] [--size 256] [--quality fast]
        [--seam-frames 36] [--out DIR] [--json FILE] [--parts clip batch seams]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from results import write_results
from shared_data import SHARED, fitted, shared_tool

ROOT = Path(__file__).resolve().parent.parent
STYLE = ROOT / "examples" / "starry_night.jpg"
BARS = {"batch": 1.7, "clip": 1.5, "seam": 1.25}


def clip_folder(folder: Path, count: int, size: int) -> Path:
    import av
    source = SHARED / "videos" / "vtest.avi"
    if not source.is_file():
        sys.exit(f"cluster.py needs {source} (the shared test clips)")
    folder.mkdir(parents=True)
    with av.open(str(source)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number == count:
                break
            fitted(frame.to_image(), size, even=True).save(folder / f"frame_{number:04d}.png")
    return folder


def batch_folder(folder: Path, count: int, size: int) -> Path:
    """`count` pictures: crops of the shared photos and paintings, each its own."""
    pictures = sorted((SHARED / "images").glob("*.jpg"))
    folder.mkdir(parents=True)
    for number in range(count):
        image = Image.open(pictures[number % len(pictures)])
        left = (number // len(pictures)) * 0.2 * image.width
        crop = image.crop((left, 0, left + 0.8 * image.width, image.height))
        fitted(crop, size, even=True).save(folder / f"picture_{number:02d}.png")
    return folder


class LocalCluster:
    """`ray start --head` on this computer with 2 CPUs, in a process group of its own."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="ray-")
        self.environment = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
        self.environment.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                                RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.log = open(Path(self.folder) / "head.log", "wb")
        self.head = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus", "2",
             "--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", self.folder,
             "--include-dashboard", "false", "--dashboard-port", str(free_port()), "--disable-usage-stats"],
            env=self.environment, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if self.head.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit("cluster.py: ray start failed")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)

    def stop(self) -> None:
        self.head.send_signal(signal.SIGTERM)
        try:
            self.head.wait(30)
        except subprocess.TimeoutExpired:
            pass
        for _ in range(150):
            try:
                os.killpg(self.head.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed_run(cluster: LocalCluster, *arguments) -> tuple[float, list[dict]]:
    """The seconds of one `stylize --cluster` command, and its progress events."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "stylize_core", *map(str, arguments), "--cluster",
                             cluster.address, "--progress", "json"], capture_output=True, text=True,
                            env=cluster.environment)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"cluster.py: {' '.join(map(str, arguments))} failed: {result.stderr.strip()[-2000:]}")
    return seconds, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def pair_errors(temporal, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[float]:
    """temporal.py's warping error of each pair of frames (t, t+1) on its own."""
    return [temporal.warping_error(inputs[t:t + 2], outputs[t:t + 2])[1] for t in range(len(outputs) - 1)]


def junctions(work_plan: dict) -> list[tuple[str, list[int]]]:
    """Where the chunks of a plan join: the pairs (t, t+1), by the first frame t, on both sides of each
    key frame a pair of pieces shares, and across each cross-faded seam (its pairs and one each side)."""
    found = []
    chunks = work_plan["chunks"]
    for chunk in chunks:
        if not chunk["backward"] and chunk["own_start"] > 0 and chunk["own_start"] not in work_plan["cuts"]:
            if any(other["backward"] and other["key"] == chunk["key"] for other in chunks):
                found.append((f"key frame {chunk['key']}", [chunk["key"] - 1, chunk["key"]]))
    for seam in work_plan["seams"]:
        found.append((f"seam {seam['start']}-{seam['stop'] - 1}", list(range(seam["start"] - 1, seam["stop"]))))
    return found


def chunk_plan(clip: Path, workers: int, longest: int | None) -> dict:
    """The chunks the CLI cuts the clip into for `workers` workers (the same code: chunks.py)."""
    from stylize_core.cluster.chunks import grey_thumbnail, plan_chunks, scene_cuts

    frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(clip.iterdir())]
    return plan_chunks(len(frames), scene_cuts(grey_thumbnail(frame) for frame in frames), workers, longest).to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--pictures", type=int, default=12)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quality", default="fast")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "stylize-cluster"))
    parser.add_argument("--json")
    parser.add_argument("--seam-frames", type=int, default=36)
    parser.add_argument("--parts", nargs="+", choices=("clip", "batch", "seams"), default=["clip", "batch", "seams"],
                        help="what to run: the clip's and the batch's timings, and the seams (the clip's runs and "
                        "the longer clip's two); all by default")
    args = parser.parse_args()
    parts = set(args.parts)
    temporal = shared_tool("temporal")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    clip = clip_folder(out / "clip", args.frames, args.size)
    batch = batch_folder(out / "batch", args.pictures, args.size) if "batch" in parts else out / "batch"
    look = [STYLE, "--quality", args.quality]
    cluster = LocalCluster()
    figures: dict = {"frames": args.frames, "pictures": args.pictures, "size": args.size, "quality": args.quality}
    try:
        # Once, untimed: the workers' first run measures this CPU (calibrate.py) and keeps it on disk.
        timed_run(cluster, clip / "frame_0000.png", *look, "-o", out / "warm.png", "--workers", "2")
        seconds = {}
        for workers in (1, 2):
            if parts & {"clip", "seams"}:
                seconds[f"clip, {workers}"], _ = timed_run(cluster, clip, *look, "-o", out / f"clip_{workers}",
                                                           "--workers", str(workers))
            if "batch" in parts:
                seconds[f"batch, {workers}"], _ = timed_run(cluster, "--batch", batch, *look, "-o",
                                                            out / f"batch_{workers}", "--workers", str(workers))
        if "seams" in parts:
            longer = clip_folder(out / "longer", args.seam_frames, args.size)
            seconds["longer, 1"], _ = timed_run(cluster, longer, *look, "-o", out / "longer_1", "--workers", "1")
            seconds["longer, 2, chunks of 12"], _ = timed_run(cluster, longer, *look, "-o", out / "longer_2",
                                                              "--workers", "2", "--chunk-frames", "12")
    finally:
        cluster.stop()
    figures["seconds"] = {name: round(value, 1) for name, value in seconds.items()}
    ratios = {kind: seconds[f"{kind}, 1"] / seconds[f"{kind}, 2"] for kind in ("clip", "batch")
              if f"{kind}, 1" in seconds}
    figures["ratios"] = {kind: round(value, 2) for kind, value in ratios.items()}
    print(f"{'':28}{'1 worker':>10}{'2 workers':>11}{'ratio':>8}{'bar':>8}")
    for kind in ratios:
        print(f"{kind:28}{seconds[f'{kind}, 1']:9.1f}s{seconds[f'{kind}, 2']:10.1f}s{ratios[kind]:7.2f}x"
              f"{'  >= ' + str(BARS[kind]) + 'x':>8} {'met' if ratios[kind] >= BARS[kind] else 'NOT met'}")
    if "seams" not in parts:
        write_results(args.json, figures)
        return
    print(f"{'longer clip (' + str(args.seam_frames) + ' frames)':28}{seconds['longer, 1']:9.1f}s"
          f"{seconds['longer, 2, chunks of 12']:10.1f}s  (2 workers: 3 chunks of 12)")
    # (name, clip, output folder, the one-piece run its pairs are compared with, its chunk plan)
    runs = [("1 worker", clip, "clip_1", None, None),
            ("2 workers", clip, "clip_2", "1 worker", chunk_plan(clip, 2, None)),
            ("1 worker, longer clip", longer, "longer_1", None, None),
            ("2 workers, longer clip, chunks of 12", longer, "longer_2", "1 worker, longer clip",
             chunk_plan(longer, 2, 12))]
    errors = {name: pair_errors(temporal, temporal.read_frames(str(source), 0, 0),
                                temporal.read_frames(str(out / folder), 0, 0)) for name, source, folder, _, _ in runs}
    figures["seams"] = {}
    for name, _, _, reference, plan in runs:
        found = errors[name]
        mean = float(np.mean(found))
        print(f"warping error, {name}: the clip's mean {mean:.5f}")
        seam_figures = {}
        for where, pairs in junctions(plan) if plan else []:
            here = float(np.mean([found[t] for t in pairs]))
            alone = float(np.mean([errors[reference][t] for t in pairs]))
            seam_figures[where] = {"pairs": pairs, "to_mean": round(here / mean, 2), "to_one_piece": round(here / alone, 2)}
            print(f"  {where} (pairs from {pairs[0]} to {pairs[-1]}): {here:.5f}, {here / mean:.2f}x the clip's mean "
                  f"({'met' if here / mean <= BARS['seam'] else 'NOT met'}); {here / alone:.2f}x the same pairs "
                  "restyled in one piece (1 worker)")
        figures["seams"][name] = {"mean": round(mean, 5), "junctions": seam_figures,
                                  "pairs": [round(value, 5) for value in found]}
    write_results(args.json, figures)


if __name__ == "__main__":
    main()
