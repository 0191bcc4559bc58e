"""Checks before anything is installed: this Python, its venv support, the checkout's version,
write access and free disk space. Each failure names the fix, before a long download starts."""

import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from .console import InstallError
from .paths import first_existing_parent

MIN_PYTHON = (3, 10)
GB = 1024 ** 3
# torch with its CUDA libraries takes about 6 GB on Linux and Windows; the macOS wheels
# have no CUDA and are far smaller.
NEEDED_FREE_BYTES = {"darwin": 2 * GB}
NEEDED_FREE_BYTES_DEFAULT = 6 * GB


def project_version(checkout: Path) -> str:
    """The version in pyproject.toml (tomllib only exists from Python 3.11, hence the fallback)."""
    pyproject = checkout / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError as exc:
        raise InstallError(f"cannot read {pyproject}: {exc}",
                           "run install.py from a complete checkout of the project") from exc
    try:
        import tomllib
        return str(tomllib.loads(text)["project"]["version"])
    except ImportError:
        pass
    except (KeyError, ValueError) as exc:
        raise InstallError(f"{pyproject} has no readable [project] version ({exc})",
                           "restore pyproject.toml from the repository (git checkout pyproject.toml)") from exc
    section = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    version = section and re.search(r'^version\s*=\s*["\']([^"\']+)["\']', section.group(1), re.MULTILINE)
    if not version:
        raise InstallError(f"{pyproject} has no [project] version",
                           "restore pyproject.toml from the repository (git checkout pyproject.toml)")
    return version.group(1)


def check_python_version(version_info: tuple = tuple(sys.version_info)) -> None:
    if tuple(version_info[:2]) < MIN_PYTHON:
        have = ".".join(str(part) for part in version_info[:3])
        raise InstallError(
            f"Python {have} is too old: the engine needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer",
            "run install.py with a newer Python, e.g. `python3.12 install.py` (Debian/Ubuntu: "
            "sudo apt install python3; macOS: brew install python or python.org; Windows: python.org)")


def check_venv_support(version_info: tuple = tuple(sys.version_info)) -> None:
    """Debian and Ubuntu ship `venv` without `ensurepip`, so `python3 -m venv` fails half-way."""
    missing = [name for name in ("venv", "ensurepip") if importlib.util.find_spec(name) is None]
    if missing:
        minor = f"python3.{version_info[1]}-venv"
        raise InstallError(
            f"this Python ({sys.executable}) cannot create virtual environments: "
            f"module {' and '.join(missing)} missing",
            f"Debian/Ubuntu: sudo apt install python3-venv (or {minor} for this exact Python); "
            "Fedora: sudo dnf install python3; otherwise install Python from python.org")


def check_writable(folder: Path, purpose: str) -> None:
    """Try a real file: os.access is wrong on read-only mounts, ACLs and some network disks."""
    existing = first_existing_parent(folder)
    try:
        handle, name = tempfile.mkstemp(prefix=".stylize-write-test-", dir=existing)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise InstallError(
            f"cannot write to {existing} ({purpose}): {exc.strerror or exc}",
            "run install.py as the user who owns that folder, or choose a writable place "
            "with --venv DIR") from exc


def needed_free_bytes(platform: str = sys.platform) -> int:
    return NEEDED_FREE_BYTES.get(platform, NEEDED_FREE_BYTES_DEFAULT)


def check_free_space(folder: Path, needed: int) -> None:
    existing = first_existing_parent(folder)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise InstallError(
            f"only {free / GB:.1f} GB free on the disk of {existing}; torch and its libraries need "
            f"about {needed / GB:.0f} GB",
            "free some space (pip's cache can go: python3 -m pip cache purge), or put the virtual "
            "environment on a bigger disk with --venv DIR")
