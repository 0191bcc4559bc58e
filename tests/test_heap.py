"""Large buffers freed and allocated again, as every iteration does, come back from the heap instead
of fresh pages (heap.py): counted in page faults, in a process of its own (the settings are global)."""

import subprocess
import sys
import textwrap

import pytest

from stylize_core import heap

pytestmark = pytest.mark.skipif(heap._glibc is None, reason="glibc's malloc only (Linux)")

FAULTS_OF_TWENTY_ALLOCATIONS = textwrap.dedent("""
    import contextlib, resource, sys, threading
    import torch
    from stylize_core.heap import reused_heap, share_one_heap

    in_thread, reuse, shared = sys.argv[1] == "thread", sys.argv[2] == "reuse", sys.argv[3] == "shared"

    def allocate_twenty_times():
        with reused_heap() if reuse else contextlib.nullcontext():
            for _ in range(20):
                torch.ones(16 * 2**20).sum()  # 64 MB, every page written, then freed

    if shared:
        share_one_heap()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    if in_thread:
        thread = threading.Thread(target=allocate_twenty_times)
        thread.start()
        thread.join()
    else:
        allocate_twenty_times()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")
PAGES_OF_ONE_BUFFER = 64 * 2**20 // 4096


def buffers_faulted(thread: bool, reuse: bool, shared: bool) -> float:
    """Of 20 buffers allocated, written and freed in turn, how many were faulted in page by page."""
    done = subprocess.run([sys.executable, "-c", FAULTS_OF_TWENTY_ALLOCATIONS, "thread" if thread else "main",
                           "reuse" if reuse else "plain", "shared" if shared else "own"],
                          capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout.split()[-1]) / PAGES_OF_ONE_BUFFER


def test_within_reused_heap_a_freed_buffer_is_not_faulted_again():
    assert buffers_faulted(thread=False, reuse=False, shared=False) > 18  # mapped afresh each time
    assert buffers_faulted(thread=False, reuse=True, shared=False) < 4


def test_a_thread_reuses_the_heap_only_where_threads_share_it():
    """The server's runner is a thread: its own arena would map every large buffer afresh. (In the main
    heap a thread's first few buffers are still new pages, 5 of 20 here, then they are reused.)"""
    assert buffers_faulted(thread=True, reuse=True, shared=False) > 18
    assert buffers_faulted(thread=True, reuse=True, shared=True) < 10
