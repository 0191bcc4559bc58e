# Runs inside GIMP 3 (python-fu-eval) for tests/gimp/test_gimp_sandboxed.py, in a root where neither the
# checkout nor the virtual environment exists, as in Flatpak's sandbox: the plug-in reaches the
# engine only through servers on the host. Prints one "RESULT {json}" line per case.
# CASE_SETTINGS is prepended by the test.
import json
import os

from gi.repository import Gegl, Gimp, Gio

Gegl.init(None)
PROCEDURE = Gimp.get_pdb().lookup_procedure("plug-in-neural-style-transfer")
SETTINGS = CASE_SETTINGS


def report(case, **facts):
    print("RESULT " + json.dumps({case: facts}), flush=True)


def pixels(drawable):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP))


def load(name, size):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(SETTINGS["images"], name)))
    scale = size / max(image.get_width(), image.get_height())
    image.scale(round(image.get_width() * scale), round(image.get_height() * scale))
    return image


def set_server(address):
    with open(SETTINGS["config"]) as stream:
        config = json.load(stream)
    config["server"] = address
    with open(SETTINGS["config"], "w") as stream:
        json.dump(config, stream)


def restyle(name, iterations=15, **options):
    """Run the filter on a fresh image; report what it did to the image and what it said."""
    image = load("tubingen.jpg", 112)
    source = image.get_layers()[0]
    before = pixels(source)
    config = PROCEDURE.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [source])
    config.set_property("iterations", iterations)
    config.set_property("max-size", 64)
    config.set_property("style-file", Gio.File.new_for_path(os.path.join(SETTINGS["images"], "starry_night.jpg")))
    for key, value in options.items():
        config.set_property(key.replace("_", "-"), value)
    result = PROCEDURE.run(config)
    succeeded = result.index(0) == Gimp.PDBStatusType.SUCCESS
    message = "" if succeeded else Gimp.get_pdb().get_last_error()  # before any other call replaces it
    layers = image.get_layers()
    facts = {"ok": succeeded, "count": len(layers), "source_unchanged": pixels(source) == before, "message": message}
    if len(layers) == 2:
        after = pixels(layers[0])
        facts["name"] = layers[0].get_name()
        facts["difference"] = sum(abs(a - b) for a, b in zip(after[::17], before[::17])) / (len(after[::17]) * 255)
    report(name, **facts)


def every_case():
    with open(SETTINGS["config"]) as stream:
        installed = json.load(stream)
    # (Empty folders may stand at those paths: the mount points of earlier tests in this root.)
    report("isolation", checkout_seen=os.path.exists(os.path.join(SETTINGS["checkout"], "stylize_core")),
           venv_seen=os.path.exists(os.path.join(SETTINGS["venv"], "bin", "python")),
           engine_copies=sorted(name for name in os.listdir(os.path.join(os.path.dirname(SETTINGS["config"]), "stylize_core", "contract"))
                                if name.endswith(".py")),
           python=installed["python"], server=installed["server"])
    restyle("unix_socket")
    set_server(SETTINGS["loopback"])
    restyle("loopback_token")
    restyle("tls_chosen_in_the_dialog", engine="server", server_address=SETTINGS["tls"])
    restyle("wrong_token", engine="server", server_address=SETTINGS["wrong_token"])
    restyle("unreachable", engine="server", server_address=SETTINGS["unreachable"])
    restyle("server_killed_mid_run", iterations=400, engine="server", server_address=SETTINGS["doomed"])
    set_server(SETTINGS["unix"])


if "one_run_iterations" in SETTINGS:  # one of two GIMPs sharing a server: one run
    restyle("one_run", iterations=SETTINGS["one_run_iterations"])
else:
    every_case()
