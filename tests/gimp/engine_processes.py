"""Which processes on this machine belong to one test's GIMP session (standard library only).

A test starts GIMP with a marker in its environment (gimp_runner.MARKER_VARIABLE=<token>,
unique per session). Every process GIMP starts inherits it: the plug-in, the engine
child, and the warm worker too, which runs in a session of its own (start_new_session)
and so is neither in GIMP's process tree nor in its process group. A process whose
command line merely mentions stylize_core, such as another stylization running beside
the tests, lacks the marker and is not counted. Used on the host (cleanup) and inside
GIMP (gui_driver.py reads it there, from the same checkout).
"""

from __future__ import annotations

import os
import signal

MARKER_VARIABLE = "STYLIZE_TEST_SESSION"


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def marked(marker: str, proc: str = "/proc") -> list[int]:
    """The pids whose environment holds MARKER_VARIABLE=marker."""
    wanted = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            if wanted in _read(f"{proc}/{name}/environ").split(b"\0"):
                found.append(int(name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def engine_processes(marker: str, proc: str = "/proc") -> dict:
    """{pid: {"command", "ticks"}} of this session's engine processes (child or worker):
    marked ones whose command line runs stylize_core; ticks are user + system CPU ticks."""
    found = {}
    for pid in marked(marker, proc):
        try:
            command = _read(f"{proc}/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace")
            if "stylize_core" not in command:
                continue
            fields = _read(f"{proc}/{pid}/stat").decode().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[str(pid)] = {"command": command, "ticks": int(fields[11]) + int(fields[12])}
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILL every process of the session (GIMP, Xvfb, D-Bus, plug-ins, engine, worker)."""
    pids = [pid for pid in marked(marker) if pid != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    return pids
