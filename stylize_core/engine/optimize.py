"""The optimisation at one scale: the image is the parameter, the network is frozen."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from .lbfgs import LBFGS
from .losses import CONTENT_LAYER, GuidedTarget, content_loss, regional_style_loss, style_loss, total_variation
from .vgg import VGG19Features

STALL_WINDOW = 10
LBFGS_HISTORY = 20
ADAM_LEARNING_RATE = 0.02
STYLE_WEIGHT = 5.0
"""The style term's weight at strength 1: with the normalised losses this lands the
default preset on tubingen/starry_night at style_gram ~0.2, content ~0.5 (benchmarks/quality.py)."""


class Evaluates(Protocol):
    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        """Return the loss (detached) and leave its gradient in image.grad."""


def autocast_for(image: torch.Tensor, precision: str):
    """Mixed precision for the VGG passes on a GPU; Grams and losses are computed in float32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(image.device.type, dtype=dtype)


ANCHOR_WEIGHT = 3000.0
"""How firmly a detail scale keeps the composition: the image, shrunk to the working size, against the
working-size result (a mean squared difference of 1e-4, a 1 % drift, weighs 0.3, about the style loss).
Measured with benchmarks/full_resolution.py: at 1000 the style score at 512 px drifted 5 %."""


def shrink_as_viewed(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """image (1, 3, H, W) shrunk to size (height, width) as an image viewer or editor shrinks it: bicubic
    with antialiasing, as PIL's and GIMP's cubic downscaling. An area average (a box filter) damps the
    finest details the working size can hold, so holding it to the composition let the detail stage
    move them: after starry_night content drifted +7 % at 512 px against +4 % held this way, with the
    same fine texture (benchmarks/full_resolution.py)."""
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False)


LUMINANCE = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
TEMPORAL_WEIGHT = 9000.0
"""The temporal term's weight at temporal_weight 1: a mean squared change of 1e-4 from the warped previous
frame where the motion is reliable weighs 0.9, about the style loss. Chosen by benchmarks/video.py
(docs/measurements.md): a third of it let the strokes drift (a warping error 1.7x the input clip's own on
the pan), more smeared them (the style score 1.08x independent frames' at 5/3 of it)."""


@dataclass
class TemporalTarget:
    """The previous frame's result moved to this frame, and where that move can be trusted."""
    warped: torch.Tensor
    """(1, 3, H, W)"""
    reliable: torch.Tensor
    """(1, 1, H, W), 1 where the motion was followed, 0 at occlusions"""
    weight: float
    luminance_only: bool = False
    """Compare the luminance alone (the result's colours will be the content's)."""

    def change(self, image: torch.Tensor) -> torch.Tensor:
        """The mean squared change from the warped previous frame where the motion was followed."""
        difference = image - self.warped
        if self.luminance_only:
            difference = (difference * LUMINANCE.to(difference)).sum(1, keepdim=True)
        return (self.reliable * difference.pow(2)).mean()


@dataclass
class Objective:
    """STYLE_WEIGHT * strength * style + content_weight * content + tv_weight * total variation
    (+ ANCHOR_WEIGHT * composition drift, on detail scales)
    (+ TEMPORAL_WEIGHT * temporal_weight * change from the previous frame where it was followed, on
    a clip's frames after the first: Ruder et al. 2016, eq. 5)."""
    network: VGG19Features
    style_targets: dict[str, torch.Tensor] | list[GuidedTarget]
    """One style target for the whole image, or several, each in its region (losses.py)."""
    content_target: torch.Tensor
    strength: float
    content_weight: float
    tv_weight: float
    precision: str = "fp32"
    anchor: torch.Tensor | None = None
    """Detail scales: the working-size result, whose composition the image must keep."""
    temporal: TemporalTarget | None = None

    def __post_init__(self):
        # The network runs only as deep as the losses look: a detail scale matches the fine layers
        # alone, so its passes stop at the content layer (relu4_2) instead of relu5_1.
        style_layers = (self.style_targets if isinstance(self.style_targets, dict)
                        else {layer for target in self.style_targets for layer in target.grams})
        self.layers = frozenset(style_layers) | {CONTENT_LAYER}

    def __call__(self, image: torch.Tensor, content_target: torch.Tensor | None = None,
                 box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """The loss of `image`, or (tiles) of the part of the image in `box` (top, bottom, left, right)
        against `content_target` there."""
        with autocast_for(image, self.precision):
            features = self.network(image, self.layers)
        target = self.content_target if content_target is None else content_target
        if isinstance(self.style_targets, dict):
            style = style_loss(features, self.style_targets)
        else:
            style = regional_style_loss(features, self.style_targets, box)
        return (STYLE_WEIGHT * self.strength * style
                + self.content_weight * content_loss(features[CONTENT_LAYER], target)
                + self.tv_weight * total_variation(image))

    def whole_image_loss(self, image: torch.Tensor) -> torch.Tensor:
        """The terms that look at the whole image at once, so a tiled objective adds them once, not per
        tile: how far the image, shrunk to the anchor's size, has drifted from it, and how far it moved
        from the warped previous frame where the motion was followed (0 without either)."""
        loss = torch.zeros((), device=image.device)
        if self.anchor is not None:
            shrunk = shrink_as_viewed(image, tuple(self.anchor.shape[-2:]))
            loss = loss + ANCHOR_WEIGHT * (shrunk - self.anchor).pow(2).mean()
        if self.temporal is not None:
            loss = loss + TEMPORAL_WEIGHT * self.temporal.weight * self.temporal.change(image)
        return loss

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        loss = self(image) + self.whole_image_loss(image)
        loss.backward()
        return loss.detach()


@dataclass
class Curvature:
    """L-BFGS's inverse Hessian scale (gamma = s.y / y.y) where one scale's optimisation ended, per
    pixel: the losses are averages over pixels, so a scale with k times the pixels has about k times
    the gamma. Started with it, the next scale's first step is a full one instead of a short
    steepest-descent probe, which on a detail scale of two iterations was half of them."""
    per_pixel: torch.Tensor | None = None


@torch.enable_grad()  # the gradient is the method: a caller that turned autograd off (torch.no_grad) still gets it
def optimize(image: torch.Tensor, objective: Evaluates, iterations: int, optimizer: str,
             stall_tolerance: float, on_iteration: Callable[[int, float], None],
             history: int = LBFGS_HISTORY, curvature: Curvature | None = None,
             on_image: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Minimise objective over the pixels of image (1, 3, H, W); returns the result clamped to 0..1.

    on_iteration(i, loss) is called for each iteration i = 1..iterations; on a GPU one
    iteration late: the loss of iteration i is read back once iteration i + 1 is
    queued, so the GPU has work queued while the host waits for that value (a CPU has
    no queue: there it is read at once, and the first progress comes one iteration
    sooner). The run
    stops early when the loss improved by less than stall_tolerance (relative)
    over the last STALL_WINDOW iterations. With L-BFGS, `curvature` (when given) starts the
    first step when it holds a value, and holds this run's at the end. on_image (when given) is
    handed the image after each step, to read it only when it wants to (a preview's sketch).
    """
    image = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    image.grad = torch.zeros_like(image)
    lbfgs = None
    if optimizer == "lbfgs":
        first_step_scale = None
        if curvature is not None and curvature.per_pixel is not None:
            first_step_scale = curvature.per_pixel * image[0, 0].numel()
        lbfgs = LBFGS(image, history, first_step_scale)
        step = lbfgs.step
    else:
        adam = torch.optim.Adam([image], lr=ADAM_LEARNING_RATE)

        def step() -> None:
            adam.step()
            with torch.no_grad():
                image.clamp_(0, 1)

    losses: list[float] = []

    def read_back(loss: torch.Tensor) -> bool:
        """Report one iteration's loss; True when the loss has stalled."""
        losses.append(float(loss))
        on_iteration(len(losses), losses[-1])
        if stall_tolerance <= 0 or len(losses) <= STALL_WINDOW:
            return False
        before = losses[-1 - STALL_WINDOW]
        return before > 0 and (before - losses[-1]) / before < stall_tolerance

    kept_queued = 0 if image.device.type == "cpu" else 1
    unread: list[torch.Tensor] = []
    for iteration in range(1, iterations + 1):
        image.grad.zero_()
        unread.append(objective.evaluate(image))
        step()
        if on_image is not None and iteration < iterations:  # the last step's image is the result
            on_image(image)
        if len(unread) > kept_queued and read_back(unread.pop(0)):
            break
    for loss in unread:
        read_back(loss)
    if lbfgs is not None and curvature is not None:
        scale = lbfgs.measured_scale()
        curvature.per_pixel = None if scale is None else scale / image[0, 0].numel()
    return image.detach().clamp(0, 1)
