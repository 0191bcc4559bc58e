"""The virtual environment: where its python is, whether it runs, creating (or recreating) it,
making sure it has pip, and deleting it again, but only one that this installer created."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .commands import last_lines, run_captured
from .console import InstallError, indent, say, warn
from .preflight import MIN_PYTHON

# Written into a venv that this installer created; --remove-venv deletes nothing without it.
VENV_MARKER = ".stylize-installer"


def venv_python(venv: Path, platform: str = sys.platform) -> Path:
    """The venv's interpreter, as an absolute path that is NOT resolved: resolving a venv's
    python follows its symlink to the base interpreter, which does not see the venv's packages."""
    venv = Path(os.path.abspath(venv))
    if platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def python_works(python: Path) -> bool:
    if not python.is_file():
        return False
    try:
        result = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def has_module(python: Path, module: str) -> bool:
    """find_spec only locates the module: asking about torch this way does not import it.
    -I keeps the working directory off sys.path: run from the checkout, `python -c` would
    otherwise find the checkout's stylize_core/ whether the venv has it installed or not."""
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    try:
        return subprocess.run([str(python), "-I", "-c", code], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def python_version_of(python: Path) -> tuple[int, int]:
    result = run_captured([str(python), "-c", "import sys; print('%d %d' % sys.version_info[:2])"], 60)
    try:
        major, minor = result.stdout.split()
        return int(major), int(minor)
    except ValueError as exc:
        raise InstallError(f"{python} does not run: {last_lines(result.stderr, 5)}",
                           "delete that virtual environment and run install.py again") from exc


def check_venv_python_version(python: Path, venv: Path) -> None:
    version = python_version_of(python)
    if version < MIN_PYTHON:
        raise InstallError(
            f"the virtual environment {venv} has Python {version[0]}.{version[1]}; the engine needs "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer",
            "delete that folder (or pick another with --venv DIR) and run install.py with a newer Python")


def created_by_installer(venv: Path) -> bool:
    return (venv / VENV_MARKER).is_file()


def create_venv(venv: Path) -> None:
    """Create the venv, or recreate one that this installer made and that no longer starts
    (typically after the Python it was made from was upgraded or removed)."""
    python = venv_python(venv)
    # A `.venv` symlink to a cache folder (as CI makes) is created at its target: `python -m
    # venv` refuses a dangling link. The link itself keeps working afterwards.
    venv = Path(os.path.realpath(venv))
    if venv.exists() and any(venv.iterdir()):
        if not created_by_installer(venv):
            raise InstallError(
                f"{venv} exists but is not a working virtual environment (no {python.name} that runs)",
                "choose another folder with --venv DIR, or delete that folder if you do not need it")
        say(f"    {python} does not start any more; recreating the environment")
        clear = ["--clear"]
    else:
        clear = []
    result = run_captured([sys.executable, "-m", "venv", *clear, str(venv)], timeout=600)
    if result.returncode != 0 or not python.is_file():
        output = last_lines(result.stderr + result.stdout)
        fix = "the output above says why; fix that and run install.py again, or use --venv DIR elsewhere"
        if "ensurepip" in output:
            fix = (f"Debian/Ubuntu: sudo apt install python3-venv (or python3.{sys.version_info[1]}-venv), "
                   "then delete the half-made folder and run install.py again")
        raise InstallError(f"creating the virtual environment in {venv} failed:\n{indent(output)}", fix)
    (venv / VENV_MARKER).write_text(
        "Created by the neural style transfer install.py; `install.py --uninstall --remove-venv` "
        "may delete this folder.\n", encoding="utf-8")


def ensure_pip(python: Path) -> None:
    """Environments made by other tools (uv, venv --without-pip) may lack pip."""
    if has_module(python, "pip"):
        return
    say("    pip is missing in this environment; adding it with ensurepip")
    result = run_captured([str(python), "-m", "ensurepip", "--upgrade"], timeout=600)
    if result.returncode != 0:
        raise InstallError(f"this virtual environment has no pip, and ensurepip failed:\n"
                           f"{indent(last_lines(result.stderr + result.stdout))}",
                           "use another --venv DIR (install.py creates a fresh one with pip), or install "
                           "pip into it yourself")


def upgrade_pip(python: Path) -> None:
    """A fresh venv has the pip bundled with Python, often too old to know the newest wheels.
    Failing here is only a warning: the old pip may well manage."""
    # Few retries: offline, this should fail in seconds, and the pip install after it explains.
    result = run_captured([str(python), "-m", "pip", "install", "--upgrade", "--retries", "1", "--timeout", "30",
                           "pip"], timeout=600)
    if result.returncode != 0:
        warn("could not upgrade pip (continuing with the bundled one):\n"
             + indent(last_lines(result.stderr + result.stdout, 5)))
    else:
        version = run_captured([str(python), "-m", "pip", "--version"], 60).stdout.split()
        say(f"    pip {version[1] if len(version) > 1 else '?'} ready")


def remove_venv(venv: Path) -> None:
    """Delete the venv only if this installer created it: the marker says so."""
    target = Path(os.path.realpath(venv))
    if not target.exists():
        say(f"    {venv} does not exist; nothing to remove")
        return
    if not created_by_installer(target) or not (target / "pyvenv.cfg").is_file():
        raise InstallError(
            f"{venv} was not created by install.py (no {VENV_MARKER} inside), so it is not deleted",
            "delete it by hand if you are sure nothing else uses it")
    try:
        shutil.rmtree(target)
        if Path(venv).is_symlink():
            Path(venv).unlink()
    except OSError as exc:
        raise InstallError(f"cannot delete {target}: {exc}",
                           "close programs that use it (GIMP, the engine server) and try again") from exc
    say(f"    removed {target}")
