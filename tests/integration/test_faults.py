"""Interrupting a run (Ctrl+C, SIGTERM) while it loads, optimises or saves: nothing half-written.

A pre-existing output is either untouched or fully replaced, and no temporary file remains.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from helpers import CONTENT, STYLE, small

pytestmark = pytest.mark.slow
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
MESSAGE = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    small(CONTENT, 128).save(folder / "content.png")
    small(STYLE, 128).save(folder / "style.png")
    small(CONTENT, 4000).save(folder / "big-content.png")  # takes a moment to decode
    return folder


def start(pictures: Path, out: Path, *extra: str, content: str = "content.png") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stylize_core", str(pictures / content),
                             str(pictures / "style.png"), "-o", str(out), "--device", "cpu", "--progress", "json",
                             "--scales", "1", "--max-size", "64", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_stage(process: subprocess.Popen, stage: str) -> None:
    for line in process.stdout:
        if json.loads(line)["stage"] == stage:
            return
    raise AssertionError(f"the run ended before {stage}: {process.stderr.read()}")


def wait_for_temporary_file(folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(".stylize-*")):
        assert time.monotonic() < deadline, "the save never started its temporary file"
        time.sleep(0.005)


def wait_until_started(process: subprocess.Popen, timeout: float = 60) -> None:
    """Until the CLI runs: it sets its SIGTERM handler (Linux's SigCgt mask) just before it takes
    over Ctrl+C too. A signal before that, while Python itself starts, ends the process before
    it has touched any file, without the CLI's message."""
    deadline = time.monotonic() + timeout
    while True:
        status = Path(f"/proc/{process.pid}/status").read_text()
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        assert time.monotonic() < deadline, "the CLI never started"
        time.sleep(0.002)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", ["load", "optimize", "save"])
def test_a_signal_leaves_the_old_output_whole_and_nothing_else(pictures, tmp_path, moment, signum):
    out = tmp_path / "out.png"
    Image.new("RGB", (10, 10), "red").save(out)
    old = hashlib.sha256(out.read_bytes()).hexdigest()
    if moment == "load":
        process = start(pictures, out, "--iterations", "1", content="big-content.png")
        wait_until_started(process)  # then it reads the 4000 px picture
    elif moment == "optimize":
        process = start(pictures, out, "--iterations", "1000")
        wait_for_stage(process, "optimize")
    else:
        process = start(pictures, out, "--iterations", "1", "--size", "7000")  # a big PNG takes a while to write
        wait_for_stage(process, "save")
        wait_for_temporary_file(tmp_path)
    process.send_signal(signum)
    status = process.wait(timeout=60)
    stderr = process.stderr.read()
    assert status == EXIT_STATUS[signum], stderr
    assert stderr.strip().splitlines() == [f"stylize: error: {MESSAGE[signum]}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"], "a temporary file was left"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == old, "the old output was damaged"
