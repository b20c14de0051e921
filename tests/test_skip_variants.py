"""``RunConfig.skip_variants``: default variants left out of a run (bench.py), the rest keep their rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.errors import ConfigError
from edgeopt.workflows.pipeline import RunConfig, run_pipeline
from tests.profiles import write_profile


def test_skipped_default_variants_are_not_made_or_measured(tmp_path: Path, mlp_model: Path) -> None:
    profile = write_profile(tmp_path, "quick")
    out = tmp_path / "out"
    result = run_pipeline(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=out,
                                    skip_variants=("fp16",)))
    measured = {m.variant_name for m in result.measurements}
    assert "fp16" not in measured and {"fp32", "int8-dynamic"} <= measured
    assert not (out / "variants" / "fp16.onnx").exists()
    document = json.loads((out / "measurements" / "int8-dynamic__quick.json").read_text())
    assert document["variant"]["provenance"]["chosen_by"]  # the others keep the rule that chose them


def test_skipping_a_variant_that_is_not_a_default_is_refused_before_anything_is_written(
        tmp_path: Path, mlp_model: Path) -> None:
    profile = write_profile(tmp_path, "quick")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"skip_variants: int8-static-typo not among the default variants"):
        run_pipeline(RunConfig(model=str(mlp_model), profiles=(str(profile),), out_dir=out,
                               skip_variants=("int8-static-typo",)))
    assert not (out / "measurements").exists() and not (out / "variants").exists()
