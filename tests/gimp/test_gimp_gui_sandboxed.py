"""The dialog's Advanced › Engine in the real GIMP window, in a sandbox like Flatpak's: GIMP in the
Debian root with neither the checkout nor the virtual environment mounted, the plug-in installed
with install.py --plugin-only --server. A painter types a server's address (TLS, with its token and
fingerprint) into the dialog: the layer is restyled there. Then the same with a wrong token: GIMP
shows the plug-in's message and the image stays as it was. Screenshots in artifacts/gui-sandboxed/.
"""

import shutil
import time
from pathlib import Path

import pytest

from gimp_runner import CHECKOUT
from gui_session import GimpWindow, fresh_folder, step
from test_gimp_gui import (DIALOG, assert_restyled, choose_style_file, painted, press_ok, set_iterations,
                           wait_for)
from test_gimp_sandboxed import HostServer, install_server_only_plugin

SHOTS = CHECKOUT / "artifacts" / "gui-sandboxed"


def use_server(window: GimpWindow, dialog: str, address: str) -> None:
    """Advanced › Engine: A server, and its address typed in (Advanced is open)."""
    window.focus(dialog)
    window.keys("alt+g", "space", "Down", "Return", "Tab", "ctrl+a")  # the address field follows Engine
    window.type(address)
    window.keys("Tab")


def open_the_filter(window: GimpWindow, main: str) -> str:
    """Filters > Artistic > Neural Style Transfer..., by the menu's mnemonics."""
    return window.open_from_menu(main, ("alt+r", "a"), "n", DIALOG, "Filters > Artistic > Neural Style Transfer...")


@pytest.fixture(scope="module")
def session(gimp_version, gimp_session):
    """The whole GUI session in GIMP `version`; what each step saw, keyed by step."""
    version = gimp_version
    gimp = gimp_session(version, "gui-sandboxed")
    work = gimp.work
    images = work / "images"
    images.mkdir()
    for name in ("tubingen.jpg", "starry_night.jpg", "the_scream.jpg"):
        shutil.copy2(CHECKOUT / "examples" / name, images / name)
    servers = [HostServer(work / "state", "--socket", str(work / "run" / "server.sock"), "--idle-timeout", "600"),
               HostServer(work / "state", "--listen", "127.0.0.1:0", "--idle-timeout", "600")]
    unix, tls = (server.address for server in servers)
    install_server_only_plugin(gimp.profile, unix)
    window = GimpWindow(gimp, [work], {"examples": str(images)}, CHECKOUT / "tests" / "gimp" / "gui_driver.py",
                        fresh_folder(SHOTS / version))
    seen = {"version": version}
    try:
        return window.play(seen, lambda: play(window, seen, images, tls))
    finally:
        for server in servers:
            server.stop()


def play(window: GimpWindow, seen: dict, images: Path, tls: str) -> None:
    main = window.main_window()
    dialog = open_the_filter(window, main)
    choose_style_file(window, dialog, images / "starry_night.jpg")
    set_iterations(window, dialog, 8)
    use_server(window, dialog, tls)
    window.screenshot("1-dialog-engine-server.png")
    press_ok(window, dialog)
    seen["server_run"] = wait_for(window, painted, 600, "the run on the server did not add its layer")
    window.screenshot("2-result-from-the-server.png")

    # Filters > Re-Show Last: the dialog again, with the last values; now a token that is wrong.
    window.focus(main)
    window.keys("ctrl+z")
    seen["before_wrong_token"] = window.ask()
    window.keys("shift+ctrl+f")
    dialog = window.wait_window(DIALOG)
    window.focus(dialog)
    window.keys("alt+a", "alt+g", "Tab", "ctrl+a")  # Advanced, Engine (still A server), its address
    window.type(tls.replace("tls://", "tls://x", 1))
    window.keys("Tab")
    press_ok(window, dialog)
    message = window.wait_window("^GIMP Message$", timeout=120)
    time.sleep(1)
    seen["after_wrong_token"] = window.ask()
    window.screenshot("3-message-wrong-token.png")
    window.focus(message)
    window.keys("Return")


def test_a_server_address_typed_into_the_dialog_restyles_the_layer(session):
    assert_restyled(step(session, "server_run"), ["painting", "photo (starry_night)", "photo"])


def test_a_wrong_token_is_a_message_and_the_image_stays(session):
    before, after = step(session, "before_wrong_token"), step(session, "after_wrong_token")
    assert after["layers"] == before["layers"] == ["painting", "photo"]
    assert after["dirty"] == before["dirty"] and after["source_unchanged"]
