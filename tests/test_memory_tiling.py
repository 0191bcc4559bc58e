"""The memory model's choices, and tiled optimisation that still styles the picture."""

import numpy as np
import pytest
import torch

from stylize_core import Settings, stylize
from stylize_core.memory import estimate_peak_bytes, plan_scale
from stylize_core.tiling import axis_cuts, tile_boxes, tiled_style_grams
from stylize_core.engine import cached_network
from stylize_core.losses import gram_matrix
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


def test_the_tile_grid_moves_every_iteration(monkeypatch):
    """Seams never settle: each evaluation cuts the image at a new random offset."""
    from stylize_core import tiling
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
