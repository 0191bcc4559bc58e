"""stylize(): the Gatys et al. method, coarse to fine.

1. Settle the output size and the working size (the output's long side capped
   by max_size), then a pyramid of scales, each half the next.
2. Style targets: every style image, optionally recoloured to the content's
   palette, is resized per scale to the scale's pixel count times style_scale^2
   and its Gram matrices are blended by the style weights.
3. At each scale, starting from the content (or noise) at the coarsest, then from
   the previous scale's result upscaled, optimise the image's pixels.
4. Upscale to the output size when the working size was capped, optionally put
   back the content's colours, and copy the content's alpha through.

Before any of it, the memory model (memory.py) decides for each scale whether it
runs whole or in tiles (tiling.py), or shrinks the working size when even tiles
would not fit; running out of memory anyway retries the scale in smaller tiles.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import keep_content_chrominance, match_color_statistics
from .device import pick_device
from .errors import InputError, OutOfMemoryError
from .imageio import Picture, load_picture, resize_rgb, to_pil
from .losses import CONTENT_LAYER, STYLE_LAYERS, blend_grams, gram_matrix
from .memory import BUDGET_FRACTION, MIN_LBFGS_HISTORY, MIN_TILE, ScalePlan, free_bytes, plan_scale
from .optimize import LBFGS_HISTORY, Objective, autocast_for, optimize
from .progress import Progress, ProgressCallback
from .settings import MIN_WORKING_SIDE, Settings
from .tiling import TiledObjective, tiled_style_grams
from .vgg import VGG19Features, load_vgg19

MIN_COARSE_SIDE = 64
"""A coarser scale than this (short side) has too few pixels for relu5_1 to mean anything."""

STYLE_CACHE_ENTRIES = 16
_style_gram_cache: "OrderedDict[tuple, dict[str, torch.Tensor]]" = OrderedDict()


@functools.lru_cache(maxsize=2)
def cached_network(weights: str | None, pooling: str, device: str) -> VGG19Features:
    return load_vgg19(weights, pooling).to(device)


def output_size(content_size: tuple[int, int], settings: Settings) -> tuple[int, int]:
    width, height = content_size
    if settings.size is None:
        return width, height
    factor = settings.size / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def scale_sizes(out_size: tuple[int, int], settings: Settings) -> list[tuple[int, int]]:
    """(width, height) of each scale, coarsest first; the last is the working size."""
    width, height = out_size
    factor = min(1.0, settings.max_size / max(width, height))
    work = (max(1, round(width * factor)), max(1, round(height * factor)))
    if min(work) < MIN_WORKING_SIDE:
        raise InputError(f"the image is too small to stylize at {work[0]}x{work[1]}: VGG19 needs at "
                         f"least {MIN_WORKING_SIDE} pixels on each side (use a larger size or image)")
    sizes = [work]
    while len(sizes) < settings.scales and min(sizes[0]) / 2 >= MIN_COARSE_SIDE:
        sizes.insert(0, (round(sizes[0][0] / 2), round(sizes[0][1] / 2)))
    return sizes


def size_with_pixels(size: tuple[int, int], pixels: float) -> tuple[int, int]:
    """size's aspect ratio scaled to about `pixels` pixels, at least MIN_WORKING_SIDE on each side."""
    width, height = size
    factor = math.sqrt(pixels / (width * height))
    factor = max(factor, MIN_WORKING_SIDE / min(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_numpy(image: torch.Tensor) -> np.ndarray:
    return image.squeeze(0).permute(1, 2, 0).float().cpu().numpy()


def stylize(content, styles, settings: Settings | None = None, progress: ProgressCallback | None = None):
    """Restyle `content` after `styles` (one or a list): paths, PIL images or numpy arrays.

    Returns the type of `content`: a PIL image (RGBA when the content had alpha)
    for a PIL image or a path, a float32 array (H, W, 3|4) for a float array, and
    uint8 for a uint8 array.
    """
    styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    result = stylize_picture(load_picture(content, "content image"),
                             [load_picture(s, "style image") for s in styles],
                             settings or Settings(), progress)
    if isinstance(content, np.ndarray):
        array = np.dstack([result.rgb, result.alpha]) if result.alpha is not None else result.rgb
        return np.round(array * 255).astype(np.uint8) if content.dtype == np.uint8 else array
    return to_pil(result)


def stylize_picture(content: Picture, styles: list[Picture], settings: Settings,
                    progress: ProgressCallback | None = None) -> Picture:
    if not styles:
        raise InputError("at least one style image is needed")
    settings.validate(len(styles))
    report = progress or (lambda event: None)
    report(Progress("load"))
    device = pick_device(settings.device)
    out_size = output_size(content.size, settings)
    precision = resolve_precision(settings.precision, device)
    sizes = scale_sizes(out_size, settings)
    budget = memory_budget(device, settings)
    plans = plan_scales(sizes, device, settings, precision, budget)
    while plans is None and max(sizes[-1]) > 2 * MIN_WORKING_SIDE:
        # Nothing fits, not even in tiles: optimise smaller and upscale the result.
        smaller = settings.replace(max_size=int(max(sizes[-1]) * 0.75))
        sizes = scale_sizes(out_size, smaller)
        plans = plan_scales(sizes, device, smaller, precision, budget)
    if plans is None:
        raise OutOfMemoryError(f"not enough memory on {device.type} even for a tiny working size "
                               f"({budget / 2**30:.1f} GB usable)")
    report(Progress("plan", message=describe_plan(sizes, plans, device, budget)))
    schedule = settings.schedule(len(sizes))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed sizes per scale: autotuning pays off
    network = cached_network(settings.weights, settings.pooling, str(device))
    result = _optimize_pyramid(network, content, styles, settings, sizes, plans, schedule, device,
                               precision, report)
    rgb = resize_rgb(result, out_size)
    if settings.preserve_colors == "luminance":
        rgb = keep_content_chrominance(rgb, resize_rgb(content.rgb, out_size))
    alpha = None
    if content.alpha is not None:
        alpha = content.alpha if content.size == out_size else np.asarray(
            Image.fromarray(content.alpha, mode="F").resize(out_size, Image.BICUBIC)).clip(0, 1)
    return Picture(rgb, alpha)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def memory_budget(device: torch.device, settings: Settings) -> int:
    if settings.memory_limit_mb is not None:
        return settings.memory_limit_mb * 2**20
    return int(free_bytes(device) * BUDGET_FRACTION)


def plan_scales(sizes, device: torch.device, settings: Settings, precision: str,
                budget: int) -> list[ScalePlan] | None:
    plans = []
    for (width, height), iterations in zip(sizes, settings.schedule(len(sizes))):
        forced = settings.tile_size if settings.tile_size and max(width, height) > settings.tile_size else None
        # L-BFGS stores one pair of image-sized vectors per iteration, up to its history.
        history = max(1, min(LBFGS_HISTORY, iterations))
        plan = plan_scale(width, height, device.type, settings.optimizer, history, precision, budget, forced)
        if plan is None:
            return None
        plans.append(plan)
    return plans


def describe_plan(sizes, plans: list[ScalePlan], device: torch.device, budget: int) -> str:
    width, height = sizes[-1]
    plan = plans[-1]
    how = f"in {plan.tile} px tiles" if plan.tile else "whole"
    return (f"memory: about {max(p.estimate for p in plans) / 2**30:.2f} GB at most "
            f"({budget / 2**30:.1f} GB usable on {device.type}); working size {width}x{height}, {how}")


def _optimize_pyramid(network, content: Picture, styles: list[Picture], settings: Settings,
                      sizes: list[tuple[int, int]], plans: list[ScalePlan], schedule: list[int],
                      device: torch.device, precision: str, report: ProgressCallback) -> np.ndarray:
    if device.type == "cuda" and not network.channels_last:
        network.use_channels_last()
    style_weights = settings.style_weights or [1.0] * len(styles)
    style_rgbs = [s.rgb for s in styles]
    if settings.preserve_colors == "histogram":
        style_rgbs = [match_color_statistics(rgb, content.rgb) for rgb in style_rgbs]
    costs = [w * h * n for (w, h), n in zip(sizes, schedule)]
    total_cost = max(1, sum(costs))
    done_cost = 0.0
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    image = None
    for index, ((width, height), plan, iterations) in enumerate(zip(sizes, plans, schedule)):
        content_tensor = to_tensor(resize_rgb(content.rgb, (width, height)), device)
        if image is None:
            image = content_tensor if settings.init == "content" else (
                0.5 + 0.1 * torch.randn(content_tensor.shape, generator=generator)).clamp(0, 1).to(device)
        else:
            image = F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)

        def on_iteration(iteration: int, loss: float, index=index, width=width, height=height,
                         iterations=iterations, base=done_cost) -> None:
            fraction = (base + width * height * iteration) / total_cost
            elapsed = time.perf_counter() - started
            eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
            report(Progress("optimize", index + 1, len(sizes), width, height, iteration, iterations,
                            loss, fraction, eta))

        while True:
            try:
                image = _optimize_scale(network, image, content_tensor, style_rgbs, style_weights, settings,
                                        plan, iterations, precision, generator, on_iteration)
                break
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_out_of_memory(error):
                    raise
                # The estimate was off: free what we can and retry this scale in smaller tiles.
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                smaller = (plan.tile or max(width, height)) // 2
                if smaller < MIN_TILE:
                    raise OutOfMemoryError(
                        f"out of memory on {device.type} at {width}x{height}, even in {MIN_TILE} px tiles: "
                        "use a smaller max size" + (" or device cpu" if device.type != "cpu" else "")) from None
                plan = ScalePlan(smaller, MIN_LBFGS_HISTORY, plan.estimate)
                report(Progress("plan", message=f"out of memory at {width}x{height}: retrying in "
                                                f"{smaller} px tiles"))
        done_cost += costs[index]
    return to_numpy(image)


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


@torch.no_grad()
def style_grams_at(network, rgb: np.ndarray, size: tuple[int, int], tile: int | None, precision: str,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """The style image's Grams at `size`, cached by its pixels' hash: a warm worker or an API
    caller that restyles several layers after one style computes them once."""
    key = (id(network), hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest(), rgb.shape, size,
           tile if tile and max(size) > tile else None, precision, str(device))
    if key in _style_gram_cache:
        _style_gram_cache.move_to_end(key)
        return _style_gram_cache[key]
    style_tensor = to_tensor(resize_rgb(rgb, size), device)
    if key[4] is not None:
        grams = tiled_style_grams(network, style_tensor, tile, precision)
    else:
        with autocast_for(style_tensor, precision):
            features = network(style_tensor, set(STYLE_LAYERS))
        grams = {layer: gram_matrix(f) for layer, f in features.items()}
    _style_gram_cache[key] = grams
    while len(_style_gram_cache) > STYLE_CACHE_ENTRIES:
        _style_gram_cache.popitem(last=False)
    return grams


def _optimize_scale(network, image, content_tensor, style_rgbs, style_weights, settings: Settings,
                    plan: ScalePlan, iterations: int, precision: str, generator, on_iteration):
    height, width = content_tensor.shape[-2:]
    with torch.no_grad():
        style_grams = [style_grams_at(network, rgb, size_with_pixels((rgb.shape[1], rgb.shape[0]),
                                                                     width * height * settings.style_scale**2),
                                      plan.tile, precision, content_tensor.device)
                       for rgb in style_rgbs]
        style_targets = blend_grams(style_grams, style_weights)
        content_target = None
        if plan.tile is None:
            with autocast_for(content_tensor, precision):
                content_target = network(content_tensor, {CONTENT_LAYER})[CONTENT_LAYER]
    objective = Objective(network, style_targets, content_target, settings.strength,
                          settings.content_weight, settings.tv_weight, precision)
    if plan.tile is not None:
        objective = TiledObjective(objective, content_tensor, plan.tile, generator)
    return optimize(image, objective, iterations, settings.optimizer, settings.stall_tolerance,
                    on_iteration, plan.history)
