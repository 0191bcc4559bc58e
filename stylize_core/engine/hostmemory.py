"""How much memory this computer has free for us, and giving back what a run frees (standard library only)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform

FALLBACK_BYTES = 8 * 2**30
"""Where the system does not say (neither /proc/meminfo nor sysconf), assume a modest machine."""


def available_bytes() -> int:
    """Memory that can be used without swapping: MemAvailable on Linux, free pages elsewhere."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_BYTES


M_MMAP_THRESHOLD = -3
"""glibc's mallopt() parameter: buffers at least this large get a mapping of their own, unmapped when freed."""
PROMPT_RETURN_BYTES = 4 << 20
"""Buffers from this size up are returned to the system when freed: the peak of a tiled run then stays
near its plan at no cost in time, where glibc's own threshold lets it grow by a third
(benchmarks/big_layer.py; docs/measurements.md, memory)."""
GLIBC_SETTLED_THRESHOLD = 32 << 20
"""Where glibc's own threshold settles once a run has freed its first big buffer (its maximum on 64 bits)."""


def _glibc():
    """The C library this process already runs on, where it is glibc: reached through the program's own
    handle, with no search for its file (find_library runs ldconfig in a subprocess)."""
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


@contextlib.contextmanager
def freed_memory_returned():
    """While memory is tight (a run the plan tiles), buffers of PROMPT_RETURN_BYTES and more are returned
    to the system as soon as they are freed. By itself glibc raises that threshold to 32 MB once a
    run frees its first big buffer, then serves the tiles' activations from its heap, which keeps what
    they free: a 2048x2048 run in 512 px tiles peaked at 2.80 GB against the plan's 2.04 GB, 2.07 GB
    with this. Mapping each buffer costs page faults, which is why runs with memory to spare keep
    glibc's way. Does nothing where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_MMAP_THRESHOLD, PROMPT_RETURN_BYTES)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_SETTLED_THRESHOLD)
