"""The plug-in's files in a GIMP profile: copied in with the config the plug-in reads and a
manifest of what was written, so that a re-install replaces exactly those and --uninstall
removes exactly those. What install.py did not put there is never overwritten or removed,
nor is anything that a link in the plug-in folder leads to elsewhere.

The manifest is written first, listing every file the install is about to write, and each file
goes in through a partial copy beside it (.NAME.install-partial) that is renamed over it: an
install cut short anywhere (a full disk, Ctrl+C, a power cut) has made no file that the
manifest does not account for, so running install.py again finishes it, and --uninstall
removes it.

The config's file name and keys are defined once, in stylize_core/contract/installation.py, which is
copied beside the plug-in with the rest of the contract (GIMP runs the plug-in where only its folder
exists)."""

import json
import os
import stat
from pathlib import Path

from ..contract.installation import CONFIG_NAME, make_config
from ..contract.paths import write_atomically
from .console import InstallError
from .paths import is_inside

PLUGIN_NAME = "neural-style-transfer"
PLUGIN_ENTRY = PLUGIN_NAME + ".py"
MANIFEST_NAME = "install-manifest.json"
PARTIAL_SUFFIX = ".install-partial"
"""A file being written is `.NAME.install-partial` beside NAME until it is complete; it is ours
when NAME is (and always for the manifest, which is ours by its name)."""
CONTRACT_FOLDER = "stylize_core"
"""Where the contract goes in the plug-in folder: stylize_core/__init__.py and stylize_core/contract/, so
that the plug-in imports `stylize_core.contract` as a package, the one it would import from the project."""


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


def contract_copies(package: Path | None) -> list[tuple[Path, str]]:
    """(source file, name in the plug-in folder) of the contract, from the package folder `package`:
    its __init__.py and every module of its contract/."""
    if package is None:
        return []
    files = [package / "__init__.py", *sorted((package / "contract").glob("*.py"))]
    if len(files) < 2 or not all(path.is_file() for path in files):
        raise InstallError(f"the engine is incomplete in the checkout: {package / 'contract'} is missing files",
                           "use a complete checkout (git status; git checkout stylize_core)")
    return [(path, path.relative_to(package.parent).as_posix()) for path in files]


def installed_names(source: Path, engine: Path | None = None) -> list[str]:
    """What an install writes into the plug-in folder besides its manifest: files, the contract, config."""
    return ([relative.as_posix() for relative in plugin_files(source)] + [name for _, name in contract_copies(engine)]
            + [CONFIG_NAME])


def plugin_folder(profile: Path) -> Path:
    return Path(profile) / "plug-ins" / PLUGIN_NAME


def read_manifest_entries(folder: Path) -> list | None:
    """The manifest's list of files as written, whatever it holds, or None when there is no usable manifest."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, list) else None


def read_manifest(folder: Path) -> list[str] | None:
    """The files a previous install wrote there, or None when there is no usable manifest."""
    entries = read_manifest_entries(folder)
    if entries is None:
        return None
    # Never follow a manifest out of its own folder, whatever was written into it.
    return [name for name in entries if is_plain_relative(name)]


def is_plain_relative(name) -> bool:
    if not isinstance(name, str) or "\0" in name:
        return False
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and ":" not in name


def partial_path(path: Path) -> Path:
    """Where the file `path` is written until it is complete."""
    return path.with_name(f".{path.name}{PARTIAL_SUFFIX}")


def partial_name(name: str) -> str:
    return partial_path(Path(name)).as_posix()


def kind_of(path: Path) -> str | None:
    """None for a regular file or nothing at all; otherwise what is there, in words. install.py
    writes only regular files, so anything else in a place it writes to is not its own."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a name too long, a folder on the way that cannot be read
        return f"cannot be read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a link"
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file"


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
    plug-in folder: a file its manifest does not list (any file, when there is no manifest) or
    the partial copy of one, anything but a regular file where a file is to go, or a file
    reached through a link out of the folder."""
    through_links = [name for name in names if leads_out(folder, Path(name).parent)]
    if through_links:
        raise InstallError(
            f"{folder / through_links[0]} is reached through a link that leads out of {folder}, so "
            "install.py does not write there; nothing was changed",
            "replace that link by a real folder (or remove it), then run install.py again")
    listed = read_manifest(folder)
    ours = set() if listed is None else {*listed, MANIFEST_NAME}
    foreign = []
    for name in [*names, MANIFEST_NAME]:
        # The manifest's partial copy is ours even where there is no manifest: an install cut
        # short while it wrote its first manifest leaves just that.
        for path, own in ((folder / name, name in ours),
                          (folder / partial_name(name), name in ours or name == MANIFEST_NAME)):
            if not os.path.lexists(path):
                continue
            if not own:
                foreign.append(f"  {path}")
            elif kind_of(path):
                foreign.append(f"  {path} ({kind_of(path)}; install.py writes only files)")
    if foreign:
        why = f"there is no {MANIFEST_NAME}" if listed is None else f"the folder's {MANIFEST_NAME} does not list them"
        raise InstallError(
            f"installing would overwrite files that install.py did not put there ({why}), so nothing was "
            "changed:\n" + "\n".join(foreign),
            "to keep them, move them out of that folder; if they are a copy of this plug-in that you put "
            "there by hand, delete the folder instead. Then run install.py again")


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write the partial copy beside `path`, flush it to the disk and rename it over `path`, then
    flush the folder (contract/paths.py): GIMP never sees a half-written plug-in file, and once this
    returns the file stays written, whatever happens next; the manifest is on the disk before the
    files it lists. A partial copy left by an install cut short is replaced (check_only_ours has
    made sure it is ours); the partial copy is never written through a link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    remove_file(partial)
    write_atomically(path, data, mode, temporary=partial)


def write_manifest(folder: Path, version: str, files: list[str], complete: bool) -> None:
    manifest = {"installed_by": "install.py of stylize-core", "version": version, "complete": complete,
                "files": files}
    write_file_atomically(folder / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"), 0o644)


def install_plugin(profile: Path, python: Path | None, checkout: Path, version: str, source: Path,
                   engine: Path | None = None, server: str = "") -> Path:
    """Copy the plug-in into `<profile>/plug-ins/neural-style-transfer/` with the contract
    from `engine` (the stylize_core package folder), its config and manifest; files of an earlier install that
    the plug-in no longer has are removed. `server`: the address the plug-in reaches the engine at
    (a sandboxed GIMP's); `python` may then be None."""
    folder = plugin_folder(profile)
    files = [(source / relative, relative.as_posix()) for relative in plugin_files(source)] + contract_copies(engine)
    installed = installed_names(source, engine)
    check_only_ours(folder, installed)
    previous = read_manifest(folder) or []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # First the manifest of all that is there or about to be: should this install be cut
        # short, every file it has made is listed as ours, to be replaced or removed by the next run.
        write_manifest(folder, version, installed + [name for name in previous if name not in installed], False)
        for path, name in files:
            data = path.read_bytes()
            if path.suffix == ".py":
                # GIMP runs the entry through its shebang: a CRLF from a Windows checkout would
                # make that `python3\r`. The files are meant to have LF endings.
                data = data.replace(b"\r\n", b"\n")
            mode = 0o755 if name == PLUGIN_ENTRY else 0o644
            write_file_atomically(folder / name, data, mode)
        config = make_config(str(python) if python else "", str(Path(os.path.abspath(checkout))), version,
                                    server)
        # A server address may carry a token: the config is then the user's alone to read.
        write_file_atomically(folder / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode("utf-8"),
                              0o600 if server else 0o644)
        remove_installed(folder, sorted(set(previous) - set(installed)))
        write_manifest(folder, version, installed, True)
    except OSError as exc:
        raise InstallError(f"cannot write the plug-in into {folder}: {exc}",
                           "check that the folder belongs to you and the disk is not full (or choose the "
                           "profile with --gimp-dir DIR), then run install.py again: it finishes what this run "
                           "began (or python3 install.py --uninstall removes it)") from exc
    return folder


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove_installed(folder: Path, names: list) -> list[str]:
    """Remove these files of ours, each with the partial copy an install cut short may have left
    and the bytecode GIMP's Python made of it, then the sub-folders they leave empty. Only regular
    files inside `folder` go: a name that is not a plain path inside it, that a link on the way
    leads out of it, or that is a folder or a link is skipped. install.py makes neither, so the
    manifest that names one was edited or damaged, and what it names is not ours to delete.
    Returns the skipped names, each with why: "presets (a folder)"."""
    emptied = set()
    skipped = []
    for name in names:
        if not isinstance(name, str):
            skipped.append(f"{shown(name)} (not a file name)")
            continue
        if not is_plain_relative(name):
            skipped.append(f"{shown(name)} (outside the plug-in folder)")
            continue
        if leads_out(folder, Path(name).parent):
            skipped.append(f"{shown(name)} (a link on the way leads out of the plug-in folder)")
            continue
        path = folder / name
        kind = kind_of(path)
        if kind:
            skipped.append(f"{shown(name)} ({kind})")
            continue
        remove_file(path)
        partial = folder / partial_name(name)
        if not kind_of(partial):
            remove_file(partial)
        emptied.add(path.parent)
        if path.suffix == ".py" and not leads_out(folder, Path(name).parent / "__pycache__"):
            cache = path.parent / "__pycache__"
            for compiled in cache.glob(f"{path.stem}.*.pyc"):
                if not kind_of(compiled):
                    remove_file(compiled)
            emptied.add(cache)
    # Deepest first, so that a folder emptied by its sub-folder's removal goes too.
    for sub in sorted(emptied, key=lambda path: len(path.parts), reverse=True):
        while sub != folder and is_inside(sub, folder):
            if not remove_folder_if_empty(sub):
                break
            sub = sub.parent
    return skipped


def shown(name) -> str:
    """A manifest entry or a path for a one-line message: as it is, or quoted when it would not print as one line."""
    return name if isinstance(name, str) and name.isprintable() else repr(name)


def remove_folder_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()  # fails on a folder that is not empty, which is the point
        return True
    except OSError:
        return False


def uninstall_plugin(profile: Path) -> str:
    """Remove exactly the regular files the manifest lists (with their partial copies), then the
    folder if nothing else is left; what the manifest names that is no such file of ours is
    skipped and named. Returns what happened, in one line; a second run finds nothing of ours
    and says so."""
    folder = plugin_folder(profile)
    if not folder.is_dir():
        return "not installed"
    listed = read_manifest_entries(folder)
    try:
        if listed is None:
            # An install cut short while it wrote its first manifest leaves only that manifest's partial copy.
            partial = folder / partial_name(MANIFEST_NAME)
            if partial.exists() and not kind_of(partial):
                remove_file(partial)
                if remove_folder_if_empty(folder):
                    return "removed (what an install cut short had begun)"
            # What an earlier uninstall left, or a copy made by hand: nothing here is known to be ours.
            return (f"nothing to remove: install.py put none of these files there (there is no {MANIFEST_NAME}), "
                    f"so they were left as they are: {folder_contents(folder)}; delete the folder by hand if "
                    "you do not want them")
        skipped = remove_installed(folder, listed + [MANIFEST_NAME])
        remove_folder_if_empty(folder)
    except OSError as exc:
        raise InstallError(f"cannot remove the plug-in from {folder}: {exc}",
                           "close GIMP and check that the folder belongs to you") from exc
    if skipped:
        left = f"; left in {folder}: {folder_contents(folder)}" if folder.exists() else ""
        return (f"removed its files; skipped, because install.py removes only the regular files it wrote inside "
                f"the plug-in folder: {', '.join(skipped)}{left}")
    if not folder.exists():
        return "removed"
    return (f"removed its files; other files were left in {folder}, because install.py did not put them "
            f"there: {folder_contents(folder)}")


def folder_contents(folder: Path) -> str:
    return ", ".join(sorted(os.listdir(folder))) or "nothing (the folder is empty)"
