"""The command line: `stylize CONTENT STYLE [STYLE ...] -o OUT [options]`.

Every failure ends with one line `stylize: error: ...` on stderr and a non-zero
exit status (docs/protocol.md); no output file appears unless the run succeeded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from typing import TextIO

from .errors import InputError, Interrupted, StylizeError
from .options import OPTIONS
from .progress import Reporter, json_lines, terminal_bar
from .settings import Settings

PROG = "stylize"
GROUP_ORDER = ("look", "quality and size", "engine")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise InputError(f"{message} (see {PROG} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Restyle CONTENT after one or more STYLE images (Gatys et al. neural style "
        "transfer with VGG19). Images: any format Pillow reads, or float .npy arrays (H, W, 3|4).",
        epilog=f"The engine as a server, for the GIMP plug-in and --server: {PROG} serve --help")
    parser.add_argument("content", help="the picture to restyle")
    parser.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    parser.add_argument("-o", "--output", required=True, help="output file (.png, .jpg, .tif, .webp or .npy)")
    groups = {name: parser.add_argument_group(name) for name in GROUP_ORDER}
    for option in OPTIONS:
        default = "" if option.default is None else " (default %(default)s)"
        groups[option.group].add_argument(
            option.cli_flag, dest=option.name, type=option.type, default=option.default,
            choices=option.choices or None, nargs="+" if option.many else None, metavar=metavar(option),
            help=option.help[0].lower() + option.help[1:] + default)
    output = parser.add_argument_group("output")
    output.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                        help="progress display; json prints one object per line on stdout "
                        "(default: a bar on a terminal)")
    output.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="for programs that drive the engine: stop when stdin closes")
    output.add_argument("--cleanup-dir", help="with --stop-on-stdin-eof: a folder of the caller's to "
                        "remove when the caller goes away")
    output.add_argument("--server", metavar="ADDRESS",
                        help=f"run on a server ({PROG} serve) instead of in this process: the images are sent, "
                        "the result comes back. ADDRESS as the server printed it: tls://TOKEN@HOST:PORT#sha256=..., "
                        "tcp://TOKEN@127.0.0.1:PORT or unix:PATH; 'local' for your own server on this computer")
    return parser


def metavar(option) -> str | None:
    if option.metavar or option.choices:
        return option.metavar
    return "F" if option.type is float else "N"


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(**{option.name: getattr(args, option.name) for option in OPTIONS})


def watch_stdin(cleanup_dir: str | None) -> None:
    """Exit at once when stdin reaches EOF: the program that started us is gone."""
    def wait_for_eof() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        if cleanup_dir:
            shutil.rmtree(cleanup_dir, ignore_errors=True)
        os._exit(1)
    threading.Thread(target=wait_for_eof, name="stdin-eof-watch", daemon=True).start()


def stop_on_sigterm() -> None:
    """SIGTERM stops the run like Ctrl+C does: through the same cleanup, not in the middle of a write."""
    def stop(signum, frame):
        raise Interrupted("terminated", 128 + signum)
    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from .server import main as serve
        return serve(argv[1:])
    stop_on_sigterm()
    try:
        code = execute(argv, sys.stdout, sys.stderr)
    except BrokenPipeError:
        # Whoever read our output went away; nothing left to tell them.
        os._exit(1)
    if "--stop-on-stdin-eof" in argv:
        # The stdin watcher still blocks in a read; ending the interpreter normally would
        # abort on that thread's lock. Everything is written, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def execute(argv: list[str], out: TextIO, err: TextIO) -> int:
    """One invocation: progress and errors go to out/err; the exit status is returned."""
    mode = "json" if _wants_json(argv) else "none"
    try:
        args = build_parser().parse_args(argv)
        if args.stop_on_stdin_eof:
            watch_stdin(args.cleanup_dir)
        mode = args.progress
        if mode == "auto":
            mode = "bar" if err.isatty() else "none"
        settings = settings_from_args(args).validate(len(args.styles))
        return run(args, settings, reporter(mode, out, err))
    except StylizeError as error:
        return fail(str(error), error.exit_code, mode, out, err)
    except KeyboardInterrupt:
        return fail("interrupted", 130, mode, out, err)
    except MemoryError:
        return fail("out of memory: use a smaller --max-size", 3, mode, out, err)


def _wants_json(argv: list[str]) -> bool:
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def reporter(mode: str, out: TextIO, err: TextIO) -> Reporter:
    return Reporter({"json": json_lines(out), "bar": terminal_bar(err)}.get(mode))


def run(args: argparse.Namespace, settings: Settings, report: Reporter) -> int:
    from .imageio import check_output, load_picture, save_picture

    started = time.perf_counter()
    # Everything that can be checked is checked before the expensive part.
    check_output(args.output, [args.content, *args.styles])
    memory_limit = settings.memory_limit_mb * 2**20 if settings.memory_limit_mb else None
    content = load_picture(args.content, "content image", memory_limit)
    styles = [load_picture(path, "style image", memory_limit) for path in args.styles]
    if args.server:
        result = run_on_server(args.server, content, styles, settings, report)
    else:
        # The engine (and with it torch) is imported only now, so --help and bad input answer at once.
        from .engine import stylize_picture
        result = stylize_picture(content, styles, settings, report.callback)
    output = os.path.abspath(args.output)
    report.save(output)
    save_picture(result, args.output)
    report.done(time.perf_counter() - started, output)
    return 0


def run_on_server(text: str, content, styles, settings: Settings, report: Reporter):
    """The run on a server: the pictures go as .npy bytes, progress comes back, then the result."""
    from . import client
    from .imageio import load_picture_bytes, npy_bytes
    from .progress import Progress
    for option in OPTIONS:
        if option.names_a_file and getattr(settings, option.name) is not None:
            raise InputError(f"{option.cli_flag} names a file on this computer; a server uses its own")
    try:
        address = client.local_address() if text == "local" else client.parse_address(text)
    except ValueError as error:
        raise InputError(str(error)) from None
    if address is None:
        raise StylizeError("no server runs on this computer for you: start one with: stylize serve")
    values = {option.name: getattr(settings, option.name) for option in OPTIONS
              if getattr(settings, option.name) != option.default}
    errors = []

    def on_event(event: dict) -> None:
        stage = event.get("stage")
        if stage == "error":
            errors.append(event)
        elif stage in ("waiting", "load", "plan", "optimize"):
            fields = {name: value for name, value in event.items() if name in Progress.__dataclass_fields__}
            report.callback(Progress(**fields))

    try:
        code, data = client.run_on_server(address, [npy_bytes(picture) for picture in [content, *styles]],
                                          values, on_event)
    except client.ServerError as error:
        raise StylizeError(f"server: {error}") from None
    if code != 0 or data is None:
        error = StylizeError(errors[-1]["message"] if errors else f"the server's run failed (status {code})")
        error.exit_code = code or 1
        raise error
    return load_picture_bytes(data, "the server's result", None)


def fail(message: str, code: int, mode: str, out: TextIO, err: TextIO) -> int:
    message = " ".join(message.split())
    if mode == "json":
        reporter(mode, out, err).error(message, code)
    print(f"{PROG}: error: {message}", file=err, flush=True)
    return code
