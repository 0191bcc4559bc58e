"""The engine server's protocol (version 2): its limits, its framing, its addresses and the checks a
client makes of whom it talks to. Standard library only: the GIMP plug-in imports it (through
client.py) in GIMP's own Python, and the server (stylize_core/server/) imports it for the framing and
the limits. docs/protocol.md describes both sides.

Every message, both ways, is one JSON object on one line, followed by as many raw bytes as its
"bytes" field says. Transfers are paced, not timed as a whole; every read has a deadline and every
message a size limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import socket
import ssl
import stat
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

PROTOCOL = 2
MAX_HEADER_BYTES = 64 * 1024
"""A message's JSON line: settings and sizes are a few hundred bytes."""
MAX_REQUEST_BYTES = 1 << 30
"""The server's default limit on a request's images together (stylize serve --max-request-mb)."""
MAX_RESULT_BYTES = (1 << 32) + 4096
"""The largest result a client takes: a 16384x16384 RGBA float32 array and its .npy header."""
HEADER_TIMEOUT = 10.0
"""A request's JSON line must arrive whole within this time after connecting (TLS handshake included)."""
TRANSFER_WINDOW = 10.0
"""A transfer's pace is judged per window of this many seconds, both ways: a steady slow peer keeps
its transfer however long it takes; one that stalls or drips loses it within a window or two."""
MIN_TRANSFER_RATE = 256 * 1024
"""Bytes per second a request's images must at least arrive at, in every window."""
MIN_RESULT_RATE = 16 * 1024
"""Bytes per second a result (and any other message to a client) must at least move at, in every
window: a client behind a slow link or an SSH tunnel reads large results slowly but steadily."""
SEND_CHUNK = 64 * 1024
READ_TIMEOUT = 60.0
"""No read waits longer than this for a byte; the server says something at least every HEARTBEAT_INTERVAL."""
HEARTBEAT_INTERVAL = 10.0
CONNECT_TIMEOUT = 10.0
ACCEPT_TIMEOUT = 10.0
"""A server that does not accept a request within this time is given up on (the request is withdrawn)."""
START_TIMEOUT = 90.0
"""Starting a local server: Python and the engine's imports on a cold disk."""
SOCKET_NAME = "server.sock"
LOOPBACK_FILE = "loopback.json"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")



class ProtocolError(Exception):
    """The other side broke the protocol, or was too slow or too big; the message says how and
    `reason` in one word: "request" (malformed), "timeout" or "too-large"."""

    def __init__(self, message: str, reason: str = "request"):
        super().__init__(message)
        self.reason = reason


class ServerError(Exception):
    """The server could not take or finish the run; the message is one line for the user."""


class ServerUnreachable(ServerError):
    """Nobody answered at the address (or not in time): a caller may run the engine itself instead."""


class ServerRefused(ServerError):
    """The server answered but refused the request; `reason` is the protocol's word for why, `ahead`
    the runs ahead when it is busy, `option` the setting to change when the request's input is at
    fault (a Settings field name, or None)."""

    def __init__(self, message: str, reason: str, ahead: int | None = None, option: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.ahead = ahead
        self.option = option


class ServerLost(ServerError):
    """The connection ended in the middle of the run (the server died or was stopped)."""


# --- framing: a JSON line, then as many raw bytes as its "bytes" field says -------------------------

class Channel:
    """One connection's messages, each a JSON object on one line followed by `bytes` raw bytes.

    Transfers are paced, not timed as a whole: every TRANSFER_WINDOW must move at least its rate's
    worth of bytes (or the rest of the message). Memory for a payload is taken as it arrives, each
    chunk first asked of `budget` (a PayloadBudget shared by the connections), never up front."""

    def __init__(self, connection: socket.socket):
        self.connection = connection
        self.buffer = bytearray()

    def send(self, header: dict, parts: list[bytes] | tuple = ()) -> None:
        size = sum(len(part) for part in parts)
        if size:
            header = {**header, "bytes": size}
        self._send_paced(json.dumps(header).encode("utf-8") + b"\n")
        for part in parts:
            self._send_paced(part)

    def _send_paced(self, data: bytes) -> None:
        # Non-blocking sends, retried: the bytes the kernel takes track what the peer reads once the
        # buffers are full, whereas a blocking send waits for a third of a (megabytes large) send
        # buffer to drain, longer than a window at a slow reader's pace. Small chunks, so that a TLS
        # record write completes within a window too.
        view, sent = memoryview(data), 0
        pace = Pace(len(data), MIN_RESULT_RATE)
        self.connection.setblocking(False)
        try:
            while sent < len(data):
                wait = pace.time_left(sent, "the message")
                try:
                    sent += self.connection.send(view[sent:sent + SEND_CHUNK])
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    select.select([], [self.connection], [], min(wait, 0.1))
        finally:
            self.connection.setblocking(True)

    def read(self, deadline: float | None = None, max_payload: int = 0, idle_limit: float = READ_TIMEOUT,
             rate: int = MIN_TRANSFER_RATE) -> tuple[dict, bytes]:
        """The next message and its payload; ProtocolError when it is malformed, too big or too slow.
        `deadline` (time.monotonic()) bounds the JSON line; no single read waits longer than `idle_limit`."""
        header = self.read_header(deadline, idle_limit)
        return header, self.read_payload(header, max_payload, rate=rate)

    def read_header(self, deadline: float | None, idle_limit: float = READ_TIMEOUT) -> dict:
        return parse_header(self._line(deadline, idle_limit))

    def read_payload(self, header: dict, max_payload: int, rate: int = MIN_TRANSFER_RATE,
                     budget: "PayloadBudget | None" = None) -> bytearray:
        """The `bytes` bytes after `header`, at `rate` bytes per second at least in every window."""
        size = header.get("bytes", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError("the message's byte count is not a whole number")
        if size > max_payload:
            raise ProtocolError(f"the message carries {size} bytes, more than the limit of {max_payload}",
                                "too-large")
        return self._exactly(size, rate, budget)

    def _line(self, deadline: float | None, idle_limit: float) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                if len(line) > MAX_HEADER_BYTES:
                    raise ProtocolError(f"the message's JSON line is longer than {MAX_HEADER_BYTES} bytes",
                                        "too-large")
                return line
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise ProtocolError(f"the message's JSON line is longer than {MAX_HEADER_BYTES} bytes", "too-large")
            chunk = self._receive(65536, deadline, idle_limit, "the message's JSON line")
            if not chunk:
                raise EOFError("the connection closed")
            self.buffer += chunk

    def _exactly(self, size: int, rate: int, budget: "PayloadBudget | None") -> bytearray:
        payload = bytearray()
        taken = 0
        pace = Pace(size, rate)
        try:
            while len(payload) < size:
                if self.buffer:
                    chunk = bytes(self.buffer[:size - len(payload)])
                    del self.buffer[:len(chunk)]
                else:
                    self.connection.settimeout(pace.time_left(len(payload), f"{size} bytes"))
                    try:
                        chunk = self.connection.recv(min(size - len(payload), 1 << 20))
                    except socket.timeout:
                        continue  # the window's end: Pace decides whether enough came
                    if not chunk:
                        raise EOFError("the connection closed in the middle of a message")
                if budget is not None:
                    budget.take(len(chunk))
                    taken += len(chunk)
                payload += chunk
        except BaseException:
            if budget is not None:
                budget.give(taken)
            raise
        return payload

    def _receive(self, size: int, deadline: float | None, idle_limit: float, what: str) -> bytes:
        timeout = idle_limit
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise ProtocolError(f"{what} did not arrive in time", "timeout")
        self.connection.settimeout(timeout)
        try:
            return self.connection.recv(size)
        except socket.timeout:
            raise ProtocolError(f"{what} did not arrive in time", "timeout") from None


class Pace:
    """The floor on one transfer's speed: each TRANSFER_WINDOW must move `rate` bytes a second, or
    whatever was left of the transfer when the window began."""

    def __init__(self, size: int, rate: int, window: float = TRANSFER_WINDOW):
        self.size, self.rate, self.window = size, rate, window
        self.window_end = time.monotonic() + window
        self.done_at_window_start = 0

    def time_left(self, done: int, what: str) -> float:
        """Seconds the next read or write may wait; ProtocolError when the last window moved too little."""
        now = time.monotonic()
        if now >= self.window_end:
            needed = min(int(self.rate * self.window), self.size - self.done_at_window_start)
            moved = done - self.done_at_window_start
            if moved < needed:
                raise ProtocolError(f"{what} moved too slowly: {moved} bytes in {self.window:g} s, at least "
                                    f"{needed} needed ({done} of {self.size} done)", "timeout")
            self.window_end, self.done_at_window_start = now + self.window, done
        return max(0.001, self.window_end - now)


class PayloadBudget:
    """The bytes of requests' payloads held at once, all connections together: each chunk is taken
    from it as it arrives and given back when its request's pictures are decoded or it failed."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self.lock = threading.Lock()

    def take(self, count: int) -> None:
        with self.lock:
            if self.held + count > self.limit:
                raise ProtocolError(f"the server holds {self.held} bytes of other requests' images and takes no "
                                    "more now: try again later", "busy")
            self.held += count

    def give(self, count: int) -> None:
        with self.lock:
            self.held -= count


def parse_header(line: bytes) -> dict:
    try:
        header = json.loads(line.decode("utf-8"))
    except RecursionError:
        raise ProtocolError("the message's JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the message is not a JSON object on one line") from None
    if not isinstance(header, dict):
        raise ProtocolError("the message is not a JSON object")
    return header


# --- addresses --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """Where a server listens. kind: "unix" (path), "tcp" (plain, loopback only) or "tls"."""
    kind: str
    path: str = ""
    host: str = ""
    port: int = 0
    token: str = ""
    fingerprint: str = ""
    """tls: the SHA-256 of the server's certificate (hex), pinned instead of a certificate authority."""

    def describe(self) -> str:
        """The address without its secrets, for messages."""
        if self.kind == "unix":
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def public(self) -> str:
        """The address as it may be shown or logged: without its token."""
        if self.kind == "unix":
            return "unix:" + self.path
        return f"{self.kind}://{self.describe()}" + (f"#sha256={self.fingerprint}" if self.fingerprint else "")

    def __str__(self) -> str:
        if self.kind == "unix":
            return "unix:" + self.path
        return f"{self.kind}://{self.token}@{self.describe()}" + (f"#sha256={self.fingerprint}" if self.fingerprint
                                                                  else "")


def parse_address(text: str) -> Address:
    """unix:PATH (or an absolute path), tcp://TOKEN@127.0.0.1:PORT, tls://TOKEN@HOST:PORT#sha256=HEX.
    ValueError says what is wrong, in one line."""
    text = text.strip()
    if text.startswith("unix:"):
        text = text[len("unix:"):]
    if text.startswith("/"):
        return Address("unix", path=text)
    parts = urlsplit(text)
    if parts.scheme not in ("tcp", "tls"):
        raise ValueError(f"the server address {text!r} is not unix:PATH, tcp://TOKEN@127.0.0.1:PORT or "
                         "tls://TOKEN@HOST:PORT#sha256=FINGERPRINT")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ValueError(f"the server address {text!r} has no HOST:PORT")
    token = unquote(parts.username or "")
    if not token:
        raise ValueError(f"the server address {parts.scheme}://...{host}:{port} has no token (TOKEN@ before "
                         "the host): copy it from the server's output")
    if parts.scheme == "tcp" and host not in LOOPBACK_HOSTS:
        raise ValueError(f"plain tcp:// is for this computer only (127.0.0.1, or an SSH tunnel to it): "
                         f"use tls:// for {host}")
    fingerprint = ""
    if parts.scheme == "tls":
        fingerprint = parts.fragment.removeprefix("sha256=").replace(":", "").lower()
        if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
            raise ValueError("a tls:// address needs the server certificate's fingerprint: #sha256= and 64 hex "
                             "digits, as the server printed it")
    return Address(parts.scheme, host=host, port=port, token=token, fingerprint=fingerprint)


def default_socket_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "stylize-core" if runtime else Path(tempfile.gettempdir()) / f"stylize-core-{os.getuid()}"
    return folder / SOCKET_NAME


def unix_sockets_work() -> bool:
    return hasattr(socket, "AF_UNIX") and sys.platform != "win32"


# --- who is at the other end -----------------------------------------------------------------------

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
        raise ServerRefused(f"{folder} is not a folder: not using the server socket in it", "peer")
    if info.st_uid != os.getuid():
        raise ServerRefused(f"{folder} belongs to another user (uid {info.st_uid}): not using the server socket "
                            "in it", "peer")
    if info.st_mode & 0o022:
        raise ServerRefused(f"other users may write to {folder}: not using the server socket in it", "peer")


def tls_connect(connection: socket.socket, address: Address) -> ssl.SSLSocket:
    """TLS with the server's certificate pinned by its fingerprint: checked before the token is sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust comes from the pinned fingerprint, not from a CA
    try:
        secured = context.wrap_socket(connection)
    except (OSError, ssl.SSLError) as error:
        connection.close()
        raise ServerUnreachable(f"no TLS server at {address.describe()} ({error})") from None
    seen = hashlib.sha256(secured.getpeercert(binary_form=True) or b"").hexdigest()
    if not hmac.compare_digest(seen, address.fingerprint):
        secured.close()
        raise ServerRefused(f"the server at {address.describe()} shows another certificate (sha256 {seen[:16]}..., "
                            "not the pinned one): if its certificate was made anew, copy its address again; "
                            "otherwise someone may be in between", "certificate")
    return secured
