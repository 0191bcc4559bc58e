"""The GPU check's record: its context, the log, summary.json, the results it reads, the closing table.

Every step's figures come from a file the step wrote (its --json FILE, pytest's junit XML); nothing is
read back from what a step printed, which goes to the log only.
"""

from __future__ import annotations

import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

OUT_FILES = ("summary.json", "gpu_check.log", "example.png", "quality-fp32.png", "quality-bf16.png",
             "big-crop.png", "details.tar.gz")
"""What the output folder gets (the device tool brings back at most 8 files)."""
DETAILS_LIMIT = 15 * 2**20
"""Above this, details.tar.gz leaves out the pictures."""


@dataclass
class Context:
    out: Path
    work: Path
    python: str
    device: str
    dry_run: bool
    deadline: float
    started: float
    env: dict
    log: object
    steps: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def say(ctx: Context, text: str) -> None:
    print(text, flush=True)
    ctx.log.write(text + "\n")
    ctx.log.flush()


def all_ok(steps: list[dict]) -> bool:
    """Every step passed, or was left out on purpose (--skip)."""
    return all(s["status"] == "ok" or s.get("reason") == "--skip" for s in steps)


def write_summary(ctx: Context, finished: bool) -> None:
    """summary.json, rewritten after every step so that a run cut short still reports."""
    summary = {"finished": finished, "ok": all_ok(ctx.steps),
               "device": ctx.device, "dry_run": ctx.dry_run,
               "wall_s": round(time.monotonic() - ctx.started, 1),
               "budget_s": round(ctx.deadline - ctx.started), **ctx.info,
               "steps": ctx.steps}
    temporary = ctx.out / "summary.json.tmp"
    temporary.write_text(json.dumps(summary, indent=1) + "\n")
    temporary.replace(ctx.out / "summary.json")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def read_pytest(path: Path) -> dict:
    """pytest's junit XML: the counts, and each case's outcome and seconds."""
    import xml.etree.ElementTree as ElementTree
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    cases = {}
    for case in suite.iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag + (": " + (child.get("message") or "")[:200] if child.tag != "failure" else "")
        cases[f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"] = {
            "outcome": outcome, "seconds": round(float(case.get("time", 0)), 2)}
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")} | {
        "seconds": float(suite.get("time", 0)), "cases": cases}


def archive_details(ctx: Context) -> None:
    """Everything in the work folder but the scratch site-packages in details.tar.gz; without the
    pictures if that is too big to bring back."""
    def write(keep) -> None:
        with tarfile.open(ctx.out / "details.tar.gz", "w:gz") as archive:
            for path in sorted(ctx.work.rglob("*")):
                if path.is_file() and path.relative_to(ctx.work).parts[0] != "site" and keep(path):
                    archive.add(path, arcname=str(path.relative_to(ctx.work)))
    write(lambda path: True)
    if (ctx.out / "details.tar.gz").stat().st_size > DETAILS_LIMIT:
        write(lambda path: path.suffix != ".png")


def print_table(ctx: Context) -> None:
    say(ctx, "")
    say(ctx, f"{'step':18s} {'status':8s} {'seconds':>8s}")
    for s in ctx.steps:
        say(ctx, f"{s['name']:18s} {s['status']:8s} {s['seconds']:8.1f}")
    say(ctx, f"summary: {ctx.out / 'summary.json'}; total {time.monotonic() - ctx.started:.0f} s")
