"""One client's connection to the engine server: who it is proved (a Unix peer's user id, a TLS
handshake, a TCP client's token), its request read within the protocol's limits and decoded, and
answered: a pong, a run followed to its end (its messages sent as they come, at a pace the client
may set), or one refusal in words. Nothing a client sends or fails to send ends the server.
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import select
import socket
import ssl
import sys
import time
import traceback
from typing import TYPE_CHECKING, Callable

from ..contract.errors import InputError
from ..contract.settings import BY_NAME, OPTIONS
from ..contract.progress import Progress
from ..contract.protocol import (HEADER_TIMEOUT, HEARTBEAT_INTERVAL, MIN_TRANSFER_RATE, PROTOCOL, Channel,
                                 ProtocolError, peer_uid)
from .jobs import Busy, Job, changed_settings, log
from .listeners import Listener

if TYPE_CHECKING:
    from .service import Server


# --- what a request asks for ----------------------------------------------------------------------------

def settings_from_request(values, n_styles: int, budget_mb: Callable[[], int], fixed_mb: int | None = None):
    """Settings from a request's {option name: value}: known options only, none that names a file.
    A request may ask for less memory than the server's budget (`budget_mb()`), never more; one that
    asks nothing runs with the server's --memory-limit-mb (`fixed_mb`) where it set one, else with
    the engine's own share of what is free, which is the server's budget too."""
    from ..contract.settings import Settings
    if not isinstance(values, dict):
        raise InputError("settings must be a JSON object of option names and values")
    for name in values:
        if name not in BY_NAME:
            raise InputError(f"unknown option {name!r}: the options are {', '.join(o.name for o in OPTIONS)}")
        if BY_NAME[name].names_a_file:
            raise InputError(f"option {name!r} names a file on the server and cannot be sent: the server uses "
                             "its own")
    settings = Settings(**values).validate(n_styles)
    if settings.memory_limit_mb is not None:
        settings.memory_limit_mb = min(settings.memory_limit_mb, budget_mb())
    elif fixed_mb is not None:
        settings.memory_limit_mb = fixed_mb
    return settings


def decode_images(sizes, payload: bytes, memory_limit: int | None, frames: int = 1, masks: int = 0):
    """The request's pictures: its first `frames` (a clip's frames, or the one content), the styles, and
    its last `masks` (the regions' masks)."""
    from ..engine.imageio import load_picture_bytes
    if not isinstance(sizes, list) or len(sizes) < frames + 1 + masks or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        raise InputError("images must list the byte counts of the content (or the clip's frames), at least "
                         "one style image and the regions' masks")
    if sum(sizes) != len(payload):
        raise InputError(f"the images' byte counts add up to {sum(sizes)}, but {len(payload)} bytes came")
    pictures, start, view = [], 0, memoryview(payload)
    styles = len(sizes) - frames - masks
    for number, size in enumerate(sizes):
        if number < frames:
            what = "content image" if frames == 1 else f"frame {number + 1}"
        elif number < frames + styles:
            what = "style image" if styles == 1 else f"style image {number - frames + 1}"
        else:
            what = f"region mask {number - frames - styles + 1}"
        pictures.append(load_picture_bytes(view[start:start + size], what, memory_limit))
        start += size
    return pictures[:frames], pictures[frames:frames + styles], pictures[frames + styles:]


def region_flags(header: dict) -> list[bool] | None:
    """Which styles have a region (their masks follow the styles, in order); None without regions."""
    flags = header.get("regions")
    if flags is None:
        return None
    if not isinstance(flags, list) or not all(isinstance(flag, bool) for flag in flags) or not any(flags):
        raise InputError(f"regions must be a list of true or false, one per style, some true, not "
                         f"{json.dumps(flags)[:40]}", "regions")
    return flags


def with_regions(flags: list[bool] | None, styles: list, masks: list, content_size: tuple[int, int]) -> list | None:
    """One mask or None per style, from the flags and the masks in order."""
    if flags is None:
        return None
    if len(flags) != len(styles):
        raise InputError(f"regions has {len(flags)} entries, one per style image, but the request has "
                         f"{len(styles)}", "regions")
    from ..engine.regions import checked_regions
    masks = iter(masks)
    regions = [next(masks) if flag else None for flag in flags]
    checked_regions(regions, len(styles), content_size)  # refused now, not after a wait in the queue
    return regions


def wants_pictures(header: dict) -> bool:
    """Whether a still's client wants the picture on the way ("pictures": true)."""
    pictures = header.get("pictures", False)
    if not isinstance(pictures, bool):
        raise InputError(f"pictures must be true or false, not {json.dumps(pictures)[:40]}")
    return pictures


def frame_count(header: dict) -> int | None:
    """A clip request's number of frames (its first images); None for a still."""
    frames = header.get("frames")
    if frames is None:
        return None
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames must be a count of the request's first images, not {json.dumps(frames)[:40]}")
    return frames


def protocol_problem(value) -> str | None:
    """Why a request's protocol field is not this server's, in words; None when it is."""
    if value == PROTOCOL and isinstance(value, int) and not isinstance(value, bool):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (f"this server speaks protocol {PROTOCOL}, the client {value}: install the same version on both "
                "sides")
    if value is None:
        return f"the request names no protocol (this server speaks {PROTOCOL}): the client is too old"
    return f"the request's protocol must be the number {PROTOCOL}, not {json.dumps(value)[:40]}"


class Connection:
    """One client's connection: who it is proved, its request read within the limits, its job
    queued, its messages sent at a pace the client may set (MIN_RESULT_RATE at least)."""

    def __init__(self, server: "Server", sock: socket.socket, listener: Listener, ident: int):
        self.server = server
        self.sock = sock
        self.listener = listener
        self.ident = ident
        self.channel = Channel(sock)
        self.authenticated = False
        try:
            self.peer = f"uid {peer_uid(sock)}" if listener.kind == "unix" else "{}:{}".format(*sock.getpeername()[:2])
        except OSError:
            self.peer = "a peer already gone"

    def serve(self) -> None:
        try:
            self.serve_request()
        except (OSError, EOFError, ProtocolError):
            pass  # the client vanished, or stopped reading: nothing to tell it
        except BaseException:  # noqa: BLE001 - the server outlives any connection's failure
            traceback.print_exc(file=sys.stderr)
        finally:
            self.server.admission.leave(self.ident, self.authenticated)
            try:
                self.sock.close()
            except OSError:
                pass

    def serve_request(self) -> None:
        """Prove who the client is, read its request, and answer it: a pong, a run, or one refusal."""
        deadline = time.monotonic() + HEADER_TIMEOUT  # the handshake and the JSON line together
        if not self.open_transport(deadline):
            return
        header = self.read_header(deadline)
        if header is None or not self.admit(header):
            return
        self.dispatch(header)

    def open_transport(self, deadline: float) -> bool:
        """A Unix peer is known at once: this user's only, then counted among the authenticated. A
        TLS client first completes its handshake; a TCP client proves itself by the token in its
        request's JSON line (admit)."""
        if self.listener.kind == "unix":
            if peer_uid(self.sock) not in (None, os.getuid()):
                self.refuse("this server serves only its own user", "peer", drain=True)
                return False
            return self.authenticate()
        if self.listener.tls:
            return self.handshake(deadline)
        return True

    def read_header(self, deadline: float) -> dict | None:
        """The request's JSON line, within HEADER_TIMEOUT of connecting; None when it was refused."""
        try:
            return self.channel.read_header(deadline, HEADER_TIMEOUT)
        except ProtocolError as error:
            self.refuse_protocol(error)
            return None

    def admit(self, header: dict) -> bool:
        """A TCP client's token, then its place among the authenticated; every client's protocol."""
        if self.listener.kind == "tcp":
            if not hmac.compare_digest(str(header.get("token", "")).encode(), self.listener.token.encode()):
                self.refuse("wrong or missing token: copy the server's address again from its address file",
                            "token", drain=True)
                return False
            if not self.authenticate():
                return False
        problem = protocol_problem(header.get("protocol"))
        if problem:
            self.refuse(problem, "version", drain=True)
        return not problem

    def dispatch(self, header: dict) -> None:
        """Answer the request's op: ping, or stylize (its job read, queued and followed to its end)."""
        op = header.get("op")
        if op == "ping":
            self.channel.send(self.server.pong())
        elif op != "stylize":
            self.refuse(f"unknown op {op!r} (ping or stylize)", "request", drain=True)
        else:
            job = self.receive_job(header)
            if job is not None:
                self.run(job)

    def receive_job(self, header: dict) -> Job | None:
        """The request's images, read at the pace and within the limits the server sets, decoded, and
        its settings checked: the job to queue; None when it was refused."""
        server = self.server
        try:
            payload = self.channel.read_payload(header, server.max_request_bytes, MIN_TRANSFER_RATE, server.payloads)
        except ProtocolError as error:
            self.refuse_protocol(error)
            return None
        try:
            fixed_mb = server.fixed_memory_limit_mb
            frames, flags, pictures = frame_count(header), region_flags(header), wants_pictures(header)
            contents, styles, masks = decode_images(header.get("images"), payload, fixed_mb and fixed_mb * 2**20,
                                                    frames or 1, sum(flags or []))
            regions = with_regions(flags, styles, masks, contents[0].size)
            settings = settings_from_request(header.get("settings", {}), len(styles), server.memory_limit_mb, fixed_mb)
        except InputError as error:
            self.refuse(" ".join(str(error).split()), "input", option=error.option)
            return None
        finally:
            server.payloads.give(len(payload))
        return Job(settings, contents, styles, name=f"from {self.peer}", clip=frames is not None, regions=regions,
                   pictures=pictures and frames is None)

    def refuse_protocol(self, error: ProtocolError) -> None:
        """A request that broke the protocol, was too big or too slow: refused with the error's reason."""
        self.refuse(f"bad request: {error}" if error.reason in ("request", "too-large") else str(error),
                    error.reason, drain=True)

    def authenticate(self) -> bool:
        outcome = self.server.admission.authenticate(self.ident)
        if outcome == "busy":
            self.refuse(f"the server serves {self.server.admission.max_authenticated} connections already: try "
                        "again later", "busy", drain=True)
        self.authenticated = outcome == "ok"
        return self.authenticated

    def handshake(self, deadline: float) -> bool:
        self.sock = self.listener.tls.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            self.sock.do_handshake()
        except (ssl.SSLError, OSError):
            return False  # not TLS, too slow, or pushed out for a newcomer: nothing can be said to it
        self.channel = Channel(self.sock)
        return True

    def run(self, job: Job) -> None:
        if self.client_left():  # it gave up while we read (and may run the engine itself now)
            return
        scheduler = self.server.scheduler
        try:
            ahead = scheduler.put(job)
        except Busy as busy:
            self.refuse(str(busy), "busy", ahead=busy.ahead)
            return
        log(f"{job.name}: accepted, {ahead} run{'s' if ahead != 1 else ''} ahead; {changed_settings(job.settings)}")
        try:
            self.channel.send({"stage": "accepted", "protocol": PROTOCOL, "ahead": ahead})
            self.pump(job, ahead)
        finally:
            left_mid_run = job.started.is_set() and not job.finished.is_set()
            scheduler.withdraw(job)  # nothing left to do when it finished; stops it when the client left
            if left_mid_run:
                log(f"{job.name}: its client left mid-run")
            if not job.started.is_set():
                log(f"{job.name}: withdrawn while queued, never run")

    def pump(self, job: Job, ahead: int) -> None:
        """Send the job's messages as they come; say how many runs are ahead while it waits, and
        something at least every HEARTBEAT_INTERVAL; return when it is over or the client left."""
        told = None
        last_sent = time.monotonic()
        while True:
            if self.client_left():
                return
            try:
                message, payload = job.outbox.get(timeout=0.2)
            except queue.Empty:
                if job.finished.is_set() and job.outbox.empty():
                    return
                ahead = self.server.scheduler.ahead_of(job)
                if ahead and ahead != told:
                    message, payload, told = Progress("waiting", ahead=ahead).fields(), b"", ahead
                elif time.monotonic() - last_sent > HEARTBEAT_INTERVAL:
                    message, payload = {"stage": "heartbeat"}, b""
                else:
                    continue
            try:
                self.channel.send(message, [payload] if payload else [])
            except ProtocolError as error:
                log(f"{job.name}: its client stopped reading ({error}): given up")
                return
            last_sent = time.monotonic()
            if message["stage"] == "exit":
                return

    def client_left(self) -> bool:
        """Whether the client closed its end or sent anything (after its request, a client only
        speaks to cancel)."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        self.sock.settimeout(0.05)
        try:
            self.sock.recv(1)
        except (ssl.SSLWantReadError, socket.timeout):
            return False  # part of a TLS record, not yet a message
        except OSError:
            return True
        return True

    def refuse(self, message: str, reason: str, drain: bool = False, ahead: int | None = None,
               option: str | None = None) -> None:
        """Say why, in one error message, and close. `drain`: the client may still be sending; read
        what comes for a moment, so that closing does not reset the connection under our reply."""
        log(f"refused {self.peer}: {reason}: {message}")
        reply = {"stage": "error", "message": message, "exit_code": 2, "reason": reason, "option": option}
        if ahead is not None:
            reply["ahead"] = ahead
        try:
            self.channel.send(reply)
            self.channel.send({"stage": "exit", "code": 2})
            if drain:
                if not isinstance(self.sock, ssl.SSLSocket):
                    self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(1.0)
                until = time.monotonic() + 2.0
                while time.monotonic() < until and self.sock.recv(1 << 20):
                    pass
        except (OSError, ProtocolError):
            pass
