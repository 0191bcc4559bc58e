"""Checks in the venv that the engine imports, says which device `--device auto` will use (and why
a GPU that the machine has is not used), and proves with a tiny stylization that the weights load
and an optimisation runs."""

import json
import tempfile
from pathlib import Path

from .commands import format_command, last_lines, run_captured
from .console import InstallError, indent
from .torch_variant import Gpu, describe_gpu

ENGINE_CHECK_TIMEOUT_S = 600

# Runs in the venv: what `--device auto` will pick, in the engine's order (CUDA, MPS, CPU), and the
# build of torch (its CUDA or ROCm version; whether its XPU backend sees an Intel GPU).
ENGINE_PROBE = r"""
import json, torch, stylize_core
xpu = getattr(torch, "xpu", None)
info = {"torch": torch.__version__, "stylize_core": getattr(stylize_core, "__version__", "?"),
        "location": stylize_core.__file__, "device": "cpu", "gpu": None,
        "cuda_build": torch.version.cuda, "hip": getattr(torch.version, "hip", None),
        "xpu": bool(xpu is not None and xpu.is_available())}
if torch.cuda.is_available():
    info["device"] = "cuda"
    info["gpu"] = torch.cuda.get_device_name(0)
elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    info["device"] = "mps"
print("STYLIZE-PROBE " + json.dumps(info))
"""


def probe_engine(python: Path) -> dict:
    result = run_captured([str(python), "-c", ENGINE_PROBE], timeout=ENGINE_CHECK_TIMEOUT_S)
    for line in result.stdout.splitlines():
        if line.startswith("STYLIZE-PROBE "):
            return json.loads(line[len("STYLIZE-PROBE "):])
    raise InstallError(
        f"the engine does not import in {python}:\n{indent(last_lines(result.stderr + result.stdout))}",
        "run install.py again (without --plugin-only) to repair the packages; if torch itself is broken, "
        "remove the environment (install.py --uninstall --remove-venv, or delete the folder) and reinstall")


def describe_device(info: dict) -> str:
    if info.get("device") == "cuda":
        return f"cuda ({info.get('gpu')})"
    if info.get("device") == "mps":
        return "mps (Apple GPU)"
    return "cpu (no CUDA or Apple GPU found: runs work, but slowly)"


def unused_gpu(info: dict, gpu: Gpu, rerun: str) -> str | None:
    """Why the engine does not use the GPU that install.py found, with the fix; None where it does,
    or where there is none. `info` is probe_engine's, `rerun` the command that runs install.py again."""
    found, version, device = describe_gpu(gpu), info.get("torch", "?"), info.get("device")
    if gpu.kind == "nvidia" and device != "cuda":
        if not info.get("cuda_build"):
            return f"{found}, but torch {version} is not a CUDA build: the engine runs on the CPU; " \
                   f"to use the GPU: {rerun} --torch cuda"
        return (f"{found}, but torch {version} (the CUDA {info['cuda_build']} build) cannot use it: "
                "torch.cuda.is_available() is False, so the engine runs on the CPU. The driver may be too old "
                "for this build, or not running: update the NVIDIA driver (nvidia-smi must list the GPU), or "
                f"install the build for this driver: {rerun} --torch cuda")
    if gpu.kind == "amd" and device != "cuda":
        if not info.get("hip"):
            return f"{found}, but torch {version} is not a ROCm build: the engine runs on the CPU; " \
                   f"to use the GPU: {rerun} --torch rocm"
        return (f"{found}, but torch {version} (the ROCm {info['hip']} build) cannot use it: "
                "torch.cuda.is_available() is False, so the engine runs on the CPU. ROCm may not support this "
                "GPU, or your user may not reach it: add it to the render and video groups, log in again")
    if gpu.kind == "intel":
        if info.get("xpu"):
            return (f"{found}, and torch's XPU build sees it, but the engine's device auto uses CUDA or ROCm, "
                    "Apple's MPS or the CPU: it runs on the CPU")
        return (f"{found}, but torch {version} cannot use it (torch.xpu.is_available() is False): install "
                f"Intel's GPU driver, then, for torch's XPU build: {rerun} --torch xpu")
    if gpu.kind == "apple" and device != "mps":
        return (f"{found}, but torch {version} cannot use its GPU (torch.backends.mps.is_available() is "
                "False): it needs macOS 12.3 or newer and a Python built for arm64, not one under Rosetta")
    return None


def run_tiny_stylization(python: Path, checkout: Path) -> None:
    """A 64-pixel, 5-iteration run: proves the weights load and one optimisation runs end to end."""
    content = checkout / "examples" / "tubingen.jpg"
    style = checkout / "examples" / "starry_night.jpg"
    for image in (content, style):
        if not image.is_file():
            raise InstallError(f"the example image {image} is missing",
                               "restore it (git checkout examples), or skip this check with --skip-check")
    with tempfile.TemporaryDirectory(prefix="stylize-check-") as folder:
        output = Path(folder) / "check.png"
        command = [str(python), "-m", "stylize_core", str(content), str(style), "-o", str(output),
                   "--max-size", "64", "--iterations", "5", "--progress", "none"]
        result = run_captured(command, timeout=ENGINE_CHECK_TIMEOUT_S)
        if result.returncode != 0 or not is_png(output):
            why = last_lines(result.stderr + result.stdout) or f"no PNG was written (exit status {result.returncode})"
            raise InstallError(
                f"the test stylization failed:\n{indent(why)}",
                f"run it by hand to see more: {format_command(command)}; `--skip-check` skips this test")


def is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False
