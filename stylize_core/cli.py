"""The command line: `stylize CONTENT STYLE [STYLE ...] -o OUT [options]`.

CONTENT is a picture or a clip; with --batch, a folder (or a quoted glob) of pictures each restyled on
its own into the folder OUT. With --cluster ADDRESS (or $RAY_ADDRESS) the work is done by a Ray cluster
(stylize_core/cluster, docs/cluster.md) instead of this process; without it Ray is never imported.

Every failure ends with one line `stylize: error: ...` on stderr and a non-zero
exit status (docs/protocol.md); no output file appears unless the run succeeded.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from .contract.errors import InputError, Interrupted, StylizeError, host_out_of_memory
from .contract.settings import BY_NAME, OPTIONS
from .contract.progress import Reporter, json_lines, terminal_bar
from .contract.settings import Settings

PROG = "stylize"
SERVER_VARIABLE = "STYLIZE_SERVER"
CLUSTER_VARIABLE = "RAY_ADDRESS"
GROUP_ORDER = ("look", "quality and size", "clips", "engine")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise InputError(f"{message} (see {PROG} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Restyle CONTENT after one or more STYLE images (Gatys et al. neural style "
        "transfer with VGG19). Images: any format Pillow reads, or float .npy arrays (H, W, 3|4).",
        epilog=f"The engine as a server, for the GIMP plug-in and --server: {PROG} serve --help")
    parser.add_argument("content", help="the picture to restyle, or a clip: a video file, an animated GIF or "
                        "WebP, a folder of pictures or a quoted glob ('frames/*.png'); with --batch a folder "
                        "or quoted glob of pictures, each restyled on its own")
    parser.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    parser.add_argument("-o", "--output", required=True, help="output file (.png, .jpg, .tif, .webp or .npy); for a clip a video "
                        "(.mp4, .mkv, .mov, .webm, .avi), an animated .gif or .webp, or a new folder of PNG frames; "
                        "with --batch a new folder (each result keeps its picture's name)")
    groups = {name: parser.add_argument_group(name) for name in GROUP_ORDER}
    groups["look"].add_argument("--style-mask", metavar="N=MASK", type=style_mask, action="append", default=[],
                                help="paint with style image N (counted from 1) only where the picture MASK, the "
                                     "content's size, is white (grey: partly); styles without a mask paint the rest. "
                                     "Repeat for several styles")
    groups["clips"].add_argument("--frames", metavar="A:B", type=frame_span, default=(0, None),
                                 help="restyle frames A to B-1 only, counted from 0 (0:48 the first 48; 100: from "
                                      "the 101st on). An interrupted clip continues where it stopped when the "
                                      "same command is run again")
    for option in OPTIONS:
        default = "" if option.default is None else " (default %(default)s)"
        groups[option.group].add_argument(
            option.cli_flag, dest=option.name, type=option.type, default=option.default,
            choices=option.choices or None, nargs="+" if option.many else None, metavar=metavar(option),
            help=option.help[0].lower() + option.help[1:] + default)
    groups["clips"].add_argument("--batch", action="store_true",
                                 help="CONTENT is a folder or a quoted glob of pictures ('shots/*.jpg'), each restyled "
                                      "on its own into the new folder -o; interrupted, the same command continues")
    output = parser.add_argument_group("output")
    output.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                        help="progress display; json prints one object per line on stdout "
                        "(default: a bar on a terminal)")
    output.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="for programs that drive the engine: stop when stdin closes (stdin must be a "
                        "pipe from that program, kept open while the run lasts)")
    output.add_argument("--cleanup-dir", metavar="DIR", help="with --stop-on-stdin-eof: a folder the caller "
                        "made for the run in the temporary folder (mktemp -d), removed when the caller goes away")
    where = output.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="WHERE",
                       help=f"run on a server ({PROG} serve) instead of in this process: the images are sent, the "
                       "result comes back. WHERE: 'local' for your own server on this computer, or unix:PATH. A "
                       "server with a token is named by --server-file or the environment variable "
                       f"{SERVER_VARIABLE}, never here (every local user can read a command line)")
    where.add_argument("--server-file", metavar="FILE",
                       help="run on the server whose address is in FILE (only you may read it): the file the "
                       "server wrote its address to, copied here (tls://TOKEN@HOST:PORT#sha256=...)")
    where.add_argument("--cluster", metavar="ADDRESS",
                       help=f"run on a Ray cluster (pip install 'stylize-core[cluster]'; docs/cluster.md): a clip in "
                       "chunks, a batch a picture a task, on every GPU of it (else every CPU core). ADDRESS: "
                       f"host:port of its head node, ray://host:port or auto; default ${CLUSTER_VARIABLE}. "
                       "--cluster '' runs here")
    output.add_argument("--workers", metavar="N", type=positive_int,
                        help="with --cluster: use N of its GPUs (or CPU cores) instead of all")
    output.add_argument("--chunk-frames", metavar="N", type=positive_int,
                        help="with --cluster, a clip: cut its scenes into chunks of at most N frames (at least 8; "
                        "default: the clip shared out over the workers, at most 250)")
    return parser


def style_mask(text: str) -> tuple[int, str]:
    number, equals, path = text.partition("=")
    if not equals or not number.isdigit() or int(number) < 1 or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not N=MASK (N: the style image's number, from 1)")
    return int(number), path


def frame_span(text: str) -> tuple[int, int | None]:
    start, colon, stop = text.partition(":")
    try:
        span = (int(start or 0), int(stop) if stop else None)
    except ValueError:
        span = None
    if not colon or span is None or span[0] < 0 or (span[1] is not None and span[1] <= span[0]):
        raise argparse.ArgumentTypeError(f"{text!r} is not A:B with 0 <= A < B (either may be left out)")
    return span


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
    return int(text)


def metavar(option) -> str | None:
    if option.metavar or option.choices:
        return option.metavar
    return "F" if option.type is float else "N"


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(**{option.name: getattr(args, option.name) for option in OPTIONS})


STDIN_CLOSED = "stopped: stdin closed, so the program that started this run is gone"


def watch_stdin(cleanup_dir: str | None) -> None:
    """Exit at once (status 1, one line on stderr) when stdin reaches EOF: the program that started us
    is gone. A save under way leaves no temporary file (saving.abandon_saves); cleanup_dir (as
    checked_cleanup_dir returned it) is removed."""
    from .engine.saving import abandon_saves  # now: the watcher must not wait on an import the run holds

    def wait_for_eof() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        abandon_saves()
        if cleanup_dir:
            shutil.rmtree(cleanup_dir, ignore_errors=True)
        try:  # not through sys.stderr, whose lock the run's own writes may hold
            os.write(2, f"{PROG}: error: {STDIN_CLOSED}\n".encode())
        except OSError:
            pass
        os._exit(1)
    threading.Thread(target=wait_for_eof, name="stdin-eof-watch", daemon=True).start()


def check_stdin_from_a_caller() -> None:
    """--stop-on-stdin-eof is for a program that runs the engine with a pipe (or socket) as its stdin
    and keeps it open while it waits. Refuse any other stdin (a terminal, /dev/null, a file: what
    cron, nohup, systemd and CI give), and a pipe already at its end: the run would stop at once."""
    try:
        descriptor = sys.stdin.fileno()
        mode = os.fstat(descriptor).st_mode
    except (AttributeError, ValueError, OSError):
        raise InputError("--stop-on-stdin-eof needs stdin to be a pipe from the program that drives this run, "
                         "and stdin is closed: leave the option out") from None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        kind = ("a terminal" if os.isatty(descriptor) else "a device (/dev/null?)" if stat.S_ISCHR(mode)
                else "a file" if stat.S_ISREG(mode) else "not a pipe")
        raise InputError(f"--stop-on-stdin-eof needs stdin to be a pipe from the program that drives this run, "
                         f"and stdin is {kind}: leave the option out")
    # Where select takes pipes (not Windows): a pipe that reads at once is at its end or holds data,
    # which the watcher would read and drop anyway.
    if os.name == "posix" and select.select([descriptor], [], [], 0)[0] and not os.read(descriptor, 65536):
        raise InputError("--stop-on-stdin-eof: stdin is already at its end, so the run would stop at once: "
                         "leave the option out, or keep the pipe open while the run lasts")


def checked_cleanup_dir(text: str, pictures: list[str]) -> str:
    """The folder --cleanup-dir names (its real path) if removing it whole when the caller goes away
    can only be what the caller meant: a folder made for the run, as the GIMP plug-in makes its own
    (mkdtemp). Else InputError, before anything is done. The folder must be
    - a folder, not a link to one, and this user's own;
    - inside the temporary folder (tempfile.gettempdir(): $TMPDIR, else /tmp), not that folder itself;
    - private (no access for group or others, as mkdtemp makes them) when it holds the content or a
      style picture: a folder of the user's pictures that happens to lie there is never removed;
    - not the current folder, nor one that holds it."""
    where = f"--cleanup-dir {text}"
    path = os.path.abspath(text)
    try:
        info = os.lstat(path)
    except OSError as error:
        raise InputError(f"{where}: {error.strerror or error}") from None
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"{where} is a link: name the folder itself")
    if not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{where} is not a folder")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise InputError(f"{where} belongs to another user: it is not removed")
    real = os.path.realpath(path)
    temporary = os.path.realpath(tempfile.gettempdir())
    if real == temporary or not _inside(real, temporary):
        raise InputError(f"{where}: only a folder made for the run inside the temporary folder {temporary} "
                         "is removed (mktemp -d makes one)")
    try:
        current = os.getcwd()
    except OSError:  # the current folder was removed: it lies in no folder
        current = None
    if current is not None and _inside(current, real):
        raise InputError(f"{where} holds the current folder: it is not removed")
    held = [picture for picture in pictures if _inside(picture, real)]
    if held and stat.S_IMODE(info.st_mode) & 0o077:
        raise InputError(f"{where} holds the picture {held[0]} and others may read it (mode "
                         f"{stat.S_IMODE(info.st_mode):o}): only a private folder made for the run "
                         "(mktemp -d, mode 700) is removed with the pictures in it")
    return real


def _inside(path: str, folder: str) -> bool:
    """Whether path is folder or lies below it, links resolved."""
    try:
        return os.path.commonpath([os.path.realpath(path), folder]) == folder
    except ValueError:  # on different drives (Windows)
        return False


STOP_SIGNALS = {"SIGTERM": "terminated", "SIGHUP": "hung up", "SIGQUIT": "quit"}
"""The signals that stop a run like Ctrl+C does (those the platform has), and the words said for each."""


def stop_on_signals() -> None:
    """SIGTERM, SIGHUP (a closed terminal or session) and SIGQUIT (Ctrl+\\) stop the run like Ctrl+C
    does: through the same cleanup, not in the middle of a write (a save under way removes its
    temporary file). A signal that was ignored when we started stays ignored (nohup's SIGHUP)."""
    def stop(signum, frame):
        raise Interrupted(STOP_SIGNALS[signal.Signals(signum).name], 128 + signum)
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from .server.cli import main as serve
        return serve(argv[1:])
    stop_on_stdin_eof = early_options(argv).stop_on_stdin_eof  # read before a signal can stop us
    stop_on_signals()
    try:
        code = execute(argv, sys.stdout, sys.stderr)
    except BrokenPipeError:
        # Whoever read our output went away; nothing left to tell them.
        os._exit(1)
    if stop_on_stdin_eof:
        # The stdin watcher still blocks in a read; ending the interpreter normally would
        # abort on that thread's lock. Everything is written, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def execute(argv: list[str], out: TextIO, err: TextIO) -> int:
    """One invocation: progress and errors go to out/err; the exit status is returned."""
    mode = "none"
    try:  # a stop signal may come at any moment from here: Interrupted is answered below
        mode = "json" if early_options(argv).progress == "json" else "none"
        args = build_parser().parse_args(argv)
        if args.cleanup_dir is not None and not args.stop_on_stdin_eof:
            raise InputError("--cleanup-dir works only with --stop-on-stdin-eof: it names the folder to remove "
                             "when the program that started the run goes away")
        if args.stop_on_stdin_eof:
            check_stdin_from_a_caller()
            watch_stdin(checked_cleanup_dir(args.cleanup_dir, [args.content, *args.styles])
                        if args.cleanup_dir is not None else None)
        mode = args.progress
        if mode == "auto":
            mode = "bar" if err.isatty() else "none"
        settings = settings_from_args(args).validate(len(args.styles))
        return run(args, settings, reporter(mode, out, err))
    except StylizeError as error:
        return fail(in_cli_terms(error), error.exit_code, mode, out, err)
    except KeyboardInterrupt:
        return fail("interrupted", 130, mode, out, err)
    except MemoryError:
        error = host_out_of_memory()
        return fail(in_cli_terms(error), error.exit_code, mode, out, err)


def in_cli_terms(error: StylizeError) -> str:
    """The error's line with the advice in this program's words: the flag that avoids it."""
    if error.reason == "memory" and error.option in BY_NAME:
        return f"{error}: use a smaller {BY_NAME[error.option].cli_flag}"
    return str(error)


def early_options(argv: list[str]) -> argparse.Namespace:
    """The options that shape how even a wrong command line is answered (--progress json: the error
    as a JSON event) and how the process ends (--stop-on-stdin-eof), read before the full parse."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--progress")
    parser.add_argument("--stop-on-stdin-eof", action="store_true")
    try:
        return parser.parse_known_args(argv)[0]
    except argparse.ArgumentError:  # the full parse says what is wrong
        return argparse.Namespace(progress=None, stop_on_stdin_eof=False)


def reporter(mode: str, out: TextIO, err: TextIO) -> Reporter:
    return Reporter({"json": json_lines(out), "bar": terminal_bar(err)}.get(mode))


def run(args: argparse.Namespace, settings: Settings, report: Reporter) -> int:
    from .engine.imageio import load_picture
    from .engine.saving import check_output, check_output_size, save_picture

    from .engine.clips import is_clip

    started = time.perf_counter()
    cluster = cluster_address(args)
    if args.workers is not None and cluster is None:
        raise InputError(f"--workers counts a cluster's workers: it goes with --cluster (or ${CLUSTER_VARIABLE})")
    if args.chunk_frames is not None and (cluster is None or args.batch):
        raise InputError("--chunk-frames cuts a clip for a cluster: it goes with --cluster and a clip")
    if args.batch:
        return run_batch(args, settings, report, started, cluster)
    if is_clip(args.content):
        return run_clip(args, settings, report, started, cluster)
    if args.chunk_frames is not None:
        raise InputError("--chunk-frames cuts a clip; the content is a picture")
    # Everything that can be checked is checked before the expensive part.
    mask_paths = style_mask_paths(args.style_mask, len(args.styles))
    check_output(args.output, [args.content, *args.styles, *filter(None, mask_paths)])
    memory_limit = input_memory_limit(settings)
    content = load_picture(args.content, "content image", memory_limit)
    check_output_size(args.output, result_size(content.size, settings))
    styles = style_pictures(args.styles, memory_limit)
    regions = regions_of(mask_paths, memory_limit)
    address = None if cluster else server_address(args)
    if cluster:
        from .cluster.picture import stylize_picture as stylize_on_cluster
        result = stylize_on_cluster(cluster, content, styles, settings, report.callback, regions)
    elif address:
        result = run_on_server(address, content, styles, settings, report, regions)
    else:
        # The engine (and with it torch) is imported only now, so --help and bad input answer at once.
        from .engine.api import stylize_picture
        result = stylize_picture(content, styles, settings, report.callback, regions)
    output = os.path.abspath(args.output)
    report.save(output)
    save_picture(result, args.output)
    report.done(time.perf_counter() - started, output)
    return 0


def style_mask_paths(masks: list[tuple[int, str]], n_styles: int) -> list[str | None]:
    """--style-mask's masks, one per style image (None: the rest of the layer)."""
    paths: list[str | None] = [None] * n_styles
    for number, path in masks:
        if number > n_styles:
            raise InputError(f"--style-mask {number}={path}: there are only {n_styles} style images", "style_mask")
        if paths[number - 1] is not None:
            raise InputError(f"--style-mask gives style {number} two masks", "style_mask")
        paths[number - 1] = path
    return paths


def regions_of(mask_paths: list[str | None], memory_limit: int | None):
    """The masks' pictures, one per style (None: the rest of the layer); None without any."""
    from .engine.imageio import load_picture

    if not any(mask_paths):
        return None
    return [path and load_picture(path, f"the mask of style {number}", memory_limit)
            for number, path in enumerate(mask_paths, start=1)]


def run_clip(args: argparse.Namespace, settings: Settings, report: Reporter, started: float,
             cluster: str | None) -> int:
    from .engine.clipjob import stylize_clip

    refuse_server(args, cluster, "a clip")
    mask_paths = style_mask_paths(args.style_mask, len(args.styles))
    memory_limit = input_memory_limit(settings)
    styles = style_pictures(args.styles, memory_limit)
    sources = (*args.styles, *filter(None, mask_paths))
    regions = regions_of(mask_paths, memory_limit)
    if cluster:
        from .cluster.clipjob import stylize_clip as stylize_on_cluster
        output = stylize_on_cluster(cluster, args.content, styles, args.output, settings, report.callback,
                                    args.frames, sources, regions, args.workers, args.chunk_frames)
    else:
        output = stylize_clip(args.content, styles, args.output, settings, report.callback, args.frames, sources,
                              regions)
    report.done(time.perf_counter() - started, os.path.abspath(output))
    return 0


def run_batch(args: argparse.Namespace, settings: Settings, report: Reporter, started: float,
              cluster: str | None) -> int:
    from .engine.batchjob import stylize_batch

    if args.style_mask:
        raise InputError("--style-mask: a mask fits one picture, and a batch's pictures differ: restyle them one "
                         "by one", "style_mask")
    if args.frames != (0, None):
        raise InputError("--frames picks frames of a clip; --batch restyles every picture of its folder")
    refuse_server(args, cluster, "a batch")
    memory_limit = input_memory_limit(settings)
    styles = style_pictures(args.styles, memory_limit)
    if cluster:
        from .cluster.batchjob import stylize_batch as stylize_on_cluster
        output = stylize_on_cluster(cluster, args.content, styles, args.output, settings, report.callback,
                                    args.workers, memory_limit)
    else:
        output = stylize_batch(args.content, styles, args.output, settings, report.callback, memory_limit)
    report.done(time.perf_counter() - started, os.path.abspath(output))
    return 0


def input_memory_limit(settings: Settings) -> int | None:
    """The bytes a decoded input may take (--memory-limit-mb), or None for no limit."""
    return settings.memory_limit_mb * 2**20 if settings.memory_limit_mb else None


def style_pictures(paths: list[str], memory_limit: int | None) -> list:
    from .engine.imageio import load_picture
    return [load_picture(path, "style image", memory_limit) for path in paths]


def refuse_server(args: argparse.Namespace, cluster: str | None, what: str) -> None:
    """A clip or a batch is not sent to a server (which takes pictures)."""
    if not cluster and server_address(args):
        raise InputError(f"{what} is restyled by this computer's engine or a Ray cluster (--cluster): leave out "
                         "--server (a server takes pictures)")


def cluster_address(args: argparse.Namespace) -> str | None:
    """The Ray cluster to run on, if any: --cluster ('' for none), else $RAY_ADDRESS unless --server or
    --server-file names a server. With both $RAY_ADDRESS and $STYLIZE_SERVER set, neither is guessed."""
    if args.cluster is not None:
        return args.cluster.strip() or None
    if args.server or args.server_file:
        return None
    address = os.environ.get(CLUSTER_VARIABLE, "").strip() or None
    if address and os.environ.get(SERVER_VARIABLE):
        raise InputError(f"both ${CLUSTER_VARIABLE} and ${SERVER_VARIABLE} are set: choose with --cluster or "
                         "--server (--cluster '' runs here)")
    return address


def server_address(args: argparse.Namespace):
    """The server to run on, if any: --server, --server-file or $STYLIZE_SERVER (in that order).
    An address with a token is refused on the command line, where every local user can read it."""
    from .contract import client
    try:
        if args.server_file:
            return client.read_address_file(Path(args.server_file))
        if args.server == "local":
            address = client.local_address()
            if address is None:
                raise StylizeError("no server runs on this computer for you: start one with: stylize serve")
            return address
        if args.server:
            address = client.parse_address(args.server) if args.server.startswith(("unix:", "/")) else None
            if address is None:
                raise InputError(f"--server takes 'local' or unix:PATH; a server with a token is named by "
                                 f"--server-file FILE or {SERVER_VARIABLE}: a token on the command line is "
                                 "readable by every local user")
            return address
        if os.environ.get(SERVER_VARIABLE):
            return client.parse_address(os.environ[SERVER_VARIABLE])
    except ValueError as error:
        raise InputError(str(error)) from None
    return None


def run_on_server(address, content, styles, settings: Settings, report: Reporter, regions=None):
    """The run on a server: the pictures go as .npy bytes (the regions' masks after the styles), progress
    comes back, then the result."""
    from .contract import client
    from .engine.imageio import load_picture_bytes, npy_bytes
    from .contract.progress import Progress
    for option in OPTIONS:
        if option.names_a_file and getattr(settings, option.name) is not None:
            raise InputError(f"{option.cli_flag} names a file on this computer; a server uses its own")
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
        masks = [region for region in regions or [] if region is not None]
        code, data = client.run_on_server(address, [npy_bytes(picture) for picture in [content, *styles, *masks]],
                                          values, on_event,
                                          regions=None if regions is None else [r is not None for r in regions])
    except client.ServerError as error:
        raise StylizeError(f"server: {error}", getattr(error, "option", None)) from None
    if code != 0 or data is None:
        # The server's error as the engine's own: its reason picks the kind, so that the advice is this
        # program's (in_cli_terms: the flag of the option the event names).
        from .contract.errors import OutOfMemoryError
        event = errors[-1] if errors else {}
        kind = {"memory": OutOfMemoryError, "input": InputError}.get(event.get("reason"), StylizeError)
        error = kind(event.get("message") or f"the server's run failed (status {code})")
        error.option = event.get("option")
        error.exit_code = code or 1
        raise error
    return load_picture_bytes(data, "the server's result", None)


def result_size(content_size: tuple[int, int], settings: Settings) -> tuple[int, int]:
    """The (width, height) the result will have: the output size plan.make_plan gives the run, here
    before the run (contract/schedule.py is plain arithmetic, no torch)."""
    from .contract.schedule import output_size, preview_size
    if settings.resolution == "preview":
        return preview_size(content_size)
    return output_size(content_size, settings.size)


def fail(message: str, code: int, mode: str, out: TextIO, err: TextIO) -> int:
    message = " ".join(message.split())
    if mode == "json":
        reporter(mode, out, err).error(message, code)
    print(f"{PROG}: error: {message}", file=err, flush=True)
    return code
