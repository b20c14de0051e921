"""The PyTorch baseline runner on CPU for real (eager, torch.compile; fp32, bf16); its CUDA path is marked gpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeopt.backends import runner_for
from tests.torch_models import CHANNELS, HEIGHT, INPUT_NAME, WIDTH, tiny_cnn

REFERENCE = "tests.torch_models:tiny_cnn"
INPUTS = [(INPUT_NAME, (1, CHANNELS, HEIGHT, WIDTH), "float32")]


def feeds() -> dict[str, np.ndarray]:
    shape = (1, CHANNELS, HEIGHT, WIDTH)
    return {INPUT_NAME: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def settings(**values: object) -> dict[str, object]:
    return {"inputs": INPUTS, **values}


def expected(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return tiny_cnn().eval()(torch.from_numpy(x)).numpy()


def test_eager_fp32_matches_the_module_and_times() -> None:
    f = feeds()
    with runner_for("torch", REFERENCE, settings(device="cpu", precision="fp32", mode="eager")) as runner:
        (out,) = runner.infer(f)
        np.testing.assert_allclose(out, expected(next(iter(f.values()))), rtol=1e-5, atol=1e-6)
        call = runner.timed_call(f)
        for _ in range(3):
            call()
        assert runner.details["precision"] == "fp32" and runner.details["device"] == "cpu"
        assert runner.details["versions"]["torch"] == torch.__version__
    assert not runner.is_active


def test_bf16_on_cpu_is_close_to_fp32_and_returns_float32() -> None:
    f = feeds()
    with runner_for("torch", REFERENCE, settings(device="cpu", precision="bf16")) as runner:
        (out,) = runner.infer(f)
    ref = expected(next(iter(f.values())))
    assert out.dtype == np.float32
    cosine = float(np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref)))
    assert cosine > 0.99


@pytest.mark.slow
def test_torch_compile_on_cpu() -> None:
    f = feeds()
    with runner_for("torch", REFERENCE, settings(device="cpu", precision="fp32", mode="compile")) as runner:
        (out,) = runner.infer(f)
        runner.timed_call(f)()
        assert runner.details["mode"] == "compile"
    np.testing.assert_allclose(out, expected(next(iter(f.values()))), rtol=1e-4, atol=1e-5)


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="precision 'int4'"):
        runner_for("torch", REFERENCE, settings(precision="int4")).activate()
    with pytest.raises(ValueError, match="cuda_graphs needs device cuda"):
        runner_for("torch", REFERENCE, settings(cuda_graphs=True)).activate()
    with pytest.raises(ValueError, match="declares no input_spec"):
        runner_for("torch", "torch.nn:Identity", {}).activate()
    with pytest.raises(ValueError, match="input 'input' has shape"):
        with runner_for("torch", REFERENCE, settings()) as runner:
            runner.infer({INPUT_NAME: np.zeros((1, 3, 8, 8), np.float32)})
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            runner_for("torch", REFERENCE, settings(device="cuda")).activate()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_path(precision: str, graphs: bool) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine (torch.cuda.is_available() is False)")
    f = feeds()
    with runner_for("torch", REFERENCE, settings(device="cuda", precision=precision, cuda_graphs=graphs)) as runner:
        (out,) = runner.infer(f)
        call = runner.timed_call(f)
        for _ in range(5):
            call()
        assert runner.details["cuda_memory"]["max_memory_allocated_mb"] > 0
    ref = expected(next(iter(f.values())))
    assert float(np.dot(out.ravel(), ref.ravel()) / (np.linalg.norm(out) * np.linalg.norm(ref))) > 0.99


@pytest.mark.slow
def test_pipeline_gives_a_pytorch_baseline_row_next_to_onnxruntime(tmp_path: Path) -> None:
    """A profile listing `torch` measures the PyTorch model itself (CPU here) beside its ONNX export."""
    import json
    import subprocess
    import sys

    from tests.profiles import write_profile

    profile = write_profile(tmp_path, "withtorch",
                            runtime="  native_precisions: [fp32, int8, bf16]\n  backends: [onnxruntime, torch]")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "edgeopt", "run", "edgeopt.zoo.digits:digits_cnn",
                             "--profile", str(profile), "--out", str(out), "--variant", "fp32",
                             "--eval", "calibration_data/digits/eval.npz"],
                            capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr + result.stdout
    rows = {row["variant"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}
    assert rows["fp32"]["status"] == "ok"
    for name in ("fp32@torch-fp32", "fp32@torch-bf16"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["runtime"] == f"torch {name.rsplit('-', 1)[1]}"
    assert rows["fp32@torch-fp32"]["fidelity"][0]["cosine"] > 0.9999  # the export matches the model
    assert rows["fp32@torch-bf16"]["fidelity"][0]["cosine"] > 0.99
    onnx_doc = json.loads((out / "measurements" / "fp32__withtorch.json").read_text())
    torch_doc = json.loads((out / "measurements" / "fp32@torch-fp32__withtorch.json").read_text())
    assert onnx_doc["torch_imported"] is False and torch_doc["torch_imported"] is True
