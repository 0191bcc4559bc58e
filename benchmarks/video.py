#!/usr/bin/env python3
"""Clips: frames restyled independently against the temporal mode, side by side in one run.

Two clips, each --frames frames at --size px on the long side: the first frames of
../shared/videos/vtest.avi (a fixed camera, people walking: occlusions), and a synthetic pan and
zoom over ../shared/images/garden.jpg (a camera motion whose flow is known). Each is restyled after
examples/starry_night.jpg (a) frame by frame as stills (stylize_picture) and (b) as a clip
(stylize_frames, for each --temporal-weights), each mode in a process of its own (its peak memory).
With --carried, the pan also gets (c) the steadiest restyling it can have: the photo's panned-over
part restyled once and cropped as the camera moves (carried_painting), the floor of the warping error
for a painting's strokes under this motion.

Printed per clip and mode: seconds per frame (the first and the rest), the ratio of the rest to a
still's, the predicted clip time against the measured, the warping error (../shared/tools/temporal.py:
Lai et al.'s E_warp with DIS flow on the input and Ruder's occlusion check; the input clip's own value
is the floor) and its ratio to the floor, the style and content scores per frame
(../shared/tools/evaluate.py) and their ratios to the independent frames', and peak memory.
A contact sheet (frames 1, 1/3, 2/3 and last of input and each mode) and a GIF per mode go to --out.

--memory-frames 48 480 instead runs the whole CLI (a video in, a video out) on a synthetic pan of
that many frames at 64 px, and prints each run's peak memory: flat over the clip's length.

    .venv/bin/python benchmarks/video.py [--frames 24] [--size 384] [--quality balanced]
        [--temporal-weights 1] [--clips vtest pan] [--out DIR] [--json FILE] [--reuse-independent]
        [--carried]
    .venv/bin/python benchmarks/video.py --memory-frames 48 480
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
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


def clip_frames(name: str, count: int, size: int) -> list[np.ndarray]:
    """uint8 RGB frames of the named clip."""
    if name == "vtest":
        import av
        path = SHARED / "videos" / "vtest.avi"
        if not path.is_file():
            sys.exit(f"video.py needs {path} (the shared test clips)")
        frames = []
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(np.asarray(fitted(frame.to_image(), size, even=True)))
                if len(frames) == count:
                    break
        return frames
    return pan_frames(count, size)


def pan_boxes(count: int, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """The pan's crops of a width x height photo: they slide 0.4 % of its width and shrink 0.3 % a
    frame, panning right and zooming in (and back again after 120 frames)."""
    boxes = []
    for number in range(count):
        t = number % 240 if number % 240 < 120 else 240 - number % 240
        crop_width = width * 0.6 * (1 - 0.003 * t)
        crop_height = crop_width * 2 / 3
        left = width * 0.1 + width * 0.004 * t
        top = (height - crop_height) / 2
        boxes.append((left, top, left + crop_width, top + crop_height))
    return boxes


def garden() -> Image.Image:
    path = SHARED / "images" / "garden.jpg"
    if not path.is_file():
        sys.exit(f"video.py needs {path} (the shared test photos)")
    return Image.open(path).convert("RGB")


def pan_frames(count: int, size: int) -> list[np.ndarray]:
    """A camera panning right and zooming in over garden.jpg (pan_boxes), frames size px wide."""
    photo = garden()
    return [np.asarray(photo.resize((round(size), round(size * 2 / 3)), Image.LANCZOS, box=box))
            for box in pan_boxes(count, *photo.size)]


def carried_painting(count: int, size: int, settings, style, progress=None) -> list[np.ndarray]:
    """The steadiest restyling a pan can have: the part of the photo the whole pan sees, restyled
    once as a still at the first frame's scale, then cropped and resized as the pan crops the photo
    (the painting moves exactly with the camera). Its warping error is the floor for a painting's
    strokes under this motion, which the input's own (a smooth photo) is not."""
    from stylize_core.engine.api import stylize_picture
    from stylize_core.engine.imageio import Picture

    photo = garden()
    boxes = pan_boxes(count, *photo.size)
    union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    scale = size / (boxes[0][2] - boxes[0][0])
    canvas_size = (round((union[2] - union[0]) * scale), round((union[3] - union[1]) * scale))
    canvas = np.asarray(photo.resize(canvas_size, Image.LANCZOS, box=union)).astype(np.float32) / 255
    wide = dataclasses.replace(settings, max_size=max(canvas_size))
    painted = stylize_picture(Picture(canvas), [style], wide, progress).rgb
    painting = Image.fromarray(np.round(painted * 255).astype(np.uint8))
    ratio = painting.width / (union[2] - union[0])
    return [np.asarray(painting.resize((round(size), round(size * 2 / 3)), Image.LANCZOS,
                                       box=tuple((b[i] - union[i % 2]) * ratio for i in range(4))))
            for b in boxes]


def run_mode(args) -> dict:
    """One mode on one clip, in this process: the frames written to args.folder, the times returned."""
    from stylize_core import Settings
    from stylize_core.engine.api import stylize_picture
    from stylize_core.engine.frames import stylize_frames
    from stylize_core.engine.imageio import Picture, load_picture

    frames = clip_frames(args.clip, args.frames, args.size)
    style = load_picture(STYLE)
    pictures = (Picture(frame.astype(np.float32) / 255) for frame in frames)
    weight = float(args.mode) if args.mode not in ("independent", "carried") else 0.0
    settings = Settings(quality=args.quality, max_size=args.size, temporal_weight=weight)
    predicted = []

    def on_event(event):
        if event.stage == "plan" and event.predicted_s is not None:
            predicted.append(event.predicted_s)

    folder = Path(args.folder)
    times = []
    started = time.perf_counter()
    if args.mode == "independent":
        results = (stylize_picture(picture, [style], settings, on_event) for picture in pictures)
    elif args.mode == "carried":
        results = (Picture(frame.astype(np.float32) / 255)
                   for frame in carried_painting(len(frames), args.size, settings, style, on_event))
    else:
        results = stylize_frames(pictures, [style], settings, on_event, count=len(frames))
    for number, result in enumerate(results):
        times.append(time.perf_counter() - started)
        Image.fromarray(np.round(result.rgb * 255).astype(np.uint8)).save(folder / f"{number:04d}.png")
        started = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    predicted_s = sum(predicted) if args.mode == "independent" else predicted[0]
    return {"seconds": times, "predicted_s": predicted_s, "peak_mb": peak_mb}


def measured(clip: str, mode: str, args, folder: Path) -> dict:
    """One mode's run (its times and peak memory), or with --reuse-independent the independent frames'
    figures kept from an earlier run with the same clip, size and quality (independent frames do not
    depend on the temporal code being tuned)."""
    kept = folder / "run.json"
    if mode in ("independent", "carried") and args.reuse_independent and kept.is_file():
        figures = json.loads(kept.read_text())
        if figures.get("asked") == [args.frames, args.size, args.quality]:
            return figures["result"]
    folder.mkdir(parents=True, exist_ok=True)
    result = run_in_child(clip, mode, args, folder)
    kept.write_text(json.dumps({"asked": [args.frames, args.size, args.quality], "result": result}))
    return result


def run_in_child(clip: str, mode: str, args, folder: Path) -> dict:
    command = [sys.executable, __file__, "--one", "--clip", clip, "--mode", mode, "--folder", str(folder),
               "--frames", str(args.frames), "--size", str(args.size), "--quality", args.quality]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def scores(inputs: Path, outputs: Path, evaluator) -> list[dict]:
    names = sorted(p.name for p in outputs.glob("*.png"))[:len(list(inputs.glob("*.png")))]
    return [evaluator.evaluate(str(outputs / name), str(inputs / name), str(STYLE)) for name in names]


def bgr(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB"))[..., ::-1].copy() for p in sorted(folder.glob("*.png"))]


def contact_sheet(folders: list[Path], labels: list[str], target: Path) -> None:
    rows = []
    for folder in folders:
        paths = sorted(folder.glob("*.png"))
        picks = [paths[i] for i in sorted({0, len(paths) // 3, 2 * len(paths) // 3, len(paths) - 1})]
        rows.append([Image.open(p).convert("RGB") for p in picks])
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (width * len(rows[0]) + 140, height * len(rows)), "white")
    from PIL import ImageDraw
    draw = ImageDraw.Draw(sheet)
    for r, (row, label) in enumerate(zip(rows, labels)):
        draw.text((4, r * height + height // 2), label, fill="black")
        for c, tile in enumerate(row):
            sheet.paste(tile, (140 + c * width, r * height))
    sheet.save(target)


def gif(folder: Path, target: Path, fps: int = 10) -> None:
    frames = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.png"))]
    frames[0].save(target, save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0)


def compare(args) -> dict:
    temporal, evaluate = shared_tool("temporal"), shared_tool("evaluate")
    evaluator = evaluate.Evaluator()
    out = Path(args.out)
    figures = {}
    for clip in args.clips:
        inputs = out / clip / "input"
        inputs.mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(clip_frames(clip, args.frames, args.size)):
            Image.fromarray(frame).save(inputs / f"{number:04d}.png")
        modes = ["independent", *[f"{w:g}" for w in args.temporal_weights],
                 *(["carried"] if args.carried and clip == "pan" else [])]
        figures[clip] = {}
        for mode in modes:
            folder = out / clip / mode_folder(mode)
            result = measured(clip, mode, args, folder)
            e_in, e_out, _ = temporal.warping_error(bgr(inputs), bgr(folder))
            result.update(warping_error=e_out, input_warping_error=e_in, scores=scores(inputs, folder, evaluator))
            gif(folder, out / clip / f"{folder.name}.gif")
            figures[clip][mode] = result
        contact_sheet([inputs] + [out / clip / mode_folder(m) for m in modes],
                      ["input", *[mode_folder(m).replace("-", " ") for m in modes]], out / clip / "sheet.png")
        report(clip, figures[clip])
    return figures


def mode_folder(mode: str) -> str:
    return mode if mode in ("independent", "carried") else f"temporal-{mode}"


def report(clip: str, modes: dict) -> None:
    still = modes["independent"]
    still_s = float(np.mean(still["seconds"]))
    still_style = np.array([s["style_gram"] for s in still["scores"]])
    still_content = np.array([s["content"] for s in still["scores"]])
    print(f"\n{clip}: {len(still['seconds'])} frames; input warping error {still['input_warping_error']:.5f}")
    print(f"{'mode':>12} {'first s':>8} {'rest s':>7} {'rest/still':>10} {'pred/meas':>9} {'E_warp':>8} "
          f"{'/input':>6} {'/indep':>6} {'style':>6} {'/indep':>6} {'content':>7} {'/indep':>6} {'peak MB':>8}")
    for mode, figures in modes.items():
        seconds = figures["seconds"]
        rest = float(np.mean(seconds[1:])) if len(seconds) > 1 else seconds[0]
        style = np.array([s["style_gram"] for s in figures["scores"]])
        content = np.array([s["content"] for s in figures["scores"]])
        print(f"{mode:>12} {seconds[0]:8.1f} {rest:7.1f} {rest / still_s:10.2f} "
              f"{figures['predicted_s'] / sum(seconds):9.2f} {figures['warping_error']:8.5f} "
              f"{figures['warping_error'] / figures['input_warping_error']:6.2f} "
              f"{figures['warping_error'] / still['warping_error']:6.2f} {style.mean():6.3f} "
              f"{np.mean(style / still_style):6.2f} {content.mean():7.3f} {np.mean(content / still_content):6.2f} "
              f"{figures['peak_mb']:8.0f}")


def memory_run(count: int, folder: Path) -> float:
    """The CLI on a synthetic pan of `count` frames at 64 px (a video in, a video out): peak MB."""
    import av
    source = folder / f"pan{count}.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 42, "yuv420p"
        for frame in pan_frames(count, 64):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:42, :64]),
                                                                   format="rgb24")))
        container.mux(stream.encode(None))
    command = [sys.executable, "-c", "import resource, sys; from stylize_core.cli import main; code = main(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)",
               str(source), str(STYLE), "-o", str(folder / f"out{count}.mp4"), "--quality", "fast",
               "--progress", "none"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(output.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--quality", default="balanced")
    parser.add_argument("--temporal-weights", type=float, nargs="+", default=[1.0])
    parser.add_argument("--clips", nargs="+", default=["vtest", "pan"], choices=["vtest", "pan"])
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "stylize-video"))
    parser.add_argument("--json")
    parser.add_argument("--reuse-independent", action="store_true",
                        help="take the independent frames from an earlier run into the same --out")
    parser.add_argument("--carried", action="store_true",
                        help="on the pan, also the painting carried by the camera (the steadiest possible)")
    parser.add_argument("--memory-frames", type=int, nargs="+")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_mode(args)))
        return
    if args.memory_frames:
        with tempfile.TemporaryDirectory() as folder:
            peaks = {count: memory_run(count, Path(folder)) for count in args.memory_frames}
        first = peaks[args.memory_frames[0]]
        for count, peak in peaks.items():
            print(f"{count:5d} frames: peak {peak:7.0f} MB ({peak / first:.3f}x the first)")
        write_results(args.json, {"memory_peak_mb": peaks})
        return
    figures = compare(args)
    print(f"\ncontact sheets and GIFs: {args.out}/<clip>/")
    write_results(args.json, figures)


if __name__ == "__main__":
    main()
