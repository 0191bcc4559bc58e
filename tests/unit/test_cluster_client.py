"""The cluster client's own logic, without a cluster: the workers' progress added up as one run's, and
stop signals that wait for the client to be out of Ray's wait (stylize_core/cluster/board.py, run.py)."""

from __future__ import annotations

import os
import signal

import pytest

pytest.importorskip("ray")

from stylize_core.cluster.board import ClusterProgress, Part  # noqa: E402
from stylize_core.cluster.run import StopSignals  # noqa: E402
from stylize_core.contract.errors import Interrupted  # noqa: E402
from stylize_core.contract.progress import Reporter  # noqa: E402


def test_the_workers_progress_is_added_up_by_their_work_and_the_frames_they_give():
    said = []
    # Chunk 0 restyles 13 frames for 12 of the output (its key frame is the next chunk's); chunk 1 12 for 12;
    # chunk 2 was done by an interrupted run.
    counted = ClusterProgress(Reporter(said.append), {0: Part(13, 12), 1: Part(12, 12), 2: Part(10, 10)}, 2, {2})
    assert counted.fraction() == pytest.approx(10 / 35) and counted.frames_done() == 10
    counted.update({0: (0, 0.02)})
    assert said[-1].eta_s is None  # too little done in this session to go by its pace
    counted.update({0: (13, 1.0), 1: (6, 0.5)})
    assert counted.frames_done() == 10 + 12 + 6 and counted.fraction() == pytest.approx((10 + 13 + 6) / 35)
    counted.update({0: (2, 0.1), 1: (6, 0.5)})  # chunk 0's worker was lost: its chunk starts again
    assert counted.frames_done() == 10 + 1 + 6
    counted.finish(0)
    counted.finish(1)
    last = said[-1]
    assert (last.stage, last.frame, last.frames, last.fraction, last.workers) == ("frame", 34, 34, 1.0, 2)
    assert last.eta_s == 0.0


def test_events_come_when_the_frames_done_change_or_the_fraction_moves_a_percent():
    said = []
    counted = ClusterProgress(Reporter(said.append), {0: Part(100, 100)}, 1)
    for fraction in (0.001, 0.002, 0.005, 0.0101, 0.012):
        counted.update({0: (0, fraction)})
    assert [round(event.fraction, 4) for event in said] == [0.001, 0.012]


def test_a_stop_signal_waits_for_the_check_and_then_stops_the_run_as_its_handler_says():
    def stop(signum, frame):
        raise Interrupted("terminated", 128 + signum)

    kept = signal.signal(signal.SIGTERM, stop)
    reached = []
    try:
        with pytest.raises(Interrupted):
            with StopSignals() as stops:
                os.kill(os.getpid(), signal.SIGTERM)  # inside Ray's wait, say: noted, not raised
                assert stops.noted == [signal.SIGTERM]
                reached.append("the check")
                stops.check()
                reached.append("after it")
        assert reached == ["the check"]
        assert signal.getsignal(signal.SIGTERM) is stop
        with pytest.raises(Interrupted):  # one that comes after the last check stops the run at the end
            with StopSignals():
                os.kill(os.getpid(), signal.SIGTERM)
        with StopSignals() as stops:
            stops.check()  # none came: nothing happens
    finally:
        signal.signal(signal.SIGTERM, kept)


def test_the_clusters_client_does_not_load_torch():
    """torch loads in the workers; the client only reads, cuts and writes frames (a laptop driving GPU
    machines need not spend its memory on it)."""
    import subprocess
    import sys
    program = ("import sys\nimport stylize_core.cli\nfrom stylize_core.cluster import batchjob, clipjob\n"
               "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
