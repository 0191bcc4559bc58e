"""stylize_clip(): a clip restyled into a video, an animation or a folder, safe to interrupt and resume.

Each restyled frame is written, atomically, as a PNG into a work folder beside the output
(`.NAME.frames/`), with a record of the run (`run.json`: the input, the styles, the settings and the
frames asked for). Interrupted in any way (Ctrl+C, SIGTERM, a crash, a full disk), the frames done stay
there; the same command run again finds the record, reads back the last frame done and continues after
it (frames.py's Previous), so no frame is restyled twice. A work folder whose record is another run's is
replaced. Once the last frame is done, the output is assembled into a temporary file beside it and
renamed into place in one step (a folder of frames: the work folder is renamed), and the work folder
goes: an output exists only complete, and nothing else is left behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..contract.errors import InputError
from ..contract.paths import write_atomically
from ..contract.progress import ProgressCallback, Reporter
from ..contract.settings import Settings
from .clips import Clip, audio_problem, output_kind, open_clip, write_animation, write_video
from .imageio import Picture, eight_bit, load_picture
from .saving import check_output, save_atomically, save_picture

RECORD = "run.json"
FRAME_NAME = "frame_{:06d}.png"


@dataclasses.dataclass(frozen=True)
class ClipJob:
    """A clip run's inputs, checked before any work: frames start..stop-1 of `clip` into `output` (of
    `kind`), its frames waiting in `work`, `record` what makes a resumed run the same run."""
    clip: Clip
    start: int
    stop: int
    output: Path
    kind: str
    work: Path
    record: dict


def checked_clip_job(source: str, styles: list[Picture], output: str, settings: Settings,
                     span: tuple[int, int | None], style_sources: tuple[str, ...],
                     regions: list[Picture | None] | None) -> ClipJob:
    """The clip opened and every input checked (the frames asked for, the output, the settings, the
    regions), or InputError."""
    clip = open_clip(source)
    start, stop = frames_asked(clip, span)
    output_path = Path(output)
    kind = output_kind(output)
    check_clip_output(output_path, kind, clip, style_sources)
    settings.validate(len(styles))
    if regions is not None:
        from .regions import checked_regions  # torch (its other half): only where there are regions
        checked_regions(regions, len(styles), next(clip.frames(start, start + 1)).size)
    return ClipJob(clip, start, stop, output_path, kind, work_folder(output_path),
                   run_record(clip, styles, settings, (start, stop), regions))


def stylize_clip(source: str, styles: list[Picture], output: str, settings: Settings,
                 progress: ProgressCallback | None = None, span: tuple[int, int | None] = (0, None),
                 style_sources: tuple[str, ...] = (), regions: list[Picture | None] | None = None) -> Path:
    """Restyle frames span[0]..span[1]-1 (0-based; None: to the end) of the clip at `source` into
    `output`; returns the output's path. `style_sources` (the styles' files, where they are files)
    are checked not to be the output; `regions`: each style's region in every frame (regions.py)."""
    from .frames import Previous, stylize_frames  # torch: loaded once the inputs are checked

    job = checked_clip_job(source, styles, output, settings, span, style_sources, regions)
    clip, start, stop, work = job.clip, job.start, job.stop, job.work
    done = frames_done(work, job.record)
    previous = None
    if done:
        previous = Previous(next(clip.frames(start + done - 1, start + done)),
                            load_picture(work / FRAME_NAME.format(done - 1), "restyled frame"))
    remaining = stop - start - done
    if remaining:
        frames = clip.frames(start + done, stop)
        restyled = stylize_frames(frames, styles, settings, progress, count=remaining, previous=previous,
                                  regions=regions)
        for number, result in enumerate(restyled, start=done):
            save_picture(Picture(result.rgb), work / FRAME_NAME.format(number))
    Reporter(progress).save(str(job.output))
    assemble(work, job.output, job.kind, clip, (start, stop))
    return job.output


def frames_asked(clip: Clip, span: tuple[int, int | None]) -> tuple[int, int]:
    """span (stop None: to the end) within the clip, or InputError where it holds no frame."""
    start, stop = span[0], clip.count if span[1] is None else min(span[1], clip.count)
    if not 0 <= start < stop:
        raise InputError(f"--frames {span[0]}:{'' if span[1] is None else span[1]} holds no frame of the "
                         f"clip's {clip.count} (frames are counted from 0)")
    return start, stop


def work_folder(output: Path) -> Path:
    """Where the frames of a clip restyled into `output` wait until it is written (the module's rule)."""
    return output.parent / f".{output.name}.frames"


def check_clip_output(output: Path, kind: str, clip: Clip, style_sources: tuple[str, ...]) -> None:
    """Refuse an output that is an input or cannot be written, before any work."""
    inputs = [Path(clip.source)] if clip.kind != "pictures" else [*clip.paths, Path(clip.source)]
    inputs += [Path(style) for style in style_sources]
    for path in inputs:
        if output.resolve() == path.resolve() or (path.exists() and output.exists() and os.path.samefile(output, path)):
            raise InputError(f"the output would overwrite the input {path}: choose another output name")
    if clip.kind == "pictures" and any(output.resolve() == path.resolve().parent for path in clip.paths):
        raise InputError(f"the output folder {output} holds the input frames: choose another folder")
    if kind == "pictures":
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise InputError(f"the output folder {output} exists and is not empty: choose a new folder name")
        if not output.parent.is_dir():
            raise InputError(f"output folder does not exist: {output.parent} (create it, or write elsewhere)")
    else:
        check_output(output.with_suffix(".png"))  # the folder is writable (the suffix is checked apart)
        problem = audio_problem(clip, output.suffix.lower()) if kind == "video" else None
        if problem:
            raise InputError(problem)


def run_record(clip: Clip, styles: list[Picture], settings: Settings, span: tuple[int, int],
               regions: list[Picture | None] | None = None) -> dict:
    """What makes two runs the same: the input (path, size, time), the styles' (and regions') pixels, the
    settings."""
    sources = clip.paths or [Path(clip.source)]
    return {"inputs": file_facts(sources),
            "styles": pixels_digest([*styles, *(region for region in regions or [] if region is not None)]),
            "settings": dataclasses.asdict(settings), "span": list(span)}


def file_facts(paths: list[Path]) -> list[list]:
    """What tells that input files changed: each one's real path, size and modification time."""
    return [[str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns] for path in paths]


def pixels_digest(pictures: list[Picture]) -> str:
    digest = hashlib.sha256()
    for picture in pictures:
        digest.update(np.ascontiguousarray(picture.rgb).tobytes())
    return digest.hexdigest()


def frames_done(work: Path, record: dict) -> int:
    """The frames the same run has written before (0 for a new run: the work folder is made afresh)."""
    if not same_run(work, record):
        fresh_work_folder(work, record)
        return 0
    done = 0
    while (work / FRAME_NAME.format(done)).is_file():
        done += 1
    return done


def remove_work_folder(work: Path) -> None:
    """Remove a work folder this module made (its record, frames, and a cluster run's chunks:
    cluster/clipjob.py); refuse anything else."""
    if not work.exists():
        return
    ours = all(entry.name == RECORD or (entry.name.startswith(("frame_", "chunk_")) and entry.suffix == ".png")
               or (entry.name.startswith("chunk_") and entry.suffix == ".json")
               or entry.name.startswith(".stylize-") for entry in work.iterdir())
    if not work.is_dir() or not ours:
        raise InputError(f"{work} holds files this program did not write: move them away and run again")
    shutil.rmtree(work)


def same_run(work: Path, record: dict) -> bool:
    """Whether the work folder holds the record of this very run (and so what it holds is kept)."""
    try:
        return json.loads((work / RECORD).read_text()) == json.loads(json.dumps(record))
    except (OSError, ValueError):
        return False


def fresh_work_folder(work: Path, record: dict, remove: Callable[[Path], None] = remove_work_folder) -> None:
    """The work folder made anew for the run of `record`; one there before is removed by `remove`,
    which refuses a folder holding what this program did not write."""
    remove(work)
    work.mkdir(mode=0o700)
    write_atomically(work / RECORD, json.dumps(record))


def restyled_frame(path: Path) -> np.ndarray:
    """A restyled frame written into the work folder, 8 bits per channel."""
    return eight_bit(load_picture(path, "restyled frame").rgb)


def restyled_frames(work: Path, count: int) -> Iterator[np.ndarray]:
    for number in range(count):
        yield restyled_frame(work / FRAME_NAME.format(number))


def assemble(work: Path, output: Path, kind: str, clip: Clip, span: tuple[int, int]) -> None:
    """The output from the work folder's frames, atomically; then the work folder goes."""
    count = span[1] - span[0]
    if kind == "pictures":
        (work / RECORD).unlink()
        if output.exists():
            output.rmdir()  # empty (check_clip_output)
        os.rename(work, output)
        return
    suffix = output.suffix.lower()
    if kind == "video":
        save_atomically(output, lambda stream: write_video(stream, suffix, restyled_frames(work, count),
                                                           clip.rate, clip, span))
    else:
        save_atomically(output, lambda stream: write_animation(stream, suffix, restyled_frames(work, count),
                                                               clip.durations(*span)))
    remove_work_folder(work)
