"""The sizes and iterations of coarse to fine, in plain arithmetic: the engine's plan (engine/plan.py)
and the time model (timing.py, which the plug-in's dialog uses to say how long a run will take) both
take them from here.

1. Composition: from a coarse scale up to the working size (the output's long side
   capped by max_size), each scale twice the one before; most iterations go here.
2. Detail (resolution "full"): on from the working size up to the output's own size in
   steps of at most DETAIL_STEP, with few iterations each: the coarse scales already
   placed the composition, these only paint the strokes at the pixel scale of the layer.
3. Preview (resolution "preview"): the first two composition scales of a run at the default
   working size, with few iterations: what the dialog shows while the painter turns the knobs.

Resolution "auto" finishes at full size where that is predicted to take at most AUTO_FULL_SECONDS
(`finishes_at_full_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence, TypeVar

from .errors import InputError

MIN_SIDE = 32
"""VGG19 pools five times: fewer pixels leave relu5_1 without a spatial extent."""
MAX_SIDE = 16384
"""Largest output side: beyond it even the memory plan's smallest tiles take too long."""
AUTO_FULL_SECONDS = 60.0
"""Resolution "auto" paints up to the full size when that is predicted to take at most this long."""

QUALITY_ITERATIONS: dict[str, tuple[int, ...]] = {
    "fast": (80, 40, 12),
    "balanced": (150, 80, 25),
    "best": (300, 200, 100),
}
"""Iterations per scale, coarsest first, for each `quality`. Coarse scales are cheap (a
quarter of the pixels per halving), so they get most of the iterations; the finest scale
only refines detail the coarse ones placed. Measured in benchmarks/quality.py."""

MIN_COARSE_SIDE = 64
"""A coarser scale than this (short side) has too few pixels for relu5_1 to mean anything."""
DETAIL_STEP = 2.0
"""Each detail scale is at most this much larger (per side) than the one before."""
DETAIL_ITERATIONS: dict[str, tuple[int, ...]] = {
    "fast": (8, 4, 2),
    "balanced": (16, 8, 1),
    "best": (24, 12, 2),
}
"""Iterations of the detail scales, the first (nearest the working size) first; further scales take
the last number. The intermediate scales paint the strokes, the last one (at the layer's own size, the
dearest) only sharpens them; it starts from the curvature of the scale before (optimize.Curvature), so
one iteration there is enough. Chosen with benchmarks/full_resolution.py (docs/measurements.md)."""


PREVIEW_SIDE = 256
"""The preview's long side: the scale a full run at the default working size (512) passes through."""
PREVIEW_ITERATIONS = (50, 15)
"""Iterations of the preview's two scales, coarsest first: the fewest whose style and content scores stay
within 13 % of the full run's shrunk to the preview's size (benchmarks/preview.py; docs/measurements.md)."""


def preview_size(content_size: tuple[int, int]) -> tuple[int, int]:
    """The preview's (width, height): the content's, with a long side of at most PREVIEW_SIDE."""
    return output_size(content_size, min(PREVIEW_SIDE, max(content_size)))


def output_size(content_size: tuple[int, int], size: int | None) -> tuple[int, int]:
    """The output's (width, height): the content's, or its aspect ratio with a long side of `size`."""
    width, height = content_size
    if size is None:
        return width, height
    factor = size / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def scale_sizes(out_size: tuple[int, int], max_size: int, n_scales: int) -> list[tuple[int, int]]:
    """(width, height) of each composition scale, coarsest first; the last is the working size."""
    width, height = out_size
    factor = min(1.0, max_size / max(width, height))
    work = (max(1, round(width * factor)), max(1, round(height * factor)))
    if min(work) < MIN_SIDE:
        raise InputError(f"the image is too small to stylize at {work[0]}x{work[1]}: VGG19 needs at "
                         f"least {MIN_SIDE} pixels on each side (use a larger size or image)", "size")
    sizes = [work]
    while len(sizes) < n_scales and min(sizes[0]) / 2 >= MIN_COARSE_SIDE:
        sizes.insert(0, (round(sizes[0][0] / 2), round(sizes[0][1] / 2)))
    return sizes


def detail_sizes(working: tuple[int, int], out_size: tuple[int, int]) -> list[tuple[int, int]]:
    """The detail scales from just above the working size up to out_size, in even steps."""
    ratio = max(out_size) / max(working)
    if ratio <= 1:
        return []
    steps = math.ceil(math.log(ratio) / math.log(DETAIL_STEP) - 1e-9)
    sizes = []
    for step in range(1, steps + 1):
        factor = ratio ** (step / steps)
        sizes.append((round(working[0] * factor), round(working[1] * factor)))
    sizes[-1] = out_size
    return sizes


def composition_iterations(n_scales: int, iterations: int, quality: str) -> list[int]:
    """Iterations for each of n_scales composition scales, coarsest first (`iterations` 0: the quality's)."""
    if iterations:
        return [iterations] * n_scales
    per_scale = QUALITY_ITERATIONS[quality]
    if n_scales <= len(per_scale):
        return list(per_scale[-n_scales:])
    return [per_scale[0]] * (n_scales - len(per_scale)) + list(per_scale)


FRAME_ITERATION_SHARE = 0.6
"""A clip's frames after the first run at the working size only, with this share of the finest
composition scale's iterations: they start from the frame before, moved along the motion, near their
answer (benchmarks/video.py)."""


def frame_iterations(iterations: int, quality: str) -> int:
    """Iterations at the working size for a clip's frame after the first (`iterations` 0: the quality's)."""
    return max(1, round((iterations or QUALITY_ITERATIONS[quality][-1]) * FRAME_ITERATION_SHARE))


StepLike = TypeVar("StepLike")  # a Step, or the engine's plan.Scale: a dataclass with iterations and detail


def frame_steps(first_frame: Sequence[StepLike], iterations: int, quality: str) -> list[StepLike]:
    """The scales of a clip's frame after the first, from the first frame's: the working size (its
    finest composition scale) with frame_iterations, then its detail scales as they are."""
    working = max(index for index, step in enumerate(first_frame) if not step.detail)
    return [replace(first_frame[working], iterations=frame_iterations(iterations, quality)),
            *first_frame[working + 1:]]


def detail_iterations(n_scales: int, iterations: int, quality: str) -> list[int]:
    if iterations:
        return [iterations] * n_scales
    per_scale = DETAIL_ITERATIONS[quality]
    return [per_scale[min(index, len(per_scale) - 1)] for index in range(n_scales)]


def style_size(native: tuple[int, int], scale_size: tuple[int, int], style_scale: float,
               detail: bool = False) -> tuple[int, int]:
    """A style image's (width, height) at a scale: its own aspect ratio with style_scale^2 times the scale's
    pixels (at least MIN_SIDE a side); at a detail scale never more pixels than its own, since enlarging a
    painting only blurs it. The engine resizes the style to it, and the memory plan counts it."""
    scaled = size_with_pixels(native, scale_size[0] * scale_size[1] * style_scale**2)
    if detail and scaled[0] * scaled[1] > native[0] * native[1]:
        return native
    return scaled


def size_with_pixels(size: tuple[int, int], pixels: float) -> tuple[int, int]:
    """size's aspect ratio scaled to about `pixels` pixels, at least MIN_SIDE on each side."""
    width, height = size
    factor = math.sqrt(pixels / (width * height))
    factor = max(factor, MIN_SIDE / min(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


@dataclass(frozen=True)
class Step:
    """One scale of a run: its size and iterations; `detail` past the working size."""
    width: int
    height: int
    iterations: int
    detail: bool = False


def composition_steps(out_size: tuple[int, int], max_size: int, n_scales: int, iterations: int,
                      quality: str) -> list[Step]:
    """The composition scales, coarsest first, up to the working size (out_size capped by max_size)."""
    sizes = scale_sizes(out_size, max_size, n_scales)
    return [Step(width, height, n) for (width, height), n in
            zip(sizes, composition_iterations(len(sizes), iterations, quality))]


def detail_steps(working: tuple[int, int], out_size: tuple[int, int], iterations: int, quality: str) -> list[Step]:
    """The detail scales from just above the working size up to out_size (none when no bigger)."""
    sizes = detail_sizes(working, out_size)
    return [Step(width, height, n, detail=True) for (width, height), n in
            zip(sizes, detail_iterations(len(sizes), iterations, quality))]


def preview_steps(content_size: tuple[int, int]) -> list[Step]:
    """The preview's scales: at most PREVIEW_SIDE on the long side, its own few iterations (a layer too
    small for two scales gets the coarse scale's iterations at its own size)."""
    sizes = scale_sizes(preview_size(content_size), PREVIEW_SIDE, len(PREVIEW_ITERATIONS))
    return [Step(width, height, n) for (width, height), n in zip(sizes, PREVIEW_ITERATIONS)]


def finishes_at_full_size(resolution: str, full_seconds: float) -> bool:
    """Whether a run with detail scales to paint keeps them: always at "full", never at "working",
    and at "auto" where the full-size run is predicted to take at most AUTO_FULL_SECONDS."""
    return resolution == "full" or (resolution == "auto" and full_seconds <= AUTO_FULL_SECONDS)
