"""The dialog's styles, without GIMP: the first style (the procedure's style-* arguments) and the
further ones the painter adds, each with a weight, a stroke size and a region; kept between runs as
text in the procedure's "style-region" and "more-styles" arguments, and which styles paint in a
region (widgets.request_settings adds their weights and stroke sizes to a request).

A region is written as text: "whole" (the whole layer, or what the other regions leave),
"selection", "inverse" (the rest of the selection's image), "channel:NAME" (a channel of the image)
or "mask:NAME" (the layer mask of the layer NAME). The further styles are a JSON list of objects:
{"file": PATH} or {"layer": NAME}, with "weight", "stroke" and "region" (all optional).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

WEIGHT_RANGE = (0.0, 10.0)
"""A further style's weight against the first style's (1)."""
STROKE_RANGE = (0.25, 4.0)
"""A further style's stroke size: the same range as the dialog's Stroke size."""
MAX_STYLES = 8
"""More would slow every iteration down (one guided Gram per style and layer) for no painter's gain."""


class StyleListError(ValueError):
    """A style list or region that cannot be read, in one line."""


@dataclass(frozen=True)
class Region:
    kind: str = "whole"
    """whole, selection, inverse, channel or mask."""
    name: str = ""
    """The channel's name, or the name of the layer whose mask it is."""

    @classmethod
    def parse(cls, text: str) -> "Region":
        text = (text or "whole").strip()
        if text in ("whole", "selection", "inverse"):
            return cls(text)
        kind, _, name = text.partition(":")
        if kind in ("channel", "mask") and name:
            return cls(kind, name)
        raise StyleListError(f"unknown region {text!r}: use whole, selection, inverse, channel:NAME or mask:LAYER")

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    @property
    def label(self) -> str:
        """The region in the dialog's words."""
        return {"whole": "Whole layer", "selection": "Selection", "inverse": "Outside the selection",
                "channel": f"Channel \u201c{self.name}\u201d",
                "mask": f"Layer mask of \u201c{self.name}\u201d"}[self.kind]

    @property
    def is_whole(self) -> bool:
        return self.kind == "whole"

    @property
    def uses_selection(self) -> bool:
        return self.kind in ("selection", "inverse")


@dataclass(frozen=True)
class FurtherStyle:
    """A style added below the first: a picture file or a layer (by name, as GIMP keeps no layer between
    runs), its weight against the first style's, its stroke size and its region."""
    file: str = ""
    layer: str = ""
    weight: float = 1.0
    stroke: float = 1.0
    region: str = "whole"

    @property
    def source(self) -> str:
        return "layer" if self.layer else "file"

    def checked(self, number: int) -> "FurtherStyle":
        """Itself, or StyleListError naming style `number`'s bad value."""
        if bool(self.file) == bool(self.layer):
            raise StyleListError(f"style {number} needs a file or a layer (one of them)")
        for what, value, (low, high) in (("weight", self.weight, WEIGHT_RANGE), ("stroke size", self.stroke,
                                                                              STROKE_RANGE)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise StyleListError(f"style {number}'s {what} must be between {low:g} and {high:g}, got {value!r}")
        Region.parse(self.region)
        return self


def parse_further_styles(text: str) -> list[FurtherStyle]:
    """The further styles kept in the "more-styles" argument ("" or "[]": none); StyleListError says
    what is wrong with the text."""
    if not (text or "").strip():
        return []
    try:
        entries = json.loads(text)
    except ValueError:
        raise StyleListError("the further styles are not a JSON list") from None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise StyleListError("the further styles must be a JSON list of objects")
    if len(entries) + 1 > MAX_STYLES:
        raise StyleListError(f"at most {MAX_STYLES} styles, got {len(entries) + 1}")
    known = set(FurtherStyle.__dataclass_fields__)
    styles = []
    for number, entry in enumerate(entries, start=2):
        unknown = sorted(set(entry) - known)
        if unknown:
            raise StyleListError(f"style {number} has an unknown key {unknown[0]!r}")
        styles.append(FurtherStyle(**entry).checked(number))
    return styles


def further_styles_text(styles: list[FurtherStyle]) -> str:
    """The text parse_further_styles reads back: each style with what differs from the defaults."""
    default = asdict(FurtherStyle())
    return json.dumps([{key: value for key, value in asdict(style).items() if value != default[key]}
                       for style in styles])


def regions_of(first_region: str, further: list[FurtherStyle]) -> list[Region]:
    """Each style's region, the first style's first."""
    return [Region.parse(first_region), *(Region.parse(style.region) for style in further)]


def masks_output_with_selection(regions: list[Region]) -> bool:
    """Whether the new layer takes the selection as its mask (when there is one): not when a style
    paints the selection or its outside, where the selection shares the layer out between styles."""
    return not any(region.uses_selection for region in regions)
