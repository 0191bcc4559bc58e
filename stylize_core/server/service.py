"""The engine as a server: torch imported, the device initialised, the weights loaded and style
targets cached, so that every run after the first starts optimising at once, for every client.

    stylize serve                            this user's server on this computer (a Unix socket;
                                             on Windows the loopback port, with a token)
    stylize serve --listen HOST:PORT         for other computers: TLS and a token

Clients send pixels, never paths: a request carries its images as bytes and gets the result
back as bytes (docs/protocol.md, contract/protocol.py). Requests wait in one queue and run one at a
time (jobs.py); a queued client hears how many runs are ahead of it. A client that leaves withdraws
its request: dropped if it is queued, stopped at its next progress event if it runs. Every read has
a deadline and every message a size limit (connection.py); no request, however malformed, ends the
server. Where it listens is listeners.py's, who gets a connection admission.py's, and the command
line cli.py's.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sys
import threading

from ..contract.protocol import PROTOCOL, PayloadBudget
from .admission import Admission
from .connection import Connection
from .jobs import Runner, Scheduler, log
from .listeners import Listener

POLL_INTERVAL = 0.5
"""How often an accept loop checks the idle timeout and whether it is asked to stop, in seconds."""


class Server:
    """The listeners, the queue with its runner, and who is connected; serve_forever until stopped
    (stop(), SIGTERM) or idle for `idle_timeout` seconds (0: never)."""

    def __init__(self, listeners: list[Listener], device: str, idle_timeout: float, max_queue: int,
                 max_request_bytes: int, max_buffered_bytes: int | None = None, memory_limit_mb: int | None = None):
        self.listeners = listeners
        self.scheduler = Scheduler(max_queue)
        self.runner = Runner(self.scheduler, device)
        self.admission = Admission()
        self.payloads = PayloadBudget(max_buffered_bytes or 2 * max_request_bytes)
        self.idle_timeout = idle_timeout
        self.max_request_bytes = max_request_bytes
        self.fixed_memory_limit_mb = memory_limit_mb
        self.stopping = threading.Event()
        self.acceptors = [Acceptor(self, listener) for listener in listeners]

    def memory_limit_mb(self) -> int:
        """The memory a run may plan for: the server's --memory-limit-mb, else its share of what is
        free now (plan.py). A request may ask for less, never for more."""
        if self.fixed_memory_limit_mb:
            return self.fixed_memory_limit_mb
        from ..engine.device import pick_device
        from ..engine.plan import memory_budget
        from ..contract.settings import Settings
        return max(1, memory_budget(pick_device(self.runner.device), Settings()) // 2**20)

    def pong(self) -> dict:
        """The answer to a ping: the protocol, whether warm, the queue and the connections."""
        return {"stage": "pong", "protocol": PROTOCOL, "pid": os.getpid(), "warm": self.runner.warm.is_set(),
                **self.scheduler.state(), **self.admission.state(), "threads": threading.active_count(),
                "buffered_bytes": self.payloads.held}

    def serve_forever(self) -> int:
        """Warm up in the background, say "ready" on stdout, and accept on every listener (one
        socketserver accept loop each, the first in this thread) until stopped or idle; the
        listeners are closed (their files removed) on the way out. Returns the exit status, 0."""
        self.runner.start()
        print(json.dumps({"stage": "ready", "pid": os.getpid(),
                          "addresses": [listener.address.public() for listener in self.listeners],
                          "address_files": [listener.address_file and str(listener.address_file)
                                            for listener in self.listeners]}), flush=True)
        others = [threading.Thread(target=acceptor.serve_forever, args=(POLL_INTERVAL,), name="accept", daemon=True)
                  for acceptor in self.acceptors[1:]]
        for thread in others:
            thread.start()
        try:
            if self.acceptors:
                self.acceptors[0].serve_forever(POLL_INTERVAL)
            return 0
        finally:
            self.stop()
            for thread in others:
                thread.join()
            self.close()

    def idle_too_long(self) -> bool:
        """No connection, nothing queued or running, and nothing arrived for idle_timeout seconds."""
        quiet = self.admission.state()["connections"] == 0
        return bool(self.idle_timeout) and quiet and self.scheduler.idle_for() > self.idle_timeout

    def start_connection(self, sock: socket.socket, listener: Listener) -> None:
        """Admit a new connection (pushing out the oldest silent one over the bounds, admission.py)
        and serve it in a thread of its own."""
        sock.setblocking(True)
        if sock.family != getattr(socket, "AF_UNIX", None):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = sock.getpeername()[0]
        else:
            peer = "unix"
        try:
            ident = self.admission.admit(peer, sock)
        except OSError:  # out of descriptors: this one cannot be served
            sock.close()
            return
        self.scheduler.touch()
        connection = Connection(self, sock, listener, ident)
        try:
            threading.Thread(target=connection.serve, name="connection", daemon=True).start()
        except RuntimeError:  # no thread to be had: this one cannot be served
            self.admission.leave(ident, False)
            sock.close()

    def stop(self) -> None:
        """End every accept loop within POLL_INTERVAL; safe from any thread, an accept loop's own
        included (socketserver's shutdown waits for the loop, so it is asked from a thread of its own)."""
        if not self.stopping.is_set():
            self.stopping.set()
            threading.Thread(target=lambda: [acceptor.shutdown() for acceptor in self.acceptors],
                             name="stop", daemon=True).start()

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


class Acceptor(socketserver.BaseServer):
    """One listener's accept loop, socketserver's: a selector on the listening socket, polled every
    POLL_INTERVAL. The socket is the listener's (listeners.py made it, or systemd handed it over),
    not one socketserver binds; each connection it accepts goes to Server.start_connection."""

    def __init__(self, server: Server, listener: Listener):
        super().__init__(listener.address.public(), None)
        self.service = server
        self.listener = listener

    def fileno(self) -> int:
        return self.listener.sock.fileno()

    def get_request(self) -> tuple[socket.socket, object]:
        return self.listener.sock.accept()

    def process_request(self, request: socket.socket, client_address) -> None:
        self.service.start_connection(request, self.listener)

    def handle_error(self, request: socket.socket, client_address) -> None:
        """A connection that could not even be started (its peer gone at once, say): one line, and on."""
        log(f"a connection on {self.listener.address.public()} could not be started: {sys.exc_info()[1]}")

    def shutdown_request(self, request: socket.socket) -> None:
        """A connection refused before its thread started: closed (Connection closes its own)."""
        request.close()

    def service_actions(self) -> None:
        if self.service.idle_too_long():
            self.service.stop()
