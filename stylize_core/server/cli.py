"""`stylize serve`: its command line, and the server it starts (service.py) on the listeners it asks
for (listeners.py). Start-up errors are one line, `stylize serve: error: ...`, exit status 2."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..contract.settings import BY_NAME
from ..contract.paths import state_folder
from ..contract.protocol import LOOPBACK_FILE, LOOPBACK_HOSTS, MAX_REQUEST_BYTES, default_socket_path, unix_sockets_work
from .listeners import (Listener, StartError, activated_listeners, loopback_listener, network_listener,
                        unix_listener)
from .service import Server

DEFAULT_MAX_QUEUE = 8
DEFAULT_PORT = 8787


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
        epilog=epilog())
    add_place_arguments(parser)
    add_limit_arguments(parser)
    return parser


def epilog() -> str:
    return (
        "Without --socket, --loopback or --listen it listens where this user's clients look first: "
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


def add_place_arguments(parser: argparse.ArgumentParser) -> None:
    """Where it listens, and when it stops."""
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


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The device, and what the runs, the queue and the requests may take."""
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
