"""The GPU check's own measurements (`gpu_check.py measure KIND --json FILE`), each in its own process.

Each writes its figures to --json FILE as one JSON object (what the check's summary records) and
prints them on one line for the log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from results import write_results

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--json", metavar="FILE", help="write the figures to FILE as JSON")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--scales", type=int, default=4)
    parser.add_argument("--memory-limit", type=int)
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--out", help="where the measurement's picture(s) go")
    parser.add_argument("--cli", nargs=argparse.REMAINDER, default=[],
                        help="full-resolution: the CLI's options (everything after --cli)")


def measure(args) -> int:
    result = KINDS[args.kind](args)
    print(json.dumps(result), flush=True)
    write_results(args.json, result)
    return 1 if result.get("returncode") else 0


def stylize_command() -> list[str]:
    """The `stylize` script beside this interpreter, or the module."""
    script = Path(sys.executable).parent / "stylize"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "stylize_core"]


def measure_environment(args) -> dict:
    import platform

    import torch
    result = {"python": platform.python_version(), "torch": torch.__version__,
              "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
              "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
              "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        result.update(gpu=properties.name, capability=list(torch.cuda.get_device_capability(0)),
                      gpu_memory_gb=round(properties.total_memory / 2**30, 1),
                      multiprocessors=properties.multi_processor_count,
                      bf16_supported=torch.cuda.is_bf16_supported())
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        result["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        result["nvidia_smi"] = f"not run: {error}"
    import pastiche
    import stylize_core
    result["stylize_core"] = stylize_core.__file__
    result["pastiche"] = pastiche.__file__
    return result


def measure_layout(args) -> dict:
    """Real memory formats: our network on channels-last weights, under each autocast dtype.

    Settles what fake tensors cannot (tests/unit/test_fake_cuda.py): whether bf16 convolutions keep
    channels-last activations, and what the replicate padding before conv1_1 gives."""
    import torch
    import torch.nn.functional as F

    from stylize_core.engine.vgg import load_vgg19
    device = torch.device(args.device)
    network = load_vgg19().to(device)
    if device.type == "cuda":
        network.use_channels_last()
    image = torch.rand(1, 3, args.size, args.size, device=device)
    channels_last = lambda t: t.is_contiguous(memory_format=torch.channels_last)
    padded = F.pad(image.contiguous(memory_format=torch.channels_last), (1, 1, 1, 1), mode="replicate")
    result = {"device": device.type, "network_channels_last": network.channels_last,
              "replicate_pad_keeps_channels_last": channels_last(padded), "features": {}}
    layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if device.type == "cpu" and precision == "fp16":
            continue
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            features = network(image, layers)
        result["features"][precision] = {
            "dtypes": sorted({str(f.dtype).replace("torch.", "") for f in features.values()}),
            "channels_last": {layer: channels_last(f) for layer, f in sorted(features.items())}}
    return result


@contextlib.contextmanager
def plans_recorded():
    """The engine's run plans as it makes them (their memory estimates, in bytes, per scale)."""
    from stylize_core.engine import api
    plans, original = [], api.make_plan

    def make_plan(*arguments, **keywords):
        plans.append(original(*arguments, **keywords))
        return plans[-1]
    api.make_plan = make_plan
    try:
        yield plans
    finally:
        api.make_plan = original


def progress_recorder(events: dict, started: list[float]):
    """A progress callback that keeps the plan lines, the losses and when each scale began."""
    def on_progress(progress):
        now = time.perf_counter()
        if progress.stage == "plan":
            events["plans"].append(progress.message)
        elif progress.stage == "optimize":
            if events["first"] is None:
                events["first"] = now
            if progress.scale != (events["scales"][-1]["scale"] if events["scales"] else None):
                events["scales"].append({"scale": progress.scale, "width": progress.width,
                                         "height": progress.height,
                                         "first_iteration_at_s": round(now - started[0], 2)})
            events["last"] = now
            events["iterations"] += 1
            events["losses"].append(progress.loss)
    return on_progress


def stylize_timed(settings, content, style, device_type: str) -> tuple[dict, object]:
    """One stylize_picture run: wall time, loop time per iteration, plan, peak memory against the estimate."""
    import torch

    from stylize_core.engine.api import stylize_picture
    events = {"plans": [], "first": None, "last": None, "iterations": 0, "losses": [], "scales": []}
    started = [0.0]
    if device_type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with plans_recorded() as plans:
        started[0] = time.perf_counter()
        picture = stylize_picture(content, [style], settings, progress_recorder(events, started))
    if device_type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started[0]
    iterations = events["iterations"]
    loop = (events["last"] - events["first"]) if iterations > 1 else None
    estimates = [scale.memory.estimate for plan in plans for scale in plan.scales]
    result = {"wall_s": round(wall, 3), "iterations": iterations,
              "s_per_iteration": round(loop / (iterations - 1), 5) if loop else None,
              "first_loss": events["losses"][0] if events["losses"] else None,
              "last_loss": events["losses"][-1] if events["losses"] else None,
              "plans": events["plans"], "estimate_gb": round(max(estimates) / 2**30, 3) if estimates else None,
              "scales": events["scales"]}
    if device_type == "cuda":
        result["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        result["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
        if result["estimate_gb"]:
            result["estimate_error_vs_reserved"] = round(
                (result["estimate_gb"] - result["peak_reserved_gb"]) / result["peak_reserved_gb"], 3)
    else:
        import resource
        result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    return result, picture


def measure_iterations(args) -> dict:
    """Wall time of N iterations at SIZE x SIZE (one scale, no early stop), after a warm-up run."""
    from stylize_core.contract.settings import Settings
    from stylize_core.engine.imageio import Picture, load_picture, resize_rgb
    from stylize_core.engine.saving import save_picture
    content = Picture(resize_rgb(load_picture(str(CONTENT)).rgb, (args.size, args.size)))
    style = load_picture(str(STYLE))
    settings = Settings(device=args.device, precision=args.precision, max_size=args.size, scales=1,
                        stall_tolerance=0.0, seed=0)
    warm, _ = stylize_timed(settings.replace(iterations=args.warmup), content, style, args.device)
    result, picture = stylize_timed(settings.replace(iterations=args.iterations), content, style, args.device)
    result["warmup"] = {"iterations": args.warmup, "wall_s": warm["wall_s"]}
    result.update(size=args.size, precision=args.precision)
    if args.out:
        save_picture(picture, args.out)
    return result


def measure_big(args) -> dict:
    """A SIZE x SIZE layer at full working resolution (max size SIZE), within --memory-limit MB."""
    import numpy as np
    from PIL import Image

    from stylize_core.contract.settings import Settings
    from stylize_core.engine.imageio import Picture, load_picture, resize_rgb
    content = Picture(resize_rgb(load_picture(str(CONTENT)).rgb, (args.size, args.size)))
    settings = Settings(device=args.device, size=args.size, max_size=args.size, scales=args.scales,
                        iterations=args.iterations, memory_limit_mb=args.memory_limit, tile_size=args.tile_size,
                        seed=0)
    result, picture = stylize_timed(settings, content, load_picture(str(STYLE)), args.device)
    result.update(size=args.size, memory_limit_mb=args.memory_limit, tile_size=args.tile_size)
    rgb = (np.clip(picture.rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    assert rgb.shape == (args.size, args.size, 3), rgb.shape
    result["finite"] = bool(np.isfinite(picture.rgb).all())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        half, middle = min(512, args.size // 2), args.size // 2
        Image.fromarray(rgb[middle - half:middle + half, middle - half:middle + half]).save(out / "big-crop.png")
        Image.fromarray(rgb).resize((min(1024, args.size),) * 2, Image.LANCZOS).save(out / "big-small.png")
    return result


def measure_full_resolution(args) -> dict:
    """The README example through the CLI with the given options (--progress json): the plan's line and
    prediction, the run's seconds, and whether the last scale was painted at the output's own size."""
    from PIL import Image
    command = [*stylize_command(), str(CONTENT), str(STYLE), "-o", args.out, "--device", args.device,
               "--progress", "json", *args.cli]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    events = []
    for line in process.stdout:
        print(line, end="", flush=True)
        if line.startswith("{"):
            events.append(json.loads(line))
    returncode = process.wait()
    by_stage = lambda stage: [event for event in events if event.get("stage") == stage]
    plan, done, steps = (by_stage("plan") or [{}])[0], (by_stage("done") or [{}])[0], by_stage("optimize")
    last = [steps[-1]["width"], steps[-1]["height"]] if steps else None
    output = list(Image.open(args.out).size) if Path(args.out).is_file() else None
    return {"plan": plan.get("message"), "finished_at_full_size": bool(last and last == output),
            "last_scale": last, "output_size": output, "predicted_s": plan.get("predicted_s"),
            "run_s": done.get("seconds"), "returncode": returncode}


KINDS = {"environment": measure_environment, "layout": measure_layout, "iterations": measure_iterations,
         "big": measure_big, "full-resolution": measure_full_resolution}
