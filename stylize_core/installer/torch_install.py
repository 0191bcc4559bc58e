"""Putting the chosen build of torch into the venv, before the project's own `pip install -e` (which
then finds torch and torchvision satisfied and leaves them alone).

The rules, in order:
  * A torch already in the venv is kept, whatever its build, unless --torch is given: then one of
    another build is replaced. A kept build that does not fit this machine gets a note saying how to
    change it.
  * The user's own pip settings win: where PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS,
    PIP_NO_INDEX or a pip config file name where packages come from, install.py adds no index of its
    own, with --torch too (pip would mix the two, and a mirror or a wheel folder is the user's choice);
    --torch then still replaces a build in the venv, through those settings, and a warning says so if
    they gave another build than the one asked for.
  * Otherwise the build's index on download.pytorch.org is tried first with a short request (pip would
    retry an unreachable index for minutes); unreachable, or failing in pip, it falls back to PyPI's
    default torch, with a warning saying what that build is and means here.
"""

import os
import platform as platform_module
import re
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import pip_install, torch_variant
from .commands import run_captured
from .console import InstallError, note, say, warn
from .torch_variant import PYTORCH_INDEX, Gpu, TorchBuild, describe_gpu, family, variant_label

PROBE_TIMEOUT_S = 5
# Where pip takes packages from: set by the user, these decide, not install.py.
PIP_SOURCE_SETTINGS = ("index-url", "extra-index-url", "find-links", "no-index")
PIP_SOURCE_ENVIRONMENT = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")
# pip reads a boolean setting through strtobool: these turn it off.
PIP_FALSE = ("", "0", "false", "no", "off", "n", "f")

# Runs in the venv: torch/version.py's text, without importing torch (seconds, and torch may be broken).
# Exit 3: no torch.
TORCH_VERSION_FILE = r"""
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("torch")
if spec is None:
    sys.exit(3)
for folder in spec.submodule_search_locations or []:
    if (pathlib.Path(folder) / "version.py").is_file():
        sys.stdout.write((pathlib.Path(folder) / "version.py").read_text(encoding="utf-8"))
        sys.exit(0)
sys.exit(4)
"""


@dataclass
class TorchPlan:
    """What to do with torch: "keep" what the venv has, "install" a build, or "replace" the venv's."""
    action: str
    build: TorchBuild
    line: str
    notes: list[str] = field(default_factory=list)
    user_settings: list[str] = field(default_factory=list)
    requested: str | None = None


def detect_this_machine() -> tuple[str, str, Gpu]:
    """(sys.platform, the architecture, the GPU found) of the computer install.py runs on."""
    machine = platform_module.machine()
    return sys.platform, machine, torch_variant.detect_gpu(sys.platform, machine,
                                                           torch_variant.gather_tool_output(sys.platform))


# ---------------------------------------------------------------------------- what the venv has

def installed_torch(python: Path) -> tuple[str, str] | None:
    """(version, variant) of the venv's torch, None where it has none; the variant is "" where its
    version.py cannot be read."""
    result = run_captured([str(python), "-I", "-c", TORCH_VERSION_FILE], timeout=60)
    if result.returncode == 3:
        return None
    if result.returncode != 0:
        return "", ""
    try:
        return torch_variant.installed_variant(result.stdout)
    except (SyntaxError, ValueError):
        return "", ""


def describe_installed(installed: tuple[str, str]) -> str:
    version, variant = installed
    if not variant:
        return f"torch {version}".rstrip() + " (its build could not be read)"
    return f"torch {version} (the {variant_label(variant)})"


# ---------------------------------------------------------------------------- the user's pip settings

def user_pip_settings(python: Path, environment: dict) -> list[str]:
    """The settings that choose where pip takes packages from, as NAME=value (passwords hidden): from
    the environment (PIP_FIND_LINKS=...), and from pip's config files as `pip config list` in the venv
    names them (global.index-url=...)."""
    found = [f"{name}={hide_password(environment[name])}" for name in PIP_SOURCE_ENVIRONMENT
             if is_set(name, environment.get(name))]
    try:
        result = run_captured([str(python), "-m", "pip", "config", "list"], timeout=60)
    except InstallError:
        return found  # a pip too broken to say is a pip that the install itself will explain
    if result.returncode == 0:
        found += pip_config_settings(result.stdout)
    return found


def pip_config_settings(listing: str) -> list[str]:
    """From `pip config list` (lines such as global.index-url='https://...'): the source settings of
    the sections pip install reads; the environment's (:env:) are read from it directly."""
    found = []
    for line in listing.splitlines():
        key, equals, value = line.partition("=")
        section, _, name = key.strip().rpartition(".")
        value = value.strip().strip("'\"")
        if equals and section in ("global", "install") and name in PIP_SOURCE_SETTINGS and is_set(name, value):
            found.append(f"{key.strip()}={hide_password(value)}")
    return found


def is_set(name: str, value: str | None) -> bool:
    if value is None:
        return False
    if name.lower().replace("_", "-").endswith("no-index"):
        return value.strip().lower() not in PIP_FALSE
    return bool(value.strip())


def hide_password(value: str) -> str:
    """An index URL may carry user:token@: keep them out of what is printed."""
    return re.sub(r"(://)[^/@\s]*@", r"\1***@", value)


# ---------------------------------------------------------------------------- the plan

def plan_torch(gpu: Gpu, build: TorchBuild, installed: tuple[str, str] | None, requested: str | None,
               user_settings: list[str], rerun: str, platform: str,
               index_base: str = PYTORCH_INDEX) -> TorchPlan:
    """What to do, and the one line that says what was found and what is installed. `requested` is
    --torch's value, None where it was not given; `rerun` the command that runs install.py again."""
    kept = installed is not None and plan_to_keep(gpu, build, installed, requested, rerun, platform, index_base)
    if kept:
        return kept
    found = describe_gpu(gpu)
    action = "install" if installed is None else "replace"
    replacing = f"; it replaces {describe_installed(installed)}" if installed is not None else ""
    notes = [build.advice] if build.advice else []
    chosen = f"; --torch {requested} asks for" if requested else ":"
    if not user_settings:
        return TorchPlan(action, build, f"{found}{chosen} {build.describe(index_base)}{replacing}", notes,
                         requested=requested)
    if requested:
        where = f"{index_base}/{build.index}" if build.index else "https://pypi.org/simple"
        notes.append(f"to get {build.label} through your pip settings, point them at {where}, "
                     "or unset them for install.py to choose")
    wanted = f"{build.label} of torch" + (f" ({build.size})" if requested else f" would fit ({build.size})")
    return TorchPlan(action, build, f"{found}{chosen} {wanted}, but your pip settings ({', '.join(user_settings)}) "
                     f"choose torch's build, so install.py adds no index of its own{replacing}",
                     notes, user_settings, requested)


def plan_to_keep(gpu: Gpu, build: TorchBuild, installed: tuple[str, str], requested: str | None, rerun: str,
                 platform: str, index_base: str) -> TorchPlan | None:
    """The venv's torch is kept where it fits, where its build is unknown, or where --torch was not
    given (with a note when it does not fit); None where it is to be replaced."""
    have, variant = describe_installed(installed), installed[1]
    found = describe_gpu(gpu)
    if not variant:
        return TorchPlan("keep", build, f"{have} is installed; kept", requested=requested)
    if torch_variant.fits(variant, build, gpu, platform):
        asked = f", as --torch {requested} asks" if requested else ""
        return TorchPlan("keep", build, f"{have} is installed and fits this machine ({found}){asked}; kept",
                         requested=requested)
    if requested:
        return None
    return TorchPlan("keep", build, f"{have} is installed; kept", notes=[
        f"for this machine ({found}) install.py would choose {build.describe(index_base)}; "
        f"to replace it: {rerun} --torch {family(build.variant)}"])


def install_torch(python: Path, machine: tuple[str, str, Gpu], build: TorchBuild, requested: str | None,
                  installed: tuple[str, str] | None, rerun: str, verbose: bool = False,
                  index_base: str = PYTORCH_INDEX, default_index: tuple = ()) -> TorchPlan:
    """The torch step of an install: the plan for the venv's torch (`installed`, as installed_torch
    says), its one line, and pip run as it says. `machine` is detect_this_machine's answer."""
    platform, architecture, gpu = machine
    # Only asked where torch is to be installed: a re-run that keeps torch stays quick.
    settings = user_pip_settings(python, dict(os.environ)) if installed is None or requested else []
    plan = plan_torch(gpu, build, installed, requested, settings, rerun, platform, index_base)
    show_plan(plan)
    carry_out(plan, python, gpu, platform, architecture, rerun, verbose, index_base, default_index)
    return plan


def show_plan(plan: TorchPlan) -> None:
    say(f"    torch: {plan.line}")
    for text in plan.notes:
        note(text)


# ---------------------------------------------------------------------------- carrying it out

def carry_out(plan: TorchPlan, python: Path, gpu: Gpu, platform: str, machine: str, rerun: str,
              verbose: bool = False, index_base: str = PYTORCH_INDEX, default_index: tuple = ()) -> None:
    """Install (or replace) torch as planned. `default_index` are pip's arguments for PyPI's default
    wheels: none, as pip's own default is PyPI (a test names a local stand-in)."""
    if plan.action == "keep":
        return
    if plan.action == "replace":
        pip_install.uninstall_torch(python, verbose)
    if plan.user_settings:
        pip_install.install_torch(python, [], verbose)
    elif not plan.build.index:
        pip_install.install_torch(python, list(default_index), verbose)
    else:
        problem = install_from_variant_index(plan.build, python, index_base, verbose)
        if problem:
            default = torch_variant.default_build(platform, machine)
            warn(f"{plan.build.label}'s index {index_base}/{plan.build.index} could not be used ({problem}): "
                 + fallback_meaning(plan.build, default, gpu, platform, index_base, rerun))
            pip_install.install_torch(python, list(default_index), verbose)
            return
    check_what_was_installed(plan, python, gpu, platform)


def install_from_variant_index(build: TorchBuild, python: Path, index_base: str, verbose: bool) -> str | None:
    """pip with only the variant's index (torch's dependencies are on it too): a second index would let
    pip take a newer torch of another build from there. Returns None when done, or why that index
    cannot be used: unreachable, or pip cannot install from it. Other failures (a full disk) stop
    the install."""
    url = f"{index_base}/{build.index}"
    problem = probe_index(url)
    if problem:
        return problem
    status, tail = pip_install.install_torch(python, ["--index-url", url], verbose, check=False)
    if status == 0:
        return None
    if not pip_install.is_index_failure(tail):
        pip_install.raise_pip_failure(status, tail)
    return "pip could not install torch from it: " + pip_install.pip_error_excerpt(tail).splitlines()[-1].strip()


def fallback_meaning(build: TorchBuild, default: TorchBuild, gpu: Gpu, platform: str, index_base: str,
                     rerun: str) -> str:
    """What falling back to PyPI's default torch means on this machine."""
    if torch_variant.fits(default.variant, build, gpu, platform):
        meaning = "which suits this machine too"
    elif family(build.variant) == "cpu":
        meaning = "which runs on the CPU here just the same, only bigger"
    else:
        meaning = "which cannot use this GPU: the engine will run on the CPU"
    host = urllib.parse.urlsplit(index_base).netloc or index_base
    return (f"installing PyPI's default torch instead, {default.label}: {default.size}, {meaning}. Once {host} "
            f"can be reached, `{rerun} --torch {family(build.variant)}` installs {build.label}")


def check_what_was_installed(plan: TorchPlan, python: Path, gpu: Gpu, platform: str) -> None:
    """After pip: the build it installed, against the one chosen (the user's settings may give another)."""
    installed = installed_torch(python)
    if installed is None or not installed[1] or torch_variant.fits(installed[1], plan.build, gpu, platform):
        return
    message = (f"pip installed {describe_installed(installed)}, not {plan.build.label}"
               + (f": your pip settings ({', '.join(plan.user_settings)}) chose it" if plan.user_settings else ""))
    (warn if plan.requested else note)(message)


def probe_index(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the index answers for torch within `timeout` seconds, else why not. A thread bounds
    the whole wait: urlopen's timeout does not cover the name lookup. urllib honours HTTPS_PROXY and
    NO_PROXY as pip does."""
    target = url.rstrip("/") + "/torch/"
    if target.startswith("file:"):
        folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(target).path))
        return None if folder.is_dir() else f"{folder} does not exist"
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(fetch_first_byte(target, timeout)), daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:.0f} s"


def fetch_first_byte(target: str, timeout: float) -> str | None:
    cafile = os.environ.get("PIP_CERT")
    try:
        context = ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile) else None)
        request = urllib.request.Request(target, headers={"User-Agent": "stylize-install.py"})
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            response.read(1)
        return None
    except urllib.error.HTTPError as error:
        return f"it answers HTTP {error.code} for torch"
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            return None  # pip has certificates of its own (and PIP_CERT): let it try
        return str(error.reason)
    except (OSError, ValueError) as error:
        return str(error) or type(error).__name__
