"""The warm worker and its one client, over a real Unix socket with real runs."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from stylize_core.client import WorkerUnavailable, connect, run_in_worker
from helpers import CONTENT, STYLE, small

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="the worker needs Unix sockets")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker-images")
    small(CONTENT, 96).save(folder / "content.png")
    small(STYLE, 96).save(folder / "style.png")
    return folder


@pytest.fixture
def socket_path(tmp_path):
    path = tmp_path / "w" / "worker.sock"
    yield path
    ping = connect(path)
    if ping:  # stop the worker this test started
        try:
            ping.sendall(b'{"ping": true}\n')
            pid = json.loads(ping.makefile().readline())["pid"]
        except (ConnectionResetError, BrokenPipeError):
            return  # a worker the test killed, caught while it was dying: nothing left to stop
        finally:
            ping.close()
        os.kill(pid, signal.SIGTERM)


def argv(images, out, iterations=3, size=None):
    """An engine invocation; `size` makes a slow one (a bigger working size) that cannot stall early."""
    return [str(images / "content.png"), str(images / "style.png"), "-o", str(out), "--iterations",
            str(iterations), "--progress", "json", *(["--size", str(size)] if size else [])]


def collect(events):
    return lambda event: events.append(event)


def test_starts_on_first_use_then_stays_warm(images, tmp_path, socket_path):
    first, second = [], []
    assert run_in_worker(sys.executable, argv(images, tmp_path / "a.png"), collect(first),
                         socket_path=socket_path, idle_timeout=120) == 0
    assert (tmp_path / "a.png").exists() and any(e["stage"] == "optimize" for e in first)
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert run_in_worker(sys.executable, argv(images, tmp_path / "b.png"), collect(second),
                         socket_path=socket_path, start=False) == 0
    assert (tmp_path / "b.png").exists() and second[-1]["stage"] == "done"


def test_errors_come_back_as_events_and_exit_codes(images, tmp_path, socket_path):
    events = []
    bad = argv(images, tmp_path / "x.png")
    bad[1] = str(tmp_path / "missing.png")
    assert run_in_worker(sys.executable, bad, collect(events), socket_path=socket_path, idle_timeout=120) == 2
    assert events[-1]["stage"] == "error" and "not found" in events[-1]["message"]
    assert not (tmp_path / "x.png").exists()


def test_no_worker_and_no_start_means_unavailable(images, tmp_path, socket_path):
    with pytest.raises(WorkerUnavailable):
        run_in_worker(sys.executable, argv(images, tmp_path / "x.png"), collect([]), socket_path=socket_path,
                      start=False)


def test_a_stale_socket_file_is_replaced(images, tmp_path, socket_path):
    socket_path.parent.mkdir(mode=0o700, parents=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path))
    dead.close()  # the file stays, nobody listens: what a crashed worker leaves
    assert run_in_worker(sys.executable, argv(images, tmp_path / "a.png"), collect([]),
                         socket_path=socket_path, idle_timeout=120) == 0


def test_a_crashed_worker_is_reported_not_waited_for(images, tmp_path, socket_path):
    events = []

    def kill_when_optimising(event):
        events.append(event)
        if event["stage"] == "optimize" and len(events) == 3:
            os.kill(pid[0], signal.SIGKILL)

    pid = []
    run_in_worker(sys.executable, argv(images, tmp_path / "warm.png"), collect([]), socket_path=socket_path,
                  idle_timeout=120)
    ping = connect(socket_path)
    ping.sendall(b'{"ping": true}\n')
    pid.append(json.loads(ping.makefile().readline())["pid"])
    ping.close()
    with pytest.raises(WorkerUnavailable):
        run_in_worker(sys.executable, argv(images, tmp_path / "c.png", 50, size=400), kill_when_optimising,
                      socket_path=socket_path, start=False)
    assert not (tmp_path / "c.png").exists()


def test_a_client_that_goes_away_cancels_its_run(images, tmp_path, socket_path):
    run_in_worker(sys.executable, argv(images, tmp_path / "warm.png"), collect([]), socket_path=socket_path,
                  idle_timeout=120)
    work = tmp_path / "job"
    work.mkdir()
    client = subprocess.Popen([sys.executable, "-c", (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from stylize_core.client import run_in_worker;"
        "run_in_worker(sys.executable, json.loads(sys.argv[2]), lambda e: print(e['stage'], flush=True),"
        " socket_path=__import__('pathlib').Path(sys.argv[3]), cleanup_dir=sys.argv[4], start=False)"),
        os.getcwd(), json.dumps(argv(images, work / "out.png", 50, size=400)), str(socket_path), str(work)],
        stdout=subprocess.PIPE, text=True)
    for line in client.stdout:
        if line.strip() == "optimize":
            break
    client.kill()  # as GIMP kills a cancelled plug-in
    client.wait()
    deadline = time.monotonic() + 15
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not work.exists()
    assert run_in_worker(sys.executable, argv(images, tmp_path / "after.png"), collect([]),
                         socket_path=socket_path, start=False) == 0


def test_a_busy_worker_turns_a_second_client_away(images, tmp_path, socket_path):
    run_in_worker(sys.executable, argv(images, tmp_path / "warm.png"), collect([]), socket_path=socket_path,
                  idle_timeout=120)
    started = threading.Event()
    long_run = threading.Thread(target=run_in_worker, args=(
        sys.executable, argv(images, tmp_path / "long.png", 15, size=400), lambda e: started.set()),
        kwargs={"socket_path": socket_path, "start": False})
    long_run.start()
    started.wait(30)
    with pytest.raises(WorkerUnavailable):
        run_in_worker(sys.executable, argv(images, tmp_path / "second.png"), collect([]),
                      socket_path=socket_path, start=False)
    long_run.join(120)


def test_idle_worker_exits_and_removes_its_socket(tmp_path):
    path = tmp_path / "idle" / "worker.sock"
    process = subprocess.Popen([sys.executable, "-m", "stylize_core.worker", "--socket", str(path),
                                "--idle-timeout", "1"], stdout=subprocess.PIPE, text=True)
    ready = json.loads(process.stdout.readline())
    assert ready["stage"] == "ready" and path.exists()
    assert process.wait(timeout=30) == 0
    assert not path.exists()
