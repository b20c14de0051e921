#!/usr/bin/env bash
# README command 1: the main job (bench.py) on the embedded default models, creating .venv if missing.
source "$(dirname "$0")/env.sh"
exec .venv/bin/python bench.py "$@"
