#!/usr/bin/env bash
# README command 2: the whole test suite (slow tests included), creating .venv if missing.
source "$(dirname "$0")/env.sh"
.venv/bin/python -m ruff check edgeopt tests benchmarks bench.py scripts/tensorrt_typings.py
.venv/bin/python -m mypy edgeopt
# The TensorRT backend against the TensorRT API: tensorrt-stubs (pinned in requirements-dev.txt as a
# "# no-deps:" line, installed without its tensorrt dependency), repaired for mypy into .venv/tensorrt-typings.
stubs="$(sed -n 's/^# no-deps: \([^ ]*\).*/\1/p' requirements-dev.txt)"
if [ -n "$stubs" ]; then
  if [ "$(.venv/bin/python -m pip show tensorrt-stubs 2>/dev/null | sed -n 's/^Version: //p')" != "${stubs#*==}" ]; then
    .venv/bin/python -m pip install -q --no-deps "$stubs"
  fi
  .venv/bin/python scripts/tensorrt_typings.py .venv/tensorrt-typings 2>/dev/null
  MYPYPATH=.venv/tensorrt-typings .venv/bin/python -m mypy edgeopt/backends/tensorrt/runner.py \
    edgeopt/backends/tensorrt/engines.py edgeopt/backends/tensorrt/plan.py benchmarks/gpu_smoke.py
fi
exec .venv/bin/python -m pytest -q "$@"
