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
import fcntl
import io
import json
import os
import select
import shutil
import socket
import sys
from pathlib import Path

from .cli import execute
from .client import default_socket_path, peer_uid
from .device import pick_device
from .engine import cached_network
from .options import BY_NAME
from .settings import Settings

DEFAULT_IDLE_TIMEOUT = 600
PROTOCOL_VERSION = 1
READ_TIMEOUT = 10.0
"""A client must send its whole request line within this time: a silent one must not hold the worker."""
MAX_REQUEST_LINE = 64 * 1024
"""Longer request lines are refused before they are read on: an argv list is a few hundred bytes."""


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


def hold_socket_lock(path: Path):
    """The lock file beside the socket, held for the worker's life; None when another worker holds it.

    Whether a socket file is stale is decided by this lock, not by connecting to it: a live
    worker with a full accept backlog does not answer a probe either, and must not be replaced."""
    handle = open(path.with_name(path.name + ".lock"), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def serve(path: Path, idle_timeout: float, device: str) -> int:
    private_folder(path.parent)
    lock = hold_socket_lock(path)
    if lock is None:
        print(f"a worker already listens on {path}", file=sys.stderr)
        return 0
    if os.path.lexists(path):
        path.unlink()  # stale: its worker died without cleaning up (it would hold the lock)
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
                try:
                    handle(connection)
                except Exception as error:  # one request's failure must not end the worker
                    print(f"stylize worker: request failed: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        listener.close()
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        lock.close()


def warm_up(device: str) -> None:
    """Pay the start-up costs now (device initialisation, weights), before the socket answers."""
    defaults = Settings()
    cached_network(defaults.weights, defaults.pooling, str(pick_device(device)))


def read_request(connection: socket.socket, stream) -> dict:
    """The request line, read within READ_TIMEOUT and MAX_REQUEST_LINE; ValueError says what is wrong."""
    connection.settimeout(READ_TIMEOUT)
    try:
        line = stream.readline(MAX_REQUEST_LINE + 1)
    except socket.timeout:
        raise ValueError(f"no complete request line within {READ_TIMEOUT:g} s") from None
    except UnicodeDecodeError:
        raise ValueError("the request is not UTF-8 text") from None
    if len(line) > MAX_REQUEST_LINE or (line and not line.endswith("\n")):
        raise ValueError(f"the request line is longer than {MAX_REQUEST_LINE} bytes")
    try:
        request = json.loads(line or "null")
    except RecursionError:
        raise ValueError("the request is nested too deeply") from None
    if not isinstance(request, dict) or not (request.get("ping") or isinstance(request.get("argv"), list)):
        raise ValueError("expected a JSON object with an argv list")
    return request


def handle(connection: socket.socket) -> None:
    stream = connection.makefile("rw", encoding="utf-8", newline="\n")
    if peer_uid(connection) not in (None, os.getuid()):
        try:  # read it (and not act on it), so that closing does not reset the connection under the reply
            read_request(connection, stream)
        except (ValueError, OSError):
            pass
        refuse(stream, "this worker serves only its own user")
        return
    request = None
    started = False
    try:
        request = read_request(connection, stream)
        connection.settimeout(None)
        # A client that gave up waiting (and may be running a child in its folder now) must not
        # have its request run, nor its folder removed.
        ensure_client(connection)
        stream.write(json.dumps({"stage": "accepted", "pid": os.getpid(), "version": PROTOCOL_VERSION}) + "\n")
        stream.flush()
        if request.get("ping"):
            code = 0
        else:
            started = True
            code = execute([str(a) for a in request["argv"]], stream, io.StringIO(),
                           check=lambda: ensure_client(connection), in_worker=True)
        stream.write(json.dumps({"stage": "exit", "code": code}) + "\n")
        stream.flush()
    except (ClientGone, BrokenPipeError, ConnectionResetError):
        cleanup = request.get("cleanup_dir") if started else None
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    except ValueError as error:
        refuse(stream, f"bad request: {error}")


def refuse(stream, message: str) -> None:
    try:
        stream.write(json.dumps({"stage": "error", "message": message, "exit_code": 2}) + "\n")
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
