"""Styles in regions (engine/regions.py, losses.regional_style_loss): each style paints its own region,
judged by the statistics of that region alone; what no region covers keeps the content's look; bad
masks are refused with one clear line."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CONTENT, EXAMPLES, STYLE, rgb_of, small, style_distance
from stylize_core import Settings
from stylize_core.contract.errors import InputError
from stylize_core.engine.api import cached_network, stylize_picture, to_tensor
from stylize_core.engine.imageio import Picture
from stylize_core.engine.losses import gram_matrix, guided_gram
from stylize_core.engine.regions import checked_regions

SCREAM = EXAMPLES / "the_scream.jpg"
SIZE = (128, 96)


def picture(path, size=SIZE) -> Picture:
    return Picture(np.asarray(Image.open(path).convert("RGB").resize(size, Image.LANCZOS), np.float32) / 255)


def halves(size=SIZE) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((size[1], size[0]), np.float32)
    left[:, :size[0] // 2] = 1
    return left, 1 - left


def mask_picture(mask: np.ndarray) -> Picture:
    return Picture(np.repeat(mask[..., None], 3, axis=2))


@torch.no_grad()
def test_a_guided_gram_is_the_gram_of_the_region_alone():
    """All ones: the plain Gram; a half: the Gram of that half's features (away from its edge)."""
    network = cached_network(None, "max", "cpu")
    image = to_tensor(picture(CONTENT).rgb, torch.device("cpu"))
    features = network(image, {"relu1_1"})["relu1_1"]
    whole = torch.ones((1, 1, *features.shape[-2:]))
    assert torch.allclose(guided_gram(features, whole), gram_matrix(features), rtol=1e-5, atol=1e-6)
    left = torch.zeros_like(whole)
    left[..., :SIZE[0] // 2] = 1
    assert torch.allclose(guided_gram(features, left), gram_matrix(features[..., :SIZE[0] // 2]), rtol=1e-4,
                          atol=1e-6)
    assert guided_gram(features, torch.zeros_like(whole)) is None


@pytest.fixture(scope="module")
def two_styles():
    """Starry Night on the left half, The Scream on the right (as a region and as the rest)."""
    left, _ = halves()
    settings = Settings(quality="fast", max_size=SIZE[0], seed=3)
    styles = [picture(STYLE), picture(SCREAM)]
    regions = stylize_picture(picture(CONTENT), styles, settings, regions=[mask_picture(left), None]).rgb
    blended = stylize_picture(picture(CONTENT), styles, settings).rgb
    return regions, blended


def test_each_half_takes_its_own_style(two_styles):
    regions, blended = two_styles
    starry, scream = rgb_of(STYLE), rgb_of(SCREAM)
    half = SIZE[0] // 2
    left, right = regions[:, :half - 8], regions[:, half + 8:]
    # Each half is nearer its own style than the other half is, and than the blend of both is there.
    assert style_distance(left, starry) < style_distance(right, starry)
    assert style_distance(right, scream) < style_distance(left, scream)
    assert style_distance(left, starry) < style_distance(blended[:, :half - 8], starry)
    assert style_distance(right, scream) < style_distance(blended[:, half + 8:], scream)


def test_what_no_region_covers_keeps_the_content():
    left, _ = halves()
    content = picture(CONTENT)
    result = stylize_picture(content, [picture(STYLE)], Settings(quality="fast", max_size=SIZE[0], seed=3),
                             regions=[mask_picture(left)]).rgb
    half = SIZE[0] // 2
    change = np.abs(result - content.rgb).mean(axis=2)
    assert change[:, half + 16:].mean() < 0.3 * change[:, :half - 16].mean()


@pytest.mark.parametrize("regions, words", [
    ([mask_picture(np.ones((50, 60), np.float32))], "must be the content's size"),
    ([mask_picture(np.zeros((SIZE[1], SIZE[0]), np.float32))], "is empty"),
    ([mask_picture(halves()[0]), None], "2 regions for 1 style"),
    ([None, mask_picture(np.ones((SIZE[1], SIZE[0]), np.float32))], "style 1 would paint nowhere"),
    ([mask_picture(halves()[0]), mask_picture(halves()[1])], None),
    ([mask_picture(np.ones((SIZE[1], SIZE[0]), np.float32))], None),
])
def test_a_bad_mask_is_refused_before_anything_runs(regions, words):
    """Each bad mask is refused in one line; regions that share the layer out, or a white one alone, are
    taken."""
    styles = [picture(STYLE)] * max(1, len(regions) if words != "2 regions for 1 style" else 1)
    size = (SIZE[1], SIZE[0])
    if words is None:
        masks = checked_regions(regions, len(styles), SIZE)
        assert [mask.shape for mask in masks] == [size] * len(regions)
        return
    with pytest.raises(InputError, match=words):
        stylize_picture(picture(CONTENT), styles, Settings(quality="fast", max_size=64), regions=regions)


def test_the_command_line_takes_a_mask_per_style_and_refuses_a_bad_one(tmp_path):
    content, mask = tmp_path / "photo.png", tmp_path / "left.png"
    small(CONTENT, 96).save(content)
    width, height = Image.open(content).size
    left = np.zeros((height, width), np.uint8)
    left[:, :width // 2] = 255
    Image.fromarray(left).save(mask)
    output = tmp_path / "out.png"
    command = [sys.executable, "-m", "stylize_core", str(content), str(STYLE), str(SCREAM), "-o", str(output),
               "--quality", "fast", "--iterations", "3", "--progress", "none"]
    wrong = subprocess.run(command + ["--style-mask", f"3={mask}"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "only 2 style images" in wrong.stderr and not output.exists()
    assert len(wrong.stderr.strip().splitlines()) == 1
    done = subprocess.run(command + ["--style-mask", f"1={mask}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Image.open(output).size == (width, height)


def test_a_clip_paints_each_style_in_its_region_in_every_frame():
    from stylize_core.engine.frames import stylize_frames

    content = picture(CONTENT, (SIZE[0] + 4, SIZE[1]))
    frames = [Picture(content.rgb[:, shift:shift + SIZE[0]].copy()) for shift in (0, 2, 4)]
    left, _ = halves()
    settings = Settings(quality="fast", max_size=SIZE[0], seed=3)
    styles = [picture(STYLE), picture(SCREAM)]
    regions, blended = (list(stylize_frames(iter(frames), styles, settings, count=len(frames), regions=masks))[-1].rgb
                        for masks in ([mask_picture(left), None], None))
    half = SIZE[0] // 2
    starry, scream = rgb_of(STYLE), rgb_of(SCREAM)
    assert style_distance(regions[:, :half - 8], starry) < style_distance(blended[:, :half - 8], starry)
    assert style_distance(regions[:, half + 8:], scream) < style_distance(blended[:, half + 8:], scream)


@torch.no_grad()
def test_a_tile_is_judged_by_the_part_of_each_region_under_it():
    """A tile wholly right of the border is matched against the rest of the layer's style alone."""
    from stylize_core.engine.losses import STYLE_LAYERS, GuidedTarget
    from stylize_core.engine.optimize import Objective

    network = cached_network(None, "max", "cpu")
    cpu = torch.device("cpu")

    def grams(path):
        return {layer: gram_matrix(f) for layer, f in network(to_tensor(picture(path).rgb, cpu),
                                                              set(STYLE_LAYERS)).items()}
    image = to_tensor(picture(CONTENT).rgb, cpu)
    left = torch.from_numpy(halves()[0])[None, None]
    box = (0, SIZE[1], SIZE[0] // 2, SIZE[0])
    tile = image[..., box[0]:box[1], box[2]:box[3]]
    content_target = network(tile, {"relu4_2"})["relu4_2"]
    in_regions = Objective(network, [GuidedTarget(grams(STYLE), left), GuidedTarget(grams(SCREAM), 1 - left)],
                           content_target, 1.0, 1.0, 0.0)
    rest_alone = Objective(network, grams(SCREAM), content_target, 1.0, 1.0, 0.0)
    assert float(in_regions(tile, content_target, box)) == pytest.approx(float(rest_alone(tile)), rel=1e-4)


@pytest.mark.slow
def test_regions_hold_when_the_image_is_optimised_in_tiles():
    """Tiles see a part of each mask: each half still takes its own style."""
    size = (256, 192)
    left, _ = halves(size)
    settings = Settings(quality="fast", max_size=size[0], seed=3, tile_size=128, iterations=20)
    styles = [picture(STYLE, size), picture(SCREAM, size)]
    events = []
    regions = stylize_picture(picture(CONTENT, size), styles, settings, events.append,
                              regions=[mask_picture(left), None]).rgb
    assert any(event.stage == "plan" and "tiles" in (event.message or "") for event in events)
    blended = stylize_picture(picture(CONTENT, size), styles, settings).rgb
    half = size[0] // 2
    starry, scream = rgb_of(STYLE), rgb_of(SCREAM)
    assert style_distance(regions[:, :half - 8], starry) < style_distance(blended[:, :half - 8], starry)
    assert style_distance(regions[:, half + 8:], scream) < style_distance(blended[:, half + 8:], scream)


@torch.no_grad()
def test_each_region_is_brought_to_the_layers_sizes_once_per_part_of_the_image(monkeypatch):
    """The masks at the layers' sizes and their areas are kept: step after step on the same part of the
    image computes (and reads back from the device) nothing again; a new tile computes its own."""
    from stylize_core.engine import losses
    from stylize_core.engine.losses import STYLE_LAYERS, GuidedTarget
    from stylize_core.engine.optimize import Objective

    network = cached_network(None, "max", "cpu")
    image = to_tensor(picture(CONTENT).rgb, torch.device("cpu"))
    grams = {layer: gram_matrix(f) for layer, f in network(image, set(STYLE_LAYERS)).items()}
    left = torch.from_numpy(halves()[0])[None, None]
    computed = []
    original = losses.region_weights
    monkeypatch.setattr(losses, "region_weights", lambda mask, size: computed.append(size) or original(mask, size))
    content_target = network(image, {"relu4_2"})["relu4_2"]
    objective = Objective(network, [GuidedTarget(grams, left), GuidedTarget(grams, 1 - left)], content_target,
                          1.0, 1.0, 0.0)
    first = float(objective(image, content_target, None))
    assert len(computed) == 2 * len(STYLE_LAYERS)
    for _ in range(3):
        assert float(objective(image, content_target, None)) == first
    assert len(computed) == 2 * len(STYLE_LAYERS), "the masks were brought to the layers' sizes again"
    box = (0, SIZE[1], 0, SIZE[0] // 2)
    objective(image[..., box[0]:box[1], box[2]:box[3]], network(image[..., :, :SIZE[0] // 2], {"relu4_2"})["relu4_2"],
              box)
    assert len(computed) > 2 * len(STYLE_LAYERS), "a tile's part of the masks is its own"


@torch.no_grad()
def test_a_style_in_a_small_region_pushes_no_harder_than_over_the_whole_layer():
    """A region's loss counts by its area, also where no other style fills the rest: a guided Gram's pull
    on each position is already 1/area times a whole-layer Gram's, so a quarter of the layer weighs a
    quarter (scaled up to the whole, a small selection would be painted far harder than the layer)."""
    from stylize_core.engine.losses import STYLE_LAYERS, GuidedTarget, regional_style_loss

    network = cached_network(None, "max", "cpu")
    cpu = torch.device("cpu")
    features = network(to_tensor(picture(CONTENT).rgb, cpu), set(STYLE_LAYERS))
    targets = {layer: gram_matrix(f) for layer, f in network(to_tensor(picture(SCREAM).rgb, cpu),
                                                             set(STYLE_LAYERS)).items()}
    quarter = torch.zeros((1, 1, SIZE[1], SIZE[0]))
    quarter[..., :SIZE[1] // 2, :SIZE[0] // 2] = 1
    inside = torch.stack([(guided_gram(features[layer], quarter) - target).pow(2).sum() / target.pow(2).sum()
                          for layer, target in targets.items()]).mean()
    alone = regional_style_loss(features, [GuidedTarget(targets, quarter)])
    assert float(alone) == pytest.approx(0.25 * float(inside), rel=1e-4)
    # Regions that share the layer out: each by its area, as before.
    both = regional_style_loss(features, [GuidedTarget(targets, quarter), GuidedTarget(targets, 1 - quarter)])
    rest = torch.stack([(guided_gram(features[layer], 1 - quarter) - target).pow(2).sum() / target.pow(2).sum()
                        for layer, target in targets.items()]).mean()
    assert float(both) == pytest.approx(0.25 * float(inside) + 0.75 * float(rest), rel=1e-4)
