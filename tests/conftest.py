"""Fixtures and hooks shared by all the tests: servers of a test's own, and the `gimp` marker.

tests/unit: in-process; tests/integration: processes (CLI, servers, installer, plug-in bridge);
tests/gimp: the real GIMP 3.0 and 3.2 (tests/gimp/conftest.py). `pytest -m "not gimp and not slow"`
leaves out the real-GIMP tests and the real stylizations.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import Served

GIMP_TESTS = Path(__file__).resolve().parent / "gimp"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Every test under tests/gimp/ is a `gimp` test, whether its module says so or not."""
    for item in items:
        if GIMP_TESTS in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.gimp)


@pytest.fixture
def serve():
    """serve(*arguments, environment=None) -> helpers.Served: starts `stylize serve *arguments` (with
    `environment` added to this one) and waits for its "ready" line. Every server it started is stopped
    when the test ends, passed or failed, and one that did not start is stopped too."""
    started: list[Served] = []

    def start(*arguments: str, environment: dict | None = None) -> Served:
        served = Served.__new__(Served)
        started.append(served)  # before it starts: a server whose start fails is still stopped
        served.__init__(*arguments, environment=environment)
        return served

    yield start
    for served in reversed(started):
        stop(served)


def stop(served: Served) -> None:
    """Served.stop (SIGTERM, then its log kept), or SIGKILL where it does not end in time."""
    if not hasattr(served, "process"):  # Popen itself failed
        return
    try:
        served.stop()
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()
