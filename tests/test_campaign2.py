"""Issue 23's second hostile-input campaign (117 rows, ``tests/campaign2/``) through the real CLI, the pytest plugin
and the device lab, judged as ``tests/test_hostile_inputs.py`` judges issue 12's table (``tests/hostile_runner.py``):
exit code, the message's phrases, no traceback or internal error, nothing left behind in the row's folder or
TMPDIR, no process outliving the command, plus each row's own checks (a device node still a device, a CSV cell
neutralised, a resumed run whole...).

Runs with ``EDGEOPT_CAMPAIGN2=1`` (``.ci/run`` sets it: about ten minutes, so outside README's test command); the
lab rows also need ``EDGEOPT_LAB_CLUSTER=1`` (they start a Ray head with token authentication on a loopback
port and stop every Ray process of the user after, like ``tests/test_lab_cli.py``), and the rows that make
device nodes or mounts need root (they skip for a user, saying why).  ``HOSTILE_LOG=FILE`` appends one JSON
line per row (exit code, message, verdict): the campaign's good/weak/bad record.
"""

from __future__ import annotations

import collections
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.campaign2 import cases_inputs, cases_lab, cases_lifecycle, cases_outputs  # noqa: F401 - the rows
from tests.campaign2.table import CASES2, Shared, Workspace2, profile_text
from tests.hostile_cases import Case
from tests.hostile_runner import check_case

pytestmark = [pytest.mark.skipif(not os.environ.get("EDGEOPT_CAMPAIGN2"),
                                 reason="the 117-row campaign: set EDGEOPT_CAMPAIGN2=1 (.ci/run does)"),
              pytest.mark.slow]
EDGEOPT = [sys.executable, "-m", "edgeopt"]
CAMPAIGN_SIZE = 117


def _seed(root: Path) -> Path:
    """``edgeopt run good.onnx`` with fp32 and int8-static-minmax: the run folder rows copy."""
    ws = Workspace2(root, Shared(lambda: root, lambda: {}))
    done = subprocess.run([*EDGEOPT, "run", str(ws.model), "--profile", str(ws.profile), "--out", "seed",
                           "--variant", "fp32", "--variant", "int8-static-minmax",
                           "--calibration", str(ws.calibration()), "--min-calibration-samples", "4"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"the seed run failed: exit {done.returncode}: {done.stderr[-2000:]}")
    return root / "seed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    made: dict[str, object] = {}

    def seed() -> Path:
        if "seed" not in made:
            made["seed"] = _seed(tmp_path_factory.mktemp("campaign2-seed"))
        return made["seed"]  # type: ignore[return-value]

    def lab() -> dict[str, str]:
        """A Ray head with token authentication on a loopback port: the variables of a client (and of a node:
        ``EDGEOPT_LAB_WORKDIR``, where a joined node keeps its cells' folders), and ``ADDRESS``."""
        if not os.environ.get("EDGEOPT_LAB_CLUSTER"):
            pytest.skip("a Ray head: set EDGEOPT_LAB_CLUSTER=1 (.ci/run does)")
        if "lab" not in made:
            home = tmp_path_factory.mktemp("campaign2-lab")
            (home / "profiles").mkdir()
            (home / "profiles" / "fast.yaml").write_text(profile_text())
            (home / "profiles" / "slowlab.yaml").write_text(  # a cell that runs 20 s: time to lose its node
                profile_text("slowlab", bench="  max_iterations: 100000000\n").replace(
                    "min_iterations: 80\n  max_seconds: 0.05", "min_iterations: 100000000\n  max_seconds: 20"))
            env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "HOME": str(home),
                   "EDGEOPT_PROFILE_PATH": str(home / "profiles"), "EDGEOPT_LAB_WORKDIR": str(home / "cells")}
            address = f"127.0.0.1:{_free_port()}"
            made["lab"] = {**env, "ADDRESS": address}
            head_env = {**os.environ, **env}
            head_env.pop("EDGEOPT_LAB_WORKDIR")  # a node's setting: the rows find the device node's raylet by it
            head = subprocess.run([*EDGEOPT, "lab", "head", "--address", address], env=head_env,
                                  capture_output=True, text=True, timeout=180)
            if head.returncode != 0:
                pytest.fail(f"edgeopt lab head failed: {head.stderr[-2000:]}")
        return made["lab"]  # type: ignore[return-value]

    yield Shared(seed, lab)
    if "lab" in made:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True,
                       timeout=120, env={**os.environ, **made["lab"]})  # type: ignore[dict-item]


@pytest.mark.parametrize("case", CASES2, ids=[c.id for c in CASES2])
def test_campaign2_row(case: Case, tmp_path: Path, shared: Shared) -> None:
    ws = Workspace2(tmp_path / "case", shared)
    ws.root.mkdir()
    check_case(case, ws)


def test_the_table_is_the_campaign() -> None:
    """117 rows, each id once, in the campaign's six groups."""
    ids = [c.id for c in CASES2]
    assert len(set(ids)) == len(ids), [i for i, n in collections.Counter(ids).items() if n > 1]
    assert len(ids) == CAMPAIGN_SIZE
    assert {c.category for c in CASES2} == {"inputs", "reports", "lifecycle", "pytest", "extra", "lab"}
