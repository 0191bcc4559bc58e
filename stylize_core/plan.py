"""The run plan, made once before any pixel is touched: device, precision, output and working
sizes, the scales with their iterations and how each runs (whole or tiled), within a memory
budget, and what to do when the device runs out of memory anyway.

The memory figures come from the model in memory.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .device import pick_device
from .errors import InputError, OutOfMemoryError
from .memory import BUDGET_FRACTION, MIN_LBFGS_HISTORY, MIN_TILE, ScalePlan, free_bytes, plan_scale
from .optimize import LBFGS_HISTORY
from .options import MIN_SIDE
from .settings import Settings

MIN_COARSE_SIDE = 64
"""A coarser scale than this (short side) has too few pixels for relu5_1 to mean anything."""
SHRINK_FACTOR = 0.75
"""When nothing fits, not even in tiles, the working size shrinks by this factor and is planned again."""


@dataclass(frozen=True)
class Scale:
    """One step of coarse to fine: its size, its iterations, and how it runs in memory."""
    width: int
    height: int
    iterations: int
    memory: ScalePlan

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class RunPlan:
    device: torch.device
    precision: str
    """"fp32", "bf16" or "fp16": the arithmetic of the VGG passes."""
    output_size: tuple[int, int]
    scales: tuple[Scale, ...]
    """Coarsest first; the last is at the working size."""
    budget: int
    """Bytes the plan may use."""

    @property
    def working_size(self) -> tuple[int, int]:
        return self.scales[-1].width, self.scales[-1].height

    def describe(self) -> str:
        width, height = self.working_size
        tile = self.scales[-1].memory.tile
        how = f"in {tile} px tiles" if tile else "whole"
        peak = max(scale.memory.estimate for scale in self.scales)
        return (f"memory: about {peak / 2**30:.2f} GB at most ({self.budget / 2**30:.1f} GB usable on "
                f"{self.device.type}); working size {width}x{height}, {how}")


def make_plan(content_size: tuple[int, int], settings: Settings) -> RunPlan:
    """The plan for restyling a picture of content_size; raises OutOfMemoryError when nothing fits."""
    device = pick_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    out_size = output_size(content_size, settings)
    budget = memory_budget(device, settings)
    max_size = settings.max_size
    while True:
        sizes = scale_sizes(out_size, max_size, settings.scales)
        scales = plan_scales(sizes, settings.schedule(len(sizes)), device, settings, precision, budget)
        if scales is not None:
            return RunPlan(device, precision, out_size, scales, budget)
        if max(sizes[-1]) <= 2 * MIN_SIDE:
            raise OutOfMemoryError(f"not enough memory on {device.type} even for a tiny working size "
                                   f"({budget / 2**30:.1f} GB usable)")
        # Nothing fits, not even in tiles: optimise smaller and upscale the result.
        max_size = int(max(sizes[-1]) * SHRINK_FACTOR)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def output_size(content_size: tuple[int, int], settings: Settings) -> tuple[int, int]:
    width, height = content_size
    if settings.size is None:
        return width, height
    factor = settings.size / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def scale_sizes(out_size: tuple[int, int], max_size: int, n_scales: int) -> list[tuple[int, int]]:
    """(width, height) of each scale, coarsest first; the last is the working size."""
    width, height = out_size
    factor = min(1.0, max_size / max(width, height))
    work = (max(1, round(width * factor)), max(1, round(height * factor)))
    if min(work) < MIN_SIDE:
        raise InputError(f"the image is too small to stylize at {work[0]}x{work[1]}: VGG19 needs at "
                         f"least {MIN_SIDE} pixels on each side (use a larger size or image)")
    sizes = [work]
    while len(sizes) < n_scales and min(sizes[0]) / 2 >= MIN_COARSE_SIDE:
        sizes.insert(0, (round(sizes[0][0] / 2), round(sizes[0][1] / 2)))
    return sizes


def size_with_pixels(size: tuple[int, int], pixels: float) -> tuple[int, int]:
    """size's aspect ratio scaled to about `pixels` pixels, at least MIN_SIDE on each side."""
    width, height = size
    factor = math.sqrt(pixels / (width * height))
    factor = max(factor, MIN_SIDE / min(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def memory_budget(device: torch.device, settings: Settings) -> int:
    if settings.memory_limit_mb is not None:
        return settings.memory_limit_mb * 2**20
    return int(free_bytes(device) * BUDGET_FRACTION)


def plan_scales(sizes, schedule, device: torch.device, settings: Settings, precision: str,
                budget: int) -> tuple[Scale, ...] | None:
    scales = []
    for (width, height), iterations in zip(sizes, schedule):
        forced = settings.tile_size if settings.tile_size and max(width, height) > settings.tile_size else None
        # L-BFGS stores one pair of image-sized vectors per iteration, up to its history.
        history = max(1, min(LBFGS_HISTORY, iterations))
        memory = plan_scale(width, height, device.type, settings.optimizer, history, precision, budget, forced)
        if memory is None:
            return None
        scales.append(Scale(width, height, iterations, memory))
    return tuple(scales)


def after_out_of_memory(scale: Scale, device: torch.device) -> Scale:
    """The same scale in tiles half the size (and the shortest L-BFGS history), after the device ran out
    of memory: the estimate was off. Raises OutOfMemoryError when the tiles would get too small."""
    smaller = (scale.memory.tile or max(scale.width, scale.height)) // 2
    if smaller < MIN_TILE:
        raise OutOfMemoryError(
            f"out of memory on {device.type} at {scale.width}x{scale.height}, even in {MIN_TILE} px tiles: "
            "use a smaller max size" + (" or device cpu" if device.type != "cpu" else ""))
    return replace(scale, memory=ScalePlan(smaller, MIN_LBFGS_HISTORY, scale.memory.estimate))
