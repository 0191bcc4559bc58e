"""The dialog's live preview in the real GIMP window (3.0 and 3.2 under Xvfb), as a painter uses it.

The plug-in is installed as usual ("This computer"); the engine server it finds at this
session's socket is one the test started, so that its log says what ran: each request's
settings, when it ran, how it ended. The painter opens the filter and picks a style file: a
preview appears under the style's thumbnail. Strength changes five times, each waiting for the
pane to change (the time from the change to the new picture on screen is recorded); then two
changes in quick succession, the second while the first one's preview runs; then the
Advanced section is opened while a preview runs (the dialog must answer at once); then OK.
Screenshots in artifacts/gui-preview/<version>/.
"""

import re
import statistics
import time
from pathlib import Path

import pytest

from gimp_runner import CHECKOUT, install_plugin, venv_paths
from gui_session import GimpWindow, fresh_folder, step
from test_gimp_gui import choose_style_file, painted, press_ok, screen_region, wait_for
from test_gimp_gui_sandboxed import open_the_filter
from test_gimp_sandboxed import HostServer

SHOTS = CHECKOUT / "artifacts" / "gui-preview"
STRENGTHS = ("4", "0.3", "8", "2", "6")
"""Five changes of Strength, each far enough from the last to show."""
LOG_LINE = re.compile(r"^stylize serve: (\d\d):(\d\d):(\d\d)\.(\d{3}) request (\d+) from [^:]+: (.*)$")


class ServerLog:
    """The steps of each request, from the server's log: {number: [(seconds of the day, step)]}."""

    def __init__(self, path: Path):
        self.path = path

    def requests(self) -> dict[int, list[tuple[float, str]]]:
        found = {}
        for line in self.path.read_text().splitlines():
            match = LOG_LINE.match(line)
            if match:
                hours, minutes, seconds, millis, number, step = match.groups()
                at = int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000
                found.setdefault(int(number), []).append((at, step))
        return found

    def ended(self, number: int) -> str | None:
        steps = [step for _, step in self.requests().get(number, [])]
        return next((step for step in steps if step.startswith(("finished", "withdrawn"))), None)

    def newest(self) -> int:
        return max(self.requests(), default=0)

    def wait(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"{what}: {self.path.read_text()[-1500:]}")


def set_strength(window: GimpWindow, dialog: str, value: str) -> float:
    """Types a Strength and leaves the field (the value is taken then); the time of the change."""
    window.focus(dialog)
    window.keys("alt+t", "ctrl+a")
    window.type(value)
    window.keys("Tab")
    return time.monotonic()


def dialog_pixels(window: GimpWindow, dialog: str, name: str):
    x, y, width, height = window.geometry(dialog)
    return screen_region(window.screenshot(name), (x, y, x + width, y + height))


def pane_box(before, after) -> tuple[int, int, int, int] | None:
    """Where two screenshots of the dialog differ over a whole block of rows: a new picture in the
    pane (the Strength field's few changed digits do not count)."""
    from PIL import ImageChops
    changed = ImageChops.difference(before, after).convert("L").point(lambda v: 255 if v > 12 else 0)
    width, height = changed.size
    pixels = changed.load()
    dense = [y for y in range(height) if sum(1 for x in range(width) if pixels[x, y]) > width // 8]
    if not dense:
        return None
    runs = [[dense[0], dense[0]]]
    for y in dense[1:]:
        if y - runs[-1][1] <= 10:
            runs[-1][1] = y
        else:
            runs.append([y, y])
    top, bottom = max(runs, key=lambda run: run[1] - run[0])
    left, _, right, _ = changed.crop((0, top, width, bottom + 1)).getbbox()
    return left, top, right, bottom + 1


def mean_difference(before, after, box) -> float:
    from PIL import ImageChops, ImageStat
    return sum(ImageStat.Stat(ImageChops.difference(before.crop(box), after.crop(box))).mean) / 3


def settled_pixels(window: GimpWindow, dialog: str, now, name: str, deadline: float):
    """The dialog once its pane stops changing: two screenshots in a row without a changed block of rows
    (a caret's blink does not count), or the last one at the deadline."""
    while time.monotonic() < deadline:
        later = dialog_pixels(window, dialog, name)
        if later.size == now.size and pane_box(now, later) is None:
            return later
        now = later
    return now


@pytest.fixture(scope="module")
def painter(gimp_version, gimp_session):
    version = gimp_version
    session = gimp_session(version, "gui-preview")
    work = session.work
    venv = CHECKOUT / ".venv"
    install_plugin(session.profile, venv, worker_idle_timeout=600)
    session.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = ServerLog(work / "server.log")
    server = HostServer(work / "state", "--socket", str(session.runtime / "stylize-core" / "server.sock"),
                        "--idle-timeout", "900", log=log.path)
    shots = fresh_folder(SHOTS / version)
    window = GimpWindow(session, [CHECKOUT, *venv_paths(venv)], {"examples": str(CHECKOUT / "examples")},
                        CHECKOUT / "tests" / "gimp" / "gui_driver.py", shots)
    seen = {"version": version}
    try:
        window.play(seen, lambda: play(window, seen, log))
    finally:
        server.stop()
        (shots / "server.log").write_text(log.path.read_text())
    seen["log"] = {str(number): steps for number, steps in log.requests().items()}
    return seen


def play(window: GimpWindow, seen: dict, log: ServerLog) -> None:
    main = window.main_window()
    dialog = open_the_filter(window, main)

    # The style chosen: the first preview comes (the server is warm, its style statistics not yet).
    choose_style_file(window, dialog, CHECKOUT / "examples" / "starry_night.jpg")
    first = log.wait(log.newest, 60, "no preview was asked for")
    log.wait(lambda: log.ended(first), 300, "the first preview did not finish")
    shown = settled_pixels(window, dialog, dialog_pixels(window, dialog, "1-first-preview.png"),
                           "1-first-preview.png", time.monotonic() + 30)

    # Strength, five times: the pane changes each time; how long it took is recorded.
    seen["latencies"], seen["pane_boxes"], seen["pane_differences"] = [], [], []
    for index, strength in enumerate(STRENGTHS):
        changed = set_strength(window, dialog, strength)
        newest = log.wait(lambda: log.newest() > first and log.newest(), 60, "the change asked for no preview")
        first = newest
        log.wait(lambda: log.ended(newest), 120, f"the preview for Strength {strength} did not finish")
        deadline = time.monotonic() + 30
        while True:  # the new picture on screen, not just the engine's reply or the status line's text
            now = dialog_pixels(window, dialog, f"2-strength-{strength}.png")
            box = pane_box(shown, now) if now.size == shown.size else None
            if (box and box[3] - box[1] > 100) or time.monotonic() > deadline:
                break
        seen["latencies"].append(time.monotonic() - changed)
        # The first new picture may be a sketch on the way (its caption says "refining"): the final one
        # is compared, so that only the picture differs between one step's screen and the next.
        now = settled_pixels(window, dialog, now, f"2-strength-{strength}.png", deadline)
        box = pane_box(shown, now) if now.size == shown.size else None
        seen["pane_boxes"].append(box)
        seen["pane_differences"].append(mean_difference(shown, now, box) if box else 0.0)
        shown = now
    seen["latency_median"] = statistics.median(seen["latencies"])

    # A fast second change: the first change's preview is running when the second comes.
    set_strength(window, dialog, "3")
    superseded = log.wait(lambda: log.newest() > first and log.newest(), 60, "the change asked for no preview")
    log.wait(lambda: any(step == "running" for _, step in log.requests()[superseded]), 60, "its preview did not run")
    set_strength(window, dialog, "5")
    newest = log.wait(lambda: log.newest() > superseded and log.newest(), 60, "the second change asked for nothing")
    log.wait(lambda: log.ended(newest), 120, "the newest preview did not finish")
    seen["superseded"], seen["newest"] = superseded, newest
    window.screenshot("3-after-two-quick-changes.png")

    # The dialog answers while a preview runs: Advanced opens (the dialog grows) at once.
    set_strength(window, dialog, "7")
    running = log.wait(lambda: log.newest() > newest and log.newest(), 60, "the change asked for no preview")
    log.wait(lambda: any(step == "running" for _, step in log.requests()[running]), 60, "its preview did not run")
    height = window.geometry(dialog)[3]
    window.keys("alt+a")
    opened = time.monotonic()
    while window.geometry(dialog)[3] == height and time.monotonic() - opened < 10:
        time.sleep(0.05)
    seen["advanced_opened_s"] = time.monotonic() - opened
    seen["preview_still_running_when_it_opened"] = log.ended(running) is None
    window.screenshot("4-advanced-opened-during-a-preview.png")
    log.wait(lambda: log.ended(running), 120, "the preview did not finish")
    time.sleep(1)
    window.screenshot("5-dialog-with-preview.png")

    # OK: the full run, with the settings the last preview had.
    press_ok(window, dialog)
    seen["result"] = wait_for(window, painted, 600, "OK did not add the restyled layer")
    window.screenshot("6-result.png")
    seen["final"] = log.newest()


def settings_of(painter, number) -> str:
    accepted = [step for _, step in painter["log"][str(number)] if step.startswith("accepted")]
    return accepted[0].split("; ", 1)[1]


def test_the_preview_appears_and_follows_strength(painter):
    boxes = step(painter, "pane_boxes")
    assert all(boxes), f"the pane did not change after some changes of Strength: {boxes}"
    for left, top, right, bottom in boxes:  # the test image is 224x168: the preview is the picture itself
        assert 200 <= right - left <= 236 and 150 <= bottom - top <= 180, boxes
    assert min(painter["pane_differences"]) > 3, painter["pane_differences"]
    print(f"GIMP {painter['version']}: from a change to the new preview on screen, median "
          f"{painter['latency_median']:.1f} s ({', '.join(f'{s:.1f}' for s in painter['latencies'])})")


def test_a_fast_second_change_withdraws_the_first_preview(painter):
    superseded, newest = step(painter, "superseded"), step(painter, "newest")
    steps = [step for _, step in painter["log"][str(superseded)]]
    assert "stopped, its client left" in steps or "withdrawn while queued, never run" in steps, steps
    assert "strength=5.0" in settings_of(painter, newest)
    # One engine run in flight at a time: each run starts after the one before it ended.
    runs = sorted((at, number) for number, requests in painter["log"].items()
                  for at, step in requests if step == "running")
    for (_, earlier), (started, later) in zip(runs, runs[1:]):
        ended = [at for at, step in painter["log"][earlier] if step.startswith("finished")]
        assert ended and ended[0] <= started, (earlier, later, painter["log"])
    stopped = [at for at, step in painter["log"][str(superseded)] if step.startswith(("finished", "withdrawn"))][0]
    asked = [at for at, step in painter["log"][str(newest)] if step.startswith("accepted")][0]
    print(f"GIMP {painter['version']}: the superseded preview stopped {stopped - asked:.2f} s after the newer "
          "one was asked for")


def test_the_dialog_answers_while_a_preview_runs(painter):
    assert step(painter, "preview_still_running_when_it_opened"), "the preview ended before the check"
    assert painter["advanced_opened_s"] < 2, "Advanced took too long to open: the dialog was blocked"


def test_ok_runs_the_full_run_with_the_previews_settings(painter):
    result, final = step(painter, "result"), painter["final"]
    last_preview = max(int(n) for n in painter["log"] if int(n) < final)
    preview = settings_of(painter, last_preview).split()
    full = settings_of(painter, final).split()
    assert "resolution=preview" in preview and not any(s.startswith("resolution=") for s in full)
    assert sorted(s for s in preview if not s.startswith("resolution=")) == sorted(full)
    assert [step for _, step in painter["log"][str(final)]][-1].startswith("finished, exit status 0")
    assert result["added"] and result["source_unchanged"]
