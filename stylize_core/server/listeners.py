"""Where the engine server listens, made so that it fails closed and touches only what it made.

- A Unix socket lives in a folder the server made itself, or in an existing folder that is really
  a folder (not a link), is this user's, and that no other user may write to. No folder's mode is
  ever changed; only a socket of this user's is ever removed from the socket's path.
- A TCP listener always has a token: at least TOKEN_MIN_LENGTH random characters, kept in a file
  only this user may read, written whole (fsync) before it is used. A token file that is empty,
  short or unreadable stops the server at start; it never serves without one.
- Secrets are never printed: the full address (with its token) goes to a private file, and what
  is printed names that file.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import paths
from ..contract.protocol import LOOPBACK_FILE, PROTOCOL, Address
from ..contract.paths import NotPrivate, state_folder, write_atomically

TOKEN_MIN_LENGTH = 32
TOKEN_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
LOCK_MARK = b"stylize serve lock, pid"
"""The first bytes of a lock file the server made: one without them is someone else's, never removed."""
UNIX_PATH_MAX = 107
"""Bytes of a Unix socket's path the kernel takes (sun_path is 108 with its terminating zero)."""


class StartError(Exception):
    """The server cannot start as asked; the message says why and what to do, in one line."""


@dataclass
class Listener:
    sock: socket.socket
    kind: str
    """"unix" (peers checked by user id) or "tcp" (a token required)."""
    address: Address
    token: str = ""
    tls: ssl.SSLContext | None = None
    address_file: Path | None = None
    """Where the full address, token included, is written for this user (tcp only)."""
    owned_paths: list = field(default_factory=list)
    """Files to remove at exit: our socket, our address files."""
    lock: "Lock | None" = None

    def __post_init__(self):
        if self.kind == "tcp" and not valid_token(self.token):
            raise StartError("a TCP listener needs a token of at least "
                             f"{TOKEN_MIN_LENGTH} characters: refusing to serve without one")

    def close(self) -> None:
        self.sock.close()
        for path in self.owned_paths:
            try:
                Path(path).unlink()
            except FileNotFoundError:
                pass
        if self.lock:
            self.lock.release()


# --- folders and files of our own -----------------------------------------------------------------------

def own_folder(folder: Path, private: bool = True) -> Path:
    """A folder for the server's files: made (mode 0700) when missing; an existing one must be a
    real folder of this user's that no other user may write to (`private`: nor read). Its mode is
    never changed: a folder the server did not make is the user's to set."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise StartError(f"cannot make the folder {folder}: {error.strerror or error}") from None
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise StartError(f"{folder} is a link: not following it (another user may have put it there); "
                         "remove it or choose another place")
    if not stat.S_ISDIR(info.st_mode):
        raise StartError(f"{folder} is not a folder")
    if os.name == "posix":
        if info.st_uid != os.getuid():
            raise StartError(f"{folder} belongs to another user (uid {info.st_uid}): choose a folder of your own")
        loose = info.st_mode & (0o077 if private else 0o022)
        if loose:
            who = "read or enter" if private else "write to"
            raise StartError(f"other users may {who} {folder} (mode {stat.S_IMODE(info.st_mode):o}): "
                             f"{'chmod 700 it, or remove it' if private else 'choose a folder of your own'}")
    return folder


def read_private(path: Path) -> str | None:
    """The text of a file of ours that others may not read; None when there is none; StartError
    when it is a link, another user's, open to others, or unreadable (paths.read_private)."""
    try:
        return paths.read_private(path)
    except NotPrivate as error:
        raise StartError(f"{error}: remove it") from None
    except OSError as error:
        raise StartError(f"cannot read {path}: {error.strerror or error} (a link is not followed)") from None


# --- the token ------------------------------------------------------------------------------------------

def valid_token(token: str) -> bool:
    return len(token) >= TOKEN_MIN_LENGTH and set(token) <= TOKEN_CHARACTERS


def server_token() -> str:
    """This user's server token, made on first start (random, written whole) and kept in a file only
    the user can read. A token file that holds no valid token stops the server: it never serves
    with an empty or guessable one."""
    folder = own_folder(state_folder())
    path = folder / "token"
    text = read_private(path)
    if text is None:
        made = secrets.token_urlsafe(32)
        temporary = path.with_name(f".token.{os.getpid()}.new")
        write_atomically(temporary, made + "\n")
        try:
            os.link(temporary, path)  # two servers starting at once: the first one's token wins
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        text = read_private(path) or ""
    token = text.strip()
    if not valid_token(token):
        raise StartError(f"the token file {path} holds no valid token ({len(token)} characters; at least "
                         f"{TOKEN_MIN_LENGTH} letters, digits, - or _): remove it, and a new one is made at the "
                         "next start (clients then need the new address)")
    return token


# --- locks ----------------------------------------------------------------------------------------------

class Lock:
    """An exclusive lock on a file, held for the server's life and removed with it. After taking
    the lock it checks that the file is still the one at the path (a server ending removes it),
    so that two servers never both hold one."""

    def __init__(self, path: Path, handle: int):
        self.path = path
        self.handle = handle

    @staticmethod
    def take(path: Path) -> "Lock | None":
        """The lock, or None when another server holds it."""
        import fcntl
        while True:
            try:
                handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except OSError as error:
                raise StartError(f"cannot make the lock file {path}: {error.strerror or error}") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                return None
            try:
                same = os.stat(handle).st_ino == os.lstat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(handle)  # its server removed it as we opened it: take the new one
                continue
            held = os.pread(handle, 256, 0)
            if held and not held.startswith(LOCK_MARK):
                os.close(handle)
                raise StartError(f"{path} exists and is not a lock file of stylize serve: not using it, nor "
                                 "removing it; choose another socket path or remove it yourself")
            os.ftruncate(handle, 0)
            os.pwrite(handle, LOCK_MARK + f" {os.getpid()}\n".encode(), 0)
            return Lock(path, handle)

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.handle)


# --- the listeners --------------------------------------------------------------------------------------

def unix_listener(path: Path, private_folder: bool) -> Listener | None:
    """A Unix socket at `path`, only for this user; None when another server already holds it.
    `private_folder`: the folder is the server's own (the default place), not the user's choice."""
    path = Path(os.path.abspath(path))
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise StartError(f"the socket path {path} is {len(os.fsencode(path))} bytes; a Unix socket's path may "
                         f"have at most {UNIX_PATH_MAX}: choose a shorter one")
    own_folder(path.parent, private=private_folder)
    lock = Lock.take(path.with_name(path.name + ".lock"))
    if lock is None:
        return None
    try:
        if os.path.lexists(path):
            info = os.lstat(path)
            if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
                raise StartError(f"{path} exists and is not a socket of yours: not replacing it; choose another "
                                 "path or remove it yourself")
            path.unlink()  # a socket whose server died without removing it (it would hold the lock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(64)
    except BaseException:
        lock.release()
        raise
    return Listener(sock, "unix", Address("unix", path=str(path)), owned_paths=[path], lock=lock)


def tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as error:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        raise StartError(f"cannot listen on {shown}:{port}: {error.strerror or error}") from None
    return sock


def loopback_listener(port: int) -> Listener | None:
    """127.0.0.1 with a token; the port and token are written where this user's clients look. None
    when this user's loopback server already runs (there is one record for the clients to read)."""
    token = server_token()
    record = state_folder() / LOOPBACK_FILE
    lock = Lock.take(record.with_name(record.name + ".lock"))
    if lock is None:
        return None
    try:
        sock = tcp_socket("127.0.0.1", port)
        port = sock.getsockname()[1]
        record_text = json.dumps({"port": port, "token": token, "pid": os.getpid(), "protocol": PROTOCOL})
        write_atomically(record, record_text + "\n")
    except BaseException:
        lock.release()
        raise
    return Listener(sock, "tcp", Address("tcp", host="127.0.0.1", port=port, token=token), token=token,
                    address_file=record, owned_paths=[record], lock=lock)


def network_listener(host: str, port: int, tls: bool) -> Listener:
    """HOST:PORT for other computers, TLS (or plain, for an SSH tunnel's end) and a token. The
    address to give the clients is written to a private file named after the port."""
    token = server_token()
    context, fingerprint = None, ""
    if tls:
        from .tls import tls_context  # cryptography is imported only by a TLS server
        context, fingerprint = tls_context(state_folder() / "tls", host)
    sock = tcp_socket(host, port)
    port = sock.getsockname()[1]
    public = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    address = Address("tls" if tls else "tcp", host=public, port=port, token=token, fingerprint=fingerprint)
    address_file = state_folder() / f"address-{port}"
    try:
        write_atomically(address_file, str(address) + "\n")
    except BaseException:
        sock.close()
        raise
    return Listener(sock, "tcp", address, token=token, tls=context, address_file=address_file,
                    owned_paths=[address_file])


def activated_listeners() -> list[Listener]:
    """Sockets handed over by systemd (socket activation: LISTEN_PID, LISTEN_FDS, from fd 3)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    listeners = []
    for descriptor in range(3, 3 + int(os.environ.get("LISTEN_FDS", "0"))):
        sock = socket.socket(fileno=descriptor)
        if sock.family == getattr(socket, "AF_UNIX", None):
            listeners.append(Listener(sock, "unix", Address("unix", path=sock.getsockname())))
        else:
            token = server_token()
            host, port = sock.getsockname()[:2]
            listeners.append(Listener(sock, "tcp", Address("tcp", host=host, port=port, token=token), token=token))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return listeners
