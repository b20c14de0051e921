#!/usr/bin/env bash
# README command 2: the whole test suite (slow tests included), creating .venv if missing.
source "$(dirname "$0")/env.sh"
.venv/bin/python -m ruff check edgeopt tests benchmarks bench.py
.venv/bin/python -m mypy edgeopt
exec .venv/bin/python -m pytest -q "$@"
