"""The engine as a server: torch imported, the device initialised, the weights loaded and style
targets cached, so that every run after the first starts optimising at once, for every client.

    stylize serve                            this user's server on this computer (a Unix socket;
                                             on Windows the loopback port, with a token)
    stylize serve --listen HOST:PORT         for other computers: TLS and a token

Clients send pixels, never paths: a request carries its images as bytes and gets the result
back as bytes (docs/protocol.md, client.py). Requests wait in one queue and run one at a time;
a queued client hears how many runs are ahead of it. A client that leaves withdraws its request:
dropped if it is queued, stopped at its next progress event if it runs. Every read has a
deadline and every message a size limit; no request, however malformed, ends the server.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import os
import queue
import select
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .admission import Admission
from ..contract.protocol import (HEADER_TIMEOUT, HEARTBEAT_INTERVAL, LOOPBACK_FILE, LOOPBACK_HOSTS, MAX_REQUEST_BYTES,
                     MIN_TRANSFER_RATE, PROTOCOL, Channel, PayloadBudget, ProtocolError, default_socket_path, peer_uid,
                     unix_sockets_work)
from ..contract.errors import InputError, StylizeError, host_out_of_memory
from ..contract.paths import state_folder
from .listeners import (Listener, StartError, activated_listeners, loopback_listener, network_listener,
                        unix_listener)
from ..contract.options import BY_NAME, OPTIONS
from ..contract.progress import Progress

if TYPE_CHECKING:  # importing them would import numpy and PIL: `stylize serve --help` answers without
    from ..engine.imageio import Picture
    from ..contract.settings import Settings

DEFAULT_MAX_QUEUE = 8
DEFAULT_PORT = 8787


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
    content: Picture
    styles: list[Picture]
    name: str = ""
    """"request N from PEER", for the log."""
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


def run_job(job: Job) -> None:
    """Run one job to its end: the result, or one error message, then the exit status. Nothing it
    raises leaves it: a failure is reported to the client if the client is still there."""
    from ..engine.api import stylize_picture
    from ..engine.imageio import npy_bytes
    started = time.perf_counter()
    try:
        result = stylize_picture(job.content, job.styles, job.settings, job.progress)
        data = npy_bytes(result)
        if job.withdrawn.is_set():
            raise ClientGone()
        job.send({"stage": "result", "shape": [result.rgb.shape[0], result.rgb.shape[1],
                                                3 if result.alpha is None else 4]}, data)
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


# --- requests -------------------------------------------------------------------------------------------

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


def decode_images(sizes, payload: bytes, memory_limit: int | None):
    from ..engine.imageio import load_picture_bytes
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        raise InputError("images must list the byte counts of the content and at least one style image")
    if sum(sizes) != len(payload):
        raise InputError(f"the images' byte counts add up to {sum(sizes)}, but {len(payload)} bytes came")
    pictures, start, view = [], 0, memoryview(payload)
    for number, size in enumerate(sizes):
        what = "content image" if number == 0 else "style image" if len(sizes) == 2 else f"style image {number}"
        pictures.append(load_picture_bytes(view[start:start + size], what, memory_limit))
        start += size
    return pictures[0], pictures[1:]


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
        deadline = time.monotonic() + HEADER_TIMEOUT  # the handshake and the JSON line together
        if self.listener.kind == "unix":
            if peer_uid(self.sock) not in (None, os.getuid()):
                self.refuse("this server serves only its own user", "peer", drain=True)
                return
            if not self.authenticate():
                return
        elif self.listener.tls and not self.handshake(deadline):
            return
        try:
            header = self.channel.read_header(deadline, HEADER_TIMEOUT)
            if self.listener.kind == "tcp":
                if not hmac.compare_digest(str(header.get("token", "")).encode(), self.listener.token.encode()):
                    self.refuse("wrong or missing token: copy the server's address again from its address file",
                                "token", drain=True)
                    return
                if not self.authenticate():
                    return
            problem = protocol_problem(header.get("protocol"))
            if problem:
                self.refuse(problem, "version", drain=True)
                return
            op = header.get("op")
            if op == "ping":
                self.channel.send({"stage": "pong", "protocol": PROTOCOL, "pid": os.getpid(),
                                   "warm": self.server.runner.warm.is_set(), **self.server.scheduler.state(),
                                   **self.server.admission.state(), "threads": threading.active_count(),
                                   "buffered_bytes": self.server.payloads.held})
                return
            if op != "stylize":
                self.refuse(f"unknown op {op!r} (ping or stylize)", "request", drain=True)
                return
            payload = self.channel.read_payload(header, self.server.max_request_bytes, MIN_TRANSFER_RATE,
                                                self.server.payloads)
        except ProtocolError as error:
            self.refuse(f"bad request: {error}" if error.reason in ("request", "too-large") else str(error),
                        error.reason, drain=True)
            return
        try:
            fixed_mb = self.server.fixed_memory_limit_mb
            content, styles = decode_images(header.get("images"), payload, fixed_mb and fixed_mb * 2**20)
            settings = settings_from_request(header.get("settings", {}), len(styles), self.server.memory_limit_mb,
                                             fixed_mb)
        except InputError as error:
            self.refuse(" ".join(str(error).split()), "input", option=error.option)
            return
        finally:
            self.server.payloads.give(len(payload))
            del payload
        self.run(Job(settings, content, styles, name=f"from {self.peer}"))

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


# --- the server ----------------------------------------------------------------------------------------

class Server:
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

    def memory_limit_mb(self) -> int:
        """The memory a run may plan for: the server's --memory-limit-mb, else its share of what is
        free now (plan.py). A request may ask for less, never for more."""
        if self.fixed_memory_limit_mb:
            return self.fixed_memory_limit_mb
        from ..engine.device import pick_device
        from ..engine.plan import memory_budget
        from ..contract.settings import Settings
        return max(1, memory_budget(pick_device(self.runner.device), Settings()) // 2**20)

    def serve_forever(self) -> int:
        self.runner.start()
        print(json.dumps({"stage": "ready", "pid": os.getpid(),
                          "addresses": [listener.address.public() for listener in self.listeners],
                          "address_files": [listener.address_file and str(listener.address_file)
                                            for listener in self.listeners]}), flush=True)
        by_socket = {listener.sock: listener for listener in self.listeners}
        try:
            while not self.stopping.is_set():
                readable, _, _ = select.select(list(by_socket), [], [], 0.5)
                for sock in readable:
                    try:
                        connection, _ = sock.accept()
                    except OSError:
                        continue
                    self.start_connection(connection, by_socket[sock])
                quiet = self.admission.state()["connections"] == 0
                if self.idle_timeout and quiet and self.scheduler.idle_for() > self.idle_timeout:
                    return 0
            return 0
        finally:
            self.close()

    def start_connection(self, sock: socket.socket, listener: Listener) -> None:
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
        threading.Thread(target=connection.serve, name="connection", daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 0.0.0.0:{DEFAULT_PORT}, got {text!r}")
    return host, int(port)


def number_at_least(lowest: float, kind=float):
    """An argparse type: a finite number of `kind`, at least `lowest`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < lowest:
            raise argparse.ArgumentTypeError(f"expected a number of at least {lowest:g}, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylize serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the engine as a server, warm: clients (the GIMP plug-in, `stylize --server-file FILE`) "
        "send pixels and get the result back; runs wait in one queue and run one at a time.",
        epilog="Without --socket, --loopback or --listen it listens where this user's clients look first: "
        "a Unix socket in $XDG_RUNTIME_DIR/stylize-core (Linux, macOS), or the loopback port (Windows).\n\n"
        "For another computer, --listen HOST:PORT serves TLS with a self-signed certificate made on first start. "
        "The address to give the clients, tls://TOKEN@HOST:PORT#sha256=FINGERPRINT (the token lets them in, the "
        f"fingerprint pins the certificate), is written to {state_folder()}/address-PORT, readable only by you; "
        "it is never printed. Copy that file to the client and use `stylize --server-file FILE`, or put its text "
        "in the GIMP plug-in's Advanced › Engine server field. The token, certificate and key are kept in "
        f"{state_folder()}. Or, without TLS, over an SSH tunnel:\n"
        f"  server:  stylize serve --listen 127.0.0.1:{DEFAULT_PORT} --no-tls\n"
        f"  client:  ssh -N -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} gpu-host   and use the address file\n\n"
        "Limits: a request's JSON line 64 KiB, sent within 10 s of connecting; its images --max-request-mb "
        "together, at 256 KiB/s at least in every 10 s; results at 16 KiB/s at least (docs/protocol.md).")
    where = parser.add_mutually_exclusive_group()
    own_socket = default_socket_path() if unix_sockets_work() else "none: this system has no Unix sockets"
    where.add_argument("--socket", type=Path, metavar="PATH", help=f"listen on this Unix socket (default {own_socket})")
    where.add_argument("--loopback", action="store_true",
                       help="listen on 127.0.0.1 with a token (this user's clients find the port and token in "
                       f"{state_folder() / LOOPBACK_FILE})")
    where.add_argument("--listen", type=parse_listen, metavar="HOST:PORT",
                       help="listen for other computers: TLS and a token (PORT 0: any free one)")
    parser.add_argument("--port", type=number_at_least(0, int), default=0, metavar="N",
                        help="with --loopback: the port (default: any free one)")
    parser.add_argument("--no-tls", action="store_true",
                        help="with --listen on a loopback address: plain TCP, for an SSH tunnel")
    parser.add_argument("--idle-timeout", type=number_at_least(0), default=0, metavar="S",
                        help="exit after this many seconds without a request (default 0: never)")
    device = BY_NAME["device"]
    parser.add_argument(device.cli_flag, choices=device.choices, default=device.default,
                        help="the device to initialise at start (default %(default)s)")
    parser.add_argument("--max-queue", type=number_at_least(1, int), default=DEFAULT_MAX_QUEUE, metavar="N",
                        help="runs that may wait; more are refused as busy (default %(default)s)")
    parser.add_argument("--max-request-mb", type=number_at_least(0.001), default=MAX_REQUEST_BYTES / 2**20,
                        metavar="MB", help="the most a request's images may take together, in MiB (default %(default)g)")
    parser.add_argument("--max-buffered-mb", type=number_at_least(0.001), default=None, metavar="MB",
                        help="the most all requests' images being received may take at once, in MiB "
                        "(default: twice --max-request-mb)")
    parser.add_argument("--memory-limit-mb", type=number_at_least(1, int), default=None, metavar="MB",
                        help="the memory a run may plan for; a request may ask for less, never more (default: a "
                        "share of what is free when the run is asked for)")
    return parser


def chosen_listeners(args: argparse.Namespace) -> list[Listener]:
    """The listener the options ask for; none when another server already has this user's socket
    (or loopback record)."""
    if args.listen:
        return [network_listener(*args.listen, tls=not args.no_tls)]
    if args.loopback or not (args.socket or unix_sockets_work()):
        listener = loopback_listener(args.port)
    else:
        path = args.socket or default_socket_path()
        default_folder = Path(os.path.abspath(path)).parent == default_socket_path().parent
        listener = unix_listener(path, private_folder=default_folder)
    return [listener] if listener else []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_tls and not (args.listen and args.listen[0] in LOOPBACK_HOSTS):
        print("stylize serve: error: --no-tls is only for --listen on 127.0.0.1 or ::1 (an SSH tunnel's end): "
              "a token must not cross a network in clear", file=sys.stderr)
        return 2
    import signal
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        listeners = activated_listeners() or chosen_listeners(args)
    except StartError as error:
        print(f"stylize serve: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the state folder cannot be written, say
        print(f"stylize serve: error: {error.strerror or error}"
              + (f": {error.filename}" if error.filename else ""), file=sys.stderr)
        return 2
    if not listeners:
        where = "the loopback port" if args.loopback else args.socket or default_socket_path()
        print(f"stylize serve: a server of yours already listens on {where}", file=sys.stderr)
        return 0
    for listener in listeners:
        told = f"; the address with its token is in {listener.address_file}" if listener.address_file else ""
        print(f"stylize serve: listening on {listener.address.public()}{told}", file=sys.stderr, flush=True)
    max_buffered = int(args.max_buffered_mb * 2**20) if args.max_buffered_mb else None
    server = Server(listeners, args.device, args.idle_timeout, args.max_queue, int(args.max_request_mb * 2**20),
                    max_buffered, args.memory_limit_mb)
    try:
        return server.serve_forever()
    except KeyboardInterrupt:
        return 130
