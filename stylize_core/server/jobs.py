"""The queue of runs and the one thread that runs them: jobs wait in order of arrival, run one at a
time on the device, and each sends its messages back through its outbox. A job whose client left is
dropped if it waits and stopped at its next progress event if it runs; whatever a run raises, the
next one still runs.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..contract.errors import StylizeError, host_out_of_memory
from ..contract.settings import OPTIONS
from ..contract.progress import Progress

if TYPE_CHECKING:  # importing them would import numpy and PIL: `stylize serve --help` answers without
    from ..contract.settings import Settings
    from ..engine.imageio import Picture


LOG_LOCK = threading.Lock()


def log(message: str) -> None:
    """One line on stderr per request's step: who asked, what waited, what ran and how it ended.
    Written whole under a lock: the connections' threads and the runner log at the same time."""
    now = time.time()
    with LOG_LOCK:
        sys.stderr.write(f"stylize serve: {time.strftime('%H:%M:%S', time.localtime(now))}"
                         f".{int(now * 1000) % 1000:03d} {message}\n")
        sys.stderr.flush()


def changed_settings(settings) -> str:
    """The settings that differ from the defaults, as name=value: what a request asked for."""
    changed = [f"{option.name}={getattr(settings, option.name)}" for option in OPTIONS
               if getattr(settings, option.name) != option.default]
    return " ".join(changed) or "the defaults"


class ClientGone(Exception):
    """The client closed its connection or asked to cancel: its run stops."""


class Busy(Exception):
    """The queue is full; `ahead` runs would come before this one."""

    def __init__(self, ahead: int):
        super().__init__(f"the server is busy with {ahead} runs ahead and queues no more: try again later")
        self.ahead = ahead


@dataclass(eq=False)
class Job:
    """One client's run: what to stylize, and the messages waiting to go back to it. Jobs are
    compared by identity: two clients asking for the same run are still two runs (comparing
    their fields would compare the pixels, which numpy refuses)."""
    settings: Settings
    contents: list[Picture]
    """The content, or a clip's frames."""
    styles: list[Picture]
    name: str = ""
    """"request N from PEER", for the log."""
    clip: bool = False
    """The contents are a clip's frames, restyled in order with temporal consistency (frames.py)."""
    regions: list[Picture | None] | None = None
    """Each style's region mask (None: the rest of the layer); None: no regions (regions.py)."""
    pictures: bool = False
    """A still's client also wants the picture on the way (api.Sketches: a preview)."""
    outbox: "queue.Queue[tuple[dict, bytes]]" = field(default_factory=queue.Queue)
    withdrawn: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def send(self, message: dict, payload: bytes = b"") -> None:
        self.outbox.put((message, payload))

    def progress(self, event) -> None:
        """The engine's progress callback: passes events on, and stops the run of a client that left."""
        if self.withdrawn.is_set():
            raise ClientGone()
        self.send(event.fields())

    def fail(self, error: StylizeError) -> None:
        """Report a failure: queued for the client if it is still there, never raising. The event
        carries the error's reason and option (errors.py) besides its one line and exit status."""
        event = Progress("error", message=" ".join(str(error).split()), exit_code=error.exit_code).fields()
        self.send({**event, "reason": error.reason, "option": error.option})

    def finish(self, code: int) -> None:
        self.send({"stage": "exit", "code": code})
        self.finished.set()


class Scheduler:
    """The queue: runs one job at a time, in order of arrival; knows how many runs are ahead of each."""

    def __init__(self, max_queue: int):
        self.max_queue = max_queue
        self.pending: list[Job] = []
        self.running: Job | None = None
        self.runs = 0
        self.requests = 0
        self.changed = threading.Condition()
        self.last_activity = time.monotonic()

    def put(self, job: Job) -> int:
        with self.changed:
            ahead = len(self.pending) + (self.running is not None)
            if len(self.pending) >= self.max_queue:
                raise Busy(ahead)
            self.requests += 1
            job.name = f"request {self.requests} {job.name}"
            self.pending.append(job)
            self.last_activity = time.monotonic()
            self.changed.notify_all()
            return ahead

    def ahead_of(self, job: Job) -> int:
        with self.changed:
            if job not in self.pending:
                return 0
            return self.pending.index(job) + (self.running is not None)

    def withdraw(self, job: Job) -> None:
        job.withdrawn.set()
        with self.changed:
            if job in self.pending:
                self.pending.remove(job)
                job.finished.set()
                self.changed.notify_all()

    def take(self) -> Job:
        with self.changed:
            while not self.pending:
                self.changed.wait()
            self.running = self.pending.pop(0)
            self.changed.notify_all()
            return self.running

    def touch(self) -> None:
        """Something arrived: the idle timeout counts from now."""
        with self.changed:
            self.last_activity = time.monotonic()

    def count_run(self) -> None:
        with self.changed:
            self.runs += 1

    def done(self) -> None:
        with self.changed:
            self.running = None
            self.last_activity = time.monotonic()
            self.changed.notify_all()

    def state(self) -> dict:
        with self.changed:
            return {"running": self.running is not None, "queued": len(self.pending), "runs": self.runs}

    def idle_for(self) -> float:
        with self.changed:
            if self.running is not None or self.pending:
                return 0.0
            return time.monotonic() - self.last_activity


# --- the runner: one run at a time on the device --------------------------------------------------------

class Runner:
    """The one thread that runs the queue's jobs on the device, after warming up."""

    def __init__(self, scheduler: Scheduler, device: str):
        self.scheduler = scheduler
        self.device = device
        self.warm = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="runner", daemon=True).start()

    def serve_forever(self) -> None:
        self.warm_up()
        while True:
            job = self.scheduler.take()
            try:
                if not job.withdrawn.is_set():  # a client that left while queued is never run
                    self.scheduler.count_run()
                    job.started.set()
                    log(f"{job.name}: running")
                    run_job(job)
            except BaseException as error:  # noqa: BLE001 - whatever one job raises, the next still runs
                log(f"{job.name}: the runner caught {type(error).__name__}: {error}")
                job.fail(StylizeError(f"the server failed: {type(error).__name__}: {error}"))
                job.finish(1)
            finally:
                job.finished.set()
                self.scheduler.done()

    def warm_up(self) -> None:
        """Pay the start-up costs (torch, the device, the weights) before the first request needs them."""
        from ..engine.device import pick_device
        from ..engine.api import cached_network
        from ..contract.settings import Settings
        defaults = Settings()
        try:
            cached_network(defaults.weights, defaults.pooling, str(pick_device(self.device)))
        except Exception as error:  # e.g. no GPU: each run then says so itself, and the queue still runs
            log(f"warm-up failed: {type(error).__name__}: {error}")
        self.warm.set()


def results_of(job: Job):
    """The job's results as they are done: one picture, or a clip's frames one by one."""
    from ..engine.api import stylize_picture
    from ..engine.frames import stylize_frames
    if job.clip:
        return stylize_frames(iter(job.contents), job.styles, job.settings, job.progress, count=len(job.contents),
                              regions=job.regions)
    on_picture = (lambda picture: send_picture(job, picture, "picture")) if job.pictures else None
    return [stylize_picture(job.contents[0], job.styles, job.settings, job.progress, job.regions, on_picture)]


def send_result(job: Job, result, frame: int | None) -> None:
    """One result's pixels to the client (a clip's: numbered from 1, sent as soon as each is done)."""
    send_picture(job, result, "result", {} if frame is None else {"frame": frame})


def send_picture(job: Job, picture, stage: str, extra: dict | None = None) -> None:
    """A picture's pixels to the client: a "result", or a "picture" on the way to it."""
    from ..engine.imageio import npy_bytes
    data = npy_bytes(picture)
    if job.withdrawn.is_set():
        raise ClientGone()
    shape = [picture.rgb.shape[0], picture.rgb.shape[1], 3 if picture.alpha is None else 4]
    job.send({"stage": stage, "shape": shape, **(extra or {})}, data)


def run_job(job: Job) -> None:
    """Run one job to its end: the result, or one error message, then the exit status. Nothing it
    raises leaves it: a failure is reported to the client if the client is still there."""
    started = time.perf_counter()
    try:
        for number, result in enumerate(results_of(job), start=1):
            send_result(job, result, number if job.clip else None)
        job.send(Progress("done", seconds=round(time.perf_counter() - started, 2)).fields())
        code = 0
    except ClientGone:
        log(f"{job.name}: stopped, its client left")
        code = 130
    except StylizeError as error:
        job.fail(error)
        code = error.exit_code
    except MemoryError:
        error = host_out_of_memory()
        job.fail(error)
        code = error.exit_code
    except Exception as error:  # the server outlives any run's failure
        traceback.print_exc(file=sys.stderr)
        job.fail(StylizeError(f"the server failed: {type(error).__name__}: {error}"))
        code = 1
    if code not in (0, 130) and job.withdrawn.is_set():
        log(f"{job.name}: failed after its client left")
    log(f"{job.name}: finished, exit status {code}, {time.perf_counter() - started:.1f} s")
    job.finish(code)
