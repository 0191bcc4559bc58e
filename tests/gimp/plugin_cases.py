# Runs inside GIMP 3 (python-fu-eval): exercises plug-in-neural-style-transfer on real images
# and prints one "RESULT {json}" line per case. CASE_SETTINGS is prepended by the test.
import json
import os

from gi.repository import Gegl, Gimp, Gio

Gegl.init(None)
PROCEDURE = Gimp.get_pdb().lookup_procedure("plug-in-neural-style-transfer")
EXAMPLES = CASE_SETTINGS["examples"]
OUT = CASE_SETTINGS["out"]
CONFIG = CASE_SETTINGS["config"]


def report(name, **facts):
    print("RESULT " + json.dumps({name: facts}), flush=True)


def load(name, size):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(EXAMPLES, name)))
    width, height = image.get_width(), image.get_height()
    scale = size / max(width, height)
    image.scale(round(width * scale), round(height * scale))
    return image


def pixels(drawable, fmt="R'G'B'A u8"):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def mean_difference(a, b):
    """Mean absolute difference of the colour channels (alpha left out), 0..1."""
    pairs = [(x, y) for i, (x, y) in enumerate(zip(a, b)) if i % 4 != 3][::5]
    return sum(abs(x - y) for x, y in pairs) / max(1, len(pairs)) / 255


def alpha_of(data):
    return data[3::4]


LAST_ERROR = [""]


def run(image, layer, **options):
    """True on success; the error message is kept in LAST_ERROR."""
    config = PROCEDURE.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    config.set_property("iterations", 15)
    config.set_property("max-size", 96)
    for key, value in options.items():
        if key == "style_file":
            config.set_property("style-file", Gio.File.new_for_path(value))
        else:
            config.set_property(key.replace("_", "-"), value)
    result = PROCEDURE.run(config)
    # A failed procedure returns its status and, second, its error message.
    LAST_ERROR[0] = result.index(1) if result.length() > 1 and isinstance(result.index(1), str) else ""
    return result.index(0) == Gimp.PDBStatusType.SUCCESS


def layer_facts(image, source, before, parent_children, **extra):
    """What a successful run must have done: one new layer right above the source, styled."""
    siblings = parent_children()
    index = [item.get_id() for item in siblings].index(source.get_id())
    added = siblings[index - 1] if index > 0 else None
    facts = {"count": len(siblings), "source_index": index, "source_name": source.get_name(),
             "source_unchanged": pixels(source) == before}
    if added is not None:
        after = pixels(added)
        _, ax, ay = added.get_offsets()
        _, sx, sy = source.get_offsets()
        facts.update(added_name=added.get_name(), same_size=(added.get_width(), added.get_height()) ==
                     (source.get_width(), source.get_height()), same_offsets=(ax, ay) == (sx, sy),
                     difference=mean_difference(after, before), has_mask=added.get_mask() is not None,
                     alpha_kept=alpha_of(after) == alpha_of(before),
                     distinct_values=len(set(after[::13])))
    facts.update(extra)
    return facts


def save(image, name):
    copy = image.duplicate()
    copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, copy, Gio.File.new_for_path(os.path.join(OUT, name)), None)
    copy.delete()


def set_config(**changes):
    """Change the plug-in's config file; returns the original to restore with write_config."""
    with open(CONFIG) as stream:
        original = json.load(stream)
    write_config({**original, **changes})
    return original


def write_config(config):
    with open(CONFIG, "w") as stream:
        json.dump(config, stream)


report("registered", found=PROCEDURE is not None, menu=PROCEDURE.get_menu_paths() if PROCEDURE else [],
       label=PROCEDURE.get_menu_label() if PROCEDURE else "")
style_path = os.path.join(EXAMPLES, "starry_night.jpg")

# A style file (the first run starts this computer's engine server).
image = load("tubingen.jpg", 128)
source = image.get_layers()[0]
before = pixels(source)
ok = run(image, source, style_file=style_path)
report("file_style", ok=ok, **layer_facts(image, source, before, image.get_layers))
save(image, "file_style.png")

# A style layer of the same image, through the local server.
image = load("tubingen.jpg", 128)
source = image.get_layers()[0]
scream = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                              Gio.File.new_for_path(os.path.join(EXAMPLES, "the_scream.jpg")))
image.insert_layer(scream, None, 0)
scream.set_visible(False)
before = pixels(source)
ok = run(image, source, style_source="layer", style_layer=scream)
report("layer_style", ok=ok, **layer_facts(image, source, before, image.get_layers))
save(image, "layer_style.png")

# A layer smaller than the image, with offsets, inside a layer group, with transparency.
image = load("tubingen.jpg", 160)
group = Gimp.GroupLayer.new(image, "group")
image.insert_layer(group, None, 0)
piece = Gimp.Layer.new(image, "piece", 96, 64, Gimp.ImageType.RGBA_IMAGE, 100, Gimp.LayerMode.NORMAL)
image.insert_layer(piece, group, 0)
piece.set_offsets(30, 20)
Gimp.context_set_foreground(Gimp.color_parse_css("#c06030"))
piece.fill(Gimp.FillType.FOREGROUND)
image.select_ellipse(Gimp.ChannelOps.REPLACE, 30, 20, 96, 64)
Gimp.Selection.invert(image)
piece.edit_clear()
Gimp.Selection.none(image)
before = pixels(piece)
ok = run(image, piece, style_file=style_path)
report("group_offsets_alpha", ok=ok, **layer_facts(image, piece, before, group.get_children))
save(image, "group_offsets_alpha.png")

# A high-bit-depth image (32-bit float, linear) and a gray image.
for name, change in (("float_image", lambda img: img.convert_precision(Gimp.Precision.FLOAT_LINEAR)),
                     ("gray_image", lambda img: img.convert_grayscale())):
    image = load("tubingen.jpg", 112)
    change(image)
    source = image.get_layers()[0]
    before = pixels(source)
    ok = run(image, source, style_file=style_path)
    report(name, ok=ok, precision=str(image.get_precision()),
           **layer_facts(image, source, before, image.get_layers))
    save(image, name + ".png")

# A selection: the new layer gets a mask from it.
image = load("tubingen.jpg", 128)
source = image.get_layers()[0]
image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 20, 60, 40)
before = pixels(source)
ok = run(image, source, style_file=style_path)
report("selection", ok=ok, **layer_facts(image, source, before, image.get_layers))
save(image, "selection.png")

# Failures leave the image as it was: a corrupt style file, the engine missing.
corrupt = os.path.join(OUT, "corrupt.png")
with open(corrupt, "wb") as stream:
    stream.write(b"\x89PNG\r\n\x1a\n this is not an image")
for name, options, config_change in (("corrupt_style", {"style_file": corrupt}, {}),
                                     ("engine_missing", {"style_file": style_path},
                                      {"python": "/nonexistent/venv/bin/python"}),
                                     ("same_layer_as_style", {"style_source": "layer"}, {})):
    image = load("tubingen.jpg", 96)
    source = image.get_layers()[0]
    if name == "same_layer_as_style":
        options["style_layer"] = source
    before = pixels(source)
    original_config = set_config(**config_change)
    ok = run(image, source, **options)
    write_config(original_config)
    report(name, ok=ok, count=len(image.get_layers()), source_unchanged=pixels(source) == before,
           message=LAST_ERROR[0])

# The bad-input corpus through the plug-in (tests/integration/test_bad_inputs.py has it through the CLI): every
# failing run leaves the layers, their pixels and the undo history (the image stays clean) as they were.
bad = os.path.join(OUT, "bad-inputs")
os.makedirs(bad, exist_ok=True)
with open(style_path, "rb") as stream:
    style_bytes = stream.read()
bad_styles = {"empty": b"", "truncated_jpeg": style_bytes[: len(style_bytes) // 3],
              "text_named_jpg": b"this is not a picture\n", "png_signature_only": b"\x89PNG\r\n\x1a\n"}
for name, data in bad_styles.items():
    with open(os.path.join(bad, name + ".jpg"), "wb") as stream:
        stream.write(data)
os.makedirs(os.path.join(bad, "a_folder.jpg"), exist_ok=True)
if not os.path.exists(os.path.join(bad, "fifo.png")):
    os.mkfifo(os.path.join(bad, "fifo.png"))
corpus = {name: os.path.join(bad, name + ".jpg") for name in bad_styles}
corpus.update(folder=os.path.join(bad, "a_folder.jpg"), fifo=os.path.join(bad, "fifo.png"),
              missing=os.path.join(bad, "missing.jpg"))
for name, path in corpus.items():
    image = load("tubingen.jpg", 96)
    image.undo_enable()
    image.clean_all()
    before = [pixels(layer) for layer in image.get_layers()]
    ok = run(image, image.get_layers()[0], style_file=path)
    report("corpus_" + name, ok=ok, count=len(image.get_layers()), dirty=image.is_dirty(),
           pixels_unchanged=[pixels(layer) for layer in image.get_layers()] == before,
           message=LAST_ERROR[0])

# Styles in regions: Starry Night in the selection (the left part) and The Scream in a channel (the right
# part) of a photo; then a layer style outside the selection and a file style in a layer mask. Each half
# must look like that style's whole-layer run there.
scream_path = os.path.join(EXAMPLES, "the_scream.jpg")


def saved_selection(image, name, x, width):
    """A channel of the image holding a rectangle of its full height (the selection is left empty)."""
    image.select_rectangle(Gimp.ChannelOps.REPLACE, x, 0, width, image.get_height())
    channel = Gimp.Selection.save(image)
    channel.set_name(name)
    Gimp.Selection.none(image)
    return channel


def halves_difference(result, reference, width):
    """Mean colour difference in the left and the right part, 12 px clear of the middle."""
    def part(data, x0, x1):
        rows = len(data) // (4 * width)
        return bytes(b for y in range(rows) for b in data[(y * width + x0) * 4:(y * width + x1) * 4])
    middle = width // 2
    return [mean_difference(part(result, *span), part(reference, *span))
            for span in ((0, middle - 12), (middle + 12, width))]


image = load("tubingen.jpg", 160)
source = image.get_layers()[0]
width = source.get_width()
whole_runs = {}
for name, path in (("starry", style_path), ("scream", scream_path)):
    ok = run(image, source, style_file=path, seed=9)
    whole_runs[name] = pixels(image.get_layers()[0])
    image.remove_layer(image.get_layers()[0])
saved_selection(image, "right", width // 2, width - width // 2)
image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, width // 2, image.get_height())
before = pixels(source)
ok = run(image, source, style_file=style_path, seed=9, style_region="selection",
         more_styles=json.dumps([{"file": scream_path, "region": "channel:right"}]))
facts = layer_facts(image, source, before, image.get_layers)
if ok:
    result = pixels(image.get_layers()[0])
    facts.update(to_starry=halves_difference(result, whole_runs["starry"], width),
                 to_scream=halves_difference(result, whole_runs["scream"], width))
report("regions_selection_and_channel", ok=ok, message=LAST_ERROR[0], **facts)
save(image, "regions_selection_and_channel.png")

image = load("tubingen.jpg", 160)
source = image.get_layers()[0]
starry_layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(style_path))
starry_layer.set_name("starry layer")
image.insert_layer(starry_layer, None, 0)
starry_layer.set_visible(False)
image.select_rectangle(Gimp.ChannelOps.REPLACE, width // 2, 0, width - width // 2, image.get_height())
masked = Gimp.Layer.new(image, "masked", width, image.get_height(), Gimp.ImageType.RGBA_IMAGE, 100,
                        Gimp.LayerMode.NORMAL)
image.insert_layer(masked, None, 2)
masked.add_mask(masked.create_mask(Gimp.AddMaskType.SELECTION))
before = pixels(source)
ok = run(image, source, style_source="layer", style_layer=starry_layer, seed=9, style_region="inverse",
         more_styles=json.dumps([{"file": scream_path, "region": "mask:masked"}]))
parent_layers = image.get_layers
facts = layer_facts(image, source, before, parent_layers)
if ok:
    added = parent_layers()[facts["source_index"] - 1]
    result = pixels(added)
    facts.update(to_starry=halves_difference(result, whole_runs["starry"], width),
                 to_scream=halves_difference(result, whole_runs["scream"], width))
report("regions_inverse_and_layer_mask", ok=ok, message=LAST_ERROR[0], **facts)
save(image, "regions_inverse_and_layer_mask.png")

# Regions that cannot be painted: each said in one line, the image as it was (layers, pixels, undo).
for name, selection, options in (
        ("region_channel_gone", False, {"style_region": "channel:gone"}),
        ("region_selection_empty", False, {"style_region": "selection"}),
        ("region_channel_empty", False, {"more_styles": json.dumps([{"file": scream_path,
                                                                      "region": "channel:black"}])}),
        ("region_all_white", False, {"more_styles": json.dumps([{"file": scream_path, "region": "channel:white"}])}),
        ("region_list_unreadable", True, {"more_styles": "[{\"file\": 3"})):
    image = load("tubingen.jpg", 96)
    source = image.get_layers()[0]
    black = Gimp.Channel.new(image, "black", image.get_width(), image.get_height(), 100.0,
                             Gimp.color_parse_css("black"))  # a new channel is empty: nothing selected
    image.insert_channel(black, None, 0)
    saved_selection(image, "white", 0, image.get_width())
    if selection:
        image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 40, 40)
    image.undo_enable()
    image.clean_all()
    before = [pixels(layer) for layer in image.get_layers()]
    ok = run(image, source, style_file=style_path, **options)
    report(name, ok=ok, count=len(image.get_layers()), dirty=image.is_dirty(),
           pixels_unchanged=[pixels(layer) for layer in image.get_layers()] == before, message=LAST_ERROR[0])

# The dialog's palette: the style files of the successful runs, the last first (the last run's first style
# was a layer, its second The Scream).
try:
    with open(os.path.join(Gimp.directory(), "neural-style-transfer-recent-styles.json")) as stream:
        recent_paths = json.load(stream)
except (OSError, ValueError) as error:
    recent_paths = [str(error)]
report("recent_styles", paths=recent_paths)
