"""The real GIMP 3 window on a virtual screen (Xvfb) inside the provisioned Debian 13 root.

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
import signal
import subprocess
import time
from pathlib import Path

DISPLAY = ":77"
SCREEN = "1400x900x24"


class GimpWindow:
    def __init__(self, root: Path, profile: Path, binds: list[Path], driver_settings: dict, driver: Path):
        self.root = root
        self.exchange_inside = Path(f"/tmp/nst-gui-{os.getpid()}")
        self.exchange = Path(f"{root}{self.exchange_inside}")
        self.exchange.mkdir(parents=True, exist_ok=True)
        settings = {**driver_settings, "exchange": str(self.exchange_inside)}
        (self.exchange / "driver.py").write_text(f"DRIVER_SETTINGS = {settings!r}\n" + driver.read_text())
        self.log_path = self.exchange / "gimp.log"
        self.requests = 0
        (Path(f"{root}/tmp") / f".X{DISPLAY[1:]}-lock").unlink(missing_ok=True)

        mounts = []
        for path in dict.fromkeys(Path(p).resolve() for p in binds):
            target = f"{root}{path}"
            mounts.append(f"mkdir -p {shlex.quote(target)} && mount --bind {shlex.quote(str(path))} "
                          f"{shlex.quote(target)}")
        batch = f"exec(open({str(self.exchange_inside / 'driver.py')!r}).read())"
        session = (f"Xvfb {DISPLAY} -screen 0 {SCREEN} -nolisten tcp & sleep 1; "
                   f"exec dbus-run-session -- gimp-3.0 -n -d -f -s --batch-interpreter python-fu-eval "
                   f"-b {shlex.quote(batch)}")
        gimp = (f"chroot {shlex.quote(str(root))} /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root "
                f"GIMP3_DIRECTORY={shlex.quote(str(profile))} DISPLAY={DISPLAY} sh -c {shlex.quote(session)}")
        inner = " && ".join(mounts + [f"mount -t proc proc {shlex.quote(str(root))}/proc", gimp])
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

    def wait_window(self, name: str, timeout: float = 60.0) -> str:
        """The id of the first visible window whose title matches `name` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.tool("xdotool", "search", "--onlyvisible", "--name", name, check=False).split()
            if found:
                return found[0]
            time.sleep(0.3)
        raise TimeoutError(f"no window named {name!r} appeared")

    def window_gone(self, window: str, timeout: float = 30.0) -> bool:
        """Whether `window` is destroyed or hidden (GTK keeps some dialogs, unmapped) within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if window not in self.tool("xdotool", "search", "--onlyvisible", "--name", ".", check=False).split():
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

    def screenshot(self, destination: Path) -> Path:
        self.tool("import", "-window", "root", str(self.exchange_inside / "shot.png"))
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((self.exchange / "shot.png").read_bytes())
        return destination

    # --- the end --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop GIMP, Xvfb and any engine worker the plug-in left warm inside the root."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.readlink(f"/proc/{pid}/root") == str(self.root):
                        os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    continue
        self.log.close()
