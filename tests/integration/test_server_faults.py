"""The server's runner cannot die: a fault at each step of a run (load, calibrate, plan, each scale,
the upscale, the save, the send), with the client staying or leaving just before it, ends that run
only. The server runs in this process so that the test can make each step fail; the steps are the
engine's real functions, wrapped to raise at their turn."""

import io
import threading
import time

import numpy as np
import pytest

from stylize_core.contract import client
from stylize_core.engine import api as engine
from stylize_core.engine import imageio
from stylize_core.contract.client import ServerLost, run_on_server
from stylize_core.contract.errors import OutOfMemoryError
from stylize_core.server.listeners import unix_listener
from stylize_core.server.service import Server
from helpers import CONTENT, STYLE, png_bytes

pytestmark = pytest.mark.skipif(not client.unix_sockets_work(), reason="the server listens on a Unix socket")
TWO_SCALES = {"iterations": 2, "max_size": 192, "scales": 2, "resolution": "working"}


@pytest.fixture(scope="module")
def images():
    return [png_bytes(CONTENT, 192), png_bytes(STYLE, 192)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    listener = unix_listener(tmp_path_factory.mktemp("faults") / "run" / "server.sock", private_folder=True)
    served = Server([listener], "cpu", 0, 8, 64 << 20, memory_limit_mb=4000)
    thread = threading.Thread(target=served.serve_forever, name="server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not client.ping(listener.address)["warm"]:
        assert time.monotonic() < deadline, "the server did not warm up"
        time.sleep(0.1)
    yield served, listener.address
    served.stop()
    thread.join(10)


def runner_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "runner" and thread.is_alive()]


STEPS = ["load", "calibrate", "plan", "scale 1", "scale 2", "upscale", "save", "send"]


def make_step_fail(monkeypatch, step: str, fail) -> None:
    """Wrap the engine's (or the server's) function of `step` so that its turn calls fail() instead."""
    def on_call(target, name, turn=1, after=None):
        real = getattr(target, name)
        calls = []

        def wrapped(*args, **kwargs):
            if after is None or after():
                calls.append(1)
                if len(calls) == turn:
                    fail()
            return real(*args, **kwargs)
        monkeypatch.setattr(target, name, wrapped)

    if step == "load":
        on_call(engine, "prepared_network")
    elif step == "calibrate":
        on_call(engine, "calibration_for")
    elif step == "plan":
        on_call(engine, "make_plan")
    elif step.startswith("scale"):
        on_call(engine, "optimize_scale", turn=int(step.split()[1]))
    elif step == "upscale":
        optimized = []
        real_pyramid = engine.optimize_pyramid
        monkeypatch.setattr(engine, "optimize_pyramid",
                            lambda run, **kwargs: optimized.append(1) or real_pyramid(run, **kwargs))
        on_call(engine, "resize_rgb", after=lambda: bool(optimized))
    elif step == "save":
        on_call(imageio, "npy_bytes")
    elif step == "send":
        real_send = client.Channel.send

        def send(channel, header, parts=()):
            if header.get("stage") == "result":
                fail()
            return real_send(channel, header, parts)
        monkeypatch.setattr(client.Channel, "send", send)


@pytest.mark.parametrize("leaves", [False, True], ids=["client stays", "client leaves"])
# Each case runs real (small) stylizations: RuntimeError at every step stays in the quick subset, the
# other errors are `slow`.
@pytest.mark.parametrize("error", [pytest.param(OutOfMemoryError, marks=pytest.mark.slow), RuntimeError,
                                   pytest.param(MemoryError, marks=pytest.mark.slow),
                                   pytest.param(SystemExit, marks=pytest.mark.slow)])
@pytest.mark.parametrize("step", STEPS)
def test_a_fault_at_any_step_ends_only_that_run(server, images, monkeypatch, step, error, leaves):
    served, address = server
    connections = []

    def fail():
        if leaves:  # the client goes first, and the server has seen it go when the fault comes
            client.withdraw(connections[0])
            if step == "send":
                raise error(f"injected at {step}")  # the connection's own thread: it sees its client gone next
            deadline = time.monotonic() + 20
            while not (served.scheduler.running and served.scheduler.running.withdrawn.is_set()):
                assert time.monotonic() < deadline, "the server did not see its client leave"
                time.sleep(0.01)
        raise error(f"injected at {step}")

    make_step_fail(monkeypatch, step, fail)
    events = []
    try:
        code, data = run_on_server(address, images, TWO_SCALES, events.append, on_connect=connections.append)
    except (ServerLost, client.ServerUnreachable):
        code, data = None, None  # our own leaving, or the send's fault, closed the connection
    monkeypatch.undo()
    if not leaves and step != "send":
        assert code in (1, 3) and data is None, (code, events[-3:])
        assert "injected at" in events[-1]["message"] or "out of memory" in events[-1]["message"]
        assert events[-1]["reason"] in ("memory", "failed") and "option" in events[-1]
        if error in (OutOfMemoryError, MemoryError):
            assert (events[-1]["reason"], events[-1]["option"]) == ("memory", "max_size"), events[-1]
    runs_before = served.scheduler.state()["runs"]
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        value=run_on_server(address, images, TWO_SCALES, lambda event: None)), daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the next run never ran: the runner is gone"
    code, data = outcome["value"]
    assert code == 0 and np.load(io.BytesIO(data)).shape == (144, 192, 3)
    assert served.scheduler.state()["runs"] == runs_before + 1 and len(runner_threads()) == 1
