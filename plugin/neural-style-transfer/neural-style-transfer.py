#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters > Artistic > Neural Style Transfer...

Restyles the selected layer after a style image file or another layer, and adds
the result as a new layer directly above it, in one undo step. The heavy work
runs in the project's engine (a warm server on this computer or another, or a child
process: nst_bridge.py); this file only talks to GIMP.
"""

import os
import sys

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("GdkPixbuf", "2.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GdkPixbuf, Gegl, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pathlib import Path  # noqa: E402

import nst_bridge  # noqa: E402
import nst_preview  # noqa: E402

PROCEDURE = "plug-in-neural-style-transfer"
PIXEL_FORMAT = "R'G'B'A float"
PLUGIN_DIR = Path(os.path.dirname(os.path.abspath(__file__)))
THUMBNAIL_SIZE = 128


def choice(*entries):
    values = Gimp.Choice.new()
    for number, (nick, label) in enumerate(entries):
        values.add(nick, number, label, "")
    return values


def read_pixels(drawable) -> bytes:
    width, height = drawable.get_width(), drawable.get_height()
    return drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, PIXEL_FORMAT,
                                     Gegl.AbyssPolicy.CLAMP)


def read_small(drawable, side: int, selected_only: bool = False) -> bytes:
    """The drawable (or its part inside the selection) as .npy bytes, at most `side` px long."""
    bounds = (0, 0, drawable.get_width(), drawable.get_height())
    if selected_only:
        intersects, *region = drawable.mask_intersect()
        if intersects:
            bounds = tuple(region)
    scale, (x, y, width, height) = nst_preview.scaled_region(bounds, side)
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, width, height), scale, PIXEL_FORMAT,
                                     Gegl.AbyssPolicy.CLAMP)
    return nst_bridge.npy_bytes(data, height, width)


def new_layer_type(image):
    return Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY \
        else Gimp.ImageType.RGBA_IMAGE


def style_name(config) -> str:
    if config.get_property("style-source") == "layer":
        return config.get_property("style-layer").get_name()
    return os.path.splitext(config.get_property("style-file").get_basename())[0]


def validate(image, drawables, config) -> str | None:
    """The user's mistake in words, or None."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return "Select exactly one layer to restyle."
    layer = drawables[0]
    if layer.is_group():
        return "The selected layer is a layer group: select a normal layer to restyle."
    if config.get_property("style-source") == "layer":
        style = config.get_property("style-layer")
        if style is None:
            return "Choose a style layer, or switch the style source to an image file."
        if style.get_id() == layer.get_id():
            return "The style layer is the layer being restyled: choose another layer as the style."
        if style.is_group():
            return "The style layer is a layer group: choose a normal layer."
    elif config.get_property("style-file") is None or config.get_property("style-file").get_path() is None:
        return "Choose a style image file, or switch the style source to a layer."
    return None


def run(procedure, run_mode, image, drawables, config, data):
    Gegl.init(None)
    try:  # before the dialog: a missing engine is said at once, not after the settings are made
        config_file = nst_bridge.read_config(PLUGIN_DIR)
        options = engine_options(config_file)
    except nst_bridge.BridgeError as error:
        return fail(procedure, str(error))
    recall_style_layer(image, config)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        if not ask_settings(procedure, image, drawables, config, options, config_file):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    problem = validate(image, drawables, config)
    if problem:
        return fail(procedure, problem, Gimp.PDBStatusType.CALLING_ERROR)
    layer = drawables[0]
    try:
        result = stylize_layer(layer, config, config_file, options)
    except nst_bridge.BridgeError as error:
        return fail(procedure, str(error))
    insert_result(image, layer, result, f"{layer.get_name()} ({style_name(config)})")
    if config.get_property("style-source") == "layer":
        config.set_property("style-layer-name", config.get_property("style-layer").get_name())
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def recall_style_layer(image, config):
    """GIMP keeps no layer between runs: find the last style layer again by its name, so that
    Filters > Repeat Last and Re-Show Last work with a layer style too."""
    name = config.get_property("style-layer-name")
    if config.get_property("style-layer") is None and name:
        layer = image.get_layer_by_name(name)
        if layer is not None:
            config.set_property("style-layer", layer)


def ask_settings(procedure, image, drawables, config, options, config_file) -> bool:
    """Show the dialog until the settings make sense or the user cancels; True to go on."""
    GimpUi.init(PROCEDURE)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style Transfer")
    # Every choice as a combo box, as GIMP 3.0 shows them: 3.2 would show the short ones as radio
    # buttons, which get no Alt+letter mnemonic (GIMP says so in its log).
    for name in ["style-source", *[option.plugin_name for option in options.DIALOG_OPTIONS if option.choices],
                 "engine"]:
        dialog.get_widget(name, Gtk.ComboBox.__gtype__)
    # What a painter needs first, then the rest folded away under "Advanced".
    dialog.fill_box("advanced-box", [*[option.plugin_name for option in options.DIALOG_OPTIONS
                                       if option.dialog.advanced], "engine", "server-address"])
    dialog.get_label("advanced-label", "_Advanced", False, True)
    dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")
    dialog.fill(["style-source", "style-file", "style-layer",
                 *[option.plugin_name for option in options.DIALOG_OPTIONS if not option.dialog.advanced],
                 "preview", "advanced"])
    dialog.set_sensitive_if_in("style-file", None, "style-source", string_values("file"), True)
    dialog.set_sensitive_if_in("style-layer", None, "style-source", string_values("layer"), True)
    dialog.set_sensitive_if_in("server-address", None, "engine", string_values("server"), True)
    add_style_preview(dialog, config)
    stop_preview = None
    if len(drawables) == 1:
        add_time_estimate(dialog, config, options, config_file["project"],
                          (drawables[0].get_width(), drawables[0].get_height()))
        if isinstance(drawables[0], Gimp.Layer) and not drawables[0].is_group():
            stop_preview = add_live_preview(dialog, image, drawables, config, options, config_file)
    try:
        while dialog.run():
            problem = validate(image, drawables, config)
            if problem is None:
                return True
            Gimp.message(problem)
        return False
    finally:
        if stop_preview:
            stop_preview()  # the server is free for the run at once
        dialog.destroy()


def string_values(*values):
    array = Gimp.ValueArray.new(len(values))
    for value in values:
        array.append(GObject.Value(GObject.TYPE_STRING, value))
    return array


def add_style_preview(dialog, config):
    """A thumbnail of the chosen style at the top of the dialog, following the choice."""
    preview = Gtk.Image()
    content = dialog.get_content_area()
    content.pack_start(preview, False, False, 6)
    content.reorder_child(preview, 0)

    def refresh(*_):
        thumbnail = style_thumbnail(config)
        preview.set_from_pixbuf(thumbnail)
        preview.set_visible(thumbnail is not None)

    for name in ("style-source", "style-file", "style-layer"):
        config.connect("notify::" + name, refresh)
    refresh()


def add_live_preview(dialog, image, drawables, config, options, config_file):
    """The layer (or its selected part) restyled small with the dialog's settings, again shortly after
    each change, as GIMP's own filters preview; the Preview check box turns it off. Returns what
    stops it."""
    side = nst_bridge.load_engine_module(config_file["project"], "pyramid").PREVIEW_SIDE
    content = read_small(drawables[0], side, selected_only=True)
    picture = Gtk.Image()
    status = Gtk.Label()
    pane = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
    pane.pack_start(picture, False, False, 0)
    pane.pack_start(status, False, False, 0)
    area = dialog.get_content_area()
    area.pack_start(pane, False, False, 6)
    area.reorder_child(pane, 1)  # under the style's thumbnail
    runner = nst_preview.PreviewRunner(config_file, options, GLib.idle_add)
    pending = {"timer": 0}

    def show(outcome):
        if outcome.rgba is not None:
            picture.set_from_pixbuf(GdkPixbuf.Pixbuf.new_from_bytes(
                GLib.Bytes.new(outcome.rgba), GdkPixbuf.Colorspace.RGB, True, 8, outcome.width, outcome.height,
                outcome.width * 4))
            status.set_text(f"Preview, {outcome.width}\u00d7{outcome.height}")
        else:
            status.set_text(f"Preview: {outcome.message}" + ("\u2026" if not outcome.final else ""))

    def start():
        pending["timer"] = 0
        problem = validate(image, drawables, config)
        if problem:
            status.set_text(f"Preview: {problem}")
            return False
        try:
            server = chosen_server(config)
        except nst_bridge.BridgeError as error:
            status.set_text(f"Preview: {error}")
            return False
        values = option_values(config, options)
        if config.get_property("style-source") == "layer":
            style = read_small(config.get_property("style-layer"), nst_preview.STYLE_SIDE)
        else:
            style = Path(config.get_property("style-file").get_path())
        runner.request(values, content, style, server, show)
        return False  # once

    def changed(*_):
        runner.cancel()  # what it paints is out of date: the engine stops it now, not after the delay
        if pending["timer"]:
            GLib.source_remove(pending["timer"])
            pending["timer"] = 0
        pane.set_visible(config.get_property("preview"))
        if config.get_property("preview"):
            status.set_text("Preview: \u2026")
            pending["timer"] = GLib.timeout_add(runner.wait_ms(), start)

    def stop():
        if pending["timer"]:
            GLib.source_remove(pending["timer"])
        runner.cancel()

    names = [option.plugin_name for option in options.DIALOG_OPTIONS]
    for name in names + ["style-source", "style-file", "style-layer", "engine", "server-address", "preview"]:
        config.connect("notify::" + name, changed)
    pane.show_all()
    changed()
    return stop


def add_time_estimate(dialog, config, options, project, layer_size):
    """A line under the settings that says how long the run will take, following every change."""
    label = Gtk.Label(xalign=0.0)
    label.set_line_wrap(True)
    label.set_max_width_chars(48)
    dialog.get_content_area().pack_end(label, False, False, 6)

    def refresh(*_):
        values = option_values(config, options)
        label.set_text(nst_bridge.describe_time(project, values, layer_size, config.get_property("engine") == "server"))

    for name in [option.plugin_name for option in options.DIALOG_OPTIONS] + ["engine"]:
        config.connect("notify::" + name, refresh)
    refresh()
    label.show()


def style_thumbnail(config):
    if config.get_property("style-source") == "layer":
        layer = config.get_property("style-layer")
        return layer.get_thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE, Gimp.PixbufTransparency.SMALL_CHECKS) \
            if layer is not None else None
    style_file = config.get_property("style-file")
    if style_file is None or style_file.get_path() is None:
        return None
    try:
        return GdkPixbuf.Pixbuf.new_from_file_at_scale(style_file.get_path(), THUMBNAIL_SIZE, THUMBNAIL_SIZE, True)
    except GLib.Error:
        return None  # not an image GdkPixbuf reads: the engine's own check explains it


def stylize_layer(layer, config, config_file, options):
    """Send the pixels to the engine with progress, and get the restyled pixels back (no image changes yet)."""
    width, height = layer.get_width(), layer.get_height()
    content = nst_bridge.npy_bytes(read_pixels(layer), height, width)
    if config.get_property("style-source") == "layer":
        style_layer = config.get_property("style-layer")
        style = nst_bridge.npy_bytes(read_pixels(style_layer), style_layer.get_height(), style_layer.get_width())
    else:
        style = Path(config.get_property("style-file").get_path())
    values = option_values(config, options)
    server = chosen_server(config)
    Gimp.progress_init("Neural Style Transfer")

    def on_event(event):
        fraction, text = nst_bridge.describe_progress(event)
        if text:
            Gimp.progress_set_text(text)
        if fraction is not None:
            Gimp.progress_update(fraction)

    result = nst_bridge.run_engine(config_file, options, values, content, style, on_event, server=server)
    data, shape = nst_bridge.parse_npy(result)
    if shape != (height, width, 4):
        raise nst_bridge.BridgeError(f"the engine returned {shape}, expected {(height, width, 4)}")
    Gimp.progress_end()
    return data


def option_values(config, options) -> dict:
    """The dialog's engine options, keyed by plug-in argument name (options.py's dialog options)."""
    return {option.plugin_name: config.get_property(option.plugin_name) for option in options.DIALOG_OPTIONS}


def chosen_server(config) -> str:
    """The server address Advanced › Engine names ("" for this computer); BridgeError when it is set
    to a server but no address is given."""
    if config.get_property("engine") != "server":
        return ""
    server = config.get_property("server-address").strip()
    if not server:
        raise nst_bridge.BridgeError("Advanced \u203a Engine is set to a server, but no server address is given: "
                                     "paste the address from the file `stylize serve` wrote (its address-PORT file), "
                                     "or choose This computer.")
    return server


def insert_result(image, layer, data, name):
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


def fail(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    # GIMP shows the returned error to the user (or hands it to the calling script).
    return procedure.new_return_values(status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def engine_options(config_file):
    """The engine's options.py (each option's name, range, default, help and dialog label)."""
    return nst_bridge.load_engine_module(config_file["project"], "options")


def add_option_argument(procedure, option, flags):
    """One engine option as a procedure argument, as options.py declares it for the dialog."""
    arguments = (option.plugin_name, option.dialog.label, option.help)
    if option.choices:
        procedure.add_choice_argument(*arguments, choice(*option.dialog_choices.items()), option.default, flags)
        return
    low, high = option.dialog_range
    if option.type is float:
        procedure.add_double_argument(*arguments, low, high, option.default, flags)
    elif option.type is int:
        procedure.add_int_argument(*arguments, int(low), int(high), option.default, flags)


class NeuralStyleTransfer(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Neural Style Transfer...")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        procedure.set_documentation(
            "Restyle the layer after a painting",
            "Adds the selected layer, restyled after a style image or another layer "
            "(Gatys et al. neural style transfer), as a new layer above it.", name)
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
        try:
            options = engine_options(nst_bridge.read_config(PLUGIN_DIR)).DIALOG_OPTIONS
        except nst_bridge.BridgeError:
            options = ()  # not installed: running says so before any option is needed
        for option in options:
            add_option_argument(procedure, option, flags)
        procedure.add_boolean_aux_argument("preview", "_Preview", "Show the layer restyled at a small size "
                                           "while the settings change", True, flags)
        procedure.add_choice_argument("engine", "En_gine", "Where the engine runs: on this computer, or on a "
                                      "server (stylize serve) at the address below",
                                      choice(("local", "This computer"), ("server", "A server")), "local", flags)
        procedure.add_string_argument("server-address", "Server address", "The address in the file `stylize serve` wrote: "
                                      "tls://TOKEN@HOST:PORT#sha256=... (another computer), tcp://TOKEN@127.0.0.1:PORT "
                                      "(an SSH tunnel) or unix:PATH", "", flags)
        return procedure


Gimp.main(NeuralStyleTransfer.__gtype__, sys.argv)
