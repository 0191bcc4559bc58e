"""stylize_frames(): a clip restyled frame by frame without flicker (Ruder, Dosovitskiy and Brox,
*Artistic style transfer for videos*, 2016).

Restyled one by one, each frame's optimisation lands in another local minimum and the strokes boil.
So:

1. The first frame is restyled as a still (api.py): the plan, coarse to fine.
2. For each frame after it, the motion from the frame before is measured on the input frames at the
   working size (motion.py: DIS optical flow, and where it is reliable by the forward-backward check),
   on the CPU, in a thread, while the device still optimises the frame before.
3. The previous result, moved along that motion, is where the frame starts wherever the motion is
   reliable; elsewhere (disoccluded, on a motion boundary, come in at a border) it starts from the
   content frame recoloured to the painting's palette (colour statistics matched).
4. Only the working size is optimised, with schedule.frame_iterations (it starts near its answer),
   then the detail scales of a full-resolution plan as a still's; every scale's loss adds the temporal
   term: the change from the moved previous result where the motion is reliable (optimize.Objective).
   With preserve_colors "luminance" the result's colours are the content frame's, so the term looks at
   the luminance alone.

Frames are read, restyled and handed on one at a time: only the frame before (its input and its
result as handed on) is kept, so memory stays flat over any length of clip. The previous result is
taken as handed on, rounded to 8 bits, so a run resumed from the frames it wrote continues exactly as
the uninterrupted run would have.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

import numpy as np
import torch

from ..contract.errors import InputError
from ..contract.progress import Progress, ProgressCallback, Reporter
from ..contract.schedule import frame_steps
from ..contract.settings import Settings
from .api import TRUST_ELAPSED_AFTER, Run, finished_picture, optimize_pyramid, start_run, to_tensor
from .calibrate import learn_from_run
from .color import match_color_statistics
from .imageio import Picture, resize_rgb
from .motion import Motion, motion_between, warp_sharp
from .optimize import TemporalTarget
from .plan import Scale, predicted



@dataclass
class Previous:
    """The frame before: its input and its result as handed on (what a resumed run reads back)."""
    content: Picture
    result: Picture


def following_scales(scales: tuple[Scale, ...], settings: Settings) -> tuple[Scale, ...]:
    """Step 4's scales, from the first frame's plan."""
    return tuple(frame_steps(scales, settings.iterations, settings.quality))


def predicted_frame_seconds(first: Run) -> tuple[float, float]:
    """The first frame's predicted seconds and each other frame's (step 4's scales), one calibration."""
    rest = predicted(following_scales(first.plan.scales, first.settings), first.calibration, len(first.styles))
    return first.plan.predicted_seconds, rest


def rounded(picture: Picture) -> Picture:
    """The picture as 8 bits per channel hold it (a written frame)."""
    return Picture(np.round(picture.rgb * 255) / np.float32(255))


def stylize_frames(frames: Iterable[Picture], styles: list[Picture], settings: Settings,
                   progress: ProgressCallback | None = None, count: int | None = None,
                   previous: Previous | None = None,
                   regions: list[Picture | None] | None = None) -> Iterator[Picture]:
    """Restyle `frames` (all one size) after `styles`, yielding each result as soon as it is done.

    `count` (the number of frames, where known) makes the progress a whole clip's: "frame" events, and
    "optimize" events with the clip's fraction and time left. `previous` continues a clip whose earlier
    frames are done: the last done frame's input and result. `regions`: each style's region, the same
    in every frame (regions.py).
    """
    report = Reporter(progress)
    clip = ClipProgress(report, count)
    frames = iter(frames)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="motion") as motion_thread:
        if previous is None:
            first = next(frames, None)
            if first is None:
                raise InputError("the clip has no frames")
            run = start_run(first, styles, settings, Reporter(clip.inner), regions)
            clip.planned(run, *predicted_frame_seconds(run))
            result = finished_picture(run, optimize_pyramid(run))
            previous = Previous(first, rounded(result))
            yield result
            clip.frame_done()  # once the caller has taken it (written it)
        else:
            run = start_run(previous.content, styles, settings, Reporter(clip.inner), regions)
            clip.planned(run, 0.0, predicted_frame_seconds(run)[1])
        working = following_scales(run.plan.scales, settings)
        run.plan = replace(run.plan, scales=working)
        run.total_cost = max(1, sum(scale.pixels * scale.iterations for scale in working))
        working_size = (working[0].width, working[0].height)
        frame = next(frames, None)
        motion = None if frame is None else motion_thread.submit(measured_motion, previous.content, frame,
                                                                  working_size)
        while frame is not None:
            following = next(frames, None)
            moved = motion.result()
            if following is not None:  # measured on the CPU while this frame is optimised
                motion = motion_thread.submit(measured_motion, frame, following, working_size)
            result = restyled_following(run, frame, previous, moved, settings)
            previous = Previous(frame, rounded(result))
            yield result
            clip.frame_done()
            frame = following
        if settings.resolution != "preview":
            learn_from_run(run.calibration, clip.total_seconds, time.perf_counter() - clip.started)


def measured_motion(previous: Picture, current: Picture, size: tuple[int, int]) -> Motion:
    if previous.size != current.size:
        raise InputError(f"the clip's frames differ in size: {previous.size[0]}x{previous.size[1]} and then "
                         f"{current.size[0]}x{current.size[1]}")
    return motion_between(resize_rgb(previous.rgb, size), resize_rgb(current.rgb, size))


def restyled_following(run: Run, frame: Picture, previous: Previous, motion: Motion,
                       settings: Settings) -> Picture:
    """Steps 3 and 4 for one frame after the first."""
    run.content = frame
    run.started = time.perf_counter()
    first = run.plan.scales[0]
    size = (first.width, first.height)
    moved = warp_sharp(resize_rgb(previous.result.rgb, size), motion.backward)
    reliable = motion.reliable[..., None]
    # What the motion does not bring starts from the content frame in the painting's colours: in the
    # photo's own, a few iterations leave it a photo (the style loss is global: a small patch of it
    # pulls little), and the next frames would hold it so.
    fresh = match_color_statistics(resize_rgb(frame.rgb, size), moved).clip(0, 1)
    start = moved * reliable + fresh * (1 - reliable)
    weight = settings.temporal_weight

    def temporal_at(scale: Scale) -> TemporalTarget | None:
        if weight == 0:
            return None
        here = motion.resized((scale.width, scale.height))
        target = warp_sharp(resize_rgb(previous.result.rgb, (scale.width, scale.height)), here.backward)
        device = run.plan.device
        return TemporalTarget(to_tensor(target, device), torch.from_numpy(here.reliable)[None, None].to(device),
                              weight, settings.preserve_colors == "luminance")

    result = optimize_pyramid(run, start=start.astype(np.float32), temporal_at=temporal_at)
    return finished_picture(run, result)


class ClipProgress:
    """A clip's progress: each frame's run reports as a still's, weighted by its predicted seconds in the
    whole clip (the first frame, coarse to fine, costs several of the others)."""

    def __init__(self, report: Reporter, count: int | None):
        self.report, self.count = report, count
        self.done = 0
        self.done_seconds = 0.0
        self.started = time.perf_counter()

    def planned(self, run: Run, first_seconds: float, following_seconds: float) -> None:
        """`first_seconds` 0: the clip is resumed, all its frames are following ones."""
        self.first_seconds, self.following_seconds = first_seconds, following_seconds
        frames = self.count or 1
        self.total_seconds = (first_seconds or following_seconds) + (frames - 1) * following_seconds
        count = f"{self.count} frames" if self.count else "a clip"
        self.report.plan(f"{run.plan.describe().rsplit('; about', 1)[0]}; {count}: about "
                         f"{self.total_seconds / 60:.1f} min", self.total_seconds)

    def frame_seconds(self) -> float:
        return self.first_seconds if self.done == 0 and self.first_seconds else self.following_seconds

    def fraction(self, within_frame: float) -> float:
        if not self.count:
            return within_frame
        return min(1.0, (self.done_seconds + within_frame * self.frame_seconds()) / max(self.total_seconds, 1e-9))

    def time_left(self, fraction: float) -> float | None:
        elapsed = time.perf_counter() - self.started
        if not self.count:
            return None
        if fraction >= TRUST_ELAPSED_AFTER:
            return elapsed * (1 - fraction) / fraction
        return max(0.0, self.total_seconds - elapsed)

    def frame_done(self) -> None:
        self.done_seconds += self.frame_seconds()
        self.done += 1
        fraction = self.fraction(0.0)
        self.report.frame(self.done, self.count or 0, fraction, self.time_left(fraction))

    def inner(self, event: Progress) -> None:
        """A frame's own events: its plan is the clip's (said once), its iterations count in the clip."""
        if event.stage != "optimize":
            return
        fraction = self.fraction(event.fraction)
        self.report.callback(replace(event, fraction=fraction, eta_s=self.time_left(fraction),
                                     frame=self.done + 1, frames=self.count or 0))
