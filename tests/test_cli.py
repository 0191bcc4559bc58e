"""The command line as programs and people use it: exit codes, one-line errors, no stray files."""

import json
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from helpers import CONTENT, STYLE, small


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "stylize_core", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    small(CONTENT, 128).save(folder / "content.png")
    small(STYLE, 128).save(folder / "style.png")
    return folder


def assert_one_line_error(result, code, fragment):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stylize: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_json_progress_and_output(images, tmp_path):
    out = tmp_path / "out.png"
    result = run(images / "content.png", images / "style.png", "-o", out, "--iterations", "4",
                 "--progress", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0] == {"stage": "load"}
    optimize = [e for e in events if e["stage"] == "optimize"]
    assert {"scale", "scales", "iteration", "total", "loss", "fraction", "eta_s"} <= set(optimize[0])
    assert events[-1]["stage"] == "done" and events[-1]["output"] == str(out)
    assert Image.open(out).size == Image.open(images / "content.png").size
    assert os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize("case,code,fragment", [
    ("missing content", 2, "content image not found"),
    ("corrupt style", 2, "style image is not an image"),
    ("empty style", 2, "empty file"),
    ("tiny content", 2, "too small"),
    ("bad strength", 2, "strength must be"),
    ("bad quality", 2, "invalid choice"),
    ("missing folder", 2, "output folder does not exist"),
    ("bad extension", 2, "cannot write images of type"),
    ("absurd size", 2, "size must be between"),
    ("wrong weights", 2, "weights file"),
    ("weights count", 2, "style weights"),
])
def test_errors_are_one_line_and_leave_no_output(images, tmp_path, case, code, fragment):
    content, style, out = images / "content.png", images / "style.png", tmp_path / "out.png"
    extra = []
    if case == "missing content":
        content = tmp_path / "nope.png"
    elif case == "corrupt style":
        style = tmp_path / "corrupt.png"
        style.write_bytes(b"\x89PNG garbage")
    elif case == "empty style":
        style = tmp_path / "empty.jpg"
        style.write_bytes(b"")
    elif case == "tiny content":
        content = tmp_path / "tiny.png"
        Image.new("RGB", (12, 12)).save(content)
    elif case == "bad strength":
        extra = ["--strength", "-1"]
    elif case == "bad quality":
        extra = ["--quality", "ultra"]
    elif case == "missing folder":
        out = tmp_path / "no" / "out.png"
    elif case == "bad extension":
        out = tmp_path / "out.docx"
    elif case == "absurd size":
        extra = ["--size", "999999"]
    elif case == "wrong weights":
        (tmp_path / "w.pth").write_bytes(b"junk")
        extra = ["--weights", tmp_path / "w.pth"]
    elif case == "weights count":
        extra = ["--style-weights", "1", "2"]
    before = set(os.listdir(tmp_path))
    result = run(content, style, "-o", out, "--iterations", "2", *extra)
    assert_one_line_error(result, code, fragment)
    assert set(os.listdir(tmp_path)) == before  # nothing written, not even a temp file


def test_json_mode_reports_the_error_on_stdout_too(images, tmp_path):
    result = run(tmp_path / "nope.png", images / "style.png", "-o", tmp_path / "o.png", "--progress", "json")
    assert result.returncode == 2
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["stage"] == "error" and "not found" in last["message"]


def test_stops_and_cleans_up_when_stdin_closes(images, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "content.png").write_bytes((images / "content.png").read_bytes())
    process = subprocess.Popen(
        [sys.executable, "-m", "stylize_core", work / "content.png", images / "style.png", "-o",
         work / "out.png", "--iterations", "1000", "--progress", "json", "--stop-on-stdin-eof",
         "--cleanup-dir", work], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stdout:  # wait until it is optimising
        if b'"optimize"' in line:
            break
    process.stdin.close()
    started = time.monotonic()
    process.wait(timeout=10)
    assert time.monotonic() - started < 5
    assert not work.exists()


def test_help_is_fast_and_lists_the_options():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--strength", "--quality", "--style-scale", "--preserve-colors", "--device", "--progress"):
        assert option in result.stdout


@pytest.mark.slow
def test_a_driven_run_exits_cleanly_while_stdin_stays_open(images, tmp_path):
    """The plug-in keeps the engine's stdin open until the engine has finished."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stylize_core", images / "content.png", images / "style.png", "-o",
         tmp_path / "out.png", "--iterations", "2", "--progress", "json", "--stop-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.stdout.read(), process.stderr.read()
    assert process.wait(timeout=60) == 0, err
    assert b'"done"' in out and b"Fatal" not in err
    process.stdin.close()
