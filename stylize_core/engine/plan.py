"""The run plan, made once before any pixel is touched: device, precision, the output size, the
scales (contract/schedule.py) with their iterations and how each runs (whole or tiled) within a memory
budget (memory.py: the optimisation, and each style image's pass at its size at that scale), the
predicted time (timing.py), and what to do when the device runs out of memory anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ..contract.errors import OutOfMemoryError
from .memory import BUDGET_FRACTION, MIN_LBFGS_HISTORY, MIN_TILE, TILE_MARGIN, ScalePlan, free_bytes, plan_scale
from .optimize import LBFGS_HISTORY
from ..contract.schedule import (MIN_SIDE, Step, composition_steps, detail_steps, finishes_at_full_size, output_size,
                                 preview_steps, style_size)
from ..contract.settings import Settings
from ..contract.timing import Calibration, ScaleWork, describe_seconds, predict_seconds
from .tiling import axis_cuts

SHRINK_FACTOR = 0.75
"""When nothing fits, not even in tiles, the working size shrinks by this factor and is planned again."""


@dataclass(frozen=True)
class Scale:
    """One step of coarse to fine: its size, its iterations, and how it runs in memory."""
    width: int
    height: int
    iterations: int
    memory: ScalePlan
    detail: bool = False
    """Past the working size: only the painting's brushwork is added (engine.style_grams)."""
    style_sizes: tuple[tuple[int, int], ...] = ()
    """Each style image's (width, height) here: the stroke size sets it (schedule.style_size)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def computed_pixels(self) -> int:
        """Pixels one iteration passes through VGG: tiles see their margins too (on the grid of a typical
        iteration, whose random offset is up to half a tile: a quarter)."""
        tile = self.memory.tile
        if tile is None:
            return self.pixels
        side = lambda length: length + 2 * TILE_MARGIN * (len(axis_cuts(length, tile, tile // 4)) - 2)
        return side(self.width) * side(self.height)


@dataclass(frozen=True)
class RunPlan:
    device: torch.device
    precision: str
    """"fp32", "bf16" or "fp16": the arithmetic of the VGG passes."""
    output_size: tuple[int, int]
    scales: tuple[Scale, ...]
    """Coarsest first: the composition scales up to the working size, then the detail scales, if any."""
    working_size: tuple[int, int]
    budget: int
    """Bytes the plan may use."""
    predicted_seconds: float

    def describe(self) -> str:
        width, height = self.working_size
        last = self.scales[-1]
        tile = f"in {last.memory.tile} px tiles" if last.memory.tile else "whole"
        finish = (f"detail up to {last.width}x{last.height}, {tile}" if (last.width, last.height) != self.working_size
                  else tile)
        peak = max(scale.memory.estimate for scale in self.scales)
        return (f"memory: about {peak / 2**30:.2f} GB at most ({self.budget / 2**30:.1f} GB usable on "
                f"{self.device.type}); working size {width}x{height}, {finish}; "
                f"about {describe_seconds(self.predicted_seconds)}")


def make_plan(content_size: tuple[int, int], settings: Settings, device: torch.device, precision: str,
              calibration: Calibration, style_sizes: Sequence[tuple[int, int]]) -> RunPlan:
    """The plan for restyling a picture of content_size after style images of style_sizes (their own
    (width, height)); raises OutOfMemoryError when nothing fits."""
    budget = memory_budget(device, settings)
    n_styles = len(style_sizes)
    if settings.resolution == "preview":
        return preview_plan(content_size, settings, device, precision, calibration, style_sizes, budget)
    out_size = output_size(content_size, settings.size)
    max_size = settings.max_size
    while True:
        steps = composition_steps(out_size, max_size, settings.scales, settings.iterations, settings.quality)
        composition = plan_scales(steps, device, settings, precision, budget, style_sizes)
        if composition is not None:
            break
        working_side = max(steps[-1].width, steps[-1].height)
        if working_side <= 2 * MIN_SIDE:
            raise OutOfMemoryError(f"not enough memory on {device.type} even for a tiny working size "
                                   f"({budget / 2**30:.1f} GB usable)")
        # Nothing fits, not even in tiles: optimise smaller and upscale the result.
        max_size = int(working_side * SHRINK_FACTOR)
    working_size = (steps[-1].width, steps[-1].height)
    working = RunPlan(device, precision, out_size, composition, working_size, budget,
                      predicted(composition, calibration, n_styles))
    details = detail_steps(working_size, out_size, settings.iterations, settings.quality)
    if settings.resolution == "working" or not details:
        return working
    detail = plan_scales(details, device, settings, precision, budget, style_sizes, stop_at_first_misfit=True)
    full = replace(working, scales=composition + detail,
                   predicted_seconds=predicted(composition + detail, calibration, n_styles))
    return full if finishes_at_full_size(settings.resolution, full.predicted_seconds) else working


def preview_plan(content_size, settings: Settings, device: torch.device, precision: str, calibration: Calibration,
                 style_sizes: Sequence[tuple[int, int]], budget: int) -> RunPlan:
    """The preview: at most PREVIEW_SIDE on the long side, its own few iterations at two scales."""
    steps = preview_steps(content_size)
    size = (steps[-1].width, steps[-1].height)  # the preview's: its last scale is its output
    scales = plan_scales(steps, device, settings, precision, budget, style_sizes)
    if scales is None:
        raise OutOfMemoryError(f"not enough memory on {device.type} even for a preview "
                               f"({budget / 2**30:.1f} GB usable)")
    return RunPlan(device, precision, size, scales, size, budget, predicted(scales, calibration, len(style_sizes)))


def predicted(scales: tuple[Scale, ...], calibration: Calibration, n_styles: int) -> float:
    return predict_seconds([ScaleWork(scale.computed_pixels, scale.iterations, scale.detail) for scale in scales],
                           calibration, n_styles)


def memory_budget(device: torch.device, settings: Settings) -> int:
    if settings.memory_limit_mb is not None:
        return settings.memory_limit_mb * 2**20
    return int(free_bytes(device) * BUDGET_FRACTION)


def plan_scales(steps: Sequence[Step], device: torch.device, settings: Settings, precision: str, budget: int,
                style_sizes: Sequence[tuple[int, int]], stop_at_first_misfit: bool = False) -> tuple[Scale, ...] | None:
    """How each scale runs; None when one does not fit, or (stop_at_first_misfit) the scales before it."""
    scales = []
    for step in steps:
        width, height, iterations, detail = step.width, step.height, step.iterations, step.detail
        forced = settings.tile_size if settings.tile_size and max(width, height) > settings.tile_size else None
        # L-BFGS stores one pair of image-sized vectors per iteration, up to its history.
        history = max(1, min(LBFGS_HISTORY, iterations))
        styles = tuple(style_size(native, (width, height), settings.stroke_size(index), detail)
                       for index, native in enumerate(style_sizes))
        memory = plan_scale(width, height, device.type, settings.optimizer, history, precision, budget, forced,
                            styles)
        if memory is None:
            return tuple(scales) if stop_at_first_misfit else None
        scales.append(Scale(width, height, iterations, memory, detail, styles))
    return tuple(scales)


def after_out_of_memory(scale: Scale, device: torch.device) -> Scale:
    """The same scale in tiles half the size (and the shortest L-BFGS history), after the device ran out
    of memory: the estimate was off. Raises OutOfMemoryError when the tiles would get too small."""
    smaller = (scale.memory.tile or max(scale.width, scale.height)) // 2
    if smaller < MIN_TILE:
        raise OutOfMemoryError(
            f"out of memory on {device.type} at {scale.width}x{scale.height}, even in {MIN_TILE} px tiles")
    return replace(scale, memory=ScalePlan(smaller, MIN_LBFGS_HISTORY, scale.memory.estimate))
