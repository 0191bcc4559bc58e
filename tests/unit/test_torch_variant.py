"""Which build of torch install.py chooses, on simulated machines: the platform and architecture are
passed in, and the GPU vendors' tools are their output (or, in the tests of gather_tool_output, small
scripts standing in for nvidia-smi and rocminfo on a PATH of the test's own). Also: what a venv's
torch is, whether it fits, the plan for it, the user's pip settings, and what the engine check says
when a GPU found is not used. Standard library only, no pip run (tests/integration/test_torch_install.py
runs pip)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stylize_core.installer import engine_check, torch_install, torch_variant
from stylize_core.installer.console import InstallError
from stylize_core.installer.torch_variant import Gpu, choose_build, detect_gpu

RERUN = "python3 install.py"

ROCMINFO = """ROCk module is loaded
=====================
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD Ryzen 9 7950X 16-Core Processor
  Marketing Name:          AMD Ryzen 9 7950X 16-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx1100
  Marketing Name:          AMD Radeon RX 7900 XTX
  Device Type:             GPU
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx1100
"""
SYCL_LS = ("[opencl:cpu][opencl:0] Intel(R) OpenCL, 13th Gen Intel(R) Core(TM) i7 OpenCL 3.0 [2024.18.6]\n"
           "[level_zero:gpu][level_zero:0] Intel(R) oneAPI Unified Runtime over Level-Zero, "
           "Intel(R) Arc(TM) A770 Graphics 12.55.8 [1.6.31294]\n")

# The six machines of the issue: (platform, architecture, tools' output) -> variant, index, the one line.
SIX_MACHINES = {
    "Linux + NVIDIA": (
        "linux", "x86_64", {"nvidia-smi": "NVIDIA GeForce RTX 4090, 580.95.05, 8.9\n"}, "cu130", "",
        "NVIDIA GeForce RTX 4090 found (driver 580.95.05): PyPI's default torch, which here is the CUDA 13.0 "
        "build, about 3 GB download, 5.6 GB installed"),
    "Linux + AMD": (
        "linux", "x86_64", {"rocminfo": ROCMINFO, "rocm-version": "6.4.1-120\n"}, "rocm6.4", "rocm6.4",
        "AMD GPU found (AMD Radeon RX 7900 XTX, ROCm 6.4.1): the ROCm 6.4 build of torch from "
        "https://download.pytorch.org/whl/rocm6.4, about 4.5 GB download"),
    "Linux without GPU": (
        "linux", "x86_64", {}, "cpu", "cpu",
        "no GPU found: the CPU build of torch from https://download.pytorch.org/whl/cpu, about 190 MB download"),
    "Windows + NVIDIA": (
        "win32", "AMD64", {"nvidia-smi": "NVIDIA GeForce RTX 3060, 581.57, 8.6\n"}, "cu130", "cu130",
        "NVIDIA GeForce RTX 3060 found (driver 581.57): the CUDA 13.0 build of torch from "
        "https://download.pytorch.org/whl/cu130, about 3 GB download"),
    "Windows without GPU": (
        "win32", "AMD64", {}, "cpu", "",
        "no GPU found: PyPI's default torch, which here is the CPU build, about 125 MB download"),
    "macOS arm64": (
        "darwin", "arm64", {}, "cpu", "",
        "Apple silicon found (arm64): PyPI's default torch, which here is the macOS build (it uses the Apple "
        "GPU through MPS), about 130 MB download"),
}


def plan_for(platform, machine, tools, requested=None, installed=None, settings=()):
    gpu = detect_gpu(platform, machine, tools)
    build = choose_build(platform, machine, gpu, requested or "auto")
    return torch_install.plan_torch(gpu, build, installed, requested, list(settings), RERUN, platform)


@pytest.mark.parametrize("name", SIX_MACHINES)
def test_six_machines_each_get_their_build_in_one_line(name):
    platform, machine, tools, variant, index, line = SIX_MACHINES[name]
    plan = plan_for(platform, machine, tools)
    assert (plan.build.variant, plan.build.index) == (variant, index)
    assert plan.action == "install" and plan.line == line and plan.notes == []


# ---------------------------------------------------------------------------- NVIDIA: the driver decides

@pytest.mark.parametrize("platform, query, variant", [
    ("linux", "NVIDIA RTX A4000, 580.65.06, 8.6", "cu130"),     # CUDA 13's oldest Linux driver
    ("linux", "NVIDIA RTX A4000, 580.65.05, 8.6", "cu128"),     # one below it
    ("linux", "NVIDIA GeForce RTX 3080, 550.54.14, 8.6", "cu128"),  # CUDA 12 builds run on any 525.60.13+
    ("linux", "NVIDIA GeForce RTX 3080, 525.60.13, 8.6", "cu128"),
    ("linux", "NVIDIA GeForce GTX 1080, 580.95.05, 6.1", "cu126"),  # Pascal: only the 12.6 build has kernels
    ("linux", "Tesla V100-SXM2-16GB, 570.86.10, 7.0", "cu126"),     # Volta too
    ("win32", "NVIDIA GeForce RTX 4070, 576.80, 8.9", "cu128"),
    ("win32", "NVIDIA GeForce RTX 4070, 528.33, 8.9", "cu128"),
    ("linux", "NVIDIA GeForce RTX 2080, 550.54.14", "cu128"),        # an nvidia-smi without compute_cap
])
def test_the_nvidia_driver_picks_the_newest_cuda_build_it_runs(platform, query, variant):
    plan = plan_for(platform, "x86_64", {"nvidia-smi": query + "\n"})
    assert plan.build.variant == variant
    if platform == "linux" and variant == "cu130":  # PyPI's own Linux wheel is that build
        assert plan.build.index == "" and "PyPI's default torch, which here is the CUDA 13.0 build" in plan.line
    else:
        assert plan.build.index == variant and f"https://download.pytorch.org/whl/{variant}," in plan.line


@pytest.mark.parametrize("query, why", [
    ("NVIDIA GeForce GTX 780, 470.82.01\n", "NVIDIA driver 470.82.01 is too old for torch's CUDA builds (they need "
                                            "525.60.13 or newer)"),
    ("", "nvidia-smi does not answer"),
])
def test_a_driver_too_old_or_not_running_gets_the_cpu_build_and_says_how_to_change_it(query, why):
    plan = plan_for("linux", "x86_64", {"nvidia-smi": query})
    assert plan.build.variant == "cpu" and plan.build.index == "cpu"
    assert "https://download.pytorch.org/whl/cpu" in plan.line
    assert len(plan.notes) == 1 and why in plan.notes[0] and "install.py --torch cuda" in plan.notes[0]


def test_asked_for_cuda_a_driver_too_old_is_refused_and_without_a_driver_cuda_12_8_is_taken():
    with pytest.raises(InstallError, match="too old") as caught:
        plan_for("linux", "x86_64", {"nvidia-smi": "NVIDIA GeForce GTX 780, 470.82.01\n"}, requested="cuda")
    assert "--torch cpu" in caught.value.fix
    for tools in ({}, {"nvidia-smi": ""}):
        assert plan_for("linux", "x86_64", tools, requested="cuda").build.index == "cu128"


def test_linux_on_arm_takes_the_indexes_not_pypis_default():
    assert plan_for("linux", "aarch64", {}).build.index == "cpu"
    assert plan_for("linux", "aarch64", {"nvidia-smi": "NVIDIA GH200 480GB, 580.95.05, 9.0\n"}).build.index == "cu130"


# ---------------------------------------------------------------------------- AMD, Intel, Apple, and choices

@pytest.mark.parametrize("installed_rocm, variant", [("6.3.1-48", "rocm6.3"), ("6.4.0", "rocm6.4"),
                                                     ("7.0.2", "rocm6.4"), ("", "rocm6.4")])
def test_the_rocm_build_follows_the_installed_rocm_where_torch_has_one(installed_rocm, variant):
    assert plan_for("linux", "x86_64", {"rocminfo": ROCMINFO, "rocm-version": installed_rocm}).build.variant == variant


def test_rocminfo_without_a_gpu_agent_is_no_gpu():
    cpu_only = ROCMINFO.split("*******\nAgent 2")[0]
    assert detect_gpu("linux", "x86_64", {"rocminfo": cpu_only}) == Gpu()


def test_an_intel_gpu_that_intels_runtime_shows_gets_the_xpu_build():
    assert detect_gpu("linux", "x86_64", {"sycl-ls": SYCL_LS}) == Gpu("intel", "Intel(R) Arc(TM) A770 Graphics")
    smi = "| 0         | Device Name: Intel(R) Data Center GPU Max 1100                 |\n"
    assert detect_gpu("linux", "x86_64", {"xpu-smi": smi}).name == "Intel(R) Data Center GPU Max 1100"
    plan = plan_for("linux", "x86_64", {"sycl-ls": SYCL_LS})
    assert plan.line == ("Intel GPU found (Intel(R) Arc(TM) A770 Graphics): the XPU build of torch from "
                         "https://download.pytorch.org/whl/xpu, about 1.5 GB download")
    assert detect_gpu("linux", "x86_64", {"sycl-ls": SYCL_LS.splitlines()[0]}) == Gpu()  # an OpenCL CPU only


def test_nvidia_comes_before_amd_and_intel():
    tools = {"nvidia-smi": "NVIDIA L4, 580.95.05, 8.9\n", "rocminfo": ROCMINFO, "sycl-ls": SYCL_LS}
    assert detect_gpu("linux", "x86_64", tools).kind == "nvidia"


def test_an_intel_mac_gets_pypis_torch_and_is_not_taken_for_apple_silicon():
    plan = plan_for("darwin", "x86_64", {})
    assert plan.build.index == "" and "no GPU found" in plan.line and "Intel Macs" in plan.line


@pytest.mark.parametrize("platform, machine, requested, index", [
    ("linux", "x86_64", "cpu", "cpu"), ("linux", "x86_64", "xpu", "xpu"), ("linux", "x86_64", "rocm", "rocm6.4"),
    ("win32", "AMD64", "xpu", "xpu"), ("win32", "AMD64", "cpu", ""), ("darwin", "arm64", "cpu", ""),
    ("darwin", "arm64", "auto", ""),
])
def test_torch_flag_chooses_the_build(platform, machine, requested, index):
    plan = plan_for(platform, machine, {"nvidia-smi": "NVIDIA L4, 580.95.05, 8.9\n"}, requested=requested)
    assert plan.build.index == index and f"--torch {requested} asks for" in plan.line


@pytest.mark.parametrize("platform, machine, requested", [
    ("darwin", "arm64", "cuda"), ("darwin", "arm64", "rocm"), ("win32", "AMD64", "rocm"),
    ("linux", "aarch64", "rocm"), ("linux", "aarch64", "xpu"), ("linux", "x86_64", "tpu"),
])
def test_a_build_that_does_not_exist_for_the_machine_is_refused_with_the_fix(platform, machine, requested):
    with pytest.raises(InstallError) as caught:
        plan_for(platform, machine, {}, requested=requested)
    assert f"--torch {requested}" in caught.value.problem and "--torch" in caught.value.fix


# ---------------------------------------------------------------------------- the tools themselves

def tool(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_tools_are_run_and_their_output_read(tmp_path):
    bin_folder = tmp_path / "bin"
    tool(bin_folder, "nvidia-smi", 'echo "NVIDIA GeForce RTX 4090, 580.95.05, 8.9"\n')
    tool(tmp_path / "rocm" / "bin", "rocminfo", "cat <<'EOF'\n" + ROCMINFO + "EOF\n")  # not on PATH: /opt/rocm/bin
    (tmp_path / "rocm" / ".info").mkdir()
    (tmp_path / "rocm" / ".info" / "version").write_text("6.3.1-48\n")
    output = torch_variant.gather_tool_output("linux", path=str(bin_folder), rocm_root=tmp_path / "rocm")
    assert output == {"nvidia-smi": "NVIDIA GeForce RTX 4090, 580.95.05, 8.9\n", "rocminfo": ROCMINFO,
                      "rocm-version": "6.3.1-48\n"}
    assert detect_gpu("linux", "x86_64", output) == Gpu("nvidia", "NVIDIA GeForce RTX 4090", "580.95.05", "8.9")
    assert torch_variant.gather_tool_output("darwin", path=str(bin_folder)) == {}


def test_an_old_nvidia_smi_is_asked_again_without_compute_cap_and_a_failing_one_says_nothing(tmp_path):
    tool(tmp_path / "old", "nvidia-smi", 'case "$1" in *compute_cap*) echo "Field \\"compute_cap\\" is not a valid '
         'field to query." >&2; exit 2;; esac\necho "Quadro P4000, 470.82.01"\n')
    output = torch_variant.gather_tool_output("linux", path=str(tmp_path / "old"), rocm_root=tmp_path / "none")
    assert output == {"nvidia-smi": "Quadro P4000, 470.82.01\n"}
    tool(tmp_path / "broken", "nvidia-smi", 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the '
         'NVIDIA driver." >&2\nexit 9\n')
    output = torch_variant.gather_tool_output("linux", path=str(tmp_path / "broken"), rocm_root=tmp_path / "none")
    assert output == {"nvidia-smi": ""}
    assert "does not answer" in torch_variant.describe_gpu(detect_gpu("linux", "x86_64", output))


def test_nvidia_smi_is_found_where_windows_drivers_put_it(tmp_path):
    tool(tmp_path / "NVIDIA Corporation" / "NVSMI", "nvidia-smi.exe", 'echo "NVIDIA GeForce RTX 3060, 581.57, 8.6"\n')
    output = torch_variant.gather_tool_output("win32", path=str(tmp_path / "empty"), program_files=tmp_path)
    assert output == {"nvidia-smi": "NVIDIA GeForce RTX 3060, 581.57, 8.6\n"}


# ---------------------------------------------------------------------------- the venv's torch

def version_py(version, cuda=None, hip=None, xpu=None, annotated=True):
    kind = ": Optional[str]" if annotated else ""
    return (f"from typing import Optional\n__version__ = {version!r}\ndebug = False\ncuda{kind} = {cuda!r}\n"
            f"git_version = 'abc'\nhip{kind} = {hip!r}\nxpu{kind} = {xpu!r}\n")


@pytest.mark.parametrize("text, expected", [
    (version_py("2.14.1+cu130", cuda="13.0"), ("2.14.1+cu130", "cu130")),
    (version_py("2.9.0+cu128", cuda="12.8", annotated=False), ("2.9.0+cu128", "cu128")),
    (version_py("2.13.0+cpu"), ("2.13.0+cpu", "cpu")),
    (version_py("2.9.0+rocm6.4", hip="6.4.43482-0f2d60242"), ("2.9.0+rocm6.4", "rocm6.4")),
    (version_py("2.9.0+xpu"), ("2.9.0+xpu", "xpu")),
    (version_py("2.9.0"), ("2.9.0", "cpu")),  # macOS, Windows: PyPI's CPU wheels have no tag
    # Builds from elsewhere, whose tag says no variant: AMD's own wheels, NVIDIA's for Jetson.
    (version_py("2.4.0+rocm6.3.4.git7cecbf6d", hip="6.3.42134-a9a80e791"), ("2.4.0+rocm6.3.4.git7cecbf6d", "rocm6.3")),
    (version_py("2.5.0a0+872d972e41.nv24.08", cuda="12.6"), ("2.5.0a0+872d972e41.nv24.08", "cu126")),
])
def test_the_build_of_an_installed_torch_is_read_from_its_version_file(text, expected):
    assert torch_variant.installed_variant(text) == expected


@pytest.mark.parametrize("variant, query, fits", [
    ("cu130", "RTX 3080, 580.95.05, 8.6", True),
    ("cu128", "RTX 3080, 580.95.05, 8.6", True),    # an older CUDA build than chosen still runs
    ("cu130", "RTX 3080, 575.57.08, 8.6", False),   # the driver cannot run CUDA 13
    ("cu124", "RTX 3080, 550.54.14, 8.6", True),
    ("cu128", "GTX 1080, 570.86.10, 6.1", False),   # no kernels for Pascal
    ("cu126", "GTX 1080, 570.86.10, 6.1", True),
    ("cpu", "RTX 3080, 580.95.05, 8.6", False),
    ("rocm6.3", "RTX 3080, 580.95.05, 8.6", False),
])
def test_an_installed_build_fits_when_the_machine_runs_it_as_well(variant, query, fits):
    gpu = detect_gpu("linux", "x86_64", {"nvidia-smi": query})
    build = choose_build("linux", "x86_64", gpu)
    assert torch_variant.fits(variant, build, gpu, "linux") is fits


def test_a_fitting_torch_is_kept_and_one_that_does_not_fit_is_kept_with_a_note():
    installed = ("2.14.1+cu130", "cu130")
    nvidia = {"nvidia-smi": "NVIDIA L4, 580.95.05, 8.9\n"}
    plan = plan_for("linux", "x86_64", nvidia, installed=installed)
    assert (plan.action, plan.notes) == ("keep", [])
    assert plan.line == ("torch 2.14.1+cu130 (the CUDA 13.0 build) is installed and fits this machine "
                         "(NVIDIA L4 found (driver 580.95.05)); kept")
    plan = plan_for("linux", "x86_64", {}, installed=installed)
    assert plan.action == "keep" and plan.line == "torch 2.14.1+cu130 (the CUDA 13.0 build) is installed; kept"
    assert plan.notes == ["for this machine (no GPU found) install.py would choose the CPU build of torch from "
                          "https://download.pytorch.org/whl/cpu, about 190 MB download; to replace it: "
                          "python3 install.py --torch cpu"]
    plan = plan_for("linux", "x86_64", {}, installed=("", ""))
    assert plan.action == "keep" and plan.line == "torch (its build could not be read) is installed; kept"


def test_asked_for_another_build_the_venvs_torch_is_replaced_and_the_same_one_kept():
    plan = plan_for("linux", "x86_64", {}, requested="cpu", installed=("2.14.1+cu130", "cu130"))
    assert plan.action == "replace"
    assert plan.line == ("no GPU found; --torch cpu asks for the CPU build of torch from "
                         "https://download.pytorch.org/whl/cpu, about 190 MB download; it replaces torch 2.14.1+cu130 "
                         "(the CUDA 13.0 build)")
    assert plan_for("linux", "x86_64", {}, requested="cpu", installed=("2.13.0+cpu", "cpu")).action == "keep"


def test_the_users_pip_settings_are_named_and_the_installer_adds_no_index():
    plan = plan_for("linux", "x86_64", {}, settings=["PIP_FIND_LINKS=/opt/wheels"])
    assert plan.line == ("no GPU found: the CPU build of torch would fit (about 190 MB download), but your pip "
                         "settings (PIP_FIND_LINKS=/opt/wheels) choose torch's build, so install.py adds no index "
                         "of its own")
    assert plan.user_settings == ["PIP_FIND_LINKS=/opt/wheels"] and plan.notes == []
    plan = plan_for("linux", "x86_64", {}, requested="cpu", settings=["PIP_INDEX_URL=https://mirror/simple"])
    assert plan.notes == ["to get the CPU build through your pip settings, point them at "
                          "https://download.pytorch.org/whl/cpu, or unset them for install.py to choose"]


# ---------------------------------------------------------------------------- the user's pip settings

def test_pip_config_list_is_read_for_the_sources_pip_install_uses():
    listing = ("global.index-url='https://user:token@mirror.example/simple'\n"
               "global.extra-index-url='file:///a/simple file:///b/simple'\n"
               "install.find-links='/srv/wheels'\n"
               "install.no-index='false'\n"
               "download.index-url='https://elsewhere/simple'\n"
               ":env:.find-links='/opt/wheels'\n"
               "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
               "global.timeout='60'\n")
    assert torch_install.pip_config_settings(listing) == [
        "global.index-url=https://***@mirror.example/simple",
        "global.extra-index-url=file:///a/simple file:///b/simple",
        "install.find-links=/srv/wheels"]


def test_the_environments_pip_sources_are_named(tmp_path):
    no_pip = tmp_path / "python"  # does not exist: only the environment is read
    environment = {"PIP_INDEX_URL": "https://me:pw@mirror/simple", "PIP_NO_INDEX": "0", "PIP_FIND_LINKS": "",
                   "PIP_EXTRA_INDEX_URL": "https://extra/simple", "PIP_CERT": "/x.pem"}
    settings = torch_install.user_pip_settings(no_pip, environment)  # a python that cannot run: no config read
    assert settings == ["PIP_INDEX_URL=https://***@mirror/simple", "PIP_EXTRA_INDEX_URL=https://extra/simple"]
    assert torch_install.user_pip_settings(no_pip, {"PIP_NO_INDEX": "yes"}) == ["PIP_NO_INDEX=yes"]


# ---------------------------------------------------------------------------- falling back, and the engine check

def test_falling_back_says_what_pypis_torch_means_here():
    cpu, default = choose_build("linux", "x86_64", Gpu()), torch_variant.default_build("linux", "x86_64")
    assert "runs on the CPU here just the same" in torch_install.fallback_meaning(
        cpu, default, Gpu(), "linux", "https://download.pytorch.org/whl", RERUN)
    nvidia = detect_gpu("win32", "AMD64", {"nvidia-smi": "RTX 3060, 581.57, 8.6"})
    text = torch_install.fallback_meaning(choose_build("win32", "AMD64", nvidia), torch_variant.default_build(
        "win32", "AMD64"), nvidia, "win32", "https://download.pytorch.org/whl", RERUN)
    assert text.startswith("installing PyPI's default torch instead, the CPU build: about 125 MB download, which "
                           "cannot use this GPU: the engine will run on the CPU")
    assert text.endswith("Once download.pytorch.org can be reached, `python3 install.py --torch cuda` installs the "
                         "CUDA 13.0 build")


NVIDIA = Gpu("nvidia", "NVIDIA L4", "550.54.14", "8.9")


@pytest.mark.parametrize("gpu, info, words", [
    (NVIDIA, {"device": "cpu", "torch": "2.14.1+cpu"}, "is not a CUDA build: the engine runs on the CPU; to use the "
                                                       "GPU: python3 install.py --torch cuda"),
    (NVIDIA, {"device": "cpu", "torch": "2.14.1+cu130", "cuda_build": "13.0"},
     "torch 2.14.1+cu130 (the CUDA 13.0 build) cannot use it: torch.cuda.is_available() is False"),
    (Gpu("amd", "AMD Radeon RX 7900 XTX"), {"device": "cpu", "torch": "2.9.0+rocm6.4", "hip": "6.4.4"},
     "render and video groups"),
    (Gpu("amd", "AMD Radeon RX 7900 XTX"), {"device": "cpu", "torch": "2.9.0+cu128", "cuda_build": "12.8"},
     "is not a ROCm build"),
    (Gpu("intel", "Intel(R) Arc(TM) A770 Graphics"), {"device": "cpu", "torch": "2.9.0+xpu", "xpu": True},
     "the engine's device auto uses CUDA or ROCm, Apple's MPS or the CPU"),
    (Gpu("apple", "Apple silicon"), {"device": "cpu", "torch": "2.9.0"}, "torch.backends.mps.is_available() is False"),
])
def test_the_engine_check_says_why_a_gpu_found_is_not_used(gpu, info, words):
    assert words in engine_check.unused_gpu(info, gpu, RERUN)


@pytest.mark.parametrize("gpu, device", [(NVIDIA, "cuda"), (Gpu("amd", "x"), "cuda"), (Gpu("apple", "x"), "mps"),
                                         (Gpu(), "cpu")])
def test_the_engine_check_is_quiet_when_the_gpu_is_used_or_there_is_none(gpu, device):
    assert engine_check.unused_gpu({"device": device, "torch": "2.9.0"}, gpu, RERUN) is None

