# Runs inside GIMP 3 (python-fu-eval): exercises plug-in-neural-style-transfer-frames on an animation made
# of a real photo and prints one "RESULT {json}" line per case. CASE_SETTINGS is prepended by the test.
import json
import os
import sys

from gi.repository import Gegl, Gimp, Gio

Gegl.init(None)
sys.path.insert(0, CASE_SETTINGS["helpers"])
from gimp_animation import pan_animation  # noqa: E402
PROCEDURE = Gimp.get_pdb().lookup_procedure("plug-in-neural-style-transfer-frames")
EXAMPLES = CASE_SETTINGS["examples"]
OUT = CASE_SETTINGS["out"]
NAMES = ["Frame 1 (100ms) (replace)", "Frame 2 (120ms)", "Frame 3 (combine)", "Frame 4 (200ms)"]


def report(name, **facts):
    print("RESULT " + json.dumps({name: facts}), flush=True)


def pixels(drawable, width=None, height=None):
    """The drawable's RGBA bytes; with a size: over the image's area (offsets taken into account)."""
    if width is None:
        rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    else:
        _, x, y = drawable.get_offsets()
        rect = Gegl.Rectangle.new(-x, -y, width, height)
    return bytes(drawable.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


def mean_difference(a, b):
    pairs = [(x, y) for i, (x, y) in enumerate(zip(a, b)) if i % 4 != 3][::7]
    return sum(abs(x - y) for x, y in pairs) / max(1, len(pairs)) / 255


def animation():
    """Four frames of a pan over the photo, the third a smaller layer with offsets."""
    return pan_animation(EXAMPLES, NAMES, (96, 64), (128, 96), (-8, -16), 4, smaller=(2, (80, 56, -8, -4)))


def run(image, **options):
    config = PROCEDURE.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [image.get_layers()[0]])
    config.set_property("quality", "fast")
    config.set_property("max-size", 96)
    config.set_property("style-file", Gio.File.new_for_path(options.pop("style_file")))
    for key, value in options.items():
        config.set_property(key.replace("_", "-"), value)
    result = PROCEDURE.run(config)
    ok = result.index(0) == Gimp.PDBStatusType.SUCCESS
    new = result.index(1) if ok else None
    message = result.index(1) if not ok and result.length() > 1 and isinstance(result.index(1), str) else ""
    return ok, new, message


report("registered", found=PROCEDURE is not None, menu=PROCEDURE.get_menu_paths() if PROCEDURE else [],
       label=PROCEDURE.get_menu_label() if PROCEDURE else "")
style = os.path.join(EXAMPLES, "starry_night.jpg")

image = animation()
width, height = image.get_width(), image.get_height()
sources = list(reversed(image.get_layers()))
before = [pixels(layer, width, height) for layer in sources]
images_before = len(Gimp.get_images())
ok, new, message = run(image, style_file=style)
facts = {"ok": ok, "message": message, "source_unchanged": [pixels(l, width, height) for l in sources] == before,
         "source_count": len(image.get_layers()), "images_added": len(Gimp.get_images()) - images_before}
if ok and new is not None:
    frames = list(reversed(new.get_layers()))
    restyled = [pixels(layer) for layer in frames]
    facts.update(new_size=[new.get_width(), new.get_height()], names=[layer.get_name() for layer in frames],
                 sizes=[[layer.get_width(), layer.get_height()] for layer in frames],
                 styled=[mean_difference(a, b) for a, b in zip(restyled, before)],
                 alpha_kept=[a[3::4] == b[3::4] for a, b in zip(restyled, before)],
                 distinct=[len(set(data[::13])) for data in restyled])
    for number, layer in enumerate(frames):
        single = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
        single.insert_layer(Gimp.Layer.new_from_drawable(layer, single), None, 0)
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, single,
                       Gio.File.new_for_path(os.path.join(OUT, f"frame_{number}.png")), None)
        single.delete()
report("animation", **facts)

# One layer is no animation; a style layer that is one of the frames is refused: nothing is made.
for name, make, options in (("one_layer", lambda: Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(
                                os.path.join(EXAMPLES, "tubingen.jpg"))), {}),
                            ("style_is_a_frame", animation, {"style_source": "layer"})):
    image = make()
    if name == "style_is_a_frame":
        options["style_layer"] = image.get_layers()[1]
    images_before = len(Gimp.get_images())
    layers_before = [pixels(layer) for layer in image.get_layers()]
    ok, new, message = run(image, style_file=style, **options)
    report(name, ok=ok, message=message, images_added=len(Gimp.get_images()) - images_before,
           unchanged=[pixels(layer) for layer in image.get_layers()] == layers_before)
