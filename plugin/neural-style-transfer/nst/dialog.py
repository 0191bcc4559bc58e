"""The procedure's dialog, one class (as spyro-plus.py's SpyroWindow): the settings GIMP builds from
the procedure's arguments, the style's thumbnail, a live preview of the layer restyled small and a
line that says how long the run will take, each following the settings as they change."""

from __future__ import annotations

from pathlib import Path

from gi.repository import GdkPixbuf, Gimp, GimpUi, GLib, GObject, Gtk

from stylize_core.contract.schedule import PREVIEW_SIDE

from .bridge import BridgeError, chosen_server, describe_time
from .layers import problem_with, read_small, style_problem
from .preview import STYLE_SIDE, PreviewRunner
from .widgets import WIDGETS, argument_name, argument_names

THUMBNAIL_SIZE = 128
STYLE_ARGUMENTS = ["style-source", "style-file", "style-layer"]
ENGINE_ARGUMENTS = ["engine", "server-address"]


def option_values(config) -> dict:
    """The dialog's engine options, keyed by argument name."""
    return {name: config.get_property(name) for name in argument_names()}


def server_of(config) -> str:
    """The server address Advanced › Engine names ("" for this computer); BridgeError when it is set
    to a server but no address is given."""
    return chosen_server(config.get_property("engine"), config.get_property("server-address"))


def string_values(*values):
    array = Gimp.ValueArray.new(len(values))
    for value in values:
        array.append(GObject.Value(GObject.TYPE_STRING, value))
    return array


class NeuralStyleDialog:
    """Shows the settings until they make sense or the user cancels (run)."""

    def __init__(self, procedure, image, drawables, config, plugin_config: dict, frames: list | None = None):
        """`frames`: an animation's frame layers, all restyled; the preview and the time line take one of
        them, drawables[0]."""
        self.image, self.drawables, self.config, self.plugin_config = image, drawables, config, plugin_config
        self.frames = frames
        title = "Neural Style Transfer (frames)" if frames else "Neural Style Transfer"
        self.dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
        self.runner: PreviewRunner | None = None
        self.preview_timer = 0
        self.lay_out()
        self.add_style_thumbnail()
        if len(drawables) == 1:
            self.add_time_line((image.get_width(), image.get_height()) if frames else
                               (drawables[0].get_width(), drawables[0].get_height()))
            if isinstance(drawables[0], Gimp.Layer) and not drawables[0].is_group():
                self.add_live_preview()

    def run(self) -> bool:
        """True to go on with the run, False when the user cancelled."""
        try:
            while self.dialog.run():
                problem = self.problem()
                if problem is None:
                    return True
                Gimp.message(problem)
            return False
        finally:
            self.stop_preview()  # the server is free for the run at once
            self.dialog.destroy()

    def problem(self) -> str | None:
        """What stops the run, in words (an animation's frames are all taken: only the style counts)."""
        return style_problem(self.config, self.frames) if self.frames else problem_with(self.drawables, self.config)

    def lay_out(self) -> None:
        """What a painter needs first, then the rest folded away under "Advanced"."""
        dialog = self.dialog
        # Every choice as a combo box, as GIMP 3.0 shows them: 3.2 would show the short ones as radio
        # buttons, which get no Alt+letter mnemonic (GIMP says so in its log).
        choices = [argument_name(name) for name, widget in WIDGETS.items() if widget.choices]
        for name in ["style-source", *choices, "engine"]:
            dialog.get_widget(name, Gtk.ComboBox.__gtype__)
        dialog.fill_box("advanced-box", [*argument_names(advanced=True), *ENGINE_ARGUMENTS])
        dialog.get_label("advanced-label", "_Advanced", False, True)
        dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")
        dialog.fill([*STYLE_ARGUMENTS, *argument_names(advanced=False), "preview", "advanced"])
        dialog.set_sensitive_if_in("style-file", None, "style-source", string_values("file"), True)
        dialog.set_sensitive_if_in("style-layer", None, "style-source", string_values("layer"), True)
        dialog.set_sensitive_if_in("server-address", None, "engine", string_values("server"), True)

    def follow(self, names: list[str], callback) -> None:
        for name in names:
            self.config.connect("notify::" + name, callback)

    # --- the style's thumbnail, at the top -----------------------------------------------------------

    def add_style_thumbnail(self) -> None:
        picture = Gtk.Image()
        content = self.dialog.get_content_area()
        content.pack_start(picture, False, False, 6)
        content.reorder_child(picture, 0)

        def refresh(*_):
            thumbnail = self.style_thumbnail()
            picture.set_from_pixbuf(thumbnail)
            picture.set_visible(thumbnail is not None)

        self.follow(STYLE_ARGUMENTS, refresh)
        refresh()

    def style_thumbnail(self):
        if self.config.get_property("style-source") == "layer":
            layer = self.config.get_property("style-layer")
            return layer.get_thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE, Gimp.PixbufTransparency.SMALL_CHECKS) \
                if layer is not None else None
        style_file = self.config.get_property("style-file")
        if style_file is None or style_file.get_path() is None:
            return None
        try:
            return GdkPixbuf.Pixbuf.new_from_file_at_scale(style_file.get_path(), THUMBNAIL_SIZE, THUMBNAIL_SIZE, True)
        except GLib.Error:
            return None  # not an image GdkPixbuf reads: the engine's own check explains it

    # --- the time line, at the bottom ------------------------------------------------------------------

    def add_time_line(self, layer_size: tuple[int, int]) -> None:
        label = Gtk.Label(xalign=0.0)
        label.set_line_wrap(True)
        label.set_max_width_chars(48)
        self.dialog.get_content_area().pack_end(label, False, False, 6)

        def refresh(*_):
            on_server = self.config.get_property("engine") == "server"
            label.set_text(describe_time(option_values(self.config), layer_size, on_server,
                                         len(self.frames) if self.frames else 1))

        self.follow([*argument_names(), "engine"], refresh)
        refresh()
        label.show()

    # --- the live preview, under the thumbnail -------------------------------------------------------

    def add_live_preview(self) -> None:
        """The layer (or its selected part) restyled small with the dialog's settings, again shortly after
        each change, as GIMP's own filters preview; the Preview check box turns it off."""
        self.preview_content = read_small(self.drawables[0], PREVIEW_SIDE, selected_only=True)
        self.preview_picture = Gtk.Image()
        self.preview_status = Gtk.Label()
        self.preview_pane = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        self.preview_pane.pack_start(self.preview_picture, False, False, 0)
        self.preview_pane.pack_start(self.preview_status, False, False, 0)
        area = self.dialog.get_content_area()
        area.pack_start(self.preview_pane, False, False, 6)
        area.reorder_child(self.preview_pane, 1)  # under the style's thumbnail
        self.runner = PreviewRunner(self.plugin_config, GLib.idle_add)
        self.follow([*argument_names(), *STYLE_ARGUMENTS, *ENGINE_ARGUMENTS, "preview"], self.settings_changed)
        self.preview_pane.show_all()
        self.settings_changed()

    def settings_changed(self, *_) -> None:
        self.runner.cancel()  # what it paints is out of date: the engine stops it now, not after the delay
        self.cancel_timer()
        wanted = self.config.get_property("preview")
        self.preview_pane.set_visible(wanted)
        if wanted:
            self.preview_status.set_text("Preview: \u2026")
            self.preview_timer = GLib.timeout_add(self.runner.wait_ms(), self.start_preview)

    def start_preview(self) -> bool:
        self.preview_timer = 0
        problem = self.problem()
        if problem:
            self.preview_status.set_text(f"Preview: {problem}")
            return False
        try:
            server = server_of(self.config)
        except BridgeError as error:
            self.preview_status.set_text(f"Preview: {error}")
            return False
        if self.config.get_property("style-source") == "layer":
            style = read_small(self.config.get_property("style-layer"), STYLE_SIDE)
        else:
            style = Path(self.config.get_property("style-file").get_path())
        self.runner.request(option_values(self.config), self.preview_content, style, server, self.show_preview)
        return False  # once

    def show_preview(self, outcome) -> None:
        if outcome.rgba is not None:
            self.preview_picture.set_from_pixbuf(GdkPixbuf.Pixbuf.new_from_bytes(
                GLib.Bytes.new(outcome.rgba), GdkPixbuf.Colorspace.RGB, True, 8, outcome.width, outcome.height,
                outcome.width * 4))
            self.preview_status.set_text(f"Preview, {outcome.width}\u00d7{outcome.height}")
        else:
            self.preview_status.set_text(f"Preview: {outcome.message}" + ("\u2026" if not outcome.final else ""))

    def cancel_timer(self) -> None:
        if self.preview_timer:
            GLib.source_remove(self.preview_timer)
            self.preview_timer = 0

    def stop_preview(self) -> None:
        if self.runner is not None:
            self.cancel_timer()
            self.runner.cancel()
