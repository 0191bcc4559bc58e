"""The engine server for a Flatpak GIMP: a systemd user socket unit that listens where the sandbox
can connect, and the service it starts on the first connection (the engine in this computer's
virtual environment, `stylize serve`). install.py writes both when it installs the plug-in into
a Flatpak profile; --uninstall stops and removes them again, and only files that carry MARKER:
what install.py did not write is never overwritten or removed.

Why this route: the sandbox sees neither the project nor its virtual environment (and the
environment's Python would not run on the sandbox's runtime), and it cannot start host
processes (no org.freedesktop.Flatpak permission). What every Flatpak app has, with no extra
permission, is $XDG_RUNTIME_DIR/app/<app id>: the same folder, at the same path, inside the
sandbox and on the host. The socket lives there; the plug-in's config names it.
"""

import os
import shutil
import subprocess
from pathlib import Path

from .console import InstallError
from .plugin_files import kind_of, partial_path, shown, write_file_atomically

FLATPAK_APP = "org.gimp.GIMP"
UNIT_NAME = "stylize-core-flatpak"
SOCKET_FILE = "stylize-core.sock"
UNIT_FILES = (f"{UNIT_NAME}.socket", f"{UNIT_NAME}.service")
MARKER = "# Written by install.py of stylize-core; python3 install.py --uninstall removes it."
IDLE_TIMEOUT = 600
"""The service exits after this many seconds without a request; the socket unit stays and starts it again."""


def unit_folder(env: dict, home: Path) -> Path:
    return Path(env.get("XDG_CONFIG_HOME") or Path(home) / ".config") / "systemd" / "user"


def socket_path(env: dict) -> Path:
    """Where the socket unit listens: systemd's %t (the user's runtime folder) / app / GIMP's app id."""
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime) / "app" / FLATPAK_APP / SOCKET_FILE


def server_address(env: dict) -> str:
    """The address the plug-in in the sandbox uses (the config's "server")."""
    return "unix:" + str(socket_path(env))


def quote(argument: str) -> str:
    """One argument of ExecStart=, read back as it is: in double quotes, with backslashes and
    double quotes escaped (systemd.syntax(7), "Quoting"), and % and $ doubled, because systemd
    expands %-specifiers and $VARIABLES in a command line's arguments (systemd.service(5))."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def command_line(program: Path, arguments: list[str]) -> str:
    """ExecStart= that runs `program` with `arguments`, its argv[0] being the program's path too.

    systemd expands $VARIABLES in argv[0] but not in the path of the program it runs, so one word
    cannot say both when the path has a $; and the venv's Python finds its environment from
    argv[0]. Hence the "@" form: the program, with only % doubled (check_paths refuses what it
    cannot hold), then argv[0] quoted like any argument."""
    path = str(program).replace("%", "%%")
    return " ".join([f'"@{path}"', quote(str(program)), *(quote(argument) for argument in arguments)])


def unit_path_problem(path: str, program: bool) -> str:
    """What in `path` a unit cannot say, in words, or "" when it can. The program of a command
    line may not contain control characters (systemd.service(5), "Command lines"), nor quotes or
    backslashes (systemd refuses them: "Executable name contains special characters"); a path
    setting such as WorkingDirectory= is the rest of its line, unquoted, so a newline ends it,
    and whitespace or a backslash at its end is dropped or joins the next line (systemd.syntax(7))."""
    if "\n" in path:
        return "a newline"
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        return "a control character"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "bytes that are not UTF-8"
    if program:
        for char, words in (('"', "a double quote"), ("'", "a single quote"), ("\\", "a backslash")):
            if char in path:
                return words
    elif path.endswith((" ", "\\")):
        return f"{'a space' if path.endswith(' ') else 'a backslash'} at its end"
    return ""


def check_paths(python: Path, checkout: Path) -> None:
    """Refuse, before anything is written, a Python or a checkout whose path the units cannot say
    exactly: the server would not start, while install.py reported success."""
    problem = unit_path_problem(str(python), program=True)
    if problem:
        raise InstallError(
            f"the engine server for Flatpak GIMP would run {shown(str(python))}, and a systemd unit cannot "
            f"name a program whose path has {problem} in it; nothing was changed",
            "put the virtual environment in a folder whose path has none (--venv DIR, e.g. "
            "--venv ~/.venvs/stylize-core), or name an engine server that already runs with --server-file FILE")
    problem = unit_path_problem(str(checkout), program=False)
    if problem:
        raise InstallError(
            f"the engine server for Flatpak GIMP runs in the project folder {shown(str(checkout))}, and a "
            f"systemd unit cannot name a folder whose path has {problem}; nothing was changed",
            "move the project to a folder whose path has none, and run install.py from there")


def unit_texts(python: Path, checkout: Path) -> dict[str, str]:
    check_paths(python, checkout)
    command = command_line(python, ["-m", "stylize_core", "serve", "--idle-timeout", str(IDLE_TIMEOUT)])
    return {
        f"{UNIT_NAME}.socket": f"""{MARKER}
[Unit]
Description=Neural style transfer engine for Flatpak GIMP (its socket)

[Socket]
ListenStream=%t/app/{FLATPAK_APP}/{SOCKET_FILE}
SocketMode=0600
DirectoryMode=0700

[Install]
WantedBy=sockets.target
""",
        f"{UNIT_NAME}.service": f"""{MARKER}
[Unit]
Description=Neural style transfer engine for Flatpak GIMP
Requires={UNIT_NAME}.socket

[Service]
ExecStart={command}
WorkingDirectory={str(checkout).replace("%", "%%")}
""",
    }


def is_ours(path: Path) -> bool:
    try:
        return path.read_text(encoding="utf-8").startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def write_units(folder: Path, python: Path, checkout: Path) -> list[Path]:
    """Write both units, each through its partial copy (.NAME.install-partial, which systemd does
    not read) renamed over it: a unit cut short halfway would lack MARKER, and no later run
    would then dare to replace or remove it."""
    texts = unit_texts(python, checkout)
    foreign = [folder / name for name in texts if os.path.lexists(folder / name) and not is_ours(folder / name)]
    if foreign:
        raise InstallError(f"{foreign[0]} exists and install.py did not write it, so it was left as it is and the "
                           "plug-in was not installed for Flatpak GIMP",
                           "rename or remove that unit, then run install.py again")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            write_file_atomically(folder / name, text.encode("utf-8"), 0o644)
    except OSError as error:
        raise InstallError(f"cannot write the systemd user units into {folder}: {error}",
                           "check that the folder belongs to you and the disk is not full, then run install.py "
                           "again (or python3 install.py --uninstall to remove what it wrote)") from error
    return [folder / name for name in texts]


def left_behind(folder: Path) -> list[Path]:
    """Our units (those with MARKER) in `folder`, and the partial copies an install cut short left."""
    found = []
    for name in UNIT_FILES:
        path = folder / name
        if path.is_file() and not path.is_symlink() and is_ours(path):
            found.append(path)
        # The partial copies' names are install.py's own: whatever they hold, it wrote them.
        if os.path.lexists(partial_path(path)) and not kind_of(partial_path(path)):
            found.append(partial_path(path))
    return found


def remove_units(folder: Path) -> list[Path]:
    """Remove left_behind(folder); returns what was removed."""
    removed = left_behind(folder)
    for path in removed:
        path.unlink()
    return removed


def systemctl(*arguments: str) -> tuple[bool, str]:
    """Run `systemctl --user ...`: (whether it worked, its last line of output)."""
    if not shutil.which("systemctl"):
        return False, "systemctl is not installed"
    try:
        done = subprocess.run(["systemctl", "--user", *arguments], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def enable() -> str:
    """Start listening now and at every login; what happened, in words."""
    ok, why = systemctl("daemon-reload")
    if ok:
        ok, why = systemctl("enable", "--now", f"{UNIT_NAME}.socket")
    if ok:
        return f"the socket unit {UNIT_NAME}.socket listens now, and at every login"
    return (f"could not start the socket unit ({why}); start it yourself once a systemd user session runs:\n"
            f"  systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}.socket")


def disable() -> None:
    """Stop the units before their files go (nothing to do when they never ran)."""
    systemctl("disable", "--now", f"{UNIT_NAME}.socket", f"{UNIT_NAME}.service")


PERMISSIONS = (f"Flatpak GIMP reaches the engine through {SOCKET_FILE} in $XDG_RUNTIME_DIR/app/{FLATPAK_APP}, a "
               "folder every Flatpak app shares with the host: no `flatpak override` is needed, and the sandbox "
               "needs no access to the project or its environment.")
