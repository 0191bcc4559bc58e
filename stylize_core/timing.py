"""How long a run will take, before it starts (standard library only: the plug-in's dialog uses it).

An iteration's time is close to linear in the pixels it sees: a fixed part (the
optimiser, kernel launches) plus a part per megapixel (the VGG passes). Both are
measured once per device by calibrate.py and kept in the user's cache folder,
keyed by the device and the torch version, so a new GPU or a new torch measures again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FORWARD_SHARE = 0.35
"""A forward pass alone (the style and content targets of a scale) costs about this share of an iteration."""


@dataclass(frozen=True)
class Calibration:
    key: str
    """The device, its name, the precision and the torch version it was measured with."""
    device_type: str
    device_name: str
    seconds_per_iteration: float
    """The fixed part of one iteration."""
    seconds_per_megapixel: float
    """One iteration's time per megapixel of image (or of tile crops, when tiled)."""

    def iteration_seconds(self, pixels: float) -> float:
        return self.seconds_per_iteration + self.seconds_per_megapixel * pixels / 1e6


@dataclass(frozen=True)
class ScaleWork:
    """What one scale computes: `iterations` passes over `pixels` (tile margins included)."""
    pixels: float
    iterations: int


def predict_seconds(scales: list[ScaleWork], calibration: Calibration, n_styles: int = 1) -> float:
    """Seconds of the optimisation: every scale's iterations, and the targets' forward passes."""
    seconds = 0.0
    for scale in scales:
        targets = (n_styles + 1) * FORWARD_SHARE * calibration.seconds_per_megapixel * scale.pixels / 1e6
        seconds += scale.iterations * calibration.iteration_seconds(scale.pixels) + targets
    return seconds


def describe_seconds(seconds: float) -> str:
    """"about 40 s", "about 3 min", "about 1.5 h": as precise as a prediction deserves."""
    if seconds < 90:
        return f"about {max(1, round(seconds / 5) * 5 if seconds > 10 else round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def cache_file() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stylize-core" / "calibration.json"


def read_calibrations(path: Path | None = None) -> list[Calibration]:
    """Every calibration on file, the most recent last; none when the file is missing or damaged."""
    try:
        entries = json.loads((path or cache_file()).read_text(encoding="utf-8"))
        return [Calibration(**entry) for entry in entries]
    except (OSError, ValueError, TypeError):
        return []


def remember(calibration: Calibration, path: Path | None = None) -> None:
    """Keep `calibration` as the latest for its key (atomically: readers never see half a file)."""
    path = path or cache_file()
    entries = [c for c in read_calibrations(path) if c.key != calibration.key] + [calibration]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=".calibration-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump([asdict(c) for c in entries], stream, indent=1)
        os.replace(temp_name, path)
    except OSError:
        pass  # a read-only cache: the next run measures again, nothing worse


def latest_for(device_choice: str, path: Path | None = None) -> Calibration | None:
    """The latest calibration that a run with this device choice ("auto", "gpu", "cpu", ...) would use."""
    # In the order the engine picks devices (device.py): a GPU where there is one.
    wanted = {"auto": ("cuda", "mps", "cpu"), "gpu": ("cuda", "mps")}.get(device_choice, (device_choice,))
    calibrations = read_calibrations(path)
    for device_type in wanted:
        matching = [c for c in calibrations if c.device_type == device_type]
        if matching:
            return matching[-1]
    return None
