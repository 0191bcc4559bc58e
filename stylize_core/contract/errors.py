"""Errors the engine reports to people: one clear line each, never a traceback.

Each error has a `reason` (a word a program can act on: it travels in the server's error event) and,
where one option is the knob to turn, that option's name. The message states the problem; each
front-end adds the advice in its own words (the CLI its flags, the dialog its labels)."""

from __future__ import annotations


class StylizeError(Exception):
    """A failure with a message meant for the user and the process exit status."""

    exit_code = 1
    reason = "failed"

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option
        """The option (a Settings field) whose value would avoid this, or None."""


class InputError(StylizeError):
    """Bad input file or option value: the user can fix it."""

    exit_code = 2
    reason = "input"


class OutOfMemoryError(StylizeError):
    """The device (or this computer) ran out of memory even after the automatic fallbacks: a smaller
    working size (max_size) needs less."""

    exit_code = 3
    reason = "memory"

    def __init__(self, message: str, option: str | None = "max_size"):
        super().__init__(message, option)


def host_out_of_memory() -> OutOfMemoryError:
    """The error for Python's MemoryError: this computer's memory ran out (not the device's plan)."""
    return OutOfMemoryError("out of memory on this computer")


class Interrupted(StylizeError):
    """Ctrl+C or SIGTERM: the run stops, and whatever it was writing is removed."""

    reason = "interrupted"

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
