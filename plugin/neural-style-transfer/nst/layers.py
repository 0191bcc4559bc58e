"""The image side of the plug-in: which layers a run may take, their pixels as the engine takes them,
and the result inserted as a new layer above the source in one undo step; an animation's frames (its
top-level layers, bottom first) read at the image's size, and the restyled ones as a new image."""

from __future__ import annotations

import os

from gi.repository import Gegl, Gimp

from .pixels import npy_bytes, scaled_region

PIXEL_FORMAT = "R'G'B'A float"


def problem_with(drawables, config) -> str | None:
    """What is wrong with the chosen layer or style, in the user's words; None when the run can go."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return "Select exactly one layer to restyle."
    layer = drawables[0]
    if layer.is_group():
        return "The selected layer is a layer group: select a normal layer to restyle."
    return style_problem(config, [layer])


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
    if config.get_property("style-source") == "layer":
        return config.get_property("style-layer").get_name()
    return os.path.splitext(config.get_property("style-file").get_basename())[0]


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
    bounds = (0, 0, drawable.get_width(), drawable.get_height())
    if selected_only:
        intersects, *region = drawable.mask_intersect()
        if intersects:
            bounds = tuple(region)
    scale, (x, y, width, height) = scaled_region(bounds, side)
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), scale, PIXEL_FORMAT,
                                     Gegl.AbyssPolicy.CLAMP)
    return npy_bytes(data, height, width)


def new_layer_type(image):
    return Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY \
        else Gimp.ImageType.RGBA_IMAGE


def insert_result(image, layer, data: bytes, name: str) -> None:
    """All image changes in one undo group: the new layer above the source, its pixels, the mask."""
    width, height = layer.get_width(), layer.get_height()
    _, offset_x, offset_y = layer.get_offsets()
    selection_empty = Gimp.Selection.is_empty(image)
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
