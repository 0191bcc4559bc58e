"""The three terms of the Gatys et al. objective, each normalised to be size-free.

* style: for each layer l of relu1_1..relu5_1, the Gram matrix G = F F^T / (H W)
  (F: C x HW) of the image against the (weighted) style target T, as the relative
  squared error ||G - T||^2 / ||T||^2, averaged over the layers. Dividing by H W
  makes G an average over positions and dividing by ||T||^2 puts every layer on
  the same footing, so no per-layer or per-resolution weights need tuning.
* style per region (Gatys et al., *Controlling Perceptual Factors in Neural Style
  Transfer*, 2017): a style that applies to a region only is matched by the guided
  Gram matrix (F m)(F m)^T / sum(m^2), m the region's mask brought to the layer's
  resolution by an area average, so its statistics are the region's alone and its
  soft edge at every layer joins the neighbouring region's without a seam. The
  regions' losses are averaged, weighted by their areas and the styles' weights;
  what no region covers has no style term and keeps the content's look.
* content: ||F - F_c||^2 / ||F_c||^2 at relu4_2.
* total variation: mean squared difference of neighbouring pixels, times
  (pixels along the long side / 512)^2 so its pull per stroke stays the same at
  every scale (differences shrink as resolution grows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"
FINE_LAYERS = ("relu1_1", "relu2_1")
"""The layers that see a few pixels (3-10): the painting's brushwork, all a detail scale matches."""


class _Gram(torch.autograd.Function):
    """F F^T / n with a backward of one matmul: dF = (dG + dG^T) F / n.

    Autograd's generic matmul backward would compute the gradient for F and for
    F^T separately, two matmuls as large as the forward; the Gram matrices are
    the largest cost of an iteration after the convolutions themselves. The
    gradient comes back in F's own memory layout (channels-last activations are
    F^T in memory), so the backward pass never converts a full-size tensor.
    """

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        return flat @ flat.t() / flat.shape[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (flat,) = ctx.saved_tensors
        symmetric = (grad + grad.t()) / flat.shape[1]  # C x C: dividing here, not the C x HW product
        if flat.stride(0) == 1:  # F^T is the contiguous one: dF^T = F^T S (S symmetric)
            return (flat.t() @ symmetric).t()
        return symmetric @ flat


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (C, C) float32, averaged over positions.

    The product runs in float32, except for bfloat16 features on a CPU: there it runs in bfloat16
    (oneDNN accumulates in float32, only the C x C result is rounded, a relative 0.4 %), which
    spares converting F to float32 and back and is twice as fast as a float32 product. Measured
    on a 1427x892 detail iteration: 13 % less time, the gradient within 0.1 %. On a GPU the
    float32 product is kept: cuBLAS may also reduce bfloat16 products in bfloat16."""
    _, channels, height, width = features.shape
    in_bfloat16 = features.dtype == torch.bfloat16 and features.device.type == "cpu"
    dtype = torch.bfloat16 if in_bfloat16 else torch.float32
    # F is taken as a view and converted in its own memory layout (a conversion that has to
    # transpose is several times slower); in the backward pass nothing full-size is then
    # transposed, zero-filled or added across layouts either.
    if not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last):
        flat = features.permute(0, 2, 3, 1).reshape(height * width, channels).to(dtype).t()
    else:
        flat = features.reshape(channels, height * width).to(dtype)
    return _Gram.apply(flat).float()


def style_loss(features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    losses = []
    for layer, target in targets.items():
        difference = gram_matrix(features[layer]) - target
        losses.append(difference.pow(2).sum() / target.pow(2).sum().clamp_min(1e-12))
    return torch.stack(losses).mean()


MIN_REGION_POSITIONS = 1.0
"""A region covering less than one position of a layer (summed mask) has no statistics there."""
MAX_CACHED_GUIDES = 256
"""Masks brought to layer sizes kept per target: a tiled scale's moving tiles make new ones each step."""


@dataclass
class GuidedTarget:
    """A style's Gram targets and the region of the image they apply to. The region's mask at each
    layer's size (and its area) is computed once per part of the image and kept: the optimisation asks
    for the same ones every step, and reading an area back from a GPU would wait for it each time."""
    grams: dict[str, torch.Tensor]
    mask: torch.Tensor | None = None
    """(1, 1, H, W) in 0..1 at the image's size; None: the whole image."""
    weight: float = 1.0
    guides: dict = field(default_factory=dict, repr=False, compare=False)

    def part(self, box: tuple[int, int, int, int] | None) -> torch.Tensor:
        return self.mask if box is None else self.mask[..., box[0]:box[1], box[2]:box[3]]

    def share(self, box: tuple[int, int, int, int] | None) -> float:
        """The region's share of the image (or of its part `box`)."""
        return self.cached(("share", box), lambda: float(self.part(box).mean()))

    def guide(self, box: tuple[int, int, int, int] | None, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
        """region_weights of the region's part `box` at a layer's (height, width)."""
        return self.cached((box, size), lambda: region_weights(self.part(box), size))

    def cached(self, key, compute):
        if key not in self.guides:
            if len(self.guides) >= MAX_CACHED_GUIDES:
                self.guides.clear()
            self.guides[key] = compute()
        return self.guides[key]


def region_weights(mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """The mask brought to a layer's (height, width) by area, and the positions it covers (its squared
    weights summed)."""
    weights = F.interpolate(mask.to(torch.float32), size=size, mode="area")
    return weights, float(weights.pow(2).sum())


def guided_gram(features: torch.Tensor, mask: torch.Tensor,
                guide: tuple[torch.Tensor, float] | None = None) -> torch.Tensor | None:
    """The Gram matrix of the features (1, C, H, W) inside the mask (brought to their resolution, or
    `guide`: region_weights already computed); None where the region is absent at this layer."""
    height, width = features.shape[-2:]
    weights, positions = guide or region_weights(mask, (height, width))
    if positions < MIN_REGION_POSITIONS:
        return None
    # gram_matrix averages over all H W positions; the region's statistics average over its own.
    return gram_matrix(features * weights.to(features.dtype)) * (height * width / positions)


def regional_style_loss(features: dict[str, torch.Tensor], targets: list[GuidedTarget],
                        box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """The style loss of several styles, each in its region: per region the guided Grams against its
    targets, the regions weighted by their areas and weights, so that a style pushes as hard inside its
    region as it would over the whole layer. `box` (top, bottom, left, right): the
    image is that part of the masks' image (a tile)."""
    total, shares = None, 0.0
    for target in targets:
        if target.mask is None:
            loss, share = style_loss(features, target.grams), 1.0
        else:
            share = target.share(box)
            if share == 0:
                continue
            losses = []
            for layer, gram_target in target.grams.items():
                gram = guided_gram(features[layer], target.part(box),
                                   target.guide(box, tuple(features[layer].shape[-2:])))
                if gram is not None:
                    losses.append((gram - gram_target).pow(2).sum() / gram_target.pow(2).sum().clamp_min(1e-12))
            if not losses:
                continue
            loss = torch.stack(losses).mean()
        total = loss * share * target.weight if total is None else total + loss * share * target.weight
        shares += share * target.weight
    if total is None or shares == 0:
        return torch.zeros((), device=next(iter(features.values())).device)
    # Each region's loss counts by its area: inside it a style pushes as hard as over a whole layer (a
    # guided Gram's pull on each position grows as its region shrinks). Where regions leave part of the
    # image unstyled the sum is not scaled up to make up for it; where they overlap it is scaled down.
    return total / max(shares, 1.0)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.float()
    return (features.float() - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """image (1, 3, H, W); see the module docstring for the resolution factor."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    resolution = max(image.shape[-2:]) / 512
    return (dx + dy) * resolution**2


def blend_grams(grams: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Target Gram per layer: the weighted mean of the style images' Grams."""
    total = sum(weights)
    return {layer: sum(w / total * g[layer] for g, w in zip(grams, weights)) for layer in grams[0]}
