"""Tests for edgeopt.models.export: a real PyTorch export, its provenance, dynamic batch, and refused parity."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from edgeopt.core.fileio import sha256_file
from edgeopt.errors import ExportError
from edgeopt.models.export import ExportResult, ParityTolerance, export_onnx, provenance_path_for

pytestmark = pytest.mark.slow

IMPOSSIBLE = ParityTolerance(max_abs=0.0, max_rel=0.0, min_cosine=1.0000001)


def _torch() -> Any:
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    _torch()
    from tests.torch_models import input_spec, tiny_cnn

    out = tmp_path_factory.mktemp("export") / "tiny_cnn.onnx"
    return export_onnx(
        tiny_cnn(), input_spec("batch"), out, dynamic_batch=True, source="tests.torch_models:tiny_cnn"
    )


def _opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def test_export_writes_model_and_provenance(exported: ExportResult) -> None:
    torch = _torch()
    import onnxruntime as ort

    assert exported.path.is_file()
    assert exported.provenance_path == provenance_path_for(exported.path)
    assert exported.provenance_path == exported.path.with_name("tiny_cnn.provenance.json")
    stored = json.loads(exported.provenance_path.read_text(encoding="utf-8"))
    assert stored == exported.provenance
    assert stored["kind"] == "export"
    assert stored["exporter"] == "torchscript"
    assert stored["source"] == "tests.torch_models:tiny_cnn"
    assert stored["sha256"] == sha256_file(exported.path)
    assert stored["versions"] == {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "onnxscript": importlib.metadata.version("onnxscript"),
    }
    assert stored["inputs"] == [{"name": "input", "shape": ["batch", 3, 16, 16], "dtype": "float32"}]
    assert stored["dynamic_batch"] is True
    (output_name,) = stored["outputs"]
    (parity,) = stored["parity"]
    assert parity["output"] == output_name
    assert parity["max_abs_error"] <= 1e-3 and parity["max_rel_error"] <= 1e-3 and parity["cosine"] >= 0.9999
    assert stored["parity_samples"] == 3
    assert stored["opset"] == _opset(exported.path) == 17
    onnx.checker.check_model(str(exported.path))


def test_dynamic_batch_runs_batch_2_like_pytorch(exported: ExportResult) -> None:
    torch = _torch()
    import onnxruntime as ort

    from tests.torch_models import tiny_cnn

    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (declared,) = session.get_inputs()
    assert declared.shape[0] == "batch" and declared.shape[1:] == [3, 16, 16]
    batch = np.random.default_rng(5).standard_normal((2, 3, 16, 16)).astype(np.float32)
    (got,) = session.run(None, {"input": batch})
    with torch.no_grad():
        want = tiny_cnn()(torch.from_numpy(batch)).numpy()
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fixed_batch_spec_with_dynamic_batch_still_accepts_batch_2(tmp_path: Path) -> None:
    _torch()
    import onnxruntime as ort

    from tests.torch_models import input_spec, tiny_cnn

    result = export_onnx(tiny_cnn(), input_spec(1), tmp_path / "m.onnx", dynamic_batch=True)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": np.zeros((2, 3, 16, 16), np.float32)})
    assert got.shape == (2, 10)


def test_parity_failure_names_the_output_and_leaves_no_file(tmp_path: Path, exported: ExportResult) -> None:
    _torch()
    from tests.torch_models import input_spec, tiny_cnn

    out_dir = tmp_path / "out"
    target = out_dir / "model.onnx"
    with pytest.raises(ExportError) as caught:
        export_onnx(tiny_cnn(), input_spec("batch"), target, dynamic_batch=True, tolerance=IMPOSSIBLE)
    message = str(caught.value)
    (output_name,) = exported.provenance["outputs"]  # the same module exports the same output names
    assert f"output '{output_name}'" in message
    assert str(target) in message
    assert "cosine" in message
    assert not target.exists()
    assert not provenance_path_for(target).exists()
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_dynamo_export_records_the_opset_the_file_really_has(tmp_path: Path) -> None:
    """torch's dynamo exporter cannot go below opset 18 and keeps 18 when asked for 17 (it says so in a log
    line); provenance must not claim 17 for a file that is opset 18."""
    _torch()
    from tests.torch_models import input_spec, tiny_cnn

    result = export_onnx(
        tiny_cnn(),
        input_spec("batch"),
        tmp_path / "dyn.onnx",
        dynamic_batch=True,
        exporter="dynamo",
        opset=17,
    )
    assert result.provenance["exporter"] == "dynamo"
    assert result.provenance["opset"] == _opset(result.path)


def test_cosine_leaves_out_all_zero_samples() -> None:
    import numpy as np

    from edgeopt.evaluate.fidelity import compare

    reference = np.zeros((3, 1, 8), np.float32)  # 8 elements: the fewest a cosine is reported over
    reference[0, 0] = [1, 2, 3, 4, 5, 6, 7, 8]
    variant = reference.copy()
    variant[1, 0, 0] = 1e-30  # an all-zero sample that differs by a denormal: no direction to compare
    result = compare(reference, variant, "out")
    assert result.cosine == pytest.approx(1.0) and result.min_cosine == pytest.approx(1.0)
