"""The real GIMP 3 window on a virtual screen (Xvfb) inside a provisioned Debian root (3.0 or 3.2).

GIMP runs gui_driver.py as a batch script: it opens the test image in a window and
answers questions about the image through files. The test acts like a person, with
xdotool keys and clicks, and takes screenshots with ImageMagick's `import`.
Everything the window and the test share lives in a folder inside the root
(`exchange`), so plain `chroot` calls for xdotool see the same files and X socket.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
from gimp_runner import GimpSession

DISPLAY = ":77"
MAIN_WINDOW = "^GNU Image Manipulation Program$"
SCREEN = "1400x900x24"


class GimpWindow:
    """GIMP's window for one session, with `binds` mounted (the plug-in's engine, the images)."""

    def __init__(self, session: GimpSession, binds: list[Path], driver_settings: dict, driver: Path,
                 shots: Path):
        self.session = session
        self.shots = shots
        self.root = root = session.root
        self.exchange_inside = Path(f"/tmp/nst-gui-{session.marker}")
        self.exchange = Path(f"{root}{self.exchange_inside}")
        self.exchange.mkdir(parents=True, exist_ok=True)
        # The driver's helper goes with it: a sandboxed session sees no checkout.
        for helper in ("engine_processes.py", "gui_exchange.py", "gimp_animation.py"):
            shutil.copy2(Path(__file__).with_name(helper), self.exchange / helper)
        settings = {**driver_settings, "exchange": str(self.exchange_inside), "marker": session.marker,
                    "helpers": str(self.exchange_inside)}
        (self.exchange / "driver.py").write_text(f"DRIVER_SETTINGS = {settings!r}\n" + driver.read_text())
        self.log_path = self.exchange / "gimp.log"
        self.requests = 0
        (Path(f"{root}/tmp") / f".X{DISPLAY[1:]}-lock").unlink(missing_ok=True)

        batch = f"exec(open({str(self.exchange_inside / 'driver.py')!r}).read())"
        session_command = (f"Xvfb {DISPLAY} -screen 0 {SCREEN} -nolisten tcp & sleep 1; "
                           f"exec dbus-run-session -- {session.binary(console=False)} -n -d -f -s "
                           f"--batch-interpreter python-fu-eval -b {shlex.quote(batch)}")
        gimp = (f"chroot {shlex.quote(str(root))} {session.environment(f'DISPLAY={DISPLAY}')} "
                f"sh -c {shlex.quote(session_command)}")
        inner = " && ".join(session.mounts(binds) + [gimp])
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(["unshare", "-m", "sh", "-c", inner], stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    # --- the image, as the driver inside GIMP sees it ----------------------------------------------

    def ask(self, timeout: float = 60.0) -> dict:
        """The driver's facts about the image (layers, dirty flag, pixels, engine processes)."""
        self.requests += 1
        reply = self.exchange / f"reply-{self.requests}.json"
        (self.exchange / "request.json.part").write_text(json.dumps({"id": self.requests, "op": "facts"}))
        os.replace(self.exchange / "request.json.part", self.exchange / "request.json")
        deadline = time.monotonic() + timeout
        while not reply.exists():
            if self.process.poll() is not None:
                raise RuntimeError("GIMP exited:\n" + self.log_path.read_text()[-3000:])
            if time.monotonic() > deadline:
                raise TimeoutError("the GIMP driver did not answer:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.1)
        return json.loads(reply.read_text())

    # --- the screen -----------------------------------------------------------------------------------

    def tool(self, *command: str, check: bool = True, timeout: float = 30) -> str:
        done = subprocess.run(["chroot", str(self.root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
                               f"DISPLAY={DISPLAY}", *command], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def windows(self, name: str = ".") -> list[str]:
        """The ids of the visible windows whose title matches `name` (a regular expression)."""
        return self.tool("xdotool", "search", "--onlyvisible", "--name", name, check=False).split()

    def wait_window(self, name: str, timeout: float = 60.0, besides: tuple[str, ...] = ()) -> str:
        """The id of the first visible window whose title matches `name` (a regular expression),
        other than those in `besides` (the windows that were there before)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [window for window in self.windows(name) if window not in besides]
            if found:
                return found[0]
            time.sleep(0.3)
        raise TimeoutError(f"no window named {name!r} appeared")

    def title(self, window: str) -> str:
        return self.tool("xdotool", "getwindowname", window, check=False).strip()

    def window_gone(self, window: str, timeout: float = 30.0) -> bool:
        """Whether `window` is destroyed or hidden (GTK keeps some dialogs, unmapped) within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if window not in self.windows():
                return True
            time.sleep(0.3)
        return False

    def focus(self, window: str) -> None:
        self.tool("xdotool", "windowfocus", "--sync", window)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tool("xdotool", "key", "--delay", "80", key)
            time.sleep(0.25)

    def type(self, text: str) -> None:
        self.tool("xdotool", "type", "--delay", "30", text)

    def click_in(self, window: str, x: int, y: int) -> None:
        """A left click at (x, y) inside `window`."""
        self.tool("xdotool", "mousemove", "--window", window, str(x), str(y), "click", "1")
        time.sleep(0.5)

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        values = dict(line.split("=") for line in
                      self.tool("xdotool", "getwindowgeometry", "--shell", window).split())
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def screenshot(self, name: str) -> Path:
        """The whole screen, saved as `name` in the session's screenshot folder."""
        self.tool("import", "-window", "root", str(self.exchange_inside / "shot.png"))
        destination = self.shots / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((self.exchange / "shot.png").read_bytes())
        return destination

    # --- a painter's session --------------------------------------------------------------------------

    def main_window(self) -> str:
        """GIMP's image window, once it is there: a fresh profile's welcome dialog closed as a person
        would, the window sized so that the dialog and the image fit beside each other."""
        try:
            welcome = self.wait_window("^Welcome to GIMP", timeout=20)
            self.focus(welcome)
            self.keys("Escape")
        except TimeoutError:
            pass
        main = self.wait_window(MAIN_WINDOW)
        self.tool("xdotool", "windowsize", "--sync", main, "1280", "860")
        return main

    def play(self, seen: dict, steps: Callable[[], None]) -> dict:
        """Runs `steps` once GIMP answers, then closes the window. What went wrong ends the session and
        is kept in seen["error"] (with failure.png), so that each test can say which step broke; GIMP's
        log and `seen` (session.json) go beside the screenshots."""
        try:
            seen["start"] = self.ask(timeout=300)
            steps()
        except Exception as error:
            seen["error"] = f"{type(error).__name__}: {error}"
            self.screenshot("failure.png")
        finally:
            (self.shots / "gimp.log").write_text(self.log_path.read_text(errors="replace"))
            (self.shots / "session.json").write_text(json.dumps(seen, indent=1))
            self.close()
        return seen

    def open_from_menu(self, main: str, menu_keys: tuple[str, ...], item_key: str, dialog: str, what: str) -> str:
        """A procedure's dialog opened from the menus by their mnemonics (menu_keys, then item_key), as a
        person would try again when a menu opened too slowly to take the next key."""
        for attempt in range(3):
            self.focus(main)
            self.keys(*menu_keys)
            time.sleep(1)
            self.keys(item_key)
            try:
                return self.wait_window(dialog, timeout=20)
            except TimeoutError:
                self.keys("Escape", "Escape", "Escape")
        raise TimeoutError(f"{what} did not open its dialog")

    # --- the end --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop GIMP, Xvfb and any engine worker the plug-in left warm: all the session's processes."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.session.stop()
        self.log.close()
        shutil.rmtree(self.exchange, ignore_errors=True)


def fresh_folder(path: Path) -> Path:
    """The screenshots' folder, emptied of an earlier session's."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.iterdir():
        old.unlink()
    return path


def step(seen: dict, name: str):
    """What the session saw at `name`; the test fails with the session's error if it never got there."""
    if name not in seen:
        pytest.fail(f"the GUI session stopped before '{name}': {seen.get('error')}")
    return seen[name]
