"""The cluster's workers: one Ray actor per GPU (else per CPU core) that keeps the engine loaded.

An actor is a process of its own that lives for the whole run: VGG19 is loaded and the device's speed
calibrated (calibrate.py) by its first task and kept for every task after it. Ray hands the tasks to
whichever worker is free (ActorPool) and, where a worker's process dies or its node is lost, starts
the worker again (on another node if need be) and runs the task it had again (WORKER_RESTARTS,
TASK_RETRIES): nothing of that is written here.
"""

from __future__ import annotations

import os
import socket
from typing import Callable

import numpy as np
import ray

from .. import __version__
from ..contract.errors import InputError, StylizeError
from ..contract.settings import Settings
from .board import Poster
from .chunks import Chunk

WORKER_RESTARTS = -1
"""A worker whose process dies is started again, as often as it takes (a spot node reclaimed, a
worker killed by hand)..."""
TASK_RETRIES = 3
"""...but a task that took its worker down this many times more fails the run: a crash that comes
back every time (the node's memory too small for it) must end, not loop."""
WAIT_S = 0.5
"""How long the client waits on the workers at a time: a stop signal is acted on between waits."""


@ray.remote(max_restarts=WORKER_RESTARTS, max_task_retries=TASK_RETRIES)
class Restyler:
    """A worker: restyles a chunk of a clip (restyle_chunk) or a picture (restyle_picture)."""

    def __init__(self):
        import torch
        # Ray gives a worker its share of a node's cores; torch would take them all, and the workers
        # of one node would fight over every core.
        cores = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cores)))

    def describe(self) -> dict:
        import torch
        return {"host": socket.gethostname(), "pid": os.getpid(), "gpu": torch.cuda.is_available(),
                "version": __version__}

    def restyle_chunk(self, chunk_fields: dict, frames: list[np.ndarray], wanted: list[int], styles: list,
                      settings: Settings, regions: list | None, board) -> tuple[int, dict[int, np.ndarray]]:
        """The chunk's frames (8-bit RGB, frames[0] is frame chunk.low) restyled in its order with the
        temporal mode: (chunk.index, {frame: result}) for the frames in `wanted`, 8 bits per channel
        as they are written; a frame restyled twice (a settled key frame: chunks.py) keeps its second."""
        from ..engine.frames import stylize_frames
        from ..engine.imageio import eight_bit, load_picture

        chunk = Chunk(**chunk_fields)
        order = chunk.order()
        pictures = (load_picture(frames[number - chunk.low], "frame") for number in order)
        poster = Poster(board, chunk.index)
        wanted = set(wanted)
        results = {}
        restyled = stylize_frames(pictures, styles, settings, poster.on_event, count=len(order), regions=regions)
        for number, result in zip(order, restyled):
            if number in wanted:
                results[number] = eight_bit(result.rgb)
        poster.finished(len(order))
        return chunk.index, results

    def restyle_picture(self, index: int, picture, styles: list, settings: Settings, regions: list | None,
                        board):
        """(index, the picture restyled) as api.stylize_picture restyles it here."""
        from ..engine.api import stylize_picture

        poster = Poster(board, index)
        result = stylize_picture(picture, styles, settings, poster.on_event, regions)
        poster.finished(1)
        return index, result


def start_workers(settings: Settings, count: int | None) -> tuple[list, str]:
    """The run's workers (not waited for) and what they are, in words: one per GPU of the cluster
    where it has GPUs (and settings.device allows one), else one per CPU core; `count` of them where
    given."""
    resources = ray.cluster_resources()
    gpus = 0 if settings.device == "cpu" else int(resources.get("GPU", 0))
    if settings.device in ("gpu", "cuda") and not gpus:
        raise InputError(f"--device {settings.device}: the cluster has no GPU", "device")
    if gpus:
        options, capacity, kind = {"num_gpus": 1, "num_cpus": 1}, gpus, "GPU"
    else:
        options, capacity, kind = {"num_cpus": 1}, int(resources.get("CPU", 0)), "CPU core"
    wanted = capacity if count is None else count
    if wanted < 1:
        raise StylizeError(f"the cluster has no {kind} to run a worker on")
    if wanted > capacity:
        # Ray would wait for ever for the cores or GPUs that are not there.
        raise InputError(f"--workers {wanted}: the cluster has {capacity} {kind}{'s' if capacity != 1 else ''}")
    workers = [Restyler.options(**options).remote() for _ in range(wanted)]
    return workers, f"{wanted} worker{'s' if wanted != 1 else ''} ({'a GPU' if gpus else 'a CPU core'} each)"


def checked_versions(workers: list, between_waits: Callable[[], None] = lambda: None) -> None:
    """Wait for the workers to start (calling between_waits every WAIT_S); refuse a cluster that runs
    another version of the engine."""
    waiting = [worker.describe.remote() for worker in workers]
    described = []
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=WAIT_S)
        described += ray.get(done)
        between_waits()
    for facts in described:
        if facts["version"] != __version__:
            raise StylizeError(f"the cluster's node {facts['host']} runs stylize-core {facts['version']} and "
                               f"this computer {__version__}: install the same version on every node")


def stop_workers(workers: list) -> None:
    """End the workers and the tasks they run now (kill: a running task is not interrupted otherwise)."""
    for worker in workers:
        try:
            ray.kill(worker, no_restart=True)
        except Exception:  # already gone, or the cluster is: nothing left to stop
            pass
