"""The image side of the plug-in: which layers a run may take, their pixels as the engine takes them,
and the result inserted as a new layer above the source in one undo step; an animation's frames (its
top-level layers, bottom first) read at the image's size, and the restyled ones as a new image."""

from __future__ import annotations

import os
from pathlib import Path

from gi.repository import Gegl, Gimp

from .pixels import mask_npy_bytes, npy_bytes, scaled_region
from .styles import FurtherStyle, Region, StyleListError, parse_further_styles, regions_of

PIXEL_FORMAT = "R'G'B'A float"
MASK_FORMAT = "Y u8"
"""A region's coverage, 0 (outside) to 255 (inside), as the selection and channels hold it."""
INVERTED = bytes(range(255, -1, -1))
"""bytes.translate's table for 255 - value: the outside of the selection, at C speed."""


def problem_with(image, drawables, config) -> str | None:
    """What is wrong with the chosen layer, styles or regions, in the user's words; None when the run
    can go."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return "Select exactly one layer to restyle."
    layer = drawables[0]
    if layer.is_group():
        return "The selected layer is a layer group: select a normal layer to restyle."
    return styles_problem(image, config, [layer])


def style_problem(config, restyled=()) -> str | None:
    """What is wrong with the chosen style, in the user's words (a style layer must not be among the
    `restyled` layers); None when it will do."""
    if config.get_property("style-source") == "layer":
        style = config.get_property("style-layer")
        if style is None:
            return "Choose a style layer, or switch the style source to an image file."
        if any(style.get_id() == layer.get_id() for layer in restyled):
            return "The style layer is the layer being restyled: choose another layer as the style."
        if style.is_group():
            return "The style layer is a layer group: choose a normal layer."
    elif config.get_property("style-file") is None or config.get_property("style-file").get_path() is None:
        return "Choose a style image file, or switch the style source to a layer."
    return None


def further_styles(config) -> list[FurtherStyle]:
    """The styles added below the first (StyleListError when the text a script gave is wrong)."""
    return parse_further_styles(config.get_property("more-styles"))


def style_regions(config) -> list[Region]:
    return regions_of(config.get_property("style-region"), further_styles(config))


def styles_problem(image, config, restyled=()) -> str | None:
    """What is wrong with the styles and their regions, in the user's words; None when they will do."""
    problem = style_problem(config, restyled)
    if problem:
        return problem
    try:
        further, regions = further_styles(config), style_regions(config)
    except StyleListError as error:
        return f"The style list cannot be read: {error}."
    restyled_ids = {layer.get_id() for layer in restyled}
    for number, style in enumerate(further, start=2):
        if style.layer:
            layer = image.get_layer_by_name(style.layer)
            if layer is None:
                return f"Style {number}'s layer \u201c{style.layer}\u201d is not in the image any more: choose another."
            if layer.get_id() in restyled_ids or layer.is_group():
                return f"Style {number}'s layer \u201c{style.layer}\u201d is being restyled or is a group: choose another."
    for number, region in enumerate(regions, start=1):
        problem = region_problem(image, region)
        if problem:
            return f"The region of style {number}: {problem}"
    return None


def region_problem(image, region: Region) -> str | None:
    if region.kind == "selection" and Gimp.Selection.is_empty(image):
        return "the selection, but nothing is selected. Select the part to paint, or choose another region."
    if region.kind in ("channel", "mask") and region_drawable(image, region) is None:
        return f"{region.label} is not in the image any more: choose another region."
    return None


def region_drawable(image, region: Region):
    """The selection, channel or layer mask a region reads (None: whole, or gone)."""
    if region.uses_selection:
        return image.get_selection()
    if region.kind == "channel":
        return image.get_channel_by_name(region.name)
    if region.kind == "mask":
        layer = image.get_layer_by_name(region.name)
        return layer.get_mask() if layer is not None else None
    return None


def region_choices(image) -> list[Region]:
    """Every region the image offers: the whole layer, the selection and its outside, each channel and
    each layer mask (layers in groups too)."""
    choices = [Region("whole"), Region("selection"), Region("inverse")]
    choices += [Region("channel", channel.get_name()) for channel in image.get_channels()]
    pending = list(image.get_layers())
    while pending:
        layer = pending.pop(0)
        if layer.get_mask() is not None:
            choices.append(Region("mask", layer.get_name()))
        if layer.is_group():
            pending[:0] = layer.get_children()
    return choices


def region_masks(image, regions: list[Region], drawable, bounds: tuple[int, int, int, int] | None = None,
                 scale: float = 1.0) -> list[bytes | None]:
    """Each region's mask (.npy bytes) over the part of `drawable` the engine gets: `bounds` (x, y,
    width, height in the drawable's pixels at `scale`, as read_small reads it; default: all of it at
    its own size); None for the whole layer. `drawable` None: the whole image (an animation's frames)."""
    if drawable is None:
        origin, size = (0, 0), (image.get_width(), image.get_height())
    else:
        origin, size = drawable.get_offsets()[1:], (drawable.get_width(), drawable.get_height())
    bounds = bounds or (0, 0, *size)
    return [None if region.is_whole else region_npy(image, region, origin, bounds, scale) for region in regions]


def region_npy(image, region: Region, origin: tuple[int, int], bounds: tuple[int, int, int, int],
               scale: float) -> bytes:
    """The region over `bounds`, given in the pixels (at `scale`) of a drawable whose top left is at
    `origin` in the image; a channel or mask lies elsewhere, at its own offsets."""
    drawable = region_drawable(image, region)
    _, offset_x, offset_y = drawable.get_offsets()
    x, y, width, height = bounds
    rect = Gegl.Rectangle.new(x + round((origin[0] - offset_x) * scale), y + round((origin[1] - offset_y) * scale),
                              width, height)
    data = bytes(drawable.get_buffer().get(rect, scale, MASK_FORMAT, Gegl.AbyssPolicy.NONE))
    if region.kind == "inverse":
        data = data.translate(INVERTED)
    return mask_npy_bytes(data, height, width)


def style_pictures(image, config, side: int | None = None) -> list:
    """Each style as the engine takes it: a file's path, or a layer's .npy bytes (at most `side` px)."""
    pictures = [style_picture(config.get_property("style-layer"), config.get_property("style-file"),
                              config.get_property("style-source"), side)]
    for style in further_styles(config):
        layer = image.get_layer_by_name(style.layer) if style.layer else None
        pictures.append(style_picture(layer, style.file, style.source, side))
    return pictures


def style_files(config) -> list[str]:
    """The paths of the styles that are picture files, in the dialog's order (what the palette keeps)."""
    first = [config.get_property("style-file").get_path()] if config.get_property("style-source") == "file" else []
    return first + [style.file for style in further_styles(config) if style.file]


def style_picture(layer, file, source: str, side: int | None):
    if source == "layer":
        return layer_npy(layer) if side is None else read_small(layer, side)
    return Path(file if isinstance(file, str) else file.get_path())


def recall_style_layer(image, config) -> None:
    """GIMP keeps no layer between runs: find the last style layer again by its name, so that
    Filters > Repeat Last and Re-Show Last work with a layer style too."""
    name = config.get_property("style-layer-name")
    if config.get_property("style-layer") is None and name:
        layer = image.get_layer_by_name(name)
        if layer is not None:
            config.set_property("style-layer", layer)


def remember_style_layer(config) -> None:
    if config.get_property("style-source") == "layer":
        config.set_property("style-layer-name", config.get_property("style-layer").get_name())


def style_name(config) -> str:
    """The styles' names, as the new layer's name carries them: "starry_night + the_scream"."""
    if config.get_property("style-source") == "layer":
        names = [config.get_property("style-layer").get_name()]
    else:
        names = [os.path.splitext(config.get_property("style-file").get_basename())[0]]
    names += [style.layer or os.path.splitext(os.path.basename(style.file))[0] for style in further_styles(config)]
    return " + ".join(names)


def read_pixels(drawable) -> bytes:
    """The whole drawable as float32 RGBA rows."""
    width, height = drawable.get_width(), drawable.get_height()
    return drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, PIXEL_FORMAT,
                                     Gegl.AbyssPolicy.CLAMP)


def layer_npy(drawable) -> bytes:
    """The whole drawable as .npy bytes, as the engine takes it."""
    return npy_bytes(read_pixels(drawable), drawable.get_height(), drawable.get_width())


def read_small(drawable, side: int, selected_only: bool = False) -> bytes:
    """The drawable (or its part inside the selection) as .npy bytes, at most `side` px long."""
    return read_small_part(drawable, side, selected_only)[0]


def read_small_part(drawable, side: int, selected_only: bool = False) -> tuple[bytes, tuple, float]:
    """read_small's .npy bytes, with the part it read (x, y, width, height, at the scale) and the scale."""
    bounds = (0, 0, drawable.get_width(), drawable.get_height())
    if selected_only:
        intersects, *region = drawable.mask_intersect()
        if intersects:
            bounds = tuple(region)
    scale, part = scaled_region(bounds, side)
    x, y, width, height = part
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), scale, PIXEL_FORMAT,
                                     Gegl.AbyssPolicy.CLAMP)
    return npy_bytes(data, height, width), part, scale


def new_layer_type(image):
    return Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY \
        else Gimp.ImageType.RGBA_IMAGE


def insert_result(image, layer, data: bytes, name: str, selection_masks: bool = True) -> None:
    """All image changes in one undo group: the new layer above the source, its pixels, and (where
    `selection_masks` and something is selected) the selection as its mask."""
    width, height = layer.get_width(), layer.get_height()
    _, offset_x, offset_y = layer.get_offsets()
    selection_empty = Gimp.Selection.is_empty(image) or not selection_masks
    image.undo_group_start()
    try:
        result = Gimp.Layer.new(image, name, width, height, new_layer_type(image), 100.0,
                                Gimp.LayerMode.NORMAL)
        image.insert_layer(result, layer.get_parent(), image.get_item_position(layer))
        result.set_offsets(offset_x, offset_y)
        buffer = result.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, width, height), PIXEL_FORMAT, data)
        buffer.flush()
        result.update(0, 0, width, height)
        if not selection_empty:
            result.add_mask(result.create_mask(Gimp.AddMaskType.SELECTION))
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def animation_frames(image) -> list:
    """The image's frames as GIMP's animation playback and GIF/WebP export take them: its top-level
    layers, the bottom one first (a layer group is one frame: what it shows)."""
    return list(reversed(image.get_layers()))


def frame_problem(image) -> str | None:
    if len(image.get_layers()) < 2:
        return ("The image has one layer: an animation's frames are its layers (open a GIF or WebP "
                "animation, or add a layer per frame). For one layer use Filters \u203a Artistic \u203a "
                "Neural Style Transfer.")
    return None


def frame_npy(layer, width: int, height: int) -> bytes:
    """A frame at the image's size (width, height): the layer where it lies, transparent elsewhere."""
    _, offset_x, offset_y = layer.get_offsets()
    data = layer.get_buffer().get(Gegl.Rectangle.new(-offset_x, -offset_y, width, height), 1.0, PIXEL_FORMAT,
                                  Gegl.AbyssPolicy.NONE)
    return npy_bytes(data, height, width)


def new_animation(image, frames: list, results: list[bytes]):
    """A new image of the restyled frames: one layer per frame, bottom first, each named as its
    frame (names carry GIMP's timing and combine tags: "(100ms)", "(replace)"), so that
    Filters \u203a Animation \u203a Playback and GIF/WebP export take it as it is."""
    width, height = image.get_width(), image.get_height()
    animation = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    animation.undo_disable()  # a new image: nothing to undo in it
    for frame, data in zip(frames, results):
        layer = Gimp.Layer.new(animation, frame.get_name(), width, height, Gimp.ImageType.RGBA_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
        animation.insert_layer(layer, None, 0)  # on top: the frames keep their order
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, width, height), PIXEL_FORMAT, data)
        buffer.flush()
    animation.undo_enable()
    return animation
