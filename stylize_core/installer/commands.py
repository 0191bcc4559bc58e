"""Running other programs (the venv's python, pip): their output is kept for the error
message rather than shown, or shown line by line as it comes."""

import collections
import subprocess

from .console import InstallError, say

# Lines of a streamed command's output kept for its error message.
TAIL_LINES = 40


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
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
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
