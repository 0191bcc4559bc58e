"""`stylize --cluster`: a clip and a batch restyled on a Ray cluster come out as a run here does (the same
frames in the same order with the same timing; the same pictures under the same names); a worker killed
in the middle of a chunk costs time, not frames; a client stopped keeps the chunks done, and stops the
cluster's work; a wrong address is said in one line. Without --cluster, Ray is not even imported.

The cluster is the module's own: `ray start --head` on this computer with 2 CPUs, token authentication
(a token of the test's own, never the user's ~/.ray) and a temporary folder, in a process group of its
own that is stopped whole at the end, whatever happened."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, EXAMPLES, STYLE
from stylize_core.cli import execute

QUICK = ["--quality", "fast", "--max-size", "64", "--progress", "json"]
# The clip keeps its colours (the painting's strokes in the photo's colours), so every output frame
# carries its input frame's tint: what tells the frames apart, whatever the chunks did.
CLIP = [*QUICK, "--preserve-colors", "luminance"]
SCREAM = EXAMPLES / "the_scream.jpg"
RUN_LIMIT_S = 300
"""No run of the CLI here may take longer: a hang fails the test instead of holding the suite."""
RGB_TO_IQ = np.array([[0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])


@dataclass
class Cluster:
    address: str
    environment: dict
    head: subprocess.Popen

    def processes(self, title: str) -> list[int]:
        """The cluster's processes (its process group) whose title starts with `title`."""
        listing = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(self.head.pid)], capture_output=True,
                                 text=True).stdout
        return [int(line.split(None, 1)[0]) for line in listing.splitlines()
                if line.split(None, 1)[1:] and line.split(None, 1)[1].startswith(title)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of the module's own (the module docstring), stopped with every process it started."""
    pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths inside it must stay under 108 bytes
    environment = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    environment.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                       RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # stop at once, no 30 s drain
    port = free_port()
    log = open(Path(folder) / "head.log", "wb")
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--num-cpus", "2", "--port", str(port), "--node-ip-address", "127.0.0.1",
                             "--temp-dir", folder, "--include-dashboard", "false",
                             "--dashboard-port", str(free_port()), "--disable-usage-stats"],
                            env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert head.poll() is None, "ray start failed: " + (Path(folder) / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray cluster did not start in 90 s"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", environment, head)
    finally:
        stop_process_group(head)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def stop_process_group(head: subprocess.Popen) -> None:
    """SIGTERM to `ray start` (it stops what it started), then SIGKILL to whatever of its process group
    is left; returns once none is."""
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(30)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    head.wait(5)


def stylize(*args, environment: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylize_core", *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=RUN_LIMIT_S)


def start(*args, environment: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stylize_core", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


def events(lines: str) -> list[dict]:
    return [json.loads(line) for line in lines.splitlines() if line.startswith("{")]


def local_environment() -> dict:
    return {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}


def tinted(rgb: np.ndarray, number: int) -> np.ndarray:
    """The frame with a tint of its own (hue 360°/32 per frame: every frame of a clip here apart), its grey
    levels kept."""
    yiq = rgb.astype(np.float64) / 255 @ np.array([[0.299, 0.587, 0.114], *RGB_TO_IQ]).T
    angle = number * 2 * np.pi / 32
    yiq[..., 1:] = yiq[..., 1:] * 0.3 + 0.12 * np.array([np.cos(angle), np.sin(angle)])
    rgb = yiq @ np.linalg.inv(np.array([[0.299, 0.587, 0.114], *RGB_TO_IQ])).T
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def pan(picture: Path, count: int, first: int) -> list[np.ndarray]:
    """A camera panning right over a picture, 1 % of its width a frame, each frame tinted by its number."""
    image = Image.open(picture).convert("RGB")
    width, height = image.size
    boxes = [(width * (0.1 + 0.01 * t), height * 0.2, width * (0.7 + 0.01 * t), height * 0.2 + width * 0.45)
             for t in range(count)]
    return [tinted(np.asarray(image.resize((64, 48), Image.LANCZOS, box=box)), first + t)
            for t, box in enumerate(boxes)]


DURATIONS = [40, 80, 120, 200]


def clip_of_three_shots(path: Path) -> list[np.ndarray]:
    """An animated WebP: 24 frames over the photo, then cuts to 4 over The Scream and 4 over the photo
    again, each frame shown for its own time."""
    frames = pan(CONTENT, 24, 0) + pan(SCREAM, 4, 24) + pan(CONTENT, 4, 28)
    pictures = [Image.fromarray(frame) for frame in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], lossless=True, loop=0,
                     duration=[DURATIONS[n % 4] for n in range(len(frames))])
    return frames


def animation(path: Path) -> tuple[list[np.ndarray], list[int]]:
    frames, durations = [], []
    with Image.open(path) as image:
        for number in range(image.n_frames):
            image.seek(number)
            image.load()
            frames.append(np.asarray(image.convert("RGB")))
            durations.append(image.info["duration"])
    return frames, durations


def tint(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float64) / 255 @ RGB_TO_IQ.T).reshape(-1, 2).mean(0)


def input_frame_of(output: np.ndarray, inputs: list[np.ndarray]) -> int:
    """Which input frame an output frame was restyled from: the one whose tint it carries."""
    return int(np.argmin([np.abs(tint(output) - tint(frame)).sum() for frame in inputs]))


def check_like_a_local_run(output: Path, local: Path, inputs: list[np.ndarray]) -> None:
    frames, durations = animation(output)
    local_frames, local_durations = animation(local)
    assert len(frames) == len(local_frames) == len(inputs)
    assert durations == local_durations == [DURATIONS[n % 4] for n in range(len(inputs))]
    assert [input_frame_of(frame, inputs) for frame in frames] == list(range(len(inputs)))
    assert [input_frame_of(frame, inputs) for frame in local_frames] == list(range(len(inputs)))


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """The three-shot clip and its run here, made once for the module's tests."""
    folder = tmp_path_factory.mktemp("shots")
    inputs = clip_of_three_shots(folder / "shots.webp")
    local = stylize(folder / "shots.webp", STYLE, "-o", folder / "local.webp", *CLIP, environment=local_environment())
    assert local.returncode == 0, local.stderr
    return folder / "shots.webp", folder / "local.webp", inputs


def leftovers(folder: Path, *expected: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


@pytest.mark.slow
def test_a_clip_comes_out_as_a_run_here_gives_it_in_chunks_seams_and_all(cluster, shots, tmp_path):
    """Two workers; chunks of at most 8 frames: the first shot in three pieces (a pair around a key
    frame, then one that meets it in a cross-faded seam), the others a piece each."""
    source, local, inputs = shots
    output = tmp_path / "out.webp"
    result = stylize(source, STYLE, "-o", output, *CLIP, "--cluster", cluster.address, "--chunk-frames", "8",
                     environment=cluster.environment)
    assert result.returncode == 0, result.stderr
    said = events(result.stdout)
    assert said[0]["stage"] == "plan" and said[0]["message"].startswith("32 frames in 5 chunks (2 scene cuts) on 2 workers")
    counted = [event for event in said if event["stage"] == "frame"]
    assert counted[-1]["frame"] == counted[-1]["frames"] == 32 and counted[-1]["fraction"] == 1.0
    assert {event["workers"] for event in counted} == {2}
    assert [event["stage"] for event in said[-2:]] == ["save", "done"]
    check_like_a_local_run(output, local, inputs)
    assert leftovers(tmp_path, "out.webp") == []


@pytest.mark.slow
def test_a_batch_comes_out_as_a_run_here_gives_it(cluster, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    sizes = {"a.png": (64, 48), "b.jpg": (48, 64), "c.png": (56, 56), "d.webp": (64, 40), "e.gif": (40, 40)}
    for number, (name, size) in enumerate(sizes.items()):
        frame = pan(CONTENT if number % 2 else SCREAM, 1, number * 2)[0]
        Image.fromarray(frame).resize(size, Image.LANCZOS).save(pictures / name)
    (pictures / "notes.txt").write_text("not a picture")
    local = stylize("--batch", pictures, STYLE, "-o", tmp_path / "here", *QUICK, environment=local_environment())
    assert local.returncode == 0, local.stderr
    result = stylize("--batch", pictures, STYLE, "-o", tmp_path / "there", *QUICK, "--cluster", cluster.address,
                     environment=cluster.environment)
    assert result.returncode == 0, result.stderr
    names = ["a.png", "b.jpg", "c.png", "d.webp", "e.png"]  # a GIF's result is a PNG
    assert sorted(p.name for p in (tmp_path / "here").iterdir()) == sorted(p.name for p in (tmp_path / "there").iterdir()) == names
    here = {name: np.asarray(Image.open(tmp_path / "here" / name).convert("RGB"), np.float32) for name in names}
    there = {name: np.asarray(Image.open(tmp_path / "there" / name).convert("RGB"), np.float32) for name in names}
    for name, size in zip(names, sizes.values()):
        assert here[name].shape[1::-1] == there[name].shape[1::-1] == size
        assert np.abs(here[name] - there[name]).mean() < 4  # the same run, on one core instead of two
    counted = [event for event in events(result.stdout) if event["stage"] == "frame"]
    assert counted[-1]["frame"] == counted[-1]["frames"] == 5
    assert leftovers(tmp_path, "pictures", "here", "there") == []


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_a_chunk_costs_time_not_frames(cluster, shots, tmp_path):
    source, local, inputs = shots
    output = tmp_path / "out.webp"
    process = start(source, STYLE, "-o", output, *CLIP, "--cluster", cluster.address,
                    environment=cluster.environment)
    killed = None
    try:
        for line in process.stdout:
            event = json.loads(line)
            busy = cluster.processes("ray::Restyler.restyle_chunk")
            if event["stage"] == "frame" and event["frame"] >= 2 and busy:
                killed = busy[0]
                os.kill(killed, signal.SIGKILL)
                break
        out, err = process.communicate(timeout=RUN_LIMIT_S)
    finally:
        process.kill()
    assert killed is not None, "no worker was seen restyling a chunk"
    assert process.returncode == 0, err
    assert killed not in cluster.processes("ray::")
    check_like_a_local_run(output, local, inputs)


@pytest.mark.slow
def test_a_client_stopped_keeps_the_chunks_done_stops_the_clusters_work_and_continues(cluster, shots, tmp_path):
    """SIGTERM once a chunk is back: exit 143, no output, the chunk kept and no worker left; the same
    command again restyles only the chunks not done, and the clip is whole."""
    source, local, inputs = shots
    output = tmp_path / "out.webp"
    command = [source, STYLE, "-o", output, *CLIP, "--cluster", cluster.address]
    process = start(*command, environment=cluster.environment)
    work = tmp_path / ".out.webp.frames"
    try:
        deadline = time.monotonic() + RUN_LIMIT_S
        while not list(work.glob("chunk_*.json")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "stylize: error: terminated"
    kept = sorted(p.name for p in work.glob("chunk_*.json"))
    assert kept and not output.exists()
    deadline = time.monotonic() + 30
    while cluster.processes("ray::Restyler") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.processes("ray::Restyler") == []  # the workers went with their client
    again = stylize(*command, environment=cluster.environment)
    assert again.returncode == 0, again.stderr
    plan = events(again.stdout)[0]["message"]
    assert plan.endswith(f"; {len(kept)} done before"), plan
    check_like_a_local_run(output, local, inputs)
    assert leftovers(tmp_path, "out.webp") == []


@pytest.mark.slow
@pytest.mark.parametrize("case", ["refused", "unknown host", "not an address", "wrong token"])
def test_a_wrong_address_is_said_in_one_line(cluster, tmp_path, case):
    environment = dict(cluster.environment)
    address = {"refused": f"127.0.0.1:{free_port()}", "unknown host": "no-such-host.invalid:6379",
               "not an address": "http://example.org", "wrong token": cluster.address}[case]
    if case == "wrong token":
        environment["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    started = time.monotonic()
    result = stylize(CONTENT, STYLE, "-o", tmp_path / "out.png", "--cluster", address, environment=environment)
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    expected = {"refused": "cannot reach the Ray cluster", "unknown host": "cannot reach the Ray cluster",
                "not an address": "give host:port", "wrong token": "RAY_AUTH_TOKEN"}[case]
    assert result.stderr.startswith("stylize: error: ") and expected in result.stderr
    assert time.monotonic() - started < 60
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_without_a_cluster_nothing_changes_and_ray_is_not_imported(tmp_path):
    """A run here (a picture and a clip; a picture with RAY_ADDRESS set to '') leaves Ray out of the process."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for number, frame in enumerate(pan(CONTENT, 2, 0)):
        Image.fromarray(frame).save(frames / f"f{number}.png")
    picture = ["--max-size", "48", "--scales", "1", "--resolution", "working", "--iterations", "5"]
    runs = {None: [[frames / "f0.png", STYLE, "-o", tmp_path / "out.png", *picture],
                   [frames, STYLE, "-o", tmp_path / "out.gif", *picture]],
            "": [[frames / "f1.png", STYLE, "-o", tmp_path / "other.png", *picture]]}
    for address, commands in runs.items():
        program = ("import sys\nfrom stylize_core.cli import main\n"
                   f"codes = [main(arguments) for arguments in {[[str(a) for a in c] for c in commands]!r}]\n"
                   "print(codes, 'ray' in sys.modules)\n")
        environment = local_environment()
        if address is not None:
            environment["RAY_ADDRESS"] = address
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=environment,
                                timeout=RUN_LIMIT_S)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{[0] * len(commands)} False"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "other.png", "out.gif", "out.png"]


def test_cluster_options_need_a_cluster_and_say_so_at_once(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("STYLIZE_SERVER", raising=False)

    def run(*arguments: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = execute([str(CONTENT), str(STYLE), "-o", str(tmp_path / "out.png"), *arguments], out, err)
        return code, err.getvalue()

    for arguments, expected in [(["--workers", "2"], "--workers counts a cluster's workers"),
                                (["--chunk-frames", "16"], "--chunk-frames cuts a clip for a cluster"),
                                (["--cluster", "x:1", "--server", "local"], "not allowed with argument"),
                                (["--cluster", "x:1", "--chunk-frames", "16"], "the content is a picture")]:
        code, said = run(*arguments)
        assert code == 2 and expected in said and len(said.splitlines()) == 1, said
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("STYLIZE_SERVER", "unix:/nowhere")
    code, said = run()
    assert code == 2 and "choose with --cluster or --server" in said
    assert leftovers(tmp_path) == []
