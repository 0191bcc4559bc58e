"""How long a run will take, before it starts (standard library only: the plug-in's dialog uses it).

One iteration's time is measured once per device by calibrate.py at a few sizes, for each of the two
kinds of iteration a run has: a composition scale's (every style layer, relu1_1 to relu5_1) and a
detail scale's (relu1_1 and relu2_1, the content at relu4_2), and kept in the user's cache folder,
keyed by the device and the torch version, so a new GPU or a new torch measures again. Between the
sizes measured the time is interpolated, not fitted with a line: on a CPU the cost per pixel first
falls as fixed costs spread, then rises as the activations outgrow the caches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .schedule import composition_steps, detail_steps, finishes_at_full_size, frame_steps

TARGET_PASS_SHARE = 0.3
"""A scale's targets, one forward pass for the content and one per style, each cost about this share of
an iteration; measured on the detail scales of a 2560x1600 run (0.25-0.35 a pass)."""
FIRST_ITERATION_EXTRA = 0.5
"""A scale's first iteration costs about this much of an iteration more than the others: its buffers
are new (measured 0.2-0.7 on the same run's detail scales)."""

Points = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Calibration:
    key: str
    """The device, its name, the precision and the torch version it was measured with."""
    device_type: str
    device_name: str
    composition: Points
    """(megapixels, seconds) of one composition iteration at each size measured, smallest first."""
    detail: Points
    """The same for a detail iteration."""

    def __post_init__(self):
        # Read back from JSON, the points are lists.
        for name in ("composition", "detail"):
            object.__setattr__(self, name, tuple((float(mp), float(s)) for mp, s in getattr(self, name)))
        if not self.composition or not self.detail:
            raise ValueError("a calibration needs at least one measured size of each kind")

    def iteration_seconds(self, pixels: float, detail: bool = False) -> float:
        return seconds_at(self.detail if detail else self.composition, pixels / 1e6)

    def scaled(self, factor: float) -> "Calibration":
        """This calibration for a device `factor` times as slow."""
        times = lambda points: tuple((mp, s * factor) for mp, s in points)
        return replace(self, composition=times(self.composition), detail=times(self.detail))


def seconds_at(points: Points, megapixels: float) -> float:
    """Linear between the sizes measured; below the smallest along the first segment (where fixed costs
    dominate); beyond the largest at its cost per megapixel, which on a CPU does not fall with size."""
    largest, seconds = points[-1]
    if len(points) == 1 or megapixels >= largest:
        return seconds * megapixels / largest
    (x0, y0), (x1, y1) = next((a, b) for a, b in zip(points, points[1:]) if megapixels <= b[0])
    return max(0.0, y0 + (y1 - y0) * (megapixels - x0) / (x1 - x0))


@dataclass(frozen=True)
class ScaleWork:
    """What one scale computes: `iterations` passes over `pixels` (tile margins included)."""
    pixels: float
    iterations: int
    detail: bool = False


def predict_seconds(scales: list[ScaleWork], calibration: Calibration, n_styles: int = 1) -> float:
    """Seconds of the optimisation: every scale's targets and iterations."""
    overhead = (n_styles + 1) * TARGET_PASS_SHARE + FIRST_ITERATION_EXTRA
    seconds = 0.0
    for scale in scales:
        seconds += (scale.iterations + overhead) * calibration.iteration_seconds(scale.pixels, scale.detail)
    return seconds


def predict_by_resolution(content_size: tuple[int, int], settings, calibration: Calibration,
                          n_styles: int = 1) -> tuple[float, float | None]:
    """(seconds at the working size, seconds at full size or None when the layer is no bigger than the
    working size) for `settings` (a Settings). The scales are the schedule's, as the engine's plan takes
    them; tiles and a shrunken working size are left out: the plan, which knows the free memory, says
    it exactly before it runs."""
    composition = composition_steps(content_size, settings.max_size, settings.scales, settings.iterations,
                                    settings.quality)
    work = [ScaleWork(step.width * step.height, step.iterations) for step in composition]
    working = predict_seconds(work, calibration, n_styles)
    details = detail_steps((composition[-1].width, composition[-1].height), content_size, settings.iterations,
                           settings.quality)
    if not details:
        return working, None
    detail = [ScaleWork(step.width * step.height, step.iterations, detail=True) for step in details]
    return working, predict_seconds(work + detail, calibration, n_styles)


def describe_seconds(seconds: float) -> str:
    """"40 s", "3 min", "1.5 h": as precise as a prediction deserves."""
    if seconds < 10:
        return f"{max(1, round(seconds))} s"
    if seconds < 90:
        return f"{round(seconds / 5) * 5} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def cache_folder() -> Path:
    """This user's cache folder for stylize-core (contract/paths.py, one lookup per platform)."""
    from . import paths
    return paths.cache_folder()


def cache_file() -> Path:
    return cache_folder() / "calibration.json"


def precision_file() -> Path:
    return cache_folder() / "precision.json"


def read_json(path: Path):
    """The file's JSON, or None when it is missing or damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data) -> None:
    """Atomically (readers never see half a file, contract/paths.py); a read-only cache is measured
    again next time."""
    from .paths import write_atomically
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(data, indent=1))
    except OSError:
        pass


def read_calibrations(path: Path | None = None) -> list[Calibration]:
    """Every calibration on file, the most recent last; none when the file is missing or damaged."""
    try:
        return [Calibration(**entry) for entry in read_json(path or cache_file())]
    except (TypeError, ValueError):  # an older format, measured again
        return []


def remember(calibration: Calibration, path: Path | None = None) -> None:
    """Keep `calibration` as the latest for its key."""
    path = path or cache_file()
    entries = [c for c in read_calibrations(path) if c.key != calibration.key] + [calibration]
    write_json(path, [asdict(c) for c in entries])


def remembered_precision(key: str, path: Path | None = None) -> str | None:
    """The precision chosen for this device (calibrate.precision_for), if it was measured."""
    choices = read_json(path or precision_file())
    return choices.get(key) if isinstance(choices, dict) else None


def remember_precision(key: str, precision: str, path: Path | None = None) -> None:
    path = path or precision_file()
    choices = read_json(path)
    write_json(path, {**(choices if isinstance(choices, dict) else {}), key: precision})


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


def predict_clip(content_size: tuple[int, int], settings, calibration: Calibration, frames: int,
                 n_styles: int = 1) -> float:
    """Seconds for a clip of `frames` frames of content_size: the first as a still (at the size the
    Automatic rule would finish at), each other with schedule.frame_steps, as the engine's frames.py
    runs them."""
    working, full = predict_by_resolution(content_size, settings, calibration, n_styles)
    at_full = full is not None and finishes_at_full_size(settings.resolution, full)
    steps = composition_steps(content_size, settings.max_size, settings.scales, settings.iterations,
                              settings.quality)
    if at_full:
        last = steps[-1]
        steps += detail_steps((last.width, last.height), content_size, settings.iterations, settings.quality)
    following = [ScaleWork(step.width * step.height, step.iterations, step.detail)
                 for step in frame_steps(steps, settings.iterations, settings.quality)]
    first = full if at_full else working
    return first + (frames - 1) * predict_seconds(following, calibration, n_styles)
