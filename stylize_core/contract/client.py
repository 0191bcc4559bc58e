"""The engine server's one client: find this user's server (or start it), ping it, and run on it.
Standard library only: the GIMP plug-in imports it in GIMP's own Python, and install.py copies it
beside the plug-in with the rest of the contract, so that a sandboxed GIMP (Flatpak) that sees
neither the project nor its virtual environment has it too. The protocol itself (limits, framing,
addresses, the checks of the other end) is protocol.py's; its public names are re-exported here.

    code, result = run_on_server(address, [content_npy, style_bytes], settings, on_event)

No path is ever sent: the images travel as bytes, the result comes back as .npy bytes.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .paths import read_private, state_folder
from .protocol import (ACCEPT_TIMEOUT, CONNECT_TIMEOUT, LOOPBACK_FILE, LOOPBACK_HOSTS, MAX_RESULT_BYTES,
                       MIN_RESULT_RATE, PROTOCOL, START_TIMEOUT, Address, Channel, ProtocolError, ServerError,
                       ServerLost, ServerRefused, ServerUnreachable, check_socket_folder, default_socket_path,
                       parse_address, peer_uid, tls_connect, unix_sockets_work)

__all__ = [
    # the requests
    "run_on_server", "ping", "open_connection", "withdraw", "request_header", "check_reply", "start_local_server",
    "engine_environment", "local_address", "read_address_file", "read_loopback_file",
    # the protocol's names a client's caller uses, from protocol.py
    "Address", "parse_address", "unix_sockets_work", "default_socket_path", "ServerError", "ServerUnreachable",
    "ServerLost", "ServerRefused", "Channel", "ProtocolError", "PROTOCOL", "LOOPBACK_FILE", "LOOPBACK_HOSTS",
]


def local_address(transport: str = "auto") -> Address | None:
    """This computer's own server for this user: its Unix socket, or on Windows (or with
    transport "loopback") the loopback port and token its server wrote down; None if none is written."""
    if transport == "unix" or (transport == "auto" and unix_sockets_work()):
        return Address("unix", path=str(default_socket_path()))
    return read_loopback_file(state_folder() / LOOPBACK_FILE)


def read_address_file(path: Path) -> Address:
    """The address in a file of this user's that others may not read: one line as the server wrote it
    (tls://TOKEN@HOST:PORT#sha256=..., tcp://TOKEN@127.0.0.1:PORT), or a loopback record. A token
    travels in such a file or in the environment, never on a command line, where every local user
    could read it. ValueError says what is wrong, in one line."""
    try:
        text = read_private(path)
    except OSError as error:
        raise ValueError(f"cannot read the address file {path}: {error.strerror or error}") from None
    if text is None:
        raise ValueError(f"cannot read the address file {path}: {os.strerror(errno.ENOENT)}")
    text = text.strip()
    if text.startswith("{"):
        return address_from_record(text, path)
    return parse_address(text)


def read_loopback_file(path: Path) -> Address | None:
    """This user's loopback server's address from its record; None when there is none."""
    try:
        text = read_private(path)
    except (OSError, ValueError) as error:  # ValueError: not private (paths.NotPrivate)
        raise ServerUnreachable(f"the local server's file {path} is unusable: {error}") from None
    return None if text is None else address_from_record(text, path)


def address_from_record(text: str, path: Path) -> Address:
    try:
        data = json.loads(text)
        return Address("tcp", host="127.0.0.1", port=int(data["port"]), token=str(data["token"]))
    except (ValueError, KeyError, TypeError) as error:
        raise ServerUnreachable(f"the local server's file {path} is unusable: {error}") from None


# --- connecting -------------------------------------------------------------------------------------

def open_connection(address: Address, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connection to the server, checked: a Unix socket's folder and listener are ours, a TLS
    server's certificate is the pinned one. ServerUnreachable when nobody answers."""
    where = address.describe()
    if address.kind == "unix":
        folder = Path(address.path).parent
        if not unix_sockets_work():
            raise ServerUnreachable("Unix sockets are not available here")
        if not os.path.lexists(folder) or not os.path.lexists(address.path):
            raise ServerUnreachable(f"no server listens at {where}")
        check_socket_folder(folder)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(timeout)
        try:
            connection.connect(address.path)
        except OSError as error:
            connection.close()
            raise ServerUnreachable(f"no server listens at {where} ({error.strerror or error})") from None
        owner = peer_uid(connection)
        if owner not in (None, os.getuid()):
            connection.close()
            raise ServerRefused(f"the process listening at {where} is another user's (uid {owner})", "peer")
        return connection
    try:
        connection = socket.create_connection((address.host, address.port), timeout=timeout)
    except OSError as error:
        raise ServerUnreachable(f"cannot reach the server at {where} ({error.strerror or error})") from None
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if address.kind == "tls":
        connection = tls_connect(connection, address)
    return connection


def withdraw(connection: socket.socket) -> None:
    """Close our end: the server drops the request if it is queued and stops it if it runs. Safe from
    another thread: the shutdown wakes a read that waits on this connection there."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # never connected, or already closed
    try:
        connection.close()
    except OSError:
        pass


def ping(address: Address, timeout: float = CONNECT_TIMEOUT) -> dict:
    """The server's state: {"stage": "pong", "protocol", "pid", "warm", "running", "queued", "runs"}."""
    connection = open_connection(address, timeout)
    try:
        channel = Channel(connection)
        channel.send(request_header(address, "ping"))
        reply, _ = channel.read(time.monotonic() + timeout)
    except (OSError, EOFError, ProtocolError) as error:
        raise ServerUnreachable(f"the server at {address.describe()} did not answer ({error})") from None
    finally:
        withdraw(connection)
    return check_reply(reply, address)


def request_header(address: Address, op: str, **fields) -> dict:
    header = {"protocol": PROTOCOL, "op": op, **fields}
    if address.token:
        header["token"] = address.token
    return header


def check_reply(reply: dict, address: Address) -> dict:
    """The server's first answer; ServerRefused, in words, when it is a refusal."""
    if reply.get("stage") == "error":
        raise ServerRefused(str(reply.get("message", "refused")), str(reply.get("reason", "")), reply.get("ahead"),
                            option_of(reply))
    if reply.get("protocol") != PROTOCOL:
        raise ServerRefused(f"the server at {address.describe()} speaks protocol {reply.get('protocol', 1)}, this "
                            f"client {PROTOCOL}: install the same version on both sides", "version")
    return reply


def option_of(event: dict) -> str | None:
    """The option an error event names (a Settings field name), or None."""
    option = event.get("option")
    return option if isinstance(option, str) and option else None


def run_on_server(address: Address, images: list[bytes], settings: dict, on_event: Callable[[dict], None],
                  accept_timeout: float = ACCEPT_TIMEOUT, max_result_bytes: int = MAX_RESULT_BYTES,
                  on_connect: Callable[[socket.socket], None] | None = None,
                  frames: int | None = None,
                  regions: list[bool] | None = None,
                  on_picture: Callable[[bytes], None] | None = None) -> tuple[int, bytes | list[bytes] | None]:
    """One run on the server: the content, then the style images (.npy or image-file bytes), with the
    settings (Settings field -> value, settings.py). Progress events go to on_event ("waiting" while
    queued; an "error" event always with its "reason" and "option", errors.py). Returns (exit status,
    the result's .npy bytes or None). `frames`: the first `frames` images are a clip's frames, and the
    result is the list of the restyled frames' .npy bytes (those done, when the run failed). `regions`:
    which styles paint only in a region, one flag per style; the masks of those follow the styles in
    `images`, in order. `on_picture`: a still's picture on the way (.npy bytes: as each scale but the
    last ends, and every 1.5 s of optimisation in between), for a preview that shows itself at once.
    Closing the connection (our process dying, say) withdraws the request, queued or running:
    on_connect gets the connection, for a caller that may withdraw it from another thread
    (withdraw())."""
    connection = open_connection(address)
    if on_connect:
        on_connect(connection)
    channel = Channel(connection)
    try:
        try:
            extra = {**({} if frames is None else {"frames": frames}),
                     **({} if regions is None else {"regions": regions}),
                     **({} if on_picture is None else {"pictures": True})}
            channel.send(request_header(address, "stylize", settings=settings,
                                        images=[len(image) for image in images], **extra), images)
        except (OSError, ProtocolError):
            pass  # a server that refuses early stops reading: its reply says why
        first, _ = channel.read(time.monotonic() + accept_timeout, idle_limit=accept_timeout)
    except ProtocolError:
        withdraw(connection)
        raise ServerUnreachable(f"the server at {address.describe()} did not accept the request within "
                                f"{accept_timeout:g} s") from None
    except (OSError, EOFError) as error:
        withdraw(connection)
        raise ServerUnreachable(f"the server at {address.describe()} closed the connection ({error})") from None
    try:
        check_reply(first, address)
        on_event(first)
        result = None if frames is None else []
        while True:
            try:
                event, payload = channel.read(max_payload=max_result_bytes, rate=MIN_RESULT_RATE)
            except (OSError, EOFError, ProtocolError) as error:
                raise ServerLost(f"the server at {address.describe()} stopped in the middle of the run "
                                 f"({error})") from None
            stage = event.get("stage")
            if stage == "exit":
                return int(event.get("code", 1)), result
            if stage == "picture" and on_picture is not None:
                on_picture(bytes(payload))
            elif stage == "result":
                if frames is None:
                    result = bytes(payload)
                else:
                    result.append(bytes(payload))
            elif stage == "error":
                on_event({**event, "reason": str(event.get("reason") or "failed"), "option": option_of(event)})
            elif stage != "heartbeat":
                on_event(event)
    finally:
        withdraw(connection)


def engine_environment() -> dict:
    """This process's environment for the engine's Python (a server or a child): without GIMP's
    own Python paths, which would shadow the venv's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def start_local_server(python: str, transport: str = "auto", idle_timeout: float | None = None,
                       project: str | None = None) -> Address:
    """Start this user's server on this computer (it outlives us), and wait until it answers.
    `project`: the checkout to run, as its working folder (`-m` looks there first, whichever
    checkout the environment was made by)."""
    command = [python, "-m", "stylize_core", "serve"]
    if transport == "unix" or (transport == "auto" and unix_sockets_work()):
        command += ["--socket", str(default_socket_path())]
    else:
        command += ["--loopback"]
    if idle_timeout is not None:
        command += ["--idle-timeout", str(idle_timeout)]
    environment = engine_environment()
    options = {"start_new_session": True}
    if sys.platform == "win32":
        options = {"creationflags": subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP
                   | subprocess.DETACHED_PROCESS}
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=environment, close_fds=True,
                               cwd=project if project and os.path.isdir(project) else None, **options)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        address = local_address(transport)
        if address is not None:
            try:
                ping(address)
                return address
            except ServerUnreachable:
                pass
        if process.poll() not in (None, 0):
            raise ServerUnreachable(f"the local server exited at start (status {process.returncode})")
        time.sleep(0.1)
    raise ServerUnreachable("the local server did not start in time")
