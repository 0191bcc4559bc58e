"""Progress events of a run, and the two ways the CLI shows them."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Optional, TextIO


@dataclass
class Progress:
    stage: str
    """"load", "plan", "optimize", "save" or "done"."""
    scale: int = 0
    """1-based index of the coarse-to-fine scale, 0 outside the optimisation."""
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
    """For "plan": what the memory model chose, in words."""


ProgressCallback = Callable[[Progress], None]


def json_lines(stream: TextIO = sys.stdout) -> ProgressCallback:
    """One JSON object per line (docs/protocol.md); fields that do not apply are left out."""
    def report(event: Progress) -> None:
        if event.stage == "optimize":
            fields = {k: v for k, v in asdict(event).items() if k != "message"}
        else:
            fields = {"stage": event.stage, **({"message": event.message} if event.message else {})}
        stream.write(json.dumps(fields) + "\n")
        stream.flush()
    return report


def terminal_bar(stream: TextIO = sys.stderr, width: int = 30) -> ProgressCallback:
    """A one-line bar redrawn in place: stage, scale, iteration, loss, time left."""
    def report(event: Progress) -> None:
        if event.stage == "plan":
            stream.write(event.message + "\n")
        if event.stage != "optimize":
            if event.stage == "done":
                stream.write("\n")
            stream.flush()
            return
        filled = int(round(event.fraction * width))
        eta = f" ~{event.eta_s:.0f}s left" if event.eta_s is not None else ""
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {event.fraction * 100:3.0f}% "
                     f"scale {event.scale}/{event.scales} {event.width}x{event.height} "
                     f"it {event.iteration}/{event.total} loss {event.loss:.4f}{eta}   ")
        stream.flush()
    return report
