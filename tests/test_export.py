"""Tests for edgeopt.models.export: real PyTorch exports (dynamo and TorchScript) of models that return dicts,
ModelOutput and recurrent state, named dynamic dims kept in the file and run at two sizes, inputs bound by name,
in-domain parity inputs, user-code errors, refused parity and provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from edgeopt.core.fileio import sha256_file
from edgeopt.errors import ConfigError, ExportError, UserCodeError
from edgeopt.models.export import ExportResult, ParityTolerance, export_onnx, provenance_path_for, second_size
from edgeopt.models.graph import input_specs
from edgeopt.models.inputs import synthetic_feeds
from edgeopt.models.modelref import parse_inputs

pytestmark = pytest.mark.slow

IMPOSSIBLE = ParityTolerance(max_abs=0.0, max_rel=0.0, min_cosine=1.0000001)
EDGEOPT = [sys.executable, "-m", "edgeopt"]


def _torch() -> Any:
    return pytest.importorskip("torch")


def edgeopt(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEOPT, *map(str, args)], capture_output=True, text=True, timeout=600)


def _dims(path: Path) -> dict[str, list[int | str]]:
    model = onnx.load(str(path), load_external_data=False)
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}


def _opset(path: Path) -> int:
    model = onnx.load(str(path), load_external_data=False)
    return next(int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    _torch()
    from tests.torch_models import tiny_cnn

    out = tmp_path_factory.mktemp("export") / "tiny_cnn.onnx"
    return export_onnx(tiny_cnn(), ["input:batch x 3 x h x w"], out, source="tests.torch_models:tiny_cnn")


def test_export_writes_model_and_provenance(exported: ExportResult) -> None:
    torch = _torch()
    import onnxruntime as ort

    assert exported.provenance_path == exported.path.with_name("tiny_cnn.provenance.json")
    stored = json.loads(exported.provenance_path.read_text(encoding="utf-8"))
    assert stored == exported.provenance
    assert stored["kind"] == "export" and stored["exporter"] == "dynamo"  # torch's own default since 2.9
    assert stored["source"] == "tests.torch_models:tiny_cnn"
    assert stored["sha256"] == sha256_file(exported.path)
    assert stored["versions"]["torch"] == torch.__version__ and stored["versions"]["onnxruntime"] == ort.__version__
    assert stored["inputs"] == [{"name": "input", "shape": ["batch", 3, "h", "w"], "dtype": "float32"}]
    assert stored["bindings"] == [{"input": "input", "parameter": "x", "key": None}]  # forward(x): one parameter
    assert stored["dynamic_dims"] == {"batch": {"example": 2, "second": 1}, "h": {"example": 16, "second": 8},
                                      "w": {"example": 16, "second": 8}}
    assert stored["parity_checked_at"] == ["batch=2, h=16, w=16", "batch=1, h=8, w=8"]
    assert stored["outputs"] == ["output"]
    (parity,) = stored["parity"]
    assert parity["max_abs_error"] <= 1e-3 and parity["cosine"] >= 0.9999
    assert stored["opset"] == _opset(exported.path) >= 18  # dynamo: its own opset, never down-converted
    onnx.checker.check_model(str(exported.path))


def test_named_dims_stay_names_and_the_file_runs_at_two_sizes_like_pytorch(exported: ExportResult) -> None:
    torch = _torch()
    import onnxruntime as ort

    from tests.torch_models import tiny_cnn

    assert _dims(exported.path)["input"] == ["batch", 3, "h", "w"]  # never exported as 1 (or as the example)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    for shape in [(3, 3, 20, 12), (1, 3, 9, 9)]:
        batch = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
        (got,) = session.run(None, {"input": batch})
        with torch.no_grad():
            want = tiny_cnn()(torch.from_numpy(batch)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_outputs_of_any_structure_become_named_outputs(tmp_path: Path, exporter: str) -> None:
    _torch()
    from tests.torch_models import dict_head, recurrent_state

    result = export_onnx(dict_head(), ["x:batch x 3 x h x w"], tmp_path / "seg.onnx", exporter=exporter)  # type: ignore[arg-type]
    assert result.provenance["outputs"] == ["out", "aux"]
    assert result.provenance["dropped_outputs"] == ["unused (None)"]
    assert _dims(result.path)["out"] == ["batch", 4, "h", "w"]
    lstm = export_onnx(recurrent_state(), ["x:batch x time x 12", "h0:2 x batch x 8", "c0:2 x batch x 8"],
                       tmp_path / "lstm.onnx", exporter=exporter)  # type: ignore[arg-type]
    assert lstm.provenance["outputs"] == ["output.0", "output.1.0", "output.1.1"]  # out, (h_n, c_n)
    dims = _dims(lstm.path)
    assert dims["h0"] == [2, "batch", 8]  # the batch is where it was declared, not dim 0 of every input
    assert dims["output.0"] == ["batch", "time", 8] and dims["output.1.0"] == [2, "batch", 8]


def test_inputs_bind_by_name_and_integer_inputs_stay_in_domain(tmp_path: Path) -> None:
    """Keyword-only ``input_ids``/``attention_mask`` declared in the other order land where forward wants them;
    ids stay inside the 5-row table (0..9 would raise in PyTorch) and the parity mask is all ones."""
    _torch()
    from tests.torch_models import token_model

    result = export_onnx(token_model(), ["attention_mask:batch x seq:int64", "input_ids:batch x seq=7:int64"],
                         tmp_path / "tokens.onnx")
    assert result.provenance["dynamic_dims"]["seq"] == {"example": 7, "second": 6}
    assert result.provenance["outputs"] == ["logits", "pooled"]
    model = onnx.load(str(result.path))
    specs = [s for s in input_specs(model)]
    assert [s.name for s in specs] == ["attention_mask", "input_ids"]
    feeds = synthetic_feeds(parse_inputs(["attention_mask:2x7:int64", "input_ids:2x7:int64"]).concrete(), model)
    assert (feeds["attention_mask"] == 1).all()
    assert feeds["input_ids"].max() < 5


def test_a_name_forward_does_not_take_is_refused_naming_what_it_takes(tmp_path: Path) -> None:
    _torch()
    from tests.torch_models import token_model

    with pytest.raises(ConfigError, match=r"input .ids. is not a parameter .*it takes: input_ids, attention_mask"):
        export_onnx(token_model(), ["ids:1x4:int64", "attention_mask:1x4:int64"], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_forward_that_raises_is_the_users_error(tmp_path: Path) -> None:
    _torch()
    from tests.torch_models import tiny_cnn

    with pytest.raises(UserCodeError, match="your model's forward raised RuntimeError"):
        export_onnx(tiny_cnn(), ["x:1x5x16x16"], tmp_path / "m.onnx")  # 5 channels into a 3-channel conv


def test_a_forward_that_calls_sys_exit_is_the_users_error_not_edgeopts_exit(tmp_path: Path) -> None:
    """``sys.exit(0)`` in forward must not end edgeopt with exit 0 and no verdict: exit 3 naming it."""
    torch = _torch()

    class Quits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise SystemExit(0)

    with pytest.raises(UserCodeError, match=r"your model's forward called sys.exit\(0\); edgeopt stopped"):
        export_onnx(Quits(), ["x:1x3"], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_dynamo_refuses_an_opset_below_18_and_torchscript_keeps_17(tmp_path: Path) -> None:
    _torch()
    from tests.torch_models import tiny_cnn

    with pytest.raises(ConfigError, match="dynamo exporter writes opset 18 or newer"):
        export_onnx(tiny_cnn(), ["x:1x3x16x16"], tmp_path / "a.onnx", opset=17)
    result = export_onnx(tiny_cnn(), ["x:batch x 3 x 16 x 16"], tmp_path / "b.onnx", exporter="torchscript")
    assert result.provenance["opset"] == _opset(result.path) == 17
    assert _dims(result.path)["x"] == ["batch", 3, 16, 16]


def test_parity_failure_names_the_output_and_the_size_and_leaves_no_file(tmp_path: Path) -> None:
    _torch()
    from tests.torch_models import tiny_cnn

    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError) as caught:
        export_onnx(tiny_cnn(), ["x:batch x 3 x 16 x 16"], target, tolerance=IMPOSSIBLE)
    message = str(caught.value)
    assert "output 'output' differs from PyTorch at batch=2" in message and str(target) in message
    assert not target.exists() and not provenance_path_for(target).exists()


def test_second_size_keeps_strides_and_maximum_lengths() -> None:
    assert [second_size(n) for n in (1, 2, 3, 16, 128, 224, 320, 512)] == [2, 1, 2, 8, 64, 192, 256, 256]


def test_input_grammar_is_one_format_for_cli_and_input_spec() -> None:
    spaced = parse_inputs(["input_ids:batch x seq=128:int64", "x:batchx3xh=224xw=224"])
    as_tuples = parse_inputs([("input_ids", ("batch", "seq=128"), "int64"), ("x", ("batch", 3, "h=224", "w=224"),
                                                                            "float32")])
    assert spaced == as_tuples
    assert spaced.sizes == {"seq": 128, "h": 224, "w": 224}
    assert [s.shape for s in spaced.concrete()] == [("batch", 128), ("batch", 3, 224, 224)]
    with pytest.raises(ConfigError, match="two sizes"):
        parse_inputs(["a:seq=4:int64", "b:seq=5:int64"])


def test_cli_exports_dict_modeloutput_and_state_models_with_named_outputs(tmp_path: Path) -> None:
    _torch()
    pytest.importorskip("transformers")  # in requirements-dev.txt: never skipped in CI
    cases = {
        "tests.torch_models:dict_head": (["x:batch x 3 x h x w"], ["out", "aux"]),
        "tests.torch_models:tiny_bert": (["input_ids:batch x seq=12:int64", "attention_mask:batch x seq:int64"],
                                         ["last_hidden_state", "pooler_output"]),
        "tests.torch_models:recurrent_state": (["x:batch x time x 12", "h0:2 x batch x 8", "c0:2 x batch x 8"],
                                               ["output.0", "output.1.0", "output.1.1"]),
    }
    for factory, (inputs, outputs) in cases.items():
        target = tmp_path / f"{factory.rsplit(':', 1)[1]}.onnx"
        done = edgeopt("export", factory, "--out", target, *[a for i in inputs for a in ("--input", i)])
        assert done.returncode == 0, done.stderr
        assert [o.name for o in onnx.load(str(target)).graph.output] == outputs
        assert "parity vs PyTorch at: batch=2" in done.stdout
    parity = json.loads(provenance_path_for(tmp_path / "tiny_bert.onnx").read_text())["parity_checked_at"]
    assert parity == ["batch=2, seq=12", "batch=1, seq=8"]
    bert = _dims(tmp_path / "tiny_bert.onnx")
    assert bert["input_ids"] == ["batch", "seq"] and bert["last_hidden_state"] == ["batch", "seq", 16]


def test_cli_factory_errors_are_exit_3_naming_the_factory(tmp_path: Path) -> None:
    done = edgeopt("export", "tests.torch_models:raises", "--out", tmp_path / "m.onnx", "--input", "x:1x3x16x16")
    assert done.returncode == 3, done.stderr
    assert "tests.torch_models:raises: your factory raised RuntimeError: checkpoint weights.pt not found" \
        in done.stderr
    assert "torch_models.py" in done.stderr and "internal error" not in done.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_cli_factory_with_example_inputs_and_an_unknown_input_name(tmp_path: Path) -> None:
    done = edgeopt("export", "tests.torch_models:with_examples", "--out", tmp_path / "m.onnx")
    assert done.returncode == 0, done.stderr
    assert _dims(tmp_path / "m.onnx")["x"] == [1, 3, 16, 16]
    assert "sample 0" in json.loads(provenance_path_for(tmp_path / "m.onnx").read_text())["parity_checked_at"]
    refused = edgeopt("export", "tests.torch_models:token_model", "--out", tmp_path / "t.onnx",
                      "--input", "ids:1x4:int64")
    assert refused.returncode == 2 and "it takes: input_ids, attention_mask" in refused.stderr


def test_a_causal_lm_with_past_takes_and_returns_its_cache(tmp_path: Path) -> None:
    torch = _torch()
    pytest.importorskip("transformers")  # in requirements-dev.txt: never skipped in CI
    import onnxruntime as ort

    from tests.torch_models import tiny_gpt2

    result = export_onnx(tiny_gpt2(), ["input_ids:batch x seq=6:int64", "attention_mask:batch x seq:int64"],
                         tmp_path / "lm.onnx", with_past=True)
    dims = _dims(result.path)
    assert dims["attention_mask"] == ["batch", "past+seq"]
    assert dims["cache.1.value"] == ["batch", 2, "past", 8] and dims["present.1.value"] == ["batch", 2, "past+seq", 8]
    assert result.provenance["parity_checked_at"] == ["batch=2, seq=6, past=16", "batch=1, seq=4, past=8"]
    # one decoding step in ONNX Runtime from a prefix's cache matches the model run on the whole sequence
    model = tiny_gpt2()
    ids = torch.tensor([[3, 9, 4, 11, 7]])
    with torch.no_grad():
        whole = model(input_ids=ids).logits[0, -1].numpy()
        prefix = model(input_ids=ids[:, :4]).cache
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids[:, 4:].numpy(), "attention_mask": np.ones((1, 5), np.int64)}
    for layer, cached in enumerate(prefix.layers):
        feeds[f"cache.{layer}.key"], feeds[f"cache.{layer}.value"] = cached.keys.numpy(), cached.values.numpy()
    step = session.run(["logits"], feeds)[0][0, -1]
    np.testing.assert_allclose(step, whole, rtol=1e-4, atol=1e-5)


def test_run_exports_a_factory_with_named_dims_and_times_the_declared_shape(tmp_path: Path) -> None:
    from tests.profiles import write_profile

    profile = write_profile(tmp_path, "quick", max_seconds=0.3, min_iterations=20,
                            runtime="  native_precisions: [fp32]\n  backends: [onnxruntime]")
    out = tmp_path / "out"
    done = edgeopt("run", "tests.torch_models:token_model", "--profile", profile, "--out", out, "--variant", "fp32",
                   "--variant", "int8-dynamic", "--input", "input_ids:batch x seq=9:int64",
                   "--input", "attention_mask:batch x seq:int64")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _dims(out / "model.onnx")["input_ids"] == ["batch", "seq"]
    measured = json.loads((out / "measurements" / "fp32__quick.json").read_text())
    assert measured["input_shapes"] == {"input_ids": [1, 9], "attention_mask": [1, 9]}  # seq=9, batch_size 1
    assert sha256_file(out / "model.onnx") == sha256_file(out / "variants" / "fp32.onnx")  # the file, as exported


def test_dict_and_list_parameters_take_their_entries_by_name(tmp_path: Path) -> None:
    _torch()
    from tests.torch_models import dict_input

    result = export_onnx(dict_input(), ["batch.features:n x 4", "batch.scale:n x 1", "extras.0:3", "extras.1:2 x 2"],
                         tmp_path / "d.onnx")
    assert result.provenance["bindings"][0] == {"input": "batch.features", "parameter": "batch", "key": "features"}
    assert [s.name for s in input_specs(onnx.load(str(result.path)))] == ["batch.features", "batch.scale",
                                                                         "extras.0", "extras.1"]


def test_cli_parity_inputs_are_checked_first(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(3)
    for index in range(2):
        np.savez(samples / f"s{index}.npz", input_ids=rng.integers(0, 5, (1, 6)).astype(np.int64),
                 attention_mask=np.ones((1, 6), np.int64))
    (samples / "manifest.yaml").write_text(
        "kind: arrays\nname: tokens\ndescription: test\nprovenance: test\nlicence: CC0\ninputs:\n"
        "  - {name: input_ids, dtype: int64, shape: [1, seq]}\n"
        "  - {name: attention_mask, dtype: int64, shape: [1, seq]}\n")
    done = edgeopt("export", "tests.torch_models:token_model", "--out", tmp_path / "t.onnx", "--parity-inputs", samples,
                   "--input", "input_ids:batch x seq:int64", "--input", "attention_mask:batch x seq:int64")
    assert done.returncode == 0, done.stderr
    provenance = json.loads(provenance_path_for(tmp_path / "t.onnx").read_text())
    assert provenance["parity_user_samples"] == 2
    assert provenance["parity_checked_at"][:2] == ["sample 0", "sample 1"]
    assert provenance["dynamic_dims"]["seq"]["example"] == 6  # the samples' sequence length


def test_a_dynamo_failure_names_its_first_cause_and_the_other_exporter(tmp_path: Path) -> None:
    _torch()
    from tests.torch_models import data_dependent

    with pytest.raises(ExportError) as caught:
        export_onnx(data_dependent(), ["x:batch x 4"], tmp_path / "m.onnx")
    message = str(caught.value)
    assert message.startswith("DataDependent: torch.onnx.export (dynamo) failed: ")
    assert message.endswith("; try --exporter torchscript") and "\n" not in message
    assert "Exception summary" not in message and "This is step" not in message
    assert not (tmp_path / "m.onnx").exists()
