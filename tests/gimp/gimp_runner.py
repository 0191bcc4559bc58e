"""Run python-fu batch scripts in a real GIMP 3 (headless) inside the provisioned Debian 13 root.

The root (tests/gimp/provision.sh) is entered with `unshare -m` + chroot; the checkout, the
virtual environment, the base Python it was made from and the test's own folder are
bind-mounted at their own paths, so paths mean the same inside and out. GIMP starts
with a clean environment and a throwaway profile (GIMP3_DIRECTORY).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
PROVISION = Path(__file__).with_name("provision.sh")
RESULT_MARK = "RESULT "


class GimpUnavailable(Exception):
    """The real GIMP cannot run here; the message says why."""


def gimp_root() -> Path:
    if os.geteuid() != 0:
        raise GimpUnavailable("the real-GIMP tests need root (debootstrap, unshare, chroot)")
    done = subprocess.run(["bash", str(PROVISION)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise GimpUnavailable(f"provisioning GIMP 3 failed: {done.stderr.strip().splitlines()[-1:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def require_gimp() -> Path:
    """The provisioned root; skips the test where GIMP cannot run, except in CI where it fails."""
    try:
        return gimp_root()
    except GimpUnavailable as reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the real-GIMP tests: {reason}")
        pytest.skip(str(reason))


def install_plugin(profile: Path, venv: Path, worker_idle_timeout: int) -> Path:
    """Install the plug-in with install.py into a throwaway GIMP profile; returns its config file."""
    installed = subprocess.run([sys.executable, str(CHECKOUT / "install.py"), "--plugin-only", "--venv", str(venv),
                                "--gimp-dir", str(profile)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    config = profile / "plug-ins" / "neural-style-transfer" / "stylize-config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "worker_idle_timeout": worker_idle_timeout}))
    return config


def venv_paths(venv: Path) -> list[Path]:
    """The venv (resolved: CI links .venv to a cache) and the Python install it was made from."""
    real = venv.resolve()
    paths = [real]
    config = real / "pyvenv.cfg"
    if config.exists():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                paths.append(Path(value.strip()).resolve().parent)
    return paths


def run_batch(root: Path, script: Path, profile: Path, binds: list[Path], timeout: int = 600) -> str:
    """Run `script` with gimp-console-3.0's python-fu-eval; returns GIMP's whole output."""
    mounts = []
    for path in dict.fromkeys(Path(p).resolve() for p in binds):
        target = f"{root}{path}"
        mounts.append(f"mkdir -p {shlex.quote(target)} && mount --bind {shlex.quote(str(path))} "
                      f"{shlex.quote(target)}")
    gimp = (f"/usr/bin/env -i PATH=/usr/bin:/bin HOME=/root GIMP3_DIRECTORY={shlex.quote(str(profile))} "
            f"gimp-console-3.0 -i -n -d -f --batch-interpreter python-fu-eval "
            f"-b {shlex.quote(f'exec(open({str(script)!r}).read())')} --quit")
    inner = " && ".join(mounts + [f"mount -t proc proc {shlex.quote(str(root))}/proc",
                                  f"chroot {shlex.quote(str(root))} {gimp}"])
    done = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr


def results(log: str) -> dict:
    """The JSON objects the batch script printed after RESULT_MARK, merged."""
    merged = {}
    for line in log.splitlines():
        if line.startswith(RESULT_MARK):
            merged.update(json.loads(line[len(RESULT_MARK):]))
    return merged
