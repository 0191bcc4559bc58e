"""The plug-in's way to the engine, without GIMP: its config, runs on an engine server (this
computer's own, started on first use, or one elsewhere), progress, errors and the time line in the
dialog's words. The engine runs in the project's virtual environment (docs/protocol.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stylize_core.contract import client, schedule, timing
from stylize_core.contract.errors import StylizeError
from stylize_core.contract.installation import CONFIG_NAME
from stylize_core.contract.settings import BY_NAME

from .widgets import dialog_settings, label_in_words

NOT_INSTALLED = "Neural Style Transfer engine is not installed: run python3 install.py in {where}"
SERVER_SETTING = "Advanced \u203a Engine"


class BridgeError(Exception):
    """A failure with the one line the user should read."""


def read_config(plugin_dir: Path) -> dict:
    """The config install.py wrote beside the plug-in (contract/installation.py says its keys)."""
    try:
        config = json.loads((plugin_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BridgeError(NOT_INSTALLED.format(where="the project folder")) from None
    if not config.get("server") and not has_python(config):
        raise BridgeError(NOT_INSTALLED.format(where=config.get("project") or "the project folder"))
    return config


def has_python(config: dict) -> bool:
    """Whether this computer's engine can be run from here (not so in a sandbox that sees no venv)."""
    return bool(config.get("python")) and os.path.isfile(config["python"])


def describe_progress(event: dict) -> tuple[float | None, str | None]:
    """(fraction 0..1 or None, status text or None) for one progress event."""
    stage = event.get("stage")
    if stage == "optimize":
        frame = f"frame {event['frame']}/{event['frames']}, " if event.get("frame") else ""
        text = (f"Neural Style Transfer: {frame}scale {event['scale']}/{event['scales']}, "
                f"iteration {event['iteration']}/{event['total']}")
        if event.get("eta_s") is not None:
            eta = event["eta_s"]
            text += f", ~{max(1, round(eta))} s left" if eta < 90 else f", ~{timing.describe_seconds(eta)} left"
        return float(event.get("fraction", 0.0)), text
    if stage == "frame":
        return float(event.get("fraction", 0.0)), f"Neural Style Transfer: frame {event['frame']}/{event['frames']} done"
    if stage == "waiting":
        ahead = event.get("ahead", 0)
        return None, f"Neural Style Transfer: waiting: {ahead} run{'s' if ahead != 1 else ''} ahead"
    texts = {"load": "Neural Style Transfer: loading the engine", "save": "Neural Style Transfer: saving"}
    return None, texts.get(stage)


def run_engine(config: dict, settings: dict, content: bytes | list[bytes], styles: list[bytes | Path],
               on_event: Callable[[dict], None], server: str = "", on_connect=None,
               masks: list[bytes | None] | None = None,
               on_picture: Callable[[bytes], None] | None = None) -> bytes | list[bytes]:
    """The restyled layer (.npy bytes) for the content (.npy bytes) after the styles (each the .npy
    bytes of a layer, or a picture file's path), with `settings` (Settings fields,
    widgets.request_settings); BridgeError says what went wrong in the dialog's words. A list of
    contents is a clip's frames, in order: the result is the list of the restyled frames. `masks`:
    one per style, the region it paints (.npy bytes, the content's size), None for the whole layer.
    `on_picture`: the picture on the way (.npy bytes), for a preview that shows itself at once.

    With a server address (the dialog's `server`, else the config's) the run happens there; without
    one, on this computer's own server, started when none answers. on_connect gets each server
    connection (client.run_on_server), so that a preview can be withdrawn."""
    failures = []

    def watch(event: dict) -> None:
        if event.get("stage") == "error":
            failures.append(event)
        on_event(event)

    frames = len(content) if isinstance(content, list) else None
    regions = [mask is not None for mask in masks] if masks and any(mask is not None for mask in masks) else None
    payloads = [*(content if frames else [content]), *(style_bytes(style) for style in styles),
                *(mask for mask in masks or [] if mask is not None)]
    request = Request(payloads, settings, frames, regions, on_picture)
    address_text = server or config.get("server", "")
    if address_text:
        status, result = run_on(parse_server_address(address_text), request, watch, on_connect)
    else:
        status, result = run_on_local_server(config, request, watch, on_connect)
    if status != 0 or result is None or (frames and len(result) != frames):
        if failures:
            failure = failures[-1]
            raise BridgeError(failure_in_words(failure.get("message", ""), failure.get("reason"),
                                               failure.get("option")))
        raise BridgeError(f"the engine failed (exit status {status})")
    return result


def parse_server_address(text: str):
    try:
        return client.parse_address(text)
    except ValueError as error:
        raise BridgeError(f"{error} ({SERVER_SETTING})") from None


@dataclass(frozen=True)
class Request:
    """A run request's parts, as client.run_on_server takes them."""
    payloads: list[bytes]
    settings: dict
    frames: int | None = None
    regions: list[bool] | None = None
    on_picture: Callable[[bytes], None] | None = None

    def send(self, address, on_event: Callable[[dict], None], on_connect=None):
        return client.run_on_server(address, self.payloads, self.settings, on_event, on_connect=on_connect,
                                    frames=self.frames, regions=self.regions, on_picture=self.on_picture)


def run_on(address, request: Request, on_event: Callable[[dict], None], on_connect=None,
           retry_unreachable: Callable[[], object] | None = None):
    """client.run_on_server, its failures in the dialog's words; where the server cannot be reached,
    retry_unreachable (if any) gives the address to try once more."""
    try:
        try:
            return request.send(address, on_event, on_connect)
        except client.ServerUnreachable:
            if retry_unreachable is None:
                raise
            address = retry_unreachable()
            return request.send(address, on_event, on_connect)
    except client.ServerRefused as error:
        if error.reason == "input":  # the request itself: a corrupt style file, say
            raise BridgeError(failure_in_words(str(error), error.reason, getattr(error, "option", None))) from None
        raise BridgeError(server_error_in_words(error, address)) from None
    except client.ServerError as error:
        raise BridgeError(server_error_in_words(error, address)) from None


def run_on_local_server(config: dict, request: Request, on_event: Callable[[dict], None], on_connect=None):
    """The run on this computer's warm server, started when none answers (and once more should it
    be gone by the time the run is sent)."""
    if not has_python(config):
        raise BridgeError(NOT_INSTALLED.format(where=config.get("project") or "the project folder"))
    transport = config.get("local_transport", "auto")

    def start():
        try:
            return client.start_local_server(config["python"], transport, config.get("worker_idle_timeout"),
                                             config.get("project"))
        except client.ServerError as error:
            raise BridgeError(f"The engine server on this computer could not start ({error}): run python3 "
                              f"install.py again in {config.get('project') or 'the project folder'}. "
                              "The image is unchanged.") from None

    return run_on(client.local_address(transport) or start(), request, on_event, on_connect, start)


def style_bytes(style: bytes | Path) -> bytes:
    if isinstance(style, bytes):
        return style
    try:
        return Path(style).read_bytes()
    except FileNotFoundError:
        raise BridgeError(f"style image not found: {style}") from None
    except OSError as error:
        raise BridgeError(f"style image cannot be read ({error.strerror or error}): {style}") from None


def failure_in_words(message: str, reason: str | None, option: str | None) -> str:
    """A failed run's error as the dialog says it: the engine's line, and the knob to turn by the
    error's reason and option, in the dialog's labels."""
    if reason == "memory":
        smaller = label_in_words(option or BY_NAME["max_size"].name)
        return (f"{message}. Lower {smaller}, or set {label_in_words(BY_NAME['device'].name)} to CPU (slower, but "
                "it has more memory).")
    return message


def server_error_in_words(error, address) -> str:
    """A server's failure as the dialog says it: what happened, and what to do."""
    where = address.describe()
    if isinstance(error, client.ServerUnreachable):
        return (f"Cannot reach the engine server at {where} ({error}). Check the address in {SERVER_SETTING} "
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


def describe_time(values: dict, layer_size: tuple[int, int], on_server: bool = False, frames: int = 1) -> str:
    """What the run will cost, for the dialog: from this computer's calibration (measured by the engine's
    first run) and the dialog's values (keyed by argument name); `frames` > 1: an animation's frames."""
    if on_server:
        return "Time: as fast as the server's device (this computer's speed says nothing of it)"
    settings = dialog_settings(values)
    calibration = timing.latest_for(settings.device)
    if calibration is None:
        return "Time: measured on the first run on this computer"
    where = "this CPU" if calibration.device_type == "cpu" else calibration.device_name
    if frames > 1:
        try:
            seconds = timing.predict_clip(layer_size, settings, calibration, frames)
        except StylizeError as error:
            return f"Time: unknown ({error})"
        return f"About {timing.describe_seconds(seconds)} for the {frames} frames on {where}"
    try:
        working, full = timing.predict_by_resolution(layer_size, settings, calibration)
    except StylizeError as error:  # a layer too small, say: the run says so too
        return f"Time: unknown ({error})"
    if full is None:
        return f"About {timing.describe_seconds(working)} on {where}"
    text = (f"About {timing.describe_seconds(working)} at the working size, "
            f"{timing.describe_seconds(full)} at full size, on {where}")
    if settings.resolution == "auto":
        chosen = "full size" if schedule.finishes_at_full_size("auto", full) else "the working size"
        text += f" (Automatic: {chosen})"
    return text


def chosen_server(engine: str, address: str) -> str:
    """The server address the dialog's Advanced › Engine names ("" for this computer); BridgeError when
    it is set to a server but no address is given."""
    if engine != "server":
        return ""
    if not address.strip():
        raise BridgeError(f"{SERVER_SETTING} is set to a server, but no server address is given: paste the address "
                          "from the file `stylize serve` wrote (its address-PORT file), or choose This computer.")
    return address.strip()
