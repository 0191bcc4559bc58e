"""The plug-in's GIMP-free half (nst_bridge.py), with the real engine where it runs one."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PLUGIN = Path(__file__).resolve().parents[2] / "plugin" / "neural-style-transfer"
import nst_bridge  # noqa: E402

from stylize_core import Settings
from stylize_core.contract import client
from stylize_core.contract import options  # noqa: E402
from helpers import CONTENT, STYLE, address_from_ready, small  # noqa: E402

OPTIONS = {"strength": 1.5, "quality": "fast", "resolution": "working", "iterations": 0, "max-size": 256, "preserve-colors": "luminance",
           "style-scale": 2.0, "seed": 7, "device": "cpu"}


def test_npy_made_by_the_bridge_reads_in_numpy_and_back():
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 1, (5, 7, 4)).astype("<f4")
    assert np.array_equal(np.load(io.BytesIO(nst_bridge.npy_bytes(array.tobytes(), 5, 7))), array)
    stream = io.BytesIO()
    np.save(stream, array)
    data, shape = nst_bridge.parse_npy(stream.getvalue())
    assert shape == (5, 7, 4) and data == array.tobytes()


def test_npy_checks():
    with pytest.raises(nst_bridge.BridgeError, match="expected"):
        nst_bridge.npy_bytes(b"\0" * 10, 2, 2)
    with pytest.raises(nst_bridge.BridgeError, match="not a .npy"):
        nst_bridge.parse_npy(b"junk")
    stream = io.BytesIO()
    np.save(stream, np.zeros((4, 4, 4), "<f4"))
    with pytest.raises(nst_bridge.BridgeError, match="truncated"):
        nst_bridge.parse_npy(stream.getvalue()[:-8])
    stream = io.BytesIO()
    np.save(stream, np.zeros((4, 4, 4), "<f8"))
    with pytest.raises(nst_bridge.BridgeError, match="float32"):
        nst_bridge.parse_npy(stream.getvalue())


def test_options_map_to_engine_arguments(tmp_path):
    argv = nst_bridge.engine_arguments(options, OPTIONS, tmp_path / "c.npy", tmp_path / "s.png", tmp_path / "o.npy",
                                       tmp_path)
    pairs = dict(zip(argv[3:], argv[4:]))
    assert argv[:3] == [str(tmp_path / "c.npy"), str(tmp_path / "s.png"), "-o"]
    assert pairs["--strength"] == "1.5" and pairs["--quality"] == "fast" and pairs["--max-size"] == "256"
    assert pairs["--preserve-colors"] == "luminance" and pairs["--style-scale"] == "2.0"
    assert pairs["--seed"] == "7" and pairs["--device"] == "cpu" and pairs["--progress"] == "json"
    assert pairs["--iterations"] == "0" and pairs["--cleanup-dir"] == str(tmp_path)


def test_the_contract_copied_beside_the_plugin_is_all_it_needs(tmp_path):
    """A sandboxed GIMP sees only the plug-in's folder: with install.py's copies there and no project,
    no venv and no site-packages (python -S), the plug-in's modules import the contract from that
    folder, never torch, and the dialog's time line works."""
    from stylize_core.installer import plugin_files
    folder = plugin_files.install_plugin(tmp_path / "profile", None, tmp_path / "checkout", "1.0", source=PLUGIN,
                                         engine=PLUGIN.parent.parent / "stylize_core", server="unix:/nowhere")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import nst_bridge, nst_preview, stylize_core.contract;"
            "text = nst_bridge.describe_time('', json.loads(sys.argv[2]), (640, 480));"
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
    fraction, text = nst_bridge.describe_progress({"stage": "optimize", "scale": 2, "scales": 3, "iteration": 40,
                                                   "total": 100, "fraction": 0.43, "eta_s": 12.4})
    assert fraction == 0.43 and text.endswith("scale 2/3, iteration 40/100, ~12 s left")
    assert nst_bridge.describe_progress({"stage": "load"})[1].endswith("loading the engine")
    assert nst_bridge.describe_progress({"stage": "waiting", "ahead": 1}) == (
        None, "Neural Style Transfer: waiting: 1 run ahead")
    assert nst_bridge.describe_progress({"stage": "waiting", "ahead": 3})[1].endswith("waiting: 3 runs ahead")


def test_missing_or_broken_install_says_what_to_do(tmp_path):
    with pytest.raises(nst_bridge.BridgeError, match="run python3 install.py"):
        nst_bridge.read_config(tmp_path)
    (tmp_path / nst_bridge.CONFIG_NAME).write_text(json.dumps({"python": "/nope/python", "project": "/p"}))
    with pytest.raises(nst_bridge.BridgeError, match="run python3 install.py in /p"):
        nst_bridge.read_config(tmp_path)
    # A sandboxed GIMP sees no engine of its own, only a server: that is a complete install.
    (tmp_path / nst_bridge.CONFIG_NAME).write_text(json.dumps({"python": "", "server": "unix:/run/x.sock"}))
    assert nst_bridge.read_config(tmp_path)["server"] == "unix:/run/x.sock"


def test_an_environment_without_the_engine_says_to_reinstall(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"$0: No module named stylize_core\" >&2\nexit 1\n")
    python.chmod(0o755)
    config = {"python": str(python), "project": str(PLUGIN.parent.parent), "use_worker": False}
    with pytest.raises(nst_bridge.BridgeError, match="incomplete .*No module named stylize_core.*run python3 install.py"):
        nst_bridge.run_engine(config, options, OPTIONS, b"content", tmp_path / "s.png", lambda event: None)


def test_out_of_memory_advice_names_the_dialog_knobs():
    advice = nst_bridge.in_dialog_terms("out of memory on cuda at 2048x2048, even in 256 px tiles: "
                                        "use a smaller max size or device cpu")
    assert advice.startswith("out of memory on cuda at 2048x2048, even in 256 px tiles.")
    assert "Working size" in advice and "Device to CPU" in advice and "max size" not in advice
    assert nst_bridge.in_dialog_terms("style image not found: x.png") == "style image not found: x.png"


@pytest.fixture
def job(tmp_path):
    small(CONTENT, 96).save(tmp_path / "c.png")
    small(STYLE, 96).save(tmp_path / "s.png")
    work = tmp_path / "work"
    work.mkdir()
    return tmp_path, work


def layer_npy(path: Path) -> bytes:
    """A picture as the plug-in sends a layer: float32 RGBA .npy bytes."""
    rgba = np.asarray(Image.open(path).convert("RGBA"), np.float32) / 255
    return nst_bridge.npy_bytes(rgba.astype("<f4").tobytes(), *rgba.shape)


def chroma(rgba: np.ndarray) -> np.ndarray:
    yiq = np.array([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]])
    return (rgba[..., :3] @ yiq)[..., 1:]


def as_array(result: bytes) -> np.ndarray:
    data, shape = nst_bridge.parse_npy(result)
    return np.frombuffer(data, "<f4").reshape(shape)


QUICK_VALUES = {**OPTIONS, "iterations": 3, "max-size": 64}


@pytest.mark.slow
def test_child_run_streams_progress_and_reports_errors(job):
    folder, _ = job
    events = []
    config = {"python": sys.executable, "project": str(PLUGIN.parent.parent), "use_worker": False}
    content = layer_npy(folder / "c.png")
    result = as_array(nst_bridge.run_engine(config, options, QUICK_VALUES, content, folder / "s.png", events.append))
    assert events[-1]["stage"] == "done" and result.shape == (72, 96, 4)
    # "Keep colours: keep the layer's colours" reached the engine: the result has the layer's chroma.
    original = np.asarray(Image.open(folder / "c.png").convert("RGBA"), np.float32) / 255
    assert np.abs(chroma(result) - chroma(original)).mean() < 0.02
    with pytest.raises(nst_bridge.BridgeError, match="style image not found"):
        nst_bridge.run_engine(config, options, QUICK_VALUES, content, folder / "missing.png", events.append)


@pytest.fixture
def local_server(tmp_path, monkeypatch):
    """This computer's server as the plug-in starts it, in a runtime folder of the test's own."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield
    try:
        os.kill(client.ping(client.local_address())["pid"], signal.SIGTERM)
    except client.ServerError:
        pass


@pytest.mark.slow
def test_the_local_server_runs_it_and_a_dead_one_gives_way_to_a_child(job, local_server):
    folder, _ = job
    config = {"python": sys.executable, "project": str(PLUGIN.parent.parent), "worker_idle_timeout": 60}
    content, events = layer_npy(folder / "c.png"), []
    result = nst_bridge.run_engine(config, options, QUICK_VALUES, content, layer_npy(folder / "s.png"), events.append)
    server = client.ping(client.local_address())
    assert server["runs"] == 1 and events[0]["stage"] == "accepted" and as_array(result).shape == (72, 96, 4)

    events.clear()
    killed = []  # the server's pid, once killed at its first iteration

    def kill_once(event):
        events.append(event)
        if event["stage"] == "optimize" and not killed:
            killed.append(server["pid"])
            os.kill(server["pid"], signal.SIGKILL)
    result = nst_bridge.run_engine(config, options, QUICK_VALUES, content, folder / "s.png", kill_once)
    assert killed and as_array(result).shape == (72, 96, 4)
    assert [e["stage"] for e in events].count("load") == 2, "the child did not take over the killed server's run"


def test_server_failures_in_the_dialogs_words():
    address = client.parse_address("tls://t@gpu.example:8787#sha256=" + "a" * 64)
    words = lambda error: nst_bridge.server_error_in_words(client, error, address)
    assert words(client.ServerUnreachable("connection refused")).startswith(
        "Cannot reach the engine server at gpu.example:8787 (connection refused)")
    assert "refused the token" in words(client.ServerRefused("wrong or missing token", "token"))
    assert "busy with 2 runs ahead" in words(client.ServerRefused("busy", "busy", ahead=2))
    assert "busy and takes no more now" in words(client.ServerRefused("too many connections", "busy"))
    assert "runs another version" in words(client.ServerRefused("speaks protocol 3", "version"))
    assert "stopped in the middle of the run. The image is unchanged" in words(client.ServerLost("eof"))


@pytest.mark.slow
def test_a_chosen_server_that_fails_is_said_not_hidden(job, tmp_path, monkeypatch):
    """With a server address, a failure is the dialog's message; no child runs instead."""
    folder, _ = job
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config = {"python": sys.executable, "project": str(PLUGIN.parent.parent)}
    content, style = layer_npy(folder / "c.png"), layer_npy(folder / "s.png")
    with pytest.raises(nst_bridge.BridgeError, match="Cannot reach the engine server at 127.0.0.1:9 "):
        nst_bridge.run_engine(config, options, QUICK_VALUES, content, style, lambda e: None,
                              server="tcp://token@127.0.0.1:9")
    with pytest.raises(nst_bridge.BridgeError, match="is not unix:PATH"):
        nst_bridge.run_engine(config, options, QUICK_VALUES, content, style, lambda e: None, server="gpu-box")
    served = subprocess.Popen([sys.executable, "-m", "stylize_core", "serve", "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        address = address_from_ready(json.loads(served.stdout.readline()))
        wrong = client.Address("tls", host=address.host, port=address.port, token="guess",
                               fingerprint=address.fingerprint)
        with pytest.raises(nst_bridge.BridgeError, match="refused the token"):
            nst_bridge.run_engine(config, options, QUICK_VALUES, content, style, lambda e: None, server=str(wrong))
        pid = client.ping(address)["pid"]

        def kill_the_server(event):
            if event["stage"] == "optimize":
                os.kill(pid, signal.SIGKILL)
        events = []
        with pytest.raises(nst_bridge.BridgeError, match="stopped in the middle of the run. The image is unchanged"):
            nst_bridge.run_engine(config, options, {**QUICK_VALUES, "iterations": 200}, content, style,
                                  lambda e: (events.append(e), kill_the_server(e)), server=str(address))
        assert [e["stage"] for e in events].count("load") == 1, "a child ran instead of the chosen server"
    finally:
        served.kill()
        served.wait()


@pytest.mark.slow
def test_child_dies_and_temp_folder_goes_when_the_plugin_is_killed(job):
    folder, work = job
    argv = nst_bridge.engine_arguments(options, {**OPTIONS, "iterations": 200, "max-size": 400}, folder / "c.png",
                                       folder / "s.png", work / "out.png", work)
    # A stand-in for the plug-in process: runs the bridge, then GIMP kills it (SIGKILL, no cleanup).
    plugin = subprocess.Popen([sys.executable, "-c", (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import nst_bridge; from stylize_core.contract import client;"
        "nst_bridge.run_child(sys.executable, json.loads(sys.argv[2]), lambda e: print(e['stage'], flush=True),"
        " client.engine_environment())"),
        str(PLUGIN), json.dumps(argv)], stdout=subprocess.PIPE, text=True)
    for line in plugin.stdout:
        if line.strip() == "optimize":
            break
    engine_pids = subprocess.run(["pgrep", "-P", str(plugin.pid)], capture_output=True, text=True).stdout.split()
    assert engine_pids
    plugin.send_signal(signal.SIGKILL)
    plugin.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (work.exists() or any(Path(f"/proc/{p}").exists() for p in engine_pids)):
        time.sleep(0.2)
    assert not any(Path(f"/proc/{p}").exists() for p in engine_pids), "the engine outlived the plug-in"
    assert not work.exists(), "the temporary folder was left behind"
