"""The GIMP-free half of the plug-in: configuration, pixel files, the engine process, progress.

GIMP's own Python runs this file: standard library only (no numpy, no torch).
The engine runs in the project's virtual environment (docs/protocol.md).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Callable

CONFIG_NAME = "stylize-config.json"
NOT_INSTALLED = ("Neural Style Transfer engine is not installed: run python3 install.py in {where}")


def make_config(python: str, project: str, version: str) -> dict:
    """The config that install.py writes beside this file (it loads this file by path for that).
    run_engine also reads two optional keys a user may add: "use_worker" and "worker_idle_timeout"."""
    return {"python": python, "project": project, "version": version}


class BridgeError(Exception):
    """A failure with the one line the user should read."""


def read_config(plugin_dir: Path) -> dict:
    path = plugin_dir / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BridgeError(NOT_INSTALLED.format(where="the project folder")) from None
    python = config.get("python")
    if not python or not os.path.isfile(python):
        raise BridgeError(NOT_INSTALLED.format(where=config.get("project") or "the project folder"))
    return config


# --- pixels: float32 RGBA .npy files written with the standard library ---------------------------

def write_npy(path: Path, data: bytes, height: int, width: int, channels: int = 4) -> None:
    if len(data) != height * width * channels * 4:
        raise BridgeError(f"pixel data has {len(data)} bytes, expected {height}x{width}x{channels} floats")
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (height, width, channels)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as stream:
        stream.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        stream.write(data)


def read_npy(path: Path) -> tuple[bytes, tuple[int, ...]]:
    """(raw little-endian float32 bytes, shape) of a C-order float32 .npy file."""
    with open(path, "rb") as stream:
        if stream.read(6) != b"\x93NUMPY":
            raise BridgeError(f"the engine's result is not a .npy file: {path}")
        major = stream.read(2)[0]
        length = struct.unpack("<H" if major == 1 else "<I", stream.read(2 if major == 1 else 4))[0]
        header = stream.read(length).decode("latin1")
        if "'<f4'" not in header or "'fortran_order': False" not in header:
            raise BridgeError("the engine's result is not a float32 C-order array")
        shape = tuple(int(n) for n in header.split("(")[1].split(")")[0].split(",") if n.strip())
        data = stream.read()
    expected = 4
    for n in shape:
        expected *= n
    if len(data) != expected:
        raise BridgeError("the engine's result is truncated")
    return data, shape


# --- arguments -------------------------------------------------------------------------------------

def engine_arguments(options, values: dict, content: Path, style: Path, output: Path, work_dir: Path) -> list[str]:
    """The engine's CLI arguments for the dialog's values (keyed by plug-in argument name);
    `options` is the engine's options.py (load_engine_module)."""
    return [str(content), str(style), "-o", str(output), *options.engine_arguments(values),
            "--progress", "json", "--cleanup-dir", str(work_dir)]


def describe_progress(event: dict) -> tuple[float | None, str | None]:
    """(fraction 0..1 or None, status text or None) for one JSON progress event."""
    stage = event.get("stage")
    if stage == "optimize":
        text = (f"Neural Style Transfer: scale {event['scale']}/{event['scales']}, "
                f"iteration {event['iteration']}/{event['total']}")
        if event.get("eta_s") is not None:
            text += f", ~{max(1, round(event['eta_s']))} s left"
        return float(event.get("fraction", 0.0)), text
    texts = {"load": "Neural Style Transfer: loading the engine", "plan": None,
             "save": "Neural Style Transfer: saving", "done": None}
    return None, texts.get(stage)


# --- running the engine ----------------------------------------------------------------------------

def child_environment() -> dict:
    # GIMP's own Python paths would shadow the venv's packages.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run_child(python: str, argv: list[str], on_event: Callable[[dict], None]) -> tuple[int, str]:
    """Run the engine as a child; returns (exit status, its one-line error or '')."""
    command = [python, "-m", "stylize_core", *argv, "--stop-on-stdin-eof"]
    # The child stops when its stdin closes, which happens however we die (GIMP kills a
    # cancelled plug-in outright). A preexec_fn (PR_SET_PDEATHSIG) is not safe here: GIMP's
    # Python has threads, and the forked child crashed in it.
    options = {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=child_environment(), text=True, **options)
    except OSError as error:
        raise BridgeError(f"cannot start the engine ({error.strerror or error}): run python3 install.py") from None
    error_message = ""
    for line in process.stdout:  # stdin stays open: closing it (our death) stops the engine
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("stage") == "error":
            error_message = event.get("message", "")
        on_event(event)
    stderr = process.stderr.read()
    status = process.wait()
    if status and not error_message:
        lines = [l for l in stderr.splitlines() if l.strip()]
        error_message = lines[-1].replace("stylize: error: ", "") if lines else f"engine exit status {status}"
    return status, error_message


ENGINE_PACKAGE = "stylize_engine"
"""The name the engine's stdlib modules get here, so that they import each other (.options) without
running the package's __init__ or needing torch."""


def load_engine_module(project: str, name: str):
    """One of the engine's standard-library modules (client, options, pyramid, timing), loaded from the
    project's folder: GIMP's Python has no torch, so it cannot import the whole stylize_core package."""
    folder = Path(project) / "stylize_core"
    if not (folder / f"{name}.py").is_file():
        raise BridgeError(NOT_INSTALLED.format(where=project or "the project folder"))
    package = sys.modules.get(ENGINE_PACKAGE)
    if package is None or list(package.__path__) != [str(folder)]:
        package = types.ModuleType(ENGINE_PACKAGE)
        package.__path__ = [str(folder)]
        for loaded in [m for m in sys.modules if m.startswith(ENGINE_PACKAGE + ".")]:
            del sys.modules[loaded]  # another project's modules
        sys.modules[ENGINE_PACKAGE] = package
    return importlib.import_module(f"{ENGINE_PACKAGE}.{name}")


def run_engine(config: dict, argv: list[str], on_event: Callable[[dict], None], work_dir: Path) -> None:
    """Run in the warm worker when one can take the job, else as a child; raise BridgeError on failure.

    The config may turn the worker off ("use_worker": false) or shorten its idle
    time ("worker_idle_timeout", seconds).
    """
    errors = []

    def watch(event: dict) -> None:
        if event.get("stage") == "error":
            errors.append(event.get("message", ""))
        on_event(event)

    use_worker = config.get("use_worker", True) and os.name == "posix"
    client = load_engine_module(config.get("project", ""), "client") if use_worker else None
    status = None
    if client is not None:
        try:
            status = client.run_in_worker(config["python"], argv, watch, cleanup_dir=str(work_dir),
                                          idle_timeout=config.get("worker_idle_timeout"))
        except client.WorkerUnavailable:
            status = None
    if status is None:
        status, message = run_child(config["python"], argv, watch)
        if message and not errors:
            errors.append(message)
    if status != 0:
        raise BridgeError(in_dialog_terms(errors[-1]) if errors else f"the engine failed (exit status {status})")


def in_dialog_terms(message: str) -> str:
    """The engine's one-line error in the plug-in user's terms: what to reinstall, which knob to turn."""
    if "No module named" in message:  # a venv moved, emptied or made by another checkout
        return f"the engine's environment is incomplete ({message}): run python3 install.py again"
    if "out of memory" in message or "not enough memory" in message:
        return (message.split(": use ")[0] + ". Lower Advanced › Working size, or set Advanced › Device to CPU "
                "(slower, but it has more memory).")
    return message


def describe_time(project: str, values: dict, layer_size: tuple[int, int]) -> str:
    """What the run will cost, for the dialog: from this computer's calibration (measured by the engine's
    first run) and the dialog's values (keyed by plug-in argument name)."""
    options = load_engine_module(project, "options")
    timing = load_engine_module(project, "timing")
    errors = load_engine_module(project, "errors")
    settings = options.settings_from_dialog(values)
    calibration = timing.latest_for(settings.device)
    if calibration is None:
        return "Time: measured on the first run on this computer"
    where = "this CPU" if calibration.device_type == "cpu" else calibration.device_name
    try:
        working, full = timing.predict_by_resolution(layer_size, settings, calibration)
    except errors.StylizeError as error:  # a layer too small, say: the run says so too
        return f"Time: unknown ({error})"
    if full is None:
        return f"About {timing.describe_seconds(working)} on {where}"
    text = (f"About {timing.describe_seconds(working)} at the working size, "
            f"{timing.describe_seconds(full)} at full size, on {where}")
    if settings.resolution == "auto":
        chosen = "full size" if full <= timing.AUTO_FULL_SECONDS else "the working size"
        text += f" (Automatic: {chosen})"
    return text


def make_work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gimp-style-transfer-"))


def remove_work_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
