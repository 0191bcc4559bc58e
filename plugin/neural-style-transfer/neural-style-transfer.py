#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Artistic > Neural Style Transfer... and Filters > Animation > Neural Style
Transfer (frames)...

The first restyles the selected layer after a style image file or another layer, and adds the result
as a new layer directly above it, in one undo step. The second restyles an animation, the image's
layers as its frames, without flicker, into a new image. The engine runs in the project's engine server
(this computer's own, started on first use, or one elsewhere); the modules in nst/ do the rest.
"""

import sys
from pathlib import Path

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("GdkPixbuf", "2.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject  # noqa: E402

PLUGIN_DIR = Path(__file__).resolve().parent
if str(PLUGIN_DIR) not in sys.path:  # Python leaves the script's folder out under PYTHONSAFEPATH
    sys.path.insert(0, str(PLUGIN_DIR))
from nst import bridge, layers, pixels, recent, styles, widgets  # noqa: E402
from nst.dialog import NeuralStyleDialog, server_of, option_values  # noqa: E402

PROCEDURE = "plug-in-neural-style-transfer"
FRAMES_PROCEDURE = "plug-in-neural-style-transfer-frames"


def run(procedure, run_mode, image, drawables, config, data):
    Gegl.init(None)
    try:  # before the dialog: a missing engine is said at once, not after the settings are made
        plugin_config = bridge.read_config(PLUGIN_DIR)
    except bridge.BridgeError as error:
        return fail(procedure, str(error))
    layers.recall_style_layer(image, config)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(PROCEDURE)
        if not NeuralStyleDialog(procedure, image, drawables, config, plugin_config).run():
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    problem = layers.problem_with(image, drawables, config)
    if problem:
        return fail(procedure, problem, Gimp.PDBStatusType.CALLING_ERROR)
    layer = drawables[0]
    try:
        result = stylize_layer(image, layer, config, plugin_config)
    except (bridge.BridgeError, pixels.PixelError) as error:
        return fail(procedure, str(error))
    layers.insert_result(image, layer, result, f"{layer.get_name()} ({layers.style_name(config)})",
                         selection_masks=styles.masks_output_with_selection(layers.style_regions(config)))
    remember_styles(config)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def run_frames(procedure, run_mode, image, drawables, config, data):
    """An animation restyled frame by frame (the image's layers, bottom first) into a new image."""
    Gegl.init(None)
    try:
        plugin_config = bridge.read_config(PLUGIN_DIR)
    except bridge.BridgeError as error:
        return fail(procedure, str(error))
    problem = layers.frame_problem(image)
    if problem:
        return fail(procedure, problem, Gimp.PDBStatusType.CALLING_ERROR)
    frames = layers.animation_frames(image)
    layers.recall_style_layer(image, config)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(FRAMES_PROCEDURE)
        frame_ids = {frame.get_id() for frame in frames}
        # The preview shows the selected frame, else the first one (a group's look cannot be previewed).
        shown = [d for d in drawables if d.get_id() in frame_ids and not d.is_group()][:1] or \
            [f for f in frames if not f.is_group()][:1] or frames[:1]
        if not NeuralStyleDialog(procedure, image, shown, config, plugin_config, frames).run():
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    problem = layers.styles_problem(image, config, frames)
    if problem:
        return fail(procedure, problem, Gimp.PDBStatusType.CALLING_ERROR)
    width, height = image.get_width(), image.get_height()
    contents = [layers.frame_npy(frame, width, height) for frame in frames]
    try:
        results = [data for data, _ in (checked_npy(result, (height, width, 4)) for result in
                                       run_with_progress(image, None, contents, config, plugin_config))]
    except (bridge.BridgeError, pixels.PixelError) as error:
        return fail(procedure, str(error))
    animation = layers.new_animation(image, frames, results)
    remember_styles(config)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.Display.new(animation)
        Gimp.displays_flush()
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    values.remove(1)  # the declared return value's default, after the status
    values.insert(1, GObject.Value(Gimp.Image, animation))
    return values


def remember_styles(config) -> None:
    """After a run: the style layer's name for Repeat, the style files for the dialog's palette."""
    layers.remember_style_layer(config)
    recent.remember_styles(Path(Gimp.directory()), layers.style_files(config))


def checked_npy(result: bytes, shape: tuple[int, int, int]) -> tuple[bytes, tuple]:
    data, got = pixels.parse_npy(result)
    if got != shape:
        raise bridge.BridgeError(f"the engine returned {got}, expected {shape}")
    return data, got


def run_with_progress(image, drawable, content, config, plugin_config: dict):
    """The content (the drawable's .npy bytes, or a list of frames' at the image's size: drawable None)
    restyled by the engine after the dialog's styles in their regions, with GIMP's progress bar
    following it."""
    further = layers.further_styles(config)
    masks = layers.region_masks(image, layers.style_regions(config), drawable)
    settings = widgets.request_settings(option_values(config), further)
    server = server_of(config)
    Gimp.progress_init("Neural Style Transfer")

    def on_event(event):
        fraction, text = bridge.describe_progress(event)
        if text:
            Gimp.progress_set_text(text)
        if fraction is not None:
            Gimp.progress_update(fraction)

    result = bridge.run_engine(plugin_config, settings, content, layers.style_pictures(image, config), on_event,
                               server=server, masks=masks)
    Gimp.progress_end()
    return result


def stylize_layer(image, layer, config, plugin_config: dict) -> bytes:
    """The layer's pixels sent to the engine with progress, the restyled pixels back (the image is not
    changed yet)."""
    result = run_with_progress(image, layer, layers.layer_npy(layer), config, plugin_config)
    return checked_npy(result, (layer.get_height(), layer.get_width(), 4))[0]


def fail(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    # GIMP shows the returned error to the user (or hands it to the calling script).
    return procedure.new_return_values(status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def choice(*entries):
    values = Gimp.Choice.new()
    for number, (nick, label) in enumerate(entries):
        values.add(nick, number, label, "")
    return values


class NeuralStyleTransfer(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE, FRAMES_PROCEDURE]

    def do_create_procedure(self, name):
        if name == FRAMES_PROCEDURE:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_frames, None)
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE
                                           | Gimp.ProcedureSensitivityMask.DRAWABLES
                                           | Gimp.ProcedureSensitivityMask.NO_DRAWABLES)
            procedure.set_menu_label("Neural Style Transfer (_frames)...")
            procedure.add_menu_path("<Image>/Filters/Animation")
            procedure.set_documentation(
                "Restyle an animation after a painting, without flicker",
                "Restyles every frame of an animation (the image's layers, the bottom one first) after a style "
                "image or a layer, each frame held to the one before along the motion, into a new image with "
                "the same frames, names and timings.", name)
        else:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
            procedure.set_menu_label("_Neural Style Transfer...")
            procedure.add_menu_path("<Image>/Filters/Artistic")
            procedure.set_documentation(
                "Restyle the layer after a painting",
                "Adds the selected layer, restyled after a style image or another layer "
                "(Gatys et al. neural style transfer), as a new layer above it.", name)
        procedure.set_image_types("*")
        procedure.set_attribution("stylize_core authors", "stylize_core authors", "2026")
        flags = GObject.ParamFlags.READWRITE
        procedure.add_choice_argument("style-source", "Style so_urce", "Take the style from an image file "
                                      "or from another layer of this image",
                                      choice(("file", "Image file"), ("layer", "Layer")), "file", flags)
        procedure.add_file_argument("style-file", "Style i_mage", "The painting whose brush strokes and "
                                    "colours to copy", Gimp.FileChooserAction.OPEN, True, None, flags)
        procedure.add_layer_argument("style-layer", "Style la_yer", "A layer whose look to copy", True, flags)
        procedure.add_string_aux_argument("style-layer-name", "Style layer name", "The last style layer's name, "
                                          "to find it again on Repeat", "", flags)
        procedure.add_string_argument("style-region", "Style region", "Where the style paints: whole (the layer, "
                                      "or what the other styles' regions leave), selection, inverse (outside the "
                                      "selection), channel:NAME, or mask:LAYER (that layer's mask)", "whole", flags)
        procedure.add_string_argument("more-styles", "More styles", "Further styles, each in its own region: a "
                                      "JSON list of {\"file\": PATH} or {\"layer\": NAME}, each with \"weight\" "
                                      "(against the first style's 1), \"stroke\" and \"region\" (as Style region)",
                                      "", flags)
        for option, widget in widgets.dialog_options():
            add_option_argument(procedure, option, widget, flags)
        procedure.add_boolean_aux_argument("preview", "_Preview", "Show the layer restyled at a small size "
                                           "while the settings change", True, flags)
        procedure.add_choice_argument("engine", "En_gine", "Where the engine runs: on this computer, or on a "
                                      "server (stylize serve) at the address below",
                                      choice(("local", "This computer"), ("server", "A server")), "local", flags)
        procedure.add_string_argument("server-address", "Server address", "The address in the file `stylize serve` wrote: "
                                      "tls://TOKEN@HOST:PORT#sha256=... (another computer), tcp://TOKEN@127.0.0.1:PORT "
                                      "(an SSH tunnel) or unix:PATH", "", flags)
        if name == FRAMES_PROCEDURE:
            procedure.add_image_return_value("new-image", "New image", "The restyled animation", False, flags)
        return procedure


def add_option_argument(procedure, option, widget, flags):
    """One engine option as a procedure argument, from the contract's option table and its widget."""
    arguments = (widgets.argument_name(option.name), widget.label, option.help)
    if option.choices:
        choices = widgets.value_choices(option, widget)
        procedure.add_choice_argument(*arguments, choice(*choices.items()), option.default, flags)
        return
    low, high = widgets.value_range(option, widget)
    if option.type is float:
        procedure.add_double_argument(*arguments, low, high, option.default, flags)
    elif option.type is int:
        procedure.add_int_argument(*arguments, int(low), int(high), option.default, flags)


Gimp.main(NeuralStyleTransfer.__gtype__, sys.argv)
