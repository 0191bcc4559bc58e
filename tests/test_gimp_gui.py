"""The plug-in as a painter uses it: the real GIMP 3 window under Xvfb, driven with keys and clicks.

One GIMP session plays a painter's afternoon, in order: open Filters > Artistic >
Neural Style Transfer from the menu, choose a style file in the dialog's file chooser,
run; Ctrl+Z, Ctrl+Y; Filters > Re-Show Last, switch to a style layer picked in the
layer chooser, run; start a long run and press the progress bar's Cancel button.
The tests below check what each step left. Screenshots go to artifacts/gui/.
"""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "gimp"))
from gimp_runner import CHECKOUT, install_plugin, require_gimp, venv_paths  # noqa: E402
from gui_session import GimpWindow  # noqa: E402

pytestmark = pytest.mark.gimp
SHOTS = CHECKOUT / "artifacts" / "gui"
MAIN_WINDOW = "^GNU Image Manipulation Program$"
DIALOG = "^Neural Style Transfer$"
RUN_TIMEOUT = 600


def wait_for(window: GimpWindow, condition, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        if window.tool("xdotool", "search", "--onlyvisible", "--name", "^GIMP Message$", check=False).strip():
            raise RuntimeError(f"{what}: GIMP shows an error message (failure.png)")
        facts = window.ask()
        if condition(facts):
            return facts
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still {json.dumps(facts)[:600]}")
        time.sleep(0.5)


def engine_busy_ticks(window: GimpWindow, seconds: float) -> int:
    """CPU ticks this checkout's engine processes used over `seconds` (0 when idle or gone); other
    jobs' stylize_core processes on the machine are not the plug-in's."""
    def ticks():
        return {pid: p["ticks"] for pid, p in window.ask()["engines"].items() if str(CHECKOUT / ".venv") in p["command"]}
    before = ticks()
    time.sleep(seconds)
    return sum(value - before.get(pid, 0) for pid, value in ticks().items())


def choose_style_file(window: GimpWindow, dialog: str, path: Path) -> None:
    window.focus(dialog)
    window.keys("alt+m", "space")  # "Style image": its file chooser
    chooser = window.wait_window("^Select a File$")
    window.focus(chooser)
    window.keys("ctrl+l")  # the chooser's location field
    time.sleep(0.5)
    window.type(str(path))
    time.sleep(0.5)
    window.keys("Return")
    assert window.window_gone(chooser), "the file chooser did not close"


def set_iterations(window: GimpWindow, dialog: str, iterations: int) -> None:
    window.focus(dialog)
    window.keys("alt+a", "alt+i", "ctrl+a")  # open "Advanced", then "Iterations"
    window.type(str(iterations))
    window.keys("Tab")


def choose_style_layer(window: GimpWindow, dialog: str) -> None:
    window.focus(dialog)
    window.keys("alt+y")  # the "Style layer" button opens GIMP's layer chooser
    chooser = window.wait_window("^Choose drawable")
    # The chooser lists this image's layers, the hidden "painting" first: click it, then OK.
    window.click_in(chooser, 325, 82)
    window.click_in(chooser, 298, 299)
    assert window.window_gone(chooser), "the layer chooser did not close"


def screen_region(screenshot: Path, box: tuple[int, int, int, int]):
    from PIL import Image
    with Image.open(screenshot) as picture:
        return picture.convert("RGB").crop(box)


def thumbnail_colours(window: GimpWindow, dialog: str, screenshot: Path) -> int:
    """Distinct colours where the dialog shows the style's thumbnail: a picture has thousands,
    the labels and buttons that sit there without one have a few hundred."""
    x, y, _, _ = window.geometry(dialog)
    return len(screen_region(screenshot, (x + 130, y + 10, x + 290, y + 100)).getcolors(1 << 20))


def press_ok(window: GimpWindow, dialog: str) -> None:
    window.focus(dialog)
    window.keys("alt+o")
    assert window.window_gone(dialog), "the dialog did not close on OK"


def run_styled(window: GimpWindow, dialog: str, dialog_shot: str, result_shot: str, what: str):
    """Screenshots the filled-in dialog, presses OK and waits for the new layer.

    Returns the thumbnail's distinct colours and the image's facts after the run."""
    colours = thumbnail_colours(window, dialog, window.screenshot(SHOTS / dialog_shot))
    press_ok(window, dialog)
    facts = wait_for(window, lambda f: f["added"] and not f["work_dirs"], RUN_TIMEOUT,
                     f"the {what} run did not add its layer")
    window.screenshot(SHOTS / result_shot)
    return colours, facts


@pytest.fixture(scope="module")
def afternoon(tmp_path_factory):
    """Runs the whole session; returns what each step saw, keyed by step."""
    root = require_gimp()
    work = tmp_path_factory.mktemp("gimp-gui")
    profile = work / "profile"
    venv = CHECKOUT / ".venv"
    config = install_plugin(profile, venv, worker_idle_timeout=60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    window = GimpWindow(root, profile, [CHECKOUT, work, *venv_paths(venv)],
                        {"examples": str(CHECKOUT / "examples")}, CHECKOUT / "tests" / "gimp" / "gui_driver.py")
    seen = {}
    try:
        seen["start"] = window.ask(timeout=300)
        play(window, seen, config)
    except Exception as error:  # later tests report which step broke
        seen["error"] = f"{type(error).__name__}: {error}"
        window.screenshot(SHOTS / "failure.png")
    finally:
        (SHOTS / "gimp.log").write_text(window.log_path.read_text(errors="replace"))
        (SHOTS / "session.json").write_text(json.dumps(seen, indent=1))
        window.close()
    return seen


def play(window: GimpWindow, seen: dict, config: Path) -> None:
    try:  # a fresh profile greets with the welcome dialog; close it as a person would
        welcome = window.wait_window("^Welcome to GIMP", timeout=20)
        window.focus(welcome)
        window.keys("Escape")
    except TimeoutError:
        pass
    main = window.wait_window(MAIN_WINDOW)
    window.tool("xdotool", "windowsize", "--sync", main, "1280", "860")

    # Filters > Artistic > Neural Style Transfer..., by its menu mnemonics.
    window.focus(main)
    window.keys("alt+r", "a")
    window.screenshot(SHOTS / "1-menu-filters-artistic.png")
    window.keys("n")
    dialog = window.wait_window(DIALOG)
    choose_style_file(window, dialog, CHECKOUT / "examples" / "starry_night.jpg")
    set_iterations(window, dialog, 8)
    seen["thumbnail_colours_file"], seen["file_style"] = run_styled(
        window, dialog, "2-dialog-file-style.png", "3-result-file-style.png", "file-style")

    # One Ctrl+Z takes back everything the filter did; Ctrl+Y brings it back.
    window.focus(main)
    window.keys("ctrl+z")
    seen["undo"] = window.ask()
    window.keys("ctrl+y")
    seen["redo"] = window.ask()
    window.keys("alt+e")
    window.screenshot(SHOTS / "4-edit-menu-undo-label.png")
    window.keys("Escape", "Escape", "ctrl+z")

    # Filters > Re-Show Last: the dialog again, with the last values; now a style layer.
    window.focus(main)
    window.keys("shift+ctrl+f")
    dialog = window.wait_window(DIALOG)
    window.focus(dialog)
    window.keys("alt+u", "space", "Down", "Return")  # style source: Layer
    choose_style_layer(window, dialog)
    seen["thumbnail_colours_layer"], seen["layer_style"] = run_styled(
        window, dialog, "5-dialog-layer-style.png", "6-result-layer-style.png", "layer-style")

    # A long run, cancelled from the progress bar in the image window's status bar.
    seen["before_cancel"] = window.ask()
    window.focus(main)
    window.keys("shift+ctrl+f")
    dialog = window.wait_window(DIALOG)
    set_iterations(window, dialog, 400)  # the style layer is remembered: OK runs at once
    press_ok(window, dialog)
    # The engine (the warm server since the first run) starts computing: the run has begun.
    wait_for(window, lambda f: engine_busy_ticks(window, 0.5) > 5, 120, "the long run did not start")
    time.sleep(8)  # well into the optimisation
    x, y, width, height = window.geometry(main)
    status_bar = (x + 200, y + height - 40, x + width - 300, y + height)
    earlier = screen_region(window.screenshot(SHOTS / "7-progress-earlier.png"), status_bar).tobytes()
    seen["busy_ticks_while_running"] = engine_busy_ticks(window, 1.5)
    window.focus(main)
    window.keys("alt+e")  # the window answers while the engine works
    window.screenshot(SHOTS / "8-menu-during-run.png")
    window.keys("Escape")
    later = screen_region(window.screenshot(SHOTS / "9-progress.png"), status_bar).tobytes()
    seen["progress_bar_moved"] = earlier != later
    window.click_in(main, width - 273, height - 18)  # the status bar's Cancel button
    cancelled = time.monotonic()
    wait_for(window, lambda f: engine_busy_ticks(window, 0.5) <= 2, 30, "the engine kept computing after the cancel")
    seen["cancel_seconds"] = time.monotonic() - cancelled
    seen["after_cancel"] = window.ask()
    seen["busy_ticks_after_cancel"] = engine_busy_ticks(window, 2.0)
    window.screenshot(SHOTS / "10-after-cancel.png")

    # The engine gone (a moved project, say): Filters > Repeat Last explains what to do.
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "python": "/nonexistent/venv/bin/python"}))
    seen["before_missing_engine"] = window.ask()
    window.focus(main)
    window.keys("ctrl+f")
    message = window.wait_window("^GIMP Message$", timeout=30)
    seen["after_missing_engine"] = window.ask()
    window.screenshot(SHOTS / "11-message-engine-missing.png")
    config.write_text(json.dumps(settings))
    window.focus(message)
    window.keys("Return")

    window.focus(main)
    window.keys("alt+e", "h")  # Edit > Undo History: one entry per run, named after the filter
    time.sleep(1)
    window.screenshot(SHOTS / "12-undo-history.png")


def step(afternoon, name):
    if name not in afternoon:
        pytest.fail(f"the GUI session stopped before '{name}': {afternoon.get('error')}")
    return afternoon[name]


def test_filter_from_the_menu_with_a_style_file_adds_one_styled_layer(afternoon):
    start, facts = step(afternoon, "start"), step(afternoon, "file_style")
    assert not start["dirty"] and start["layers"] == ["painting", "photo"]
    assert facts["layers"] == ["painting", "photo (starry_night)", "photo"], "one new layer, right above the photo"
    added = facts["added"][0]
    assert added["size"] == [224, 168] and not added["has_mask"]
    assert added["difference"] > 0.04 and added["distinct_values"] > 20, "the new layer is not styled"
    assert facts["source_unchanged"] and facts["dirty"]


def test_one_ctrl_z_removes_everything_and_ctrl_y_restores_it(afternoon):
    undo, redo = step(afternoon, "undo"), step(afternoon, "redo")
    assert undo["layers"] == ["painting", "photo"] and undo["source_unchanged"]
    assert not undo["dirty"], "one Ctrl+Z must undo the whole filter (the image is clean again)"
    assert redo["layers"] == ["painting", "photo (starry_night)", "photo"] and redo["dirty"]


def test_reshow_last_then_a_style_layer_chosen_in_the_dialog(afternoon):
    facts = step(afternoon, "layer_style")
    assert facts["layers"] == ["painting", "photo (painting)", "photo"]
    added = facts["added"][0]
    assert added["difference"] > 0.04 and added["distinct_values"] > 20
    assert facts["source_unchanged"]


def test_cancel_from_the_progress_bar_stops_the_engine_and_leaves_the_image(afternoon):
    before, after = step(afternoon, "before_cancel"), step(afternoon, "after_cancel")
    assert afternoon["busy_ticks_while_running"] > 20, "the engine was not computing when cancelled"
    assert afternoon["progress_bar_moved"], "the progress bar and its text did not change during the run"
    assert afternoon["cancel_seconds"] < 5, "the engine went on computing after the cancel"
    assert after["layers"] == before["layers"] and after["dirty"] == before["dirty"]
    assert after["source_unchanged"] and after["work_dirs"] == []
    assert afternoon["busy_ticks_after_cancel"] <= 10, "the engine kept computing after the cancel"


def test_a_missing_engine_leaves_the_image_as_it_was(afternoon):
    before, after = step(afternoon, "before_missing_engine"), step(afternoon, "after_missing_engine")
    assert after["layers"] == before["layers"] and after["dirty"] == before["dirty"]
    assert after["source_unchanged"] and after["work_dirs"] == []


def test_the_dialog_shows_the_chosen_style(afternoon):
    assert step(afternoon, "thumbnail_colours_file") > 2000, "no thumbnail of the style file"
    assert step(afternoon, "thumbnail_colours_layer") > 2000, "no thumbnail of the style layer"
