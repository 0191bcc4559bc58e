"""stylize_batch(): many pictures restyled after the same styles into a folder, safe to interrupt and resume.

The pictures are a folder's or a glob's ('shots/*.jpg'), in the order of their names; each is restyled
on its own, as `stylize PICTURE STYLE -o OUT` restyles it, and its result keeps its name (and so its
format; a GIF's becomes a PNG) in the output folder, which must be new or empty. Results are written
as they are done into a work folder beside the output (`.NAME.batch/`) with a record of the run
(`run.json`: the pictures, the styles and the settings): interrupted, the same command run again
restyles only the pictures not done (a work folder whose record is another run's is replaced). Once
all are done the work folder is renamed to the output in one step: the output exists only complete.

BatchJob is that folder's keeper; the cluster's batch (cluster/batchjob.py) uses it too.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from ..contract.errors import InputError
from ..contract.progress import Progress, ProgressCallback, Reporter
from ..contract.settings import Settings
from .clipjob import RECORD, file_facts, fresh_work_folder, pixels_digest, same_run
from .clips import PICTURE_SUFFIXES
from .imageio import Picture, load_picture
from .saving import save_picture

TRUST_PACE_AFTER = 0.05
"""Once this share of the batch is done in this session, the time left is extrapolated from its pace."""
KEPT_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".npy")
"""A result is written in its picture's format where the format holds a result as it is; else as PNG."""


def batch_pictures(source: str) -> list[Path]:
    """The pictures of a folder or a glob, sorted by name; InputError where there are none."""
    path = Path(source)
    if path.is_dir():
        found = sorted(path.iterdir())
    elif glob.has_magic(source):
        found = sorted(Path(name) for name in glob.glob(source))
    else:
        raise InputError(f"--batch takes a folder of pictures or a quoted glob ('shots/*.jpg'), not {source}")
    pictures = [p for p in found if p.is_file() and p.suffix.lower() in (*PICTURE_SUFFIXES, ".npy")]
    if not pictures:
        raise InputError(f"no pictures in {source} ({', '.join((*PICTURE_SUFFIXES, '.npy'))})")
    return pictures


def result_name(picture: Path) -> str:
    suffix = picture.suffix.lower()
    return picture.name if suffix in KEPT_SUFFIXES else picture.with_suffix(".png").name


class BatchJob:
    """A batch's output folder, its work folder and what is done (the module's rules)."""

    def __init__(self, pictures: list[Path], output: Path, styles: list[Picture], settings: Settings):
        self.pictures, self.output = pictures, output
        self.names = [result_name(picture) for picture in pictures]
        self.work = output.parent / f".{output.name}.batch"
        self.check_output()
        self.record = {"inputs": file_facts(pictures), "styles": pixels_digest(styles),
                       "settings": dataclasses.asdict(settings)}

    def check_output(self) -> None:
        """Refuse, before any work, an output folder that is taken or holds an input, and two pictures
        whose results would have one name."""
        seen: dict[str, Path] = {}
        for picture, name in zip(self.pictures, self.names):
            if name in seen:
                raise InputError(f"{seen[name]} and {picture} would both be written as {name}: "
                                 "restyle them in two batches")
            seen[name] = picture
        output = self.output
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise InputError(f"the output folder {output} exists and is not empty: choose a new folder name")
        if not output.parent.is_dir():
            raise InputError(f"output folder does not exist: {output.parent} (create it, or write elsewhere)")
        if any(output.resolve() == picture.resolve().parent for picture in self.pictures):
            raise InputError(f"the output folder {output} holds the pictures: choose another folder")

    def pending(self) -> list[int]:
        """The pictures (their indices) not done by an interrupted run of the same batch; the work
        folder is made afresh where there was none, or another run's."""
        if not same_run(self.work, self.record):
            fresh_work_folder(self.work, self.record, lambda work: self.remove_work_folder())
        return [index for index, name in enumerate(self.names) if not (self.work / name).is_file()]

    def save(self, index: int, result: Picture) -> None:
        save_picture(result, self.work / self.names[index])

    def finish(self) -> Path:
        """The output folder, complete, in one step; the work folder is gone."""
        (self.work / RECORD).unlink()
        if self.output.exists():
            self.output.rmdir()  # empty (check_output)
        os.rename(self.work, self.output)
        return self.output

    def remove_work_folder(self) -> None:
        """Remove a work folder this module made (its record and results only); refuse anything else."""
        if not self.work.exists():
            return
        names = {RECORD, *self.names}
        if not self.work.is_dir() or not all(entry.name in names or entry.name.startswith(".stylize-")
                                             for entry in self.work.iterdir()):
            raise InputError(f"{self.work} holds files this program did not write: move them away and run again")
        shutil.rmtree(self.work)


def stylize_batch(source: str, styles: list[Picture], output: str, settings: Settings,
                  progress: ProgressCallback | None = None, memory_limit: int | None = None) -> Path:
    """Restyle every picture of `source` (a folder or a glob) into the new folder `output`, one after
    another in this process; returns the output's path."""
    from .api import stylize_picture

    settings.validate(len(styles))
    job = BatchJob(batch_pictures(source), Path(output), styles, settings)
    pending = job.pending()
    counted = BatchProgress(Reporter(progress), len(job.pictures), len(job.pictures) - len(pending))
    for index in pending:
        picture = load_picture(job.pictures[index], "content image", memory_limit)
        job.save(index, stylize_picture(picture, styles, settings, counted.inner))
        counted.picture_done()
    Reporter(progress).save(str(Path(output).resolve()))
    return job.finish()


class BatchProgress:
    """A batch's progress: each picture's run reports as a still's, its fraction a share of the batch's
    (frame: the picture at hand, counted from 1), and a "frame" event follows each picture done."""

    def __init__(self, report: Reporter, count: int, done: int):
        self.report, self.count, self.done = report, count, done
        self.first_done, self.started = done, time.perf_counter()

    def fraction(self, within: float) -> float:
        return (self.done + within) / self.count

    def time_left(self, fraction: float) -> float | None:
        progressed = fraction - self.first_done / self.count
        if progressed < TRUST_PACE_AFTER:
            return None
        return (time.perf_counter() - self.started) * (1 - fraction) / progressed

    def inner(self, event: Progress) -> None:
        if event.stage == "optimize":
            fraction = self.fraction(event.fraction)
            event = replace(event, fraction=fraction, eta_s=self.time_left(fraction), frame=self.done + 1,
                            frames=self.count)
        self.report.callback(event)

    def picture_done(self) -> None:
        self.done += 1
        fraction = self.fraction(0.0)
        self.report.frame(self.done, self.count, fraction, self.time_left(fraction))
