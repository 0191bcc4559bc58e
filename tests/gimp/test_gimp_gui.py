"""The plug-in as a painter uses it: the real GIMP 3 window under Xvfb, driven with keys and clicks.

One GIMP session plays a painter's afternoon, in order: open Filters > Artistic >
Neural Style Transfer from the menu, choose a style file in the dialog's file chooser,
run; Ctrl+Z, Ctrl+Y; Filters > Re-Show Last, switch to a style layer picked in the
layer chooser, run; start a long run and press the progress bar's Cancel button.
The tests below check what each step left. The session runs in GIMP 3.0 and in 3.2;
screenshots go to artifacts/gui/<version>/. The two differ in places: 3.2 titles the
layer chooser differently and moves the status bar's Cancel button, so windows are found
by what they are and buttons by keyboard or by what they show. (The dialog asks for combo
boxes for its choices in both: 3.2 would show short ones as radio buttons, without mnemonics.)
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gimp_runner import CHECKOUT, install_plugin, venv_paths
from gui_session import GimpWindow, fresh_folder, step

SHOTS = CHECKOUT / "artifacts" / "gui"
DIALOG = "^Neural Style Transfer$"
RUN_TIMEOUT = 600


def painted(facts: dict) -> bool:
    """The run's layer is there and its pixels are in: a new layer is one flat colour until the
    plug-in writes them, a moment after it inserts the layer."""
    return bool(facts["added"]) and all(layer["distinct_values"] > 1 for layer in facts["added"])


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


def engine_busy_ticks(window: GimpWindow, seconds: float, seen: dict) -> int:
    """CPU ticks the session's engine processes used over `seconds` (0 when idle or gone);
    their pids are added to seen["engine_pids"]."""
    before = {pid: p["ticks"] for pid, p in window.ask()["engines"].items()}
    time.sleep(seconds)
    after = {pid: p["ticks"] for pid, p in window.ask()["engines"].items()}
    seen.setdefault("engine_pids", []).extend(int(pid) for pid in {*before, *after})
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


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
    """Picks the hidden "painting" in GIMP's layer chooser, with the keyboard.

    The chooser is the window titled "Choose..." that the Style layer button opens
    ("Choose drawable: Style layer" in GIMP 3.0, "Choose item: Style layer" in 3.2). In
    both it opens with the focus in its list of images; two Tabs lead through the Layers
    tab into this image's layers, Home picks the first row (the top layer), Alt+O is OK."""
    window.focus(dialog)
    before = tuple(window.windows())
    window.keys("alt+y")  # the "Style layer" button
    chooser = window.wait_window("^Choose", besides=before)
    window.focus(chooser)
    window.keys("Tab", "Tab", "Home", "alt+o")
    assert window.window_gone(chooser), "the layer chooser did not close"


def screen_region(screenshot: Path, box: tuple[int, int, int, int]):
    from PIL import Image
    with Image.open(screenshot) as picture:
        return picture.convert("RGB").crop(box)


def cancel_button(window: GimpWindow, main: str, idle: Path, running: Path) -> tuple[int, int]:
    """Where the Cancel button of the image window's status bar is, inside `main`: it shows
    only during a run, at the right of the progress bar, so it is the rightmost group of
    status-bar columns that differ between a screenshot without a run and one during it
    (GIMP 3.0 and 3.2 place it differently)."""
    from PIL import ImageChops
    x, y, width, height = window.geometry(main)
    box = (x, y + height - 32, x + width, y + height - 2)
    changed = ImageChops.difference(screen_region(idle, box), screen_region(running, box)).convert("L")
    columns = [column for column in range(changed.width)
               if changed.crop((column, 0, column + 1, changed.height)).getextrema()[1] > 24]
    groups = []
    for column in columns:
        if groups and column - groups[-1][1] <= 12:
            groups[-1][1] = column
        else:
            groups.append([column, column])
    if not groups:
        raise RuntimeError("no Cancel button appeared in the status bar")
    left, right = groups[-1]
    return (left + right) // 2, height - 18


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
    colours = thumbnail_colours(window, dialog, window.screenshot(dialog_shot))
    press_ok(window, dialog)
    facts = wait_for(window, lambda f: painted(f) and not f["work_dirs"], RUN_TIMEOUT,
                     f"the {what} run did not add its layer")
    window.screenshot(result_shot)
    return colours, facts


def start_decoy(busy: bool) -> subprocess.Popen:
    """Someone else's stylization beside the test: a process whose command line names
    stylize_core, started outside GIMP (so without the session's marker). A busy one
    spins on the CPU like an engine; the test must not count it as the plug-in's engine."""
    code = ("import sys, time\nend = time.monotonic() + 600\n"
            "while time.monotonic() < end:\n    time.sleep(0 if sys.argv[1] == 'busy' else 1)\n")
    return subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", code, "busy" if busy else "idle",
                             "-m", "stylize_core", "decoy"], start_new_session=True)


def stop_decoy(decoy: subprocess.Popen) -> None:
    decoy.kill()
    decoy.wait()


@pytest.fixture(scope="module")
def afternoon(gimp_version, gimp_session):
    """Runs the whole session in GIMP `version`; returns what each step saw, keyed by step.
    Screenshots, GIMP's log and session.json land in artifacts/gui/<version>/."""
    version = gimp_version
    session = gimp_session(version, "gui")
    venv = CHECKOUT / ".venv"
    config = install_plugin(session.profile, venv, worker_idle_timeout=60)
    window = GimpWindow(session, [CHECKOUT, *venv_paths(venv)], {"examples": str(CHECKOUT / "examples")},
                        CHECKOUT / "tests" / "gimp" / "gui_driver.py", fresh_folder(SHOTS / version))
    decoy = start_decoy(busy=False)  # beside the whole session
    seen = {"version": version, "decoys": [decoy.pid]}
    try:
        window.play(seen, lambda: play(window, seen, config))
    finally:
        seen["decoy_lived"] = decoy.poll() is None
        stop_decoy(decoy)
    return seen


def play(window: GimpWindow, seen: dict, config: Path) -> None:
    main = window.main_window()

    # Filters > Artistic > Neural Style Transfer..., by its menu mnemonics.
    window.focus(main)
    window.keys("alt+r", "a")
    window.screenshot("1-menu-filters-artistic.png")
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
    window.screenshot("4-edit-menu-undo-label.png")
    window.keys("Escape", "Escape", "ctrl+z")

    # Filters > Re-Show Last: the dialog again, with the last values; now a style layer.
    window.focus(main)
    window.keys("shift+ctrl+f")
    dialog = window.wait_window(DIALOG)
    window.focus(dialog)
    # Style source: Layer: open the combo box, next item.
    window.keys("alt+u", "space", "Down", "Return")
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
    wait_for(window, lambda f: engine_busy_ticks(window, 0.5, seen) > 5, 120, "the long run did not start")
    time.sleep(8)  # well into the optimisation
    x, y, width, height = window.geometry(main)
    status_bar = (x + 200, y + height - 40, x + width - 300, y + height)
    earlier_shot = window.screenshot("7-progress-earlier.png")
    earlier = screen_region(earlier_shot, status_bar).tobytes()
    seen["busy_ticks_while_running"] = engine_busy_ticks(window, 1.5, seen)
    window.focus(main)
    window.keys("alt+e")  # the window answers while the engine works
    window.screenshot("8-menu-during-run.png")
    window.keys("Escape")
    later = screen_region(window.screenshot("9-progress.png"), status_bar).tobytes()
    seen["progress_bar_moved"] = earlier != later
    decoy = start_decoy(busy=True)  # another stylization keeps computing after our cancel
    seen["decoys"].append(decoy.pid)
    try:
        seen["cancel_button"] = cancel_button(window, main, window.shots / "6-result-layer-style.png", earlier_shot)
        window.click_in(main, *seen["cancel_button"])
        cancelled = time.monotonic()
        # The local server stays up for the next run: the cancel stops its computing, not the process.
        wait_for(window, lambda f: engine_busy_ticks(window, 0.5, seen) <= 2, 30,
                 "the engine kept computing after the cancel")
        wait_for(window, lambda f: not f["work_dirs"], 30, "the cancelled run left its work folder")
        seen["cancel_seconds"] = time.monotonic() - cancelled
        seen["after_cancel"] = window.ask()
        seen["busy_ticks_after_cancel"] = engine_busy_ticks(window, 2.0, seen)
        seen["busy_decoy_lived"] = decoy.poll() is None
    finally:
        stop_decoy(decoy)
    window.screenshot("10-after-cancel.png")

    # The engine gone (a moved project, say): Filters > Repeat Last explains what to do.
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({**settings, "python": "/nonexistent/venv/bin/python"}))
    seen["before_missing_engine"] = window.ask()
    window.focus(main)
    window.keys("ctrl+f")
    message = window.wait_window("^GIMP Message$", timeout=30)
    seen["after_missing_engine"] = window.ask()
    window.screenshot("11-message-engine-missing.png")
    config.write_text(json.dumps(settings))
    window.focus(message)
    window.keys("Return")

    window.focus(main)
    window.keys("alt+e", "h")  # Edit > Undo History: one entry per run, named after the filter
    time.sleep(1)
    window.screenshot("12-undo-history.png")


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


def assert_restyled(facts: dict, layers: list[str]) -> None:
    """The image has these layers, the new one restyled (not a copy, not flat), its source untouched."""
    assert facts["layers"] == layers
    added = facts["added"][0]
    assert added["difference"] > 0.04 and added["distinct_values"] > 20, "the new layer is not restyled"
    assert facts["source_unchanged"]


def test_reshow_last_then_a_style_layer_chosen_in_the_dialog(afternoon):
    assert_restyled(step(afternoon, "layer_style"), ["painting", "photo (painting)", "photo"])


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


def test_only_the_sessions_own_engine_processes_are_watched(afternoon):
    """Processes named stylize_core that GIMP did not start (a decoy idle beside the whole
    session, a busy one around the cancel) are never taken for the plug-in's engine."""
    step(afternoon, "busy_ticks_after_cancel")
    assert afternoon["decoy_lived"] and afternoon["busy_decoy_lived"], "a decoy died: it proved nothing"
    watched = set(afternoon["engine_pids"])
    for name in ("before_cancel", "after_cancel", "before_missing_engine", "after_missing_engine"):
        watched |= {int(pid) for pid in afternoon.get(name, {}).get("engines", {})}
    assert watched, "the engine was never seen"
    assert not watched & set(afternoon["decoys"]), "a decoy was counted as the plug-in's engine"


def test_the_dialog_shows_the_chosen_style(afternoon):
    assert step(afternoon, "thumbnail_colours_file") > 2000, "no thumbnail of the style file"
    assert step(afternoon, "thumbnail_colours_layer") > 2000, "no thumbnail of the style layer"
