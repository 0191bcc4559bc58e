"""The one client of the warm worker (stylize_core.worker): standard library only.

The GIMP plug-in loads this file by its path (GIMP's Python has no torch, so it
cannot import the stylize_core package); tests and benchmarks import it normally.

    code = run_in_worker(python, argv, on_event)   # raises WorkerUnavailable -> run a child instead
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

ACCEPT_TIMEOUT = 3.0
"""A worker busy with another run does not accept within this time: the caller runs a child."""
START_TIMEOUT = 90.0
"""Importing torch and initialising a GPU can take this long on a cold disk."""


class WorkerUnavailable(Exception):
    """No worker could take the request; run the engine as a child process instead."""


def default_socket_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "stylize-core" if runtime else Path(tempfile.gettempdir()) / f"stylize-core-{os.getuid()}"
    return folder / "worker.sock"


def peer_uid(connection: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket; None where the system does not say."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def check_socket_folder(folder: Path) -> None:
    """Refuse a folder that another user owns or may write to: they could have put their own
    listener there to read our requests (without XDG_RUNTIME_DIR the folder is in the shared /tmp)."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise WorkerUnavailable(f"{folder} is not a folder: not using the worker socket in it")
    if info.st_uid != os.getuid():
        raise WorkerUnavailable(f"{folder} belongs to another user (uid {info.st_uid}): not using the worker "
                                "socket in it")
    if info.st_mode & 0o022:
        raise WorkerUnavailable(f"other users may write to {folder}: not using the worker socket in it")


def connect(path: Path) -> socket.socket | None:
    """A connection to the worker at `path`, None when nobody listens there; WorkerUnavailable
    when the socket is not trustworthy (its folder or the listening process is another user's)."""
    if not hasattr(socket, "AF_UNIX") or not os.path.lexists(path.parent):
        return None
    check_socket_folder(path.parent)
    if not os.path.lexists(path):
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(ACCEPT_TIMEOUT)
        connection.connect(str(path))
    except OSError:
        connection.close()
        return None
    owner = peer_uid(connection)
    if owner not in (None, os.getuid()):
        connection.close()
        raise WorkerUnavailable(f"the process listening on {path} is another user's (uid {owner})")
    return connection


def start_worker(python: str, path: Path, idle_timeout: float | None = None) -> None:
    """Start a worker that outlives us (its own session), then wait until its socket answers."""
    command = [python, "-m", "stylize_core.worker", "--socket", str(path)]
    if idle_timeout is not None:
        command += ["--idle-timeout", str(idle_timeout)]
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=environment, start_new_session=True,
                               close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        probe = connect(path)
        if probe:
            probe.close()
            return
        if process.poll() is not None and not path.exists():
            raise WorkerUnavailable(f"the worker exited at start (status {process.returncode})")
        time.sleep(0.2)
    raise WorkerUnavailable("the worker did not start in time")


def run_in_worker(python: str, argv: list[str], on_event: Callable[[dict], None],
                  socket_path: Path | None = None, cleanup_dir: str | None = None,
                  start: bool = True, idle_timeout: float | None = None) -> int:
    """Run one engine invocation (CLI argv, with --progress json) in the warm worker.

    on_event gets every JSON progress object; the engine's exit status is returned.
    Closing the connection (our process dying, say) cancels the run.
    """
    path = socket_path or default_socket_path()
    connection = connect(path)
    if connection is None and start:
        start_worker(python, path, idle_timeout)
        connection = connect(path)
    if connection is None:
        raise WorkerUnavailable("no worker is running")
    with connection:
        stream = connection.makefile("rw", encoding="utf-8", newline="\n")
        try:
            stream.write(json.dumps({"argv": argv, "cleanup_dir": cleanup_dir}) + "\n")
            stream.flush()
            first = json.loads(stream.readline() or "null")
        except (OSError, ValueError):
            raise WorkerUnavailable("the worker did not accept the request") from None
        if not isinstance(first, dict) or first.get("stage") != "accepted":
            raise WorkerUnavailable("the worker did not accept the request")
        connection.settimeout(None)
        for line in stream:
            event = json.loads(line)
            if event.get("stage") == "exit":
                return int(event["code"])
            on_event(event)
    raise WorkerUnavailable("the worker stopped in the middle of the run")

