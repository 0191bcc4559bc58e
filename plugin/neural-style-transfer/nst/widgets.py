"""How the engine's options appear in the dialog, keyed by option name: labels with mnemonics, the
Advanced fold, narrower ranges and fewer choices than the engine takes. The option table
(the Settings fields of stylize_core/contract/settings.py) holds no GIMP words; tests check that every value the dialog
offers is valid to the engine and means the same there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from stylize_core.contract.settings import BY_NAME, Option
from stylize_core.contract.settings import Settings


@dataclass(frozen=True)
class Widget:
    label: str
    """With a mnemonic: the underscored letter is the Alt shortcut."""
    advanced: bool = False
    """Folded away under the dialog's "Advanced" expander."""
    range: tuple[float, float] | None = None
    """A narrower range than the engine's: what a slider can usefully offer."""
    choices: dict[str, str] = field(default_factory=dict)
    """Value -> label, in the dialog's order; a subset of the engine's choices."""


WIDGETS: dict[str, Widget] = {
    # The dialog shows its options in this order.
    "strength": Widget("S_trength", range=(0.1, 10.0)),
    "quality": Widget("_Quality", choices={"fast": "Fast", "balanced": "Balanced", "best": "Best"}),
    "resolution": Widget("Resolutio_n", choices={"auto": "Automatic", "working": "Working size, upscaled",
                                                 "full": "Full size (slower)"}),
    "iterations": Widget("_Iterations", advanced=True, range=(0, 5000)),
    "max_size": Widget("_Working size", advanced=True, range=(64, 8192)),
    "preserve_colors": Widget("_Keep colours", advanced=True, choices={
        "none": "No", "luminance": "Keep the layer's colours", "histogram": "Recolour the style"}),
    "style_scale": Widget("Stroke si_ze", advanced=True, range=(0.25, 4.0)),
    "seed": Widget("S_eed", advanced=True, range=(0, 2**31 - 1)),
    "device": Widget("_Device", advanced=True, choices={"auto": "Automatic", "gpu": "GPU", "cpu": "CPU"}),
}


def argument_name(option_name: str) -> str:
    """The procedure argument (and dialog property) of an option: its name with '-' for '_'."""
    return option_name.replace("_", "-")


def dialog_options() -> list[tuple[Option, Widget]]:
    """Each option the dialog shows, with its widget, in the dialog's order."""
    return [(BY_NAME[name], widget) for name, widget in WIDGETS.items()]


def argument_names(advanced: bool | None = None) -> list[str]:
    """The dialog's option arguments (only the advanced ones, or only the others, where asked)."""
    return [argument_name(name) for name, widget in WIDGETS.items() if advanced is None or widget.advanced == advanced]


def value_range(option: Option, widget: Widget) -> tuple[float, float]:
    return widget.range or option.range


def value_choices(option: Option, widget: Widget) -> dict[str, str]:
    return widget.choices or {value: value for value in option.choices}


def label_in_words(option_name: str) -> str:
    """An option as the dialog names it in a sentence: "Advanced › Working size", "Strength"."""
    widget = WIDGETS.get(option_name)
    if widget is None:
        return option_name.replace("_", " ")
    label = widget.label.replace("_", "")
    return f"Advanced \u203a {label}" if widget.advanced else label


def request_settings(values: dict, further: Sequence = (), **changes) -> dict:
    """The dialog's values (keyed by argument name) as the Settings fields a run request carries; the
    engine's default stands for a value the dialog has not got. `further`: the styles added below the
    first (styles.FurtherStyle), each with a weight against the first style's 1 and its own stroke size
    (the first style's is the dialog's Stroke size)."""
    fields = {name: values[argument_name(name)] for name in WIDGETS if argument_name(name) in values}
    if further:
        first_stroke = fields.get("style_scale", BY_NAME["style_scale"].default)
        fields.update(style_weights=[1.0, *(float(style.weight) for style in further)],
                      style_scales=[float(first_stroke), *(float(style.stroke) for style in further)])
    return {**fields, **changes}


def preview_settings(values: dict, further: Sequence = (), **changes) -> dict:
    """The same settings painted with the engine's preview schedule (resolution "preview")."""
    return request_settings(values, further, **changes, resolution="preview")


def dialog_settings(values: dict) -> Settings:
    """Every setting, the dialog's values and the defaults for the rest: what the time line predicts."""
    return Settings(**request_settings(values))
