"""Who gets a connection to the engine server, so that nobody can lock the others out.

A connection is *unauthenticated* from accept until its peer is known (a Unix socket's user id,
at once) or its token matched (TCP: after the TLS handshake and the request's JSON line, within
HEADER_TIMEOUT). Unauthenticated connections cost the server little but a thread, and anyone who
can reach the port can open them, so they are bounded, and the bound never refuses a newcomer:

- one peer address holds at most PER_PEER_UNAUTHENTICATED of them; its oldest goes for a new one;
- all peers together hold at most MAX_UNAUTHENTICATED; the oldest of all goes for a new one.

A real client says who it is within milliseconds of connecting, so silent sockets, however many,
only push each other out. Authenticated connections are bounded by MAX_AUTHENTICATED; one over
that is told "busy" in words over its own transport (TLS included), which its client can read.
"""

from __future__ import annotations

import socket
import threading
from collections import OrderedDict

MAX_UNAUTHENTICATED = 32
PER_PEER_UNAUTHENTICATED = 8
MAX_AUTHENTICATED = 32


class Admission:
    """The server's connections: how many, in which state, and which to push out for a newcomer."""

    def __init__(self, max_unauthenticated: int = MAX_UNAUTHENTICATED,
                 per_peer: int = PER_PEER_UNAUTHENTICATED, max_authenticated: int = MAX_AUTHENTICATED):
        self.max_unauthenticated = max_unauthenticated
        self.per_peer = per_peer
        self.max_authenticated = max_authenticated
        self.lock = threading.Lock()
        self.unauthenticated: "OrderedDict[int, tuple[str, socket.socket]]" = OrderedDict()
        """Connection id -> (peer, a duplicate of its socket to shut it down with), oldest first."""
        self.authenticated = 0
        self.open = 0
        self.pushed_out = 0
        self.next_id = 0

    def admit(self, peer: str, sock: socket.socket) -> int:
        """Register a new connection (unauthenticated), pushing out the oldest silent one of its peer,
        or of all, when the bounds are reached. Returns the connection's id."""
        # A duplicate descriptor of the same socket: shutting it down wakes the connection's thread
        # whatever that thread has wrapped the socket in (TLS).
        handle = sock.dup()
        with self.lock:
            self.next_id += 1
            ident = self.next_id
            same_peer = [key for key, (who, _) in self.unauthenticated.items() if who == peer]
            if len(same_peer) >= self.per_peer:
                self._push_out(same_peer[0])
            elif len(self.unauthenticated) >= self.max_unauthenticated:
                self._push_out(next(iter(self.unauthenticated)))
            self.unauthenticated[ident] = (peer, handle)
            self.open += 1
            return ident

    def _push_out(self, ident: int) -> None:
        _, handle = self.unauthenticated.pop(ident)
        self.pushed_out += 1
        try:
            handle.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        handle.close()

    def authenticate(self, ident: int) -> str:
        """The connection proved who it is and leaves the unauthenticated bound: "ok"; "pushed-out"
        when it was pushed out meanwhile; "busy" when the authenticated ones are at their bound
        (the caller tells it so, and it leaves uncounted)."""
        with self.lock:
            entry = self.unauthenticated.pop(ident, None)
            if entry is None:
                return "pushed-out"
            entry[1].close()
            if self.authenticated >= self.max_authenticated:
                return "busy"
            self.authenticated += 1
            return "ok"

    def leave(self, ident: int, authenticated: bool) -> None:
        with self.lock:
            entry = self.unauthenticated.pop(ident, None)
            if entry is not None:
                entry[1].close()
            if authenticated:
                self.authenticated -= 1
            self.open -= 1

    def state(self) -> dict:
        with self.lock:
            return {"connections": self.open, "unauthenticated": len(self.unauthenticated),
                    "pushed_out": self.pushed_out}

