"""Real, small stylizations on the CPU, judged by measurable outcomes."""

import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from stylize_core import InputError, Settings, stylize
from stylize_core.engine.color import _RGB_TO_YIQ
from helpers import CONTENT, STYLE, content_distance, rgb_of, small, style_distance

pytestmark = pytest.mark.slow
QUICK = dict(max_size=128, iterations=30, device="cpu", resolution="working")


@pytest.fixture(scope="module")
def content():
    return small(CONTENT, 160)


@pytest.fixture(scope="module")
def style():
    return small(STYLE, 200)


@pytest.fixture(scope="module")
def styled(content, style):
    events = []
    result = stylize(content, style, Settings(**QUICK), progress=events.append)
    return result, events


def test_output_takes_the_style_and_keeps_the_content(content, style, styled):
    result, _ = styled
    assert result.size == content.size and result.mode == "RGB"
    out, con, sty = rgb_of(result), rgb_of(content), rgb_of(style)
    assert style_distance(out, sty) < 0.6 * style_distance(con, sty)
    assert content_distance(out, con) < 0.5 * content_distance(resize(sty, content.size), con)


def resize(rgb, size):
    from stylize_core.engine.imageio import resize_rgb
    return resize_rgb(rgb, size)


def test_progress_reports_every_iteration_of_every_scale(styled):
    _, events = styled
    steps = [e for e in events if e.stage == "optimize"]
    assert [e.stage for e in events[:2]] == ["load", "plan"] and "working size" in events[1].message
    assert events[-1].stage == "done" and events[-1].seconds > 0 and events[-2].stage == "optimize"
    assert steps and steps[-1].fraction == pytest.approx(1.0)
    fractions = [e.fraction for e in steps]
    assert fractions == sorted(fractions)
    assert {e.scales for e in steps} == {1} and steps[-1].total == 30


def test_a_failure_is_reported_as_an_error_event_then_raised(style):
    events = []
    with pytest.raises(InputError, match="too small"):
        stylize(Image.new("RGB", (20, 20)), style, Settings(**QUICK), progress=events.append)
    assert [e.stage for e in events] == ["load", "error"]
    assert "too small" in events[-1].message and events[-1].exit_code == 2


def test_alpha_passes_through_untouched(content, style):
    rgba = np.dstack([rgb_of(content), np.linspace(0, 1, content.width, dtype=np.float32)[None, :]
                      .repeat(content.height, 0)])
    out = stylize(rgba, style, Settings(**QUICK, scales=1))
    assert out.shape == rgba.shape and out.dtype == np.float32
    assert np.array_equal(out[..., 3], rgba[..., 3])
    assert np.abs(out[..., :3] - rgba[..., :3]).mean() > 0.03  # the colour did change


def test_capped_working_size_is_upscaled_to_the_output_size(style):
    content = small(CONTENT, 300)
    out = stylize(content, style, Settings(max_size=96, iterations=3, device="cpu"))
    assert out.size == content.size
    resized = stylize(content, style, Settings(size=100, max_size=96, iterations=3, device="cpu"))
    assert max(resized.size) == 100


def test_same_seed_same_picture_and_noise_init_depends_on_seed(content, style):
    settings = Settings(**QUICK, scales=1, init="noise")
    settings.iterations = 5
    first = np.asarray(stylize(content, style, settings))
    again = np.asarray(stylize(content, style, settings))
    other = np.asarray(stylize(content, style, settings.replace(seed=1)))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_caller_with_autograd_turned_off_gets_the_same_picture(content, style):
    """The API inside torch.no_grad() (as an evaluation script may have turned it off for itself)."""
    settings = Settings(**QUICK, scales=1).replace(iterations=5)
    expected = np.asarray(stylize(content, style, settings))
    with torch.no_grad():
        assert np.array_equal(np.asarray(stylize(content, style, settings)), expected)


def test_style_weights_blend_the_styles(content, style):
    second = small(STYLE.parent / "the_scream.jpg", 200)
    settings = Settings(max_size=96, iterations=5, device="cpu")
    only_first = np.asarray(stylize(content, [style, second], settings.replace(style_weights=[1, 0])))
    single = np.asarray(stylize(content, style, settings))
    blended = np.asarray(stylize(content, [style, second], settings.replace(style_weights=[1, 1])))
    assert np.array_equal(only_first, single)
    assert not np.array_equal(blended, single)


def test_luminance_mode_keeps_the_content_colours(content, style):
    out = rgb_of(stylize(content, style, Settings(**QUICK, scales=1, preserve_colors="luminance")))
    plain = rgb_of(stylize(content, style, Settings(**QUICK, scales=1)))
    chroma = lambda rgb: (rgb.astype(np.float64) @ _RGB_TO_YIQ.T)[..., 1:]
    con = rgb_of(content)
    assert np.abs(chroma(out) - chroma(con)).mean() < 0.01
    assert np.abs(chroma(plain) - chroma(con)).mean() > 0.03


def test_adam_optimizer_also_styles(content, style):
    out = rgb_of(stylize(content, style, Settings(**QUICK, scales=1, optimizer="adam")))
    con, sty = rgb_of(content), rgb_of(style)
    assert style_distance(out, sty) < 0.9 * style_distance(con, sty)


def test_a_tiny_image_is_a_clear_error(style):
    with pytest.raises(InputError, match="too small"):
        stylize(Image.new("RGB", (20, 20)), style, Settings(**QUICK))


def test_mixed_precision_path_styles_as_well_as_fp32(content, style):
    """The bf16 autocast path the GPU takes by default, exercised on the CPU."""
    con, sty = rgb_of(content), rgb_of(style)
    settings = Settings(**QUICK, scales=1)
    full = style_distance(rgb_of(stylize(content, style, settings)), sty)
    mixed = style_distance(rgb_of(stylize(content, style, settings.replace(precision="bf16"))), sty)
    assert mixed < 0.6 * style_distance(con, sty)
    assert mixed < 1.2 * full


def test_a_detail_scale_starts_with_the_curvature_the_scale_before_left(monkeypatch, style):
    """The engine hands L-BFGS's curvature on from one scale to the next detail scale (optimize.Curvature), and
    starts each composition scale afresh. Three scales (86x64, 171x128, then 256x192 of detail), each seen by
    a spy that records the curvature a scale's optimisation is handed and the one it leaves, and runs the real
    optimisation in between."""
    from stylize_core.engine import api as engine
    real = engine.optimize
    signature = inspect.signature(real)
    scales = []

    def recording(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        curvature = bound.arguments.get("curvature")
        held = lambda: None if curvature is None or curvature.per_pixel is None else curvature.per_pixel.clone()
        handed = held()
        result = real(*args, **kwargs)
        scales.append((tuple(bound.arguments["image"].shape[-2:]), handed, held()))
        return result

    monkeypatch.setattr(engine, "optimize", recording)
    stylize(small(CONTENT, 256), style, Settings(max_size=171, iterations=3, resolution="full", device="cpu"))
    assert [size for size, _, _ in scales] == [(64, 86), (128, 171), (192, 256)]
    (_, first_handed, _), (_, second_handed, second_left), (_, detail_handed, _) = scales
    assert first_handed is None and second_handed is None
    # A gamma measured by a pair of the scale before (NaN would mean none was): the detail scale's first
    # step is the full one it says.
    assert second_left is not None and torch.isfinite(second_left) and second_left > 0
    assert detail_handed is not None and torch.equal(detail_handed, second_left)
