"""The settings of one stylization: a typed dataclass shared by the CLI and the API."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import InputError

# Iterations per scale, coarsest first. Coarse scales are cheap (a quarter of the
# pixels per halving), so they get most of the iterations; the finest scale only
# refines detail the coarse ones already placed. Measured in benchmarks/quality.py.
PRESETS: dict[str, tuple[int, ...]] = {
    "fast": (80, 40, 12),
    "balanced": (150, 80, 25),
    "best": (300, 200, 100),
}

PRESERVE_COLORS = ("none", "luminance", "histogram")
DEVICES = ("auto", "gpu", "cuda", "mps", "cpu")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
POOLINGS = ("max", "avg")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

MAX_OUTPUT_SIDE = 16384
MIN_WORKING_SIDE = 32


@dataclass
class Settings:
    """Everything that shapes the result. Defaults give a good picture untouched."""

    strength: float = 1.0
    """Weight of the style loss: higher lets the style's strokes and colours take over."""
    content_weight: float = 1.0
    """Weight of the content loss: higher keeps more of the content's structure."""
    tv_weight: float = 1.0
    """Weight of the total-variation smoothness term (suppresses pixel noise)."""
    preset: str = "balanced"
    iterations: int | None = None
    """Iterations at every scale; None takes them from the preset."""
    size: int | None = None
    """Long side of the output in pixels; None keeps the content's size."""
    max_size: int = 512
    """Long side the optimisation runs at, at most; a larger output is upscaled from it."""
    style_scale: float = 1.0
    """Relative size of the style's brush strokes: 2 paints them twice as big."""
    style_weights: list[float] | None = None
    """One weight per style image (normalised to sum to 1); None weighs them equally."""
    preserve_colors: str = "none"
    """'luminance' keeps the content's colours, 'histogram' recolours the style to the content first."""
    device: str = "auto"
    optimizer: str = "lbfgs"
    init: str = "content"
    seed: int = 0
    pooling: str = "max"
    weights: str | None = None
    """A torchvision-layout VGG19 state dict to use instead of the embedded Caffe weights."""
    scales: int = 3
    """How many coarse-to-fine scales (each halves the long side), at most."""
    stall_tolerance: float = 1e-4
    """Stop a scale early once its loss improves by less than this fraction over 10 iterations."""
    precision: str = "auto"
    """Arithmetic of the VGG passes: auto = bf16 autocast on CUDA GPUs that have it, else fp32."""
    tile_size: int | None = None
    """Optimise scales larger than this in tiles of this size; None tiles only what would not fit."""
    memory_limit_mb: int | None = None
    """Plan for at most this much memory instead of what the device has free."""

    def schedule(self, n_scales: int) -> list[int]:
        """Iterations for each of n_scales scales, coarsest first."""
        if self.iterations is not None:
            return [self.iterations] * n_scales
        per_scale = PRESETS[self.preset]
        return list(per_scale[-n_scales:]) if n_scales <= len(per_scale) else (
            [per_scale[0]] * (n_scales - len(per_scale)) + list(per_scale))

    def validate(self, n_styles: int = 1) -> "Settings":
        """Raise InputError naming the first bad value; return self for chaining."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise InputError(message)

        need(0 <= self.strength <= 1e4, f"strength must be between 0 and 10000, got {self.strength}")
        need(0 <= self.content_weight <= 1e4,
             f"content weight must be between 0 and 10000, got {self.content_weight}")
        need(0 <= self.tv_weight <= 1e4, f"tv weight must be between 0 and 10000, got {self.tv_weight}")
        need(self.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        need(self.iterations is None or 0 <= self.iterations <= 100000,
             f"iterations must be between 0 and 100000, got {self.iterations}")
        need(self.size is None or MIN_WORKING_SIDE <= self.size <= MAX_OUTPUT_SIDE,
             f"size must be between {MIN_WORKING_SIDE} and {MAX_OUTPUT_SIDE} pixels, got {self.size}")
        need(MIN_WORKING_SIDE <= self.max_size <= MAX_OUTPUT_SIDE,
             f"max size must be between {MIN_WORKING_SIDE} and {MAX_OUTPUT_SIDE} pixels, got {self.max_size}")
        need(0.1 <= self.style_scale <= 10, f"style scale must be between 0.1 and 10, got {self.style_scale}")
        if self.style_weights is not None:
            need(len(self.style_weights) == n_styles,
                 f"got {len(self.style_weights)} style weights for {n_styles} style images")
            need(all(w >= 0 for w in self.style_weights) and sum(self.style_weights) > 0,
                 "style weights must be non-negative and not all zero")
        need(self.preserve_colors in PRESERVE_COLORS,
             f"preserve colors must be one of {', '.join(PRESERVE_COLORS)}, got {self.preserve_colors!r}")
        need(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        need(self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        need(self.init in INITS, f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        need(self.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        need(1 <= self.scales <= 8, f"scales must be between 1 and 8, got {self.scales}")
        need(0 <= self.seed < 2**63, f"seed must be a non-negative integer, got {self.seed}")
        need(self.precision in PRECISIONS,
             f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        need(self.tile_size is None or 128 <= self.tile_size <= MAX_OUTPUT_SIDE,
             f"tile size must be between 128 and {MAX_OUTPUT_SIDE} pixels, got {self.tile_size}")
        need(self.memory_limit_mb is None or self.memory_limit_mb >= 256,
             f"memory limit must be at least 256 MB, got {self.memory_limit_mb}")
        return self

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)
