"""The settings of one stylization, declared once: each `Settings` field carries its type, default,
help and range or choices.

Everything else is derived from these declarations (`OPTIONS`): validation (`Settings.validate`), the
command line (cli.py), the server's request checks, and the GIMP plug-in's arguments (the plug-in
keeps its labels, mnemonics and narrower ranges apart, keyed by field name).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from .errors import InputError
from .schedule import MAX_SIDE, MIN_SIDE, QUALITY_ITERATIONS


def option(default, help: str, **declaration):
    """A `Settings` field with what the front-ends need to know of it (the keywords of `Option` but its
    name, type, optional and many, which the field's name and type hint give)."""
    return field(default=default, metadata={"help": help, **declaration})


@dataclass
class Settings:
    """Everything that shapes the result. Defaults give a good picture untouched."""

    strength: float = option(
        1.0, "How strongly the style's strokes and colours take over (1 = balanced)",
        range=(0.0, 1e4))
    quality: str = option(
        "balanced", "Iterations per scale: fast, balanced or best (slower)",
        choices=tuple(QUALITY_ITERATIONS), group="quality and size")
    resolution: str = option(
        "auto", "Where the painting is finished: at the working size and upscaled, or continued up to the "
        "layer's full size for crisp strokes (slower); auto finishes at full size where that is "
        "predicted to take under a minute; preview paints a quick look at 256 px with few "
        "iterations, what the same settings will give",
        choices=("auto", "working", "full", "preview"), group="quality and size")
    iterations: int = option(
        0, "Iterations at every scale; 0 takes them from the quality setting",
        range=(0, 100000), group="quality and size")
    max_size: int = option(
        512, "Longest side the painting is computed at; bigger layers are upscaled from it "
        "(larger is slower)",
        range=(MIN_SIDE, MAX_SIDE), group="quality and size", metavar="N")
    preserve_colors: str = option(
        "none", "Keep the content's colours: 'luminance' takes only the style's strokes, 'histogram' "
        "recolours the style to the content's palette first",
        choices=("none", "luminance", "histogram"))
    style_scale: float = option(
        1.0, "Size of the brush strokes: 2 paints them twice as big",
        range=(0.1, 10.0))
    seed: int = option(
        0, "Random seed: the same seed gives the same picture",
        range=(0, 2**63 - 1), group="engine")
    device: str = option(
        "auto", "Where to compute: auto = a CUDA GPU, else an Apple GPU (MPS), else the CPU; "
        "a GPU is much faster",
        choices=("auto", "gpu", "cuda", "mps", "cpu"), group="engine")
    # Engine and command line only.
    content_weight: float = option(
        1.0, "How much of the content's structure to keep", range=(0.0, 1e4))
    tv_weight: float = option(
        1.0, "Smoothness: suppresses pixel noise", range=(0.0, 1e4))
    style_weights: list[float] | None = option(
        None, "One weight per style image (default: equal)",
        range=(0.0, 1e4), metavar="W")
    style_scales: list[float] | None = option(
        None, "One stroke size per style image, in their order (default: the style scale for each)",
        range=(0.1, 10.0), metavar="S")
    size: int | None = option(
        None, "Long side of the output in pixels (default: the content's)",
        range=(MIN_SIDE, MAX_SIDE), group="quality and size", metavar="N")
    scales: int = option(
        3, "Coarse-to-fine scales, each half the next", range=(1, 8), group="quality and size")
    stall_tolerance: float = option(
        1e-4, "Stop a scale early once its loss improves by less than this fraction over 10 "
        "iterations (0 never stops early)", range=(0.0, 1.0), group="quality and size")
    optimizer: str = option(
        "lbfgs", "L-BFGS gives better pictures; Adam uses less memory",
        choices=("lbfgs", "adam"), group="engine")
    init: str = option(
        "content", "Start from the content or from noise",
        choices=("content", "noise"), group="engine")
    pooling: str = option(
        "max", "VGG pooling", choices=("max", "avg"), group="engine")
    precision: str = option(
        "auto", "Arithmetic of the VGG passes: auto = bf16 where the device runs it faster (CUDA GPUs "
        "that have it; CPUs with AMX or AVX-512 BF16, measured once), else fp32; the losses are "
        "summed in fp32",
        choices=("auto", "fp32", "bf16", "fp16"), group="engine")
    tile_size: int | None = option(
        None, "Optimise scales larger than this in tiles of this size (default: only what would "
        "not fit in memory)", range=(128, MAX_SIDE), group="engine", metavar="N")
    memory_limit_mb: int | None = option(
        None, "Plan for at most this much memory (default: what the device has free)",
        range=(256, 2**24), group="engine", flag="--memory-limit", metavar="MB")
    temporal_weight: float = option(
        1.0, "How firmly each frame of a clip keeps the strokes of the frame before where the motion is "
        "followed (0 restyles every frame on its own, and it flickers)", range=(0.0, 100.0), group="clips")
    weights: str | None = option(
        None, "A VGG19 state dict in torchvision's layout instead of the embedded Caffe weights "
        "(never downloaded)", group="engine", metavar="PATH", names_a_file=True)

    def validate(self, n_styles: int = 1) -> "Settings":
        """Raise InputError naming the first bad value (and its option); return self for chaining."""
        for declared in OPTIONS:
            problem = declared.problem(getattr(self, declared.name))
            if problem:
                raise InputError(problem, declared.name)
        if self.style_weights is not None:
            if len(self.style_weights) != n_styles:
                raise InputError(f"got {len(self.style_weights)} style weights for {n_styles} style images",
                                 "style_weights")
            if sum(self.style_weights) <= 0:
                raise InputError("style weights must not all be zero", "style_weights")
        if self.style_scales is not None and len(self.style_scales) != n_styles:
            raise InputError(f"got {len(self.style_scales)} stroke sizes for {n_styles} style images", "style_scales")
        return self

    def stroke_size(self, style_index: int) -> float:
        """The stroke size of the style image at `style_index` (style_scales, else style_scale)."""
        return self.style_scales[style_index] if self.style_scales is not None else self.style_scale

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Option:
    name: str
    """The `Settings` field; the CLI flag and the plug-in argument use it with '-' for '_'."""
    type: type
    """float, int or str (str options take one of `choices`)."""
    default: object
    help: str
    range: tuple[float, float] | None = None
    """Inclusive bounds; NaN fails them, so does infinity where the bound is finite."""
    choices: tuple[str, ...] = ()
    optional: bool = False
    """None is allowed (and is the default): `help` says what None means."""
    many: bool = False
    """A list of values (one per style image)."""
    group: str = "look"
    """The CLI help's section."""
    flag: str | None = None
    """The CLI flag, where it differs from --name."""
    metavar: str | None = None
    names_a_file: bool = False
    """A path on the computer that runs the engine: a server never takes it from a request."""

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def problem(self, value) -> str | None:
        """Why `value` is not valid for this option, in words; None when it is."""
        if value is None:
            return None if self.optional else f"{self.label_for_errors} is required"
        values = value if self.many else [value]
        if self.many and (not isinstance(value, (list, tuple)) or not value):
            return f"{self.label_for_errors} must be a list of numbers"
        for item in values:
            if self.type is str:
                if not isinstance(item, str):
                    return f"{self.label_for_errors} must be text, got {item!r}"
                if self.choices and item not in self.choices:
                    return f"{self.label_for_errors} must be one of {', '.join(self.choices)}, got {item!r}"
                continue
            if isinstance(item, bool) or not isinstance(item, (int, float)) or (
                    self.type is int and not isinstance(item, int)):
                kind = "an integer" if self.type is int else "a number"
                return f"{self.label_for_errors} must be {kind}, got {item!r}"
            low, high = self.range
            if not low <= item <= high:
                return f"{self.label_for_errors} must be between {low:g} and {high:g}, got {item}"
        return None

    @property
    def label_for_errors(self) -> str:
        return self.name.replace("_", " ")


def _declared(settings_field: dataclasses.Field, hint) -> Option:
    """The option a field declares: `int | None` is optional, `list[float]` many."""
    arguments = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in arguments
    (kind,) = [argument for argument in arguments if argument is not type(None)]
    many = typing.get_origin(kind) is list
    return Option(settings_field.name, typing.get_args(kind)[0] if many else kind, settings_field.default,
                  optional=optional, many=many, **settings_field.metadata)


_HINTS = typing.get_type_hints(Settings)
OPTIONS: tuple[Option, ...] = tuple(_declared(f, _HINTS[f.name]) for f in dataclasses.fields(Settings))
BY_NAME: dict[str, Option] = {declared.name: declared for declared in OPTIONS}
