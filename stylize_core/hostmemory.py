"""How much memory this computer has free for us (standard library only)."""

from __future__ import annotations

import os

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
