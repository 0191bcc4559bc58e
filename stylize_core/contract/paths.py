"""Files and folders of this user's own, for the server, its clients, the installer and the cache
(standard library only: the plug-in imports it with the rest of the contract).

- write_atomically: a file is written whole or not at all, never half: through a temporary file in
  the same folder, flushed to the disk, renamed over the file, and the folder flushed after.
- read_private: the one check of a file that must be this user's alone (a token, an address, a
  key): not a link, owned by this user, neither readable nor writable by others.
- state_folder, cache_folder: where a user's server keeps its token, certificate and addresses, and
  where measurements are cached, on each platform.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from pathlib import Path

APP_FOLDER = "stylize-core"
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class NotPrivate(ValueError):
    """A file that must be this user's alone is not: a link, another user's, or open to others."""


def write_atomically(path: Path, data: bytes | str, mode: int = 0o600, temporary: Path | None = None) -> None:
    """Write `data` (text as UTF-8) to `path` with permissions `mode`, whole or not at all: a crash
    leaves the old file or the new one, never an empty or partial one, and once this returns the
    file stays written. The bytes go to `temporary` (by default a new name beside `path`), opened
    exclusively and without following links, so that nothing that appeared there is written
    through; it is private (0600) until it is complete. OSError when the folder cannot be written."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    temporary = temporary or path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW | getattr(os, "O_BINARY", 0)
    handle = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)  # whatever the umask took away
        os.replace(temporary, path)
    except BaseException:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system can: Windows cannot
    open a folder, and some file systems cannot flush one."""
    if os.name != "posix":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(handle)


def read_private(path: Path) -> str | None:
    """The text of a file that must be this user's alone; None when there is none. NotPrivate when
    it is a link (never followed), another user's, or others may read or write it (where the
    system has such modes); OSError when it cannot be read."""
    if os.name != "posix" and os.path.islink(path):
        raise NotPrivate(f"{path} is a link: not following it")
    try:
        handle = os.open(path, os.O_RDONLY | NO_FOLLOW)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotPrivate(f"{path} is a link: not following it") from None
        raise
    with os.fdopen(handle, encoding="utf-8", errors="replace") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotPrivate(f"{path} is not a file")
        if os.name == "posix" and (info.st_uid != os.getuid() or info.st_mode & 0o077):
            raise NotPrivate(f"{path} belongs to another user or others may read it")
        return stream.read()


def state_folder() -> Path:
    """Where a user's server keeps its token, certificate and addresses (never shared)."""
    return user_folder("state")


def cache_folder() -> Path:
    """Where measurements of this computer are kept (calibration, precision): safe to delete."""
    return user_folder("cache")


def user_folder(kind: str) -> Path:
    """This user's folder of `kind` ("state" or "cache") for stylize-core: XDG on Linux and the like,
    ~/Library on macOS, %LOCALAPPDATA% (both kinds) on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / ("Application Support" if kind == "state" else "Caches")
    elif kind == "state":
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / APP_FOLDER
