"""Styles in regions: which style paints where.

Each style image may come with a region: a mask the content's size, white where that style paints
(grey: partly, as a soft edge). A style without a region paints the rest of the layer: what no
region covers, its targets blended by the style weights as when there are no regions at all. With
only regions, what none covers keeps the content's look. The loss is losses.regional_style_loss
(guided Gram matrices).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..contract.errors import InputError
from .color import LUMA
from .imageio import Picture
from .losses import GuidedTarget, blend_grams

EMPTY_REGION = 1 / 255
"""A region whose mask nowhere reaches this is empty: nothing would be painted with its style."""


def region_mask(picture: Picture) -> np.ndarray:
    """A mask picture as a region, float32 (H, W) in 0..1: its grey level (transparent is outside)."""
    mask = picture.rgb @ LUMA
    if picture.alpha is not None:
        mask = mask * picture.alpha
    return np.clip(mask, 0, 1).astype(np.float32)


def checked_regions(regions: Sequence[Picture | None] | None, n_styles: int,
                    content_size: tuple[int, int]) -> list[np.ndarray | None] | None:
    """The regions as masks, one per style (None: the rest of the layer); None when no style has one.
    Raises InputError for a count that does not match the styles, a mask not the content's size, an
    empty one, or regions that leave nothing to a style without one."""
    if regions is None or all(region is None for region in regions):
        return None
    if len(regions) != n_styles:
        raise InputError(f"got {len(regions)} regions for {n_styles} style images", "regions")
    masks = []
    for number, region in enumerate(regions, start=1):
        if region is None:
            masks.append(None)
            continue
        if region.size != content_size:
            raise InputError(f"the region of style {number} is {region.size[0]}x{region.size[1]}, the content "
                             f"{content_size[0]}x{content_size[1]}: a region's mask must be the content's size",
                             "regions")
        mask = region_mask(region)
        if float(mask.max()) < EMPTY_REGION:
            raise InputError(f"the region of style {number} is empty (its mask is black everywhere)", "regions")
        masks.append(mask)
    rest = [number for number, mask in enumerate(masks, start=1) if mask is None]
    if rest and float(np.max([mask for mask in masks if mask is not None], axis=0).min()) > 1 - EMPTY_REGION:
        styles = " and ".join(str(number) for number in rest)
        raise InputError(f"style {styles} would paint nowhere: a style without a region paints what the regions "
                         "leave, and the other styles' regions cover the whole layer", "regions")
    return masks


def mask_at(mask: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """The mask at size (width, height), (1, 1, H, W): an area average when shrinking."""
    if (mask.shape[1], mask.shape[0]) != size:
        mask = np.asarray(Image.fromarray(mask, mode="F").resize(size, Image.BILINEAR)).clip(0, 1)
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None].to(device)


def style_targets(grams: list[dict[str, torch.Tensor]], weights: list[float], masks: list[np.ndarray | None] | None,
                  size: tuple[int, int], device: torch.device) -> dict[str, torch.Tensor] | list[GuidedTarget]:
    """The style targets at a scale of `size`: the blended Grams when no style has a region; else one
    guided target per style with a region, and one for the rest of the layer (the styles without a
    region, blended) where any; each weighted by its styles' weights against their mean."""
    if masks is None:
        return blend_grams(grams, weights)
    mean_weight = sum(weights) / len(weights)
    targets = []
    covered = torch.zeros((1, 1, size[1], size[0]), device=device)
    for style_grams, weight, mask in zip(grams, weights, masks):
        if mask is not None:
            region = mask_at(mask, size, device)
            covered = torch.maximum(covered, region)
            targets.append(GuidedTarget(style_grams, region, weight / mean_weight))
    rest = [index for index, mask in enumerate(masks) if mask is None]
    if rest and sum(weights[index] for index in rest) > 0:
        rest_weights = [weights[index] for index in rest]
        targets.append(GuidedTarget(blend_grams([grams[index] for index in rest], rest_weights), 1 - covered,
                                    sum(rest_weights) / len(rest) / mean_weight))
    return targets
