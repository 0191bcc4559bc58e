"""Which build of torch fits this machine: the GPU found (from the output of the vendors' own
tools, passed in, so that every machine can be simulated), the build chosen for it, what a build
already in a venv is, and whether that one fits.

The builds are PyTorch's variants, each on its own index (https://download.pytorch.org/whl/VARIANT),
or PyPI's default wheels where those already are the right build:

    NVIDIA   the newest CUDA build the driver runs (cu130, cu128; cu126 for GPUs before Turing);
             on Linux x86_64 with a driver for CUDA 13 that is PyPI's default wheel itself
    AMD      the ROCm build (Linux only; it brings its own ROCm libraries)
    Intel    the XPU build, where Intel's GPU runtime (sycl-ls, xpu-smi) shows a GPU
    Apple    PyPI's default wheel: macOS has one build, the CPU and the Apple GPU (MPS) in one
    none     the CPU build; on Windows that is PyPI's default wheel, elsewhere the CPU index
"""

import ast
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .console import InstallError

PYTORCH_INDEX = "https://download.pytorch.org/whl"
CHOICES = ("auto", "cpu", "cuda", "rocm", "xpu")
BUILD_OF_GPU = {"nvidia": "cuda", "amd": "rocm", "intel": "xpu"}
TOOL_TIMEOUT_S = 20

# The oldest NVIDIA driver that runs each CUDA major release's builds, (Linux, Windows), from NVIDIA's
# CUDA compatibility table. Within a major release a build runs on any of its drivers (CUDA's "minor
# version compatibility"): torch's CUDA 12.8 build runs on a 535 driver, so no driver needs cu126.
CUDA_MIN_DRIVER = {13: ((580, 65, 6), (580, 88)), 12: ((525, 60, 13), (528, 33)), 11: ((450, 80, 2), (452, 39))}
# The CUDA builds install.py chooses, newest first. torch's CUDA 12.8 and 13.0 builds have no kernels
# for GPUs older than Turing (compute capability 7.5: Maxwell, Pascal, Volta); its 12.6 build has.
CUDA_BUILDS = ("cu130", "cu128")
CUDA_BUILD_FOR_OLD_GPUS = "cu126"
TURING = (7, 5)
# PyPI's Linux x86_64 torch is the CUDA build: CUDA 13.0 since torch 2.10 (2.9 had 12.8); torch 2.14.1
# from PyPI reports cuda '13.0' here. On Windows PyPI has the CPU build, on macOS the MPS one.
PYPI_LINUX_CUDA = "cu130"
# torch's ROCm builds, newest first; the wheels carry their own ROCm libraries, so the kernel's amdgpu
# driver is what they need, and the installed ROCm only picks the build when it is one of these.
ROCM_BUILDS = ("rocm6.4", "rocm6.3")

# What each build takes (torch + torchvision). Measured here: the CPU wheel (torch 2.13.0+cpu, Linux
# x86_64: 192 MB) and the CUDA 13.0 build (torch 2.14.1 from PyPI with its NVIDIA libraries and triton:
# about 3 GB of wheels, 5.6 GB installed). PyPI lists torch 2.14.1 at 124 MB for Windows and 127 MB
# for macOS arm64. The ROCm, XPU and Windows CUDA figures are PyTorch's published wheel sizes,
# rounded: approximate.
SIZES = {
    "cpu": "about 190 MB download",
    "cpu-windows": "about 125 MB download",
    "macos": "about 130 MB download",
    "cuda-linux": "about 3 GB download, 5.6 GB installed",
    "cuda-windows": "about 3 GB download",
    "rocm": "about 4.5 GB download",
    "xpu": "about 1.5 GB download",
}


@dataclass(frozen=True)
class Gpu:
    """The GPU found: kind is "nvidia", "amd", "intel", "apple", or "" for none. An NVIDIA GPU whose
    nvidia-smi did not answer has no driver: its driver is not running."""
    kind: str = ""
    name: str = ""
    driver: str = ""
    compute_capability: str = ""
    rocm: str = ""


@dataclass(frozen=True)
class TorchBuild:
    """A build of torch: `variant` is what its torch/version.py says ("cpu", "cu128", "rocm6.4", "xpu");
    `index` the folder of PyTorch's index it comes from, "" for PyPI's default wheels; `advice`, when
    set, why this machine gets no GPU build, and how to get one later."""
    variant: str
    index: str
    label: str
    size: str
    advice: str = ""

    def describe(self, index_base: str = PYTORCH_INDEX) -> str:
        if self.index:
            return f"{self.label} of torch from {index_base}/{self.index}, {self.size}"
        return f"PyPI's default torch, which here is {self.label}, {self.size}"


# ---------------------------------------------------------------------------- the tools' output

def run_tool(command: list[str]) -> str:
    """A vendor tool's output; "" when it fails or hangs (it is there, but says nothing usable)."""
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                errors="replace", timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout if result.returncode == 0 else ""


def find_tool(name: str, path: str | None, also: list[Path]) -> str | None:
    found = shutil.which(name, path=path)
    if found:
        return found
    return next((str(place) for place in also if place.is_file()), None)


def gather_tool_output(platform: str, path: str | None = None, rocm_root: Path = Path("/opt/rocm"),
                       program_files: Path | None = None) -> dict:
    """What the GPU vendors' tools say, by name: absent (None) when the tool is not there, "" when it is
    there but failed. `path` is the PATH searched (None: this process's)."""
    if platform == "darwin":
        return {}  # Apple silicon is told by the architecture; no tool needed
    output: dict = {}
    program_files = program_files or Path(os.environ.get("ProgramFiles", r"C:\Program Files"))
    nvidia_smi = find_tool("nvidia-smi", path, [program_files / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe"]
                           if platform == "win32" else [])
    if nvidia_smi:
        # compute_cap is a field of nvidia-smi since driver 510; an older one refuses the whole query.
        output["nvidia-smi"] = (run_tool([nvidia_smi, "--query-gpu=name,driver_version,compute_cap",
                                          "--format=csv,noheader"])
                                or run_tool([nvidia_smi, "--query-gpu=name,driver_version", "--format=csv,noheader"]))
    if platform.startswith("linux"):
        rocminfo = find_tool("rocminfo", path, [rocm_root / "bin" / "rocminfo"])
        if rocminfo:
            output["rocminfo"] = run_tool([rocminfo])
        try:
            output["rocm-version"] = (rocm_root / ".info" / "version").read_text(encoding="utf-8", errors="replace")
        except OSError:
            pass
    for name, arguments in (("sycl-ls", []), ("xpu-smi", ["discovery"])):
        tool = find_tool(name, path, [])
        if tool:
            output[name] = run_tool([tool, *arguments])
    return output


# ---------------------------------------------------------------------------- the GPU found

def detect_gpu(platform: str, machine: str, tools: dict) -> Gpu:
    """The GPU of a machine: `platform` as sys.platform says it, `machine` as platform.machine() does,
    `tools` as gather_tool_output returns. NVIDIA before AMD before Intel, where there are several."""
    if platform == "darwin":
        return Gpu("apple", "Apple silicon") if machine.lower() in ("arm64", "aarch64") else Gpu()
    if tools.get("nvidia-smi") is not None:
        return nvidia_gpu(tools["nvidia-smi"])
    amd = amd_gpu_name(tools.get("rocminfo") or "")
    if amd:
        return Gpu("amd", amd, rocm=rocm_version(tools.get("rocm-version") or ""))
    intel = intel_gpu_name(tools.get("sycl-ls") or "", tools.get("xpu-smi") or "")
    if intel:
        return Gpu("intel", intel)
    return Gpu()


def nvidia_gpu(query: str) -> Gpu:
    """From `nvidia-smi --query-gpu=name,driver_version[,compute_cap] --format=csv,noheader`; the
    first GPU speaks for the machine. No answer: the driver is not running."""
    lines = [line for line in query.splitlines() if line.strip()]
    if not lines:
        return Gpu("nvidia", "an NVIDIA GPU")
    fields = [field.strip() for field in lines[0].split(",")] + ["", ""]
    driver = fields[1] if re.fullmatch(r"\d+(\.\d+)*", fields[1]) else ""
    capability = fields[2] if re.fullmatch(r"\d+\.\d+", fields[2]) else ""
    return Gpu("nvidia", fields[0] or "an NVIDIA GPU", driver=driver, compute_capability=capability)


def amd_gpu_name(rocminfo: str) -> str:
    """The first GPU agent that rocminfo lists, by its marketing name (else its gfx name)."""
    for agent in re.split(r"^\s*Agent \d+\s*$", rocminfo, flags=re.MULTILINE)[1:]:
        fields: dict[str, str] = {}
        for line in agent.splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip() not in fields:
                fields[key.strip()] = value.strip()
        if fields.get("Device Type") == "GPU":
            return fields.get("Marketing Name") or fields.get("Name") or "an AMD GPU"
    return ""


def rocm_version(text: str) -> str:
    """/opt/rocm/.info/version says e.g. "6.3.1-48": the version before the build number."""
    match = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else ""


def intel_gpu_name(sycl_ls: str, xpu_smi: str) -> str:
    """An Intel GPU that Intel's runtime reaches: a Level Zero GPU in sycl-ls, or one xpu-smi lists."""
    for line in sycl_ls.splitlines():
        if "level_zero:gpu" in line:
            name = re.search(r"(Intel\(R\) (?!oneAPI|Level-Zero)[^,\[]*?)\s*(?:\d+\.\d+\.\d+|\[|$)", line)
            return name.group(1).strip() if name else "an Intel GPU"
    name = re.search(r"Device Name:\s*([^|\n]*?)\s*(?:\||$)", xpu_smi, flags=re.MULTILINE)
    return name.group(1) if name and name.group(1) else ""


def describe_gpu(gpu: Gpu) -> str:
    if gpu.kind == "nvidia":
        return f"{gpu.name} found (driver {gpu.driver})" if gpu.driver else \
            "nvidia-smi found, but it does not answer (the NVIDIA driver is not running)"
    if gpu.kind == "amd":
        return f"AMD GPU found ({gpu.name}" + (f", ROCm {gpu.rocm})" if gpu.rocm else ")")
    if gpu.kind == "intel":
        return f"Intel GPU found ({gpu.name})"
    if gpu.kind == "apple":
        return "Apple silicon found (arm64)"
    return "no GPU found"


# ---------------------------------------------------------------------------- the build for it

def choose_build(platform: str, machine: str, gpu: Gpu, requested: str = "auto") -> TorchBuild:
    """The build for this machine: `requested` "auto" follows the GPU found; "cpu", "cuda", "rocm" or
    "xpu" is the user's choice, refused where that build does not exist."""
    if requested not in CHOICES:
        raise InstallError(f"--torch {requested} is not a build of torch",
                           f"use --torch with one of {', '.join(CHOICES)}")
    wanted = requested if requested != "auto" else BUILD_OF_GPU.get(gpu.kind, "cpu")
    if platform == "darwin":
        return macos_build(machine, requested)
    if wanted == "cuda":
        return cuda_build(platform, machine, gpu, explicit=requested != "auto")
    if wanted == "rocm":
        check_offered("rocm", platform.startswith("linux") and is_x86(machine),
                      "torch's ROCm builds are for Linux on x86_64 only")
        return rocm_build(gpu.rocm)
    if wanted == "xpu":
        check_offered("xpu", is_x86(machine) and (platform.startswith("linux") or platform == "win32"),
                      "torch's XPU builds are for Linux and Windows on x86_64 only")
        return TorchBuild("xpu", "xpu", "the XPU build", SIZES["xpu"])
    return cpu_build(platform)


def is_x86(machine: str) -> bool:
    return machine.lower() in ("x86_64", "amd64")


def check_offered(choice: str, offered: bool, why: str) -> None:
    if not offered:
        raise InstallError(f"--torch {choice}: {why}", "use --torch auto (or cpu)")


def macos_build(machine: str, requested: str) -> TorchBuild:
    """macOS has one build, on PyPI: the CPU and, on Apple silicon, the GPU through MPS."""
    if requested in ("cuda", "rocm", "xpu"):
        raise InstallError(f"--torch {requested}: torch has no such build for macOS (it uses the Apple GPU "
                           "through MPS, in its one macOS build)", "use --torch auto")
    if machine.lower() in ("arm64", "aarch64"):
        return TorchBuild("cpu", "", "the macOS build (it uses the Apple GPU through MPS)", SIZES["macos"])
    return TorchBuild("cpu", "", "the CPU build (torch 2.2, the last one for Intel Macs)", SIZES["macos"])


def cpu_build(platform: str, advice: str = "") -> TorchBuild:
    """Windows' PyPI wheel is the CPU build; on Linux PyPI's is the CUDA one, so the CPU index."""
    if platform == "win32":
        return TorchBuild("cpu", "", "the CPU build", SIZES["cpu-windows"], advice)
    return TorchBuild("cpu", "cpu", "the CPU build", SIZES["cpu"], advice)


def cuda_build(platform: str, machine: str, gpu: Gpu, explicit: bool = False) -> TorchBuild:
    """The newest CUDA build the driver runs (cu126 for GPUs before Turing). Chosen automatically, a
    driver too old or not running gets the CPU build, with the reason; asked for with --torch cuda, a
    driver too old is refused, and without an answer from nvidia-smi (or without nvidia-smi) the
    CUDA 12.8 build is taken, which any driver from 525 runs."""
    if platform != "win32" and not platform.startswith("linux"):
        raise InstallError(f"--torch cuda: torch has no CUDA build for {platform}", "use --torch auto")
    if gpu.kind != "nvidia" or (explicit and not gpu.driver):
        return cuda_variant_build("cu128", platform, machine)
    if not gpu.driver:
        return cpu_build(platform, "nvidia-smi does not answer, so no CUDA build can be chosen; once the "
                         "NVIDIA driver runs (nvidia-smi shows the GPU), run install.py --torch cuda")
    windows = platform == "win32"
    candidates = (CUDA_BUILD_FOR_OLD_GPUS,) if is_before_turing(gpu) else CUDA_BUILDS
    for variant in candidates:
        if version_tuple(gpu.driver) >= CUDA_MIN_DRIVER[cuda_major(variant)][windows]:
            return cuda_variant_build(variant, platform, machine)
    needed = ".".join(str(part) for part in CUDA_MIN_DRIVER[cuda_major(candidates[-1])][windows])
    problem = f"NVIDIA driver {gpu.driver} is too old for torch's CUDA builds (they need {needed} or newer)"
    if explicit:
        raise InstallError(f"--torch cuda: {problem}", "update the NVIDIA driver and run install.py again, "
                           "or use --torch cpu")
    return cpu_build(platform, f"{problem}; after updating the driver, run install.py --torch cuda")


def is_before_turing(gpu: Gpu) -> bool:
    return bool(gpu.compute_capability) and version_tuple(gpu.compute_capability) < TURING


def cuda_variant_build(variant: str, platform: str, machine: str) -> TorchBuild:
    size = SIZES["cuda-windows" if platform == "win32" else "cuda-linux"]
    label = f"the {variant_label(variant)}"
    if variant == PYPI_LINUX_CUDA and platform.startswith("linux") and is_x86(machine):
        return TorchBuild(variant, "", label, size)
    return TorchBuild(variant, variant, label, size)


def rocm_build(installed_rocm: str) -> TorchBuild:
    """The ROCm build matching the installed ROCm where torch has one, else the newest."""
    minor = ".".join(installed_rocm.split(".")[:2])
    variant = f"rocm{minor}" if f"rocm{minor}" in ROCM_BUILDS else ROCM_BUILDS[0]
    return TorchBuild(variant, variant, f"the {variant_label(variant)}", SIZES["rocm"])


def default_build(platform: str, machine: str) -> TorchBuild:
    """What PyPI's default wheel is on this platform (what a plain `pip install torch` gets)."""
    if platform == "darwin":
        return macos_build(machine, "auto")
    if platform.startswith("linux") and is_x86(machine):
        return cuda_variant_build(PYPI_LINUX_CUDA, platform, machine)
    return TorchBuild("cpu", "", "the CPU build", SIZES["cpu-windows" if platform == "win32" else "cpu"])


# ---------------------------------------------------------------------------- variants

def family(variant: str) -> str:
    if variant.startswith("cu"):
        return "cuda"
    if variant.startswith("rocm"):
        return "rocm"
    return variant


def cuda_major(variant: str) -> int:
    """cu128 -> 12, cu130 -> 13: the digits are the CUDA version without its point."""
    return int(variant[2:-1])


def variant_label(variant: str) -> str:
    if variant.startswith("cu") and variant[2:].isdigit():
        return f"CUDA {variant[2:-1]}.{variant[-1]} build"
    if variant.startswith("rocm"):
        return f"ROCm {variant[4:]} build"
    return {"cpu": "CPU build", "xpu": "XPU build"}.get(variant, f"{variant} build")


def version_tuple(text: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def installed_variant(version_py: str) -> tuple[str, str]:
    """(torch's version, its variant) from the text of torch/version.py, read without importing
    torch: its cuda, hip and xpu entries say the build (cuda '13.0' -> cu130, hip '6.3.42131-x' ->
    rocm6.3); the version's local tag ("+cpu") where they are missing."""
    values: dict = {}
    for node in ast.parse(version_py).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
            try:
                values[target.id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    version = str(values.get("__version__", ""))
    if values.get("hip"):
        return version, "rocm" + ".".join(str(values["hip"]).split(".")[:2])
    if values.get("cuda"):
        return version, "cu" + "".join(str(values["cuda"]).split(".")[:2])
    if values.get("xpu") or version.endswith("+xpu"):
        return version, "xpu"
    tag = version.partition("+")[2]
    return version, tag if re.fullmatch(r"cpu|cu\d+|rocm\d+\.\d+|xpu", tag) else "cpu"


def fits(variant: str, build: TorchBuild, gpu: Gpu, platform: str) -> bool:
    """Whether an installed build serves this machine as well as the chosen one: the same kind (CPU,
    CUDA, ROCm, XPU), and a CUDA build that the driver runs, with kernels for the GPU."""
    if family(variant) != family(build.variant):
        return False
    if family(variant) != "cuda" or gpu.kind != "nvidia" or not gpu.driver:
        return True
    try:
        needed = CUDA_MIN_DRIVER[cuda_major(variant)][platform == "win32"]
    except (KeyError, ValueError):
        return False
    too_new_for_the_gpu = is_before_turing(gpu) and int(variant[2:]) > int(CUDA_BUILD_FOR_OLD_GPUS[2:])
    return version_tuple(gpu.driver) >= needed and not too_new_for_the_gpu
