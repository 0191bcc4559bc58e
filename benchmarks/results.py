"""A benchmark's figures as one JSON object in a file (the --json option), for gpu_check to read."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(path, data: dict) -> None:
    """Write data to path as JSON (a temporary file renamed into place: a reader never sees half of it)."""
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    temporary.replace(target)


def read_results(path) -> dict:
    return json.loads(Path(path).read_text())
