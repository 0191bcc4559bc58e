"""Every engine option changes the result the way it says: its effect measured, not its parsing.

Each test runs the engine twice at a tiny size, with the option at two values (or at its
default and another), and measures the difference that option is for. Ignoring the option
in the engine makes its test fail. (`device` and `precision` on a GPU: tests/unit/test_gpu.py.)
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from stylize_core import InputError, Settings, stylize
from stylize_core.contract.settings import OPTIONS, QUALITY_ITERATIONS
from helpers import CONTENT, STYLE, EXAMPLES, content_distance, rgb_of, small, style_distance

pytestmark = pytest.mark.slow
BASE = dict(max_size=96, scales=1, iterations=12, device="cpu")


@pytest.fixture(scope="module")
def content():
    return rgb_of(small(CONTENT, 96))


@pytest.fixture(scope="module")
def style():
    return rgb_of(small(STYLE, 128))


def run(content, style, **changes):
    """(result as float RGB, progress events) for BASE with `changes`."""
    events = []
    result = stylize(content, style, Settings(**{**BASE, **changes}), progress=events.append)
    return result, events


def optimize_events(events):
    return [e for e in events if e.stage == "optimize"]


def differs(a, b, at_least=0.01):
    return a.shape != b.shape or float(np.abs(a - b).mean()) > at_least


def total_variation(rgb):
    return float(np.abs(np.diff(rgb, axis=0)).mean() + np.abs(np.diff(rgb, axis=1)).mean())


def chroma(rgb):
    yiq = rgb @ np.array([[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]])
    return yiq[..., 1:]


def test_strength_takes_the_style_further(content, style):
    weak, _ = run(content, style, strength=0.2)
    strong, _ = run(content, style, strength=5.0)
    assert style_distance(strong, style) < 0.9 * style_distance(weak, style)


def test_content_weight_keeps_more_of_the_content(content, style):
    loose, _ = run(content, style, content_weight=0.05)
    tight, _ = run(content, style, content_weight=20.0)
    assert content_distance(tight, content) < 0.8 * content_distance(loose, content)


def test_tv_weight_smooths(content, style):
    rough, _ = run(content, style, tv_weight=0.0)
    smooth, _ = run(content, style, tv_weight=1e4)
    assert total_variation(smooth) < 0.8 * total_variation(rough)


def test_style_scale_changes_the_style_target(content, style):
    small_strokes, _ = run(content, style, style_scale=0.5)
    big_strokes, _ = run(content, style, style_scale=2.0)
    assert differs(small_strokes, big_strokes)


def test_style_scales_give_each_style_its_own_stroke_size(content, style):
    """A stroke size per style image replaces style_scale for that image."""
    per_style, _ = run(content, style, style_scale=0.5, style_scales=[2.0])
    big_strokes, _ = run(content, style, style_scale=2.0)
    small_strokes, _ = run(content, style, style_scale=0.5)
    assert not differs(per_style, big_strokes, at_least=0.002) and differs(per_style, small_strokes)


def test_quality_sets_the_iterations_when_iterations_is_zero(content, style):
    _, events = run(content, style, iterations=0, quality="fast", stall_tolerance=0.0)
    assert optimize_events(events)[-1].total == QUALITY_ITERATIONS["fast"][-1]
    assert optimize_events(events)[-1].iteration == QUALITY_ITERATIONS["fast"][-1]


def test_iterations_override_the_quality(content, style):
    _, events = run(content, style, iterations=7, stall_tolerance=0.0)
    assert [e.iteration for e in optimize_events(events)] == list(range(1, 8))


def test_max_size_is_the_working_size_and_size_the_output(content, style):
    result, events = run(content, style, max_size=64, size=150)
    assert max(optimize_events(events)[0].width, optimize_events(events)[0].height) == 64
    assert max(result.shape[:2]) == 150


def test_scales_run_coarse_to_fine(content, style):
    _, events = run(content, style, size=200, max_size=200, scales=2, iterations=3)  # 100x75, then 200x150
    steps = optimize_events(events)
    assert {e.scales for e in steps} == {2} and [e.scale for e in steps] == [1] * 3 + [2] * 3
    assert steps[0].width * 2 == pytest.approx(steps[-1].width, abs=1)
    fractions = [e.fraction for e in steps]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_preserve_colors(content, style):
    plain, _ = run(content, style)
    kept, _ = run(content, style, preserve_colors="luminance")
    recoloured, _ = run(content, style, preserve_colors="histogram")
    assert np.abs(chroma(kept) - chroma(content)).mean() < 0.5 * np.abs(chroma(plain) - chroma(content)).mean()
    # The style recoloured to the content's palette: the result's colours move towards the content's.
    assert np.abs(recoloured.mean((0, 1)) - content.mean((0, 1))).sum() < \
        np.abs(plain.mean((0, 1)) - content.mean((0, 1))).sum()


def test_seed_with_noise_init(content, style):
    first, _ = run(content, style, init="noise", seed=1)
    again, _ = run(content, style, init="noise", seed=1)
    other, _ = run(content, style, init="noise", seed=2)
    assert np.array_equal(first, again) and differs(first, other, at_least=0.001)


def test_init_noise_starts_elsewhere(content, style):
    from_content, _ = run(content, style, iterations=3)
    from_noise, _ = run(content, style, iterations=3, init="noise")
    assert content_distance(from_content, content) < content_distance(from_noise, content)


def test_style_weights_pick_between_styles(content, style):
    scream = rgb_of(small(EXAMPLES / "the_scream.jpg", 128))
    events = []
    to_starry = stylize(content, [style, scream], Settings(**BASE, style_weights=[1.0, 0.0]), progress=events.append)
    to_scream = stylize(content, [style, scream], Settings(**BASE, style_weights=[0.0, 1.0]))
    assert style_distance(to_starry, style) < style_distance(to_scream, style)
    assert style_distance(to_scream, scream) < style_distance(to_starry, scream)


def test_stall_tolerance_stops_a_scale_early(content, style):
    _, patient = run(content, style, iterations=40, stall_tolerance=0.0)
    _, impatient = run(content, style, iterations=40, stall_tolerance=0.5)
    assert optimize_events(patient)[-1].iteration == 40
    assert optimize_events(impatient)[-1].iteration < 40


def test_optimizer_adam_is_another_path(content, style):
    lbfgs, _ = run(content, style)
    adam, _ = run(content, style, optimizer="adam")
    assert differs(lbfgs, adam)


def test_pooling_average_is_another_network(content, style):
    max_pooled, _ = run(content, style)
    average_pooled, _ = run(content, style, pooling="avg")
    assert differs(max_pooled, average_pooled)


def test_tile_size_tiles_the_scale(content, style):
    _, events = run(content, style, size=192, max_size=192, tile_size=128, iterations=2)
    assert any(e.stage == "plan" and "in 128 px tiles" in e.message for e in events)


def test_memory_limit_shrinks_the_plan(content, style):
    _, events = run(content, style, max_size=512, size=512, iterations=1, memory_limit_mb=1000,
                    precision="fp32")  # bf16 needs less: 512 px might fit
    plan = next(e.message for e in events if e.stage == "plan")
    working = int(re.search(r"working size (\d+)x", plan).group(1))
    assert "(1.0 GB usable" in plan and working < 512, plan


def test_weights_file_replaces_the_network(content, style, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    features = torchvision.models.vgg19(weights=None).features[:30]
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, tmp_path / "random-vgg.pth")
    embedded, _ = run(content, style)
    random_network, _ = run(content, style, weights=str(tmp_path / "random-vgg.pth"))
    assert differs(embedded, random_network)


@pytest.fixture
def precisions_used(monkeypatch):
    """Every precision the VGG passes ran in, as the run goes."""
    from stylize_core.engine import optimize
    used = []
    original = optimize.autocast_for

    def recording(image, precision):
        used.append(precision)
        return original(image, precision)
    monkeypatch.setattr(optimize, "autocast_for", recording)
    return used


def test_precision_bf16_runs_the_network_in_bf16(content, style, precisions_used):
    run(content, style, precision="bf16", iterations=1, max_size=64)
    assert precisions_used and set(precisions_used) == {"bf16"}


@pytest.mark.parametrize("faster", ["fp32", "bf16"])
def test_auto_precision_on_a_cpu_is_the_one_measured_faster_once(content, style, precisions_used, monkeypatch,
                                                                 tmp_path, faster):
    """auto on a CPU: bf16 only where this CPU runs it BF16_MIN_GAIN faster than fp32 (AMX, AVX-512 BF16),
    else fp32; measured once, then remembered; the dialog's estimate then reads the chosen one's calibration."""
    from stylize_core.engine import calibrate
    from stylize_core.contract.timing import latest_for
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    # This CPU's timings: bf16 three times faster, or faster by just short of the gain worth taking.
    seconds = {"fp32": 3.0 if faster == "bf16" else 0.9 * calibrate.BF16_MIN_GAIN, "bf16": 1.0}
    timed = []

    def fake_timing(network, device, precision, side, detail=False):
        timed.append(precision)
        return seconds[precision]
    monkeypatch.setattr(calibrate, "seconds_per_iteration", fake_timing)
    run(content, style, iterations=1, max_size=64)
    assert precisions_used and set(precisions_used) == {faster}
    assert set(timed) == {"fp32", "bf16"}
    assert latest_for("cpu").key == calibrate.calibration_key(torch.device("cpu"), faster)
    timed.clear()
    precisions_used.clear()
    run(content, style, iterations=1, max_size=64)
    assert timed == [] and set(precisions_used) == {faster}


def test_device_is_honoured():
    """On this machine: the CPU is used, and a GPU asked for by name is refused, not silently replaced."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: tests/unit/test_gpu.py covers the device")
    with pytest.raises(InputError, match="GPU|CUDA"):
        stylize(np.zeros((64, 64, 3), np.float32), np.zeros((64, 64, 3), np.float32),
                Settings(**{**BASE, "device": "cuda"}))


def test_temporal_weight_holds_a_clips_frames_to_the_one_before(content):
    """A camera moving 3 px a frame: the higher the weight, the less the second result differs from the
    first moved along the motion (0: the second frame's strokes are its own)."""
    from stylize_core.engine.frames import stylize_frames
    from stylize_core.engine.imageio import Picture
    from stylize_core.engine.motion import motion_between, warp
    frames = [np.ascontiguousarray(content[:, shift:shift + 80]) for shift in (0, 3)]
    style = Picture(rgb_of(small(STYLE, 96)))
    change = {}
    for weight in (0.0, 4.0):
        first, second = stylize_frames((Picture(f) for f in frames), [style],
                                       Settings(quality="fast", max_size=80, temporal_weight=weight))
        motion = motion_between(*frames)
        change[weight] = float(((warp(first.rgb, motion.backward) - second.rgb) ** 2)[motion.reliable > 0].mean())
    assert change[4.0] < 0.5 * change[0.0]


def test_every_option_has_an_effect_test():
    tested = {"strength", "content_weight", "tv_weight", "style_scale", "quality", "iterations", "max_size", "size",
              "scales", "preserve_colors", "seed", "init", "style_weights", "stall_tolerance", "optimizer", "pooling",
              "tile_size", "memory_limit_mb", "weights", "precision", "device",
              "resolution", "temporal_weight", "style_scales"}  # resolution: tests/unit/test_full_resolution.py
    assert {option.name for option in OPTIONS} == tested
