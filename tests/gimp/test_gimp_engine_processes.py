"""The real-GIMP tests watch only the engine processes their own GIMP started (tests/gimp/engine_processes.py).

No GIMP needed: a fake engine started with the session's marker in its environment (as
GIMP's children and the detached local server inherit it) stands beside a decoy whose
command line also names stylize_core but which someone else started.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_processes import MARKER_VARIABLE, engine_processes, kill_marked, marked

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux's /proc")
SLEEP = "import time; time.sleep(120)"


def start(marker: str | None, *arguments: str, new_session: bool = False) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != MARKER_VARIABLE}
    if marker:
        environment[MARKER_VARIABLE] = marker
    return subprocess.Popen([sys.executable, "-c", SLEEP, *arguments], env=environment,
                            start_new_session=new_session)


def test_only_marked_stylize_core_processes_are_the_sessions_engine():
    marker = f"test-{os.getpid()}"
    processes = {
        "server": start(marker, "-m", "stylize_core", "serve", new_session=True),  # detached, like the local server
        "decoy": start(None, "-m", "stylize_core", "someone else's run"),
        "other_session": start(marker + "-other", "-m", "stylize_core"),
        "not_engine": start(marker, "gimp-like"),
    }
    try:
        deadline = time.monotonic() + 10
        while len(marked(marker)) < 2 and time.monotonic() < deadline:  # environ is readable once exec'd
            time.sleep(0.05)
        found = engine_processes(marker)
        assert set(found) == {str(processes["server"].pid)}
        assert "stylize_core serve" in found[str(processes["server"].pid)]["command"]
        assert set(marked(marker)) == {processes["server"].pid, processes["not_engine"].pid}

        assert sorted(kill_marked(marker)) == sorted([processes["server"].pid, processes["not_engine"].pid])
        assert processes["server"].wait(10) and processes["not_engine"].wait(10)
        assert processes["decoy"].poll() is None and processes["other_session"].poll() is None, \
            "stopping a session must leave other processes alone"
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
