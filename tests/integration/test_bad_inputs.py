"""Bad input, as users and their machines produce it, through the CLI: one case per way to get it wrong.

For every case: the right exit status, one line `stylize: error: ...` that says what
to do, no traceback, nothing left beside the output, every input byte-identical after.
The inputs are made here, in a few lines each (no checked-in binaries).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import CONTENT, STYLE, small

QUICK = ["--iterations", "1", "--max-size", "64", "--scales", "1", "--device", "cpu", "--progress", "json"]
IS_ROOT = os.geteuid() == 0
# Root reads and writes whatever it likes; run the engine without that power where a case needs
# file permissions to mean something (setpriv drops the override capabilities for the child).
WITHOUT_OVERRIDE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                    "--bounding-set=-dac_override,-dac_read_search"] if IS_ROOT else []


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header promises width x height pixels, with one tiny compressed row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good and bad input files, made once."""
    folder = tmp_path_factory.mktemp("inputs")
    small(CONTENT, 96).save(folder / "content.png")
    small(STYLE, 96).save(folder / "style.jpg")
    (folder / "empty.png").write_bytes(b"")
    data = (folder / "content.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    jpeg = (folder / "style.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "text.png").write_text("this is not a picture\n")
    (folder / "png-named.jpg").write_bytes(data)
    Image.new("RGB", (1, 1)).save(folder / "one-pixel.png")
    png_header_only(folder / "huge-header.png", 100000, 100000)
    png_header_only(folder / "memory-bomb.png", 12000, 12000)  # 144 MP: fine for Pillow, not for 1 GB
    Image.fromarray((np.arange(96 * 96, dtype=np.uint16).reshape(96, 96) * 7)).save(folder / "16-bit.png")
    small(CONTENT, 96).convert("CMYK").save(folder / "cmyk.jpg")
    palette = small(CONTENT, 96).convert("P")
    palette.info["transparency"] = 0
    palette.save(folder / "palette-transparent.png", transparency=0)
    nan = np.full((64, 64, 3), 0.5, np.float32)
    nan[3, 3, 1] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "inf.npy", np.full((64, 64, 3), np.inf))
    Image.fromarray(nan[..., 1], "F").save(folder / "nan-float.tif")  # a 32-bit float TIFF
    Image.fromarray(np.full((64, 64), np.inf, np.float32), "F").save(folder / "inf-float.tif")
    np.save(folder / "objects.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    np.save(folder / "zero-size.npy", np.zeros((0, 0, 3), np.float32))
    np.save(folder / "flat.npy", np.zeros(5, np.float32))
    np.save(folder / "complex.npy", np.zeros((64, 64, 3), np.complex64))
    (folder / "a-folder").mkdir()
    os.mkfifo(folder / "fifo.png")
    shutil.copy(folder / "content.png", folder / "unreadable.png")
    os.chmod(folder / "unreadable.png", 0)
    (folder / "weights.pth").write_bytes(b"not a state dict")
    return folder


def fingerprint(folder: Path) -> dict:
    """Every regular file's bytes (as a hash) and mode: what a run must leave as it was."""
    result = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        if path.is_file() and not path.is_symlink() and path.name != "fifo.png":
            os.chmod(path, info.st_mode | 0o400)  # even the unreadable one: the test reads it as root or owner
            result[path.name] = (hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mode)
            os.chmod(path, info.st_mode)
        else:
            result[path.name] = ("other", info.st_mode)
    return result


# (case id, arguments after the program name, expected exit status, fragment of the message).
# "{in}" is the inputs folder, "{out}" a fresh output folder.
CASES = [
    # Inputs that are missing, empty, broken or not what they claim to be.
    ("missing content", ["{in}/nope.png", "{in}/style.jpg"], 2, "content image not found"),
    ("missing style", ["{in}/content.png", "{in}/nope.jpg"], 2, "style image not found"),
    ("empty content", ["{in}/empty.png", "{in}/style.jpg"], 2, "empty file"),
    ("truncated png", ["{in}/truncated.png", "{in}/style.jpg"], 2, "corrupt or truncated"),
    ("truncated jpeg style", ["{in}/content.png", "{in}/truncated.jpg"], 2, "corrupt or truncated"),
    ("text named png", ["{in}/text.png", "{in}/style.jpg"], 2, "not an image Pillow can read"),
    ("one pixel", ["{in}/one-pixel.png", "{in}/style.jpg"], 2, "too small"),
    ("huge header", ["{in}/huge-header.png", "{in}/style.jpg"], 2, "too large"),
    ("bomb by memory", ["{in}/memory-bomb.png", "{in}/style.jpg", "--memory-limit", "1024"], 2,
     "too large for the memory there is"),
    ("nan npy", ["{in}/nan.npy", "{in}/style.jpg"], 2, "NaN"),
    ("inf npy style", ["{in}/content.png", "{in}/inf.npy"], 2, "infinite"),
    ("nan float tiff", ["{in}/nan-float.tif", "{in}/style.jpg"], 2, "nan-float.tif contains NaN or infinite values"),
    ("inf float tiff style", ["{in}/content.png", "{in}/inf-float.tif"], 2, "NaN or infinite"),
    ("object npy", ["{in}/objects.npy", "{in}/style.jpg"], 2, "not a valid .npy"),
    ("zero-size npy", ["{in}/zero-size.npy", "{in}/style.jpg"], 2, "no pixels"),
    ("flat npy", ["{in}/flat.npy", "{in}/style.jpg"], 2, "array"),
    ("complex npy", ["{in}/complex.npy", "{in}/style.jpg"], 2, "unsupported pixel type"),
    ("folder as content", ["{in}/a-folder", "{in}/style.jpg"], 2, "no pictures in"),  # a folder is a clip
    ("fifo as content", ["{in}/fifo.png", "{in}/style.jpg"], 2, "not a regular file"),
    ("unreadable content", ["{in}/unreadable.png", "{in}/style.jpg"], 2, "permission denied"),
    ("weights not a state dict", ["{in}/content.png", "{in}/style.jpg", "--weights", "{in}/weights.pth"], 2,
     "weights file"),
    ("weights missing", ["{in}/content.png", "{in}/style.jpg", "--weights", "{in}/nope.pth"], 2, "weights"),
    # Every kind of bad number.
    ("strength nan", ["--strength", "nan"], 2, "strength must be between"),
    ("strength inf", ["--strength", "inf"], 2, "strength must be between"),
    ("strength negative", ["--strength", "-1"], 2, "strength must be between"),
    ("strength huge", ["--strength", "1e30"], 2, "strength must be between"),
    ("strength not a number", ["--strength", "strong"], 2, "invalid float value"),
    ("content weight nan", ["--content-weight", "nan"], 2, "content weight must be"),
    ("tv weight inf", ["--tv-weight", "inf"], 2, "tv weight must be"),
    ("style scale zero", ["--style-scale", "0"], 2, "style scale must be"),
    ("style weights inf", ["{in}/content.png", "{in}/style.jpg", "{in}/style.jpg", "--style-weights", "inf", "1"],
     2, "style weights must be"),
    ("style weights all zero", ["{in}/content.png", "{in}/style.jpg", "{in}/style.jpg", "--style-weights", "0", "0"],
     2, "must not all be zero"),
    ("iterations negative", ["--iterations", "-1"], 2, "iterations must be"),
    ("iterations huge", ["--iterations", "1000000000"], 2, "iterations must be"),
    ("max size zero", ["--max-size", "0"], 2, "max size must be"),
    ("size negative", ["--size", "-5"], 2, "size must be"),
    ("size absurd", ["--size", "999999"], 2, "size must be"),
    ("scales zero", ["--scales", "0"], 2, "scales must be"),
    ("seed negative", ["--seed", "-1"], 2, "seed must be"),
    ("tile size tiny", ["--tile-size", "5"], 2, "tile size must be"),
    ("memory limit tiny", ["--memory-limit", "1"], 2, "memory limit mb must be"),
    ("stall tolerance nan", ["--stall-tolerance", "nan"], 2, "stall tolerance must be"),
    ("unknown quality", ["--quality", "ultra"], 2, "invalid choice"),
    ("unknown device", ["--device", "tpu"], 2, "invalid choice"),
    ("unknown option", ["--colour", "red"], 2, "unrecognized arguments"),
    # Outputs that cannot be written, or would destroy something.
    ("output folder missing", ["-o", "{out}/no/such/folder/out.png"], 2, "output folder does not exist"),
    ("output is a folder", ["-o", "{out}"], 2, "the output is a folder"),
    ("output unknown extension", ["-o", "{out}/out.docx"], 2, "cannot write images of type .docx"),
    ("output without extension", ["-o", "{out}/out"], 2, "cannot write images of type (none)"),
    ("output blp", ["-o", "{out}/out.blp"], 2, "cannot write images of type .blp"),
    ("output is the content", ["-o", "{in}/content.png"], 2, "would overwrite the input"),
    ("output is the style", ["-o", "{in}/style.jpg"], 2, "would overwrite the input"),
    ("output folder read-only", ["-o", "{out}/read-only/out.png"], 2, "cannot write in the output folder"),
]
# Found out only once the engine has started (the plan, the network): all others before it.
FOUND_IN_THE_ENGINE = {"one pixel", "weights not a state dict", "weights missing"}
# Inputs that look odd but are fine: they must work, not fail.
GOOD = [
    ("png named jpg", ["{in}/png-named.jpg", "{in}/style.jpg"]),
    ("16-bit png", ["{in}/16-bit.png", "{in}/style.jpg"]),
    ("cmyk jpeg", ["{in}/cmyk.jpg", "{in}/style.jpg"]),
    ("palette with transparency", ["{in}/palette-transparent.png", "{in}/style.jpg"]),
]


def command(arguments: list[str], inputs: Path, out: Path) -> list[str]:
    arguments = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in arguments]
    if not arguments or arguments[0].startswith("-"):
        arguments = [str(inputs / "content.png"), str(inputs / "style.jpg"), *arguments]
    if "-o" not in arguments:
        arguments += ["-o", str(out / "out.png")]
    return [*WITHOUT_OVERRIDE, sys.executable, "-m", "stylize_core", *QUICK, *arguments]  # later flags win


def run_case(arguments, inputs: Path, out: Path) -> subprocess.CompletedProcess:
    (out / "read-only").mkdir(exist_ok=True)
    os.chmod(out / "read-only", 0o555)
    before_inputs, before_out = fingerprint(inputs), fingerprint(out)
    result = subprocess.run(command(arguments, inputs, out), capture_output=True, text=True, timeout=300)
    assert fingerprint(inputs) == before_inputs, "an input was changed"
    if result.returncode != 0:
        assert fingerprint(out) == before_out, f"a failed run left files: {sorted(out.rglob('*'))}"
    return result


# Quick cases: refused by the command line before it starts the engine (a few hundredths of a second).
# Every other case starts it (about 2 s each on 2 busy cores) and is `slow`, but for one input file and
# one output, which keep that path in the quick subset.
QUICK_WITH_THE_ENGINE = {"truncated png", "output folder missing"}


def refused_at_once(arguments: list[str]) -> bool:
    return "-o" not in arguments and (arguments[0].startswith("-") or "--style-weights" in arguments)


def marked(case, arguments, code, fragment):
    slow = not refused_at_once(arguments) and case not in QUICK_WITH_THE_ENGINE
    return pytest.param(case, arguments, code, fragment, id=case, marks=pytest.mark.slow if slow else ())


@pytest.mark.parametrize("case,arguments,code,fragment", [marked(*c) for c in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(inputs, tmp_path, case, arguments, code, fragment):
    result = run_case(arguments, inputs, tmp_path)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("stylize: error: ") and fragment in lines[0], lines[0]
    if case not in FOUND_IN_THE_ENGINE:  # refused before the expensive part: the engine never started
        assert '"stage": "load"' not in result.stdout, result.stdout


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(GOOD) >= 40


@pytest.mark.slow
@pytest.mark.parametrize("arguments", [c[1] for c in GOOD], ids=[c[0] for c in GOOD])
def test_odd_but_valid_input_works(inputs, tmp_path, arguments):
    result = run_case(arguments, inputs, tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out.png").size == (96, 72) or Image.open(tmp_path / "out.png").size[0] == 96
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "read-only"]


@pytest.mark.slow  # a real run onto a small mounted filesystem
@pytest.mark.skipif(not IS_ROOT, reason="mounting a small full filesystem needs root")
def test_a_full_disk_at_save_leaves_the_old_output_whole_and_no_temporary_file(inputs, tmp_path):
    """A tmpfs of 64 KB, mounted in a private mount namespace, holds an old output of 40 KB."""
    target = tmp_path / "small-disk"
    target.mkdir()
    old = os.urandom(40_000)
    engine = " ".join(command([str(inputs / "content.png"), str(inputs / "style.jpg"), "-o", f"{target}/out.png",
                               "--size", "1024"], inputs, target)[len(WITHOUT_OVERRIDE):])
    script = (f"mount -t tmpfs -o size=64k tmpfs {target} && printf '%s' \"$OLD\" | base64 -d > {target}/out.png "
              f"&& {engine}; status=$?; ls -a {target}; sha256sum {target}/out.png; exit $status")
    import base64
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OLD": base64.b64encode(old).decode()})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("stylize: error: cannot write the output")
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    listing = result.stdout.split()
    assert [name for name in listing if name.startswith(".stylize-")] == [], result.stdout
    assert hashlib.sha256(old).hexdigest() in result.stdout, "the old output was damaged"


@pytest.mark.slow  # starts the engine (about 2 s)
def test_a_read_only_output_is_refused_before_the_run(inputs, tmp_path):
    """As cp would: the folder lets us replace the file, the file's own mode says it is not to be written."""
    locked = tmp_path / "locked.png"
    Image.new("RGB", (8, 8), "red").save(locked)
    os.chmod(locked, 0o444)
    result = run_case(["-o", str(locked)], inputs, tmp_path)  # which checks that nothing changed
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"stylize: error: the output {locked} exists and is read-only: make it writable (chmod u+w) "
                     "or choose another output name"], result.stderr
    assert '"stage": "load"' not in result.stdout


@pytest.mark.slow  # starts the engine (about 2 s)
def test_an_output_type_too_small_for_the_result_is_refused_before_the_run(inputs, tmp_path):
    """--size 16384 makes a result larger than WebP holds: said before the run, not after it."""
    width, height = Image.open(inputs / "content.png").size
    result_height = round(height * 16384 / width)
    process = subprocess.Popen(command(["--size", "16384", "-o", "{out}/out.webp"], inputs, tmp_path),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # ended at the first sign of the run: it would take minutes
            assert '"stage": "load"' not in line, "the run started"
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        f"stylize: error: WebP holds at most 16383 px a side; the result will be 16384x{result_height}: "
        f"choose .png or .tif: {tmp_path / 'out.webp'}"], stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # a real run
def test_a_camera_portrait_comes_out_upright(inputs, tmp_path):
    """A JPEG stored sideways with EXIF Orientation 6, as phones write portraits: the result is upright."""
    stored = Image.open(inputs / "content.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    result = run_case([str(tmp_path / "portrait.jpg"), "{in}/style.jpg"], inputs, tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out.png").size == stored.size[::-1]
