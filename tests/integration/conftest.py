"""Fixtures shared by the integration modules: servers of a test's own and the state they keep.

Each is built on tests/conftest.py's `serve` (servers stopped when the test ends) or stops what it
started itself; none of them leaves a process behind, passed or failed.
"""

from __future__ import annotations

import os
import signal

import pytest

from stylize_core.contract import client
from helpers import CONTENT, STYLE, png_bytes


@pytest.fixture
def private_state(tmp_path, monkeypatch):
    """Tokens, certificates and the loopback file of this test's servers stay in its own folder
    (XDG_STATE_HOME=tmp_path/state). The server modules use it on every test (pytestmark usefixtures)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def images():
    """The content and the style as the bytes of PNG files (96 px): what a client sends a server.
    (test_cli and test_server_faults have `images` of their own: a folder of pictures, 192 px bytes.)"""
    return [png_bytes(CONTENT, 96), png_bytes(STYLE, 96)]


@pytest.fixture
def served(serve, tmp_path):
    """A server of the test's own on a Unix socket in its tmp folder (run/server.sock), idle timeout
    300 s; stopped when the test ends."""
    return serve("--socket", str(tmp_path / "run" / "server.sock"), "--idle-timeout", "300")


@pytest.fixture
def local_server(tmp_path, monkeypatch):
    """This computer's server as the plug-in (or client.start_local_server) starts it, in a runtime
    folder of the test's own (XDG_RUNTIME_DIR=tmp_path/runtime, mode 700; XDG_STATE_HOME=tmp_path/state).
    Whatever server then answers there is stopped (SIGTERM) when the test ends."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield
    try:
        os.kill(client.ping(client.local_address())["pid"], signal.SIGTERM)
    except client.ServerError:
        pass
