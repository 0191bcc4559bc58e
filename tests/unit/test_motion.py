"""engine/motion.py on a scene whose motion is known: a square of one photo slides 12 px right over
another, still, photo."""

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, STYLE
from stylize_core.engine.motion import motion_between, warp, warp_sharp

BACKGROUND = np.asarray(Image.open(CONTENT).convert("RGB").resize((192, 128)), np.float32) / 255
SQUARE = np.asarray(Image.open(STYLE).convert("RGB").resize((32, 32)), np.float32) / 255
TOP, SHIFT = 48, 12


def frame(left: int) -> np.ndarray:
    picture = BACKGROUND.copy()
    picture[TOP:TOP + 32, left:left + 32] = SQUARE
    return picture


@pytest.fixture(scope="module")
def moved():
    return motion_between(frame(60), frame(60 + SHIFT))


def test_the_flow_follows_the_square_and_the_still_background(moved):
    square = moved.backward[TOP + 8:TOP + 24, 60 + SHIFT + 8:60 + SHIFT + 24]
    assert np.allclose(np.median(square.reshape(-1, 2), axis=0), (-SHIFT, 0), atol=0.5)
    assert np.percentile(np.abs(moved.backward[:TOP - 16]), 99) < 0.5


def test_uncovered_background_is_unreliable_and_the_rest_reliable(moved):
    uncovered = moved.reliable[TOP + 2:TOP + 30, 60 + 1:60 + SHIFT - 1]
    assert uncovered.mean() < 0.2
    assert moved.reliable[:TOP - 16].mean() > 0.98 and moved.reliable.mean() > 0.85


def test_warping_the_frame_before_gives_this_frame_where_reliable(moved):
    before, after = frame(60), frame(60 + SHIFT)
    warped = warp(before, moved.backward)
    reliable = moved.reliable > 0
    assert np.abs(warped - after)[reliable].mean() < 0.2 * np.abs(before - after).mean()


def test_the_motion_at_another_size_scales_its_vectors(moved):
    half = moved.resized((96, 64))
    assert half.backward.shape == (64, 96, 2) and set(np.unique(half.reliable)) <= {0.0, 1.0}
    square = half.backward[(TOP + 8) // 2:(TOP + 24) // 2, (60 + SHIFT + 8) // 2:(60 + SHIFT + 24) // 2]
    assert np.allclose(np.median(square.reshape(-1, 2), axis=0), (-SHIFT / 2, 0), atol=0.5)


def test_what_came_in_at_a_border_is_unreliable():
    """A pan: the strip that enters at the right has no source in the frame before."""
    before, after = BACKGROUND[:, :160], BACKGROUND[:, 8:168]
    motion = motion_between(np.ascontiguousarray(before), np.ascontiguousarray(after))
    assert motion.reliable[:, -6:].mean() < 0.2 and motion.reliable[:, 20:140].mean() > 0.9


def test_a_painting_warped_at_every_frame_of_a_long_pan_keeps_its_strokes():
    """A clip warps each result again at the next frame, so the interpolation's error compounds: 24
    sub-pixel steps of a painting must end near one warp by the whole way (a bicubic warp turns the
    strokes into a ripple, a bilinear one blurs them: several times further off)."""
    painting = np.asarray(Image.open(STYLE).convert("RGB").resize((256, 192)), np.float32) / 255
    step = np.zeros((192, 256, 2), np.float32)
    step[...] = (0.37, 0.21)
    chained = painting
    for _ in range(24):
        chained = warp_sharp(chained, step)
    whole = warp(painting, step * 24, cv2.INTER_LANCZOS4)
    inside = (slice(24, -24), slice(24, -24))
    assert float(((chained - whole)[inside] ** 2).mean()) < 0.003
