"""Joining a Ray cluster as its client (the driver), with one clear line for each way that fails.

Ray itself, given an address where no cluster answers, tries again for minutes; so the address is
first tried here (a TCP connection, PROBE_TIMEOUT_S at most), and a wrong one is said at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from typing import Iterator
from urllib.parse import urlsplit

from ..contract.errors import InputError, StylizeError

PROBE_TIMEOUT_S = 5.0
JOIN_TRIES = 8
"""Ray's tries to join a cluster whose port answers (about a second each)."""
ADDRESS_FORMS = "host:port (the head node's port, 6379 unless changed), ray://host:port (Ray Client) or auto"
GUIDE = "docs/cluster.md"
TOKEN_ADVICE = (f"a cluster with token authentication takes only its own token: set RAY_AUTH_TOKEN (or "
                f"RAY_AUTH_TOKEN_PATH) to it; see {GUIDE}")


@contextlib.contextmanager
def connected(address: str) -> Iterator[None]:
    """This process joined to the Ray cluster at `address` for the block; left at its end."""
    try:
        import ray
    except ImportError:
        raise InputError("--cluster needs Ray on this computer: pip install 'stylize-core[cluster]'") from None
    probe(address)
    # ray.init sets a SIGTERM handler of its own (it exits at once); the caller's, which stops a run
    # through its cleanup as Ctrl+C does, must stay.
    kept = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    # Ray tries to join for 20 s by default, once a second, and its core logs every try on stderr (a
    # refused token too): here the tries are fewer, unseen, and a failure is said once, below.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(JOIN_TRIES))
    try:
        with stderr_unseen():
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except ray.exceptions.AuthenticationError:
        raise StylizeError(f"the Ray cluster at {address} refused this computer: {TOKEN_ADVICE}") from None
    except Exception as error:  # ConnectionError, a version mismatch (RuntimeError), and what Ray adds
        if "No node info found" in str(error):  # a driver joins through a node of its own computer
            raise StylizeError(f"this computer is not a node of the Ray cluster at {address}: run stylize on "
                               f"one of its nodes, or join through Ray Client (ray://HOST:10001); see {GUIDE}") from None
        raise StylizeError(f"cannot join the Ray cluster at {address}: {first_line(error)} (its port answers: "
                           f"is it a Ray head node's, of the same Ray version? {TOKEN_ADVICE})") from None
    finally:
        if kept is not None:
            signal.signal(signal.SIGTERM, kept)
    try:
        yield
    finally:
        ray.shutdown()


def probe(address: str) -> None:
    """Refuse at once an address no cluster can be at: malformed, a name that does not resolve, a port
    nobody listens on. "auto" (the cluster this computer runs) is left to Ray, which fails at once."""
    if address == "auto":
        return
    if "://" in address and not address.startswith("ray://"):
        raise InputError(f"--cluster {address}: give {ADDRESS_FORMS}")
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise InputError(f"--cluster {address}: give {ADDRESS_FORMS}")
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        if isinstance(error, socket.timeout):
            reason = f"no answer in {PROBE_TIMEOUT_S:.0f} s"
        raise StylizeError(f"cannot reach the Ray cluster at {address}: {reason} (start one with "
                           f"`ray start --head`; see {GUIDE})") from None


@contextlib.contextmanager
def stderr_unseen() -> Iterator[None]:
    """File descriptor 2 (where Ray's C++ core writes) goes nowhere for the block."""
    sys.stderr.flush()
    kept = os.dup(2)
    try:
        with open(os.devnull, "wb") as nowhere:
            os.dup2(nowhere.fileno(), 2)
        yield
    finally:
        os.dup2(kept, 2)
        os.close(kept)


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
