"""The command line: `stylize CONTENT STYLE [STYLE ...] -o OUT [options]`.

Every failure ends with one line `stylize: error: ...` on stderr and a non-zero
exit status (docs/protocol.md); no output file appears unless the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from typing import Callable, TextIO

from .errors import InputError, StylizeError
from .settings import DEVICES, INITS, OPTIMIZERS, POOLINGS, PRECISIONS, PRESERVE_COLORS, PRESETS, Settings

PROG = "stylize"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise InputError(f"{message} (see {PROG} --help)")


def build_parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = OneLineParser(
        prog=PROG, description="Restyle CONTENT after one or more STYLE images (Gatys et al. neural style "
        "transfer with VGG19). Images: any format Pillow reads, or float .npy arrays (H, W, 3|4).")
    parser.add_argument("content", help="the picture to restyle")
    parser.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    parser.add_argument("-o", "--output", required=True, help="output file (.png, .jpg, .tif, .webp or .npy)")
    look = parser.add_argument_group("look")
    look.add_argument("--strength", type=float, default=defaults.strength,
                      help="style strength: higher lets the style take over (default %(default)s)")
    look.add_argument("--content-weight", type=float, default=defaults.content_weight,
                      help="how much of the content's structure to keep (default %(default)s)")
    look.add_argument("--tv-weight", type=float, default=defaults.tv_weight,
                      help="smoothness: suppresses pixel noise (default %(default)s)")
    look.add_argument("--style-scale", type=float, default=defaults.style_scale,
                      help="size of the style's brush strokes: 2 = twice as big (default %(default)s)")
    look.add_argument("--style-weights", type=float, nargs="+", metavar="W",
                      help="one weight per style image (default: equal)")
    look.add_argument("--preserve-colors", choices=PRESERVE_COLORS, default=defaults.preserve_colors,
                      help="keep the content's colours: 'luminance' transfers strokes only, 'histogram' "
                      "recolours the style to the content's palette first (default %(default)s)")
    work = parser.add_argument_group("quality and size")
    work.add_argument("--preset", choices=list(PRESETS), default=defaults.preset,
                      help="iterations per scale: fast, balanced or best (default %(default)s)")
    work.add_argument("--iterations", type=int, help="iterations at every scale (overrides --preset)")
    work.add_argument("--size", type=int, help="long side of the output in pixels (default: the content's)")
    work.add_argument("--max-size", type=int, default=defaults.max_size,
                      help="long side the optimisation runs at, at most; larger outputs are upscaled "
                      "from it (default %(default)s)")
    work.add_argument("--scales", type=int, default=defaults.scales,
                      help="coarse-to-fine scales, each half the next (default %(default)s)")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--device", choices=DEVICES, default=defaults.device,
                        help="auto = CUDA, else Apple MPS, else CPU (default %(default)s)")
    engine.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer,
                        help="L-BFGS gives better pictures; Adam uses less memory (default %(default)s)")
    engine.add_argument("--init", choices=INITS, default=defaults.init,
                        help="start from the content or from noise (default %(default)s)")
    engine.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    engine.add_argument("--pooling", choices=POOLINGS, default=defaults.pooling,
                        help="VGG pooling (default %(default)s)")
    engine.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="arithmetic of the VGG passes: auto = bf16 on CUDA GPUs that have it, "
                        "else fp32 (default %(default)s)")
    engine.add_argument("--tile-size", type=int, help="optimise scales larger than this in tiles of this "
                        "size (default: only what would not fit in memory)")
    engine.add_argument("--memory-limit", type=int, metavar="MB", dest="memory_limit_mb",
                        help="plan for at most this much memory (default: what the device has free)")
    engine.add_argument("--weights", help="a VGG19 state dict in torchvision's layout instead of the "
                        "embedded Caffe weights (never downloaded)")
    output = parser.add_argument_group("output")
    output.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                        help="progress display; json prints one object per line on stdout "
                        "(default: a bar on a terminal)")
    output.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="for programs that drive the engine: stop when stdin closes")
    output.add_argument("--cleanup-dir", help="with --stop-on-stdin-eof: a folder of the caller's to "
                        "remove when the caller goes away")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(strength=args.strength, content_weight=args.content_weight, tv_weight=args.tv_weight,
                    preset=args.preset, iterations=args.iterations, size=args.size, max_size=args.max_size,
                    style_scale=args.style_scale, style_weights=args.style_weights,
                    preserve_colors=args.preserve_colors, device=args.device, optimizer=args.optimizer,
                    init=args.init, seed=args.seed, pooling=args.pooling, weights=args.weights,
                    scales=args.scales, precision=args.precision, tile_size=args.tile_size,
                    memory_limit_mb=args.memory_limit_mb)


def watch_stdin(cleanup_dir: str | None) -> None:
    """Exit at once when stdin reaches EOF: the program that started us is gone."""
    def wait_for_eof() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        if cleanup_dir:
            shutil.rmtree(cleanup_dir, ignore_errors=True)
        os._exit(1)
    threading.Thread(target=wait_for_eof, name="stdin-eof-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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


def execute(argv: list[str], out: TextIO, err: TextIO, check: Callable[[], None] | None = None) -> int:
    """One invocation: progress and errors go to out/err; the exit status is returned.

    check() is called at every progress event and may raise to abort the run
    (the warm worker uses it to notice a client that went away).
    """
    mode = "json" if _wants_json(argv) else "none"
    try:
        args = build_parser().parse_args(argv)
        if args.stop_on_stdin_eof:
            watch_stdin(args.cleanup_dir)
        mode = args.progress
        if mode == "auto":
            mode = "bar" if err.isatty() else "none"
        settings = settings_from_args(args).validate(len(args.styles))
        return run(args, settings, mode, out, err, check)
    except StylizeError as error:
        return fail(str(error), error.exit_code, mode, out, err)
    except KeyboardInterrupt:
        return fail("interrupted", 130, mode, out, err)
    except MemoryError:
        return fail("out of memory: use a smaller --max-size", 3, mode, out, err)


def _wants_json(argv: list[str]) -> bool:
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def run(args: argparse.Namespace, settings: Settings, mode: str, out: TextIO, err: TextIO,
        check: Callable[[], None] | None = None) -> int:
    # torch is imported here, not at the top, so --help and option errors answer at once.
    from .engine import stylize_picture
    from .imageio import load_picture, save_picture
    from .progress import json_lines, terminal_bar

    show = {"json": json_lines(out), "bar": terminal_bar(err)}.get(mode) or (lambda event: None)

    def report(event) -> None:
        if check:
            check()
        show(event)

    started = time.perf_counter()
    content = load_picture(args.content, "content image")
    styles = [load_picture(path, "style image") for path in args.styles]
    result = stylize_picture(content, styles, settings, report)
    if mode == "json":
        print(json.dumps({"stage": "save"}), file=out, flush=True)
    save_picture(result, args.output)
    seconds = time.perf_counter() - started
    if mode == "json":
        print(json.dumps({"stage": "done", "output": os.path.abspath(args.output),
                          "seconds": round(seconds, 2)}), file=out, flush=True)
    elif mode == "bar":
        print(f"wrote {args.output} in {seconds:.1f} s", file=err)
    return 0


def fail(message: str, code: int, mode: str, out: TextIO, err: TextIO) -> int:
    message = " ".join(message.split())
    if mode == "json":
        print(json.dumps({"stage": "error", "message": message, "exit_code": code}), file=out, flush=True)
    print(f"{PROG}: error: {message}", file=err, flush=True)
    return code
