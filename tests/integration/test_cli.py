"""The command line as programs and people use it: exit codes, one-line errors, no stray files."""

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from stylize_core.cli import STDIN_CLOSED
from helpers import CONTENT, STYLE, small

QUICK = ["--iterations", "1", "--scales", "1", "--max-size", "64", "--device", "cpu", "--progress", "json"]


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


# The cases refused only once the engine has started (about 2-3 s each) are `slow`; the option errors,
# refused at once, stay in the quick subset (test_bad_inputs keeps a file and an output case there too).
STARTS_THE_ENGINE = pytest.mark.slow


@pytest.mark.parametrize("case,code,fragment", [
    pytest.param("missing content", 2, "content image not found", marks=STARTS_THE_ENGINE),
    pytest.param("corrupt style", 2, "style image is not an image", marks=STARTS_THE_ENGINE),
    pytest.param("empty style", 2, "empty file", marks=STARTS_THE_ENGINE),
    pytest.param("tiny content", 2, "too small", marks=STARTS_THE_ENGINE),
    ("bad strength", 2, "strength must be"),
    ("bad quality", 2, "invalid choice"),
    pytest.param("missing folder", 2, "output folder does not exist", marks=STARTS_THE_ENGINE),
    pytest.param("bad extension", 2, "cannot write images of type", marks=STARTS_THE_ENGINE),
    ("absurd size", 2, "size must be between"),
    pytest.param("wrong weights", 2, "weights file", marks=STARTS_THE_ENGINE),
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


@pytest.mark.slow  # a real run, stopped
def test_stops_and_cleans_up_when_stdin_closes(images, tmp_path):
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # as the plug-in makes its folder: private, in the temp folder
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
    assert process.wait(timeout=10) == 1, process.stderr.read()
    assert time.monotonic() - started < 5
    assert not work.exists()
    assert process.stderr.read().decode().strip().splitlines() == [f"stylize: error: {STDIN_CLOSED}"]


def start(*args, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stylize_core", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def fingerprint(folder: Path) -> dict:
    return {path.name: (path.stat().st_mode, path.read_bytes()) for path in sorted(folder.iterdir())}


@pytest.fixture
def user_pictures(images, tmp_path):
    """A user's folder of pictures (mode 755), the content among them, and its fingerprint."""
    folder = tmp_path / "photos"
    folder.mkdir()
    os.chmod(folder, 0o755)
    (folder / "content.png").write_bytes((images / "content.png").read_bytes())
    (folder / "holiday.jpg").write_bytes((images / "style.png").read_bytes())
    return folder, fingerprint(folder)


@pytest.mark.parametrize("stdin", ["/dev/null", "a file", "a closed pipe", "a terminal"])
def test_stop_on_stdin_eof_refuses_a_stdin_that_is_no_callers_pipe(images, user_pictures, tmp_path, stdin):
    """What cron, nohup, systemd and CI give as stdin: the run must not stop (and remove the folder) at once."""
    folder, before = user_pictures
    arguments = [folder / "content.png", images / "style.png", "-o", tmp_path / "out.png", *QUICK,
                 "--stop-on-stdin-eof", "--cleanup-dir", folder]
    if stdin == "/dev/null":
        process = start(*arguments, stdin=subprocess.DEVNULL)
    elif stdin == "a file":
        (tmp_path / "input.txt").write_text("some text\n")
        with open(tmp_path / "input.txt") as source:
            process = start(*arguments, stdin=source)
    elif stdin == "a closed pipe":
        reading, writing = os.pipe()
        os.close(writing)
        process = start(*arguments, stdin=reading)
        os.close(reading)
    else:
        terminal, side = os.openpty()
        process = start(*arguments, stdin=side)
        os.close(side)
    try:
        out, err = process.communicate(timeout=300)
    finally:
        if stdin == "a terminal":
            os.close(terminal)
    assert_one_line_error(subprocess.CompletedProcess([], process.returncode, out, err), 2, "--stop-on-stdin-eof")
    assert '"stage": "load"' not in out
    assert fingerprint(folder) == before
    assert not (tmp_path / "out.png").exists()


def test_cleanup_dir_needs_stop_on_stdin_eof(images, user_pictures, tmp_path):
    folder, before = user_pictures
    result = run(folder / "content.png", images / "style.png", "-o", tmp_path / "out.png", *QUICK,
                 "--cleanup-dir", folder)
    assert_one_line_error(result, 2, "--cleanup-dir works only with --stop-on-stdin-eof")
    assert '"stage": "load"' not in result.stdout
    assert fingerprint(folder) == before


@pytest.mark.parametrize("case,fragment", [
    ("the pictures' folder", "holds the picture"),
    ("outside the temporary folder", "only a folder made for the run inside the temporary folder"),
    ("a link to a private folder", "is a link"),
    ("the current folder", "holds the current folder"),
])
def test_cleanup_dir_refuses_what_the_caller_cannot_have_meant(images, user_pictures, tmp_path, case, fragment):
    """Refused before the run, and nothing is removed even when the caller then goes away."""
    folder, before = user_pictures
    cleanup, environment, cwd = folder, dict(os.environ), None
    if case == "outside the temporary folder":  # a private folder of the user's, outside $TMPDIR
        os.chmod(folder, 0o700)
        before = fingerprint(folder)
        (tmp_path / "tmp").mkdir()
        environment["TMPDIR"] = str(tmp_path / "tmp")
    elif case == "a link to a private folder":
        os.chmod(folder, 0o700)
        before = fingerprint(folder)
        cleanup = tmp_path / "link"
        cleanup.symlink_to(folder)
    elif case == "the current folder":
        os.chmod(folder, 0o700)
        before = fingerprint(folder)
        cwd = folder
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    process = start(folder / "content.png", images / "style.png", "-o", tmp_path / "out.png", *QUICK,
                    "--stop-on-stdin-eof", "--cleanup-dir", cleanup, stdin=subprocess.PIPE, env=environment, cwd=cwd)
    try:  # stdin stays open, as a caller keeps it, until the engine has answered
        out, err = process.stdout.read(), process.stderr.read()
        process.wait(timeout=300)
    finally:
        process.kill()
        process.stdin.close()
    assert_one_line_error(subprocess.CompletedProcess([], process.returncode, out, err), 2, fragment)
    assert '"stage": "load"' not in out
    assert fingerprint(folder) == before


def temporary_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.startswith(".stylize-")]


def wait_for_the_save_to_write(process: subprocess.Popen, folder: Path, timeout: float = 300) -> None:
    """Until the run's save has a temporary file with data in it: the encoder is writing the output
    (check_output's probe, made and removed at once, is empty)."""
    for line in process.stdout:
        if json.loads(line)["stage"] == "save":
            break
    else:
        raise AssertionError(f"the run ended before its save: {process.stderr.read()}")
    deadline = time.monotonic() + timeout
    while True:
        for path in temporary_files(folder):
            try:
                if path.stat().st_size > 0:
                    return
            except FileNotFoundError:
                pass
        assert process.poll() is None, f"the run ended before its save was seen writing: {process.stderr.read()}"
        assert time.monotonic() < deadline, "the save never wrote its temporary file"
        time.sleep(0.002)


def no_core_dump() -> None:
    """Also SIGHUP at its default, as in a terminal: under nohup the suite's processes inherit it
    ignored, and the CLI rightly keeps an ignored SIGHUP ignored."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("stop,status,message", [
    ("SIGHUP", 128 + signal.SIGHUP, "hung up"),
    ("SIGQUIT", 128 + signal.SIGQUIT, "quit"),
    ("SIGTERM", 128 + signal.SIGTERM, "terminated"),
    ("stdin EOF", 1, STDIN_CLOSED),
])
def test_whatever_stops_the_save_leaves_the_old_output_and_no_temporary_file(images, tmp_path, stop, status, message):
    out = tmp_path / "out.png"
    Image.new("RGB", (10, 10), "red").save(out)
    old = out.read_bytes()
    # 6000 px: a PNG that takes a good second to encode, in which the stop lands.
    process = start(images / "content.png", images / "style.png", "-o", out, *QUICK, "--size", "6000",
                    "--resolution", "working", *(["--stop-on-stdin-eof"] if stop == "stdin EOF" else []),
                    stdin=subprocess.PIPE, preexec_fn=no_core_dump)
    try:
        wait_for_the_save_to_write(process, tmp_path)
        if stop == "stdin EOF":
            process.stdin.close()
        else:
            process.send_signal(getattr(signal, stop))
        assert process.wait(timeout=60) == status, process.stderr.read()
    finally:
        process.kill()
    assert process.stderr.read().strip().splitlines() == [f"stylize: error: {message}"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.png"], "a temporary file was left"
    assert out.read_bytes() == old, "the old output was damaged"


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


def ignore_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@pytest.mark.slow
def test_under_nohup_sighup_stays_ignored(images, tmp_path):
    """nohup starts us with SIGHUP ignored, so that the run outlives the terminal: it must not stop on it."""
    process = start(images / "content.png", images / "style.png", "-o", tmp_path / "out.png", *QUICK,
                    "--iterations", "30", stdin=subprocess.DEVNULL, preexec_fn=ignore_sighup)
    try:
        for line in process.stdout:
            if json.loads(line)["stage"] == "optimize":
                process.send_signal(signal.SIGHUP)  # the terminal closed
                break
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["stage"] == "done"
    assert Image.open(tmp_path / "out.png").size == Image.open(images / "content.png").size
