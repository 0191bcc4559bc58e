"""The memory model's choices, and tiled optimisation that still styles the picture."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from stylize_core import Settings, stylize
from stylize_core.engine.memory import estimate_peak_bytes, plan_scale
from stylize_core.engine.plan import make_plan
from stylize_core.contract.timing import Calibration
from stylize_core.engine.tiling import axis_cuts, tile_boxes, tiled_style_grams
from stylize_core.engine.api import cached_network
from stylize_core.engine.losses import gram_matrix
from helpers import CONTENT, STYLE, rgb_of, small, style_distance

GB = 2**30


def test_estimate_grows_with_pixels_history_and_shrinks_with_tiles_and_bf16():
    base = estimate_peak_bytes(1024, 1024, "cpu", "lbfgs", 20)
    assert estimate_peak_bytes(2048, 2048, "cpu", "lbfgs", 20) > 3.5 * (base - estimate_peak_bytes(1, 1, "cpu", "lbfgs", 20))
    assert estimate_peak_bytes(1024, 1024, "cpu", "lbfgs", 5) < base
    assert estimate_peak_bytes(1024, 1024, "cpu", "lbfgs", 20, tile=256) < base
    assert estimate_peak_bytes(1024, 1024, "cuda", "lbfgs", 20, precision="bf16") < \
        estimate_peak_bytes(1024, 1024, "cuda", "lbfgs", 20)


def test_plan_runs_whole_when_it_fits_and_tiles_when_not():
    assert plan_scale(512, 512, "cpu", "lbfgs", 20, "fp32", 20 * GB).tile is None
    big = plan_scale(4096, 4096, "cpu", "lbfgs", 20, "fp32", 20 * GB)
    assert big.tile is not None and big.estimate <= 20 * GB
    assert plan_scale(4096, 4096, "cpu", "lbfgs", 20, "fp32", 1 * GB) is None  # image buffers alone exceed it


CALIBRATION = Calibration("cpu|x|bf16|torch 2", "cpu", "x86", ((0.01, 0.05), (0.04, 0.16), (0.15, 0.6)), ((0.25, 0.8),))
"""Only the plan's predicted time reads it."""
STARRY_NIGHT, THE_SCREAM = (1024, 640), (1200, 1528)
"""The example paintings' own sizes."""


def planned(style_scale: float, style_sizes, resolution: str = "working", precision: str = "bf16") -> list[int]:
    """The plan's estimate of each scale for the example photo at 128x96 (resolution full adds 256x192)."""
    settings = Settings(size=256 if resolution == "full" else 128, max_size=128, iterations=3, device="cpu",
                        resolution=resolution, style_scale=style_scale, memory_limit_mb=64000)
    plan = make_plan((1024, 768), settings, torch.device("cpu"), precision, CALIBRATION, style_sizes=style_sizes)
    return [scale.memory.estimate for scale in plan.scales]


def test_the_plan_counts_the_style_at_its_working_size():
    """Once the style's pass outweighs the optimisation, the plan grows as the style's pixels at the scale do
    (style_scale squared); several styles pass one at a time: the largest counts, not their sum."""
    at = {scale: planned(scale, [STARRY_NIGHT])[0] for scale in (1, 4, 7, 10)}
    assert at[1] < at[4] < at[7] < at[10]
    # 128x96 x style_scale^2 pixels in the painting's aspect ratio: 4 -> 197k, 7 -> 602k, 10 -> 1229k.
    assert at[10] - at[7] == pytest.approx((10**2 - 7**2) / (7**2 - 4**2) * (at[7] - at[4]), rel=0.02)
    scream = planned(10, [THE_SCREAM])[0]
    both = planned(10, [STARRY_NIGHT, THE_SCREAM])[0]
    assert max(at[10], scream) < both < at[10] + scream - at[1]


def test_each_style_takes_its_own_stroke_size():
    """style_scales gives each style image its own size at every scale (the rest keep style_scale's)."""
    settings = Settings(max_size=128, iterations=3, device="cpu", resolution="working", style_scale=1.0,
                        memory_limit_mb=64000)
    sizes = {}
    for scales in (None, [1.0, 2.0], [0.5, 1.0]):
        plan = make_plan((1024, 768), settings.replace(style_scales=scales), torch.device("cpu"), "bf16",
                         CALIBRATION, style_sizes=[STARRY_NIGHT, THE_SCREAM])
        sizes[str(scales)] = plan.scales[-1].style_sizes
    starry, scream = sizes["None"]
    assert sizes["[1.0, 2.0]"][0] == starry
    assert sizes["[1.0, 2.0]"][1][0] == pytest.approx(scream[0] * 2, abs=2)
    assert sizes["[0.5, 1.0]"][1] == scream
    assert sizes["[0.5, 1.0]"][0][0] == pytest.approx(starry[0] / 2, abs=2)
    with pytest.raises(Exception, match="2 stroke sizes for 1 style"):
        Settings(style_scales=[1.0, 2.0]).validate(1)


def test_a_detail_scale_counts_the_style_at_most_at_its_own_size():
    """Enlarging only blurs, so a detail scale takes the painting at most at its own size: at 256x192,
    style_scale 5 and 10 ask for 1.2 and 4.9 Mpx, and both get the painting's 0.66 Mpx."""
    (composition_1, detail_1), (composition_5, detail_5), (composition_10, detail_10) = (
        planned(scale, [STARRY_NIGHT], "full") for scale in (1, 5, 10))
    assert composition_1 < composition_5 < composition_10
    assert detail_1 < detail_5 == detail_10


MEASURED_RUN = """
import json, sys
import torch
from stylize_core import Settings, stylize
from stylize_core.engine.calibrate import calibration_for, precision_for
from stylize_core.engine.api import prepared_network

content, styles, options = json.loads(sys.argv[1])
settings = Settings(**options)
device = torch.device("cpu")
network = prepared_network(settings, device)
calibration_for(network, device, precision_for(network, device, settings.precision))
# The peak from here on: a machine's first run measures its speed first, at sizes of its own.
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
events = []
stylize(content, styles, settings, progress=events.append)
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak": peak, "plan": next(event.message for event in events if event.stage == "plan")}))
"""
"""A run in a process of its own, printing its resident peak (VmHWM, Linux) and its plan line."""


def measured_run(style_scale: float, styles) -> tuple[int, int]:
    """(measured peak, planned peak) in bytes of the example photo at 128x96 after `styles`."""
    options = dict(size=128, max_size=128, iterations=3, device="cpu", resolution="working", style_scale=style_scale)
    done = subprocess.run([sys.executable, "-c", MEASURED_RUN, json.dumps([str(CONTENT), [str(s) for s in styles],
                                                                          options])],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    return result["peak"], int(float(re.search(r"about ([\d.]+) GB", result["plan"]).group(1)) * GB)


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's resettable VmHWM")
def test_a_large_style_scale_stays_within_the_plan():
    """What a large style_scale adds to a run's resident peak, the plan adds too: measured against the same
    run at style_scale 1, so the framework's own memory (the model's fixed part, 0.13 GB short at this size)
    is left out, with one style and with two. The plan's growth may fall 10 % short of the measured: it was
    0.97 of it in fp32 and 1.05-1.08 in bf16 here, where the run's pass reuses some of what the allocator
    kept from the steps before it. Nor may the plan be padded: at most 1.5x what was measured."""
    other = CONTENT.parent / "the_scream.jpg"
    peak_1, plan_1 = measured_run(1, [STYLE])
    for styles in ([STYLE], [STYLE, other]):
        peak_10, plan_10 = measured_run(10, styles)
        measured, planned = peak_10 - peak_1, plan_10 - plan_1
        assert measured > 0.2 * GB  # the style's pass at 1.2 Mpx: what this test is about
        assert 0.9 * measured <= planned <= 1.5 * measured, (len(styles), measured / GB, planned / GB)


@pytest.mark.parametrize("length,tile,offset", [(1000, 256, 0), (1000, 256, 100), (300, 256, 50), (257, 128, 63),
                                                (2048, 512, 100), (2048, 512, 255), (100, 256, 10)])
def test_tile_cores_partition_the_image(length, tile, offset):
    cuts = axis_cuts(length, tile, offset)
    assert cuts[0] == 0 and cuts[-1] == length and cuts == sorted(set(cuts))
    pieces = [b - a for a, b in zip(cuts, cuts[1:])]
    assert all(piece >= min(tile // 2, length) for piece in pieces)
    assert all(piece <= tile for piece in pieces)  # what the memory model plans for
    covered = np.zeros((length, length // 2), int)
    for (top, bottom, left, right), crop in tile_boxes(length, length // 2, tile, offset, offset // 2):
        covered[top:bottom, left:right] += 1
        assert crop[0] <= top and crop[1] >= bottom and crop[2] <= left and crop[3] >= right
    assert (covered == 1).all()


@pytest.mark.slow
def test_tiled_gram_approximates_the_whole_gram():
    network = cached_network(None, "max", "cpu")
    image = torch.from_numpy(rgb_of(small(STYLE, 320))).permute(2, 0, 1).unsqueeze(0).contiguous()
    with torch.no_grad():
        whole = {k: gram_matrix(v) for k, v in network(image, {"relu1_1", "relu3_1"}).items()}
    tiled = tiled_style_grams(network, image, 128, "fp32")
    for layer in whole:
        assert ((tiled[layer] - whole[layer]).norm() / whole[layer].norm()).item() < 0.05


@pytest.mark.slow
def test_tiled_run_styles_the_picture():
    content, style = small(CONTENT, 256), small(STYLE, 256)
    events = []
    out = stylize(content, style, Settings(max_size=256, scales=1, iterations=25, tile_size=128, device="cpu"),
                  progress=events.append)
    assert out.size == content.size
    assert any(e.stage == "plan" and "128 px tiles" in e.message for e in events)
    con, sty = rgb_of(content), rgb_of(style)
    assert style_distance(rgb_of(out), sty) < 0.7 * style_distance(con, sty)


@pytest.mark.slow
def test_low_memory_limit_makes_a_smaller_working_size_or_tiles():
    events = []
    stylize(small(CONTENT, 256), small(STYLE, 128), Settings(iterations=2, memory_limit_mb=800, device="cpu"),
            progress=events.append)
    plan = next(e.message for e in events if e.stage == "plan")
    assert "256x192, whole" not in plan


@pytest.mark.slow
def test_the_tile_grid_moves_every_iteration(monkeypatch):
    """Seams never settle: each evaluation cuts the image at a new random offset."""
    from stylize_core.engine import tiling
    from helpers import example_objective
    objective, content = example_objective((200, 150), torch.device("cpu"))
    offsets = []
    original = tiling.tile_boxes

    def recording(height, width, tile, offset_y=0, offset_x=0):
        offsets.append((offset_y, offset_x))
        return original(height, width, tile, offset_y, offset_x)
    monkeypatch.setattr(tiling, "tile_boxes", recording)
    tiled = tiling.TiledObjective(objective, content, 128, torch.Generator().manual_seed(0))
    image = content.clone().requires_grad_(True)
    image.grad = torch.zeros_like(image)
    for _ in range(4):
        tiled.evaluate(image)
    assert len(set(offsets)) == 4 and all(0 <= v < 64 for pair in offsets for v in pair)
