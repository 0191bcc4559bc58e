"""The client's side of every run on a cluster: joined, workers started, tasks handed out, results
taken as they come, failures said in one line, and on an interruption the cluster's tasks stopped.

Which worker runs which task is Ray's (ActorPool: the next task goes to the next free worker); the
client only keeps a few tasks ready beyond the workers, so that a long clip is not read into memory
whole before the first chunk starts.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import ray
from ray.util.actor_pool import ActorPool

from ..contract.errors import StylizeError
from ..contract.settings import Settings
from .board import ClusterProgress, ProgressBoard
from .connect import connected, first_line
from .workers import TASK_RETRIES, checked_versions, start_workers, stop_workers

POLL_S = 0.5
"""How often the client reads the workers' progress while it waits."""

Task = Callable[[Any, Any], "ray.ObjectRef"]
"""A task given a worker and the run's ProgressBoard: the call that starts it there."""


@dataclass
class Cluster:
    workers: list
    description: str
    """The workers in words: "4 workers (a GPU each)"."""
    board: Any


@contextlib.contextmanager
def on_cluster(address: str, settings: Settings, workers: int | None) -> Iterator[Cluster]:
    """The cluster at `address` with the run's workers (one per GPU or CPU core, or `workers`) and its
    progress board. However the block ends (done, failed, interrupted), the workers are stopped, with
    whatever they run: the chunks saved so far stay for the next run."""
    with connected(address):
        started, description = start_workers(settings, workers)
        board = ProgressBoard.remote()
        try:
            yield Cluster(started, description, board)
        finally:
            stop_workers([*started, board])


def ready(cluster: Cluster) -> None:
    """Wait until the workers run; a cluster whose engine is another version is refused."""
    with StopSignals() as stops:
        try:
            checked_versions(cluster.workers, stops.check)
        except ray.exceptions.RayError as error:
            raise failure(error) from None


def run_tasks(cluster: Cluster, tasks: Iterable[Task], on_result: Callable[[Any], None],
              progress: ClusterProgress) -> None:
    """Run every task on the cluster's workers, passing each result to on_result as it comes (in the
    order they finish), and the workers' progress to `progress` meanwhile."""
    pool = ActorPool(cluster.workers)
    tasks = iter(tasks)
    ahead = len(cluster.workers) + 1
    running = 0

    def hand_out() -> None:
        nonlocal running
        while running < ahead:
            task = next(tasks, None)
            if task is None:
                return
            pool.submit(lambda worker, start: start(worker, cluster.board), task)
            running += 1

    with StopSignals() as stops:
        hand_out()
        while pool.has_next():
            try:
                result = pool.get_next_unordered(timeout=POLL_S)
            except TimeoutError:
                stops.check()
                progress.update(posts(cluster.board))
                continue
            except ray.exceptions.RayError as error:
                raise failure(error) from None
            running -= 1
            on_result(result)
            stops.check()
            hand_out()


class StopSignals:
    """The stop signals (Ctrl+C, SIGTERM, SIGHUP, SIGQUIT) noted while the client waits on Ray, and acted
    on by check() or at the block's end: their handler runs then, in Python. Raised inside Ray's wait
    (C++), the handler's exception would come out as a SystemError instead of stopping the run as it
    should. Signals left to the system (SIG_DFL) or ignored stay so."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")

    def __enter__(self) -> "StopSignals":
        self.noted: list[int] = []
        self.handlers: dict[int, Callable] = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                number = getattr(signal, name, None)
                handler = None if number is None else signal.getsignal(number)
                if callable(handler):
                    self.handlers[number] = handler
        self.note_them()
        return self

    def note_them(self) -> None:
        self.noted = []
        for number in self.handlers:
            signal.signal(number, lambda signum, frame: self.noted.append(signum))

    def restore(self) -> None:
        for number, handler in self.handlers.items():
            signal.signal(number, handler)

    def check(self) -> None:
        """Run the handler of the first stop signal that came, if one did (as a rule it raises)."""
        if self.noted:
            self.restore()
            self.handlers[self.noted[0]](self.noted[0], None)
            self.note_them()  # a handler that did not stop the run: keep noting

    def __exit__(self, kind, value, traceback) -> None:
        self.restore()
        if self.noted and kind is None:
            self.handlers[self.noted[0]](self.noted[0], None)


def posts(board) -> dict:
    try:
        return ray.get(board.read.remote(), timeout=POLL_S)
    except (ray.exceptions.RayError, TimeoutError):  # progress is not worth failing a run for
        return {}


def failure(error: Exception) -> StylizeError:
    """A task's failure as one line: the engine's own error as it is, a worker lost too often or a
    crash in a few words. The chunks and pictures done are kept for the next run."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, StylizeError):
        return cause
    if isinstance(error, ray.exceptions.RayActorError):
        return StylizeError(f"a worker of the cluster was lost {TASK_RETRIES + 1} times on the same task "
                            f"({first_line(error)}); what is done is kept: run the same command again")
    if cause is not None:
        return StylizeError(f"a worker of the cluster failed: {type(cause).__name__}: {first_line(cause)}")
    return StylizeError(f"the cluster failed: {first_line(error)}")
