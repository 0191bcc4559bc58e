"""How much memory a run needs, and what fits: the whole image, tiles, or a smaller working size.

The model is linear in pixels, calibrated on the CPU (benchmarks/speed.py and
benchmarks/big_layer.py print the measured peaks next to these estimates):

* VGG19 up to relu5_1 keeps about ACTIVATION_BYTES_PER_PIXEL bytes per input
  pixel alive between a forward and its backward pass (float32; bf16/fp16
  autocast keeps roughly MIXED_PRECISION_FACTOR of that, or CPU_BF16_FACTOR on a
  CPU, where the Gram matrices need no float32 copy of the features);
* the optimiser keeps whole-image buffers: the image, its gradient, the content,
  and for L-BFGS 2 x history vectors, 12 bytes per pixel each;
* before it, each style image passes through VGG19 once for its Gram targets, at its
  own size at that scale (schedule.style_size: style_scale^2 times the scale's pixels),
  STYLE_PASS_BYTES_PER_PIXEL bytes a style pixel at the pass's peak. The optimisation
  starts once the passes are over, so a scale needs the larger of the two: for a style
  of the content's shape the passes' once style_scale is past about 2 (1.7-2.1 by
  precision and L-BFGS history);
* a fixed part: the framework, the weights, the allocator's slack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .hostmemory import available_bytes

ACTIVATION_BYTES_PER_PIXEL = 2600
MIXED_PRECISION_FACTOR = 0.6
"""bf16/fp16 activations plus the float32 copies of the style layers that float32 Grams keep."""
CPU_BF16_FACTOR = 0.46
"""bf16 on a CPU, whose Grams multiply in bf16 (losses.gram_matrix): no float32 copies, about 490 bytes
a pixel less (docs/measurements.md, memory)."""
IMAGE_VECTOR_BYTES_PER_PIXEL = 12  # 3 channels x float32
STYLE_PASS_BYTES_PER_PIXEL = 720
"""A style image's pass for its Grams (no gradient) peaks in the first block, where relu1_1 (kept for its
Gram) and conv1_2's output are alive at the style's full size, whatever layers follow: measured alone in
a fresh process at 640x480 to 1920x1440, 722 bytes a style pixel in float32 for relu1_1..relu5_1 and for
the detail scales' relu1_1, relu2_1 alike."""
STYLE_PASS_CPU_BF16_FACTOR = 0.65
"""bf16 on a CPU: measured 453-471 bytes a style pixel. With bf16 or fp16 on a GPU the pass is taken as
the activations are (MIXED_PRECISION_FACTOR), not measured: bf16 features whose Grams take float32 copies."""
SEVERAL_STYLES_FACTOR = 1.1
"""Several styles pass one after another and keep only their Grams, so the largest pass counts, with
what the passes before it left in the allocator's heap: measured 28-61 MB over the larger pass alone on
passes of 510-550 MB (bf16, CPU)."""
STYLE_PASS_IMAGE_VECTORS = 2
"""Alive during the style passes: the image the scale starts from and the content."""
FIXED_BYTES = {"cpu": 750 * 2**20, "cuda": 600 * 2**20, "mps": 750 * 2**20}
BUDGET_FRACTION = 0.85
"""Plan to use at most this share of the free memory: estimates are estimates."""
MIN_TILE = 256
MAX_TILE = 1024
"""Larger tiles outgrow the model: the allocator keeps what one tile freed while the next grows
(docs/measurements.md, memory)."""
TILE_MARGIN = 64
MIN_LBFGS_HISTORY = 5


def activation_bytes(pixels: int, precision: str, device_type: str) -> int:
    if precision == "fp32":
        factor = 1.0
    else:
        factor = CPU_BF16_FACTOR if precision == "bf16" and device_type == "cpu" else MIXED_PRECISION_FACTOR
    return int(pixels * ACTIVATION_BYTES_PER_PIXEL * factor)


def image_buffer_bytes(pixels: int, optimizer: str, history: int) -> int:
    vectors = 4 + (2 * history + 2 if optimizer == "lbfgs" else 2)
    return pixels * IMAGE_VECTOR_BYTES_PER_PIXEL * vectors


def style_pass_bytes(style_sizes: Sequence[tuple[int, int]], precision: str, device_type: str,
                     tile: int | None = None) -> int:
    """The style images' passes at their (width, height) at a scale: the largest, in tiles where the scale is
    tiled and the style larger than a tile (engine.style_grams_at)."""
    if precision == "fp32":
        factor = 1.0
    else:
        factor = STYLE_PASS_CPU_BF16_FACTOR if precision == "bf16" and device_type == "cpu" else MIXED_PRECISION_FACTOR

    def pixels(width: int, height: int) -> int:
        if tile and max(width, height) > tile:
            return min(width, tile + 2 * TILE_MARGIN) * min(height, tile + 2 * TILE_MARGIN)
        return width * height
    largest = max((pixels(*size) for size in style_sizes), default=0)
    several = SEVERAL_STYLES_FACTOR if len(style_sizes) > 1 else 1.0
    return int(largest * STYLE_PASS_BYTES_PER_PIXEL * factor * several)


def estimate_peak_bytes(width: int, height: int, device_type: str, optimizer: str, history: int,
                        precision: str = "fp32", tile: int | None = None,
                        style_sizes: Sequence[tuple[int, int]] | None = None) -> int:
    """Peak memory of a width x height scale (whole, or in tile x tile tiles): its style passes, at
    style_sizes (default: one style of the scale's own size), then its optimisation."""
    pixels = width * height
    side = lambda n: min(n, tile + 2 * TILE_MARGIN) if tile else n
    optimisation = (activation_bytes(side(width) * side(height), precision, device_type)
                    + image_buffer_bytes(pixels, optimizer, history))
    styles = (style_pass_bytes([(width, height)] if style_sizes is None else style_sizes, precision, device_type, tile)
              + pixels * IMAGE_VECTOR_BYTES_PER_PIXEL * STYLE_PASS_IMAGE_VECTORS)
    return FIXED_BYTES.get(device_type, FIXED_BYTES["cpu"]) + max(optimisation, styles)


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device)  # what our own cache holds is ours to reuse
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory())
    return available_bytes()


@dataclass
class ScalePlan:
    """How one scale runs: whole or in tiles, with which L-BFGS history, and its estimate."""
    tile: int | None
    history: int
    estimate: int


def plan_scale(width: int, height: int, device_type: str, optimizer: str, history: int, precision: str,
               budget: int, forced_tile: int | None = None,
               style_sizes: Sequence[tuple[int, int]] | None = None) -> ScalePlan | None:
    """The cheapest way to run this scale, its style images at style_sizes, within budget bytes, or None
    when nothing fits."""
    if forced_tile is not None:
        return ScalePlan(forced_tile, history, estimate_peak_bytes(
            width, height, device_type, optimizer, history, precision, forced_tile, style_sizes))
    whole = estimate_peak_bytes(width, height, device_type, optimizer, history, precision, style_sizes=style_sizes)
    if whole <= budget:
        return ScalePlan(None, history, whole)
    # Tiled: shrink the L-BFGS history first (it is whole-image), then the tiles.
    smallest = min(history, MIN_LBFGS_HISTORY)
    for tile_history in sorted({history, max(smallest, history // 2), smallest}, reverse=True):
        tile = MAX_TILE
        while tile >= MIN_TILE:
            estimate = estimate_peak_bytes(width, height, device_type, optimizer, tile_history,
                                           precision, tile, style_sizes)
            if estimate <= budget:
                return ScalePlan(tile, tile_history, estimate)
            tile //= 2
    return None
