"""Writing the result: refused before the run where it cannot be written, then written atomically.

A save goes through a temporary file in the output's folder that is flushed to the disk and renamed
over the output; the temporary files of saves under way are known to the process at every step, so
that an interruption at any point (an error, a full disk, Ctrl+C, SIGTERM, SIGHUP, SIGQUIT, a stop
through abandon_saves) leaves either the old output untouched or the new one complete, and no
temporary file. (contract/paths.write_atomically is the plain form of this for small files.)
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image

from ..contract.errors import InputError, StylizeError
from ..contract.paths import sync_folder
from .imageio import Picture, to_array, to_pil

OUTPUT_TYPES = ".png, .jpg, .tif, .webp or .npy"
MAX_OUTPUT_SIDE = {"WEBP": ("WebP", 16383), "JPEG": ("JPEG", 65535), "GIF": ("GIF", 65535)}
"""The longest side each of these formats can hold (Pillow's format name: the name said, the limit);
the others hold more than an input can have."""
TEMPORARY_PREFIX = ".stylize-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path, inputs=()) -> Path:
    """Refuse, before any work, an output that cannot be written or would destroy an input; an
    existing output that is read-only is refused too, as cp would (replacing it would be allowed by
    the folder's permissions, but not by the file's)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"the output is a folder: give a file name in it, e.g. {path / 'result.png'}")
    if not folder.is_dir():
        raise InputError(f"output folder does not exist: {folder} (create it, or write elsewhere)")
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and _same_file(path, Path(source)):
            raise InputError(f"the output would overwrite the input {source}: choose another output name")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"the output {path} exists and is read-only: make it writable (chmod u+w) "
                         "or choose another output name")
    suffix = path.suffix.lower()
    if suffix != ".npy":
        if suffix[1:] not in _writable_extensions():
            raise InputError(f"cannot write images of type {suffix or '(none)'}: {path} (use {OUTPUT_TYPES})")
        try:  # some of Pillow's writers take only some pictures (BLP, say): try one on a tiny one
            _encode(Picture(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), np.float32)), io.BytesIO(), suffix)
        except (ValueError, KeyError, OSError):
            raise InputError(f"cannot write images of type {suffix}: {path} (use {OUTPUT_TYPES})") from None
    probe = []
    try:  # writable for real (a read-only mount, a folder of another user's): make and drop a file
        os.close(_create_temporary(folder, suffix, probe))
    except OSError as error:
        raise InputError(f"cannot write in the output folder {folder} ({error.strerror or error}): "
                         "choose another folder") from None
    finally:
        _drop_temporary(probe)
    return path


def check_output_size(path, size: tuple[int, int]) -> None:
    """Refuse, before the run, an output type that cannot hold a result of size (width, height)."""
    width, height = size
    name, limit = MAX_OUTPUT_SIDE.get(Image.registered_extensions().get(Path(path).suffix.lower()), (None, None))
    if limit is not None and max(width, height) > limit:
        raise InputError(f"{name} holds at most {limit} px a side; the result will be {width}x{height}: "
                         f"choose .png or .tif: {path}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _encode(picture: Picture, stream, suffix: str) -> None:
    if suffix == ".npy":
        np.save(stream, to_array(picture))
        return
    image = to_pil(picture)
    if suffix in (".jpg", ".jpeg") and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha
    image.save(stream, format=Image.registered_extensions()[suffix],
               **({"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}))


def save_picture(picture: Picture, path) -> Path:
    """Write atomically (the module's rule). A new output gets the usual permissions (0666 less the
    umask), a rewritten one keeps its own."""
    path = Path(path)
    check_output(path)
    suffix = path.suffix.lower()
    return save_atomically(path, lambda stream: _encode(picture, stream, suffix))


def save_atomically(path: Path, encode: Callable[[BinaryIO], None]) -> Path:
    """Write what encode(stream) writes to `path` atomically (the module's rule), with save_picture's
    permissions."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    temporary = []
    try:
        handle = _create_temporary(folder, path.suffix.lower(), temporary)
        with os.fdopen(handle, "wb") as stream:
            encode(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary[0], mode)  # made private (0600) so that no one reads it half-written
        with _TEMPORARY_LOCK:
            os.replace(temporary[0], path)
            _UNFINISHED.discard(temporary.pop())
        sync_folder(folder)
    except PermissionError:
        raise InputError(f"cannot write the output (permission denied): {path}") from None
    except OSError as error:
        advice = ": free some space or write elsewhere" if error.errno == errno.ENOSPC else ""
        raise StylizeError(f"cannot write the output {path}: {error.strerror or error}{advice}") from None
    except (ValueError, KeyError) as error:  # an encoder that refused this picture
        raise StylizeError(f"cannot write the output {path}: {error}") from None
    finally:
        _drop_temporary(temporary)
    return path


_TEMPORARY_LOCK = threading.Lock()
"""Held while a temporary file is made or renamed over the output, and for good by abandon_saves."""
_UNFINISHED: set[str] = set()
"""This process's temporary files that exist now, or may: each is named here before it is made."""


def _create_temporary(folder: Path, suffix: str, names: list[str]) -> int:
    """A new private file in folder (its descriptor), named at the end of names, which the caller
    empties with _drop_temporary whatever happens. The name is put in names and _UNFINISHED before the
    file is made: a signal's exception may come between any two steps (even right after os.open
    returned), and whoever removes the names (_drop_temporary, abandon_saves) must find every file
    made. A name whose file was not made is random: removing it removes nothing."""
    while True:
        name = os.path.join(folder, f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}{suffix}")
        with _TEMPORARY_LOCK:
            names.append(name)
            _UNFINISHED.add(name)
            try:
                return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            except FileExistsError:  # someone else's file of the same name: not ours to remove
                names.pop()
                _UNFINISHED.discard(name)


def _drop_temporary(names: list[str]) -> None:
    """Remove the temporary files named in names, those that are there."""
    while names:
        _remove_quietly(names[-1])  # removed before it is forgotten, should an exception come between
        _UNFINISHED.discard(names.pop())


def abandon_saves() -> None:
    """For a process about to end at once (os._exit, which runs no finally): remove the temporary
    files of the saves under way, and let no save make or rename one from now on. An output whose
    rename already happened is complete; one whose rename did not is the old file untouched."""
    _TEMPORARY_LOCK.acquire()  # never released: the process ends next
    for name in list(_UNFINISHED):
        _remove_quietly(name)


def _writable_extensions() -> set[str]:
    return {ext[1:] for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
