# Sourced by scripts/bench.sh and scripts/test.sh: create .venv with the pinned requirements if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
stamp=".venv/.edgeopt-requirements.sha256"
want="$(sha256sum requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (pinned requirements-dev.txt; torch==2.13.0 CPU) ..." >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  log=.venv/setup.log
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -r requirements-dev.txt \
         && .venv/bin/python -m pip install --no-deps -e . ; } > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setting up .venv failed; full log: $log" >&2
    exit 2
  fi
  echo "$want" > "$stamp"
fi
