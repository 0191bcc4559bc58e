"""The settings of one stylization: one typed field per option of options.py (a test checks that the
fields and their defaults are the table's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import InputError
from .options import OPTIONS


@dataclass
class Settings:
    """Everything that shapes the result (options.py says what each field means). Defaults give a
    good picture untouched."""

    strength: float = 1.0
    quality: str = "balanced"
    resolution: str = "auto"
    iterations: int = 0
    max_size: int = 512
    preserve_colors: str = "none"
    style_scale: float = 1.0
    seed: int = 0
    device: str = "auto"
    content_weight: float = 1.0
    tv_weight: float = 1.0
    style_weights: list[float] | None = None
    size: int | None = None
    scales: int = 3
    stall_tolerance: float = 1e-4
    optimizer: str = "lbfgs"
    init: str = "content"
    pooling: str = "max"
    precision: str = "auto"
    tile_size: int | None = None
    memory_limit_mb: int | None = None
    weights: str | None = None

    def validate(self, n_styles: int = 1) -> "Settings":
        """Raise InputError naming the first bad value (and its option); return self for chaining."""
        for option in OPTIONS:
            problem = option.problem(getattr(self, option.name))
            if problem:
                raise InputError(problem, option.name)
        if self.style_weights is not None:
            if len(self.style_weights) != n_styles:
                raise InputError(f"got {len(self.style_weights)} style weights for {n_styles} style images",
                                 "style_weights")
            if sum(self.style_weights) <= 0:
                raise InputError("style weights must not all be zero", "style_weights")
        return self

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)
