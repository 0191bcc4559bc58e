"""How much memory a run needs, and what fits: the whole image, tiles, or a smaller working size.

The model is linear in pixels, calibrated on the CPU (benchmarks/speed.py and
benchmarks/big_layer.py print the measured peaks next to these estimates):

* VGG19 up to relu5_1 keeps about ACTIVATION_BYTES_PER_PIXEL bytes per input
  pixel alive between a forward and its backward pass (float32; bf16/fp16
  autocast keeps roughly MIXED_PRECISION_FACTOR of that, or CPU_BF16_FACTOR on a
  CPU, where the Gram matrices need no float32 copy of the features);
* the optimiser keeps whole-image buffers: the image, its gradient, the content,
  and for L-BFGS 2 x history vectors, 12 bytes per pixel each;
* a fixed part: the framework, the weights, the allocator's slack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .hostmemory import available_bytes

ACTIVATION_BYTES_PER_PIXEL = 2600
MIXED_PRECISION_FACTOR = 0.6
"""bf16/fp16 activations plus the float32 copies of the style layers that float32 Grams keep."""
CPU_BF16_FACTOR = 0.46
"""bf16 on a CPU, whose Grams multiply in bf16 (losses.gram_matrix): no float32 copies, about 490 bytes
a pixel less. Measured: 5.74-5.83 GB at 2560x1600 (benchmarks/full_resolution.py), 7.1 GB estimated
with MIXED_PRECISION_FACTOR."""
IMAGE_VECTOR_BYTES_PER_PIXEL = 12  # 3 channels x float32
FIXED_BYTES = {"cpu": 750 * 2**20, "cuda": 600 * 2**20, "mps": 750 * 2**20}
BUDGET_FRACTION = 0.85
"""Plan to use at most this share of the free memory: estimates are estimates."""
MIN_TILE = 256
MAX_TILE = 1024
"""Measured: 2048 px tiles peaked at 21.6 GB where the model said 14.5 GB (the allocator keeps
what one tile freed while the next grows); 1024 px tiles stayed within the estimate."""
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


def estimate_peak_bytes(width: int, height: int, device_type: str, optimizer: str, history: int,
                        precision: str = "fp32", tile: int | None = None) -> int:
    """Peak memory of optimising a width x height image (whole, or in tile x tile tiles)."""
    pixels = width * height
    side = lambda n: min(n, tile + 2 * TILE_MARGIN) if tile else n
    return (FIXED_BYTES.get(device_type, FIXED_BYTES["cpu"])
            + activation_bytes(side(width) * side(height), precision, device_type)
            + image_buffer_bytes(pixels, optimizer, history))


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
               budget: int, forced_tile: int | None = None) -> ScalePlan | None:
    """The cheapest way to run this scale within budget bytes, or None when nothing fits."""
    if forced_tile is not None:
        return ScalePlan(forced_tile, history, estimate_peak_bytes(
            width, height, device_type, optimizer, history, precision, forced_tile))
    whole = estimate_peak_bytes(width, height, device_type, optimizer, history, precision)
    if whole <= budget:
        return ScalePlan(None, history, whole)
    # Tiled: shrink the L-BFGS history first (it is whole-image), then the tiles.
    smallest = min(history, MIN_LBFGS_HISTORY)
    for tile_history in sorted({history, max(smallest, history // 2), smallest}, reverse=True):
        tile = MAX_TILE
        while tile >= MIN_TILE:
            estimate = estimate_peak_bytes(width, height, device_type, optimizer, tile_history,
                                           precision, tile)
            if estimate <= budget:
                return ScalePlan(tile, tile_history, estimate)
            tile //= 2
    return None
