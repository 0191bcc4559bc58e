"""Progress events of a run: one Reporter makes them all; json_lines and terminal_bar show them.

A run reports, in order: load, plan, optimize (once per iteration), then save and
done (the CLI), or error; a run queued on a server first hears "waiting" while others
run. docs/protocol.md shows them as JSON lines.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Callable, Optional, TextIO


@dataclass
class Progress:
    stage: str
    """"waiting", "load", "plan", "optimize", "frame" (a clip's frame done), "save", "done" or "error"."""
    scale: int = 0
    """1-based index of the coarse-to-fine scale."""
    scales: int = 0
    width: int = 0
    height: int = 0
    iteration: int = 0
    total: int = 0
    """Iterations planned at this scale (a scale may stop early once its loss stalls)."""
    loss: Optional[float] = None
    fraction: float = 0.0
    """Progress of the whole run, 0..1, weighted by each scale's cost."""
    eta_s: Optional[float] = None
    message: Optional[str] = None
    """"plan": what the memory model chose, in words; "error": what went wrong and what to do."""
    output: Optional[str] = None
    """"save", "done": the file written."""
    seconds: Optional[float] = None
    """"done": the run's wall time."""
    exit_code: Optional[int] = None
    """"error": the CLI's exit status."""
    predicted_s: Optional[float] = None
    """"plan": the predicted seconds of the optimisation, from this device's calibration (timing.py)."""
    ahead: int = 0
    """"waiting": runs a server does before this one."""
    frame: int = 0
    """A clip's: "frame", the frames done; "optimize", the 1-based frame being optimised."""
    frames: int = 0
    """A clip's frame count (0 where it is not known, and in a still's events)."""
    workers: int = 0
    """"frame", a run on a Ray cluster: the workers it runs on (0, and not sent, for a run here)."""

    def fields(self) -> dict:
        """The fields that belong to this stage, as sent in JSON."""
        fields = {"stage": self.stage, **{name: getattr(self, name) for name in STAGE_FIELDS[self.stage]}}
        if self.stage == "optimize" and self.frame:
            fields.update(frame=self.frame, frames=self.frames)
        if self.stage == "frame" and self.workers:
            fields.update(workers=self.workers)
        return fields


STAGE_FIELDS = {
    "waiting": ("ahead",),
    "load": (),
    "plan": ("message", "predicted_s"),
    "optimize": ("scale", "scales", "width", "height", "iteration", "total", "loss", "fraction", "eta_s"),
    "frame": ("frame", "frames", "fraction", "eta_s"),
    "save": ("output",),
    "done": ("output", "seconds"),
    "error": ("message", "exit_code"),
}

ProgressCallback = Callable[[Progress], None]


class Reporter:
    """The one place where progress events are made, for the engine, the CLI and the server."""

    def __init__(self, callback: ProgressCallback | None):
        self.callback = callback or (lambda event: None)

    def waiting(self, ahead: int) -> None:
        self.callback(Progress("waiting", ahead=ahead))

    def load(self) -> None:
        self.callback(Progress("load"))

    def plan(self, message: str, predicted_s: float | None = None) -> None:
        self.callback(Progress("plan", message=message,
                               predicted_s=None if predicted_s is None else round(predicted_s, 1)))

    def optimize(self, scale: int, scales: int, width: int, height: int, iteration: int, total: int,
                 loss: float, fraction: float, eta_s: float | None) -> None:
        self.callback(Progress("optimize", scale, scales, width, height, iteration, total, loss, fraction, eta_s))

    def frame(self, frame: int, frames: int, fraction: float, eta_s: float | None, workers: int = 0) -> None:
        """A clip's frame is done (and written): `frame` of `frames` (0 where not known). On a cluster
        (`workers` > 0): the frames done by all its workers together, or a batch's pictures."""
        self.callback(Progress("frame", frame=frame, frames=frames, fraction=fraction, eta_s=eta_s,
                               workers=workers))

    def save(self, output: str) -> None:
        self.callback(Progress("save", output=output))

    def done(self, seconds: float, output: str | None = None) -> None:
        self.callback(Progress("done", output=output, seconds=round(seconds, 2)))

    def error(self, message: str, exit_code: int) -> None:
        self.callback(Progress("error", message=message, exit_code=exit_code))


def json_lines(stream: TextIO = sys.stdout) -> ProgressCallback:
    """One JSON object per line (docs/protocol.md)."""
    def show(event: Progress) -> None:
        stream.write(json.dumps(event.fields()) + "\n")
        stream.flush()
    return show


def in_words(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"


def terminal_bar(stream: TextIO = sys.stderr, width: int = 30) -> ProgressCallback:
    """A one-line bar redrawn in place: scale, iteration, loss, time left; then what was written."""
    def show(event: Progress) -> None:
        if event.stage == "waiting":
            stream.write(f"waiting: {event.ahead} run{'s' if event.ahead != 1 else ''} ahead\n")
        elif event.stage == "plan":
            stream.write(event.message + "\n")
        elif event.stage == "optimize":
            filled = int(round(event.fraction * width))
            eta = f" ~{in_words(event.eta_s)} left" if event.eta_s is not None else ""
            frame = f"frame {event.frame}/{event.frames or '?'} " if event.frame else ""
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {event.fraction * 100:3.0f}% {frame}"
                         f"scale {event.scale}/{event.scales} {event.width}x{event.height} "
                         f"it {event.iteration}/{event.total} loss {event.loss:.4f}{eta}   ")
        elif event.stage == "frame":
            eta = f", ~{in_words(event.eta_s)} left" if event.eta_s is not None else ""
            where = f" on {event.workers} worker{'s' if event.workers != 1 else ''}" if event.workers else ""
            done = "" if where else " done"
            stream.write(f"\rframe {event.frame}/{event.frames or '?'}{done}{where}{eta}".ljust(width + 50))
        elif event.stage == "save":
            stream.write("\n")
        elif event.stage == "done" and event.output:
            stream.write(f"wrote {event.output} in {event.seconds:.1f} s\n")
        stream.flush()
    return show
