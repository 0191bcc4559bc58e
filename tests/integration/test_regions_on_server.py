"""Styles in regions through the server (the plug-in's route) and the CLI's --server: the masks travel
after the styles, and the run paints as this process's engine would; a request whose regions do not
add up is refused with one line."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, EXAMPLES, STYLE, png_bytes
from nst import bridge, pixels, styles, widgets
from stylize_core import Settings
from stylize_core.contract.client import ServerError, run_on_server
from stylize_core.engine.api import stylize_picture
from stylize_core.engine.imageio import load_picture_bytes

SCREAM = EXAMPLES / "the_scream.jpg"
SETTINGS = {"quality": "fast", "max_size": 64, "seed": 4}


def left_half(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[:, :width // 2] = 255
    return mask


def png(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format="PNG")
    return stream.getvalue()


@pytest.mark.usefixtures("private_state")
def test_regions_on_the_server_paint_as_the_engine_here(served):
    content, starry, scream = png_bytes(CONTENT, 96), png_bytes(STYLE, 96), png_bytes(SCREAM, 96)
    size = Image.open(io.BytesIO(content)).size
    mask = png(left_half(*size))
    code, data = run_on_server(served.address, [content, starry, scream, mask], SETTINGS, lambda event: None,
                               regions=[True, False])
    assert code == 0
    served_rgb = np.load(io.BytesIO(data))[..., :3]
    here = stylize_picture(load_picture_bytes(content), [load_picture_bytes(starry), load_picture_bytes(scream)],
                           Settings(**SETTINGS), regions=[load_picture_bytes(mask), None]).rgb
    blended = stylize_picture(load_picture_bytes(content), [load_picture_bytes(starry), load_picture_bytes(scream)],
                              Settings(**SETTINGS)).rgb
    assert np.abs(served_rgb - here).max() < 1e-4
    assert np.abs(served_rgb - blended).mean() > 0.02

    for images, regions, words in (
            ([content, starry, scream, mask], [True], "regions has 1 entries, one per style image, but the request has 2"),
            ([content, starry, mask], [True, False], "but the request has 1"),
            ([content, starry, scream, png(left_half(40, 30))], [True, False], "must be the content's size"),
            ([content, starry, scream], [False, False], "some true")):
        with pytest.raises(ServerError, match=words):
            run_on_server(served.address, images, SETTINGS, lambda event: None, regions=regions)


@pytest.mark.usefixtures("private_state")
def test_the_command_line_sends_its_masks_to_the_server(served, tmp_path):
    content, mask, output = tmp_path / "photo.png", tmp_path / "left.png", tmp_path / "out.png"
    Image.open(io.BytesIO(png_bytes(CONTENT, 96))).save(content)
    Image.fromarray(left_half(*Image.open(content).size)).save(mask)
    done = subprocess.run([sys.executable, "-m", "stylize_core", str(content), str(STYLE), str(SCREAM), "-o",
                           str(output), "--style-mask", f"1={mask}", "--server", f"unix:{served.address.path}",
                           "--quality", "fast", "--max-size", "64", "--seed", "4", "--progress", "none"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert served.ping()["runs"] == 1 and Image.open(output).size == Image.open(content).size


@pytest.mark.usefixtures("private_state")
def test_the_plugins_styles_and_masks_reach_the_engine(served):
    """The dialog's style list as the plug-in sends it (nst/bridge.py): two styles, each with its weight and
    stroke size, the second in a region (the 8-bit mask GIMP's channels give, nst/pixels.py), paint as the
    engine here does with the same settings."""
    content, starry, scream = png_bytes(CONTENT, 96), png_bytes(STYLE, 96), png_bytes(SCREAM, 96)
    width, height = Image.open(io.BytesIO(content)).size
    mask = pixels.mask_npy_bytes(left_half(width, height).tobytes(), height, width)
    further = styles.parse_further_styles('[{"file": "scream.jpg", "weight": 2.0, "stroke": 1.5, '
                                          '"region": "channel:left"}]')
    settings = {**SETTINGS, **widgets.request_settings({"style-scale": 0.5}, further)}
    assert settings["style_weights"] == [1.0, 2.0] and settings["style_scales"] == [0.5, 1.5]
    data = bridge.run_engine({"python": "", "project": ""}, settings, content, [starry, scream], lambda event: None,
                             server=str(served.address), masks=[None, mask])
    served_rgb = np.load(io.BytesIO(data))[..., :3]
    here = stylize_picture(load_picture_bytes(content), [load_picture_bytes(starry), load_picture_bytes(scream)],
                           Settings(**settings), regions=[None, load_picture_bytes(mask)]).rgb
    assert np.abs(served_rgb - here).max() < 1e-4
    unweighted = stylize_picture(load_picture_bytes(content), [load_picture_bytes(starry), load_picture_bytes(scream)],
                                 Settings(**SETTINGS), regions=[None, load_picture_bytes(mask)]).rgb
    assert np.abs(served_rgb - unweighted).mean() > 0.005, "the weights and stroke sizes did not reach the engine"
