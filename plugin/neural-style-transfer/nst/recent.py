"""The style pictures a painter used last, as a palette one click away in the dialog: their paths, most
recent first, kept in a small file in GIMP's profile folder (not in the plug-in's folder, which the
installer owns). A palette is a convenience: reading or writing it never fails a run."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

RECENT_LIMIT = 6
FILE_NAME = "neural-style-transfer-recent-styles.json"


def recent_styles(profile: Path) -> list[str]:
    """The remembered style files that still exist, most recent first."""
    try:
        entries = json.loads((Path(profile) / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, str) and os.path.isfile(entry)][:RECENT_LIMIT]


def remember_styles(profile: Path, used: list[str]) -> None:
    """`used` (the run's style files, in the dialog's order) first, then the earlier ones, RECENT_LIMIT in
    all; written whole or not at all."""
    used = [os.path.abspath(path) for path in used if path]
    kept = list(dict.fromkeys(used + recent_styles(profile)))[:RECENT_LIMIT]
    try:
        Path(profile).mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".recent-", dir=profile)
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(kept, stream)
        os.replace(temporary, Path(profile) / FILE_NAME)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
