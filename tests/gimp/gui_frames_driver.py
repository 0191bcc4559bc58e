# Runs inside the GIMP 3 window (python-fu-eval batch, GIMP 3.0 or 3.2 under Xvfb) for
# tests/gimp/test_gimp_gui_frames.py. It opens an animation (four frames of a pan over the example photo,
# named with GIMP's timing tags) in a display, then answers the test's questions about the open images
# through files. DRIVER_SETTINGS is prepended by the test.
import sys

from gi.repository import Gegl, Gimp

Gegl.init(None)
EXAMPLES = DRIVER_SETTINGS["examples"]
EXCHANGE = DRIVER_SETTINGS["exchange"]
MARKER = DRIVER_SETTINGS["marker"]
sys.path.insert(0, DRIVER_SETTINGS["helpers"])
from engine_processes import engine_processes  # noqa: E402
from gui_exchange import answer_requests  # noqa: E402
from gimp_animation import pan_animation  # noqa: E402

NAMES = ["pan 1 (150ms)", "pan 2 (150ms)", "pan 3 (150ms)", "pan 4 (300ms)"]


def pixels(drawable):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP))


image = pan_animation(EXAMPLES, NAMES, (160, 120), (224, 168), (-20, -24), 6)
image.undo_enable()
image.clean_all()
before = [pixels(layer) for layer in image.get_layers()]
Gimp.Display.new(image)
Gimp.displays_flush()


def facts():
    others = [other for other in Gimp.get_images() if other.get_id() != image.get_id()]
    answer = {"source_layers": [layer.get_name() for layer in image.get_layers()],
              "source_unchanged": [pixels(layer) for layer in image.get_layers()] == before,
              "source_dirty": image.is_dirty(), "engines": engine_processes(MARKER), "new_images": []}
    for other in others:
        layers = other.get_layers()
        answer["new_images"].append({
            "layers": [layer.get_name() for layer in layers],
            "size": [other.get_width(), other.get_height()],
            "distinct_values": [len(set(pixels(layer)[::11])) for layer in layers]})
    return answer


answer_requests(EXCHANGE, facts)
