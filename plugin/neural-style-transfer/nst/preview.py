"""The dialog's live preview, without GIMP: one preview at a time on the engine server, a newer one
withdrawing the older at once, and the result as 8-bit pixels a GdkPixbuf takes.

A preview is an ordinary request with Resolution "preview" (the engine's preview schedule: at
most 256 px, few iterations at two scales). It runs in a thread of its own, so the dialog's main
loop never waits on the engine; `deliver` (GLib.idle_add, in GIMP) hands each outcome back to the
main loop, which alone touches the dialog.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from stylize_core.contract import client

from .bridge import BridgeError, run_engine
from .pixels import PixelError, rgba8
from .widgets import preview_settings

DELAY_MS = 400
"""A preview starts at most this long after the last change: typing a number or dragging a slider makes one,
not ten."""
STYLE_SIDE = 1024
"""A style layer is sent at most this large for a preview: its largest style target (Stroke size 4 at
256 px) needs no more, and a smaller request is quicker to send and to decode."""


def wait_before_preview_ms(last_preview_seconds: float | None) -> int:
    """How long the dialog waits after a change before it asks for a preview: DELAY_MS, or as long as
    the last preview took if that was shorter. The wait only spares the engine previews that the next
    keystroke would withdraw; where one takes 0.1 s (a GPU), waiting 0.4 s would be most of the time
    from the change to the picture, and cost more than the work it spares."""
    if last_preview_seconds is None:
        return DELAY_MS
    return max(1, min(DELAY_MS, round(last_preview_seconds * 1000)))


@dataclass
class PreviewOutcome:
    """What the pane shows: the picture (RGBA, 8 bits, rows of width * 4 bytes), or in `message` why
    there is none; with final False, a step on the way ("starting the engine", "painting", or the picture
    on the way while the preview is refined)."""
    rgba: bytes | None = None
    width: int = 0
    height: int = 0
    message: str = ""
    final: bool = True


class PreviewRunner:
    """Runs previews one at a time. request() withdraws the one before it (the server drops it if
    queued and stops it if running); cancel() withdraws without a new one (a setting changed, the
    dialog closed). Only the newest request's outcomes are delivered."""

    def __init__(self, config: dict, deliver: Callable[..., object]):
        self.config, self.deliver = config, deliver
        self._lock = threading.Lock()
        self._generation = 0
        self._connection = None
        self.last_seconds: float | None = None  # the last preview shown: from its request to its picture

    def wait_ms(self) -> int:
        """The dialog's wait after a change before the next request (wait_before_preview_ms)."""
        return wait_before_preview_ms(self.last_seconds)

    def request(self, values: dict, content: bytes, styles: list[bytes | Path], server: str,
                on_outcome: Callable[[PreviewOutcome], None], masks: list[bytes | None] | None = None,
                further: Sequence = ()) -> None:
        """A preview of `content` after `styles` (bridge.run_engine's, with their `masks`), with the
        dialog's `values` and its `further` styles (widgets.request_settings)."""
        generation = self.cancel()
        settings = preview_settings(values, further)
        threading.Thread(target=self._run, args=(generation, settings, content, styles, masks, server, on_outcome),
                         daemon=True, name=f"preview-{generation}").start()

    def cancel(self) -> int:
        """Withdraw the running preview, if any; the number the next request will carry."""
        with self._lock:
            self._generation += 1
            connection, self._connection = self._connection, None
        if connection is not None:
            client.withdraw(connection)
        return self._generation

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _run(self, generation, settings, content, styles, masks, server, on_outcome) -> None:
        started = time.monotonic()

        def on_connect(connection) -> None:
            with self._lock:
                if self._current(generation):
                    self._connection = connection
                    return
            client.withdraw(connection)  # superseded while connecting

        said = []

        def on_event(event: dict) -> None:
            stage = event.get("stage")
            text = {"waiting": "waiting for the engine", "load": "starting the engine"}.get(stage)
            if stage == "optimize":
                text = f"painting, {int(event.get('fraction', 0) * 10) * 10} %"
            if text and text not in said:  # each step once: the pane need not redraw per iteration
                said.append(text)
                self._deliver(generation, on_outcome, PreviewOutcome(message=text, final=False))

        def on_picture(npy: bytes) -> None:  # the painting on the way: shown until the final one comes
            try:
                sketch = PreviewOutcome(*rgba8(npy), message="refining", final=False)
            except PixelError:
                return
            self._deliver(generation, on_outcome, sketch)

        try:
            result = run_engine(self.config, settings, content, styles, on_event, server=server,
                                on_connect=on_connect, masks=masks, on_picture=on_picture)
            outcome = PreviewOutcome(*rgba8(result))
            if self._current(generation):
                self.last_seconds = time.monotonic() - started
        except (BridgeError, PixelError) as error:
            outcome = PreviewOutcome(message=str(error))
        except Exception as error:  # the dialog must stay usable whatever a preview meets
            print(f"neural-style-transfer: preview failed: {error!r}", file=sys.stderr)
            outcome = PreviewOutcome(message=f"failed ({error})")
        self._deliver(generation, on_outcome, outcome)

    def _deliver(self, generation, on_outcome, outcome: PreviewOutcome) -> None:
        def hand_over() -> bool:
            if self._current(generation):  # checked again: a newer request may have come meanwhile
                on_outcome(outcome)
            return False  # once: GLib.idle_add calls again a callback that returns True

        if self._current(generation):
            self.deliver(hand_over)
