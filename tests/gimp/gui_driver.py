# Runs inside the GIMP 3 window (python-fu-eval batch, GIMP 3.0 or 3.2 under Xvfb) for tests/gimp/test_gimp_gui.py.
# It opens the test image in a display, then answers the test's questions about the image
# (layers, dirty flag, pixels, leftovers) through files; the test itself clicks and types
# with xdotool. DRIVER_SETTINGS is prepended by the test.
import glob
import os
import sys
import tempfile

from gi.repository import Gegl, Gimp, Gio

Gegl.init(None)
EXAMPLES = DRIVER_SETTINGS["examples"]
EXCHANGE = DRIVER_SETTINGS["exchange"]
MARKER = DRIVER_SETTINGS["marker"]  # in the environment of every process this session's GIMP started
sys.path.insert(0, DRIVER_SETTINGS["helpers"])
from engine_processes import engine_processes  # noqa: E402
from gui_exchange import answer_requests  # noqa: E402


def pixels(drawable):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP))


def load_scaled(name, size):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(EXAMPLES, name)))
    scale = size / max(image.get_width(), image.get_height())
    image.scale(round(image.get_width() * scale), round(image.get_height() * scale))
    return image


def facts(image, source, source_before, baseline_ids):
    layers = image.get_layers()
    added = [layer for layer in layers if layer.get_id() not in baseline_ids]
    answer = {
        "layers": [layer.get_name() for layer in layers],
        "selected": [layer.get_name() for layer in image.get_selected_layers()],
        "dirty": image.is_dirty(),
        "source_unchanged": pixels(source) == source_before,
        "work_dirs": glob.glob(os.path.join(tempfile.gettempdir(), "gimp-style-transfer-*")),  # this session's TMPDIR
        "engines": engine_processes(MARKER),
        "added": [],
    }
    for layer in added:
        data = pixels(layer)
        colour = [v for i, v in enumerate(data) if i % 4 != 3][::7]
        original = [v for i, v in enumerate(source_before) if i % 4 != 3][::7]
        answer["added"].append({
            "name": layer.get_name(),
            "index": layers.index(layer),
            "size": [layer.get_width(), layer.get_height()],
            "has_mask": layer.get_mask() is not None,
            "distinct_values": len(set(colour)),
            "difference": sum(abs(a - b) for a, b in zip(colour, original)) / max(1, len(colour)) / 255,
        })
    return answer


image = load_scaled("tubingen.jpg", 224)
source = image.get_layers()[0]
source.set_name("photo")
painting = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                Gio.File.new_for_path(os.path.join(EXAMPLES, "the_scream.jpg")))
painting.set_name("painting")
image.insert_layer(painting, None, 0)
painting.scale(160, 200, False)
painting.set_visible(False)  # a reference painting kept hidden above the photo
image.set_selected_layers([source])
if DRIVER_SETTINGS.get("regions"):
    # Two regions to paint: the left half selected, the right half kept in a channel named "right".
    half = image.get_width() // 2
    image.select_rectangle(Gimp.ChannelOps.REPLACE, half, 0, image.get_width() - half, image.get_height())
    Gimp.Selection.save(image).set_name("right")
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, half, image.get_height())
    image.set_selected_layers([source])  # saving the selection selected the new channel instead
image.undo_enable()
image.clean_all()
source_before = pixels(source)
baseline_ids = {layer.get_id() for layer in image.get_layers()}
Gimp.Display.new(image)
Gimp.displays_flush()

answer_requests(EXCHANGE, lambda: facts(image, source, source_before, baseline_ids))
