"""Freed memory kept for the next iteration, on Linux with glibc (elsewhere these do nothing).

glibc gives every allocation above 32 MB fresh pages of its own and hands them back to the kernel
when freed. A large scale's activations are hundreds of megabytes, freed and allocated again every
iteration, so every iteration page-faulted and zeroed gigabytes anew: at 1497x936 on this CPU 860 000
faults, a third of the iteration's time, and a cost per pixel that grew with the size, which made the
time hard to predict. Served from the heap instead, the same buffers are faulted once per scale:
detail iterations ran 1.3-1.5x faster (3.3-3.4 s per megapixel from 512x512 to 2560x1600, where it
had been 4.7-5.2 at the large sizes).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
DEFAULT_MMAP_MAX = 65536
DEFAULT_TRIM_THRESHOLD = 128 * 1024


def _load_glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # musl and others lack them
    except (OSError, AttributeError):
        return None
    return libc


_glibc = _load_glibc()


def share_one_heap() -> None:
    """Let threads started from now on allocate from the main heap: a thread's own arena cannot hold
    a buffer of more than 64 MB, so it would map the large ones afresh however the heap is set.
    Called by processes of our own (the engine server) before they start their threads."""
    if _glibc is not None:
        _glibc.mallopt(M_ARENA_MAX, 1)


def release_free_memory() -> None:
    """Give freed memory back to the system: between scales, whose buffers have other sizes."""
    if _glibc is not None:
        _glibc.malloc_trim(0)


@contextlib.contextmanager
def reused_heap():
    """Within it, large buffers come from the heap and stay there when freed; afterwards glibc's
    default limits are back and the freed memory is returned to the system."""
    if _glibc is None:
        yield
        return
    _glibc.mallopt(M_MMAP_MAX, 0)
    _glibc.mallopt(M_TRIM_THRESHOLD, -1)
    try:
        yield
    finally:
        _glibc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        _glibc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        _glibc.malloc_trim(0)
