"""stylize_picture(): one picture restyled by one worker of a Ray cluster (the CLI's --cluster for a
picture: a GPU of the cluster instead of this computer's CPU)."""

from __future__ import annotations

from ..contract.progress import ProgressCallback, Reporter
from ..contract.settings import Settings
from ..engine.imageio import Picture
from .board import ClusterProgress, Part
from .run import on_cluster, ready, run_tasks


def stylize_picture(address: str, content: Picture, styles: list[Picture], settings: Settings,
                    progress: ProgressCallback | None = None, regions: list[Picture | None] | None = None
                    ) -> Picture:
    """engine/api.stylize_picture on one worker of the Ray cluster at `address`."""
    settings.validate(len(styles))
    report = Reporter(progress)
    results = []
    with on_cluster(address, settings, 1) as cluster:
        ready(cluster)
        report.plan(f"one picture on {cluster.description}")
        counted = ClusterProgress(report, {0: Part(1, 1)}, 1)
        task = (lambda worker, board: worker.restyle_picture.remote(0, content, styles, settings, regions, board))
        run_tasks(cluster, [task], lambda result: results.append(result[1]), counted)
    return results[0]
