"""Issue 24 item 1: NNCF as a quantizer (``int8-nncf``, ``int8-nncf-ac``): an OpenVINO IR made from the run's own
calibration set, measured on the OpenVINO rows only, its provenance saying what NNCF ran; accuracy control keeps
the outputs' cosine drop within the budget it was given."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.backends import cells_for
from edgeopt.models.calibration import load_calibration
from edgeopt.models.quantize import make_variant
from edgeopt.models.recipes import Recipe
from edgeopt.profiles.schema import load_profile
from tests.profiles import profile_yaml
from tests.test_sensitivity import DIGITS, ink_model

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nncf") is None or importlib.util.find_spec("openvino")
                                is None, reason="NNCF and OpenVINO: pip install 'edgeopt[openvino]'")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ink_model(tmp_path_factory.mktemp("nncf"))  # the lossy digits classifier: int8 costs it accuracy


def _run_ir(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return [np.asarray(next(iter(compiled(f).values()))) for f in feeds]


def _mean_cosine(reference: list[np.ndarray], got: list[np.ndarray]) -> float:
    values = [float(np.ravel(a) @ np.ravel(b) / (np.linalg.norm(a) * np.linalg.norm(b)))
              for a, b in zip(reference, got, strict=True)]
    return float(np.mean(values))


def test_int8_nncf_makes_an_openvino_ir_with_its_provenance(model: Path, tmp_path: Path) -> None:
    calibration = load_calibration(DIGITS, min_samples=1)
    variant = make_variant(model, Recipe.parse("int8-nncf"), tmp_path, calibration=calibration)
    assert variant.path.name == "int8-nncf.xml" and variant.path.with_suffix(".bin").is_file()
    nncf = variant.provenance["nncf"]
    assert nncf["version"] and nncf["backend"] == "openvino" and nncf["preset"] == "performance"
    assert nncf["model_type"] == "default" and nncf["subset_size"] == calibration.count and nncf["fake_quantize"] > 0
    assert variant.provenance["format"] == "openvino-ir" and variant.provenance["weights"]["path"] == "int8-nncf.bin"
    assert variant.provenance["calibration"]["content_hash"] == calibration.content_hash  # one calibration
    feeds = [dict(s) for s in calibration.samples[:16]]
    assert _mean_cosine(_run_ir(model, feeds), _run_ir(variant.path, feeds)) > 0.95
    again = make_variant(model, Recipe.parse("int8-nncf"), tmp_path, calibration=calibration)  # reused, not remade
    assert again.provenance["seconds"] == variant.provenance["seconds"]
    variant.path.with_suffix(".bin").write_bytes(b"changed")  # weights changed since: remade
    remade = make_variant(model, Recipe.parse("int8-nncf"), tmp_path, calibration=calibration)
    assert remade.provenance["weights"]["sha256"] == variant.provenance["weights"]["sha256"]
    (tmp_path / "p.yaml").write_text(profile_yaml("p", runtime="  backends: [onnxruntime, openvino]"))
    rows = cells_for(load_profile(tmp_path / "p.yaml"), [remade])
    assert [(backend, precision) for backend, _, precision in rows] == [("openvino", "fp32")]  # OpenVINO's only


def test_accuracy_control_keeps_the_drop_within_its_budget(model: Path, tmp_path: Path) -> None:
    """Plain int8 costs this model more cosine than the budget; accuracy control reverts quantizers until the mean
    output cosine on its held-out samples is within it."""
    calibration = load_calibration(DIGITS, min_samples=1).take(48)
    plain = make_variant(model, Recipe.parse("int8-nncf"), tmp_path, calibration=calibration)
    held_out = [dict(s) for s in calibration.samples[-16:]]
    reference = _run_ir(model, held_out)
    plain_drop = 1 - _mean_cosine(reference, _run_ir(plain.path, held_out))
    budget = plain_drop / 3
    controlled = make_variant(model, Recipe.parse("int8-nncf-ac"), tmp_path, calibration=calibration,
                              max_cosine_drop=budget)
    record = controlled.provenance["nncf"]["accuracy_control"]
    assert record["max_drop"] == budget and record["held_out"] and record["validation_samples"] == 16
    assert 1 - _mean_cosine(reference, _run_ir(controlled.path, held_out)) <= budget + 1e-6
    assert controlled.provenance["nncf"]["fake_quantize"] < plain.provenance["nncf"]["fake_quantize"]


def test_a_run_measures_nncf_on_openvino_and_recommends_a_row(model: Path, tmp_path: Path) -> None:
    (tmp_path / "both.yaml").write_text(profile_yaml("both", max_seconds=0.2,
                                                     runtime="  backends: [onnxruntime, openvino]\n"
                                                             "  openvino_precisions: [fp32]",
                                                     budgets="  p95_ms: 1000\n  min_cosine: 0.9"))
    done = subprocess.run([sys.executable, "-m", "edgeopt", "run", str(model), "--profile", "both.yaml",
                           "--calibration", str(DIGITS), "--out", "out", "--variant", "fp32", "--variant",
                           "int8-nncf"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1, 5), done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    nncf_rows = [r for r in summary["rows"] if r["variant"].startswith("int8-nncf")]
    assert [(r["variant"], r["runtime"]) for r in nncf_rows] == [("int8-nncf@openvino-fp32", "openvino fp32")]
    assert nncf_rows[0]["status"] == "ok" and nncf_rows[0]["fidelity"]
    [recommended] = summary["recommendations"]
    assert recommended["line"] in done.stdout and "@openvino fp32@" not in recommended["line"]


def test_a_lab_node_gets_the_irs_weights_with_it(model: Path, tmp_path: Path) -> None:
    """A lab cell ships the variant by content: an IR's .bin travels beside its .xml, hash-checked on arrival."""
    from edgeopt.lab.node import cell_payload, measure_payload
    from edgeopt.measure.cell import Cell, CellContext
    from edgeopt.measure.launcher import prepare_timing_inputs

    calibration = load_calibration(DIGITS, min_samples=1)
    variant = make_variant(model, Recipe.parse("int8-nncf"), tmp_path / "variants", calibration=calibration)
    (tmp_path / "p.yaml").write_text(profile_yaml("p", max_seconds=0.1, runtime="  backend: openvino"))
    profile = load_profile(tmp_path / "p.yaml")
    timing = prepare_timing_inputs(model, profile, calibration, tmp_path / "inputs.npz")
    payload = cell_payload(Cell(variant, profile, timing, "openvino", "fp32"), CellContext(tmp_path / "m"))
    assert payload["variant"]["weights"]["name"] == "int8-nncf.bin"
    result = measure_payload(payload, "node0123456789abcdef")
    assert result["measurement"]["status"] == "ok", result["measurement"].get("failure")
    payload["variant"]["weights"]["data"] = b"other weights"
    with pytest.raises(Exception, match="int8-nncf.bin: content hash"):
        measure_payload(payload, "node0123456789abcdef")
