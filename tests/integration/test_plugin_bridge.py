"""The plug-in's GIMP-free modules (nst/bridge.py, nst/pixels.py, nst/widgets.py), with the real engine
server where they run one."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst import bridge, pixels, widgets
from stylize_core.contract import client
from helpers import CONTENT, STYLE, small

PLUGIN = Path(__file__).resolve().parents[2] / "plugin" / "neural-style-transfer"
PROJECT = str(PLUGIN.parent.parent)
OPTIONS = {"strength": 1.5, "quality": "fast", "resolution": "working", "iterations": 0, "max-size": 256,
           "preserve-colors": "luminance", "style-scale": 2.0, "seed": 7, "device": "cpu"}


def test_npy_made_by_the_plugin_reads_in_numpy_and_back():
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 1, (5, 7, 4)).astype("<f4")
    assert np.array_equal(np.load(io.BytesIO(pixels.npy_bytes(array.tobytes(), 5, 7))), array)
    stream = io.BytesIO()
    np.save(stream, array)
    data, shape = pixels.parse_npy(stream.getvalue())
    assert shape == (5, 7, 4) and data == array.tobytes()


def test_npy_checks():
    with pytest.raises(pixels.PixelError, match="expected"):
        pixels.npy_bytes(b"\0" * 10, 2, 2)
    with pytest.raises(pixels.PixelError, match="not a .npy"):
        pixels.parse_npy(b"junk")
    stream = io.BytesIO()
    np.save(stream, np.zeros((4, 4, 4), "<f4"))
    with pytest.raises(pixels.PixelError, match="truncated"):
        pixels.parse_npy(stream.getvalue()[:-8])
    stream = io.BytesIO()
    np.save(stream, np.zeros((4, 4, 4), "<f8"))
    with pytest.raises(pixels.PixelError, match="float32"):
        pixels.parse_npy(stream.getvalue())


def test_the_dialogs_values_become_the_requests_settings():
    assert widgets.request_settings(OPTIONS) == {
        "strength": 1.5, "quality": "fast", "resolution": "working", "iterations": 0, "max_size": 256,
        "preserve_colors": "luminance", "style_scale": 2.0, "seed": 7, "device": "cpu"}
    assert widgets.preview_settings(OPTIONS)["resolution"] == "preview"
    assert bridge.chosen_server("local", "tls://ignored") == ""
    assert bridge.chosen_server("server", " unix:/run/x.sock ") == "unix:/run/x.sock"
    with pytest.raises(bridge.BridgeError, match="no server address is given"):
        bridge.chosen_server("server", "  ")


def test_the_contract_copied_beside_the_plugin_is_all_it_needs(tmp_path):
    """A sandboxed GIMP sees only the plug-in's folder: with install.py's copies there and no project,
    no venv and no site-packages (python -S), the plug-in's modules import the contract from that
    folder, never torch, and the dialog's time line works."""
    from stylize_core.installer import plugin_files
    folder = plugin_files.install_plugin(tmp_path / "profile", None, tmp_path / "checkout", "1.0", source=PLUGIN,
                                         engine=PLUGIN.parent.parent / "stylize_core", server="unix:/nowhere")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import nst.bridge, nst.preview, stylize_core.contract;"
            "text = nst.bridge.describe_time(json.loads(sys.argv[2]), (640, 480));"
            "print(json.dumps([stylize_core.contract.__file__, 'torch' in sys.modules, text]))")
    environment = {"PATH": os.environ.get("PATH", ""), "XDG_CACHE_HOME": str(tmp_path / "no-calibration"),
                   "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-S", "-c", code, str(folder), json.dumps(OPTIONS)], cwd=tmp_path,
                            capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    contract_file, torch_loaded, text = json.loads(result.stdout)
    assert Path(contract_file) == folder / "stylize_core" / "contract" / "__init__.py"
    assert not torch_loaded and "first run" in text


def test_progress_text():
    fraction, text = bridge.describe_progress({"stage": "optimize", "scale": 2, "scales": 3, "iteration": 40,
                                               "total": 100, "fraction": 0.43, "eta_s": 12.4})
    assert fraction == 0.43 and text.endswith("scale 2/3, iteration 40/100, ~12 s left")
    assert bridge.describe_progress({"stage": "load"})[1].endswith("loading the engine")
    assert bridge.describe_progress({"stage": "waiting", "ahead": 1}) == (
        None, "Neural Style Transfer: waiting: 1 run ahead")
    assert bridge.describe_progress({"stage": "waiting", "ahead": 3})[1].endswith("waiting: 3 runs ahead")


def test_missing_or_broken_install_says_what_to_do(tmp_path):
    with pytest.raises(bridge.BridgeError, match="run python3 install.py"):
        bridge.read_config(tmp_path)
    (tmp_path / bridge.CONFIG_NAME).write_text(json.dumps({"python": "/nope/python", "project": "/p"}))
    with pytest.raises(bridge.BridgeError, match="run python3 install.py in /p"):
        bridge.read_config(tmp_path)
    # A sandboxed GIMP sees no engine of its own, only a server: that is a complete install.
    (tmp_path / bridge.CONFIG_NAME).write_text(json.dumps({"python": "", "server": "unix:/run/x.sock"}))
    assert bridge.read_config(tmp_path)["server"] == "unix:/run/x.sock"


def test_an_environment_without_the_engine_says_to_reinstall(tmp_path, local_server):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"$0: No module named stylize_core\" >&2\nexit 1\n")
    python.chmod(0o755)
    config = {"python": str(python), "project": PROJECT}
    with pytest.raises(bridge.BridgeError, match="could not start .*run python3 install.py again in " + PROJECT):
        bridge.run_engine(config, widgets.request_settings(OPTIONS), b"content", [b"style"], lambda event: None)


def test_out_of_memory_advice_names_the_dialog_knobs():
    advice = bridge.failure_in_words("out of memory on cuda at 2048x2048, even in 256 px tiles", "memory", "max_size")
    assert advice.startswith("out of memory on cuda at 2048x2048, even in 256 px tiles.")
    assert "Advanced \u203a Working size" in advice and "Device to CPU" in advice
    assert bridge.failure_in_words("style image not found: x.png", "input", None) == "style image not found: x.png"


@pytest.fixture
def job(tmp_path):
    small(CONTENT, 96).save(tmp_path / "c.png")
    small(STYLE, 96).save(tmp_path / "s.png")
    return tmp_path


def layer_npy(path: Path) -> bytes:
    """A picture as the plug-in sends a layer: float32 RGBA .npy bytes."""
    rgba = np.asarray(Image.open(path).convert("RGBA"), np.float32) / 255
    return pixels.npy_bytes(rgba.astype("<f4").tobytes(), *rgba.shape)


def chroma(rgba: np.ndarray) -> np.ndarray:
    yiq = np.array([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]])
    return (rgba[..., :3] @ yiq)[..., 1:]


def as_array(result: bytes) -> np.ndarray:
    data, shape = pixels.parse_npy(result)
    return np.frombuffer(data, "<f4").reshape(shape)


QUICK = widgets.request_settings({**OPTIONS, "iterations": 3, "max-size": 64})


@pytest.mark.slow
def test_the_local_server_is_started_runs_it_and_a_dead_one_is_started_again(job, local_server):
    folder = job
    config = {"python": sys.executable, "project": PROJECT, "worker_idle_timeout": 60}
    content, events = layer_npy(folder / "c.png"), []
    result = as_array(bridge.run_engine(config, QUICK, content, [layer_npy(folder / "s.png")], events.append))
    server = client.ping(client.local_address())
    assert server["runs"] == 1 and events[0]["stage"] == "accepted" and events[-1]["stage"] == "done"
    assert result.shape == (72, 96, 4)
    # "Keep colours: keep the layer's colours" reached the engine: the result has the layer's chroma.
    original = np.asarray(Image.open(folder / "c.png").convert("RGBA"), np.float32) / 255
    assert np.abs(chroma(result) - chroma(original)).mean() < 0.02
    with pytest.raises(bridge.BridgeError, match="style image not found"):
        bridge.run_engine(config, QUICK, content, [folder / "missing.png"], events.append)

    def kill_at_the_first_iteration(event):
        if event["stage"] == "optimize":
            os.kill(server["pid"], signal.SIGKILL)
    with pytest.raises(bridge.BridgeError, match="stopped in the middle of the run. The image is unchanged"):
        bridge.run_engine(config, QUICK, content, [folder / "s.png"], kill_at_the_first_iteration)
    result = bridge.run_engine(config, QUICK, content, [folder / "s.png"], lambda event: None)
    assert as_array(result).shape == (72, 96, 4) and client.ping(client.local_address())["pid"] != server["pid"]


def test_server_failures_in_the_dialogs_words():
    address = client.parse_address("tls://t@gpu.example:8787#sha256=" + "a" * 64)
    words = lambda error: bridge.server_error_in_words(error, address)
    assert words(client.ServerUnreachable("connection refused")).startswith(
        "Cannot reach the engine server at gpu.example:8787 (connection refused)")
    assert "refused the token" in words(client.ServerRefused("wrong or missing token", "token"))
    assert "busy with 2 runs ahead" in words(client.ServerRefused("busy", "busy", ahead=2))
    assert "busy and takes no more now" in words(client.ServerRefused("too many connections", "busy"))
    assert "runs another version" in words(client.ServerRefused("speaks protocol 3", "version"))
    assert "stopped in the middle of the run. The image is unchanged" in words(client.ServerLost("eof"))


@pytest.mark.slow
@pytest.mark.usefixtures("private_state")  # the server's token and certificate in the test's own folder
def test_a_chosen_server_that_fails_is_said_not_hidden(job, serve):
    """With a server address, a failure is the dialog's message; the run is not tried elsewhere."""
    folder = job
    config = {"python": sys.executable, "project": PROJECT}
    content, style = layer_npy(folder / "c.png"), layer_npy(folder / "s.png")
    with pytest.raises(bridge.BridgeError, match="Cannot reach the engine server at 127.0.0.1:9 "):
        bridge.run_engine(config, QUICK, content, [style], lambda e: None, server="tcp://token@127.0.0.1:9")
    with pytest.raises(bridge.BridgeError, match="is not unix:PATH"):
        bridge.run_engine(config, QUICK, content, [style], lambda e: None, server="gpu-box")
    address = serve("--listen", "127.0.0.1:0").address
    wrong = client.Address("tls", host=address.host, port=address.port, token="guess",
                           fingerprint=address.fingerprint)
    with pytest.raises(bridge.BridgeError, match="refused the token"):
        bridge.run_engine(config, QUICK, content, [style], lambda e: None, server=str(wrong))
    pid = client.ping(address)["pid"]

    def kill_the_server(event):
        if event["stage"] == "optimize":
            os.kill(pid, signal.SIGKILL)
    events = []
    with pytest.raises(bridge.BridgeError, match="stopped in the middle of the run. The image is unchanged"):
        bridge.run_engine(config, {**QUICK, "iterations": 200}, content, [style],
                          lambda e: (events.append(e), kill_the_server(e)), server=str(address))
    assert [e["stage"] for e in events].count("load") == 1, "the run was tried again elsewhere"


@pytest.mark.slow
def test_a_killed_plugin_stops_its_run_on_the_local_server(job, local_server):
    """GIMP kills a cancelled plug-in outright: its connection closes, and the server stops the run at
    once and is idle for the next."""
    folder = job
    config = {"python": sys.executable, "project": PROJECT, "worker_idle_timeout": 60}
    (folder / "c.npy").write_bytes(layer_npy(folder / "c.png"))
    plugin = subprocess.Popen([sys.executable, "-c", (
        "import json, sys; from pathlib import Path; from nst import bridge;"
        "bridge.run_engine(json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3]).read_bytes(),"
        " [Path(sys.argv[4])], lambda e: print(e['stage'], flush=True))"),
        json.dumps(config), json.dumps({**QUICK, "iterations": 2000, "max_size": 256}),
        str(folder / "c.npy"), str(folder / "s.png")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(PLUGIN)})
    for line in plugin.stdout:
        if line.strip() == "optimize":
            break
    assert client.ping(client.local_address())["running"]
    plugin.send_signal(signal.SIGKILL)
    plugin.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.ping(client.local_address())["running"]:
        time.sleep(0.2)
    assert not client.ping(client.local_address())["running"], "the run outlived the plug-in"
