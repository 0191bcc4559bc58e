"""Filters › Animation › Neural Style Transfer (frames) in the real GIMP 3 window (3.0 and 3.2 under Xvfb):
the painter opens an animation (four frames of a pan), opens the filter from the menu, picks a style file, runs it
with the progress bar counting frames, gets a new image of restyled frames and plays it with
Filters › Animation › Playback; then starts a long run and cancels it from the progress bar: no new
image, the engine stops. Screenshots in artifacts/gui-frames/<version>/."""

import time

import pytest

from gimp_runner import CHECKOUT, install_plugin, venv_paths
from gui_session import GimpWindow, fresh_folder, step
from test_gimp_gui import (cancel_button, choose_style_file, engine_busy_ticks, press_ok, screen_region,
                           set_iterations, wait_for)

SHOTS = CHECKOUT / "artifacts" / "gui-frames"
DIALOG = "^Neural Style Transfer \\(frames\\)$"
NAMES = ["pan 4 (300ms)", "pan 3 (150ms)", "pan 2 (150ms)", "pan 1 (150ms)"]  # top first, as GIMP lists them


def open_the_filter(window: GimpWindow, main: str) -> str:
    """Filters > Animation > Neural Style Transfer (frames)..., by the menus' mnemonics (Alt+R, I, F)."""
    return window.open_from_menu(main, ("alt+r", "i"), "f", DIALOG,
                                 "Filters > Animation > Neural Style Transfer (frames)...")


@pytest.fixture(scope="module")
def session(gimp_version, gimp_session):
    gimp = gimp_session(gimp_version, "gui-frames")
    venv = CHECKOUT / ".venv"
    install_plugin(gimp.profile, venv, worker_idle_timeout=60)
    window = GimpWindow(gimp, [CHECKOUT, *venv_paths(venv)], {"examples": str(CHECKOUT / "examples")},
                        CHECKOUT / "tests" / "gimp" / "gui_frames_driver.py", fresh_folder(SHOTS / gimp_version))
    seen = {"version": gimp_version}
    return window.play(seen, lambda: play(window, seen))


def play(window: GimpWindow, seen: dict) -> None:
    main = window.main_window()
    dialog = open_the_filter(window, main)
    choose_style_file(window, dialog, CHECKOUT / "examples" / "starry_night.jpg")
    set_iterations(window, dialog, 6)
    window.screenshot("1-dialog.png")
    press_ok(window, dialog)
    progress = []

    def done(facts):
        status = window.screenshot("2-progress.png")
        x, y, width, height = window.geometry(main)
        progress.append(screen_region(status, (x + 200, y + height - 40, x + width - 300, y + height)).tobytes())
        # The plug-in fills the new image a layer at a time: done when every frame is in and painted.
        return facts["new_images"] and len(facts["new_images"][0]["layers"]) == len(NAMES) and all(
            n > 20 for n in facts["new_images"][0]["distinct_values"])

    seen["restyled"] = wait_for(window, done, 600, "the frames run made no new image")
    seen["progress_changed"] = len(set(progress)) > 1
    window.screenshot("3-new-image.png")
    new_window = [w for w in window.windows("^GNU Image Manipulation Program$")]
    seen["image_windows"] = len(new_window)

    # Filters > Animation > Playback on the new image (its window has the focus): it plays.
    window.keys("alt+r", "i")
    time.sleep(1)
    window.keys("p")
    playback = window.wait_window("Playback", timeout=60)
    time.sleep(2)
    window.screenshot("4-playback.png")
    seen["playback_opened"] = bool(playback)
    window.tool("xdotool", "windowclose", playback, check=False)  # as its title bar's close button
    if not window.window_gone(playback, timeout=5):
        # An xdotool without windowclose: end the Playback plug-in, and close GIMP's note that it died.
        window.tool("xdotool", "windowkill", playback)
        note = window.wait_window("^GIMP Message$", timeout=10)
        window.focus(note)
        window.keys("Return")
        assert window.window_gone(note), "GIMP's message did not close"

    # A long run, cancelled from the progress bar of the animation's window.
    window.focus(main)
    seen["before_cancel"] = window.ask()
    dialog = open_the_filter(window, main)  # not Re-Show Last: that is Playback now
    set_iterations(window, dialog, 400)  # the style file is the last run's
    idle = window.screenshot("5-before-long-run.png")
    press_ok(window, dialog)
    wait_for(window, lambda f: engine_busy_ticks(window, 0.5, seen) > 5, 120, "the long run did not start")
    time.sleep(6)
    running = window.screenshot("6-long-run.png")
    window.click_in(main, *cancel_button(window, main, idle, running))
    cancelled = time.monotonic()
    wait_for(window, lambda f: engine_busy_ticks(window, 0.5, seen) <= 2, 30, "the engine kept computing")
    seen["cancel_seconds"] = time.monotonic() - cancelled
    seen["after_cancel"] = window.ask()
    window.screenshot("7-after-cancel.png")


def test_the_filter_makes_a_new_image_of_restyled_frames(session):
    facts = step(session, "restyled")
    new = facts["new_images"][0]
    assert new["layers"] == NAMES and new["size"] == [160, 120]
    assert facts["source_layers"] == NAMES and facts["source_unchanged"] and not facts["source_dirty"]
    assert session["progress_changed"], "the progress bar did not move"


def test_playback_opens_on_the_new_image(session):
    assert step(session, "playback_opened")


def test_cancel_stops_the_engine_and_makes_no_image(session):
    before, after = step(session, "before_cancel"), step(session, "after_cancel")
    assert session["cancel_seconds"] < 10
    assert len(after["new_images"]) == len(before["new_images"]) and after["source_unchanged"]
