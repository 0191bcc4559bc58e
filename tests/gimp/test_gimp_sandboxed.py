"""The plug-in in a GIMP that sees neither the checkout nor the virtual environment, as in
Flatpak's sandbox: GIMP 3 in the Debian root with only a work folder mounted (its profile, the
pictures, the folder of the host server's socket). install.py --plugin-only --server-file installs the
plug-in with its own copies of the contract (client.py, settings.py, ...); every run goes to a server
on the host: its Unix socket, its loopback port with the token in the plug-in's config, or a TLS
server chosen in the dialog. Failures (a wrong token, no server, the server killed mid-run) are
said in words and leave the image as it was."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gimp_runner import CHECKOUT, VERSIONS, results, run_batch
from helpers import address_from_ready

ARTIFACTS = CHECKOUT / "artifacts" / "gimp-sandboxed"


class HostServer:
    """`stylize serve` on the host, as a user starts it (or systemd does, for Flatpak)."""

    def __init__(self, state: Path, *arguments: str, log: Path | None = None):
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "stylize_core", "serve", *arguments],
                                        cwd=CHECKOUT, stdout=subprocess.PIPE, text=True,
                                        stderr=open(log, "w") if log else subprocess.DEVNULL,
                                        env={**os.environ, "XDG_STATE_HOME": str(state)})
        # The full address, token included, as the user copies it from the server's address file.
        self.address = str(address_from_ready(json.loads(self.process.stdout.readline())))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def kill_once_busy(server: HostServer, stop: threading.Event, killed: list) -> None:
    """Kill the server (SIGKILL) as soon as it computes: in the middle of the run it was sent."""
    pid = server.process.pid
    while not stop.is_set():
        before = cpu_ticks(pid)
        time.sleep(0.5)
        if cpu_ticks(pid) - before > 20:
            time.sleep(2)  # well into the optimisation
            os.kill(pid, signal.SIGKILL)
            killed.append(time.monotonic())
            return


@pytest.fixture(scope="module")
def outcome(gimp_version, gimp_session):
    version = gimp_version
    session = gimp_session(version, "gimp-sandboxed")
    work = session.work
    state = work / "state"
    images = work / "images"
    images.mkdir()
    for name in ("tubingen.jpg", "starry_night.jpg"):
        shutil.copy2(CHECKOUT / "examples" / name, images / name)
    servers = [HostServer(state, "--socket", str(work / "run" / "server.sock"), "--idle-timeout", "600"),
               HostServer(state, "--loopback", "--idle-timeout", "600"),
               HostServer(state, "--listen", "127.0.0.1:0", "--idle-timeout", "600"),
               HostServer(state, "--socket", str(work / "doomed" / "server.sock"))]
    unix, loopback, tls, doomed = (server.address for server in servers)
    config = install_server_only_plugin(session.profile, unix)
    settings = {"images": str(images), "config": str(config), "checkout": str(CHECKOUT),
                "venv": str((CHECKOUT / ".venv").resolve()), "unix": unix, "loopback": loopback, "tls": tls,
                "wrong_token": tls.replace("tls://", "tls://x", 1), "unreachable": "tcp://token@127.0.0.1:9",
                "doomed": doomed}
    script = work / "cases.py"
    script.write_text(f"CASE_SETTINGS = {settings!r}\n" + (CHECKOUT / "tests" / "gimp" / "sandbox_cases.py").read_text())
    from stylize_core.contract import client
    deadline = time.monotonic() + 300
    while not client.ping(client.parse_address(doomed))["warm"]:  # its start-up is not the run
        assert time.monotonic() < deadline, "the server to be killed did not warm up"
        time.sleep(0.5)
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=kill_once_busy, args=(servers[3], stop, killed), daemon=True)
    watcher.start()
    try:
        log = run_batch(session, script, [work])  # only the work folder: no checkout, no venv
    finally:
        stop.set()
        for server in servers:
            server.stop()
    (ARTIFACTS / version).mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / version / "gimp.log").write_text(log)
    found = results(log)
    assert found, "GIMP printed no results:\n" + log[-3000:]
    found["doomed_server_killed"] = bool(killed)
    return found


def install_server_only_plugin(profile: Path, address: str) -> Path:
    """install.py --plugin-only --server-file: the address goes in a file only the user may read, as
    install.py takes a token from nowhere else (a command line is every local user's to read)."""
    descriptor, address_file = tempfile.mkstemp(prefix="stylize-address-")  # mode 0600, the user's
    try:
        with os.fdopen(descriptor, "w") as stream:
            stream.write(address + "\n")
        installed = subprocess.run([sys.executable, str(CHECKOUT / "install.py"), "--plugin-only", "--server-file",
                                    address_file, "--gimp-dir", str(profile)], capture_output=True, text=True)
    finally:
        os.unlink(address_file)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return profile / "plug-ins" / "neural-style-transfer" / "stylize-config.json"


@pytest.fixture(scope="module")
def two_gimps(tmp_path_factory, gimp_session):
    """Two sandboxed GIMPs share one server: the second asks while the first one's run goes on. The
    queue is the server's: one GIMP version (the newer) shows it."""
    version = VERSIONS[-1]
    work = tmp_path_factory.mktemp("two-gimps")
    images = work / "images"
    images.mkdir()
    for name in ("tubingen.jpg", "starry_night.jpg"):
        shutil.copy2(CHECKOUT / "examples" / name, images / name)
    server = HostServer(work / "state", "--socket", str(work / "run" / "server.sock"), log=work / "server.log")
    outcomes = {}

    def gimp(number: int, iterations: int) -> None:
        session = gimp_session(version, f"two-gimps-{number}")
        config = install_server_only_plugin(session.profile, server.address)
        settings = {"images": str(images), "config": str(config), "one_run_iterations": iterations}
        script = work / f"one-run-{number}.py"
        script.write_text(f"CASE_SETTINGS = {settings!r}\n" +
                          (CHECKOUT / "tests" / "gimp" / "sandbox_cases.py").read_text())
        outcomes[number] = run_batch(session, script, [work])

    try:
        first = threading.Thread(target=gimp, args=(1, 120))
        first.start()
        deadline = time.monotonic() + 300
        while "running" not in (work / "server.log").read_text():
            assert time.monotonic() < deadline and first.is_alive(), "the first GIMP's run did not start"
            time.sleep(0.5)
        gimp(2, 15)
        first.join(900)
    finally:
        server.stop()
    return {number: results(log).get("one_run") for number, log in outcomes.items()}, \
        (work / "server.log").read_text()


def test_two_gimps_are_served_in_order_and_the_second_is_told_it_waits(two_gimps):
    runs, log = two_gimps
    assert runs[1] and runs[1]["ok"] and runs[2] and runs[2]["ok"], (runs, log)
    steps = []  # (request number, what happened), from the server's log, without times and peers
    for line in log.splitlines():
        found = re.search(r"request (\d+) from [^:]+: (.*?)(; .*|, [\d.]+ s)?$", line)
        if found:
            steps.append((int(found[1]), found[2]))
    assert steps == [(1, "accepted, 0 runs ahead"), (1, "running"), (2, "accepted, 1 run ahead"),
                     (1, "finished, exit status 0"), (2, "running"), (2, "finished, exit status 0")], log


def test_gimp_sees_neither_the_checkout_nor_the_environment(outcome):
    isolation = outcome["isolation"]
    assert not isolation["checkout_seen"] and not isolation["venv_seen"]
    assert isolation["engine_copies"] == sorted(path.name for path in (CHECKOUT / "stylize_core" / "contract").glob("*.py")) and isolation["python"] == ""
    assert isolation["server"].startswith("unix:")


@pytest.mark.parametrize("case", ["unix_socket", "loopback_token", "tls_chosen_in_the_dialog"])
def test_a_layer_is_restyled_through_the_hosts_server(outcome, case):
    facts = outcome[case]
    assert facts["ok"], facts
    assert facts["count"] == 2 and facts["name"] == "Background (starry_night)" and facts["source_unchanged"]
    assert facts["difference"] > 0.04, "the new layer looks like a copy of the source"


@pytest.mark.parametrize("case, words", [
    ("wrong_token", "refused the token: copy its address again"),
    ("unreachable", "Cannot reach the engine server at 127.0.0.1:9"),
    ("server_killed_mid_run", "stopped in the middle of the run. The image is unchanged."),
])
def test_a_failing_server_is_said_in_words_and_the_image_stays(outcome, case, words):
    facts = outcome[case]
    assert not facts["ok"] and words in facts["message"] and "\n" not in facts["message"]
    assert facts["count"] == 1 and facts["source_unchanged"]
    if case == "server_killed_mid_run":
        assert outcome["doomed_server_killed"]
