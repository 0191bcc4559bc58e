"""stylize(): the Gatys et al. method, coarse to fine.

1. Plan (plan.py): the output size, the working size (the output's long side capped
   by max_size), the composition scales up to it, each twice the one before, then
   (resolution "full") the detail scales up to the output's own size (contract/schedule.py);
   for each scale whether it runs whole or in tiles (tiling.py) within the memory
   budget (memory.py), and how long it all will take (timing.py, calibrate.py).
2. Style targets: every style image, optionally recoloured to the content's
   palette, is resized per scale to the plan's size for it (the scale's pixel
   count times style_scale^2) and its Gram matrices are blended by the style weights, or,
   where styles have regions, matched each in its own (regions.py). The detail scales match
   only the finest layers (relu1_1, relu2_1: the brushwork), and never from an
   enlarged painting: enlarging only blurs. The composition is the coarse scales':
   a detail scale's image, shrunk to the working size, is held to their result.
3. At each scale, starting from the content (or noise) at the coarsest, then from
   the previous scale's result upscaled, optimise the image's pixels. Running out
   of memory anyway retries the scale in smaller tiles.
4. Upscale to the output size when the last scale is smaller, optionally put back
   the content's colours, and copy the content's alpha through.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import keep_content_chrominance, match_color_statistics
from ..contract.errors import InputError, StylizeError
from .hostmemory import freed_memory_returned
from .imageio import Picture, load_picture, resize_rgb, to_pil
from .losses import CONTENT_LAYER, FINE_LAYERS, STYLE_LAYERS, gram_matrix
from .optimize import Curvature, Objective, TemporalTarget, autocast_for, optimize
from .calibrate import calibration_for, learn_from_run, precision_for
from ..contract.timing import Calibration
from .device import pick_device
from .plan import RunPlan, Scale, after_out_of_memory, make_plan
from .regions import checked_regions
from .regions import style_targets as styles_in_regions
from ..contract.progress import ProgressCallback, Reporter
from ..contract.settings import Settings
from .tiling import TiledObjective, tiled_style_grams
from .vgg import VGG19Features, load_vgg19

STYLE_CACHE_ENTRIES = 16
SKETCH_INTERVAL_S = 1.5
"""A preview's picture on the way changes at most this often while a scale runs: often enough to see
the painting come, rarely enough that reading it back costs nothing."""
TRUST_ELAPSED_AFTER = 0.05
"""Once this share of the work is done, the time left is extrapolated from the time taken."""


@functools.lru_cache(maxsize=2)
def cached_network(weights: str | None, pooling: str, device: str) -> VGG19Features:
    return load_vgg19(weights, pooling).to(device)


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_numpy(image: torch.Tensor) -> np.ndarray:
    return image.squeeze(0).permute(1, 2, 0).float().cpu().numpy()


def stylize(content, styles, settings: Settings | None = None, progress: ProgressCallback | None = None,
            regions=None):
    """Restyle `content` after `styles` (one or a list): paths, PIL images or numpy arrays.

    `regions` (optional): one per style, where it paints: a mask the content's size (a path, PIL image
    or array; white paints, black does not) or None for the rest of the layer (regions.py).

    Returns the type of `content`: a PIL image (RGBA when the content had alpha)
    for a PIL image or a path, a float32 array (H, W, 3|4) for a float array, and
    uint8 for a uint8 array. `progress` gets load, plan, optimize... and done, or error.
    """
    report = Reporter(progress)
    started = time.perf_counter()
    styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    try:
        result = stylize_picture(load_picture(content, "content image"),
                                 [load_picture(s, "style image") for s in styles],
                                 settings or Settings(), progress,
                                 None if regions is None else [None if region is None else load_picture(
                                     region, "region mask") for region in regions])
    except StylizeError as error:
        report.error(str(error), error.exit_code)
        raise
    report.done(time.perf_counter() - started)
    if isinstance(content, np.ndarray):
        array = np.dstack([result.rgb, result.alpha]) if result.alpha is not None else result.rgb
        return np.round(array * 255).astype(np.uint8) if content.dtype == np.uint8 else array
    return to_pil(result)


def stylize_picture(content: Picture, styles: list[Picture], settings: Settings,
                    progress: ProgressCallback | None = None,
                    regions: list[Picture | None] | None = None,
                    on_picture: Callable[[Picture], None] | None = None) -> Picture:
    """The content restyled; `on_picture` gets the picture on the way (Sketches: at the output size,
    finished as the result is), so that a preview shows something at once."""
    run = start_run(content, styles, settings, Reporter(progress), regions)
    memory_is_tight = run.plan.device.type == "cpu" and any(scale.memory.tile for scale in run.plan.scales)
    sketches = None if on_picture is None else Sketches(run, on_picture)
    with freed_memory_returned() if memory_is_tight else contextlib.nullcontext():
        result = optimize_pyramid(run, sketches=sketches)
    if settings.resolution != "preview":
        # Previews come ten at a time, at sizes whose per-pixel cost is not the runs' the estimate is
        # for: learning from them would pull the full runs' estimate towards theirs.
        learn_from_run(run.calibration, run.plan.predicted_seconds, time.perf_counter() - run.started)
    return finished_picture(run, result)


def start_run(content: Picture, styles: list[Picture], settings: Settings, report: Reporter,
              regions: list[Picture | None] | None = None) -> Run:
    """Step 1: the device, the network and the plan, reported; the Run every scale is optimised with."""
    if not styles:
        raise InputError("at least one style image is needed")
    settings.validate(len(styles))
    masks = checked_regions(regions, len(styles), content.size)
    report.load()
    device = pick_device(settings.device)
    network = prepared_network(settings, device)
    precision = precision_for(network, device, settings.precision)
    calibration = calibration_for(network, device, precision)
    plan = make_plan(content.size, settings, device, precision, calibration, [style.size for style in styles])
    report.plan(plan.describe(), plan.predicted_seconds)
    return Run(plan, settings, content, styles, report, network, calibration, masks)


def finished_picture(run: Run, result: np.ndarray) -> Picture:
    """Step 4: the optimised image at the output size, its colours and alpha as asked."""
    content, output_size = run.content, run.plan.output_size
    rgb = resize_rgb(result, output_size)
    if run.settings.preserve_colors == "luminance":
        rgb = keep_content_chrominance(rgb, resize_rgb(content.rgb, output_size))
    alpha = None
    if content.alpha is not None:
        alpha = content.alpha if content.size == output_size else np.asarray(
            Image.fromarray(content.alpha, mode="F").resize(output_size, Image.BICUBIC)).clip(0, 1)
    return Picture(rgb, alpha)


def prepared_network(settings: Settings, device: torch.device) -> VGG19Features:
    network = cached_network(settings.weights, settings.pooling, str(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed sizes per scale: autotuning pays off
    if device.type in ("cuda", "cpu") and not network.channels_last:
        network.use_channels_last()
    return network


@dataclass
class Run:
    """What every scale of one run is optimised with and against."""
    plan: RunPlan
    settings: Settings
    content: Picture
    styles: list[Picture]
    report: Reporter
    network: VGG19Features
    calibration: Calibration
    regions: list[np.ndarray | None] | None = None
    """Each style's region mask at the content's size (None: the rest of the layer); None: no regions."""

    def __post_init__(self):
        self.style_rgbs = [style.rgb for style in self.styles]
        if self.settings.preserve_colors == "histogram":
            self.style_rgbs = [match_color_statistics(rgb, self.content.rgb) for rgb in self.style_rgbs]
        self.generator = torch.Generator().manual_seed(self.settings.seed)
        self.started = time.perf_counter()
        self.total_cost = max(1, sum(scale.pixels * scale.iterations for scale in self.plan.scales))

    def on_iteration(self, number: int, scale: Scale, cost_before: int):
        """The progress callback of one scale's optimisation."""
        def report(iteration: int, loss: float) -> None:
            fraction = (cost_before + scale.pixels * iteration) / self.total_cost
            elapsed = time.perf_counter() - self.started
            if fraction >= TRUST_ELAPSED_AFTER:
                eta = elapsed * (1 - fraction) / fraction
            else:  # too little done to extrapolate: the plan's prediction
                eta = max(0.0, self.plan.predicted_seconds - elapsed)
            self.report.optimize(number, len(self.plan.scales), scale.width, scale.height, iteration,
                                 scale.iterations, loss, fraction, eta)
        return report


class Sketches:
    """The picture on the way to the result, for a preview: as each scale but the last ends, and in
    between at most every SKETCH_INTERVAL_S of optimisation, so that a slow scale (a CPU's) still shows
    its painting early. Only what is due is read back from the device."""

    def __init__(self, run: Run, on_picture: Callable[[Picture], None]):
        self.run, self.on_picture = run, on_picture
        self.due: float | None = None  # counted from the first step: before it there is nothing to show

    def during(self, image: torch.Tensor) -> None:
        if self.due is None:
            self.due = time.perf_counter() + SKETCH_INTERVAL_S
        elif time.perf_counter() >= self.due:
            self.show(image)

    def scale_done(self, image: torch.Tensor, number: int) -> None:
        if number < len(self.run.plan.scales):
            self.show(image)

    def show(self, image: torch.Tensor) -> None:
        self.on_picture(finished_picture(self.run, to_numpy(image.detach().clamp(0, 1))))
        self.due = time.perf_counter() + SKETCH_INTERVAL_S


def optimize_pyramid(run: Run, start: np.ndarray | None = None,
                     temporal_at: Callable[[Scale], TemporalTarget | None] | None = None,
                     sketches: Sketches | None = None) -> np.ndarray:
    """Step 3 over the plan's scales; the first starts from `start` (an image at its size) where given,
    and each scale holds to temporal_at(scale) where that gives a target (a clip's frames: frames.py).
    `sketches` are shown the picture on the way."""
    device = run.plan.device
    torch.manual_seed(run.settings.seed)
    image = None if start is None else to_tensor(start, device)
    composition = None
    curvature = Curvature()
    cost_before = 0
    for number, scale in enumerate(run.plan.scales, start=1):
        if scale.detail and composition is None:
            composition = image.detach()
        if not scale.detail:
            # Only a detail scale's first step takes the scale before's curvature (measured there:
            # benchmarks/full_resolution.py); the composition scales start as they were tuned.
            curvature.per_pixel = None
        content = to_tensor(resize_rgb(run.content.rgb, (scale.width, scale.height)), device)
        if image is None:
            image = content if run.settings.init == "content" else (
                0.5 + 0.1 * torch.randn(content.shape, generator=run.generator)).clamp(0, 1).to(device)
        elif image.shape[-2:] != content.shape[-2:]:
            image = F.interpolate(image, size=(scale.height, scale.width), mode="bicubic",
                                  align_corners=False).clamp(0, 1)
        temporal = temporal_at(scale) if temporal_at else None
        on_iteration = run.on_iteration(number, scale, cost_before)
        while True:
            try:
                image = optimize_scale(run, scale, image, content, on_iteration, composition, curvature, temporal,
                                       sketches.during if sketches is not None else None)
                break
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_out_of_memory(error):
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                scale = after_out_of_memory(scale, device)
                run.report.plan(f"out of memory at {scale.width}x{scale.height}: retrying in "
                                f"{scale.memory.tile} px tiles")
        cost_before += scale.pixels * scale.iterations
        if sketches is not None:
            sketches.scale_done(image, number)
    return to_numpy(image)


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def optimize_scale(run: Run, scale: Scale, image: torch.Tensor, content: torch.Tensor, on_iteration,
                   composition: torch.Tensor | None = None, curvature: Curvature | None = None,
                   temporal: TemporalTarget | None = None, on_image: Callable[[torch.Tensor], None] | None = None):
    precision, tile = run.plan.precision, scale.memory.tile
    with torch.no_grad():
        style_targets = styles_in_regions([style_grams(run, rgb, size, scale, tile)
                                           for rgb, size in zip(run.style_rgbs, scale.style_sizes, strict=True)],
                                          run.settings.style_weights or [1.0] * len(run.style_rgbs), run.regions,
                                          (scale.width, scale.height), run.plan.device)
        content_target = None
        if tile is None:
            with autocast_for(content, precision):
                content_target = run.network(content, {CONTENT_LAYER})[CONTENT_LAYER]
    objective = Objective(run.network, style_targets, content_target, run.settings.strength,
                          run.settings.content_weight, run.settings.tv_weight, precision, anchor=composition,
                          temporal=temporal)
    if tile is not None:
        objective = TiledObjective(objective, content, tile, run.generator)
    return optimize(image, objective, scale.iterations, run.settings.optimizer, run.settings.stall_tolerance,
                    on_iteration, scale.memory.history, curvature, on_image)


def style_grams(run: Run, rgb: np.ndarray, size: tuple[int, int], scale: Scale,
                tile: int | None) -> dict[str, torch.Tensor]:
    """One style image's Gram targets at this scale, the image at `size` (the plan's, from the stroke size;
    see step 2 of the module docstring)."""
    return style_grams_at(run, rgb, size, FINE_LAYERS if scale.detail else STYLE_LAYERS, tile)


_style_gram_cache: "OrderedDict[tuple, dict[str, torch.Tensor]]" = OrderedDict()


@torch.no_grad()
def style_grams_at(run: Run, rgb: np.ndarray, size: tuple[int, int], layers: tuple[str, ...],
                   tile: int | None) -> dict[str, torch.Tensor]:
    """The style image's Grams at `size`, cached by its pixels' hash: a warm server or an API
    caller that restyles several layers after one style computes them once."""
    tile = tile if tile and max(size) > tile else None
    device, precision = run.plan.device, run.plan.precision
    key = (run.settings.weights, run.settings.pooling, hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest(),
           rgb.shape, size, layers, tile, precision, str(device))
    if key in _style_gram_cache:
        _style_gram_cache.move_to_end(key)
        return _style_gram_cache[key]
    style_tensor = to_tensor(resize_rgb(rgb, size), device)
    if tile is not None:
        grams = tiled_style_grams(run.network, style_tensor, tile, precision, layers)
    else:
        with autocast_for(style_tensor, precision):
            features = run.network(style_tensor, set(layers))
        grams = {layer: gram_matrix(f) for layer, f in features.items()}
    _style_gram_cache[key] = grams
    while len(_style_gram_cache) > STYLE_CACHE_ENTRIES:
        _style_gram_cache.popitem(last=False)
    return grams
