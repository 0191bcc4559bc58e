"""The engine server as a hostile or careless user meets it: each case here is a defect a review
reproduced (issue 28), in the repro's shape: a real server process, real sockets, a real second
user where the case needs one, a real slow reader. The server must fail closed, stay up, and lose
no run and no file."""

import io
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stylize_core.contract import client
from stylize_core.contract.client import ServerRefused, run_on_server
from helpers import STYLE, small
from test_server import QUICK, LONG, NOBODY, ROOT_ONLY, in_background, wait_until

# private_state (tests/integration/conftest.py): tokens, certificates and records in the test's own folder.
pytestmark = [pytest.mark.skipif(not client.unix_sockets_work(), reason="these tests use Unix sockets too"),
              pytest.mark.usefixtures("private_state")]
STEADY = {"iterations": 40, "max_size": 64, "scales": 1, "resolution": "working", "stall_tolerance": 0.0}
"""A run of a few seconds: long enough for later clients to queue behind it."""


def start_server(*arguments: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    """`stylize serve` that is expected to refuse to start: its exit status and what it said."""
    return subprocess.run([sys.executable, "-m", "stylize_core", "serve", *arguments], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(environment or {})})


def result_of(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- 1. identical requests ------------------------------------------------------------------------------

@pytest.mark.slow  # three real runs
def test_three_clients_with_the_same_settings_each_get_their_result(tmp_path, images, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"))
    outcomes = []
    for _ in range(3):
        outcomes.append(in_background(run_on_server, served.address, images, STEADY, lambda event: None))
        wait_until(lambda: served.ping()["running"] or served.ping()["queued"], 60, "the request was not queued")
    for thread, _ in outcomes:
        thread.join(300)
    results = [outcome.get("value") for _, outcome in outcomes]
    assert all(r is not None and r[0] == 0 for r in results), [o for _, o in outcomes]
    first = result_of(results[0][1])
    assert all(np.array_equal(first, result_of(r[1])) for r in results[1:]), "the same request, another result"
    assert served.ping()["runs"] == 3


# --- 3. the token -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n", "x", "a" * 31, "a" * 31 + "!"])
@pytest.mark.parametrize("where", [("--loopback",), ("--listen", "127.0.0.1:0")])
def test_a_token_file_without_a_valid_token_stops_the_server(tmp_path, text, where):
    state = tmp_path / "state" / "stylize-core"
    state.mkdir(parents=True, mode=0o700)
    (state / "token").write_text(text)
    os.chmod(state / "token", 0o600)
    started = start_server(*where)
    assert started.returncode == 2, started.stdout + started.stderr
    assert "holds no valid token" in started.stderr and "@" not in started.stdout
    assert (state / "token").read_text() == text, "the token file was changed"


def test_the_token_made_at_first_start_is_long_random_and_private(tmp_path, serve):
    served = serve("--loopback")
    token_file = tmp_path / "state" / "stylize-core" / "token"
    token = token_file.read_text().strip()
    assert len(token) >= 32 and served.address.token == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not [name for name in os.listdir(token_file.parent) if name.startswith(".")], "a temporary file left"
    served.stop()
    assert token not in served.log()


# --- 4, 5, 6. the socket's folder and path --------------------------------------------------------------

@pytest.mark.slow  # a real run
def test_a_socket_in_a_folder_of_the_user_leaves_the_folder_as_it_was(tmp_path, images, serve):
    folder = tmp_path / "home"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    served = serve("--socket", str(folder / "x.sock"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755, "the server changed the mode of the user's folder"
    assert run_on_server(served.address, images, QUICK, lambda event: None)[0] == 0
    served.stop()
    assert sorted(os.listdir(folder)) == [], "the server left files behind"


def test_a_folder_others_may_write_to_is_refused_and_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    started = start_server("--socket", str(shared / "x.sock"))
    assert started.returncode == 2 and "other users may write to" in started.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777 and not os.listdir(shared)


def test_a_file_at_the_socket_path_is_never_removed(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir(mode=0o700)
    (folder / "notes.txt").write_text("my notes")
    started = start_server("--socket", str(folder / "notes.txt"))
    assert started.returncode == 2 and "is not a socket of yours: not replacing it" in started.stderr
    assert (folder / "notes.txt").read_text() == "my notes"


def test_a_file_at_the_lock_path_is_never_used_nor_removed(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o700)
    (folder / "x.sock.lock").write_text("my own file")
    started = start_server("--socket", str(folder / "x.sock"))
    assert started.returncode == 2 and "is not a lock file of stylize serve" in started.stderr
    assert (folder / "x.sock.lock").read_text() == "my own file" and sorted(os.listdir(folder)) == ["x.sock.lock"]


def test_a_socket_path_too_long_is_said_in_one_line(tmp_path):
    started = start_server("--socket", str(tmp_path / ("d" * 120) / "server.sock"))
    assert started.returncode == 2 and "may have at most 107" in started.stderr and "Traceback" not in started.stderr


@ROOT_ONLY
def test_without_xdg_runtime_dir_another_users_link_is_not_followed(tmp_path):
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    target = tmp_path / "nobodys"
    target.mkdir(mode=0o755)
    os.chown(target, NOBODY, NOBODY)
    link = shared / f"stylize-core-{os.getuid()}"
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)
    environment = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    started = subprocess.run([sys.executable, "-m", "stylize_core", "serve"], capture_output=True, text=True,
                             timeout=60, env={**environment, "TMPDIR": str(shared)})
    assert started.returncode == 2 and "is a link: not following it" in started.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and not os.listdir(target)


def test_two_loopback_servers_keep_one_record_and_the_first_stays_reachable(tmp_path, serve):
    first = serve("--loopback")
    record = tmp_path / "state" / "stylize-core" / "loopback.json"
    before = record.read_text()
    second = start_server("--loopback")
    assert second.returncode == 0 and "already listens on the loopback port" in second.stderr
    assert record.read_text() == before
    assert client.ping(client.read_address_file(record))["pid"] == first.process.pid
    first.stop()
    assert not record.exists(), "the record outlived its server"


# --- start-up errors and option values -----------------------------------------------------------------

@pytest.mark.parametrize("arguments, said", [
    (("--max-request-mb", "nan"), "--max-request-mb: expected a number"),
    (("--idle-timeout", "-1"), "--idle-timeout: expected a number of at least 0"),
    (("--max-queue", "-1"), "--max-queue: expected a number of at least 1"),
])
def test_option_values_that_make_no_sense_are_refused(arguments, said):
    started = start_server("--loopback", *arguments)
    assert started.returncode == 2 and said in started.stderr


def test_a_port_in_use_and_an_unwritable_state_folder_are_said_in_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        started = start_server("--listen", f"127.0.0.1:{taken.getsockname()[1]}", "--no-tls")
    finally:
        taken.close()
    assert started.returncode == 2 and "cannot listen on 127.0.0.1" in started.stderr
    assert "Traceback" not in started.stderr
    state = tmp_path / "readonly"
    state.mkdir()
    (state / "stylize-core").write_text("a file where the folder should be")
    started = start_server("--loopback", environment={"XDG_STATE_HOME": str(state)})
    assert started.returncode == 2 and "stylize-core is not a folder" in started.stderr
    assert "Traceback" not in started.stderr


def test_a_protocol_given_as_text_is_named_as_such(tmp_path, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"))
    connection = client.open_connection(served.address)
    channel = client.Channel(connection)
    channel.send({"protocol": "2", "op": "ping"})
    reply = channel.read(time.monotonic() + 30)[0]
    connection.close()
    assert reply["reason"] == "version" and reply["message"] == "the request's protocol must be the number 2, not \"2\""


# --- 7. silent sockets ----------------------------------------------------------------------------------

def test_silent_sockets_cannot_lock_clients_out_of_a_tls_server(tmp_path, serve):
    served = serve("--listen", "127.0.0.1:0")
    silent = []
    try:
        for _ in range(40):
            silent.append(socket.create_connection((served.address.host, served.address.port), timeout=10))
        wait_until(lambda: served.ping()["unauthenticated"] <= 32, 30, "silent sockets beyond the bound")
        answered = 0
        for _ in range(10):
            answered += client.ping(served.address)["stage"] == "pong"
        assert answered == 10
        state = served.ping()
        assert state["pushed_out"] >= 8, state
    finally:
        for sock in silent:
            sock.close()


def test_one_peer_holds_only_its_share_of_unauthenticated_slots(tmp_path, serve):
    served = serve("--listen", "127.0.0.1:0", "--no-tls")
    silent = []
    try:
        for _ in range(20):
            silent.append(socket.create_connection((served.address.host, served.address.port), timeout=10))
        state = wait_until(lambda: (lambda s: s if s["unauthenticated"] <= 8 else None)(served.ping()), 30,
                           "one peer held more than its share")
        assert state["pushed_out"] >= 12
    finally:
        for sock in silent:
            sock.close()


def test_busy_is_said_over_tls_where_the_client_can_read_it(tmp_path, images, serve):
    served = serve("--listen", "127.0.0.1:0", "--max-queue", "1")
    try:
        waiting = [in_background(run_on_server, served.address, images, LONG, lambda event: None) for _ in range(2)]
        wait_until(lambda: served.ping()["queued"] == 1, 120, "the second run did not queue")
        with pytest.raises(ServerRefused) as refused:
            run_on_server(served.address, images, QUICK, lambda event: None)
        assert refused.value.reason == "busy" and "busy" in str(refused.value)
    finally:
        served.stop()  # the two runs it holds end without their results
        for thread, _ in waiting:
            thread.join(30)


def test_connections_beyond_the_bound_are_told_busy_over_tls(tmp_path, serve):
    """32 clients about to send their images hold the authenticated connections (for a window, until
    their pace fails); the next client hears "busy" over TLS, a refusal it can read (it was once plain
    text on the TLS port)."""
    served = serve("--listen", "127.0.0.1:0")
    uploading = []
    header = client.request_header(served.address, "stylize", settings=QUICK, images=[100 << 20, 0])
    try:
        deadline, refused = time.monotonic() + 8, None  # within the first window of their uploads
        for _ in range(32):
            connection = client.open_connection(served.address)
            connection.sendall(json.dumps({**header, "bytes": 100 << 20}).encode() + b"\n")
            uploading.append(connection)
        while refused is None and time.monotonic() < deadline:
            try:
                client.ping(served.address)
            except ServerRefused as error:
                refused = error
        assert refused is not None and refused.reason == "busy", "no busy refusal while 32 clients were served"
        assert "connections already" in str(refused)
    finally:
        for connection in uploading:
            connection.close()


# --- 8. payloads: memory as it arrives, a pace per window ------------------------------------------------

def test_a_declared_size_takes_no_memory_until_its_bytes_arrive(tmp_path, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"), "--max-request-mb", "2000")
    connections = []
    try:
        # Warm first: its warm-up (torch, VGG19) runs in the background after "ready" and takes memory.
        wait_until(lambda: served.ping()["warm"], 120, "the server did not warm up")
        before = resident_bytes(served.process.pid)
        for _ in range(3):
            connection = client.open_connection(served.address)
            connection.sendall(json.dumps({"protocol": 2, "op": "stylize", "settings": QUICK, "images": [1000 << 20, 0],
                                           "bytes": 1000 << 20}).encode() + b"\n" + b"\0" * 1000)
            connections.append(connection)
        wait_until(lambda: served.ping()["buffered_bytes"] == 3000, 30, "the first bytes were not taken")
        assert resident_bytes(served.process.pid) - before < 100 << 20, "memory taken before the bytes came"
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.slow  # drips for a 10 s window or two
def test_a_drip_of_bytes_is_cut_off_within_a_window_or_two(tmp_path, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"))
    connection = client.open_connection(served.address)
    connection.sendall(json.dumps({"protocol": 2, "op": "stylize", "settings": QUICK, "images": [1 << 20, 0],
                                   "bytes": 1 << 20}).encode() + b"\n")
    dripped, reply = 0, None
    connection.settimeout(5)
    while reply is None and dripped < 20:  # one byte every 2 s: an hour for a megabyte, in the old rule
        try:
            connection.sendall(b"\0")
            dripped += 1
            reply = client.Channel(connection).read(time.monotonic() + 2)[0]
        except client.ProtocolError:
            continue  # nothing said yet: drip on
        except OSError:
            break
    if reply is None:
        connection.settimeout(10)
        reply = client.Channel(connection).read(time.monotonic() + 10)[0]
    connection.close()
    assert reply["reason"] == "timeout" and "moved too slowly" in reply["message"]
    assert dripped <= 12, f"{dripped} bytes dripped over {2 * dripped} s were tolerated"
    assert served.ping()["buffered_bytes"] == 0


def test_requests_together_may_not_hold_more_than_the_buffer_cap(tmp_path, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"), "--max-request-mb", "6",
                   "--max-buffered-mb", "8")
    first = client.open_connection(served.address)
    try:
        first.sendall(json.dumps({"protocol": 2, "op": "stylize", "settings": QUICK, "images": [5 << 20, 0],
                                  "bytes": 5 << 20}).encode() + b"\n" + b"\0" * ((5 << 20) - 1))
        wait_until(lambda: served.ping()["buffered_bytes"] >= 4 << 20, 30, "the first request's bytes were not taken")
        with pytest.raises(ServerRefused) as refused:
            run_on_server(served.address, [b"\0" * (4 << 20), b"\0" * 10], QUICK, lambda event: None)
        assert refused.value.reason == "busy" and "takes no more now" in str(refused.value)
    finally:
        first.close()
        wait_until(lambda: served.ping()["buffered_bytes"] == 0, 30, "a request's bytes were kept after it ended")


# --- 9. a request's memory limit ------------------------------------------------------------------------

@pytest.mark.slow  # two real runs
def test_a_request_cannot_raise_the_servers_memory_budget(tmp_path, images, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"), "--memory-limit-mb", "1500")
    events = []
    code, _ = run_on_server(served.address, images, {**QUICK, "memory_limit_mb": 81000}, events.append)
    assert code == 0
    plan = next(event["message"] for event in events if event["stage"] == "plan")
    assert "(1.5 GB usable" in plan, plan
    events = []
    run_on_server(served.address, images, {**QUICK, "memory_limit_mb": 1200}, events.append)
    assert "(1.2 GB usable" in next(event["message"] for event in events if event["stage"] == "plan")
    served.stop()
    assert "memory_limit_mb=1500" in served.log() and "memory_limit_mb=81000" not in served.log()


@pytest.mark.slow  # two real runs
def test_without_a_server_limit_a_request_gets_at_most_what_is_free(tmp_path, images, serve):
    served = serve("--socket", str(tmp_path / "run" / "server.sock"))
    events = []
    assert run_on_server(served.address, images, {**QUICK, "memory_limit_mb": 10**7}, events.append)[0] == 0
    plan = next(event["message"] for event in events if event["stage"] == "plan")
    usable_gb = float(plan.split("(")[1].split(" GB usable")[0])
    total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert usable_gb < total_gb, plan
    run_on_server(served.address, images, QUICK, lambda event: None)
    served.stop()
    asked_nothing = [line for line in served.log().splitlines() if "accepted" in line][-1]
    assert "memory_limit_mb" not in asked_nothing, "a request that asked no limit is logged with one"


# --- 10. a slow but steady reader -----------------------------------------------------------------------

@pytest.mark.slow  # reads for over 60 s, by design
def test_a_slow_steady_reader_gets_its_whole_result_over_plain_tcp(tmp_path, serve):
    """A result of 43 MB read at about 600 KB/s, as through a thin SSH tunnel: over 60 s, longer than
    the one fixed timeout the server had (and far more than the kernel's buffers hold: the reader's
    is fixed at 64 KB); it must arrive whole."""
    served = serve("--listen", "127.0.0.1:0", "--no-tls")
    side = 1900
    content = io.BytesIO()
    np.save(content, np.random.default_rng(1).uniform(0, 1, (side, side, 3)).astype("<f4"))
    style = io.BytesIO()
    small(STYLE, 64).save(style, format="PNG")
    images = [content.getvalue(), style.getvalue()]
    settings = {"iterations": 0, "max_size": 64, "scales": 1, "resolution": "working"}  # 64 px, upscaled
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting: no autotuning
    connection.settimeout(60)
    connection.connect((served.address.host, served.address.port))
    channel = client.Channel(connection)
    channel.send(client.request_header(served.address, "stylize", settings=settings,
                                       images=[len(image) for image in images]), images)
    received = bytearray()
    started = None
    while True:
        chunk = connection.recv(60_000)
        if not chunk:
            break
        if started is None and b'"stage": "result"' in chunk:
            started = time.monotonic()
        received += chunk
        time.sleep(0.1)  # the reader's own pace, about 600 KB/s: what the test is about, not a measurement
    seconds = time.monotonic() - started
    lines = received.split(b"\n")
    headers = [json.loads(line) for line in lines if line.startswith(b"{\"stage\"")]
    assert headers[-1] == {"stage": "exit", "code": 0}, (headers[-3:], len(received), served.log()[-1500:])
    result_header = next(h for h in headers if h["stage"] == "result")
    assert result_header["bytes"] > 43_000_000 and seconds > 60, seconds
    served.stop()
    assert "given up" not in served.log()
