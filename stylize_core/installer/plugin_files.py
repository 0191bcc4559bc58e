"""The plug-in's files in a GIMP profile: copied in with the config the plug-in reads and a
manifest of what was written, so that a re-install replaces exactly those and --uninstall
removes exactly those. What install.py did not put there is never overwritten or removed,
nor is anything that a link in the plug-in folder leads to elsewhere.

The config's file name and keys are defined once, in the plug-in's own nst_bridge.py (GIMP runs
the plug-in where only its folder exists); plugin_bridge loads that file for the installer."""

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

from .console import InstallError
from .paths import is_inside

PLUGIN_NAME = "neural-style-transfer"
PLUGIN_ENTRY = PLUGIN_NAME + ".py"
MANIFEST_NAME = "install-manifest.json"
BRIDGE_NAME = "nst_bridge.py"
ENGINE_MODULES = ("client.py", "errors.py", "options.py", "pyramid.py", "timing.py")
"""The engine's standard-library modules the plug-in loads (the server's client, the options, the
time estimate and what it needs),
copied into its engine/ folder: a sandboxed GIMP (Flatpak) sees the plug-in's folder, not the project."""
ENGINE_FOLDER = "engine"


def plugin_bridge(source: Path):
    """The plug-in's nst_bridge.py in `source`, loaded by file path: it is standard library only,
    and importing it by name would need the plug-in folder on sys.path."""
    path = source / BRIDGE_NAME
    if not path.is_file():
        raise InstallError(
            f"the plug-in is incomplete in the checkout: {path} does not exist",
            "use a complete checkout (git status; git checkout plugin), or install without it: --no-plugin")
    return load_module(path, "stylize_plugin_bridge")


def load_module(path: Path, name: str):
    """A standard-library module of the project, loaded by its file path."""
    if not path.is_file():
        raise InstallError(f"the checkout is incomplete: {path} does not exist", "use a complete checkout (git status)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def plugin_files(source: Path) -> list[Path]:
    """The plug-in's files relative to `source`: everything but caches and installer outputs."""
    if not (source / PLUGIN_ENTRY).is_file():
        raise InstallError(
            f"the plug-in is missing from the checkout: {source / PLUGIN_ENTRY} does not exist",
            "use a complete checkout (git status; git checkout plugin), or install without it: --no-plugin")
    config_name = plugin_bridge(source).CONFIG_NAME
    files = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if relative.as_posix() in (config_name, MANIFEST_NAME) or relative.name.startswith("."):
            continue
        files.append(relative)
    return files


def engine_copies(engine: Path | None) -> list[tuple[Path, str]]:
    """(source file, name in the plug-in folder) of the engine modules, from the package `engine`."""
    if engine is None:
        return []
    missing = [name for name in ENGINE_MODULES if not (engine / name).is_file()]
    if missing:
        raise InstallError(f"the engine is incomplete in the checkout: {engine / missing[0]} does not exist",
                           "use a complete checkout (git status; git checkout stylize_core)")
    return [(engine / name, f"{ENGINE_FOLDER}/{name}") for name in ENGINE_MODULES]


def installed_names(source: Path, engine: Path | None = None) -> list[str]:
    """What an install writes into the plug-in folder besides its manifest: files, engine copies, config."""
    return ([relative.as_posix() for relative in plugin_files(source)] + [name for _, name in engine_copies(engine)]
            + [plugin_bridge(source).CONFIG_NAME])


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


def leads_out(folder: Path, sub: Path) -> bool:
    """Whether `folder/sub`, or a folder on the way there, is a link that leads out of `folder`:
    writing or deleting in there would touch files that are not the plug-in's. Each part is
    checked, because the manifest only names paths, and any of them may have become a link."""
    root = Path(os.path.realpath(folder))
    path = Path(folder)
    for part in Path(sub).parts:
        path = path / part
        if not is_inside(Path(os.path.realpath(path)), root):
            return True
    return False


def check_only_ours(folder: Path, names: list[str]) -> None:
    """Refuse, before anything is written, to replace what install.py did not put into the
    plug-in folder: a file its manifest does not list (any file, when there is no manifest),
    or one reached through a link out of the folder."""
    through_links = [name for name in names if leads_out(folder, Path(name).parent)]
    if through_links:
        raise InstallError(
            f"{folder / through_links[0]} is reached through a link that leads out of {folder}, so "
            "install.py does not write there; nothing was changed",
            "replace that link by a real folder (or remove it), then run install.py again")
    listed = read_manifest(folder)
    ours = set() if listed is None else {*listed, MANIFEST_NAME}
    foreign = [folder / name for name in [*names, MANIFEST_NAME]
               if name not in ours and os.path.lexists(folder / name)]
    if foreign:
        why = f"there is no {MANIFEST_NAME}" if listed is None else f"the folder's {MANIFEST_NAME} does not list them"
        raise InstallError(
            f"installing would overwrite files that install.py did not put there ({why}), so nothing was "
            "changed:\n" + "\n".join(f"  {path}" for path in foreign),
            "to keep them, move them out of that folder; if they are a copy of this plug-in that you put "
            "there by hand, delete the folder instead. Then run install.py again")


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


def install_plugin(profile: Path, python: Path | None, checkout: Path, version: str, source: Path,
                   engine: Path | None = None, server: str = "") -> Path:
    """Copy the plug-in into `<profile>/plug-ins/neural-style-transfer/` with the engine's modules
    from `engine` (the package folder), its config and manifest; files of an earlier install that
    the plug-in no longer has are removed. `server`: the address the plug-in reaches the engine at
    (a sandboxed GIMP's); `python` may then be None."""
    folder = plugin_folder(profile)
    files = [(source / relative, relative.as_posix()) for relative in plugin_files(source)] + engine_copies(engine)
    installed = installed_names(source, engine)
    check_only_ours(folder, installed)
    previous = read_manifest(folder) or []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, name in files:
            data = path.read_bytes()
            if path.suffix == ".py":
                # GIMP runs the entry through its shebang: a CRLF from a Windows checkout would
                # make that `python3\r`. The files are meant to have LF endings.
                data = data.replace(b"\r\n", b"\n")
            mode = 0o755 if name == PLUGIN_ENTRY else 0o644
            write_file_atomically(folder / name, data, mode)
        bridge = plugin_bridge(source)
        config = bridge.make_config(str(python) if python else "", str(Path(os.path.abspath(checkout))), version,
                                    server)
        # A server address may carry a token: the config is then the user's alone to read.
        write_file_atomically(folder / bridge.CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode("utf-8"),
                              0o600 if server else 0o644)
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


def remove_installed(folder: Path, names: list[str]) -> list[str]:
    """Remove these files of ours (and the bytecode GIMP's Python made of them), then the
    sub-folders they leave empty; anything else in `folder` stays, and so does everything a
    link leads to outside it. Returns the names left for such a link."""
    emptied = set()
    behind_links = []
    for name in names:
        if leads_out(folder, Path(name).parent):
            behind_links.append(name)
            continue
        path = folder / name
        remove_file(path)
        emptied.add(path.parent)
        if path.suffix == ".py" and not leads_out(folder, Path(name).parent / "__pycache__"):
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
    return behind_links


def remove_folder_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()  # fails on a folder that is not empty, which is the point
        return True
    except OSError:
        return False


def uninstall_plugin(profile: Path) -> str:
    """Remove exactly the files the manifest lists, then the folder if nothing else is left.
    Returns what happened, in words; a second run finds nothing of ours and says so."""
    folder = plugin_folder(profile)
    if not folder.is_dir():
        return "not installed"
    listed = read_manifest(folder)
    if listed is None:
        # What an earlier uninstall left, or a copy made by hand: nothing here is known to be ours.
        return (f"nothing to remove: install.py put none of these files there (there is no {MANIFEST_NAME}), "
                f"so they were left as they are: {folder_contents(folder)}; delete the folder by hand if "
                "you do not want them")
    try:
        behind_links = remove_installed(folder, listed + [MANIFEST_NAME])
        remove_folder_if_empty(folder)
    except OSError as exc:
        raise InstallError(f"cannot remove the plug-in from {folder}: {exc}",
                           "close GIMP and check that the folder belongs to you") from exc
    if not folder.exists():
        return "removed"
    if behind_links:
        return (f"removed its files but not {', '.join(behind_links)}: a link on the way leads out of the "
                f"plug-in folder, to files that are not install.py's; left in {folder}: {folder_contents(folder)}")
    return (f"removed its files; other files were left in {folder}, because install.py did not put them "
            f"there: {folder_contents(folder)}")


def folder_contents(folder: Path) -> str:
    return ", ".join(sorted(os.listdir(folder))) or "nothing (the folder is empty)"
