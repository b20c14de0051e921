"""``edgeopt sweep``: the recipe grid, Pareto dominance by hand, and a real resumable sweep."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgeopt.errors import ConfigError
from edgeopt.models.recipes import Recipe
from edgeopt.workflows.sweep import SweepConfig, SweepPoint, pareto_front, run_sweep, sweep_recipes
from tests.test_sensitivity import DIGITS, ink_model, quick_profile


def test_grid_names_parse_back_to_their_options() -> None:
    names = sweep_recipes(["minmax", "entropy"], per_channel=(True, False), symmetric=(True, False),
                          samples=(16, None), reduce_range=(False, True))
    assert len(names) == 2 * 2 * 2 * 2 * 2 == len(set(names))
    assert "int8-static-entropy-pt-asym-rr-n16" in names and "int8-static-minmax" in names
    for name in names:
        assert Recipe.parse(name).name == name
    with pytest.raises(ConfigError):
        sweep_recipes(["kl"])


def _point(name: str, p50: float, p95: float, size: float, quality: float) -> SweepPoint:
    return SweepPoint(name, "p", p50, p95, size, quality, "top1")


def test_pareto_front_by_hand() -> None:
    points = pareto_front([
        _point("fp32", 10, 12, 4.0, 0.95),   # most accurate: front
        _point("a", 6, 8, 1.0, 0.94),         # fastest and smallest: front
        _point("b", 7, 9, 1.0, 0.94),         # a is better on p50/p95, equal elsewhere: dominated by a
        _point("c", 6, 8, 1.0, 0.90),         # a is more accurate, equal elsewhere: dominated by a
        _point("d", 5, 13, 1.0, 0.80),        # fastest p50 but worst p95: front (trade-off)
        _point("e", 6, 8, 1.0, 0.94),         # a tie with a: neither dominates
    ])
    front = {p.variant for p in points if p.on_front}
    assert front == {"fp32", "a", "d", "e"}
    by_name = {p.variant: p for p in points}
    assert set(by_name["b"].dominated_by) == {"a", "e"} and set(by_name["c"].dominated_by) == {"a", "e"}


@pytest.mark.slow
def test_sweep_marks_the_front_and_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model, profile = ink_model(tmp_path), quick_profile(tmp_path)
    config = SweepConfig(model=str(model), profiles=(str(profile),), out_dir=tmp_path / "sweep",
                         calibration=str(DIGITS), eval_set=str(DIGITS / "eval.npz"),
                         recipes=tuple(sweep_recipes(["minmax"], symmetric=(True, False), samples=(16,))))
    result = run_sweep(config)
    assert result.exit_code == 0 and not result.failures
    # (other backends a profile names may add rows such as "fp32@openvino-fp32"; they join the front too)
    assert {"fp32", "int8-static-minmax-n16", "int8-static-minmax-asym-n16"} <= {p.variant for p in result.points}
    assert any(p.on_front for p in result.points) and all(p.quality_name == "top1" for p in result.points)
    document = json.loads(result.json_path.read_text())
    assert {p["variant"] for p in document["points"] if p["on_front"]} == {p.variant for p in result.points
                                                                           if p.on_front}
    assert result.plot_paths[0].read_bytes()[:4] == b"\x89PNG"
    caplog.set_level(logging.INFO, logger="edgeopt")
    caplog.clear()  # the lines of the rerun alone
    run_sweep(config)  # a rerun reuses every variant and measurement
    assert sum("done earlier, skipped" in line for line in caplog.messages) >= 3
    assert not any(line.endswith("running ...") for line in caplog.messages)
