"""A warm engine for the GIMP plug-in: torch imported, the device initialised, the weights
loaded and style targets cached, so a second run starts optimising at once.

    python -m stylize_core.worker [--socket PATH] [--idle-timeout SECONDS]

It listens on a Unix socket in a folder only its user can enter (mode 0700) and
also checks each caller's user id (SO_PEERCRED), runs one request at a time, and
exits after --idle-timeout seconds without one. The protocol is in
docs/protocol.md; in short, one JSON line in, the CLI's JSON progress lines out:

    -> {"argv": ["content.npy", "style.png", "-o", "out.npy", "--progress", "json", ...],
        "cleanup_dir": "/tmp/..."}          (optional: removed if the client goes away)
    <- {"stage": "accepted", "pid": 1234}
    <- {"stage": "load"} ... {"stage": "optimize", ...} ... {"stage": "done", ...}
    <- {"stage": "exit", "code": 0}

A client that disconnects cancels its run at the next progress event.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import shutil
import socket
import struct
import sys
from pathlib import Path

from .cli import execute
from .client import default_socket_path
from .device import pick_device
from .engine import cached_network
from .options import BY_NAME
from .settings import Settings

DEFAULT_IDLE_TIMEOUT = 600
PROTOCOL_VERSION = 1


class ClientGone(Exception):
    """The client closed its connection: the run is cancelled."""


def private_folder(folder: Path) -> None:
    """Create folder for our socket; refuse one that another user could enter or owns."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise SystemExit(f"stylize worker: {folder} belongs to another user")
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)


def peer_uid(connection: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def another_worker_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def serve(path: Path, idle_timeout: float, device: str) -> int:
    private_folder(path.parent)
    if path.exists():
        if another_worker_answers(path):
            print(f"a worker already listens on {path}", file=sys.stderr)
            return 0
        path.unlink()  # stale: its worker died without cleaning up
    warm_up(device)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(4)
    listener.settimeout(idle_timeout)
    print(json.dumps({"stage": "ready", "socket": str(path), "pid": os.getpid()}), flush=True)
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                return 0
            with connection:
                handle(connection)
    finally:
        listener.close()
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def warm_up(device: str) -> None:
    """Pay the start-up costs now (device initialisation, weights), before the socket answers."""
    defaults = Settings()
    cached_network(defaults.weights, defaults.pooling, str(pick_device(device)))


def handle(connection: socket.socket) -> None:
    connection.settimeout(None)
    if peer_uid(connection) not in (None, os.getuid()):
        return
    stream = connection.makefile("rw", encoding="utf-8", newline="\n")
    try:
        request = json.loads(stream.readline() or "null")
        if not isinstance(request, dict) or not (request.get("ping") or isinstance(request.get("argv"), list)):
            raise ValueError("expected a JSON object with an argv list")
        stream.write(json.dumps({"stage": "accepted", "pid": os.getpid(), "version": PROTOCOL_VERSION}) + "\n")
        stream.flush()
        if request.get("ping"):
            code = 0
        else:
            argv = [str(a) for a in request["argv"] if a != "--stop-on-stdin-eof"]
            code = execute(argv, stream, io.StringIO(), check=lambda: ensure_client(connection))
        stream.write(json.dumps({"stage": "exit", "code": code}) + "\n")
        stream.flush()
    except (ClientGone, BrokenPipeError, ConnectionResetError):
        cleanup = request.get("cleanup_dir") if isinstance(request, dict) else None
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    except ValueError as error:
        try:
            stream.write(json.dumps({"stage": "error", "message": f"bad request: {error}", "exit_code": 2}) + "\n")
            stream.write(json.dumps({"stage": "exit", "code": 2}) + "\n")
            stream.flush()
        except OSError:
            pass


def ensure_client(connection: socket.socket) -> None:
    """Raise ClientGone when the client closed its end (readable with nothing to read)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if readable:
        try:
            data = connection.recv(1, socket.MSG_PEEK)
        except OSError:
            raise ClientGone() from None
        if not data:
            raise ClientGone()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stylize_core.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", type=Path, default=default_socket_path())
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT,
                        help="exit after this many seconds without a request (default %(default)s)")
    device = BY_NAME["device"]
    parser.add_argument(device.cli_flag, choices=device.choices, default=device.default,
                        help="the device to initialise at start (default %(default)s)")
    args = parser.parse_args(argv)
    if not hasattr(socket, "AF_UNIX"):
        print("stylize worker: Unix sockets are not available here; the plug-in runs the engine "
              "as a child process instead", file=sys.stderr)
        return 2
    return serve(args.socket, args.idle_timeout, args.device)


if __name__ == "__main__":
    sys.exit(main())
