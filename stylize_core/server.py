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
import os
import queue
import secrets
import select
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .client import (HEADER_TIMEOUT, HEARTBEAT_INTERVAL, LOOPBACK_FILE, LOOPBACK_HOSTS, MAX_REQUEST_BYTES,
                     PROTOCOL, Address, Channel, ProtocolError, default_socket_path, peer_uid, state_folder,
                     unix_sockets_work)
from .errors import InputError, StylizeError
from .options import BY_NAME, OPTIONS
from .progress import Progress, Reporter

if TYPE_CHECKING:  # importing them would import numpy and PIL: `stylize serve --help` answers without
    from .imageio import Picture
    from .settings import Settings

DEFAULT_MAX_QUEUE = 8
MAX_CONNECTIONS = 32
"""Connections served at once (queued clients included); more are told the server is busy."""
SEND_TIMEOUT = 60.0
"""A client that takes nothing from its connection for this long is given up (its run stopped)."""
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


@dataclass
class Job:
    """One client's run: what to stylize, and the messages waiting to go back to it."""
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
            finally:
                job.finished.set()
                self.scheduler.done()

    def warm_up(self) -> None:
        """Pay the start-up costs (torch, the device, the weights) before the first request needs them."""
        from .device import pick_device
        from .engine import cached_network
        from .settings import Settings
        defaults = Settings()
        try:
            cached_network(defaults.weights, defaults.pooling, str(pick_device(self.device)))
        except Exception as error:  # e.g. no GPU: each run then says so itself, and the queue still runs
            log(f"warm-up failed: {type(error).__name__}: {error}")
        self.warm.set()


def run_job(job: Job) -> None:
    from .engine import stylize_picture
    from .imageio import npy_bytes
    report = Reporter(job.progress)
    started = time.perf_counter()
    try:
        result = stylize_picture(job.content, job.styles, job.settings, report.callback)
        data = npy_bytes(result)
        job.send({"stage": "result", "shape": [result.rgb.shape[0], result.rgb.shape[1],
                                                3 if result.alpha is None else 4]}, data)
        report.done(time.perf_counter() - started)
        code = 0
    except ClientGone:
        log(f"{job.name}: stopped, its client left")
        code = 130
    except StylizeError as error:
        report.error(" ".join(str(error).split()), error.exit_code)
        code = error.exit_code
    except MemoryError:
        report.error("out of memory: use a smaller --max-size", 3)
        code = 3
    except Exception as error:  # the server outlives any run's failure
        traceback.print_exc(file=sys.stderr)
        job.send({"stage": "error", "message": f"the server failed: {type(error).__name__}: {error}",
                  "exit_code": 1})
        code = 1
    log(f"{job.name}: finished, exit status {code}, {time.perf_counter() - started:.1f} s")
    job.finish(code)


# --- requests -------------------------------------------------------------------------------------------

def settings_from_request(values, n_styles: int):
    """Settings from a request's {option name: value}: known options only, none that names a file."""
    from .settings import Settings
    if not isinstance(values, dict):
        raise InputError("settings must be a JSON object of option names and values")
    for name in values:
        if name not in BY_NAME:
            raise InputError(f"unknown option {name!r}: the options are {', '.join(o.name for o in OPTIONS)}")
        if BY_NAME[name].names_a_file:
            raise InputError(f"option {name!r} names a file on the server and cannot be sent: the server uses "
                             "its own")
    return Settings(**values).validate(n_styles)


def decode_images(sizes, payload: bytes, memory_limit: int | None):
    from .imageio import load_picture_bytes
    if not isinstance(sizes, list) or len(sizes) < 2 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        raise InputError("images must list the byte counts of the content and at least one style image")
    if sum(sizes) != len(payload):
        raise InputError(f"the images' byte counts add up to {sum(sizes)}, but {len(payload)} bytes came")
    pictures, start = [], 0
    for number, size in enumerate(sizes):
        what = "content image" if number == 0 else "style image" if len(sizes) == 2 else f"style image {number}"
        pictures.append(load_picture_bytes(payload[start:start + size], what, memory_limit))
        start += size
    return pictures[0], pictures[1:]


class Connection:
    """One client's connection: its request read within the limits, its job queued, its messages sent."""

    def __init__(self, server: "Server", sock: socket.socket, listener: "Listener"):
        self.server = server
        self.sock = sock
        self.listener = listener
        self.channel = Channel(sock)

    def serve(self) -> None:
        try:
            self.serve_request()
        except (OSError, EOFError):
            pass  # the client vanished; nothing to tell it
        except Exception:  # the server outlives any connection's failure
            traceback.print_exc(file=sys.stderr)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def serve_request(self) -> None:
        deadline = time.monotonic() + HEADER_TIMEOUT
        if self.listener.kind == "unix" and peer_uid(self.sock) not in (None, os.getuid()):
            self.refuse("this server serves only its own user", "peer", drain=True)
            return
        if self.listener.tls:
            if not self.handshake():
                return
        try:
            header = self.channel.read_header(deadline, HEADER_TIMEOUT)
            if header.get("protocol") != PROTOCOL:
                self.refuse(f"this server speaks protocol {PROTOCOL}, the client {header.get('protocol', 1)}: "
                            "install the same version on both sides", "version", drain=True)
                return
            if self.listener.token and not hmac.compare_digest(str(header.get("token", "")).encode(),
                                                               self.listener.token.encode()):
                self.refuse("wrong or missing token: copy the server's address again from its output", "token",
                            drain=True)
                return
            op = header.get("op")
            if op == "ping":
                self.channel.send({"stage": "pong", "protocol": PROTOCOL, "pid": os.getpid(),
                                   "warm": self.server.runner.warm.is_set(), **self.server.scheduler.state()})
                return
            if op != "stylize":
                self.refuse(f"unknown op {op!r} (ping or stylize)", "request", drain=True)
                return
            payload = self.channel.read_payload(header, self.server.max_request_bytes, HEADER_TIMEOUT)
        except ProtocolError as error:
            self.refuse(f"bad request: {error}", error.reason, drain=True)
            return
        try:
            content, styles = decode_images(header.get("images"), payload, self.server.memory_limit)
            settings = settings_from_request(header.get("settings", {}), len(styles))
        except InputError as error:
            self.refuse(" ".join(str(error).split()), "input")
            return
        del payload
        self.run(Job(settings, content, styles, name=f"from {self.peer()}"))

    def handshake(self) -> bool:
        self.sock = self.listener.tls.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        self.sock.settimeout(HEADER_TIMEOUT)
        try:
            self.sock.do_handshake()
        except (ssl.SSLError, OSError):
            return False  # not TLS, or too slow: nothing can be said to it
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
            self.sock.settimeout(SEND_TIMEOUT)
            self.channel.send({"stage": "accepted", "protocol": PROTOCOL, "ahead": ahead})
            self.pump(job, ahead)
        finally:
            scheduler.withdraw(job)  # nothing left to do when it finished; stops it when the client left
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
            self.channel.send(message, [payload] if payload else [])
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
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0.05)
        try:
            self.sock.recv(1)
        except (ssl.SSLWantReadError, socket.timeout):
            return False  # part of a TLS record, not yet a message
        except OSError:
            return True
        finally:
            self.sock.settimeout(timeout)
        return True

    def peer(self) -> str:
        if self.listener.kind == "unix":
            return f"uid {peer_uid(self.sock)}"
        host, port = self.sock.getpeername()[:2]
        return f"{host}:{port}"

    def refuse(self, message: str, reason: str, drain: bool = False, ahead: int | None = None) -> None:
        """Say why, in one error message, and close. `drain`: the client may still be sending; read
        what comes for a moment, so that closing does not reset the connection under our reply."""
        try:
            log(f"refused {self.peer()}: {reason}: {message}")
        except OSError:
            pass  # the peer is gone already
        reply = {"stage": "error", "message": message, "exit_code": 2, "reason": reason}
        if ahead is not None:
            reply["ahead"] = ahead
        try:
            self.sock.settimeout(HEADER_TIMEOUT)
            self.channel.send(reply)
            self.channel.send({"stage": "exit", "code": 2})
            if drain:
                if not isinstance(self.sock, ssl.SSLSocket):
                    self.sock.shutdown(socket.SHUT_WR)
                self.sock.settimeout(1.0)
                until = time.monotonic() + 2.0
                while time.monotonic() < until and self.sock.recv(1 << 20):
                    pass
        except OSError:
            pass


# --- listeners ------------------------------------------------------------------------------------------

@dataclass
class Listener:
    sock: socket.socket
    kind: str
    """"unix" (peers checked by user id) or "tcp" (a token required)."""
    address: Address
    token: str = ""
    tls: ssl.SSLContext | None = None
    owned_paths: list = field(default_factory=list)
    """Files to remove at exit: our socket, our loopback file."""
    lock: object = None


def private_folder(folder: Path) -> Path:
    """Create a folder only we can enter; refuse one that another user owns."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if os.name == "posix":
        if info.st_uid != os.getuid():
            raise SystemExit(f"stylize serve: {folder} belongs to another user")
        if info.st_mode & 0o077:
            os.chmod(folder, 0o700)
    return folder


def hold_lock(path: Path):
    """A lock held for the server's life; None when another server holds it. Whether a socket file
    is stale is decided by this lock, not by connecting to it: a live server with a full accept
    backlog answers no probe either, and must not be replaced."""
    import fcntl
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def unix_listener(path: Path) -> Listener | None:
    private_folder(path.parent)
    lock = hold_lock(path.with_name(path.name + ".lock"))
    if lock is None:
        return None
    if os.path.lexists(path):
        path.unlink()  # stale: its server died without cleaning up (it would hold the lock)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(64)
    return Listener(sock, "unix", Address("unix", path=str(path)), owned_paths=[path], lock=lock)


def private_file(path: Path, make) -> str:
    """The text of a file only we may read, made by make() the first time (by whichever of two
    servers starting at once comes first: both then read the same)."""
    private_folder(path.parent)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        write_private(temporary, make())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    info = path.stat()
    if os.name == "posix" and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        raise SystemExit(f"stylize serve: {path} belongs to another user or others may read it: remove it")
    return path.read_text(encoding="utf-8").strip()


def write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text + "\n")
    os.replace(temporary, path)


def server_token() -> str:
    """This user's server token: random, kept in a file only the user can read."""
    return private_file(state_folder() / "token", lambda: secrets.token_urlsafe(32))


def tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name == "posix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


def loopback_listener(port: int) -> Listener:
    """127.0.0.1 with a token; the port and token are written where this user's clients look."""
    token = server_token()
    sock = tcp_socket("127.0.0.1", port)
    port = sock.getsockname()[1]
    record = state_folder() / LOOPBACK_FILE
    write_private(record, json.dumps({"port": port, "token": token, "pid": os.getpid(), "protocol": PROTOCOL}))
    return Listener(sock, "tcp", Address("tcp", host="127.0.0.1", port=port, token=token), token=token,
                    owned_paths=[record])


def network_listener(host: str, port: int, tls: bool) -> Listener:
    token = server_token()
    sock = tcp_socket(host, port)
    port = sock.getsockname()[1]
    public = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if not tls:
        return Listener(sock, "tcp", Address("tcp", host=public, port=port, token=token), token=token)
    context, fingerprint = tls_context(state_folder() / "tls")
    return Listener(sock, "tcp", Address("tls", host=public, port=port, token=token, fingerprint=fingerprint),
                    token=token, tls=context)


def tls_context(folder: Path) -> tuple[ssl.SSLContext, str]:
    """The server's TLS context and its certificate's SHA-256 fingerprint; a self-signed
    certificate is made on first start (selfsigned.py) and kept, so that clients can pin it."""
    import hashlib
    from .selfsigned import make_self_signed
    certificate, key = folder / "cert.pem", folder / "key.pem"
    if not (certificate.exists() and key.exists()):
        private_folder(folder)
        pem_certificate, pem_key = make_self_signed("stylize-core server")
        write_private(key, pem_key.strip())
        write_private(certificate, pem_certificate.strip())
    private_file(key, lambda: "")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    der = ssl.PEM_cert_to_DER_cert(certificate.read_text(encoding="ascii"))
    return context, hashlib.sha256(der).hexdigest()


def activated_listeners() -> list[Listener]:
    """Sockets handed over by systemd (socket activation: LISTEN_PID, LISTEN_FDS, from fd 3)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    listeners = []
    for descriptor in range(3, 3 + int(os.environ.get("LISTEN_FDS", "0"))):
        sock = socket.socket(fileno=descriptor)
        if sock.family == getattr(socket, "AF_UNIX", None):
            listeners.append(Listener(sock, "unix", Address("unix", path=sock.getsockname())))
        else:
            token = server_token()
            host, port = sock.getsockname()[:2]
            listeners.append(Listener(sock, "tcp", Address("tcp", host=host, port=port, token=token), token=token))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return listeners


# --- the server ----------------------------------------------------------------------------------------

class Server:
    def __init__(self, listeners: list[Listener], device: str, idle_timeout: float, max_queue: int,
                 max_request_bytes: int, memory_limit: int | None = None):
        self.listeners = listeners
        self.scheduler = Scheduler(max_queue)
        self.runner = Runner(self.scheduler, device)
        self.idle_timeout = idle_timeout
        self.max_request_bytes = max_request_bytes
        self.memory_limit = memory_limit
        self.connections = 0
        self.connections_lock = threading.Lock()

    def serve_forever(self) -> int:
        self.runner.start()
        print(json.dumps({"stage": "ready", "pid": os.getpid(), "addresses": [str(l.address) for l in self.listeners]}),
              flush=True)
        by_socket = {listener.sock: listener for listener in self.listeners}
        try:
            while True:
                readable, _, _ = select.select(list(by_socket), [], [], 1.0)
                for sock in readable:
                    try:
                        connection, _ = sock.accept()
                    except OSError:
                        continue
                    self.start_connection(connection, by_socket[sock])
                with self.connections_lock:
                    quiet = self.connections == 0
                if self.idle_timeout and quiet and self.scheduler.idle_for() > self.idle_timeout:
                    return 0
        finally:
            self.close()

    def start_connection(self, sock: socket.socket, listener: Listener) -> None:
        sock.setblocking(True)
        if sock.family != getattr(socket, "AF_UNIX", None):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.connections_lock:
            full = self.connections >= MAX_CONNECTIONS
            if not full:
                self.connections += 1
        if full:
            Connection(self, sock, listener).refuse(f"the server has {MAX_CONNECTIONS} connections already: try "
                                                    "again later", "busy")
            sock.close()
            return
        self.scheduler.last_activity = time.monotonic()

        def serve() -> None:
            try:
                Connection(self, sock, listener).serve()
            finally:
                with self.connections_lock:
                    self.connections -= 1
        threading.Thread(target=serve, name="connection", daemon=True).start()

    def close(self) -> None:
        for listener in self.listeners:
            listener.sock.close()
            for path in listener.owned_paths:
                try:
                    Path(path).unlink()
                except FileNotFoundError:
                    pass
            if listener.lock:
                listener.lock.close()


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 0.0.0.0:{DEFAULT_PORT}, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylize serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the engine as a server, warm: clients (the GIMP plug-in, `stylize --server ADDRESS`) "
        "send pixels and get the result back; runs wait in one queue and run one at a time.",
        epilog="Without --socket, --loopback or --listen it listens where this user's clients look first: "
        "a Unix socket in $XDG_RUNTIME_DIR/stylize-core (Linux, macOS), or the loopback port (Windows).\n\n"
        "For another computer, --listen HOST:PORT serves TLS with a self-signed certificate made on first start; "
        "it prints the address to give the clients: tls://TOKEN@HOST:PORT#sha256=FINGERPRINT (the token lets "
        "them in, the fingerprint pins the certificate). The token, certificate and key are kept in "
        f"{state_folder()} (readable only by you). Or, without TLS, over an SSH tunnel:\n"
        f"  server:  stylize serve --listen 127.0.0.1:{DEFAULT_PORT} --no-tls\n"
        f"  client:  ssh -N -L {DEFAULT_PORT}:127.0.0.1:{DEFAULT_PORT} gpu-host   and use "
        f"tcp://TOKEN@127.0.0.1:{DEFAULT_PORT}\n\n"
        "Limits: a request's JSON line 64 KiB, sent within 10 s; its images --max-request-mb together, at 256 "
        "KiB/s at least; a client that reads nothing for 60 s is dropped (docs/protocol.md).")
    where = parser.add_mutually_exclusive_group()
    own_socket = default_socket_path() if unix_sockets_work() else "none: this system has no Unix sockets"
    where.add_argument("--socket", type=Path, metavar="PATH", help=f"listen on this Unix socket (default {own_socket})")
    where.add_argument("--loopback", action="store_true",
                       help="listen on 127.0.0.1 with a token (this user's clients find the port and token in "
                       f"{state_folder() / LOOPBACK_FILE})")
    where.add_argument("--listen", type=parse_listen, metavar="HOST:PORT",
                       help="listen for other computers: TLS and a token (PORT 0: any free one)")
    parser.add_argument("--port", type=int, default=0, metavar="N", help="with --loopback: the port (default: any free one)")
    parser.add_argument("--no-tls", action="store_true",
                        help="with --listen on a loopback address: plain TCP, for an SSH tunnel")
    parser.add_argument("--idle-timeout", type=float, default=0, metavar="S",
                        help="exit after this many seconds without a request (default 0: never)")
    device = BY_NAME["device"]
    parser.add_argument(device.cli_flag, choices=device.choices, default=device.default,
                        help="the device to initialise at start (default %(default)s)")
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, metavar="N",
                        help="runs that may wait; more are refused as busy (default %(default)s)")
    parser.add_argument("--max-request-mb", type=float, default=MAX_REQUEST_BYTES / 2**20, metavar="MB",
                        help="the most a request's images may take together, in MiB (default %(default)g)")
    return parser


def chosen_listeners(args: argparse.Namespace) -> list[Listener]:
    """The listener the options ask for; none when another server already has this user's socket."""
    if args.listen:
        return [network_listener(*args.listen, tls=not args.no_tls)]
    if args.loopback or not (args.socket or unix_sockets_work()):
        return [loopback_listener(args.port)]
    listener = unix_listener(args.socket or default_socket_path())
    return [listener] if listener else []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_tls and not (args.listen and args.listen[0] in LOOPBACK_HOSTS):
        print("stylize serve: error: --no-tls is only for --listen on 127.0.0.1 or ::1 (an SSH tunnel's end): "
              "a token must not cross a network in clear", file=sys.stderr)
        return 2
    import signal
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listeners = activated_listeners() or chosen_listeners(args)
    if not listeners:
        print(f"stylize serve: a server already listens on {args.socket or default_socket_path()}", file=sys.stderr)
        return 0
    for listener in listeners:
        print(f"stylize serve: listening on {listener.address.describe()}; clients use: {listener.address}",
              file=sys.stderr, flush=True)
    server = Server(listeners, args.device, args.idle_timeout, args.max_queue, int(args.max_request_mb * 2**20))
    try:
        return server.serve_forever()
    except KeyboardInterrupt:
        return 130
