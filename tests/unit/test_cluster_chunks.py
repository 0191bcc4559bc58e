"""How a clip is cut for a cluster's workers (stylize_core/cluster/chunks.py), without Ray: every frame
comes out once, from the right chunk or seam, in order; the pieces are of equal work; chunks end at scene
cuts and only there without a seam; pieces pair around a shared key frame; cuts are found where the
picture changes, not where the camera moves."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, EXAMPLES, STYLE
from stylize_core.cluster.chunks import (BLEND_FRAMES, CUT_JUMP, MAX_PIECE, MIN_PIECE, ChunkPlan, blended,
                                         chunk_length, grey_thumbnail, plan_chunks, scene_cuts)

SCREAM = EXAMPLES / "the_scream.jpg"
CASES = [(24, [], 1), (24, [], 2), (24, [], 3), (24, [], 4), (25, [], 2), (100, [60], 4), (12, [4, 8], 2),
         (1000, [], 3), (2900, [17, 900, 901, 2000], 4), (1, [], 4), (7, [], 2), (40, [39], 2)]


def frames_restyled(plan: ChunkPlan) -> list[int]:
    return [chunk.restyled for chunk in plan.chunks]


@pytest.mark.parametrize("count, cuts, workers", CASES)
def test_every_frame_comes_out_once_from_chunks_that_restyled_it(count, cuts, workers):
    plan = plan_chunks(count, cuts, workers)
    owned = sorted(frame for chunk in plan.chunks for frame in range(chunk.own_start, chunk.own_stop))
    assert owned == list(range(count))
    for frame in range(count):
        sources = plan.sources(frame)
        assert sum(share for _, share in sources) == pytest.approx(1.0)
        for index, share in sources:
            chunk = plan.chunks[index]
            assert 0 < share <= 1 and chunk.low <= frame <= chunk.high
            assert frame in plan.delivered(chunk)
    for chunk in plan.chunks:
        order = chunk.order()
        assert order[0] == chunk.key and set(order) == set(range(chunk.low, chunk.high + 1))
        twice = sorted(frame for frame, times in Counter(order).items() if times > 1)
        assert max(Counter(order).values()) <= 2 and set(twice) <= {chunk.key, chunk.settle}
        assert (chunk.key in twice) == (chunk.settle is not None)
        assert set(plan.delivered(chunk)) <= set(order)
        assert 0 <= chunk.low and chunk.high < count
        scene = [cut for cut in (0, *plan.cuts, count) if cut <= chunk.key][-1]
        assert (chunk.settle is None) == (not chunk.backward)
        shows_its_still = chunk.key in plan.delivered(chunk) and chunk.settle is None
        assert shows_its_still == (chunk.key == scene and not chunk.backward)  # only a scene's first piece


@pytest.mark.parametrize("count, cuts, workers", CASES)
def test_no_chunk_crosses_a_scene_cut_and_no_seam_lies_on_one(count, cuts, workers):
    plan = plan_chunks(count, cuts, workers)
    assert plan.cuts == tuple(sorted({cut for cut in cuts if 0 < cut < count}))
    for cut in plan.cuts:
        for chunk in plan.chunks:
            assert chunk.high < cut or chunk.low >= cut
        assert any(chunk.own_start == cut == chunk.low for chunk in plan.chunks)  # nothing before it
    for seam in plan.seams:
        before, after = plan.chunks[seam.before], plan.chunks[seam.after]
        shortest = min(before.own_stop - before.own_start, after.own_stop - after.own_start)
        assert min(BLEND_FRAMES, MIN_PIECE - 2) <= seam.stop - seam.start <= min(BLEND_FRAMES, shortest)
        assert not any(seam.start < cut < seam.stop for cut in plan.cuts)


def test_a_scene_is_cut_into_one_piece_per_worker_of_equal_work_and_pairs_share_their_key_frame():
    plan = plan_chunks(24, [], 2)
    backward, forward = plan.chunks
    assert backward.backward and not forward.backward
    assert backward.key == forward.key == backward.own_stop - 1 == forward.own_start - 1
    key = forward.key
    assert forward.order()[:3] == [key, key + 1, key + 2]  # the same start both ways: the still, the frame
    assert backward.order()[:4] == [key, key + 1, key, key - 1]  # after it; the key frame again from it
    assert forward.own_start == key + 1 and backward.own_stop == key + 1  # ...shown by the backward piece
    assert plan.seams == ()
    assert abs(backward.restyled - forward.restyled) <= 1
    four = plan_chunks(48, [], 4)
    assert len(four.chunks) == 4 and len(four.seams) == 1  # two pairs, one meeting point between them
    assert max(frames_restyled(four)) - min(frames_restyled(four)) <= 1
    seam = four.seams[0]
    assert (seam.before, seam.after) == (1, 2)
    assert four.chunks[1].high == seam.stop - 1 and four.chunks[2].low == seam.start  # both restyled it


def test_one_worker_restyles_a_clip_as_a_run_here_does_up_to_the_longest_piece():
    plan = plan_chunks(MAX_PIECE, [], 1)
    assert [(chunk.backward, chunk.key, chunk.low, chunk.high) for chunk in plan.chunks] == [(False, 0, 0, MAX_PIECE - 1)]
    longer = plan_chunks(MAX_PIECE + 50, [], 1)
    assert len(longer.chunks) == 2 and chunk_length(MAX_PIECE + 50, 1) == MAX_PIECE


def test_an_odd_piece_goes_backward_from_the_scene_end_and_meets_the_pair_before_in_a_seam():
    plan = plan_chunks(30, [], 3)
    assert [chunk.backward for chunk in plan.chunks] == [True, False, True]
    assert plan.chunks[2].key == 29 and plan.chunks[2].order()[:4] == [29, 28, 29, 28] and len(plan.seams) == 1


def test_pieces_are_never_shorter_than_the_minimum_nor_longer_than_the_maximum():
    assert len(plan_chunks(20, [], 16).chunks) == 20 // MIN_PIECE
    long = plan_chunks(5000, [], 2)
    assert len(long.chunks) == 20 and max(frames_restyled(long)) - min(frames_restyled(long)) <= 1


def test_a_seam_fades_from_one_chunk_to_the_other_evenly_over_as_many_frames_as_the_pieces_allow():
    plan = plan_chunks(48, [], 4)
    seam = plan.seams[0]
    weights = [seam.weight(frame) for frame in range(seam.start, seam.stop)]
    assert weights == sorted(weights) and 0 < weights[0] and weights[-1] < 1
    assert np.allclose(np.diff([0, *weights, 1]), 1 / (BLEND_FRAMES + 1))
    short = plan_chunks(24, [], 3, MIN_PIECE)  # pieces of 8 frames: the fade takes 6 of them
    assert [seam.stop - seam.start for seam in short.seams] == [MIN_PIECE - 2]
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    assert (blended(black, white, 0.25) == 64).all() and blended(black, white, 1.0).dtype == np.uint8


def test_a_plan_survives_its_record():
    plan = plan_chunks(100, [60], 4)
    assert ChunkPlan.from_json(plan.to_json()) == plan


def pan(picture: Path, count: int, step: float) -> list[np.ndarray]:
    """A camera panning right over a picture, `step` of its width a frame: the frames of one shot."""
    image = Image.open(picture).convert("RGB")
    width, height = image.size
    boxes = [(width * step * t, 0, width * (step * t + 0.5), height * 0.6) for t in range(count)]
    return [np.asarray(image.resize((96, 72), Image.BILINEAR, box=box)) for box in boxes]


def test_cuts_are_found_where_the_picture_changes_and_not_where_the_camera_moves():
    frames = pan(CONTENT, 10, 0.01) + pan(STYLE, 6, 0.01) + pan(SCREAM, 9, 0.04)
    assert scene_cuts(grey_thumbnail(frame) for frame in frames) == [10, 16]
    assert scene_cuts(grey_thumbnail(frame) for frame in pan(CONTENT, 12, 0.04)) == []  # a fast pan
    fade = [np.full((48, 64, 3), level, np.float32) for level in np.linspace(0, 1, 20)]
    assert scene_cuts(grey_thumbnail(frame) for frame in fade) == []
    # A flickering light changes every frame by more than a cut's jump, every frame alike: no cut.
    flicker = [(frame * (0.7 if number % 2 else 1.0)).astype(np.uint8)
               for number, frame in enumerate(pan(CONTENT, 12, 0.01))]
    changes = [np.abs(grey_thumbnail(a) - grey_thumbnail(b)).mean() for a, b in zip(flicker, flicker[1:])]
    assert min(changes) > CUT_JUMP
    assert scene_cuts(grey_thumbnail(frame) for frame in flicker) == []


def test_a_thumbnail_is_the_frames_mean_grey_on_a_coarse_grid():
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, 32:] = 255
    thumbnail = grey_thumbnail(rgb, side=4)
    assert thumbnail.shape == (4, 4)
    assert np.allclose(thumbnail[:, :2], 0) and np.allclose(thumbnail[:, 2:], 1, atol=1e-3)
