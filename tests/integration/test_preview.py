"""The dialog's live preview without GIMP: the engine's preview schedule, and the plug-in's
PreviewRunner (plugin/neural-style-transfer/nst/preview.py) on a real engine server."""

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nst import pixels, widgets
from nst import preview as nst_preview
from stylize_core import Settings, stylize_picture
from stylize_core.contract import client
from stylize_core.contract.errors import InputError
from stylize_core.contract.settings import BY_NAME
from stylize_core.contract.schedule import PREVIEW_ITERATIONS, PREVIEW_SIDE
from stylize_core.engine.imageio import load_picture
from stylize_core.engine.api import SKETCH_INTERVAL_S
from stylize_core.server.connection import wants_pictures
from helpers import CONTENT, STYLE, Served, small

PLUGIN = Path(__file__).resolve().parents[2] / "plugin" / "neural-style-transfer"
VALUES = {widgets.argument_name(option.name): option.default for option, _ in widgets.dialog_options()}
PROJECT = str(PLUGIN.parent.parent)


def npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array.astype("<f4"))
    return stream.getvalue()


def test_the_engines_float_result_becomes_8_bit_rgba():
    rgb = np.array([[[0.0, 0.5, 1.2], [-0.1, 1 / 255, 0.999]]])
    rgba, width, height = pixels.rgba8(npy(rgb))
    assert (width, height) == (2, 1)
    assert rgba == bytes([0, 128, 255, 255, 0, 1, 255, 255])
    assert pixels.rgba8(npy(np.array([[[0.2, 0.4, 0.6, 0.25]]])))[0] == bytes([51, 102, 153, 64])
    with pytest.raises(pixels.PixelError):
        pixels.rgba8(npy(np.zeros((2, 2))))


def test_the_region_read_for_a_preview_is_at_most_its_size_and_never_enlarged():
    assert pixels.scaled_region((0, 0, 1024, 768), 256) == (0.25, (0, 0, 256, 192))
    assert pixels.scaled_region((100, 40, 200, 100), 256) == (1.0, (100, 40, 200, 100))
    assert pixels.scaled_region((512, 256, 2048, 1024), 256)[1] == (64, 32, 256, 128)


def test_preview_is_the_engines_and_not_a_dialog_choice():
    resolution = BY_NAME["resolution"]
    dialog_choices = widgets.value_choices(resolution, widgets.WIDGETS["resolution"])
    assert "preview" in resolution.choices and "preview" not in dialog_choices
    assert Settings(resolution="preview").validate().resolution == "preview"


@pytest.mark.slow
def test_the_preview_schedule_two_small_scales_with_its_own_iterations():
    events = []
    content = load_picture(small(CONTENT, 400))
    result = stylize_picture(content, [load_picture(small(STYLE, 256))],
                             Settings(resolution="preview", max_size=1024, iterations=500, device="cpu"),
                             events.append)
    longest = max(result.rgb.shape[:2])
    assert longest == PREVIEW_SIDE, "the preview ignores the working size and the layer's size"
    totals = {(event.scale, event.total) for event in events if event.stage == "optimize"}
    assert sorted(totals) == [(1, PREVIEW_ITERATIONS[0]), (2, PREVIEW_ITERATIONS[1])], \
        "the preview ignores Iterations: its own schedule"


def test_the_wait_after_a_change_is_never_longer_than_a_preview_takes():
    assert nst_preview.wait_before_preview_ms(None) == nst_preview.DELAY_MS  # nothing measured yet
    assert nst_preview.wait_before_preview_ms(6.0) == nst_preview.DELAY_MS  # a CPU: keystrokes make one preview
    assert nst_preview.wait_before_preview_ms(0.12) == 120  # a GPU: the wait would cost more than it spares
    assert nst_preview.wait_before_preview_ms(0.0) == 1


class Pane:
    """What the dialog would show: the outcomes delivered, in order, with a way to wait for one."""

    def __init__(self):
        self.outcomes, self.condition = [], threading.Condition()

    def show_for(self, label: str):
        def show(outcome):
            with self.condition:
                self.outcomes.append((label, outcome))
                self.condition.notify_all()
        return show

    def wait_final(self, label: str, timeout: float = 600) -> nst_preview.PreviewOutcome:
        with self.condition:
            found = self.condition.wait_for(lambda: [o for l, o in self.outcomes if l == label and o.final], timeout)
        assert found, f"no preview for {label}: {self.outcomes}"
        return found[0]

    def wait_painting(self, label: str, timeout: float = 600) -> None:
        with self.condition:
            assert self.condition.wait_for(
                lambda: any(l == label and o.message.startswith("painting") for l, o in self.outcomes), timeout)


def in_flight_sampler(server: Served, samples: list, stop: threading.Event) -> threading.Thread:
    """(time, runs running, runs queued, runs started so far) on the server, every 20 ms."""
    def sample():
        while not stop.is_set():
            pong = server.ping()
            samples.append((time.monotonic(), pong["running"], pong["queued"], pong["runs"]))
            time.sleep(0.02)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def log_time(log: str, request: str, event: str) -> float:
    """Seconds since midnight of the server's log line for `request`'s `event` (the log's own clock)."""
    for line in log.splitlines():
        if request in line and line.endswith(event):
            hours, minutes, seconds = line.split()[2].split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    raise AssertionError(f"the server never logged {request}{event!r}:\n{log[-2000:]}")


@pytest.mark.slow
def test_a_change_withdraws_the_running_preview_and_only_the_newest_is_shown(served):
    """`served`: a server of the test's own on a Unix socket (tests/integration/conftest.py)."""
    content = pixels.npy_bytes((np.asarray(small(CONTENT, 320).convert("RGBA"), np.float32) / 255)
                               .astype("<f4").tobytes(), 240, 320)
    style = io.BytesIO()
    small(STYLE, 256).save(style, format="PNG")
    config = {"python": "", "project": PROJECT}
    runner = nst_preview.PreviewRunner(config, deliver=lambda hand_over: hand_over())
    pane, samples, stop = Pane(), [], threading.Event()
    address = str(served.address)
    assert runner.wait_ms() == nst_preview.DELAY_MS
    asked = time.monotonic()
    runner.request(VALUES, content, [style.getvalue()], address, pane.show_for("warm-up"))
    first = pane.wait_final("warm-up")
    assert first.rgba is not None, first.message
    assert 0 < runner.last_seconds <= time.monotonic() - asked, "the preview's own time is what the wait follows"
    assert (first.width, first.height) == (256, 192) and len(first.rgba) == 256 * 192 * 4
    # Before it, the pictures on the way at the same size, shown while the preview is refined.
    warm_up = [outcome for label, outcome in pane.outcomes if label == "warm-up"]
    sketches = [outcome for outcome in warm_up if outcome.rgba is not None and not outcome.final]
    assert sketches and all(warm_up.index(sketch) < warm_up.index(first) for sketch in sketches)
    assert all((sketch.width, sketch.height) == (256, 192) for sketch in sketches) and sketches[0].rgba != first.rgba
    sampler = in_flight_sampler(served, samples, stop)
    try:
        runner.request({**VALUES, "strength": 1.0}, content, [style.getvalue()], address, pane.show_for("old"))
        pane.wait_painting("old")
        runner.cancel()  # a setting changed: the dialog withdraws at once and asks again after a pause
        time.sleep(0.4)
        asked = time.monotonic()
        runner.request({**VALUES, "strength": 8.0}, content, [style.getvalue()], address, pane.show_for("new"))
        newest = pane.wait_final("new")
        assert runner.last_seconds <= time.monotonic() - asked, "timed from the newest request"
    finally:
        stop.set()
        sampler.join(5)
    assert newest.rgba is not None, newest.message
    assert not [o for label, o in pane.outcomes if label == "old" and o.final], "a withdrawn preview was shown"
    # The withdrawn one stops at its next iteration (a fraction of a second; 2 s on a busy machine),
    # measured between the server's own events: it saw the client leave, and the run stopped.
    seen_leaving = log_time(served.log(), "request 2 ", "its client left mid-run")
    stopped = log_time(served.log(), "request 2 ", "stopped, its client left")
    assert 0 <= stopped - seen_leaving < 2, "the server went on with the withdrawn preview"
    assert max(running for _, running, _, _ in samples) == 1
    assert samples[-1][3] == 3, "warm-up, the withdrawn one and the newest: three runs started"
    # The newest shows the newest settings: Strength 8 against 1 is plain to see.
    runner.request({**VALUES, "strength": 1.0}, content, [style.getvalue()], address, pane.show_for("again"))
    light = np.frombuffer(pane.wait_final("again").rgba, np.uint8).astype(float)
    strong = np.frombuffer(newest.rgba, np.uint8).astype(float)
    assert np.abs(light - strong).mean() > 8


def test_an_unreachable_server_is_said_in_the_pane(tmp_path):
    runner = nst_preview.PreviewRunner({"python": "", "project": PROJECT}, deliver=lambda hand_over: hand_over())
    pane = Pane()
    runner.request(VALUES, b"content", [b"style"], f"unix:{tmp_path / 'nobody.sock'}", pane.show_for("p"))
    outcome = pane.wait_final("p", 30)
    assert outcome.rgba is None and outcome.message.startswith("Cannot reach the engine server")


@pytest.mark.usefixtures("private_state")
def test_a_still_asks_for_the_pictures_on_the_way(served):
    """"pictures": true: the server sends the picture on the way, at the result's size, before the result:
    as the coarse scale ends, and in between every SKETCH_INTERVAL_S of optimisation; not asked, none;
    not a boolean, refused."""
    content, style = [np.asarray(small(path, 256).convert("RGB")) for path in (CONTENT, STYLE)]
    images = [npy(content / 255.0), npy(style / 255.0)]
    settings = {"resolution": "preview", "device": "cpu"}
    order, sketches, last_step = [], [], {}

    def on_event(event: dict) -> None:
        order.append(event["stage"])
        if event["stage"] == "optimize":
            last_step.update(scale=event["scale"], iteration=event["iteration"], total=event["total"],
                             at=time.monotonic())

    def on_picture(data: bytes) -> None:
        order.append("picture")
        sketches.append((dict(last_step), np.load(io.BytesIO(data)), time.monotonic()))
    code, result = client.run_on_server(served.address, images, settings, on_event, on_picture=on_picture)
    assert code == 0
    final = np.load(io.BytesIO(result))
    assert sketches and all(sketch.shape == final.shape == (192, 256, 3) for _, sketch, _ in sketches)
    assert order.index("optimize") < order.index("picture") and "picture" not in order[order.index("done"):]
    ends = [step for step, _, _ in sketches if step["scale"] == 1 and step["iteration"] == step["total"]]
    assert len(ends) == 1, "the coarse scale's picture as it ends"
    # Between pictures at least SKETCH_INTERVAL_S of optimisation, unless a scale ended (by the client's clock,
    # which the messages reach in order: a lower bound with some slack for their transit).
    for (step, _, at), (_, _, before) in zip(sketches[1:], sketches):
        assert at - before > SKETCH_INTERVAL_S * 0.5 or step["iteration"] == step["total"], sketches
    coarse_end = [sketch for step, sketch, _ in sketches if step in ends][0]
    assert 0.005 < np.abs(coarse_end - final).mean() < 0.2, "the sketch is not the coarse scale's picture"
    order.clear()
    code, _ = client.run_on_server(served.address, images, settings, on_event)
    assert code == 0 and "picture" not in order
    with pytest.raises(InputError, match="pictures must be true or false"):
        wants_pictures({"pictures": "yes"})
