"""Progress events: made in one place (progress.Reporter), shown as JSON lines or a terminal bar."""

import io
import json
import subprocess
import sys

from stylize_core.contract.progress import STAGE_FIELDS, Reporter, json_lines, terminal_bar


def every_event(report: Reporter) -> None:
    report.waiting(2)
    report.load()
    report.plan("memory: about 1.00 GB")
    report.optimize(1, 2, 64, 48, 3, 10, 0.5, 0.25, 12.0)
    report.frame(3, 24, 0.125, 600.0)
    report.save("/tmp/out.png")
    report.done(4.321, "/tmp/out.png")
    report.error("style image not found: x.png", 2)


def test_json_lines_carry_each_stages_fields_and_nothing_else():
    stream = io.StringIO()
    every_event(Reporter(json_lines(stream)))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["stage"] for e in events] == list(STAGE_FIELDS)
    for event in events:
        assert set(event) == {"stage", *STAGE_FIELDS[event["stage"]]}
    assert events[0] == {"stage": "waiting", "ahead": 2}
    assert events[4] == {"stage": "frame", "frame": 3, "frames": 24, "fraction": 0.125, "eta_s": 600.0}
    assert events[5] == {"stage": "save", "output": "/tmp/out.png"}
    assert events[6] == {"stage": "done", "output": "/tmp/out.png", "seconds": 4.32}
    assert events[7] == {"stage": "error", "message": "style image not found: x.png", "exit_code": 2}


def test_the_terminal_bar_shows_the_plan_the_bar_and_what_was_written():
    stream = io.StringIO()
    every_event(Reporter(terminal_bar(stream)))
    text = stream.getvalue()
    assert text.startswith("waiting: 2 runs ahead\n")
    assert "memory: about 1.00 GB\n" in text and "scale 1/2 64x48 it 3/10" in text and "~12s left" in text
    assert "frame 3/24 done, ~10 min left" in text
    assert "wrote /tmp/out.png in 4.3 s" in text


def test_importing_the_package_and_the_cli_does_not_import_torch():
    """What keeps `stylize --help` and option errors instant: torch loads only when a run starts."""
    code = ("import sys, io\n"
            "import stylize_core, stylize_core.cli, stylize_core.contract.settings\n"
            "status = stylize_core.cli.execute(['c.png', 's.png', '-o', 'o.png', '--strength', 'nan'],"
            " io.StringIO(), io.StringIO())\n"
            "assert status == 2, status\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_a_clusters_frame_events_say_on_how_many_workers():
    stream, bar = io.StringIO(), io.StringIO()
    Reporter(json_lines(stream)).frame(812, 2900, 0.28, 360.0, workers=4)
    Reporter(terminal_bar(bar)).frame(812, 2900, 0.28, 360.0, workers=4)
    assert json.loads(stream.getvalue()) == {"stage": "frame", "frame": 812, "frames": 2900, "fraction": 0.28,
                                             "eta_s": 360.0, "workers": 4}
    assert "frame 812/2900 on 4 workers, ~6 min left" in bar.getvalue()
