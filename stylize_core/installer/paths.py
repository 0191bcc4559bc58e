"""Path questions that several steps ask: is one inside another, where to test a path that
does not exist yet, each path once."""

import os
from pathlib import Path


def is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def first_existing_parent(path: Path) -> Path:
    """The folder to test for space and write access when `path` does not exist yet."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def unique(paths: list[Path]) -> list[Path]:
    """The paths in their order, each once (case-insensitively where the file system is)."""
    seen: set[str] = set()
    result = []
    for path in paths:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            result.append(path)
    return result
