"""The workers' progress, added up on the client: "frame 812/2900 on 4 workers, ~6 min left".

Each task (a chunk of a clip, a picture of a batch) posts how far it is to a ProgressBoard, a small
actor of the run's own, at most every POST_EVERY_S and whenever a frame is done; the client reads the
board while it waits for results and reports the sum as "frame" events. A task that Ray runs again
(its worker was lost) posts from the start again, and the sum goes back by what was lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import ray

from ..contract.progress import Progress, Reporter

POST_EVERY_S = 0.5
TRUST_RATE_AFTER = 0.03
"""Once this share of the work was done in this session, the time left is extrapolated from its pace."""


@ray.remote(num_cpus=0, max_restarts=-1)
class ProgressBoard:
    """Each task's latest post: (frames done, the task's fraction done 0..1)."""

    def __init__(self):
        self.posts: dict[int, tuple[int, float]] = {}

    def post(self, key: int, done: int, fraction: float) -> None:
        self.posts[key] = (done, fraction)

    def read(self) -> dict[int, tuple[int, float]]:
        return dict(self.posts)


class Poster:
    """A task's side of the board: the engine's progress events, posted (not waited on), throttled."""

    def __init__(self, board, key: int):
        self.board, self.key = board, key
        self.done, self.fraction, self.last = 0, 0.0, 0.0

    def on_event(self, event: Progress) -> None:
        if event.stage == "frame":
            self.done = event.frame
        elif event.stage != "optimize":
            return
        self.fraction = event.fraction
        now = time.monotonic()
        if event.stage == "frame" or now - self.last >= POST_EVERY_S:
            self.last = now
            self.board.post.remote(self.key, self.done, self.fraction)

    def finished(self, done: int) -> None:
        self.board.post.remote(self.key, done, 1.0)


@dataclass(frozen=True)
class Part:
    """One task as the total counts it: the work it does (frames restyled) and the output frames it gives."""
    work: int
    frames: int


class ClusterProgress:
    """The sum of the tasks' posts as one run's "frame" events: frames of the output done, the run's
    fraction (each task weighted by its work), the time left at this session's pace, the workers."""

    def __init__(self, report: Reporter, parts: dict[int, Part], workers: int, finished: set[int] = frozenset()):
        self.report, self.parts, self.workers = report, parts, workers
        self.finished = set(finished)
        self.posts: dict[int, tuple[int, float]] = {}
        self.total_work = max(1, sum(part.work for part in parts.values()))
        self.total_frames = sum(part.frames for part in parts.values())
        self.started = time.perf_counter()
        self.first_fraction = self.fraction()
        self.said = (-1, -1.0)

    def fraction(self) -> float:
        work = 0.0
        for key, part in self.parts.items():
            share = 1.0 if key in self.finished else self.posts.get(key, (0, 0.0))[1]
            work += part.work * min(1.0, share)
        return work / self.total_work

    def frames_done(self) -> int:
        frames = 0
        for key, part in self.parts.items():
            if key in self.finished:
                frames += part.frames
            else:
                done = self.posts.get(key, (0, 0.0))[0]
                frames += min(part.frames, done * part.frames // max(1, part.work))
        return frames

    def time_left(self, fraction: float) -> float | None:
        progressed = fraction - self.first_fraction
        if progressed < TRUST_RATE_AFTER:
            return None
        return (time.perf_counter() - self.started) * (1 - fraction) / progressed

    def update(self, posts: dict[int, tuple[int, float]]) -> None:
        self.posts = posts
        self.say()

    def finish(self, key: int) -> None:
        self.finished.add(key)
        self.say()

    def say(self) -> None:
        """A "frame" event when the frames done changed, or the fraction moved by a percent."""
        frames, fraction = self.frames_done(), self.fraction()
        if frames == self.said[0] and abs(fraction - self.said[1]) < 0.01:
            return
        self.said = (frames, fraction)
        self.report.frame(frames, self.total_frames, fraction, self.time_left(fraction), workers=self.workers)
