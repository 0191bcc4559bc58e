"""The optimisation at one scale: the image is the parameter, the network is frozen."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .losses import CONTENT_LAYER, STYLE_LAYERS, content_loss, style_loss, total_variation
from .vgg import VGG19Features

WANTED_LAYERS = frozenset(STYLE_LAYERS + (CONTENT_LAYER,))
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


@dataclass
class Objective:
    """STYLE_WEIGHT * strength * style + content_weight * content + tv_weight * total variation."""
    network: VGG19Features
    style_targets: dict[str, torch.Tensor]
    content_target: torch.Tensor
    strength: float
    content_weight: float
    tv_weight: float
    precision: str = "fp32"

    def __call__(self, image: torch.Tensor, content_target: torch.Tensor | None = None) -> torch.Tensor:
        with autocast_for(image, self.precision):
            features = self.network(image, WANTED_LAYERS)
        target = self.content_target if content_target is None else content_target
        return (STYLE_WEIGHT * self.strength * style_loss(features, self.style_targets)
                + self.content_weight * content_loss(features[CONTENT_LAYER], target)
                + self.tv_weight * total_variation(image))

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        loss = self(image)
        loss.backward()
        return loss.detach()


def optimize(image: torch.Tensor, objective: Evaluates, iterations: int, optimizer: str,
             stall_tolerance: float, on_iteration: Callable[[int, float], None],
             history: int = LBFGS_HISTORY) -> torch.Tensor:
    """Minimise objective over the pixels of image (1, 3, H, W); returns the result clamped to 0..1.

    on_iteration(i, loss) is called after each iteration i = 1..iterations. The
    run stops early when the loss improved by less than stall_tolerance (relative)
    over the last STALL_WINDOW iterations.
    """
    image = image.detach().clone().requires_grad_(True)
    if optimizer == "lbfgs":
        # One function evaluation per step (no line search): each iteration costs
        # one forward and one backward pass, and the history carries across steps.
        solver = torch.optim.LBFGS([image], lr=1.0, max_iter=1, history_size=history,
                                   tolerance_grad=-1, tolerance_change=-1)
    else:
        solver = torch.optim.Adam([image], lr=ADAM_LEARNING_RATE)

    def closure() -> torch.Tensor:
        solver.zero_grad(set_to_none=False)
        if image.grad is None:
            image.grad = torch.zeros_like(image)
        return objective.evaluate(image)

    losses: list[float] = []
    for iteration in range(1, iterations + 1):
        loss = float(solver.step(closure))
        if optimizer == "adam":
            with torch.no_grad():
                image.clamp_(0, 1)
        losses.append(loss)
        on_iteration(iteration, loss)
        if stall_tolerance > 0 and len(losses) > STALL_WINDOW:
            before = losses[-1 - STALL_WINDOW]
            if before > 0 and (before - loss) / before < stall_tolerance:
                break
    return image.detach().clamp(0, 1)
