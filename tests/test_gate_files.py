"""``edgeopt gate`` on stored measurements: output budgets judged against the fp32 measurement beside the file, never
a pass on latency alone without one, and files measured from different models refused in one call."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.errors import ConfigError
from edgeopt.workflows.gate_files import gate_files
from tests import profiles, zoo


def _run(model: Path, out: Path, profile: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", str(profile), "--out",
                           str(out), "--variant", "fp32", "--variant", "fp16"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("gate-files")
    profile = profiles.write_profile(folder, "fast", budgets="  p95_ms: 1000\n  min_cosine: 0.95")
    _run(zoo.tiny_conv_model(folder / "conv.onnx"), folder / "conv", profile)
    _run(zoo.identity_add(folder / "add.onnx"), folder / "add", profile)
    return folder / "conv" / "measurements", folder / "add" / "measurements"


def test_a_variant_is_judged_on_its_outputs_against_the_fp32_beside_it(runs: tuple[Path, Path]) -> None:
    conv, _ = runs
    report = gate_files([conv / "fp32__fast.json", conv / "fp16__fast.json"])
    assert report.exit_code == 0
    (fp16,) = [f.gate for f in report.files if f.measurement.variant.name == "fp16"]
    assert fp16 is not None and [c.metric for c in fp16.checks] == ["p95_ms", "min_cosine"]


def test_without_the_fp32_measurement_a_variant_is_inconclusive_not_a_latency_pass(runs: tuple[Path, Path],
                                                                                     tmp_path: Path) -> None:
    conv, _ = runs
    alone = tmp_path / "fp16__fast.json"
    shutil.copy(conv / "fp16__fast.json", alone)
    report = gate_files([alone])
    (item,) = report.files
    assert item.gate is not None and item.gate.verdict.value == "inconclusive" and report.exit_code == 5
    (check,) = [c for c in item.gate.checks if c.metric != "p95_ms"]
    assert check.sentence.startswith("no fp32 reference: no fp32 measurement of profile fast beside fp16__fast.json "
                                     "(gate the run's whole measurements folder)"), check.sentence


def test_measurements_of_two_models_are_refused_in_one_call(runs: tuple[Path, Path]) -> None:
    conv, add = runs
    with pytest.raises(ConfigError, match="were measured from different models") as refused:
        gate_files([conv / "fp16__fast.json", add / "fp16__fast.json"])
    assert refused.value.exit_code == 2
    done = subprocess.run([sys.executable, "-m", "edgeopt", "gate", str(conv / "fp32__fast.json"),
                           str(add / "fp32__fast.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "measured from different models" in done.stderr, done.stderr
