"""The plug-in's GIMP-free half (nst_bridge.py), with the real engine where it runs one."""

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

PLUGIN = Path(__file__).resolve().parent.parent / "plugin" / "neural-style-transfer"
sys.path.insert(0, str(PLUGIN))
import nst_bridge  # noqa: E402

from stylize_core import options  # noqa: E402

from helpers import CONTENT, STYLE, small  # noqa: E402

OPTIONS = {"strength": 1.5, "quality": "fast", "resolution": "working", "iterations": 0, "max-size": 256, "preserve-colors": "luminance",
           "style-scale": 2.0, "seed": 7, "device": "cpu"}


def test_npy_written_by_the_bridge_reads_in_numpy_and_back():
    rng = np.random.default_rng(0)
    array = rng.uniform(0, 1, (5, 7, 4)).astype("<f4")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bridge-{os.getpid()}.npy"
    try:
        nst_bridge.write_npy(path, array.tobytes(), 5, 7)
        assert np.array_equal(np.load(path), array)
        np.save(path, array)
        data, shape = nst_bridge.read_npy(path)
        assert shape == (5, 7, 4) and data == array.tobytes()
    finally:
        path.unlink(missing_ok=True)


def test_npy_checks(tmp_path):
    with pytest.raises(nst_bridge.BridgeError, match="expected"):
        nst_bridge.write_npy(tmp_path / "x.npy", b"\0" * 10, 2, 2)
    (tmp_path / "bad.npy").write_bytes(b"junk")
    with pytest.raises(nst_bridge.BridgeError, match="not a .npy"):
        nst_bridge.read_npy(tmp_path / "bad.npy")
    np.save(tmp_path / "short.npy", np.zeros((4, 4, 4), "<f4"))
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-8])
    with pytest.raises(nst_bridge.BridgeError, match="truncated"):
        nst_bridge.read_npy(tmp_path / "short.npy")


def test_options_map_to_engine_arguments(tmp_path):
    argv = nst_bridge.engine_arguments(options, OPTIONS, tmp_path / "c.npy", tmp_path / "s.png", tmp_path / "o.npy",
                                       tmp_path)
    pairs = dict(zip(argv[3:], argv[4:]))
    assert argv[:3] == [str(tmp_path / "c.npy"), str(tmp_path / "s.png"), "-o"]
    assert pairs["--strength"] == "1.5" and pairs["--quality"] == "fast" and pairs["--max-size"] == "256"
    assert pairs["--preserve-colors"] == "luminance" and pairs["--style-scale"] == "2.0"
    assert pairs["--seed"] == "7" and pairs["--device"] == "cpu" and pairs["--progress"] == "json"
    assert pairs["--iterations"] == "0" and pairs["--cleanup-dir"] == str(tmp_path)


def test_the_engine_module_loaded_by_path_is_the_packages_options():
    loaded = nst_bridge.load_engine_module(str(PLUGIN.parent.parent), "options")
    assert [o.name for o in loaded.DIALOG_OPTIONS] == [o.name for o in options.DIALOG_OPTIONS]
    assert loaded.engine_arguments(OPTIONS) == options.engine_arguments(OPTIONS)
    with pytest.raises(nst_bridge.BridgeError, match="run python3 install.py"):
        nst_bridge.load_engine_module("/nowhere", "options")


def test_progress_text():
    fraction, text = nst_bridge.describe_progress({"stage": "optimize", "scale": 2, "scales": 3, "iteration": 40,
                                                   "total": 100, "fraction": 0.43, "eta_s": 12.4})
    assert fraction == 0.43 and text.endswith("scale 2/3, iteration 40/100, ~12 s left")
    assert nst_bridge.describe_progress({"stage": "load"})[1].endswith("loading the engine")


def test_missing_or_broken_install_says_what_to_do(tmp_path):
    with pytest.raises(nst_bridge.BridgeError, match="run python3 install.py"):
        nst_bridge.read_config(tmp_path)
    (tmp_path / nst_bridge.CONFIG_NAME).write_text(json.dumps({"python": "/nope/python", "project": "/p"}))
    with pytest.raises(nst_bridge.BridgeError, match="run python3 install.py in /p"):
        nst_bridge.read_config(tmp_path)


def test_an_environment_without_the_engine_says_to_reinstall(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"$0: No module named stylize_core\" >&2\nexit 1\n")
    python.chmod(0o755)
    config = {"python": str(python), "project": str(tmp_path), "use_worker": False}
    with pytest.raises(nst_bridge.BridgeError, match="incomplete .*No module named stylize_core.*run python3 install.py"):
        nst_bridge.run_engine(config, ["c.png", "s.png"], lambda event: None, tmp_path)


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


@pytest.mark.slow
def test_child_run_streams_progress_and_reports_errors(job):
    folder, work = job
    events = []
    argv = nst_bridge.engine_arguments(options, {**OPTIONS, "iterations": 3, "max-size": 96}, folder / "c.png",
                                       folder / "s.png", folder / "out.png", work)
    config = {"python": sys.executable, "project": str(PLUGIN.parent.parent), "use_worker": False}
    nst_bridge.run_engine(config, argv, events.append, work)
    assert events[-1]["stage"] == "done"
    # "Keep colours: keep the layer's colours" reached the engine: the result has the layer's chroma.
    yiq = np.array([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]])
    chroma = lambda path: (np.asarray(Image.open(path).convert("RGB"), np.float32) / 255 @ yiq)[..., 1:]
    assert np.abs(chroma(folder / "out.png") - chroma(folder / "c.png")).mean() < 0.02
    argv[1] = str(folder / "missing.png")
    with pytest.raises(nst_bridge.BridgeError, match="style image not found"):
        nst_bridge.run_engine(config, argv, events.append, work)


@pytest.mark.slow
def test_child_dies_and_temp_folder_goes_when_the_plugin_is_killed(job):
    folder, work = job
    argv = nst_bridge.engine_arguments(options, {**OPTIONS, "iterations": 200, "max-size": 400}, folder / "c.png",
                                       folder / "s.png", work / "out.png", work)
    # A stand-in for the plug-in process: runs the bridge, then GIMP kills it (SIGKILL, no cleanup).
    plugin = subprocess.Popen([sys.executable, "-c", (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import nst_bridge;"
        "nst_bridge.run_child(sys.executable, json.loads(sys.argv[2]), lambda e: print(e['stage'], flush=True))"),
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
