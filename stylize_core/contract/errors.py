"""Errors the engine reports to people: one clear line each, never a traceback."""


class StylizeError(Exception):
    """A failure with a message meant for the user and the process exit status."""

    exit_code = 1


class InputError(StylizeError):
    """Bad input file or option value: the user can fix it."""

    exit_code = 2


class OutOfMemoryError(StylizeError):
    """The device ran out of memory even after the automatic fallbacks."""

    exit_code = 3


class Interrupted(StylizeError):
    """Ctrl+C or SIGTERM: the run stops, and whatever it was writing is removed."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
