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
from pathlib import Path
from typing import Callable

from stylize_core.contract.installation import CONFIG_NAME

NOT_INSTALLED = ("Neural Style Transfer engine is not installed: run python3 install.py in {where}")


class BridgeError(Exception):
    """A failure with the one line the user should read."""


def read_config(plugin_dir: Path) -> dict:
    path = plugin_dir / CONFIG_NAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BridgeError(NOT_INSTALLED.format(where="the project folder")) from None
    if not config.get("server") and not has_python(config):
        raise BridgeError(NOT_INSTALLED.format(where=config.get("project") or "the project folder"))
    return config


def has_python(config: dict) -> bool:
    """Whether this computer's engine can be run from here (not so in a sandbox that sees no venv)."""
    return bool(config.get("python")) and os.path.isfile(config["python"])


# --- pixels: float32 RGBA .npy files written with the standard library ---------------------------

def npy_bytes(data: bytes, height: int, width: int, channels: int = 4) -> bytes:
    """float32 pixels as the bytes of a .npy file (what the engine reads, on a server or from a file)."""
    if len(data) != height * width * channels * 4:
        raise BridgeError(f"pixel data has {len(data)} bytes, expected {height}x{width}x{channels} floats")
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }" % (height, width, channels)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + bytes(data)


def parse_npy(blob: bytes) -> tuple[bytes, tuple[int, ...]]:
    """(raw little-endian float32 bytes, shape) of a C-order float32 .npy file's bytes."""
    if blob[:6] != b"\x93NUMPY" or len(blob) < 10:
        raise BridgeError("the engine's result is not a .npy file")
    major = blob[6]
    size_format, start = ("<H", 10) if major == 1 else ("<I", 12)
    length = struct.unpack(size_format, blob[8:start])[0]
    header = blob[start:start + length].decode("latin1")
    if "'<f4'" not in header or "'fortran_order': False" not in header:
        raise BridgeError("the engine's result is not a float32 C-order array")
    shape = tuple(int(n) for n in header.split("(")[1].split(")")[0].split(",") if n.strip())
    data = blob[start + length:]
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
    if stage == "waiting":
        ahead = event.get("ahead", 0)
        return None, f"Neural Style Transfer: waiting: {ahead} run{'s' if ahead != 1 else ''} ahead"
    texts = {"load": "Neural Style Transfer: loading the engine", "plan": None,
             "save": "Neural Style Transfer: saving", "done": None}
    return None, texts.get(stage)


# --- running the engine ----------------------------------------------------------------------------

def run_child(python: str, argv: list[str], on_event: Callable[[dict], None], environment: dict,
              project: str | None = None) -> tuple[int, str]:
    """Run the engine as a child; returns (exit status, its one-line error or ''). `environment`:
    client.engine_environment(). `project`: the checkout to run, as its working folder (`-m` looks
    there first, whichever checkout the environment was made by)."""
    command = [python, "-m", "stylize_core", *argv, "--stop-on-stdin-eof"]
    # The child stops when its stdin closes, which happens however we die (GIMP kills a
    # cancelled plug-in outright). A preexec_fn (PR_SET_PDEATHSIG) is not safe here: GIMP's
    # Python has threads, and the forked child crashed in it.
    options = {"creationflags": subprocess.CREATE_NO_WINDOW} if sys.platform == "win32" else {}
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=environment, text=True,
                                   cwd=project if project and os.path.isdir(project) else None, **options)
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


def load_engine_module(project: str, name: str):
    """One of the contract's modules (stylize_core/contract/, standard library only): install.py copies
    the contract beside the plug-in, where GIMP's Python imports it as a package."""
    return importlib.import_module(f"stylize_core.contract.{'schedule' if name == 'pyramid' else name}")


def run_engine(config: dict, options, values: dict, content: bytes, style: bytes | Path,
               on_event: Callable[[dict], None], server: str = "", on_connect=None,
               child_fallback: bool = True) -> bytes:
    """The restyled layer (.npy bytes) for the content (.npy bytes) after the style (.npy bytes of a
    layer, or a picture file's path), with the dialog's values; BridgeError says what went wrong.

    With a server address (the dialog's `server`, else the config's) the run happens there, and a
    failure is said in words. Without one, this computer's own warm server runs it (started when
    none answers), and when that cannot, a child process does (unless child_fallback is off: a
    preview is not worth a cold start). on_connect gets each server connection (client.run_on_server).
    """
    client = load_engine_module(config.get("project", ""), "client")
    errors = []

    def watch(event: dict) -> None:
        if event.get("stage") == "error":
            errors.append(event.get("message", ""))
        on_event(event)

    settings = options.engine_settings(values)
    address_text = server or config.get("server", "")
    if address_text:
        try:
            address = client.parse_address(address_text)
        except ValueError as error:
            raise BridgeError(f"{error} (Advanced \u203a Engine)") from None
        try:
            status, result = client.run_on_server(address, [content, style_bytes(style)], settings, watch,
                                                  on_connect=on_connect)
        except client.ServerError as error:
            raise BridgeError(server_error_in_words(client, error, address)) from None
    else:
        status, result = None, None
        if config.get("use_worker", True) and has_python(config):
            status, result = run_on_local_server(client, config, content, style, settings, watch, on_connect)
        if status is None:
            if not has_python(config):
                raise BridgeError(NOT_INSTALLED.format(where=config.get("project") or "the project folder"))
            if not child_fallback:
                raise BridgeError("it needs this computer's engine server, which is turned off or could not "
                                  "start (OK still runs the engine without it)")
            status, result, message = run_in_child(client, config, options, values, content, style, watch)
            if message and not errors:
                errors.append(message)
    if status != 0 or result is None:
        raise BridgeError(in_dialog_terms(errors[-1]) if errors else f"the engine failed (exit status {status})")
    return result


def style_bytes(style: bytes | Path) -> bytes:
    if isinstance(style, bytes):
        return style
    try:
        return Path(style).read_bytes()
    except FileNotFoundError:
        raise BridgeError(f"style image not found: {style}") from None
    except OSError as error:
        raise BridgeError(f"style image cannot be read ({error.strerror or error}): {style}") from None


def run_on_local_server(client, config: dict, content: bytes, style: bytes | Path, settings: dict,
                        on_event: Callable[[dict], None], on_connect=None) -> tuple[int | None, bytes | None]:
    """This computer's warm server, started when none answers; (None, None) when it cannot run it
    (then a child process does, and nothing it did is in the way: no file is shared with it).
    A request the server found wrong (a corrupt style file, say) is not tried again: the error
    goes to on_event, as the child's would."""
    transport = config.get("local_transport", "auto")
    try:
        address = client.local_address(transport)
        if address is None:
            address = client.start_local_server(config["python"], transport, config.get("worker_idle_timeout"),
                                                config.get("project"))
        try:
            return client.run_on_server(address, [content, style_bytes(style)], settings, on_event,
                                        on_connect=on_connect)
        except client.ServerUnreachable:
            address = client.start_local_server(config["python"], transport, config.get("worker_idle_timeout"),
                                                config.get("project"))
            return client.run_on_server(address, [content, style_bytes(style)], settings, on_event,
                                        on_connect=on_connect)
    except client.ServerRefused as error:
        if error.reason != "input":
            return None, None
        on_event({"stage": "error", "message": str(error), "exit_code": 2})
        return 2, None
    except client.ServerError:
        return None, None


def run_in_child(client, config: dict, options, values: dict, content: bytes, style: bytes | Path,
                 on_event: Callable[[dict], None]) -> tuple[int, bytes | None, str]:
    """The engine as a child process, on files in a private folder that is always removed (the
    child removes it too, with --cleanup-dir, should we be killed): (status, result, its error)."""
    work_dir = make_work_dir()
    try:
        content_path = work_dir / "content.npy"
        content_path.write_bytes(content)
        if isinstance(style, bytes):
            style_path = work_dir / "style.npy"
            style_path.write_bytes(style)
        else:
            style_path = Path(style)
        output = work_dir / "result.npy"
        status, message = run_child(config["python"], engine_arguments(options, values, content_path, style_path,
                                                                       output, work_dir), on_event,
                                    client.engine_environment(), config.get("project"))
        return status, output.read_bytes() if status == 0 else None, message
    finally:
        remove_work_dir(work_dir)


def server_error_in_words(client, error, address) -> str:
    """A server's failure as the dialog says it: what happened, and what to do."""
    where = address.describe()
    if isinstance(error, client.ServerUnreachable):
        return (f"Cannot reach the engine server at {where} ({error}). Check the address in Advanced \u203a Engine "
                "and that `stylize serve` runs there. The image is unchanged.")
    if isinstance(error, client.ServerLost):
        return f"The engine server at {where} stopped in the middle of the run. The image is unchanged."
    reason = getattr(error, "reason", "")
    if reason == "token":
        return (f"The engine server at {where} refused the token: copy its address again from the address file "
                "`stylize serve` wrote (~/.local/state/stylize-core/address-PORT on that computer).")
    if reason == "version":
        return f"The engine server at {where} runs another version: {error}."
    if reason == "busy":
        if getattr(error, "ahead", None) is None:  # too many connections, or too many images arriving at once
            return f"The engine server at {where} is busy and takes no more now: try again later."
        return f"The engine server at {where} is busy with {error.ahead} runs ahead and takes no more: try again later."
    return f"The engine server at {where} refused the run: {error}"


def in_dialog_terms(message: str) -> str:
    """The engine's one-line error in the plug-in user's terms: what to reinstall, which knob to turn."""
    if "No module named" in message:  # a venv moved, emptied or made by another checkout
        return f"the engine's environment is incomplete ({message}): run python3 install.py again"
    if "out of memory" in message or "not enough memory" in message:
        return (message.split(": use ")[0] + ". Lower Advanced › Working size, or set Advanced › Device to CPU "
                "(slower, but it has more memory).")
    return message


def describe_time(project: str, values: dict, layer_size: tuple[int, int], on_server: bool = False) -> str:
    """What the run will cost, for the dialog: from this computer's calibration (measured by the engine's
    first run) and the dialog's values (keyed by plug-in argument name)."""
    if on_server:
        return "Time: as fast as the server's device (this computer's speed says nothing of it)"
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
