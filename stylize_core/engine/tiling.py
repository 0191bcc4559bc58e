"""Optimising an image bigger than memory allows, tile by tile, against global style statistics.

Each iteration the image is cut into tiles (each with a margin of context around
its core); a tile's loss compares its own Gram matrices with the one global
style target and its content features with the content's at the same place. The
gradient of each tile's core is written into the whole image's gradient, so the
optimiser steps the whole image at once. The tile grid moves by a random offset
every iteration, so no seam stays in one place long enough to show.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import CONTENT_LAYER, STYLE_LAYERS, gram_matrix
from .memory import TILE_MARGIN
from .optimize import Objective, autocast_for
from .vgg import VGG19Features

# Each ReLU layer's resolution relative to the input.
LAYER_STRIDE = {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4, "relu4_1": 8, "relu4_2": 8, "relu5_1": 16}


def axis_cuts(length: int, tile: int, offset: int) -> list[int]:
    """Boundaries 0 = c0 < c1 < ... = length, tile apart, shifted by offset; every piece between tile / 2
    and tile long. A remainder under tile / 2 is not left alone (too little context for a tile's Grams)
    but shares its neighbour: the two are cut in half, so no piece is longer than the memory model's
    tile (merged, they were up to 1.5 tiles: 2.2x the activations it planned for)."""
    inner = [cut for cut in range(tile - offset, length, tile)
             if cut >= tile // 2 and length - cut >= tile // 2]
    cuts = [0]
    for end in inner + [length]:
        start = cuts[-1]
        parts = -(-(end - start) // tile)
        cuts += [start + (end - start) * part // parts for part in range(1, parts + 1)]
    return cuts


def tile_boxes(height: int, width: int, tile: int, offset_y: int = 0, offset_x: int = 0):
    """(core, crop) boxes as (top, bottom, left, right); crops add TILE_MARGIN of context."""
    rows, cols = axis_cuts(height, tile, offset_y), axis_cuts(width, tile, offset_x)
    for top, bottom in zip(rows, rows[1:]):
        for left, right in zip(cols, cols[1:]):
            crop = (max(0, top - TILE_MARGIN), min(height, bottom + TILE_MARGIN),
                    max(0, left - TILE_MARGIN), min(width, right + TILE_MARGIN))
            yield (top, bottom, left, right), crop


def _slice(tensor: torch.Tensor, box) -> torch.Tensor:
    top, bottom, left, right = box
    return tensor[..., top:bottom, left:right]


def core_within_crop(core, crop, stride: int = 1):
    """The core box in the crop's coordinates, at a layer `stride` times coarser (at least 1 x 1)."""
    top, left = (core[0] - crop[0]) // stride, (core[2] - crop[2]) // stride
    bottom = max(top + 1, (core[1] - crop[0]) // stride)
    right = max(left + 1, (core[3] - crop[2]) // stride)
    return top, bottom, left, right


@torch.no_grad()
def tiled_style_grams(network: VGG19Features, image: torch.Tensor, tile: int, precision: str,
                      layers: tuple[str, ...] = STYLE_LAYERS) -> dict[str, torch.Tensor]:
    """Gram matrices of a large image: the mean over tile cores, weighted by their positions."""
    height, width = image.shape[-2:]
    weighted: dict[str, torch.Tensor] = {}
    positions: dict[str, int] = {}
    for core, crop in tile_boxes(height, width, tile):
        with autocast_for(image, precision):
            features = network(_slice(image, crop), set(layers))
        for layer, feature in features.items():
            core_features = _slice(feature, core_within_crop(core, crop, LAYER_STRIDE[layer]))
            count = core_features.shape[-1] * core_features.shape[-2]
            weighted[layer] = weighted.get(layer, 0) + gram_matrix(core_features) * count
            positions[layer] = positions.get(layer, 0) + count
    return {layer: weighted[layer] / positions[layer] for layer in weighted}


@dataclass
class TiledObjective:
    """The Objective's loss and gradient, computed tile by tile (see the module docstring)."""
    objective: Objective
    content: torch.Tensor
    """The content image at this scale, (1, 3, H, W): its features are taken per tile."""
    tile: int
    generator: torch.Generator

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        offset_y, offset_x = (int(v) for v in torch.randint(0, self.tile // 2, (2,), generator=self.generator))
        total = torch.zeros((), device=image.device)
        for core, crop in tile_boxes(height, width, self.tile, offset_y, offset_x):
            with torch.no_grad(), autocast_for(image, self.objective.precision):
                content_target = self.objective.network(_slice(self.content, crop), {CONTENT_LAYER})[CONTENT_LAYER]
            piece = _slice(image, crop).detach().requires_grad_(True)
            share = (core[1] - core[0]) * (core[3] - core[2]) / (height * width)
            loss = self.objective(piece, content_target, crop) * share
            loss.backward()
            _slice(image.grad, core).add_(_slice(piece.grad, core_within_crop(core, crop)))
            total += loss.detach()
        whole = self.objective.whole_image_loss(image)
        if whole.requires_grad:
            whole.backward()
        return total + whole.detach()
