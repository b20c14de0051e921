"""Issue 12's hostile-input campaign, table-driven: every row of ``tests/hostile_cases.py`` through the real CLI.

Each case writes its hostile file(s) into a fresh folder, runs ``python -m edgeopt ...`` there as a real
subprocess (its own session, a time limit: a hang fails the row, and the command then gets SIGTERM, as a
cancelled CI job does, and SIGKILL 10 s later) and checks, besides the row's own
expectations (exit code; phrases of the one-line ``edgeopt: error: ...`` message, usually the file and
the field):

- no traceback and no ``internal error`` anywhere in the output;
- no process the command started is alive once it has exited (its children are recorded with psutil
  while it runs, and every process carrying the case's marker in its environment is looked for after);
- no hidden temporary file (``.*.tmp``, ``.*.job.json``, ``.*.result.json``) and no ``.edgeopt.lock`` of the
  command anywhere in the case's folder,
  nothing left in its ``TMPDIR``, and, for an input refused up front, no file in ``--out``.

A failing row says how bad it is: ``[bad]`` (traceback, internal error, exit 4 for an input problem, a hang,
a leftover temporary file or process, an accepted input) or ``[weak]`` (a refusal with the right exit class
whose message misses the file or the field, or that left files in ``--out``).  With ``HOSTILE_LOG=FILE``
each row also appends one JSON line (case, exit code, message, verdict) to FILE, the campaign's record.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import zoo
from tests.hostile_cases import CASES, PROFILE, Case, Workspace, fast_profile_text
from tests.hostile_runner import check_case

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a callable, made lazily
    """A finished ``edgeopt run`` folder (tiny_conv, fp32, the fast profile) whose results the results rows
    copy and corrupt; made on first use."""
    made: dict[str, Path | str] = {}

    def get() -> Path:
        if not made:
            root = tmp_path_factory.mktemp("hostile-base")
            model = zoo.tiny_conv_model(root / "tiny_conv.onnx")
            profile = root / f"{PROFILE}.yaml"
            profile.write_text(fast_profile_text())
            done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile),
                                   "--variant", "fp32", "--out", str(root / "run")], cwd=root, capture_output=True,
                                  text=True, timeout=180)
            made["dir" if done.returncode == 0 else "error"] = (
                root / "run" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-2000:]}")
        if "error" in made:
            pytest.fail(f"the base run for the results rows failed: {made['error']}")
        return Path(made["dir"])

    return get


# -------------------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, base_run) -> None:  # noqa: ANN001 - the fixture's callable
    ws = Workspace(tmp_path / "case", base_run)
    ws.root.mkdir()
    check_case(case, ws)


def test_the_table_covers_the_campaign() -> None:
    """Every category of issue 12's campaign is in the table, about 70 rows, each id once."""
    categories = {c.category for c in CASES}
    assert categories >= {"model", "profile", "calibration", "eval", "results", "output", "options"}
    assert len({c.id for c in CASES}) == len(CASES)
    assert 60 <= len(CASES) <= 90
