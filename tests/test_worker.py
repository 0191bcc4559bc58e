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
from pathlib import Path

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
    try:
        ping = connect(path)
        if ping:  # stop the worker this test started
            ping.sendall(b'{"ping": true}\n')
            pid = json.loads(ping.makefile().readline())["pid"]
            ping.close()
            os.kill(pid, signal.SIGTERM)
    except OSError:
        pass  # a worker the test killed, still on its way out


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


# --- the review's findings: each of these ended, froze or fooled the worker before -----------------

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user (nobody)")
NOBODY = 65534


def start_worker_at(path):
    process = subprocess.Popen([sys.executable, "-m", "stylize_core.worker", "--socket", str(path),
                                "--idle-timeout", "120"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert json.loads(process.stdout.readline())["stage"] == "ready"
    return process


@pytest.fixture
def worker(tmp_path):
    """A warm worker of this test's own, started directly; (socket path, process)."""
    path = tmp_path / "own" / "worker.sock"
    process = start_worker_at(path)
    yield path, process
    process.terminate()
    process.wait(30)


def exchange(path, data: bytes, timeout: float = 30) -> list[dict]:
    """Send `data` as it is, then the worker's reply lines until it closes the connection."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    connection.connect(str(path))
    try:
        connection.sendall(data)
        return [json.loads(line) for line in connection.makefile().read().splitlines()]
    finally:
        connection.close()


def ping_pid(path, timeout: float = 30) -> int:
    return exchange(path, b'{"ping": true}\n', timeout)[0]["pid"]


def test_a_silent_client_is_cut_off_and_the_next_one_served(worker):
    path, process = worker
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.settimeout(30)
    silent.connect(str(path))  # and says nothing
    started = time.monotonic()
    assert ping_pid(path, timeout=30) == process.pid
    assert time.monotonic() - started < 15
    reply = json.loads(silent.makefile().readline())
    assert reply["stage"] == "error" and "no complete request line within" in reply["message"]
    silent.close()


def test_an_oversize_request_line_is_refused(worker):
    path, process = worker
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(20)
    connection.connect(str(path))
    try:
        connection.sendall(b"x" * (1 << 20))  # 1 MiB and no end of line: the request never ends
    except OSError:
        pass  # the worker may close while we are still sending
    reply = json.loads(connection.makefile().readline())
    connection.close()
    assert reply["stage"] == "error" and "longer than 65536 bytes" in reply["message"]
    assert ping_pid(path) == process.pid


@pytest.mark.parametrize("case", ["nested_json", "help", "abbreviated_stop", "empty_array"])
def test_a_bad_request_gets_one_line_and_the_worker_stays(worker, images, tmp_path, case):
    path, process = worker
    if case == "nested_json":
        request = b"[" * 30000 + b"]" * 30000 + b"\n"  # deep, yet within the line limit
    else:
        arguments = {"help": ["--help"],
                     "abbreviated_stop": [*argv(images, tmp_path / "x.png"), "--stop"],
                     "empty_array": argv(images, tmp_path / "x.png")}[case]
        if case == "empty_array":
            import numpy as np
            np.save(tmp_path / "empty.npy", np.zeros((0, 0, 3), np.float32))
            arguments[0] = str(tmp_path / "empty.npy")
        request = (json.dumps({"argv": arguments}) + "\n").encode()
    replies = exchange(path, request)
    assert replies[-1]["stage"] == "exit"
    if case != "abbreviated_stop":
        errors = [r for r in replies if r["stage"] == "error"]
        assert replies[-1]["code"] == 2 and len(errors) == 1 and "\n" not in errors[0]["message"]
    time.sleep(0.5)
    assert process.poll() is None and ping_pid(path) == process.pid


def test_a_client_that_gave_up_waiting_is_never_run(worker, images, tmp_path):
    """It falls back to a child that works in its folder: the worker must not touch that later."""
    path, process = worker
    started = threading.Event()
    long_run = threading.Thread(target=run_in_worker, args=(
        sys.executable, argv(images, tmp_path / "long.png", 15, size=400), lambda e: started.set()),
        kwargs={"socket_path": path, "start": False})
    long_run.start()
    assert started.wait(60)
    work = tmp_path / "fallback"
    work.mkdir()
    (work / "content.npy").write_bytes(b"the fallback child's input")
    with pytest.raises(WorkerUnavailable):
        run_in_worker(sys.executable, argv(images, work / "out.png"), collect([]), socket_path=path,
                      cleanup_dir=str(work), start=False)
    long_run.join(300)
    assert ping_pid(path) == process.pid  # the worker has reached the stale request by now
    assert (work / "content.npy").exists(), "the worker removed the folder of a client that had left"
    assert not (work / "out.png").exists(), "the worker ran a request whose client had left"


def test_a_full_backlog_is_not_taken_for_a_stale_socket(worker, images, tmp_path):
    path, process = worker
    started = threading.Event()
    long_run = threading.Thread(target=run_in_worker, args=(
        sys.executable, argv(images, tmp_path / "long.png", 15, size=400), lambda e: started.set()),
        kwargs={"socket_path": path, "start": False})
    long_run.start()
    assert started.wait(60)
    waiting = []
    while True:  # fill the accept backlog of the busy worker
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(str(path))
        except BlockingIOError:
            client.close()
            break
        waiting.append(client)
    second = subprocess.run([sys.executable, "-m", "stylize_core.worker", "--socket", str(path), "--idle-timeout",
                             "5"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    for client in waiting:
        client.close()
    long_run.join(300)
    assert second.returncode == 0 and "already listens" in second.stderr
    deadline = time.monotonic() + 30
    while True:  # the worker works through the closed connections still in its backlog
        try:
            answered = ping_pid(path)
            break
        except BlockingIOError:
            assert time.monotonic() < deadline, "the worker's backlog never emptied"
            time.sleep(0.5)
    assert answered == process.pid, "a second worker took over the busy worker's socket"


def run_as_nobody(script: str, *args: str) -> subprocess.Popen:
    """The system's Python (standard library only) as user nobody, running `script`."""
    return subprocess.Popen(["/usr/bin/python3", "-c", script, *args], user=NOBODY, group=NOBODY,
                            stdout=subprocess.PIPE, text=True)


IMPOSTOR = """
import json, os, socket, sys
folder, name = sys.argv[1], sys.argv[2]
os.makedirs(folder, mode=0o700, exist_ok=True)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(os.path.join(folder, name))
os.chmod(os.path.join(folder, name), 0o777)
listener.listen(1)
listener.settimeout(20)
print("listening", flush=True)
try:
    connection, _ = listener.accept()
except OSError:
    print("nobody came", flush=True)
    sys.exit()
connection.settimeout(5)
request = connection.makefile().readline()
connection.sendall(b'{"stage": "accepted", "pid": 1}\\n{"stage": "exit", "code": 0}\\n')
print("got " + request.strip(), flush=True)
"""


@pytest.fixture
def shared_tmp():
    """A folder every user may create things in, like /tmp (the test's own tmp_path is private)."""
    import tempfile
    folder = tempfile.mkdtemp(prefix="stylize-shared-", dir="/tmp")
    os.chmod(folder, 0o1777)
    yield Path(folder)
    subprocess.run(["rm", "-rf", folder])


@ROOT_ONLY
def test_the_client_refuses_a_socket_folder_of_another_user(images, tmp_path, shared_tmp, monkeypatch):
    """Without XDG_RUNTIME_DIR the socket folder is in the shared temporary folder: another user
    can make it first and listen there."""
    import tempfile
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    from stylize_core.client import default_socket_path
    path = default_socket_path()
    impostor = run_as_nobody(IMPOSTOR, str(path.parent), path.name)
    assert impostor.stdout.readline().strip() == "listening"
    with pytest.raises(WorkerUnavailable, match="belongs to another user"):
        run_in_worker(sys.executable, argv(images, tmp_path / "x.png"), collect([]), start=False)
    impostor.kill()
    assert "got" not in impostor.stdout.read(), "the request went to another user's process"


@ROOT_ONLY
def test_the_client_refuses_a_listener_of_another_user(images, tmp_path, shared_tmp):
    """A socket file in our own folder, but another user's process listens on it."""
    impostor = run_as_nobody(IMPOSTOR, str(shared_tmp / "nobody"), "worker.sock")
    assert impostor.stdout.readline().strip() == "listening"
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    os.rename(shared_tmp / "nobody" / "worker.sock", ours / "worker.sock")
    with pytest.raises(WorkerUnavailable, match="another user's"):
        run_in_worker(sys.executable, argv(images, tmp_path / "x.png"), collect([]), socket_path=ours / "worker.sock",
                      start=False)
    impostor.kill()
    assert "got" not in impostor.stdout.read(), "the request went to another user's process"


@ROOT_ONLY
def test_the_worker_refuses_a_peer_of_another_user_in_words(shared_tmp):
    path = shared_tmp / "own" / "worker.sock"
    process = start_worker_at(path)
    os.chmod(path.parent, 0o711)  # a mistake that lets other users reach the socket
    os.chmod(path, 0o666)
    peer = run_as_nobody("import socket, sys\n"
                         "c = socket.socket(socket.AF_UNIX); c.settimeout(20); c.connect(sys.argv[1])\n"
                         "c.sendall(b'{\"ping\": true}\\n'); print(c.makefile().read())", str(path))
    replies = [json.loads(line) for line in peer.stdout.read().splitlines() if line.strip()]
    assert replies and replies[0]["stage"] == "error" and "its own user" in replies[0]["message"]
    assert not any(r["stage"] == "accepted" for r in replies)
    process.terminate()
    process.wait(30)
