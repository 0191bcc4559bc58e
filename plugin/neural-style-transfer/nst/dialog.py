"""The procedure's dialog, one class (as spyro-plus.py's SpyroWindow): the settings GIMP builds from
the procedure's arguments, the style's thumbnail, a live preview of the layer restyled small and a
line that says how long the run will take, each following the settings as they change."""

from __future__ import annotations

import os
from pathlib import Path


from gi.repository import GdkPixbuf, Gimp, GimpUi, Gio, GLib, GObject, Gtk

from stylize_core.contract.schedule import PREVIEW_SIDE

from .bridge import BridgeError, chosen_server, describe_time
from .layers import (further_styles, problem_with, read_small_part, region_choices, region_masks, style_pictures,
                     style_regions, styles_problem)
from .preview import STYLE_SIDE, PreviewRunner
from .recent import recent_styles
from .styles import (MAX_STYLES, STROKE_RANGE, WEIGHT_RANGE, FurtherStyle, Region, StyleListError,
                     further_styles_text)
from .widgets import WIDGETS, argument_name, argument_names

THUMBNAIL_SIZE = 128
ROW_THUMBNAIL_SIZE = 48
STYLE_ARGUMENTS = ["style-source", "style-file", "style-layer"]
STYLE_LIST_ARGUMENTS = ["style-region", "more-styles"]
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
        """What stops the run, in words (an animation's frames are all taken: only the styles count)."""
        for number, row in enumerate(self.style_rows, start=2):
            if row.value() is None:
                return f"Style {number} has no image or layer: choose one, or remove it."
        if self.frames:
            return styles_problem(self.image, self.config, self.frames)
        return problem_with(self.image, self.drawables, self.config)

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
        self.lay_out_styles(dialog.fill_box("style-box", STYLE_ARGUMENTS))
        dialog.fill(["style-box", *argument_names(advanced=False), "preview", "advanced"])
        dialog.set_sensitive_if_in("style-file", None, "style-source", string_values("file"), True)
        dialog.set_sensitive_if_in("style-layer", None, "style-source", string_values("layer"), True)
        dialog.set_sensitive_if_in("server-address", None, "engine", string_values("server"), True)

    # --- the styles: the first one's region, and the further styles, each in a row --------------------

    def lay_out_styles(self, box) -> None:
        """Under the first style's source: its region, then a row per further style and a button to add one."""
        recent = self.recent_styles_row()
        if recent is not None:
            box.pack_start(recent, False, False, 0)
            box.reorder_child(recent, 0)
        self.regions = region_choices(self.image)
        self.first_region = self.region_combo(self.config.get_property("style-region"))
        self.first_region.connect("changed", lambda combo: self.config.set_property(
            "style-region", combo.get_active_id() or "whole"))
        box.pack_start(labelled("Region o_f the layer", self.first_region), False, False, 0)
        self.style_rows: list[StyleRow] = []
        self.rows_box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        box.pack_start(self.rows_box, False, False, 0)
        self.add_button = Gtk.Button.new_with_mnemonic("Add an e_xtra style")
        self.add_button.set_tooltip_text("Another style, in a region of its own (a selection, a channel, a layer "
                                         "mask); weights and stroke sizes are each style's own")
        self.add_button.connect("clicked", lambda _: self.add_style_row(FurtherStyle()).focus_picture())
        box.pack_start(self.add_button, False, False, 0)
        try:
            remembered = further_styles(self.config)
        except StyleListError:
            remembered = []  # a script's bad text: the dialog starts with the first style alone
        for style in remembered:
            self.add_style_row(style, save=False)
        box.show_all()

    def recent_styles_row(self):
        """The style files used last, a thumbnail button each: a click makes one the first style."""
        paths = recent_styles(Path(Gimp.directory()))
        if not paths:
            return None
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=4)
        row.pack_start(Gtk.Label(label="Recent", xalign=0.0), False, False, 0)
        for path in paths:
            try:
                picture = GdkPixbuf.Pixbuf.new_from_file_at_scale(path, ROW_THUMBNAIL_SIZE, ROW_THUMBNAIL_SIZE, True)
            except GLib.Error:
                continue
            button = Gtk.Button()
            button.set_image(Gtk.Image.new_from_pixbuf(picture))
            button.set_tooltip_text(os.path.basename(path))
            button.connect("clicked", lambda _, chosen=path: self.use_style_file(chosen))
            row.pack_start(button, False, False, 0)
        return row

    def use_style_file(self, path: str) -> None:
        self.config.set_property("style-source", "file")
        self.config.set_property("style-file", Gio.File.new_for_path(path))

    def region_combo(self, chosen: str) -> Gtk.ComboBoxText:
        """The image's regions to choose from; a remembered one that is gone is kept (and said by problem())."""
        combo = Gtk.ComboBoxText()
        regions = list(self.regions)
        try:
            region = Region.parse(chosen)
        except StyleListError:
            region = Region()
        if region not in regions:
            regions.append(region)
        for choice in regions:
            combo.append(choice.text, choice.label)
        combo.set_active_id(region.text)
        return combo

    def add_style_row(self, style: FurtherStyle, save: bool = True) -> "StyleRow":
        row = StyleRow(self, style, len(self.style_rows) + 2)
        self.style_rows.append(row)
        self.rows_box.pack_start(row.widget, False, False, 0)
        row.widget.show_all()
        row.show_source()
        row.refresh_thumbnail()
        self.add_button.set_sensitive(len(self.style_rows) + 1 < MAX_STYLES)
        if save:
            self.save_style_rows()
        return row

    def remove_style_row(self, row: "StyleRow") -> None:
        self.style_rows.remove(row)
        row.widget.destroy()
        for number, each in enumerate(self.style_rows, start=2):
            each.set_number(number)
        self.add_button.set_sensitive(True)
        self.save_style_rows()

    def save_style_rows(self) -> None:
        """The rows into the procedure's "more-styles" text (kept for Repeat and Re-Show; its change
        starts a new preview); a row without a picture yet is left out until it has one."""
        styles = [style for style in (row.value() for row in self.style_rows) if style is not None]
        self.config.set_property("more-styles", further_styles_text(styles))

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
        self.preview_picture = Gtk.Image()
        self.preview_status = Gtk.Label()
        self.preview_pane = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=4)
        self.preview_pane.pack_start(self.preview_picture, False, False, 0)
        self.preview_pane.pack_start(self.preview_status, False, False, 0)
        area = self.dialog.get_content_area()
        area.pack_start(self.preview_pane, False, False, 6)
        area.reorder_child(self.preview_pane, 1)  # under the style's thumbnail
        self.runner = PreviewRunner(self.plugin_config, GLib.idle_add)
        self.follow([*argument_names(), *STYLE_ARGUMENTS, *STYLE_LIST_ARGUMENTS, *ENGINE_ARGUMENTS, "preview"],
                    self.settings_changed)
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
        # With regions the preview shows the whole layer, so that every region's style is seen; without, the
        # selected part (which the new layer's mask will show).
        regions = style_regions(self.config)
        whole_layer = any(not region.is_whole for region in regions)
        content, part, scale = read_small_part(self.drawables[0], PREVIEW_SIDE, selected_only=not whole_layer)
        masks = region_masks(self.image, regions, self.drawables[0], part, scale) if whole_layer else None
        self.runner.request(option_values(self.config), content, style_pictures(self.image, self.config, STYLE_SIDE),
                            server, self.show_preview, masks=masks, further=further_styles(self.config))
        return False  # once

    def show_preview(self, outcome) -> None:
        if outcome.rgba is not None:
            self.preview_picture.set_from_pixbuf(GdkPixbuf.Pixbuf.new_from_bytes(
                GLib.Bytes.new(outcome.rgba), GdkPixbuf.Colorspace.RGB, True, 8, outcome.width, outcome.height,
                outcome.width * 4))
            self.preview_status.set_text(f"Preview, {outcome.width}\u00d7{outcome.height}" +
                                         ("" if outcome.final else f": {outcome.message}\u2026"))
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


def labelled(text: str, widget) -> Gtk.Box:
    box = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    label = Gtk.Label.new_with_mnemonic(text)
    label.set_xalign(0.0)
    label.set_mnemonic_widget(widget)
    box.pack_start(label, False, False, 0)
    box.pack_start(widget, True, True, 0)
    return box


class StyleRow:
    """One further style in the dialog: its thumbnail, source (a file or a layer), weight, stroke size and
    region, and a button that removes it; every change is saved into the dialog's config at once."""

    def __init__(self, dialog: NeuralStyleDialog, style: FurtherStyle, number: int):
        self.dialog = dialog
        self.thumbnail = Gtk.Image()
        self.title = Gtk.Label(xalign=0.0)
        self.source = Gtk.ComboBoxText()
        self.source.append("file", "Image file")
        self.source.append("layer", "Layer")
        self.file = Gtk.FileChooserButton(title="Style image", action=Gtk.FileChooserAction.OPEN)
        if style.file:
            self.file.set_filename(style.file)
        self.layer = Gtk.ComboBoxText()
        for layer in dialog.image.get_layers():
            if not layer.is_group():
                self.layer.append(layer.get_name(), layer.get_name())
        if style.layer:
            if not self.layer.set_active_id(style.layer):  # gone since: kept, and problem() says so
                self.layer.append(style.layer, style.layer)
                self.layer.set_active_id(style.layer)
        self.source.set_active_id(style.source)
        self.weight = spin(WEIGHT_RANGE, 0.1, style.weight, "How strongly this style paints, against the first "
                           "style's 1")
        self.stroke = spin(STROKE_RANGE, 0.05, style.stroke, "This style's stroke size (the first style's is "
                           "Advanced \u203a Stroke size)")
        self.region = dialog.region_combo(style.region)
        remove = Gtk.Button.new_with_label("Remove")
        remove.connect("clicked", lambda _: dialog.remove_style_row(self))
        grid = Gtk.Grid(column_spacing=6, row_spacing=4)
        grid.attach(self.thumbnail, 0, 0, 1, 3)
        grid.attach(self.title, 1, 0, 1, 1)
        grid.attach(self.source, 2, 0, 1, 1)
        grid.attach(self.file, 3, 0, 2, 1)
        grid.attach(self.layer, 3, 0, 2, 1)
        grid.attach(labelled("Weight", self.weight), 1, 1, 2, 1)
        grid.attach(labelled("Stroke size", self.stroke), 3, 1, 2, 1)
        grid.attach(labelled("Region", self.region), 1, 2, 3, 1)
        grid.attach(remove, 4, 2, 1, 1)
        self.widget = Gtk.Frame()
        self.widget.add(grid)
        self.set_number(number)
        self.source.connect("changed", lambda _: (self.show_source(), self.changed()))
        self.file.connect("file-set", lambda _: self.changed())
        self.layer.connect("changed", lambda _: self.changed())
        for widget in (self.weight, self.stroke):
            widget.connect("value-changed", lambda _: self.changed())
        self.region.connect("changed", lambda _: self.changed())

    def focus_picture(self) -> None:
        """The keyboard goes to the picture chooser: a new row's first need."""
        # mnemonic_activate: a file chooser button takes the focus into its inner button this way.
        (self.layer if self.source.get_active_id() == "layer" else self.file).mnemonic_activate(False)

    def set_number(self, number: int) -> None:
        self.title.set_text(f"Style {number}")

    def show_source(self) -> None:
        """Only the file chooser or the layer list, as the source says."""
        by_layer = self.source.get_active_id() == "layer"
        self.file.set_visible(not by_layer)
        self.layer.set_visible(by_layer)

    def changed(self) -> None:
        self.refresh_thumbnail()
        self.dialog.save_style_rows()

    def value(self) -> FurtherStyle | None:
        """The style this row says, or None while it has no picture."""
        if self.source.get_active_id() == "layer":
            picture = {"layer": self.layer.get_active_id() or ""}
        else:
            picture = {"file": self.file.get_filename() or ""}
        if not any(picture.values()):
            return None
        return FurtherStyle(**picture, weight=round(self.weight.get_value(), 3),
                            stroke=round(self.stroke.get_value(), 3), region=self.region.get_active_id() or "whole")

    def refresh_thumbnail(self) -> None:
        style = self.value()
        thumbnail = None
        if style is not None and style.layer:
            layer = self.dialog.image.get_layer_by_name(style.layer)
            if layer is not None:
                thumbnail = layer.get_thumbnail(ROW_THUMBNAIL_SIZE, ROW_THUMBNAIL_SIZE,
                                                Gimp.PixbufTransparency.SMALL_CHECKS)
        elif style is not None:
            try:
                thumbnail = GdkPixbuf.Pixbuf.new_from_file_at_scale(style.file, ROW_THUMBNAIL_SIZE, ROW_THUMBNAIL_SIZE,
                                                                    True)
            except GLib.Error:
                thumbnail = None
        self.thumbnail.set_from_pixbuf(thumbnail)


def spin(value_range: tuple[float, float], step: float, value: float, tooltip: str) -> Gtk.SpinButton:
    button = Gtk.SpinButton.new_with_range(value_range[0], value_range[1], step)
    button.set_digits(2)
    button.set_value(value)
    button.set_tooltip_text(tooltip)
    return button
