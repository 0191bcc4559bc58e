"""stylize_clip(): a clip restyled on a Ray cluster, safe to interrupt and resume as a run here is.

1. The clip is cut into chunks (chunks.py), at its scene cuts and into pieces of equal work for the
   workers; the plan is kept in the work folder's record (engine/clipjob.py's `.NAME.frames/run.json`),
   so a resumed run cuts the clip as the interrupted one did, whatever the cluster has now.
2. The client reads the clip once, in order, and hands each chunk's frames (8 bits per channel) to
   the cluster; a worker restyles them with the temporal mode (workers.py) and sends them back.
3. Each chunk's frames are written into the work folder as it comes back (`chunk_C_FRAME.png`, then
   `chunk_C.json` once all are there): an interrupted run keeps every finished chunk, and the same
   command run again restyles only the others.
4. With all chunks back, each output frame is made in order from its chunk (a rename) or, at a seam,
   from the two chunks' frames cross-faded (chunks.blended), as `frame_N.png`, and the chunk files it
   came from go: frames 0..N-1 present means those are final, so an interruption here loses nothing
   either. Then the output is written atomically as a run here writes it (engine/clipjob.assemble).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import ray

from ..contract.errors import InputError
from ..contract.paths import write_atomically
from ..contract.progress import ProgressCallback, Reporter
from ..contract.settings import Settings
from ..engine.clipjob import FRAME_NAME, RECORD, assemble, checked_clip_job, fresh_work_folder, restyled_frame
from ..engine.clips import Clip
from ..engine.imageio import Picture, eight_bit, from_eight_bit
from ..engine.saving import save_picture
from .board import ClusterProgress, Part
from .chunks import MIN_PIECE, Chunk, ChunkPlan, blended, grey_thumbnail, plan_chunks, scene_cuts
from .run import Cluster, on_cluster, ready, run_tasks

CHUNK_FRAME = "chunk_{:04d}_{:06d}.png"
CHUNK_DONE = "chunk_{:04d}.json"


def stylize_clip(address: str, source: str, styles: list[Picture], output: str, settings: Settings,
                 progress: ProgressCallback | None = None, span: tuple[int, int | None] = (0, None),
                 style_sources: tuple[str, ...] = (), regions: list[Picture | None] | None = None,
                 workers: int | None = None, chunk_frames: int | None = None) -> Path:
    """engine/clipjob.stylize_clip on the Ray cluster at `address` (host:port, ray://host:port or
    auto), with one worker per GPU or CPU core of it, or `workers`; scenes are cut into pieces of at most
    `chunk_frames` frames where given (else the clip is shared out over the workers). Returns the
    output's path."""
    if chunk_frames is not None and chunk_frames < MIN_PIECE:
        raise InputError(f"--chunk-frames {chunk_frames}: a chunk is at least {MIN_PIECE} frames long")
    job = checked_clip_job(source, styles, output, settings, span, style_sources, regions)
    clip, start, stop, work, record = job.clip, job.start, job.stop, job.work, job.record
    report = Reporter(progress)
    with on_cluster(address, settings, workers) as cluster:
        plan = recorded_plan(work, record)
        if plan is None:  # cut while the workers start (each loads torch and VGG19)
            plan = new_plan(work, record, clip, (start, stop), len(cluster.workers), chunk_frames)
        ready(cluster)
        composed = frames_composed(work, plan.count)
        finished = {chunk.index for chunk in plan.chunks if chunk_finished(work, plan, chunk, composed)}
        wanted = [chunk for chunk in plan.chunks if chunk.index not in finished]
        report.plan(in_words(plan, cluster, len(finished)))
        counted = ClusterProgress(report, {chunk.index: Part(chunk.restyled, chunk.own_stop - chunk.own_start)
                                           for chunk in plan.chunks}, len(cluster.workers), finished)
        shared = (ray.put(styles), ray.put(regions))

        def keep(result: tuple[int, dict[int, np.ndarray]]) -> None:
            save_chunk(work, *result)
            counted.finish(result[0])

        run_tasks(cluster, chunk_tasks(plan, wanted, FrameReader(clip, start, stop), shared, settings), keep,
                  counted)
    compose(work, plan, composed)
    report.save(str(job.output))
    assemble(work, job.output, job.kind, clip, (start, stop))
    return job.output


def in_words(plan: ChunkPlan, cluster: Cluster, finished: int) -> str:
    cuts = f" ({len(plan.cuts)} scene cut{'s' if len(plan.cuts) != 1 else ''})" if plan.cuts else ""
    chunks = len(plan.chunks)
    done = f"; {finished} done before" if finished else ""
    return (f"{plan.count} frames in {chunks} chunk{'s' if chunks != 1 else ''}{cuts} on "
            f"{cluster.description}{done}")


def recorded_plan(work: Path, record: dict) -> ChunkPlan | None:
    """The plan of the interrupted run of the same clip, styles and settings, if the work folder has one."""
    try:
        recorded = json.loads((work / RECORD).read_text())
        plan = ChunkPlan.from_json(recorded.pop("cluster"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return plan if recorded == json.loads(json.dumps(record)) else None


def new_plan(work: Path, record: dict, clip: Clip, span: tuple[int, int], workers: int,
             longest: int | None) -> ChunkPlan:
    """The clip cut for `workers` workers (chunks.py), recorded in a new work folder (one of another
    run is replaced, as a run here replaces it)."""
    cuts = scene_cuts(grey_thumbnail(frame.rgb) for frame in clip.frames(*span))
    plan = plan_chunks(span[1] - span[0], cuts, workers, longest)
    fresh_work_folder(work, {**record, "cluster": plan.to_json()})
    return plan


def frames_composed(work: Path, count: int) -> int:
    """The output frames made before (step 4): the first ones, without a gap."""
    done = 0
    while done < count and (work / FRAME_NAME.format(done)).is_file():
        done += 1
    return done


def chunk_finished(work: Path, plan: ChunkPlan, chunk: Chunk, composed: int) -> bool:
    """Whether the chunk is needed no more: all its frames were saved, or all were made into the output's."""
    needed = [frame for frame in plan.delivered(chunk) if frame >= composed]
    if not needed:
        return True
    return (work / CHUNK_DONE.format(chunk.index)).is_file() and all(
        (work / CHUNK_FRAME.format(chunk.index, frame)).is_file() for frame in needed)


class FrameReader:
    """The clip's frames span[0]..span[1]-1 read once, in order, as 8-bit RGB, and handed out a chunk
    at a time (chunks taken in order of their lowest frame): only the frames of the chunk at hand are
    held."""

    def __init__(self, clip: Clip, start: int, stop: int):
        self.frames = clip.frames(start, stop)
        self.next = 0
        self.held: dict[int, np.ndarray] = {}
        self.size: tuple[int, int] | None = None

    def take(self, low: int, high: int) -> list[np.ndarray]:
        self.held = {number: frame for number, frame in self.held.items() if number >= low}
        while self.next <= high:
            picture = next(self.frames)
            if self.size is None:
                self.size = picture.size
            elif picture.size != self.size:  # as the temporal mode says it: the chunks never see it
                raise InputError(f"the clip's frames differ in size: {self.size[0]}x{self.size[1]} and then "
                                 f"{picture.size[0]}x{picture.size[1]}")
            if self.next >= low:
                self.held[self.next] = eight_bit(picture.rgb)
            self.next += 1
        return [self.held[number] for number in range(low, high + 1)]


def chunk_tasks(plan: ChunkPlan, chunks: list[Chunk], reader: FrameReader, shared: tuple, settings: Settings
                ) -> Iterator:
    """One task per chunk, its frames read only when the task is handed out."""
    styles, regions = shared
    for chunk in sorted(chunks, key=lambda chunk: chunk.low):
        frames = reader.take(chunk.low, chunk.high)
        yield (lambda worker, board, chunk=chunk, frames=frames: worker.restyle_chunk.remote(
            asdict(chunk), frames, plan.delivered(chunk), styles, settings, regions, board))


def save_chunk(work: Path, index: int, frames: dict[int, np.ndarray]) -> None:
    """Step 3: the chunk's frames, then the record that it is complete."""
    for number, rgb in frames.items():
        save_picture(from_eight_bit(rgb), work / CHUNK_FRAME.format(index, number))
    write_atomically(work / CHUNK_DONE.format(index), json.dumps({"frames": sorted(frames)}))


def compose(work: Path, plan: ChunkPlan, composed: int) -> None:
    """Step 4: frame_N.png for every frame from `composed` on, each from its chunk or its seam's two."""
    for frame in range(composed, plan.count):
        target = work / FRAME_NAME.format(frame)
        sources = [(work / CHUNK_FRAME.format(index, frame), share) for index, share in plan.sources(frame)]
        if len(sources) == 1:
            os.replace(sources[0][0], target)
            continue
        (before, _), (after, weight) = sources
        save_picture(from_eight_bit(blended(restyled_frame(before), restyled_frame(after), weight)), target)
        for path, _ in sources:
            path.unlink()
    for chunk in plan.chunks:
        (work / CHUNK_DONE.format(chunk.index)).unlink(missing_ok=True)
