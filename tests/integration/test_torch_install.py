"""install.py's torch step end to end, with no network: pip installs a build of torch into a throwaway
venv from local stand-ins for PyTorch's per-build indexes, and for PyPI's default one.

The stand-in `torch` and `torchvision` are tiny wheels this module builds (torch 2.99.0+cpu, +cu128,
and 2.99.0 for "PyPI's default", whose torch/version.py says CUDA 13.0 as PyPI's Linux wheel does),
served as PEP 503 simple indexes by http.server on 127.0.0.1. pip's own configuration (this machine's
pip.conf, PIP_FIND_LINKS) is switched off for these tests, except where a test sets the user's own.
The last tests drive install.py's main() with pip replaced, for what it says and runs (the extras,
--cluster's Ray among them, too).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from stylize_core.installer import cli, engine_check, pip_install, torch_install, venv_setup
from stylize_core.installer.torch_variant import Gpu, choose_build, detect_gpu

VERSION = "2.99.0"
RERUN = "python3 install.py"
NVIDIA_575 = {"nvidia-smi": "NVIDIA GeForce RTX 3080, 575.57.08, 8.6\n"}
PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT")


# ---------------------------------------------------------------------------- stand-in wheels and indexes

def version_file(version: str, cuda: str | None) -> str:
    """torch/version.py as torch writes it."""
    return (f"from typing import Optional\n\n__version__ = '{version}'\ndebug = False\n"
            f"cuda: Optional[str] = {cuda!r}\ngit_version = 'stand-in'\nhip: Optional[str] = None\n"
            "rocm: Optional[str] = None\nxpu: Optional[str] = None\n")


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: tuple = ()) -> Path:
    """A pure-Python wheel with these files, its metadata and a RECORD with their hashes."""
    dist_info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                         + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires))
    contents[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def make_build(folder: Path, local: str, cuda: str | None, torchvision: bool = True) -> list[Path]:
    """The stand-in torch (and torchvision) of one build; `local` is its version's tag, "" for none."""
    version = f"{VERSION}+{local}" if local else VERSION
    # PyPI's Linux torch has no tag in its wheel's version, but says it in torch.__version__ (2.14.1+cu130).
    torch_files = {"torch/__init__.py": "from .version import __version__, cuda\n",
                   "torch/version.py": version_file(f"{VERSION}+{local or 'cu130'}", cuda)}
    wheels = [make_wheel(folder, "torch", version, torch_files)]
    if torchvision:
        vision_version = f"0.99.0+{local}" if local else "0.99.0"
        wheels.append(make_wheel(folder, "torchvision", vision_version, {"torchvision/__init__.py": ""},
                                 requires=(f"torch=={VERSION}",)))
    return wheels


def write_simple_index(index: Path, wheels: list[Path]) -> None:
    """PEP 503: index/<project>/index.html links each wheel, which lies in index/<project>/ too."""
    for wheel in wheels:
        project = index / wheel.name.split("-")[0]
        project.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, project / wheel.name)
        links = "".join(f'<a href="{urllib.parse.quote(path.name)}">{path.name}</a>\n'
                        for path in sorted(project.glob("*.whl")))
        (project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    """The served indexes: {base}/good/{cpu,cu128} and {base}/broken/cpu (torch without torchvision)
    stand in for download.pytorch.org/whl/VARIANT, {base}/default for PyPI; `wheels`, a folder of the
    default build's wheels for find-links."""
    root = tmp_path_factory.mktemp("indexes")
    wheels = root / "wheels"
    write_simple_index(root / "good" / "cpu", make_build(wheels / "cpu", "cpu", None))
    write_simple_index(root / "good" / "cu128", make_build(wheels / "cu128", "cu128", "12.8"))
    write_simple_index(root / "broken" / "cpu", make_build(wheels / "broken", "cpu", None, torchvision=False))
    write_simple_index(root / "default", make_build(wheels / "default", "", "13.0"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"good": f"{base}/good", "broken": f"{base}/broken", "default": f"{base}/default",
           "default_wheels": wheels / "default"}
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_pip_settings(monkeypatch):
    """pip as if it had no settings of the user's: no config files, no PIP_* sources, no proxy."""
    for name in PIP_SOURCES + ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")  # the stand-ins stay out of the user's pip cache
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def template_venv(tmp_path_factory):
    """One real venv with pip (no torch), made once; each test works in a copy of it."""
    venv = tmp_path_factory.mktemp("template") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180)
    return venv


@pytest.fixture
def venv_python(template_venv, tmp_path):
    venv = tmp_path / "venv"
    shutil.copytree(template_venv, venv, symlinks=True)
    return venv_setup.venv_python(venv)


def closed_port_url() -> str:
    """An address on this machine where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl"


def torch_step(python: Path, tools: dict, index_base: str, default: str, requested: str | None = None):
    """install.py's torch step on a simulated Linux x86_64 machine with these tools' output."""
    gpu = detect_gpu("linux", "x86_64", tools)
    build = choose_build("linux", "x86_64", gpu, requested or "auto")
    return torch_install.install_torch(python, ("linux", "x86_64", gpu), build, requested,
                                       torch_install.installed_torch(python), RERUN, index_base=index_base,
                                       default_index=("--index-url", default))


# ---------------------------------------------------------------------------- end to end

@pytest.mark.usefixtures("no_pip_settings")
def test_the_cpu_build_comes_from_its_own_index(venv_python, indexes, capsys):
    plan = torch_step(venv_python, {}, indexes["good"], indexes["default"])
    out = capsys.readouterr().out
    assert plan.action == "install"
    assert f"torch: no GPU found: the CPU build of torch from {indexes['good']}/cpu, about 190 MB download" in out
    assert f"-m pip install torch torchvision --index-url {indexes['good']}/cpu" in out
    assert "warning" not in out
    assert torch_install.installed_torch(venv_python) == (f"{VERSION}+cpu", "cpu")


@pytest.mark.usefixtures("no_pip_settings")
def test_an_unreachable_variant_index_falls_back_quickly_to_the_default_with_a_warning(venv_python, indexes,
                                                                                       capsys):
    unreachable = closed_port_url()
    started = time.monotonic()
    problem = torch_install.probe_index(f"{unreachable}/cpu")
    assert problem and time.monotonic() - started < 3
    torch_step(venv_python, {}, unreachable, indexes["default"])
    out = capsys.readouterr().out
    assert f"warning: the CPU build's index {unreachable}/cpu could not be used (" in out
    assert ("installing PyPI's default torch instead, the CUDA 13.0 build: about 3 GB download, 5.6 GB installed, "
            "which runs on the CPU here just the same, only bigger") in out
    assert f"`{RERUN} --torch cpu` installs the CPU build" in out
    assert f"--index-url {unreachable}" not in out  # pip never waited on it
    assert torch_install.installed_torch(venv_python) == (f"{VERSION}+cu130", "cu130")


@pytest.mark.usefixtures("no_pip_settings")
def test_an_index_pip_cannot_install_from_falls_back_too(venv_python, indexes, capsys):
    torch_step(venv_python, {}, indexes["broken"], indexes["default"])  # its torch answers, no torchvision
    out = capsys.readouterr().out
    assert f"--index-url {indexes['broken']}/cpu" in out
    assert "could not be used (pip could not install torch from it: " in out and "torchvision" in out
    assert "installing PyPI's default torch instead" in out
    assert torch_install.installed_torch(venv_python) == (f"{VERSION}+cu130", "cu130")


@pytest.mark.usefixtures("no_pip_settings")
@pytest.mark.parametrize("settings", ["index-url", "find-links"])
def test_the_users_pip_settings_choose_torchs_build(venv_python, indexes, monkeypatch, capsys, settings):
    if settings == "index-url":
        monkeypatch.setenv("PIP_INDEX_URL", indexes["default"])
        named = f"PIP_INDEX_URL={indexes['default']}"
    else:
        monkeypatch.setenv("PIP_FIND_LINKS", str(indexes["default_wheels"]))
        monkeypatch.setenv("PIP_NO_INDEX", "1")
        named = f"PIP_FIND_LINKS={indexes['default_wheels']}, PIP_NO_INDEX=1"
    plan = torch_step(venv_python, {}, indexes["good"], indexes["good"])  # install.py's would be the CPU build
    out = capsys.readouterr().out
    assert (f"torch: no GPU found: the CPU build of torch would fit (about 190 MB download), but your pip settings "
            f"({named}) choose torch's build, so install.py adds no index of its own") in out
    assert "--index-url" not in out
    assert plan.user_settings and torch_install.installed_torch(venv_python) == (f"{VERSION}+cu130", "cu130")


@pytest.mark.usefixtures("no_pip_settings")
def test_a_pip_config_file_counts_and_its_password_is_not_shown(venv_python, tmp_path, monkeypatch):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://reader:s3cret@mirror.example/simple\n"
                      "[install]\nfind-links = /srv/wheels\nno-index = false\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    settings = torch_install.user_pip_settings(venv_python, dict(os.environ))
    assert "global.index-url=https://***@mirror.example/simple" in settings
    assert "install.find-links=/srv/wheels" in settings
    assert not any("no-index" in setting or "s3cret" in setting for setting in settings)


@pytest.mark.usefixtures("no_pip_settings")
def test_another_build_in_the_venv_is_kept_unless_asked_then_replaced(venv_python, indexes, capsys):
    torch_step(venv_python, {}, indexes["good"], indexes["default"])
    assert torch_install.installed_torch(venv_python)[1] == "cpu"
    capsys.readouterr()
    plan = torch_step(venv_python, NVIDIA_575, indexes["good"], indexes["default"])  # an NVIDIA GPU now
    out = capsys.readouterr().out
    assert plan.action == "keep" and "pip install" not in out and "pip uninstall" not in out
    assert f"torch: torch {VERSION}+cpu (the CPU build) is installed; kept" in out
    assert (f"note: for this machine (NVIDIA GeForce RTX 3080 found (driver 575.57.08)) install.py would choose "
            f"the CUDA 12.8 build of torch from {indexes['good']}/cu128") in out
    assert f"to replace it: {RERUN} --torch cuda" in out
    assert torch_install.installed_torch(venv_python)[1] == "cpu"

    plan = torch_step(venv_python, NVIDIA_575, indexes["good"], indexes["default"], requested="cuda")
    out = capsys.readouterr().out
    assert plan.action == "replace"
    assert (f"NVIDIA GeForce RTX 3080 found (driver 575.57.08); --torch cuda asks for the CUDA 12.8 build of torch "
            f"from {indexes['good']}/cu128") in out and f"it replaces torch {VERSION}+cpu (the CPU build)" in out
    assert out.index("-m pip uninstall --yes torch torchvision") < out.index("-m pip install torch torchvision")
    assert torch_install.installed_torch(venv_python) == (f"{VERSION}+cu128", "cu128")

    plan = torch_step(venv_python, NVIDIA_575, indexes["good"], indexes["default"], requested="cuda")
    assert plan.action == "keep" and "pip install" not in capsys.readouterr().out


@pytest.mark.usefixtures("no_pip_settings")
def test_asked_for_a_build_the_users_settings_do_not_give_says_so(venv_python, indexes, monkeypatch, capsys):
    torch_step(venv_python, {}, indexes["good"], indexes["default"])
    monkeypatch.setenv("PIP_INDEX_URL", indexes["default"])
    capsys.readouterr()
    torch_step(venv_python, NVIDIA_575, indexes["good"], indexes["default"], requested="cuda")
    out = capsys.readouterr().out
    assert "--index-url" not in out and "-m pip uninstall --yes torch torchvision" in out
    assert f"note: to get the CUDA 12.8 build through your pip settings, point them at {indexes['good']}/cu128" in out
    assert (f"warning: pip installed torch {VERSION}+cu130 (the CUDA 13.0 build), not the CUDA 12.8 build: your pip "
            f"settings (PIP_INDEX_URL={indexes['default']}) chose it") in out


def test_the_probe_tells_an_index_that_answers_from_one_that_does_not(indexes, tmp_path):
    assert torch_install.probe_index(f"{indexes['good']}/cpu") is None
    assert "HTTP 404" in torch_install.probe_index(f"{indexes['good']}/rocm6.4")
    (tmp_path / "cpu" / "torch").mkdir(parents=True)
    assert torch_install.probe_index((tmp_path / "cpu").as_uri()) is None
    assert "does not exist" in torch_install.probe_index((tmp_path / "xpu").as_uri())


# ---------------------------------------------------------------------------- install.py's main(), pip replaced

def fake_venv(folder: Path) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").symlink_to(sys.executable)
    (folder / "pyvenv.cfg").write_text("home = /nowhere\n")
    return folder


@pytest.fixture
def fake_install(tmp_path, monkeypatch, no_pip_settings):
    """main() on a machine given by the test, pip and the engine's probe replaced: returns the venv
    (without torch) and the list of the commands pip was given."""
    venv = fake_venv(tmp_path / "venv")
    commands: list = []
    monkeypatch.setattr(venv_setup, "has_module", lambda python, module: module != "torch")
    monkeypatch.setattr(pip_install, "run_streamed", lambda command, show=None: (commands.append(command), (0, []))[1])
    monkeypatch.setattr(torch_install, "probe_index", lambda url: None)
    monkeypatch.setattr(engine_check, "probe_engine", lambda python: {
        "torch": "2.99.0+cpu", "stylize_core": "0.1.0", "location": str(cli.CHECKOUT / "stylize_core"),
        "device": "cpu", "gpu": None, "cuda_build": None, "hip": None, "xpu": False})
    return venv, commands


def simulate(monkeypatch, platform: str, machine: str, tools: dict) -> None:
    gpu = detect_gpu(platform, machine, tools)
    monkeypatch.setattr(torch_install, "detect_this_machine", lambda: (platform, machine, gpu))


def test_install_py_installs_the_chosen_build_before_the_project(fake_install, monkeypatch, capsys):
    venv, commands = fake_install
    simulate(monkeypatch, "linux", "x86_64", {})
    assert cli.main(["--venv", str(venv), "--no-plugin", "--skip-check"]) == 0
    out = capsys.readouterr().out
    python = str(venv / "bin" / "python")
    assert commands == [[python, "-m", "pip", "install", "torch", "torchvision", "--index-url",
                         "https://download.pytorch.org/whl/cpu"],
                        [python, "-m", "pip", "install", "-e", str(cli.CHECKOUT)]]
    assert ("    torch: no GPU found: the CPU build of torch from https://download.pytorch.org/whl/cpu, about 190 MB "
            "download\n") in out


def test_install_py_warns_when_the_nvidia_gpu_found_is_not_used(fake_install, monkeypatch, capsys):
    venv, commands = fake_install
    simulate(monkeypatch, "linux", "x86_64", NVIDIA_575)
    monkeypatch.setattr(engine_check, "probe_engine", lambda python: {
        "torch": "2.99.0+cu128", "stylize_core": "0.1.0", "location": str(cli.CHECKOUT / "stylize_core"),
        "device": "cpu", "gpu": None, "cuda_build": "12.8", "hip": None, "xpu": False})
    assert cli.main(["--venv", str(venv), "--no-plugin", "--skip-check"]) == 0
    out = capsys.readouterr().out
    assert "--index-url https://download.pytorch.org/whl/cu128" in " ".join(commands[0])
    assert ("warning: NVIDIA GeForce RTX 3080 found (driver 575.57.08), but torch 2.99.0+cu128 (the CUDA 12.8 build) "
            "cannot use it: torch.cuda.is_available() is False") in out


def test_install_py_refuses_a_build_the_machine_has_none_of_before_anything_is_done(fake_install, monkeypatch,
                                                                                       capsys):
    venv, commands = fake_install
    simulate(monkeypatch, "darwin", "arm64", {})
    assert cli.main(["--venv", str(venv), "--no-plugin", "--torch", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "error: --torch cuda: torch has no such build for macOS" in err and "fix: use --torch auto" in err
    assert commands == []


def test_torch_is_refused_where_no_engine_is_installed(capsys):
    assert cli.main(["--plugin-only", "--torch", "cpu"]) == 1
    assert cli.main(["--uninstall", "--torch", "cpu"]) == 1
    assert capsys.readouterr().err.count("--torch chooses the engine's build of torch") == 2


def test_cluster_adds_ray_to_the_engines_install_and_nowhere_else(fake_install, monkeypatch, capsys):
    venv, commands = fake_install
    simulate(monkeypatch, "linux", "x86_64", {})
    assert cli.main(["--venv", str(venv), "--no-plugin", "--skip-check", "--cluster"]) == 0
    assert commands[-1][-2:] == ["-e", f"{cli.CHECKOUT}[cluster]"]
    assert cli.main(["--venv", str(venv), "--no-plugin", "--skip-check", "--cluster", "--tests"]) == 0
    assert commands[-1][-2:] == ["-e", f"{cli.CHECKOUT}[test,cluster]"]
    capsys.readouterr()
    assert cli.main(["--plugin-only", "--cluster"]) == 1
    assert cli.main(["--uninstall", "--cluster"]) == 1
    assert capsys.readouterr().err.count("--cluster adds Ray to the engine's environment") == 2


def test_the_help_names_the_torch_choice():
    result = subprocess.run([sys.executable, str(cli.CHECKOUT / "install.py"), "--help"], capture_output=True,
                            text=True, timeout=60)
    assert "--torch {auto,cpu,cuda,rocm,xpu}" in result.stdout and "PIP_INDEX_URL" in result.stdout


def test_the_gpu_probe_of_the_engine_check_reads_the_build():
    """The probe that runs in the venv reports the fields unused_gpu reads."""
    for key in ("cuda_build", "hip", "xpu"):
        assert f'"{key}"' in engine_check.ENGINE_PROBE
    assert engine_check.unused_gpu({"device": "cpu"}, Gpu(), RERUN) is None
