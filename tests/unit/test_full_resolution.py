"""The detail stage: the layer's own size, alpha kept, tiled where memory is short, and its time known."""

import numpy as np
import pytest

from stylize_core import Settings, stylize
from helpers import CONTENT, STYLE, rgb_of, small

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def style():
    return rgb_of(small(STYLE, 256))


def optimize_events(events):
    return [e for e in events if e.stage == "optimize"]


def test_the_detail_stage_paints_up_to_the_layers_own_size_with_its_alpha(style):
    rgb = rgb_of(small(CONTENT, 200))
    alpha = np.linspace(0, 1, rgb.shape[1], dtype=np.float32)[None, :].repeat(rgb.shape[0], 0)
    events = []
    out = stylize(np.dstack([rgb, alpha]), style, Settings(max_size=64, resolution="full", iterations=2,
                                                           device="cpu"), progress=events.append)
    assert out.shape == (150, 200, 4) and np.array_equal(out[..., 3], alpha)
    widths = sorted({e.width for e in optimize_events(events)})
    assert widths[0] <= 64 and widths[-1] == 200, widths  # optimised at the layer's size, not upscaled to it
    plan = next(e for e in events if e.stage == "plan")
    assert "detail up to 200x150" in plan.message


def test_working_resolution_stops_at_the_working_size(style):
    events = []
    stylize(rgb_of(small(CONTENT, 200)), style, Settings(max_size=64, resolution="working", iterations=2,
                                                         device="cpu"), progress=events.append)
    assert max(e.width for e in optimize_events(events)) == 64


def test_the_detail_stage_runs_tiled_under_a_small_memory_limit(style):
    events = []
    out = stylize(rgb_of(small(CONTENT, 512)), style, Settings(max_size=128, resolution="full", iterations=2,
                                                               memory_limit_mb=1200, device="cpu",
                                                               precision="fp32"),  # bf16 fits whole
                  progress=events.append)
    assert out.shape[:2] == (384, 512)
    plan = next(e for e in events if e.stage == "plan").message
    assert "detail up to 512x384, in 256 px tiles" in plan, plan


def test_the_detail_stage_keeps_the_composition_and_adds_fine_texture(style):
    """Shrunk to the working size, the full-size result is the working-size result; at full size it has
    the fine texture that upscaling cannot give."""
    content = rgb_of(small(CONTENT, 256))
    base = dict(max_size=64, quality="fast", device="cpu", stall_tolerance=0.0)
    working = stylize(content, style, Settings(**base, resolution="working"))
    full = stylize(content, style, Settings(**base, resolution="full"))
    from stylize_core.engine.imageio import resize_rgb
    shrunk = resize_rgb(full, (64, 48))
    assert np.abs(shrunk - resize_rgb(working, (64, 48))).mean() < 0.02
    detail = lambda rgb: np.abs(np.diff(rgb, axis=1)).mean()  # neighbouring pixels' differences
    # Upscaled alone the ratio is 1; the detail stage at fast's (8, 4, 2) iterations gave 2.75 (fp32) and
    # 2.89 (bf16); at the former (4, 2, 1), 1.38 to 1.52.
    assert detail(full) > 1.5 * detail(working)


def test_a_detail_scales_passes_stop_at_the_content_layer(style, monkeypatch):
    """A detail scale matches only the fine layers: its passes need the network up to relu4_2 (the
    content), not the 13 convolutions up to relu5_1 that the composition scales need."""
    import torch.nn.functional as F
    from stylize_core.engine import vgg
    passes = []  # (image width, convolutions run) per pass through the network
    convolve = F.conv2d

    def counting_conv2d(x, weight, *args, **kwargs):
        if weight.shape[1] == 3:  # conv1_1: a new pass, on the replicate-padded image
            passes.append([x.shape[-1] - 2, 0])
        passes[-1][1] += 1
        return convolve(x, weight, *args, **kwargs)

    monkeypatch.setattr(vgg.F, "conv2d", counting_conv2d)
    stylize(rgb_of(small(CONTENT, 200)), style, Settings(max_size=64, resolution="full", iterations=2,
                                                         device="cpu"))
    depth = lambda width: max(count for w, count in passes if w == width)
    assert depth(64) == 13 and depth(200) == 10, passes


def test_the_composition_is_held_as_a_viewer_shrinks_the_picture():
    """The detail stage holds its image, shrunk to the working size, to the working-size result; shrunk
    as PIL (and GIMP) shrink a picture, bicubic with antialiasing, not by an area average, which damps
    the finest details the working size holds and so left them free to drift."""
    import torch
    from PIL import Image
    from stylize_core.engine.optimize import shrink_as_viewed
    photo = Image.open(CONTENT).convert("RGB")
    viewed = np.asarray(photo.resize((200, 150), Image.BICUBIC), np.float32) / 255
    tensor = torch.from_numpy(np.asarray(photo, np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
    ours = shrink_as_viewed(tensor, (150, 200))[0].permute(1, 2, 0).numpy()
    area = torch.nn.functional.interpolate(tensor, size=(150, 200), mode="area")[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - viewed).mean() < 0.002  # within PIL's 8-bit rounding
    assert np.abs(area - viewed).mean() > 3 * np.abs(ours - viewed).mean()
