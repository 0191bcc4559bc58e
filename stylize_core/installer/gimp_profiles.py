"""Where GIMP 3 keeps its user profile on each platform (Flatpak included), and what to say when
there is none."""

import json
from pathlib import Path

from .flatpak_server import FLATPAK_APP
from .paths import unique
from ..contract.installation import CONFIG_NAME, make_config
from .plugin_files import PLUGIN_ENTRY

GIMP_VERSIONS = ("3.0", "3.2")

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
    config = json.dumps(make_config(str(python), str(checkout), version))
    fix = ("GIMP creates its profile folder the first time it starts: start GIMP 3 once, quit it, and run "
           "install.py again.\n"
           "Or name the profile folder (the one above the plug-ins folder that GIMP lists in Edit \u203a "
           "Preferences \u203a Folders \u203a Plug-ins): "
           "python3 install.py --plugin-only --gimp-dir DIR\n"
           f"Or copy {source} by hand into GIMP's plug-ins folder (3.2 instead of 3.0 for GIMP 3.2):\n"
           f"{by_hand}\n"
           f"and put a file {CONFIG_NAME} beside {PLUGIN_ENTRY} containing:\n  {config}")
    return problem, fix
