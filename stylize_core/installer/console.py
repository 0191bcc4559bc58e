"""What the user reads: numbered steps, indented details, notes, warnings, and the one error
type (a problem and its fix) that main() turns into the final message."""


class InstallError(Exception):
    """A failure the user can fix: what went wrong, and what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


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
