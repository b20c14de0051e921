#!/usr/bin/env bash
# The export corpus (tests/export_corpus): real torchvision, timm and transformers architectures through
# `edgeopt run package.module:factory`, in a venv of their own at .cache/export-corpus-venv (pinned
# tests/export_corpus/requirements.txt; rebuilt when it changes). Writes .cache/export-corpus/table.md, the table
# docs/export.md holds. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EDGEOPT_EXPORT_CORPUS_VENV:-$PWD/.cache/export-corpus-venv}"
want="$(sha256sum tests/export_corpus/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.edgeopt-requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "setting up $venv (tests/export_corpus/requirements.txt; about 5 GB) ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! { "$venv/bin/python" -m pip install -q --upgrade pip \
         && "$venv/bin/python" -m pip install -q -r tests/export_corpus/requirements.txt \
         && "$venv/bin/python" -m pip install -q --no-deps -e . ; } > "$venv/setup.log" 2>&1; then
    tail -n 30 "$venv/setup.log" >&2
    echo "setting up $venv failed; full log: $venv/setup.log" >&2
    exit 2
  fi
  echo "$want" > "$venv/.edgeopt-requirements.sha256"
fi
EDGEOPT_EXPORT_CORPUS=1 HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/export_corpus "$@"
