"""Running the GPU check: each step in its own process within its time limit and the whole budget; a
step that fails or runs out of time is recorded and the next one still runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gpu_check_report import OUT_FILES, Context, all_ok, archive_details, print_table, say, write_summary
from gpu_check_steps import Step, after_setup, setup_step, steps

ROOT = Path(__file__).resolve().parent.parent
MIN_STEP_SECONDS = 10
"""A step with less time than this left in the budget is skipped."""


def run_process(ctx: Context, name: str, command: list[str], timeout: float) -> tuple[int, bool, str]:
    """Run command in its own session, its output into the log and WORK/NAME.log as it comes; past
    timeout it is stopped (SIGTERM, then SIGKILL). Returns (exit status, whether it timed out, the output)."""
    lines: list[str] = []
    with open(ctx.work / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=ctx.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)

        def pump():
            for line in process.stdout:
                lines.append(line)
                log.write(line)
                say(ctx, "  " + line.rstrip("\n"))
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            return_code, timed_out = process.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return_code = process.wait()
        reader.join(timeout=10)
    return return_code, timed_out, "".join(lines)


def run_step(ctx: Context, step: Step, skip: set[str] = frozenset()) -> dict:
    """Run one step (at most its cap, less if the budget is nearly spent), read the figures it wrote,
    copy the pictures it keeps, and record it in summary.json."""
    record = {"name": step.name, "status": "skipped", "seconds": 0.0}
    ctx.steps.append(record)
    if step.name in skip:
        record["reason"] = "--skip"
        return record
    timeout = min(step.cap, ctx.deadline - time.monotonic())
    if timeout < MIN_STEP_SECONDS:
        record["reason"] = f"no time left in the budget ({max(0, timeout):.0f} s)"
        say(ctx, f"=== {step.name}: skipped, {record['reason']}")
        write_summary(ctx, False)
        return record
    say(ctx, f"=== {step.name} (limit {timeout:.0f} s): {' '.join(step.command)}")
    started = time.monotonic()
    return_code, timed_out, text = run_process(ctx, step.name, step.command, timeout)
    record.update(seconds=round(time.monotonic() - started, 2), returncode=return_code,
                  status="timeout" if timed_out else "ok" if return_code == 0 else "failed")
    if timed_out:
        record["reason"] = f"stopped after {timeout:.0f} s"
    if step.results is not None:
        try:
            record["result"] = step.read(step.results)
        except Exception as error:  # a missing or unreadable file must not lose the step's record
            record["results_error"] = f"{type(error).__name__}: {error}"
    for name, source in step.keep.items():
        if source.is_file():
            shutil.copy2(source, ctx.out / name)
    if record["status"] != "ok":
        record["tail"] = text[-2000:]
    say(ctx, f"=== {step.name}: {record['status']} in {record['seconds']:.1f} s")
    write_summary(ctx, False)
    return record


def check(args) -> int:
    """The whole check into args.out: setup, every step, details.tar.gz, the closing table; 0 if all passed."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in OUT_FILES:
        (out / old).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    budget = args.budget if args.budget else (900 if args.dry_run else 470)
    now = time.monotonic()
    with open(out / "gpu_check.log", "w") as log:
        ctx = Context(out=out, work=work, python=args.python or sys.executable, device=args.device,
                      dry_run=args.dry_run, deadline=now + budget, started=now,
                      env=dict(os.environ, PYTHONUNBUFFERED="1"), log=log)
        ctx.info["started_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        say(ctx, f"GPU check: device {ctx.device}, {'DRY RUN, ' if ctx.dry_run else ''}budget {budget} s, "
                 f"work folder {work}")
        run_step(ctx, setup_step(ctx))
        after_setup(ctx)
        for step in steps(ctx):
            run_step(ctx, step, set(args.skip or []))
        archive_details(ctx)
        write_summary(ctx, True)
        print_table(ctx)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all_ok(ctx.steps) else 1
