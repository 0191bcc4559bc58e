"""Run python-fu batch scripts in a real GIMP 3 (headless) inside a provisioned Debian root.

One root per GIMP version (tests/gimp/provision.sh: 3.0 from Debian 13, 3.2 from Debian
unstable) is entered with `unshare -m` + chroot; the checkout, the virtual environment,
the base Python it was made from and the test's own folder are bind-mounted at their
own paths, so paths mean the same inside and out. GIMP starts with a clean environment
and a throwaway profile (GIMP3_DIRECTORY: both versions read it, plug-ins from its
plug-ins/ folder), a runtime folder of its own (XDG_RUNTIME_DIR, where the engine's
local server puts its socket) and a temporary folder of its own (TMPDIR, where the plug-in
makes its work folders). That environment carries a marker (MARKER_VARIABLE) that
every process GIMP starts inherits, the detached local server included, so a test can tell
its own engine processes from anyone else's (engine_processes.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from engine_processes import MARKER_VARIABLE, kill_marked

CHECKOUT = Path(__file__).resolve().parents[2]
PROVISION = Path(__file__).with_name("provision.sh")
RESULT_MARK = "RESULT "
VERSIONS = ("3.0", "3.2")
VERSION_IDS = [f"gimp{version}" for version in VERSIONS]


class GimpUnavailable(Exception):
    """The real GIMP cannot run here; the message says why."""


def gimp_root(version: str) -> Path:
    """The provisioned root folder for GIMP `version` (built the first time, then cached)."""
    if os.geteuid() != 0:
        raise GimpUnavailable("the real-GIMP tests need root (debootstrap, unshare, chroot)")
    done = subprocess.run(["bash", str(PROVISION), version], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise GimpUnavailable(f"provisioning GIMP {version} failed: {done.stderr.strip().splitlines()[-1:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def gimp_binary(root: Path, version: str, console: bool) -> str:
    """The GIMP `version` program inside `root`: gimp-console-<version> (or gimp-<version>),
    else the major-version name Debian also installs (gimp-console-3, gimp-3)."""
    stem = "gimp-console" if console else "gimp"
    for name in (f"{stem}-{version}", f"{stem}-{version.split('.')[0]}", stem):
        if (root / "usr" / "bin" / name).exists():
            return f"/usr/bin/{name}"
    raise GimpUnavailable(f"no {stem}-{version} in {root}/usr/bin")


def require_gimp(version: str) -> Path:
    """The provisioned root; skips the test where GIMP cannot run, except in CI where it fails."""
    try:
        return gimp_root(version)
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


@dataclass
class GimpSession:
    """One test's GIMP: its version and provisioned root, a throwaway profile and runtime
    folder (XDG_RUNTIME_DIR: the engine worker's socket) in `work`, and the marker that
    all its processes carry in their environment."""
    version: str
    root: Path
    work: Path
    marker: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(6)}")

    @property
    def profile(self) -> Path:
        return self.work / "profile"

    @property
    def runtime(self) -> Path:
        return self.work / "runtime"

    @property
    def home(self) -> Path:
        """HOME: GTK's recent files and file chooser state, and the engine's calibration, kept per session
        (a shared /root in the cached root let one session's chooser open another's vanished folder)."""
        return self.work / "home"

    @property
    def tmp(self) -> Path:
        """TMPDIR: the plug-in's work folders, apart from other sessions' and from leftovers."""
        return self.work / "tmp"

    def binary(self, console: bool) -> str:
        return gimp_binary(self.root, self.version, console)

    def environment(self, *extra: str) -> str:
        """`env -i ...`: the clean environment GIMP starts with inside the root."""
        self.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        settings = ["PATH=/usr/bin:/bin", f"HOME={self.home}", f"GIMP3_DIRECTORY={self.profile}",
                    f"XDG_RUNTIME_DIR={self.runtime}", f"TMPDIR={self.tmp}", f"{MARKER_VARIABLE}={self.marker}",
                    *extra]
        return "/usr/bin/env -i " + " ".join(shlex.quote(setting) for setting in settings)

    def mounts(self, binds: list[Path]) -> list[str]:
        """Shell commands that bind-mount each path (and `work`) at the same path inside the
        root, then mount proc there."""
        commands = []
        for path in dict.fromkeys(Path(p).resolve() for p in [self.work, *binds]):
            target = f"{self.root}{path}"
            commands.append(f"mkdir -p {shlex.quote(target)} && mount --bind {shlex.quote(str(path))} "
                            f"{shlex.quote(target)}")
        return commands + [f"mount -t proc proc {shlex.quote(str(self.root))}/proc"]

    def stop(self) -> list[int]:
        """Kill whatever this session started that still runs (the local server, say)."""
        return kill_marked(self.marker)


def new_session(version: str, work: Path) -> GimpSession:
    """A session for GIMP `version` (skipped or failed, as require_gimp says, where GIMP cannot run)."""
    return GimpSession(version, require_gimp(version), work)


def run_batch(session: GimpSession, script: Path, binds: list[Path], timeout: int = 600) -> str:
    """Run `script` with the console GIMP's python-fu-eval; returns GIMP's whole output.
    The session's leftovers (the local server) are stopped afterwards."""
    gimp = (f"{session.environment()} {session.binary(console=True)} "
            f"-i -n -d -f --batch-interpreter python-fu-eval "
            f"-b {shlex.quote(f'exec(open({str(script)!r}).read())')} --quit")
    inner = " && ".join(session.mounts(binds) + [f"chroot {shlex.quote(str(session.root))} {gimp}"])
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True,
                              timeout=timeout)
    finally:
        session.stop()
    return done.stdout + done.stderr


def results(log: str) -> dict:
    """The JSON objects the batch script printed after RESULT_MARK, merged."""
    merged = {}
    for line in log.splitlines():
        if line.startswith(RESULT_MARK):
            merged.update(json.loads(line[len(RESULT_MARK):]))
    return merged


def run_cases(session: GimpSession, cases: str, case_settings: dict, artifacts: Path, venv: Path) -> dict:
    """Run tests/gimp/<cases> in the session's GIMP batch with CASE_SETTINGS prepended; its log goes
    to artifacts/gimp.log, its RESULT lines come back merged (none at all fails the test)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    script = session.work / cases
    script.write_text(f"CASE_SETTINGS = {case_settings!r}\n" + (CHECKOUT / "tests" / "gimp" / cases).read_text())
    log = run_batch(session, script, [CHECKOUT, artifacts, *venv_paths(venv)])
    (artifacts / "gimp.log").write_text(log)
    found = results(log)
    assert found, "GIMP printed no results:\n" + log[-3000:]
    return found
