"""The engine server and its one client, over real sockets with real runs: the queue, withdrawal,
the limits, the transports (Unix socket, loopback TCP with a token, TLS with a pinned certificate),
and every way the review found to end, freeze or fool the warm worker that came before it."""

import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylize_core.contract import client
from stylize_core.contract.client import ServerLost, ServerRefused, ServerUnreachable, run_on_server
from helpers import CONTENT, STYLE, small

# private_state (tests/integration/conftest.py): tokens, certificates and records in the test's own folder.
pytestmark = [pytest.mark.skipif(not client.unix_sockets_work(), reason="these tests use Unix sockets too"),
              pytest.mark.usefixtures("private_state")]
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user (nobody)")
NOBODY = 65534
QUICK = {"iterations": 2, "max_size": 64, "scales": 1, "resolution": "working"}
LONG = {"iterations": 400, "max_size": 96, "scales": 1, "resolution": "working", "stall_tolerance": 0.0}
"""Minutes on the CPU: a run that is still going when the test acts on it."""


def collect(events):
    return lambda event: events.append(event)


def result_picture(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def in_background(target, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """Run target in a thread; the dict gets its "value" or its "error"."""
    outcome = {}

    def run():
        try:
            outcome["value"] = target(*args, **kwargs)
        except Exception as error:  # handed to the test, which asserts on it
            outcome["error"] = error
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def raw_exchange(address, data: bytes, timeout: float = 30) -> list[dict]:
    """Send `data` as it is, then read the server's messages until it closes the connection."""
    connection = client.open_connection(address)
    connection.settimeout(timeout)
    try:
        try:
            connection.sendall(data)
        except OSError:
            pass  # the server stopped reading: its reply says why
        channel = client.Channel(connection)
        replies = []
        while True:
            try:
                replies.append(channel.read(time.monotonic() + timeout, max_payload=1 << 30)[0])
            except EOFError:
                return replies
    finally:
        connection.close()


def request_line(header: dict) -> bytes:
    return (json.dumps({"protocol": client.PROTOCOL, **header}) + "\n").encode()


# --- runs, the queue and withdrawal ---------------------------------------------------------------------

@pytest.mark.slow  # two real runs
def test_first_use_starts_the_server_then_it_stays_warm(images, tmp_path, local_server):
    address = client.start_local_server(sys.executable, idle_timeout=120)
    pid = client.ping(address)["pid"]
    assert address.path == str(tmp_path / "runtime" / "stylize-core" / "server.sock")
    assert stat.S_IMODE(Path(address.path).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(address.path).stat().st_mode) == 0o600
    for _ in range(2):
        events = []
        code, data = run_on_server(address, images, QUICK, collect(events))
        assert code == 0 and events[-1]["stage"] == "done"
        assert [e["stage"] for e in events[:3]] == ["accepted", "load", "plan"]
        assert result_picture(data).shape == (72, 96, 3)
    assert client.ping(address)["pid"] == pid and client.ping(address)["runs"] == 2


@pytest.mark.slow  # a real run
def test_alpha_comes_back_and_the_settings_reach_the_engine(served):
    rgba = np.random.default_rng(0).uniform(0, 1, (64, 80, 4)).astype("<f4")
    content = io.BytesIO()
    np.save(content, rgba)
    style = io.BytesIO()
    small(STYLE, 64).save(style, format="PNG")
    events = []
    code, data = run_on_server(served.address, [content.getvalue(), style.getvalue()], {**QUICK, "size": 40},
                               collect(events))
    result = result_picture(data)
    assert code == 0 and result.shape == (32, 40, 4) and result.dtype == np.float32
    plan = next(e for e in events if e["stage"] == "optimize")
    assert plan["total"] == 2 and plan["scales"] == 1


@pytest.mark.parametrize("settings, images_override, expected", [
    ({**QUICK, "strength": -1}, None, "strength must be between 0 and 10000"),
    ({**QUICK, "help": True}, None, "unknown option 'help'"),
    ({**QUICK, "weights": "/etc/passwd"}, None, "names a file on the server"),
    (QUICK, "corrupt_style", "style image is corrupt or truncated"),
    (QUICK, "text_style", "style image is not an image: neither a .npy array nor a picture"),
    (QUICK, "empty_style", "style image is an empty file"),
    (QUICK, "empty_array", r"content image has no pixels \(shape \(0, 0, 3\)\)"),
])
def test_a_bad_request_is_refused_in_one_line(served, images, settings, images_override, expected):
    sent = list(images)
    if images_override == "corrupt_style":
        sent[1] = images[1][:200]
    elif images_override == "text_style":
        sent[1] = b"#!/bin/sh\nrm -rf /\n"
    elif images_override == "empty_style":
        sent[1] = b""
    elif images_override == "empty_array":
        array = io.BytesIO()
        np.save(array, np.zeros((0, 0, 3), np.float32))
        sent[0] = array.getvalue()
    with pytest.raises(ServerRefused, match=expected) as refused:
        run_on_server(served.address, sent, settings, collect([]))
    assert refused.value.reason == "input" and "\n" not in str(refused.value)
    assert served.ping()["runs"] == 0


@pytest.mark.slow  # two real runs
def test_an_engine_error_during_the_run_comes_back_as_an_event(served, images):
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(tiny, format="PNG")
    events = []
    code, data = run_on_server(served.address, [tiny.getvalue(), images[1]], QUICK, collect(events))
    assert code == 2 and data is None
    assert events[-1]["stage"] == "error" and events[-1]["exit_code"] == 2
    assert "too small to stylize" in events[-1]["message"]
    assert events[-1]["reason"] == "input" and "option" in events[-1], "the error event lost its reason or option"
    assert served.ping()["runs"] == 1 and run_on_server(served.address, images, QUICK, collect([]))[0] == 0


def test_no_server_means_unreachable(images, tmp_path):
    with pytest.raises(ServerUnreachable):
        run_on_server(client.Address("unix", path=str(tmp_path / "nobody.sock")), images, QUICK, collect([]))
    with pytest.raises(ServerUnreachable):
        run_on_server(client.parse_address("tcp://token@127.0.0.1:9"), images, QUICK, collect([]))


@pytest.mark.slow  # real runs, one after the other
def test_two_clients_are_served_in_order_and_the_second_hears_it_waits(served, images):
    first_events, second_events, timeline = [], [], []

    def first_on_event(event):
        first_events.append(event)
        if event["stage"] == "optimize" and event["iteration"] == 1:
            timeline.append("first optimizes")
    first, first_outcome = in_background(run_on_server, served.address, images, {**QUICK, "iterations": 15},
                                         first_on_event)
    wait_until(lambda: timeline, 120, "the first run did not start")

    def second_on_event(event):
        second_events.append(event)
        if event["stage"] == "optimize" and "second optimizes" not in timeline:
            timeline.append("second optimizes")
    code, _ = run_on_server(served.address, images, QUICK, second_on_event)
    first.join(300)
    assert code == 0 and first_outcome["value"][0] == 0
    assert second_events[0] == {"stage": "accepted", "protocol": 2, "ahead": 1}
    assert second_events[1] == {"stage": "waiting", "ahead": 1}
    assert first_events[-1]["stage"] == "done"
    assert timeline == ["first optimizes", "second optimizes"]
    assert served.ping()["runs"] == 2


@pytest.mark.slow  # a real run, then a second's wait
def test_a_queued_client_that_leaves_is_dropped_unrun(served, images):
    """A client that gives up on a busy server (and runs the engine itself) must not have its
    request run later: that is the lost run the review found."""
    started = threading.Event()
    first, outcome = in_background(run_on_server, served.address, images, {**QUICK, "iterations": 15},
                                   lambda e: e["stage"] == "optimize" and started.set())
    assert started.wait(120)
    connection = client.open_connection(served.address)
    channel = client.Channel(connection)
    channel.send({"protocol": 2, "op": "stylize", "settings": QUICK, "images": [len(i) for i in images]}, images)
    assert channel.read(time.monotonic() + 10)[0] == {"stage": "accepted", "protocol": 2, "ahead": 1}
    assert served.ping()["queued"] == 1
    connection.close()
    wait_until(lambda: served.ping()["queued"] == 0, 5, "the withdrawn request stayed in the queue")
    first.join(300)
    assert outcome["value"][0] == 0
    time.sleep(1)
    assert served.ping()["runs"] == 1, "the request of a client that had left was run"


@pytest.mark.slow  # a long run started
def test_a_full_queue_says_busy_with_the_runs_ahead(tmp_path, images, serve):
    server = serve("--socket", str(tmp_path / "q" / "server.sock"), "--max-queue", "1")
    started = threading.Event()
    runs = [in_background(run_on_server, server.address, images, LONG,
                          lambda e: e["stage"] == "optimize" and started.set())]
    assert started.wait(120)
    runs.append(in_background(run_on_server, server.address, images, QUICK, collect([])))
    wait_until(lambda: server.ping()["queued"] == 1, 10, "the second run was not queued")
    with pytest.raises(ServerRefused, match="busy with 2 runs ahead") as refused:
        run_on_server(server.address, images, QUICK, collect([]))
    assert refused.value.reason == "busy" and refused.value.ahead == 2
    server.stop()  # the two runs it holds end without their results
    for thread, outcome in runs:
        thread.join(30)
        assert isinstance(outcome.get("error"), ServerLost)


@pytest.mark.slow  # a long run, then a real one
def test_a_client_that_is_killed_mid_run_stops_its_run(served, images, tmp_path):
    script = ("import sys, json, os; sys.path.insert(0, sys.argv[1]); from stylize_core.contract import client;"
              "images = [open(p, 'rb').read() for p in sys.argv[3:5]];"
              "client.run_on_server(client.parse_address(sys.argv[2]), images, json.loads(sys.argv[5]),"
              " lambda e: print(e['stage'], flush=True))")
    for number, data in enumerate(images):
        (tmp_path / f"{number}.png").write_bytes(data)
    killed = subprocess.Popen([sys.executable, "-c", script, os.getcwd(), str(served.address), str(tmp_path / "0.png"),
                               str(tmp_path / "1.png"), json.dumps(LONG)], stdout=subprocess.PIPE, text=True)
    for line in killed.stdout:
        if line.strip() == "optimize":
            break
    killed.kill()  # as GIMP kills a cancelled plug-in
    killed.wait()
    wait_until(lambda: not served.ping()["running"], 5, "the run went on after its client was killed")
    assert run_on_server(served.address, images, QUICK, collect([]))[0] == 0


@pytest.mark.slow  # a long run started
def test_a_server_killed_mid_run_is_reported_not_waited_for(served, images):
    pid = served.ping()["pid"]

    def kill_when_optimising(event):
        if event["stage"] == "optimize" and event["iteration"] == 2:
            os.kill(pid, signal.SIGKILL)
    with pytest.raises(ServerLost, match="stopped in the middle of the run"):
        run_on_server(served.address, images, LONG, kill_when_optimising)


@pytest.mark.slow  # a real run
def test_a_stale_socket_file_is_replaced(images, tmp_path, serve):
    path = tmp_path / "stale" / "server.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a crashed server leaves
    server = serve("--socket", str(path))
    assert run_on_server(server.address, images, QUICK, collect([]))[0] == 0


def test_a_live_server_that_answers_no_probe_keeps_its_socket(served, tmp_path):
    """A stopped (or swamped) server's backlog fills up and nobody answers a probe: that is not a
    stale socket, and a second server must leave it alone (the old worker unlinked it)."""
    pid = served.ping()["pid"]
    os.kill(pid, signal.SIGSTOP)
    waiting = []
    try:
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.setblocking(False)
            try:
                probe.connect(served.address.path)
            except BlockingIOError:
                probe.close()
                break
            waiting.append(probe)
        second = subprocess.run([sys.executable, "-m", "stylize_core", "serve", "--socket", served.address.path,
                                 "--idle-timeout", "5"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=120)
    finally:
        os.kill(pid, signal.SIGCONT)
        for probe in waiting:
            probe.close()
    assert second.returncode == 0 and "already listens" in second.stderr

    def answer():
        try:
            return served.ping()
        except ServerUnreachable:  # still working through the backlog of closed probes
            return None
    assert wait_until(answer, 30, "the first server stopped answering")["pid"] == pid


def test_an_idle_server_exits_and_removes_its_socket(tmp_path, serve):
    path = tmp_path / "idle" / "server.sock"
    server = serve("--socket", str(path), "--idle-timeout", "1")
    assert path.exists()
    assert server.process.wait(timeout=60) == 0
    assert not path.exists()


@pytest.mark.slow  # a server started on demand, and a real run
def test_socket_activation_as_systemd_does_it(tmp_path, images):
    """The Flatpak route: a systemd user socket unit listens; the server starts on the first connection."""
    activate = "/usr/bin/systemd-socket-activate"
    if not os.path.exists(activate):
        pytest.skip("systemd-socket-activate is not installed")
    path = tmp_path / "activated" / "stylize-core.sock"
    path.parent.mkdir(mode=0o700)
    listener = subprocess.Popen([activate, "-l", str(path), sys.executable, "-m", "stylize_core", "serve",
                                 "--idle-timeout", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        wait_until(lambda: path.exists(), 30, "systemd-socket-activate did not listen")
        events = []
        code, data = run_on_server(client.Address("unix", path=str(path)), images, QUICK, collect(events))
        assert code == 0 and result_picture(data).shape == (72, 96, 3)
    finally:
        os.killpg(listener.pid, signal.SIGTERM)
        listener.wait(30)


# --- limits and timeouts: the review's findings ---------------------------------------------------------

@pytest.mark.slow  # waits out the 10 s header timeout (a constant)
def test_a_silent_client_is_cut_off_and_others_are_served_meanwhile(served):
    silent = client.open_connection(served.address)  # and says nothing
    silent.settimeout(30)
    started = time.monotonic()
    assert served.ping()["stage"] == "pong"
    assert time.monotonic() - started < 2, "a silent client held the server"
    reply = client.Channel(silent).read(time.monotonic() + 30)[0]
    assert reply["stage"] == "error" and reply["reason"] == "timeout"
    assert "did not arrive in time" in reply["message"] and 9 < time.monotonic() - started < 20
    silent.close()


def test_an_oversize_json_line_is_refused(served):
    replies = raw_exchange(served.address, b"x" * (1 << 20))  # 1 MiB and no end of line
    assert replies[0]["stage"] == "error" and replies[0]["reason"] == "too-large"
    assert "longer than 65536 bytes" in replies[0]["message"]
    assert served.ping()["stage"] == "pong"


def test_oversize_images_are_refused_before_they_are_read(tmp_path, images, serve):
    server = serve("--socket", str(tmp_path / "small" / "server.sock"), "--max-request-mb", "1")
    big = np.zeros((600, 600, 3), np.float32)  # 4.3 MB
    stream = io.BytesIO()
    np.save(stream, big)
    started = time.monotonic()
    with pytest.raises(ServerRefused, match="more than the limit of 1048576") as refused:
        run_on_server(server.address, [stream.getvalue(), images[1]], QUICK, collect([]))
    assert refused.value.reason == "too-large" and time.monotonic() - started < 5
    assert server.ping()["runs"] == 0


@pytest.mark.slow  # waits out the 10 s transfer window (a constant)
def test_a_slow_request_is_cut_off_in_words(served, images):
    connection = client.open_connection(served.address)
    header = {"protocol": 2, "op": "stylize", "settings": QUICK, "images": [1 << 20, 100], "bytes": (1 << 20) + 100}
    connection.sendall(json.dumps(header).encode() + b"\n" + b"\0" * 1000)  # then nothing more
    connection.settimeout(30)
    started = time.monotonic()
    reply = client.Channel(connection).read(time.monotonic() + 30)[0]
    connection.close()
    assert reply["stage"] == "error" and reply["reason"] == "timeout"
    assert "moved too slowly" in reply["message"] and "(1000 of 1048676 done)" in reply["message"]
    assert time.monotonic() - started < 25


@pytest.mark.parametrize("case, reason", [("nested_json", "request"), ("old_protocol", "version"),
                                          ("not_json", "request"), ("negative_bytes", "request"),
                                          ("unknown_op", "request")])
def test_a_malformed_request_gets_one_line_and_the_server_stays(served, case, reason):
    data = {
        "nested_json": b"[" * 30000 + b"]" * 30000 + b"\n",
        "old_protocol": (json.dumps({"argv": ["a.png", "b.png", "-o", "c.png", "--help"]}) + "\n").encode(),
        "not_json": b"\xff\xfe GET / HTTP/1.1\n",
        "negative_bytes": request_line({"op": "stylize", "bytes": -5}),
        "unknown_op": request_line({"op": "shell"}),
    }[case]
    replies = raw_exchange(served.address, data)
    assert replies[0]["stage"] == "error" and replies[0]["reason"] == reason and "\n" not in replies[0]["message"]
    assert replies[-1] == {"stage": "exit", "code": 2}
    assert served.process.poll() is None and served.ping()["stage"] == "pong"


# --- who may connect ------------------------------------------------------------------------------------

def run_as_nobody(script: str, *args: str) -> subprocess.Popen:
    """The system's Python (standard library only) as user nobody, running `script`."""
    return subprocess.Popen(["/usr/bin/python3", "-c", script, *args], user=NOBODY, group=NOBODY,
                            stdout=subprocess.PIPE, text=True)


IMPOSTOR = """
import os, socket, sys
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
    sys.exit()
connection.settimeout(5)
request = connection.makefile("rb").readline()
if request:
    print("got", len(request), "bytes", flush=True)
"""


@pytest.fixture
def shared_tmp():
    """A folder every user may create things in, like /tmp (the test's own tmp_path is private)."""
    folder = tempfile.mkdtemp(prefix="stylize-shared-", dir="/tmp")
    os.chmod(folder, 0o1777)
    yield Path(folder)
    subprocess.run(["rm", "-rf", folder])


@ROOT_ONLY
def test_the_client_refuses_a_socket_folder_of_another_user(images, shared_tmp, monkeypatch):
    """Without XDG_RUNTIME_DIR the socket folder is in the shared temporary folder: another user
    can make it first and listen there."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    path = client.default_socket_path()
    impostor = run_as_nobody(IMPOSTOR, str(path.parent), path.name)
    assert impostor.stdout.readline().strip() == "listening"
    with pytest.raises(ServerRefused, match="belongs to another user"):
        run_on_server(client.local_address(), images, QUICK, collect([]))
    impostor.kill()
    assert "got" not in impostor.stdout.read(), "the request went to another user's process"


@ROOT_ONLY
def test_the_client_refuses_a_listener_of_another_user(images, tmp_path, shared_tmp):
    """A socket file in our own folder, but another user's process listens on it."""
    impostor = run_as_nobody(IMPOSTOR, str(shared_tmp / "nobody"), "server.sock")
    assert impostor.stdout.readline().strip() == "listening"
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    os.rename(shared_tmp / "nobody" / "server.sock", ours / "server.sock")
    with pytest.raises(ServerRefused, match="another user's"):
        run_on_server(client.Address("unix", path=str(ours / "server.sock")), images, QUICK, collect([]))
    impostor.kill()
    assert "got" not in impostor.stdout.read(), "the request went to another user's process"


@ROOT_ONLY
def test_the_server_refuses_a_peer_of_another_user_in_words(shared_tmp, serve):
    server = serve("--socket", str(shared_tmp / "own" / "server.sock"))
    os.chmod(shared_tmp / "own", 0o711)  # a mistake that lets other users reach the socket
    os.chmod(server.address.path, 0o666)
    peer = run_as_nobody("import socket, sys\n"
                         "c = socket.socket(socket.AF_UNIX); c.settimeout(20); c.connect(sys.argv[1])\n"
                         "c.sendall(b'{\"protocol\": 2, \"op\": \"ping\"}\\n'); print(c.makefile().read())",
                         server.address.path)
    replies = [json.loads(line) for line in peer.stdout.read().splitlines() if line.strip()]
    assert replies and replies[0]["stage"] == "error" and replies[0]["reason"] == "peer"
    assert "its own user" in replies[0]["message"]
    assert not any(r["stage"] == "pong" for r in replies)


@pytest.mark.slow  # a real run
def test_loopback_needs_the_token_kept_in_a_private_file(tmp_path, images, serve):
    server = serve("--loopback")
    record = tmp_path / "state" / "stylize-core" / client.LOOPBACK_FILE
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE((record.parent / "token").stat().st_mode) == 0o600
    address = client.local_address("loopback")
    assert address == server.address and address.host == "127.0.0.1"
    for token, reason in (("wrong", "token"), ("", "token")):
        replies = raw_exchange(address, request_line({"op": "ping", "token": token}))
        assert replies[0]["stage"] == "error" and replies[0]["reason"] == reason
    with pytest.raises(ServerRefused, match="wrong or missing token"):
        run_on_server(client.Address("tcp", host="127.0.0.1", port=address.port, token="guess"), images, QUICK,
                      collect([]))
    assert run_on_server(address, images, QUICK, collect([]))[0] == 0
    server.stop()
    assert not record.exists()


def test_plain_tcp_is_refused_off_loopback(tmp_path):
    refused = subprocess.run([sys.executable, "-m", "stylize_core", "serve", "--listen", "0.0.0.0:0", "--no-tls"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--no-tls is only for" in refused.stderr
    with pytest.raises(ValueError, match="plain tcp:// is for this computer only"):
        client.parse_address("tcp://token@192.0.2.7:8787")
    with pytest.raises(ValueError, match="needs the server certificate's fingerprint"):
        client.parse_address("tls://token@192.0.2.7:8787")


def test_tls_with_a_pinned_certificate_and_a_token(tmp_path, images, serve):
    """Another computer's server, here on another loopback port: TLS, a self-signed certificate made
    once and kept, its fingerprint pinned by the client, and the token."""
    server = serve("--listen", "127.0.0.1:0")
    address = server.address
    assert address.kind == "tls" and len(address.fingerprint) == 64
    assert run_on_server(address, images, QUICK, collect([]))[0] == 0
    impostor = client.Address("tls", host=address.host, port=address.port, token=address.token,
                              fingerprint="0" * 64)
    with pytest.raises(ServerRefused, match="shows another certificate") as refused:
        client.ping(impostor)
    assert refused.value.reason == "certificate"
    with pytest.raises(ServerRefused, match="wrong or missing token"):
        client.ping(client.Address("tls", host=address.host, port=address.port, token="guess",
                                   fingerprint=address.fingerprint))
    plain = socket.create_connection((address.host, address.port))  # no TLS at all: dropped
    plain.settimeout(20)
    plain.sendall(request_line({"op": "ping", "token": address.token}))
    try:
        assert plain.recv(100) == b"", "a request without TLS got an answer"
    except ConnectionResetError:
        pass
    plain.close()
    server.stop()  # and started again: the certificate must be the one it made
    certificate = tmp_path / "state" / "stylize-core" / "tls" / "cert.pem"
    assert stat.S_IMODE(certificate.with_name("key.pem").stat().st_mode) == 0o600
    again = serve("--listen", "127.0.0.1:0")
    assert again.address.fingerprint == address.fingerprint, "the certificate was not kept"
    if os.path.exists("/usr/bin/openssl"):
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(certificate), str(certificate)],
                                  capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.slow  # the CLI's real runs through the server
def test_the_cli_as_a_client_of_a_tls_server(tmp_path, serve):
    """The token travels in the server's private address file or the environment, never on a command line
    (every local user reads /proc/PID/cmdline) nor in the server's output."""
    server = serve("--listen", "127.0.0.1:0")
    small(CONTENT, 96).save(tmp_path / "content.png")
    small(STYLE, 96).save(tmp_path / "style.jpg")
    command = [sys.executable, "-m", "stylize_core", str(tmp_path / "content.png"), str(tmp_path / "style.jpg"),
               "-o", str(tmp_path / "out.png"), "--iterations", "2", "--max-size", "64", "--scales", "1",
               "--progress", "json"]
    address_file = server.ready["address_files"][0]
    token = server.address.token
    done = subprocess.run([*command, "--server-file", address_file], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    stages = [json.loads(line)["stage"] for line in done.stdout.splitlines()]
    assert stages[:2] == ["load", "plan"] and stages[-2:] == ["save", "done"] and "optimize" in stages
    assert Image.open(tmp_path / "out.png").size == (96, 72)
    inline = subprocess.run([*command, "-o", str(tmp_path / "inline.png"), "--server", str(server.address)],
                            capture_output=True, text=True, timeout=120)
    assert inline.returncode == 2 and "--server-file" in inline.stderr and token not in inline.stderr
    wrong = str(server.address).replace("@", "x@", 1)
    refused = subprocess.run([*command, "-o", str(tmp_path / "no.png")], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "STYLIZE_SERVER": wrong})
    assert refused.returncode == 1 and not (tmp_path / "no.png").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("stylize: error: server: wrong or missing token")
    server.stop()
    assert token not in server.log() and token not in json.dumps(server.ready), "the server printed its token"
    gone = subprocess.run([*command, "-o", str(tmp_path / "gone.png"), "--server-file", address_file],
                          capture_output=True, text=True, timeout=120)
    assert gone.returncode == 2 and "cannot read the address file" in gone.stderr, "its address file outlived it"
