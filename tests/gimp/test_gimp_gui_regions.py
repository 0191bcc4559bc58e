"""Two styles in two regions, as a painter sets them in the real GIMP 3 window (3.0 and 3.2 under Xvfb):
the photo's left half is selected and its right half kept in a channel; the painter opens the filter,
picks Starry Night for the selection, adds another style, The Scream, for the channel, and runs; one
Ctrl+Z takes it back; Filters › Re-Show Last shows the dialog with both styles again and runs them.
Screenshots in artifacts/gui-regions/<version>/."""

import time

import pytest

from gimp_runner import CHECKOUT, install_plugin, venv_paths
from gui_session import GimpWindow, fresh_folder, step
from test_gimp_gui import DIALOG, choose_style_file, painted, press_ok, set_iterations, wait_for

SHOTS = CHECKOUT / "artifacts" / "gui-regions"
RESTYLED = "photo (starry_night + the_scream)"


def choose_in_combo(window: GimpWindow, steps_down: int) -> None:
    """The focused combo box opened, `steps_down` items below the current one chosen."""
    window.keys("space")
    time.sleep(0.5)
    window.keys(*["Down"] * steps_down, "Return")
    time.sleep(0.5)


@pytest.fixture(scope="module")
def session(gimp_version, gimp_session):
    gimp = gimp_session(gimp_version, "gui-regions")
    venv = CHECKOUT / ".venv"
    install_plugin(gimp.profile, venv, worker_idle_timeout=60)
    window = GimpWindow(gimp, [CHECKOUT, *venv_paths(venv)], {"examples": str(CHECKOUT / "examples"),
                                                              "regions": True},
                        CHECKOUT / "tests" / "gimp" / "gui_driver.py", fresh_folder(SHOTS / gimp_version))
    seen = {"version": gimp_version}
    return window.play(seen, lambda: play(window, seen))


def play(window: GimpWindow, seen: dict) -> None:
    main = window.main_window()
    dialog = window.open_from_menu(main, ("alt+r", "a"), "n", DIALOG, "Filters > Artistic > Neural Style Transfer...")
    choose_style_file(window, dialog, CHECKOUT / "examples" / "starry_night.jpg")
    set_iterations(window, dialog, 8)
    window.focus(dialog)
    window.keys("alt+f")  # Region of the layer: Whole layer -> Selection
    choose_in_combo(window, 1)
    seen["height_one_style"] = window.geometry(dialog)[3]
    window.keys("alt+x")  # Add an extra style: a row, the focus in its picture chooser
    time.sleep(1)
    seen["height_two_styles"] = window.geometry(dialog)[3]
    window.keys("space")
    chooser = window.wait_window("^Style image$")
    window.focus(chooser)
    window.keys("ctrl+l")
    time.sleep(0.5)
    window.type(str(CHECKOUT / "examples" / "the_scream.jpg"))
    time.sleep(0.5)
    window.keys("Return")
    assert window.window_gone(chooser), "the row's file chooser did not close"
    window.focus(dialog)
    window.keys("Tab", "Tab", "Tab")  # past Weight and Stroke size to the row's Region
    choose_in_combo(window, 3)  # Whole layer, Selection, Outside the selection, Channel "right"
    window.screenshot("1-dialog-two-styles.png")
    press_ok(window, dialog)
    seen["restyled"] = wait_for(window, lambda f: painted(f) and not f["work_dirs"], 600, "the run added no layer")
    window.screenshot("2-result.png")

    window.focus(main)
    window.keys("ctrl+z")
    seen["undone"] = window.ask()

    window.focus(main)
    window.keys("shift+ctrl+f")  # Filters > Re-Show Last
    dialog = window.wait_window(DIALOG)
    time.sleep(1)
    window.screenshot("3-dialog-reshown.png")
    press_ok(window, dialog)
    seen["again"] = wait_for(window, lambda f: painted(f) and not f["work_dirs"], 600, "Re-Show Last added no layer")
    window.screenshot("4-result-again.png")


def test_two_styles_in_a_selection_and_a_channel_from_the_dialog(session):
    facts = step(session, "restyled")
    assert session["height_two_styles"] > session["height_one_style"] + 40, "no row for the second style"
    assert facts["layers"] == ["painting", RESTYLED, "photo"], "one new layer, named after both styles"
    added = facts["added"][0]
    assert not added["has_mask"], "the selection is a style's region here, not the new layer's mask"
    assert added["difference"] > 0.04 and added["distinct_values"] > 20 and facts["source_unchanged"]


def test_one_ctrl_z_takes_the_regions_run_back(session):
    undone = step(session, "undone")
    assert undone["layers"] == ["painting", "photo"] and not undone["dirty"]


def test_reshow_last_keeps_both_styles_and_their_regions(session):
    again = step(session, "again")
    assert again["layers"] == ["painting", RESTYLED, "photo"] and not again["added"][0]["has_mask"]
