"""A clip cut into chunks for the cluster's workers, and the chunks' frames put back in order.

Plain numpy, no Ray: what is cut where, in which order each chunk restyles its frames, and which
chunk's frame (or which blend of two) each output frame is.

The rules:

* Chunks end at scene cuts (scene_cuts: a jump in the frames' grey levels far above the motion around
  it): the temporal mode carries nothing across a cut anyway, so a chunk boundary there costs nothing.
* A scene longer than the chunk length (chunk_length: the clip shared out over the workers, within
  MIN_PIECE..MAX_PIECE frames) is cut into pieces of equal work, and the pieces are paired around a
  key frame K: the first of a pair goes backward in time from it, the second forward from the frame
  after it, and both start alike, so that the pair joins as frames restyled in one piece do.
* Starting alike: both pieces of a pair restyle K as a still, then K+1 from it. The engine is
  deterministic, so both get the same K+1. The forward piece goes on from there and shows K+1 onward;
  the backward piece restyles K again from K+1 (settle) and goes on down, showing that K and the
  frames before it. Every shown pair around the key frame is then one frame restyled from the other,
  as in one piece. The still itself is never shown: a frame after a still is painted differently from
  the still where the motion brings something new (restyled from the content frame in a few
  iterations, where the still had the whole coarse-to-fine run), and the jump from a still to the frame
  after it was 2 to 3 times a pair's usual warping error (benchmarks/cluster.py, vtest at 256 px).
* Where two pairs meet (the end of one's forward piece, the end of the next one's backward piece), two
  paintings that grew apart meet. Both pieces restyle the frames around the meeting point and the
  output cross-fades them there, so the difference is spread over that many frames instead of landing
  in one jump: BLEND_FRAMES of them, or fewer where a scene's pieces are short (at most the piece's
  length less 2). Both sides are ends of runs that have followed the motion for a while, which agree
  more than a fresh start would with either (benchmarks/cluster.py measures the seam).
* A piece left over (an odd number in a scene) goes backward from the scene's last frame L, settled
  there with the frame before it (L still, L-1, L again, L-1 again, then down); the first piece of a
  scene in one piece goes forward from the scene's first frame, its still shown, as the run on one
  computer does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

BLEND_FRAMES = 10
"""Frames cross-faded where two pairs of pieces meet (half on each side of the meeting point)."""
MIN_PIECE = 8
"""No piece of a scene is planned shorter: each piece restyles one still, and the blends need room."""
MAX_PIECE = 250
"""Scenes are cut into pieces of at most about this many frames (10 s of 25 fps video), however few the
workers: what a lost worker costs, and what a resumed run finds done, is at most about this much."""
CUT_JUMP = 0.08
"""A cut changes the mean grey level of a frame's thumbnail by at least this much (0..1)..."""
CUT_RATIO = 4.0
"""...and by this many times the median change of the frames around it (fast motion is not a cut)."""
CUT_WINDOW = 8
"""Frames on each side whose changes make that median."""
THUMBNAIL_SIDE = 32
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Chunk:
    """A piece of the clip restyled in one go by one worker (frames counted from the span's start)."""
    index: int
    key: int
    """The frame restyled first, as a still (shown only by a scene's first piece; the forward piece of a
    pair shows none of it)."""
    low: int
    high: int
    """The lowest and highest frame restyled (both included)."""
    own_start: int
    own_stop: int
    """The frames the output takes from this chunk alone: own_start..own_stop-1."""
    backward: bool
    """Restyled from the key frame down to `low`; else from the key frame up to `high`."""
    settle: int | None = None
    """The frame next to the key frame that a backward piece settles its key frame with (the module's
    rules); None (a forward piece): the key frame is restyled once, as a still."""

    def order(self) -> list[int]:
        """The frames in the order they are restyled: the key frame first (and again after `settle`),
        then away from it. A frame restyled twice keeps its second result."""
        start = [self.key, self.settle, self.key] if self.settle is not None else [self.key]
        if self.backward:
            return start + list(range(self.key - 1, self.low - 1, -1))
        return start + list(range(self.key + 1, self.high + 1))

    @property
    def restyled(self) -> int:
        return len(self.order())


@dataclass(frozen=True)
class Seam:
    """Where two pieces meet inside a scene: frames start..stop-1 are cross-faded from one to the other."""
    before: int
    after: int
    """The chunks' indices: `before` ends here (going forward), `after` ends here (going backward)."""
    start: int
    stop: int

    def weight(self, frame: int) -> float:
        """The later chunk's share of `frame`: rising evenly, never 0 or 1 inside the seam."""
        return (frame - self.start + 1) / (self.stop - self.start + 1)


@dataclass(frozen=True)
class ChunkPlan:
    count: int
    chunks: tuple[Chunk, ...]
    seams: tuple[Seam, ...] = ()
    cuts: tuple[int, ...] = ()

    def delivered(self, chunk: Chunk) -> list[int]:
        """The frames of `chunk` the output uses: its own, and its side of the seams it is in."""
        frames = set(range(chunk.own_start, chunk.own_stop))
        for seam in self.seams:
            if chunk.index in (seam.before, seam.after):
                frames.update(range(seam.start, seam.stop))
        return sorted(frames)

    def sources(self, frame: int) -> list[tuple[int, float]]:
        """The chunks output frame `frame` is taken from, with their shares (summing to 1)."""
        for seam in self.seams:
            if seam.start <= frame < seam.stop:
                weight = seam.weight(frame)
                return [(seam.before, 1 - weight), (seam.after, weight)]
        for chunk in self.chunks:
            if chunk.own_start <= frame < chunk.own_stop:
                return [(chunk.index, 1.0)]
        raise ValueError(f"frame {frame} is in no chunk of a plan of {self.count} frames")

    def to_json(self) -> dict:
        return {"count": self.count, "chunks": [asdict(chunk) for chunk in self.chunks],
                "seams": [asdict(seam) for seam in self.seams], "cuts": list(self.cuts)}

    @classmethod
    def from_json(cls, data: dict) -> "ChunkPlan":
        return cls(data["count"], tuple(Chunk(**chunk) for chunk in data["chunks"]),
                   tuple(Seam(**seam) for seam in data["seams"]), tuple(data["cuts"]))


def chunk_length(count: int, workers: int, min_piece: int = MIN_PIECE, max_piece: int = MAX_PIECE) -> int:
    """The longest piece a scene is cut into: the clip shared out evenly over the workers (every worker
    busy, each restyling as few stills as can be), within min_piece..max_piece."""
    return min(max(math.ceil(count / max(1, workers)), min_piece), max_piece)


def plan_chunks(count: int, cuts: Iterable[int], workers: int, longest: int | None = None,
                blend: int = BLEND_FRAMES, min_piece: int = MIN_PIECE, max_piece: int = MAX_PIECE) -> ChunkPlan:
    """The chunks of a clip of `count` frames with scene cuts before the frames `cuts` (the module's
    rules); `longest`, where given, is the chunk length instead of chunk_length's."""
    if count < 1:
        raise ValueError("a clip has at least one frame")
    if min_piece < 3:
        raise ValueError("a piece must have room for its still, the frame after it and a frame of its own")
    if longest is not None and longest < min_piece:
        raise ValueError(f"chunks are at least {min_piece} frames long")
    cuts = tuple(sorted({cut for cut in cuts if 0 < cut < count}))
    length = longest or chunk_length(count, workers, min_piece, max_piece)
    chunks: list[Chunk] = []
    seams: list[Seam] = []
    for start, stop in zip((0, *cuts), (*cuts, count)):
        parts = max(1, min(math.ceil((stop - start) / length), (stop - start) // min_piece))
        _add_scene(start, stop, parts, min(blend, (stop - start) // parts - 2), chunks, seams)
    return ChunkPlan(count, tuple(chunks), tuple(seams), cuts)


def _add_scene(start: int, stop: int, parts: int, blend: int, chunks: list[Chunk], seams: list[Seam]) -> None:
    """The pieces of one scene (the module's rules), appended to chunks and seams."""
    first = len(chunks)
    if parts == 1:
        chunks.append(Chunk(first, start, start, stop - 1, start, stop, backward=False))
        return
    early, late = blend // 2, blend - blend // 2  # a seam's frames before and after the meeting point
    seam_before = [i % 2 == 0 and i >= 2 for i in range(parts)]
    seam_after = [i % 2 == 1 and i + 1 < parts for i in range(parts)]
    shares_key = [i % 2 == 0 and i + 1 < parts for i in range(parts)]
    # Beyond its own frames a piece restyles: the forward piece of a pair the key frame's still (1); a
    # backward piece its key frame's still and the settle frame (2); its side of a seam.
    extra = [(1 if i % 2 else 2) + early * seam_before[i] + late * seam_after[i] for i in range(parts)]
    owns = _equal_work(stop - start, extra)
    bounds = [start]
    for own in owns:
        bounds.append(bounds[-1] + own)
    for i in range(parts):
        own_start, own_stop = bounds[i], bounds[i + 1]
        low = own_start - early * seam_before[i]
        if i % 2 == 1:  # forward from the key frame its pair shares (the last of the piece before), unsettled
            high = own_stop - 1 + late * seam_after[i]
            chunks.append(Chunk(first + i, own_start - 1, own_start - 1, high, own_start, own_stop, False))
        elif shares_key[i]:  # backward from its last frame, the pair's key frame, settled with the frame after it
            chunks.append(Chunk(first + i, own_stop - 1, low, own_stop, own_start, own_stop, True, own_stop))
        else:  # backward from the scene's last frame, settled with the frame before it
            chunks.append(Chunk(first + i, own_stop - 1, low, own_stop - 1, own_start, own_stop, True, own_stop - 2))
        if seam_before[i] and blend:
            seams.append(Seam(first + i - 1, first + i, own_start - early, own_start + late))


def _equal_work(frames: int, extra: Sequence[int]) -> list[int]:
    """Each piece's own frames, summing to `frames`, so that own + extra (the frames a piece restyles
    beyond its own) is as equal as whole frames allow."""
    target = (frames + sum(extra)) / len(extra)
    exact = [target - more for more in extra]
    owns = [math.floor(share) for share in exact]
    for i in sorted(range(len(exact)), key=lambda i: owns[i] - exact[i])[:frames - sum(owns)]:
        owns[i] += 1
    return owns


def blended(before: np.ndarray, after: np.ndarray, weight: float) -> np.ndarray:
    """A seam's frame: `after` (8 bits per channel) at `weight`, `before` at the rest."""
    mixed = before.astype(np.float32) * (1 - weight) + after.astype(np.float32) * weight
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def grey_thumbnail(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The frame's grey levels (0..1) averaged over a grid of at most side x side cells."""
    rgb = rgb.astype(np.float32) / 255 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    luma = rgb[..., :3] @ LUMA
    rows = np.linspace(0, luma.shape[0], min(side, luma.shape[0]) + 1).astype(int)
    cols = np.linspace(0, luma.shape[1], min(side, luma.shape[1]) + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(luma, rows[:-1], axis=0), cols[:-1], axis=1)
    return sums / (np.diff(rows)[:, None] * np.diff(cols)[None, :])


def scene_cuts(thumbnails: Iterable[np.ndarray]) -> list[int]:
    """The frames that start a new scene (grey_thumbnail of every frame, in order): where the mean
    change from the frame before is at least CUT_JUMP and CUT_RATIO times the median change around it."""
    changes = []
    previous = None
    for thumbnail in thumbnails:
        if previous is not None:
            changes.append(float(np.abs(thumbnail - previous).mean()))
        previous = thumbnail
    cuts = []
    for i, change in enumerate(changes):
        around = changes[max(0, i - CUT_WINDOW):i] + changes[i + 1:i + 1 + CUT_WINDOW]
        usual = float(np.median(around)) if around else 0.0
        if change >= CUT_JUMP and change >= CUT_RATIO * usual:
            cuts.append(i + 1)
    return cuts
