"""A clip, a batch or a picture restyled on a Ray cluster instead of in this process (docs/cluster.md).

chunks.py cuts a clip into chunks and puts the results back in order (plain numpy, no Ray); the rest
talks to Ray: connect.py joins the cluster, workers.py is the worker (one Ray actor per GPU, else per
CPU core), board.py carries the workers' progress to the client, and clipjob.py, batchjob.py and
picture.py are the client's side of each kind of run.

Importing this package imports neither Ray nor torch: the CLI imports it only for --cluster (or
$RAY_ADDRESS), and the functions below import their module on first use.
"""

from __future__ import annotations

__all__ = ["stylize_clip", "stylize_batch", "stylize_picture"]

_HOMES = {"stylize_clip": "clipjob", "stylize_batch": "batchjob", "stylize_picture": "picture"}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
