"""stylize_batch(): many pictures restyled on a Ray cluster, one task each, into a folder.

The batch's rules are a run's here (engine/batchjob.py: the pictures of a folder or a glob, each
result under its picture's name in a new folder, a work folder that keeps the results done until all
are); only where each picture is restyled differs: the client reads the pictures a few ahead of the
workers and Ray gives each to the next free worker, whose engine stays loaded from one to the next.
"""

from __future__ import annotations

from pathlib import Path

import ray

from ..contract.progress import ProgressCallback, Reporter
from ..contract.settings import Settings
from ..engine.batchjob import BatchJob, batch_pictures
from ..engine.imageio import Picture, load_picture
from .board import ClusterProgress, Part
from .run import on_cluster, ready, run_tasks


def stylize_batch(address: str, source: str, styles: list[Picture], output: str, settings: Settings,
                  progress: ProgressCallback | None = None, workers: int | None = None,
                  memory_limit: int | None = None) -> Path:
    """engine/batchjob.stylize_batch on the Ray cluster at `address`, with one worker per GPU or CPU
    core of it, or `workers`. Returns the output's path."""
    settings.validate(len(styles))
    job = BatchJob(batch_pictures(source), Path(output), styles, settings)
    pending = job.pending()
    report = Reporter(progress)
    count = len(job.pictures)
    with on_cluster(address, settings, workers) as cluster:
        ready(cluster)
        done = count - len(pending)
        report.plan(f"{count} pictures on {cluster.description}" + (f"; {done} done before" if done else ""))
        counted = ClusterProgress(report, {index: Part(1, 1) for index in range(count)}, len(cluster.workers),
                                  set(range(count)) - set(pending))
        shared = ray.put(styles)

        def tasks():
            for index in pending:
                picture = load_picture(job.pictures[index], "content image", memory_limit)
                yield (lambda worker, board, index=index, picture=picture: worker.restyle_picture.remote(
                    index, picture, shared, settings, None, board))

        def keep(result: tuple[int, Picture]) -> None:
            job.save(*result)
            counted.finish(result[0])

        run_tasks(cluster, tasks(), keep, counted)
    report.save(str(Path(output).resolve()))
    return job.finish()
