"""``edgeopt tune``: the paired drop statistic by hand, and real searches on the lossy digits model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.errors import ConfigError
from edgeopt.workflows.tune import TuneConfig, paired_drop, render_tune_table, tune
from tests.test_sensitivity import DIGITS, ink_model, quick_profile


def test_paired_drop_counts_discordant_samples() -> None:
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    eye = np.eye(4)
    reference = eye[labels].copy()
    candidate = eye[labels].copy()
    candidate[0] = eye[1]  # fp32 right, candidate wrong
    candidate[1] = eye[2]  # fp32 right, candidate wrong
    reference[2] = eye[0]  # fp32 wrong, candidate right
    drop = paired_drop(reference, candidate, metric="top1", labels=labels, relative=False)
    assert drop.drop == pytest.approx(100 * (2 - 1) / 10)  # (b - c) / n, in points
    assert drop.discordant == 3 and drop.samples == 10
    assert drop.lower <= drop.drop <= drop.upper
    assert drop.metric_value == pytest.approx(0.8)
    relative = paired_drop(reference, candidate, metric="top1", labels=labels, relative=True)
    assert relative.drop == pytest.approx(10 / 0.9)  # % of fp32's 90 %
    same = paired_drop(reference, reference, metric="cosine", labels=None, relative=False)
    assert (same.drop, same.lower, same.upper) == pytest.approx((0.0, 0.0, 0.0))
    assert same.meets(0.0, "upper") and not drop.meets(5.0, "upper") and drop.meets(10.0, "point")
    with pytest.raises(ConfigError):
        paired_drop(reference, candidate, metric="top1", labels=None, relative=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tune")
    return ink_model(directory), quick_profile(directory)


@pytest.mark.slow
def test_tune_keeps_a_few_nodes_in_float_and_meets_the_budget(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, profile = setup
    config = TuneConfig(model=model, calibration=str(DIGITS), eval_set=str(DIGITS / "eval.npz"), profile=str(profile),
                        out_dir=tmp_path / "tune", max_drop=1.0, select="fewest")
    result = tune(config)
    assert result.exit_code == 0 and result.chosen is not None
    plain = next(c for c in result.candidates if c.k == 0)
    assert plain.drop is not None and plain.drop.lower > 0.5  # plain int8 loses accuracy, and the interval says so
    assert 1 <= result.chosen.k <= 3 and {"/Concat", "/head/head.0/Gemm"} <= set(result.chosen.excluded)
    assert result.chosen.drop is not None and result.chosen.drop.upper <= 1.0
    assert result.chosen.p50_ms is not None and result.baseline.p50_ms is not None
    assert len(result.candidates) <= 2 + int(np.ceil(np.log2(len(result.ranking)))) + 1
    document = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert document["chosen"]["variant"] == result.chosen.variant and len(document["candidates"]) == len(
        result.candidates)
    assert (tmp_path / "tune" / "tune.png").read_bytes()[:4] == b"\x89PNG"
    assert "chosen" in render_tune_table(result)


CLI = ("import sys; from edgeopt.cli import main as cli; "
       "cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, 'edgeopt.cli.research'))); "
       "sys.exit(cli.main())")


@pytest.mark.slow
def test_tune_cli_exits_1_when_the_budget_cannot_be_met(setup: tuple[Path, Path], tmp_path: Path) -> None:
    model, profile = setup
    done = subprocess.run([sys.executable, "-c", CLI, "tune", str(model), "--calibration", str(DIGITS), "--eval",
                           str(DIGITS / "eval.npz"), "--profile", str(profile), "--max-drop", "0",
                           "--metric", "cosine", "--max-exclude", "1", "--out", str(tmp_path / "t")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "budget not met: even with the 1 most sensitive nodes kept in float" in done.stdout
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["chosen"] is None


@pytest.mark.slow
def test_tune_and_sweep_complete_on_a_dynamic_shape_classifier_with_a_labelled_eval_set(tmp_path: Path) -> None:
    """Symbolic batch, height and width: the eval images and calibration samples fix them (no reshape to 1)."""
    from edgeopt.workflows.sweep import SweepConfig, run_sweep
    from tests import profiles, zoo
    from tests.test_cli import write_calibration

    model = zoo.dynamic_conv_model(tmp_path / "dynamic.onnx")
    rng = np.random.default_rng(4)
    calibration = write_calibration(tmp_path / "calib", [rng.standard_normal((1, 3, 24, 40)).astype(np.float32)
                                                        for _ in range(16)], shape=(1, 3, 24, 40))
    images = rng.standard_normal((24, 3, 24, 40)).astype(np.float32)
    np.savez(tmp_path / "eval.npz", images=images, labels=rng.integers(0, 10, 24))
    profile = profiles.write_profile(tmp_path, "quick", max_seconds=0.3)
    result = tune(TuneConfig(model=model, calibration=str(calibration), eval_set=str(tmp_path / "eval.npz"),
                             profile=str(profile), out_dir=tmp_path / "tune", max_drop=50.0, max_exclude=1))
    assert result.exit_code in (0, 1) and result.baseline.p50_ms is not None
    timed = json.loads(next((tmp_path / "tune" / "measurements").glob("fp32__quick.json")).read_text())
    assert timed["input_shapes"] == {"input": [1, 3, 24, 40]}  # the calibration sample's shape
    swept = run_sweep(SweepConfig(model=str(model), profiles=(str(profile),), out_dir=tmp_path / "sweep",
                                  calibration=str(calibration), eval_set=str(tmp_path / "eval.npz"),
                                  recipes=("int8-static-minmax",)))
    assert swept.points and not [f for f in swept.failures if f["variant"] in ("fp32", "int8-static-minmax")]
