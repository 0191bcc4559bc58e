"""One server, many clients at once, as on a shared GPU machine: three with the same settings, two
with others, one that leaves at a random step and one that reads its result slowly. Every client
that stays gets exactly the result it gets alone, and the server ends as it began: no thread,
descriptor, file or memory left over."""

import io
import json
import os
import random
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from stylize_core.contract import client
from stylize_core.contract.client import ServerLost, run_on_server
from test_server import in_background, wait_until

# private_state (tests/integration/conftest.py): the server's token and address file in the test's own folder.
pytestmark = [pytest.mark.skipif(not client.unix_sockets_work(), reason="Linux's /proc tells the server's state"),
              pytest.mark.usefixtures("private_state")]
BASE = {"iterations": 12, "max_size": 96, "scales": 1, "resolution": "working", "stall_tolerance": 0.0}
SETTINGS = {"same": BASE, "strong": {**BASE, "strength": 3.0}, "other_seed": {**BASE, "seed": 7, "init": "noise"}}


def process_state(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss": int(status["VmRSS"].split()[0]) * 1024, "threads": int(status["Threads"]),
            "descriptors": len(os.listdir(f"/proc/{pid}/fd"))}


def files_under(*folders: Path) -> set[str]:
    return {str(path) for folder in folders for path in folder.rglob("*")}


def slow_read(address: client.Address, images: list[bytes], settings: dict) -> tuple[int, bytes]:
    """A client that reads 2 KB every 0.1 s (its own pace; 20 KB/s, above the server's floor)."""
    connection = socket.create_connection((address.host, address.port), timeout=60)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    client.Channel(connection).send(client.request_header(address, "stylize", settings=settings,
                                                          images=[len(image) for image in images]), images)
    received = bytearray()
    while chunk := connection.recv(2048):
        received += chunk
        time.sleep(0.1)
    connection.close()
    channel = client.Channel(socket.socket())  # a reader of what was received, framing only
    channel.buffer = received
    result, code = None, None
    while code is None:
        header = channel.read_header(None)
        payload = channel.read_payload(header, max_payload=1 << 30, rate=1)
        if header["stage"] == "result":
            result = bytes(payload)
        elif header["stage"] == "exit":
            code = header["code"]
    return code, result


@pytest.mark.slow  # ten real runs
def test_many_clients_at_once_each_get_their_exact_result_and_nothing_is_left_over(tmp_path, images, serve):
    seed = random.randrange(1 << 30)
    print("random seed", seed)
    chance = random.Random(seed)
    served = serve("--listen", "127.0.0.1:0", "--no-tls", "--memory-limit-mb", "4000", "--max-queue", "8")
    alone = {}
    for name, settings in SETTINGS.items():  # each alone, warm: the results to expect, and the warm level
        code, data = run_on_server(served.address, images, settings, lambda event: None)
        assert code == 0
        alone[name] = np.load(io.BytesIO(data))
    wait_until(lambda: served.ping()["connections"] == 1, 30, "a connection outlived its client")
    warm = process_state(served.process.pid)
    files_before = files_under(tmp_path / "state")

    leaver_connection, leaver_events = [], []
    leave_at = chance.randrange(1, 16)  # "accepted", "waiting", "load", "plan", then "optimize" events

    def leaver_event(event):
        leaver_events.append(event)
        if len(leaver_events) == leave_at:
            client.withdraw(leaver_connection[0])

    clients = {}
    for number in range(3):
        clients[f"same {number}"] = ("same", in_background(run_on_server, served.address, images,
                                                           SETTINGS["same"], lambda event: None))
    clients["strong"] = ("strong", in_background(run_on_server, served.address, images, SETTINGS["strong"],
                                                 lambda event: None))
    clients["leaver"] = (None, in_background(run_on_server, served.address, images, SETTINGS["other_seed"],
                                             leaver_event, on_connect=leaver_connection.append))
    clients["slow reader"] = ("same", in_background(slow_read, served.address, images, SETTINGS["same"]))
    clients["other seed"] = ("other_seed", in_background(run_on_server, served.address, images,
                                                         SETTINGS["other_seed"], lambda event: None))
    deadline = time.monotonic() + 90
    for name, (expected, (thread, outcome)) in clients.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), f"{name} was not served within 90 s"
        if expected is None:  # the leaver: gone if it reached its step, else served like the others
            if len(leaver_events) >= leave_at:
                assert isinstance(outcome.get("error"), ServerLost), outcome
                continue
            expected = "other_seed"
        assert "value" in outcome, f"{name}: {outcome.get('error')!r}"
        code, data = outcome["value"]
        assert code == 0, f"{name} ended with {code}"
        assert np.array_equal(np.load(io.BytesIO(data)), alone[expected]), f"{name} got another result"

    state = wait_until(lambda: (lambda s: s if s["connections"] == 1 and not s["running"] and not s["queued"]
                                else None)(served.ping()), 30, "connections or runs left over")
    assert state["buffered_bytes"] == 0 and state["runs"] in (len(SETTINGS) + 6, len(SETTINGS) + 7)
    after = wait_until(lambda: (lambda s: s if s["threads"] <= warm["threads"] and
                                s["descriptors"] <= warm["descriptors"] else None)(
                                    process_state(served.process.pid)), 30, "threads or descriptors left over")
    assert after["rss"] <= warm["rss"] * 1.10, f"resident memory {after['rss'] / 2**20:.0f} MB after, " \
                                               f"{warm['rss'] / 2**20:.0f} MB warm"
    assert files_under(tmp_path / "state") == files_before
    print(json.dumps({"seed": seed, "leave_at": leave_at, "warm": warm, "after": after}))
    served.stop()
    assert not list((tmp_path / "state" / "stylize-core").glob("address-*")), "the address file outlived the server"
