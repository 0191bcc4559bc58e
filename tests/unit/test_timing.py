"""Predicting a run's time: the time model, the calibration cache, and the dialog's line."""

import subprocess
import sys
from pathlib import Path

import pytest

from stylize_core import Settings
from stylize_core.contract.timing import (Calibration, ScaleWork, describe_seconds, latest_for, predict_by_resolution,
                                          predict_clip, predict_seconds, read_calibrations, remember, seconds_at,
                                          write_json)

ROOT = Path(__file__).resolve().parents[2]
CPU = Calibration("cpu|x|fp32|torch 2", "cpu", "x86", ((0.01, 0.05), (0.04, 0.16), (0.15, 0.6)), ((0.25, 0.8),))
GPU = Calibration("cuda|H100|bf16|torch 2", "cuda", "NVIDIA H100", ((0.01, 0.004), (0.15, 0.006)), ((0.25, 0.008),))


def test_an_iteration_is_priced_from_the_sizes_measured_for_its_kind():
    points = ((0.01, 0.05), (0.04, 0.16), (0.15, 0.6))
    assert seconds_at(points, 0.04) == 0.16
    assert abs(seconds_at(points, 0.025) - 0.105) < 1e-9  # where a line through nothing would say 0.1
    assert abs(seconds_at(points, 0.095) - 0.38) < 1e-9  # halfway between two sizes: halfway between their times
    assert abs(seconds_at(points, 0.6) - 2.4) < 1e-9  # beyond the largest: its cost per megapixel
    assert 0 < seconds_at(points, 0.005) < 0.05  # below the smallest: along the first segment
    assert seconds_at(((0.01, 0.01), (0.02, 0.1)), 0.0) == 0.0  # a steep first segment: not below nothing
    assert abs(seconds_at(((0.25, 0.8),), 1.0) - 3.2) < 1e-9  # one size measured: its cost per megapixel
    composition, detail = (CPU.iteration_seconds(1e6, detail) for detail in (False, True))
    assert abs(composition - 4.0) < 1e-9 and abs(detail - 3.2) < 1e-9
    assert predict_seconds([ScaleWork(1e6, 10, detail=True)], CPU) < predict_seconds([ScaleWork(1e6, 10)], CPU)


def test_time_grows_with_pixels_and_iterations():
    one = predict_seconds([ScaleWork(1e6, 10)], CPU)
    assert predict_seconds([ScaleWork(2e6, 10)], CPU) > 1.9 * one - 1
    assert predict_seconds([ScaleWork(1e6, 20)], CPU) > 1.9 * one
    assert predict_seconds([ScaleWork(1e6, 10)], CPU, n_styles=3) > one


def test_full_size_costs_more_than_the_working_size_and_only_where_the_layer_is_bigger():
    working, full = predict_by_resolution((2560, 1600), Settings(), CPU)
    assert full > 2 * working
    assert predict_by_resolution((400, 300), Settings(), CPU)[1] is None


def test_the_cache_keeps_the_latest_per_key_and_answers_by_device_choice(tmp_path):
    path = tmp_path / "calibration.json"
    assert read_calibrations(path) == [] and latest_for("auto", path) is None
    remember(CPU, path)
    remember(GPU, path)
    remember(CPU.scaled(1.2), path)
    assert len(read_calibrations(path)) == 2
    assert latest_for("cpu", path) == CPU.scaled(1.2)
    assert latest_for("auto", path) == GPU and latest_for("gpu", path) == GPU
    path.write_text("{damaged")
    assert read_calibrations(path) == []
    # The format before the sizes were measured one by one: measured again, not misread.
    write_json(path, [{"key": CPU.key, "device_type": "cpu", "device_name": "x86", "seconds_per_iteration": 0.03,
                       "seconds_per_megapixel": 2.0}])
    assert read_calibrations(path) == []


def test_seconds_are_said_as_precisely_as_a_prediction_deserves():
    assert [describe_seconds(s) for s in (3.2, 41, 200, 7200)] == ["3 s", "40 s", "3 min", "2.0 h"]


def test_the_dialogs_line_needs_no_torch_and_follows_the_settings(tmp_path):
    """GIMP's Python has neither torch nor numpy: the dialog's estimate runs with the standard library."""
    remember(CPU, tmp_path / "stylize-core" / "calibration.json")
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3]; from nst import bridge\n"
        "values = {'quality': 'balanced', 'iterations': 0, 'max-size': 512, 'resolution': 'auto', 'device': 'auto'}\n"
        "print(bridge.describe_time(values, (2560, 1600)))\n"
        "print(bridge.describe_time({**values, 'quality': 'fast'}, (2560, 1600)))\n"
        "print(bridge.describe_time(values, (300, 200)))\n"
        "print(any(m.startswith(('torch', 'numpy')) for m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT / "plugin" / "neural-style-transfer"),
                           str(ROOT)], capture_output=True, text=True, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    balanced, fast, small, imported = done.stdout.splitlines()
    assert balanced.startswith("About ") and "at full size, on this CPU (Automatic: the working size)" in balanced
    assert fast != balanced
    assert small.startswith("About ") and "full size" not in small
    assert imported == "False"


def test_without_a_calibration_the_dialog_says_when_it_will_know(tmp_path, monkeypatch):
    from nst import bridge
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    text = bridge.describe_time({"device": "auto"}, (800, 600))
    assert text == "Time: measured on the first run on this computer"


def test_a_run_moves_the_calibration_towards_the_speed_it_showed(tmp_path, monkeypatch):
    """A calibration measured while the machine was busy corrects itself within a few runs."""
    from stylize_core.engine.calibrate import learn_from_run
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    remember(CPU)
    speed = lambda calibration: calibration.iteration_seconds(1e6, detail=True)
    for _ in range(5):  # the device is twice as fast as calibrated: a run predicted at 100 s takes 50 s
        current = read_calibrations()[-1]
        learn_from_run(current, predicted=100.0 * speed(current) / speed(CPU), measured=50.0)
    learned = read_calibrations()[-1]
    assert 0.5 < learned.iteration_seconds(1e6) / CPU.iteration_seconds(1e6) < 0.53
    assert 0.5 < speed(learned) / speed(CPU) < 0.53
    learn_from_run(learned, predicted=2.0, measured=1.0)  # too short to say anything
    assert read_calibrations()[-1] == learned


@pytest.mark.slow
def test_full_runs_teach_the_calibration_and_previews_do_not(tmp_path, monkeypatch):
    """The dialog's previews come ten at a time at sizes whose per-pixel cost is not a full run's:
    they must not pull the estimate shown for the full run towards theirs."""
    from stylize_core import stylize
    from stylize_core.engine import calibrate
    from helpers import CONTENT, STYLE, rgb_of, small
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(calibrate, "MIN_SECONDS_TO_LEARN", 0.0)  # these runs are short
    content, style = rgb_of(small(CONTENT, 160)), rgb_of(small(STYLE, 128))
    stylize(content, style, Settings(resolution="preview", device="cpu"))
    measured = read_calibrations()[-1]  # measured by the first run, before it
    stylize(content, style, Settings(resolution="preview", device="cpu"))
    assert read_calibrations()[-1] == measured
    stylize(content, style, Settings(max_size=128, iterations=3, device="cpu"))
    assert read_calibrations()[-1] != measured


@pytest.mark.parametrize("size, settings", [
    ((640, 400), Settings()),  # Automatic, finishing at full size
    ((2560, 1600), Settings(resolution="full", max_size=256)),  # detail scales on every frame
    ((2560, 1600), Settings(resolution="working", iterations=7, scales=2)),
    ((300, 200), Settings(quality="fast")),
])
def test_the_dialogs_clip_time_is_the_engines(size, settings):
    """The plug-in's time line for a clip (timing.predict_clip) says what the engine's clip plan will:
    the first frame's scales, then every other frame's (frames.following_scales), one calibration."""
    import torch

    from stylize_core.engine.frames import following_scales
    from stylize_core.engine.plan import make_plan, predicted

    plan = make_plan(size, settings, torch.device("cpu"), "fp32", CPU, [(512, 400)])
    engine = plan.predicted_seconds + 9 * predicted(following_scales(plan.scales, settings), CPU, 1)
    assert predict_clip(size, settings, CPU, 10) == pytest.approx(engine, rel=1e-3)
