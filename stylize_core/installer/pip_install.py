"""`pip install -e` of the project, and of torch's build before it: pip's own progress lines shown,
forty "already satisfied" lines counted instead, and a failure explained from pip's output in the
user's terms."""

import sys
from pathlib import Path

from .commands import format_command, run_streamed
from .console import InstallError, indent, say

# pip's words for an index it cannot reach, and for one that lacks a package (or torch).
UNREACHABLE = ("Failed to establish a new connection", "Temporary failure in name resolution",
               "Name or service not known", "Network is unreachable", "ConnectTimeout", "Read timed out",
               "ProxyError", "nodename nor servname", "getaddrinfo failed")
NO_TORCH = ("No matching distribution found for torch", "Could not find a version that satisfies the "
            "requirement torch")
NOT_FOUND = ("No matching distribution found", "Could not find a version that satisfies")
# A variant index of torch failing in these ways falls back to PyPI's default torch (torch_install).
INDEX_FAILURES = UNREACHABLE + NOT_FOUND + ("HTTP error", "Client Error", "Server Error", "Could not fetch URL")

PIP_PROBLEMS = [
    # (patterns in pip's output, problem, fix); the first match wins.
    (("No space left on device", "[Errno 28]"),
     "the disk filled up while pip was installing",
     "free some space (python3 -m pip cache purge helps), or use --venv DIR on a bigger disk; pip also "
     "unpacks into the temporary folder, so point TMPDIR at a big disk if that one is small"),
    (UNREACHABLE,
     "pip could not reach the package index: this computer seems to have no internet connection",
     "connect to the internet (torch is downloaded from pypi.org, about 1-3 GB), set HTTPS_PROXY if you "
     "are behind a proxy, or point pip at a folder of wheels with PIP_FIND_LINKS=DIR PIP_NO_INDEX=1"),
    (("CERTIFICATE_VERIFY_FAILED", "SSLError", "SSL: "),
     "pip could not verify the package index's certificate",
     "a proxy or antivirus may intercept HTTPS: set PIP_CERT to your organisation's certificate file, "
     "or fix the system's certificate store"),
    (NO_TORCH,
     "pip found no torch for this computer",
     f"torch publishes wheels only for some Python versions and platforms (this is Python "
     f"{sys.version_info[0]}.{sys.version_info[1]} on {sys.platform}); run install.py with a Python that "
     "torch supports (see pytorch.org), or check the internet connection"),
    (NOT_FOUND,
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


# What pip installs for torch: the pair, so that torchvision comes from the same build. The project's
# lower bounds (pyproject.toml) are then checked by its `pip install -e`.
TORCH_PACKAGES = ["torch", "torchvision"]


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


def install_package(python: Path, checkout: Path, extras: list[str] = (), verbose: bool = False) -> None:
    """`pip install -e` with these extras of pyproject.toml: torch, installed before it (or already
    there), is left alone, so a re-run is quick."""
    package = f"{checkout}[{','.join(extras)}]" if extras else str(checkout)
    command = [str(python), "-m", "pip", "install", "-e", package]
    say(f"    {format_command(command)}")
    summary = PipSummary(verbose)
    status, tail = run_streamed(command, summary)
    if summary.already_satisfied:
        say(f"    {summary.already_satisfied} requirements were already satisfied (kept as they are)")
    if status != 0:
        raise_pip_failure(status, tail)


def install_torch(python: Path, index_arguments: list[str], verbose: bool = False,
                  check: bool = True) -> tuple[int, list[str]]:
    """`pip install torch torchvision` with these index arguments (none: pip's own settings decide);
    (exit status, last lines), or with `check` a failure explained."""
    command = [str(python), "-m", "pip", "install", *TORCH_PACKAGES, *index_arguments]
    say(f"    {format_command(command)}")
    say("    (torch is downloaded and unpacked, which may take several minutes)")
    status, tail = run_streamed(command, PipSummary(verbose))
    if check and status != 0:
        raise_pip_failure(status, tail)
    return status, tail


def uninstall_torch(python: Path, verbose: bool = False) -> None:
    """Removes torch and torchvision before another build of them is installed (pip would keep a
    torch of the same version, whatever its build). Their dependencies (the CUDA libraries of a CUDA
    build) stay: pip never removes dependencies."""
    command = [str(python), "-m", "pip", "uninstall", "--yes", *TORCH_PACKAGES]
    say(f"    {format_command(command)}")
    status, tail = run_streamed(command, PipSummary(verbose))
    if status != 0:
        raise_pip_failure(status, tail)


def is_index_failure(tail: list[str]) -> bool:
    text = "\n".join(tail)
    return any(pattern in text for pattern in INDEX_FAILURES)


def raise_pip_failure(status: int, tail: list[str]) -> None:
    problem, fix = explain_pip_failure(tail)
    raise InstallError(f"{problem} (pip exit status {status}):\n{indent(pip_error_excerpt(tail))}", fix)


def pip_error_excerpt(tail: list[str]) -> str:
    """pip's ERROR lines when it wrote some (the rest scrolled past above), else its last lines."""
    errors = [line for line in tail if line.lstrip().startswith("ERROR")]
    return "\n".join(errors[-10:] if errors else tail[-15:])
